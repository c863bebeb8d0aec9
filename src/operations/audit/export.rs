//! `careflow audit export` and `careflow audit check-export`: evidence an auditor can take
//! away and check without careflow's database.
//!
//! An export is two files: `FILE`, NDJSON with one stored event per line exactly as the
//! store holds it (envelope, `position`, `prev_hash`, `hash`), and `FILE.manifest.json`,
//! which says what was selected, how many events, the first and last position, the SHA-256
//! of `FILE`, who exported it and when, and the server's Ed25519 public key, signed with the
//! matching private key. Checking needs only the two files (and, to pin the signer, the
//! public key recorded beforehand): the signature covers the manifest, the SHA-256 covers
//! every byte of the NDJSON, and each event's own hash and its stream's links are
//! recomputed as well, so an edit is reported at the event it touched.
//!
//! Each export is recorded in the access log before it is handed out (see
//! `access_log::record_export`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use careflow_aggregates::{EventHash, RecordedEvent, StreamId, chain_hash};
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditError;
use crate::clock::Clock;
use crate::store::{Direction, EventStore};

/// The manifest's `format`.
pub const FORMAT: &str = "careflow-export-v1";

/// Events read per store call.
const PAGE: usize = 10_000;

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole log.
    All,
    /// One stream, complete.
    Stream(StreamId),
    /// A patient's account and every encounter scheduled on it, complete.
    Patient(String),
    /// Every event recorded in `[from, to)`.
    Between {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

impl Selection {
    /// How the manifest and the access log name the selection.
    pub fn describe(&self) -> String {
        match self {
            Selection::All => "all".into(),
            Selection::Stream(s) => format!("stream {s}"),
            Selection::Patient(mrn) => format!("patient {mrn}"),
            Selection::Between { from, to } => format!(
                "recorded from {} to {}",
                from.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                to.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
        }
    }

    /// Whether every selected stream is exported from its first event (so each must start
    /// at version 1 in the file).
    fn whole_streams(&self) -> bool {
        !matches!(self, Selection::Between { .. })
    }
}

/// The signed part of a manifest. Field order is the serialisation order, and the signature
/// covers `serde_json::to_vec` of this struct, which a checker re-derives from the parsed
/// manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    pub format: String,
    /// The NDJSON file's name (not its path).
    pub file: String,
    pub selection: String,
    pub whole_streams: bool,
    pub count: u64,
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
    /// SHA-256 of the NDJSON file, hex.
    pub sha256: String,
    pub exported_at: String,
    pub exported_by: String,
    /// The Ed25519 public key the signature verifies with, hex.
    pub public_key: String,
}

/// `FILE.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(flatten)]
    pub body: ManifestBody,
    /// Ed25519 signature of the body, hex.
    pub signature: String,
}

