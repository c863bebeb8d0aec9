//! Canonical encoding and the per-stream SHA-256 hash chain.
//!
//! `hash = sha256(prev_hash || canonical(event))`, where `canonical` is compact JSON with
//! object keys sorted by their UTF-8 bytes, written by this module rather than by
//! `serde_json::to_string`: whether `serde_json::Map` keeps insertion order depends on a Cargo
//! feature any dependency may switch on, and a chain must not change its bytes because a crate
//! was added. Numbers are written as serde_json prints them (shortest round-trip form), strings
//! with serde_json's escaping.
//!
//! The canonical event covers everything except `position`, `prev_hash` and `hash` (see
//! [`crate::RecordedEvent`] for why position is left out).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::envelope::RecordedEvent;
use crate::stream_id::StreamId;

/// A SHA-256 digest, shown and serialised as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    /// The `prev_hash` of every stream's first event.
    pub const ZERO: EventHash = EventHash([0; 32]);

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// A message when the text is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|e| format!("hash {text:?}: {e}"))?;
        Ok(Self(out))
    }

    /// Builds a hash from raw bytes as a database hands them back.
    ///
    /// # Errors
    /// A message when the slice is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("hash must be 32 bytes, got {}", bytes.len()))?;
        Ok(Self(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({})", self.to_hex())
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for EventHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for EventHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        EventHash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The canonical bytes of an event: the input of its hash (after `prev_hash`).
pub fn canonical_bytes(event: &RecordedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    canonical_fields(&mut out, event);
    out
}

/// `sha256(prev_hash || canonical(event))`, using `event.prev_hash`.
pub fn chain_hash(event: &RecordedEvent) -> EventHash {
    let mut hasher = Sha256::new();
    hasher.update(event.prev_hash.0);
    hasher.update(canonical_bytes(event));
    EventHash(hasher.finalize().into())
}

/// `chain_hash` with `data` taken as already-canonical JSON text instead of `event.data`.
///
/// The stores write `data` with serde_json, whose output for a `Value` is compact with keys in
/// byte order: exactly the canonical form. A verifier can therefore hash the stored text
/// without parsing it. A match proves the stored bytes are the bytes hashed at append time;
/// a mismatch proves nothing by itself (the text may be a non-canonical spelling of the same
/// value), so callers fall back to parsing and [`chain_hash`] before reporting a break.
pub fn chain_hash_with_data_text(event: &RecordedEvent, data_text: &str) -> EventHash {
    let mut out = Vec::with_capacity(256 + data_text.len());
    canonical_fields_with(&mut out, event, |out| {
        out.extend_from_slice(data_text.as_bytes())
    });
    let mut hasher = Sha256::new();
    hasher.update(event.prev_hash.0);
    hasher.update(&out);
    EventHash(hasher.finalize().into())
}

/// An event's metadata as stored: the JSON text of [`crate::EventMetadata`], its strings
/// borrowed rather than parsed (no UUID or timestamp parsing, no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataText<'a> {
    pub command_id: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: &'a str,
    pub principal: &'a str,
    pub source: &'a str,
    pub recorded_at: &'a str,
    pub occurred_at: &'a str,
}

/// A stored event as text, for hashing without decoding (see [`chain_hash_text`]).
#[derive(Debug, Clone, Copy)]
pub struct EventText<'a> {
    pub event_id: &'a uuid::Uuid,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    /// The stored `data` JSON text.
    pub data: &'a str,
    pub metadata: MetadataText<'a>,
    pub prev_hash: EventHash,
}

/// The chain hash of a stored event computed from its stored text: `data` as it is, the
/// metadata's UUID and timestamps as the strings they were stored as.
///
/// The stores write metadata with serde, whose UUIDs and timestamps are spelled exactly as
/// the canonical form spells them, and `data` in canonical form (see
/// [`chain_hash_with_data_text`]). So for an untouched event this equals [`chain_hash`], and
/// a match proves the stored text is what was hashed at append time. A mismatch proves
/// nothing by itself; verifiers then decode the event and use [`chain_hash`].
pub fn chain_hash_text(e: &EventText<'_>) -> EventHash {
    let mut out = Vec::with_capacity(320 + e.data.len());
    let m = &e.metadata;
    out.extend_from_slice(b"{\"data\":");
    out.extend_from_slice(e.data.as_bytes());
    out.extend_from_slice(b",\"event_id\":");
    write_uuid(&mut out, e.event_id);
    out.extend_from_slice(b",\"event_type\":");
    write_str(&mut out, e.event_type);
    out.extend_from_slice(b",\"metadata\":{\"causation_id\":");
    write_str(&mut out, m.causation_id);
    out.extend_from_slice(b",\"command_id\":");
    write_str(&mut out, m.command_id);
    out.extend_from_slice(b",\"correlation_id\":");
    write_str(&mut out, m.correlation_id);
    out.extend_from_slice(b",\"occurred_at\":");
    write_str(&mut out, m.occurred_at);
    out.extend_from_slice(b",\"principal\":");
    write_str(&mut out, m.principal);
    out.extend_from_slice(b",\"recorded_at\":");
    write_str(&mut out, m.recorded_at);
    out.extend_from_slice(b",\"source\":");
    write_str(&mut out, m.source);
    out.extend_from_slice(b"},\"schema_version\":");
    write_display(&mut out, e.schema_version);
    out.extend_from_slice(b",\"stream_id\":");
    write_str(&mut out, e.stream_id);
    out.extend_from_slice(b",\"version\":");
    write_display(&mut out, e.version);
    out.push(b'}');
    let mut hasher = Sha256::new();
    hasher.update(e.prev_hash.0);
    hasher.update(&out);
    EventHash(hasher.finalize().into())
}

