//! PatientAccount `decide`: the account's rules.
//!
//! Bodies are validated first (422, whatever the state), then the state's rules apply (409).
//! The rules: register once; nothing but registration before it; nothing after closing except
//! erasure; charge, payment and adjustment ids are unique per account; payments are positive and
//! never exceed the outstanding balance; one currency per account; close only at balance zero.

use super::command::{
    AbsorbMergedAccount, ApplyAdjustment, Command, CoverageDetails, FlagSelfPay, HumanName,
    MergePatient, PostCharge, PostalAddress, RecordEligibility, RecordPayment, RegisterPatient,
    UpdateDemographics,
};
use super::event::{
    AccountActivated, AccountClosed, AccountFlaggedSelfPay, AdjustmentApplied, ChargePosted,
    Coverage, DemographicsUpdated, EligibilityDenied, EligibilityVerified, Event, IdentityChanges,
    MovedAccount, MovedPayment, PatientAccountMergedIn, PatientIdentity, PatientMerged,
    PatientRegistered, PaymentParty, PaymentRecorded, PersonalDataErased,
};
use super::state::{AccountStatus, State};
use crate::context::Ctx;
use crate::field::{self, LONG_TEXT, SHORT_TEXT};
use crate::money::{Cents, Currency};
use crate::personal::Personal;
use crate::rejection::Rejection;

/// Decides a command against an account.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::RegisterPatient(c) => register(state, c, ctx),
        Command::UpdateDemographics(c) => update_demographics(state, c, ctx),
        Command::RecordEligibility(c) => record_eligibility(state, c),
        Command::ActivateAccount(_) => {
            if open_status(state)? == AccountStatus::Active {
                return Ok(vec![]);
            }
            Ok(vec![AccountActivated {}.into()])
        }
        Command::FlagSelfPay(c) => flag_self_pay(state, c),
        Command::PostCharge(c) => post_charge(state, c),
        Command::RecordPayment(c) => record_payment(state, c),
        Command::ApplyAdjustment(c) => apply_adjustment(state, c),
        Command::CloseAccount(_) => {
            open_status(state)?;
            if !state.balance.is_zero() {
                return Err(Rejection::BalanceNotZero {
                    balance: state.balance,
                });
            }
            Ok(vec![AccountClosed {}.into()])
        }
        Command::MergePatient(c) => merge(state, c),
        Command::AbsorbMergedAccount(c) => absorb(state, c),
        Command::ErasePersonalData(c) => {
            field::text("reason", &c.reason, LONG_TEXT)?;
            if !state.is_registered() {
                return Err(Rejection::NotRegistered);
            }
            // Erasing twice is a true no-op: the key is already gone.
            if state.personal_data_erased {
                return Ok(vec![]);
            }
            Ok(vec![
                PersonalDataErased {
                    reason: c.reason.clone(),
                }
                .into(),
            ])
        }
    }
}

/// The status of a registered account that is neither closed nor merged.
fn open_status(state: &State) -> Result<AccountStatus, Rejection> {
    match state.status {
        None => Err(Rejection::NotRegistered),
        Some(AccountStatus::Closed) => Err(Rejection::AccountClosed),
        Some(AccountStatus::Merged) => Err(Rejection::AccountMerged {
            into: state.merged_into.clone().unwrap_or_default(),
        }),
        Some(status) => Ok(status),
    }
}

/// What a merge of account `from` into account `into` needs of the two states, checked by the
/// shell before it sends `MergePatient` (the merged account's `decide` cannot see the
/// survivor): not into itself, into a registered account that is neither merged nor closed,
/// and in one currency. The survivor's `decide` checks the same again when the money arrives.
///
/// # Errors
/// [`Rejection::MergeIntoSelf`] (422), [`Rejection::MergeTargetNotRegistered`],
/// [`Rejection::MergeTargetMerged`], [`Rejection::MergeTargetClosed`],
/// [`Rejection::CurrencyMismatch`] (409); nothing is appended.
pub fn check_merge(
    from: &str,
    merged: &State,
    into: &str,
    survivor: &State,
) -> Result<(), Rejection> {
    if from == into {
        return Err(Rejection::MergeIntoSelf);
    }
    check_survivor(into, survivor)?;
    match (survivor.currency, merged.currency) {
        (Some(expected), Some(found)) if expected != found => {
            Err(Rejection::CurrencyMismatch { expected, found })
        }
        _ => Ok(()),
    }
}

