//! The analytics view: daily counters per facility, for dashboards and finance.
//!
//! One row per (UTC day of the event's business time `occurred_at`, facility) counts
//! registrations, encounter status changes by class, charges and payments (count and exact
//! amount per currency), supplies consumed per item and purchase cycle times. An event that
//! names no facility takes the one its stream's earlier events established, kept in small
//! lookup tables of this view. The view holds counts, amounts and ids only: no personal data,
//! and no patient identifiers either (MRNs appear only as lookup keys).

use std::collections::BTreeMap;

use careflow_aggregates::encounter::{EncounterClass, Event as EncounterEvent};
use careflow_aggregates::inventory_item::Event as InventoryEvent;
use careflow_aggregates::patient_account::Event as AccountEvent;
use careflow_aggregates::purchase::Event as PurchaseEvent;
use careflow_aggregates::{Cents, Currency, RecordedEvent, Total};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;
use crate::projection::{Decoded, Projection, decode};
use crate::store::{ViewStore, load, save, save_owned, take};

/// Key: `{YYYY-MM-DD} {facility}` (the date is fixed-width, so any facility text is safe and
/// a date range is a key range). One [`DailyCounters`] row.
pub const DAILY: &str = "analytics_daily";
/// Key: the stream id. Lookup: a stream's facility (and an encounter's class).
pub const STREAMS: &str = "analytics_streams";
/// Key: the requisition id. Lookup: a purchase's milestones, for cycle times.
pub const PURCHASES: &str = "analytics_purchases";

/// The stages whose durations are measured, in workflow order.
pub const STAGES: [&str; 5] = [
    "requested_to_approved",
    "approved_to_ordered",
    "ordered_to_received",
    "received_to_closed",
    "requested_to_closed",
];

/// The analytics projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Analytics;

impl Projection for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[DAILY, STREAMS, PURCHASES]
    }

    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            Decoded::PatientAccount(e) => apply_account(store, event, &e),
            Decoded::Encounter(e) => apply_encounter(store, event, &e),
            Decoded::InventoryItem(e) => apply_inventory(store, event, &e),
            Decoded::Purchase(e) => apply_purchase(store, event, &e),
            // Process managers, timers and the access log are not operational activity.
            // Claims are finance's, in the claims view.
            // Rosters, demand and shortfalls are the workforce view's.
            Decoded::Claim(_) | Decoded::Roster(_) | Decoded::Staffing(_) | Decoded::Internal => {
                Ok(())
            }
        }
    }
}

/// One facility's day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyCounters {
    pub date: NaiveDate,
    pub facility: String,
    pub registrations: u64,
    /// Accounts merged into another that day (duplicate registrations resolved): the
    /// patients registered are `registrations − merges` over any span of days.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub merges: u64,
    /// Class (`inpatient | outpatient | emergency`) -> status entered that day
    /// (`scheduled | arrived | completed | discharged | cancelled`) -> count.
    pub encounters: BTreeMap<String, BTreeMap<String, u64>>,
    pub charges: MoneyCounter,
    pub payments: MoneyCounter,
    /// Item id -> units consumed (from the inventory's `StockConsumed`).
    pub supplies_consumed: BTreeMap<String, u64>,
    /// Stage (see [`STAGES`]) -> durations of the stages that ended that day.
    pub purchase_cycle_times: BTreeMap<String, CycleTimes>,
}

impl DailyCounters {
    fn new(date: NaiveDate, facility: &str) -> Self {
        Self {
            date,
            facility: facility.to_owned(),
            registrations: 0,
            merges: 0,
            encounters: BTreeMap::new(),
            charges: MoneyCounter::default(),
            payments: MoneyCounter::default(),
            supplies_consumed: BTreeMap::new(),
            purchase_cycle_times: BTreeMap::new(),
        }
    }
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// How many, and how much per currency (amounts in different currencies never add). A day's
/// sum over every account of a facility is a [`Total`]: an `i64` one overflowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyCounter {
    pub count: u64,
    pub amounts: BTreeMap<Currency, Total>,
}

/// Every duration of one stage on one day, in seconds and sorted, with its exact percentiles.
///
/// The raw durations are kept (rather than a sketch) because a facility has tens of purchases
/// a day, so the list is small and p50/p90 are exact and can be recomputed for any span of
/// days by merging lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleTimes {
    pub durations_seconds: Vec<i64>,
    pub p50_seconds: i64,
    pub p90_seconds: i64,
}

