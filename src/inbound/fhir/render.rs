//! careflow's state out as FHIR R4 JSON: `Patient` and `Encounter` reads, the
//! `CapabilityStatement` of `GET metadata`, and the `OperationOutcome`s and
//! `transaction-response` Bundles that answer writes.
//!
//! The logical ids careflow gives are its own ids: a Patient is `Patient/{mrn}`, an Encounter
//! `Encounter/{visit}`, and `meta.versionId` is the stream's version.

use careflow_aggregates::{encounter, patient_account};
use serde_json::{Value, json};

use super::bundle::EntryOutcome;
use super::execute::Applied;
use super::inbound::{INBOUND_TYPES, MRN_TYPE, VISIT_TYPE};
use super::{FhirError, FhirSettings};

/// The content type of every answer.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The FHIR version careflow speaks.
pub const FHIR_VERSION: &str = "4.0.1";

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// A patient account as a `Patient`. Personal fields are absent once erased.
pub fn patient(
    mrn: &str,
    state: &patient_account::State,
    version: u64,
    settings: &FhirSettings,
) -> Value {
    let mut identifier = json!({
        "use": "usual",
        "type": {"coding": [{"system": V2_0203, "code": MRN_TYPE}]},
        "value": mrn,
    });
    if let Some(system) = &settings.mrn_system {
        identifier["system"] = json!(system);
    }
    let mut out = json!({
        "resourceType": "Patient",
        "id": mrn,
        "meta": {"versionId": version.to_string()},
        "identifier": [identifier],
        "active": state.status != Some(patient_account::AccountStatus::Closed),
    });
    if let Some(identity) = &state.identity {
        out["name"] = json!([{
            "use": "official",
            "family": identity.name.family,
            "given": identity.name.given,
        }]);
        out["birthDate"] = json!(identity.birth_date.format("%Y-%m-%d").to_string());
    }
    if let Some(gender) = state.gender {
        out["gender"] = serde_json::to_value(gender).unwrap_or(Value::Null);
    }
    if !state.facility.is_empty() {
        out["managingOrganization"] =
            json!({"reference": format!("Organization/{}", state.facility)});
    }
    out
}

/// A visit as an `Encounter`.
pub fn encounter(visit: &str, state: &encounter::State, version: u64) -> Value {
    use encounter::EncounterStatus as S;
    let status = match state.status {
        None | Some(S::Scheduled) => "planned",
        Some(S::Arrived) => "arrived",
        Some(S::Completed | S::Discharged) => "finished",
        Some(S::Cancelled) => "cancelled",
    };
    let class = match state.encounter_class {
        Some(encounter::EncounterClass::Inpatient) | None => ("IMP", "inpatient encounter"),
        Some(encounter::EncounterClass::Outpatient) => ("AMB", "ambulatory"),
        Some(encounter::EncounterClass::Emergency) => ("EMER", "emergency"),
    };
    let mut out = json!({
        "resourceType": "Encounter",
        "id": visit,
        "meta": {"versionId": version.to_string()},
        "identifier": [{
            "type": {"coding": [{"system": V2_0203, "code": VISIT_TYPE}]},
            "value": visit,
        }],
        "status": status,
        "class": {"system": ACT_CODE, "code": class.0, "display": class.1},
        "subject": {"reference": format!("Patient/{}", state.account_id)},
        "serviceType": {"text": state.department},
        "serviceProvider": {"reference": format!("Organization/{}", state.facility)},
    });
    if let Some(start) = state.scheduled_for {
        out["period"] = json!({"start": start.to_rfc3339()});
    }
    if let Some(disposition) = &state.disposition {
        out["hospitalization"] = json!({"dischargeDisposition": {"text": disposition}});
    }
    out
}

