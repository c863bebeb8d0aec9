//! One test group per policy, plus the timer fold and the decoding of stored events. Where a
//! policy emits a command, a test also hands it to the target aggregate's `decide`, so a
//! policy cannot emit a command its target would refuse on shape alone.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::approval_deadline::{self, ApprovalDeadline, ApprovalSettings};
use super::charges::{Charges, charge_id_for};
use super::eligibility::{self, Eligibility, EligibilitySettings, record_answer};
use super::purchase_stock::PurchaseStock;
use super::replenishment::{self, Replenishment};
use super::timer::{
    TimerCancelled, TimerEvent, TimerFired, TimerPayload, TimerRequest, TimerScheduled, Timers,
    timer_stream,
};
use super::*;
use crate::aggregate::Aggregate;
use crate::encounter::{
    EncounterCompleted, EncounterScheduled, Procedure, SuppliesConsumed, SupplyUsage,
};
use crate::inventory_item::{
    CloseReplenishment, ConsumeStock, ReceiveStock, ReorderPointReached, ReplenishmentClosed,
};
use crate::money::{Cents, Currency};
use crate::patient_account::{
    ActivateAccount, Coverage, EligibilityDenied, EligibilityVerified, FlagSelfPay, Gender,
    HumanName, PatientIdentity, PatientRegistered, PostCharge, RecordEligibility,
};
use crate::personal::Personal;
use crate::purchase::{
    EscalateApproval, GoodsReceived, PurchaseApproved, PurchaseCancelled, PurchaseClosed,
    PurchaseRejected, PurchaseRequested, ReceiptLine, RequestLine, RequestPurchase,
};
use crate::testing::{fixed_ctx, fixed_now};
use crate::{EventMetadata, chain::EventHash};

fn at(hour: u32) -> DateTime<Utc> {
    match Utc.with_ymd_and_hms(2025, 3, 1, hour, 0, 0) {
        chrono::LocalResult::Single(t) => t,
        _ => unreachable!(),
    }
}

fn trigger(n: u128, stream: &str, event: TriggerEvent) -> Trigger {
    Trigger {
        event_id: Uuid::from_u128(n),
        position: u64::try_from(n).unwrap(),
        stream_id: StreamId::parse(stream).unwrap(),
        recorded_at: at(9),
        event,
    }
}

fn account(n: u128, mrn: &str, event: impl Into<patient_account::Event>) -> Trigger {
    trigger(
        n,
        &format!("patient_account-{mrn}"),
        TriggerEvent::PatientAccount(event.into()),
    )
}

fn visit(n: u128, id: &str, event: impl Into<encounter::Event>) -> Trigger {
    trigger(
        n,
        &format!("encounter-{id}"),
        TriggerEvent::Encounter(event.into()),
    )
}

fn item(n: u128, id: &str, event: impl Into<inventory_item::Event>) -> Trigger {
    trigger(
        n,
        &format!("inventory_item-{id}"),
        TriggerEvent::InventoryItem(event.into()),
    )
}

fn requisition(n: u128, id: &str, event: impl Into<purchase::Event>) -> Trigger {
    trigger(
        n,
        &format!("purchase-{id}"),
        TriggerEvent::Purchase(event.into()),
    )
}

fn fired(n: u128, process: &str, payload: TimerPayload) -> Trigger {
    let timer_id = Uuid::from_u128(0xF1);
    trigger(
        n,
        &format!("timers-{process}"),
        TriggerEvent::Timer(TimerEvent::TimerFired(TimerFired {
            timer_id,
            due_at: at(10),
            payload,
        })),
    )
}

fn registered(coverage: bool) -> PatientRegistered {
    PatientRegistered {
        facility: "MAIN".into(),
        gender: Gender::Female,
        coverage: coverage.then(|| Coverage {
            payer_id: "ACME".into(),
            plan: None,
        }),
        personal: Personal::Present(PatientIdentity {
            name: HumanName {
                family: "Doe".into(),
                given: vec!["Jane".into()],
            },
            birth_date: chrono::NaiveDate::from_ymd_opt(1980, 4, 12).unwrap(),
            member_id: coverage.then(|| "M-123".into()),
            address: None,
        }),
    }
}

fn react<P: ProcessManager>(state: &P::State, trigger: &Trigger) -> Reaction {
    P::react(state, trigger, &P::Settings::default()).unwrap()
}

fn only_command(reaction: &Reaction) -> &AddressedCommand {
    assert_eq!(reaction.commands.len(), 1, "{reaction:#?}");
    &reaction.commands[0]
}

/// Runs `decide` of the target aggregate on `issued` against `history`; panics if refused.
#[track_caller]
fn accepted_by<A: Aggregate>(history: &[A::Event], command: A::Command) -> Vec<A::Event> {
    let state = A::replay(history);
    A::decide(&state, &command, &fixed_ctx()).unwrap()
}

// ---- command and timer ids ----

#[test]
fn command_ids_are_v5_of_event_and_step() {
    let event = Uuid::from_u128(7);
    assert_eq!(command_id_for(event, "a"), command_id_for(event, "a"));
    assert_ne!(command_id_for(event, "a"), command_id_for(event, "b"));
    assert_ne!(
        command_id_for(event, "a"),
        command_id_for(Uuid::from_u128(8), "a")
    );
    assert_eq!(command_id_for(event, "a").get_version_num(), 5);
}

#[test]
fn timer_ids_depend_on_process_and_key_only() {
    assert_eq!(timer_id_for("p", "R1"), timer_id_for("p", "R1"));
    assert_ne!(timer_id_for("p", "R1"), timer_id_for("p", "R2"));
    assert_ne!(timer_id_for("p", "R1"), timer_id_for("q", "R1"));
}

// ---- eligibility ----

