//! Property: whatever redeliveries a runner suffers (a crash after sending but before the
//! checkpoint, a duplicate delivery after the state moved on, a rebuild from position 0), every
//! policy asks for exactly the command ids, and the same commands, of one clean pass over the
//! log; the pending timers end the same; and the replenishment policy never opens a second
//! purchase for an item while one is open.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::approval_deadline::ApprovalDeadline;
use super::charges::Charges;
use super::eligibility::Eligibility;
use super::merges::Merges;
use super::purchase_stock::PurchaseStock;
use super::replenishment::Replenishment;
use super::timer::{self, TimerEvent, TimerFired, TimerPayload, Timers};
use super::*;
use crate::encounter::{EncounterCompleted, Procedure, SuppliesConsumed};
use crate::inventory_item::{ReorderPointReached, ReplenishmentClosed};
use crate::money::{Cents, Currency};
use crate::patient_account::{
    Coverage, EligibilityDenied, EligibilityVerified, Gender, HumanName, PatientIdentity,
    PatientRegistered,
};
use crate::personal::Personal;
use crate::purchase::{
    GoodsReceived, PurchaseApproved, PurchaseCancelled, PurchaseClosed, PurchaseRejected,
    PurchaseRequested, ReceiptLine, RequestLine,
};

fn base() -> DateTime<Utc> {
    match Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0) {
        chrono::LocalResult::Single(t) => t,
        _ => unreachable!(),
    }
}

/// A generated event, from a small vocabulary so that sequences collide on the same items,
/// requisitions, visits and accounts.
#[derive(Debug, Clone)]
enum Spec {
    Reached {
        item: u8,
        n: u8,
    },
    ReplenishmentClosed {
        item: u8,
        n: u8,
    },
    PurchaseEnd {
        item: u8,
        n: u8,
        how: u8,
    },
    Requested {
        item: u8,
        n: u8,
        deadline: bool,
    },
    Approved {
        item: u8,
        n: u8,
    },
    Received {
        item: u8,
        n: u8,
        receipt: u8,
        quantity: u32,
    },
    Completed {
        visit: u8,
    },
    Supplies {
        visit: u8,
        item: u8,
    },
    Registered {
        mrn: u8,
        coverage: bool,
    },
    Answered {
        mrn: u8,
        eligible: bool,
    },
    ApprovalFired {
        item: u8,
        n: u8,
    },
    EligibilityFired {
        mrn: u8,
    },
}

fn requisition_of(item: u8, n: u8) -> String {
    format!("RPL-{item}-{n}")
}

fn spec() -> impl Strategy<Value = Spec> {
    let item = 0..2u8;
    let n = 0..3u8;
    prop_oneof![
        3 => (item.clone(), n.clone()).prop_map(|(item, n)| Spec::Reached { item, n }),
        2 => (item.clone(), n.clone()).prop_map(|(item, n)| Spec::ReplenishmentClosed { item, n }),
        2 => (item.clone(), n.clone(), 0..3u8)
            .prop_map(|(item, n, how)| Spec::PurchaseEnd { item, n, how }),
        1 => (item.clone(), n.clone(), any::<bool>())
            .prop_map(|(item, n, deadline)| Spec::Requested { item, n, deadline }),
        1 => (item.clone(), n.clone()).prop_map(|(item, n)| Spec::Approved { item, n }),
        2 => (item.clone(), n.clone(), 0..2u8, 1..5u32).prop_map(|(item, n, receipt, quantity)| {
            Spec::Received { item, n, receipt, quantity }
        }),
        1 => (0..2u8).prop_map(|visit| Spec::Completed { visit }),
        1 => (0..2u8, item.clone()).prop_map(|(visit, item)| Spec::Supplies { visit, item }),
        1 => (0..2u8, any::<bool>()).prop_map(|(mrn, coverage)| Spec::Registered { mrn, coverage }),
        1 => (0..2u8, any::<bool>()).prop_map(|(mrn, eligible)| Spec::Answered { mrn, eligible }),
        1 => (item, n).prop_map(|(item, n)| Spec::ApprovalFired { item, n }),
        1 => (0..2u8).prop_map(|mrn| Spec::EligibilityFired { mrn }),
    ]
}

