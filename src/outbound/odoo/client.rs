//! Odoo's external JSON-RPC API (`POST {odoo_url}/jsonrpc`), as API-NOTES.md §1 describes it.
//!
//! One request is one `execute_kw` (one Odoo transaction). What comes back is classed here,
//! once, so the executor only asks [`OdooError::class`]:
//! - a JSON-RPC error envelope (HTTP 200 with `error`) is an answer from Odoo: its
//!   `data.name` says whether it is an authentication failure (`AccessDenied`,
//!   `AccessError`), a business refusal (`UserError`, `ValidationError`, `MissingError`, …:
//!   poison for that intent), or a concurrency failure Odoo itself gave up retrying
//!   (`psycopg2…`: retried);
//! - no connection, a timeout, an `https` Odoo whose certificate is not trusted (the system's
//!   roots plus `odoo_tls_ca_file`), an HTTP 5xx or a body that is not JSON-RPC: the call may
//!   or may not have committed (API-NOTES §5.2), so it is retried, and the executor finds a
//!   committed record again through its external id or natural key.
//!
//! A missing `result` key is Odoo's way of returning `None` (§1.3) and reads as `null`.
//! Transport failures count against the circuit breaker (service `odoo`); error envelopes do
//! not (Odoo answered).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use careflow_projections::odoo::{ErrorClass as Class, classify_error};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::config::{Config, Secret};
use crate::outbound::breaker::{BreakerSettings, CircuitBreaker, CircuitOpen};
use crate::tls::CaFileError;

/// The breaker's service label.
pub const SERVICE: &str = "odoo";

/// Where Odoo is and how careflow logs in.
#[derive(Debug, Clone)]
pub struct OdooSettings {
    /// `odoo_url`: the base `/jsonrpc` is appended to, `http` or `https`.
    pub url: String,
    /// `odoo_tls_ca_file`: a PEM file of CA certificates trusted for an `https` Odoo besides
    /// the system's (a hospital's own CA).
    pub ca_file: Option<PathBuf>,
    /// `odoo_db`.
    pub db: String,
    /// `odoo_user`: the integration user's login.
    pub user: String,
    /// `odoo_api_key`: the integration user's API key (Settings → Users → Account Security).
    pub api_key: Secret,
    /// Longest one exchange may take.
    pub timeout: Duration,
    pub breaker: BreakerSettings,
}

impl OdooSettings {
    /// The settings `config` names, or `None` when `odoo_url` is not set (no executor runs).
    /// The other keys default to the fake's login (`careflow`, `integration@careflow.test`)
    /// and an empty key, which a real Odoo refuses with AccessDenied: the executor then
    /// raises its authentication alert rather than refusing to start.
    pub fn from_config(config: &Config) -> Option<Self> {
        let url = config.odoo_url.clone()?;
        Some(Self {
            url,
            ca_file: config.odoo_tls_ca_file.clone(),
            db: config.odoo_db.clone().unwrap_or_else(|| "careflow".into()),
            user: config
                .odoo_user
                .clone()
                .unwrap_or_else(|| "integration@careflow.test".into()),
            api_key: config
                .odoo_api_key
                .clone()
                .unwrap_or_else(|| Secret::new("")),
            timeout: Duration::from_secs(30),
            breaker: BreakerSettings {
                failure_threshold: 5,
                cool_down: Duration::from_secs(5),
            },
        })
    }
}

/// How the executor must react to a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The credentials are refused: stop executing, alert, retry the login slowly.
    Auth,
    /// Odoo refused this record for a business reason: dead-letter the intent.
    Poison,
    /// Odoo is unreachable, overloaded or lost a race: retry with backoff.
    Retry,
}