#[test]
fn registration_with_coverage_asks_the_payer_and_sets_the_deadline() {
    let t = account(1, "MRN1", registered(true));
    let reaction = react::<Eligibility>(&(), &t);
    assert!(reaction.commands.is_empty());
    assert_eq!(
        reaction.eligibility_checks,
        vec![EligibilityCheck {
            account_id: "MRN1".into(),
            payer_id: "ACME".into(),
            member_id: "M-123".into(),
            record_command_id: command_id_for(t.event_id, "record-eligibility"),
            give_up_at: at(9) + TimeDelta::minutes(15),
        }]
    );
    assert_eq!(
        reaction.timers,
        vec![TimerRequest {
            process: "eligibility",
            timer_id: eligibility::deadline_timer("MRN1"),
            due_at: at(9) + TimeDelta::minutes(15),
            payload: TimerPayload::EligibilityDeadline {
                account_id: "MRN1".into()
            },
        }]
    );
}

#[test]
fn the_payer_deadline_comes_from_settings() {
    let settings = EligibilitySettings {
        payer_deadline: TimeDelta::minutes(2),
    };
    let reaction =
        Eligibility::react(&(), &account(1, "MRN1", registered(true)), &settings).unwrap();
    assert_eq!(reaction.timers[0].due_at, at(9) + TimeDelta::minutes(2));
}

#[test]
fn registration_without_coverage_is_flagged_self_pay_at_once() {
    let t = account(1, "MRN1", registered(false));
    let reaction = react::<Eligibility>(&(), &t);
    assert!(reaction.eligibility_checks.is_empty() && reaction.timers.is_empty());
    let issued = only_command(&reaction);
    assert_eq!(issued.target().as_str(), "patient_account-MRN1");
    assert_eq!(
        issued.command_id(),
        command_id_for(t.event_id, "flag-self-pay")
    );
    let AnyCommand::PatientAccount(patient_account::Command::FlagSelfPay(flag)) = issued.command()
    else {
        panic!("{issued:?}")
    };
    assert!(
        flag.reason.contains("no insurance coverage"),
        "{}",
        flag.reason
    );
    accepted_by::<PatientAccount>(&[registered(false).into()], flag.clone().into());
}

#[test]
fn coverage_whose_member_id_was_erased_is_flagged_rather_than_checked() {
    let mut event = registered(true);
    event.personal = Personal::Erased;
    let reaction = react::<Eligibility>(&(), &account(1, "MRN1", event));
    assert!(reaction.eligibility_checks.is_empty());
    assert_eq!(only_command(&reaction).command().name(), "FlagSelfPay");
}

#[test]
fn the_answer_becomes_record_eligibility_under_the_derived_id() {
    let t = account(1, "MRN1", registered(true));
    let check = react::<Eligibility>(&(), &t).eligibility_checks.remove(0);
    let issued = record_answer(
        &check,
        &EligibilityAnswer {
            eligible: false,
            reference: Some(format!("  {}  ", "x".repeat(400))),
        },
    )
    .unwrap();
    assert_eq!(
        issued.command_id(),
        command_id_for(t.event_id, "record-eligibility")
    );
    let AnyCommand::PatientAccount(patient_account::Command::RecordEligibility(record)) =
        issued.command()
    else {
        panic!("{issued:?}")
    };
    assert_eq!(record.reference.as_deref().map(str::len), Some(256));
    assert!(!record.eligible);
    accepted_by::<PatientAccount>(&[registered(true).into()], record.clone().into());

    let blank = record_answer(
        &check,
        &EligibilityAnswer {
            eligible: true,
            reference: Some("   ".into()),
        },
    )
    .unwrap();
    assert_eq!(
        blank.command(),
        &AnyCommand::PatientAccount(
            RecordEligibility {
                payer_id: "ACME".into(),
                eligible: true,
                reference: None
            }
            .into()
        )
    );
}

#[test]
fn verified_activates_and_cancels_the_deadline() {
    let t = account(
        2,
        "MRN1",
        EligibilityVerified {
            payer_id: "ACME".into(),
            reference: None,
        },
    );
    let reaction = react::<Eligibility>(&(), &t);
    assert_eq!(
        only_command(&reaction).command(),
        &AnyCommand::PatientAccount(ActivateAccount {}.into())
    );
    assert_eq!(
        reaction.cancelled_timers,
        vec![TimerCancellation {
            process: "eligibility",
            timer_id: eligibility::deadline_timer("MRN1")
        }]
    );
}

#[test]
fn denied_flags_self_pay_with_the_payer_reason() {
    let t = account(
        2,
        "MRN1",
        EligibilityDenied {
            payer_id: "ACME".into(),
            reference: Some("OperationOutcome: not-found: member unknown".into()),
        },
    );
    let reaction = react::<Eligibility>(&(), &t);
    assert_eq!(
        only_command(&reaction).command(),
        &AnyCommand::PatientAccount(
            FlagSelfPay {
                reason: "eligibility denied by payer ACME: OperationOutcome: not-found: \
                         member unknown"
                    .into()
            }
            .into()
        )
    );
    assert_eq!(reaction.cancelled_timers.len(), 1);
}

#[test]
fn the_deadline_firing_flags_self_pay() {
    let t = fired(
        3,
        "eligibility",
        TimerPayload::EligibilityDeadline {
            account_id: "MRN1".into(),
        },
    );
    let issued = only_command(&react::<Eligibility>(&(), &t)).clone();
    assert_eq!(issued.target().as_str(), "patient_account-MRN1");
    assert_eq!(issued.command().name(), "FlagSelfPay");
    // Another process's timer is none of its business.
    let other = fired(
        4,
        "purchase_approval",
        TimerPayload::ApprovalDeadline {
            requisition_id: "R1".into(),
        },
    );
    assert!(react::<Eligibility>(&(), &other).is_empty());
}