fn build(index: usize, spec: &Spec) -> Trigger {
    let (stream, event) = match spec {
        Spec::Reached { item, n } => (
            format!("inventory_item-I{item}"),
            TriggerEvent::InventoryItem(
                ReorderPointReached {
                    requisition_id: requisition_of(*item, *n),
                    on_hand: 1,
                    reorder_point: 2,
                    reorder_quantity: 10,
                    vendor_id: "V".into(),
                    unit_cost: Cents(100),
                    currency: Currency::USD,
                    facility: "MAIN".into(),
                }
                .into(),
            ),
        ),
        Spec::ReplenishmentClosed { item, n } => (
            format!("inventory_item-I{item}"),
            TriggerEvent::InventoryItem(
                ReplenishmentClosed {
                    requisition_id: requisition_of(*item, *n),
                }
                .into(),
            ),
        ),
        Spec::PurchaseEnd { item, n, how } => (
            format!("purchase-{}", requisition_of(*item, *n)),
            TriggerEvent::Purchase(match how {
                0 => PurchaseClosed {}.into(),
                1 => PurchaseCancelled {
                    reason: "r".into(),
                    odoo_order_ref: None,
                    received: vec![ReceiptLine {
                        item_id: format!("I{item}"),
                        quantity: 2,
                    }],
                }
                .into(),
                _ => PurchaseRejected {
                    approver: "bob".into(),
                    reason: "r".into(),
                }
                .into(),
            }),
        ),
        Spec::Requested { item, n, deadline } => (
            format!("purchase-{}", requisition_of(*item, *n)),
            TriggerEvent::Purchase(
                PurchaseRequested {
                    requester: "alice".into(),
                    facility: "MAIN".into(),
                    vendor_id: "V".into(),
                    lines: vec![RequestLine {
                        item_id: format!("I{item}"),
                        quantity: 1,
                        unit_price: Cents(1),
                    }],
                    reason: "r".into(),
                    approval_deadline: deadline.then(|| base() + chrono::TimeDelta::hours(3)),
                    currency: Currency::USD,
                    total: Cents(1),
                }
                .into(),
            ),
        ),
        Spec::Approved { item, n } => (
            format!("purchase-{}", requisition_of(*item, *n)),
            TriggerEvent::Purchase(
                PurchaseApproved {
                    approver: "bob".into(),
                }
                .into(),
            ),
        ),
        Spec::Received {
            item,
            n,
            receipt,
            quantity,
        } => (
            format!("purchase-{}", requisition_of(*item, *n)),
            TriggerEvent::Purchase(
                GoodsReceived {
                    receipt_id: format!("GR{receipt}"),
                    lines: vec![ReceiptLine {
                        item_id: format!("I{item}"),
                        quantity: *quantity,
                    }],
                }
                .into(),
            ),
        ),
        Spec::Completed { visit } => (
            format!("encounter-V{visit}"),
            TriggerEvent::Encounter(
                EncounterCompleted {
                    account_id: "M0".into(),
                    facility: "MAIN".into(),
                    currency: Some(Currency::USD),
                    procedures: (1..=2)
                        .map(|line| Procedure {
                            line,
                            code: "C".into(),
                            description: "d".into(),
                            quantity: 1,
                            unit_price: Cents(5),
                            amount: Cents(5),
                        })
                        .collect(),
                    supplies: vec![],
                }
                .into(),
            ),
        ),
        Spec::Supplies { visit, item } => (
            format!("encounter-V{visit}"),
            TriggerEvent::Encounter(
                SuppliesConsumed {
                    item_id: format!("I{item}"),
                    quantity: 1,
                }
                .into(),
            ),
        ),
        Spec::Registered { mrn, coverage } => (
            format!("patient_account-M{mrn}"),
            TriggerEvent::PatientAccount(
                PatientRegistered {
                    facility: "MAIN".into(),
                    gender: Gender::Other,
                    coverage: coverage.then(|| Coverage {
                        payer_id: "ACME".into(),
                        plan: None,
                    }),
                    personal: Personal::Present(PatientIdentity {
                        name: HumanName {
                            family: "F".into(),
                            given: vec![],
                        },
                        birth_date: base().date_naive(),
                        member_id: coverage.then(|| "MEM".into()),
                        address: None,
                    }),
                }
                .into(),
            ),
        ),
        Spec::Answered { mrn, eligible } => (
            format!("patient_account-M{mrn}"),
            TriggerEvent::PatientAccount(if *eligible {
                EligibilityVerified {
                    payer_id: "ACME".into(),
                    reference: None,
                }
                .into()
            } else {
                EligibilityDenied {
                    payer_id: "ACME".into(),
                    reference: Some("no".into()),
                }
                .into()
            }),
        ),
        Spec::ApprovalFired { item, n } => fired(
            "purchase_approval",
            TimerPayload::ApprovalDeadline {
                requisition_id: requisition_of(*item, *n),
            },
        ),
        Spec::EligibilityFired { mrn } => fired(
            "eligibility",
            TimerPayload::EligibilityDeadline {
                account_id: format!("M{mrn}"),
            },
        ),
    };
    let index = u64::try_from(index).unwrap() + 1;
    Trigger {
        event_id: Uuid::from_u128(u128::from(index)),
        position: index,
        stream_id: StreamId::parse(&stream).unwrap(),
        recorded_at: base() + chrono::TimeDelta::minutes(i64::try_from(index).unwrap()),
        event,
    }
}

