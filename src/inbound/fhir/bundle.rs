//! A transaction Bundle as one unit: every entry is applied, or none is.
//!
//! The entries can touch several streams (a Patient, its Coverage and its Encounter), and the
//! store's per-stream `append` cannot make that atomic, so the executor does what an actor does
//! for one command, for all of them at once:
//!
//! 1. parse and map every entry ([`super::inbound`]); `urn:uuid:` references between entries
//!    resolve to the MRN or visit of the entry they name;
//! 2. load each involved aggregate's current state through the registry (`current`: a live
//!    actor's, caught up, else loaded from the store without starting an actor);
//! 3. fold the entries in Bundle order with the aggregates' pure `decide` and `evolve`, so
//!    entry 3 sees what entries 1 and 2 did (a charge on a patient registered in the same
//!    Bundle);
//! 4. append everything with one `EventStore::append_all`, each command expecting the version
//!    the fold left its stream at. A version conflict (another writer got there first) starts
//!    over from step 2, at most [`MAX_ATTEMPTS`] times.
//!
//! Any entry refused (unparseable, unmappable, or rejected by its aggregate) refuses the
//! Bundle with that entry named ([`FhirError::Entry`]) and nothing appended. After a commit the
//! registry forgets the touched streams' actors, so none decides on the state it held before.

use std::collections::HashMap;

use careflow_aggregates::{
    AddressedCommand, Aggregate, AnyCommand, Claim, Ctx, Encounter, InventoryItem, PatientAccount,
    PurchaseWorkflow, Roster, Staffing, StreamId,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::execute::{Applied, Message, address, location, stream};
use super::inbound::{
    self, Method, References, claim_response_command, encounter_commands, resolve_patient,
};
use super::model;
use super::{FhirError, FhirSettings, Step};
use crate::runtime::actors::{CommandOutcome, Registry};
use crate::store::{AppendRequest, ExpectedVersion, ProposedEvent, StoreError};

/// Decide-and-append rounds before a Bundle that keeps meeting other writers is refused.
pub const MAX_ATTEMPTS: u32 = 4;

/// How one entry of a committed Bundle ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryOutcome {
    pub resource_type: &'static str,
    /// `Patient/{mrn}` or `Encounter/{visit}`, for the entry's `response.location`.
    pub location: Option<String>,
    pub applied: Vec<Applied>,
}

impl EntryOutcome {
    /// Whether the entry created its resource (`201 Created` rather than `200 OK`).
    pub fn created(&self) -> bool {
        self.applied.iter().any(|a| {
            matches!(a.command, "RegisterPatient" | "ScheduleEncounter")
                && !a.outcome.events.is_empty()
        })
    }
}

