//! `careflow backup <dir>` and `careflow restore <dir>`: a consistent online copy of what a
//! node keeps in its data dir, and bringing it back (docs/operations.md, "Backup and
//! restore").
//!
//! A backup holds every file of [`node_files::backup_order`], copied in that order while the
//! node serves (each SQLite file with `VACUUM INTO`, one consistent snapshot of it), and a
//! manifest naming each file with its size and SHA-256. The order makes the files agree with
//! each other although they are copied one after the other: everything that records how far
//! into the log it got is copied before the log, the patient keys the log refers to after it.
//! On SQLite the log and the signed audit checkpoints are one file, so they agree too.
//!
//! The master key is left out unless asked for: it must be kept apart from the data it
//! protects, or a backup would keep erased patients' data readable (docs/operations.md, "The
//! master key"). A restored node without it refuses to start until it is given.
//!
//! A restore checks every file against the manifest before it writes anything, refuses a data
//! dir that already holds a node's files, and writes each file under a temporary name, synced,
//! then renamed into place.
//!
//! On PostgreSQL the log and the side stores are tables: a backup holds the secret files only
//! and the database is backed up with pg_dump or point-in-time recovery. On KurrentDB the log
//! is the server's: a backup holds the side stores, the signed checkpoints and the secrets.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::operations::node_files::{self, Kind, NodeFileError, file_error};
use crate::operations::personal_data;

/// The manifest's file name in a backup dir.
pub const MANIFEST: &str = "careflow-backup.json";

