//! The fuzz targets' logic: one function per kind of outside input, each taking raw bytes,
//! running careflow's real parse-and-map path over them and asserting what must hold whatever
//! the bytes are.
//!
//! Why here and not in `fuzz/`: the targets in `fuzz/fuzz_targets/` are one line each, so the
//! same code runs under libFuzzer (nightly, `cargo fuzz`) and in the stable replay test
//! (`tests/it/fuzz_replay.rs`), which feeds it every committed corpus file and every input
//! that once failed (`fuzz/regressions/`). A failed invariant is a panic, which is what both
//! report. Everything here is pure: no store, no socket, no clock (one fixed instant), so an
//! input fails the same way every time.
//!
//! | target              | input                         | what must hold                                                       |
//! |---------------------|-------------------------------|----------------------------------------------------------------------|
//! | [`hl7_message`]     | an MLLP payload (HL7 v2)      | no panic; mapping is deterministic (a resend derives the same ids); the ACK parses, frames, and echoes MSH-10 |
//! | [`mllp_codec`]      | max frame, split seed, stream | the same frames however TCP splits the bytes; never more bytes out than in; frames round-trip |
//! | [`fhir_resource`]   | a FHIR resource (JSON)        | commands, or a 4xx `OperationOutcome`; commands decide and round-trip |
//! | [`fhir_bundle`]     | a transaction Bundle (JSON)   | as `fhir_resource`, entries folded in order                          |
//! | [`http_command_body`] | a command body (JSON)       | a command for one aggregate, or a 4xx problem; decide, evolve, codec and snapshot round-trips |
//! | [`stored_event`]    | stored rows (JSON)            | decode (upcasters included) refuses or yields an event that evolves and re-encodes to itself |
//!
//! "Decide" everywhere means the aggregate's pure `decide` against the state the input's
//! earlier commands left (an empty stream at first), then: every event encodes and decodes
//! back to itself through its stored JSON text, `evolve` takes it, and the state survives a
//! snapshot (JSON text and back). A rejection must be a client error (4xx), never a 5xx.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use careflow_aggregates::{
    Aggregate, AnyCommand, Claim, Ctx, EncodedEvent, Encounter, EventMetadata, InventoryItem,
    PatientAccount, PurchaseWorkflow, Rejection, Roster, Staffing, StreamId,
};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};
use uuid::Uuid;

use crate::inbound::fhir::bundle::Transaction;
use crate::inbound::fhir::inbound::{self, Method};
use crate::inbound::fhir::{FhirError, FhirSettings, Step, render};
use crate::inbound::hl7::{self, Hl7};
use crate::inbound::http::error::ApiError;
use crate::inbound::http::json;
use crate::inbound::mllp::codec::{CR, END, START};
use crate::inbound::mllp::{Ack, FrameError, MllpCodec};

/// The one instant every target decides at (a fixed clock keeps a failure reproducible).
fn now() -> DateTime<Utc> {
    match Utc.with_ymd_and_hms(2025, 3, 1, 9, 30, 0) {
        chrono::LocalResult::Single(t) => t,
        _ => unreachable!("2025-03-01T09:30:00Z is a valid UTC time"),
    }
}

fn ctx(occurred_at: Option<DateTime<Utc>>) -> Ctx {
    Ctx::new(now(), Uuid::from_u128(0x0f0f_f022), "fuzz").occurred_at(occurred_at.unwrap_or(now()))
}

// --- HL7 v2 ----------------------------------------------------------------------------------

/// An MLLP payload as the connection reads it: text (UTF-8, else Latin-1), parsed and mapped
/// without `hl7::read`'s panic guard, then acknowledged as the connection would.
///
/// # Panics
/// When an invariant breaks: mapping the same text twice differs (a resent message would not
/// find its commands), a step's command id is not `command_id(MSH-4, MSH-10, step)`, or the
/// ACK does not frame, parse, carry the right MSA-1 or echo MSH-10.
pub fn hl7_message(data: &[u8]) {
    let text = hl7::payload_text(data);
    let result = hl7::read_unguarded(&text);
    assert_eq!(
        result,
        hl7::read_unguarded(&text),
        "mapping the same message twice differed"
    );
    // The header of a refused frame (`too_large`) is read from its head alone.
    let _ = hl7::msh_header(&text);
    match &result {
        Ok(inbound) => {
            let header = &inbound.header;
            let ctx = ctx(inbound.occurred_at);
            let mut books = Books::default();
            for (index, step) in inbound.steps.iter().enumerate() {
                assert_eq!(
                    step.command.command_id(),
                    hl7::command_id(&header.sending_facility, &header.control_id, index),
                    "step {index}'s command id is not derived from MSH-4 and MSH-10"
                );
                let _ = books.run(step.command.target().id(), step.command.command(), &ctx);
            }
            check_ack(&Ack::accept(), Some(header));
        }
        Err((header, malformed)) => check_ack(&Ack::refusal(malformed), header.as_deref()),
    }
}

