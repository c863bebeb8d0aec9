//! Given/when/then tests of the PurchaseWorkflow rules, the 3-way match, codec and contract.

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::money::{Cents, Currency};
use crate::rejection::Rejection;
use crate::stream_id::StreamIdError;
use crate::testing::{assert_codec_round_trip, assert_contract_body, given, given_no_history};

// ---- fixtures: 10 GAUZE at 12.75 and 4 TAPE at 3.00, requested by alice ----

fn lines() -> Vec<RequestLine> {
    vec![
        RequestLine {
            item_id: "GAUZE".into(),
            quantity: 10,
            unit_price: Cents(1_275),
        },
        RequestLine {
            item_id: "TAPE".into(),
            quantity: 4,
            unit_price: Cents(300),
        },
    ]
}

fn request() -> RequestPurchase {
    RequestPurchase {
        requester: "alice".into(),
        facility: "MAIN".into(),
        vendor_id: "MEDSUP".into(),
        lines: lines(),
        reason: "ward restock".into(),
        approval_deadline: Some(Utc.with_ymd_and_hms(2025, 3, 3, 17, 0, 0).unwrap()),
        currency: Currency::USD,
    }
}

fn requested() -> Event {
    PurchaseRequested {
        requester: "alice".into(),
        facility: "MAIN".into(),
        vendor_id: "MEDSUP".into(),
        lines: lines(),
        reason: "ward restock".into(),
        approval_deadline: Some(Utc.with_ymd_and_hms(2025, 3, 3, 17, 0, 0).unwrap()),
        currency: Currency::USD,
        total: Cents(12_750 + 1_200),
    }
    .into()
}

fn approved() -> Event {
    PurchaseApproved {
        approver: "bob".into(),
    }
    .into()
}

fn ordered() -> Event {
    PurchaseOrderPlaced {
        odoo_order_ref: "P00042".into(),
    }
    .into()
}

fn receipt(receipt_id: &str, lines: &[(&str, u32)]) -> ReceiveGoods {
    ReceiveGoods {
        receipt_id: receipt_id.into(),
        lines: lines
            .iter()
            .map(|(item_id, quantity)| ReceiptLine {
                item_id: (*item_id).into(),
                quantity: *quantity,
            })
            .collect(),
    }
}

fn received(receipt_id: &str, lines: &[(&str, u32)]) -> Event {
    let r = receipt(receipt_id, lines);
    GoodsReceived {
        receipt_id: r.receipt_id,
        lines: r.lines,
    }
    .into()
}

fn all_received() -> Event {
    received("R1", &[("GAUZE", 10), ("TAPE", 4)])
}

fn bill(lines: &[(&str, u32, i64)]) -> MatchVendorBill {
    MatchVendorBill {
        bill_id: "B1".into(),
        lines: lines
            .iter()
            .map(|(item_id, quantity, price)| BillLine {
                item_id: (*item_id).into(),
                quantity: *quantity,
                unit_price: Cents(*price),
            })
            .collect(),
        currency: Currency::USD,
    }
}

fn exact_bill() -> MatchVendorBill {
    bill(&[("GAUZE", 10, 1_275), ("TAPE", 4, 300)])
}

fn matched() -> Event {
    let b = exact_bill();
    VendorBillMatched {
        bill_id: b.bill_id,
        lines: b.lines,
        currency: Currency::USD,
        total: Cents(13_950),
    }
    .into()
}

fn cancel() -> CancelPurchase {
    CancelPurchase {
        reason: "budget freeze".into(),
    }
}

#[track_caller]
fn out_of_order(history: Vec<Event>, command: impl Into<Command>, status: &'static str) {
    let command = command.into();
    let name = command.name();
    given(history)
        .when(command)
        .then_rejects(Rejection::InvalidTransition {
            aggregate: "purchase",
            status,
            command: name,
        });
}

// ---- request ----