fn fired(process: &str, payload: TimerPayload) -> (String, TriggerEvent) {
    (
        format!("timers-{process}"),
        TriggerEvent::Timer(TimerEvent::TimerFired(TimerFired {
            timer_id: Uuid::from_u128(0xF1),
            due_at: base(),
            payload,
        })),
    )
}

/// The log of `specs`, without what no aggregate would ever record: a second registration of
/// an account or a second request of a requisition. Everything else may come in any order.
fn plausible_log(specs: &[Spec]) -> Vec<Trigger> {
    let mut created = BTreeSet::new();
    specs
        .iter()
        .filter(|spec| match spec {
            Spec::Registered { mrn, .. } => created.insert(format!("M{mrn}")),
            Spec::Requested { item, n, .. } => created.insert(requisition_of(*item, *n)),
            _ => true,
        })
        .enumerate()
        .map(|(i, spec)| build(i, spec))
        .collect()
}

/// What can go wrong after an event was handled.
#[derive(Debug, Clone)]
enum Glitch {
    None,
    /// Crash after the commands were sent, before the checkpoint: the same event again, with
    /// the state from before it.
    CrashBeforeCheckpoint,
    /// The event `back` places earlier is delivered again after the state moved on.
    Duplicate {
        back: usize,
    },
}

fn glitch() -> impl Strategy<Value = Glitch> {
    prop_oneof![
        4 => Just(Glitch::None),
        1 => Just(Glitch::CrashBeforeCheckpoint),
        1 => (0..6usize).prop_map(|back| Glitch::Duplicate { back }),
    ]
}

/// Everything a policy asked for, in delivery order, with the event delivered just before.
struct Run {
    deliveries: Vec<(Trigger, Reaction)>,
}

fn clean<P: ProcessManager>(log: &[Trigger]) -> Run {
    let mut state = P::State::default();
    let mut deliveries = Vec::new();
    for trigger in log {
        deliveries.push((
            trigger.clone(),
            P::react(&state, trigger, &P::Settings::default()).unwrap(),
        ));
        state = P::evolve(state, trigger);
    }
    Run { deliveries }
}

fn chaotic<P: ProcessManager>(log: &[Trigger], glitches: &[Glitch], rebuild: bool) -> Run {
    let settings = P::Settings::default();
    let mut state = P::State::default();
    let mut deliveries = Vec::new();
    let deliver = |state: P::State, trigger: &Trigger, deliveries: &mut Vec<_>| {
        deliveries.push((
            trigger.clone(),
            P::react(&state, trigger, &settings).unwrap(),
        ));
        P::evolve(state, trigger)
    };
    for (i, trigger) in log.iter().enumerate() {
        match glitches.get(i).unwrap_or(&Glitch::None) {
            Glitch::None => state = deliver(state, trigger, &mut deliveries),
            Glitch::CrashBeforeCheckpoint => {
                let before = state.clone();
                let _lost = deliver(state, trigger, &mut deliveries);
                state = deliver(before, trigger, &mut deliveries);
            }
            Glitch::Duplicate { back } => {
                state = deliver(state, trigger, &mut deliveries);
                let again = &log[i.saturating_sub(*back)];
                state = deliver(state, again, &mut deliveries);
            }
        }
    }
    if rebuild {
        let mut fresh = P::State::default();
        for trigger in log {
            fresh = deliver(fresh, trigger, &mut deliveries);
        }
    }
    Run { deliveries }
}

/// Every id a policy derives, with what it stands for (commands, payer checks, timers).
fn ids(run: &Run) -> BTreeMap<Uuid, BTreeSet<String>> {
    let mut ids: BTreeMap<Uuid, BTreeSet<String>> = BTreeMap::new();
    for (_, reaction) in &run.deliveries {
        for issued in &reaction.commands {
            ids.entry(issued.command_id()).or_default().insert(format!(
                "{}:{:?}",
                issued.target(),
                issued.command()
            ));
        }
        for check in &reaction.eligibility_checks {
            ids.entry(check.record_command_id)
                .or_default()
                .insert(format!("{check:?}"));
        }
        for timer in &reaction.timers {
            ids.entry(timer.timer_id)
                .or_default()
                .insert(format!("{timer:?}"));
        }
    }
    ids
}

