//! `oci-image`: builds an OCI image from files in the workspace and pushes
//! it to a registry, with no container daemon. The files become one layer
//! (a reproducible tar, gzip-compressed) on top of `scratch` or of a base
//! image read from a registry; the config and manifest follow the OCI
//! image spec; the push uses the distribution API over `wasi:http`, so
//! the registry must be granted (`allow = { network = ["HOST:PORT"] }`).
//! The same files and settings give the same digest, every time.
//!
//! Outputs: `digest` (`sha256:…`, the manifest's), `image`
//! (`REGISTRY/REPOSITORY@sha256:…`, what the `container` deployer runs),
//! `reference` (`REGISTRY/REPOSITORY:TAG`) and `size` (bytes pushed).

mod http;
mod image;
mod layer;
mod registry;

use std::collections::BTreeMap;

use serde::Deserialize;
use weir_sdk::{Capability, Context, Failure, Manifest, Plugin, Stage, StageOutput};

use image::{Base, Descriptor, Runs};
use registry::{Reference, Registry};

struct OciImage;

/// Largest file put into a layer.
const MAX_FILE: u64 = 256 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    /// Where to push: `REGISTRY/REPOSITORY[:TAG]`.
    image: String,
    /// `scratch`, or an image in a registry.
    #[serde(default = "scratch")]
    base: String,
    /// The files: workspace path → path in the image.
    files: Vec<File>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    workdir: Option<String>,
    /// A secret holding base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
    /// A secret holding a bearer token.
    #[serde(default)]
    token: Option<String>,
    /// As `auth`, for a base image in another registry.
    #[serde(default)]
    base_auth: Option<String>,
    /// As `token`, for a base image in another registry.
    #[serde(default)]
    base_token: Option<String>,
    /// Plain HTTP (default: for a registry on this machine only).
    #[serde(default)]
    plain_http: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Relative to the workspace.
    from: String,
    /// Absolute, in the image.
    to: String,
    /// Octal permission bits, e.g. "0755" (default 0755 for the
    /// entrypoint's program, 0644 otherwise).
    #[serde(default)]
    mode: Option<String>,
}

fn scratch() -> String {
    "scratch".into()
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "required": ["image", "files"],
  "properties": {
    "image": {"type": "string", "description": "Where to push: REGISTRY/REPOSITORY[:TAG], e.g. \"127.0.0.1:5000/web:1.0\" (tag default: latest)"},
    "base": {"type": "string", "description": "\"scratch\" (default) or a base image in a registry, best pinned: REGISTRY/REPOSITORY@sha256:HEX"},
    "files": {"type": "array", "minItems": 1, "items": {"type": "object", "additionalProperties": false, "required": ["from", "to"],
      "properties": {"from": {"type": "string", "description": "A file in the workspace"}, "to": {"type": "string", "pattern": "^/", "description": "Its path in the image"},
        "mode": {"type": "string", "pattern": "^0?[0-7]{3,4}$", "description": "Octal permissions (default 0755 for the entrypoint, 0644 otherwise)"}}}},
    "entrypoint": {"type": "array", "items": {"type": "string"}},
    "cmd": {"type": "array", "items": {"type": "string"}},
    "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "The TCP port the image exposes"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "user": {"type": "string"},
    "workdir": {"type": "string", "pattern": "^/"},
    "auth": {"type": "string", "description": "The name of a secret holding base64 of USER:PASSWORD (Basic, or for the registry's token service)"},
    "token": {"type": "string", "description": "The name of a secret holding a bearer token"},
    "base-auth": {"type": "string", "description": "As auth, for a base image in another registry (auth and token go only to the registry pushed to)"},
    "base-token": {"type": "string", "description": "As token, for a base image in another registry"},
    "plain-http": {"type": "boolean", "description": "Talk plain HTTP to the registry (default: only to one on 127.0.0.1 or localhost)"}
  }
}"#;

impl Plugin for OciImage {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage, [Capability::Network, Capability::Secrets]);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure::new(message.into())
}