impl CycleTimes {
    fn add(&mut self, seconds: i64) {
        let at = self.durations_seconds.partition_point(|&d| d <= seconds);
        self.durations_seconds.insert(at, seconds);
        self.p50_seconds = percentile(&self.durations_seconds, 50).unwrap_or(0);
        self.p90_seconds = percentile(&self.durations_seconds, 90).unwrap_or(0);
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`% of the
/// values at or below it (rank `ceil(p * n / 100)`). Always one of the values; `None` when
/// there are none.
pub fn percentile(sorted: &[i64], p: u8) -> Option<i64> {
    let n = sorted.len();
    let rank = (usize::from(p.min(100)) * n).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// What the view remembers about a stream so later events can be attributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamContext {
    pub facility: String,
    /// Encounters only.
    pub encounter_class: Option<String>,
}

/// A purchase's milestones (business times) and quantities, for cycle times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseMilestones {
    pub facility: String,
    pub requested_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub ordered_at: Option<DateTime<Utc>>,
    /// When the last ordered unit arrived (the purchase became `received`).
    pub received_at: Option<DateTime<Utc>>,
    pub ordered: BTreeMap<String, u64>,
    pub received: BTreeMap<String, u64>,
}

fn class_name(class: EncounterClass) -> &'static str {
    match class {
        EncounterClass::Inpatient => "inpatient",
        EncounterClass::Outpatient => "outpatient",
        EncounterClass::Emergency => "emergency",
    }
}

/// Reads, changes and writes the day row of `facility` on the event's business date.
fn update_day(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    facility: &str,
    change: impl FnOnce(&mut DailyCounters) -> Option<()>,
) -> Result<(), ProjectionError> {
    let date = event.metadata.occurred_at.date_naive();
    let key = format!("{} {facility}", date.format("%Y-%m-%d"));
    // Taken, not copied: saved below (an error abandons the whole batch).
    let mut day = take::<DailyCounters>(store, DAILY, &key)?
        .unwrap_or_else(|| DailyCounters::new(date, facility));
    change(&mut day).ok_or(ProjectionError::Overflow {
        table: DAILY,
        position: event.position,
    })?;
    save_owned(store, DAILY, &key, day)
}

fn context(store: &dyn ViewStore, event: &RecordedEvent) -> Result<StreamContext, ProjectionError> {
    load::<StreamContext>(store, STREAMS, event.stream_id.as_str())?.ok_or_else(|| {
        ProjectionError::MissingContext {
            stream_id: event.stream_id.to_string(),
            position: event.position,
            what: "facility",
        }
    })
}

fn remember(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    facility: &str,
    encounter_class: Option<&str>,
) -> Result<(), ProjectionError> {
    let row = StreamContext {
        facility: facility.to_owned(),
        encounter_class: encounter_class.map(str::to_owned),
    };
    save_owned(store, STREAMS, event.stream_id.as_str(), row)
}

fn count_money(counter: &mut MoneyCounter, currency: Currency, amount: Cents) -> Option<()> {
    counter.count = counter.count.checked_add(1)?;
    let sum = counter.amounts.entry(currency).or_insert(Total::ZERO);
    *sum = sum.checked_add(amount)?;
    Some(())
}

fn apply_account(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    account_event: &AccountEvent,
) -> Result<(), ProjectionError> {
    match account_event {
        AccountEvent::PatientRegistered(registered) => {
            remember(store, event, &registered.facility, None)?;
            update_day(store, event, &registered.facility, |day| {
                day.registrations = day.registrations.checked_add(1)?;
                Some(())
            })
        }
        AccountEvent::DemographicsUpdated(update) => match &update.facility {
            // Later money counts at the new facility; earlier days are not rewritten.
            Some(facility) => remember(store, event, facility, None),
            None => Ok(()),
        },
        AccountEvent::ChargePosted(charge) => {
            let facility = context(store, event)?.facility;
            update_day(store, event, &facility, |day| {
                count_money(&mut day.charges, charge.currency, charge.amount)
            })
        }
        AccountEvent::PaymentRecorded(payment) => {
            let facility = context(store, event)?.facility;
            update_day(store, event, &facility, |day| {
                count_money(&mut day.payments, payment.currency, payment.amount)
            })
        }
        AccountEvent::PatientMerged(_) => {
            let facility = context(store, event)?.facility;
            update_day(store, event, &facility, |day| {
                day.merges = day.merges.checked_add(1)?;
                Some(())
            })
        }
        // Not counted: adjustments are corrections (billing shows them), status changes and
        // erasure are not activity this view reports, and money a merge moves was counted on
        // the day it was charged or paid (counting it again would count it twice).
        AccountEvent::PatientAccountMergedIn(_)
        | AccountEvent::AdjustmentApplied(_)
        | AccountEvent::EligibilityVerified(_)
        | AccountEvent::EligibilityDenied(_)
        | AccountEvent::AccountActivated(_)
        | AccountEvent::AccountFlaggedSelfPay(_)
        | AccountEvent::AccountClosed(_)
        | AccountEvent::PersonalDataErased(_) => Ok(()),
    }
}

fn apply_encounter(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    encounter_event: &EncounterEvent,
) -> Result<(), ProjectionError> {
    let status = match encounter_event {
        EncounterEvent::EncounterScheduled(scheduled) => {
            let class = class_name(scheduled.encounter_class);
            remember(store, event, &scheduled.facility, Some(class))?;
            "scheduled"
        }
        EncounterEvent::PatientArrived(_) => "arrived",
        EncounterEvent::EncounterCompleted(_) => "completed",
        EncounterEvent::PatientDischarged(_) => "discharged",
        EncounterEvent::EncounterCancelled(_) => "cancelled",
        // No status change. Supplies are counted from the inventory's StockConsumed (the
        // process manager turns these into it), so counting them here would count twice.
        EncounterEvent::ProcedureRecorded(_) | EncounterEvent::SuppliesConsumed(_) => {
            return Ok(());
        }
    };
    let context = context(store, event)?;
    let class = context.encounter_class.unwrap_or_default();
    update_day(store, event, &context.facility, |day| {
        let count = day
            .encounters
            .entry(class)
            .or_default()
            .entry(status.to_owned())
            .or_insert(0);
        *count = count.checked_add(1)?;
        Some(())
    })
}

fn apply_inventory(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    inventory_event: &InventoryEvent,
) -> Result<(), ProjectionError> {
    match inventory_event {
        InventoryEvent::ItemDefined(defined) => remember(store, event, &defined.facility, None),
        InventoryEvent::StockConsumed(consumed) => {
            let facility = context(store, event)?.facility;
            let item = event.stream_id.id().to_owned();
            update_day(store, event, &facility, |day| {
                let units = day.supplies_consumed.entry(item).or_insert(0);
                *units = units.checked_add(u64::from(consumed.quantity))?;
                Some(())
            })
        }
        // Receipts, counts and replenishment bookkeeping are stock levels, not consumption.
        InventoryEvent::ReorderPointReached(_)
        | InventoryEvent::StockReceived(_)
        | InventoryEvent::StockCounted(_)
        | InventoryEvent::ReplenishmentClosed(_) => Ok(()),
    }
}

fn apply_purchase(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    purchase_event: &PurchaseEvent,
) -> Result<(), ProjectionError> {
    let requisition = event.stream_id.id();
    let now = event.metadata.occurred_at;
    // The milestones after this event, and the (stage, start) pairs it ends.
    let (milestones, ended) = match purchase_event {
        PurchaseEvent::PurchaseRequested(requested) => {
            let mut ordered = BTreeMap::new();
            for line in &requested.lines {
                *ordered.entry(line.item_id.clone()).or_insert(0) += u64::from(line.quantity);
            }
            let milestones = PurchaseMilestones {
                facility: requested.facility.clone(),
                requested_at: now,
                approved_at: None,
                ordered_at: None,
                received_at: None,
                ordered,
                received: BTreeMap::new(),
            };
            (milestones, Vec::new())
        }
        PurchaseEvent::PurchaseApproved(_) => {
            let mut milestones = load_milestones(store, event)?;
            milestones.approved_at = Some(now);
            let ended = vec![(STAGES[0], milestones.requested_at)];
            (milestones, ended)
        }
        PurchaseEvent::PurchaseOrderPlaced(_) => {
            let mut milestones = load_milestones(store, event)?;
            milestones.ordered_at = Some(now);
            let ended = milestones.approved_at.map(|start| (STAGES[1], start));
            (milestones, ended.into_iter().collect())
        }
        PurchaseEvent::GoodsReceived(goods) => {
            let mut milestones = load_milestones(store, event)?;
            for line in &goods.lines {
                *milestones.received.entry(line.item_id.clone()).or_insert(0) +=
                    u64::from(line.quantity);
            }
            let complete = milestones.ordered.iter().all(|(item, quantity)| {
                milestones.received.get(item).copied().unwrap_or(0) >= *quantity
            });
            let mut ended = Vec::new();
            if complete && milestones.received_at.is_none() {
                milestones.received_at = Some(now);
                ended.extend(milestones.ordered_at.map(|start| (STAGES[2], start)));
            }
            (milestones, ended)
        }
        PurchaseEvent::PurchaseClosed(_) => {
            let milestones = load_milestones(store, event)?;
            let mut ended: Vec<_> = milestones
                .received_at
                .map(|start| (STAGES[3], start))
                .into_iter()
                .collect();
            ended.push((STAGES[4], milestones.requested_at));
            (milestones, ended)
        }
        // Rejections, cancellations, escalations and bill matching end no measured stage.
        PurchaseEvent::PurchaseRejected(_)
        | PurchaseEvent::ApprovalEscalated(_)
        | PurchaseEvent::VendorBillMatched(_)
        | PurchaseEvent::VendorBillMismatched(_)
        | PurchaseEvent::PurchaseCancelled(_) => return Ok(()),
    };
    save(store, PURCHASES, requisition, &milestones)?;
    if ended.is_empty() {
        return Ok(());
    }
    update_day(store, event, &milestones.facility, |day| {
        for (stage, start) in ended {
            // Business times come from callers; a stage that "ends" before it starts is kept
            // as a negative duration rather than hidden.
            let seconds = (now - start).num_seconds();
            day.purchase_cycle_times
                .entry(stage.to_owned())
                .or_default()
                .add(seconds);
        }
        Some(())
    })
}

fn load_milestones(
    store: &dyn ViewStore,
    event: &RecordedEvent,
) -> Result<PurchaseMilestones, ProjectionError> {
    load::<PurchaseMilestones>(store, PURCHASES, event.stream_id.id())?.ok_or_else(|| {
        ProjectionError::MissingContext {
            stream_id: event.stream_id.to_string(),
            position: event.position,
            what: "PurchaseRequested",
        }
    })
}

#[cfg(test)]
mod tests;