// ---- charges ----

fn completed() -> EncounterCompleted {
    EncounterCompleted {
        account_id: "MRN1".into(),
        facility: "MAIN".into(),
        currency: Some(Currency::USD),
        procedures: vec![
            Procedure {
                line: 1,
                code: "99213".into(),
                description: "office visit".into(),
                quantity: 1,
                unit_price: Cents(12_500),
                amount: Cents(12_500),
            },
            Procedure {
                line: 2,
                code: "36415".into(),
                description: "venipuncture".into(),
                quantity: 2,
                unit_price: Cents(1_000),
                amount: Cents(2_000),
            },
        ],
        supplies: vec![SupplyUsage {
            item_id: "GAUZE".into(),
            quantity: 3,
        }],
    }
}

#[test]
fn each_procedure_becomes_one_charge_with_a_stable_charge_id() {
    let t = visit(5, "V1", completed());
    let reaction = react::<Charges>(&(), &t);
    assert_eq!(
        reaction.commands.len(),
        2,
        "supplies are consumed on SuppliesConsumed"
    );
    let expected_first = PostCharge {
        charge_id: "V1-1".into(),
        encounter_id: "V1".into(),
        code: "99213".into(),
        description: "office visit".into(),
        quantity: 1,
        unit_price: Cents(12_500),
        currency: Currency::USD,
    };
    assert_eq!(
        reaction.commands[0],
        AddressedCommand::new(
            "MRN1",
            command_id_for(t.event_id, "post-charge:1"),
            AnyCommand::PatientAccount(expected_first.clone().into())
        )
        .unwrap()
    );
    let AnyCommand::PatientAccount(patient_account::Command::PostCharge(second)) =
        &reaction.commands[1].command()
    else {
        panic!()
    };
    assert_eq!(second.charge_id, "V1-2");
    assert_ne!(
        reaction.commands[0].command_id(),
        reaction.commands[1].command_id()
    );
    // The account takes them, and refuses the same charge id twice whatever the command id.
    let first_posted =
        accepted_by::<PatientAccount>(&[registered(true).into()], expected_first.clone().into());
    let mut history: Vec<patient_account::Event> = vec![registered(true).into()];
    history.extend(first_posted);
    let state = PatientAccount::replay(&history);
    assert!(PatientAccount::decide(&state, &expected_first.into(), &fixed_ctx()).is_err());
}

#[test]
fn an_encounter_without_procedures_posts_nothing() {
    let mut event = completed();
    event.procedures.clear();
    event.currency = None;
    assert!(react::<Charges>(&(), &visit(5, "V1", event)).is_empty());
}

#[test]
fn long_visit_numbers_still_give_charge_ids_within_the_id_rule() {
    let long = "V".repeat(127);
    let id = charge_id_for(&long, 12);
    assert!(id.starts_with("CHG-") && id.len() == 36, "{id}");
    assert_eq!(id, charge_id_for(&long, 12));
    assert_ne!(id, charge_id_for(&long, 13));
    assert!(crate::stream_id::validate_id(&id).is_ok());
}

#[test]
fn supplies_consumed_become_consume_stock_on_the_item() {
    let t = visit(
        6,
        "V1",
        SuppliesConsumed {
            item_id: "GAUZE".into(),
            quantity: 3,
        },
    );
    let issued = only_command(&react::<Charges>(&(), &t)).clone();
    let consume = ConsumeStock {
        quantity: 3,
        reference: "V1".into(),
    };
    assert_eq!(
        issued,
        AddressedCommand::new(
            "GAUZE",
            command_id_for(t.event_id, "consume-stock"),
            AnyCommand::InventoryItem(consume.clone().into())
        )
        .unwrap()
    );
    accepted_by::<InventoryItem>(&[item_defined().into()], consume.into());
}

#[test]
fn other_encounter_events_call_for_nothing() {
    let t = visit(
        7,
        "V1",
        EncounterScheduled {
            account_id: "MRN1".into(),
            facility: "MAIN".into(),
            department: "ER".into(),
            encounter_class: encounter::EncounterClass::Emergency,
            scheduled_for: fixed_now(),
        },
    );
    assert!(react::<Charges>(&(), &t).is_empty());
}

// ---- replenishment ----

fn item_defined() -> inventory_item::ItemDefined {
    inventory_item::ItemDefined {
        name: "Gauze".into(),
        unit: "box".into(),
        facility: "MAIN".into(),
        reorder_point: 5,
        reorder_quantity: 20,
        vendor_id: "MEDSUP".into(),
        unit_cost: Cents(350),
        currency: Currency::USD,
    }
}

fn reached(requisition: &str) -> ReorderPointReached {
    ReorderPointReached {
        requisition_id: requisition.into(),
        on_hand: 4,
        reorder_point: 5,
        reorder_quantity: 20,
        vendor_id: "MEDSUP".into(),
        unit_cost: Cents(350),
        currency: Currency::USD,
        facility: "MAIN".into(),
    }
}

/// Reacts, then folds, like the runner.
fn step(state: replenishment::State, t: &Trigger) -> (replenishment::State, Reaction) {
    let reaction = react::<Replenishment>(&state, t);
    (Replenishment::evolve(state, t), reaction)
}

#[test]
fn the_reorder_point_opens_one_replenishment_purchase() {
    let t = item(10, "GAUZE", reached("RPL-1"));
    let (state, reaction) = step(replenishment::State::default(), &t);
    let expected = RequestPurchase {
        requester: "careflow-replenishment".into(),
        facility: "MAIN".into(),
        vendor_id: "MEDSUP".into(),
        lines: vec![RequestLine {
            item_id: "GAUZE".into(),
            quantity: 20,
            unit_price: Cents(350),
        }],
        reason: "replenishment of GAUZE: 4 on hand, reorder point 5".into(),
        approval_deadline: None,
        currency: Currency::USD,
    };
    assert_eq!(
        reaction.commands,
        vec![
            AddressedCommand::new(
                "RPL-1",
                command_id_for(t.event_id, "request-purchase"),
                AnyCommand::Purchase(expected.clone().into())
            )
            .unwrap()
        ]
    );
    assert_eq!(state.open_for("GAUZE"), Some("RPL-1"));
    accepted_by::<PurchaseWorkflow>(&[], expected.into());
}

