//! RFC 9457 problem details: the one shape every HTTP error takes.
//!
//! Messages follow Materialize's three parts: `title` (short, factual, lower-case), `detail`
//! (context) and a `hint` extension (how to fix it). 5xx bodies stay generic; their cause is
//! logged once by the caller.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem+json body (RFC 9457), with careflow's `code` and `hint` extensions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// The stable snake_case code that also ends `type` (for clients that switch on it).
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after: Option<u32>,
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(&'static str, String)>,
    /// Further members (RFC 9457 extensions), such as `/readyz`'s `consumers`.
    #[serde(flatten)]
    #[schema(ignore)]
    extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem of `status` whose `type` is `https://careflow.dev/problems/{code}`.
    pub fn new(status: StatusCode, code: &str, title: impl Into<String>) -> Self {
        Self {
            kind: format!("https://careflow.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: None,
            hint: None,
            retry_after: None,
            headers: Vec::new(),
            extensions: serde_json::Map::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds an extension member `name` to the body.
    pub fn extension(mut self, name: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(name.to_owned(), value);
        self
    }

    /// Adds a `Retry-After` header (seconds), for 429 and 503.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a response header (e.g. `WWW-Authenticate` on a 401).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut builder = HttpResponseBuilder::new(status);
        builder.content_type(PROBLEM_JSON);
        if let Some(seconds) = self.retry_after {
            builder.insert_header(("Retry-After", seconds.to_string()));
        }
        for (name, value) in &self.headers {
            builder.insert_header((*name, value.clone()));
        }
        builder.json(self)
    }
}
