//! The claims view: every claim with its status, payer and money (claimed, paid, adjusted,
//! left to the patient), the denial work queue, and claim aging per payer.
//!
//! It reads `claim` streams only. The payer id is an organisation's (the insurer's), not
//! personal data, and is kept so finance can filter by payer; the member id never reaches a
//! claim event. Aging is a query ([`claim_aging`]) over the stored rows, because its "as of"
//! date is the reader's: a claim ages from its **first** submission (how long the payer has
//! owed the money, which a resubmission does not reset) while it is outstanding, that is
//! `submitted` or `denied`; a paid, partially paid or void claim is settled (what is left is
//! the patient's, in the account's A/R).

use std::collections::BTreeMap;

use careflow_aggregates::claim::{ClaimStatus, Event as ClaimEvent};
use careflow_aggregates::{Cents, Currency, RecordedEvent};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::billing::AgingBuckets;
use crate::error::ProjectionError;
use crate::projection::{Decoded, Projection, decode};
use crate::store::{ViewStore, load_prefix, save_owned, take};

/// Key: the claim id. One [`ClaimRow`] per claim.
pub const CLAIMS: &str = "billing_claims";

/// The claims projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims;

impl Projection for Claims {
    fn name(&self) -> &'static str {
        "claims"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[CLAIMS]
    }

    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            Decoded::Claim(claim_event) => apply_claim(store, event, &claim_event),
            Decoded::PatientAccount(_)
            | Decoded::Encounter(_)
            | Decoded::InventoryItem(_)
            | Decoded::Purchase(_)
            | Decoded::Roster(_)
            | Decoded::Staffing(_)
            | Decoded::Internal => Ok(()),
        }
    }
}

/// One claim as finance sees it. `paid + adjusted + patient_balance = total` once adjudicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRow {
    pub claim_id: String,
    pub account_id: String,
    pub encounter_id: String,
    pub payer_id: String,
    /// `draft | submitted | paid | partially_paid | denied | void`.
    pub status: String,
    pub currency: Currency,
    /// What the claim asks for, as last sent.
    pub total: Cents,
    pub paid: Cents,
    pub adjusted: Cents,
    pub patient_balance: Cents,
    /// The first submission and each resubmission.
    pub submissions: u32,
    /// Business time of the first submission (aging counts from here).
    pub first_submitted_at: Option<DateTime<Utc>>,
    /// Business time of the last submission.
    pub submitted_at: Option<DateTime<Utc>>,
    /// Business time of the last answer.
    pub adjudicated_at: Option<DateTime<Utc>>,
    pub denial_reason: Option<String>,
    /// The payer's reference of the last answer.
    pub reference: Option<String>,
    pub void_reason: Option<String>,
    /// Stream version and global position of the last event applied.
    pub version: u64,
    pub position: u64,
}

fn apply_claim(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    claim_event: &ClaimEvent,
) -> Result<(), ProjectionError> {
    let claim_id = event.stream_id.id();
    let at = event.metadata.occurred_at;
    let existing = take::<ClaimRow>(store, CLAIMS, claim_id)?;
    let mut row = match (claim_event, existing) {
        (ClaimEvent::ClaimCreated(e), _) => ClaimRow {
            claim_id: claim_id.to_owned(),
            account_id: e.account_id.clone(),
            encounter_id: e.encounter_id.clone(),
            payer_id: e.payer_id.clone(),
            status: ClaimStatus::Draft.as_str().to_owned(),
            currency: e.currency,
            total: e.total,
            paid: Cents::ZERO,
            adjusted: Cents::ZERO,
            patient_balance: Cents::ZERO,
            submissions: 0,
            first_submitted_at: None,
            submitted_at: None,
            adjudicated_at: None,
            denial_reason: None,
            reference: None,
            void_reason: None,
            version: 0,
            position: 0,
        },
        (_, Some(row)) => row,
        // A claim event before its creation cannot be stored (the aggregate refuses every
        // command until `CreateClaim`): nothing to show.
        (_, None) => return Ok(()),
    };
    match claim_event {
        ClaimEvent::ClaimCreated(_) => {}
        ClaimEvent::ClaimSubmitted(_) => {
            row.status = ClaimStatus::Submitted.as_str().to_owned();
            row.submissions += 1;
            row.first_submitted_at.get_or_insert(at);
            row.submitted_at = Some(at);
        }
        ClaimEvent::ClaimResponseRecorded(e) => {
            row.status = ClaimStatus::from(e.outcome).as_str().to_owned();
            row.paid = e.paid_amount;
            row.adjusted = e.adjusted;
            row.patient_balance = e.patient_balance;
            row.denial_reason.clone_from(&e.denial_reason);
            row.reference = Some(e.reference.clone());
            row.adjudicated_at = Some(at);
        }
        ClaimEvent::ClaimResubmitted(e) => {
            row.status = ClaimStatus::Submitted.as_str().to_owned();
            row.submissions += 1;
            row.total = e.total;
            row.paid = Cents::ZERO;
            row.adjusted = Cents::ZERO;
            row.patient_balance = Cents::ZERO;
            row.denial_reason = None;
            row.first_submitted_at.get_or_insert(at);
            row.submitted_at = Some(at);
        }
        ClaimEvent::ClaimVoided(e) => {
            row.status = ClaimStatus::Void.as_str().to_owned();
            row.void_reason = Some(e.reason.clone());
        }
    }
    row.version = event.version;
    row.position = event.position;
    save_owned(store, CLAIMS, claim_id, row)
}

