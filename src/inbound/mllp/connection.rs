//! One MLLP connection: frames in, ACKs out in the same order; and how many may be open.
//!
//! Connections are capped in total and per sender (peer IP), and one with nothing unanswered
//! that brings no complete frame within `idle_timeout` is closed: each open connection holds a
//! file descriptor, and a flood of idle ones used to exhaust them and stop HTTP too. A
//! connection over a cap is accepted and closed at once (MLLP has no way to say why; the
//! sender sees the close and retries later).
//!
//! Reading and answering overlap: a sender may pipeline messages, each goes to its lane as
//! soon as it is read, and the answers are written in the order the messages came, each as
//! soon as it and every one before it is done. At most `max_pipeline` messages wait
//! unanswered; then reading pauses (TCP back-pressure reaches the sender).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::ack::{Ack, AckCode, AckError};
use super::codec::{Frame, FrameError, MllpCodec};
use super::lanes::{Job, Lanes, transient};
use super::pending::{Pending, Waiting};
use super::{MllpSettings, RegistrySource};
use crate::clock::Clock;
use crate::inbound::hl7::{self, Header};
use crate::operations::metrics;

const INTERFACE: &str = "mllp";

/// What every connection shares.
struct Shared {
    settings: MllpSettings,
    lanes: Arc<Lanes>,
    pending: Arc<Pending>,
    open: Mutex<OpenConnections>,
}

/// The connections open now, in total and per peer: what the caps count.
#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// A connection's place under the caps, given back when it is dropped.
struct Admitted {
    shared: Arc<Shared>,
    peer: IpAddr,
}

impl Shared {
    /// Takes a place for a connection from `peer`, or names the cap reached (`total` or
    /// `per_peer`). A poisoned count refuses (fail closed): a cap that cannot be counted is
    /// not a cap.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, &'static str> {
        let mut open = self.open.lock().map_err(|_| "total")?;
        let from_peer = open.per_peer.get(&peer).copied().unwrap_or(0);
        if open.total >= self.settings.max_connections {
            return Err("total");
        }
        if from_peer >= self.settings.max_connections_per_peer {
            return Err("per_peer");
        }
        open.total += 1;
        open.per_peer.insert(peer, from_peer + 1);
        Ok(Admitted {
            shared: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut open) = self.shared.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(count) = open.per_peer.get_mut(&self.peer) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.per_peer.remove(&self.peer);
                }
            }
        }
    }
}

/// An ACK on its way: the answer, and what it answers.
type Answer = Pin<Box<dyn Future<Output = (Option<Header>, Ack, Waiting)> + Send>>;