fn check_survivor(into: &str, survivor: &State) -> Result<(), Rejection> {
    match survivor.status {
        None => Err(Rejection::MergeTargetNotRegistered {
            into: into.to_owned(),
        }),
        Some(AccountStatus::Merged) => Err(Rejection::MergeTargetMerged {
            into: into.to_owned(),
            survivor: survivor.merged_into.clone().unwrap_or_default(),
        }),
        Some(AccountStatus::Closed) => Err(Rejection::MergeTargetClosed {
            into: into.to_owned(),
        }),
        Some(_) => Ok(()),
    }
}

fn merge(state: &State, c: &MergePatient) -> Result<Vec<Event>, Rejection> {
    field::id("into", &c.into)?;
    field::text("reason", &c.reason, LONG_TEXT)?;
    open_status(state)?;
    Ok(vec![
        PatientMerged {
            into: c.into.clone(),
            reason: c.reason.clone(),
            moved: MovedAccount {
                currency: state.currency,
                balance: state.balance,
                charges: state.charges.clone(),
                payments: state
                    .payments
                    .iter()
                    .map(|p| MovedPayment {
                        payment_id: p.payment_id.clone(),
                        amount: p.amount,
                        method: p.method,
                    })
                    .collect(),
                adjustments: state.adjustments.clone(),
            },
        }
        .into(),
    ])
}

fn absorb(state: &State, c: &AbsorbMergedAccount) -> Result<Vec<Event>, Rejection> {
    field::id("from", &c.from)?;
    // A redelivered merge is a true no-op: the money arrived once.
    if state.merged_from.iter().any(|from| from == &c.from) {
        return Ok(vec![]);
    }
    if let Err(rejection) = check_survivor("this account", state) {
        return Err(match rejection {
            Rejection::MergeTargetNotRegistered { .. } => Rejection::NotRegistered,
            Rejection::MergeTargetClosed { .. } => Rejection::AccountClosed,
            other => other,
        });
    }
    if let Some(currency) = c.moved.currency {
        same_currency(state, currency)?;
    }
    new_balance(state.balance.checked_add(c.moved.balance))?;
    Ok(vec![
        PatientAccountMergedIn {
            from: c.from.clone(),
            reason: c.reason.clone(),
            moved: c.moved.clone(),
        }
        .into(),
    ])
}

/// Every amount on an account is in the currency of the first one.
fn same_currency(state: &State, currency: Currency) -> Result<(), Rejection> {
    match state.currency {
        Some(expected) if expected != currency => Err(Rejection::CurrencyMismatch {
            expected,
            found: currency,
        }),
        _ => Ok(()),
    }
}

fn check_name(name: &HumanName) -> Result<(), Rejection> {
    field::text("name.family", &name.family, SHORT_TEXT)?;
    for given in &name.given {
        field::text("name.given", given, SHORT_TEXT)?;
    }
    Ok(())
}

fn check_birth_date(birth_date: chrono::NaiveDate, ctx: &Ctx) -> Result<(), Rejection> {
    if birth_date > ctx.now.date_naive() {
        return Err(Rejection::BirthDateInFuture);
    }
    Ok(())
}

