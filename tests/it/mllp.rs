//! Black-box: HL7 v2 over MLLP against the real binary. Sample messages from
//! tests/fixtures/hl7 in, ACKs and the resulting state (over HTTP) out; resends, AE and AR,
//! many messages at once on several connections, an oversized frame, and `kill -9` between
//! durable and the ACK.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::{Api, assert_log_is_sound};
use crate::server::{Server, token};
use crate::support::{TempDir, eventually};

/// A sample message with its segments joined by `\r`, after text replacements.
pub(crate) fn fixture(name: &str, replace: &[(&str, &str)]) -> String {
    let path = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .collect::<Vec<_>>()
        .join("\r");
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// An HL7 sender: frames out, ACK frames in.
pub(crate) struct Sender {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// One ACK, as text.
#[derive(Debug, Clone)]
pub(crate) struct AckText(String);

impl AckText {
    fn segment(&self, name: &str) -> Option<Vec<&str>> {
        self.0
            .split('\r')
            .find(|s| s.starts_with(name))
            .map(|s| s.split('|').collect())
    }

    /// MSA-1.
    pub(crate) fn code(&self) -> &str {
        self.segment("MSA").unwrap()[1]
    }

    /// MSA-2.
    fn control_id(&self) -> &str {
        self.segment("MSA").unwrap()[2]
    }

    pub(crate) fn err(&self) -> Option<Vec<&str>> {
        self.segment("ERR")
    }
}

impl Sender {
    pub(crate) async fn connect(addr: &str) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    async fn send(&mut self, message: &str) {
        let mut frame = vec![0x0b];
        frame.extend_from_slice(message.as_bytes());
        frame.extend_from_slice(&[0x1c, 0x0d]);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next ACK, or `None` when the server closed the connection.
    async fn ack(&mut self) -> Option<AckText> {
        loop {
            if let Some(start) = self.buffer.iter().position(|&b| b == 0x0b)
                && let Some(end) = self.buffer[start..]
                    .windows(2)
                    .position(|w| w == [0x1c, 0x0d])
            {
                let payload = self.buffer[start + 1..start + end].to_vec();
                self.buffer.drain(..start + end + 2);
                return Some(AckText(String::from_utf8(payload).unwrap()));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("no ACK within 30 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    pub(crate) async fn exchange(&mut self, message: &str) -> AckText {
        self.send(message).await;
        self.ack()
            .await
            .expect("the connection closed before the ACK")
    }
}

struct Site {
    _dir: TempDir,
    server: Server,
    api: Api,
    system: String,
    auditor: String,
}

async fn site(env: &[(&str, &str)]) -> Site {
    let dir = TempDir::new();
    let server = Server::start_with_env(&dir.path(), env);
    server.wait_ready().await;
    Site {
        api: Api::new(&server.base),
        system: token(&dir.path(), "system", "ehr"),
        auditor: token(&dir.path(), "auditor", "compliance"),
        server,
        _dir: dir,
    }
}

impl Site {
    async fn state(&self, kind: &str, id: &str) -> Value {
        let reply = self
            .api
            .get(&format!("/v1/{kind}/{id}"), Some(&self.system))
            .await;
        assert_eq!(reply.status, 200, "{kind}/{id}: {}", reply.text);
        reply.body
    }

    async fn event_types(&self, kind: &str, id: &str) -> Vec<String> {
        let reply = self
            .api
            .get(&format!("/v1/{kind}/{id}/history"), Some(&self.auditor))
            .await;
        assert_eq!(reply.status, 200, "{kind}/{id}: {}", reply.text);
        reply.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Events of the log outside the access log (which records the test's own reads).
    async fn log_len(&self) -> usize {
        self.api
            .all_events(&self.auditor)
            .await
            .iter()
            .filter(|e| !e.stream_id.as_str().starts_with("access_log"))
            .count()
    }
}

#[tokio::test]
async fn a_stay_told_in_hl7_messages_becomes_the_same_events_as_over_http() {
    let site = site(&[]).await;
    let mut ehr = Sender::connect(&site.server.mllp).await;

    // ADT^A01: registered, scheduled, arrived.
    let ack = ehr.exchange(&fixture("adt_a01.hl7", &[])).await;
    assert_eq!((ack.code(), ack.control_id()), ("AA", "599102"), "{ack:?}");
    assert!(ack.0.starts_with("MSH|^~\\&|"), "{ack:?}");
    assert!(ack.segment("MSH").unwrap()[8].starts_with("ACK^A01"));
    assert_eq!(
        site.event_types("patient-accounts", "10006579").await,
        vec!["PatientRegistered"]
    );
    assert_eq!(
        site.event_types("encounters", "40007716").await,
        vec!["EncounterScheduled", "PatientArrived"]
    );
    let account = site.state("patient-accounts", "10006579").await;
    assert_eq!(account["status"], "registered");
    assert_eq!(account["personal"]["name"]["family"], "DUCK");
    assert_eq!(account["personal"]["birth_date"], "1924-10-10");
    let visit = site.state("encounters", "40007716").await;
    assert_eq!(visit["status"], "arrived");
    assert_eq!(visit["account_id"], "10006579");
    assert_eq!(visit["department"], "PREOP");
    assert_eq!(visit["class"], "inpatient");

    // Who and through which channel, on every event.
    // (The auditor's history reads above are in the log too, as access-log events.)
    let log = site.api.all_events(&site.auditor).await;
    let domain: Vec<_> = log
        .iter()
        .filter(|e| !e.stream_id.as_str().starts_with("access_log"))
        .collect();
    assert_eq!(domain.len(), 3);
    assert!(domain.iter().all(|e| e.metadata.principal == "mllp:1"
        && e.metadata.source == "hl7"
        && e.metadata.correlation_id == "599102"));

    // ADT^A08: the middle name changes.
    let ack = ehr.exchange(&fixture("adt_a08.hl7", &[])).await;
    assert_eq!((ack.code(), ack.control_id()), ("AA", "599103"), "{ack:?}");
    let account = site.state("patient-accounts", "10006579").await;
    assert_eq!(
        account["personal"]["name"]["given"],
        serde_json::json!(["DONALD", "DUNCAN"])
    );

    // DFT^P03: one charge per FT1, `{MSH-10}-{FT1-1}`.
    let ack = ehr.exchange(&fixture("dft_p03.hl7", &[])).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let account = site.state("patient-accounts", "10006579").await;
    assert_eq!(account["balance"], "170.50");
    let charges = account["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0]["charge_id"], "DFT599200-1");
    assert_eq!(charges[0]["description"], "Office visit&consult, level 3");
    assert_eq!(charges[0]["encounter_id"], "40007716");
    assert_eq!(charges[1]["charge_id"], "DFT599200-2");
    assert_eq!(charges[1]["quantity"], 2);
    assert_eq!(charges[1]["unit_price"], "22.50");

    // ADT^A03: completed, then discharged with PV1-36.
    let ack = ehr.exchange(&fixture("adt_a03.hl7", &[])).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let visit = site.state("encounters", "40007716").await;
    assert_eq!(visit["status"], "discharged");
    assert_eq!(visit["disposition"], "1");

    // SIU^S12: a follow-up booked.
    let ack = ehr.exchange(&fixture("siu_s12.hl7", &[])).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let follow_up = site.state("encounters", "V50012").await;
    assert_eq!(follow_up["status"], "scheduled");
    assert_eq!(follow_up["department"], "ORTHO");
    assert_eq!(follow_up["class"], "outpatient");
    assert_eq!(follow_up["scheduled_for"], "2005-01-20T14:00:00+00:00");

    // ADT^A11 on a second admission: cancelled with EVN-4's reason.
    let second = [("599102", "599110"), ("40007716", "40007799")];
    let ack = ehr.exchange(&fixture("adt_a01.hl7", &second)).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let ack = ehr
        .exchange(&fixture("adt_a11.hl7", &[("40007716", "40007799")]))
        .await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let cancelled = site.state("encounters", "40007799").await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "Admitted in error");
    assert_eq!(
        site.event_types("patient-accounts", "10006579").await,
        vec![
            "PatientRegistered",
            "DemographicsUpdated",
            "ChargePosted",
            "ChargePosted"
        ],
        "the second A01 found the patient registered and appended no registration"
    );

    // ADT^A04 (the standard's JONES sample): registration only, no visit in it.
    let ack = ehr.exchange(&fixture("adt_a04.hl7", &[])).await;
    assert_eq!(
        (ack.code(), ack.control_id()),
        ("AA", "MSG00001"),
        "{ack:?}"
    );
    let jones = site.state("patient-accounts", "PATID1234").await;
    assert_eq!(jones["facility"], "MCM");
    assert_eq!(
        jones["personal"]["name"]["given"],
        serde_json::json!(["WILLIAM", "A"])
    );

    assert_log_is_sound(&site.api.all_events(&site.auditor).await);
}

#[tokio::test]
async fn a_resent_message_is_acknowledged_again_and_appends_nothing() {
    let site = site(&[]).await;
    let mut ehr = Sender::connect(&site.server.mllp).await;
    let a01 = fixture("adt_a01.hl7", &[]);
    let dft = fixture("dft_p03.hl7", &[]);
    assert_eq!(ehr.exchange(&a01).await.code(), "AA");
    assert_eq!(ehr.exchange(&dft).await.code(), "AA");
    let before = site.log_len().await;
    assert_eq!(before, 5, "registered, scheduled, arrived, two charges");

    // Resent on a new connection, as a sender does after a lost ACK. Deciding the check-in or
    // the charges again would be refused; the resend gets its first answer instead.
    let mut again = Sender::connect(&site.server.mllp).await;
    let ack = again.exchange(&a01).await;
    assert_eq!((ack.code(), ack.control_id()), ("AA", "599102"), "{ack:?}");
    assert_eq!(again.exchange(&dft).await.code(), "AA");
    assert_eq!(site.log_len().await, before, "the resends appended nothing");

    // An update decides to events again when resent; the append still recognises its
    // command id and writes nothing.
    let a08 = fixture("adt_a08.hl7", &[]);
    assert_eq!(again.exchange(&a08).await.code(), "AA");
    assert_eq!(site.log_len().await, before + 1);
    assert_eq!(ehr.exchange(&a08).await.code(), "AA");
    assert_eq!(
        site.log_len().await,
        before + 1,
        "the resent A08 appended nothing"
    );
    let before = before + 1;

    // The same MSH-10 from another facility is another message: its charges are refused by
    // the account (the charge ids `{MSH-10}-{FT1-1}` are taken), an AE, nothing appended.
    let other = fixture("dft_p03.hl7", &[("|CHARGES|1|", "|CHARGES|2|")]);
    let ack = again.exchange(&other).await;
    assert_eq!(ack.code(), "AE", "{ack:?}");
    let err = ack.err().unwrap();
    assert!(err[3].starts_with("205^"), "{ack:?}");
    assert!(err[5].starts_with("duplicate_charge"), "{ack:?}");
    assert_eq!(site.log_len().await, before);
}

#[tokio::test]
async fn business_rejections_are_ae_and_malformed_messages_ar_and_neither_appends() {
    let site = site(&[]).await;
    let mut ehr = Sender::connect(&site.server.mllp).await;

    // AE: a discharge of a visit nobody scheduled.
    let ack = ehr
        .exchange(&fixture("adt_a03.hl7", &[("40007716", "V-NONE")]))
        .await;
    assert_eq!(
        (ack.code(), ack.control_id()),
        ("AE", "59912415"),
        "{ack:?}"
    );
    let err = ack.err().unwrap();
    assert_eq!(err[4], "E");
    assert!(err[5].starts_with("not_scheduled^"), "{ack:?}");

    // AE: an A01 whose visit belongs to another patient.
    assert_eq!(
        ehr.exchange(&fixture("adt_a01.hl7", &[])).await.code(),
        "AA"
    );
    let before = site.log_len().await;
    let intruder = [("599102", "599120"), ("10006579^^^1^MRN^1", "P-2^^^1^MR")];
    let ack = ehr.exchange(&fixture("adt_a01.hl7", &intruder)).await;
    assert_eq!(ack.code(), "AE", "{ack:?}");
    assert!(ack.err().unwrap()[5].starts_with("visit_of_another_patient"));

    // AE: no MRN (ERR-2 names PID-3), a content error. AR: an unsupported trigger, text that
    // is not HL7 (issue #15 part 5, defect 6).
    let ack = ehr
        .exchange(&fixture(
            "adt_a08.hl7",
            &[("10006579^^^1^MRN^1", ""), ("599103", "599121")],
        ))
        .await;
    assert_eq!((ack.code(), ack.control_id()), ("AE", "599121"), "{ack:?}");
    let err = ack.err().unwrap();
    assert_eq!(err[2], "PID^1^3");
    assert!(err[3].starts_with("101^Required field missing"), "{ack:?}");
    let ack = ehr
        .exchange(&fixture("adt_a08.hl7", &[("ADT^A08", "ADT^A99")]))
        .await;
    assert_eq!(ack.code(), "AR");
    assert!(ack.err().unwrap()[3].starts_with("200^"), "{ack:?}");
    let ack = ehr.exchange("this is not an HL7 message").await;
    assert_eq!((ack.code(), ack.control_id()), ("AR", ""), "{ack:?}");

    // Garbage between frames is skipped; the connection goes on.
    ehr.stream.write_all(b"\r\n\x00noise\x1c\r").await.unwrap();
    let ack = ehr
        .exchange(&fixture("adt_a08.hl7", &[("599103", "599122")]))
        .await;
    assert_eq!(ack.code(), "AA", "{ack:?}");

    // Only the A08 after the garbage appended (one DemographicsUpdated). The P-2 account was
    // registered by the intruding A01 before its visit check: register-if-new runs first.
    let log = site.api.all_events(&site.auditor).await;
    let new: Vec<&str> = log[before..]
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(new, vec!["PatientRegistered", "DemographicsUpdated"]);

    let metrics = site.api.get("/metrics", None).await.text;
    for (outcome, count) in [("received", 7), ("AA", 2), ("AE", 3), ("AR", 2)] {
        let line = format!(
            "careflow_interface_messages_total{{interface=\"mllp\",outcome=\"{outcome}\"}} {count}"
        );
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("careflow_interface_in_flight{interface=\"mllp\"} 0"));
}

#[tokio::test]
async fn escapes_and_repetitions_are_decoded() {
    let site = site(&[]).await;
    let mut ehr = Sender::connect(&site.server.mllp).await;
    let a04 = "MSH|^~\\&|REG|GOOD HEALTH|CAREFLOW|CF|20240105083000||ADT^A04|ESC1|P|2.5\r\
PID|1||X-9^^^GH^PI~CF-1001^^^GH^MR||Alias^Al~O\\E\\Brien\\T\\Sons\\F\\X^Ann\\S\\Marie^^^^^L||19800131|F\r\
PV1|1|O|CLINIC\\R\\2^^^GOOD HEALTH\r";
    let ack = ehr.exchange(a04).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    // The MR repetition of PID-3 is the MRN, not the first one.
    let account = site.state("patient-accounts", "CF-1001").await;
    assert_eq!(
        account["personal"]["name"]["family"], "O\\Brien&Sons|X",
        "the legal-name repetition (XPN-7 L), escapes decoded"
    );
    assert_eq!(
        account["personal"]["name"]["given"],
        serde_json::json!(["Ann^Marie"])
    );
    assert_eq!(account["facility"], "GOOD HEALTH");
    assert_eq!(account["gender"], "female");
}

#[tokio::test]
async fn a_frame_over_the_size_cap_is_answered_ar_and_the_connection_closed() {
    let site = site(&[("CAREFLOW_MLLP_MAX_FRAME_BYTES", "2048")]).await;
    let mut ehr = Sender::connect(&site.server.mllp).await;
    let big = fixture(
        "adt_a08.hl7",
        &[("599103", "BIG1"), ("DUCK^HUEY", &"H".repeat(4000))],
    );
    ehr.send(&big).await;
    let ack = ehr.ack().await.expect("an AR before the close");
    assert_eq!((ack.code(), ack.control_id()), ("AR", "BIG1"), "{ack:?}");
    assert!(ack.err().unwrap()[5].starts_with("frame_too_large"));
    assert!(
        ehr.ack().await.is_none(),
        "the server closed the connection"
    );
    assert_eq!(site.log_len().await, 0);

    // A message under the cap on a new connection is taken.
    let mut again = Sender::connect(&site.server.mllp).await;
    assert_eq!(
        again.exchange(&fixture("adt_a01.hl7", &[])).await.code(),
        "AA"
    );
}

/// A04 (register), A08 (update), DFT (a charge) for one patient, as `MSH-10`s `{tag}-n`.
fn patient_messages(mrn: &str, tag: &str) -> Vec<String> {
    let msh = |kind: &str, n: u32| {
        format!("MSH|^~\\&|LOAD|FAC|CAREFLOW|CF|20240105083000||{kind}|{tag}-{n}|P|2.5\r")
    };
    let pid = format!("PID|1||{mrn}^^^FAC^MR||Doe^Jane||19800131|F\r");
    let pv1 = format!("PV1|1|O|CLINIC{}V-{mrn}\r", "|".repeat(16));
    vec![
        format!("{}{pid}", msh("ADT^A04", 1)),
        format!(
            "{}PID|1||{mrn}^^^FAC^MR||Doe^Jane^Q||19800131|F\r",
            msh("ADT^A08", 2)
        ),
        format!(
            "{}{pid}{pv1}FT1|1|||20240105||CG|99213^Visit|||1||10.00\r",
            msh("DFT^P03", 3)
        ),
        format!(
            "{}{pid}{pv1}FT1|1|||20240105||CG|80053^Panel|||2||2.50\r",
            msh("DFT^P03", 4)
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_messages_at_once_on_several_connections_are_all_applied_once_in_order() {
    const CONNECTIONS: usize = 6;
    const PATIENTS: usize = 12;
    let site = site(&[]).await;

    let mut senders = Vec::new();
    for c in 0..CONNECTIONS {
        let addr = site.server.mllp.clone();
        senders.push(tokio::spawn(async move {
            let mut sender = Sender::connect(&addr).await;
            // Every message of the connection's patients is written before any ACK is read:
            // a patient's A08 and charges only succeed if its A04 was applied first.
            let mut sent = Vec::new();
            for p in 0..PATIENTS {
                let mrn = format!("L{c}-{p}");
                for message in patient_messages(&mrn, &mrn) {
                    let control_id = message.split('|').nth(9).unwrap().to_owned();
                    sender.send(&message).await;
                    sent.push(control_id);
                }
            }
            let mut acks = Vec::new();
            for _ in &sent {
                acks.push(sender.ack().await.unwrap());
            }
            (sent, acks)
        }));
    }
    for sender in senders {
        let (sent, acks) = sender.await.unwrap();
        let answered: Vec<&str> = acks.iter().map(AckText::control_id).collect();
        assert_eq!(answered, sent, "ACKs in the connection's order");
        for ack in &acks {
            assert_eq!(ack.code(), "AA", "{ack:?}");
        }
    }

    let log = site.api.all_events(&site.auditor).await;
    assert_log_is_sound(&log);
    assert_eq!(log.len(), CONNECTIONS * PATIENTS * 4);
    let mut by_stream: HashMap<String, Vec<&str>> = HashMap::new();
    for event in &log {
        by_stream
            .entry(event.stream_id.to_string())
            .or_default()
            .push(&event.event_type);
    }
    assert_eq!(by_stream.len(), CONNECTIONS * PATIENTS);
    for (stream, types) in by_stream {
        assert_eq!(
            types,
            vec![
                "PatientRegistered",
                "DemographicsUpdated",
                "ChargePosted",
                "ChargePosted"
            ],
            "{stream}"
        );
    }
    let account = site.state("patient-accounts", "L3-7").await;
    assert_eq!(account["balance"], "15.00");
}

#[tokio::test]
async fn a_kill_9_between_durable_and_the_ack_then_the_resend_appends_once() {
    let dir = TempDir::new();
    // The ACK waits a minute after the events are durable: the kill lands in that window.
    let server = Server::start_with_env(&dir.path(), &[("CAREFLOW_MLLP_ACK_DELAY_MS", "60000")]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let auditor = token(&dir.path(), "auditor", "compliance");
    let a01 = fixture("adt_a01.hl7", &[]);
    let mut ehr = Sender::connect(&server.mllp).await;
    ehr.send(&a01).await;
    eventually(Duration::from_secs(30), "the A01's events", || {
        let api = api.clone();
        let auditor = auditor.clone();
        async move { (api.all_events(&auditor).await.len() == 3).then_some(()) }
    })
    .await;
    // Durable and not acknowledged: one message in flight, its age growing.
    eventually(Duration::from_secs(30), "the unacknowledged age", || {
        let api = api.clone();
        async move {
            let metrics = api.get("/metrics", None).await.text;
            let in_flight = metrics.contains("careflow_interface_in_flight{interface=\"mllp\"} 1");
            let age: f64 = metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix("careflow_interface_oldest_unacked_seconds{interface=\"mllp\"} ")
                })?
                .parse()
                .ok()?;
            (in_flight && age >= 1.0).then_some(())
        }
    })
    .await;
    server.kill9();
    assert!(
        ehr.ack().await.is_none(),
        "no ACK was written before the kill"
    );

    // The sender never got its ACK: it resends to the restarted server.
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let mut ehr = Sender::connect(&server.mllp).await;
    let ack = ehr.exchange(&a01).await;
    assert_eq!((ack.code(), ack.control_id()), ("AA", "599102"), "{ack:?}");
    let log = api.all_events(&auditor).await;
    let types: Vec<&str> = log.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec!["PatientRegistered", "EncounterScheduled", "PatientArrived"],
        "exactly one copy"
    );
    assert_log_is_sound(&log);
}

/// Connects to the listener from a chosen loopback address (a second "sender").
async fn connect_from(source: &str, addr: &str) -> Sender {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    Sender {
        stream: socket.connect(addr.parse().unwrap()).await.unwrap(),
        buffer: Vec::new(),
    }
}

/// Issue #15 part 5, defect 2: idle connections without limit exhausted file descriptors and
/// stopped HTTP too. A connection over the cap per sender or in total is closed at once, an
/// idle one after `mllp_idle_timeout_ms`, and HTTP keeps answering through a flood.
#[tokio::test]
async fn connections_over_the_caps_are_closed_idle_ones_time_out_and_http_keeps_serving() {
    let site = site(&[
        ("CAREFLOW_MLLP_MAX_CONNECTIONS", "4"),
        ("CAREFLOW_MLLP_MAX_CONNECTIONS_PER_PEER", "3"),
        ("CAREFLOW_MLLP_IDLE_TIMEOUT_MS", "5000"),
    ])
    .await;
    let addr = site.server.mllp.clone();
    let message = |n: u32| {
        fixture(
            "adt_a04.hl7",
            &[
                ("PATID1234", &format!("CAP{n}")),
                ("MSG00001", &format!("CAP-{n}")),
            ],
        )
    };

    // Three from one sender are served; its fourth is over the per-sender cap.
    let mut first = Vec::new();
    for n in 0..3 {
        let mut sender = connect_from("127.0.0.1", &addr).await;
        assert_eq!(sender.exchange(&message(n)).await.code(), "AA");
        first.push(sender);
    }
    let mut over_peer = connect_from("127.0.0.1", &addr).await;
    over_peer.send(&message(10)).await;
    assert!(over_peer.ack().await.is_none(), "closed, not served");

    // Another sender gets the last slot of the total, and no more.
    let mut other = connect_from("127.0.0.2", &addr).await;
    assert_eq!(other.exchange(&message(20)).await.code(), "AA");
    let mut over_total = connect_from("127.0.0.2", &addr).await;
    over_total.send(&message(21)).await;
    assert!(over_total.ack().await.is_none(), "closed, not served");

    // A flood of connections over the caps: HTTP still answers.
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect(&addr).await {
            flood.push(stream);
        }
    }
    let health = reqwest::get(format!("{}/healthz", site.server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(flood);

    // Idle connections are closed by the server, which frees their slots.
    for mut sender in first.into_iter().chain([other]) {
        assert!(sender.ack().await.is_none(), "an idle connection is closed");
    }
    let mut again = eventually(Duration::from_secs(30), "a freed slot", || {
        let addr = addr.clone();
        async move {
            let mut sender = connect_from("127.0.0.1", &addr).await;
            sender.send(&message(30)).await;
            let ack = sender.ack().await?;
            Some((sender, ack))
        }
    })
    .await;
    assert_eq!(again.1.code(), "AA");
    again.0.stream.shutdown().await.unwrap();
}

/// Issue #15 part 5, defect 3: a 1 MB message of empty fields cost ~0.7 GB and 2 s before its
/// AR. Its structure is now counted in one pass and refused at the first bound passed.
#[tokio::test]
async fn a_message_of_half_a_million_empty_fields_is_refused_ar_with_bounded_memory() {
    let site = site(&[]).await;
    let before = site.server.peak_memory_kib();
    let mut ehr = Sender::connect(&site.server.mllp).await;
    let message = format!(
        "MSH|^~\\&|ADT1|MCM|LABADT|MCM|198808181126||ADT^A04|FIELDS1|P|2.4\rZZZ{}",
        "|".repeat(500_000)
    );
    let ack = ehr.exchange(&message).await;
    assert_eq!((ack.code(), ack.control_id()), ("AR", "FIELDS1"), "{ack:?}");
    assert!(ack.err().unwrap()[5].starts_with("too_complex"), "{ack:?}");
    let grown = site.server.peak_memory_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
    assert_eq!(site.log_len().await, 0);
}

#[tokio::test]
async fn pid_11_gives_the_billing_address_and_a_country_careflow_cannot_keep_is_ae() {
    let site = site(&[]).await;
    let mut ehr = Sender::connect(&site.server.mllp).await;
    // Two addresses: home first, billing (XAD-7 BI) second; the billing one is kept.
    let a04 = "MSH|^~\\&|REG|GOOD HEALTH|CAREFLOW|CF|20240105083000||ADT^A04|ADDR1|P|2.5\r\
PID|1||CF-2001^^^GH^MR||Peeters^Anna||19800131|F|||1 Home St^^Gent^^9000^BE^H~12 Rue Haute^Bte 3^Bruxelles^^1000^BE^BI\r\
PV1|1|O|CLINIC^^^GOOD HEALTH\r";
    let ack = ehr.exchange(a04).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let account = site.state("patient-accounts", "CF-2001").await;
    assert_eq!(
        account["personal"]["address"],
        serde_json::json!({"line": ["12 Rue Haute", "Bte 3"], "city": "Bruxelles",
            "postal_code": "1000", "country": "BE"})
    );

    // An update whose only address has an alpha-3 country: AE, and nothing appended.
    let before = site.log_len().await;
    let a08 = "MSH|^~\\&|REG|GOOD HEALTH|CAREFLOW|CF|20240105090000||ADT^A08|ADDR2|P|2.5\r\
PID|1||CF-2001^^^GH^MR||Peeters^Anna||19800131|F|||5 Main St^^Springfield^^01101^USA^H\r";
    let ack = ehr.exchange(a08).await;
    assert_eq!(ack.code(), "AE", "{ack:?}");
    assert_eq!(
        site.log_len().await,
        before,
        "a refused update appends nothing"
    );
    let account = site.state("patient-accounts", "CF-2001").await;
    assert_eq!(account["personal"]["address"]["city"], "Bruxelles");
}
