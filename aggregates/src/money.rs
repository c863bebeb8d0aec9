//! Exact money: [`Cents`] (integer minor units) and [`Currency`] (an ISO 4217 code).
//!
//! On the wire money is a JSON *string* decimal with at most two fraction digits (`"125.50"`),
//! never a JSON number: a float cannot hold 0.10 exactly, and a number invites clients to send
//! one. Inside careflow it is an `i64` count of cents, so sums are exact and every operation that
//! could overflow is checked. This module owns the parsing and printing rule and nothing else;
//! which amounts are allowed where (positive payments, non-negative prices) is decided by the
//! aggregates.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount in minor units (cents). Serialised as a string with exactly two fraction digits.
///
/// Every amount a command carries (a price, a line total, a payment, an adjustment either way)
/// lies within [`Cents::MAX_AMOUNT`]; [`Total`] is what the views add them up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

/// Why a money or currency text was refused. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Occurs when the text is empty.
    #[error("amount must not be empty")]
    Empty,
    /// Occurs when the text is not an optional `-`, digits, and optionally `.` and digits.
    #[error("amount must be a decimal string such as \"125.50\"")]
    Malformed,
    /// Occurs when there are more than two digits after the point (`"1.005"`).
    #[error("amount may have at most 2 fraction digits")]
    TooManyFractionDigits,
    /// Occurs when the amount does not fit in an `i64` of cents.
    #[error("amount is out of range")]
    OutOfRange,
    /// Occurs when a currency is not three upper-case ASCII letters.
    #[error("currency must be 3 upper-case letters (ISO 4217)")]
    Currency,
}

impl Cents {
    pub const ZERO: Cents = Cents(0);

    /// The largest amount one command may carry, either sign: 10^9 minor units
    /// (`"10000000.00"`), far above any single hospital charge or payment.
    ///
    /// Why this bound: a view adds amounts of many events into one sum (a facility's day, a
    /// visit's invoice, A/R totals), in a [`Total`] (`i128`). A log holds fewer than 2^64
    /// events (positions are `u64`) and each event adds at most one amount of at most
    /// 10^9 < 2^30 to a given sum, so no sum exceeds 2^94, far inside `i128` (2^127): no
    /// accepted history can make a view stop on overflow. Inside one aggregate the `i64`
    /// balance still moves by at most 10^9 per event, and a step past `i64` is refused
    /// (`AmountOutOfRange`) rather than stored. docs/domain.md, "Money".
    pub const MAX_AMOUNT: Cents = Cents(1_000_000_000);

    /// Parses `"125.50"`, `"3"`, `"-4.1"`: an optional minus, at least one integer digit, and
    /// optionally a point followed by one or two digits. No `+`, no exponent, no whitespace, no
    /// thousands separators: the contract is narrow so two systems never disagree on a value.
    ///
    /// # Errors
    /// A [`MoneyError`] naming the first rule broken.
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let cents = parse_minor_units(text)?;
        i64::try_from(cents)
            .map(Cents)
            .map_err(|_| MoneyError::OutOfRange)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Cents) -> Option<Cents> {
        self.0.checked_sub(other.0).map(Cents)
    }

    /// A unit price times a quantity (a line total), or `None` on overflow.
    pub fn checked_mul(self, quantity: u32) -> Option<Cents> {
        self.0.checked_mul(i64::from(quantity)).map(Cents)
    }

    /// Used only where a decision has already proven the sum fits (see each `evolve`): replaying
    /// history must be total, so it saturates rather than fails.
    pub fn saturating_add(self, other: Cents) -> Cents {
        Cents(self.0.saturating_add(other.0))
    }

    /// See [`Cents::saturating_add`].
    pub fn saturating_sub(self, other: Cents) -> Cents {
        Cents(self.0.saturating_sub(other.0))
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// The money text rule, once for [`Cents`] and [`Total`] (and every adapter: HTTP, FHIR and
/// HL7 all read amounts through `Cents::parse`): an optional minus, at least one integer
/// digit, and optionally a point followed by one or two digits, in minor units.
fn parse_minor_units(text: &str) -> Result<i128, MoneyError> {
    if text.is_empty() {
        return Err(MoneyError::Empty);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::Malformed);
    }
    let fraction_cents = match fraction {
        None => 0,
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(MoneyError::Malformed);
        }
        Some(f) if f.len() > 2 => return Err(MoneyError::TooManyFractionDigits),
        Some(f) => {
            let value = digits_value(f)?;
            if f.len() == 1 { value * 10 } else { value }
        }
    };
    let cents = digits_value(whole)?
        .checked_mul(100)
        .and_then(|c| c.checked_add(fraction_cents))
        .ok_or(MoneyError::OutOfRange)?;
    Ok(if negative { -cents } else { cents })
}