#[test]
fn the_aggregate_event_feeds_the_policy_end_to_end() {
    // The item's own decision opens the requisition the policy then requests.
    let history: Vec<inventory_item::Event> = vec![
        item_defined().into(),
        inventory_item::StockReceived {
            quantity: 6,
            reference: "initial".into(),
        }
        .into(),
    ];
    let events = accepted_by::<InventoryItem>(
        &history,
        ConsumeStock {
            quantity: 2,
            reference: "V1".into(),
        }
        .into(),
    );
    let reached = events.into_iter().nth(1).unwrap();
    let t = item(11, "GAUZE", reached);
    let (_, reaction) = step(replenishment::State::default(), &t);
    let issued = only_command(&reaction);
    assert!(
        issued.target().id().starts_with("RPL-"),
        "{}",
        issued.target()
    );
}

#[test]
fn a_second_crossing_while_one_is_open_requests_nothing() {
    let (state, _) = step(Default::default(), &item(10, "GAUZE", reached("RPL-1")));
    let (state, reaction) = step(state, &item(11, "GAUZE", reached("RPL-2")));
    assert!(reaction.is_empty());
    assert_eq!(state.open_for("GAUZE"), Some("RPL-1"));
    // Other items are independent.
    let (_, reaction) = step(state, &item(12, "SYRINGE", reached("RPL-3")));
    assert_eq!(reaction.commands.len(), 1);
}

#[test]
fn a_redelivered_crossing_sends_the_same_command_again() {
    let t = item(10, "GAUZE", reached("RPL-1"));
    let (state, first) = step(Default::default(), &t);
    let (state, again) = step(state, &t);
    assert_eq!(first, again);
    assert_eq!(state.open_for("GAUZE"), Some("RPL-1"));
}

#[test]
fn the_purchase_ending_closes_the_replenishment_then_a_new_one_may_open() {
    for end in [
        purchase::Event::from(PurchaseClosed {}),
        PurchaseCancelled {
            reason: "vendor out".into(),
            odoo_order_ref: None,
            received: vec![],
        }
        .into(),
        PurchaseRejected {
            approver: "bob".into(),
            reason: "no budget".into(),
        }
        .into(),
    ] {
        let (state, _) = step(Default::default(), &item(10, "GAUZE", reached("RPL-1")));
        let t = requisition(20, "RPL-1", end);
        let (state, reaction) = step(state, &t);
        assert_eq!(
            reaction.commands,
            vec![
                AddressedCommand::new(
                    "GAUZE",
                    command_id_for(t.event_id, "close-replenishment"),
                    AnyCommand::InventoryItem(
                        CloseReplenishment {
                            requisition_id: "RPL-1".into()
                        }
                        .into()
                    )
                )
                .unwrap()
            ]
        );
        // Still open until the item says so.
        let (state, reaction) = step(state, &item(21, "GAUZE", reached("RPL-2")));
        assert!(reaction.is_empty());
        let closed = ReplenishmentClosed {
            requisition_id: "RPL-1".into(),
        };
        let (state, _) = step(state, &item(22, "GAUZE", closed));
        assert_eq!(state.open_for("GAUZE"), None);
        // The old crossing redelivered does not reopen the settled requisition...
        let (state, reaction) = step(state, &item(10, "GAUZE", reached("RPL-1")));
        assert!(reaction.is_empty());
        // ...but a new one opens.
        let (state, reaction) = step(state, &item(23, "GAUZE", reached("RPL-4")));
        assert_eq!(reaction.commands.len(), 1);
        assert_eq!(state.open_for("GAUZE"), Some("RPL-4"));
    }
}

#[test]
fn purchases_that_are_not_replenishments_close_nothing() {
    let (_, reaction) = step(
        Default::default(),
        &requisition(20, "REQ-9", PurchaseClosed {}),
    );
    assert!(reaction.is_empty());
}

// ---- approval deadline ----

fn requested(deadline: Option<DateTime<Utc>>) -> PurchaseRequested {
    PurchaseRequested {
        requester: "alice".into(),
        facility: "MAIN".into(),
        vendor_id: "MEDSUP".into(),
        lines: vec![RequestLine {
            item_id: "GAUZE".into(),
            quantity: 20,
            unit_price: Cents(350),
        }],
        reason: "stock".into(),
        approval_deadline: deadline,
        currency: Currency::USD,
        total: Cents(7_000),
    }
}

#[test]
fn a_request_sets_the_approval_timer_at_its_deadline_or_the_default() {
    let stated = react::<ApprovalDeadline>(&(), &requisition(30, "R1", requested(Some(at(12)))));
    assert_eq!(
        stated.timers,
        vec![TimerRequest {
            process: "purchase_approval",
            timer_id: approval_deadline::deadline_timer("R1"),
            due_at: at(12),
            payload: TimerPayload::ApprovalDeadline {
                requisition_id: "R1".into()
            },
        }]
    );
    let default = react::<ApprovalDeadline>(&(), &requisition(30, "R1", requested(None)));
    assert_eq!(default.timers[0].due_at, at(9) + TimeDelta::hours(48));
    let short = ApprovalDeadline::react(
        &(),
        &requisition(30, "R1", requested(None)),
        &ApprovalSettings {
            default_deadline: TimeDelta::minutes(1),
        },
    )
    .unwrap();
    assert_eq!(short.timers[0].due_at, at(9) + TimeDelta::minutes(1));
}