#[test]
fn requesting_opens_the_purchase_awaiting_approval() {
    given_no_history::<PurchaseWorkflow>()
        .when(request())
        .then_expect([requested()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::Requested));
            assert!(!s.escalated);
            assert_eq!(s.total, Cents(13_950));
            assert_eq!(s.lines[0].received, 0);
        });
    given([requested()])
        .when(request())
        .then_rejects(Rejection::AlreadyRequested);
}

#[test]
fn requests_are_validated() {
    let cases = [
        (
            RequestPurchase {
                lines: vec![],
                ..request()
            },
            Rejection::EmptyField { field: "lines" },
        ),
        (
            RequestPurchase {
                lines: vec![RequestLine {
                    item_id: "GAUZE".into(),
                    quantity: 0,
                    unit_price: Cents(1),
                }],
                ..request()
            },
            Rejection::InvalidQuantity {
                field: "lines.quantity",
            },
        ),
        (
            RequestPurchase {
                lines: vec![RequestLine {
                    item_id: "GAUZE".into(),
                    quantity: 1,
                    unit_price: Cents(-1),
                }],
                ..request()
            },
            Rejection::NegativeAmount {
                field: "lines.unit_price",
            },
        ),
        (
            RequestPurchase {
                lines: vec![lines()[0].clone(), lines()[0].clone()],
                ..request()
            },
            Rejection::DuplicateLine {
                item_id: "GAUZE".into(),
            },
        ),
        (
            RequestPurchase {
                vendor_id: "MED/SUP".into(),
                ..request()
            },
            Rejection::InvalidId {
                field: "vendor_id",
                reason: StreamIdError::IdCharacter('/'),
            },
        ),
        (
            RequestPurchase {
                requester: " ".into(),
                ..request()
            },
            Rejection::EmptyField { field: "requester" },
        ),
    ];
    for (command, rejection) in cases {
        given_no_history::<PurchaseWorkflow>()
            .when(command)
            .then_rejects(rejection);
    }
}

#[test]
fn nothing_happens_to_a_purchase_never_requested() {
    let commands: Vec<Command> = vec![
        ApprovePurchase {
            approver: "bob".into(),
        }
        .into(),
        EscalateApproval {}.into(),
        RecordPurchaseOrder {
            odoo_order_ref: "P1".into(),
        }
        .into(),
        receipt("R1", &[("GAUZE", 1)]).into(),
        exact_bill().into(),
        ClosePurchase {}.into(),
        cancel().into(),
    ];
    for command in commands {
        given_no_history::<PurchaseWorkflow>()
            .when(command)
            .then_rejects(Rejection::NotRequested);
    }
}

// ---- approval ----

#[test]
fn another_person_approves() {
    given([requested()])
        .when(ApprovePurchase {
            approver: "bob".into(),
        })
        .then_expect([approved()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::Approved));
            assert_eq!(s.approver.as_deref(), Some("bob"));
        });
}

#[test]
fn the_requester_never_approves_or_rejects() {
    for approver in ["alice", "Alice", " ALICE "] {
        given([requested()])
            .when(ApprovePurchase {
                approver: approver.into(),
            })
            .then_rejects(Rejection::SelfApproval);
        given([requested()])
            .when(RejectPurchase {
                approver: approver.into(),
                reason: "no".into(),
            })
            .then_rejects(Rejection::SelfApproval);
    }
}

#[test]
fn rejection_is_final() {
    let rejected: Event = PurchaseRejected {
        approver: "bob".into(),
        reason: "over budget".into(),
    }
    .into();
    given([requested()])
        .when(RejectPurchase {
            approver: "bob".into(),
            reason: "over budget".into(),
        })
        .then_expect([rejected.clone()])
        .then_state_matches(|s| assert_eq!(s.status, Some(PurchaseStatus::Rejected)));
    out_of_order(
        vec![requested(), rejected.clone()],
        ApprovePurchase {
            approver: "carol".into(),
        },
        "rejected",
    );
    out_of_order(vec![requested(), rejected], cancel(), "rejected");
}

#[test]
fn approving_twice_is_a_conflict() {
    out_of_order(
        vec![requested(), approved()],
        ApprovePurchase {
            approver: "carol".into(),
        },
        "approved",
    );
}