fn check_address(address: &PostalAddress) -> Result<(), Rejection> {
    if address.line.len() > 2 {
        return Err(Rejection::TooLong {
            field: "address.line",
            max: 2,
        });
    }
    for line in &address.line {
        field::text("address.line", line, SHORT_TEXT)?;
    }
    field::optional_text("address.city", address.city.as_deref(), SHORT_TEXT)?;
    field::optional_text(
        "address.postal_code",
        address.postal_code.as_deref(),
        SHORT_TEXT,
    )?;
    if let Some(country) = &address.country
        && !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(Rejection::InvalidCommand {
            detail: "address.country must be an ISO 3166-1 alpha-2 code such as BE".into(),
        });
    }
    Ok(())
}

fn check_coverage(coverage: &CoverageDetails) -> Result<(), Rejection> {
    field::id("coverage.payer_id", &coverage.payer_id)?;
    field::id("coverage.member_id", &coverage.member_id)?;
    field::optional_text("coverage.plan", coverage.plan.as_deref(), SHORT_TEXT)
}

/// Splits coverage into its readable part and the member id (personal).
fn split_coverage(coverage: &CoverageDetails) -> (Coverage, String) {
    (
        Coverage {
            payer_id: coverage.payer_id.clone(),
            plan: coverage.plan.clone(),
        },
        coverage.member_id.clone(),
    )
}

fn register(state: &State, c: &RegisterPatient, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    check_name(&c.name)?;
    check_birth_date(c.birth_date, ctx)?;
    field::text("facility", &c.facility, SHORT_TEXT)?;
    if let Some(coverage) = &c.coverage {
        check_coverage(coverage)?;
    }
    if let Some(address) = &c.address {
        check_address(address)?;
    }
    if state.is_registered() {
        return Err(Rejection::AlreadyRegistered);
    }
    let (coverage, member_id) = match c.coverage.as_ref().map(split_coverage) {
        Some((coverage, member_id)) => (Some(coverage), Some(member_id)),
        None => (None, None),
    };
    Ok(vec![
        PatientRegistered {
            facility: c.facility.clone(),
            gender: c.gender,
            coverage,
            personal: Personal::Present(PatientIdentity {
                name: c.name.clone(),
                birth_date: c.birth_date,
                member_id,
                address: c.address.clone(),
            }),
        }
        .into(),
    ])
}

fn update_demographics(
    state: &State,
    c: &UpdateDemographics,
    ctx: &Ctx,
) -> Result<Vec<Event>, Rejection> {
    if c == &UpdateDemographics::default() {
        return Err(Rejection::EmptyUpdate);
    }
    if let Some(name) = &c.name {
        check_name(name)?;
    }
    if let Some(birth_date) = c.birth_date {
        check_birth_date(birth_date, ctx)?;
    }
    field::optional_text("facility", c.facility.as_deref(), SHORT_TEXT)?;
    if let Some(coverage) = &c.coverage {
        check_coverage(coverage)?;
    }
    if let Some(address) = &c.address {
        check_address(address)?;
    }
    open_status(state)?;
    let carries_personal =
        c.name.is_some() || c.birth_date.is_some() || c.coverage.is_some() || c.address.is_some();
    if carries_personal && state.personal_data_erased {
        return Err(Rejection::PersonalDataErased);
    }
    let (coverage, member_id) = match c.coverage.as_ref().map(split_coverage) {
        Some((coverage, member_id)) => (Some(coverage), Some(member_id)),
        None => (None, None),
    };
    Ok(vec![
        DemographicsUpdated {
            facility: c.facility.clone(),
            gender: c.gender,
            coverage,
            personal: Personal::Present(IdentityChanges {
                name: c.name.clone(),
                birth_date: c.birth_date,
                member_id,
                address: c.address.clone(),
            }),
        }
        .into(),
    ])
}

fn record_eligibility(state: &State, c: &RecordEligibility) -> Result<Vec<Event>, Rejection> {
    field::id("payer_id", &c.payer_id)?;
    field::optional_text("reference", c.reference.as_deref(), SHORT_TEXT)?;
    open_status(state)?;
    let payer_id = c.payer_id.clone();
    let reference = c.reference.clone();
    Ok(vec![if c.eligible {
        EligibilityVerified {
            payer_id,
            reference,
        }
        .into()
    } else {
        EligibilityDenied {
            payer_id,
            reference,
        }
        .into()
    }])
}

