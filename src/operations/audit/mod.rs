//! What compliance auditors run: replay as of a time, tamper evidence, signed exports.
//!
//! - [`key`]: the server's Ed25519 signing key, generated into the data dir on first use.
//! - [`checkpoint`]: signed checkpoints of the log (position, hash, log digest), written by
//!   `serve` periodically and at shutdown, so that removing the newest events is evident.
//! - [`raw`]: reading stored rows *without* decoding them into events, in large batches, so a
//!   tampered row is a finding rather than a read error and verification runs at disk speed.
//! - [`verify`]: the whole-log check (`careflow audit verify`) and the one-stream check
//!   (`--stream`, `GET /v1/audit/verify`).
//! - [`replay`]: a stream's state as of a time, with the events that made it.
//! - [`export`]: NDJSON exports with a signed manifest, and their offline check.
//!
//! The decisions (what a broken link is, the log digest) are pure and live in
//! `careflow_aggregates::log_verifier` and `chain`; this module only reads, hashes in
//! parallel and reports. Nothing here writes events except the access record of an export.

pub mod access_log;
pub mod checkpoint;
pub mod export;
pub mod key;
pub mod raw;
pub mod replay;
pub mod verify;

use crate::store::StoreError;

/// Why an audit operation could not be carried out (as opposed to a *finding*, which is a
/// successful check that found tampering).
///
/// ### Handling
/// The CLI prints it and exits 2; the HTTP endpoint answers 503.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Occurs when the event store cannot be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Occurs when a database query outside the store (raw reads, checkpoints) fails.
    #[error("database: {0}")]
    Database(String),
    /// Occurs when a file (key, export, manifest) cannot be read or written.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// Occurs when a key or a manifest is not in the expected format.
    #[error("{0}")]
    Format(String),
}

impl AuditError {
    pub(crate) fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        AuditError::File {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn database(reason: impl std::fmt::Display) -> Self {
        AuditError::Database(reason.to_string())
    }
}

/// Connects to PostgreSQL with `search_path` set to careflow's schema; the connection task
/// runs on the current runtime.
///
/// # Errors
/// [`AuditError::Database`].
pub(crate) async fn pg_connect(
    url: &str,
    schema: &str,
) -> Result<tokio_postgres::Client, AuditError> {
    if !crate::config::is_identifier(schema) {
        return Err(AuditError::Format(format!(
            "invalid schema name {schema:?}"
        )));
    }
    let mut config = crate::store::pg_connect::PgConnect::from_url(url)
        .map_err(|e| AuditError::database(crate::error_chain::error_chain(&e)))?;
    config
        .config_mut()
        .options(format!("-c search_path={schema}"));
    config
        .connect("audit")
        .await
        .map_err(|e| AuditError::database(crate::store::postgres::describe_pg_error(&e)))
}
