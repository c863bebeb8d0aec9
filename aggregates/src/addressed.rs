//! A command addressed to one aggregate instance: the one shape every channel that sends
//! commands (HL7 messages, FHIR resources, the process managers) hands to the shell.
//!
//! Each aggregate has its own command enum ([`patient_account::Command`], ...), and the
//! shell's actors are generic over the aggregate. A channel that can send to several
//! aggregates needs one value that holds any of them, its stream and its command id; this is
//! that value, so the shell matches on it in one place (`Registry::execute_any`).
//!
//! The target is built from the command's own aggregate kind and an id ([`AddressedCommand::new`]),
//! so a command can never be addressed to another aggregate's stream. This is not a contract
//! type: it is never stored or sent, so it has no serde derives (the commands inside it do).

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::stream_id::{StreamId, StreamIdError};
use crate::{Claim, Encounter, InventoryItem, PatientAccount, PurchaseWorkflow, Roster, Staffing};
use crate::{claim, encounter, inventory_item, patient_account, purchase, roster, staffing};

/// A command for any of the aggregates.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyCommand {
    PatientAccount(patient_account::Command),
    Encounter(encounter::Command),
    InventoryItem(inventory_item::Command),
    Purchase(purchase::Command),
    Claim(claim::Command),
    Roster(roster::Command),
    Staffing(staffing::Command),
}

impl AnyCommand {
    /// The command's contract name (`RegisterPatient`): a bounded metric label.
    pub fn name(&self) -> &'static str {
        match self {
            AnyCommand::PatientAccount(command) => command.name(),
            AnyCommand::Encounter(command) => command.name(),
            AnyCommand::InventoryItem(command) => command.name(),
            AnyCommand::Purchase(command) => command.name(),
            AnyCommand::Claim(command) => command.name(),
            AnyCommand::Roster(command) => command.name(),
            AnyCommand::Staffing(command) => command.name(),
        }
    }

    /// The stream kind of the aggregate the command is for (`patient_account`).
    pub fn kind(&self) -> &'static str {
        match self {
            AnyCommand::PatientAccount(_) => PatientAccount::KIND,
            AnyCommand::Encounter(_) => Encounter::KIND,
            AnyCommand::InventoryItem(_) => InventoryItem::KIND,
            AnyCommand::Purchase(_) => PurchaseWorkflow::KIND,
            AnyCommand::Claim(_) => Claim::KIND,
            AnyCommand::Roster(_) => Roster::KIND,
            AnyCommand::Staffing(_) => Staffing::KIND,
        }
    }
}

/// A command, the aggregate instance it goes to, and the id that makes a resend a no-op.
///
/// The fields are private so the target's kind always matches the command's aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressedCommand {
    target: StreamId,
    command_id: Uuid,
    command: AnyCommand,
}

impl AddressedCommand {
    /// Addresses `command` to the instance `id` of its aggregate (`{kind}-{id}`).
    ///
    /// # Errors
    /// [`StreamIdError`] when `id` breaks the id rule; each channel reports it in its own
    /// terms (an HL7 field, a FHIR element, a poison event).
    pub fn new(id: &str, command_id: Uuid, command: AnyCommand) -> Result<Self, StreamIdError> {
        Ok(Self {
            target: StreamId::new(command.kind(), id)?,
            command_id,
            command,
        })
    }

    /// `{kind}-{id}`, where the kind is the command's aggregate's.
    pub fn target(&self) -> &StreamId {
        &self.target
    }

    /// Deterministic in every channel (derived from the message or the triggering event), so
    /// the store's command-id lookup turns a redelivery into a no-op.
    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    pub fn command(&self) -> &AnyCommand {
        &self.command
    }
}

#[cfg(test)]
mod tests;
