//! `careflow audit verify`: every stream's chain, the global log, and the signed checkpoints.
//!
//! **Why it is fast.** Recomputing an event's hash needs only that event (its stored
//! `prev_hash` is an input). So one worker per core reads its own windows of the log on its
//! own connection and hashes them, and a single walker puts the windows back in order and
//! does the sequential part: the link checks (is `prev_hash` the stream's previous `hash`, do
//! versions and positions run on) and the log digest, a hash-map lookup and a 72-byte SHA-256
//! per event. The stored text is hashed as it is, without parsing (see `chain_hash_text`);
//! only a row whose hash does not match is decoded, to tell an edit from a different
//! spelling. docs/performance.md has the figures.

use std::time::{Duration, Instant};

use careflow_aggregates::log_verifier::{Content, Link, LogVerifier};
use careflow_aggregates::{
    ChainBreak, ChainVerifier, EventHash, EventMetadata, EventText, MetadataText, RecordedEvent,
    StreamId, chain_hash, chain_hash_text, chain_hash_with_data_text,
};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::AuditError;
use super::checkpoint::{self, Checkpoint};
use super::raw::{LogSource, RowView};
use crate::store::{Direction, EventStore, StoreError};

/// How to run a whole-log check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// First position to check (1: the whole log, including the digest checks).
    pub from_position: u64,
    /// Keys whose checkpoints are trusted; empty: any key, with a note in the report.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Hashing threads.
    pub threads: usize,
    /// Positions per read (a window of the log on SQLite, a page on PostgreSQL).
    pub batch: usize,
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            from_position: 1,
            trusted_keys: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch: 8_192,
            progress: false,
        }
    }
}

/// One broken link of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub problem: String,
}

/// What the newest checkpoint said, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSummary {
    pub position: u64,
    pub created_at: String,
    pub public_key: String,
    pub count: usize,
}

