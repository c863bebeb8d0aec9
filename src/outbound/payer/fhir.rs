//! The FHIR R4 shapes of the pinned payer contract (DESIGN.md "Process managers").
//!
//! Only what the contract names is written or read: the request's patient, insurer and
//! coverage identifiers, and the response's `insurance[0].inforce`. Everything else a payer
//! sends is ignored, so a payer adding fields breaks nothing. Kept apart from the HTTP client
//! so the shapes are tested without a server.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use careflow_aggregates::policies::EligibilityCheck;

use super::{Eligibility, PayerError};

/// The FHIR JSON media type, sent as `Content-Type` and `Accept`.
pub const FHIR_JSON: &str = "application/fhir+json";

/// The longest denial summary kept (the `reference` field of `RecordEligibility` holds 256).
const SUMMARY_MAX: usize = 256;

/// The CoverageEligibilityRequest for one check.
///
/// `identifier` carries the `RecordEligibility` command id as a URN, so a payer that
/// deduplicates requests sees a retried check as the same request. `purpose` is `validation`
/// (is the coverage in force?) and `created` is required by R4.
pub fn eligibility_request(check: &EligibilityCheck, created: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "CoverageEligibilityRequest",
        "identifier": [{
            "system": "urn:ietf:rfc:3986",
            "value": format!("urn:uuid:{}", check.record_command_id),
        }],
        "status": "active",
        "purpose": ["validation"],
        "patient": {"identifier": {"value": check.account_id}},
        "created": created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "insurer": {"identifier": {"value": check.payer_id}},
        "insurance": [{"coverage": {"identifier": {"value": check.member_id}}}],
    })
}

/// Reads a 2xx answer: a CoverageEligibilityResponse whose `insurance[0].inforce` decides.
///
/// # Errors
/// [`PayerError::MalformedAnswer`] when the body is not JSON, not a CoverageEligibilityResponse,
/// or has no boolean `insurance[0].inforce`.
pub fn parse_response(body: &[u8]) -> Result<Eligibility, PayerError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| PayerError::MalformedAnswer {
        detail: "the answer is not JSON",
    })?;
    if value.get("resourceType").and_then(Value::as_str) != Some("CoverageEligibilityResponse") {
        return Err(PayerError::MalformedAnswer {
            detail: "the answer is not a CoverageEligibilityResponse",
        });
    }
    let inforce = value
        .pointer("/insurance/0/inforce")
        .and_then(Value::as_bool)
        .ok_or(PayerError::MalformedAnswer {
            detail: "the answer has no boolean insurance[0].inforce",
        })?;
    let response_id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    Ok(if inforce {
        Eligibility::Eligible { response_id }
    } else {
        Eligibility::NotInForce { response_id }
    })
}

/// Reads a 4xx answer: a denial, keeping the OperationOutcome (when the body is one) and a
/// one-line summary of its first issue for the account's history.
pub fn denial(status: u16, body: &[u8]) -> Eligibility {
    let outcome = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome"));
    let mut summary = format!("HTTP {status}");
    if let Some(issue) = outcome.as_ref().and_then(|o| o.pointer("/issue/0")) {
        summary.push_str(" OperationOutcome");
        if let Some(code) = issue.get("code").and_then(Value::as_str) {
            summary.push(' ');
            summary.push_str(code);
        }
        let text = issue
            .get("diagnostics")
            .or_else(|| issue.pointer("/details/text"))
            .and_then(Value::as_str);
        if let Some(text) = text {
            summary.push_str(": ");
            summary.push_str(text.trim());
        }
    }
    Eligibility::Denied {
        status,
        outcome,
        summary: clip(&summary, SUMMARY_MAX),
    }
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn check() -> EligibilityCheck {
        EligibilityCheck {
            account_id: "MRN1".into(),
            payer_id: "ACME".into(),
            member_id: "M-123".into(),
            record_command_id: Uuid::from_u128(1),
            give_up_at: Utc.with_ymd_and_hms(2025, 3, 1, 9, 15, 0).unwrap(),
        }
    }

    #[test]
    fn the_request_names_patient_member_and_insurer_where_the_contract_says() {
        let created = Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap();
        let body = eligibility_request(&check(), created);
        assert_eq!(body["resourceType"], "CoverageEligibilityRequest");
        assert_eq!(body.pointer("/patient/identifier/value").unwrap(), "MRN1");
        assert_eq!(
            body.pointer("/insurance/0/coverage/identifier/value")
                .unwrap(),
            "M-123"
        );
        assert_eq!(body.pointer("/insurer/identifier/value").unwrap(), "ACME");
        assert_eq!(body["created"], "2025-03-01T09:00:00Z");
        assert_eq!(
            body.pointer("/identifier/0/value").unwrap(),
            "urn:uuid:00000000-0000-0000-0000-000000000001"
        );
    }

    #[test]
    fn inforce_decides_eligibility() {
        let yes = br#"{"resourceType":"CoverageEligibilityResponse","id":"r1","insurance":[{"inforce":true}]}"#;
        assert_eq!(
            parse_response(yes).unwrap(),
            Eligibility::Eligible {
                response_id: Some("r1".into())
            }
        );
        let no =
            br#"{"resourceType":"CoverageEligibilityResponse","insurance":[{"inforce":false}]}"#;
        assert_eq!(
            parse_response(no).unwrap(),
            Eligibility::NotInForce { response_id: None }
        );
    }

    #[test]
    fn answers_without_inforce_are_malformed() {
        for body in [
            &b"not json"[..],
            br#"{"resourceType":"OperationOutcome"}"#,
            br#"{"resourceType":"CoverageEligibilityResponse","insurance":[]}"#,
            br#"{"resourceType":"CoverageEligibilityResponse","insurance":[{"inforce":"yes"}]}"#,
        ] {
            assert!(
                matches!(
                    parse_response(body),
                    Err(PayerError::MalformedAnswer { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_denial_keeps_the_operation_outcome_and_summarises_it() {
        let body = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"member unknown"}]}"#;
        let Eligibility::Denied {
            status,
            outcome,
            summary,
        } = denial(404, body)
        else {
            panic!()
        };
        assert_eq!(status, 404);
        assert_eq!(outcome.unwrap()["issue"][0]["code"], "not-found");
        assert_eq!(
            summary,
            "HTTP 404 OperationOutcome not-found: member unknown"
        );

        let Eligibility::Denied {
            outcome, summary, ..
        } = denial(403, b"<html>no</html>")
        else {
            panic!()
        };
        assert_eq!(outcome, None);
        assert_eq!(summary, "HTTP 403");

        let long = format!(
            r#"{{"resourceType":"OperationOutcome","issue":[{{"code":"x","details":{{"text":"{}"}}}}]}}"#,
            "é".repeat(400)
        );
        let Eligibility::Denied { summary, .. } = denial(400, long.as_bytes()) else {
            panic!()
        };
        assert_eq!(summary.chars().count(), 256);
    }
}