// ---- escalation ----

#[test]
fn escalation_only_while_awaiting_approval() {
    given([requested()])
        .when(EscalateApproval {})
        .then_expect([ApprovalEscalated {}.into()])
        .then_state_matches(|s| {
            assert!(s.escalated);
            assert_eq!(s.status, Some(PurchaseStatus::Requested));
        });
    given([requested(), ApprovalEscalated {}.into()])
        .when(EscalateApproval {})
        .then_no_events();
    out_of_order(
        vec![requested(), approved()],
        EscalateApproval {},
        "approved",
    );
    given([requested(), ApprovalEscalated {}.into()])
        .when(ApprovePurchase {
            approver: "bob".into(),
        })
        .then_state_matches(|s| {
            assert!(s.escalated, "escalation stays on record");
            assert_eq!(s.status, Some(PurchaseStatus::Approved));
        });
}

// ---- ordering ----

#[test]
fn the_order_is_recorded_after_approval() {
    given([requested(), approved()])
        .when(RecordPurchaseOrder {
            odoo_order_ref: "P00042".into(),
        })
        .then_expect([ordered()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::Ordered));
            assert_eq!(s.odoo_order_ref.as_deref(), Some("P00042"));
        });
    out_of_order(
        vec![requested()],
        RecordPurchaseOrder {
            odoo_order_ref: "P00042".into(),
        },
        "requested",
    );
}

// ---- receiving ----

#[test]
fn partial_receipts_add_up_to_received() {
    let before = vec![requested(), approved(), ordered()];
    given(before.clone())
        .when(receipt("R1", &[("GAUZE", 6)]))
        .then_expect([received("R1", &[("GAUZE", 6)])])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::PartiallyReceived));
            assert_eq!(s.line("GAUZE").unwrap().received, 6);
        });
    let mut partial = before;
    partial.push(received("R1", &[("GAUZE", 6)]));
    given(partial)
        .when(receipt("R2", &[("GAUZE", 4), ("TAPE", 4)]))
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::Received));
            assert!(s.fully_received());
        });
}

#[test]
fn receiving_more_than_ordered_is_a_conflict_over_all_receipts() {
    given([requested(), approved(), ordered()])
        .when(receipt("R1", &[("GAUZE", 11)]))
        .then_rejects(Rejection::OverReceipt {
            item_id: "GAUZE".into(),
            ordered: 10,
            already_received: 0,
            receiving: 11,
        });
    given([
        requested(),
        approved(),
        ordered(),
        received("R1", &[("GAUZE", 8)]),
    ])
    .when(receipt("R2", &[("TAPE", 1), ("GAUZE", 3)]))
    .then_rejects(Rejection::OverReceipt {
        item_id: "GAUZE".into(),
        ordered: 10,
        already_received: 8,
        receiving: 3,
    });
}

#[test]
fn receipts_are_checked_against_the_order() {
    let history = vec![
        requested(),
        approved(),
        ordered(),
        received("R1", &[("GAUZE", 1)]),
    ];
    given(history.clone())
        .when(receipt("R2", &[("SCALPEL", 1)]))
        .then_rejects(Rejection::ItemNotOrdered {
            item_id: "SCALPEL".into(),
        });
    given(history.clone())
        .when(receipt("R1", &[("GAUZE", 1)]))
        .then_rejects(Rejection::DuplicateReceipt {
            receipt_id: "R1".into(),
        });
    given(history.clone())
        .when(receipt("R2", &[]))
        .then_rejects(Rejection::EmptyField { field: "lines" });
    given(history.clone())
        .when(receipt("R2", &[("GAUZE", 0)]))
        .then_rejects(Rejection::InvalidQuantity {
            field: "lines.quantity",
        });
    given(history)
        .when(receipt("R2", &[("GAUZE", 1), ("GAUZE", 1)]))
        .then_rejects(Rejection::DuplicateLine {
            item_id: "GAUZE".into(),
        });
    out_of_order(
        vec![requested(), approved()],
        receipt("R1", &[("GAUZE", 1)]),
        "approved",
    );
    out_of_order(
        vec![requested(), approved(), ordered(), all_received()],
        receipt("R2", &[("GAUZE", 1)]),
        "received",
    );
}

