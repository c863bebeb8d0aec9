//! PatientAccount commands, exactly as DESIGN.md "The command contract" spells them.
//!
//! These are wire contracts: field names and shapes are pinned, unknown fields are refused
//! (serde `deny_unknown_fields` on every struct, nested ones included), money is [`Cents`]
//! parsed from a string decimal. Rules that need more than the shape (ids, non-blank texts,
//! positive amounts) are checked in `decide`, which names the field in its [`crate::Rejection`].

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::money::{Cents, Currency};

command_enum! {
    /// A command to a patient account (`POST /v1/patient-accounts/{mrn}/commands`).
    pub enum Command {
        RegisterPatient,
        UpdateDemographics,
        RecordEligibility,
        ActivateAccount,
        FlagSelfPay,
        PostCharge,
        RecordPayment,
        ApplyAdjustment,
        CloseAccount,
        MergePatient,
        /// Sent by the `merges` process manager to the surviving account when another account
        /// was merged into it; a body can never carry it (the money it moves comes from the
        /// merged account's `PatientMerged`, not from an upstream system).
        #[serde(skip_deserializing)]
        AbsorbMergedAccount,
        /// Issued by `careflow erase <mrn>` (admin) inside the shell; a body can never carry it,
        /// so no upstream system can erase a patient through the command endpoint.
        #[serde(skip_deserializing)]
        ErasePersonalData,
    }
}

/// A person's name as FHIR `HumanName` keeps it: one family name, any given names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanName {
    pub family: String,
    #[serde(default)]
    pub given: Vec<String>,
}

/// A postal address as FHIR `Address` keeps it (the billing address statements are sent to).
/// Personal data: it travels under `personal` in the events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    /// Street lines, at most two.
    #[serde(default)]
    pub line: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 (`BE`, `US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Administrative gender, FHIR's value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

/// Insurance coverage as the registering system sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageDetails {
    pub payer_id: String,
    pub member_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// `RegisterPatient`: opens the account (status `registered`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPatient {
    pub name: HumanName,
    pub birth_date: NaiveDate,
    pub gender: Gender,
    pub facility: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageDetails>,
    /// The billing address (optional; what Odoo statements need, docs/odoo.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
}

/// `UpdateDemographics`: any of the registration fields; those absent stay as they are.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDemographics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<HumanName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
}

/// `RecordEligibility`: the payer's answer, from the eligibility process manager or upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEligibility {
    pub payer_id: String,
    pub eligible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `ActivateAccount`: the account may be billed to its coverage (status `active`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateAccount {}

/// `FlagSelfPay`: the patient pays themselves (status `self_pay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSelfPay {
    pub reason: String,
}

/// `PostCharge`: a billable line, `quantity × unit_price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostCharge {
    pub charge_id: String,
    pub encounter_id: String,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    #[serde(default)]
    pub currency: Currency,
}

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Cash,
    Card,
    Insurance,
    Transfer,
}

/// `RecordPayment`: money received against the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPayment {
    pub payment_id: String,
    pub amount: Cents,
    pub method: PaymentMethod,
    /// Who paid: an insurer, or a person (a guarantor), hence kept under `personal` in the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    #[serde(default)]
    pub currency: Currency,
}

/// `ApplyAdjustment`: a signed correction (positive raises the balance, negative writes off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyAdjustment {
    pub adjustment_id: String,
    pub amount: Cents,
    pub reason: String,
    #[serde(default)]
    pub currency: Currency,
}

/// `CloseAccount`: final; only at balance zero.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseAccount {}

/// `ErasePersonalData`: right to erasure; the shell destroys the patient's data key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasePersonalData {
    /// Why (a request reference, a ruling): kept in clear in the event for the auditors, so it
    /// must not itself hold personal data.
    #[serde(default)]
    pub reason: String,
}

/// `MergePatient`: sent to the account that disappears (a duplicate registration). It records
/// `PatientMerged` and becomes `merged`; the `merges` process manager then moves its money to
/// `into`, the surviving MRN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergePatient {
    pub into: String,
    pub reason: String,
}

/// `AbsorbMergedAccount`: the surviving account takes over what `from` moved out
/// (`PatientMerged.moved`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsorbMergedAccount {
    pub from: String,
    pub reason: String,
    pub moved: crate::patient_account::MovedAccount,
}
