//! The Odoo mapping per event: given events (real aggregate events in the store's envelope),
//! the exact intents, then the exact `execute_kw` calls the executor sends for them.

use careflow_aggregates::claim::{
    ClaimCreated, ClaimLine, ClaimOutcome, ClaimResponseRecorded, ClaimSubmitted, ClaimVoided,
    Event as ClaimEvent, RemittanceAdjustment,
};
use careflow_aggregates::encounter::{EncounterCancelled, EncounterClass};
use careflow_aggregates::inventory_item::StockConsumed;
use careflow_aggregates::patient_account::{
    AccountActivated, AccountFlaggedSelfPay, AdjustmentApplied, DemographicsUpdated,
    IdentityChanges, PaymentMethod, PaymentParty, PaymentRecorded, PersonalDataErased,
};
use careflow_aggregates::policies::claims::{remittance_adjustment_id, remittance_id_for};
use careflow_aggregates::purchase::{
    BillLine, Event as PurchaseEvent, PurchaseApproved, PurchaseCancelled, PurchaseClosed,
    PurchaseOrderPlaced, ReceiptLine, VendorBillMatched,
};
use careflow_aggregates::{Cents, Currency, Personal, RecordedEvent};
use serde_json::{Value, json};
use uuid::Uuid;

use super::calls::{
    self, OpenMove, PlanError, assign_picking, cancel_order, cancel_pickings, confirm_order,
    confirm_picking, create_bill, create_payments, lock_order, open_invoices, open_moves,
    post_move, post_payment, read_invoice, read_order,
};
use super::*;
use crate::testing::EventLog;
use crate::testing::events::*;

/// Odoo ids the executor would have resolved, by complete external id.
fn ids(xmlid: &str) -> Option<i64> {
    Some(match xmlid {
        "careflow.partner_MRN1" => 42,
        "careflow.vendor_VEND1" => 7,
        "careflow.product_GAUZE" => 12,
        "careflow.product_TAPE" => 13,
        "careflow.po_REQ1" => 55,
        "careflow.payer_ACME" => 77,
        "careflow.invoice_V1" => 310,
        "account.account_payment_term_30days" => 4,
        "account.account_payment_term_immediate" => 1,
        "stock.picking_type_out" => 2,
        "stock.stock_location_stock" => 8,
        "stock.stock_location_customers" => 5,
        "uom.product_uom_unit" => 1,
        _ => return None,
    })
}

fn nothing_resolved(_: &str) -> Option<i64> {
    None
}

/// The event id `EventLog` gives the event at `position`.
fn eid(position: u64) -> String {
    Uuid::from_u128(u128::from(position)).to_string()
}

fn map_all(events: &[RecordedEvent]) -> (MappingState, Vec<OdooIntent>) {
    let mut state = MappingState::default();
    let mut intents = Vec::new();
    for event in events {
        intents.extend(map_event(&mut state, event).unwrap());
    }
    (state, intents)
}

/// Maps the whole log from a fresh state and compares every intent, as JSON.
#[track_caller]
fn check(log: &EventLog, expected: Value) -> Vec<OdooIntent> {
    let (_, intents) = map_all(log.events());
    assert_eq!(serde_json::to_value(&intents).unwrap(), expected);
    intents
}

#[track_caller]
fn check_call(call: Option<Call>, expected: Value) {
    let call = call.expect("a call");
    assert_eq!(call.to_json(), expected, "{call:?}");
}

fn activated() -> careflow_aggregates::patient_account::Event {
    AccountActivated {}.into()
}

fn approved() -> PurchaseEvent {
    PurchaseApproved {
        approver: "boss".to_owned(),
    }
    .into()
}

fn purchase_log() -> EventLog {
    EventLog::new()
        .push("GAUZE", "2025-03-01T09:00:00Z", item_defined("MAIN"))
        .push(
            "REQ1",
            "2025-03-02T10:00:00Z",
            requested("MAIN", &[("GAUZE", 10), ("TAPE", 4)]),
        )
        .push("REQ1", "2025-03-02T11:30:00Z", approved())
}

// ----- patient account -------------------------------------------------------------------

