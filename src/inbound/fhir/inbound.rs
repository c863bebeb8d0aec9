//! A FHIR resource into [`Step`]s: which aggregate instance, which typed command.
//!
//! Everything here is pure: the mapping reads the resource and the settings, and the two
//! state-dependent steps are resolved by [`resolve_patient`] and [`encounter_commands`]
//! against a state the caller loaded. The element-by-element mapping is documented in
//! docs/interop.md "FHIR R4"; each refusal names the element (`Patient.birthDate`).

use std::collections::HashMap;

use careflow_aggregates::{
    AnyCommand, Cents, Currency, StreamId, claim, encounter, patient_account, purchase,
};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;

use super::model::{self, CodeableConcept, Identifier, Reference};
use super::{EncounterChange, EncounterTarget, FhirError, FhirSettings, Step};

/// The identifier type (v2-0203) of a medical record number.
pub const MRN_TYPE: &str = "MR";
/// The identifier type (v2-0203) of a visit number.
pub const VISIT_TYPE: &str = "VN";
/// careflow's code system for what a SupplyDelivery records (`usage` or `receipt`), for
/// senders that state it rather than let careflow infer it (docs/interop.md).
pub const SUPPLY_KIND_SYSTEM: &str =
    "https://careflow.example/fhir/CodeSystem/supply-delivery-kind";
/// careflow's extension on a Claim item naming the account's charge it bills.
pub const CLAIM_CHARGE_EXTENSION: &str =
    "https://careflow.example/fhir/StructureDefinition/claim-item-charge";
/// careflow's extension on a SupplyDelivery naming the Encounter a usage belongs to.
pub const ENCOUNTER_EXTENSION: &str =
    "https://careflow.example/fhir/StructureDefinition/supply-delivery-encounter";

/// The resource types careflow takes in.
pub const INBOUND_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Coverage",
    "ChargeItem",
    "SupplyDelivery",
    "CoverageEligibilityResponse",
    "Claim",
    "ClaimResponse",
];

/// A parsed inbound resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Patient(model::Patient),
    Encounter(model::Encounter),
    Coverage(model::Coverage),
    ChargeItem(model::ChargeItem),
    SupplyDelivery(model::SupplyDelivery),
    CoverageEligibilityResponse(model::CoverageEligibilityResponse),
    Claim(model::Claim),
    /// Kept as JSON: read by the payer contract's reading (`outbound::payer::claim`).
    ClaimResponse(Value),
}

impl Resource {
    pub fn type_name(&self) -> &'static str {
        match self {
            Resource::Patient(_) => "Patient",
            Resource::Encounter(_) => "Encounter",
            Resource::Coverage(_) => "Coverage",
            Resource::ChargeItem(_) => "ChargeItem",
            Resource::SupplyDelivery(_) => "SupplyDelivery",
            Resource::CoverageEligibilityResponse(_) => "CoverageEligibilityResponse",
            Resource::Claim(_) => "Claim",
            Resource::ClaimResponse(_) => "ClaimResponse",
        }
    }
}

/// How the resource arrived: `POST` (create) or `PUT {type}/{id}` (update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Create,
    Update { id: String },
}

/// Literal references resolved inside a transaction Bundle: an entry's `fullUrl`
/// (`urn:uuid:...`) to the careflow id (MRN, visit) of the resource it names.
pub type References = HashMap<String, String>;

/// The `resourceType` of a JSON resource.
///
/// # Errors
/// [`FhirError::Structure`] when the body is not an object with a string `resourceType`.
pub fn resource_type(value: &Value) -> Result<&str, FhirError> {
    value
        .as_object()
        .ok_or_else(|| FhirError::Structure {
            detail: "a resource must be a JSON object".into(),
        })?
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::Structure {
            detail: "the resource has no resourceType".into(),
        })
}

/// Parses a resource, checking its type against `expected` (a route's type) or, without one,
/// against the types careflow takes in.
///
/// # Errors
/// [`FhirError::Structure`] or [`FhirError::WrongResourceType`].
pub fn parse(value: Value, expected: Option<&str>) -> Result<Resource, FhirError> {
    let found = resource_type(&value)?.to_owned();
    if let Some(expected) = expected
        && found != expected
    {
        return Err(FhirError::WrongResourceType {
            expected: expected.to_owned(),
            found,
        });
    }
    fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FhirError> {
        serde_json::from_value(value).map_err(|error| FhirError::Structure {
            detail: careflow_aggregates::Rejection::from_serde(&error).to_string(),
        })
    }
    Ok(match found.as_str() {
        "Patient" => Resource::Patient(typed(value)?),
        "Encounter" => Resource::Encounter(typed(value)?),
        "Coverage" => Resource::Coverage(typed(value)?),
        "ChargeItem" => Resource::ChargeItem(typed(value)?),
        "SupplyDelivery" => Resource::SupplyDelivery(typed(value)?),
        "CoverageEligibilityResponse" => Resource::CoverageEligibilityResponse(typed(value)?),
        "Claim" => Resource::Claim(typed(value)?),
        "ClaimResponse" => Resource::ClaimResponse(value),
        _ => {
            return Err(FhirError::WrongResourceType {
                expected: INBOUND_TYPES.join(", "),
                found,
            });
        }
    })
}

/// The careflow id a resource is known by once accepted (`Patient` → MRN, `Encounter` →
/// visit), used to resolve `urn:uuid:` references between the entries of a Bundle.
pub fn careflow_id(resource: &Resource, settings: &FhirSettings) -> Option<String> {
    match resource {
        Resource::Patient(p) => mrn_of(p, settings).ok(),
        Resource::Encounter(e) => visit_of(e).ok(),
        _ => None,
    }
}