// ---- the 3-way match ----

#[test]
fn a_bill_agreeing_with_order_and_receipts_matches() {
    given([requested(), approved(), ordered(), all_received()])
        .when(exact_bill())
        .then_expect([matched()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::Matched));
            assert!(s.bills[0].matched);
        });
}

#[test]
fn a_bill_with_another_price_mismatches_on_that_line_only() {
    given([requested(), approved(), ordered(), all_received()])
        .when(bill(&[("GAUZE", 10, 1_300), ("TAPE", 4, 300)]))
        .then_expect([VendorBillMismatched {
            bill_id: "B1".into(),
            currency: Currency::USD,
            lines: vec![LineDiscrepancy {
                item_id: "GAUZE".into(),
                ordered_quantity: 10,
                received_quantity: 10,
                billed_quantity: 10,
                ordered_unit_price: Some(Cents(1_275)),
                billed_unit_price: Some(Cents(1_300)),
            }],
        }
        .into()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(PurchaseStatus::Received), "status unchanged");
            assert!(!s.bills[0].matched);
        });
}

#[test]
fn a_bill_for_goods_not_received_mismatches() {
    given([
        requested(),
        approved(),
        ordered(),
        received("R1", &[("GAUZE", 6), ("TAPE", 4)]),
    ])
    .when(exact_bill())
    .then_expect([VendorBillMismatched {
        bill_id: "B1".into(),
        currency: Currency::USD,
        lines: vec![LineDiscrepancy {
            item_id: "GAUZE".into(),
            ordered_quantity: 10,
            received_quantity: 6,
            billed_quantity: 10,
            ordered_unit_price: Some(Cents(1_275)),
            billed_unit_price: Some(Cents(1_275)),
        }],
    }
    .into()]);
}

#[test]
fn missing_and_extra_bill_lines_mismatch() {
    given([requested(), approved(), ordered(), all_received()])
        .when(bill(&[("GAUZE", 10, 1_275), ("SCALPEL", 2, 500)]))
        .then_expect([VendorBillMismatched {
            bill_id: "B1".into(),
            currency: Currency::USD,
            lines: vec![
                LineDiscrepancy {
                    item_id: "TAPE".into(),
                    ordered_quantity: 4,
                    received_quantity: 4,
                    billed_quantity: 0,
                    ordered_unit_price: Some(Cents(300)),
                    billed_unit_price: None,
                },
                LineDiscrepancy {
                    item_id: "SCALPEL".into(),
                    ordered_quantity: 0,
                    received_quantity: 0,
                    billed_quantity: 2,
                    ordered_unit_price: None,
                    billed_unit_price: Some(Cents(500)),
                },
            ],
        }
        .into()]);
}

#[test]
fn a_corrected_bill_matches_after_a_mismatch() {
    let mismatched: Event = VendorBillMismatched {
        bill_id: "B1".into(),
        currency: Currency::USD,
        lines: vec![],
    }
    .into();
    given([
        requested(),
        approved(),
        ordered(),
        all_received(),
        mismatched,
    ])
    .when(exact_bill())
    .then_expect([matched()]);
}

#[test]
fn bills_are_checked_before_matching() {
    let history = vec![requested(), approved(), ordered(), all_received()];
    let eur = Currency::parse("EUR").unwrap();
    given(history.clone())
        .when(MatchVendorBill {
            currency: eur,
            ..exact_bill()
        })
        .then_rejects(Rejection::CurrencyMismatch {
            expected: Currency::USD,
            found: eur,
        });
    given(history.clone())
        .when(bill(&[]))
        .then_rejects(Rejection::EmptyField { field: "lines" });
    given(history)
        .when(bill(&[("GAUZE", 10, 1_275), ("GAUZE", 1, 1_275)]))
        .then_rejects(Rejection::DuplicateLine {
            item_id: "GAUZE".into(),
        });
    out_of_order(vec![requested(), approved()], exact_bill(), "approved");
    out_of_order(
        vec![
            requested(),
            approved(),
            ordered(),
            all_received(),
            matched(),
        ],
        exact_bill(),
        "matched",
    );
}

