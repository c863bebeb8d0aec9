//! HL7 v2 over MLLP: the TCP listener `careflow serve` runs beside HTTP (default
//! 127.0.0.1:2575, `mllp_listen`).
//!
//! This module owns the transport and the order of work, not the meaning of messages
//! (`crate::inbound::hl7` maps a message to commands). A connection reads frames ([`codec`]), maps
//! each message, and hands it to a *lane* chosen by a hash of its MRN ([`lanes`]): a lane runs
//! its messages one at a time through the same [`crate::runtime::actors::Registry`] as the HTTP API,
//! so one patient's messages are applied in arrival order while different patients' run in
//! parallel. A connection may pipeline; its ACKs go back in its own order ([`connection`]).
//!
//! The ACK rule: `AA` only once every command of the message answered, and the registry
//! answers after the append is durable. A resent message (same MSH-4 + MSH-10) derives the
//! same command ids, finds them appended, appends nothing and is acknowledged `AA` again.

mod ack;
pub mod codec;
mod connection;
mod lanes;
mod pending;

pub use ack::{Ack, AckCode, AckError};
pub use codec::{Frame, FrameError, MllpCodec};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_rt::Arbiter;

use crate::runtime::actors::Registry;

/// Where the listener finds the actor registry: `None` until the store is open (messages
/// then get `AR` 207, "resend later").
pub type RegistrySource = Arc<dyn Fn() -> Option<Arc<Registry>> + Send + Sync>;

/// Listener settings (config keys `mllp_*`).
#[derive(Debug, Clone)]
pub struct MllpSettings {
    pub max_frame_bytes: usize,
    /// Test hook: pause between durable and the ACK being written.
    pub ack_delay: Duration,
    /// Lanes messages are spread over by MRN.
    pub lanes: usize,
    /// Messages one connection may have unanswered before its reads pause.
    pub max_pipeline: usize,
    /// Dates the ACKs and makes their control ids (the process's clock).
    pub clock: crate::clock::Clock,
    /// A connection with nothing unanswered that brings no complete frame for this long is
    /// closed (a drip of bytes that never completes a frame counts as idle too).
    pub idle_timeout: Duration,
    /// Connections open at once, all senders together; one more is closed at once.
    pub max_connections: usize,
    /// Connections open at once from one sender (peer IP address).
    pub max_connections_per_peer: usize,
}

impl MllpSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_frame_bytes: config.mllp_max_frame_bytes.max(16),
            ack_delay: Duration::from_millis(config.mllp_ack_delay_ms),
            idle_timeout: Duration::from_millis(config.mllp_idle_timeout_ms.max(1)),
            max_connections: config.mllp_max_connections.max(1),
            max_connections_per_peer: config.mllp_max_connections_per_peer.max(1),
            ..Self::default()
        }
    }
}

impl Default for MllpSettings {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1 << 20,
            ack_delay: Duration::ZERO,
            lanes: 256,
            max_pipeline: 128,
            clock: crate::clock::Clock::system(),
            idle_timeout: Duration::from_secs(600),
            max_connections: 256,
            max_connections_per_peer: 16,
        }
    }
}

/// The running listener; [`MllpServer::stop`] closes it.
pub struct MllpServer {
    arbiter: Arbiter,
    addr: SocketAddr,
}

impl MllpServer {
    /// Binds `listen` now (so `serve` can print the address and fail early when it is taken)
    /// and serves it on an arbiter thread of its own.
    ///
    /// # Errors
    /// The bind error.
    pub fn start(
        listen: SocketAddr,
        settings: MllpSettings,
        registry: RegistrySource,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let arbiter = Arbiter::new();
        let started = arbiter.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => connection::accept_loop(listener, settings, registry).await,
                Err(error) => tracing::error!(%error, "mllp listener could not start"),
            }
        });
        if !started {
            return Err(std::io::Error::other("the mllp arbiter is not running"));
        }
        Ok(Self { arbiter, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops open connections; messages not yet acknowledged are resent
    /// by their senders (a resend is recognised by MSH-10).
    pub fn stop(&self) {
        self.arbiter.stop();
    }
}