/// The pending timers after applying a run's timer requests through the fold, as a runner does.
fn pending_timers(run: &Run) -> Vec<Uuid> {
    let mut timers = Timers::new();
    for (_, reaction) in &run.deliveries {
        for request in &reaction.timers {
            if let Some(event) = timers.schedule(request) {
                timers.apply(&event);
            }
        }
        for cancellation in &reaction.cancelled_timers {
            if let Some(event) = timers.cancel(cancellation.timer_id) {
                timers.apply(&event);
            }
        }
    }
    let far = base() + chrono::TimeDelta::days(365);
    timers.due(far).map(|timer| timer.timer_id).collect()
}

#[track_caller]
fn check_redelivery<P: ProcessManager>(log: &[Trigger], glitches: &[Glitch], rebuild: bool) -> Run
where
    P::State: Debug,
{
    let clean_run = clean::<P>(log);
    let chaotic_run = chaotic::<P>(log, glitches, rebuild);
    let clean_ids = ids(&clean_run);
    let chaotic_ids = ids(&chaotic_run);
    for (id, meanings) in &chaotic_ids {
        assert_eq!(
            meanings.len(),
            1,
            "{} id {id} stands for two things: {meanings:#?}",
            P::NAME
        );
    }
    assert_eq!(
        chaotic_ids,
        clean_ids,
        "{}: redelivery changed the ids asked for",
        P::NAME
    );
    assert_eq!(
        pending_timers(&chaotic_run),
        pending_timers(&clean_run),
        "{}: redelivery changed the pending timers",
        P::NAME
    );
    chaotic_run
}

