//! [`Registry`]: finds the actor of a stream, starting it on first use, and passivates actors
//! that sat idle or that exceed the cap (least recently used first).
//!
//! The registry's map sits behind a `std::sync::Mutex` held only for map operations (never
//! across an `.await`); the serialisation of commands is the actors' job, not the lock's.
//! Passivating an actor means forgetting its address: actix stops an actor once no address to
//! it is left and its mailbox is empty, so messages already on their way are still answered.
//! A new message for that stream then starts a fresh actor, which rebuilds its state. Should
//! the old one still be finishing a command, the store's optimistic concurrency makes the new
//! one reload and decide again (a conflict retry), so nothing is appended twice.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, MailboxError};
use actix_rt::{Arbiter, ArbiterHandle};
use careflow_aggregates::patient_account::{self, AccountStatus};
use careflow_aggregates::{
    AddressedCommand, Aggregate, AnyCommand, Claim, Encounter, InventoryItem, PatientAccount,
    PurchaseWorkflow, Roster, Staffing, StreamId,
};

use super::aggregate_actor::AggregateActor;
use super::command::{CommandContext, CommandError, CommandOutcome, Execute, Observe, Observed};
use super::{ActorConfig, Services};
use crate::operations::metrics;
use crate::store::EventStore;
use crate::store::snapshot::SnapshotStore;

struct Entry {
    /// An `Addr<AggregateActor<A>>` for the stream's aggregate type.
    addr: Box<dyn Any + Send>,
    last_used: Instant,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<StreamId, Entry>,
    /// Use order: tick -> stream; the first entry is the least recently used.
    by_use: BTreeMap<u64, StreamId>,
    next_tick: u64,
}

impl Inner {
    fn remove(&mut self, stream: &StreamId) -> Option<Entry> {
        let entry = self.entries.remove(stream)?;
        self.by_use.remove(&entry.tick);
        Some(entry)
    }
}

/// The live actors of this process.
pub struct Registry {
    services: Arc<Services>,
    arbiters: Vec<ArbiterHandle>,
    /// Kept to stop the threads on shutdown.
    owned: Mutex<Vec<Arbiter>>,
    inner: Mutex<Inner>,
    running: Arc<AtomicUsize>,
}

