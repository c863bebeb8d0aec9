//! Encounter charges → a claim to the patient's payer → the payer's remittance on the account.
//!
//! When an encounter is completed, its procedures become charges on the account (the
//! [`super::charges`] process manager posts them under [`charge_id_for`]). Once the last of
//! them is posted, and the account is `active` (eligible) with coverage, this policy creates
//! the claim `{visit}-{payer_id}` with those charges as lines and submits it. A self-pay
//! account gets no claim. When the payer's answer is recorded on the claim
//! (`ClaimResponseRecorded`), it posts the insurance payment (`RecordPayment`, method
//! `insurance`) and each contractual adjustment (`ApplyAdjustment`, negative: a write-off)
//! to the account, so what is left there is the patient's balance.
//!
//! Ids are deterministic: command ids from the triggering event, the payment id
//! `INS-{response event id}` and the adjustment ids `INS-{response event id}-{n}`, so a
//! redelivery posts nothing twice even under another command id. The state is bounded: a
//! visit is forgotten once claimed (or found self-pay), a claim once paid or voided.
//!
//! When a claim is submitted (`ClaimSubmitted`, or `ClaimResubmitted` after a denial), the
//! policy asks the runner to send it to the payer ([`ClaimSubmission`]): the payer call is
//! I/O, so it is data here, like the eligibility check. The runner turns an adjudicated
//! answer into `RecordClaimResponse` under [`ClaimSubmission::record_command_id`], derived
//! from the submission event, so a submission redelivered after a crash records its answer
//! once. A `queued` answer records nothing: the payer posts its ClaimResponse later
//! (`POST /fhir/r4/ClaimResponse`). The member id is personal data and is not kept here: the
//! runner reads it from the account when it sends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::charges::charge_id_for;
use super::{
    AddressedCommand, PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address, clip,
    command_id_for,
};
use crate::claim::{
    self, ClaimLine, ClaimResponseRecorded, CreateClaim, RecordClaimResponse, SubmitClaim,
};
use crate::field::SHORT_TEXT;
use crate::money::{Cents, Currency};
use crate::patient_account::{self, ApplyAdjustment, ChargePosted, PaymentMethod, RecordPayment};
use crate::{Aggregate, AnyCommand, Claim, Encounter, PatientAccount, encounter};

/// The claims process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims;

/// What the policy remembers of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The payer of the current coverage.
    pub payer_id: Option<String>,
    /// Eligibility confirmed (`AccountActivated`); self-pay clears it.
    pub active: bool,
}

/// A completed visit whose charges are being posted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub account_id: String,
    /// The charge ids the procedures become.
    pub expected: BTreeSet<String>,
    /// Those posted so far, as claim lines.
    pub posted: BTreeMap<String, ClaimLine>,
    pub currency: Currency,
}

/// A claim whose answer may still move money.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenClaim {
    pub account_id: String,
    pub payer_id: String,
    pub currency: Currency,
    /// The encounter, the lines and their total as last sent (what a submission carries).
    #[serde(default)]
    pub encounter_id: String,
    #[serde(default)]
    pub lines: Vec<ClaimLine>,
    #[serde(default)]
    pub total: Cents,
    /// Submissions so far (the first and each resubmission).
    #[serde(default)]
    pub submissions: u32,
}

/// Knobs of the claims flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsSettings {
    /// How long the runner keeps trying to reach the payer with one submission, counted from
    /// when the submission was recorded. After it the claim stays `submitted`.
    pub submit_deadline: TimeDelta,
}

impl Default for ClaimsSettings {
    fn default() -> Self {
        Self {
            submit_deadline: TimeDelta::hours(1),
        }
    }
}

