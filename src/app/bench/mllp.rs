//! `careflow bench mllp`: HL7 messages per second acknowledged by a running server over MLLP,
//! as an interface engine sends them.
//!
//! Each of `--connections` connections sends `--messages / --connections` messages for its
//! own `--patients` patients (MRNs unique to the run): a patient's first message is an
//! ADT^A04 registration, every later one a DFT^P03 with one charge. A connection keeps up to
//! `--window` messages unacknowledged (1 = the classic send-and-wait sender); the latency of
//! a message runs from its write to its ACK, which the server sends only once its events are
//! durable. ACKs other than `AA` are counted by code. The generator runs on the same machine
//! as the server, so its CPU is part of the figure (docs/performance.md "MLLP").

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{latency_histogram, ms, quantile};

/// What `bench mllp` runs.
#[derive(Debug, Clone)]
pub struct MllpBench {
    /// The server's MLLP `host:port`.
    pub addr: String,
    pub connections: usize,
    /// Messages in all, over every connection.
    pub messages: u64,
    /// Messages a connection may have unacknowledged.
    pub window: usize,
    /// Patients per connection.
    pub patients: usize,
}

/// What `bench mllp` measured.
#[derive(Debug, Clone)]
pub struct MllpReport {
    pub connections: usize,
    pub window: usize,
    pub messages: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// ACKs by MSA-1.
    pub acks: BTreeMap<String, u64>,
}

impl fmt::Display for MllpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connections: {} window: {} messages: {} seconds: {:.1}",
            self.connections,
            self.window,
            self.messages,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "messages/s: {:.0}",
            self.messages as f64 / self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "ack_p50_ms: {:.3}", ms(self.p50))?;
        writeln!(f, "ack_p99_ms: {:.3}", ms(self.p99))?;
        writeln!(f, "ack_max_ms: {:.3}", ms(self.max))?;
        let acks: Vec<String> = self.acks.iter().map(|(k, n)| format!("{k}={n}")).collect();
        write!(f, "acks: {}", acks.join(" "))
    }
}

/// Runs the load.
///
/// # Errors
/// A connection that cannot be made or breaks.
pub async fn mllp(spec: &MllpBench) -> anyhow::Result<MllpReport> {
    let run = format!("{:06X}", rand::random::<u32>() & 0xFF_FFFF);
    let connections = spec.connections.max(1);
    let per_connection = spec.messages / connections as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let spec = spec.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            connection(&spec, &run, c, per_connection).await
        }));
    }
    let mut histogram = latency_histogram()?;
    let mut acks: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (h, a) = task.await.context("a bench connection panicked")??;
        histogram
            .add(&h)
            .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
        for (code, n) in a {
            *acks.entry(code).or_default() += n;
        }
    }
    Ok(MllpReport {
        connections,
        window: spec.window,
        messages: per_connection * connections as u64,
        elapsed: started.elapsed(),
        p50: quantile(&histogram, 0.5),
        p99: quantile(&histogram, 0.99),
        max: Duration::from_micros(histogram.max()),
        acks,
    })
}

/// The `i`th message of connection `c`.
fn message(run: &str, c: usize, i: u64, patients: usize) -> String {
    let patient = i % patients.max(1) as u64;
    let mrn = format!("B{run}-{c}-{patient}");
    let control = format!("{run}{c}-{i}");
    let pid = format!("PID|1||{mrn}^^^BENCH^MR||Doe^Jane^Q||19800131|F\r");
    if i < patients as u64 {
        format!(
            "MSH|^~\\&|BENCH|BENCH|CAREFLOW|CF|20240105083000||ADT^A04|{control}|P|2.5\r\
             EVN|A04|20240105083000\r{pid}"
        )
    } else {
        format!(
            "MSH|^~\\&|BENCH|BENCH|CAREFLOW|CF|20240105083000||DFT^P03|{control}|P|2.5\r\
             EVN|P03|20240105083000\r{pid}PV1|1|O|CLINIC{}V{mrn}\r\
             FT1|1|||20240105||CG|99213^Office visit|||1||12.50\r",
            "|".repeat(16)
        )
    }
}

type ConnectionResult = anyhow::Result<(Histogram<u64>, BTreeMap<String, u64>)>;

async fn connection(spec: &MllpBench, run: &str, c: usize, count: u64) -> ConnectionResult {
    let stream = TcpStream::connect(&spec.addr)
        .await
        .with_context(|| format!("connecting to {}", spec.addr))?;
    stream.set_nodelay(true)?;
    let (mut read, mut write) = stream.into_split();
    let (sent, mut unacked) = mpsc::channel::<Instant>(spec.window.max(1));
    let patients = spec.patients;
    let run = run.to_owned();
    let writer = tokio::spawn(async move {
        for i in 0..count {
            let payload = message(&run, c, i, patients);
            let mut frame = Vec::with_capacity(payload.len() + 3);
            frame.push(0x0b);
            frame.extend_from_slice(payload.as_bytes());
            frame.extend_from_slice(&[0x1c, 0x0d]);
            // The window: wait for a free slot before writing.
            let Ok(slot) = sent.reserve().await else {
                return Ok(());
            };
            write.write_all(&frame).await?;
            slot.send(Instant::now());
        }
        Ok::<(), std::io::Error>(())
    });
    let mut histogram = latency_histogram()?;
    let mut acks: BTreeMap<String, u64> = BTreeMap::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut received = 0;
    while received < count {
        let n = read.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        while let Some(end) = buffer[consumed..]
            .windows(2)
            .position(|w| w == [0x1c, 0x0d])
        {
            let frame = &buffer[consumed..consumed + end];
            let text = String::from_utf8_lossy(frame);
            let code = text
                .split('\r')
                .find(|s| s.starts_with("MSA|"))
                .and_then(|s| s.split('|').nth(1))
                .unwrap_or("none")
                .to_owned();
            *acks.entry(code).or_default() += 1;
            let at = unacked
                .recv()
                .await
                .context("an ACK for a message never sent")?;
            let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
            histogram.saturating_record(micros.max(1));
            received += 1;
            consumed += end + 2;
        }
        buffer.drain(..consumed);
    }
    writer.await.context("the bench writer panicked")??;
    Ok((histogram, acks))
}