/// Where the manifest of `file` is written.
pub fn manifest_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// Writes the export of `selection` to `out` and its signed manifest beside it, then records
/// the export in the access log; `clock` dates the manifest and the record.
///
/// # Errors
/// [`AuditError`] when the store cannot be read or a file cannot be written.
pub async fn export(
    store: &dyn EventStore,
    clock: &Clock,
    key: &SigningKey,
    selection: &Selection,
    out: &Path,
    subject: &str,
    progress: bool,
) -> Result<Manifest, AuditError> {
    let file = std::fs::File::create(out).map_err(|e| AuditError::file(out, e))?;
    let mut writer = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
    };
    let head = store.head_position().await?;
    let bar = if progress {
        indicatif::ProgressBar::new(head)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut count = 0u64;
    let mut first_position = None;
    let mut last_position = None;
    let mut write = |event: &RecordedEvent| -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(event).map_err(|e| AuditError::Format(e.to_string()))?;
        line.push(b'\n');
        writer
            .write_all(&line)
            .map_err(|e| AuditError::file(out, e))?;
        count += 1;
        first_position.get_or_insert(event.position);
        last_position = Some(event.position);
        Ok(())
    };
    match selection {
        Selection::Stream(stream) => {
            let mut from = 1;
            loop {
                let page = store
                    .read_stream(stream, from, Direction::Forward, PAGE)
                    .await?;
                for event in &page {
                    write(event)?;
                    bar.set_position(event.position);
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => from = last.version + 1,
                    _ => break,
                }
            }
        }
        Selection::All | Selection::Patient(_) | Selection::Between { .. } => {
            let mut patient = PatientFilter::new(selection);
            let mut from = 1;
            loop {
                let page = store.read_all(from, PAGE).await?;
                for event in &page {
                    if patient.selects(selection, event) {
                        write(event)?;
                    }
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => {
                        from = last.position + 1;
                        bar.set_position(last.position);
                    }
                    _ => break,
                }
            }
        }
    }
    bar.finish_and_clear();
    writer.inner.flush().map_err(|e| AuditError::file(out, e))?;
    writer
        .inner
        .get_ref()
        .sync_all()
        .map_err(|e| AuditError::file(out, e))?;
    let body = ManifestBody {
        format: FORMAT.into(),
        file: out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        selection: selection.describe(),
        whole_streams: selection.whole_streams(),
        count,
        first_position,
        last_position,
        sha256: hex::encode(writer.hasher.finalize()),
        exported_at: clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        exported_by: subject.to_owned(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
    };
    let signed = serde_json::to_vec(&body).map_err(|e| AuditError::Format(e.to_string()))?;
    let manifest = Manifest {
        signature: hex::encode(key.sign(&signed).to_bytes()),
        body,
    };
    let manifest_file = manifest_path(out);
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| AuditError::Format(e.to_string()))?;
    std::fs::write(&manifest_file, text + "\n").map_err(|e| AuditError::file(&manifest_file, e))?;
    let recorded = super::access_log::AccessLog { store, clock }
        .record_export(
            subject,
            &manifest.body.selection,
            count,
            &clock.new_id().to_string(),
        )
        .await;
    if let Err(error) = recorded {
        // No export leaves without its access record.
        let _ = std::fs::remove_file(out);
        let _ = std::fs::remove_file(&manifest_file);
        return Err(error.into());
    }
    Ok(manifest)
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Which streams belong to a patient: the account, and the encounters scheduled on it. An
/// encounter's `EncounterScheduled` (its first event) names the account, and comes before
/// every other event of the encounter in the log, so one pass in position order suffices.
struct PatientFilter {
    account: Option<String>,
    encounters: HashSet<String>,
}

impl PatientFilter {
    fn new(selection: &Selection) -> Self {
        Self {
            account: match selection {
                Selection::Patient(mrn) => Some(format!("patient_account-{mrn}")),
                _ => None,
            },
            encounters: HashSet::new(),
        }
    }

    fn selects(&mut self, selection: &Selection, event: &RecordedEvent) -> bool {
        match selection {
            Selection::All => true,
            Selection::Stream(s) => &event.stream_id == s,
            Selection::Between { from, to } => {
                event.metadata.recorded_at >= *from && event.metadata.recorded_at < *to
            }
            Selection::Patient(mrn) => {
                let stream = event.stream_id.as_str();
                if Some(stream) == self.account.as_deref() {
                    return true;
                }
                if event.stream_id.kind() != "encounter" {
                    return false;
                }
                if event.event_type == "EncounterScheduled"
                    && event.data.get("account_id").and_then(|v| v.as_str()) == Some(mrn)
                {
                    self.encounters.insert(stream.to_owned());
                }
                self.encounters.contains(stream)
            }
        }
    }
}

