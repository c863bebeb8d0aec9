//! Typed serde structs for the FHIR R4 resources careflow takes in, and only for the elements
//! it maps (docs/interop.md "FHIR R4" says which).
//!
//! A maintained FHIR model crate was considered first: `helios-fhir` 0.2.7 (R4 is its default
//! feature) does not build cleanly here. It pins `serde = "=1.0.224"` and
//! `serde_json = "=1.0.144"` exactly, which would force the whole workspace off its serde
//! 1.0.229, and its R4 model alone is 190,878 generated lines (7.9 MB) behind a derive macro,
//! for six resources. These structs are the alternative:
//! small, reviewed, and strict where careflow needs a value (a wrong JSON type is a 400), while
//! every element careflow does not map (`text`, `meta`, `extension` on other resources, ...)
//! is accepted and ignored, as FHIR's "must ignore unknown" reading of a partial model allows.

use serde::Deserialize;
use serde_json::Number;

/// `Coding`: a code in a code system.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Coding {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub display: Option<String>,
}

/// `CodeableConcept`: codings plus a text.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CodeableConcept {
    #[serde(default)]
    pub coding: Vec<Coding>,
    #[serde(default)]
    pub text: Option<String>,
}

impl CodeableConcept {
    /// Whether one coding has `code` (in any system when `system` is `None`).
    pub fn has_code(&self, system: Option<&str>, code: &str) -> bool {
        self.coding.iter().any(|c| {
            c.code.as_deref() == Some(code) && system.is_none_or(|s| c.system.as_deref() == Some(s))
        })
    }

    /// The first coding's code.
    pub fn first_code(&self) -> Option<&str> {
        self.coding.iter().find_map(|c| c.code.as_deref())
    }

    /// The text, else the first coding's display.
    pub fn label(&self) -> Option<&str> {
        self.text
            .as_deref()
            .or_else(|| self.coding.iter().find_map(|c| c.display.as_deref()))
    }
}

/// `Identifier`: a business identifier, optionally typed (`MR`, `VN`) and scoped by a system.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Identifier {
    #[serde(default, rename = "type")]
    pub kind: Option<CodeableConcept>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

impl Identifier {
    /// Whether its type carries the v2-0203 code `code` (`MR`, `VN`).
    pub fn is_type(&self, code: &str) -> bool {
        self.kind.as_ref().is_some_and(|k| k.has_code(None, code))
    }
}

/// `Reference`: a literal reference (`Patient/123`), a logical one (an identifier), or both.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Reference {
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub identifier: Option<Identifier>,
    #[serde(default)]
    pub display: Option<String>,
}

/// `HumanName`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HumanName {
    #[serde(default, rename = "use")]
    pub purpose: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub given: Vec<String>,
}

/// `Address` (the parts careflow keeps; `state`, `district` and `text` are not kept).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default, rename = "use")]
    pub purpose: Option<String>,
    /// `postal`, `physical` or `both`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub line: Vec<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

/// `Period`: FHIR dateTimes, kept as text and parsed where used.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Period {
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
}

/// `Quantity` (the value only: careflow counts whole units).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Quantity {
    #[serde(default)]
    pub value: Option<Number>,
}

/// `Money`: a decimal value and an ISO 4217 currency.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Money {
    #[serde(default)]
    pub value: Option<Number>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// `Extension`, for the two careflow extensions a SupplyDelivery may carry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub url: String,
    #[serde(default)]
    pub value_reference: Option<Reference>,
    #[serde(default)]
    pub value_string: Option<String>,
}

/// `Claim.item`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimItem {
    #[serde(default)]
    pub sequence: Option<u32>,
    #[serde(default)]
    pub product_or_service: Option<CodeableConcept>,
    #[serde(default)]
    pub quantity: Option<Quantity>,
    #[serde(default)]
    pub unit_price: Option<Money>,
    #[serde(default)]
    pub net: Option<Money>,
    #[serde(default)]
    pub encounter: Vec<Reference>,
    #[serde(default)]
    pub extension: Vec<Extension>,
}

/// `Claim` (from an upstream billing system).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Claim {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub patient: Option<Reference>,
    #[serde(default)]
    pub insurer: Option<Reference>,
    #[serde(default)]
    pub item: Vec<ClaimItem>,
}

/// `Patient`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub name: Vec<HumanName>,
    #[serde(default)]
    pub gender: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
    #[serde(default)]
    pub address: Vec<Address>,
    #[serde(default)]
    pub managing_organization: Option<Reference>,
}

/// `Coverage.class`: group, plan, ... with its value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CoverageClass {
    #[serde(default, rename = "type")]
    pub kind: CodeableConcept,
    #[serde(default)]
    pub value: Option<String>,
}

/// `Coverage`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub subscriber_id: Option<String>,
    #[serde(default)]
    pub beneficiary: Option<Reference>,
    #[serde(default)]
    pub payor: Vec<Reference>,
    #[serde(default)]
    pub class: Vec<CoverageClass>,
}

/// `Encounter.hospitalization` (the discharge disposition only).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hospitalization {
    #[serde(default)]
    pub discharge_disposition: Option<CodeableConcept>,
}

/// `Encounter.location`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EncounterLocation {
    #[serde(default)]
    pub location: Reference,
}

/// `Encounter`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub class: Option<Coding>,
    #[serde(default)]
    pub service_type: Option<CodeableConcept>,
    #[serde(default)]
    pub subject: Option<Reference>,
    #[serde(default)]
    pub period: Option<Period>,
    #[serde(default)]
    pub hospitalization: Option<Hospitalization>,
    #[serde(default)]
    pub location: Vec<EncounterLocation>,
    #[serde(default)]
    pub service_provider: Option<Reference>,
}

/// `ChargeItem`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeItem {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub code: Option<CodeableConcept>,
    #[serde(default)]
    pub subject: Option<Reference>,
    #[serde(default)]
    pub context: Option<Reference>,
    #[serde(default)]
    pub quantity: Option<Quantity>,
    #[serde(default)]
    pub price_override: Option<Money>,
}

/// `SupplyDelivery.suppliedItem`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuppliedItem {
    #[serde(default)]
    pub quantity: Option<Quantity>,
    #[serde(default)]
    pub item_codeable_concept: Option<CodeableConcept>,
    #[serde(default)]
    pub item_reference: Option<Reference>,
}

/// `SupplyDelivery`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupplyDelivery {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub extension: Vec<Extension>,
    #[serde(default)]
    pub based_on: Vec<Reference>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub patient: Option<Reference>,
    #[serde(default, rename = "type")]
    pub kind: Option<CodeableConcept>,
    #[serde(default)]
    pub supplied_item: Option<SuppliedItem>,
}

/// `CoverageEligibilityResponse.insurance`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EligibilityInsurance {
    #[serde(default)]
    pub coverage: Option<Reference>,
    #[serde(default)]
    pub inforce: Option<bool>,
}

/// `CoverageEligibilityResponse`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageEligibilityResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub patient: Option<Reference>,
    #[serde(default)]
    pub insurer: Option<Reference>,
    #[serde(default)]
    pub insurance: Vec<EligibilityInsurance>,
}

/// `Bundle.entry.request`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BundleRequest {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `Bundle.entry`: the resource is kept as JSON and parsed by its `resourceType`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(default)]
    pub full_url: Option<String>,
    #[serde(default)]
    pub resource: Option<serde_json::Value>,
    #[serde(default)]
    pub request: Option<BundleRequest>,
}

/// `Bundle` (careflow takes `transaction` bundles).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Bundle {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub entry: Vec<BundleEntry>,
}