/// A parsed, mapped Bundle, ready to run.
#[derive(Debug, Clone)]
pub struct Transaction {
    entries: Vec<(&'static str, Step)>,
}

impl Transaction {
    /// Parses a `transaction` Bundle and maps each entry.
    ///
    /// # Errors
    /// [`FhirError::WrongResourceType`] / [`FhirError::Invalid`] for the Bundle itself, or
    /// [`FhirError::Entry`] naming the first entry that cannot be parsed or mapped.
    pub fn parse(value: Value, settings: &FhirSettings) -> Result<Self, FhirError> {
        let found = inbound::resource_type(&value)?;
        if found != "Bundle" {
            return Err(FhirError::WrongResourceType {
                expected: "Bundle".into(),
                found: found.to_owned(),
            });
        }
        let bundle: model::Bundle =
            serde_json::from_value(value).map_err(|error| FhirError::Structure {
                detail: careflow_aggregates::Rejection::from_serde(&error).to_string(),
            })?;
        if bundle.kind.as_deref() != Some("transaction") {
            return Err(FhirError::value(
                "Bundle.type",
                "careflow takes transaction Bundles (all entries or none)",
            ));
        }
        if bundle.entry.is_empty() {
            return Err(FhirError::missing(
                "Bundle.entry",
                "the Bundle has no entries",
            ));
        }
        let at = |index: usize| {
            move |error: FhirError| FhirError::Entry {
                index,
                error: Box::new(error),
            }
        };
        let mut parsed = Vec::with_capacity(bundle.entry.len());
        let mut refs = References::new();
        for (index, entry) in bundle.entry.into_iter().enumerate() {
            let resource = entry
                .resource
                .ok_or_else(|| FhirError::missing("resource", "the entry has no resource"))
                .and_then(|r| inbound::parse(r, None))
                .map_err(at(index))?;
            let method = method(&entry.request, resource.type_name()).map_err(at(index))?;
            if let (Some(full_url), Some(id)) =
                (entry.full_url, inbound::careflow_id(&resource, settings))
            {
                refs.insert(full_url, id);
            }
            parsed.push((resource, method));
        }
        let entries = parsed
            .iter()
            .enumerate()
            .map(|(index, (resource, method))| {
                inbound::plan(resource, method, settings, &refs)
                    .map(|step| (resource.type_name(), step))
                    .map_err(at(index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each entry's resource type and mapped step, in Bundle order (what [`Transaction::run`]
    /// decides; the fuzz targets fold them without a store).
    pub fn steps(&self) -> impl Iterator<Item = (&'static str, &Step)> {
        self.entries.iter().map(|(kind, step)| (*kind, step))
    }

    /// Decides every entry and appends the lot atomically (see the module docs).
    ///
    /// # Errors
    /// [`FhirError::Entry`] for a refused entry, [`FhirError::Conflict`] after
    /// [`MAX_ATTEMPTS`] conflicting rounds, [`FhirError::Unavailable`] from the store.
    pub async fn run(
        &self,
        registry: &Registry,
        message: &Message,
        now: DateTime<Utc>,
    ) -> Result<Vec<EntryOutcome>, FhirError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut work = Workspace::default();
            // A load that fails here is tried again by the entry's own fold below, whose
            // error names the entry.
            let _ = work.preload(registry, &self.entries).await;
            for (index, (_, step)) in self.entries.iter().enumerate() {
                work.decide(registry, index, step, message, now)
                    .await
                    .map_err(|error| FhirError::Entry {
                        index,
                        error: Box::new(error),
                    })?;
            }
            let requests = std::mem::take(&mut work.requests);
            let appended = if requests.is_empty() {
                Vec::new()
            } else {
                match registry.store().append_all(requests).await {
                    Ok(appended) => appended,
                    Err(StoreError::WrongExpectedVersion { .. }) => {
                        crate::operations::metrics::command_conflict_retried("fhir_bundle");
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            };
            for stream in work.touched() {
                registry.forget_stale(stream);
            }
            return Ok(self.outcomes(work.decided, appended));
        }
        Err(FhirError::Conflict {
            attempts: MAX_ATTEMPTS,
        })
    }

    fn outcomes(
        &self,
        decided: Vec<Decided>,
        appended: Vec<crate::store::Appended>,
    ) -> Vec<EntryOutcome> {
        let mut appended = appended.into_iter();
        let mut out: Vec<EntryOutcome> = self
            .entries
            .iter()
            .map(|(resource_type, step)| EntryOutcome {
                resource_type,
                location: location(step),
                applied: Vec::new(),
            })
            .collect();
        for d in decided {
            let outcome = match d.appended {
                true => appended
                    .next()
                    .map(CommandOutcome::from_appended)
                    .unwrap_or_else(|| d.noop.clone()),
                false => d.noop.clone(),
            };
            if let Some(entry) = out.get_mut(d.entry) {
                entry.applied.push(Applied {
                    command: d.command,
                    outcome,
                });
            }
        }
        out
    }
}

/// The method of an entry: `PUT {type}/{id}` is an update, anything else a create.
fn method(
    request: &Option<model::BundleRequest>,
    resource_type: &str,
) -> Result<Method, FhirError> {
    let Some(request) = request else {
        return Ok(Method::Create);
    };
    match request.method.as_deref() {
        None | Some("POST") => Ok(Method::Create),
        Some("PUT") => {
            let url = request.url.as_deref().unwrap_or_default();
            let id = url
                .strip_prefix(resource_type)
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|id| !id.is_empty() && !id.contains(['/', '?']))
                .ok_or_else(|| {
                    FhirError::value(
                        "request.url",
                        format!("a PUT entry's url is {resource_type}/<id>"),
                    )
                })?;
            Ok(Method::Update { id: id.to_owned() })
        }
        Some(_) => Err(FhirError::value(
            "request.method",
            "a transaction entry is POST (create) or PUT (update)",
        )),
    }
}

/// One command the fold decided: its entry, and whether it appends (a no-op does not).
struct Decided {
    entry: usize,
    command: &'static str,
    appended: bool,
    /// The answer when nothing is appended (the stream's version as the fold left it).
    noop: CommandOutcome,
}

/// A stream's state as the fold has left it so far.
struct Working<A: Aggregate> {
    state: A::State,
    version: u64,
}

/// The states the fold works on and the appends it has decided.
#[derive(Default)]
struct Workspace {
    accounts: HashMap<StreamId, Working<PatientAccount>>,
    encounters: HashMap<StreamId, Working<Encounter>>,
    items: HashMap<StreamId, Working<InventoryItem>>,
    purchases: HashMap<StreamId, Working<PurchaseWorkflow>>,
    claims: HashMap<StreamId, Working<Claim>>,
    rosters: HashMap<StreamId, Working<Roster>>,
    staffings: HashMap<StreamId, Working<Staffing>>,
    requests: Vec<AppendRequest>,
    decided: Vec<Decided>,
    /// Commands decided per entry (for their ids).
    steps: HashMap<usize, usize>,
}

/// The stream's working state, loaded through the registry on first use.
async fn working<'m, A: Aggregate>(
    map: &'m mut HashMap<StreamId, Working<A>>,
    registry: &Registry,
    stream: &StreamId,
) -> Result<&'m mut Working<A>, FhirError> {
    if !map.contains_key(stream) {
        let observed = registry.current::<A>(stream).await?;
        map.insert(
            stream.clone(),
            Working {
                state: observed.state,
                version: observed.version,
            },
        );
    }
    map.get_mut(stream)
        .ok_or_else(|| FhirError::Unavailable("working state vanished".into()))
}

/// Loads the states of `streams` concurrently into `map`.
async fn preload_all<A: Aggregate>(
    map: &mut HashMap<StreamId, Working<A>>,
    registry: &Registry,
    streams: Vec<StreamId>,
) -> Result<(), FhirError> {
    let loads = streams.iter().map(|stream| registry.current::<A>(stream));
    let loaded = futures_util::future::join_all(loads).await;
    for (stream, observed) in streams.into_iter().zip(loaded) {
        let observed = observed?;
        map.insert(
            stream,
            Working {
                state: observed.state,
                version: observed.version,
            },
        );
    }
    Ok(())
}

impl Workspace {
    /// Loads every stream the entries touch, concurrently: on PostgreSQL each load is a
    /// snapshot look-up and a stream read over the network, and loading them one entry at a
    /// time put them all in series. The fold then finds them loaded.
    async fn preload(
        &mut self,
        registry: &Registry,
        entries: &[(&'static str, Step)],
    ) -> Result<(), FhirError> {
        let mut streams: Vec<StreamId> = Vec::new();
        let mut add = |kind: &str, id: &str| {
            if let Ok(stream) = stream(kind, id)
                && !streams.contains(&stream)
            {
                streams.push(stream);
            }
        };
        for (_, step) in entries {
            match step {
                Step::Command { id, command } => add(command.kind(), id),
                Step::PatientUpsert { mrn, .. } => add(PatientAccount::KIND, mrn),
                Step::Encounter { visit, change } => {
                    add(Encounter::KIND, visit);
                    add(PatientAccount::KIND, &change.account_id);
                }
                Step::Commands { id, commands } => {
                    if let Some(command) = commands.first() {
                        add(command.kind(), id);
                    }
                }
                Step::ClaimResponse { claim_id, .. } => add(Claim::KIND, claim_id),
            }
        }
        let of = |kind: &str| -> Vec<StreamId> {
            streams
                .iter()
                .filter(|stream| stream.kind() == kind)
                .cloned()
                .collect()
        };
        let (a, e, i, p) = tokio::join!(
            preload_all(&mut self.accounts, registry, of(PatientAccount::KIND)),
            preload_all(&mut self.encounters, registry, of(Encounter::KIND)),
            preload_all(&mut self.items, registry, of(InventoryItem::KIND)),
            preload_all(&mut self.purchases, registry, of(PurchaseWorkflow::KIND)),
        );
        a.and(e).and(i).and(p)
    }

    fn touched(&self) -> impl Iterator<Item = &StreamId> {
        self.accounts
            .keys()
            .chain(self.encounters.keys())
            .chain(self.items.keys())
            .chain(self.purchases.keys())
            .chain(self.claims.keys())
            .chain(self.rosters.keys())
            .chain(self.staffings.keys())
    }

    async fn decide(
        &mut self,
        registry: &Registry,
        entry: usize,
        step: &Step,
        message: &Message,
        now: DateTime<Utc>,
    ) -> Result<(), FhirError> {
        match step {
            Step::Command { id, command } => {
                self.command(registry, entry, id, command.clone(), message, now)
                    .await
            }
            Step::PatientUpsert {
                mrn,
                register,
                update,
            } => {
                let stream = stream(PatientAccount::KIND, mrn)?;
                let w = working(&mut self.accounts, registry, &stream).await?;
                let command = resolve_patient(w.state.is_registered(), register, update);
                let command = AnyCommand::PatientAccount(command);
                self.command(registry, entry, mrn, command, message, now)
                    .await
            }
            Step::Encounter { visit, change } => {
                let stream = stream(Encounter::KIND, visit)?;
                let new = working(&mut self.encounters, registry, &stream)
                    .await?
                    .state
                    .status
                    .is_none();
                let account_facility = if new && change.facility.is_none() {
                    let account = stream_of_account(&change.account_id)?;
                    let w = working(&mut self.accounts, registry, &account).await?;
                    w.state.is_registered().then(|| w.state.facility.clone())
                } else {
                    None
                };
                let state = &working(&mut self.encounters, registry, &stream)
                    .await?
                    .state;
                let commands = encounter_commands(state, change, account_facility.as_deref(), now)?;
                for command in commands {
                    let command = AnyCommand::Encounter(command);
                    self.command(registry, entry, visit, command, message, now)
                        .await?;
                }
                Ok(())
            }
            Step::Commands { id, commands } => {
                for command in commands {
                    self.command(registry, entry, id, command.clone(), message, now)
                        .await?;
                }
                Ok(())
            }
            Step::ClaimResponse { claim_id, response } => {
                let stream = stream(Claim::KIND, claim_id)?;
                let state = &working(&mut self.claims, registry, &stream).await?.state;
                let command = claim_response_command(claim_id, state, response)?;
                self.command(
                    registry,
                    entry,
                    claim_id,
                    AnyCommand::Claim(command),
                    message,
                    now,
                )
                .await
            }
        }
    }

    /// Decides the entry's next command against the working state of the instance `id` of
    /// its aggregate, unless a keyed retry finds it appended before.
    async fn command(
        &mut self,
        registry: &Registry,
        entry: usize,
        id: &str,
        command: AnyCommand,
        message: &Message,
        now: DateTime<Utc>,
    ) -> Result<(), FhirError> {
        let (step, ctx) = next_step(&mut self.steps, entry, message, now);
        let command = address(id, ctx.command_id, command)?;
        if self.repeated(registry, entry, &command, message).await? {
            return Ok(());
        }
        let stream = command.target();
        let decided = match command.command() {
            AnyCommand::PatientAccount(c) => {
                let w = working(&mut self.accounts, registry, stream).await?;
                fold::<PatientAccount>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
            AnyCommand::Encounter(c) => {
                let w = working(&mut self.encounters, registry, stream).await?;
                fold::<Encounter>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
            AnyCommand::InventoryItem(c) => {
                let w = working(&mut self.items, registry, stream).await?;
                fold::<InventoryItem>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
            AnyCommand::Purchase(c) => {
                let w = working(&mut self.purchases, registry, stream).await?;
                fold::<PurchaseWorkflow>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
            AnyCommand::Claim(c) => {
                let w = working(&mut self.claims, registry, stream).await?;
                fold::<Claim>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
            AnyCommand::Roster(c) => {
                let w = working(&mut self.rosters, registry, stream).await?;
                fold::<Roster>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
            AnyCommand::Staffing(c) => {
                let w = working(&mut self.staffings, registry, stream).await?;
                fold::<Staffing>(w, stream, c.clone(), &ctx, message, step, entry)?
            }
        };
        self.push(decided);
        Ok(())
    }

    /// For a keyed message (Idempotency-Key), whether this command was appended before (a
    /// retry after the first answer was lost): then its first result is the answer and it is
    /// not decided again, which could now refuse it (registering twice). The observed state
    /// already holds its events.
    async fn repeated(
        &mut self,
        registry: &Registry,
        entry: usize,
        command: &AddressedCommand,
        message: &Message,
    ) -> Result<bool, FhirError> {
        if !message.keyed {
            return Ok(false);
        }
        let found = registry
            .store()
            .find_command(command.target(), command.command_id())
            .await?;
        let Some(first) = found else {
            return Ok(false);
        };
        self.decided.push(Decided {
            entry,
            command: command.command().name(),
            appended: false,
            noop: CommandOutcome::from_appended(first),
        });
        Ok(true)
    }

    fn push(&mut self, (decided, request): (Decided, Option<AppendRequest>)) {
        self.decided.push(decided);
        if let Some(request) = request {
            self.requests.push(request);
        }
    }
}

fn stream_of_account(mrn: &str) -> Result<StreamId, FhirError> {
    stream(PatientAccount::KIND, mrn)
}

/// The entry's next command number and its decision context.
fn next_step(
    steps: &mut HashMap<usize, usize>,
    entry: usize,
    message: &Message,
    now: DateTime<Utc>,
) -> (usize, Ctx) {
    let counter = steps.entry(entry).or_insert(0);
    let step = *counter;
    *counter += 1;
    let context = message.context(entry, step);
    let ctx = Ctx::new(now, context.command_id, context.principal).occurred_at(message.occurred_at);
    (step, ctx)
}

/// Decides one command against the working state and, when it appends, folds its events in
/// and returns the append (expecting the version the fold had reached).
fn fold<A: Aggregate>(
    w: &mut Working<A>,
    stream: &StreamId,
    command: A::Command,
    ctx: &Ctx,
    message: &Message,
    step: usize,
    entry: usize,
) -> Result<(Decided, Option<AppendRequest>), FhirError> {
    let name = A::command_name(&command);
    let events = A::decide(&w.state, &command, ctx)?;
    let noop = CommandOutcome {
        stream_id: stream.clone(),
        version: w.version,
        position: 0,
        events: Vec::new(),
        duplicate: false,
    };
    if events.is_empty() {
        return Ok((
            Decided {
                entry,
                command: name,
                appended: false,
                noop,
            },
            None,
        ));
    }
    let proposed = events
        .iter()
        .map(|event| {
            let encoded = A::encode(event);
            ProposedEvent {
                event_type: encoded.event_type.to_owned(),
                schema_version: encoded.schema_version,
                data: encoded.data,
            }
        })
        .collect();
    let request = AppendRequest {
        stream_id: stream.clone(),
        expected: match w.version {
            0 => ExpectedVersion::NoStream,
            version => ExpectedVersion::Exact(version),
        },
        meta: message.context(entry, step).meta(),
        events: proposed,
    };
    let mut state = std::mem::replace(&mut w.state, A::initial_state());
    for event in &events {
        state = A::evolve(state, event);
    }
    w.state = state;
    w.version += events.len() as u64;
    Ok((
        Decided {
            entry,
            command: name,
            appended: true,
            noop,
        },
        Some(request),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(method: &str, url: &str) -> Option<model::BundleRequest> {
        Some(model::BundleRequest {
            method: Some(method.into()),
            url: Some(url.into()),
        })
    }

    #[test]
    fn an_entry_is_a_create_unless_it_puts_to_its_own_type_and_id() {
        assert_eq!(method(&None, "Patient").unwrap(), Method::Create);
        assert_eq!(
            method(&request("POST", "Patient"), "Patient").unwrap(),
            Method::Create
        );
        assert_eq!(
            method(&request("PUT", "Patient/M-1"), "Patient").unwrap(),
            Method::Update { id: "M-1".into() }
        );
        for (verb, url) in [
            ("PUT", "Encounter/M-1"),
            ("PUT", "Patient/"),
            ("PUT", "Patient?identifier=x"),
            ("DELETE", "Patient/M-1"),
        ] {
            assert!(
                matches!(
                    method(&request(verb, url), "Patient"),
                    Err(FhirError::Invalid { .. })
                ),
                "{verb} {url}"
            );
        }
    }

    #[test]
    fn a_bundle_refuses_before_deciding_when_an_entry_cannot_be_mapped() {
        let settings = FhirSettings::default();
        let not_bundle = json!({"resourceType": "Patient"});
        assert!(matches!(
            Transaction::parse(not_bundle, &settings),
            Err(FhirError::WrongResourceType { .. })
        ));
        let empty = json!({"resourceType": "Bundle", "type": "transaction", "entry": []});
        assert!(matches!(
            Transaction::parse(empty, &settings),
            Err(FhirError::Invalid { missing: true, .. })
        ));
        let no_resource = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{}]});
        let error = Transaction::parse(no_resource, &settings).unwrap_err();
        assert_eq!(error.entry(), Some(0));
        assert_eq!(
            error.expression().as_deref(),
            Some("Bundle.entry[0].resource")
        );
        assert_eq!(error.status(), 422);
    }
}
