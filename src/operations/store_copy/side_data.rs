//! What a KurrentDB node keeps in its data dir besides the log, moved there by `store copy`.
//!
//! A KurrentDB node keeps its side stores (patient keys, dead letters, snapshots, idempotency
//! records, consumer checkpoints, views) in SQLite files of its data dir, like a SQLite node.
//! The copy writes a *new* data dir and leaves the source's untouched, so the old node can be
//! started again if the move is abandoned:
//!
//! - the secret files (`master_key`, `audit_signing_key`, `jwt_secret`) are copied as they
//!   are: the same master key unwraps the patient keys, the same signing key goes on signing
//!   audit checkpoints, tokens stay valid;
//! - from a SQLite source, the patient keys, dead letters, snapshots and idempotency records
//!   are copied with `VACUUM INTO` (a consistent copy of each file); dead letters' positions
//!   are translated. Snapshots carry stream versions, which the copy keeps;
//! - the consumers' checkpoints are translated through the [`PositionMap`], so the process
//!   managers, Odoo, NATS and webhooks resume where they stood, without redelivering;
//! - views are not copied: the new node rebuilds them from its log at first start;
//! - from a PostgreSQL source, the side tables stay in PostgreSQL (the caller refuses such a
//!   move unless asked for the log alone): see docs/event-store.md.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use super::PositionMap;
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::operations::audit;
use crate::operations::personal_data;
use crate::runtime::consumers::checkpoint::{
    self, CheckpointError, CheckpointStore, SqliteCheckpoints,
};
use crate::secret_file;
use crate::store::{idempotency, snapshot};

/// Side stores copied file by file from a SQLite source.
const SQLITE_FILES: [&str; 4] = [
    personal_data::keys::FILE,
    crate::operations::dead_letters::FILE,
    snapshot::FILE,
    idempotency::FILE,
];

/// Why the node's other data could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum SideDataError {
    /// Occurs when the target data dir is the source's: the move writes a new one.
    #[error("the target data dir must not be the source's ({})", .0.display())]
    SameDataDir(PathBuf),
    /// Occurs when the target data dir already holds a different secret of the same name:
    /// another node's key, which the copy will not overwrite.
    #[error("{} already exists with other contents; copy into a new data dir", .0.display())]
    OtherSecret(PathBuf),
    /// Occurs when a file cannot be read or written.
    #[error("{}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Occurs when a side store file cannot be copied or updated.
    #[error("{}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Occurs when the checkpoints cannot be read or written.
    #[error(transparent)]
    Checkpoints(#[from] CheckpointError),
}

/// What was moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideReport {
    /// Files written into the target data dir.
    pub files: Vec<String>,
    /// Consumer checkpoints translated.
    pub checkpoints: usize,
    /// Dead letters whose positions were translated.
    pub dead_letters: usize,
}

/// Moves the node's other data from `source`'s data dir (and, for a SQLite source, its side
/// stores) into `target_dir`, translating positions through `map`.
///
/// # Errors
/// [`SideDataError`].
pub async fn move_side_data(
    source: &Config,
    target_dir: &Path,
    map: &PositionMap,
    clock: &Clock,
) -> Result<SideReport, SideDataError> {
    if same_dir(&source.data_dir, target_dir) {
        return Err(SideDataError::SameDataDir(target_dir.to_owned()));
    }
    std::fs::create_dir_all(target_dir).map_err(|e| file(target_dir, e))?;
    let mut report = SideReport::default();
    for secret in [
        personal_data::master_key_path(source),
        audit::key::key_path(source),
        source.jwt_secret_path(),
    ] {
        if copy_secret(&secret, target_dir)? {
            report.files.push(file_name(&secret));
        }
    }
    if source.store == StoreKind::Sqlite {
        for name in SQLITE_FILES {
            let from = source.data_dir.join(name);
            if from.exists() {
                vacuum_into(&from, &target_dir.join(name))?;
                report.files.push(name.to_owned());
            }
        }
        report.dead_letters =
            translate_dead_letters(&target_dir.join(crate::operations::dead_letters::FILE), map)?;
    }
    let from = checkpoint::open(source, clock).await?;
    let into =
        SqliteCheckpoints::open(target_dir.join(checkpoint::FILE))?.with_clock(clock.clone());
    for (name, mut saved) in from.all().await? {
        saved.position = map.translate(saved.position);
        into.save(&name, &saved).await?;
        report.checkpoints += 1;
    }
    report.files.push(checkpoint::FILE.to_owned());
    Ok(report)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn file(path: &Path, source: std::io::Error) -> SideDataError {
    SideDataError::File {
        path: path.to_owned(),
        source,
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> SideDataError {
    SideDataError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Copies a secret file (owner-only, as `secret_file` writes them) unless it is absent; true
/// when the target has it.
fn copy_secret(from: &Path, target_dir: &Path) -> Result<bool, SideDataError> {
    let Some(secret) = secret_file::read(from).map_err(|e| file(from, e))? else {
        return Ok(false);
    };
    let to = target_dir.join(from.file_name().unwrap_or_default());
    let there = secret_file::load_or_create(&to, || secret.clone()).map_err(|e| file(&to, e))?;
    if there == secret {
        Ok(true)
    } else {
        Err(SideDataError::OtherSecret(to))
    }
}

/// A consistent copy of a SQLite file (replacing what an earlier, interrupted run wrote).
fn vacuum_into(from: &Path, to: &Path) -> Result<(), SideDataError> {
    match std::fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file(to, e)),
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sqlite(from, e))?;
    conn.execute("VACUUM INTO ?1", params![to.to_string_lossy()])
        .map_err(|e| sqlite(from, e))?;
    Ok(())
}

/// Translates the positions of the dead letters in the copied file; how many there were.
fn translate_dead_letters(path: &Path, map: &PositionMap) -> Result<usize, SideDataError> {
    if !path.exists() {
        return Ok(0);
    }
    let mut conn = Connection::open(path).map_err(|e| sqlite(path, e))?;
    let tx = conn.transaction().map_err(|e| sqlite(path, e))?;
    let rows: Vec<(i64, i64)> = {
        let mut select = tx
            .prepare("SELECT id, position FROM dead_letters")
            .map_err(|e| sqlite(path, e))?;
        select
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| sqlite(path, e))?
    };
    for (id, position) in &rows {
        let moved = map.translate(u64::try_from(*position).unwrap_or(0));
        tx.execute(
            "UPDATE dead_letters SET position = ?1 WHERE id = ?2",
            params![i64::try_from(moved).unwrap_or(i64::MAX), id],
        )
        .map_err(|e| sqlite(path, e))?;
    }
    tx.commit().map_err(|e| sqlite(path, e))?;
    Ok(rows.len())
}
