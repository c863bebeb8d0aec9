//! [`Rejection`]: every reason the domain refuses a command, in one enum for the whole crate.
//!
//! A rejection means "nothing was appended". Each variant says when it occurs and how the HTTP
//! layer answers it: **422** when the body is well-formed JSON but fails validation (the same
//! body would fail against any state), **409** when it breaks a business rule or the lifecycle
//! order of the aggregate's current state. [`Rejection::status`] and [`Rejection::code`] are the
//! whole mapping the shell needs; `Display` is the problem+json `title` and
//! [`Rejection::hint`] the optional `hint`.
//!
//! Messages follow the Materialize style (lowercase, short, no trailing period) and carry ids
//! and numbers only, never personal data: they end up in logs and in answers to upstream
//! systems.

use crate::money::{Cents, Currency};
use crate::stream_id::StreamIdError;

/// Why a command was refused. Nothing is appended for any variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    // ---- validation: HTTP 422 ----
    /// Occurs when the body does not deserialise into the named command: an unknown `type`, an
    /// unknown or missing field, a wrong JSON type, money that is not a string decimal, an
    /// unknown enum value, a malformed date. The detail never quotes the offending value.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("command body is invalid: {detail}")]
    InvalidCommand { detail: String },
    /// Occurs when an id in the body breaks the id rule (1-128 of `[A-Za-z0-9._:-]`).
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} is not a valid id: {reason}")]
    InvalidId {
        field: &'static str,
        reason: StreamIdError,
    },
    /// Occurs when a required text (or a list such as `lines`) is empty or only whitespace.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must not be empty")]
    EmptyField { field: &'static str },
    /// Occurs when a text holds a control character (NUL, ESC, CR, LF, tab, DEL...): free
    /// texts travel into views, logs, HL7 ACKs and Odoo, where such bytes break lines, frames
    /// or terminals.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must not hold control characters")]
    ControlCharacter { field: &'static str },
    /// Occurs when a text is longer than its limit.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    /// Occurs when a quantity that counts things used, ordered or received is 0.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must be at least 1")]
    InvalidQuantity { field: &'static str },
    /// Occurs when a stock quantity would leave the representable range.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} is out of range")]
    QuantityOutOfRange { field: &'static str },
    /// Occurs when an amount that must be positive (a payment) is zero or negative.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must be greater than zero")]
    NonPositiveAmount { field: &'static str },
    /// Occurs when a price or cost is negative (corrections are adjustments, not negative
    /// prices).
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must not be negative")]
    NegativeAmount { field: &'static str },
    /// Occurs when an adjustment of zero is applied (it would change nothing).
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} must not be zero")]
    ZeroAmount { field: &'static str },
    /// Occurs when an amount or a line total is larger than the contract's bound
    /// ([`crate::Cents::MAX_AMOUNT`], 10000000.00 either sign), or a balance would leave the
    /// money range.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{field} is out of range (at most 10000000.00 either sign)")]
    AmountOutOfRange { field: &'static str },
    /// Occurs when one item appears on two lines of a requisition, receipt or bill.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("item {item_id} appears on more than one line")]
    DuplicateLine { item_id: String },
    /// Occurs when `UpdateDemographics` names no field.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("update names no field to change")]
    EmptyUpdate,
    /// Occurs when a birth date lies after the command's `now`.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("birth date is in the future")]
    BirthDateInFuture,

    // ---- business rules and lifecycle order: HTTP 409 ----
    /// Occurs when `RegisterPatient` reaches an account that is already registered.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("patient account is already registered")]
    AlreadyRegistered,
    /// Occurs when any other command reaches an account that was never registered.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("patient account is not registered")]
    NotRegistered,
    /// Occurs when a command reaches a closed account (closing is final).
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("patient account is closed")]
    AccountClosed,
    /// Occurs when a command reaches an account that was merged into another (`into`, the
    /// survivor's MRN, which the problem body names): send it to the survivor.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("patient account was merged into {into}")]
    AccountMerged { into: String },
    /// Occurs when `MergePatient.into` names the account it is sent to.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("an account cannot be merged into itself")]
    MergeIntoSelf,
    /// Occurs when `MergePatient.into` names an account that was never registered.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("merge target {into} is not registered")]
    MergeTargetNotRegistered { into: String },
    /// Occurs when `MergePatient.into` names an account that was itself merged (into
    /// `survivor`).
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("merge target {into} was itself merged into {survivor}")]
    MergeTargetMerged { into: String, survivor: String },
    /// Occurs when `MergePatient.into` names a closed account.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("merge target {into} is closed")]
    MergeTargetClosed { into: String },
    /// Occurs when a charge id was already posted to this account.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("charge {charge_id} is already posted")]
    DuplicateCharge { charge_id: String },
    /// Occurs when a payment id was already recorded on this account.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("payment {payment_id} is already recorded")]
    DuplicatePayment { payment_id: String },
    /// Occurs when an adjustment id was already applied to this account.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("adjustment {adjustment_id} is already applied")]
    DuplicateAdjustment { adjustment_id: String },
    /// Occurs when a payment is larger than the outstanding balance.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("payment exceeds the outstanding balance of {balance}")]
    Overpayment { balance: Cents },
    /// Occurs when `CloseAccount` finds a balance other than zero.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("account balance is {balance}, not zero")]
    BalanceNotZero { balance: Cents },
    /// Occurs when an amount's currency differs from the one the aggregate already keeps.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("amount is in {found} but this record is kept in {expected}")]
    CurrencyMismatch { expected: Currency, found: Currency },
    /// Occurs when personal fields are sent for a patient whose personal data was erased.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("personal data of this patient was erased")]
    PersonalDataErased,
    /// Occurs when `ScheduleEncounter` reaches an encounter that already exists.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("encounter is already scheduled")]
    AlreadyScheduled,
    /// Occurs when any other command reaches an encounter that was never scheduled.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("encounter is not scheduled")]
    NotScheduled,
    /// Occurs when `DefineItem` reaches an item that is already defined.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("inventory item is already defined")]
    AlreadyDefined,
    /// Occurs when a stock command reaches an item that was never defined.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("inventory item is not defined")]
    ItemNotDefined,
    /// Occurs when `CloseReplenishment` reaches an item with no open replenishment.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("no replenishment is open for this item")]
    NoOpenReplenishment,
    /// Occurs when `CloseReplenishment` names another requisition than the open one.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("open replenishment is {open}, not {requisition_id}")]
    ReplenishmentMismatch {
        open: String,
        requisition_id: String,
    },
    /// Occurs when `RequestPurchase` reaches a requisition that already exists.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("purchase is already requested")]
    AlreadyRequested,
    /// Occurs when any other command reaches a requisition that was never requested.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("purchase is not requested")]
    NotRequested,
    /// Occurs when a command comes out of lifecycle order: completing an encounter before
    /// check-in, anything after a cancellation, receiving goods before the order is placed.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("command {command} is not allowed while the {aggregate} is {status}")]
    InvalidTransition {
        aggregate: &'static str,
        status: &'static str,
        command: &'static str,
    },
    /// Occurs when the approver (or rejecter) of a purchase is its requester.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("approver must not be the requester")]
    SelfApproval,
    /// Occurs when a receipt names an item that is not on the purchase order.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("item {item_id} is not on the purchase order")]
    ItemNotOrdered { item_id: String },
    /// Occurs when receiving would bring an item's received quantity above the ordered one,
    /// counting every earlier receipt.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error(
        "receiving {receiving} of item {item_id} exceeds the {ordered} ordered ({already_received} already received)"
    )]
    OverReceipt {
        item_id: String,
        ordered: u32,
        already_received: u32,
        receiving: u32,
    },
    /// Occurs when a receipt id was already recorded on this purchase.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("receipt {receipt_id} is already recorded")]
    DuplicateReceipt { receipt_id: String },

    // ---- claims ----
    /// Occurs when a payer's answer contradicts itself: a denial that pays, a payment of
    /// nothing.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("claim response is inconsistent: {detail}")]
    InconsistentResponse { detail: &'static str },
    /// Occurs when `CreateClaim` is sent to a claim that exists.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("claim already exists")]
    ClaimAlreadyCreated,
    /// Occurs when any other command is sent to a claim that was never created (a
    /// ClaimResponse for an unknown claim among them).
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("claim does not exist")]
    ClaimNotCreated,
    /// Occurs when a remittance pays and adjusts more than the claim asks for.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("paid and adjusted amounts exceed the claimed {claimed}")]
    RemittanceExceedsClaim { claimed: Cents },

    // ---- rosters ----
    /// Occurs when a shift's `end` is not after its `start`.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("shift ends before it starts")]
    ShiftEndsBeforeStart,
    /// Occurs when a shift is longer than [`crate::roster::MAX_SHIFT_HOURS`].
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("shift is longer than {max_hours} hours")]
    ShiftTooLong { max_hours: i64 },
    /// Occurs when a shift id is assigned twice on one roster.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("shift {shift_id} is already assigned")]
    DuplicateShift { shift_id: String },
    /// Occurs when a shift to cancel is not on the roster (or already cancelled).
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("shift {shift_id} is not on the roster")]
    UnknownShift { shift_id: String },
    /// Occurs when a staff member would work two overlapping shifts on one roster.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended.
    #[error("staff {staff_id} already works shift {shift_id} at that time")]
    StaffDoubleBooked { staff_id: String, shift_id: String },

    // ---- staffing ----
    /// Occurs when a staffing command names an hour that does not start on the hour
    /// (`08:30`): shortfalls are per clock hour.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("hour does not start on the hour")]
    NotOnTheHour,
    /// Occurs when `RecordShortfall` names figures with no shortfall (`required <= rostered`).
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{rostered} rostered cover the {required} required: no shortfall")]
    NoShortfall { required: u32, rostered: u32 },
    /// Occurs when `ResolveShortfall` names figures that still fall short
    /// (`required > rostered`).
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("{rostered} rostered still fall short of the {required} required")]
    ShortfallPersists { required: u32, rostered: u32 },
    /// Occurs when `ResolveShortfall` names an hour and role with no open shortfall: nothing is
    /// resolved that was not detected.
    ///
    /// ### Handling
    /// HTTP 409; nothing appended (the staffing process manager records the refusal and does
    /// not retry).
    #[error("no open {role} shortfall at {hour}")]
    ShortfallNotOpen { hour: String, role: String },
}

