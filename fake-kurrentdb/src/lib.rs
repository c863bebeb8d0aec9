//! A fake KurrentDB: the gRPC `Streams` and `ServerFeatures` services over an in-memory log.
//!
//! careflow's KurrentDB backend is tested against this server (the conformance suite, the
//! black-box tests) and it runs on its own as `cargo run --example fake_kurrentdb -- --listen
//! ADDR`. The service code is generated from the `.proto` files of the official client, so
//! the wire format is the client's; the behaviour follows the server's source (see [`log`]).
//!
//! Served: `Streams.Read` (a stream or `$all`, forward or backward, from a revision or
//! position, a maximum count; no server-side filter, no subscription) and `Streams.Append`,
//! and `ServerFeatures.GetSupportedMethods`, which the client calls on connecting. Everything
//! else answers `UNIMPLEMENTED`, which is what careflow must never need. No TLS, no
//! authentication, no cluster (a single node answers no gossip; the client asks for none).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub mod log;
mod service;

pub use log::{Expected, Log, Proposed, Record, WriteOutcome};

/// The generated messages and services, in the packages' module tree.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    pub mod event_store {
        pub mod client {
            tonic::include_proto!("event_store.client");
            pub mod streams {
                tonic::include_proto!("event_store.client.streams");
            }
            pub mod server_features {
                tonic::include_proto!("event_store.client.server_features");
            }
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}

/// A running fake server. Dropping it stops the server.
pub struct FakeKurrentDb {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeKurrentDb {
    /// Binds `addr` (port 0 picks a free port) and serves on the current tokio runtime.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = service::router(Arc::clone(&log));
        // Kestrel (the real server's HTTP stack) turns Nagle's algorithm off; without that,
        // small HTTP/2 frames wait for delayed ACKs and every call costs ~40 ms.
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |accepted| {
                accepted.inspect(|stream| {
                    let _ = stream.set_nodelay(true);
                })
            },
        );
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            log,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection string careflow (and any KurrentDB client) uses for it.
    pub fn connection_string(&self) -> String {
        format!("kurrentdb://{}?tls=false", self.addr)
    }

    /// The log, for tests that look inside or compare.
    pub fn log(&self) -> Arc<Mutex<Log>> {
        Arc::clone(&self.log)
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeKurrentDb {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
