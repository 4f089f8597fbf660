//! What the control API changes: starting and stopping instances,
//! weights, promotion, restoring the stable release and rolling back.
//! Each change is saved before it is answered.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;

impl Target {
    /// Move the release file `name` that a client put in `incoming/` into
    /// the target's release directory (so the run that built it can be
    /// pruned) and return its new path. Only a plain name in `incoming/`,
    /// opened without following a symlink: a request cannot point the
    /// target at any other file on the host.
    fn keep_program(&self, service: &str, version: &str, name: &str) -> Result<PathBuf, Refusal> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
            return Err(invalid(format!(
                "release `{name}` must be the name of a file in the target's incoming directory"
            )));
        }
        let incoming = self.dir.join(INCOMING);
        let mut source = crate::beneath::open_root(&incoming)
            .and_then(|dir| crate::beneath::open_file(&dir, std::ffi::OsStr::new(name)))
            .map_err(|e| {
                invalid(format!(
                    "release `{name}` is not a file the target was given: {e}"
                ))
            })?;
        let dir = self.dir.join("releases").join(service).join(version);
        std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let copy = dir.join(name);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".program.{}.tmp",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        // Durable before it is recorded: a stable release's program must
        // survive a power cut with the state that names it.
        std::fs::File::create(&tmp)
            .and_then(|mut out| {
                std::io::copy(&mut source, &mut out)?;
                out.sync_all()
            })
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&tmp, &copy))
            .and_then(|()| std::fs::File::open(&dir)?.sync_all())
            .map_err(|e| failed(format!("cannot copy release `{name}` into the target: {e}")))?;
        Ok(copy)
    }

    async fn start_from(
        &self,
        service: &str,
        version: &str,
        launch: &Launch,
    ) -> Result<crate::target::supervisor::Instance, Refusal> {
        let running = self.supervisor.instances(service).len();
        if running >= MAX_INSTANCES {
            return Err(invalid(format!(
                "service `{service}` already runs {running} instances, the limit is {MAX_INSTANCES}; stop some first"
            )));
        }
        let spec = InstanceSpec {
            service: service.to_string(),
            version: version.to_string(),
            program: launch.program.clone(),
            args: launch.args.clone(),
            env: launch.env.clone(),
            dir: launch
                .program
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.dir.clone()),
            data_dir: self.dir.join("data").join(service),
            readiness_path: launch.readiness_path.clone(),
            log: Some(self.dir.join("logs").join(service).join(format!("{version}.log"))),
            container: launch.container.clone().map(|launch| ContainerSpec {
                launch,
                key: self.container_key.clone(),
                env_dir: self.dir.join("run"),
            }),
        };
        self.supervisor
            .start(spec)
            .await
            .map_err(|e| failed(e.to_string()))
    }

    pub(super) async fn start(
        &self,
        req: StartRequest,
        tenant: Option<String>,
    ) -> Result<InstanceInfo, Refusal> {
        check_name("service", &req.service).map_err(|e| invalid(e.to_string()))?;
        {
            let state = self.state.lock().await;
            crate::target::state::may_touch(&state, &req.service, tenant.as_deref())
                .map_err(super::denied)?;
        }
        check_name("version", &req.version).map_err(|e| invalid(e.to_string()))?;
        if let Some((k, _)) = req.env.iter().find(|(k, _)| refused_variable(k)) {
            return Err(invalid(format!(
                "variable `{k}` cannot be set for a service: it changes what the program loads or runs (LD_*, PATH, BASH_ENV, ENV), or is not a variable name"
            )));
        }
        if !req.readiness_path.starts_with('/') {
            return Err(invalid(format!(
                "the readiness path `{}` must start with `/`",
                req.readiness_path
            )));
        }
        // A release that is or was stable is never changed: another
        // instance of it runs what it ran, so a rollback restores exactly
        // that.
        let kept = {
            let state = self.state.lock().await;
            state.services.get(&req.service).and_then(|s| {
                s.releases
                    .iter()
                    .rev()
                    .find(|r| {
                        r.version == req.version
                            && matches!(r.state, ReleaseState::Stable | ReleaseState::Superseded)
                    })
                    .map(|r| r.launch.clone())
            })
        };
        if let Some(launch) = kept {
            let instance = self.start_from(&req.service, &req.version, &launch).await?;
            return Ok(self.instance_info(&instance));
        }
        let launch = match req.container {
            Some(container) => {
                super::super::podman::check(&container).map_err(invalid)?;
                Launch {
                    program: PathBuf::new(),
                    args: Vec::new(),
                    env: req.env,
                    readiness_path: req.readiness_path,
                    container: Some(container),
                }
            }
            None => Launch {
                program: self.keep_program(&req.service, &req.version, &req.release)?,
                args: req.args,
                env: req.env,
                readiness_path: req.readiness_path,
                container: None,
            },
        };
        {
            let mut state = self.state.lock().await;
            // Checked again under the lock that creates the service: two
            // tenants' first deploys of one name cannot both win.
            crate::target::state::may_touch(&state, &req.service, tenant.as_deref())
                .map_err(super::denied)?;
            let known = state.services.get(&req.service).map(|s| s.port);
            let port = self
                .listen(&req.service, known.unwrap_or(req.port))
                .await
                .map_err(|e| failed(format!("cannot listen for service `{}`: {e}", req.service)))?;
            let s = state.services.entry(req.service.clone()).or_default();
            if s.tenant.is_none() && s.releases.is_empty() {
                s.tenant = tenant.clone();
            }
            s.port = port;
            let now = now_ms();
            match s.release_mut(&req.version) {
                Some(r) if matches!(r.state, ReleaseState::Candidate | ReleaseState::Stable) => {
                    r.launch = launch.clone();
                }
                _ => s.releases.push(Release {
                    version: req.version.clone(),
                    state: ReleaseState::Candidate,
                    run: req.run.clone(),
                    deployed_ms: now,
                    changed_ms: now,
                    reason: None,
                    replicas: 0,
                    launch: launch.clone(),
                }),
            }
            self.save(&mut state).await?;
        }
        let instance = self.start_from(&req.service, &req.version, &launch).await?;
        let mut state = self.state.lock().await;
        let running = self
            .supervisor
            .instances(&req.service)
            .iter()
            .filter(|i| i.version == req.version)
            .count() as u32;
        if let Some(r) = state
            .services
            .get_mut(&req.service)
            .and_then(|s| s.release_mut(&req.version))
        {
            r.replicas = r.replicas.max(running);
        }
        self.save(&mut state).await?;
        Ok(self.instance_info(&instance))
    }

    pub(super) async fn stop(&self, id: &str) -> Result<(), Refusal> {
        if self.supervisor.stop(id).await {
            Ok(())
        } else {
            Err(not_found(format!("the target runs no instance `{id}`")))
        }
    }

    pub(super) async fn set_weights(
        &self,
        service: &str,
        weights: Vec<(String, u32)>,
    ) -> Result<ServiceStatus, Refusal> {
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if total != 100 {
            return Err(invalid(format!(
                "the weights of `{service}` add up to {total}; they must add up to 100"
            )));
        }
        if !self.state.lock().await.services.contains_key(service) {
            return Err(not_found(format!("the target runs no service `{service}`")));
        }
        let router = self.supervisor.router(service);
        let ids: Vec<_> = self.supervisor.instances(service);
        for (version, w) in &weights {
            if *w > 0
                && !ids
                    .iter()
                    .any(|i| i.version == *version && router.is_ready(&i.id))
            {
                return Err(invalid(format!(
                    "version `{version}` of `{service}` has no ready instance; deploy it before sending it traffic"
                )));
            }
        }
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        s.weights = weights.iter().filter(|(_, w)| *w > 0).cloned().collect();
        router.set_weights(&weights);
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }

    pub(super) async fn promote(&self, service: &str, version: &str) -> Result<ServiceStatus, Refusal> {
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        match s.release_mut(version) {
            None => return Err(not_found(format!("`{service}` has no release `{version}`"))),
            // Rolled back meanwhile (its controller's lease lapsed): it
            // no longer serves, and must not become stable.
            Some(r) if r.state == ReleaseState::RolledBack => {
                return Err(invalid(format!(
                    "`{service}` {version} was rolled back ({}); it cannot be promoted",
                    r.reason.as_deref().unwrap_or("no reason recorded")
                )));
            }
            Some(_) => {}
        }
        let now = now_ms();
        for r in s.releases.iter_mut() {
            if r.state == ReleaseState::Stable && r.version != version {
                r.state = ReleaseState::Superseded;
                r.changed_ms = now;
            }
        }
        if let Some(r) = s.release_mut(version) {
            r.state = ReleaseState::Stable;
            r.changed_ms = now;
        }
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }

    /// All traffic to `version` (its instances started if none is ready),
    /// every other instance drained and stopped.
    async fn settle_on(
        &self,
        service: &str,
        version: &str,
        launch: &Launch,
        replicas: u32,
    ) -> Result<(), Refusal> {
        let router = self.supervisor.router(service);
        let ready = self
            .supervisor
            .instances(service)
            .iter()
            .filter(|i| i.version == version && router.is_ready(&i.id))
            .count() as u32;
        // Traffic moves first when the version can take it, so a slow
        // start of the missing instances never leaves the candidate
        // serving.
        if ready > 0 {
            router.set_weights(&[(version.to_string(), 100)]);
        }
        for _ in ready..replicas.max(1) {
            self.start_from(service, version, launch).await?;
        }
        router.set_weights(&[(version.to_string(), 100)]);
        let others: Vec<String> = self
            .supervisor
            .instances(service)
            .into_iter()
            .filter(|i| i.version != version)
            .map(|i| i.id)
            .collect();
        for id in others {
            self.supervisor.stop(&id).await;
        }
        Ok(())
    }

    /// Back to the stable release (the rollout controller's promise).
    pub(super) async fn restore(&self, service: &str, reason: &str) -> Result<ServiceStatus, Refusal> {
        let stable = {
            let state = self.state.lock().await;
            let Some(s) = state.services.get(service) else {
                return Err(not_found(format!("the target runs no service `{service}`")));
            };
            s.stable().cloned()
        };
        match &stable {
            Some(r) => self.settle_on(service, &r.version, &r.launch, r.replicas).await?,
            None => {
                // Nothing was ever promoted: the only safe state is none.
                self.supervisor.router(service).set_weights(&[]);
                for i in self.supervisor.instances(service) {
                    self.supervisor.stop(&i.id).await;
                }
            }
        }
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        let now = now_ms();
        for r in s
            .releases
            .iter_mut()
            .filter(|r| r.state == ReleaseState::Candidate)
        {
            r.state = ReleaseState::RolledBack;
            r.reason = Some(reason.to_string());
            r.changed_ms = now;
        }
        s.weights = stable.iter().map(|r| (r.version.clone(), 100)).collect();
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }

    /// `weir rollback`: the release before the stable one becomes stable
    /// again and takes all traffic.
    pub(super) async fn rollback(&self, service: &str) -> Result<ServiceStatus, Refusal> {
        let (current, previous) = {
            let state = self.state.lock().await;
            let Some(s) = state.services.get(service) else {
                return Err(not_found(format!("the target runs no service `{service}`")));
            };
            let current = s.stable().cloned();
            let previous = s
                .releases
                .iter()
                .rev()
                .find(|r| r.state == ReleaseState::Superseded)
                .cloned();
            (current, previous)
        };
        let Some(previous) = previous else {
            return Err(invalid(format!(
                "`{service}` has no earlier stable release to roll back to (`weir releases {service}` lists them)"
            )));
        };
        self.settle_on(service, &previous.version, &previous.launch, previous.replicas)
            .await?;
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        let now = now_ms();
        for r in s.releases.iter_mut() {
            if r.state == ReleaseState::Candidate
                || current
                    .as_ref()
                    .is_some_and(|c| c.version == r.version && r.state == ReleaseState::Stable)
            {
                r.state = ReleaseState::RolledBack;
                r.reason = Some("rolled back by hand (`weir rollback`)".into());
                r.changed_ms = now;
            }
        }
        if let Some(r) = s
            .releases
            .iter_mut()
            .rev()
            .find(|r| r.version == previous.version && r.state == ReleaseState::Superseded)
        {
            r.state = ReleaseState::Stable;
            r.changed_ms = now;
        }
        s.weights = [(previous.version.clone(), 100)].into_iter().collect();
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }
}
