//! The FHIR R4 shapes of the claim half of the payer contract (DESIGN.md "Added by the second
//! round"): the Claim careflow sends to `POST {payer_url}/Claim/$submit`, and the
//! ClaimResponse a payer answers with, or posts later to `POST /fhir/r4/ClaimResponse`.
//!
//! One reading of a ClaimResponse serves both ways in ([`read_claim_response`]), so an answer
//! means the same whether it came back from `$submit` or was posted by the payer:
//!
//! - `outcome` `queued`: not adjudicated yet; nothing to record.
//! - `outcome` `complete` (or `partial`, `error`): adjudicated.
//!   - `error[]` not empty, or nothing paid: **denied**; the reason is the first error's code
//!     (and display), then the `disposition`. A denial records no adjustment: the claim may be
//!     resubmitted, and writing the charges off would be premature.
//!   - otherwise **paid** (`payment.amount.value`) with one contractual adjustment (reason
//!     `CO-45`, "charges exceed the fee schedule") per item whose `submitted` amount is above
//!     its `eligible` amount, of the difference. An item without a `submitted` category is
//!     taken at the claim line's net. `paid` when paid + adjusted is the claim's total,
//!     `partially_paid` when something is left for the patient (coinsurance, deductible).
//!     The `benefit` category is what the payer pays per item; careflow posts the
//!     `payment.amount` total and keeps no per-item benefit.
//!
//! Whether a remittance pays more than was claimed is the claim aggregate's rule
//! (`remittance_exceeds_claim`), not this reading's.

use careflow_aggregates::claim::{
    ClaimLine, ClaimOutcome, RecordClaimResponse, RemittanceAdjustment,
};
use careflow_aggregates::policies::ClaimSubmission;
use careflow_aggregates::{Cents, Currency};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The reason code of a contractual adjustment (X12 CARC 45: charges exceed the fee schedule).
pub const CONTRACTUAL_REASON: &str = "CO-45";

/// The longest denial reason kept (the claim's `denial_reason` holds 1,024).
const REASON_MAX: usize = 1_024;

/// Why a ClaimResponse cannot be read. `element` names where (`ClaimResponse.outcome`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimResponseError {
    /// Occurs when the body is not a ClaimResponse.
    #[error("the answer is not a ClaimResponse")]
    NotClaimResponse,
    /// Occurs when an element careflow needs is missing.
    #[error("{element}: {detail}")]
    Missing {
        element: &'static str,
        detail: &'static str,
    },
    /// Occurs when an element's value cannot be mapped.
    #[error("{element}: {detail}")]
    Invalid {
        element: &'static str,
        detail: &'static str,
    },
}

/// What a ClaimResponse says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// `outcome: queued`: the payer will post its ClaimResponse later.
    Queued { response_id: Option<String> },
    /// Adjudicated: the command that records it on the claim.
    Adjudicated(RecordClaimResponse),
}

/// Money as FHIR writes it: a JSON number (`150.25`) and the currency.
fn money(amount: Cents, currency: Currency) -> Value {
    // Exact: an i64 of cents below 2^53 divided by 100 prints back as its two decimals.
    #[allow(clippy::cast_precision_loss)]
    let value = amount.0 as f64 / 100.0;
    json!({"value": value, "currency": currency.as_str()})
}

/// The Claim for one submission. `member_id` is read from the account when the claim is sent
/// (`None` after an erasure: the element is then left out).
///
/// `identifier[0]` is the claim id, `identifier[1]` the submission's `RecordClaimResponse`
/// command id as a URN, so a payer that deduplicates sees a retried submission as the same.
pub fn claim_request(
    submission: &ClaimSubmission,
    member_id: Option<&str>,
    created: DateTime<Utc>,
) -> Value {
    let items: Vec<Value> = submission
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let net = line
                .unit_price
                .checked_mul(line.quantity)
                .unwrap_or(Cents::ZERO);
            json!({
                "sequence": i + 1,
                "productOrService": {"coding": [{"code": line.code}]},
                "quantity": {"value": line.quantity},
                "unitPrice": money(line.unit_price, submission.currency),
                "net": money(net, submission.currency),
                "encounter": [{"identifier": {"value": submission.encounter_id}}],
            })
        })
        .collect();
    let mut coverage = json!({});
    if let Some(member_id) = member_id {
        coverage = json!({"identifier": {"value": member_id}});
    }
    json!({
        "resourceType": "Claim",
        "identifier": [
            {"value": submission.claim_id},
            {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", submission.record_command_id)},
        ],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"identifier": {"value": submission.account_id}},
        "created": created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "insurer": {"identifier": {"value": submission.payer_id}},
        "provider": {"identifier": {"value": "careflow"}},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": coverage}],
        "item": items,
        "total": money(submission.total, submission.currency),
    })
}

/// The claim a ClaimResponse answers: `request.identifier.value`, else the id of a literal
/// `request.reference` (`Claim/{id}`).
pub fn claim_id_of(response: &Value) -> Option<String> {
    response
        .pointer("/request/identifier/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            response
                .pointer("/request/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit_once("Claim/"))
                .map(|(_, id)| id.split('/').next().unwrap_or(id).to_owned())
        })
        .filter(|id| !id.is_empty())
}

/// The payer's reference for a ClaimResponse: its first identifier's value, else
/// `ClaimResponse/{id}`.
fn reference_of(response: &Value) -> Option<String> {
    response
        .pointer("/identifier/0/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            response
                .get("id")
                .and_then(Value::as_str)
                .map(|id| format!("ClaimResponse/{id}"))
        })
}

