//! `careflow serve`: bind, open the runtime, serve, stop in order.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;

use crate::app::runtime::{OpenFailure, Runtime};
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::inbound::http::auth::{self, TokenKeys};
use crate::inbound::http::rate_limit::RateLimiter;
use crate::inbound::http::{self, AppState};
use crate::operations::audit::checkpoint::Checkpointer;
use crate::store::{EventStore, StoreError};

/// `careflow serve`: listen first, then open the store, then serve until SIGTERM/Ctrl-C, then
/// flush the store's writer before exiting.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    check_tls_settings(&config)?;
    let secret = auth::load_or_create_secret(&config).context("loading the JWT secret")?;
    // The process's one clock and id source: HTTP, MLLP and the runtime all read this one.
    let clock = Clock::system();
    let state = AppState::new(
        TokenKeys::new(&secret).with_clock(clock.clone()),
        RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
        clock.clone(),
    );
    let (server, addr) = http::bind(config.listen, Arc::clone(&state))
        .with_context(|| format!("binding {}", config.listen))?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("careflow listening on http://{addr}");
    tracing::info!(%addr, store = ?config.store, data_dir = %config.data_dir.display(), "listening");
    let mllp = {
        let state = Arc::clone(&state);
        let registry: crate::inbound::mllp::RegistrySource =
            Arc::new(move || state.runtime().map(|r| Arc::clone(&r.registry)));
        crate::inbound::mllp::MllpServer::start(
            config.mllp_listen,
            crate::inbound::mllp::MllpSettings {
                clock: clock.clone(),
                ..crate::inbound::mllp::MllpSettings::from_config(&config)
            },
            registry,
        )
        .with_context(|| format!("binding the MLLP listener {}", config.mllp_listen))?
    };
    {
        use std::io::Write;
        // The second line, for tests and scripts that listen on port 0 (written, not
        // println!ed: a reader that stopped after the first line must not panic serve).
        let mut out = std::io::stdout();
        let _ = writeln!(out, "careflow mllp listening on {}", mllp.local_addr());
        let _ = out.flush();
    }
    tracing::info!(addr = %mllp.local_addr(), "mllp listening");

    let handle = server.handle();
    // Set before the server is stopped, so it is there whichever task finishes first.
    let open_error: Arc<Mutex<Option<StoreError>>> = Arc::default();
    // The audit checkpointer, once the store is open (docs/audit-guide.md).
    let checkpoints: Arc<OnceLock<Checkpoints>> = Arc::default();
    let opener = {
        let state = Arc::clone(&state);
        let config = config.clone();
        let open_error = Arc::clone(&open_error);
        let checkpoints = Arc::clone(&checkpoints);
        actix_web::rt::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match Runtime::open(&config, &clock).await {
                    Err(OpenFailure::Fatal(error)) => {
                        if let Ok(mut slot) = open_error.lock() {
                            *slot = Some(error);
                        }
                        handle.stop(false).await;
                        return;
                    }
                    Ok(runtime) => {
                        tracing::info!(backend = runtime.store.backend(), "event store open");
                        // Checkpoints pin the stored hashes: the undecrypted store.
                        let store = Arc::clone(&runtime.stored);
                        state.set_runtime(runtime);
                        start_checkpoints(&config, store, clock, &checkpoints).await;
                        return;
                    }
                    // A shared server may come up after us: keep trying. An embedded file
                    // that cannot be opened will not fix itself.
                    Err(OpenFailure::Retry(error)) if config.store == StoreKind::Postgres => {
                        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "event store not reachable");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(OpenFailure::Retry(error)) => {
                        if let Ok(mut slot) = open_error.lock() {
                            *slot = Some(error);
                        }
                        handle.stop(false).await;
                        return;
                    }
                }
            }
        })
    };

    server.await.context("running the HTTP server")?;
    opener.abort();
    // No new HL7 messages once HTTP has stopped; unanswered ones are resent by their senders.
    mllp.stop();
    if let Some(runtime) = state.runtime() {
        runtime
            .shutdown(async {
                // Sign the log as it is left, so removing its newest events is evident.
                if let Some((checkpointer, periodic)) = checkpoints.get() {
                    periodic.abort();
                    if let Err(error) = checkpointer.write().await {
                        tracing::warn!(%error, "final audit checkpoint failed");
                    }
                }
            })
            .await;
    }
    let open_error = open_error.lock().ok().and_then(|mut slot| slot.take());
    match open_error {
        Some(error) => Err(anyhow::Error::new(error).context("opening the event store")),
        None => Ok(()),
    }
}

/// The TLS settings of the outside services, read before anything is bound, so a CA file
/// that cannot be used stops `serve` at once (exit 2, naming the key, the file and why)
/// instead of showing later as every payer or Odoo call failing, or as a PostgreSQL store
/// retried forever.
fn check_tls_settings(config: &Config) -> anyhow::Result<()> {
    for (key, file) in [
        ("payer_tls_ca_file", &config.payer_tls_ca_file),
        ("odoo_tls_ca_file", &config.odoo_tls_ca_file),
    ] {
        if let Some(path) = file {
            crate::tls::CaCertificates::read(path)
                .with_context(|| format!("{key} cannot be used"))?;
        }
    }
    if config.store == StoreKind::Postgres
        && let Some(url) = &config.database_url
    {
        crate::store::pg_connect::PgConnect::from_url(url.expose())?;
    }
    Ok(())
}

type Checkpoints = (Arc<Checkpointer>, tokio::task::JoinHandle<()>);

/// Opens the audit checkpointer and starts its periodic task. A failure is logged, not fatal:
/// the service runs on, and `audit verify` notes the missing checkpoints.
async fn start_checkpoints(
    config: &Config,
    store: Arc<dyn EventStore>,
    clock: Clock,
    slot: &OnceLock<Checkpoints>,
) {
    match Checkpointer::open(config, store, clock).await {
        Ok(checkpointer) => {
            let checkpointer = Arc::new(checkpointer);
            let periodic = checkpointer.spawn_periodic();
            if slot.set((checkpointer, periodic)).is_err() {
                tracing::warn!("audit checkpointer started twice; keeping the first");
            }
        }
        Err(error) => tracing::error!(%error, "audit checkpoints are not being written"),
    }
}