/// The files of `config`, read from the workspace.
fn entries(config: &Config) -> Result<Vec<layer::Entry>, Failure> {
    let program = config.entrypoint.as_ref().and_then(|e| e.first()).cloned();
    let mut out = Vec::new();
    for f in &config.files {
        layer::check_path(&f.to).map_err(fail)?;
        if f.from.starts_with('/') || f.from.split('/').any(|p| p == "..") {
            return Err(fail(format!(
                "`{}`: `from` is a path inside the workspace, without `..`",
                f.from
            )));
        }
        let meta = std::fs::metadata(&f.from)
            .map_err(|e| fail(format!("cannot read `{}` from the workspace: {e}", f.from)))?;
        if !meta.is_file() {
            return Err(fail(format!(
                "`{}` is not a file; name each file of the image",
                f.from
            )));
        }
        if meta.len() > MAX_FILE {
            return Err(fail(format!(
                "`{}` is {} MiB; a file in an image may be at most {} MiB (limit `oci-file-size`)",
                f.from,
                meta.len() >> 20,
                MAX_FILE >> 20
            )));
        }
        let bytes = std::fs::read(&f.from).map_err(|e| fail(format!("cannot read `{}`: {e}", f.from)))?;
        let mode = match &f.mode {
            Some(m) => u32::from_str_radix(m, 8)
                .map_err(|_| fail(format!("mode `{m}` of `{}` is not octal", f.to)))?,
            None if program.as_deref() == Some(f.to.as_str()) => 0o755,
            None => 0o644,
        };
        out.push(layer::Entry {
            path: f.to.clone(),
            mode,
            bytes,
        });
    }
    Ok(out)
}

/// Open secret `name` (the handle must live while its placeholder is used).
fn secret(name: &Option<String>, what: &str) -> Result<Option<weir_sdk::secrets::Secret>, Failure> {
    name.as_ref()
        .map(|n| {
            weir_sdk::secrets::open(n).map_err(|e| {
                fail(format!(
                    "cannot open the secret `{n}` named by `{what}`: {e:?} (grant it with allow = {{ secrets = [\"{n}\"] }})"
                ))
            })
        })
        .transpose()
}