#[test]
fn a_decision_or_cancellation_cancels_the_approval_timer() {
    for decision in [
        purchase::Event::from(PurchaseApproved {
            approver: "bob".into(),
        }),
        PurchaseRejected {
            approver: "bob".into(),
            reason: "no".into(),
        }
        .into(),
        PurchaseCancelled {
            reason: "withdrawn".into(),
            odoo_order_ref: None,
            received: vec![],
        }
        .into(),
    ] {
        let reaction = react::<ApprovalDeadline>(&(), &requisition(31, "R1", decision));
        assert_eq!(
            reaction.cancelled_timers,
            vec![TimerCancellation {
                process: "purchase_approval",
                timer_id: approval_deadline::deadline_timer("R1")
            }]
        );
        assert!(reaction.commands.is_empty());
    }
}

#[test]
fn the_fired_timer_escalates_the_purchase() {
    let t = fired(
        32,
        "purchase_approval",
        TimerPayload::ApprovalDeadline {
            requisition_id: "R1".into(),
        },
    );
    let issued = only_command(&react::<ApprovalDeadline>(&(), &t)).clone();
    assert_eq!(
        issued,
        AddressedCommand::new(
            "R1",
            command_id_for(t.event_id, "escalate-approval"),
            AnyCommand::Purchase(EscalateApproval {}.into())
        )
        .unwrap()
    );
    let escalated =
        accepted_by::<PurchaseWorkflow>(&[requested(None).into()], EscalateApproval {}.into());
    assert_eq!(escalated.len(), 1);
}

// ---- purchase stock: receipts and compensation ----

fn receipt(id: &str, lines: &[(&str, u32)]) -> GoodsReceived {
    GoodsReceived {
        receipt_id: id.into(),
        lines: lines
            .iter()
            .map(|(item_id, quantity)| ReceiptLine {
                item_id: (*item_id).into(),
                quantity: *quantity,
            })
            .collect(),
    }
}

fn cancelled(received: &[(&str, u32)]) -> PurchaseCancelled {
    PurchaseCancelled {
        reason: "vendor recall".into(),
        odoo_order_ref: Some("PO0001".into()),
        received: receipt("-", received).lines,
    }
}

fn stock_step(state: purchase_stock::State, t: &Trigger) -> (purchase_stock::State, Reaction) {
    let reaction = react::<PurchaseStock>(&state, t);
    (PurchaseStock::evolve(state, t), reaction)
}

#[test]
fn goods_received_raise_stock_per_line() {
    let t = requisition(40, "R1", receipt("GR1", &[("GAUZE", 5), ("SYRINGE", 2)]));
    let (_, reaction) = stock_step(Default::default(), &t);
    assert_eq!(reaction.commands.len(), 2);
    let receive = ReceiveStock {
        quantity: 5,
        reference: "receipt:GR1".into(),
    };
    assert_eq!(
        reaction.commands[0],
        AddressedCommand::new(
            "GAUZE",
            command_id_for(t.event_id, "receive-stock:GAUZE"),
            AnyCommand::InventoryItem(receive.clone().into())
        )
        .unwrap()
    );
    accepted_by::<InventoryItem>(&[item_defined().into()], receive.into());
}

#[test]
fn a_cancellation_after_receipts_returns_each_receipt() {
    let (state, _) = stock_step(
        Default::default(),
        &requisition(40, "R1", receipt("GR1", &[("GAUZE", 5)])),
    );
    let (state, _) = stock_step(
        state,
        &requisition(41, "R1", receipt("GR2", &[("GAUZE", 3)])),
    );
    // A duplicate receipt event is remembered once.
    let (state, _) = stock_step(
        state,
        &requisition(41, "R1", receipt("GR2", &[("GAUZE", 3)])),
    );
    let t = requisition(42, "R1", cancelled(&[("GAUZE", 8)]));
    let (state, reaction) = stock_step(state, &t);
    let returns: Vec<_> = reaction
        .commands
        .iter()
        .map(|c| {
            (
                c.target().as_str().to_owned(),
                c.command().clone(),
                c.command_id(),
            )
        })
        .collect();
    let consume = |quantity, reference: &str| {
        AnyCommand::InventoryItem(
            ConsumeStock {
                quantity,
                reference: reference.into(),
            }
            .into(),
        )
    };
    assert_eq!(
        returns,
        vec![
            (
                "inventory_item-GAUZE".to_owned(),
                consume(5, "return:GR1"),
                command_id_for(t.event_id, "return:GR1:GAUZE")
            ),
            (
                "inventory_item-GAUZE".to_owned(),
                consume(3, "return:GR2"),
                command_id_for(t.event_id, "return:GR2:GAUZE")
            ),
        ]
    );
    // A redelivered cancellation compensates identically.
    let (_, again) = stock_step(state, &t);
    assert_eq!(again, reaction);
}

#[test]
fn a_cancellation_before_any_receipt_returns_nothing() {
    let (_, reaction) = stock_step(Default::default(), &requisition(42, "R1", cancelled(&[])));
    assert!(reaction.is_empty());
}

#[test]
fn without_known_receipts_the_cancelled_totals_are_returned() {
    let t = requisition(42, "R1", cancelled(&[("GAUZE", 8), ("SYRINGE", 0)]));
    let (_, reaction) = stock_step(Default::default(), &t);
    assert_eq!(
        only_command(&reaction).command(),
        &AnyCommand::InventoryItem(
            ConsumeStock {
                quantity: 8,
                reference: "return:R1".into()
            }
            .into()
        )
    );
}