#[test]
fn registration_upserts_the_partner_named_by_mrn_only() {
    let log = EventLog::new().push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"));
    let intents = check(
        &log,
        json!([{
            "id": format!("{}/0", eid(1)),
            "event_id": eid(1),
            "position": 1,
            "key": "partner_MRN1",
            "model": "res.partner",
            "action": {
                "action": "upsert_partner",
                "values": {"name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1},
                "payment_terms": null,
            },
        }]),
    );
    let action = &intents[0].action;
    assert_eq!(action.refs(), Vec::<String>::new());
    // API-NOTES.md §6 example 5, with careflow's values.
    let create = action.create_call(&ids).unwrap().unwrap();
    assert_eq!(
        create.params("careflow", 2, "K"),
        json!({"service": "object", "method": "execute_kw", "args": [
            "careflow", 2, "K", "res.partner", "create",
            [{"name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1}],
        ]})
    );
    check_call(
        action.write_call(42, &ids).unwrap(),
        json!(["res.partner", "write", [[42], {"name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1}]]),
    );
    check_call(
        action.natural_key_search(&ids).unwrap(),
        json!(["res.partner", "search_read", [[["ref", "=", "MRN1"]]], {"fields": ["id"], "limit": 1}]),
    );
}

#[test]
fn activation_and_self_pay_choose_the_payment_terms() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN1", "2025-03-01T09:01:00Z", activated())
        .push(
            "MRN1",
            "2025-03-05T09:00:00Z",
            careflow_aggregates::patient_account::Event::from(AccountFlaggedSelfPay {
                reason: "coverage ended".to_owned(),
            }),
        );
    let (_, intents) = map_all(log.events());
    let terms: Vec<Value> = intents
        .iter()
        .map(|intent| serde_json::to_value(&intent.action).unwrap()["payment_terms"].clone())
        .collect();
    assert_eq!(terms, [json!(null), json!("insured"), json!("self_pay")]);
    assert!(intents.iter().all(|intent| intent.key == "partner_MRN1"));

    let insured = &intents[1].action;
    assert_eq!(insured.refs(), ["account.account_payment_term_30days"]);
    check_call(
        insured.create_call(&ids).unwrap(),
        json!(["res.partner", "create", [{
            "name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1,
            "property_payment_term_id": 4,
        }]]),
    );
    check_call(
        intents[2].action.write_call(42, &ids).unwrap(),
        json!(["res.partner", "write", [[42], {
            "name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1,
            "property_payment_term_id": 1,
        }]]),
    );
    assert_eq!(
        insured.create_call(&nothing_resolved),
        Err(MissingRef {
            xmlid: "account.account_payment_term_30days".to_owned()
        })
    );
}

#[test]
fn demographics_update_reasserts_the_partner_without_personal_data() {
    let update = DemographicsUpdated {
        facility: Some("NORTH".to_owned()),
        gender: None,
        coverage: None,
        personal: Personal::Present(IdentityChanges {
            name: Some(careflow_aggregates::patient_account::HumanName {
                family: "Roe".to_owned(),
                given: vec!["Janet".to_owned()],
            }),
            birth_date: None,
            member_id: Some("M-999".to_owned()),
            address: None,
        }),
    };
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "MRN1",
            "2025-03-02T09:00:00Z",
            careflow_aggregates::patient_account::Event::from(update),
        );
    let (_, intents) = map_all(log.events());
    assert_eq!(intents.len(), 2);
    assert_eq!(intents[1].key, "partner_MRN1");
    assert_eq!(intents[1].action, intents[0].action);
}

#[test]
fn no_personal_data_reaches_an_intent_or_a_call() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN1", "2025-03-01T09:01:00Z", activated())
        .push("MRN1", "2025-03-02T09:00:00Z", payment("P1", 2_000))
        .push(
            "V1",
            "2025-03-01T11:00:00Z",
            completed("MRN1", "MAIN", &[(1, 5_000)]),
        )
        .push(
            "MRN1",
            "2025-03-01T11:01:00Z",
            charge("V1-1", "V1", 1, 5_000),
        );
    let (_, intents) = map_all(log.events());
    let mut text = serde_json::to_string(&intents).unwrap();
    for intent in &intents {
        if let Some(call) = intent.action.create_call(&ids).unwrap() {
            text.push_str(&call.to_json().to_string());
        }
    }
    // registered() holds Jane Doe, born 1980-04-12, member M-123; payment() names John Doe.
    for personal in ["Doe", "Jane", "John", "1980", "M-123"] {
        assert!(!text.contains(personal), "{personal} leaked: {text}");
    }
}

#[test]
fn erasure_puts_the_partner_back_to_the_mrn_without_an_address() {
    let log = EventLog::new().push(
        "MRN1",
        "2025-03-01T09:00:00Z",
        careflow_aggregates::patient_account::Event::from(PersonalDataErased {
            reason: "request".to_owned(),
        }),
    );
    let intents = check(
        &log,
        json!([{
            "id": format!("{}/0", eid(1)), "event_id": eid(1), "position": 1,
            "key": "partner_MRN1", "model": "res.partner",
            "action": {"action": "upsert_partner", "payment_terms": null, "values": {
                "name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1,
                "street": false, "street2": false, "city": false, "zip": false,
                "country_id": false,
            }},
        }]),
    );
    check_call(
        intents[0].action.write_call(42, &ids).unwrap(),
        json!(["res.partner", "write", [[42], {
            "name": "MRN1", "ref": "MRN1", "is_company": false, "customer_rank": 1,
            "street": false, "street2": false, "city": false, "zip": false, "country_id": false,
        }]]),
    );
}

#[test]
fn a_merged_partner_is_archived_under_the_survivor() {
    let (merged, merged_in) = merge(
        "MRN2",
        "MRN1",
        careflow_aggregates::patient_account::MovedAccount::default(),
    );
    let log = EventLog::new()
        .push("MRN2", "2025-03-01T09:00:00Z", merged)
        .push("MRN1", "2025-03-01T09:00:01Z", merged_in);
    let intents = check(
        &log,
        json!([{
            "id": format!("{}/0", eid(1)), "event_id": eid(1), "position": 1,
            "key": "partner_MRN2", "model": "res.partner",
            "action": {"action": "archive_partner", "mrn": "MRN2", "into": "partner_MRN1"},
        }]),
    );
    let archive = &intents[0].action;
    assert_eq!(archive.refs(), ["careflow.partner_MRN1"]);
    check_call(
        archive.write_call(43, &ids).unwrap(),
        json!(["res.partner", "write", [[43], {"active": false, "parent_id": 42}]]),
    );
    check_call(
        archive.natural_key_search(&ids).unwrap(),
        json!(["res.partner", "search_read",
               [[["ref", "=", "MRN2"], ["active", "in", [true, false]]]],
               {"fields": ["id"], "limit": 1}]),
    );
    check_call(
        archive.create_call(&ids).unwrap(),
        json!(["res.partner", "create", [{
            "name": "MRN2", "ref": "MRN2", "is_company": false, "customer_rank": 1,
            "active": false, "parent_id": 42,
        }]]),
    );
}

// ----- customer invoice ------------------------------------------------------------------

#[test]
fn completed_encounter_is_invoiced_once_its_last_charge_is_posted() {
    let log = EventLog::new()
        .push(
            "V1",
            "2025-03-01T11:00:00Z",
            completed("MRN1", "MAIN", &[(1, 5_000), (2, 1_250)]),
        )
        .push(
            "MRN1",
            "2025-03-01T11:01:00Z",
            charge("V1-1", "V1", 1, 5_000),
        )
        .push(
            "MRN1",
            "2025-03-01T11:02:00Z",
            charge("V1-2", "V1", 1, 1_250),
        );
    let (state, intents) = map_all(log.events());
    assert_eq!(
        serde_json::to_value(&intents).unwrap(),
        json!([{
            "id": format!("{}/0", eid(3)),
            "event_id": eid(3),
            "position": 3,
            "key": "invoice_V1",
            "model": "account.move",
            "action": {
                "action": "post_customer_invoice",
                "partner": "partner_MRN1",
                "invoice_date": "2025-03-01",
                "reference": "V1",
                "lines": [
                    {"charge_id": "V1-1", "label": "99213 office visit", "quantity": 1, "price_unit": "50.00"},
                    {"charge_id": "V1-2", "label": "99213 office visit", "quantity": 1, "price_unit": "12.50"},
                ],
            },
        }])
    );
    assert_eq!(
        state.open_records(),
        0,
        "the invoiced encounter is forgotten"
    );

    let action = &intents[0].action;
    assert_eq!(action.refs(), ["careflow.partner_MRN1"]);
    // API-NOTES.md §4.2, with `tax_ids: []` so Odoo's total is careflow's (§8).
    check_call(
        action.create_call(&ids).unwrap(),
        json!(["account.move", "create", [{
            "move_type": "out_invoice",
            "partner_id": 42,
            "invoice_date": "2025-03-01",
            "ref": "V1",
            "invoice_line_ids": [
                [0, 0, {"name": "99213 office visit", "quantity": 1, "price_unit": 50.0, "tax_ids": []}],
                [0, 0, {"name": "99213 office visit", "quantity": 1, "price_unit": 12.5, "tax_ids": []}],
            ],
        }]]),
    );
    assert_eq!(
        post_move(310).to_json(),
        json!(["account.move", "action_post", [[310]]])
    );
    assert_eq!(
        read_invoice(310).to_json(),
        json!(["account.move", "read", [[310]], {"fields": ["name", "amount_total", "state"]}])
    );
    check_call(
        action.natural_key_search(&ids).unwrap(),
        json!(["account.move", "search_read", [[["move_type", "=", "out_invoice"], ["ref", "=", "V1"]]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(action.write_call(310, &ids).unwrap(), None);
}

#[test]
fn charges_posted_before_completion_are_invoiced_by_the_completion() {
    // An HL7 DFT charge names the visit before it completes without procedures.
    let log = EventLog::new()
        .push(
            "MRN1",
            "2025-03-01T10:00:00Z",
            charge("MSG7-1", "V2", 2, 300),
        )
        .push("V2", "2025-03-01T11:00:00Z", completed("MRN1", "MAIN", &[]));
    let (state, intents) = map_all(log.events());
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].position, 2);
    assert_eq!(
        serde_json::to_value(&intents[0].action).unwrap()["lines"],
        json!([{"charge_id": "MSG7-1", "label": "99213 office visit", "quantity": 2, "price_unit": "3.00"}])
    );
    assert_eq!(state.open_records(), 0);
}

#[test]
fn nothing_is_invoiced_before_completion_or_for_an_empty_or_cancelled_encounter() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T10:00:00Z", charge("V3-1", "V3", 1, 300))
        .push(
            "V3",
            "2025-03-01T10:30:00Z",
            careflow_aggregates::encounter::Event::from(EncounterCancelled {
                reason: "no show".to_owned(),
            }),
        )
        .push("V4", "2025-03-01T11:00:00Z", completed("MRN1", "MAIN", &[]))
        .push(
            "V5",
            "2025-03-01T11:00:00Z",
            completed("MRN1", "MAIN", &[(1, 900)]),
        );
    let (state, intents) = map_all(log.events());
    assert_eq!(intents, []);
    // Only V5 waits (for its charge); the cancelled and the empty visit are forgotten.
    assert_eq!(state.open_records(), 1);
}

// ----- payment ---------------------------------------------------------------------------

#[test]
fn payment_is_registered_against_the_open_invoices_of_the_partner() {
    let log = EventLog::new().push("MRN1", "2025-03-02T09:00:00Z", payment("P1", 12_000));
    let intents = check(
        &log,
        json!([{
            "id": format!("{}/0", eid(1)),
            "event_id": eid(1),
            "position": 1,
            "key": "payment_P1",
            "model": "account.payment",
            "action": {
                "action": "register_payment",
                "partner": "partner_MRN1",
                "amount": "120.00",
                "payment_date": "2025-03-02",
                "memo": "P1",
            },
        }]),
    );
    let action = &intents[0].action;
    assert_eq!(
        open_invoices(42).to_json(),
        json!(["account.move", "search_read", [[
            ["move_type", "=", "out_invoice"],
            ["partner_id", "=", 42],
            ["state", "=", "posted"],
            ["payment_state", "in", ["not_paid", "partial"]],
        ]], {"fields": ["amount_residual"], "order": "invoice_date asc, id asc"}])
    );
    // API-NOTES.md §6 example 10.
    check_call(
        action.payment_wizard(&[310, 311]),
        json!(["account.payment.register", "create", [{
            "amount": 120.0,
            "payment_date": "2025-03-02",
            "communication": "P1",
            "group_payment": true,
            "payment_difference_handling": "open",
        }], {"context": {"active_model": "account.move", "active_ids": [310, 311]}}]),
    );
    assert_eq!(
        create_payments(5).to_json(),
        json!(["account.payment.register", "action_create_payments", [[5]]])
    );
    // No open invoice: an unreconciled payment, posted.
    check_call(
        action.create_call(&ids).unwrap(),
        json!(["account.payment", "create", [{
            "payment_type": "inbound",
            "partner_type": "customer",
            "partner_id": 42,
            "amount": 120.0,
            "date": "2025-03-02",
            "ref": "P1",
        }]]),
    );
    assert_eq!(
        post_payment(77).to_json(),
        json!(["account.payment", "action_post", [[77]]])
    );
    check_call(
        action.natural_key_search(&ids).unwrap(),
        json!(["account.payment", "search_read", [[["payment_type", "=", "inbound"], ["ref", "=", "P1"]]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(
        intents[0].action.payment_wizard(&[]).map(|c| c.method),
        Some("create".to_owned())
    );
}

// ----- remittances ------------------------------------------------------------------------

fn claim_created(payer: &str) -> ClaimEvent {
    ClaimCreated {
        account_id: "MRN1".to_owned(),
        encounter_id: "V1".to_owned(),
        payer_id: payer.to_owned(),
        lines: vec![ClaimLine {
            charge_id: "V1-1".to_owned(),
            code: "99213".to_owned(),
            quantity: 1,
            unit_price: Cents(15_000),
        }],
        currency: Currency::USD,
        total: Cents(15_000),
    }
    .into()
}

/// The payer's answer: `paid`, and one `CO-45` adjustment per amount of `adjustments`.
fn claim_response(paid: i64, adjustments: &[i64]) -> ClaimEvent {
    let adjusted: i64 = adjustments.iter().sum();
    ClaimResponseRecorded {
        outcome: if paid == 0 {
            ClaimOutcome::Denied
        } else {
            ClaimOutcome::PartiallyPaid
        },
        paid_amount: Cents(paid),
        adjustments: adjustments
            .iter()
            .map(|&amount| RemittanceAdjustment {
                reason_code: "CO-45".to_owned(),
                amount: Cents(amount),
            })
            .collect(),
        adjusted: Cents(adjusted),
        patient_balance: Cents(15_000 - paid - adjusted),
        denial_reason: (paid == 0).then(|| "not covered".to_owned()),
        reference: "CR-9".to_owned(),
    }
    .into()
}

/// What the claims process manager posts to the account for the response at `position`.
fn remitted_payment(position: u64, amount: i64) -> careflow_aggregates::patient_account::Event {
    PaymentRecorded {
        payment_id: remittance_id_for(Uuid::from_u128(u128::from(position))),
        amount: Cents(amount),
        currency: Currency::USD,
        method: PaymentMethod::Insurance,
        personal: Personal::Present(PaymentParty {
            payer: Some("ACME".to_owned()),
        }),
    }
    .into()
}

fn remitted_adjustment(
    position: u64,
    n: usize,
    amount: i64,
) -> careflow_aggregates::patient_account::Event {
    let remittance = remittance_id_for(Uuid::from_u128(u128::from(position)));
    AdjustmentApplied {
        adjustment_id: remittance_adjustment_id(&remittance, n),
        amount: Cents(-amount),
        currency: Currency::USD,
        reason: "contractual adjustment CO-45 on claim V1-ACME".to_owned(),
    }
    .into()
}

/// A claim paid in part: 108.00 paid, 20.00 and 10.00 written off.
fn remittance_log() -> EventLog {
    EventLog::new()
        .push("V1-ACME", "2025-03-01T12:00:00Z", claim_created("ACME"))
        .push(
            "V1-ACME",
            "2025-03-01T12:00:00Z",
            ClaimEvent::from(ClaimSubmitted {}),
        )
        .push(
            "V1-ACME",
            "2025-03-09T08:00:00Z",
            claim_response(10_800, &[2_000, 1_000]),
        )
        .push("MRN1", "2025-03-09T08:00:01Z", remitted_payment(3, 10_800))
        .push(
            "MRN1",
            "2025-03-09T08:00:01Z",
            remitted_adjustment(3, 0, 2_000),
        )
        .push(
            "MRN1",
            "2025-03-09T08:00:01Z",
            remitted_adjustment(3, 1, 1_000),
        )
}

#[test]
fn a_remittance_is_the_payers_payment_and_a_credit_note_per_adjustment_settling_the_invoice() {
    let remittance = format!("INS-{}", Uuid::from_u128(3).simple());
    let intents = check(
        &remittance_log(),
        json!([
            {
                "id": format!("{}/0", eid(1)),
                "event_id": eid(1),
                "position": 1,
                "key": "payer_ACME",
                "model": "res.partner",
                "action": {
                    "action": "upsert_payer",
                    "values": {"name": "ACME", "ref": "ACME", "is_company": true, "customer_rank": 1},
                },
            },
            {
                "id": format!("{}/0", eid(4)),
                "event_id": eid(4),
                "position": 4,
                "key": format!("payment_{remittance}"),
                "model": "account.payment",
                "action": {
                    "action": "register_payment",
                    "partner": "payer_ACME",
                    "amount": "108.00",
                    "payment_date": "2025-03-09",
                    "memo": format!("{remittance} claim V1-ACME remittance CR-9"),
                    "settles": "invoice_V1",
                },
            },
            {
                "id": format!("{}/0", eid(5)),
                "event_id": eid(5),
                "position": 5,
                "key": format!("adjustment_{remittance}-0"),
                "model": "account.move",
                "action": {
                    "action": "post_credit_note",
                    "partner": "partner_MRN1",
                    "invoice_date": "2025-03-09",
                    "reference": format!("{remittance}-0"),
                    "label": "contractual adjustment CO-45 on claim V1-ACME",
                    "amount": "20.00",
                    "settles": "invoice_V1",
                },
            },
            {
                "id": format!("{}/0", eid(6)),
                "event_id": eid(6),
                "position": 6,
                "key": format!("adjustment_{remittance}-1"),
                "model": "account.move",
                "action": {
                    "action": "post_credit_note",
                    "partner": "partner_MRN1",
                    "invoice_date": "2025-03-09",
                    "reference": format!("{remittance}-1"),
                    "label": "contractual adjustment CO-45 on claim V1-ACME",
                    "amount": "10.00",
                    "settles": "invoice_V1",
                },
            },
        ]),
    );
    let (payer, payment, credit_note) =
        (&intents[0].action, &intents[1].action, &intents[2].action);

    // The payer: a company partner, found by its ref among companies only.
    check_call(
        payer.create_call(&ids).unwrap(),
        json!(["res.partner", "create", [{"name": "ACME", "ref": "ACME", "is_company": true, "customer_rank": 1}]]),
    );
    check_call(
        payer.natural_key_search(&ids).unwrap(),
        json!(["res.partner", "search_read", [[["ref", "=", "ACME"], ["is_company", "=", true]]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(payer.refs(), Vec::<String>::new());

    // The payment: the payer's, not through the wizard (it pays the payment partner's own
    // invoices only), then reconciled with the patient's invoice.
    assert_eq!(
        payment.refs(),
        ["careflow.payer_ACME", "careflow.invoice_V1"]
    );
    check_call(
        payment.create_call(&ids).unwrap(),
        json!(["account.payment", "create", [{
            "payment_type": "inbound",
            "partner_type": "customer",
            "partner_id": 77,
            "amount": 108.0,
            "date": "2025-03-09",
            "ref": format!("{remittance} claim V1-ACME remittance CR-9"),
        }]]),
    );
    check_call(
        payment.natural_key_search(&ids).unwrap(),
        json!(["account.payment", "search_read", [[
            ["payment_type", "=", "inbound"],
            ["ref", "=", format!("{remittance} claim V1-ACME remittance CR-9")],
        ]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(
        calls::read_payment(51).to_json(),
        json!(["account.payment", "read", [[51]], {"fields": ["state", "move_id"]}])
    );
    assert_eq!(
        calls::receivable_lines(402).to_json(),
        json!(["account.move.line", "search_read",
               [[["move_id", "=", 402], ["account_type", "=", "asset_receivable"]]],
               {"fields": ["balance", "amount_residual", "reconciled"]}])
    );
    assert_eq!(
        calls::assign_outstanding_line(310, 1_207).to_json(),
        json!(["account.move", "js_assign_outstanding_line", [[310], 1_207]])
    );

    // Each adjustment: a one-line untaxed credit note of the patient's partner.
    assert_eq!(
        credit_note.refs(),
        ["careflow.partner_MRN1", "careflow.invoice_V1"]
    );
    check_call(
        credit_note.create_call(&ids).unwrap(),
        json!(["account.move", "create", [{
            "move_type": "out_refund",
            "partner_id": 42,
            "invoice_date": "2025-03-09",
            "ref": format!("{remittance}-0"),
            "invoice_line_ids": [[0, 0, {
                "name": "contractual adjustment CO-45 on claim V1-ACME",
                "quantity": 1,
                "price_unit": 20.0,
                "tax_ids": [],
            }]],
        }]]),
    );
    check_call(
        credit_note.natural_key_search(&ids).unwrap(),
        json!(["account.move", "search_read", [[["move_type", "=", "out_refund"], ["ref", "=", format!("{remittance}-0")]]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(
        credit_note.write_call(310, &ids).unwrap(),
        None,
        "a posted document is never rewritten"
    );
    assert_eq!(
        credit_note.create_call(&nothing_resolved),
        Err(MissingRef {
            xmlid: "careflow.partner_MRN1".to_owned()
        })
    );

    // The ids are the claims process manager's, so the account's postings are recognised;
    // once they all arrived, nothing of the claim or its remittance is kept.
    let (state, _) = map_all(remittance_log().events());
    assert_eq!(state.open_records(), 0);
}

#[test]
fn a_remittance_maps_the_same_from_a_stored_state_and_its_intents_survive_a_dead_letter() {
    let log = remittance_log();
    let events = log.events();
    let (_, once) = map_all(events);
    // Stop between the response and the account's postings, as a checkpoint would.
    let mut state = MappingState::default();
    let mut resumed = Vec::new();
    for event in &events[..4] {
        resumed.extend(map_event(&mut state, event).unwrap());
    }
    assert_eq!(
        state.open_records(),
        1,
        "the remittance awaits its adjustments"
    );
    let stored = serde_json::to_string(&state).unwrap();
    let mut state: MappingState = serde_json::from_str(&stored).unwrap();
    for event in &events[4..] {
        resumed.extend(map_event(&mut state, event).unwrap());
    }
    assert_eq!(resumed, once);
    let text = serde_json::to_string(&once).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<OdooIntent>>(&text).unwrap(),
        once
    );
    // A state stored before remittances reached Odoo still loads.
    let old: MappingState = serde_json::from_value(json!({
        "invoices": {}, "requisitions": {}, "products": [], "vendors": []
    }))
    .unwrap();
    assert_eq!(old, MappingState::default());
}

#[test]
fn each_payer_is_upserted_once() {
    let log = EventLog::new()
        .push("V1-ACME", "2025-03-01T12:00:00Z", claim_created("ACME"))
        .push("V2-ACME", "2025-03-02T12:00:00Z", claim_created("ACME"))
        .push("V3-BETA", "2025-03-03T12:00:00Z", claim_created("BETA"));
    let (_, intents) = map_all(log.events());
    let keys: Vec<&str> = intents.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["payer_ACME", "payer_BETA"]);
}

#[test]
fn payments_and_adjustments_outside_a_remittance_map_as_before() {
    let log = EventLog::new()
        // A remittance of a claim the mapping never saw created (its state predates
        // remittances in Odoo): the payment goes to the patient's partner as it used to.
        .push(
            "V9-ACME",
            "2025-03-01T12:00:00Z",
            claim_response(5_000, &[]),
        )
        .push("MRN1", "2025-03-01T12:00:01Z", remitted_payment(1, 5_000))
        // A denial moves no money and keeps the claim open; a later answer remits.
        .push("V1-ACME", "2025-03-02T12:00:00Z", claim_created("ACME"))
        .push("V1-ACME", "2025-03-03T12:00:00Z", claim_response(0, &[]))
        // The patient's own payment and a manual write-off.
        .push("MRN1", "2025-03-04T09:00:00Z", payment("P1", 1_000))
        .push("MRN1", "2025-03-04T09:00:00Z", adjustment("ADJ-1", -500))
        // A voided claim is forgotten: a response after it remits nothing.
        .push("V2-ACME", "2025-03-05T12:00:00Z", claim_created("ACME"))
        .push(
            "V2-ACME",
            "2025-03-06T12:00:00Z",
            ClaimEvent::from(ClaimVoided {
                reason: "duplicate".to_owned(),
            }),
        );
    let (state, intents) = map_all(log.events());
    let keys: Vec<(&str, &str)> = intents
        .iter()
        .map(|i| (i.key.as_str(), i.model.as_str()))
        .collect();
    let unknown = format!("payment_INS-{}", Uuid::from_u128(1).simple());
    assert_eq!(
        keys,
        [
            (unknown.as_str(), "account.payment"),
            ("payer_ACME", "res.partner"),
            ("payment_P1", "account.payment"),
        ]
    );
    for intent in [&intents[0], &intents[2]] {
        let Action::RegisterPayment {
            partner, settles, ..
        } = &intent.action
        else {
            panic!("a payment: {intent:?}");
        };
        assert_eq!((partner.as_str(), settles), ("partner_MRN1", &None));
    }
    // Only V1-ACME stays open (denied, awaiting its resubmission's answer).
    assert_eq!(state.open_records(), 1);
}

#[test]
fn money_goes_to_odoo_as_a_number_with_two_decimals() {
    assert_eq!(calls::money(Cents(12_345)), json!(123.45));
    assert_eq!(calls::money(Cents(10)), json!(0.1));
    assert_eq!(calls::money(Cents(-5)), json!(-0.05));
    assert_eq!(calls::money(Cents(0)), json!(0.0));
}

// ----- inventory -------------------------------------------------------------------------

#[test]
fn item_defined_upserts_vendor_storable_product_and_a_manual_reorder_rule() {
    let log = EventLog::new().push("GAUZE", "2025-03-01T09:00:00Z", item_defined("MAIN"));
    let intents = check(
        &log,
        json!([
            {
                "id": format!("{}/0", eid(1)), "event_id": eid(1), "position": 1,
                "key": "vendor_VEND1", "model": "res.partner",
                "action": {"action": "upsert_vendor", "values": {
                    "name": "VEND1", "ref": "VEND1", "is_company": true, "supplier_rank": 1,
                }},
            },
            {
                "id": format!("{}/1", eid(1)), "event_id": eid(1), "position": 1,
                "key": "product_GAUZE", "model": "product.product",
                "action": {"action": "upsert_product", "values": {
                    "name": "gauze", "default_code": "GAUZE", "detailed_type": "product",
                    "standard_price": 2.5, "purchase_ok": true, "sale_ok": false,
                }},
            },
            {
                "id": format!("{}/2", eid(1)), "event_id": eid(1), "position": 1,
                "key": "orderpoint_GAUZE", "model": "stock.warehouse.orderpoint",
                "action": {"action": "upsert_reorder_rule", "product": "product_GAUZE", "min_qty": 5, "max_qty": 25},
            },
        ]),
    );
    check_call(
        intents[1].action.create_call(&ids).unwrap(),
        json!(["product.product", "create", [{
            "name": "gauze", "default_code": "GAUZE", "detailed_type": "product",
            "standard_price": 2.5, "purchase_ok": true, "sale_ok": false,
        }]]),
    );
    check_call(
        intents[1].action.natural_key_search(&ids).unwrap(),
        json!(["product.product", "search_read", [[["default_code", "=", "GAUZE"]]], {"fields": ["id"], "limit": 1}]),
    );
    check_call(
        intents[0].action.natural_key_search(&ids).unwrap(),
        json!(["res.partner", "search_read", [[["ref", "=", "VEND1"]]], {"fields": ["id"], "limit": 1}]),
    );
    let rule = &intents[2].action;
    assert_eq!(rule.refs(), ["careflow.product_GAUZE"]);
    check_call(
        rule.create_call(&ids).unwrap(),
        json!(["stock.warehouse.orderpoint", "create", [{
            "product_id": 12, "product_min_qty": 5, "product_max_qty": 25, "trigger": "manual",
        }]]),
    );
    check_call(
        rule.write_call(3, &ids).unwrap(),
        json!(["stock.warehouse.orderpoint", "write", [[3], {
            "product_id": 12, "product_min_qty": 5, "product_max_qty": 25, "trigger": "manual",
        }]]),
    );
    check_call(
        rule.natural_key_search(&ids).unwrap(),
        json!(["stock.warehouse.orderpoint", "search_read", [[["product_id", "=", 12]]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(
        rule.natural_key_search(&nothing_resolved),
        Err(MissingRef {
            xmlid: "careflow.product_GAUZE".to_owned()
        })
    );
}

#[test]
fn stock_consumed_becomes_an_outgoing_picking_keyed_by_the_event() {
    let log = EventLog::new()
        .push("GAUZE", "2025-03-01T09:00:00Z", item_defined("MAIN"))
        .push("GAUZE", "2025-03-01T11:02:00Z", stock_consumed(3));
    let (_, intents) = map_all(log.events());
    let consumption = intents.last().unwrap();
    let key = format!("consumption_{}", eid(2));
    let origin = format!("V1 {key}");
    assert_eq!(
        serde_json::to_value(consumption).unwrap(),
        json!({
            "id": format!("{}/0", eid(2)), "event_id": eid(2), "position": 2,
            "key": key, "model": "stock.picking",
            "action": {"action": "consume_stock", "product": "product_GAUZE", "quantity": 3, "origin": origin},
        })
    );
    let action = &consumption.action;
    // API-NOTES.md §4.5 "Consumption as a transfer".
    check_call(
        action.create_call(&ids).unwrap(),
        json!(["stock.picking", "create", [{
            "picking_type_id": 2,
            "location_id": 8,
            "location_dest_id": 5,
            "origin": origin,
            "move_ids": [[0, 0, {
                "name": origin,
                "product_id": 12,
                "product_uom_qty": 3,
                "product_uom": 1,
                "location_id": 8,
                "location_dest_id": 5,
            }]],
        }]]),
    );
    check_call(
        action.natural_key_search(&ids).unwrap(),
        json!(["stock.picking", "search_read", [[["origin", "=", origin]]], {"fields": ["id"], "limit": 1}]),
    );
    assert_eq!(
        confirm_picking(30).to_json(),
        json!(["stock.picking", "action_confirm", [[30]]])
    );
    assert_eq!(
        assign_picking(30).to_json(),
        json!(["stock.picking", "action_assign", [[30]]])
    );
    assert_eq!(
        open_moves(&[30]).to_json(),
        json!(["stock.move", "search_read", [[["picking_id", "in", [30]], ["state", "not in", ["done", "cancel"]]]],
            {"fields": ["picking_id", "product_id", "product_uom_qty", "quantity"], "order": "id asc"}])
    );
    let moves = OpenMove::from_rows(&json!([
        {"id": 90, "picking_id": [30, "WH/OUT/00001"], "product_id": [12, "[GAUZE] gauze"], "product_uom_qty": 3.0, "quantity": 0.0},
    ]))
    .unwrap();
    let plan = action.picking_plan(&moves, &ids).unwrap().unwrap();
    assert_eq!(
        plan.writes.iter().map(Call::to_json).collect::<Vec<_>>(),
        [json!(["stock.move", "write", [[90], {"quantity": 3.0}]])]
    );
    assert_eq!(
        plan.validate.to_json(),
        json!(["stock.picking", "button_validate", [[30]], {"context": {"skip_backorder": true}}])
    );
    assert_eq!(plan.picking_ids, [30]);
    assert_eq!(
        action.create_call(&|x| (x != "stock.picking_type_out").then_some(1)),
        Err(MissingRef {
            xmlid: "stock.picking_type_out".to_owned()
        })
    );
}

// ----- purchasing ------------------------------------------------------------------------

#[test]
fn purchase_request_upserts_only_unseen_vendors_and_products() {
    let (_, intents) = map_all(purchase_log().events());
    let keys: Vec<(&str, u64)> = intents
        .iter()
        .map(|intent| (intent.key.as_str(), intent.position))
        .collect();
    assert_eq!(
        keys,
        [
            ("vendor_VEND1", 1),
            ("product_GAUZE", 1),
            ("orderpoint_GAUZE", 1),
            // GAUZE and VEND1 are known; TAPE was never defined.
            ("product_TAPE", 2),
            ("po_REQ1", 3),
        ]
    );
    assert_eq!(
        serde_json::to_value(&intents[3].action).unwrap(),
        json!({"action": "upsert_product", "values": {
            "name": "TAPE", "default_code": "TAPE", "detailed_type": "product",
            "purchase_ok": true, "sale_ok": false,
        }})
    );
}

#[test]
fn approval_creates_and_confirms_the_purchase_order() {
    let (state, intents) = map_all(purchase_log().events());
    let order = intents.last().unwrap();
    assert_eq!(
        serde_json::to_value(order).unwrap(),
        json!({
            "id": format!("{}/0", eid(3)), "event_id": eid(3), "position": 3,
            "key": "po_REQ1", "model": "purchase.order",
            "action": {
                "action": "confirm_purchase_order",
                "vendor": "vendor_VEND1",
                "partner_ref": "REQ1",
                "date_planned": "2025-03-02 11:30:00",
                "lines": [
                    {"product": "product_GAUZE", "quantity": 10, "unit_price": "1.00"},
                    {"product": "product_TAPE", "quantity": 4, "unit_price": "1.00"},
                ],
            },
        })
    );
    assert_eq!(
        state.open_records(),
        1,
        "the requisition is open until closed"
    );
    let action = &order.action;
    assert_eq!(
        action.refs(),
        [
            "careflow.vendor_VEND1",
            "careflow.product_GAUZE",
            "careflow.product_TAPE"
        ]
    );
    // API-NOTES.md §4.4 step 1, with `taxes_id: []` (17.0's order-line field, §8).
    check_call(
        action.create_call(&ids).unwrap(),
        json!(["purchase.order", "create", [{
            "partner_id": 7,
            "partner_ref": "REQ1",
            "origin": "REQ1",
            "date_planned": "2025-03-02 11:30:00",
            "order_line": [
                [0, 0, {"product_id": 12, "product_qty": 10, "price_unit": 1.0, "date_planned": "2025-03-02 11:30:00", "taxes_id": []}],
                [0, 0, {"product_id": 13, "product_qty": 4, "price_unit": 1.0, "date_planned": "2025-03-02 11:30:00", "taxes_id": []}],
            ],
        }]]),
    );
    assert_eq!(
        confirm_order(55).to_json(),
        json!(["purchase.order", "button_confirm", [[55]]])
    );
    assert_eq!(
        read_order(55).to_json(),
        json!(["purchase.order", "read", [[55]], {"fields": ["name", "state", "picking_ids", "invoice_ids"]}])
    );
    check_call(
        action.natural_key_search(&ids).unwrap(),
        json!(["purchase.order", "search_read", [[["partner_ref", "=", "REQ1"]]], {"fields": ["id"], "limit": 1}]),
    );
}

#[test]
fn approval_without_its_request_asks_for_a_rebuild() {
    let log = EventLog::new().push("REQ9", "2025-03-02T11:30:00Z", approved());
    let mut state = MappingState::default();
    let error = map_event(&mut state, &log.events()[0]).unwrap_err();
    assert!(
        matches!(
            error,
            crate::ProjectionError::MissingContext { position: 1, .. }
        ),
        "{error}"
    );
}

#[test]
fn goods_received_set_quantities_on_the_receipt_and_keep_a_backorder() {
    let log = purchase_log().push(
        "REQ1",
        "2025-03-05T08:00:00Z",
        received("RCPT1", &[("GAUZE", 6)]),
    );
    let (_, intents) = map_all(log.events());
    let receipt = intents.last().unwrap();
    assert_eq!(receipt.key, "receipt_RCPT1");
    assert_eq!(receipt.model, "stock.picking");
    assert_eq!(
        serde_json::to_value(&receipt.action).unwrap(),
        json!({"action": "receive_goods", "order": "po_REQ1", "lines": [{"product": "product_GAUZE", "quantity": 6}]})
    );
    let action = &receipt.action;
    assert_eq!(action.create_call(&ids).unwrap(), None);
    assert_eq!(action.natural_key_search(&ids).unwrap(), None);
    // The confirmed receipt, reserved in full (quantity = demand).
    let moves = OpenMove::from_rows(&json!([
        {"id": 91, "picking_id": [15, "WH/IN/00001"], "product_id": [12, "[GAUZE] gauze"], "product_uom_qty": 10.0, "quantity": 10.0},
        {"id": 92, "picking_id": [15, "WH/IN/00001"], "product_id": [13, "[TAPE] TAPE"], "product_uom_qty": 4.0, "quantity": 4.0},
    ]))
    .unwrap();
    let plan = action.picking_plan(&moves, &ids).unwrap().unwrap();
    assert_eq!(
        plan.writes.iter().map(Call::to_json).collect::<Vec<_>>(),
        [
            json!(["stock.move", "write", [[91], {"quantity": 6.0}]]),
            json!(["stock.move", "write", [[92], {"quantity": 0.0}]]),
        ]
    );
    // API-NOTES.md §6 example 11, answered with `skip_backorder`: done, backorder for the rest.
    assert_eq!(
        plan.validate.params("careflow", 2, "K"),
        json!({"service": "object", "method": "execute_kw", "args": [
            "careflow", 2, "K", "stock.picking", "button_validate", [[15]],
            {"context": {"skip_backorder": true}},
        ]})
    );
    assert_eq!(
        calls::read_pickings(&[15]).to_json(),
        json!(["stock.picking", "read", [[15]], {"fields": ["state", "origin"]}])
    );
}

#[test]
fn a_received_quantity_fills_moves_in_order_and_the_last_takes_any_excess() {
    let action = Action::ReceiveGoods {
        order: "po_REQ1".to_owned(),
        lines: vec![ReceivedLine {
            product: "product_GAUZE".to_owned(),
            quantity: 9,
        }],
    };
    let moves = [
        OpenMove {
            id: 1,
            picking_id: 15,
            product_id: 12,
            product_uom_qty: 4.0,
        },
        OpenMove {
            id: 2,
            picking_id: 16,
            product_id: 12,
            product_uom_qty: 3.0,
        },
        OpenMove {
            id: 3,
            picking_id: 17,
            product_id: 13,
            product_uom_qty: 5.0,
        },
    ];
    let plan = action.picking_plan(&moves, &ids).unwrap().unwrap();
    assert_eq!(
        plan.writes.iter().map(Call::to_json).collect::<Vec<_>>(),
        [
            json!(["stock.move", "write", [[1], {"quantity": 4.0}]]),
            json!(["stock.move", "write", [[2], {"quantity": 5.0}]]),
            json!(["stock.move", "write", [[3], {"quantity": 0.0}]]),
        ]
    );
    assert_eq!(plan.picking_ids, [15, 16]);

    let absent = Action::ReceiveGoods {
        order: "po_REQ1".to_owned(),
        lines: vec![ReceivedLine {
            product: "product_TAPE".to_owned(),
            quantity: 1,
        }],
    };
    assert_eq!(
        absent.picking_plan(&moves[..2], &ids),
        Err(PlanError::NoOpenMove {
            product: "product_TAPE".to_owned()
        })
    );
    assert_eq!(
        OpenMove::from_rows(&json!([{"id": 1, "picking_id": false}])),
        Err(PlanError::Row("picking_id"))
    );
}

#[test]
fn matched_vendor_bill_is_created_from_the_order_dated_and_posted() {
    let matched = VendorBillMatched {
        bill_id: "BILL-88".to_owned(),
        lines: vec![BillLine {
            item_id: "GAUZE".to_owned(),
            quantity: 6,
            unit_price: Cents(100),
        }],
        currency: Currency::USD,
        total: Cents(600),
    };
    let log = purchase_log().push("REQ1", "2025-03-12T08:00:00Z", PurchaseEvent::from(matched));
    let (_, intents) = map_all(log.events());
    let bill = intents.last().unwrap();
    assert_eq!(bill.key, "bill_BILL-88");
    assert_eq!(bill.model, "account.move");
    assert_eq!(
        serde_json::to_value(&bill.action).unwrap(),
        json!({
            "action": "post_vendor_bill",
            "order": "po_REQ1",
            "reference": "BILL-88",
            "invoice_date": "2025-03-12",
            "lines": [{"product": "product_GAUZE", "quantity": 6, "unit_price": "1.00"}],
        })
    );
    let action = &bill.action;
    assert_eq!(action.refs(), ["careflow.po_REQ1"]);
    assert_eq!(
        create_bill(55).to_json(),
        json!(["purchase.order", "action_create_invoice", [[55]]])
    );
    assert_eq!(
        calls::read_moves(&[70]).to_json(),
        json!(["account.move", "read", [[70]], {"fields": ["state", "ref", "move_type"]}])
    );
    check_call(
        action.bill_write(70),
        json!(["account.move", "write", [[70], {"invoice_date": "2025-03-12", "ref": "BILL-88"}]]),
    );
    assert_eq!(
        post_move(70).to_json(),
        json!(["account.move", "action_post", [[70]]])
    );
    assert_eq!(intents[0].action.bill_write(70), None);
}

#[test]
fn cancellation_cancels_an_ordered_purchase_or_locks_one_with_receipts() {
    let cancelled = |received: &[(&str, u32)]| {
        PurchaseEvent::from(PurchaseCancelled {
            reason: "budget".to_owned(),
            odoo_order_ref: Some("P00001".to_owned()),
            received: received
                .iter()
                .map(|&(item, quantity)| ReceiptLine {
                    item_id: item.to_owned(),
                    quantity,
                })
                .collect(),
        })
    };
    let (state, intents) = map_all(
        purchase_log()
            .push("REQ1", "2025-03-03T08:00:00Z", cancelled(&[]))
            .events(),
    );
    assert_eq!(
        serde_json::to_value(intents.last().unwrap()).unwrap(),
        json!({
            "id": format!("{}/0", eid(4)), "event_id": eid(4), "position": 4,
            "key": "po_REQ1", "model": "purchase.order",
            "action": {"action": "cancel_purchase_order", "order": "po_REQ1", "goods_received": false},
        })
    );
    assert_eq!(state.open_records(), 0);
    assert_eq!(
        cancel_order(55).to_json(),
        json!(["purchase.order", "button_cancel", [[55]]])
    );

    let (_, intents) = map_all(
        purchase_log()
            .push(
                "REQ1",
                "2025-03-05T08:00:00Z",
                received("RCPT1", &[("GAUZE", 6)]),
            )
            .push("REQ1", "2025-03-06T08:00:00Z", cancelled(&[("GAUZE", 6)]))
            .events(),
    );
    assert_eq!(
        intents.last().unwrap().action,
        Action::CancelPurchaseOrder {
            order: "po_REQ1".to_owned(),
            goods_received: true
        }
    );
    assert_eq!(
        cancel_pickings(&[16]).to_json(),
        json!(["stock.picking", "action_cancel", [[16]]])
    );
    assert_eq!(
        lock_order(55).to_json(),
        json!(["purchase.order", "button_done", [[55]]])
    );

    // Cancelled before approval: no order exists in Odoo.
    let log = EventLog::new()
        .push(
            "REQ2",
            "2025-03-02T10:00:00Z",
            requested("MAIN", &[("GAUZE", 1)]),
        )
        .push(
            "REQ2",
            "2025-03-02T10:05:00Z",
            PurchaseEvent::from(PurchaseCancelled {
                reason: "typo".to_owned(),
                odoo_order_ref: None,
                received: Vec::new(),
            }),
        );
    let (state, intents) = map_all(log.events());
    assert!(intents.iter().all(|i| i.key != "po_REQ2"), "{intents:?}");
    assert_eq!(state.open_records(), 0);
}

#[test]
fn a_closed_purchase_is_forgotten_and_its_order_ref_maps_to_nothing() {
    let log = purchase_log()
        .push(
            "REQ1",
            "2025-03-02T11:31:00Z",
            PurchaseEvent::from(PurchaseOrderPlaced {
                odoo_order_ref: "P00001".to_owned(),
            }),
        )
        .push(
            "REQ1",
            "2025-03-20T08:00:00Z",
            PurchaseEvent::from(PurchaseClosed {}),
        );
    let (state, intents) = map_all(log.events());
    assert_eq!(intents.len(), 5, "nothing after the order: {intents:?}");
    assert_eq!(state.open_records(), 0);
}

// ----- the whole log ---------------------------------------------------------------------

fn journeys() -> EventLog {
    purchase_log()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN1", "2025-03-01T09:01:00Z", activated())
        .push(
            "V1",
            "2025-03-01T09:30:00Z",
            scheduled("MRN1", "MAIN", EncounterClass::Outpatient),
        )
        .push(
            "V1",
            "2025-03-01T11:00:00Z",
            completed("MRN1", "MAIN", &[(1, 5_000)]),
        )
        .push(
            "MRN1",
            "2025-03-01T11:01:00Z",
            charge("V1-1", "V1", 1, 5_000),
        )
        .push(
            "GAUZE",
            "2025-03-01T11:02:00Z",
            careflow_aggregates::inventory_item::Event::from(StockConsumed {
                quantity: 2,
                reference: "V1".to_owned(),
            }),
        )
        .push("MRN1", "2025-03-02T09:00:00Z", payment("P1", 5_000))
        .push(
            "REQ1",
            "2025-03-05T08:00:00Z",
            received("RCPT1", &[("GAUZE", 10), ("TAPE", 4)]),
        )
        .push(
            "REQ1",
            "2025-03-20T08:00:00Z",
            PurchaseEvent::from(PurchaseClosed {}),
        )
        .push_raw(
            "access_log-2025-03-02",
            "RecordAccessed",
            1,
            json!({"account_id": "MRN1", "action": "history"}),
            "2025-03-02T10:00:00Z",
            "auditor",
        )
}

#[test]
fn both_journeys_map_to_their_records_and_leave_no_open_state() {
    let (state, intents) = map_all(journeys().events());
    let keys: Vec<&str> = intents.iter().map(|i| i.key.as_str()).collect();
    let consumption = format!("consumption_{}", eid(9));
    assert_eq!(
        keys,
        [
            "vendor_VEND1",
            "product_GAUZE",
            "orderpoint_GAUZE",
            "product_TAPE",
            "po_REQ1",
            "partner_MRN1",
            "partner_MRN1",
            "invoice_V1",
            consumption.as_str(),
            "payment_P1",
            "receipt_RCPT1",
        ]
    );
    assert_eq!(
        state,
        MappingState::default().with_catalogue(&["GAUZE", "TAPE"], &["VEND1"])
    );
    assert_eq!(state.open_records(), 0);
    // Every intent id is unique and every intent names its action's model.
    let mut ids: Vec<&str> = intents.iter().map(|i| i.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), intents.len());
    assert!(intents.iter().all(|i| i.model == i.action.model()));
}

#[test]
fn mapping_is_a_deterministic_fold_and_its_state_round_trips() {
    let log = journeys();
    let events = log.events();
    let (_, once) = map_all(events);
    // Stop half way, store the state as the executor would, resume from it.
    let mut state = MappingState::default();
    let mut resumed = Vec::new();
    for event in &events[..7] {
        resumed.extend(map_event(&mut state, event).unwrap());
    }
    let stored = serde_json::to_string(&state).unwrap();
    let mut state: MappingState = serde_json::from_str(&stored).unwrap();
    for event in &events[7..] {
        resumed.extend(map_event(&mut state, event).unwrap());
    }
    assert_eq!(resumed, once);
    let (_, again) = map_all(events);
    assert_eq!(again, once);
    // Intents survive a dead-letter round trip.
    let text = serde_json::to_string(&once).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<OdooIntent>>(&text).unwrap(),
        once
    );
}

#[test]
fn acknowledgements_and_other_internal_streams_map_to_nothing() {
    let ack = OdooRecordAcknowledged {
        external_id: "invoice_V1".to_owned(),
        model: "account.move".to_owned(),
        odoo_id: 310,
        name: "INV/2025/00001".to_owned(),
        amount_total: Cents(5_000),
        state: "posted".to_owned(),
    };
    let log = EventLog::new().push_raw(
        &ack.stream(),
        ACK_EVENT_TYPE,
        1,
        ack.to_data(),
        "2025-03-01T12:00:00Z",
        "odoo-executor",
    );
    check(&log, json!([]));
}

// ----- external ids, errors, acknowledgement ---------------------------------------------

#[test]
fn external_id_lookup_and_create_are_the_calls_api_notes_shows() {
    // API-NOTES.md §6 examples 4 and 6.
    assert_eq!(
        xmlid_lookup("partner_CUST-42").params("careflow", 2, "K"),
        json!({"service": "object", "method": "execute_kw", "args": [
            "careflow", 2, "K", "ir.model.data", "search_read",
            [[["module", "=", "careflow"], ["name", "=", "partner_CUST-42"]]],
            {"fields": ["model", "res_id"], "limit": 1},
        ]})
    );
    assert_eq!(
        xmlid_create("partner_CUST-42", "res.partner", 42).params("careflow", 2, "K"),
        json!({"service": "object", "method": "execute_kw", "args": [
            "careflow", 2, "K", "ir.model.data", "create",
            [{"module": "careflow", "name": "partner_CUST-42", "model": "res.partner", "res_id": 42, "noupdate": true}],
        ]})
    );
    // A careflow name may hold dots: Odoo splits at the first one only.
    assert_eq!(
        calls::xmlid_lookup_complete(&complete_xmlid("partner_MRN.1")),
        Some(xmlid_lookup("partner_MRN.1"))
    );
    assert_eq!(
        calls::xmlid_lookup_complete("stock.stock_location_stock").map(|c| c.to_json()),
        Some(json!(["ir.model.data", "search_read",
            [[["module", "=", "stock"], ["name", "=", "stock_location_stock"]]],
            {"fields": ["model", "res_id"], "limit": 1}]))
    );
    assert_eq!(calls::xmlid_lookup_complete("nodot"), None);
}

#[test]
fn odoo_errors_are_classified_by_data_name() {
    let duplicate = "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"\nDETAIL:  Key (module, name)=(careflow, partner_CUST-42) already exists.\n";
    for (name, message, expected) in [
        (
            "odoo.exceptions.AccessDenied",
            "Access Denied",
            ErrorClass::Auth,
        ),
        (
            "odoo.exceptions.AccessDenied",
            "Too many login failures, please wait a bit before trying again.",
            ErrorClass::Auth,
        ),
        (
            "odoo.exceptions.AccessError",
            "Private methods (such as _xmlid_lookup) cannot be called remotely.",
            ErrorClass::Auth,
        ),
        (
            "odoo.exceptions.UserError",
            "You need to add a line before posting.",
            ErrorClass::Poison,
        ),
        (
            "odoo.exceptions.ValidationError",
            "The operation cannot be completed: A replenishment rule already exists",
            ErrorClass::Poison,
        ),
        (
            "odoo.exceptions.ValidationError",
            duplicate,
            ErrorClass::DuplicateXmlid,
        ),
        (
            "odoo.exceptions.MissingError",
            "Record does not exist or has been deleted.",
            ErrorClass::Poison,
        ),
        (
            "builtins.ValueError",
            "External ID not found",
            ErrorClass::Poison,
        ),
        ("builtins.KeyError", "'foo'", ErrorClass::Poison),
        // The unique-index text under another exception is not the xmlid race.
        ("odoo.exceptions.UserError", duplicate, ErrorClass::Poison),
        (
            "psycopg2.errors.SerializationFailure",
            "could not serialize access due to concurrent update",
            ErrorClass::Retry,
        ),
        (
            "psycopg2.errors.DeadlockDetected",
            "deadlock detected",
            ErrorClass::Retry,
        ),
        (
            "psycopg2.errors.LockNotAvailable",
            "could not obtain lock",
            ErrorClass::Retry,
        ),
        (
            "psycopg2.OperationalError",
            "server closed the connection",
            ErrorClass::Retry,
        ),
        ("odoo.exceptions.ConcurrencyError", "", ErrorClass::Retry),
        (
            "psycopg2.errors.UniqueViolation",
            duplicate,
            ErrorClass::Poison,
        ),
    ] {
        assert_eq!(classify_error(name, message), expected, "{name}: {message}");
    }
}

#[test]
fn acknowledgement_reads_the_posted_invoice_and_has_a_stable_command_id() {
    let row = json!({"id": 310, "name": "INV/2025/00001", "amount_total": 62.5, "state": "posted"});
    let ack = OdooRecordAcknowledged::from_read("invoice_V1", "account.move", &row).unwrap();
    assert_eq!(
        ack.to_data(),
        json!({
            "external_id": "invoice_V1",
            "model": "account.move",
            "odoo_id": 310,
            "name": "INV/2025/00001",
            "amount_total": "62.50",
            "state": "posted",
        })
    );
    assert_eq!(ack.stream(), "odoo-invoice_V1");
    assert_eq!(
        serde_json::from_value::<OdooRecordAcknowledged>(ack.to_data()).unwrap(),
        ack
    );
    let again = OdooRecordAcknowledged::from_read("invoice_V1", "account.move", &row).unwrap();
    assert_eq!(again.command_id(), ack.command_id());
    let cancelled = OdooRecordAcknowledged {
        state: "cancel".to_owned(),
        ..ack.clone()
    };
    assert_ne!(cancelled.command_id(), ack.command_id());
    // Floats Odoo rounds to cents come back exact.
    let row = json!({"id": 1, "name": "X", "amount_total": 0.29, "state": "posted"});
    assert_eq!(
        OdooRecordAcknowledged::from_read("invoice_V2", "account.move", &row)
            .unwrap()
            .amount_total,
        Cents(29)
    );
    assert_eq!(
        OdooRecordAcknowledged::from_read(
            "invoice_V2",
            "account.move",
            &json!({"id": 1, "name": false})
        ),
        Err(ack::AckError::Field {
            field: "name",
            expected: "string"
        })
    );
}

#[test]
fn answers_are_read_as_a_17_0_server_gives_them() {
    // API-NOTES.md §6 example 4: miss, then hit.
    assert_eq!(calls::xmlid_res_id(&json!([])), Ok(None));
    assert_eq!(
        calls::xmlid_res_id(&json!([{"id": 901, "model": "res.partner", "res_id": 42}])),
        Ok(Some(42))
    );
    assert_eq!(
        calls::xmlid_res_id(&json!([{"id": 901, "model": "res.partner", "res_id": false}])),
        Ok(None)
    );
    assert!(calls::xmlid_res_id(&json!({"res_id": 42})).is_err());
    assert_eq!(calls::found_id(&json!([{"id": 7}])), Ok(Some(7)));
    assert_eq!(calls::found_id(&json!([])), Ok(None));
    assert!(calls::found_id(&json!([{"name": "x"}])).is_err());
    // §6 example 5: a single dict answers an int, a list a list.
    assert_eq!(calls::created_id(&json!(42)), Ok(42));
    assert!(calls::created_id(&json!([42, 43])).is_err());
    // §6 example 10.
    assert_eq!(
        calls::action_res_id(&json!({"name": "Payments", "type": "ir.actions.act_window",
            "res_model": "account.payment", "context": {"create": false}, "view_mode": "form", "res_id": 77})),
        Some(77)
    );
    assert_eq!(calls::action_res_id(&json!(true)), None);

    let order = calls::OrderRow::from_read(&json!([{
        "id": 55, "name": "P00001", "state": "purchase", "picking_ids": [15], "invoice_ids": [],
    }]))
    .unwrap();
    assert_eq!(
        order,
        calls::OrderRow {
            id: 55,
            name: "P00001".to_owned(),
            state: "purchase".to_owned(),
            picking_ids: vec![15],
            invoice_ids: vec![],
        }
    );
    assert!(order.is_confirmed());
    let draft = calls::OrderRow::from_read(&json!([{
        "id": 55, "name": "P00001", "state": "draft", "picking_ids": [], "invoice_ids": [],
    }]))
    .unwrap();
    assert!(!draft.is_confirmed());
    assert!(calls::OrderRow::from_read(&json!([])).is_err());
    assert!(calls::OrderRow::from_read(&json!([{"id": 55, "name": "P1", "state": "draft", "picking_ids": false, "invoice_ids": []}])).is_err());
}

#[test]
fn refs_name_each_dependency_once() {
    let order = Action::ConfirmPurchaseOrder {
        vendor: "vendor_VEND1".to_owned(),
        partner_ref: "REQ1".to_owned(),
        date_planned: "2025-03-02 11:30:00".to_owned(),
        lines: vec![
            OrderLine {
                product: "product_GAUZE".to_owned(),
                quantity: 1,
                unit_price: Cents(100),
            },
            OrderLine {
                product: "product_GAUZE".to_owned(),
                quantity: 2,
                unit_price: Cents(90),
            },
        ],
    };
    assert_eq!(
        order.refs(),
        ["careflow.vendor_VEND1", "careflow.product_GAUZE"]
    );
}

mod proptests;