impl Rejection {
    /// The HTTP status: 422 for validation failures, 409 for business rules and lifecycle order.
    pub fn status(&self) -> u16 {
        if self.is_validation() { 422 } else { 409 }
    }

    /// Whether the body itself is at fault (422), whatever the state.
    pub fn is_validation(&self) -> bool {
        match self {
            Rejection::InvalidCommand { .. }
            | Rejection::InvalidId { .. }
            | Rejection::EmptyField { .. }
            | Rejection::ControlCharacter { .. }
            | Rejection::TooLong { .. }
            | Rejection::InvalidQuantity { .. }
            | Rejection::QuantityOutOfRange { .. }
            | Rejection::NonPositiveAmount { .. }
            | Rejection::NegativeAmount { .. }
            | Rejection::ZeroAmount { .. }
            | Rejection::AmountOutOfRange { .. }
            | Rejection::DuplicateLine { .. }
            | Rejection::EmptyUpdate
            | Rejection::BirthDateInFuture
            | Rejection::MergeIntoSelf
            | Rejection::InconsistentResponse { .. }
            | Rejection::ShiftEndsBeforeStart
            | Rejection::ShiftTooLong { .. }
            | Rejection::NotOnTheHour
            | Rejection::NoShortfall { .. }
            | Rejection::ShortfallPersists { .. } => true,
            Rejection::AlreadyRegistered
            | Rejection::NotRegistered
            | Rejection::AccountClosed
            | Rejection::AccountMerged { .. }
            | Rejection::MergeTargetNotRegistered { .. }
            | Rejection::MergeTargetMerged { .. }
            | Rejection::MergeTargetClosed { .. }
            | Rejection::DuplicateCharge { .. }
            | Rejection::DuplicatePayment { .. }
            | Rejection::DuplicateAdjustment { .. }
            | Rejection::Overpayment { .. }
            | Rejection::BalanceNotZero { .. }
            | Rejection::CurrencyMismatch { .. }
            | Rejection::PersonalDataErased
            | Rejection::AlreadyScheduled
            | Rejection::NotScheduled
            | Rejection::AlreadyDefined
            | Rejection::ItemNotDefined
            | Rejection::NoOpenReplenishment
            | Rejection::ReplenishmentMismatch { .. }
            | Rejection::AlreadyRequested
            | Rejection::NotRequested
            | Rejection::InvalidTransition { .. }
            | Rejection::SelfApproval
            | Rejection::ItemNotOrdered { .. }
            | Rejection::OverReceipt { .. }
            | Rejection::DuplicateReceipt { .. }
            | Rejection::ClaimAlreadyCreated
            | Rejection::ClaimNotCreated
            | Rejection::RemittanceExceedsClaim { .. }
            | Rejection::DuplicateShift { .. }
            | Rejection::UnknownShift { .. }
            | Rejection::StaffDoubleBooked { .. }
            | Rejection::ShortfallNotOpen { .. } => false,
        }
    }