/// A FHIR decimal (a JSON number, or a string some senders use) as cents.
fn cents(value: &Value, element: &'static str) -> Result<Cents, ClaimResponseError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => {
            return Err(ClaimResponseError::Invalid {
                element,
                detail: "an amount is a decimal",
            });
        }
    };
    Cents::parse(&text).map_err(|_| ClaimResponseError::Invalid {
        element,
        detail: "use a decimal with at most two fraction digits",
    })
}

/// The amount of an item's adjudication of `category` (`submitted`, `eligible`, `benefit`).
fn adjudicated(item: &Value, category: &str) -> Result<Option<Cents>, ClaimResponseError> {
    let Some(found) = item
        .get("adjudication")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| {
            a.pointer("/category/coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c.get("code").and_then(Value::as_str) == Some(category))
        })
    else {
        return Ok(None);
    };
    found
        .pointer("/amount/value")
        .map(|v| cents(v, "ClaimResponse.item.adjudication.amount.value"))
        .transpose()
}

/// The denial reason: the first error's code and display, then the disposition.
fn denial_reason(response: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(coding) = response.pointer("/error/0/code/coding/0") {
        let code = coding.get("code").and_then(Value::as_str);
        let display = coding.get("display").and_then(Value::as_str);
        match (code, display) {
            (Some(code), Some(display)) => parts.push(format!("{code}: {display}")),
            (Some(text), None) | (None, Some(text)) => parts.push(text.to_owned()),
            (None, None) => {}
        }
    } else if let Some(text) = response
        .pointer("/error/0/code/text")
        .and_then(Value::as_str)
    {
        parts.push(text.to_owned());
    }
    if let Some(disposition) = response.get("disposition").and_then(Value::as_str) {
        parts.push(disposition.to_owned());
    }
    let reason = if parts.is_empty() {
        "the payer paid nothing".to_owned()
    } else {
        parts.join("; ")
    };
    match reason.char_indices().nth(REASON_MAX) {
        Some((end, _)) => reason[..end].to_owned(),
        None => reason,
    }
}

/// Reads a ClaimResponse to a claim whose lines (as last sent) are `lines`. Without its own
/// identifier or id, the answer's reference is `fallback_reference`.
///
/// # Errors
/// [`ClaimResponseError`] naming the element that is missing or cannot be read.
pub fn read_claim_response(
    response: &Value,
    lines: &[ClaimLine],
    fallback_reference: Option<&str>,
) -> Result<ClaimAnswer, ClaimResponseError> {
    if response.get("resourceType").and_then(Value::as_str) != Some("ClaimResponse") {
        return Err(ClaimResponseError::NotClaimResponse);
    }
    let outcome =
        response
            .get("outcome")
            .and_then(Value::as_str)
            .ok_or(ClaimResponseError::Missing {
                element: "ClaimResponse.outcome",
                detail: "queued, complete, partial or error is required",
            })?;
    match outcome {
        "queued" => {
            return Ok(ClaimAnswer::Queued {
                response_id: response
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        "complete" | "partial" | "error" => {}
        _ => {
            return Err(ClaimResponseError::Invalid {
                element: "ClaimResponse.outcome",
                detail: "use queued, complete, partial or error",
            });
        }
    }
    let reference = reference_of(response)
        .or_else(|| fallback_reference.map(str::to_owned))
        .ok_or(ClaimResponseError::Missing {
            element: "ClaimResponse.identifier",
            detail: "the payer's reference (an identifier or an id) is required",
        })?;
    let paid = response
        .pointer("/payment/amount/value")
        .map(|v| cents(v, "ClaimResponse.payment.amount.value"))
        .transpose()?
        .unwrap_or(Cents::ZERO);
    let has_errors = response
        .get("error")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    if has_errors || paid == Cents::ZERO {
        return Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
            outcome: ClaimOutcome::Denied,
            paid_amount: Cents::ZERO,
            adjustments: Vec::new(),
            denial_reason: Some(denial_reason(response)),
            reference,
        }));
    }
    let too_large = ClaimResponseError::Invalid {
        element: "ClaimResponse.item.adjudication.amount.value",
        detail: "an amount is out of range",
    };
    let mut adjustments = Vec::new();
    let mut adjusted = Cents::ZERO;
    for item in response
        .get("item")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(eligible) = adjudicated(item, "eligible")? else {
            continue;
        };
        let line = item
            .get("itemSequence")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| lines.get(i));
        let submitted = match adjudicated(item, "submitted")? {
            Some(submitted) => submitted,
            None => match line {
                Some(line) => line
                    .unit_price
                    .checked_mul(line.quantity)
                    .ok_or(too_large.clone())?,
                None => {
                    return Err(ClaimResponseError::Invalid {
                        element: "ClaimResponse.item.itemSequence",
                        detail: "an item without a submitted amount must name a line of the claim",
                    });
                }
            },
        };
        let contractual = submitted.checked_sub(eligible).ok_or(too_large.clone())?;
        if contractual.is_positive() {
            adjusted = adjusted.checked_add(contractual).ok_or(too_large.clone())?;
            adjustments.push(RemittanceAdjustment {
                reason_code: CONTRACTUAL_REASON.to_owned(),
                amount: contractual,
            });
        }
    }
    let total = lines.iter().try_fold(Cents::ZERO, |sum, line| {
        line.unit_price
            .checked_mul(line.quantity)
            .and_then(|net| sum.checked_add(net))
    });
    let settled = paid.checked_add(adjusted).ok_or(too_large)?;
    let outcome = if total == Some(settled) {
        ClaimOutcome::Paid
    } else {
        ClaimOutcome::PartiallyPaid
    };
    Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
        outcome,
        paid_amount: paid,
        adjustments,
        denial_reason: None,
        reference,
    }))
}

#[cfg(test)]
mod tests;
