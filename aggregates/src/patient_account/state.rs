//! PatientAccount state and `evolve`: the account as its events leave it.
//!
//! The state is what `decide` checks rules against and what `GET /v1/patient-accounts/{mrn}`
//! renders (`status`, `balance` as a string decimal, `charges`, `payments`, `adjustments`), and
//! it is snapshotted, hence serde. It holds the patient's identity in clear: a snapshot of it is
//! personal data and must be protected (or dropped) like the `personal` objects of the events.

use serde::{Deserialize, Serialize};

use super::command::{Gender, PaymentMethod};
use super::event::{Coverage, Event, PatientIdentity};
use crate::money::{Cents, Currency};

/// The pinned status values of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Registered,
    Active,
    SelfPay,
    Closed,
    /// Merged into another account (`State::merged_into`); final, like `closed`.
    Merged,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Registered => "registered",
            AccountStatus::Active => "active",
            AccountStatus::SelfPay => "self_pay",
            AccountStatus::Closed => "closed",
            AccountStatus::Merged => "merged",
        }
    }
}

/// The latest eligibility answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    pub payer_id: String,
    pub eligible: bool,
    pub reference: Option<String>,
}

/// A posted charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub charge_id: String,
    pub encounter_id: String,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    pub amount: Cents,
}

/// A recorded payment; `payer` is `None` when not given or erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    pub amount: Cents,
    pub method: PaymentMethod,
    pub payer: Option<String>,
}

/// An applied adjustment (signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    pub adjustment_id: String,
    pub amount: Cents,
    pub reason: String,
}

/// A patient account. `status` is `None` until the patient is registered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Option<AccountStatus>,
    pub facility: String,
    pub gender: Option<Gender>,
    pub coverage: Option<Coverage>,
    /// Name, birth date and member id; `None` before registration and after erasure.
    pub identity: Option<PatientIdentity>,
    pub personal_data_erased: bool,
    pub eligibility: Option<Eligibility>,
    pub self_pay_reason: Option<String>,
    /// The currency of every amount on the account, fixed by the first one.
    pub currency: Option<Currency>,
    /// Charges − payments + adjustments.
    pub balance: Cents,
    pub charges: Vec<Charge>,
    pub payments: Vec<Payment>,
    pub adjustments: Vec<Adjustment>,
    /// The survivor's MRN once this account was merged (status `merged`).
    #[serde(default)]
    pub merged_into: Option<String>,
    /// The MRNs merged into this account, in order.
    #[serde(default)]
    pub merged_from: Vec<String>,
}

impl State {
    pub fn is_registered(&self) -> bool {
        self.status.is_some()
    }

    pub fn charge(&self, charge_id: &str) -> Option<&Charge> {
        self.charges.iter().find(|c| c.charge_id == charge_id)
    }

    pub fn payment(&self, payment_id: &str) -> Option<&Payment> {
        self.payments.iter().find(|p| p.payment_id == payment_id)
    }

    pub fn adjustment(&self, adjustment_id: &str) -> Option<&Adjustment> {
        self.adjustments
            .iter()
            .find(|a| a.adjustment_id == adjustment_id)
    }
}

/// The state of an account with no history.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event. Money saturates instead of failing: `decide` has already refused any
/// amount that would overflow, and replay must be total.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::PatientRegistered(e) => {
            state.status = Some(AccountStatus::Registered);
            state.facility.clone_from(&e.facility);
            state.gender = Some(e.gender);
            state.coverage.clone_from(&e.coverage);
            state.identity = e.personal.present().cloned();
        }
        Event::DemographicsUpdated(e) => {
            if let Some(facility) = &e.facility {
                state.facility.clone_from(facility);
            }
            if let Some(gender) = e.gender {
                state.gender = Some(gender);
            }
            if let Some(coverage) = &e.coverage {
                state.coverage = Some(coverage.clone());
            }
            if let (Some(identity), Some(changes)) = (&mut state.identity, e.personal.present()) {
                if let Some(name) = &changes.name {
                    identity.name = name.clone();
                }
                if let Some(birth_date) = changes.birth_date {
                    identity.birth_date = birth_date;
                }
                if let Some(member_id) = &changes.member_id {
                    identity.member_id = Some(member_id.clone());
                }
                if let Some(address) = &changes.address {
                    identity.address = Some(address.clone());
                }
            }
        }
        Event::EligibilityVerified(e) => {
            state.eligibility = Some(Eligibility {
                payer_id: e.payer_id.clone(),
                eligible: true,
                reference: e.reference.clone(),
            });
        }
        Event::EligibilityDenied(e) => {
            state.eligibility = Some(Eligibility {
                payer_id: e.payer_id.clone(),
                eligible: false,
                reference: e.reference.clone(),
            });
        }
        Event::AccountActivated(_) => {
            state.status = Some(AccountStatus::Active);
            state.self_pay_reason = None;
        }
        Event::AccountFlaggedSelfPay(e) => {
            state.status = Some(AccountStatus::SelfPay);
            state.self_pay_reason = Some(e.reason.clone());
        }
        Event::ChargePosted(e) => {
            state.currency = Some(e.currency);
            state.balance = state.balance.saturating_add(e.amount);
            state.charges.push(Charge {
                charge_id: e.charge_id.clone(),
                encounter_id: e.encounter_id.clone(),
                code: e.code.clone(),
                description: e.description.clone(),
                quantity: e.quantity,
                unit_price: e.unit_price,
                amount: e.amount,
            });
        }
        Event::PaymentRecorded(e) => {
            state.currency = Some(e.currency);
            state.balance = state.balance.saturating_sub(e.amount);
            state.payments.push(Payment {
                payment_id: e.payment_id.clone(),
                amount: e.amount,
                method: e.method,
                payer: e.personal.present().and_then(|p| p.payer.clone()),
            });
        }
        Event::AdjustmentApplied(e) => {
            state.currency = Some(e.currency);
            state.balance = state.balance.saturating_add(e.amount);
            state.adjustments.push(Adjustment {
                adjustment_id: e.adjustment_id.clone(),
                amount: e.amount,
                reason: e.reason.clone(),
            });
        }
        Event::AccountClosed(_) => {
            state.status = Some(AccountStatus::Closed);
        }
        Event::PatientMerged(e) => {
            state.status = Some(AccountStatus::Merged);
            state.merged_into = Some(e.into.clone());
            // The money left with the event: the survivor's `PatientAccountMergedIn` adds it.
            state.balance = state.balance.saturating_sub(e.moved.balance);
            state.charges.clear();
            state.payments.clear();
            state.adjustments.clear();
        }
        Event::PatientAccountMergedIn(e) => {
            if state.currency.is_none() {
                state.currency = e.moved.currency;
            }
            state.balance = state.balance.saturating_add(e.moved.balance);
            state.charges.extend(e.moved.charges.iter().cloned());
            state
                .payments
                .extend(e.moved.payments.iter().map(|p| Payment {
                    payment_id: p.payment_id.clone(),
                    amount: p.amount,
                    method: p.method,
                    payer: None,
                }));
            state
                .adjustments
                .extend(e.moved.adjustments.iter().cloned());
            state.merged_from.push(e.from.clone());
        }
        Event::PersonalDataErased(_) => {
            state.identity = None;
            state.personal_data_erased = true;
            for payment in &mut state.payments {
                payment.payer = None;
            }
        }
    }
    state
}