    /// A stable snake_case code for problem+json `type`/`code` and for metric labels (a bounded
    /// set, unlike the message).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidCommand { .. } => "invalid_command",
            Rejection::InvalidId { .. } => "invalid_id",
            Rejection::EmptyField { .. } => "empty_field",
            Rejection::ControlCharacter { .. } => "control_character",
            Rejection::TooLong { .. } => "too_long",
            Rejection::InvalidQuantity { .. } => "invalid_quantity",
            Rejection::QuantityOutOfRange { .. } => "quantity_out_of_range",
            Rejection::NonPositiveAmount { .. } => "non_positive_amount",
            Rejection::NegativeAmount { .. } => "negative_amount",
            Rejection::ZeroAmount { .. } => "zero_amount",
            Rejection::AmountOutOfRange { .. } => "amount_out_of_range",
            Rejection::DuplicateLine { .. } => "duplicate_line",
            Rejection::EmptyUpdate => "empty_update",
            Rejection::BirthDateInFuture => "birth_date_in_future",
            Rejection::AlreadyRegistered => "already_registered",
            Rejection::NotRegistered => "not_registered",
            Rejection::AccountClosed => "account_closed",
            Rejection::AccountMerged { .. } => "account_merged",
            Rejection::MergeIntoSelf => "merge_into_self",
            Rejection::MergeTargetNotRegistered { .. } => "merge_target_not_registered",
            Rejection::MergeTargetMerged { .. } => "merge_target_merged",
            Rejection::MergeTargetClosed { .. } => "merge_target_closed",
            Rejection::DuplicateCharge { .. } => "duplicate_charge",
            Rejection::DuplicatePayment { .. } => "duplicate_payment",
            Rejection::DuplicateAdjustment { .. } => "duplicate_adjustment",
            Rejection::Overpayment { .. } => "overpayment",
            Rejection::BalanceNotZero { .. } => "balance_not_zero",
            Rejection::CurrencyMismatch { .. } => "currency_mismatch",
            Rejection::PersonalDataErased => "personal_data_erased",
            Rejection::AlreadyScheduled => "already_scheduled",
            Rejection::NotScheduled => "not_scheduled",
            Rejection::AlreadyDefined => "already_defined",
            Rejection::ItemNotDefined => "item_not_defined",
            Rejection::NoOpenReplenishment => "no_open_replenishment",
            Rejection::ReplenishmentMismatch { .. } => "replenishment_mismatch",
            Rejection::AlreadyRequested => "already_requested",
            Rejection::NotRequested => "not_requested",
            Rejection::InvalidTransition { .. } => "invalid_transition",
            Rejection::SelfApproval => "self_approval",
            Rejection::ItemNotOrdered { .. } => "item_not_ordered",
            Rejection::OverReceipt { .. } => "over_receipt",
            Rejection::DuplicateReceipt { .. } => "duplicate_receipt",
            Rejection::InconsistentResponse { .. } => "inconsistent_response",
            Rejection::ClaimAlreadyCreated => "claim_exists",
            Rejection::ClaimNotCreated => "claim_not_created",
            Rejection::RemittanceExceedsClaim { .. } => "remittance_exceeds_claim",
            Rejection::ShiftEndsBeforeStart => "shift_ends_before_start",
            Rejection::ShiftTooLong { .. } => "shift_too_long",
            Rejection::DuplicateShift { .. } => "duplicate_shift",
            Rejection::UnknownShift { .. } => "unknown_shift",
            Rejection::StaffDoubleBooked { .. } => "staff_double_booked",
            Rejection::NotOnTheHour => "not_on_the_hour",
            Rejection::NoShortfall { .. } => "no_shortfall",
            Rejection::ShortfallPersists { .. } => "shortfall_persists",
            Rejection::ShortfallNotOpen { .. } => "shortfall_not_open",
        }
    }

    /// How to fix it, where there is something useful to say (problem+json `hint`).
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Rejection::InvalidCommand { .. } => {
                "check the body against the command contract; money is a string such as \"125.50\""
            }
            Rejection::InvalidId { .. } => "ids are 1-128 characters of A-Z, a-z, 0-9 and . _ : -",
            Rejection::NotRegistered => "send RegisterPatient first",
            Rejection::NotScheduled => "send ScheduleEncounter first",
            Rejection::ItemNotDefined => "send DefineItem first",
            Rejection::NotRequested => "send RequestPurchase first",
            Rejection::ClaimNotCreated => "send CreateClaim first",
            Rejection::RemittanceExceedsClaim { .. } => {
                "paid_amount plus the adjustments may be at most the claim's total"
            }
            Rejection::StaffDoubleBooked { .. } => "cancel the other shift first",
            Rejection::Overpayment { .. } => "record at most the outstanding balance",
            Rejection::BalanceNotZero { .. } => {
                "settle the balance with payments or adjustments before closing"
            }
            Rejection::DuplicateCharge { .. }
            | Rejection::DuplicatePayment { .. }
            | Rejection::DuplicateAdjustment { .. }
            | Rejection::DuplicateReceipt { .. }
            | Rejection::DuplicateShift { .. } => {
                "use a new id; to retry the same request, resend it with its Idempotency-Key"
            }
            Rejection::SelfApproval => "ask another approver",
            Rejection::AccountMerged { .. } => "send the command to the surviving account",
            Rejection::MergeIntoSelf => "name the surviving account in into",
            Rejection::MergeTargetNotRegistered { .. } => {
                "register the surviving account first, or name another one"
            }
            Rejection::MergeTargetMerged { .. } => "merge into the account it was merged into",
            Rejection::OverReceipt { .. } => "receive at most the quantity still outstanding",
            _ => return None,
        })
    }

    /// Turns a serde error from parsing a command body into [`Rejection::InvalidCommand`],
    /// dropping any quoted input value: serde's "invalid type: string \"Jane\"" would otherwise
    /// carry a patient's name into logs and answers.
    pub fn from_serde(error: &serde_json::Error) -> Rejection {
        Rejection::InvalidCommand {
            detail: describe_serde_error(error),
        }
    }
}