/// Why a call to Odoo failed.
#[derive(Debug, thiserror::Error)]
pub enum OdooError {
    /// Occurs when `odoo_url` is not an http or https URL.
    #[error("odoo_url is not an http or https URL")]
    InvalidUrl,
    /// Occurs when `odoo_tls_ca_file` cannot be read or holds no usable certificate
    /// (`serve` refuses to start with it).
    #[error("odoo_tls_ca_file cannot be used")]
    CaFile(#[source] CaFileError),
    /// Occurs when the HTTP client cannot be built.
    #[error("the Odoo HTTP client cannot be built: {0}")]
    Client(#[source] reqwest::Error),
    /// Occurs on no connection, a reset or a timeout. Retried.
    #[error("Odoo cannot be reached: {0}")]
    Unreachable(String),
    /// Occurs on an HTTP status other than 200 (a proxy's 502, Odoo's 400 on a malformed
    /// request). 5xx is retried; 4xx is a careflow bug and poison.
    #[error("Odoo answered HTTP {status}")]
    Http { status: u16 },
    /// Occurs when a 200 body is not a JSON-RPC answer. Retried (a proxy may have answered).
    #[error("Odoo's answer is not JSON-RPC: {0}")]
    Malformed(String),
    /// Occurs when `common.authenticate` answers `false`: wrong login, key or database.
    #[error("Odoo refused the login of {user} on database {db}")]
    LoginRefused { user: String, db: String },
    /// Occurs when Odoo answers with a JSON-RPC error envelope; `name` is its `data.name`
    /// (`odoo.exceptions.ValidationError`), `message` its `data.message`.
    #[error("Odoo refused {model}.{method}: {name}: {message}")]
    Server {
        model: String,
        method: String,
        name: String,
        message: String,
    },
    /// Occurs while the breaker is open: nothing was sent.
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
}

impl OdooError {
    /// What the executor does about it (API-NOTES §5.2).
    pub fn class(&self) -> ErrorClass {
        match self {
            OdooError::InvalidUrl
            | OdooError::CaFile(_)
            | OdooError::Client(_)
            | OdooError::LoginRefused { .. } => ErrorClass::Auth,
            OdooError::Unreachable(_) | OdooError::Malformed(_) | OdooError::CircuitOpen(_) => {
                ErrorClass::Retry
            }
            OdooError::Http { status } if *status >= 500 => ErrorClass::Retry,
            OdooError::Http { .. } => ErrorClass::Poison,
            OdooError::Server { name, message, .. } => match classify_error(name, message) {
                Class::Auth => ErrorClass::Auth,
                Class::Retry => ErrorClass::Retry,
                // Only an `ir.model.data` create can race; the executor asks
                // `is_duplicate_xmlid` there. Anywhere else it is a refusal like any other.
                Class::Poison | Class::DuplicateXmlid => ErrorClass::Poison,
            },
        }
    }

    /// True for the unique-index refusal of an `ir.model.data` create (API-NOTES §3.3): another
    /// worker created the external id first; look it up again and use its record.
    pub fn is_duplicate_xmlid(&self) -> bool {
        matches!(self, OdooError::Server { name, message, .. }
            if classify_error(name, message) == Class::DuplicateXmlid)
    }

    /// A bounded word for metrics and logs (never Odoo's text).
    pub fn label(&self) -> &'static str {
        match self.class() {
            ErrorClass::Auth => "auth",
            ErrorClass::Poison => "poison",
            ErrorClass::Retry => "retry",
        }
    }
}

/// The JSON-RPC client. Cheap to clone; clones share the connection pool, the session's uid
/// and the breaker.
#[derive(Debug, Clone)]
pub struct OdooClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    settings: Arc<OdooSettings>,
    breaker: Arc<CircuitBreaker>,
    /// The uid `authenticate` returned (0: not logged in yet).
    uid: Arc<AtomicI64>,
    next_id: Arc<AtomicU64>,
}