/// The steps a resource maps to.
///
/// # Errors
/// [`FhirError::Invalid`] naming the element that is missing or cannot be mapped.
pub fn plan(
    resource: &Resource,
    method: &Method,
    settings: &FhirSettings,
    refs: &References,
) -> Result<Step, FhirError> {
    let ctx = Mapping { settings, refs };
    match resource {
        Resource::Patient(p) => ctx.patient(p, method),
        Resource::Encounter(e) => ctx.encounter(e),
        Resource::Coverage(c) => ctx.coverage(c),
        Resource::ChargeItem(c) => ctx.charge_item(c),
        Resource::SupplyDelivery(s) => ctx.supply_delivery(s),
        Resource::CoverageEligibilityResponse(r) => ctx.eligibility(r),
        Resource::Claim(c) => ctx.claim(c),
        Resource::ClaimResponse(r) => claim_response(r),
    }
}

/// The Parameters of `POST Patient/$merge` (FHIR R5's patient merge operation, taken on R4):
/// `source-patient-identifier` (or `source-patient`, a reference) names the account that
/// disappears, `target-patient-identifier` (or `target-patient`) the survivor. The step is
/// `MergePatient {into: target}` to the source account; `preview: true` is refused (careflow
/// has no dry run), and the other parameters (`result-patient`, `delete-source`) are ignored.
///
/// # Errors
/// [`FhirError::Structure`] or [`FhirError::WrongResourceType`] for something that is not a
/// Parameters resource; [`FhirError::Invalid`] naming the parameter that is missing or
/// cannot be read.
pub fn merge_parameters(value: &Value, settings: &FhirSettings) -> Result<Step, FhirError> {
    let found = resource_type(value)?;
    if found != "Parameters" {
        return Err(FhirError::WrongResourceType {
            expected: "Parameters".into(),
            found: found.to_owned(),
        });
    }
    let parameters = value
        .get("parameter")
        .and_then(Value::as_array)
        .ok_or_else(|| FhirError::missing("Parameters.parameter", "no parameters"))?;
    fn by_name<'a>(parameters: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> {
        parameters
            .iter()
            .filter(move |p| p.get("name").and_then(Value::as_str) == Some(name))
    }
    let named = |name: &'static str| by_name(parameters, name);
    if named("preview").any(|p| p.get("valueBoolean") == Some(&Value::Bool(true))) {
        return Err(FhirError::value(
            "Parameters.parameter[preview]",
            "careflow has no preview of a merge: send it without preview",
        ));
    }
    let patient = |side: &str| -> Result<String, FhirError> {
        let by_identifier = format!("{side}-patient-identifier");
        let by_reference = format!("{side}-patient");
        let element = format!("Parameters.parameter[{by_identifier}]");
        let identifiers: Vec<Identifier> = by_name(parameters, &by_identifier)
            .filter_map(|p| p.get("valueIdentifier"))
            .map(|v| {
                serde_json::from_value::<Identifier>(v.clone())
                    .map_err(|error| FhirError::value(&element, error.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let from_identifier = identifiers
            .iter()
            .find(|i| is_mrn(i, settings))
            .or_else(|| identifiers.first())
            .and_then(|i| i.value.clone());
        let from_reference = || {
            by_name(parameters, &by_reference)
                .filter_map(|p| p.get("valueReference")?.get("reference")?.as_str())
                .find_map(|reference| literal_id(reference, "Patient"))
                .map(str::to_owned)
        };
        let mrn = from_identifier.or_else(from_reference).ok_or_else(|| {
            FhirError::missing(
                &element,
                format!("no {by_identifier} (valueIdentifier) nor {by_reference} (valueReference)"),
            )
        })?;
        checked_id(&element, "patient_account", mrn)
    };
    let source = patient("source")?;
    let target = patient("target")?;
    Ok(Step::Command {
        id: source,
        command: AnyCommand::PatientAccount(
            patient_account::MergePatient {
                into: target,
                reason: "patient merge (FHIR $merge)".to_owned(),
            }
            .into(),
        ),
    })
}

/// A ClaimResponse: the claim it answers (`request`); the response is read against the
/// claim's lines when it runs ([`claim_response_command`]).
fn claim_response(response: &Value) -> Result<Step, FhirError> {
    let claim_id = crate::outbound::payer::claim::claim_id_of(response).ok_or_else(|| {
        FhirError::missing(
            "ClaimResponse.request",
            "the claim answered (request.identifier.value, or a Claim/<id> reference) is required",
        )
    })?;
    let claim_id = checked_id("ClaimResponse.request", "claim", claim_id)?;
    Ok(Step::ClaimResponse {
        claim_id,
        response: response.clone(),
    })
}

/// The `RecordClaimResponse` a ClaimResponse makes of the claim `state`.
///
/// # Errors
/// [`FhirError::NotFound`] when the claim was never created; [`FhirError::Invalid`] naming
/// the element that cannot be read, or `ClaimResponse.outcome` for a `queued` notice (nothing
/// to record).
pub fn claim_response_command(
    claim_id: &str,
    state: &claim::State,
    response: &Value,
) -> Result<claim::Command, FhirError> {
    use crate::outbound::payer::claim::{ClaimAnswer, ClaimResponseError, read_claim_response};
    if state.status.is_none() {
        return Err(FhirError::NotFound {
            detail: format!(
                "there is no claim {claim_id}: a ClaimResponse answers a claim careflow holds"
            ),
        });
    }
    match read_claim_response(response, &state.lines, None) {
        Ok(ClaimAnswer::Adjudicated(record)) => Ok(claim::Command::RecordClaimResponse(record)),
        Ok(ClaimAnswer::Queued { .. }) => Err(FhirError::value(
            "ClaimResponse.outcome",
            "a queued ClaimResponse records nothing: post it once it is complete",
        )),
        Err(ClaimResponseError::NotClaimResponse) => Err(FhirError::WrongResourceType {
            expected: "ClaimResponse".into(),
            found: "another resource".into(),
        }),
        Err(ClaimResponseError::Missing { element, detail }) => {
            Err(FhirError::missing(element, detail))
        }
        Err(ClaimResponseError::Invalid { element, detail }) => {
            Err(FhirError::value(element, detail))
        }
    }
}

/// `PUT Patient`: registration for a new account, an update for a registered one.
pub fn resolve_patient(
    registered: bool,
    register: &patient_account::RegisterPatient,
    update: &patient_account::UpdateDemographics,
) -> patient_account::Command {
    if registered {
        patient_account::Command::UpdateDemographics(update.clone())
    } else {
        patient_account::Command::RegisterPatient(register.clone())
    }
}

/// The encounter commands, in order, that take the visit from `state` to `change.target`:
/// a new visit is scheduled first, then checked in, completed, discharged. Reaching the
/// current status again is a no-op (no commands); a cancellation is one command whatever
/// the status (the aggregate refuses it after completion).
///
/// # Errors
/// [`FhirError::OutOfOrder`] when the status would move the visit back;
/// [`FhirError::Invalid`] when a new visit names no facility and the account has none.
pub fn encounter_commands(
    state: &encounter::State,
    change: &EncounterChange,
    account_facility: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<encounter::Command>, FhirError> {
    use encounter::EncounterStatus as S;
    let mut commands = Vec::new();
    let current: i8 = match state.status {
        None => -1,
        Some(S::Scheduled) => 0,
        Some(S::Arrived) => 1,
        Some(S::Completed) => 2,
        Some(S::Discharged) => 3,
        Some(S::Cancelled) => {
            return Ok(match change.target {
                EncounterTarget::Cancelled => Vec::new(),
                _ => {
                    return Err(FhirError::OutOfOrder {
                        detail: "the encounter is cancelled; a cancelled visit does not resume"
                            .into(),
                    });
                }
            });
        }
    };
    if current < 0 {
        let facility = match (&change.facility, account_facility) {
            (Some(facility), _) => facility.clone(),
            (None, Some(facility)) if !facility.is_empty() => facility.to_owned(),
            (None, _) => {
                return Err(FhirError::missing(
                    "Encounter.serviceProvider",
                    format!(
                        "a new visit needs a facility: name it in serviceProvider, or register patient {} first (its managing organisation is used)",
                        change.account_id
                    ),
                ));
            }
        };
        commands.push(encounter::Command::ScheduleEncounter(
            encounter::ScheduleEncounter {
                account_id: change.account_id.clone(),
                facility,
                department: change.department.clone(),
                encounter_class: change.class,
                scheduled_for: change.scheduled_for.unwrap_or(now),
            },
        ));
    }
    let target: i8 = match change.target {
        EncounterTarget::Planned => 0,
        EncounterTarget::Arrived => 1,
        EncounterTarget::Finished if change.disposition.is_some() => 3,
        EncounterTarget::Finished => 2,
        EncounterTarget::Cancelled => {
            commands.push(encounter::Command::CancelEncounter(
                encounter::CancelEncounter {
                    reason: "cancelled in the sending system (FHIR Encounter.status)".into(),
                },
            ));
            return Ok(commands);
        }
    };
    if target < current {
        let status = state.status.map_or("new", |s| s.as_str());
        return Err(FhirError::OutOfOrder {
            detail: format!(
                "the encounter is already {status}; the resource's status would move it back"
            ),
        });
    }
    for step in (current.max(0) + 1)..=target {
        commands.push(match step {
            1 => encounter::Command::CheckIn(encounter::CheckIn {}),
            2 => encounter::Command::CompleteEncounter(encounter::CompleteEncounter {}),
            _ => encounter::Command::Discharge(encounter::Discharge {
                disposition: change.disposition.clone().unwrap_or_default(),
            }),
        });
    }
    Ok(commands)
}

/// The MRN of a Patient resource (DESIGN.md "Identity mapping").
fn mrn_of(patient: &model::Patient, settings: &FhirSettings) -> Result<String, FhirError> {
    let by_identifier = patient
        .identifier
        .iter()
        .find(|i| is_mrn(i, settings))
        .and_then(|i| i.value.clone());
    let mrn = by_identifier
        .or_else(|| patient.id.clone())
        .ok_or_else(|| {
            FhirError::missing(
                "Patient.identifier",
                "no MRN: no identifier of type MR (or of the configured mrn_system) and no id",
            )
        })?;
    checked_id("Patient.identifier", "patient_account", mrn)
}

fn is_mrn(identifier: &Identifier, settings: &FhirSettings) -> bool {
    identifier.is_type(MRN_TYPE)
        || settings
            .mrn_system
            .as_deref()
            .is_some_and(|s| identifier.system.as_deref() == Some(s))
}

/// The visit number of an Encounter resource.
fn visit_of(encounter: &model::Encounter) -> Result<String, FhirError> {
    let visit = encounter
        .identifier
        .iter()
        .find(|i| i.is_type(VISIT_TYPE))
        .and_then(|i| i.value.clone())
        .or_else(|| encounter.id.clone())
        .ok_or_else(|| {
            FhirError::missing(
                "Encounter.identifier",
                "no visit number: no identifier of type VN and no id",
            )
        })?;
    checked_id("Encounter.identifier", "encounter", visit)
}

/// An id that must satisfy the stream id rule.
fn checked_id(element: &str, kind: &str, id: String) -> Result<String, FhirError> {
    StreamId::new(kind, &id)
        .map(|_| id)
        .map_err(|error| FhirError::value(element, error.to_string()))
}

/// The id of a literal reference to a `kind` resource: `Patient/123`, an absolute
/// `.../Patient/123`, or `Patient/123/_history/2`.
fn literal_id<'a>(reference: &'a str, kind: &str) -> Option<&'a str> {
    let path = reference.split("/_history/").next()?;
    let (before, id) = path.rsplit_once('/')?;
    let named = before.rsplit('/').next()?;
    (named == kind && !id.is_empty()).then_some(id)
}

struct Mapping<'a> {
    settings: &'a FhirSettings,
    refs: &'a References,
}

impl Mapping<'_> {
    /// The careflow id a reference names: a `urn:uuid:` of this Bundle, a literal
    /// `{kind}/{id}`, or a logical reference's identifier value.
    fn reference_id(
        &self,
        element: &str,
        kind: &str,
        id_kind: &str,
        reference: Option<&Reference>,
    ) -> Result<String, FhirError> {
        let reference = reference.ok_or_else(|| {
            FhirError::missing(element, format!("a {kind} reference is required"))
        })?;
        let by_literal = reference.reference.as_deref().and_then(|r| {
            self.refs
                .get(r)
                .cloned()
                .or_else(|| literal_id(r, kind).map(str::to_owned))
        });
        let by_identifier = || reference.identifier.as_ref().and_then(|i| i.value.clone());
        let id = by_literal.or_else(by_identifier).ok_or_else(|| {
            FhirError::value(
                element,
                format!("the reference names no {kind}: use {kind}/<id> or an identifier"),
            )
        })?;
        checked_id(element, id_kind, id)
    }

    /// A patient reference's MRN: an identifier with the MRN type or system wins, then the
    /// literal reference (careflow's Patient ids are MRNs).
    fn patient_mrn(
        &self,
        element: &str,
        reference: Option<&Reference>,
    ) -> Result<String, FhirError> {
        if let Some(identifier) = reference.and_then(|r| r.identifier.as_ref())
            && is_mrn(identifier, self.settings)
            && let Some(value) = &identifier.value
        {
            return checked_id(element, "patient_account", value.clone());
        }
        self.reference_id(element, "Patient", "patient_account", reference)
    }

    /// An organisation reference as careflow's facility or payer id.
    fn organisation(&self, reference: Option<&Reference>) -> Option<String> {
        let reference = reference?;
        reference
            .reference
            .as_deref()
            .and_then(|r| literal_id(r, "Organization"))
            .map(str::to_owned)
            .or_else(|| reference.identifier.as_ref().and_then(|i| i.value.clone()))
    }

    fn patient(&self, p: &model::Patient, method: &Method) -> Result<Step, FhirError> {
        if let Method::Update { id } = method
            && p.id.as_deref().is_some_and(|own| own != id)
        {
            return Err(FhirError::value(
                "Patient.id",
                "the resource's id differs from the id in the URL",
            ));
        }
        let mrn = match (method, mrn_of(p, self.settings)) {
            (_, Ok(mrn)) => mrn,
            (Method::Update { id }, Err(_)) => {
                checked_id("Patient.id", "patient_account", id.clone())?
            }
            (Method::Create, Err(error)) => return Err(error),
        };
        let name = p
            .name
            .iter()
            .find(|n| n.purpose.as_deref() == Some("official"))
            .or_else(|| p.name.first())
            .map(|n| -> Result<patient_account::HumanName, FhirError> {
                Ok(patient_account::HumanName {
                    family: n.family.clone().ok_or_else(|| {
                        FhirError::missing("Patient.name.family", "the name has no family name")
                    })?,
                    given: n.given.clone(),
                })
            })
            .transpose()?;
        let birth_date = p
            .birth_date
            .as_deref()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                    FhirError::value(
                        "Patient.birthDate",
                        "careflow needs a full date (YYYY-MM-DD), not a year or a month",
                    )
                })
            })
            .transpose()?;
        let gender = p
            .gender
            .as_deref()
            .map(|g| {
                serde_json::from_value::<patient_account::Gender>(Value::String(g.to_owned()))
                    .map_err(|_| {
                        FhirError::value("Patient.gender", "use male, female, other or unknown")
                    })
            })
            .transpose()?;
        let facility = self.organisation(p.managing_organization.as_ref());
        let address = billing_address(&p.address);
        let update = patient_account::UpdateDemographics {
            name: name.clone(),
            birth_date,
            gender,
            facility: facility.clone(),
            coverage: None,
            address: address.clone(),
        };
        let register = || -> Result<patient_account::RegisterPatient, FhirError> {
            Ok(patient_account::RegisterPatient {
                name: name
                    .clone()
                    .ok_or_else(|| FhirError::missing("Patient.name", "a name is required"))?,
                birth_date: birth_date.ok_or_else(|| {
                    FhirError::missing("Patient.birthDate", "a birth date is required")
                })?,
                gender: gender
                    .ok_or_else(|| FhirError::missing("Patient.gender", "a gender is required"))?,
                facility: facility.clone().ok_or_else(|| {
                    FhirError::missing(
                        "Patient.managingOrganization",
                        "the facility (managing organisation) is required",
                    )
                })?,
                coverage: None,
                address: address.clone(),
            })
        };
        match method {
            Method::Create => Ok(Step::Command {
                id: mrn,
                command: AnyCommand::PatientAccount(patient_account::Command::RegisterPatient(
                    register()?,
                )),
            }),
            Method::Update { .. } => match register() {
                Ok(register) => Ok(Step::PatientUpsert {
                    mrn,
                    register: Box::new(register),
                    update: Box::new(update),
                }),
                // Not enough to register: only an update of a registered account can work.
                Err(_) => Ok(Step::Command {
                    id: mrn,
                    command: AnyCommand::PatientAccount(
                        patient_account::Command::UpdateDemographics(update),
                    ),
                }),
            },
        }
    }

    fn encounter(&self, e: &model::Encounter) -> Result<Step, FhirError> {
        let visit = visit_of(e)?;
        let target = match e.status.as_deref() {
            Some("planned") => EncounterTarget::Planned,
            Some("arrived" | "in-progress") => EncounterTarget::Arrived,
            Some("finished") => EncounterTarget::Finished,
            Some("cancelled") => EncounterTarget::Cancelled,
            Some(_) => {
                return Err(FhirError::value(
                    "Encounter.status",
                    "careflow maps planned, arrived, in-progress, finished and cancelled",
                ));
            }
            None => {
                return Err(FhirError::missing(
                    "Encounter.status",
                    "a status is required",
                ));
            }
        };
        let class_code = e
            .class
            .as_ref()
            .and_then(|c| c.code.as_deref())
            .ok_or_else(|| {
                FhirError::missing("Encounter.class", "a class (v3 ActCode) is required")
            })?;
        let class = match class_code {
            "IMP" | "ACUTE" | "NONAC" | "PRENC" | "SS" => encounter::EncounterClass::Inpatient,
            "AMB" | "VR" | "HH" | "FLD" | "OBSENC" => encounter::EncounterClass::Outpatient,
            "EMER" => encounter::EncounterClass::Emergency,
            _ => {
                return Err(FhirError::value(
                    "Encounter.class",
                    "use a v3 ActCode class: IMP (inpatient), AMB (outpatient) or EMER (emergency)",
                ));
            }
        };
        let account_id = self.patient_mrn("Encounter.subject", e.subject.as_ref())?;
        let department = e
            .service_type
            .as_ref()
            .and_then(|t| t.label().or_else(|| t.first_code()))
            .map(str::to_owned)
            .or_else(|| {
                e.location.first().and_then(|l| {
                    l.location.display.clone().or_else(|| {
                        l.location
                            .reference
                            .as_deref()
                            .and_then(|r| literal_id(r, "Location"))
                            .map(str::to_owned)
                    })
                })
            })
            .unwrap_or_else(|| "general".to_owned());
        let scheduled_for = e
            .period
            .as_ref()
            .and_then(|p| p.start.as_deref())
            .map(|start| date_time("Encounter.period.start", start))
            .transpose()?;
        let disposition = e
            .hospitalization
            .as_ref()
            .and_then(|h| h.discharge_disposition.as_ref())
            .and_then(|d| d.label().or_else(|| d.first_code()))
            .map(str::to_owned);
        Ok(Step::Encounter {
            visit,
            change: EncounterChange {
                account_id,
                facility: self.organisation(e.service_provider.as_ref()),
                department,
                class,
                scheduled_for,
                target,
                disposition,
            },
        })
    }

    fn coverage(&self, c: &model::Coverage) -> Result<Step, FhirError> {
        if matches!(c.status.as_deref(), Some("cancelled" | "entered-in-error")) {
            return Err(FhirError::value(
                "Coverage.status",
                "careflow records active coverage only; a cancelled coverage has no command",
            ));
        }
        let mrn = self.patient_mrn("Coverage.beneficiary", c.beneficiary.as_ref())?;
        let payer_id = self.organisation(c.payor.first()).ok_or_else(|| {
            FhirError::missing("Coverage.payor", "the payer (an Organization) is required")
        })?;
        let member_id = c
            .subscriber_id
            .clone()
            .or_else(|| c.identifier.first().and_then(|i| i.value.clone()))
            .ok_or_else(|| {
                FhirError::missing(
                    "Coverage.subscriberId",
                    "a member id (subscriberId or identifier) is required",
                )
            })?;
        let plan = c
            .class
            .iter()
            .find(|k| k.kind.has_code(None, "plan"))
            .and_then(|k| k.value.clone());
        Ok(Step::Command {
            id: mrn,
            command: AnyCommand::PatientAccount(patient_account::Command::UpdateDemographics(
                patient_account::UpdateDemographics {
                    coverage: Some(patient_account::CoverageDetails {
                        payer_id,
                        member_id,
                        plan,
                    }),
                    ..Default::default()
                },
            )),
        })
    }

    fn charge_item(&self, c: &model::ChargeItem) -> Result<Step, FhirError> {
        if !matches!(c.status.as_deref(), Some("planned" | "billable" | "billed")) {
            return Err(FhirError::value(
                "ChargeItem.status",
                "careflow posts planned, billable or billed charges",
            ));
        }
        let mrn = self.patient_mrn("ChargeItem.subject", c.subject.as_ref())?;
        let charge_id = c
            .identifier
            .first()
            .and_then(|i| i.value.clone())
            .or_else(|| c.id.clone())
            .ok_or_else(|| {
                FhirError::missing(
                    "ChargeItem.identifier",
                    "a charge id (identifier or id) is required",
                )
            })?;
        let charge_id = checked_id("ChargeItem.identifier", "charge", charge_id)?;
        let encounter_id = self.reference_id(
            "ChargeItem.context",
            "Encounter",
            "encounter",
            c.context.as_ref(),
        )?;
        let code = c
            .code
            .as_ref()
            .ok_or_else(|| FhirError::missing("ChargeItem.code", "a charge code is required"))?;
        let code_value = code
            .first_code()
            .ok_or_else(|| {
                FhirError::missing("ChargeItem.code.coding.code", "a charge code is required")
            })?
            .to_owned();
        let description = code.label().unwrap_or(&code_value).to_owned();
        let quantity = match &c.quantity {
            Some(q) => whole_quantity("ChargeItem.quantity.value", q)?,
            None => 1,
        };
        let price = c.price_override.as_ref().ok_or_else(|| {
            FhirError::missing(
                "ChargeItem.priceOverride",
                "careflow keeps no price list: the total price (priceOverride) is required",
            )
        })?;
        let (total, currency) = money("ChargeItem.priceOverride", price)?;
        if total.0 % i64::from(quantity) != 0 {
            return Err(FhirError::value(
                "ChargeItem.priceOverride",
                "the total price is not a whole number of cents per unit of the quantity",
            ));
        }
        Ok(Step::Command {
            id: mrn,
            command: AnyCommand::PatientAccount(patient_account::Command::PostCharge(
                patient_account::PostCharge {
                    charge_id,
                    encounter_id,
                    code: code_value,
                    description,
                    quantity,
                    unit_price: Cents(total.0 / i64::from(quantity)),
                    currency,
                },
            )),
        })
    }

    fn supply_delivery(&self, s: &model::SupplyDelivery) -> Result<Step, FhirError> {
        if s.status.as_deref() != Some("completed") {
            return Err(FhirError::value(
                "SupplyDelivery.status",
                "careflow records completed deliveries only",
            ));
        }
        let kind = s.kind.as_ref();
        let stated_usage = kind.is_some_and(|k| k.has_code(Some(SUPPLY_KIND_SYSTEM), "usage"));
        let stated_receipt = kind.is_some_and(|k| k.has_code(Some(SUPPLY_KIND_SYSTEM), "receipt"));
        let requisition = s.based_on.iter().find_map(|r| {
            r.reference
                .as_deref()
                .and_then(|r| literal_id(r, "SupplyRequest"))
        });
        let receipt = stated_receipt || (!stated_usage && requisition.is_some());
        let item = s.supplied_item.as_ref().ok_or_else(|| {
            FhirError::missing(
                "SupplyDelivery.suppliedItem",
                "the supplied item is required",
            )
        })?;
        let item_id = item
            .item_codeable_concept
            .as_ref()
            .and_then(CodeableConcept::first_code)
            .map(str::to_owned)
            .or_else(|| {
                item.item_reference.as_ref().and_then(|r| {
                    r.reference.as_deref().and_then(|r| {
                        ["Device", "Medication", "Substance"]
                            .iter()
                            .find_map(|kind| literal_id(r, kind))
                            .map(str::to_owned)
                    })
                })
            })
            .ok_or_else(|| {
                FhirError::missing(
                    "SupplyDelivery.suppliedItem.itemCodeableConcept",
                    "the item (a code, or a Device/Medication/Substance reference) is required",
                )
            })?;
        let item_id = checked_id("SupplyDelivery.suppliedItem", "inventory_item", item_id)?;
        let quantity = item
            .quantity
            .as_ref()
            .ok_or_else(|| {
                FhirError::missing(
                    "SupplyDelivery.suppliedItem.quantity",
                    "a quantity is required",
                )
            })
            .and_then(|q| whole_quantity("SupplyDelivery.suppliedItem.quantity.value", q))?;
        if receipt {
            let requisition = requisition.ok_or_else(|| {
                FhirError::missing(
                    "SupplyDelivery.basedOn",
                    "a receipt of goods names its purchase (basedOn SupplyRequest/<requisition>)",
                )
            })?;
            let requisition =
                checked_id("SupplyDelivery.basedOn", "purchase", requisition.to_owned())?;
            let receipt_id = s
                .identifier
                .first()
                .and_then(|i| i.value.clone())
                .or_else(|| s.id.clone())
                .ok_or_else(|| {
                    FhirError::missing(
                        "SupplyDelivery.identifier",
                        "a receipt id (identifier or id) is required",
                    )
                })?;
            Ok(Step::Command {
                id: requisition,
                command: AnyCommand::Purchase(purchase::Command::ReceiveGoods(
                    purchase::ReceiveGoods {
                        receipt_id,
                        lines: vec![purchase::ReceiptLine { item_id, quantity }],
                    },
                )),
            })
        } else {
            let encounter = s
                .extension
                .iter()
                .find(|x| x.url == ENCOUNTER_EXTENSION)
                .and_then(|x| x.value_reference.as_ref());
            let visit = self.reference_id(
                "SupplyDelivery.extension",
                "Encounter",
                "encounter",
                encounter,
            )?;
            Ok(Step::Command {
                id: visit,
                command: AnyCommand::Encounter(encounter::Command::RecordSupplyUsage(
                    encounter::RecordSupplyUsage { item_id, quantity },
                )),
            })
        }
    }

    fn claim(&self, c: &model::Claim) -> Result<Step, FhirError> {
        let submit = match c.status.as_deref() {
            Some("active") => true,
            Some("draft") => false,
            Some(_) => {
                return Err(FhirError::value(
                    "Claim.status",
                    "careflow takes active (create and submit) or draft (create) claims",
                ));
            }
            None => return Err(FhirError::missing("Claim.status", "a status is required")),
        };
        let claim_id = c
            .identifier
            .first()
            .and_then(|i| i.value.clone())
            .or_else(|| c.id.clone())
            .ok_or_else(|| {
                FhirError::missing(
                    "Claim.identifier",
                    "a claim id (identifier or id) is required",
                )
            })?;
        let claim_id = checked_id("Claim.identifier", "claim", claim_id)?;
        let account_id = self.patient_mrn("Claim.patient", c.patient.as_ref())?;
        let payer_id = self.organisation(c.insurer.as_ref()).ok_or_else(|| {
            FhirError::missing("Claim.insurer", "the payer (an Organization) is required")
        })?;
        let payer_id = checked_id("Claim.insurer", "payer", payer_id)?;
        if c.item.is_empty() {
            return Err(FhirError::missing(
                "Claim.item",
                "a claim bills at least one item",
            ));
        }
        let mut encounter_id = None;
        let mut currency = None;
        let mut lines = Vec::with_capacity(c.item.len());
        for (i, item) in c.item.iter().enumerate() {
            let sequence = item
                .sequence
                .unwrap_or(u32::try_from(i + 1).unwrap_or(u32::MAX));
            if encounter_id.is_none() && !item.encounter.is_empty() {
                encounter_id = Some(self.reference_id(
                    "Claim.item.encounter",
                    "Encounter",
                    "encounter",
                    item.encounter.first(),
                )?);
            }
            let code = item
                .product_or_service
                .as_ref()
                .and_then(CodeableConcept::first_code)
                .ok_or_else(|| {
                    FhirError::missing(
                        "Claim.item.productOrService.coding.code",
                        "each item needs a code",
                    )
                })?
                .to_owned();
            let quantity = match &item.quantity {
                Some(q) => whole_quantity("Claim.item.quantity.value", q)?,
                None => 1,
            };
            let price = item.unit_price.as_ref().ok_or_else(|| {
                FhirError::missing("Claim.item.unitPrice", "each item needs its unit price")
            })?;
            let (unit_price, line_currency) = money("Claim.item.unitPrice", price)?;
            if let Some(net) = &item.net {
                let (net, _) = money("Claim.item.net", net)?;
                if unit_price.checked_mul(quantity) != Some(net) {
                    return Err(FhirError::value(
                        "Claim.item.net",
                        "net is not quantity times unitPrice",
                    ));
                }
            }
            if currency.is_some_and(|c| c != line_currency) {
                return Err(FhirError::value(
                    "Claim.item.unitPrice.currency",
                    "every item of a claim is in one currency",
                ));
            }
            currency = Some(line_currency);
            let charge_id = item
                .extension
                .iter()
                .find(|x| x.url == CLAIM_CHARGE_EXTENSION)
                .and_then(|x| x.value_string.clone())
                .unwrap_or_else(|| format!("{claim_id}.{sequence}"));
            let charge_id = checked_id("Claim.item.extension", "charge", charge_id)?;
            lines.push(claim::ClaimLine {
                charge_id,
                code,
                quantity,
                unit_price,
            });
        }
        let encounter_id = encounter_id.ok_or_else(|| {
            FhirError::missing(
                "Claim.item.encounter",
                "the visit billed (an Encounter reference on an item) is required",
            )
        })?;
        let mut commands = vec![AnyCommand::Claim(claim::Command::CreateClaim(
            claim::CreateClaim {
                account_id,
                encounter_id,
                payer_id,
                lines,
                currency: currency.unwrap_or_default(),
            },
        ))];
        if submit {
            commands.push(AnyCommand::Claim(claim::Command::SubmitClaim(
                claim::SubmitClaim {},
            )));
        }
        Ok(Step::Commands {
            id: claim_id,
            commands,
        })
    }

    fn eligibility(&self, r: &model::CoverageEligibilityResponse) -> Result<Step, FhirError> {
        let mrn = self.patient_mrn("CoverageEligibilityResponse.patient", r.patient.as_ref())?;
        let payer_id = self.organisation(r.insurer.as_ref()).ok_or_else(|| {
            FhirError::missing(
                "CoverageEligibilityResponse.insurer",
                "the insurer (an Organization) is required",
            )
        })?;
        let eligible = r.insurance.first().and_then(|i| i.inforce).ok_or_else(|| {
            FhirError::missing(
                "CoverageEligibilityResponse.insurance.inforce",
                "insurance[0].inforce says whether the patient is covered",
            )
        })?;
        let reference = r
            .identifier
            .first()
            .and_then(|i| i.value.clone())
            .or_else(|| r.id.clone());
        Ok(Step::Command {
            id: mrn,
            command: AnyCommand::PatientAccount(patient_account::Command::RecordEligibility(
                patient_account::RecordEligibility {
                    payer_id,
                    eligible,
                    reference,
                },
            )),
        })
    }
}