#[test]
fn a_closed_purchase_forgets_its_receipts() {
    let (state, _) = stock_step(
        Default::default(),
        &requisition(40, "R1", receipt("GR1", &[("GAUZE", 5)])),
    );
    assert_eq!(state.receipts.len(), 1);
    let (state, _) = stock_step(state, &requisition(43, "R1", PurchaseClosed {}));
    assert!(state.receipts.is_empty());
}

// ---- timers ----

fn scheduled(id: u128, due: DateTime<Utc>) -> TimerEvent {
    TimerEvent::TimerScheduled(TimerScheduled {
        timer_id: Uuid::from_u128(id),
        due_at: due,
        payload: TimerPayload::ApprovalDeadline {
            requisition_id: format!("R{id}"),
        },
    })
}

#[test]
fn due_timers_come_out_earliest_first_and_only_when_due() {
    let timers = [
        scheduled(1, at(12)),
        scheduled(2, at(10)),
        scheduled(3, at(11)),
    ]
    .iter()
    .fold(Timers::new(), Timers::evolve);
    assert_eq!(timers.pending_count(), 3);
    assert_eq!(timers.next_due_at(), Some(at(10)));
    let due: Vec<_> = timers.due(at(11)).map(|t| t.timer_id.as_u128()).collect();
    assert_eq!(due, vec![2, 3]);
    assert_eq!(timers.due(at(9)).count(), 0);
}

#[test]
fn a_timer_fires_once_and_a_late_schedule_does_not_revive_it() {
    let mut timers = Timers::new().evolve(&scheduled(1, at(10)));
    let id = Uuid::from_u128(1);
    assert_eq!(timers.fire(id, at(9)), None, "not due yet");
    let fire = timers.fire(id, at(10)).unwrap();
    assert_eq!(
        fire,
        TimerEvent::TimerFired(TimerFired {
            timer_id: id,
            due_at: at(10),
            payload: TimerPayload::ApprovalDeadline {
                requisition_id: "R1".into()
            },
        })
    );
    timers.apply(&fire);
    assert_eq!(timers.fire(id, at(11)), None);
    assert_eq!(timers.due(at(23)).count(), 0);
    timers.apply(&scheduled(1, at(10)));
    assert!(!timers.is_pending(id));
    assert_eq!(timers.cancel(id), None);
}

#[test]
fn cancelling_before_the_schedule_arrives_keeps_it_cancelled() {
    let id = Uuid::from_u128(1);
    let timers = Timers::new();
    let cancel = timers.cancel(id).unwrap();
    assert_eq!(
        cancel,
        TimerEvent::TimerCancelled(TimerCancelled { timer_id: id })
    );
    let timers = timers.evolve(&cancel).evolve(&scheduled(1, at(10)));
    assert_eq!(timers.pending_count(), 0);
    assert_eq!(timers.next_due_at(), None);
    let request = TimerRequest {
        process: "purchase_approval",
        timer_id: id,
        due_at: at(10),
        payload: TimerPayload::ApprovalDeadline {
            requisition_id: "R1".into(),
        },
    };
    assert_eq!(timers.schedule(&request), None);
}

#[test]
fn scheduling_is_idempotent() {
    let request = TimerRequest {
        process: "purchase_approval",
        timer_id: Uuid::from_u128(5),
        due_at: at(10),
        payload: TimerPayload::ApprovalDeadline {
            requisition_id: "R5".into(),
        },
    };
    let timers = Timers::new();
    let event = timers.schedule(&request).unwrap();
    let timers = timers.evolve(&event);
    assert_eq!(timers.schedule(&request), None);
    assert_eq!(timers.clone().evolve(&event), timers);
}

#[test]
fn timer_events_round_trip_through_the_codec() {
    let events = [
        scheduled(1, at(10)),
        TimerEvent::TimerFired(TimerFired {
            timer_id: Uuid::from_u128(1),
            due_at: at(10),
            payload: TimerPayload::EligibilityDeadline {
                account_id: "MRN1".into(),
            },
        }),
        TimerEvent::TimerCancelled(TimerCancelled {
            timer_id: Uuid::from_u128(1),
        }),
    ];
    for event in events {
        let encoded = event.encode();
        assert_eq!(encoded.schema_version, 1);
        let decoded =
            TimerEvent::decode(encoded.event_type, encoded.schema_version, encoded.data).unwrap();
        assert_eq!(decoded, event);
    }
    let json = scheduled(1, at(10)).encode().data;
    assert_eq!(
        json["payload"],
        json!({"type": "ApprovalDeadline", "requisition_id": "R1"})
    );
    assert!(TimerEvent::decode("TimerExploded", 1, json.clone()).is_err());
    assert!(matches!(
        TimerEvent::decode("TimerScheduled", 2, json),
        Err(crate::DecodeError::FutureSchemaVersion { .. })
    ));
}

#[test]
fn timer_streams_are_per_process() {
    assert_eq!(
        timer_stream("purchase_approval").unwrap().as_str(),
        "timers-purchase_approval"
    );
}

// ---- decoding stored events ----

fn recorded(stream: &str, event_type: &str, data: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::from_u128(99),
        stream_id: StreamId::parse(stream).unwrap(),
        version: 1,
        position: 42,
        event_type: event_type.into(),
        schema_version: 1,
        data,
        metadata: EventMetadata {
            command_id: Uuid::from_u128(98),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            principal: "p".into(),
            source: "http".into(),
            recorded_at: at(9),
            occurred_at: at(8),
        },
        prev_hash: EventHash::ZERO,
        hash: EventHash::ZERO,
    }
}