/// Every claim, by claim id, optionally only those of one `status` and one `payer`.
///
/// # Errors
/// [`ProjectionError::Row`] on a malformed row, or the store's errors.
pub fn claims(
    store: &dyn ViewStore,
    status: Option<&str>,
    payer: Option<&str>,
) -> Result<Vec<ClaimRow>, ProjectionError> {
    Ok(load_prefix::<ClaimRow>(store, CLAIMS, "")?
        .into_iter()
        .map(|(_, row)| row)
        .filter(|row| status.is_none_or(|s| row.status == s))
        .filter(|row| payer.is_none_or(|p| row.payer_id == p))
        .collect())
}

/// The denial work queue: denied claims not yet resubmitted or voided, oldest answer first.
///
/// # Errors
/// As [`claims`].
pub fn denials(store: &dyn ViewStore) -> Result<Vec<ClaimRow>, ProjectionError> {
    let mut denied = claims(store, Some(ClaimStatus::Denied.as_str()), None)?;
    denied.sort_by(|a, b| (a.adjudicated_at, &a.claim_id).cmp(&(b.adjudicated_at, &b.claim_id)));
    Ok(denied)
}

/// One payer's outstanding claims by age, in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerAging {
    pub payer_id: String,
    pub currency: Currency,
    /// How many claims are outstanding.
    pub claims: u64,
    pub buckets: AgingBuckets,
}

/// Outstanding claims by payer as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimAgingReport {
    pub as_of: NaiveDate,
    /// By payer, then currency.
    pub payers: Vec<PayerAging>,
    /// Per currency: amounts in different currencies are never added.
    pub totals: BTreeMap<Currency, AgingBuckets>,
}

/// Ages every outstanding claim (`submitted` or `denied`) at its total, from its first
/// submission to `as_of`, in whole UTC days (a claim submitted after `as_of` is current).
///
/// # Errors
/// [`ProjectionError::Row`] on a malformed row, [`ProjectionError::Overflow`] if a total leaves
/// `i128`, or the store's errors.
pub fn claim_aging(
    store: &dyn ViewStore,
    as_of: NaiveDate,
) -> Result<ClaimAgingReport, ProjectionError> {
    let overflow = || ProjectionError::Overflow {
        table: CLAIMS,
        position: 0,
    };
    let mut by_payer: BTreeMap<(String, Currency), PayerAging> = BTreeMap::new();
    let mut totals: BTreeMap<Currency, AgingBuckets> = BTreeMap::new();
    for row in claims(store, None, None)? {
        let outstanding = row.status == ClaimStatus::Submitted.as_str()
            || row.status == ClaimStatus::Denied.as_str();
        let Some(submitted) = row.first_submitted_at.filter(|_| outstanding) else {
            continue;
        };
        let days = (as_of - submitted.date_naive()).num_days();
        let payer = by_payer
            .entry((row.payer_id.clone(), row.currency))
            .or_insert_with(|| PayerAging {
                payer_id: row.payer_id.clone(),
                currency: row.currency,
                claims: 0,
                buckets: AgingBuckets::default(),
            });
        payer.claims += 1;
        payer.buckets.add(days, row.total).ok_or_else(overflow)?;
        totals
            .entry(row.currency)
            .or_default()
            .add(days, row.total)
            .ok_or_else(overflow)?;
    }
    Ok(ClaimAgingReport {
        as_of,
        payers: by_payer.into_values().collect(),
        totals,
    })
}

#[cfg(test)]
mod tests;