/// The manifest's layout version.
const FORMAT: u32 = 1;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub careflow_version: String,
    pub created_at: DateTime<Utc>,
    /// `sqlite`, `postgres` or `kurrentdb`: the store of the node backed up.
    pub store: String,
    /// On SQLite, the newest position in the backed-up log.
    pub head_position: Option<u64>,
    pub files: Vec<BackedUpFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUpFile {
    pub name: String,
    /// `secret` or `sqlite`.
    pub kind: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Why a backup or a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Occurs when the backup dir already holds files: a backup never mixes with another.
    #[error("{} is not empty; back up into a new directory", .0.display())]
    NotEmpty(PathBuf),
    /// Occurs when a backup dir has no readable manifest.
    #[error("{} is not a careflow backup (no readable {MANIFEST})", .0.display())]
    NoManifest(PathBuf, #[source] std::io::Error),
    /// Occurs when the manifest is not one this build reads.
    #[error("{MANIFEST} cannot be read")]
    Manifest(#[source] serde_json::Error),
    /// Occurs when a file of the backup is missing or differs from the manifest: the backup
    /// was altered or damaged. Nothing is restored.
    #[error("{name} in the backup {problem}; nothing was restored")]
    Damaged { name: String, problem: String },
    /// Occurs when the data dir to restore into already holds a node's file.
    #[error("{} exists; restore into an empty data dir", .0.display())]
    DataDirInUse(PathBuf),
    /// Occurs when the backup was taken of a node on another store.
    #[error("the backup is of a {backup} node, the configuration is {configured}")]
    OtherStore { backup: String, configured: String },
    /// Occurs when a file cannot be copied.
    #[error(transparent)]
    File(#[from] NodeFileError),
}

fn store_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
        StoreKind::Kurrentdb => "kurrentdb",
    }
}

/// Backs up `config`'s data dir into `dir` (created; must be empty) while the node may
/// serve.
///
/// # Errors
/// [`BackupError`].
pub fn backup(
    config: &Config,
    dir: &Path,
    clock: &Clock,
    with_master_key: bool,
) -> Result<Manifest, BackupError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::NotEmpty(dir.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let created_at = clock.now();
    let mut files = Vec::new();
    let master_key = node_files::file_name(&personal_data::master_key_path(config));
    for file in node_files::backup_order(config) {
        if file.name == master_key && !with_master_key {
            continue;
        }
        let from = config.data_dir.join(&file.name);
        let to = dir.join(&file.name);
        let copied = match file.kind {
            Kind::Secret => node_files::copy_secret(&from, dir)?,
            Kind::Sqlite if from.exists() => {
                node_files::vacuum_into(&from, &to)?;
                true
            }
            Kind::Sqlite => false,
        };
        if copied {
            let (bytes, sha256) = digest(&to)?;
            files.push(BackedUpFile {
                name: file.name,
                kind: kind_name(file.kind).to_owned(),
                bytes,
                sha256,
            });
        }
    }
    let head_position = match config.store {
        StoreKind::Sqlite => Some(head_of(
            &dir.join(node_files::file_name(&config.sqlite_path())),
        )?),
        StoreKind::Postgres | StoreKind::Kurrentdb => None,
    };
    let manifest = Manifest {
        format: FORMAT,
        careflow_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at,
        store: store_name(config.store).to_owned(),
        head_position,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(BackupError::Manifest)?;
    write_synced(&dir.join(MANIFEST), &text)?;
    Ok(manifest)
}

/// Restores the backup in `dir` into `config`'s data dir, which must not hold a node's files.
///
/// # Errors
/// [`BackupError`]; nothing is written unless every file matches the manifest.
pub fn restore(config: &Config, dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    let configured = store_name(config.store);
    if manifest.store != configured {
        return Err(BackupError::OtherStore {
            backup: manifest.store,
            configured: configured.to_owned(),
        });
    }
    for file in &manifest.files {
        let path = dir.join(&file.name);
        if !path.exists() {
            return Err(damaged(&file.name, "is missing"));
        }
        let (bytes, sha256) = digest(&path)?;
        if bytes != file.bytes || sha256 != file.sha256 {
            return Err(damaged(&file.name, "differs from the manifest"));
        }
        let target = config.data_dir.join(&file.name);
        if target.exists() {
            return Err(BackupError::DataDirInUse(target));
        }
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| file_error(&config.data_dir, e))?;
    for file in &manifest.files {
        let from = dir.join(&file.name);
        if file.kind == kind_name(Kind::Secret) {
            node_files::copy_secret(&from, &config.data_dir)?;
        } else {
            let target = config.data_dir.join(&file.name);
            let temp = target.with_extension("restoring");
            let bytes = std::fs::read(&from).map_err(|e| file_error(&from, e))?;
            write_synced(&temp, &bytes)?;
            std::fs::rename(&temp, &target).map_err(|e| file_error(&target, e))?;
        }
    }
    if let Ok(data_dir) = std::fs::File::open(&config.data_dir) {
        data_dir
            .sync_all()
            .map_err(|e| file_error(&config.data_dir, e))?;
    }
    Ok(manifest)
}

/// The manifest of the backup in `dir`.
///
/// # Errors
/// [`BackupError::NoManifest`], [`BackupError::Manifest`].
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let text = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| BackupError::NoManifest(dir.to_owned(), e))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(BackupError::Manifest)?;
    if manifest.format != FORMAT {
        return Err(damaged(
            MANIFEST,
            &format!("has format {} (this build reads {FORMAT})", manifest.format),
        ));
    }
    // A name is a file of the backup dir, never a path out of it.
    if let Some(bad) = manifest.files.iter().find(|f| {
        Path::new(&f.name).file_name().map(|n| n.to_string_lossy()) != Some(f.name.as_str().into())
    }) {
        return Err(damaged(
            MANIFEST,
            &format!("names {:?}, which is not a file name", bad.name),
        ));
    }
    Ok(manifest)
}

fn damaged(name: &str, problem: &str) -> BackupError {
    BackupError::Damaged {
        name: name.to_owned(),
        problem: problem.to_owned(),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "secret",
        Kind::Sqlite => "sqlite",
    }
}

/// Size and SHA-256 (hex) of a file.
fn digest(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(|e| file_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The newest position of the SQLite log at `path` (0 when empty).
fn head_of(path: &Path) -> Result<u64, BackupError> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| node_files::sqlite_error(path, e))?;
    let head: Option<i64> = conn
        .query_row("SELECT max(position) FROM events", [], |row| row.get(0))
        .map_err(|e| node_files::sqlite_error(path, e))?;
    Ok(head.and_then(|h| u64::try_from(h).ok()).unwrap_or(0))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = std::fs::File::create(path).map_err(|e| file_error(path, e))?;
    file.write_all(bytes).map_err(|e| file_error(path, e))?;
    file.sync_all().map_err(|e| file_error(path, e))?;
    Ok(())
}