/// Read the base image: its config and layers (empty for scratch).
fn read_base(base: &Reference, registry: &mut Registry) -> Result<Base, Failure> {
    let reference = base
        .digest
        .clone()
        .or_else(|| base.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (media, bytes) = registry.manifest(&base.repository, &reference).map_err(fail)?;
    if let Some(d) = &base.digest {
        image::check_digest(d, &bytes).map_err(fail)?;
    }
    let (config, layers) = match image::read_manifest(&media, &bytes) {
        Ok(m) => m,
        Err(Err(e)) => return Err(fail(e)),
        Err(Ok(pick)) => {
            let (media, bytes) = registry.manifest(&base.repository, &pick).map_err(fail)?;
            image::check_digest(&pick, &bytes).map_err(fail)?;
            image::read_manifest(&media, &bytes)
                .map_err(|e| fail(e.unwrap_or_else(|d| format!("an index inside an index ({d})"))))?
        }
    };
    let config = registry.blob(&base.repository, &config.digest).map_err(fail)?;
    let config = serde_json::from_slice(&config)
        .map_err(|e| fail(format!("the base image's config is not JSON: {e}")))?;
    Ok(Base { config, layers })
}

impl Stage for OciImage {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        let target = Reference::parse(&config.image).map_err(fail)?;
        if target.digest.is_some() {
            return Err(fail(format!(
                "`image = \"{}\"` names a digest; name where to push (REGISTRY/REPOSITORY[:TAG]): the digest is what this stage finds out",
                config.image
            )));
        }
        let tag = target.tag.clone().unwrap_or_else(|| "latest".into());
        let plain = config.plain_http.unwrap_or(target.loopback());
        let auth_secret = secret(&config.auth, "auth")?;
        let token_secret = secret(&config.token, "token")?;
        let basic = auth_secret.as_ref().map(|s| s.placeholder());
        let token = token_secret.as_ref().map(|s| s.placeholder());
        // The push credentials go only to the registry pushed to; a base
        // elsewhere gets its own, or none.
        let base_auth_secret = secret(&config.base_auth, "base-auth")?;
        let base_token_secret = secret(&config.base_token, "base-token")?;
        let base_basic = base_auth_secret.as_ref().map(|s| s.placeholder());
        let base_bearer = base_token_secret.as_ref().map(|s| s.placeholder());

        let files = entries(&config)?;
        weir_sdk::log::progress(1, Some(4), "building the layer");
        let built = layer::build(&files).map_err(fail)?;
        let runs = Runs {
            entrypoint: config.entrypoint.clone(),
            cmd: config.cmd.clone(),
            env: config
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect(),
            port: config.port,
            labels: config.labels.clone(),
            user: config.user.clone(),
            workdir: config.workdir.clone(),
        };

        let mut registry = Registry::new(&target.registry, plain, basic.clone(), token.clone());
        let mut annotations = BTreeMap::new();
        let (base, base_ref) = if config.base == "scratch" {
            (Base::default(), None)
        } else {
            weir_sdk::log::progress(2, Some(4), &format!("reading the base image {}", config.base));
            let b = Reference::parse(&config.base).map_err(fail)?;
            let base = if b.registry == target.registry {
                read_base(&b, &mut registry)?
            } else {
                let mut other =
                    Registry::new(&b.registry, b.loopback(), base_basic.clone(), base_bearer.clone());
                read_base(&b, &mut other)?
            };
            annotations.insert(
                "org.opencontainers.image.base.name".to_string(),
                config.base.clone(),
            );
            (base, Some(b))
        };
        let config_bytes = image::config(&base, &runs, &built.diff_id).map_err(fail)?;
        let config_desc = Descriptor {
            media_type: image::CONFIG.into(),
            digest: image::digest(&config_bytes),
            size: config_bytes.len() as u64,
        };
        let mut layers = base.layers.clone();
        layers.push(Descriptor {
            media_type: image::LAYER_GZIP.into(),
            digest: built.digest.clone(),
            size: built.blob.len() as u64,
        });
        let manifest = image::manifest(&config_desc, &layers, &annotations).map_err(fail)?;
        let digest = image::digest(&manifest);

        weir_sdk::log::progress(3, Some(4), &format!("pushing to {}", target.registry));
        let mut sent = 0u64;
        // The base's layers: mounted from its repository when it is in the
        // same registry, else copied over.
        if let Some(b) = &base_ref {
            for l in &base.layers {
                if b.registry == target.registry {
                    if !registry
                        .mount(&target.repository, &l.digest, &b.repository)
                        .map_err(fail)?
                    {
                        // A registry that does not mount: copy the blob.
                        let bytes = registry.blob(&b.repository, &l.digest).map_err(fail)?;
                        registry
                            .put_blob(&target.repository, &l.digest, &bytes)
                            .map_err(fail)?;
                        sent += l.size;
                    }
                } else if !registry.has_blob(&target.repository, &l.digest).map_err(fail)? {
                    let mut other =
                        Registry::new(&b.registry, b.loopback(), base_basic.clone(), base_bearer.clone());
                    let bytes = other.blob(&b.repository, &l.digest).map_err(fail)?;
                    registry
                        .put_blob(&target.repository, &l.digest, &bytes)
                        .map_err(fail)?;
                    sent += l.size;
                }
            }
        }
        if registry
            .put_blob(&target.repository, &built.digest, &built.blob)
            .map_err(fail)?
        {
            sent += built.blob.len() as u64;
        }
        if registry
            .put_blob(&target.repository, &config_desc.digest, &config_bytes)
            .map_err(fail)?
        {
            sent += config_bytes.len() as u64;
        }
        let said = registry
            .put_manifest(&target.repository, &tag, image::MANIFEST, &manifest)
            .map_err(fail)?;
        if let Some(said) = said.filter(|s| *s != digest) {
            return Err(fail(format!(
                "the registry stored the manifest as {said}, not {digest}: it changed the bytes, so the image cannot be pinned"
            )));
        }
        weir_sdk::log::progress(4, Some(4), "pushed");
        let size: u64 = layers.iter().map(|l| l.size).sum::<u64>() + config_desc.size + manifest.len() as u64;
        let pinned = format!("{}/{}@{digest}", target.registry, target.repository);
        let reference = format!("{}/{}:{tag}", target.registry, target.repository);
        weir_sdk::log::info(&format!(
            "pushed {reference} as {digest}: {} layer(s), {size} bytes, {sent} bytes sent in {} request(s)",
            layers.len(),
            registry.requests
        ));
        Ok(StageOutput::new()
            .output("digest", digest.clone())
            .output("image", pinned.clone())
            .output("reference", reference.clone())
            .output("size", size.to_string())
            .summary(format!(
                "pushed {reference} ({}, {} KiB)",
                &digest[..19],
                size.div_ceil(1024)
            )))
    }
}

weir_sdk::export_stage!(OciImage);