/// Replays the commands as the store would take them (a known command id is a no-op) and
/// checks that an item never has two different replenishments open.
fn assert_one_open_replenishment(run: &Run) {
    let mut sent = BTreeSet::new();
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    for (trigger, reaction) in &run.deliveries {
        if let TriggerEvent::InventoryItem(inventory_item::Event::ReplenishmentClosed(closed)) =
            &trigger.event
        {
            let item = trigger.stream_id.id();
            if open.get(item) == Some(&closed.requisition_id) {
                open.remove(item);
            }
        }
        for issued in &reaction.commands {
            let AnyCommand::Purchase(purchase::Command::RequestPurchase(request)) =
                issued.command()
            else {
                continue;
            };
            if !sent.insert(issued.command_id()) {
                continue;
            }
            let item = request.lines[0].item_id.clone();
            let requisition = issued.target().id().to_owned();
            if let Some(already) = open.get(&item) {
                assert_eq!(
                    already, &requisition,
                    "a second replenishment for {item} while {already} is open"
                );
            }
            open.insert(item, requisition);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn redelivery_asks_for_the_same_ids_and_one_replenishment_at_a_time(
        specs in prop::collection::vec(spec(), 1..40),
        glitches in prop::collection::vec(glitch(), 40),
        rebuild in any::<bool>(),
    ) {
        let log = plausible_log(&specs);
        let run = check_redelivery::<Replenishment>(&log, &glitches, rebuild);
        assert_one_open_replenishment(&run);
        assert_one_open_replenishment(&clean::<Replenishment>(&log));
        check_redelivery::<Eligibility>(&log, &glitches, rebuild);
        check_redelivery::<Charges>(&log, &glitches, rebuild);
        check_redelivery::<ApprovalDeadline>(&log, &glitches, rebuild);
        check_redelivery::<PurchaseStock>(&log, &glitches, rebuild);
        check_redelivery::<Merges>(&log, &glitches, rebuild);
        check_redelivery::<super::staffing::StaffingWatch>(&log, &glitches, rebuild);
        check_stream_kinds::<super::staffing::StaffingWatch>(&log);
        check_stream_kinds::<Replenishment>(&log);
        check_stream_kinds::<Eligibility>(&log);
        check_stream_kinds::<Charges>(&log);
        check_stream_kinds::<ApprovalDeadline>(&log);
        check_stream_kinds::<PurchaseStock>(&log);
        check_stream_kinds::<Merges>(&log);
    }
}

/// The runner skips, undecoded, events of kinds outside `P::STREAM_KINDS`: such an event must
/// ask for nothing and leave the state as it was, or skipping it would lose a reaction.
#[track_caller]
fn check_stream_kinds<P: ProcessManager>(log: &[Trigger]) {
    let settings = P::Settings::default();
    let mut state = P::State::default();
    for trigger in log {
        let reaction = P::react(&state, trigger, &settings).unwrap();
        let next = P::evolve(state.clone(), trigger);
        if !P::STREAM_KINDS.contains(&trigger.stream_id.kind()) {
            assert!(
                reaction.is_empty(),
                "{} reacts to {} outside its STREAM_KINDS",
                P::NAME,
                trigger.stream_id
            );
            assert_eq!(next, state, "{} evolves on {}", P::NAME, trigger.stream_id);
        }
        state = next;
    }
}

/// One step of a timer stream's life: a runner's decision, or an old event delivered again.
#[derive(Debug, Clone)]
enum TimerStep {
    Schedule { id: u8, due: u8 },
    FireDue { now: u8 },
    Cancel { id: u8 },
    Redeliver { back: usize },
}

fn timer_step() -> impl Strategy<Value = TimerStep> {
    prop_oneof![
        (0..4u8, 0..10u8).prop_map(|(id, due)| TimerStep::Schedule { id, due }),
        (0..12u8).prop_map(|now| TimerStep::FireDue { now }),
        (0..4u8).prop_map(|id| TimerStep::Cancel { id }),
        (0..5usize).prop_map(|back| TimerStep::Redeliver { back }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the order of schedules, firings, cancellations and redelivered events, a timer
    /// fires at most once, never before it is due, never after it was cancelled, and `due`
    /// lists exactly the pending timers due, earliest first.
    #[test]
    fn a_timer_fires_once_never_early_and_never_after_cancel(
        steps in prop::collection::vec(timer_step(), 1..60),
    ) {
        let at = |hour: u8| base() + chrono::TimeDelta::hours(i64::from(hour));
        let payload = |id: u8| TimerPayload::ApprovalDeadline { requisition_id: format!("R{id}") };
        let mut timers = Timers::new();
        let mut appended: Vec<TimerEvent> = Vec::new();
        let mut fired: BTreeMap<Uuid, DateTime<Utc>> = BTreeMap::new();
        let mut cancelled = BTreeSet::new();
        for step in &steps {
            let new_events: Vec<TimerEvent> = match step {
                TimerStep::Schedule { id, due } => timers
                    .schedule(&timer::TimerRequest {
                        process: "p",
                        timer_id: Uuid::from_u128(u128::from(*id)),
                        due_at: at(*due),
                        payload: payload(*id),
                    })
                    .into_iter()
                    .collect(),
                TimerStep::FireDue { now } => {
                    let due: Vec<_> = timers.due(at(*now)).collect();
                    prop_assert!(due.windows(2).all(|w| w[0].due_at <= w[1].due_at));
                    due.iter()
                        .map(|t| timers.fire(t.timer_id, at(*now)).unwrap())
                        .collect()
                }
                TimerStep::Cancel { id } => {
                    timers.cancel(Uuid::from_u128(u128::from(*id))).into_iter().collect()
                }
                TimerStep::Redeliver { back } => {
                    let old = appended.len().checked_sub(back + 1).map(|i| appended[i].clone());
                    timers = old.iter().fold(timers, Timers::evolve);
                    Vec::new()
                }
            };
            for event in new_events {
                match &event {
                    TimerEvent::TimerFired(f) => {
                        prop_assert!(fired.insert(f.timer_id, f.due_at).is_none(), "fired twice");
                        prop_assert!(!cancelled.contains(&f.timer_id), "fired after cancel");
                        if let TimerStep::FireDue { now } = step {
                            prop_assert!(f.due_at <= at(*now), "fired early");
                        }
                    }
                    TimerEvent::TimerCancelled(c) => {
                        prop_assert!(!fired.contains_key(&c.timer_id), "cancelled after firing");
                        cancelled.insert(c.timer_id);
                    }
                    TimerEvent::TimerScheduled(s) => {
                        prop_assert!(!fired.contains_key(&s.timer_id) && !cancelled.contains(&s.timer_id));
                    }
                }
                timers.apply(&event);
                appended.push(event);
            }
        }
        // Replaying the appended stream from scratch gives the same fold.
        let replayed = appended.iter().fold(Timers::new(), Timers::evolve);
        prop_assert_eq!(replayed, timers);
    }
}