/// The outcome of a whole-log check.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub events: u64,
    pub streams: usize,
    pub first_position: u64,
    pub last_position: u64,
    pub intact: bool,
    pub findings: Vec<Finding>,
    /// Problems with the signed checkpoints (tail removed, log differs, bad signature).
    pub checkpoint_findings: Vec<String>,
    pub newest_checkpoint: Option<CheckpointSummary>,
    /// Things the auditor should know that are not findings.
    pub notes: Vec<String>,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Findings kept in full; past this they are only counted (a wholesale rewrite would
/// otherwise hold the whole log in memory).
const MAX_FINDINGS: usize = 10_000;

/// Walks the whole log (or from `options.from_position`) and checks the checkpoints.
///
/// # Errors
/// [`AuditError`] when the log cannot be read; tampering is a finding, not an error.
pub async fn verify_log(
    source: &LogSource,
    options: &VerifyOptions,
) -> Result<LogReport, AuditError> {
    let started = Instant::now();
    let head = source.head_position().await?;
    let checkpoints = checkpoint::load_all(source).await?;
    let rx = start_reading(source, options, head);
    let options_owned = options.clone();
    let cps = checkpoints.clone();
    let dense = !matches!(source, LogSource::Kurrent { .. });
    let walk = tokio::task::spawn_blocking(move || walk(rx, &options_owned, head, &cps, dense))
        .await
        .map_err(AuditError::database)??;
    let mut report = judge_checkpoints(walk, &checkpoints, options);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What the walk saw, before the checkpoints are judged.
struct Walk {
    events: u64,
    streams: usize,
    first_position: u64,
    last_position: u64,
    findings: Vec<Finding>,
    dropped_findings: u64,
    digest_complete: bool,
    /// (hash, digest) at each checkpoint's position, in the order of the checkpoints.
    at_checkpoints: Vec<Option<(EventHash, EventHash)>>,
}

/// A batch of rows in log order (`index`), with their content checks when the reader
/// already computed them.
struct Window {
    index: u64,
    rows: Vec<Checked>,
}

/// What the walker needs of one row once its content is checked.
struct Checked {
    position: u64,
    stream_id: String,
    version: u64,
    prev_hash: EventHash,
    hash: EventHash,
    content: Content,
}

/// Starts the readers: `threads` workers, each reading every `threads`-th window of `batch`
/// positions on its own connection and hashing it, so reading and hashing both run on every
/// core (a single reader measured as the bottleneck). The walker puts windows back in order.
fn start_reading(
    source: &LogSource,
    options: &VerifyOptions,
    head: u64,
) -> tokio::sync::mpsc::Receiver<Result<Window, AuditError>> {
    let threads = options.threads.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel(threads * 2);
    let batch = options.batch.max(1) as u64;
    let from = options.from_position.max(1);
    match source {
        LogSource::Sqlite(path) => {
            let windows = head.saturating_sub(from) / batch + 1;
            for worker in 0..threads as u64 {
                let tx = tx.clone();
                let path = path.clone();
                std::thread::spawn(move || {
                    let conn = match super::raw::open_sqlite(&path) {
                        Ok(conn) => conn,
                        Err(error) => {
                            let _ = tx.blocking_send(Err(error));
                            return;
                        }
                    };
                    let mut index = worker;
                    while index < windows {
                        let start = from + index * batch;
                        let mut checked = Vec::with_capacity(batch as usize);
                        let window =
                            super::raw::visit_sqlite_window(&conn, start, start + batch, |row| {
                                checked.push(check_content(row))
                            })
                            .map(|()| Window {
                                index,
                                rows: checked,
                            });
                        let failed = window.is_err();
                        if tx.blocking_send(window).is_err() || failed {
                            return;
                        }
                        index += threads as u64;
                    }
                });
            }
        }
        LogSource::Postgres { url, schema } => {
            let windows = head.saturating_sub(from) / batch + 1;
            for worker in 0..threads as u64 {
                let tx = tx.clone();
                let (url, schema) = (url.clone(), schema.clone());
                tokio::spawn(async move {
                    let reader = match super::raw::PostgresWindows::open(&url, &schema).await {
                        Ok(reader) => std::sync::Arc::new(reader),
                        Err(error) => {
                            let _ = tx.send(Err(error)).await;
                            return;
                        }
                    };
                    // The next window is fetched while this one is hashed.
                    let fetch = |index: u64| {
                        let reader = std::sync::Arc::clone(&reader);
                        let start = from + index * batch;
                        tokio::spawn(async move { reader.read(start, start + batch).await })
                    };
                    let mut index = worker;
                    let mut next = (index < windows).then(|| fetch(index));
                    while let Some(pending) = next.take() {
                        let after = index + threads as u64;
                        next = (after < windows).then(|| fetch(after));
                        let window = match pending.await.map_err(AuditError::database) {
                            Ok(Ok(rows)) => tokio::task::spawn_blocking(move || Window {
                                index,
                                rows: rows.iter().map(|r| check_content(&r.view())).collect(),
                            })
                            .await
                            .map_err(AuditError::database),
                            Ok(Err(error)) | Err(error) => Err(error),
                        };
                        let failed = window.is_err();
                        if tx.send(window).await.is_err() || failed {
                            return;
                        }
                        index = after;
                    }
                });
            }
        }
        LogSource::Kurrent { url, .. } => {
            // One reader: KurrentDB positions are not dense, so the log cannot be cut into
            // windows of positions in advance. Hashing still runs beside the reading.
            let url = url.clone();
            tokio::spawn(async move {
                let store = match crate::store::kurrentdb::KurrentStore::open(&url).await {
                    Ok(store) => store,
                    Err(error) => {
                        let _ = tx.send(Err(StoreError::from(error).into())).await;
                        return;
                    }
                };
                let mut next = from;
                let mut index = 0;
                loop {
                    let rows = match super::raw::read_kurrent(&store, next, batch as usize).await {
                        Ok(rows) => rows,
                        Err(error) => {
                            let _ = tx.send(Err(error)).await;
                            return;
                        }
                    };
                    let Some(last) = rows.last() else { return };
                    next = last.position + 1;
                    let full = rows.len() == batch as usize;
                    let window = tokio::task::spawn_blocking(move || Window {
                        index,
                        rows: rows.iter().map(|r| check_content(&r.view())).collect(),
                    })
                    .await
                    .map_err(AuditError::database);
                    let failed = window.is_err();
                    if tx.send(window).await.is_err() || failed || !full {
                        return;
                    }
                    index += 1;
                }
            });
        }
    }
    rx
}

fn walk(
    mut rx: tokio::sync::mpsc::Receiver<Result<Window, AuditError>>,
    options: &VerifyOptions,
    head: u64,
    checkpoints: &[Checkpoint],
    dense: bool,
) -> Result<Walk, AuditError> {
    let bar = progress_bar(options, head.saturating_sub(options.from_position) + 1);
    let mut verifier = LogVerifier::starting_at(options.from_position);
    if !dense {
        verifier = verifier.with_sparse_positions();
    }
    let mut findings = Vec::new();
    let mut dropped = 0u64;
    let mut first_position = 0;
    let mut last_position = 0;
    let mut at_checkpoints = vec![None; checkpoints.len()];
    let mut next_checkpoint = 0usize;
    // Windows that arrived before their turn.
    let mut early: std::collections::BTreeMap<u64, Window> = std::collections::BTreeMap::new();
    let mut next_index = 0u64;
    loop {
        let window = match early.remove(&next_index) {
            Some(window) => window,
            None => match rx.blocking_recv() {
                Some(window) => {
                    let window = window?;
                    if window.index != next_index {
                        early.insert(window.index, window);
                        continue;
                    }
                    window
                }
                None => break,
            },
        };
        next_index += 1;
        let batch = window.rows;
        for row in &batch {
            if first_position == 0 {
                first_position = row.position;
            }
            last_position = row.position;
            let link = Link {
                position: row.position,
                stream_id: &row.stream_id,
                version: row.version,
                prev_hash: row.prev_hash,
                hash: row.hash,
            };
            for problem in verifier.check(link, row.content.clone()) {
                if findings.len() < MAX_FINDINGS {
                    findings.push(Finding {
                        stream: row.stream_id.clone(),
                        version: row.version,
                        position: row.position,
                        problem: problem.to_string(),
                    });
                } else {
                    dropped += 1;
                }
            }
            while let Some(c) = checkpoints.get(next_checkpoint) {
                if c.position > row.position {
                    break;
                }
                if c.position == row.position {
                    at_checkpoints[next_checkpoint] = Some((row.hash, verifier.digest()));
                }
                next_checkpoint += 1;
            }
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Walk {
        events: verifier.events(),
        streams: verifier.streams(),
        first_position,
        last_position,
        findings,
        dropped_findings: dropped,
        digest_complete: verifier.digest_is_complete(),
        at_checkpoints,
    })
}

fn progress_bar(options: &VerifyOptions, len: u64) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} verifying {bar:40} {human_pos}/{human_len} events ({per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Decodes what the hash covers and recomputes it.
fn check_content(raw: &RowView<'_>) -> Checked {
    let prev_hash = EventHash::from_slice(raw.prev_hash);
    let hash = EventHash::from_slice(raw.hash);
    let content = match (&prev_hash, &hash) {
        (Ok(prev_hash), Ok(hash)) => content_of(raw, *prev_hash, *hash),
        _ => Content::Unreadable("a stored hash is not 32 bytes".into()),
    };
    Checked {
        position: raw.position,
        stream_id: raw.stream_id.to_owned(),
        version: raw.version,
        prev_hash: prev_hash.unwrap_or_default(),
        hash: hash.unwrap_or_default(),
        content,
    }
}

/// Recomputes the hash of a row whose hashes are well-formed.
fn content_of(raw: &RowView<'_>, prev_hash: EventHash, hash: EventHash) -> Content {
    if let Some(problem) = &raw.problem {
        return Content::Unreadable(problem.clone());
    }
    // Fast path: hash the stored text as it is (no parsing of data, UUIDs or timestamps).
    if let Ok(metadata) = serde_json::from_str::<MetadataText<'_>>(raw.metadata) {
        let text = EventText {
            event_id: &raw.event_id,
            stream_id: raw.stream_id,
            version: raw.version,
            event_type: raw.event_type,
            schema_version: raw.schema_version,
            data: raw.data,
            metadata,
            prev_hash,
        };
        if chain_hash_text(&text) == hash {
            return Content::Intact;
        }
    }
    // Slow path: decode, so that a different spelling of the same content is not a finding
    // and an edit is told from an unreadable row.
    let stream_id = match StreamId::parse(raw.stream_id) {
        Ok(id) => id,
        Err(error) => return Content::Unreadable(format!("stream_id: {error}")),
    };
    let metadata: EventMetadata = match serde_json::from_str(raw.metadata) {
        Ok(m) => m,
        Err(error) => return Content::Unreadable(format!("metadata: {error}")),
    };
    let mut event = RecordedEvent {
        event_id: raw.event_id,
        stream_id,
        version: raw.version,
        position: raw.position,
        event_type: raw.event_type.to_owned(),
        schema_version: raw.schema_version,
        data: serde_json::Value::Null,
        metadata,
        prev_hash,
        hash,
    };
    if chain_hash_with_data_text(&event, raw.data) == hash {
        return Content::Intact;
    }
    match serde_json::from_str(raw.data) {
        Ok(data) => event.data = data,
        Err(error) => return Content::Unreadable(format!("data: {error}")),
    }
    if chain_hash(&event) == hash {
        Content::Intact
    } else {
        Content::HashMismatch
    }
}

fn judge_checkpoints(walk: Walk, checkpoints: &[Checkpoint], options: &VerifyOptions) -> LogReport {
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    if walk.dropped_findings > 0 {
        notes.push(format!(
            "{} further findings not listed (only the first {MAX_FINDINGS} are kept)",
            walk.dropped_findings
        ));
    }
    if checkpoints.is_empty() {
        notes.push(
            "no signed checkpoint yet: removal of the newest events cannot be detected until the server writes one"
                .into(),
        );
    } else if options.trusted_keys.is_empty() {
        notes.push("no trusted public key given: checkpoints are checked against the key they carry; pass --public-key to pin it".into());
    }
    if options.from_position > 1 {
        notes.push(format!(
            "checked from position {}: streams are anchored on their first event there, and checkpoint digests are not compared",
            options.from_position
        ));
    }
    for (c, seen) in checkpoints.iter().zip(&walk.at_checkpoints) {
        let at = c
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let what = format!("checkpoint at position {} signed {at}", c.position);
        if !c.signature_holds() {
            problems.push(format!("{what}: the signature does not verify"));
            continue;
        }
        if !options.trusted_keys.is_empty()
            && !options
                .trusted_keys
                .iter()
                .any(|k| k.to_bytes() == c.public_key)
        {
            problems.push(format!(
                "{what}: signed by key {}, which is not trusted",
                c.public_key_hex()
            ));
            continue;
        }
        if c.position < options.from_position {
            continue;
        }
        match seen {
            None if c.position > walk.last_position => problems.push(format!(
                "{what}: the log ends at position {}; events after it were removed",
                walk.last_position
            )),
            None => problems.push(format!(
                "{what}: there is no event at that position any more"
            )),
            Some((hash, _)) if *hash != c.last_hash => problems.push(format!(
                "{what}: the event there is not the one signed (hash {hash}, signed {})",
                c.last_hash
            )),
            Some((_, digest)) if walk.digest_complete && *digest != c.log_digest => {
                problems.push(format!(
                    "{what}: the log up to it differs from what was signed (events deleted, inserted or reordered before it)"
                ))
            }
            Some(_) => {}
        }
    }
    let newest_checkpoint = checkpoints.last().map(|c| CheckpointSummary {
        position: c.position,
        created_at: c
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        public_key: c.public_key_hex(),
        count: checkpoints.len(),
    });
    LogReport {
        events: walk.events,
        streams: walk.streams,
        first_position: walk.first_position,
        last_position: walk.last_position,
        intact: walk.findings.is_empty() && problems.is_empty() && walk.dropped_findings == 0,
        findings: walk.findings,
        checkpoint_findings: problems,
        newest_checkpoint,
        notes,
        elapsed: Duration::ZERO,
    }
}

/// One broken link of a single stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamBreak {
    pub version: u64,
    pub position: u64,
    pub problem: String,
}

/// The outcome of a one-stream check (`--stream`, `GET /v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    pub stream: String,
    pub events: u64,
    pub intact: bool,
    pub breaks: Vec<StreamBreak>,
}

/// Events read per store call when checking one stream.
const STREAM_PAGE: usize = 10_000;

/// Checks one stream's chain through the event store.
///
/// This sees what the stream holds: an edited, inserted or reordered event, or one deleted
/// from the middle. Deleting a stream's *newest* events leaves a valid shorter chain; only
/// the whole-log check (positions, checkpoints) catches that.
///
/// # Errors
/// [`StoreError`] when the store cannot be read; a row that does not decode is a break.
pub async fn verify_stream(
    store: &dyn EventStore,
    stream: &StreamId,
) -> Result<StreamReport, StoreError> {
    let mut verifier = ChainVerifier::new(stream.clone());
    let mut breaks = Vec::new();
    let mut events = 0u64;
    let mut from = 1u64;
    loop {
        let page = match store
            .read_stream(stream, from, Direction::Forward, STREAM_PAGE)
            .await
        {
            Ok(page) => page,
            Err(StoreError::Corrupt { position, reason }) => {
                breaks.push(StreamBreak {
                    version: from,
                    position,
                    problem: format!("stored event cannot be read: {reason}"),
                });
                break;
            }
            Err(error) => return Err(error),
        };
        for event in &page {
            events += 1;
            if let Err(found) = verifier.check(event) {
                breaks.extend(found.into_iter().map(|b: ChainBreak| StreamBreak {
                    version: event.version,
                    position: event.position,
                    problem: b.to_string(),
                }));
            }
        }
        match page.last() {
            Some(last) if page.len() == STREAM_PAGE => from = last.version + 1,
            _ => break,
        }
    }
    Ok(StreamReport {
        stream: stream.to_string(),
        events,
        intact: breaks.is_empty(),
        breaks,
    })
}

impl LogReport {
    /// The human-readable report `audit verify` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                "BROKEN stream {} version {} position {}: {}",
                f.stream, f.version, f.position, f.problem
            );
        }
        for p in &self.checkpoint_findings {
            let _ = writeln!(out, "BROKEN {p}");
        }
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "checked {} events in {} streams, positions {}..{}, in {:.2} s ({:.0} events/s)",
            self.events, self.streams, self.first_position, self.last_position, secs, rate
        );
        if let Some(c) = &self.newest_checkpoint {
            let _ = writeln!(
                out,
                "newest checkpoint: position {} signed {} by key {} ({} checkpoints)",
                c.position, c.created_at, c.public_key, c.count
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.intact {
                "intact".to_string()
            } else {
                format!(
                    "TAMPERED: {} broken links, {} checkpoint findings",
                    self.findings.len(),
                    self.checkpoint_findings.len()
                )
            }
        );
        out
    }
}

#[cfg(test)]
mod tests;
