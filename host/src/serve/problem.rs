//! Every refusal of the API, as `application/problem+json` (RFC 9457): a
//! status, a title, what went wrong, and the field that is wrong when one
//! is.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status
    /// says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The request field that is wrong: a JSON path into the body
    /// (`ref`, `stages[0].name`) or a query parameter's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before trying again (429).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "retry-after")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// The same problem, naming the wrong `field`.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into()).filter(|f: &String| !matches!(f.as_str(), "" | "." | "?"));
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404, for what does not exist and for what the caller may not see
    /// (another tenant's run answers exactly like a missing one).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 409: the resource is not in a state that allows it.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 500, for people: what failed inside the server (logged in full).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("request failed: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the server could not answer: {detail}"),
        )
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NoSuchRun(id) => Problem::not_found(format!("no run `{id}`")),
            other => Problem::internal(other),
        }
    }
}

/// A JSON request body as `T`, or the 400 that names the field that is
/// wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let field = match (field.as_str(), missing_field(&inner.to_string())) {
            (".", Some(missing)) => missing,
            (path, Some(missing)) => format!("{path}.{missing}"),
            (path, None) => path.to_string(),
        };
        Problem::bad_request(format!("malformed request body: {inner}")).field(field)
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("malformed request body: {e}")))?;
    Ok(value)
}

/// serde's "missing field `x`" names the field outside its path.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        repository: String,
        options: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        jobs: u32,
    }

    #[test]
    fn a_malformed_body_names_its_field() {
        let e = parse_json::<Body>(br#"{"repository": "app", "options": {"jobs": "many"}}"#).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (400, Some("options.jobs")));
        let e = parse_json::<Body>(br#"{"options": {"jobs": 1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("repository"));
        let e = parse_json::<Body>(br#"{"repository": "app", "options": {"jobs": 1}, "x": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("x"));
        let e = parse_json::<Body>(b"{").unwrap_err();
        assert_eq!((e.status, e.field), (400, None));
    }
}