/// The ACK `ack` renders for `header` frames as one MLLP frame, parses as HL7, and says what
/// it should in MSA-1 and MSA-2.
fn check_ack(ack: &Ack, header: Option<&hl7::Header>) {
    let text = ack.render(header, now(), "CF00000000000000F0");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\r'),
        "a control character reached the ACK raw: {text:?}"
    );
    let mut framed = BytesMut::new();
    let mut codec = MllpCodec::new(usize::MAX);
    let _ = codec.encode(Bytes::from(text.clone().into_bytes()), &mut framed);
    match codec.decode(&mut framed) {
        Ok(Some(frame)) => assert_eq!(frame.payload.as_ref(), text.as_bytes(), "ACK reframed"),
        other => panic!("the ACK is not one MLLP frame: {other:?}"),
    }
    let parsed = match Hl7::parse(&text) {
        Ok(parsed) => parsed,
        Err(error) => panic!("the ACK does not parse ({error}): {text:?}"),
    };
    if let Err(error) = parsed.header() {
        panic!("the ACK's MSH does not read ({error}): {text:?}");
    }
    assert_eq!(
        parsed.value("MSA", 1, 1).as_deref(),
        Some(ack.code.as_str()),
        "MSA-1 of {text:?}"
    );
    // MSA-2 echoes MSH-10, line breaks written as `\.br\` (read back as `\n`).
    let expected = header
        .map(|h| h.control_id.replace('\r', "\n"))
        .unwrap_or_default();
    assert_eq!(
        parsed.value("MSA", 2, 1).unwrap_or_default(),
        expected,
        "MSA-2 of {text:?}"
    );
}

// --- MLLP ------------------------------------------------------------------------------------

/// What a decoder made of a byte stream: the frames, and whether it ended in an error.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<FrameParts>,
    too_large: bool,
}

/// A frame compared by value: its payload's bytes and its skip count.
type FrameParts = (Vec<u8>, usize);

/// Decodes `stream` in reads of the sizes `chunk` gives, as `FramedRead` does: after each
/// read, `decode` until it has nothing; at the end, `decode_eof` until it has nothing; the
/// first error ends the stream.
fn decode_in_reads(stream: &[u8], max: usize, mut chunk: impl FnMut(usize) -> usize) -> Decoded {
    let mut codec = MllpCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut read = 0;
    let push = |frames: &mut Vec<FrameParts>, frame: crate::inbound::mllp::Frame| {
        frames.push((frame.payload.to_vec(), frame.skipped));
    };
    while at < stream.len() {
        let end = (at + chunk(read).max(1)).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        read += 1;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => push(&mut frames, frame),
                Ok(None) => break,
                Err(FrameError::TooLarge { max: said, head }) => {
                    assert_eq!(said, max);
                    assert!(head.len() <= 4_096, "an oversized frame's head is bounded");
                    return Decoded {
                        frames,
                        too_large: true,
                    };
                }
                Err(FrameError::Io(error)) => panic!("the decoder made an I/O error: {error}"),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => push(&mut frames, frame),
            Ok(None) => break,
            Err(FrameError::TooLarge { .. }) => {
                return Decoded {
                    frames,
                    too_large: true,
                };
            }
            Err(FrameError::Io(error)) => panic!("the decoder made an I/O error: {error}"),
        }
    }
    assert!(buf.is_empty(), "bytes left after the end of the stream");
    Decoded {
        frames,
        too_large: false,
    }
}

