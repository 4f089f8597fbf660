"""__NAME__: a weir deployer. It runs releases on weir's local target
through the `runtime` host import: it starts a release's instances, moves
traffic, scales down, promotes and rolls back."""

import weir_plugin as weir
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import runtime, types

DEFAULTS = {
    # The path each instance answers when it is ready.
    "readiness-path": "/healthz",
}


def host(call, *args):
    """A runtime call; its host error becomes this call's failure."""
    try:
        return call(*args)
    except Err as e:
        error = e.value
        weir.fail(
            f"runtime.{call.__name__} refused: {type(error).__name__.split('_')[-1].lower()}: {error.value}"
        )


def ready_by_version(instances):
    """[(version, ready count)] in first-seen order; unready ones do not count."""
    ready = {}
    for version, is_ready in instances:
        if is_ready:
            ready[version] = ready.get(version, 0) + 1
    return list(ready.items())


def status(service):
    instances = host(runtime.instances, service)
    return types.DeploymentStatus(
        service=service,
        weights=[],
        ready=ready_by_version([(i.version, i.ready) for i in instances]),
    )


class Plugin(exports.Plugin):
    def describe(self):
        return types.Manifest(
            name="__NAME__",
            version="0.1.0",
            kind=types.PluginKind.DEPLOYER,
            description="__DESCRIPTION__",
            capabilities=[types.Capability.RUNTIME],
            config_schema=None,
        )


class Deployer(exports.Deployer):
    def deploy(self, ctx, release):
        # The deploy stage's table: weir's keys (service, artifact, ...) and ours.
        config = weir.config(ctx, DEFAULTS, strict=False)
        running = [i for i in host(runtime.instances, release.service) if i.version == release.version]
        for _ in range(len(running), release.replicas):
            spec = runtime.InstanceSpec(
                service=release.service,
                version=release.version,
                artifact=release.artifact,
                args=[],
                env=release.env,
                readiness_path=config["readiness-path"],
            )
            host(runtime.start, spec)
        return status(release.service)

    def set_traffic(self, ctx, service, weights):
        host(runtime.set_weights, service, weights)
        return status(service)

    def scale(self, ctx, service, version, replicas):
        mine = [i for i in host(runtime.instances, service) if i.version == version]
        if len(mine) < replicas:
            weir.fail(f"{service} {version} runs {len(mine)} instance(s); this deployer scales down only")
        for instance in mine[replicas:]:
            host(runtime.stop, instance.id)
        return status(service)

    def promote(self, ctx, service, version):
        host(runtime.set_weights, service, [(version, 100)])
        for instance in host(runtime.instances, service):
            if instance.version != version:
                host(runtime.stop, instance.id)
        return status(service)

    def rollback(self, ctx, service, version):
        for instance in host(runtime.instances, service):
            if instance.version == version:
                host(runtime.stop, instance.id)
        return status(service)

    def status(self, ctx, service):
        return status(service)
