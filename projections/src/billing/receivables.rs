//! Accounts receivable: each account's open items, settled first-in first-out, and the aging
//! report built from them.
//!
//! An open item is a debit not yet paid: a charge, or a positive adjustment. Payments and
//! negative adjustments (write-offs) settle the oldest open items first, oldest meaning the
//! earliest business time (`occurred_at`), then the lowest log position. Settlement happens
//! when the credit is applied, in log order: a credit is never moved onto a debit that arrives
//! later, except for an unapplied credit (the balance below zero), which waits for, and
//! settles, the next debits. So at every position `sum(open) - unapplied_credit = balance`.

use std::collections::BTreeMap;

use careflow_aggregates::{Cents, Currency, RecordedEvent, Total};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::RECEIVABLES;
use crate::error::ProjectionError;
use crate::store::{ViewStore, load_prefix, save_owned, take};

/// One account's open items (oldest first) and its unapplied credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receivables {
    pub account_id: String,
    pub currency: Option<Currency>,
    /// Fully settled items are removed.
    pub items: Vec<OpenItem>,
    /// Credit not yet matched to a debit (the balance is below zero by this much).
    pub unapplied_credit: Cents,
}

/// A debit with an amount still open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenItem {
    /// `charge` or `adjustment`.
    pub source: String,
    /// The charge or adjustment id.
    pub id: String,
    /// Business time of the debit; its age is counted from this date.
    pub occurred_at: DateTime<Utc>,
    pub position: u64,
    pub amount: Cents,
    /// What is still unpaid, `0 < open <= amount`.
    pub open: Cents,
}

impl OpenItem {
    pub(super) fn new(
        source: &str,
        id: &str,
        occurred_at: DateTime<Utc>,
        position: u64,
        amount: Cents,
    ) -> Self {
        Self {
            source: source.to_owned(),
            id: id.to_owned(),
            occurred_at,
            position,
            amount,
            open: amount,
        }
    }
}

/// Taken, not copied: both callers save it back.
fn load_account(
    store: &mut dyn ViewStore,
    mrn: &str,
    currency: Currency,
) -> Result<Receivables, ProjectionError> {
    Ok(
        take::<Receivables>(store, RECEIVABLES, mrn)?.unwrap_or_else(|| Receivables {
            account_id: mrn.to_owned(),
            currency: Some(currency),
            items: Vec::new(),
            unapplied_credit: Cents::ZERO,
        }),
    )
}

/// Adds a debit, settling it first from any unapplied credit.
pub(super) fn debit(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    mrn: &str,
    mut item: OpenItem,
    currency: Currency,
) -> Result<(), ProjectionError> {
    let mut account = load_account(store, mrn, currency)?;
    account.currency = Some(currency);
    let settled = item.open.min(account.unapplied_credit).max(Cents::ZERO);
    item.open = item.open.checked_sub(settled).ok_or(overflow(event))?;
    account.unapplied_credit = account
        .unapplied_credit
        .checked_sub(settled)
        .ok_or(overflow(event))?;
    if item.open.is_positive() {
        let at = account.items.partition_point(|other| {
            (other.occurred_at, other.position) <= (item.occurred_at, item.position)
        });
        account.items.insert(at, item);
    }
    save_owned(store, RECEIVABLES, mrn, account)
}

/// Settles `amount` against the oldest open items; what is left becomes unapplied credit.
pub(super) fn credit(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    mrn: &str,
    amount: Cents,
    currency: Currency,
) -> Result<(), ProjectionError> {
    let mut account = load_account(store, mrn, currency)?;
    account.currency = Some(currency);
    let mut left = amount;
    for item in &mut account.items {
        if !left.is_positive() {
            break;
        }
        let settled = item.open.min(left);
        item.open = item.open.checked_sub(settled).ok_or(overflow(event))?;
        left = left.checked_sub(settled).ok_or(overflow(event))?;
    }
    account.items.retain(|item| item.open.is_positive());
    account.unapplied_credit = account
        .unapplied_credit
        .checked_add(left)
        .ok_or(overflow(event))?;
    save_owned(store, RECEIVABLES, mrn, account)
}