impl OdooClient {
    /// A client with its own breaker (service `odoo`).
    ///
    /// # Errors
    /// [`OdooError::InvalidUrl`], [`OdooError::CaFile`] or [`OdooError::Client`].
    pub fn new(settings: OdooSettings) -> Result<Self, OdooError> {
        let base = reqwest::Url::parse(&settings.url).map_err(|_| OdooError::InvalidUrl)?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(OdooError::InvalidUrl);
        }
        let endpoint =
            reqwest::Url::parse(&format!("{}/jsonrpc", base.as_str().trim_end_matches('/')))
                .map_err(|_| OdooError::InvalidUrl)?;
        let http = crate::tls::http_client(settings.ca_file.as_deref())
            .map_err(OdooError::CaFile)?
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(OdooError::Client)?;
        let breaker = Arc::new(CircuitBreaker::new(SERVICE, settings.breaker));
        Ok(Self {
            http,
            endpoint,
            settings: Arc::new(settings),
            breaker,
            uid: Arc::new(AtomicI64::new(0)),
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    pub fn settings(&self) -> &OdooSettings {
        &self.settings
    }

    /// Whether a login has succeeded since the client was built (or last refused).
    pub fn is_authenticated(&self) -> bool {
        self.uid.load(Ordering::Relaxed) > 0
    }

    /// `common.authenticate(db, login, key, {})`: the uid, kept for later calls.
    ///
    /// # Errors
    /// [`OdooError::LoginRefused`] when Odoo answers `false`; transport errors as for any call.
    pub async fn authenticate(&self) -> Result<i64, OdooError> {
        let s = &self.settings;
        let result = self
            .rpc(
                "common",
                "authenticate",
                json!([s.db, s.user, s.api_key.expose(), {}]),
                ("common", "authenticate"),
            )
            .await?;
        match result.as_i64() {
            Some(uid) if uid > 0 => {
                self.uid.store(uid, Ordering::Relaxed);
                Ok(uid)
            }
            _ => {
                self.uid.store(0, Ordering::Relaxed);
                Err(OdooError::LoginRefused {
                    user: s.user.clone(),
                    db: s.db.clone(),
                })
            }
        }
    }

    /// `object.execute_kw(db, uid, key, model, method, args[, kwargs])`; logs in first when no
    /// uid is known. The result (`null` when Odoo sent no `result` key).
    ///
    /// # Errors
    /// [`OdooError`]; an `AccessDenied` forgets the uid so the next call logs in again.
    pub async fn execute_kw(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Option<Value>,
    ) -> Result<Value, OdooError> {
        let mut uid = self.uid.load(Ordering::Relaxed);
        if uid <= 0 {
            uid = self.authenticate().await?;
        }
        let s = &self.settings;
        let mut params = vec![
            json!(s.db),
            json!(uid),
            json!(s.api_key.expose()),
            json!(model),
            json!(method),
            args,
        ];
        if let Some(kwargs) = kwargs {
            params.push(kwargs);
        }
        let result = self
            .rpc(
                "object",
                "execute_kw",
                Value::Array(params),
                (model, method),
            )
            .await;
        if let Err(OdooError::Server { name, .. }) = &result
            && name == "odoo.exceptions.AccessDenied"
        {
            self.uid.store(0, Ordering::Relaxed);
        }
        result
    }

    /// One JSON-RPC exchange through the breaker.
    async fn rpc(
        &self,
        service: &str,
        method: &str,
        args: Value,
        what: (&str, &str),
    ) -> Result<Value, OdooError> {
        let permit = self.breaker.try_acquire()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "jsonrpc": "2.0",
            "method": "call",
            "id": id,
            "params": {"service": service, "method": method, "args": args},
        });
        let result = self.send(&body, what).await;
        match &result {
            Err(
                OdooError::Unreachable(_)
                | OdooError::Malformed(_)
                | OdooError::Http { status: 500.. },
            ) => permit.failed(),
            _ => permit.succeeded(),
        }
        result
    }

    async fn send(&self, body: &Value, (model, method): (&str, &str)) -> Result<Value, OdooError> {
        let transport = |error: reqwest::Error| {
            if error.is_timeout() {
                OdooError::Unreachable(format!("no answer within {:?}", self.settings.timeout))
            } else {
                OdooError::Unreachable(error.without_url().to_string())
            }
        };
        let response = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(OdooError::Http { status });
        }
        let bytes = response.bytes().await.map_err(transport)?;
        parse_answer(&bytes, model, method)
    }
}

