//! The image's config and manifest, per the OCI image spec (v1.1): JSON
//! written with keys in a fixed order and no timestamps, so the same
//! inputs give the same bytes and the same digest.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The manifest's media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A gzip layer's media type.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `digest` is `sha256:` and 64 lower-case hex digits (what goes
/// into a request's path).
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `bytes` are what `digest` says.
pub fn check_digest(want: &str, bytes: &[u8]) -> Result<(), String> {
    let got = digest(bytes);
    if got != want {
        return Err(format!("the registry sent {got} where {want} was asked for"));
    }
    Ok(())
}

/// A content descriptor.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// What the image runs, from `with`.
#[derive(Debug, Default, Clone)]
pub struct Runs {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env`, added to (and replacing keys of) the base's.
    pub env: BTreeMap<String, String>,
    /// An exposed TCP port.
    pub port: Option<u16>,
    /// `Labels`, added to the base's.
    pub labels: BTreeMap<String, String>,
    /// `User`.
    pub user: Option<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
}

/// The base image as read from its registry: its config (JSON) and its
/// layers' descriptors.
#[derive(Debug, Clone, Default)]
pub struct Base {
    /// Its config, `{}` for scratch.
    pub config: Value,
    /// Its layers, in order.
    pub layers: Vec<Descriptor>,
}

/// The config for `base` plus one layer (`diff_id`), running `runs`.
pub fn config(base: &Base, runs: &Runs, diff_id: &str) -> Result<Vec<u8>, String> {
    let mut c = match &base.config {
        Value::Object(m) => m.clone(),
        Value::Null => serde_json::Map::new(),
        _ => return Err("the base image's config is not a JSON object".into()),
    };
    let architecture = c
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("amd64")
        .to_string();
    let os = c.get("os").and_then(Value::as_str).unwrap_or("linux").to_string();
    let mut inner = match c.remove("config") {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    // Env: the base's, then ours over it, in the base's order.
    let mut env: Vec<(String, String)> = inner
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &runs.env {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    if !env.is_empty() {
        inner.insert(
            "Env".into(),
            json!(env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
        );
    }
    if let Some(e) = &runs.entrypoint {
        inner.insert("Entrypoint".into(), json!(e));
        // A new entrypoint does not take the base's arguments.
        if runs.cmd.is_none() {
            inner.remove("Cmd");
        }
    }
    if let Some(cmd) = &runs.cmd {
        inner.insert("Cmd".into(), json!(cmd));
    }
    if let Some(p) = runs.port {
        let mut ports = match inner.remove("ExposedPorts") {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        ports.insert(format!("{p}/tcp"), json!({}));
        inner.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if !runs.labels.is_empty() {
        let mut labels = match inner.remove("Labels") {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        for (k, v) in &runs.labels {
            labels.insert(k.clone(), json!(v));
        }
        inner.insert("Labels".into(), Value::Object(labels));
    }
    if let Some(u) = &runs.user {
        inner.insert("User".into(), json!(u));
    }
    if let Some(w) = &runs.workdir {
        inner.insert("WorkingDir".into(), json!(w));
    }
    let mut diff_ids: Vec<Value> = c
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if diff_ids.len() != base.layers.len() {
        return Err(format!(
            "the base image's config lists {} layer(s) and its manifest {}",
            diff_ids.len(),
            base.layers.len()
        ));
    }
    diff_ids.push(json!(diff_id));
    c.insert("architecture".into(), json!(architecture));
    c.insert("os".into(), json!(os));
    c.insert("config".into(), Value::Object(inner));
    c.insert("rootfs".into(), json!({"type": "layers", "diff_ids": diff_ids}));
    // The base's history would no longer match its layers one for one
    // with ours added; a history entry per layer keeps tools happy.
    if let Some(Value::Array(mut history)) = c.remove("history") {
        history.push(json!({"created_by": "weir oci-image"}));
        c.insert("history".into(), Value::Array(history));
    }
    // No `created`: a timestamp would make every build a new digest.
    c.remove("created");
    // serde_json's map keeps keys sorted (no preserve_order): fixed bytes.
    serde_json::to_vec(&Value::Object(c)).map_err(|e| e.to_string())
}

/// The manifest for `config` and `layers`.
pub fn manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest<'a> {
        schema_version: u32,
        media_type: &'a str,
        config: &'a Descriptor,
        layers: &'a [Descriptor],
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        annotations: &'a BTreeMap<String, String>,
    }
    serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MANIFEST,
        config,
        layers,
        annotations,
    })
    .map_err(|e| e.to_string())
}

/// A base image's manifest as (config descriptor, layers), after picking
/// linux/amd64 from an index; `Err(Some(digest))` when `bytes` is an
/// index and that manifest must be read next.
pub fn read_manifest(
    media: &str,
    bytes: &[u8],
) -> Result<(Descriptor, Vec<Descriptor>), Result<String, String>> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| Err(format!("the base manifest is not JSON: {e}")))?;
    let media = v.get("mediaType").and_then(Value::as_str).unwrap_or(media);
    if media.contains("index") || media.contains("manifest.list") {
        let pick = v
            .get("manifests")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find(|m| {
                    let p = &m["platform"];
                    p["os"] == "linux" && p["architecture"] == "amd64"
                })
            })
            .and_then(|m| m["digest"].as_str())
            .filter(|d| valid_digest(d))
            .ok_or_else(|| Err("the base image has no linux/amd64 manifest".to_string()))?;
        return Err(Ok(pick.to_string()));
    }
    let descriptor = |d: &Value| -> Result<Descriptor, Result<String, String>> {
        let media = d["mediaType"].as_str().unwrap_or_default();
        // Docker's media types name the same bytes as OCI's.
        let media = match media {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => LAYER_GZIP,
            "application/vnd.docker.container.image.v1+json" => CONFIG,
            m => m,
        };
        Ok(Descriptor {
            media_type: media.to_string(),
            digest: d["digest"]
                .as_str()
                .filter(|d| valid_digest(d))
                .ok_or_else(|| Err("a descriptor without a sha256 digest".to_string()))?
                .to_string(),
            size: d["size"]
                .as_u64()
                .ok_or_else(|| Err("a descriptor without a size".to_string()))?,
        })
    };
    let config = descriptor(&v["config"])?;
    let layers = v["layers"]
        .as_array()
        .map(|a| a.iter().map(descriptor).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    Ok((config, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_config_has_what_with_says_and_no_time() {
        let mut runs = Runs {
            entrypoint: Some(vec!["/app".into()]),
            port: Some(8080),
            ..Runs::default()
        };
        runs.env.insert("PORT".into(), "8080".into());
        runs.labels
            .insert("org.opencontainers.image.version".into(), "1.0".into());
        let bytes = config(&Base::default(), &runs, "sha256:00").expect("config");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["architecture"], "amd64");
        assert_eq!(v["config"]["Entrypoint"], json!(["/app"]));
        assert_eq!(v["config"]["Env"], json!(["PORT=8080"]));
        assert_eq!(v["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:00"]));
        assert!(v.get("created").is_none());
        assert_eq!(
            bytes,
            config(&Base::default(), &runs, "sha256:00").expect("again")
        );
    }

    #[test]
    fn a_base_keeps_its_layers_and_env_under_ours() {
        let base = Base {
            config: json!({"architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
                "config": {"Env": ["PATH=/bin", "MODE=a"], "Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:11"]},
                "history": [{"created_by": "base"}]}),
            layers: vec![Descriptor {
                media_type: LAYER_GZIP.into(),
                digest: "sha256:aa".into(),
                size: 1,
            }],
        };
        let mut runs = Runs {
            entrypoint: Some(vec!["/app".into()]),
            ..Runs::default()
        };
        runs.env.insert("MODE".into(), "b".into());
        let v: Value =
            serde_json::from_slice(&config(&base, &runs, "sha256:22").expect("config")).expect("json");
        assert_eq!(v["config"]["Env"], json!(["PATH=/bin", "MODE=b"]));
        assert!(
            v["config"].get("Cmd").is_none(),
            "a new entrypoint drops the base's Cmd"
        );
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:11", "sha256:22"]));
        assert_eq!(v["history"].as_array().map(Vec::len), Some(2));
        assert!(v.get("created").is_none());
    }

    #[test]
    fn an_index_points_at_its_linux_amd64_manifest() {
        let index = json!({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"digest": format!("sha256:{}", "a".repeat(64)), "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": format!("sha256:{}", "b".repeat(64)), "platform": {"os": "linux", "architecture": "amd64"}}]});
        let bytes = serde_json::to_vec(&index).expect("json");
        assert_eq!(
            read_manifest("", &bytes).err(),
            Some(Ok(format!("sha256:{}", "b".repeat(64))))
        );
        // A digest that is not one never reaches a request's path.
        let bad = json!({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"digest": "sha256:../../x", "platform": {"os": "linux", "architecture": "amd64"}}]});
        let bytes = serde_json::to_vec(&bad).expect("json");
        assert!(matches!(read_manifest("", &bytes), Err(Err(_))));
    }
}