/// The survivor of a merge takes over `from`'s open items (kept in age order) and its
/// unapplied credit, which then settles the oldest of all open items, as a payment would.
pub(super) fn take_over(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    from: &str,
    into: &str,
) -> Result<(), ProjectionError> {
    let Some(merged) = take::<Receivables>(store, RECEIVABLES, from)? else {
        return Ok(());
    };
    // `take` hands the row over without removing it: the merged account owes nothing now.
    store.delete(RECEIVABLES, from)?;
    let Some(currency) = merged.currency else {
        return Ok(());
    };
    let mut account = load_account(store, into, currency)?;
    account.currency = account.currency.or(Some(currency));
    for item in merged.items {
        let at = account.items.partition_point(|other| {
            (other.occurred_at, other.position) <= (item.occurred_at, item.position)
        });
        account.items.insert(at, item);
    }
    let credit = account
        .unapplied_credit
        .checked_add(merged.unapplied_credit)
        .ok_or(overflow(event))?;
    account.unapplied_credit = Cents::ZERO;
    save_owned(store, RECEIVABLES, into, account)?;
    if credit.is_positive() {
        self::credit(store, event, into, credit, currency)?;
    }
    Ok(())
}

fn overflow(event: &RecordedEvent) -> ProjectionError {
    ProjectionError::Overflow {
        table: RECEIVABLES,
        position: event.position,
    }
}

/// Open amounts by age: 0–30, 31–60, 61–90, 91–120 and more than 120 days. [`Total`]s, as
/// the report adds every account's items together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgingBuckets {
    pub days_0_30: Total,
    pub days_31_60: Total,
    pub days_61_90: Total,
    pub days_91_120: Total,
    pub days_over_120: Total,
    pub total: Total,
}

impl AgingBuckets {
    /// Adds `amount` to the bucket of an item `days` old (negative ages, items dated after the
    /// report date, count as current: 0–30).
    pub(crate) fn add(&mut self, days: i64, amount: Cents) -> Option<()> {
        let bucket = match days {
            ..=30 => &mut self.days_0_30,
            31..=60 => &mut self.days_31_60,
            61..=90 => &mut self.days_61_90,
            91..=120 => &mut self.days_91_120,
            121.. => &mut self.days_over_120,
        };
        *bucket = bucket.checked_add(amount)?;
        self.total = self.total.checked_add(amount)?;
        Some(())
    }

    pub(crate) fn merge(&mut self, other: &AgingBuckets) -> Option<()> {
        self.days_0_30 = self.days_0_30.checked_add(other.days_0_30)?;
        self.days_31_60 = self.days_31_60.checked_add(other.days_31_60)?;
        self.days_61_90 = self.days_61_90.checked_add(other.days_61_90)?;
        self.days_91_120 = self.days_91_120.checked_add(other.days_91_120)?;
        self.days_over_120 = self.days_over_120.checked_add(other.days_over_120)?;
        self.total = self.total.checked_add(other.total)?;
        Some(())
    }
}

/// One account's line of the aging report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAging {
    pub account_id: String,
    pub currency: Option<Currency>,
    pub buckets: AgingBuckets,
    pub unapplied_credit: Cents,
}

/// The A/R aging report as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgingReport {
    pub as_of: NaiveDate,
    /// Accounts with an open item or an unapplied credit, by MRN.
    pub accounts: Vec<AccountAging>,
    /// Per currency: amounts in different currencies are never added.
    pub totals: BTreeMap<Currency, AgingBuckets>,
}

/// Ages every open item of the current view as of `as_of` (the caller's date; this crate has
/// no clock). An item's age is `as_of - occurred_at` in whole UTC days.
///
/// The view holds today's open items, so an `as_of` in the past ages today's items as they
/// would have been aged then; it is not the report as it stood then (that needs a replay to a
/// position).
///
/// # Errors
/// [`ProjectionError::Row`] on a malformed row, [`ProjectionError::Overflow`] if a total leaves
/// `i128` (which the contract's amount bound rules out), or the store's errors.
pub fn aging(store: &dyn ViewStore, as_of: NaiveDate) -> Result<AgingReport, ProjectionError> {
    let overflow = || ProjectionError::Overflow {
        table: RECEIVABLES,
        position: 0,
    };
    let mut report = AgingReport {
        as_of,
        accounts: Vec::new(),
        totals: BTreeMap::new(),
    };
    for (_, account) in load_prefix::<Receivables>(store, RECEIVABLES, "")? {
        if account.items.is_empty() && account.unapplied_credit.is_zero() {
            continue;
        }
        let mut buckets = AgingBuckets::default();
        for item in &account.items {
            let days = (as_of - item.occurred_at.date_naive()).num_days();
            buckets.add(days, item.open).ok_or_else(overflow)?;
        }
        if let Some(currency) = account.currency {
            report
                .totals
                .entry(currency)
                .or_default()
                .merge(&buckets)
                .ok_or_else(overflow)?;
        }
        report.accounts.push(AccountAging {
            account_id: account.account_id,
            currency: account.currency,
            buckets,
            unapplied_credit: account.unapplied_credit,
        });
    }
    Ok(report)
}