/// The MLLP decoder over a byte stream: `data[0]` picks the frame cap, `data[1]` how the
/// stream is split into reads, the rest is the stream.
///
/// # Panics
/// When the frames (or the refusal of an oversized one) depend on how the stream was split
/// (one read, a byte at a time, or reads of varying sizes), a frame holds an end block or a
/// start block or more than the cap, more bytes come out than went in, or a frame does not
/// survive encode-then-decode.
pub fn mllp_codec(data: &[u8]) {
    let [cap, split, stream @ ..] = data else {
        return;
    };
    // `MllpSettings::from_config` keeps the cap at 16 bytes or more.
    let max = 16 + usize::from(*cap) * 4;
    let whole = decode_in_reads(stream, max, |_| usize::MAX);
    let bytewise = decode_in_reads(stream, max, |_| 1);
    let varied = decode_in_reads(stream, max, |read| {
        1 + (usize::from(*split) + 1) * (read + 1) * 31 % 61
    });
    assert_eq!(whole, bytewise, "one read and a byte at a time differ");
    assert_eq!(whole, varied, "one read and reads of varying sizes differ");

    let mut accounted = 0usize;
    for (payload, skipped) in &whole.frames {
        assert!(payload.len() <= max, "a frame over the cap was yielded");
        assert!(!payload.contains(&START), "a frame holds a start block");
        assert!(
            !payload.windows(2).any(|w| w == [END, CR]),
            "a frame holds an end block"
        );
        accounted += skipped + payload.len() + 3;
        // Written back with the encoder, it reads as itself with nothing skipped.
        let mut codec = MllpCodec::new(max);
        let mut out = BytesMut::new();
        let _ = codec.encode(Bytes::from(payload.clone()), &mut out);
        match codec.decode(&mut out) {
            Ok(Some(frame)) => {
                assert_eq!((frame.payload.as_ref(), frame.skipped), (&payload[..], 0));
            }
            other => panic!("an encoded frame did not decode: {other:?}"),
        }
    }
    assert!(
        accounted <= stream.len(),
        "the frames account for more bytes than the stream had"
    );
}

// --- FHIR ------------------------------------------------------------------------------------

/// The settings the FHIR targets map with: an MRN system, so both ways of naming an MRN (type
/// `MR` and the system) are reachable.
fn fhir_settings() -> FhirSettings {
    FhirSettings {
        mrn_system: Some("urn:oid:2.16.840.1.113883.3.careflow.mrn".to_owned()),
    }
}

/// A body as the FHIR routes read it: the JSON reader's refusal is their `structure` 400.
fn fhir_body(data: &[u8]) -> Result<Value, FhirError> {
    json::parse(data).map_err(|error| match error {
        ApiError::MalformedJson { detail } => FhirError::Structure { detail },
        other => {
            let problem = other.problem();
            assert!(
                (400..500).contains(&problem.status),
                "the JSON reader refused a body with {}",
                problem.status
            );
            FhirError::Structure {
                detail: problem.title,
            }
        }
    })
}

/// A refusal of what a client sent is a 4xx and renders as an `OperationOutcome`.
fn check_fhir_refusal(error: &FhirError) {
    let status = error.status();
    assert!(
        (400..500).contains(&status),
        "a client's FHIR message was refused with {status}: {error}"
    );
    let outcome = render::error_outcome(error);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(
        serde_json::to_string(&outcome).is_ok(),
        "the OperationOutcome does not serialise"
    );
}

/// One FHIR resource, as `POST /fhir/r4/{type}` and `PUT /fhir/r4/{type}/{id}` take it (and
/// `POST Patient/$merge` for a `Parameters`).
///
/// # Panics
/// When a refusal is not a 4xx `OperationOutcome`, or a mapped command breaks a decide
/// invariant (module docs).
pub fn fhir_resource(data: &[u8]) {
    let value = match fhir_body(data) {
        Ok(value) => value,
        Err(error) => return check_fhir_refusal(&error),
    };
    let settings = fhir_settings();
    if value.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        match inbound::merge_parameters(&value, &settings) {
            Ok(step) => Books::default().step(&step),
            Err(error) => check_fhir_refusal(&error),
        }
        return;
    }
    let resource = match inbound::parse(value.clone(), None) {
        Ok(resource) => resource,
        Err(error) => return check_fhir_refusal(&error),
    };
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("fuzz-1")
        .to_owned();
    for method in [Method::Create, Method::Update { id }] {
        match inbound::plan(&resource, &method, &settings, &Default::default()) {
            Ok(step) => Books::default().step(&step),
            Err(error) => check_fhir_refusal(&error),
        }
    }
}