// ---- closing and cancelling ----

#[test]
fn a_matched_purchase_closes_and_stays_closed() {
    let done = vec![
        requested(),
        approved(),
        ordered(),
        all_received(),
        matched(),
    ];
    given(done.clone())
        .when(ClosePurchase {})
        .then_expect([PurchaseClosed {}.into()])
        .then_state_matches(|s| assert_eq!(s.status, Some(PurchaseStatus::Closed)));
    out_of_order(
        vec![requested(), approved(), ordered(), all_received()],
        ClosePurchase {},
        "received",
    );
    let mut closed = done;
    closed.push(PurchaseClosed {}.into());
    out_of_order(closed, cancel(), "closed");
}

#[test]
fn cancelling_carries_what_to_compensate() {
    given([
        requested(),
        approved(),
        ordered(),
        received("R1", &[("GAUZE", 6)]),
    ])
    .when(cancel())
    .then_expect([PurchaseCancelled {
        reason: "budget freeze".into(),
        odoo_order_ref: Some("P00042".into()),
        received: vec![ReceiptLine {
            item_id: "GAUZE".into(),
            quantity: 6,
        }],
    }
    .into()])
    .then_state_matches(|s| assert_eq!(s.status, Some(PurchaseStatus::Cancelled)));
    given([requested()])
        .when(cancel())
        .then_expect([PurchaseCancelled {
            reason: "budget freeze".into(),
            odoo_order_ref: None,
            received: vec![],
        }
        .into()]);
}

#[test]
fn cancelling_is_possible_until_closed() {
    let stages = [
        vec![requested()],
        vec![requested(), approved()],
        vec![requested(), approved(), ordered()],
        vec![requested(), approved(), ordered(), all_received()],
        vec![
            requested(),
            approved(),
            ordered(),
            all_received(),
            matched(),
        ],
    ];
    for history in stages {
        given(history)
            .when(cancel())
            .then_state_matches(|s| assert_eq!(s.status, Some(PurchaseStatus::Cancelled)));
    }
    let cancelled: Event = PurchaseCancelled {
        reason: "x".into(),
        odoo_order_ref: None,
        received: vec![],
    }
    .into();
    out_of_order(vec![requested(), cancelled.clone()], cancel(), "cancelled");
    out_of_order(
        vec![requested(), cancelled],
        ApprovePurchase {
            approver: "bob".into(),
        },
        "cancelled",
    );
}

// ---- codec and contract ----

#[test]
fn every_event_type_round_trips_through_the_codec() {
    let events = vec![
        requested(),
        approved(),
        PurchaseRejected {
            approver: "bob".into(),
            reason: "no".into(),
        }
        .into(),
        ApprovalEscalated {}.into(),
        ordered(),
        all_received(),
        matched(),
        VendorBillMismatched {
            bill_id: "B2".into(),
            currency: Currency::USD,
            lines: vec![LineDiscrepancy {
                item_id: "X".into(),
                ordered_quantity: 0,
                received_quantity: 0,
                billed_quantity: 1,
                ordered_unit_price: None,
                billed_unit_price: Some(Cents(1)),
            }],
        }
        .into(),
        PurchaseClosed {}.into(),
        PurchaseCancelled {
            reason: "x".into(),
            odoo_order_ref: Some("P1".into()),
            received: vec![],
        }
        .into(),
    ];
    let mut types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    types.sort_unstable();
    let mut all = Event::EVENT_TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(types, all);
    for event in &events {
        assert_codec_round_trip::<PurchaseWorkflow>(event);
    }
}

#[track_caller]
fn parse(body: serde_json::Value) -> Result<Command, Rejection> {
    PurchaseWorkflow::parse_command(body).map(|b| b.command)
}