fn canonical_fields(out: &mut Vec<u8>, e: &RecordedEvent) {
    canonical_fields_with(out, e, |out| write_value(out, &e.data));
}

fn canonical_fields_with(out: &mut Vec<u8>, e: &RecordedEvent, data: impl FnOnce(&mut Vec<u8>)) {
    // Keys in byte order, written by hand so the order is visible here.
    let m = &e.metadata;
    out.extend_from_slice(b"{\"data\":");
    data(out);
    out.extend_from_slice(b",\"event_id\":");
    write_uuid(out, &e.event_id);
    out.extend_from_slice(b",\"event_type\":");
    write_str(out, &e.event_type);
    out.extend_from_slice(b",\"metadata\":{\"causation_id\":");
    write_str(out, &m.causation_id);
    out.extend_from_slice(b",\"command_id\":");
    write_uuid(out, &m.command_id);
    out.extend_from_slice(b",\"correlation_id\":");
    write_str(out, &m.correlation_id);
    out.extend_from_slice(b",\"occurred_at\":");
    write_timestamp(out, &m.occurred_at);
    out.extend_from_slice(b",\"principal\":");
    write_str(out, &m.principal);
    out.extend_from_slice(b",\"recorded_at\":");
    write_timestamp(out, &m.recorded_at);
    out.extend_from_slice(b",\"source\":");
    write_str(out, &m.source);
    out.extend_from_slice(b"},\"schema_version\":");
    write_display(out, e.schema_version);
    out.extend_from_slice(b",\"stream_id\":");
    write_str(out, StreamId::as_str(&e.stream_id));
    out.extend_from_slice(b",\"version\":");
    write_display(out, e.version);
    out.push(b'}');
}

/// A quoted, hyphenated, lower-case UUID.
fn write_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn write_display(out: &mut Vec<u8>, value: impl fmt::Display) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value}");
}

/// A quoted timestamp exactly as `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes it
/// (`2026-01-02T03:04:05Z`, with 3, 6 or 9 fraction digits when there is a fraction), without
/// its allocations: the canonical form is computed for every append and every verified event.
/// Years outside 0..=9999 and leap seconds, which the fast path does not format, go through
/// chrono itself.
fn write_timestamp(out: &mut Vec<u8>, t: &chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
        write_str(out, &t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        return;
    }
    let two = |out: &mut Vec<u8>, n: u32| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    let year = t.year() as u32;
    out.push(b'"');
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, t.month());
    out.push(b'-');
    two(out, t.day());
    out.push(b'T');
    two(out, t.hour());
    out.push(b':');
    two(out, t.minute());
    out.push(b':');
    two(out, t.second());
    let (digits, value) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (3, nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        (6, nanos / 1_000)
    } else {
        (9, nanos)
    };
    if digits > 0 {
        out.push(b'.');
        let mut buf = [0u8; 9];
        let mut v = value;
        for slot in buf[..digits].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..digits]);
    }
    out.extend_from_slice(b"Z\"");
}

/// A JSON string as serde_json writes it. serde_json escapes exactly `"`, `\\` and control
/// characters below 0x20, so a string without them is copied as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json's string escaping is stable and total; serialising a &str cannot fail.
    match serde_json::to_writer(&mut *out, s) {
        Ok(()) => {}
        Err(_) => unreachable!("writing a str into a Vec cannot fail"),
    }
}

fn write_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_display(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// What is wrong at one link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// Occurs when versions do not run 1, 2, 3... (an event deleted, inserted or swapped).
    #[error("expected version {expected}, found {found}")]
    VersionGap { expected: u64, found: u64 },
    /// Occurs when `prev_hash` is not the previous event's `hash` (an event removed or moved).
    #[error("prev_hash does not match the previous event's hash")]
    BrokenLink,
    /// Occurs when the recomputed hash differs from the stored one (content altered).
    #[error("stored hash does not match the event's content")]
    HashMismatch,
    /// Occurs when an event of another stream turns up in the walk.
    #[error("event belongs to stream {0}")]
    ForeignStream(String),
}

/// Walks one stream's events in version order and reports every broken link.
///
/// It keeps going after a break, re-anchoring on the stored hash, so one altered event is
/// reported once rather than poisoning every later link.
#[derive(Debug)]
pub struct ChainVerifier {
    stream_id: StreamId,
    expected_version: u64,
    prev_hash: EventHash,
}

impl ChainVerifier {
    pub fn new(stream_id: StreamId) -> Self {
        Self {
            stream_id,
            expected_version: 1,
            prev_hash: EventHash::ZERO,
        }
    }

    /// Checks the next event; `Ok(())` when this link holds.
    ///
    /// # Errors
    /// Every [`ChainBreak`] found at this event (there can be several).
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), Vec<ChainBreak>> {
        let mut breaks = Vec::new();
        if event.stream_id != self.stream_id {
            breaks.push(ChainBreak::ForeignStream(event.stream_id.to_string()));
        }
        if event.version != self.expected_version {
            breaks.push(ChainBreak::VersionGap {
                expected: self.expected_version,
                found: event.version,
            });
        }
        if event.prev_hash != self.prev_hash {
            breaks.push(ChainBreak::BrokenLink);
        }
        if chain_hash(event) != event.hash {
            breaks.push(ChainBreak::HashMismatch);
        }
        self.expected_version = event.version.saturating_add(1);
        self.prev_hash = event.hash;
        if breaks.is_empty() {
            Ok(())
        } else {
            Err(breaks)
        }
    }

    /// The hash the next event must carry as `prev_hash`.
    pub fn head(&self) -> EventHash {
        self.prev_hash
    }
}

#[cfg(test)]
mod tests;
