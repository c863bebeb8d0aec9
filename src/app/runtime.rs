//! The runtime of a serving node: everything `serve` opens and starts, and the order it
//! stops in.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::operations::dead_letters::DeadLetters;
use crate::operations::personal_data::{
    EncryptingSnapshots, EncryptingStore, PersonalDataError, PersonalKeys,
};
use crate::outbound::payer::{PayerClient, PayerSettings};
use crate::outbound::{Outbound, OutboundDeps};
use crate::runtime::actors::{ActorConfig, Registry};
use crate::runtime::consumers::{Consumers, Health};
use crate::runtime::process_managers::{ManagerConfig, ProcessManagers};
use crate::runtime::views::{self, ProjectionSet, RunnerConfig};
use crate::store::availability::Watched;
use crate::store::{self, EventStore, FeedConfig, LogFeed, StoreError};
use crate::store::{idempotency, snapshot};

/// What the running service offers handlers once the store is open.
pub struct Runtime {
    /// The store as handlers, actors and replays use it: patients' personal data decrypted,
    /// or `null` once erased (`personal_data::EncryptingStore`).
    pub store: Arc<dyn EventStore>,
    /// The same store's stored bytes (personal data as ciphertext), which the hashes cover:
    /// for the tamper checks.
    pub stored: Arc<dyn EventStore>,
    /// Patients' data keys (erasure destroys them).
    pub personal: Arc<crate::operations::personal_data::PersonalKeys>,
    pub registry: Arc<Registry>,
    pub idempotency: Arc<dyn idempotency::IdempotencyStore>,
    /// The views and their runners.
    pub projections: Arc<crate::runtime::views::ProjectionSet>,
    /// The process-manager runners and their status.
    pub process_managers: Arc<crate::runtime::process_managers::ProcessManagers>,
    /// The NATS and webhook publishers, and the webhook registrations.
    pub outbound: Arc<crate::outbound::Outbound>,
    /// What outbound consumers could not do, for operators (`src/dead_letters`).
    pub dead_letters: crate::operations::dead_letters::DeadLetters,
    /// The FHIR adapter's settings (`mrn_system`).
    pub fhir: crate::inbound::fhir::FhirSettings,
    /// The Odoo executor, when `odoo_url` is set.
    pub odoo: Option<Arc<crate::outbound::odoo::OdooExecutor>>,
    /// The one reader of the log that every consumer follows.
    pub feed: Arc<crate::store::LogFeed>,
    /// Every consumer's state (`/readyz`).
    pub health: Arc<crate::runtime::consumers::Health>,
    /// Whether the event store answers (`/readyz`).
    pub store_availability: Arc<Watched>,
    /// The one clock and id source every component above was handed (`crate::clock`).
    pub clock: Clock,
}

/// Why the runtime did not open: worth retrying (a PostgreSQL server not up yet), or not.
pub enum OpenFailure {
    Retry(StoreError),
    /// A master key that does not match the store's keys will not fix itself: stop at once
    /// (exit 2) rather than retry forever.
    Fatal(StoreError),
}

impl From<StoreError> for OpenFailure {
    fn from(error: StoreError) -> Self {
        OpenFailure::Retry(error)
    }
}

impl Runtime {
    /// Opens the event store and what lives beside it, then starts the actors and every
    /// consumer of the log on one shared reader. Everything that reads the time or makes an
    /// id is handed `clock`: `serve` passes [`Clock::system`], a test a manual clock that it
    /// moves to fire timers and deadlines without waiting for them.
    ///
    /// # Errors
    /// [`OpenFailure`]: retry (a PostgreSQL server not up yet) or give up.
    pub async fn open(config: &Config, clock: &Clock) -> Result<Runtime, OpenFailure> {
        open_runtime(config, clock).await
    }

    /// Stops everything in order, after the inbound adapters have stopped taking work: the
    /// consumers that send commands (Odoo, the process managers) before the actors, so none
    /// is mid-command when the registry shuts down (an interrupted one is redelivered after
    /// the restart); then the publishers and the views; then `before_close` (the final audit
    /// checkpoint signs the log as it is left, and must read it before it closes); then the
    /// store, which commits and answers every queued append.
    pub async fn shutdown<F: std::future::Future<Output = ()>>(&self, before_close: F) {
        if let Some(odoo) = &self.odoo {
            odoo.shutdown(Duration::from_secs(5)).await;
        }
        self.process_managers.shutdown(Duration::from_secs(5)).await;
        self.registry.shutdown();
        self.outbound.shutdown(Duration::from_secs(5)).await;
        self.projections.shutdown().await;
        before_close.await;
        self.store.close().await;
        tracing::info!("event store flushed and closed");
    }
}

