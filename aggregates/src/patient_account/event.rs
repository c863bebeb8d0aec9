//! PatientAccount events: what happened to an account, stored forever.
//!
//! Personal fields (name, birth date, member id, a paying person) live under one `personal`
//! object in each event that has any, so the shell can encrypt it as a whole and erase it by
//! destroying the key; everything outside `personal` (facility, gender, payer id, plan, money)
//! stays readable for billing, analytics and audit. Each variant's number in [`Event`] is its
//! current schema version.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::PatientAccount;
use super::command::{Gender, HumanName, PaymentMethod, PostalAddress};
use super::state::{Adjustment, Charge};
use crate::codec::event_enum;
use crate::money::{Cents, Currency};
use crate::personal::Personal;

event_enum! {
    aggregate = PatientAccount;
    /// An event of a `patient_account-{mrn}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        PatientRegistered = 1,
        DemographicsUpdated = 1,
        EligibilityVerified = 1,
        EligibilityDenied = 1,
        AccountActivated = 1,
        AccountFlaggedSelfPay = 1,
        /// v2: `unit_price` became a string decimal and `amount`/`currency` were added; v1 is
        /// upcast by [`upcast_charge_posted_v1`].
        ChargePosted = 2,
        PaymentRecorded = 1,
        AdjustmentApplied = 1,
        AccountClosed = 1,
        PersonalDataErased = 1,
        PatientMerged = 1,
        PatientAccountMergedIn = 1,
    }
}

/// Coverage without the member id (which is personal and travels under `personal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub payer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// The personal fields of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientIdentity {
    pub name: HumanName,
    pub birth_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// Added after v1 of the events that carry it; absent in older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
}

/// A patient was registered; the account opens with status `registered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRegistered {
    pub facility: String,
    pub gender: Gender,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    #[serde(default)]
    pub personal: Personal<PatientIdentity>,
}

/// The personal fields an update changed (absent ones unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdentityChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<HumanName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
}

/// Registration fields were corrected. `personal` is always written (possibly `{}`), so a
/// `null` there always means "erased".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemographicsUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// Present when coverage was replaced; its member id is in `personal.member_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    #[serde(default)]
    pub personal: Personal<IdentityChanges>,
}

/// The payer confirmed coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityVerified {
    pub payer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The payer denied coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityDenied {
    pub payer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The account became `active`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountActivated {}

/// The account became `self_pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFlaggedSelfPay {
    pub reason: String,
}

/// A charge was posted; `amount = quantity × unit_price`, added to the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargePosted {
    pub charge_id: String,
    pub encounter_id: String,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    pub amount: Cents,
    pub currency: Currency,
}

/// Who paid, kept under `personal` because a guarantor is a person.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentParty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// A payment was recorded; subtracted from the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecorded {
    pub payment_id: String,
    pub amount: Cents,
    pub currency: Currency,
    pub method: PaymentMethod,
    #[serde(default)]
    pub personal: Personal<PaymentParty>,
}

/// A signed adjustment was applied; added to the balance (negative writes off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentApplied {
    pub adjustment_id: String,
    pub amount: Cents,
    pub currency: Currency,
    pub reason: String,
}

/// The account was closed at balance zero. Final.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountClosed {}

/// The patient's data key was destroyed: from here on every `personal` object of this stream
/// reads as erased. The event itself holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersonalDataErased {
    /// Why the data was erased, as the admin gave it (never personal data itself).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A payment as it moves to the surviving account: no payer, which is personal and stays
/// (sealed) in the merged account's own `PaymentRecorded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedPayment {
    pub payment_id: String,
    pub amount: Cents,
    pub method: PaymentMethod,
}

/// What a merged account hands over: its charges, payments and adjustments, and the balance
/// they add up to (`charges − payments + adjustments`). No personal data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MovedAccount {
    /// `None` when the merged account never had an amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    pub balance: Cents,
    #[serde(default)]
    pub charges: Vec<Charge>,
    #[serde(default)]
    pub payments: Vec<MovedPayment>,
    #[serde(default)]
    pub adjustments: Vec<Adjustment>,
}

/// The account was merged into `into` (the survivor) and is `merged` from here on: its money
/// left with this event (`moved`), and every later command is refused with `account_merged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientMerged {
    pub into: String,
    pub reason: String,
    pub moved: MovedAccount,
}

/// The surviving account took over what account `from` moved out: its balance grows by
/// `moved.balance`, so the sum of balances over both accounts is what it was before the merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientAccountMergedIn {
    pub from: String,
    pub reason: String,
    pub moved: MovedAccount,
}

/// `ChargePosted` v1 → v2.
///
/// v1 (the first billing import) stored `unit_price` as a JSON integer of cents and had neither
/// `amount` nor `currency`; everything was billed in USD. v2 writes `unit_price` as a string
/// decimal, adds `amount = quantity × unit_price` and `currency: "USD"`.
///
/// # Errors
/// A message (no values) when `unit_price` or `quantity` is not an integer, or the total
/// overflows.
pub fn upcast_charge_posted_v1(mut data: Value) -> Result<Value, String> {
    let unit_price = data
        .get("unit_price")
        .and_then(Value::as_i64)
        .map(Cents)
        .ok_or("v1 unit_price must be an integer of cents")?;
    let quantity = data
        .get("quantity")
        .and_then(Value::as_u64)
        .and_then(|q| u32::try_from(q).ok())
        .ok_or("v1 quantity must be a non-negative integer")?;
    let amount = unit_price
        .checked_mul(quantity)
        .ok_or("v1 charge total is out of range")?;
    let Value::Object(fields) = &mut data else {
        return Err("v1 data must be an object".into());
    };
    fields.insert("unit_price".into(), json!(unit_price.to_string()));
    fields.insert("amount".into(), json!(amount.to_string()));
    fields.insert("currency".into(), json!(Currency::USD.as_str()));
    Ok(data)
}