/// A transaction Bundle, as `POST /fhir/r4` takes it: mapped, then its entries decided in
/// order against one set of states, as the executor's fold does.
///
/// # Panics
/// As [`fhir_resource`].
pub fn fhir_bundle(data: &[u8]) {
    let value = match fhir_body(data) {
        Ok(value) => value,
        Err(error) => return check_fhir_refusal(&error),
    };
    match Transaction::parse(value, &fhir_settings()) {
        Ok(transaction) => {
            assert!(!transaction.is_empty(), "an empty Bundle was accepted");
            let mut books = Books::default();
            for (_, step) in transaction.steps() {
                books.step(step);
            }
        }
        Err(error) => check_fhir_refusal(&error),
    }
}

// --- HTTP commands ---------------------------------------------------------------------------

/// A body of `POST /v1/{kind}/{id}/commands`, read by the one JSON reader and offered to
/// every aggregate's command parser (the route picks one; the fuzzer need not).
///
/// # Panics
/// When a refusal is not a 4xx problem, or a parsed command breaks a decide invariant.
pub fn http_command_body(data: &[u8]) {
    let value = match json::parse(data) {
        Ok(value) => value,
        Err(error) => return check_problem(&error),
    };
    Books::default().http_body(&value);
}

fn check_problem(error: &ApiError) {
    let problem = error.problem();
    assert!(
        (400..500).contains(&problem.status),
        "a client's body was refused with {}: {error}",
        problem.status
    );
    assert!(serde_json::to_string(&problem).is_ok());
}

fn check_rejection(rejection: &Rejection) {
    check_problem(&ApiError::Rejected(rejection.clone()));
}

// --- Stored events ---------------------------------------------------------------------------

/// One stored event as the backends hand it to decoding: the stream, `event_type`,
/// `schema_version`, `data` (JSON text in every backend) and, optionally, the metadata.
#[derive(Debug, Deserialize)]
struct StoredRow {
    stream_id: String,
    event_type: String,
    schema_version: u32,
    data: Value,
    #[serde(default)]
    metadata: Option<Value>,
}

/// A stream's stored events (one row, or an array of them, as JSON), decoded as a replay does:
/// upcast, deserialise, evolve, in order, per stream.
///
/// # Panics
/// When an event that decodes does not encode back to itself at the current schema version,
/// does not decode again from that, or `evolve` (total by contract) or a snapshot fails on it.
pub fn stored_event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let rows = match value {
        Value::Array(rows) => rows,
        row => vec![row],
    };
    let mut books = Books::default();
    for row in rows {
        let Ok(row) = serde_json::from_value::<StoredRow>(row) else {
            continue;
        };
        if let Some(metadata) = row.metadata {
            let _ = serde_json::from_value::<EventMetadata>(metadata);
        }
        let Ok(stream) = StreamId::parse(&row.stream_id) else {
            continue;
        };
        books.replay(&stream, &row.event_type, row.schema_version, row.data);
    }
}

