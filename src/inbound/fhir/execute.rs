//! A single FHIR resource through the actors: each command it maps to goes to
//! `Registry::execute_any`, exactly as a command body on `/v1/{kind}/{id}/commands` does, so the
//! HTTP command path and this adapter share one decision path (and its conflict retries,
//! snapshots and metrics).
//!
//! An Encounter whose status is several steps ahead (a new visit posted as `finished`) maps to
//! several commands, run in order; should a later one be refused, the earlier ones stand, as
//! they would for the same commands sent one by one. A transaction Bundle is the way to make
//! several commands all or nothing ([`super::bundle`]).

use careflow_aggregates::{
    AddressedCommand, Aggregate, AnyCommand, Claim, Encounter, PatientAccount, StreamId,
    StreamIdError, patient_account,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::inbound::{claim_response_command, encounter_commands, resolve_patient};
use super::{FhirError, SOURCE, Step};
use crate::runtime::actors::{CommandContext, CommandOutcome, Registry};

/// Who sent a message and when: what every command of it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Command ids are derived from it ([`command_id`]); from the Idempotency-Key when the
    /// request has one, else random.
    pub base_id: Uuid,
    /// Whether `base_id` comes from an Idempotency-Key (a retry then finds its first answer).
    pub keyed: bool,
    pub correlation_id: String,
    pub causation_id: String,
    pub principal: String,
    pub occurred_at: DateTime<Utc>,
}

impl Message {
    /// The context of command `step` of entry `entry` (0 for a single resource).
    pub fn context(&self, entry: usize, step: usize) -> CommandContext {
        CommandContext {
            command_id: command_id(self.base_id, entry, step),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            principal: self.principal.clone(),
            source: SOURCE.into(),
            occurred_at: self.occurred_at,
            check_duplicate: self.keyed,
        }
    }
}

/// The deterministic id of command `step` of entry `entry` of a message: a retried message
/// (same Idempotency-Key) gives every command the id it had the first time.
pub fn command_id(base: Uuid, entry: usize, step: usize) -> Uuid {
    Uuid::new_v5(&base, format!("{entry}/{step}").as_bytes())
}

/// One command a message led to, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The command's name (`RegisterPatient`, ...).
    pub command: &'static str,
    pub outcome: CommandOutcome,
}

/// `{kind}-{id}` for an id the mapping has already checked.
pub(crate) fn stream(kind: &str, id: &str) -> Result<StreamId, FhirError> {
    StreamId::new(kind, id).map_err(id_refused)
}

/// `command` addressed to the instance `id` (checked by the mapping) of its aggregate.
pub(crate) fn address(
    id: &str,
    command_id: Uuid,
    command: AnyCommand,
) -> Result<AddressedCommand, FhirError> {
    AddressedCommand::new(id, command_id, command).map_err(id_refused)
}

fn id_refused(error: StreamIdError) -> FhirError {
    FhirError::value("id", error.to_string())
}

/// The resource id a step creates or changes, for `Location` (`Patient/{mrn}`).
pub fn location(step: &Step) -> Option<String> {
    match step {
        Step::Command {
            id: mrn,
            command: AnyCommand::PatientAccount(patient_account::Command::RegisterPatient(_)),
        }
        | Step::PatientUpsert { mrn, .. } => Some(format!("Patient/{mrn}")),
        Step::Encounter { visit, .. } => Some(format!("Encounter/{visit}")),
        _ => None,
    }
}

/// Runs the commands of `step` through the registry, in order.
///
/// # Errors
/// The first command's refusal ([`FhirError::Rejected`], [`FhirError::Conflict`], ...), or
/// a mapping error that needed the current state (an Encounter moving back).
pub async fn single(
    registry: &Registry,
    step: &Step,
    message: &Message,
    now: DateTime<Utc>,
) -> Result<Vec<Applied>, FhirError> {
    match step {
        Step::Command { id, command } => {
            Ok(vec![run(registry, id, command.clone(), message, 0).await?])
        }
        Step::PatientUpsert {
            mrn,
            register,
            update,
        } => {
            let stream = stream(PatientAccount::KIND, mrn)?;
            let observed = registry.observe::<PatientAccount>(&stream).await?;
            let command = resolve_patient(observed.state.is_registered(), register, update);
            Ok(vec![
                run(
                    registry,
                    mrn,
                    AnyCommand::PatientAccount(command),
                    message,
                    0,
                )
                .await?,
            ])
        }
        Step::Encounter { visit, change } => {
            let stream = stream(Encounter::KIND, visit)?;
            let observed = registry.observe::<Encounter>(&stream).await?;
            let account_facility = if observed.state.status.is_none() && change.facility.is_none() {
                let account = super::execute::stream(PatientAccount::KIND, &change.account_id)?;
                let account = registry.observe::<PatientAccount>(&account).await?;
                account
                    .state
                    .is_registered()
                    .then_some(account.state.facility)
            } else {
                None
            };
            let commands =
                encounter_commands(&observed.state, change, account_facility.as_deref(), now)?;
            let mut applied = Vec::with_capacity(commands.len());
            for (i, command) in commands.into_iter().enumerate() {
                let command = AnyCommand::Encounter(command);
                applied.push(run(registry, visit, command, message, i).await?);
            }
            Ok(applied)
        }
        Step::Commands { id, commands } => {
            let mut applied = Vec::with_capacity(commands.len());
            for (i, command) in commands.iter().enumerate() {
                applied.push(run(registry, id, command.clone(), message, i).await?);
            }
            Ok(applied)
        }
        Step::ClaimResponse { claim_id, response } => {
            let stream = stream(Claim::KIND, claim_id)?;
            let observed = registry.observe::<Claim>(&stream).await?;
            let command = claim_response_command(claim_id, &observed.state, response)?;
            Ok(vec![
                run(registry, claim_id, AnyCommand::Claim(command), message, 0).await?,
            ])
        }
    }
}

/// Runs command `step` of the message on the instance `id` of its aggregate.
async fn run(
    registry: &Registry,
    id: &str,
    command: AnyCommand,
    message: &Message,
    step: usize,
) -> Result<Applied, FhirError> {
    let context = message.context(0, step);
    let command = address(id, context.command_id, command)?;
    let outcome = registry.execute_any(&command, context).await?;
    Ok(Applied {
        command: command.command().name(),
        outcome,
    })
}