impl Registry {
    /// Starts `config.arbiters` arbiter threads and a sweeper that passivates idle actors.
    /// Must be called inside an actix `System`.
    pub fn start(
        store: Arc<dyn EventStore>,
        snapshots: Arc<dyn SnapshotStore>,
        config: ActorConfig,
    ) -> Arc<Self> {
        let owned: Vec<Arbiter> = (0..config.arbiters.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let arbiters = owned.iter().map(Arbiter::handle).collect();
        let sweep_every =
            (config.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let registry = Arc::new(Self {
            services: Arc::new(Services {
                store,
                snapshots,
                config,
            }),
            arbiters,
            owned: Mutex::new(owned),
            inner: Mutex::new(Inner::default()),
            running: Arc::new(AtomicUsize::new(0)),
        });
        let weak: Weak<Registry> = Arc::downgrade(&registry);
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                registry.passivate_idle(Instant::now());
            }
        });
        registry
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.services.store
    }

    /// The clock the actors decide by (`ActorConfig::clock`), for adapters that date what
    /// they send through the registry.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.services.config.clock
    }

    pub fn config(&self) -> &ActorConfig {
        &self.services.config
    }

    /// Actors the registry knows (what `careflow_actors_live` reports).
    pub fn live(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.entries.len())
    }

    /// Actors whose threads still run them (passivated ones stop shortly after).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether the registry holds an actor for `stream`.
    pub fn is_live(&self, stream: &StreamId) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| inner.entries.contains_key(stream))
    }

    /// Runs `command` on the actor of `stream`.
    ///
    /// # Errors
    /// [`CommandError`]; an actor that went away before answering is retried once on a fresh
    /// actor (safe: the command id makes a repeated append a no-op).
    pub async fn execute<A: Aggregate>(
        &self,
        stream: &StreamId,
        command: A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        if let Some(merge) = (&command as &dyn Any).downcast_ref::<patient_account::Command>() {
            self.check_merge(stream, merge).await?;
        }
        let mut message = Execute::<A> { command, context };
        for attempt in 0..2 {
            let addr = self.addr::<A>(stream)?;
            match addr.send(message.clone()).await {
                Ok(result) => return result,
                Err(MailboxError::Closed | MailboxError::Timeout) if attempt == 0 => {
                    self.forget(stream, &addr);
                    message.context.check_duplicate = true;
                }
                Err(error) => return Err(CommandError::Unavailable(error.to_string())),
            }
        }
        Err(CommandError::Unavailable("actor did not answer".into()))
    }

    /// What a `MergePatient` needs of the *surviving* account, which the merged account's
    /// `decide` cannot see: checked here, before the command reaches the actor, so a merge
    /// into itself, into an unregistered, merged or closed account, or across currencies is
    /// refused and appends nothing (`patient_account::check_merge`). Every channel (HTTP, HL7
    /// A40, FHIR `$merge`) sends through [`Registry::execute`], so every channel is checked.
    /// The survivor's own `decide` checks it again when the money arrives, so a survivor that
    /// changes in between turns into a refused `AbsorbMergedAccount` (a dead letter of the
    /// `merges` process manager), never into lost money.
    async fn check_merge(
        &self,
        stream: &StreamId,
        command: &patient_account::Command,
    ) -> Result<(), CommandError> {
        let patient_account::Command::MergePatient(merge) = command else {
            return Ok(());
        };
        // A malformed `into` is the body's own 422, which `decide` reports.
        let Ok(into) = StreamId::new(PatientAccount::KIND, &merge.into) else {
            return Ok(());
        };
        let merged = self.current::<PatientAccount>(stream).await?.state;
        // An account that cannot merge at all (unregistered, closed, already merged) gets
        // its own refusal from `decide`, which says more than anything about the target.
        if !matches!(
            merged.status,
            Some(AccountStatus::Registered | AccountStatus::Active | AccountStatus::SelfPay)
        ) {
            return Ok(());
        }
        let survivor = if &into == stream {
            merged.clone()
        } else {
            self.current::<PatientAccount>(&into).await?.state
        };
        patient_account::check_merge(stream.id(), &merged, into.id(), &survivor)?;
        Ok(())
    }

    /// Runs a command addressed to any aggregate: the one place that turns an
    /// [`AnyCommand`] back into a typed [`Registry::execute`], for every channel that sends
    /// to more than one aggregate (HL7 steps, FHIR resources, the process managers).
    ///
    /// The command id sent is `command.command_id()`; the context's is replaced, so a channel
    /// cannot send a command under an id other than the one it was addressed with.
    ///
    /// # Errors
    /// As [`Registry::execute`].
    pub async fn execute_any(
        &self,
        command: &AddressedCommand,
        context: CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let target = command.target();
        let context = CommandContext {
            command_id: command.command_id(),
            ..context
        };
        match command.command() {
            AnyCommand::PatientAccount(c) => {
                self.execute::<PatientAccount>(target, c.clone(), context)
                    .await
            }
            AnyCommand::Encounter(c) => self.execute::<Encounter>(target, c.clone(), context).await,
            AnyCommand::InventoryItem(c) => {
                self.execute::<InventoryItem>(target, c.clone(), context)
                    .await
            }
            AnyCommand::Purchase(c) => {
                self.execute::<PurchaseWorkflow>(target, c.clone(), context)
                    .await
            }
            AnyCommand::Claim(c) => self.execute::<Claim>(target, c.clone(), context).await,
            AnyCommand::Roster(c) => self.execute::<Roster>(target, c.clone(), context).await,
            AnyCommand::Staffing(c) => self.execute::<Staffing>(target, c.clone(), context).await,
        }
    }

    /// The current state of `stream` (0 as version when it has no events).
    ///
    /// # Errors
    /// [`CommandError`] from loading.
    pub async fn observe<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<Observed<A>, CommandError> {
        for attempt in 0..2 {
            let addr = self.addr::<A>(stream)?;
            match addr.send(Observe::<A>(PhantomData)).await {
                Ok(result) => return result,
                Err(_) if attempt == 0 => self.forget(stream, &addr),
                Err(error) => return Err(CommandError::Unavailable(error.to_string())),
            }
        }
        Err(CommandError::Unavailable("actor did not answer".into()))
    }

    /// The current state of `stream` for a caller that decides outside the actor (a FHIR
    /// transaction Bundle): the live actor's, caught up, when there is one; otherwise loaded
    /// from the store (snapshot and tail) without starting an actor, which a Bundle of new
    /// patients would otherwise do for every stream it touches. Should an actor start
    /// meanwhile, the store's version check on the caller's append settles it.
    ///
    /// # Errors
    /// [`CommandError`] from loading.
    pub async fn current<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<Observed<A>, CommandError> {
        if self.is_live(stream) {
            return self.observe::<A>(stream).await;
        }
        let loaded = super::replay::load::<A>(&self.services, stream).await?;
        Ok(Observed {
            state: loaded.state,
            version: loaded.version,
            position: loaded.position,
        })
    }

    /// Passivates every actor idle since before `now - idle`; returns how many.
    pub fn passivate_idle(&self, now: Instant) -> usize {
        let idle = self.services.config.idle;
        let removed: Vec<Entry> = {
            let Ok(mut inner) = self.inner.lock() else {
                return 0;
            };
            let stale: Vec<StreamId> = inner
                .entries
                .iter()
                .filter(|(_, e)| now.saturating_duration_since(e.last_used) >= idle)
                .map(|(s, _)| s.clone())
                .collect();
            let removed = stale.iter().filter_map(|s| inner.remove(s)).collect();
            metrics::actors_live(inner.entries.len());
            removed
        };
        if !removed.is_empty() {
            metrics::actors_passivated("idle", removed.len());
            tracing::info!(count = removed.len(), "idle actors passivated");
        }
        // Dropped outside the lock: the addresses go, and the actors stop once drained.
        removed.len()
    }

    /// The snapshot cache the actors use (erasure deletes a patient's snapshot through it).
    pub fn snapshots(&self) -> &Arc<dyn SnapshotStore> {
        &self.services.snapshots
    }

    /// Passivates the actor of `stream` now, whatever its type: its in-memory state is
    /// dropped, and the next message rebuilds it from the store (used after an erasure).
    pub fn passivate(&self, stream: &StreamId) {
        let removed = self.inner.lock().ok().and_then(|mut inner| {
            let removed = inner.remove(stream);
            metrics::actors_live(inner.entries.len());
            removed
        });
        if removed.is_some() {
            metrics::actors_passivated("erased", 1);
        }
    }

    /// Forgets the actor of `stream` after its events were appended without it (a FHIR
    /// transaction Bundle appends through `EventStore::append_all`), so the next message
    /// starts a fresh actor rather than deciding on the state the old one held. (Should a
    /// stale actor still decide, the store's version check would refuse its append and it
    /// would reload; forgetting it saves that round.)
    pub fn forget_stale(&self, stream: &StreamId) {
        let removed = self.inner.lock().ok().and_then(|mut inner| {
            let removed = inner.remove(stream);
            metrics::actors_live(inner.entries.len());
            removed
        });
        if removed.is_some() {
            metrics::actors_passivated("stale", 1);
        }
    }

    /// Stops the arbiter threads (after the HTTP server has drained its requests).
    pub fn shutdown(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Inner::default();
        }
        if let Ok(mut owned) = self.owned.lock() {
            for arbiter in owned.drain(..) {
                arbiter.stop();
            }
        }
    }

    fn forget<A: Aggregate>(&self, stream: &StreamId, addr: &Addr<AggregateActor<A>>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let same = inner
            .entries
            .get(stream)
            .and_then(|e| e.addr.downcast_ref::<Addr<AggregateActor<A>>>())
            .is_some_and(|known| known == addr);
        if same {
            inner.remove(stream);
            metrics::actors_live(inner.entries.len());
        }
    }

    fn arbiter_for(&self, stream: &StreamId) -> Result<&ArbiterHandle, CommandError> {
        let mut hasher = DefaultHasher::new();
        stream.as_str().hash(&mut hasher);
        let count = self.arbiters.len().max(1) as u64;
        let index = usize::try_from(hasher.finish() % count).unwrap_or(0);
        self.arbiters
            .get(index)
            .ok_or_else(|| CommandError::Unavailable("no arbiter is running".into()))
    }

    fn addr<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<Addr<AggregateActor<A>>, CommandError> {
        let mut evicted: Vec<Entry> = Vec::new();
        let mut dead: Option<Entry> = None;
        let addr = {
            let mut inner = self
                .inner
                .lock()
                .map_err(|_| CommandError::Unavailable("actor registry lock poisoned".into()))?;
            let tick = inner.next_tick;
            inner.next_tick += 1;
            let known = inner.entries.get(stream).and_then(|e| {
                e.addr
                    .downcast_ref::<Addr<AggregateActor<A>>>()
                    .filter(|addr| addr.connected())
                    .cloned()
            });
            if let Some(addr) = known {
                let old_tick = inner.entries.get_mut(stream).map(|entry| {
                    entry.last_used = Instant::now();
                    std::mem::replace(&mut entry.tick, tick)
                });
                if let Some(old) = old_tick {
                    inner.by_use.remove(&old);
                }
                inner.by_use.insert(tick, stream.clone());
                addr
            } else {
                // A dead entry (its actor stopped) is replaced.
                dead = inner.remove(stream);
                let services = Arc::clone(&self.services);
                let running = Arc::clone(&self.running);
                let owned_stream = stream.clone();
                let addr =
                    AggregateActor::<A>::start_in_arbiter(self.arbiter_for(stream)?, move |_| {
                        AggregateActor::new(owned_stream, services, running)
                    });
                inner.entries.insert(
                    stream.clone(),
                    Entry {
                        addr: Box::new(addr.clone()),
                        last_used: Instant::now(),
                        tick,
                    },
                );
                inner.by_use.insert(tick, stream.clone());
                metrics::actor_activated(A::KIND);
                let cap = self.services.config.max_live;
                while inner.entries.len() > cap {
                    let Some((_, oldest)) = inner.by_use.pop_first() else {
                        break;
                    };
                    if let Some(entry) = inner.entries.remove(&oldest) {
                        evicted.push(entry);
                    }
                }
                addr
            }
        };
        if let Ok(inner) = self.inner.lock() {
            metrics::actors_live(inner.entries.len());
        }
        if !evicted.is_empty() {
            metrics::actors_passivated("capacity", evicted.len());
        }
        drop(evicted);
        drop(dead);
        Ok(addr)
    }
}