/// Seeds for [`stored_event`] made from the other targets' seeds: the HL7 messages, FHIR
/// resources and Bundles, and command bodies that `scripts/fuzz-seed.py` writes. The events each
/// input decides on empty streams, one input's rows per seed; the events of all of them
/// decided in order, twice over (so later inputs see what earlier ones did: a charge after its
/// admission), one array per aggregate; and those arrays again with every `ChargePosted`
/// written at schema version 1, so the upcaster is reached.
pub fn stored_event_seeds(hl7: &[Vec<u8>], fhir: &[Vec<u8>], bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let recording = || Books {
        recorded: Some(Vec::new()),
        ..Books::default()
    };
    let mut inputs: Vec<(&[u8], SeedRun)> = Vec::new();
    inputs.extend(hl7.iter().map(|m| (m.as_slice(), Books::hl7 as SeedRun)));
    inputs.extend(fhir.iter().map(|r| (r.as_slice(), Books::fhir as SeedRun)));
    inputs.extend(
        bodies
            .iter()
            .map(|b| (b.as_slice(), Books::http as SeedRun)),
    );
    let mut seeds: Vec<Value> = Vec::new();
    for (input, run) in &inputs {
        let mut alone = recording();
        run(&mut alone, input);
        let rows = alone.recorded.unwrap_or_default();
        if !rows.is_empty() {
            seeds.push(Value::Array(rows));
        }
    }
    // Twice over: an input refused the first time for want of an earlier one (a charge
    // before its admission) is decided again once the inputs after it have run.
    let mut journey = recording();
    for (input, run) in inputs.iter().chain(&inputs) {
        run(&mut journey, input);
    }
    let mut by_kind: Vec<(String, Vec<Value>)> = Vec::new();
    for row in journey.recorded.unwrap_or_default() {
        let kind = StreamId::parse(row["stream_id"].as_str().unwrap_or_default())
            .map(|stream| stream.kind().to_owned())
            .unwrap_or_default();
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, stream)) => stream.push(row),
            None => by_kind.push((kind, vec![row])),
        }
    }
    for (_, stream) in by_kind {
        let v1: Vec<Value> = stream.iter().map(charge_posted_v1).collect();
        if v1 != stream {
            seeds.push(Value::Array(v1));
        }
        seeds.push(Value::Array(stream));
    }
    seeds
        .iter()
        .filter_map(|seed| serde_json::to_vec_pretty(seed).ok())
        .collect()
}

/// How [`stored_event_seeds`] decides one kind of seed input.
type SeedRun = fn(&mut Books, &[u8]);

/// A `ChargePosted` row as schema version 1 stored it: `unit_price` an integer of cents, no
/// `amount` nor `currency` (`patient_account::event::upcast_charge_posted_v1`).
fn charge_posted_v1(row: &Value) -> Value {
    let mut row = row.clone();
    if row["event_type"] != "ChargePosted" {
        return row;
    }
    let cents = row["data"]["unit_price"]
        .as_str()
        .and_then(|price| careflow_aggregates::Cents::parse(price).ok());
    if let (Some(cents), Value::Object(data)) = (cents, &mut row["data"]) {
        data.insert("unit_price".into(), Value::from(cents.0));
        data.remove("amount");
        data.remove("currency");
        row["schema_version"] = Value::from(1);
    }
    row
}

// --- The fold --------------------------------------------------------------------------------

/// The states of one aggregate's streams, by instance id, with their versions.
struct Book<A: Aggregate> {
    streams: HashMap<String, (A::State, u64)>,
}

impl<A: Aggregate> Default for Book<A> {
    fn default() -> Self {
        Self {
            streams: HashMap::new(),
        }
    }
}

impl<A: Aggregate> Book<A> {
    fn state(&self, id: &str) -> A::State {
        self.streams
            .get(id)
            .map(|(state, _)| state.clone())
            .unwrap_or_else(A::initial_state)
    }

    /// Decides `command` on the stream `id`, checks the events and folds them in; then
    /// decides it once more on the result (a redelivery), which must not panic either.
    fn run(
        &mut self,
        id: &str,
        command: &A::Command,
        ctx: &Ctx,
    ) -> Result<Vec<EncodedEvent>, Rejection> {
        if StreamId::new(A::KIND, id).is_err() {
            // The shell refuses such an id before anything is decided.
            return Ok(Vec::new());
        }
        let (state, version) = self
            .streams
            .remove(id)
            .unwrap_or_else(|| (A::initial_state(), 0));
        let (state, version, encoded) = match A::decide(&state, command, ctx) {
            Ok(events) => {
                let mut state = state;
                let mut encoded = Vec::with_capacity(events.len());
                for event in &events {
                    encoded.push(check_codec::<A>(event));
                    state = A::evolve(state, event);
                }
                check_snapshot::<A>(&state);
                if let Err(rejection) = A::decide(&state, command, ctx) {
                    check_rejection(&rejection);
                }
                let count = u64::try_from(events.len()).unwrap_or(u64::MAX);
                (state, version.saturating_add(count), encoded)
            }
            Err(rejection) => {
                check_rejection(&rejection);
                self.streams.insert(id.to_owned(), (state, version));
                return Err(rejection);
            }
        };
        self.streams.insert(id.to_owned(), (state, version));
        Ok(encoded)
    }