/// serde's message without the offending value and without the line/column suffix.
pub(crate) fn describe_serde_error(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let message = match full.rfind(" at line ") {
        Some(at) if error.line() != 0 => &full[..at],
        _ => full.as_str(),
    };
    for prefix in ["invalid type", "invalid value"] {
        if message.starts_with(prefix) {
            return match message.rfind(", expected ") {
                Some(at) => format!("{prefix}{}", &message[at..]),
                None => prefix.to_owned(),
            };
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_rules_are_409_and_validation_is_422() {
        assert_eq!(Rejection::AlreadyRegistered.status(), 409);
        assert_eq!(Rejection::SelfApproval.status(), 409);
        assert_eq!(
            Rejection::InvalidQuantity { field: "quantity" }.status(),
            422
        );
        assert_eq!(
            Rejection::InvalidCommand { detail: "x".into() }.status(),
            422
        );
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let samples = [
            Rejection::Overpayment {
                balance: Cents(12_500),
            },
            Rejection::InvalidTransition {
                aggregate: "encounter",
                status: "cancelled",
                command: "CheckIn",
            },
            Rejection::OverReceipt {
                item_id: "GAUZE".into(),
                ordered: 10,
                already_received: 8,
                receiving: 3,
            },
            Rejection::EmptyUpdate,
        ];
        for rejection in samples {
            let text = rejection.to_string();
            let first = text.chars().next().unwrap_or('x');
            assert!(!first.is_uppercase(), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
        assert_eq!(
            Rejection::Overpayment {
                balance: Cents(12_500)
            }
            .to_string(),
            "payment exceeds the outstanding balance of 125.00"
        );
    }

    #[test]
    fn serde_details_never_quote_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            given: Vec<String>,
        }
        let err = serde_json::from_str::<Body>(r#"{"given": "Jane"}"#).unwrap_err();
        let rejection = Rejection::from_serde(&err);
        let text = rejection.to_string();
        assert!(!text.contains("Jane"), "{text}");
        assert_eq!(
            text,
            "command body is invalid: invalid type, expected a sequence"
        );
    }
}