/// A quantity careflow counts: a whole number of at least 1.
fn whole_quantity(element: &str, quantity: &model::Quantity) -> Result<u32, FhirError> {
    let value = quantity
        .value
        .as_ref()
        .ok_or_else(|| FhirError::missing(element, "a quantity value is required"))?;
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            FhirError::value(
                element,
                "careflow counts whole units: use a whole number of at least 1",
            )
        })
}

/// A FHIR Money as cents and currency (USD when unstated, as the command contract defaults).
fn money(element: &str, money: &model::Money) -> Result<(Cents, Currency), FhirError> {
    let value = money
        .value
        .as_ref()
        .ok_or_else(|| FhirError::missing(format!("{element}.value"), "an amount is required"))?;
    let cents = Cents::parse(&value.to_string()).map_err(|_| {
        FhirError::value(
            format!("{element}.value"),
            "use a decimal with at most two fraction digits",
        )
    })?;
    let currency = match &money.currency {
        Some(code) => Currency::parse(code).map_err(|_| {
            FhirError::value(
                format!("{element}.currency"),
                "use an ISO 4217 code such as USD",
            )
        })?,
        None => Currency::USD,
    };
    Ok((cents, currency))
}

/// A FHIR dateTime: RFC 3339 with an offset, or a full date (read as midnight UTC).
fn date_time(element: &str, text: &str) -> Result<DateTime<Utc>, FhirError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(NaiveTime::MIN).and_utc())
        .map_err(|_| FhirError::value(element, "use a full date or a date and time with an offset"))
}

