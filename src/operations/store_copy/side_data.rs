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

use rusqlite::{Connection, params};

use super::PositionMap;
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::operations::node_files::{self, NodeFileError, file_error, file_name, sqlite_error};
use crate::operations::personal_data;
use crate::runtime::consumers::checkpoint::{
    self, CheckpointError, CheckpointStore, SqliteCheckpoints,
};
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
    /// Occurs when a file cannot be copied (an existing, different secret included: another
    /// node's key is never overwritten; copy into a new data dir).
    #[error(transparent)]
    File(#[from] NodeFileError),
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
    std::fs::create_dir_all(target_dir).map_err(|e| file_error(target_dir, e))?;
    let mut report = SideReport::default();
    for secret in node_files::secrets(source) {
        if node_files::copy_secret(&secret, target_dir)? {
            report.files.push(file_name(&secret));
        }
    }
    if source.store == StoreKind::Sqlite {
        for name in SQLITE_FILES {
            let from = source.data_dir.join(name);
            if from.exists() {
                node_files::vacuum_into(&from, &target_dir.join(name))?;
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

/// Translates the positions of the dead letters in the copied file; how many there were.
fn translate_dead_letters(path: &Path, map: &PositionMap) -> Result<usize, SideDataError> {
    if !path.exists() {
        return Ok(0);
    }
    let mut conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
    let tx = conn.transaction().map_err(|e| sqlite_error(path, e))?;
    let rows: Vec<(i64, i64)> = {
        let mut select = tx
            .prepare("SELECT id, position FROM dead_letters")
            .map_err(|e| sqlite_error(path, e))?;
        select
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| sqlite_error(path, e))?
    };
    for (id, position) in &rows {
        let moved = map.translate(u64::try_from(*position).unwrap_or(0));
        tx.execute(
            "UPDATE dead_letters SET position = ?1 WHERE id = ?2",
            params![i64::try_from(moved).unwrap_or(i64::MAX), id],
        )
        .map_err(|e| sqlite_error(path, e))?;
    }
    tx.commit().map_err(|e| sqlite_error(path, e))?;
    Ok(rows.len())
}