#[test]
fn stored_events_decode_into_triggers_by_stream_kind() {
    let stored = recorded(
        "inventory_item-GAUZE",
        "ReplenishmentClosed",
        json!({"requisition_id": "RPL-1"}),
    );
    let t = Trigger::from_recorded(&stored).unwrap().unwrap();
    assert_eq!(t.event_id, Uuid::from_u128(99));
    assert_eq!(t.position, 42);
    assert_eq!(t.recorded_at, at(9));
    assert_eq!(
        t.event,
        TriggerEvent::InventoryItem(
            ReplenishmentClosed {
                requisition_id: "RPL-1".into()
            }
            .into()
        )
    );
    let timer = scheduled(1, at(10)).encode();
    let stored = recorded("timers-purchase_approval", timer.event_type, timer.data);
    assert!(matches!(
        Trigger::from_recorded(&stored).unwrap().unwrap().event,
        TriggerEvent::Timer(TimerEvent::TimerScheduled(_))
    ));
    let access = recorded("access_log-2025-03-01", "HistoryRead", json!({}));
    assert_eq!(Trigger::from_recorded(&access).unwrap(), None);
    let broken = recorded("purchase-R1", "GoodsReceived", json!({"receipt_id": 1}));
    assert!(Trigger::from_recorded(&broken).is_err());
}

// ---- claims ----

mod claims_policy {
    use super::*;
    use crate::claim::{self, ClaimOutcome, ClaimResponseRecorded, RemittanceAdjustment};
    use crate::patient_account::{AccountActivated, ChargePosted};
    use crate::policies::claims::{Claims, ClaimsSettings, claim_id_for, record_response};

    fn procedure(line: u32, cents: i64) -> Procedure {
        Procedure {
            line,
            code: format!("9921{line}"),
            description: "visit".into(),
            quantity: 1,
            unit_price: Cents(cents),
            amount: Cents(cents),
        }
    }

    fn completed() -> EncounterCompleted {
        EncounterCompleted {
            account_id: "MRN-1".into(),
            facility: "MAIN".into(),
            currency: Some(Currency::USD),
            procedures: vec![procedure(1, 15_000), procedure(2, 5_000)],
            supplies: vec![],
        }
    }

    fn posted(n: u128, line: u32, cents: i64) -> Trigger {
        account(
            n,
            "MRN-1",
            ChargePosted {
                charge_id: charge_id_for("V1", line),
                encounter_id: "V1".into(),
                code: format!("9921{line}"),
                description: "visit".into(),
                quantity: 1,
                unit_price: Cents(cents),
                amount: Cents(cents),
                currency: Currency::USD,
            },
        )
    }

    fn run(state: claims::State, triggers: &[Trigger]) -> (claims::State, Vec<Reaction>) {
        let mut reactions = Vec::new();
        let mut state = state;
        for trigger in triggers {
            reactions.push(Claims::react(&state, trigger, &ClaimsSettings::default()).unwrap());
            state = Claims::evolve(state, trigger);
        }
        (state, reactions)
    }

    fn active_account() -> Vec<Trigger> {
        vec![
            account(1, "MRN-1", registered(true)),
            account(2, "MRN-1", AccountActivated {}),
            visit(3, "V1", completed()),
        ]
    }

    #[test]
    fn the_last_charge_of_a_completed_visit_creates_and_submits_the_claim() {
        let mut triggers = active_account();
        triggers.push(posted(4, 1, 15_000));
        triggers.push(posted(5, 2, 5_000));
        let (state, reactions) = run(claims::State::default(), &triggers);
        assert!(reactions[3].is_empty(), "one charge of two: no claim yet");
        let commands = &reactions[4].commands;
        assert_eq!(commands.len(), 2);
        assert_eq!(
            commands[0].target().to_string(),
            format!("claim-{}", claim_id_for("V1", "ACME"))
        );
        let AnyCommand::Claim(claim::Command::CreateClaim(create)) = commands[0].command() else {
            panic!("{commands:?}");
        };
        assert_eq!(create.lines.len(), 2);
        assert_eq!(create.payer_id, "ACME");
        // The aggregate takes what the policy sends.
        let created = Claim::decide(
            &Claim::initial_state(),
            &claim::Command::CreateClaim(create.clone()),
            &fixed_ctx(),
        )
        .unwrap();
        let claim_state = created.iter().fold(Claim::initial_state(), Claim::evolve);
        assert_eq!(claim_state.total, Cents(20_000));
        assert_eq!(commands[1].command().name(), "SubmitClaim");
        assert!(state.visits.is_empty(), "a claimed visit is forgotten");
        // Redelivered: the same command ids.
        let (_, again) = run(claims::State::default(), &triggers);
        assert_eq!(again[4].commands[0].command_id(), commands[0].command_id());
    }

    #[test]
    fn a_self_pay_account_gets_no_claim() {
        let triggers = vec![
            account(1, "MRN-1", registered(true)),
            visit(3, "V1", completed()),
            posted(4, 1, 15_000),
            posted(5, 2, 5_000),
        ];
        let (state, reactions) = run(claims::State::default(), &triggers);
        assert!(reactions.iter().all(Reaction::is_empty));
        assert!(state.visits.is_empty());
    }