/// The address statements go to: `use` = `billing`, else a `postal` (or `both`) one, else
/// `home`, else the first; an `old` address never. `Address.country` is kept as sent (upper
/// case) and the aggregate takes only ISO 3166-1 alpha-2, so `USA` is an OperationOutcome,
/// not a silently dropped country.
fn billing_address(addresses: &[model::Address]) -> Option<patient_account::PostalAddress> {
    let current: Vec<&model::Address> = addresses
        .iter()
        .filter(|a| a.purpose.as_deref() != Some("old"))
        .collect();
    let chosen = current
        .iter()
        .find(|a| a.purpose.as_deref() == Some("billing"))
        .or_else(|| {
            current
                .iter()
                .find(|a| matches!(a.kind.as_deref(), Some("postal" | "both")))
        })
        .or_else(|| {
            current
                .iter()
                .find(|a| a.purpose.as_deref() == Some("home"))
        })
        .or_else(|| current.first())?;
    let address = patient_account::PostalAddress {
        line: chosen.line.clone(),
        city: chosen.city.clone(),
        postal_code: chosen.postal_code.clone(),
        country: chosen.country.as_deref().map(str::to_ascii_uppercase),
    };
    (address != patient_account::PostalAddress::default()).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_references_name_their_id() {
        assert_eq!(literal_id("Patient/123", "Patient"), Some("123"));
        assert_eq!(
            literal_id("http://x.org/fhir/Patient/9/_history/2", "Patient"),
            Some("9")
        );
        assert_eq!(literal_id("Organization/1", "Patient"), None);
        assert_eq!(literal_id("Patient/", "Patient"), None);
    }

    fn change(target: EncounterTarget, disposition: Option<&str>) -> EncounterChange {
        EncounterChange {
            account_id: "M1".into(),
            facility: None,
            department: "general".into(),
            class: encounter::EncounterClass::Outpatient,
            scheduled_for: None,
            target,
            disposition: disposition.map(str::to_owned),
        }
    }

    fn names(commands: &[encounter::Command]) -> Vec<&'static str> {
        commands.iter().map(encounter::Command::name).collect()
    }

    #[test]
    fn an_encounter_status_becomes_the_commands_in_order() {
        let now = Utc::now();
        let new = encounter::State::default();
        let got = encounter_commands(
            &new,
            &change(EncounterTarget::Finished, Some("home")),
            Some("F1"),
            now,
        )
        .unwrap();
        assert_eq!(
            names(&got),
            [
                "ScheduleEncounter",
                "CheckIn",
                "CompleteEncounter",
                "Discharge"
            ]
        );
        let got = encounter_commands(
            &new,
            &change(EncounterTarget::Arrived, None),
            Some("F1"),
            now,
        )
        .unwrap();
        assert_eq!(names(&got), ["ScheduleEncounter", "CheckIn"]);
        assert!(matches!(
            encounter_commands(&new, &change(EncounterTarget::Planned, None), None, now),
            Err(FhirError::Invalid { missing: true, .. })
        ));

        let arrived = encounter::State {
            status: Some(encounter::EncounterStatus::Arrived),
            ..Default::default()
        };
        let got = encounter_commands(&arrived, &change(EncounterTarget::Arrived, None), None, now)
            .unwrap();
        assert!(got.is_empty(), "the same status again is a no-op");
        let got = encounter_commands(
            &arrived,
            &change(EncounterTarget::Finished, None),
            None,
            now,
        )
        .unwrap();
        assert_eq!(names(&got), ["CompleteEncounter"]);
        assert!(matches!(
            encounter_commands(&arrived, &change(EncounterTarget::Planned, None), None, now),
            Err(FhirError::OutOfOrder { .. })
        ));
        let got = encounter_commands(
            &arrived,
            &change(EncounterTarget::Cancelled, None),
            None,
            now,
        )
        .unwrap();
        assert_eq!(names(&got), ["CancelEncounter"]);
    }
}