    /// Folds one stored event into the stream `id` when it decodes.
    fn replay(&mut self, id: &str, event_type: &str, schema_version: u32, data: Value) {
        let Ok(event) = A::decode(event_type, schema_version, data) else {
            return;
        };
        check_codec::<A>(&event);
        let (state, version) = self
            .streams
            .remove(id)
            .unwrap_or_else(|| (A::initial_state(), 0));
        let state = A::evolve(state, &event);
        check_snapshot::<A>(&state);
        self.streams
            .insert(id.to_owned(), (state, version.saturating_add(1)));
    }
}

/// An event encodes at its current schema version and decodes back to itself from the JSON
/// text the store keeps.
fn check_codec<A: Aggregate>(event: &A::Event) -> EncodedEvent {
    let encoded = A::encode(event);
    let text = match serde_json::to_string(&encoded.data) {
        Ok(text) => text,
        Err(error) => panic!("{} does not serialise: {error}", encoded.event_type),
    };
    let stored: Value = match serde_json::from_str(&text) {
        Ok(stored) => stored,
        Err(error) => panic!(
            "{}'s stored text does not parse: {error}",
            encoded.event_type
        ),
    };
    match A::decode(encoded.event_type, encoded.schema_version, stored) {
        Ok(decoded) => assert_eq!(
            &decoded, event,
            "{} changed through the codec",
            encoded.event_type
        ),
        Err(error) => panic!(
            "{} does not decode what it encoded: {error}",
            encoded.event_type
        ),
    }
    encoded
}

/// A state survives a snapshot: JSON text and back.
fn check_snapshot<A: Aggregate>(state: &A::State) {
    let text = match serde_json::to_string(state) {
        Ok(text) => text,
        Err(error) => panic!("a {} state does not serialise: {error}", A::KIND),
    };
    match serde_json::from_str::<A::State>(&text) {
        Ok(read) => assert_eq!(
            &read,
            state,
            "a {} state changed through a snapshot",
            A::KIND
        ),
        Err(error) => panic!("a {} snapshot does not read back: {error}", A::KIND),
    }
}

/// Every aggregate's streams, so an input's commands see what its earlier ones did.
#[derive(Default)]
struct Books {
    /// The events decided, as stored rows, when seeds are being written
    /// ([`stored_event_seeds`]).
    recorded: Option<Vec<Value>>,
    accounts: Book<PatientAccount>,
    encounters: Book<Encounter>,
    items: Book<InventoryItem>,
    purchases: Book<PurchaseWorkflow>,
    claims: Book<Claim>,
    rosters: Book<Roster>,
    staffings: Book<Staffing>,
}

impl Books {
    /// Decides `command` on the instance `id` of its aggregate.
    fn run(&mut self, id: &str, command: &AnyCommand, ctx: &Ctx) -> Result<(), Rejection> {
        let events = match command {
            AnyCommand::PatientAccount(c) => self.accounts.run(id, c, ctx),
            AnyCommand::Encounter(c) => self.encounters.run(id, c, ctx),
            AnyCommand::InventoryItem(c) => self.items.run(id, c, ctx),
            AnyCommand::Purchase(c) => self.purchases.run(id, c, ctx),
            AnyCommand::Claim(c) => self.claims.run(id, c, ctx),
            AnyCommand::Roster(c) => self.rosters.run(id, c, ctx),
            AnyCommand::Staffing(c) => self.staffings.run(id, c, ctx),
        }?;
        if let Some(recorded) = &mut self.recorded {
            recorded.extend(events.into_iter().map(|event| {
                serde_json::json!({
                    "stream_id": format!("{}-{id}", command.kind()),
                    "event_type": event.event_type,
                    "schema_version": event.schema_version,
                    "data": event.data,
                })
            }));
        }
        Ok(())
    }

    /// An HL7 message's steps, when it maps (for seeds).
    fn hl7(&mut self, data: &[u8]) {
        if let Ok(inbound) = hl7::read_unguarded(&hl7::payload_text(data)) {
            let ctx = ctx(inbound.occurred_at);
            for step in &inbound.steps {
                let _ = self.run(step.command.target().id(), step.command.command(), &ctx);
            }
        }
    }

