//! The files of a node's data dir, and how each is copied while the node may be running: what
//! `careflow backup` and `restore` carry, and what `store copy` writes for a KurrentDB node.
//!
//! There are two kinds. **Secrets** (`master_key`, `audit_signing_key`, `jwt_secret`) are
//! written once and never change; a copy takes them as they are, owner-only, and never
//! overwrites a different one. **SQLite files** (the event store on SQLite, the side stores)
//! change while a node serves; each is copied with `VACUUM INTO`, which reads one consistent
//! snapshot of the file (a read transaction on its WAL) and never blocks the writer.
//!
//! Files are copied one after the other, so they are consistent each on its own, not with
//! each other. [`backup_order`] puts them in the one order that keeps a backup usable: what
//! *follows* the log (views, checkpoints, dead letters, idempotency records, snapshots: each
//! records how far into the log it got) before the log, so none of them is ahead of the
//! restored log; what the log *refers to* (the patient keys its personal data is encrypted
//! under) after it, so every key an event in the backup names is there.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use crate::config::{Config, StoreKind};
use crate::operations::audit::raw::KURRENT_CHECKPOINTS_FILE;
use crate::operations::{audit, dead_letters, personal_data};
use crate::runtime::consumers::checkpoint;
use crate::runtime::views::sqlite::VIEW_FILE_PREFIX;
use crate::secret_file;
use crate::store::{idempotency, snapshot};

/// How a file is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written once, never changed: copied as it is, owner-only.
    Secret,
    /// A SQLite database a running node may be writing: copied with `VACUUM INTO`.
    Sqlite,
}

/// One file of a data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    /// Its name in the data dir.
    pub name: String,
    pub kind: Kind,
}

/// Why a file could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum NodeFileError {
    /// Occurs when the destination already holds a different secret of the same name:
    /// another node's key, which a copy never overwrites.
    #[error("{} already exists with other contents", .0.display())]
    OtherSecret(PathBuf),
    /// Occurs when a file cannot be read or written.
    #[error("{}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Occurs when a SQLite file cannot be copied or opened.
    #[error("{}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

pub(crate) fn file_error(path: &Path, source: std::io::Error) -> NodeFileError {
    NodeFileError::File {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn sqlite_error(path: &Path, source: rusqlite::Error) -> NodeFileError {
    NodeFileError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// The secret files of a data dir (`config` names where each lives).
pub fn secrets(config: &Config) -> [PathBuf; 3] {
    [
        personal_data::master_key_path(config),
        audit::key::key_path(config),
        config.jwt_secret_path(),
    ]
}

/// Every file a node of `config`'s store keeps in its data dir, in the order a backup
/// copies them (see the module docs).
pub fn backup_order(config: &Config) -> Vec<NodeFile> {
    let sqlite = |name: &str| NodeFile {
        name: name.to_owned(),
        kind: Kind::Sqlite,
    };
    let mut files = Vec::new();
    // On PostgreSQL the side stores and the log are tables in the database (pg_dump's
    // work); only the secrets are files.
    if config.store != StoreKind::Postgres {
        files.extend(view_files(&config.data_dir).iter().map(|name| sqlite(name)));
        files.extend(
            [
                checkpoint::FILE,
                dead_letters::FILE,
                idempotency::FILE,
                snapshot::FILE,
            ]
            .map(sqlite),
        );
        match config.store {
            StoreKind::Sqlite => files.push(sqlite(&file_name(&config.sqlite_path()))),
            // The log is the KurrentDB server's (its own backups); the signed checkpoints
            // are here.
            StoreKind::Kurrentdb => files.push(sqlite(KURRENT_CHECKPOINTS_FILE)),
            StoreKind::Postgres => {}
        }
        files.push(sqlite(personal_data::keys::FILE));
    }
    files.extend(secrets(config).iter().map(|path| NodeFile {
        name: file_name(path),
        kind: Kind::Secret,
    }));
    files
}

/// The view files in `dir` (one per projection, `views::sqlite::view_file`), by name.
fn view_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(VIEW_FILE_PREFIX) && name.ends_with(".db"))
        .collect();
    names.sort();
    names
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Copies a secret file into `to_dir` under its own name unless it is absent; true when the
/// destination has it afterwards.
///
/// # Errors
/// [`NodeFileError::OtherSecret`] when the destination holds a different one; I/O errors.
pub fn copy_secret(from: &Path, to_dir: &Path) -> Result<bool, NodeFileError> {
    let Some(secret) = secret_file::read(from).map_err(|e| file_error(from, e))? else {
        return Ok(false);
    };
    let to = to_dir.join(from.file_name().unwrap_or_default());
    let there =
        secret_file::load_or_create(&to, || secret.clone()).map_err(|e| file_error(&to, e))?;
    if there == secret {
        Ok(true)
    } else {
        Err(NodeFileError::OtherSecret(to))
    }
}

/// A consistent copy of a SQLite file, which a running node may be writing, replacing what
/// is at `to`.
///
/// # Errors
/// [`NodeFileError`].
pub fn vacuum_into(from: &Path, to: &Path) -> Result<(), NodeFileError> {
    match std::fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(to, e)),
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sqlite_error(from, e))?;
    conn.execute("VACUUM INTO ?1", params![to.to_string_lossy()])
        .map_err(|e| sqlite_error(from, e))?;
    Ok(())
}