#[test]
fn every_command_parses_from_its_contract_shape() {
    let cases = [
        (
            json!({"type": "RequestPurchase", "requester": "alice", "facility": "MAIN",
                   "vendor_id": "MEDSUP",
                   "lines": [{"item_id": "GAUZE", "quantity": 10, "unit_price": "12.75"},
                             {"item_id": "TAPE", "quantity": 4, "unit_price": "3"}],
                   "reason": "ward restock", "approval_deadline": "2025-03-03T17:00:00Z"}),
            request().into(),
        ),
        (
            json!({"type": "RequestPurchase", "requester": "alice", "facility": "MAIN",
                   "vendor_id": "MEDSUP",
                   "lines": [{"item_id": "GAUZE", "quantity": 10, "unit_price": "12.75"},
                             {"item_id": "TAPE", "quantity": 4, "unit_price": "3.00"}],
                   "reason": "ward restock"}),
            RequestPurchase {
                approval_deadline: None,
                ..request()
            }
            .into(),
        ),
        (
            json!({"type": "ApprovePurchase", "approver": "bob"}),
            ApprovePurchase {
                approver: "bob".into(),
            }
            .into(),
        ),
        (
            json!({"type": "RejectPurchase", "approver": "bob", "reason": "no"}),
            RejectPurchase {
                approver: "bob".into(),
                reason: "no".into(),
            }
            .into(),
        ),
        (
            json!({"type": "RecordPurchaseOrder", "odoo_order_ref": "P00042"}),
            RecordPurchaseOrder {
                odoo_order_ref: "P00042".into(),
            }
            .into(),
        ),
        (
            json!({"type": "ReceiveGoods", "receipt_id": "R1",
                   "lines": [{"item_id": "GAUZE", "quantity": 6}]}),
            receipt("R1", &[("GAUZE", 6)]).into(),
        ),
        (
            json!({"type": "MatchVendorBill", "bill_id": "B1",
                   "lines": [{"item_id": "GAUZE", "quantity": 10, "unit_price": "12.75"},
                             {"item_id": "TAPE", "quantity": 4, "unit_price": "3.00"}]}),
            exact_bill().into(),
        ),
        (json!({"type": "ClosePurchase"}), ClosePurchase {}.into()),
        (
            json!({"type": "CancelPurchase", "reason": "budget freeze"}),
            cancel().into(),
        ),
        (
            json!({"type": "EscalateApproval"}),
            EscalateApproval {}.into(),
        ),
    ];
    for (body, expected) in cases {
        assert_contract_body::<PurchaseWorkflow>(body, expected);
    }
}

#[test]
fn bodies_outside_the_contract_are_refused() {
    let refused = [
        json!({"type": "ApprovePurchase", "approver": "bob", "comment": "ok"}),
        json!({"type": "ReceiveGoods", "receipt_id": "R1",
               "lines": [{"item_id": "GAUZE", "quantity": 6, "lot": "L1"}]}),
        json!({"type": "MatchVendorBill", "bill_id": "B1",
               "lines": [{"item_id": "GAUZE", "quantity": 10, "unit_price": 12.75}]}),
        json!({"type": "RequestPurchase", "requester": "alice", "facility": "MAIN",
               "vendor_id": "MEDSUP", "lines": [], "reason": "r",
               "approval_deadline": "next week"}),
        json!({"type": "EscalateApproval", "level": 2}),
    ];
    for body in refused {
        let result = parse(body.clone());
        assert!(
            matches!(result, Err(Rejection::InvalidCommand { .. })),
            "{body} gave {result:?}"
        );
    }
}

#[test]
fn state_renders_the_pinned_status_and_escalation() {
    let state = PurchaseWorkflow::replay(&[
        requested(),
        ApprovalEscalated {}.into(),
        approved(),
        ordered(),
        received("R1", &[("GAUZE", 6)]),
    ]);
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["status"], json!("partially_received"));
    assert_eq!(json["escalated"], json!(true));
    assert_eq!(json["lines"][0]["received"], json!(6));
    assert_eq!(json["total"], json!("139.50"));
    let snapshot: State = serde_json::from_value(json).unwrap();
    assert_eq!(snapshot, state);
}
