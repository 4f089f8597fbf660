//! A run's artifacts: listed with their digests, downloaded with the
//! digest in `Repr-Digest` (RFC 9530) and `ETag`, so a client can check
//! what it got.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;

use super::App;
use super::auth::Caller;
use super::problem::Problem;
use crate::store::serving::ArtifactRecord;

/// Bytes read from an artifact's file at a time.
const CHUNK: usize = 64 * 1024;

/// A run's artifacts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Artifacts {
    /// In the order they were kept.
    pub artifacts: Vec<ArtifactRecord>,
}

/// A run's artifacts, with their digests.
#[utoipa::path(get, path = "/api/v1/runs/{id}/artifacts", tag = "artifacts", security(("token" = [])),
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The artifacts", body = Artifacts),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Artifacts>, Problem> {
    super::runs::visible(&app, &caller, &id).await?;
    let artifacts = app.db.call(move |s| s.artifacts(&id)).await?;
    Ok(axum::Json(Artifacts { artifacts }))
}

/// One artifact's bytes.
#[utoipa::path(get, path = "/api/v1/runs/{id}/artifacts/{stage}/{name}", tag = "artifacts", security(("token" = [])),
    params(
        ("id" = String, Path, description = "The run's id"),
        ("stage" = String, Path, description = "The stage that kept it"),
        ("name" = String, Path, description = "Its name"),
    ),
    responses(
        (status = 200, description = "The artifact", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("Repr-Digest" = String, description = "sha-256 of the bytes (RFC 9530)"), ("ETag" = String, description = "Its SHA-256, hex"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, stage or artifact for this token", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The run's artifacts were pruned", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn download(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, stage, name)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    super::runs::visible(&app, &caller, &id).await?;
    let run = id.clone();
    let artifacts = app.db.call(move |s| s.artifacts(&run)).await?;
    let Some(artifact) = artifacts.into_iter().find(|a| a.stage == stage && a.name == name) else {
        return Err(Problem::not_found(format!(
            "run {id} has no artifact `{name}` of stage `{stage}`"
        )));
    };
    let file = tokio::fs::File::open(&artifact.stored).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Problem::new(
                StatusCode::GONE,
                format!("artifact `{name}` of run {id} is no longer kept"),
            )
        } else {
            Problem::internal(format!("cannot read artifact `{name}` of run {id}: {e}"))
        }
    })?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if let Ok(raw) = hex::decode(&artifact.sha256) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        if let Ok(v) = HeaderValue::from_str(&format!("sha-256=:{b64}:")) {
            headers.insert("repr-digest", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", artifact.sha256)) {
        headers.insert(header::ETAG, v);
    }
    let file_name = std::path::Path::new(&artifact.path)
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\\', '\r', '\n'], "_"))
        .unwrap_or_else(|| "artifact".into());
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