/// A claim the runner must send to the payer (`POST {payer_url}/Claim/$submit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSubmission {
    /// `identifier[0].value` of the FHIR Claim.
    pub claim_id: String,
    /// The MRN (`patient.identifier.value`); the runner reads the member id from it.
    pub account_id: String,
    pub encounter_id: String,
    /// `insurer.identifier.value`.
    pub payer_id: String,
    pub lines: Vec<ClaimLine>,
    pub currency: Currency,
    pub total: Cents,
    /// Which submission this is (1 for the first): an answer for an older one is not sent.
    pub submission: u32,
    /// The command id of the `RecordClaimResponse` carrying an adjudicated answer.
    pub record_command_id: Uuid,
    /// When the runner stops retrying an unreachable payer.
    pub give_up_at: DateTime<Utc>,
}

/// Step labels (part of derived command ids: never rename one).
const STEP_RECORD_RESPONSE: &str = "record-claim-response";

/// The policy's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub accounts: BTreeMap<String, Account>,
    pub visits: BTreeMap<String, Visit>,
    pub claims: BTreeMap<String, OpenClaim>,
    /// Merged MRN → the MRN it was merged into: a remittance for a claim of a merged account
    /// is posted to the survivor (whose account holds the claimed charges since the merge).
    #[serde(default)]
    pub merged: BTreeMap<String, String>,
}

impl State {
    /// The account that holds `account_id`'s money now: itself, or the end of its merges.
    fn holder<'a>(&'a self, account_id: &'a str) -> &'a str {
        let mut current = account_id;
        // Bounded: a merge chain cannot loop (a merge into a merged account is refused), and
        // the bound keeps a corrupt state from hanging the runner.
        for _ in 0..self.merged.len() {
            match self.merged.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }
}

/// The id of the claim for `visit` to `payer_id`.
pub fn claim_id_for(visit: &str, payer_id: &str) -> String {
    format!("{visit}-{payer_id}")
}

/// The id of the remittance a `ClaimResponseRecorded` (event `response_event_id`) posts: the
/// insurance payment's `payment_id` on the account, and the stem of its adjustments' ids
/// ([`remittance_adjustment_id`]). Derived from the event, so a redelivered response posts
/// nothing twice; the Odoo mapping derives it the same way to tell a remittance's payment and
/// adjustments from the account's other ones.
pub fn remittance_id_for(response_event_id: Uuid) -> String {
    format!("INS-{}", response_event_id.simple())
}

/// The `adjustment_id` of the `n`th (from 0) contractual adjustment of `remittance`.
pub fn remittance_adjustment_id(remittance: &str, n: usize) -> String {
    format!("{remittance}-{n}")
}

impl ProcessManager for Claims {
    const NAME: &'static str = "claims";
    const STREAM_KINDS: &'static [&'static str] =
        &[PatientAccount::KIND, Encounter::KIND, Claim::KIND];
    /// The account's events carry the sealed personal block, and a sealed block does not
    /// decode: the runner opens them for this policy as for eligibility. It keeps nothing
    /// personal (payer id and activation only; the payer id sits outside the block).
    const READS_PERSONAL: bool = true;
    type State = State;
    type Settings = ClaimsSettings;

    fn react(
        state: &State,
        trigger: &Trigger,
        settings: &ClaimsSettings,
    ) -> Result<Reaction, PolicyError> {
        if let TriggerEvent::Claim(
            claim::Event::ClaimSubmitted(_) | claim::Event::ClaimResubmitted(_),
        ) = &trigger.event
        {
            return Ok(Reaction {
                claim_submissions: submission(state, trigger, settings).into_iter().collect(),
                ..Reaction::default()
            });
        }
        let commands = match &trigger.event {
            TriggerEvent::PatientAccount(patient_account::Event::ChargePosted(charge)) => {
                claim_when_complete(state, trigger, charge)?
            }
            TriggerEvent::Claim(claim::Event::ClaimResponseRecorded(response)) => {
                remit(state, trigger, response)?
            }
            _ => Vec::new(),
        };
        Ok(Reaction {
            commands,
            ..Reaction::default()
        })
    }

