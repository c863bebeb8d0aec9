//! The FHIR R4 inbound adapter: FHIR resources in, the same typed commands the HTTP command
//! path takes out, decided by the same aggregates. One decision path, not a second domain.
//!
//! - [`model`]: typed serde structs for the resources careflow maps (and only those elements);
//! - [`inbound`]: a resource into [`Step`]s (commands for one aggregate each), by the identity
//!   mapping DESIGN.md pins (MRN: the Patient identifier of type `MR` or of system
//!   `mrn_system`, else the resource id; visit: the Encounter identifier of type `VN`, else
//!   its id);
//! - [`execute`]: a single resource through the actors (`Registry::execute_any`), exactly like
//!   a command body on `/v1/{kind}/{id}/commands`;
//! - [`bundle`]: a transaction Bundle as one unit: every entry decided in order against the
//!   aggregates' current state with their pure `decide`/`evolve`, then appended with one
//!   atomic `EventStore::append_all` (one bad entry: nothing appended);
//! - the ClaimResponse reading is the payer contract's (`outbound::payer::claim`), shared with
//!   the answers to `$submit`, so a remittance means the same however it arrives;
//! - [`render`]: state out as FHIR (`Patient`, `Encounter`), the `CapabilityStatement`, and the
//!   `OperationOutcome`s of answers.
//!
//! Routes, headers and status codes live in `http/fhir.rs`; this module only classifies a
//! refusal ([`FhirError::status`], [`FhirError::issue_code`]), as `Rejection` does.

use careflow_aggregates::{AnyCommand, Rejection, encounter, patient_account};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::runtime::actors::CommandError;

pub mod bundle;
pub mod execute;
pub mod inbound;
pub mod model;
pub mod render;

/// The `source` of events appended through this adapter.
pub const SOURCE: &str = "fhir";

/// What the adapter reads from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FhirSettings {
    /// `mrn_system` (`CAREFLOW_MRN_SYSTEM`): the identifier system whose value is the MRN
    /// (besides any identifier typed `MR`), and the system careflow renders MRNs with.
    pub mrn_system: Option<String>,
}

impl FhirSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            mrn_system: config.mrn_system.clone(),
        }
    }
}

/// What a resource maps to: a command for one aggregate instance, or one that depends on
/// the current state ([`Step::PatientUpsert`], [`Step::Encounter`]), resolved against it when
/// executed. Command ids are not chosen here: they derive from the message, the entry and the
/// command's place in it ([`execute::command_id`]), when it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `command` to the instance `id` of its aggregate (`patient_account-{mrn}`,
    /// `encounter-{visit}`, `purchase-{requisition}`).
    Command { id: String, command: AnyCommand },
    /// `PUT Patient/{id}`: register the patient when the account is new, else update it.
    PatientUpsert {
        mrn: String,
        register: Box<patient_account::RegisterPatient>,
        update: Box<patient_account::UpdateDemographics>,
    },
    /// An Encounter resource: moves `encounter-{visit}` to the resource's status.
    Encounter {
        visit: String,
        change: EncounterChange,
    },
    /// Several commands, in order, to the instance `id` of their aggregate (a Claim with
    /// status `active`: `CreateClaim` then `SubmitClaim`).
    Commands {
        id: String,
        commands: Vec<AnyCommand>,
    },
    /// A ClaimResponse: `RecordClaimResponse` on `claim-{claim_id}`, read against the claim's
    /// lines; a claim that does not exist is a 404 and nothing is appended.
    ClaimResponse {
        claim_id: String,
        response: serde_json::Value,
    },
}

/// Where an Encounter resource wants its visit to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncounterTarget {
    /// `planned`: scheduled.
    Planned,
    /// `arrived` or `in-progress`: checked in.
    Arrived,
    /// `finished`: completed (and discharged when a discharge disposition is given).
    Finished,
    /// `cancelled`.
    Cancelled,
}

/// What an Encounter resource says about its visit; [`inbound::encounter_commands`] turns it
/// into the encounter commands, in order, that lead from the current state there.
#[derive(Debug, Clone, PartialEq)]
pub struct EncounterChange {
    pub account_id: String,
    /// `serviceProvider`; when absent, the patient account's facility.
    pub facility: Option<String>,
    pub department: String,
    pub class: encounter::EncounterClass,
    /// `period.start`; when absent, when the message arrived.
    pub scheduled_for: Option<DateTime<Utc>>,
    pub target: EncounterTarget,
    pub disposition: Option<String>,
}