/// The outcome of `check-export`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub manifest: ManifestBody,
    pub events: u64,
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks an export offline: the manifest's signature (with `public_key` when given, else
/// the key the manifest names), the file's SHA-256, count and positions, and every event's
/// hash and stream links.
///
/// # Errors
/// [`AuditError`] when the files cannot be read or the manifest is not a manifest; anything
/// that does not match is a problem in the report.
pub fn check_export(
    file: &Path,
    public_key: Option<&VerifyingKey>,
) -> Result<CheckReport, AuditError> {
    let manifest_file = manifest_path(file);
    let text =
        std::fs::read_to_string(&manifest_file).map_err(|e| AuditError::file(&manifest_file, e))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        AuditError::Format(format!(
            "{} is not a manifest: {e}",
            manifest_file.display()
        ))
    })?;
    if manifest.body.format != FORMAT {
        return Err(AuditError::Format(format!(
            "manifest format {:?}, expected {FORMAT}",
            manifest.body.format
        )));
    }
    let mut problems = Vec::new();
    let named = super::key::parse_public(&manifest.body.public_key);
    let key = match (public_key, &named) {
        (Some(given), Ok(named)) if given != named => {
            problems.push(format!(
                "the manifest is signed by key {}, not by the given key {}",
                manifest.body.public_key,
                hex::encode(given.to_bytes())
            ));
            None
        }
        (Some(given), _) => Some(*given),
        (None, Ok(named)) => Some(*named),
        (None, Err(error)) => {
            problems.push(format!("the manifest's public key: {error}"));
            None
        }
    };
    if let Some(key) = key {
        let signed =
            serde_json::to_vec(&manifest.body).map_err(|e| AuditError::Format(e.to_string()))?;
        let signature = hex::decode(&manifest.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b));
        match signature {
            Some(sig) if key.verify(&signed, &sig).is_ok() => {}
            _ => problems.push("the manifest's signature does not verify".into()),
        }
    }

    let mut reader = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(file).map_err(|e| AuditError::file(file, e))?,
    );
    let mut hasher = Sha256::new();
    let mut heads: HashMap<StreamId, (u64, EventHash)> = HashMap::new();
    let mut events = 0u64;
    let mut first = None;
    let mut last = None;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::file(file, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        number += 1;
        let event: RecordedEvent = match serde_json::from_slice(&line) {
            Ok(event) => event,
            Err(error) => {
                problems.push(format!("line {number}: not an event: {error}"));
                continue;
            }
        };
        events += 1;
        first.get_or_insert(event.position);
        last = Some(event.position);
        let at = format!(
            "line {number} (stream {} version {} position {})",
            event.stream_id, event.version, event.position
        );
        if chain_hash(&event) != event.hash {
            problems.push(format!(
                "{at}: stored hash does not match the event's content"
            ));
        }
        match heads.get(&event.stream_id) {
            Some(&(version, hash)) => {
                if event.version != version + 1 {
                    problems.push(format!("{at}: expected version {}", version + 1));
                }
                if event.prev_hash != hash {
                    problems.push(format!(
                        "{at}: prev_hash does not match the previous event's hash"
                    ));
                }
            }
            None if manifest.body.whole_streams
                && (event.version != 1 || event.prev_hash != EventHash::ZERO) =>
            {
                problems.push(format!("{at}: the stream does not start at version 1"));
            }
            None => {}
        }
        heads.insert(event.stream_id.clone(), (event.version, event.hash));
    }
    // Drain anything after a final line without a newline (read_until returned it above).
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    hasher.update(&rest);
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != manifest.body.sha256 {
        problems.push(format!(
            "the file's SHA-256 is {sha256}, the manifest says {}",
            manifest.body.sha256
        ));
    }
    if events != manifest.body.count {
        problems.push(format!(
            "the file holds {events} events, the manifest says {}",
            manifest.body.count
        ));
    }
    if first != manifest.body.first_position || last != manifest.body.last_position {
        problems.push(format!(
            "the file spans positions {first:?}..{last:?}, the manifest says {:?}..{:?}",
            manifest.body.first_position, manifest.body.last_position
        ));
    }
    Ok(CheckReport {
        manifest: manifest.body,
        events,
        problems,
    })
}