/// Reads a 200 body: the `result` (absent = `null`) or the error envelope.
///
/// # Errors
/// [`OdooError::Server`] for an error envelope, [`OdooError::Malformed`] for anything else.
pub fn parse_answer(bytes: &[u8], model: &str, method: &str) -> Result<Value, OdooError> {
    let answer: Value = serde_json::from_slice(bytes)
        .map_err(|error| OdooError::Malformed(format!("not JSON: {error}")))?;
    let Some(object) = answer.as_object() else {
        return Err(OdooError::Malformed("not a JSON object".into()));
    };
    if let Some(error) = object.get("error") {
        let data = error.get("data");
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        return Err(OdooError::Server {
            model: model.to_owned(),
            method: method.to_owned(),
            name: text(data.and_then(|d| d.get("name"))).unwrap_or_else(|| "unknown".to_owned()),
            message: text(data.and_then(|d| d.get("message")))
                .or_else(|| text(error.get("message")))
                .unwrap_or_default(),
        });
    }
    Ok(object.get("result").cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_result_reads_as_null_and_a_present_one_as_is() {
        assert_eq!(
            parse_answer(br#"{"jsonrpc":"2.0","id":14}"#, "m", "x").unwrap(),
            Value::Null
        );
        assert_eq!(
            parse_answer(br#"{"jsonrpc":"2.0","id":5,"result":[42,43]}"#, "m", "x").unwrap(),
            json!([42, 43])
        );
    }

    #[test]
    fn error_envelopes_are_classed_by_data_name() {
        let envelope = |name: &str, message: &str| {
            json!({"jsonrpc":"2.0","id":7,"error":{"code":200,"message":"Odoo Server Error",
                "data":{"name":name,"debug":"...","message":message,"arguments":[message],"context":{}}}})
            .to_string()
        };
        let parse = |name: &str, message: &str| {
            parse_answer(envelope(name, message).as_bytes(), "res.partner", "create").unwrap_err()
        };
        assert_eq!(
            parse("odoo.exceptions.AccessDenied", "Access Denied").class(),
            ErrorClass::Auth
        );
        assert_eq!(
            parse("odoo.exceptions.AccessError", "Private methods").class(),
            ErrorClass::Auth
        );
        assert_eq!(
            parse("odoo.exceptions.UserError", "You need to add a line").class(),
            ErrorClass::Poison
        );
        assert_eq!(
            parse("builtins.ValueError", "External ID not found").class(),
            ErrorClass::Poison
        );
        assert_eq!(
            parse(
                "psycopg2.errors.SerializationFailure",
                "could not serialize"
            )
            .class(),
            ErrorClass::Retry
        );
        let duplicate = parse(
            "odoo.exceptions.ValidationError",
            "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"",
        );
        assert!(duplicate.is_duplicate_xmlid());
        assert_eq!(duplicate.class(), ErrorClass::Poison);
        assert!(!parse("odoo.exceptions.ValidationError", "other").is_duplicate_xmlid());
        match parse("odoo.exceptions.UserError", "no lines") {
            OdooError::Server {
                name,
                message,
                model,
                method,
            } => {
                assert_eq!(
                    (name.as_str(), message.as_str()),
                    ("odoo.exceptions.UserError", "no lines")
                );
                assert_eq!((model.as_str(), method.as_str()), ("res.partner", "create"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transport_failures_and_5xx_are_retried_4xx_and_junk_are_not_silent() {
        assert_eq!(OdooError::Http { status: 502 }.class(), ErrorClass::Retry);
        assert_eq!(OdooError::Http { status: 400 }.class(), ErrorClass::Poison);
        assert_eq!(
            OdooError::Unreachable("refused".into()).class(),
            ErrorClass::Retry
        );
        assert!(matches!(
            parse_answer(b"Invalid JSON data", "m", "x"),
            Err(OdooError::Malformed(_))
        ));
        assert!(matches!(
            parse_answer(b"[1]", "m", "x"),
            Err(OdooError::Malformed(_))
        ));
    }

    #[test]
    fn http_and_https_urls_are_accepted_and_a_bad_ca_file_is_refused() {
        let settings = |url: &str| OdooSettings {
            url: url.into(),
            ca_file: None,
            db: "careflow".into(),
            user: "u".into(),
            api_key: Secret::new("k"),
            timeout: Duration::from_secs(1),
            breaker: BreakerSettings::default(),
        };
        assert!(matches!(
            OdooClient::new(settings("ftp://x")),
            Err(OdooError::InvalidUrl)
        ));
        let client = OdooClient::new(settings("http://odoo.example/")).unwrap();
        assert_eq!(client.endpoint.as_str(), "http://odoo.example/jsonrpc");
        let client = OdooClient::new(settings("https://odoo.example")).unwrap();
        assert_eq!(client.endpoint.as_str(), "https://odoo.example/jsonrpc");
        let error = OdooClient::new(OdooSettings {
            ca_file: Some(PathBuf::from("/nonexistent/odoo-ca.pem")),
            ..settings("https://odoo.example")
        })
        .unwrap_err();
        assert!(matches!(error, OdooError::CaFile(_)), "{error:?}");
        assert!(
            crate::error_chain::error_chain(&error).starts_with(
                "odoo_tls_ca_file cannot be used: the CA file /nonexistent/odoo-ca.pem cannot be read: "
            ),
            "{error}"
        );
    }
}