/// Why a FHIR message was refused. Nothing is appended for any variant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FhirError {
    /// Occurs when the body is not JSON, or an element has the wrong JSON type.
    ///
    /// ### Handling
    /// HTTP 400, issue code `structure`.
    #[error("resource cannot be parsed: {detail}")]
    Structure { detail: String },
    /// Occurs when the resource is not of the type the route or careflow takes.
    ///
    /// ### Handling
    /// HTTP 400, issue code `not-supported`.
    #[error("resourceType {found:?} is not accepted here; expected {expected}")]
    WrongResourceType { expected: String, found: String },
    /// Occurs when an element careflow needs is missing or its value cannot be mapped (no
    /// MRN, a partial birth date, an unknown encounter class).
    ///
    /// ### Handling
    /// HTTP 422, issue code `required` (missing) or `value`.
    #[error("{element}: {detail}")]
    Invalid {
        element: String,
        detail: String,
        missing: bool,
    },
    /// Occurs when the domain refuses a command (registering twice, a charge id posted
    /// before, an encounter out of order).
    ///
    /// ### Handling
    /// HTTP 409 (`business-rule`) or 422 (`invalid`) as [`Rejection::status`] says.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Occurs when an Encounter's status would move its visit backwards.
    ///
    /// ### Handling
    /// HTTP 409, issue code `business-rule`.
    #[error("{detail}")]
    OutOfOrder { detail: String },
    /// Occurs when other writers kept appending to a stream through every retry.
    ///
    /// ### Handling
    /// HTTP 409, issue code `conflict`; retrying the message is safe.
    #[error("a stream kept changing while the message was decided ({attempts} attempts)")]
    Conflict { attempts: u32 },
    /// Occurs when the resource asked for does not exist.
    ///
    /// ### Handling
    /// HTTP 404, issue code `not-found`.
    #[error("{detail}")]
    NotFound { detail: String },
    /// Occurs when the event store cannot be reached.
    ///
    /// ### Handling
    /// HTTP 503, issue code `transient`; retrying is safe.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Occurs on a broken invariant (stored events that cannot be read).
    ///
    /// ### Handling
    /// HTTP 500, issue code `exception`, logged at ERROR.
    #[error("stored events cannot be read: {0}")]
    Corrupt(String),
    /// Occurs when one entry of a transaction Bundle is refused: the whole Bundle is.
    ///
    /// ### Handling
    /// The entry's own status and issue code, its expression prefixed `Bundle.entry[i]`.
    #[error("Bundle.entry[{index}]: {error}")]
    Entry { index: usize, error: Box<FhirError> },
    /// Occurs when the event store cannot do what the message needs: a transaction Bundle
    /// whose entries change several streams, on KurrentDB (no multi-stream transaction).
    ///
    /// ### Handling
    /// HTTP 422, issue code `not-supported`; nothing appended. Send the entries as separate
    /// messages, or run careflow on SQLite or PostgreSQL.
    #[error("{0}")]
    NotSupported(String),
}

impl FhirError {
    pub(crate) fn missing(element: impl Into<String>, detail: impl Into<String>) -> Self {
        FhirError::Invalid {
            element: element.into(),
            detail: detail.into(),
            missing: true,
        }
    }

    pub(crate) fn value(element: impl Into<String>, detail: impl Into<String>) -> Self {
        FhirError::Invalid {
            element: element.into(),
            detail: detail.into(),
            missing: false,
        }
    }

    /// The HTTP status FHIR's RESTful API gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            FhirError::Structure { .. } | FhirError::WrongResourceType { .. } => 400,
            FhirError::Invalid { .. } => 422,
            FhirError::Rejected(rejection) => rejection.status(),
            FhirError::OutOfOrder { .. } | FhirError::Conflict { .. } => 409,
            FhirError::NotFound { .. } => 404,
            FhirError::Unavailable(_) => 503,
            FhirError::Corrupt(_) => 500,
            FhirError::Entry { error, .. } => error.status(),
            FhirError::NotSupported(_) => 422,
        }
    }

    /// The `OperationOutcome.issue.code` (FHIR's IssueType value set: a bounded metric label).
    pub fn issue_code(&self) -> &'static str {
        match self {
            FhirError::Structure { .. } => "structure",
            FhirError::WrongResourceType { .. } => "not-supported",
            FhirError::Invalid { missing: true, .. } => "required",
            FhirError::Invalid { missing: false, .. } => "value",
            FhirError::Rejected(rejection) if rejection.status() == 409 => "business-rule",
            FhirError::Rejected(_) => "invalid",
            FhirError::OutOfOrder { .. } => "business-rule",
            FhirError::Conflict { .. } => "conflict",
            FhirError::NotFound { .. } => "not-found",
            FhirError::Unavailable(_) => "transient",
            FhirError::Corrupt(_) => "exception",
            FhirError::Entry { error, .. } => error.issue_code(),
            FhirError::NotSupported(_) => "not-supported",
        }
    }

    /// Where in the message the problem is (`OperationOutcome.issue.expression`).
    pub fn expression(&self) -> Option<String> {
        match self {
            FhirError::Invalid { element, .. } => Some(element.clone()),
            FhirError::Entry { index, error } => Some(match error.expression() {
                // The entry's own elements (`resource`, `request.url`) or the resource's.
                Some(inner) if inner == "resource" || inner.starts_with("request.") => {
                    format!("Bundle.entry[{index}].{inner}")
                }
                Some(inner) => format!("Bundle.entry[{index}].resource.{inner}"),
                None => format!("Bundle.entry[{index}]"),
            }),
            _ => None,
        }
    }

    /// The refused entry of a Bundle, if this refusal is one.
    pub fn entry(&self) -> Option<usize> {
        match self {
            FhirError::Entry { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The domain's stable code for a rejection (`already_registered`, ...), if it is one.
    pub fn rejection_code(&self) -> Option<&'static str> {
        match self {
            FhirError::Rejected(rejection) => Some(rejection.code()),
            FhirError::Entry { error, .. } => error.rejection_code(),
            _ => None,
        }
    }
}

impl From<CommandError> for FhirError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejection) => FhirError::Rejected(rejection),
            CommandError::Conflict { attempts } => FhirError::Conflict { attempts },
            CommandError::Unavailable(cause) => FhirError::Unavailable(cause),
            CommandError::Corrupt(cause) => FhirError::Corrupt(cause),
            CommandError::NotSupported(detail) => FhirError::NotSupported(detail),
        }
    }
}

impl From<crate::store::StoreError> for FhirError {
    fn from(error: crate::store::StoreError) -> Self {
        CommandError::from(error).into()
    }
}