fn flag_self_pay(state: &State, c: &FlagSelfPay) -> Result<Vec<Event>, Rejection> {
    field::text("reason", &c.reason, LONG_TEXT)?;
    if open_status(state)? == AccountStatus::SelfPay {
        return Ok(vec![]);
    }
    Ok(vec![
        AccountFlaggedSelfPay {
            reason: c.reason.clone(),
        }
        .into(),
    ])
}

fn post_charge(state: &State, c: &PostCharge) -> Result<Vec<Event>, Rejection> {
    field::id("charge_id", &c.charge_id)?;
    field::id("encounter_id", &c.encounter_id)?;
    field::text("code", &c.code, SHORT_TEXT)?;
    field::text("description", &c.description, LONG_TEXT)?;
    field::quantity("quantity", c.quantity)?;
    field::non_negative("unit_price", c.unit_price)?;
    let amount = field::line_total("unit_price", c.unit_price, c.quantity)?;
    open_status(state)?;
    same_currency(state, c.currency)?;
    if state.charge(&c.charge_id).is_some() {
        return Err(Rejection::DuplicateCharge {
            charge_id: c.charge_id.clone(),
        });
    }
    new_balance(state.balance.checked_add(amount))?;
    Ok(vec![
        ChargePosted {
            charge_id: c.charge_id.clone(),
            encounter_id: c.encounter_id.clone(),
            code: c.code.clone(),
            description: c.description.clone(),
            quantity: c.quantity,
            unit_price: c.unit_price,
            amount,
            currency: c.currency,
        }
        .into(),
    ])
}

fn record_payment(state: &State, c: &RecordPayment) -> Result<Vec<Event>, Rejection> {
    field::id("payment_id", &c.payment_id)?;
    if !c.amount.is_positive() {
        return Err(Rejection::NonPositiveAmount { field: "amount" });
    }
    field::amount("amount", c.amount)?;
    field::optional_text("payer", c.payer.as_deref(), SHORT_TEXT)?;
    open_status(state)?;
    same_currency(state, c.currency)?;
    if state.payment(&c.payment_id).is_some() {
        return Err(Rejection::DuplicatePayment {
            payment_id: c.payment_id.clone(),
        });
    }
    if c.amount > state.balance {
        return Err(Rejection::Overpayment {
            balance: state.balance,
        });
    }
    Ok(vec![
        PaymentRecorded {
            payment_id: c.payment_id.clone(),
            amount: c.amount,
            currency: c.currency,
            method: c.method,
            personal: Personal::Present(PaymentParty {
                payer: c.payer.clone(),
            }),
        }
        .into(),
    ])
}

fn apply_adjustment(state: &State, c: &ApplyAdjustment) -> Result<Vec<Event>, Rejection> {
    field::id("adjustment_id", &c.adjustment_id)?;
    if c.amount.is_zero() {
        return Err(Rejection::ZeroAmount { field: "amount" });
    }
    field::amount("amount", c.amount)?;
    field::text("reason", &c.reason, LONG_TEXT)?;
    open_status(state)?;
    same_currency(state, c.currency)?;
    if state.adjustment(&c.adjustment_id).is_some() {
        return Err(Rejection::DuplicateAdjustment {
            adjustment_id: c.adjustment_id.clone(),
        });
    }
    new_balance(state.balance.checked_add(c.amount))?;
    Ok(vec![
        AdjustmentApplied {
            adjustment_id: c.adjustment_id.clone(),
            amount: c.amount,
            currency: c.currency,
            reason: c.reason.clone(),
        }
        .into(),
    ])
}

/// A balance that would leave the money range is refused before anything is appended, which is
/// what lets `evolve` saturate without ever actually saturating.
fn new_balance(balance: Option<Cents>) -> Result<Cents, Rejection> {
    balance.ok_or(Rejection::AmountOutOfRange { field: "amount" })
}
