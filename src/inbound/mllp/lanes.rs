//! Lanes: one patient's messages in arrival order, different patients in parallel.
//!
//! A message goes to lane `hash(MRN) % lanes`; each lane is one task that applies its
//! messages one after the other, so two messages of one patient never race (an A08 cannot
//! overtake the A01 it follows) while a busy patient only holds up the few others that share
//! its lane. Applying a message runs its steps in order through the [`Registry`], each with
//! its deterministic command id (`Registry::execute_any`), as the process managers send theirs.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use careflow_aggregates::patient_account;
use careflow_aggregates::{AnyCommand, Encounter, Rejection};
use tokio::sync::{mpsc, oneshot};

use super::RegistrySource;
use super::ack::{Ack, AckCode, AckError};
use crate::inbound::hl7::{Inbound, Step, Tolerate};
use crate::runtime::actors::{CommandContext, CommandError, Registry};

/// A mapped message waiting for its lane, and where its answer goes.
pub struct Job {
    pub inbound: Inbound,
    pub reply: oneshot::Sender<Ack>,
}

/// The senders of every lane.
pub struct Lanes {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
}

impl Lanes {
    /// Starts `count` lane tasks on the current runtime.
    pub fn start(count: usize, registry: RegistrySource) -> Arc<Self> {
        let lanes = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_lane(rx, Arc::clone(&registry)));
                tx
            })
            .collect();
        Arc::new(Self { lanes })
    }

    /// Queues `job` on its patient's lane. Unbounded on purpose: the order of calls is the
    /// arrival order, which a bounded send (a wait) could reorder; each connection bounds
    /// what it has outstanding instead.
    pub fn submit(&self, job: Job) {
        let mut hasher = DefaultHasher::new();
        job.inbound.mrn.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % self.lanes.len() as u64).unwrap_or(0);
        if let Some(lane) = self.lanes.get(index)
            && let Err(mpsc::error::SendError(job)) = lane.send(job)
        {
            let _ = job.reply.send(transient("the mllp lane stopped"));
        }
    }
}

async fn run_lane(mut rx: mpsc::UnboundedReceiver<Job>, registry: RegistrySource) {
    while let Some(job) = rx.recv().await {
        let ack = match registry() {
            Some(registry) => apply(&registry, &job.inbound).await,
            None => transient("the event store is not open yet"),
        };
        let _ = job.reply.send(ack);
    }
}

/// Runs every step of a message; the ACK it earns.
pub async fn apply(registry: &Registry, inbound: &Inbound) -> Ack {
    let header = &inbound.header;
    let principal = format!("mllp:{}", header.sending_facility);
    let occurred_at = inbound
        .occurred_at
        .unwrap_or_else(|| registry.clock().now());
    for step in &inbound.steps {
        let context = CommandContext {
            command_id: step.command.command_id(),
            correlation_id: header.control_id.clone(),
            causation_id: format!(
                "hl7:{}^{}:{}",
                header.message_type, header.trigger, header.control_id
            ),
            principal: principal.clone(),
            source: "hl7".into(),
            occurred_at,
            // The lookup reads the stream's events, and a new message is the common case: it
            // is skipped for commands that the aggregate refuses when decided a second time
            // (every one but UpdateDemographics); a refused one is asked again below with the
            // lookup on, which tells a resend from a business error.
            check_duplicate: repeatable(step.command.command()),
        };
        let mut result = registry.execute_any(&step.command, context.clone()).await;
        if let Err(CommandError::Rejected(rejection)) = &result
            && !context.check_duplicate
            && !matches!(tolerated(registry, step, rejection).await, Ok(true))
        {
            // Refused: a business error, unless this is a resend whose first answer was a
            // success (a check-in already done, a charge already posted).
            let context = CommandContext {
                check_duplicate: true,
                ..context
            };
            result = registry.execute_any(&step.command, context).await;
        }
        match result {
            Ok(_) => {}
            Err(CommandError::Rejected(rejection)) => {
                match tolerated(registry, step, &rejection).await {
                    Ok(true) => {}
                    Ok(false) => return business_error(step, &rejection),
                    Err(ack) => return ack,
                }
            }
            Err(error) => {
                tracing::warn!(%error, control_id = %header.control_id, command = step.command.command().name(), "hl7 message not applied; the sender should resend");
                return transient(&error.to_string());
            }
        }
    }
    Ack::accept()
}

/// Whether deciding the command again after it was applied could succeed again (and so
/// append twice without the command-id lookup). All the others move a lifecycle forward or
/// claim an id, so their second decision is refused.
fn repeatable(command: &AnyCommand) -> bool {
    matches!(
        command,
        AnyCommand::PatientAccount(patient_account::Command::UpdateDemographics(_))
    )
}

/// Whether `rejection` means the step's purpose was already met ([`Tolerate`]). A visit
/// that exists for another patient is an `AE` of its own.
async fn tolerated(registry: &Registry, step: &Step, rejection: &Rejection) -> Result<bool, Ack> {
    match (&step.tolerate, rejection) {
        (Tolerate::AlreadyRegistered, Rejection::AlreadyRegistered) => Ok(true),
        (Tolerate::AlreadyMergedInto(survivor), Rejection::AccountMerged { into }) => {
            Ok(into == survivor)
        }
        (
            Tolerate::AlreadyCompleted,
            Rejection::InvalidTransition {
                status: "completed",
                ..
            },
        ) => Ok(true),
        (Tolerate::AlreadyScheduledFor(mrn), Rejection::AlreadyScheduled) => {
            let observed = registry
                .observe::<Encounter>(step.command.target())
                .await
                .map_err(|error| transient(&error.to_string()))?;
            if &observed.state.account_id == mrn {
                Ok(true)
            } else {
                Err(Ack {
                    code: AckCode::Error,
                    error: Some(AckError {
                        location: Some("PV1-19".into()),
                        condition: ("207", "Application internal error"),
                        application_code: "visit_of_another_patient".into(),
                        message: format!(
                            "{} belongs to another patient account",
                            step.command.target()
                        ),
                    }),
                })
            }
        }
        _ => Ok(false),
    }
}

/// `AE`: the domain refused a step; ERR-5 is the rejection's code.
fn business_error(step: &Step, rejection: &Rejection) -> Ack {
    Ack {
        code: AckCode::Error,
        error: Some(AckError {
            location: None,
            condition: condition_of(rejection),
            application_code: rejection.code().to_owned(),
            message: format!(
                "{} on {} refused: {rejection}",
                step.command.command().name(),
                step.command.target()
            ),
        }),
    }
}

/// The HL7 table 0357 condition closest to a refusal.
fn condition_of(rejection: &Rejection) -> (&'static str, &'static str) {
    match rejection.code() {
        "already_registered" | "already_scheduled" | "duplicate_charge" => {
            ("205", "Duplicate key identifier")
        }
        "not_registered" | "not_scheduled" => ("204", "Unknown key identifier"),
        _ => ("207", "Application internal error"),
    }
}

/// `AR` 207: not applied for a reason unrelated to the message; the sender should resend.
pub fn transient(detail: &str) -> Ack {
    Ack {
        code: AckCode::Reject,
        error: Some(AckError {
            location: None,
            condition: ("207", "Application internal error"),
            application_code: "unavailable".into(),
            message: format!("not applied, resend later: {detail}"),
        }),
    }
}