    fn evolve(mut state: State, trigger: &Trigger) -> State {
        let id = trigger.stream_id.id();
        match &trigger.event {
            TriggerEvent::PatientAccount(event) => match event {
                patient_account::Event::PatientRegistered(e) => {
                    state.accounts.insert(
                        id.to_owned(),
                        Account {
                            payer_id: e.coverage.as_ref().map(|c| c.payer_id.clone()),
                            active: false,
                        },
                    );
                }
                patient_account::Event::DemographicsUpdated(e) => {
                    if let Some(coverage) = &e.coverage {
                        state.accounts.entry(id.to_owned()).or_default().payer_id =
                            Some(coverage.payer_id.clone());
                    }
                }
                patient_account::Event::AccountActivated(_) => {
                    state.accounts.entry(id.to_owned()).or_default().active = true;
                }
                patient_account::Event::AccountFlaggedSelfPay(_) => {
                    state.accounts.entry(id.to_owned()).or_default().active = false;
                }
                patient_account::Event::AccountClosed(_) => {
                    state.accounts.remove(id);
                }
                patient_account::Event::PatientMerged(e) => {
                    state.accounts.remove(id);
                    state.merged.insert(id.to_owned(), e.into.clone());
                }
                patient_account::Event::ChargePosted(charge) => {
                    let complete = match state.visits.get_mut(&charge.encounter_id) {
                        Some(visit) if visit.expected.contains(&charge.charge_id) => {
                            visit
                                .posted
                                .insert(charge.charge_id.clone(), line_of(charge));
                            visit.posted.len() == visit.expected.len()
                        }
                        _ => false,
                    };
                    if complete {
                        state.visits.remove(&charge.encounter_id);
                    }
                }
                _ => {}
            },
            TriggerEvent::Encounter(encounter::Event::EncounterCompleted(completed))
                if !completed.procedures.is_empty() =>
            {
                state.visits.insert(
                    id.to_owned(),
                    Visit {
                        account_id: completed.account_id.clone(),
                        expected: completed
                            .procedures
                            .iter()
                            .map(|p| charge_id_for(id, p.line))
                            .collect(),
                        posted: BTreeMap::new(),
                        currency: completed.currency.unwrap_or_default(),
                    },
                );
            }
            TriggerEvent::Claim(event) => match event {
                claim::Event::ClaimCreated(e) => {
                    state.claims.insert(
                        id.to_owned(),
                        OpenClaim {
                            account_id: e.account_id.clone(),
                            payer_id: e.payer_id.clone(),
                            currency: e.currency,
                            encounter_id: e.encounter_id.clone(),
                            lines: e.lines.clone(),
                            total: e.total,
                            submissions: 0,
                        },
                    );
                }
                claim::Event::ClaimSubmitted(_) => {
                    if let Some(open) = state.claims.get_mut(id) {
                        open.submissions += 1;
                    }
                }
                claim::Event::ClaimResubmitted(e) => {
                    if let Some(open) = state.claims.get_mut(id) {
                        open.submissions += 1;
                        open.lines.clone_from(&e.lines);
                        open.total = e.total;
                    }
                }
                claim::Event::ClaimResponseRecorded(e) if e.paid_amount.is_positive() => {
                    // Paid or partially paid: final for this claim.
                    state.claims.remove(id);
                }
                claim::Event::ClaimVoided(_) => {
                    state.claims.remove(id);
                }
                _ => {}
            },
            _ => {}
        }
        state
    }
}

/// The payer call a submission event asks for, when the claim is known (created after this
/// policy started following the log).
fn submission(
    state: &State,
    trigger: &Trigger,
    settings: &ClaimsSettings,
) -> Option<ClaimSubmission> {
    let claim_id = trigger.stream_id.id();
    let open = state.claims.get(claim_id)?;
    let (lines, total) = match &trigger.event {
        TriggerEvent::Claim(claim::Event::ClaimResubmitted(e)) => (e.lines.clone(), e.total),
        _ => (open.lines.clone(), open.total),
    };
    Some(ClaimSubmission {
        claim_id: claim_id.to_owned(),
        account_id: open.account_id.clone(),
        encounter_id: open.encounter_id.clone(),
        payer_id: open.payer_id.clone(),
        lines,
        currency: open.currency,
        total,
        submission: open.submissions + 1,
        record_command_id: command_id_for(trigger.event_id, STEP_RECORD_RESPONSE),
        give_up_at: trigger.recorded_at + settings.submit_deadline,
    })
}