/// Minor units as the wire writes them: always two fraction digits (`125.50`, `-0.05`).
fn write_minor_units(f: &mut fmt::Formatter<'_>, minor_units: i128) -> fmt::Result {
    let sign = if minor_units < 0 { "-" } else { "" };
    let abs = minor_units.unsigned_abs();
    write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The value of a run of ASCII digits (already checked), refusing overflow.
fn digits_value(digits: &str) -> Result<i128, MoneyError> {
    digits.bytes().try_fold(0i128, |acc, b| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(b - b'0')))
            .ok_or(MoneyError::OutOfRange)
    })
}

impl fmt::Display for Cents {
    /// Always two fraction digits: `125.50`, `-0.05`, `0.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_minor_units(f, i128::from(self.0))
    }
}

impl FromStr for Cents {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cents::parse(s)
    }
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CentsVisitor;
        impl Visitor<'_> for CentsVisitor {
            type Value = Cents;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string with at most 2 fraction digits, such as \"125.50\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cents, E> {
                Cents::parse(v).map_err(E::custom)
            }
        }
        // deserialize_str, not deserialize_any: a JSON number is refused with "invalid type".
        d.deserialize_str(CentsVisitor)
    }
}

/// A sum of many amounts, in minor units, as the views keep running totals (balances, a day's
/// charges, an invoice, A/R buckets). Same wire form as [`Cents`] (`"125.50"`), so a view row
/// written with `Cents` sums reads back unchanged.
///
/// `i128` rather than `i64`: see [`Cents::MAX_AMOUNT`] for why no accepted history can make it
/// overflow, while an `i64` sum over a facility's day can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Total(pub i128);

impl Total {
    pub const ZERO: Total = Total(0);

    /// `self + amount`, or `None` past `i128` (which the contract's bound rules out).
    pub fn checked_add(self, amount: impl Into<Total>) -> Option<Total> {
        self.0.checked_add(amount.into().0).map(Total)
    }

    /// `self - amount`, or `None` past `i128` (which the contract's bound rules out).
    pub fn checked_sub(self, amount: impl Into<Total>) -> Option<Total> {
        self.0.checked_sub(amount.into().0).map(Total)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl From<Cents> for Total {
    fn from(amount: Cents) -> Self {
        Total(i128::from(amount.0))
    }
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_minor_units(f, self.0)
    }
}

impl Serialize for Total {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Total {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TotalVisitor;
        impl Visitor<'_> for TotalVisitor {
            type Value = Total;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string with at most 2 fraction digits, such as \"125.50\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Total, E> {
                parse_minor_units(v).map(Total).map_err(E::custom)
            }
        }
        d.deserialize_str(TotalVisitor)
    }
}

/// An ISO 4217 currency code such as `USD`.
///
/// Only the shape (three upper-case letters) is checked: the ISO list changes, and a site that
/// bills in a currency careflow has never heard of should not need a release. Amounts in
/// different currencies are never added; each aggregate keeps one currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The contract's default when a body names no currency.
    pub const USD: Currency = Currency(*b"USD");

    /// # Errors
    /// [`MoneyError::Currency`] unless the text is three upper-case ASCII letters.
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        match <[u8; 3]>::try_from(text.as_bytes()) {
            Ok(code) if code.iter().all(u8::is_ascii_uppercase) => Ok(Currency(code)),
            _ => Err(MoneyError::Currency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters ever get in (see `parse`), so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::USD
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CurrencyVisitor;
        impl Visitor<'_> for CurrencyVisitor {
            type Value = Currency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 4217 currency code such as \"USD\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Currency, E> {
                Currency::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(CurrencyVisitor)
    }
}

#[cfg(test)]
mod tests;
