//! Encounter → charges on the patient account, supplies → stock consumption.
//!
//! `EncounterCompleted` carries every procedure, so each becomes one `PostCharge` on the
//! account named by the encounter, with a charge id derived from the visit and the procedure's
//! line: even a charge re-sent under another command id is refused by the account as a
//! duplicate, so a charge posts once. Each `SuppliesConsumed` (recorded while the patient is
//! there) becomes one `ConsumeStock` on the item, referencing the visit; stock drops when the
//! supply is used, not when the visit is billed, so `EncounterCompleted.supplies` is *not*
//! consumed a second time here.

use uuid::Uuid;

use super::{
    AddressedCommand, PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address,
    command_id_for,
};
use crate::encounter::{self, EncounterCompleted, SuppliesConsumed};
use crate::inventory_item::ConsumeStock;
use crate::patient_account::PostCharge;
use crate::stream_id::MAX_ID_LEN;
use crate::{Aggregate, AnyCommand};

/// The charges-and-consumption process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charges;

/// A fixed namespace for charge ids too long for the readable form.
const CHARGE_NAMESPACE: Uuid = Uuid::from_u128(0x0b7e_51d2_8c4a_4f61_a3d9_5e20_c17f_9a84);

/// The charge id of procedure `line` of visit `visit`: `{visit}-{line}` (readable on the
/// invoice), or `CHG-` + 32 hex of a UUID v5 of it when that would break the 128-character id
/// rule. Either way a function of the visit and line alone.
pub fn charge_id_for(visit: &str, line: u32) -> String {
    let readable = format!("{visit}-{line}");
    if readable.len() <= MAX_ID_LEN {
        readable
    } else {
        format!(
            "CHG-{}",
            Uuid::new_v5(&CHARGE_NAMESPACE, readable.as_bytes()).simple()
        )
    }
}

impl ProcessManager for Charges {
    const NAME: &'static str = "charges";
    const STREAM_KINDS: &'static [&'static str] = &[crate::Encounter::KIND];
    type State = ();
    type Settings = ();

    fn react(_state: &(), trigger: &Trigger, _settings: &()) -> Result<Reaction, PolicyError> {
        let TriggerEvent::Encounter(event) = &trigger.event else {
            return Ok(Reaction::default());
        };
        let visit = trigger.stream_id.id();
        let commands = match event {
            encounter::Event::EncounterCompleted(completed) => {
                post_charges(trigger, visit, completed)?
            }
            encounter::Event::SuppliesConsumed(SuppliesConsumed { item_id, quantity }) => {
                vec![address(
                    item_id,
                    command_id_for(trigger.event_id, "consume-stock"),
                    AnyCommand::InventoryItem(
                        ConsumeStock {
                            quantity: *quantity,
                            reference: visit.to_owned(),
                        }
                        .into(),
                    ),
                )?]
            }
            encounter::Event::EncounterScheduled(_)
            | encounter::Event::PatientArrived(_)
            | encounter::Event::ProcedureRecorded(_)
            | encounter::Event::PatientDischarged(_)
            | encounter::Event::EncounterCancelled(_) => Vec::new(),
        };
        Ok(Reaction {
            commands,
            ..Reaction::default()
        })
    }

    fn evolve(state: (), _trigger: &Trigger) {
        state
    }
}

fn post_charges(
    trigger: &Trigger,
    visit: &str,
    completed: &EncounterCompleted,
) -> Result<Vec<AddressedCommand>, PolicyError> {
    let currency = completed.currency.unwrap_or_default();
    completed
        .procedures
        .iter()
        .map(|procedure| {
            address(
                &completed.account_id,
                command_id_for(trigger.event_id, &format!("post-charge:{}", procedure.line)),
                AnyCommand::PatientAccount(
                    PostCharge {
                        charge_id: charge_id_for(visit, procedure.line),
                        encounter_id: visit.to_owned(),
                        code: procedure.code.clone(),
                        description: procedure.description.clone(),
                        quantity: procedure.quantity,
                        unit_price: procedure.unit_price,
                        currency,
                    }
                    .into(),
                ),
            )
        })
        .collect()
}