/// The `RecordClaimResponse` that carries the payer's adjudication of `submission`.
///
/// # Errors
/// [`PolicyError::InvalidTarget`] if the claim id cannot address a stream.
pub fn record_response(
    submission: &ClaimSubmission,
    response: RecordClaimResponse,
) -> Result<AddressedCommand, PolicyError> {
    address(
        &submission.claim_id,
        submission.record_command_id,
        AnyCommand::Claim(response.into()),
    )
}

fn line_of(charge: &ChargePosted) -> ClaimLine {
    ClaimLine {
        charge_id: charge.charge_id.clone(),
        code: charge.code.clone(),
        quantity: charge.quantity,
        unit_price: charge.unit_price,
    }
}

/// The claim, when `charge` is the last of a completed visit's charges and the account can
/// bill a payer.
fn claim_when_complete(
    state: &State,
    trigger: &Trigger,
    charge: &ChargePosted,
) -> Result<Vec<AddressedCommand>, PolicyError> {
    let Some(visit) = state.visits.get(&charge.encounter_id) else {
        return Ok(Vec::new());
    };
    if !visit.expected.contains(&charge.charge_id) {
        return Ok(Vec::new());
    }
    let mut lines = visit.posted.clone();
    lines.insert(charge.charge_id.clone(), line_of(charge));
    if lines.len() < visit.expected.len() {
        return Ok(Vec::new());
    }
    let account = state.accounts.get(&visit.account_id);
    let Some(payer_id) = account
        .filter(|a| a.active)
        .and_then(|a| a.payer_id.as_deref())
    else {
        return Ok(Vec::new());
    };
    let claim_id = claim_id_for(&charge.encounter_id, payer_id);
    Ok(vec![
        address(
            &claim_id,
            command_id_for(trigger.event_id, "create-claim"),
            AnyCommand::Claim(
                CreateClaim {
                    account_id: visit.account_id.clone(),
                    encounter_id: charge.encounter_id.clone(),
                    payer_id: payer_id.to_owned(),
                    lines: lines.into_values().collect(),
                    currency: visit.currency,
                }
                .into(),
            ),
        )?,
        address(
            &claim_id,
            command_id_for(trigger.event_id, "submit-claim"),
            AnyCommand::Claim(SubmitClaim {}.into()),
        )?,
    ])
}

/// The payer's payment and contractual adjustments, posted to the claim's account.
fn remit(
    state: &State,
    trigger: &Trigger,
    response: &ClaimResponseRecorded,
) -> Result<Vec<AddressedCommand>, PolicyError> {
    let claim_id = trigger.stream_id.id();
    let Some(claim) = state.claims.get(claim_id) else {
        return Ok(Vec::new());
    };
    let remittance = remittance_id_for(trigger.event_id);
    let account_id = state.holder(&claim.account_id);
    let mut commands = Vec::new();
    if response.paid_amount.is_positive() {
        commands.push(address(
            account_id,
            command_id_for(trigger.event_id, "record-payment"),
            AnyCommand::PatientAccount(
                RecordPayment {
                    payment_id: remittance.clone(),
                    amount: response.paid_amount,
                    method: PaymentMethod::Insurance,
                    payer: Some(claim.payer_id.clone()),
                    currency: claim.currency,
                }
                .into(),
            ),
        )?);
    }
    for (n, adjustment) in response.adjustments.iter().enumerate() {
        commands.push(address(
            account_id,
            command_id_for(trigger.event_id, &format!("apply-adjustment:{n}")),
            AnyCommand::PatientAccount(
                ApplyAdjustment {
                    adjustment_id: remittance_adjustment_id(&remittance, n),
                    amount: Cents(-adjustment.amount.0),
                    reason: clip(
                        &format!(
                            "contractual adjustment {} on claim {claim_id}",
                            adjustment.reason_code
                        ),
                        SHORT_TEXT,
                    ),
                    currency: claim.currency,
                }
                .into(),
            ),
        )?);
    }
    Ok(commands)
}