    /// A FHIR resource's or transaction Bundle's steps, when it maps (for seeds).
    fn fhir(&mut self, data: &[u8]) {
        let Ok(value) = json::parse(data) else {
            return;
        };
        if let Ok(transaction) = Transaction::parse(value.clone(), &fhir_settings()) {
            for (_, step) in transaction.steps() {
                self.step(step);
            }
        } else if let Ok(resource) = inbound::parse(value, None)
            && let Ok(step) = inbound::plan(
                &resource,
                &Method::Create,
                &fhir_settings(),
                &Default::default(),
            )
        {
            self.step(&step);
        }
    }

    /// A command body's command, when one parses (for seeds).
    fn http(&mut self, data: &[u8]) {
        if let Ok(value) = json::parse(data) {
            self.http_body(&value);
        }
    }

    /// A command body offered to every aggregate's parser.
    fn http_body(&mut self, value: &Value) {
        self.body::<PatientAccount>(value, AnyCommand::PatientAccount);
        self.body::<Encounter>(value, AnyCommand::Encounter);
        self.body::<InventoryItem>(value, AnyCommand::InventoryItem);
        self.body::<PurchaseWorkflow>(value, AnyCommand::Purchase);
        self.body::<Claim>(value, AnyCommand::Claim);
        self.body::<Roster>(value, AnyCommand::Roster);
        self.body::<Staffing>(value, AnyCommand::Staffing);
    }

    /// A command body offered to `A`'s parser: a parsed one is decided on `A`'s stream.
    fn body<A: Aggregate>(&mut self, value: &Value, any: fn(A::Command) -> AnyCommand) {
        match A::parse_command(value.clone()) {
            Ok(body) => {
                let command = any(body.command);
                let _ = self.run("fuzz-1", &command, &ctx(body.occurred_at));
            }
            Err(rejection) => check_rejection(&rejection),
        }
    }

    /// A stored event of `stream`, when its kind is an aggregate's.
    fn replay(&mut self, stream: &StreamId, event_type: &str, version: u32, data: Value) {
        let id = stream.id();
        match stream.kind() {
            PatientAccount::KIND => self.accounts.replay(id, event_type, version, data),
            Encounter::KIND => self.encounters.replay(id, event_type, version, data),
            InventoryItem::KIND => self.items.replay(id, event_type, version, data),
            PurchaseWorkflow::KIND => self.purchases.replay(id, event_type, version, data),
            Claim::KIND => self.claims.replay(id, event_type, version, data),
            Roster::KIND => self.rosters.replay(id, event_type, version, data),
            Staffing::KIND => self.staffings.replay(id, event_type, version, data),
            _ => {}
        }
    }

    /// A FHIR step, resolved against the current states as `fhir::execute` resolves it.
    fn step(&mut self, step: &Step) {
        let ctx = ctx(None);
        let refused = |error: FhirError| check_fhir_refusal(&error);
        match step {
            Step::Command { id, command } => {
                let _ = self.run(id, command, &ctx);
            }
            Step::PatientUpsert {
                mrn,
                register,
                update,
            } => {
                let registered = self.accounts.state(mrn).is_registered();
                let command = inbound::resolve_patient(registered, register, update);
                let _ = self.run(mrn, &AnyCommand::PatientAccount(command), &ctx);
            }
            Step::Encounter { visit, change } => {
                let state = self.encounters.state(visit);
                let account = self.accounts.state(&change.account_id);
                let facility = account.is_registered().then_some(account.facility);
                match inbound::encounter_commands(&state, change, facility.as_deref(), now()) {
                    Ok(commands) => {
                        for command in commands {
                            if self
                                .run(visit, &AnyCommand::Encounter(command), &ctx)
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                    Err(error) => refused(error),
                }
            }
            Step::Commands { id, commands } => {
                for command in commands {
                    if self.run(id, command, &ctx).is_err() {
                        break;
                    }
                }
            }
            Step::ClaimResponse { claim_id, response } => {
                let state = self.claims.state(claim_id);
                match inbound::claim_response_command(claim_id, &state, response) {
                    Ok(command) => {
                        let _ = self.run(claim_id, &AnyCommand::Claim(command), &ctx);
                    }
                    Err(error) => refused(error),
                }
                // The payer contract's reading, against no lines as well as the claim's.
                let _ = crate::outbound::payer::claim::read_claim_response(response, &[], None);
            }
        }
    }
}