pub async fn accept_loop(listener: TcpListener, settings: MllpSettings, registry: RegistrySource) {
    let shared = Arc::new(Shared {
        lanes: Lanes::start(settings.lanes, registry),
        pending: Arc::new(Pending::default()),
        settings,
        open: Mutex::new(OpenConnections::default()),
    });
    {
        // The oldest unanswered age grows by itself: publish it every second.
        let pending = Arc::clone(&shared.pending);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                pending.publish();
            }
        });
    }
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let admitted = match shared.admit(peer.ip()) {
                    Ok(admitted) => admitted,
                    Err(cap) => {
                        tracing::debug!(%peer, cap, "mllp connection over a cap closed");
                        metrics::mllp_connection_refused(cap);
                        drop(stream);
                        continue;
                    }
                };
                tracing::debug!(%peer, "mllp connection");
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, admitted));
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, "mllp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, admitted: Admitted) {
    let shared = Arc::clone(&admitted.shared);
    let idle_timeout = shared.settings.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let (read, write) = stream.into_split();
    let max = shared.settings.max_frame_bytes;
    let mut frames = FramedRead::new(read, MllpCodec::new(max));
    let mut acks = FramedWrite::new(write, MllpCodec::new(max));
    let mut answers: FuturesOrdered<Answer> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            Some(first) = answers.next(), if !answers.is_empty() => {
                // Every answer already done goes out in one write.
                let mut ready = vec![first];
                while let Some(Some(next)) = answers.next().now_or_never() {
                    ready.push(next);
                }
                let mut codes = Vec::with_capacity(ready.len());
                let mut written = Ok(());
                for (header, ack, _) in &ready {
                    let clock = &shared.settings.clock;
                    let text = ack.render(header.as_ref(), clock.now(), &ack_id(clock));
                    codes.push(ack.code.as_str());
                    written = acks.feed(Bytes::from(text)).await;
                    if written.is_err() {
                        break;
                    }
                }
                if written.is_ok() {
                    written = acks.flush().await;
                }
                // Answered (or never to be): out of the in-flight gauges either way.
                drop(ready);
                if let Err(error) = written {
                    tracing::debug!(%error, "mllp ack not written; the sender will resend");
                    return;
                }
                for code in codes {
                    metrics::interface_answered(INTERFACE, code);
                }
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
            }
            frame = frames.next(), if reading && answers.len() < shared.settings.max_pipeline => {
                match frame {
                    Some(Ok(frame)) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                        answers.push_back(receive(&shared, frame));
                    }
                    Some(Err(FrameError::TooLarge { max, head })) => {
                        tracing::warn!(max, "mllp frame over the size cap; closing after the AR");
                        answers.push_back(too_large(&shared, max, &head));
                        reading = false;
                    }
                    Some(Err(FrameError::Io(error))) => {
                        tracing::debug!(%error, "mllp read failed");
                        reading = false;
                    }
                    None => reading = false,
                }
            }
            () = &mut idle, if answers.is_empty() => {
                tracing::debug!("mllp connection idle; closed");
                return;
            }
            else => return,
        }
        if !reading && answers.is_empty() {
            return;
        }
    }
}

/// Maps a frame and queues it on its lane; the future resolves to its ACK.
fn receive(shared: &Shared, frame: Frame) -> Answer {
    metrics::interface_arrived(INTERFACE);
    let waiting = shared.pending.enter();
    if frame.skipped > 0 {
        tracing::debug!(bytes = frame.skipped, "mllp bytes outside frames skipped");
    }
    let text = hl7::payload_text(&frame.payload);
    match hl7::read(&text) {
        Err((header, malformed)) => {
            tracing::info!(
                code = malformed.code(),
                control_id = header.as_ref().map(|h| h.control_id.as_str()),
                "hl7 message refused (AE or AR)"
            );
            let ack = Ack::refusal(&malformed);
            Box::pin(std::future::ready((header.map(|h| *h), ack, waiting)))
        }
        Ok(inbound) => {
            let header = inbound.header.clone();
            let (reply, answer) = oneshot::channel();
            shared.lanes.submit(Job { inbound, reply });
            let delay = shared.settings.ack_delay;
            Box::pin(async move {
                let ack = answer
                    .await
                    .unwrap_or_else(|_| transient("the mllp lane stopped"));
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                (Some(header), ack, waiting)
            })
        }
    }
}

fn too_large(shared: &Shared, max: usize, head: &[u8]) -> Answer {
    metrics::interface_arrived(INTERFACE);
    let waiting = shared.pending.enter();
    let text = hl7::payload_text(head);
    // The head holds MSH: answer against its control id when it reads.
    let header = hl7::msh_header(&text);
    let ack = Ack {
        code: AckCode::Reject,
        error: Some(AckError {
            location: None,
            condition: ("100", "Segment sequence error"),
            application_code: "frame_too_large".into(),
            message: format!("message larger than {max} bytes; the connection is closed"),
        }),
    };
    Box::pin(std::future::ready((header, ack, waiting)))
}

/// MSH-10 of an ACK: unique enough for a sender's logs, 18 characters (MSH-10 allows 20).
fn ack_id(clock: &Clock) -> String {
    // The low half of a v4 id: 62 random bits.
    format!("CF{:016X}", clock.new_id().as_u64_pair().1)
}
