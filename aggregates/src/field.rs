//! Field rules shared by every aggregate: ids, free texts, quantities and amounts.
//!
//! Each rule lives in one function returning the [`Rejection`] (HTTP 422) that names the field,
//! so the four deciders check bodies the same way. The id rule itself is
//! [`crate::stream_id::validate_id`]; this module only attaches the field name.

use crate::money::Cents;
use crate::rejection::Rejection;
use crate::stream_id::validate_id;

/// Limit for names, codes, references and similar short texts.
pub const SHORT_TEXT: usize = 256;
/// Limit for reasons, descriptions and dispositions.
pub const LONG_TEXT: usize = 2_000;

/// The id rule (1-128 of `[A-Za-z0-9._:-]`) for an id carried in a body.
///
/// # Errors
/// [`Rejection::InvalidId`].
pub fn id(field: &'static str, value: &str) -> Result<(), Rejection> {
    validate_id(value).map_err(|reason| Rejection::InvalidId { field, reason })
}

/// A required text: not blank, at most `max` characters, no control characters.
///
/// # Errors
/// [`Rejection::EmptyField`], [`Rejection::TooLong`] or [`Rejection::ControlCharacter`].
pub fn text(field: &'static str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::EmptyField { field });
    }
    if value.chars().count() > max {
        return Err(Rejection::TooLong { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::ControlCharacter { field });
    }
    Ok(())
}

/// An optional text: when present, as [`text`].
///
/// # Errors
/// As [`text`].
pub fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<(), Rejection> {
    match value {
        Some(value) => text(field, value, max),
        None => Ok(()),
    }
}

/// A count of things used, ordered or received: at least 1.
///
/// # Errors
/// [`Rejection::InvalidQuantity`].
pub fn quantity(field: &'static str, value: u32) -> Result<(), Rejection> {
    if value == 0 {
        return Err(Rejection::InvalidQuantity { field });
    }
    Ok(())
}

/// Any amount a command carries, either sign: at most [`Cents::MAX_AMOUNT`] in size. The one
/// check behind the contract's bound, which is what keeps every view's sums in range (see
/// [`Cents::MAX_AMOUNT`] for the arithmetic).
///
/// # Errors
/// [`Rejection::AmountOutOfRange`].
pub fn amount(field: &'static str, amount: Cents) -> Result<Cents, Rejection> {
    if amount.0.unsigned_abs() > Cents::MAX_AMOUNT.0.unsigned_abs() {
        return Err(Rejection::AmountOutOfRange { field });
    }
    Ok(amount)
}

/// A price or cost: zero or more, within the contract's bound.
///
/// # Errors
/// [`Rejection::NegativeAmount`] or [`Rejection::AmountOutOfRange`].
pub fn non_negative(field: &'static str, value: Cents) -> Result<(), Rejection> {
    if value.is_negative() {
        return Err(Rejection::NegativeAmount { field });
    }
    amount(field, value).map(drop)
}

/// A unit price times a quantity: the line total is an amount too, so it is bounded like one.
///
/// # Errors
/// [`Rejection::AmountOutOfRange`].
pub fn line_total(
    field: &'static str,
    unit_price: Cents,
    quantity: u32,
) -> Result<Cents, Rejection> {
    let total = unit_price
        .checked_mul(quantity)
        .ok_or(Rejection::AmountOutOfRange { field })?;
    amount(field, total)
}

/// Refuses a list in which one item id appears twice (lines are matched per item).
///
/// # Errors
/// [`Rejection::DuplicateLine`] naming the first repeated item.
pub fn distinct_items<'a>(item_ids: impl IntoIterator<Item = &'a str>) -> Result<(), Rejection> {
    let mut seen = std::collections::BTreeSet::new();
    for item_id in item_ids {
        if !seen.insert(item_id) {
            return Err(Rejection::DuplicateLine {
                item_id: item_id.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_id::StreamIdError;

    #[test]
    fn ids_follow_the_stream_id_rule_and_name_the_field() {
        assert_eq!(id("charge_id", "CH-1:a.b_c"), Ok(()));
        assert_eq!(
            id("charge_id", "CH 1"),
            Err(Rejection::InvalidId {
                field: "charge_id",
                reason: StreamIdError::IdCharacter(' ')
            })
        );
        assert_eq!(
            id("charge_id", ""),
            Err(Rejection::InvalidId {
                field: "charge_id",
                reason: StreamIdError::IdLength(0)
            })
        );
    }

    /// Issue #15 part 5, defect 10: `.` and `..` were valid ids (a URL-normalising client
    /// cannot reach `/v1/patient-accounts/../commands`), and control characters (NUL, ESC,
    /// CR/LF) were stored as-is in free texts.
    #[test]
    fn dot_segment_ids_and_control_characters_are_refused() {
        for dots in [".", ".."] {
            assert_eq!(
                id("charge_id", dots),
                Err(Rejection::InvalidId {
                    field: "charge_id",
                    reason: StreamIdError::DotSegment
                })
            );
        }
        assert_eq!(id("charge_id", "..."), Ok(()));
        assert_eq!(id("charge_id", ".a"), Ok(()));
        for text_with in [
            "a\0b",
            "a\u{1b}[31m",
            "line\r\nbreak",
            "tab\there",
            "del\u{7f}",
        ] {
            assert_eq!(
                text("reason", text_with, 100),
                Err(Rejection::ControlCharacter { field: "reason" }),
                "{text_with:?}"
            );
        }
        assert_eq!(text("reason", "Zoë's reason – ok", 100), Ok(()));
    }

    #[test]
    fn texts_are_not_blank_and_bounded() {
        assert_eq!(text("reason", "ok", 2), Ok(()));
        assert_eq!(
            text("reason", "  ", 10),
            Err(Rejection::EmptyField { field: "reason" })
        );
        assert_eq!(
            text("reason", "abc", 2),
            Err(Rejection::TooLong {
                field: "reason",
                max: 2
            })
        );
        assert_eq!(optional_text("reason", None, 2), Ok(()));
    }

    #[test]
    fn quantities_amounts_and_lines() {
        assert_eq!(quantity("quantity", 1), Ok(()));
        assert_eq!(
            quantity("quantity", 0),
            Err(Rejection::InvalidQuantity { field: "quantity" })
        );
        assert_eq!(non_negative("unit_price", Cents(0)), Ok(()));
        assert_eq!(
            non_negative("unit_price", Cents(-1)),
            Err(Rejection::NegativeAmount {
                field: "unit_price"
            })
        );
        assert_eq!(line_total("unit_price", Cents(250), 4), Ok(Cents(1_000)));
        assert_eq!(
            line_total("unit_price", Cents(i64::MAX), 2),
            Err(Rejection::AmountOutOfRange {
                field: "unit_price"
            })
        );
        assert_eq!(
            non_negative("unit_price", Cents(Cents::MAX_AMOUNT.0 + 1)),
            Err(Rejection::AmountOutOfRange {
                field: "unit_price"
            })
        );
        assert_eq!(
            amount("amount", Cents(-Cents::MAX_AMOUNT.0)),
            Ok(Cents(-Cents::MAX_AMOUNT.0))
        );
        assert_eq!(distinct_items(["A", "B"]), Ok(()));
        assert_eq!(
            distinct_items(["A", "B", "A"]),
            Err(Rejection::DuplicateLine {
                item_id: "A".into()
            })
        );
    }
}