    #[test]
    fn a_remittance_posts_the_payment_and_writes_off_the_adjustments() {
        let claim_stream = format!("claim-{}", claim_id_for("V1", "ACME"));
        let created = trigger(
            10,
            &claim_stream,
            TriggerEvent::Claim(
                claim::ClaimCreated {
                    account_id: "MRN-1".into(),
                    encounter_id: "V1".into(),
                    payer_id: "ACME".into(),
                    lines: vec![],
                    currency: Currency::USD,
                    total: Cents(20_000),
                }
                .into(),
            ),
        );
        let answered = trigger(
            11,
            &claim_stream,
            TriggerEvent::Claim(
                ClaimResponseRecorded {
                    outcome: ClaimOutcome::PartiallyPaid,
                    paid_amount: Cents(15_000),
                    adjustments: vec![RemittanceAdjustment {
                        reason_code: "CO-45".into(),
                        amount: Cents(3_000),
                    }],
                    adjusted: Cents(3_000),
                    patient_balance: Cents(2_000),
                    denial_reason: None,
                    reference: "CR-1".into(),
                }
                .into(),
            ),
        );
        let (state, reactions) = run(claims::State::default(), &[created, answered]);
        let commands = &reactions[1].commands;
        assert_eq!(commands.len(), 2);
        assert!(
            commands
                .iter()
                .all(|c| c.target().to_string() == "patient_account-MRN-1")
        );
        let AnyCommand::PatientAccount(patient_account::Command::RecordPayment(payment)) =
            commands[0].command()
        else {
            panic!("{commands:?}");
        };
        assert_eq!(payment.amount, Cents(15_000));
        assert_eq!(payment.payer.as_deref(), Some("ACME"));
        let AnyCommand::PatientAccount(patient_account::Command::ApplyAdjustment(adjustment)) =
            commands[1].command()
        else {
            panic!("{commands:?}");
        };
        assert_eq!(adjustment.amount, Cents(-3_000));
        assert!(state.claims.is_empty(), "a paid claim is forgotten");
    }

    fn claim_event(n: u128, event: impl Into<claim::Event>) -> Trigger {
        trigger(
            n,
            &format!("claim-{}", claim_id_for("V1", "ACME")),
            TriggerEvent::Claim(event.into()),
        )
    }

    fn line(charge_id: &str, cents: i64) -> claim::ClaimLine {
        claim::ClaimLine {
            charge_id: charge_id.into(),
            code: "99213".into(),
            quantity: 1,
            unit_price: Cents(cents),
        }
    }

    #[test]
    fn each_submission_asks_the_runner_to_send_the_claim_as_it_stands_then() {
        let created = claim_event(
            20,
            claim::ClaimCreated {
                account_id: "MRN-1".into(),
                encounter_id: "V1".into(),
                payer_id: "ACME".into(),
                lines: vec![line("C1", 15_000), line("C2", 5_000)],
                currency: Currency::USD,
                total: Cents(20_000),
            },
        );
        let submitted = claim_event(21, claim::ClaimSubmitted {});
        let denied = claim_event(
            22,
            ClaimResponseRecorded {
                outcome: ClaimOutcome::Denied,
                paid_amount: Cents::ZERO,
                adjustments: vec![],
                adjusted: Cents::ZERO,
                patient_balance: Cents(20_000),
                denial_reason: Some("no authorisation".into()),
                reference: "CR-1".into(),
            },
        );
        let resubmitted = claim_event(
            23,
            claim::ClaimResubmitted {
                lines: vec![line("C1", 15_000)],
                total: Cents(15_000),
                note: "C2 withdrawn".into(),
            },
        );
        let triggers = [created, submitted.clone(), denied, resubmitted];
        let (state, reactions) = run(claims::State::default(), &triggers);
        assert!(reactions[0].claim_submissions.is_empty());
        let first = &reactions[1].claim_submissions;
        assert_eq!(first.len(), 1);
        let first = &first[0];
        assert_eq!(
            (
                first.claim_id.as_str(),
                first.account_id.as_str(),
                first.payer_id.as_str()
            ),
            ("V1-ACME", "MRN-1", "ACME")
        );
        assert_eq!(
            (first.submission, first.total, first.lines.len()),
            (1, Cents(20_000), 2)
        );
        assert_eq!(
            first.record_command_id,
            command_id_for(submitted.event_id, "record-claim-response")
        );
        assert_eq!(
            first.give_up_at,
            submitted.recorded_at + ClaimsSettings::default().submit_deadline
        );
        assert!(reactions[2].commands.is_empty(), "a denial moves no money");
        let second = &reactions[3].claim_submissions[0];
        assert_eq!(
            (second.submission, second.total, second.lines.len()),
            (2, Cents(15_000), 1)
        );
        assert_ne!(second.record_command_id, first.record_command_id);
        assert_eq!(state.claims["V1-ACME"].submissions, 2);

        // The payer's answer is recorded on the claim under the submission's command id.
        let recorded = record_response(
            second,
            claim::RecordClaimResponse {
                outcome: ClaimOutcome::Paid,
                paid_amount: Cents(15_000),
                adjustments: vec![],
                denial_reason: None,
                reference: "CR-2".into(),
            },
        )
        .unwrap();
        assert_eq!(recorded.target().to_string(), "claim-V1-ACME");
        assert_eq!(recorded.command_id(), second.record_command_id);
        assert_eq!(recorded.command().name(), "RecordClaimResponse");
    }
}

// ---- merges ----

#[test]
fn a_merge_sends_the_moved_money_to_the_survivor_under_a_derived_id() {
    use super::merges::Merges;
    use crate::patient_account::{MovedAccount, PatientMerged};
    let moved = MovedAccount {
        currency: Some(Currency::USD),
        balance: Cents(4_200),
        ..MovedAccount::default()
    };
    let merged = PatientMerged {
        into: "MRN-2".into(),
        reason: "duplicate registration".into(),
        moved: moved.clone(),
    };
    let trigger = account(7, "MRN-1", merged);
    let reaction = react::<Merges>(&(), &trigger);
    let issued = only_command(&reaction);
    assert_eq!(issued.target().to_string(), "patient_account-MRN-2");
    assert_eq!(
        issued.command_id(),
        command_id_for(Uuid::from_u128(7), "absorb-merged-account")
    );
    let AnyCommand::PatientAccount(patient_account::Command::AbsorbMergedAccount(absorb)) =
        issued.command()
    else {
        panic!("{issued:?}");
    };
    assert_eq!(absorb.from, "MRN-1");
    assert_eq!(absorb.moved, moved);
    // Any other account event calls for nothing.
    assert!(
        react::<Merges>(
            &(),
            &account(8, "MRN-1", patient_account::AccountActivated {})
        )
        .is_empty()
    );
}