/// What `GET metadata` answers: the resources and interactions careflow supports.
pub fn capability_statement(software_version: &str) -> Value {
    let create = |kind: &str, doc: &str| json!({"type": kind, "interaction": [{"code": "create"}], "documentation": doc});
    let mut resources = vec![
        json!({
            "type": "Patient",
            "interaction": [{"code": "create"}, {"code": "update"}, {"code": "read"}],
            "updateCreate": true,
            "documentation": "create: RegisterPatient; update: UpdateDemographics (RegisterPatient when new); read: the patient account. The id is the MRN (identifier of type MR or of system mrn_system, else the resource id).",
        }),
        json!({
            "type": "Encounter",
            "interaction": [{"code": "create"}, {"code": "read"}],
            "documentation": "create: the encounter commands that lead to the status (planned, arrived, in-progress, finished, cancelled), in order; read: the visit. The id is the visit number (identifier of type VN, else the resource id).",
        }),
    ];
    for (kind, doc) in [
        (
            "Coverage",
            "create: UpdateDemographics with the account's coverage",
        ),
        (
            "ChargeItem",
            "create: PostCharge (priceOverride is the total price)",
        ),
        (
            "SupplyDelivery",
            "create: ReceiveGoods (basedOn a SupplyRequest: the purchase) or RecordSupplyUsage (on the Encounter its extension names)",
        ),
        (
            "CoverageEligibilityResponse",
            "create: RecordEligibility (insurance[0].inforce)",
        ),
        (
            "Claim",
            "create: CreateClaim, and SubmitClaim when status is active",
        ),
        (
            "ClaimResponse",
            "create: RecordClaimResponse on the claim request.identifier names (payment, adjudication, error)",
        ),
    ] {
        resources.push(create(kind, doc));
    }
    debug_assert_eq!(resources.len(), INBOUND_TYPES.len());
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": {"name": "careflow", "version": software_version},
        "implementation": {"description": "careflow FHIR R4 inbound adapter: resources become careflow commands"},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "Writes are answered with an OperationOutcome (as with Prefer: return=OperationOutcome); errors are OperationOutcomes with FHIR status codes. Idempotency-Key is honoured on writes.",
            "security": {"description": "Authorization: Bearer <token>; writes need the system role, reads system or auditor"},
            "resource": resources,
            "interaction": [{"code": "transaction", "documentation": "all entries or none"}],
        }],
    })
}

/// The informational `OperationOutcome` of a write: one issue per command.
pub fn applied_outcome(applied: &[Applied]) -> Value {
    let issues: Vec<Value> = if applied.is_empty() {
        vec![json!({
            "severity": "information",
            "code": "informational",
            "diagnostics": "nothing to do: the resource's state is already recorded",
        })]
    } else {
        applied.iter().map(applied_issue).collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// The answer of `Patient/$merge`, in the shape FHIR R5's operation gives: a Parameters
/// resource with the `input` as sent and the `outcome` (an OperationOutcome listing the
/// command and its events). The surviving Patient (`result`) is not included: its money
/// arrives through the `merges` process manager just after, so read it with `GET Patient/{id}`.
pub fn merge_result(input: &Value, applied: &[Applied]) -> Value {
    json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "input", "resource": input},
            {"name": "outcome", "resource": applied_outcome(applied)},
        ],
    })
}

fn applied_issue(applied: &Applied) -> Value {
    let o = &applied.outcome;
    let events: Vec<&str> = o.events.iter().map(|e| e.event_type.as_str()).collect();
    let diagnostics = if o.duplicate {
        format!(
            "{}: repeated; first appended to {} at version {} (position {})",
            applied.command, o.stream_id, o.version, o.position
        )
    } else if events.is_empty() {
        format!(
            "{}: no change to {} (version {})",
            applied.command, o.stream_id, o.version
        )
    } else {
        format!(
            "{}: {} appended to {} at version {} (position {})",
            applied.command,
            events.join(", "),
            o.stream_id,
            o.version,
            o.position
        )
    };
    json!({"severity": "information", "code": "informational", "diagnostics": diagnostics})
}

/// The error `OperationOutcome` of a refusal.
pub fn error_outcome(error: &FhirError) -> Value {
    let mut issue = json!({
        "severity": "error",
        "code": error.issue_code(),
        "diagnostics": format!("{error}; nothing was appended"),
    });
    if let Some(expression) = error.expression() {
        issue["expression"] = json!([expression]);
    }
    if let Some(code) = error.rejection_code() {
        issue["details"] = json!({"coding": [{"system": "https://careflow.example/fhir/CodeSystem/rejection", "code": code}]});
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// An `OperationOutcome` for an error careflow's HTTP edge raised (a token, a role, a
/// malformed id), with its FHIR issue code.
pub fn plain_outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    })
}

/// The `transaction-response` Bundle of a committed transaction.
pub fn transaction_response(entries: &[EntryOutcome]) -> Value {
    let entry: Vec<Value> = entries
        .iter()
        .map(|e| {
            let status = if e.created() { "201 Created" } else { "200 OK" };
            let mut response = json!({"status": status, "outcome": applied_outcome(&e.applied)});
            if let Some(location) = &e.location {
                response["location"] = json!(location);
            }
            if let Some(version) = e.applied.iter().map(|a| a.outcome.version).max() {
                response["etag"] = json!(format!("W/\"{version}\""));
            }
            json!({"response": response})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction-response", "entry": entry})
}