async fn open_runtime(config: &Config, clock: &Clock) -> Result<Runtime, OpenFailure> {
    // Everything below reaches the store through `Watched`, which remembers when it last
    // failed for `/readyz`.
    let mut watched = Watched::new(store::open(config, clock).await?);
    if config.store != crate::config::StoreKind::Postgres {
        watched = watched.with_data_dir(config.data_dir.clone());
    }
    let watched = Arc::new(watched);
    let stored: Arc<dyn EventStore> = watched.clone();
    let opened = async {
        let personal = PersonalKeys::open(config, clock).await.map_err(|error| {
            let fatal = matches!(
                error,
                PersonalDataError::MasterKeyMismatch { .. }
                    | PersonalDataError::InvalidMasterKey(_)
                    | PersonalDataError::MasterKeyFile { .. }
            );
            let error = StoreError::unavailable(error);
            if fatal {
                OpenFailure::Fatal(error)
            } else {
                OpenFailure::Retry(error)
            }
        })?;
        let snapshots: Arc<dyn snapshot::SnapshotStore> = Arc::new(EncryptingSnapshots::new(
            snapshot::open(config, clock)
                .await
                .map_err(StoreError::unavailable)?,
            Arc::clone(&personal),
        ));
        let idempotency = idempotency::open(config, clock)
            .await
            .map_err(StoreError::unavailable)?;
        let views = views::open(config, clock)
            .await
            .map_err(StoreError::unavailable)?;
        let checkpoints = crate::runtime::consumers::checkpoint::open(config, clock)
            .await
            .map_err(StoreError::unavailable)?;
        let dead_letters = DeadLetters::open(config, clock)
            .await
            .map_err(StoreError::unavailable)?;
        Ok::<_, OpenFailure>((
            personal,
            snapshots,
            idempotency,
            views,
            checkpoints,
            dead_letters,
        ))
    }
    .await;
    let (personal, snapshots, idempotency, views, checkpoints, dead_letters) = match opened {
        Ok(side) => side,
        Err(error) => {
            // Release the store (and its lock file) before the caller retries or gives up.
            stored.close().await;
            return Err(error);
        }
    };
    // Everything that reads events for their meaning (HTTP, actors, replays) goes through
    // this one wrapper: personal data is encrypted on the way in and decrypted, or `null`
    // once erased, on the way out (docs/audit-guide.md "Erasure").
    let encrypting = Arc::new(EncryptingStore::new(
        Arc::clone(&stored),
        Arc::clone(&personal),
    ));
    let store: Arc<dyn EventStore> = encrypting.clone();
    let registry = Registry::start(
        Arc::clone(&store),
        snapshots,
        ActorConfig {
            clock: clock.clone(),
            ..ActorConfig::from_config(config)
        },
    );
    // One reader of the log for every consumer of this process (store::feed). It reads the
    // stored bytes: projections blank every `personal` object, the publishers send it as
    // `null`, and the one policy that needs it (eligibility) decrypts its own events.
    let feed = LogFeed::start(Arc::clone(&stored), FeedConfig::default()).await;
    // Every consumer's state, for /readyz and the metrics (src/consumers).
    let health = Health::new();
    // The outbound publishers keep their checkpoints in the same table (`nats`, `webhooks`).
    let outbound = match Outbound::start(
        config,
        OutboundDeps {
            feed: Arc::clone(&feed),
            checkpoints: Arc::clone(&checkpoints),
            personal: Arc::clone(&personal),
            dead_letters: dead_letters.clone(),
            clock: clock.clone(),
        },
        &health,
    ) {
        Ok(outbound) => outbound,
        Err(error) => {
            // Nothing has started to follow the log yet: stop the actors, release the store.
            registry.shutdown();
            stored.close().await;
            return Err(OpenFailure::Fatal(StoreError::Unavailable(
                crate::error_chain::error_chain(&error),
            )));
        }
    };
    let projections = ProjectionSet::start(
        Arc::clone(&feed),
        views,
        views::runner::all_projections(),
        RunnerConfig {
            clock: clock.clone(),
            ..RunnerConfig::default()
        },
        &health,
    );
    let consumers = Consumers {
        feed: Arc::clone(&feed),
        checkpoints,
        health: Arc::clone(&health),
        dead_letters: dead_letters.clone(),
        clock: clock.clone(),
    };
    let odoo = odoo_executor(config, &consumers, &registry);
    let process_managers = ProcessManagers::start(
        encrypting,
        Arc::clone(&registry),
        &consumers,
        payer_client(config).map(|payer| payer.with_clock(clock.clone())),
        ManagerConfig::from_config(config),
        config.process_managers,
    );
    Ok(Runtime {
        store,
        stored,
        personal,
        registry,
        idempotency,
        projections,
        process_managers,
        outbound,
        dead_letters,
        fhir: crate::inbound::fhir::FhirSettings::from_config(config),
        odoo,
        feed,
        health,
        store_availability: watched,
        clock: clock.clone(),
    })
}

/// The Odoo executor, when `odoo_url` is set (docs/odoo.md "Operating"). It reads the stored
/// events (the mapping never uses personal data) and shares the process managers'
/// checkpoint table and leases: on PostgreSQL only the lease holder executes.
fn odoo_executor(
    config: &Config,
    consumers: &Consumers,
    registry: &Arc<Registry>,
) -> Option<Arc<crate::outbound::odoo::OdooExecutor>> {
    let settings = crate::outbound::odoo::OdooSettings::from_config(config)?;
    match crate::outbound::odoo::OdooClient::new(settings) {
        Ok(client) => Some(crate::outbound::odoo::OdooExecutor::start(
            consumers,
            Arc::clone(registry),
            client,
            crate::outbound::odoo::ExecutorConfig {
                partner_details: config.odoo_partner_details,
                ..crate::outbound::odoo::ExecutorConfig::default()
            },
        )),
        Err(error) => {
            tracing::error!(%error, "odoo_url cannot be used: nothing is sent to Odoo");
            None
        }
    }
}

/// The payer client of the eligibility runner. Without `payer_url` there is none: the
/// eligibility deadline then flags registrations self-pay unless an upstream system records
/// their eligibility first (docs/process-managers.md).
fn payer_client(config: &Config) -> Option<PayerClient> {
    let Some(settings) = PayerSettings::from_config(config) else {
        if config.process_managers {
            tracing::warn!(
                "payer_url is not set: eligibility is not checked; registrations with coverage are flagged self-pay at their deadline unless eligibility is recorded by another system"
            );
        }
        return None;
    };
    match PayerClient::new(settings) {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "payer_url cannot be used: eligibility is not checked");
            None
        }
    }
}
