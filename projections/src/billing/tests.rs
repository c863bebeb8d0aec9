use careflow_aggregates::encounter::EncounterClass;
use careflow_aggregates::{Cents, Currency, Total};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::*;
use crate::store::MemoryViewStore;
use crate::testing::events::*;
use crate::testing::{EventLog, assert_tables, replay};

/// Replays `log` into a fresh view and compares each table named in `expected` as a whole:
/// `{"table": {"key": {"field": value, ...}}}`, where each expected row lists only the fields
/// that test cares about.
#[track_caller]
fn check(log: EventLog, expected: Value) {
    let store = replay(&Billing, log.events());
    assert_tables(&store, &expected);
    // Determinism: the same events into a fresh store give the same view.
    assert_eq!(
        replay(&Billing, log.events()),
        store,
        "second replay differs"
    );
}

#[track_caller]
fn check_aging(log: EventLog, as_of: &str, expected: Value) {
    let store = replay(&Billing, log.events());
    let as_of: NaiveDate = as_of.parse().unwrap();
    let report = aging(&store, as_of).unwrap();
    assert_eq!(serde_json::to_value(&report).unwrap(), expected);
}

#[test]
fn account_balance_charges_payments_and_adjustments() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "MRN1",
            "2025-03-01T10:00:00Z",
            charge("C1", "V1", 2, 12_550),
        )
        .push("MRN1", "2025-03-01T10:05:00Z", charge("C2", "V1", 1, 4_000))
        .push("MRN1", "2025-03-02T11:00:00Z", payment("P1", 10_000))
        .push("MRN1", "2025-03-03T12:00:00Z", adjustment("A1", -1_050));
    check(
        log,
        json!({
            "billing_accounts": {"MRN1": {
                "account_id": "MRN1", "status": "registered", "facility": "MAIN",
                "currency": "USD", "balance": "180.50", "charged": "291.00", "paid": "100.00",
                "adjusted": "-10.50", "charge_count": 2, "payment_count": 1,
                "adjustment_count": 1, "version": 5, "position": 5,
            }},
            "billing_charges": {
                "MRN1/C1": {"encounter_id": "V1", "quantity": 2, "unit_price": "125.50",
                            "amount": "251.00", "currency": "USD",
                            "occurred_at": "2025-03-01T10:00:00Z", "position": 2},
                "MRN1/C2": {"amount": "40.00"},
            },
            "billing_payments": {"MRN1/P1": {
                "amount": "100.00", "method": "card", "occurred_at": "2025-03-02T11:00:00Z",
            }},
            "billing_adjustments": {"MRN1/A1": {"amount": "-10.50", "reason": "contractual"}},
        }),
    );
}

#[test]
fn status_follows_the_lifecycle_and_facility_follows_updates() {
    use careflow_aggregates::patient_account::{
        AccountActivated, AccountClosed, AccountFlaggedSelfPay, DemographicsUpdated,
        Event as AccountEvent,
    };
    let update = AccountEvent::from(DemographicsUpdated {
        facility: Some("EAST".to_owned()),
        gender: None,
        coverage: None,
        personal: careflow_aggregates::Personal::Erased,
    });
    let base = EventLog::new().push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"));
    let active = base.clone().push(
        "MRN1",
        "2025-03-01T09:01:00Z",
        AccountEvent::from(AccountActivated {}),
    );
    check(
        active.clone(),
        json!({"billing_accounts": {"MRN1": {"status": "active", "facility": "MAIN"}}}),
    );
    let self_pay = active.push(
        "MRN1",
        "2025-03-01T09:02:00Z",
        AccountEvent::from(AccountFlaggedSelfPay {
            reason: "denied".to_owned(),
        }),
    );
    check(
        self_pay.clone(),
        json!({"billing_accounts": {"MRN1": {"status": "self_pay"}}}),
    );
    let closed = self_pay.push("MRN1", "2025-03-01T09:03:00Z", update).push(
        "MRN1",
        "2025-03-01T09:04:00Z",
        AccountEvent::from(AccountClosed {}),
    );
    check(
        closed,
        json!({"billing_accounts": {"MRN1": {
            "status": "closed", "facility": "EAST", "balance": "0.00", "currency": null,
            "version": 5,
        }}}),
    );
}

#[test]
fn no_personal_data_reaches_the_view() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN1", "2025-03-01T10:00:00Z", charge("C1", "V1", 1, 1_000))
        .push("MRN1", "2025-03-01T11:00:00Z", payment("P1", 1_000));
    let store = replay(&Billing, log.events());
    let dump = serde_json::to_string(store.tables()).unwrap();
    for personal in ["Doe", "Jane", "1980-04-12", "M-123", "John"] {
        assert!(!dump.contains(personal), "{personal} leaked into {dump}");
    }
}

#[test]
fn claim_lines_are_grouped_by_encounter() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN2", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN1", "2025-03-01T10:00:00Z", charge("C1", "V1", 1, 5_000))
        .push("MRN1", "2025-03-01T10:00:00Z", charge("C2", "V2", 3, 200))
        .push("MRN1", "2025-03-01T10:00:00Z", charge("C3", "V1", 1, 75));
    let store = replay(&Billing, log.events());
    let lines: Vec<String> = store
        .scan_prefix(CLAIM_LINES, "V1/")
        .unwrap()
        .into_iter()
        .map(|(key, row)| format!("{key} {} {}", row["account_id"], row["amount"]))
        .collect();
    assert_eq!(
        lines,
        ["V1/C1 \"MRN1\" \"50.00\"", "V1/C3 \"MRN1\" \"0.75\""]
    );
    check(
        log,
        json!({
            "billing_claim_lines": {
                "V1/C1": {"encounter_id": "V1", "charge_id": "C1", "quantity": 1,
                          "unit_price": "50.00", "currency": "USD"},
                "V1/C3": {"amount": "0.75"},
                "V2/C2": {"quantity": 3, "amount": "6.00"},
            },
        }),
    );
}

#[test]
fn reconciliation_rows_await_odoo_once_the_encounter_is_complete() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "V1",
            "2025-03-01T09:30:00Z",
            scheduled("MRN1", "MAIN", EncounterClass::Outpatient),
        )
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
            "2025-03-01T11:01:00Z",
            charge("V1-2", "V1", 1, 1_250),
        )
        // A charge for a visit not yet completed (e.g. from HL7 DFT) opens its row too.
        .push("MRN1", "2025-03-01T12:00:00Z", charge("X-1", "V2", 1, 999));
    check(
        log,
        json!({"billing_reconciliation": {
            "V1": {
                "external_id": "invoice_V1", "encounter_id": "V1", "account_id": "MRN1",
                "facility": "MAIN", "completed_at": "2025-03-01T11:00:00Z",
                "procedures_total": "62.50", "billed": {"USD": "62.50"}, "billed_lines": 2,
                "status": "awaiting_odoo",
                "odoo": {"id": null, "name": null, "amount_total": null, "state": null},
            },
            "V2": {
                "external_id": "invoice_V2", "account_id": "MRN1", "facility": null,
                "completed_at": null, "procedures_total": null, "billed": {"USD": "9.99"},
                "billed_lines": 1, "status": "open",
            },
        }}),
    );
}

/// A completed visit V1 billed 62.50 in two charges.
fn invoiced_visit() -> EventLog {
    EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
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
        )
}

/// What the Odoo executor appends after posting `invoice_{visit}`.
fn acknowledged(log: EventLog, visit: &str, amount_total: i64, state: &str) -> EventLog {
    let ack = crate::odoo::OdooRecordAcknowledged {
        external_id: format!("invoice_{visit}"),
        model: "account.move".to_owned(),
        odoo_id: 310,
        name: "INV/2025/00001".to_owned(),
        amount_total: Cents(amount_total),
        state: state.to_owned(),
    };
    log.push_raw(
        &ack.stream(),
        crate::odoo::ACK_EVENT_TYPE,
        1,
        ack.to_data(),
        "2025-03-01T11:05:00Z",
        "odoo-executor",
    )
}

#[test]
fn reconciliation_records_what_odoo_acknowledged_and_agrees_when_amounts_match() {
    check(
        acknowledged(invoiced_visit(), "V1", 6_250, "posted"),
        json!({"billing_reconciliation": {"V1": {
            "external_id": "invoice_V1", "billed": {"USD": "62.50"}, "billed_lines": 2,
            "status": "acknowledged",
            "odoo": {"id": 310, "name": "INV/2025/00001", "amount_total": "62.50", "state": "posted"},
        }}}),
    );
}

#[test]
fn reconciliation_flags_a_different_total_a_late_charge_or_a_cancelled_invoice() {
    check(
        acknowledged(invoiced_visit(), "V1", 6_000, "posted"),
        json!({"billing_reconciliation": {"V1": {
            "status": "mismatch",
            "odoo": {"id": 310, "name": "INV/2025/00001", "amount_total": "60.00", "state": "posted"},
        }}}),
    );
    let late = acknowledged(invoiced_visit(), "V1", 6_250, "posted").push(
        "MRN1",
        "2025-03-02T09:00:00Z",
        charge("MSG9-1", "V1", 1, 100),
    );
    check(
        late,
        json!({"billing_reconciliation": {"V1": {
            "billed": {"USD": "63.50"}, "billed_lines": 3, "status": "mismatch",
        }}}),
    );
    check(
        acknowledged(invoiced_visit(), "V1", 6_250, "cancel"),
        json!({"billing_reconciliation": {"V1": {"status": "mismatch"}}}),
    );
}

#[test]
fn reconciliation_ignores_acknowledgements_of_other_records() {
    let log = acknowledged(EventLog::new(), "V1", 100, "posted");
    let mut store = MemoryViewStore::new();
    let mut ack = log.events()[0].clone();
    ack.stream_id = careflow_aggregates::StreamId::parse("odoo-bill_B1").unwrap();
    ack.data["external_id"] = json!("bill_B1");
    Billing.apply(&mut store, &ack).unwrap();
    assert_eq!(store, MemoryViewStore::new());
}

#[test]
fn a_malformed_acknowledgement_stops_billing_at_its_position() {
    let log = acknowledged(invoiced_visit(), "V1", 6_250, "posted");
    let mut ack = log.events()[4].clone();
    ack.data["amount_total"] = json!(62.5);
    let mut store = replay(&Billing, &log.events()[..4]);
    let error = Billing.apply(&mut store, &ack).unwrap_err();
    assert!(
        matches!(error, ProjectionError::Decode { position: 5, .. }),
        "{error}"
    );
    ack.data["amount_total"] = json!("62.50");
    ack.schema_version = 2;
    assert!(matches!(
        Billing.apply(&mut store, &ack),
        Err(ProjectionError::Decode { .. })
    ));
}

#[test]
fn billing_keeps_odoo_fields_it_did_not_write() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "V1",
            "2025-03-01T11:00:00Z",
            completed("MRN1", "MAIN", &[(1, 5_000)]),
        );
    let mut store = replay(&Billing, log.events());
    let mut row: InvoiceReconciliation = load(&store, RECONCILIATION, "V1").unwrap().unwrap();
    row.odoo = OdooInvoice {
        id: Some(42),
        name: Some("INV/2025/00001".to_owned()),
        amount_total: Some(Cents(5_000)),
        state: Some("posted".to_owned()),
    };
    save(&mut store, RECONCILIATION, "V1", &row).unwrap();
    let later = log.push(
        "MRN1",
        "2025-03-01T11:01:00Z",
        charge("V1-1", "V1", 1, 5_000),
    );
    Billing.apply(&mut store, &later.events()[2]).unwrap();
    let row: InvoiceReconciliation = load(&store, RECONCILIATION, "V1").unwrap().unwrap();
    assert_eq!(row.odoo.id, Some(42));
    assert_eq!(row.billed.get(&Currency::USD), Some(&Total(5_000)));
}

#[test]
fn payments_settle_the_oldest_charges_first() {
    let log = EventLog::new()
        .push("MRN1", "2025-01-01T09:00:00Z", registered("MAIN"))
        .push(
            "MRN1",
            "2025-01-10T10:00:00Z",
            charge("C1", "V1", 1, 10_000),
        )
        .push(
            "MRN1",
            "2025-02-10T10:00:00Z",
            charge("C2", "V2", 1, 20_000),
        )
        // Backdated: business time before C1, so it is the oldest item.
        .push("MRN1", "2025-01-05T10:00:00Z", charge("C0", "V0", 1, 3_000))
        .push("MRN1", "2025-03-01T10:00:00Z", payment("P1", 8_000));
    check(
        log,
        json!({"billing_receivables": {"MRN1": {
            "currency": "USD", "unapplied_credit": "0.00",
            "items": [
                {"source": "charge", "id": "C1", "occurred_at": "2025-01-10T10:00:00Z",
                 "position": 2, "amount": "100.00", "open": "50.00"},
                {"source": "charge", "id": "C2", "occurred_at": "2025-02-10T10:00:00Z",
                 "position": 3, "amount": "200.00", "open": "200.00"},
            ],
        }}}),
    );
}

#[test]
fn write_offs_settle_like_payments_and_credit_waits_for_the_next_charge() {
    let log = EventLog::new()
        .push("MRN1", "2025-01-01T09:00:00Z", registered("MAIN"))
        .push(
            "MRN1",
            "2025-01-10T10:00:00Z",
            charge("C1", "V1", 1, 10_000),
        )
        .push("MRN1", "2025-01-11T10:00:00Z", adjustment("A1", 2_500))
        .push("MRN1", "2025-01-12T10:00:00Z", adjustment("W1", -11_000))
        .push("MRN1", "2025-01-13T10:00:00Z", adjustment("W2", -2_000));
    check(
        log.clone(),
        json!({
            "billing_accounts": {"MRN1": {"balance": "-5.00"}},
            "billing_receivables": {"MRN1": {"unapplied_credit": "5.00", "items": []}},
        }),
    );
    let later = log.push("MRN1", "2025-01-20T10:00:00Z", charge("C2", "V2", 1, 1_200));
    check(
        later,
        json!({
            "billing_accounts": {"MRN1": {"balance": "7.00"}},
            "billing_receivables": {"MRN1": {"unapplied_credit": "0.00", "items": [
                {"source": "charge", "id": "C2", "occurred_at": "2025-01-20T10:00:00Z",
                 "position": 6, "amount": "12.00", "open": "7.00"},
            ]}},
        }),
    );
}

#[test]
fn aging_buckets_by_business_date_as_of_the_callers_date() {
    let log = EventLog::new()
        .push("MRN1", "2024-10-01T09:00:00Z", registered("MAIN"))
        // Ages as of 2025-03-31: 0, 30, 31, 60, 61, 90, 91, 120, 121 days, and -1 (future).
        .push("MRN1", "2025-03-31T23:59:00Z", charge("D0", "V", 1, 1))
        .push("MRN1", "2025-03-01T00:00:00Z", charge("D30", "V", 1, 10))
        .push("MRN1", "2025-02-28T10:00:00Z", charge("D31", "V", 1, 100))
        .push("MRN1", "2025-01-30T10:00:00Z", charge("D60", "V", 1, 1_000))
        .push(
            "MRN1",
            "2025-01-29T10:00:00Z",
            charge("D61", "V", 1, 10_000),
        )
        .push(
            "MRN1",
            "2024-12-31T10:00:00Z",
            charge("D90", "V", 1, 100_000),
        )
        .push(
            "MRN1",
            "2024-12-30T10:00:00Z",
            charge("D91", "V", 1, 1_000_000),
        )
        .push(
            "MRN1",
            "2024-12-01T10:00:00Z",
            charge("D120", "V", 1, 10_000_000),
        )
        .push(
            "MRN1",
            "2024-11-30T10:00:00Z",
            charge("D121", "V", 1, 100_000_000),
        )
        .push("MRN1", "2025-04-01T10:00:00Z", charge("F1", "V", 1, 2))
        .push("MRN2", "2025-01-01T09:00:00Z", registered("EAST"))
        .push("MRN2", "2025-01-01T10:00:00Z", charge("C1", "V9", 1, 5_000))
        .push("MRN2", "2025-02-01T10:00:00Z", payment("P1", 1_000))
        // A settled account and one never charged are left out.
        .push("MRN3", "2025-01-01T09:00:00Z", registered("EAST"))
        .push("MRN3", "2025-01-01T10:00:00Z", charge("C1", "V8", 1, 5_000))
        .push("MRN3", "2025-01-02T10:00:00Z", payment("P1", 5_000))
        .push("MRN4", "2025-01-01T09:00:00Z", registered("EAST"));
    check_aging(
        log,
        "2025-03-31",
        json!({
            "as_of": "2025-03-31",
            "accounts": [
                {"account_id": "MRN1", "currency": "USD", "unapplied_credit": "0.00",
                 "buckets": {"days_0_30": "0.13", "days_31_60": "11.00",
                             "days_61_90": "1100.00", "days_91_120": "110000.00",
                             "days_over_120": "1000000.00", "total": "1111111.13"}},
                {"account_id": "MRN2", "currency": "USD", "unapplied_credit": "0.00",
                 "buckets": {"days_0_30": "0.00", "days_31_60": "0.00",
                             "days_61_90": "40.00", "days_91_120": "0.00",
                             "days_over_120": "0.00", "total": "40.00"}},
            ],
            "totals": {"USD": {"days_0_30": "0.13", "days_31_60": "11.00",
                               "days_61_90": "1140.00", "days_91_120": "110000.00",
                               "days_over_120": "1000000.00", "total": "1111151.13"}},
        }),
    );
}

#[test]
fn aging_of_an_empty_view_is_empty() {
    check_aging(
        EventLog::new(),
        "2025-03-31",
        json!({"as_of": "2025-03-31", "accounts": [], "totals": {}}),
    );
}

#[test]
fn stock_purchase_and_internal_streams_leave_billing_alone() {
    let log = EventLog::new()
        .push("GAUZE", "2025-03-01T09:00:00Z", item_defined("MAIN"))
        .push(
            "REQ1",
            "2025-03-01T09:00:00Z",
            requested("MAIN", &[("GAUZE", 5)]),
        )
        .push_raw(
            "timer-T1",
            "DeadlineSet",
            1,
            json!({"x": 1}),
            "2025-03-01T09:00:00Z",
            "pm",
        );
    assert_eq!(replay(&Billing, log.events()), MemoryViewStore::new());
}

#[test]
fn charge_posted_v1_is_upcast_before_billing() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push_raw(
            "patient_account-MRN1",
            "ChargePosted",
            1,
            json!({"charge_id": "OLD1", "encounter_id": "V1", "code": "X", "description": "old",
                   "quantity": 3, "unit_price": 1_050}),
            "2024-01-01T00:00:00Z",
            "import",
        );
    check(
        log,
        json!({
            "billing_accounts": {"MRN1": {"balance": "31.50", "currency": "USD"}},
            "billing_charges": {"MRN1/OLD1": {"unit_price": "10.50", "amount": "31.50"}},
        }),
    );
}

#[test]
fn an_undecodable_event_stops_billing_at_its_position() {
    let log = EventLog::new().push_raw(
        "patient_account-MRN1",
        "ChargeReversed",
        1,
        json!({}),
        "2025-03-01T09:00:00Z",
        "x",
    );
    let mut store = MemoryViewStore::new();
    let error = Billing.apply(&mut store, &log.events()[0]).unwrap_err();
    assert!(
        matches!(&error, ProjectionError::Decode { position: 1, event_type, .. } if event_type == "ChargeReversed"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "event at position 1 (ChargeReversed) does not decode: patient_account has no event type ChargeReversed"
    );
}

mod proptests;

/// Issue #15 part 5, defect 1: amounts the old contract accepted (each far inside `i64`) on
/// several accounts of one facility and one visit made the account, invoice and aging sums
/// leave `i64`, and the view stopped for good. History already stored keeps such amounts, so
/// the view must sum them.
#[test]
fn large_amounts_on_several_accounts_of_one_visit_never_stop_the_view() {
    let big = i64::MAX / 2;
    let mut log = EventLog::new();
    for mrn in ["MRN1", "MRN2", "MRN3"] {
        log = log
            .push(mrn, "2025-03-01T09:00:00Z", registered("MAIN"))
            .push(mrn, "2025-03-01T10:00:00Z", charge("C1", "V1", 1, big))
            .push(mrn, "2025-03-01T10:05:00Z", payment("P1", big))
            .push(mrn, "2025-03-01T10:06:00Z", charge("C2", "V1", 1, big));
    }
    let store = replay(&Billing, log.events());
    let billed = i128::from(big) * 6;
    let account = json!({
        "charged": Total(i128::from(big) * 2).to_string(),
        "balance": Cents(big).to_string(),
        "charge_count": 2,
    });
    assert_tables(
        &store,
        &json!({
            "billing_accounts": {"MRN1": account, "MRN2": account, "MRN3": account},
            "billing_reconciliation": {"V1": {
                "billed": {"USD": Total(billed).to_string()},
                "billed_lines": 6,
            }},
        }),
    );
    let report = aging(&store, "2025-03-02".parse().unwrap()).unwrap();
    assert_eq!(
        report.totals[&Currency::USD].total.to_string(),
        Total(i128::from(big) * 3).to_string()
    );
}

/// MRN-A (charged 100, paid 30) is merged into MRN-B (charged 50).
fn merged_accounts(survivor_took_over: bool) -> EventLog {
    use careflow_aggregates::patient_account::{Charge, MovedAccount, MovedPayment};
    let moved = MovedAccount {
        currency: Some(Currency::USD),
        balance: Cents(7_000),
        charges: vec![Charge {
            charge_id: "C1".into(),
            encounter_id: "V1".into(),
            code: "99213".into(),
            description: "office visit".into(),
            quantity: 1,
            unit_price: Cents(10_000),
            amount: Cents(10_000),
        }],
        payments: vec![MovedPayment {
            payment_id: "P1".into(),
            amount: Cents(3_000),
            method: careflow_aggregates::patient_account::PaymentMethod::Card,
        }],
        adjustments: vec![],
    };
    let (merged, merged_in) = merge("MRN-A", "MRN-B", moved);
    let log = EventLog::new()
        .push("MRN-A", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "MRN-A",
            "2025-03-01T10:00:00Z",
            charge("C1", "V1", 1, 10_000),
        )
        .push("MRN-A", "2025-03-02T10:00:00Z", payment("P1", 3_000))
        .push("MRN-B", "2025-03-03T09:00:00Z", registered("EAST"))
        .push(
            "MRN-B",
            "2025-03-03T10:00:00Z",
            charge("C9", "V9", 1, 5_000),
        )
        .push("MRN-A", "2025-03-04T09:00:00Z", merged);
    if survivor_took_over {
        log.push("MRN-B", "2025-03-04T09:00:01Z", merged_in)
    } else {
        log
    }
}

#[test]
fn a_merged_account_keeps_its_money_until_the_survivor_takes_it_over() {
    check(
        merged_accounts(false),
        json!({
            "billing_accounts": {
                "MRN-A": {"status": "merged", "merged_into": "MRN-B", "balance": "70.00",
                          "charged": "100.00", "paid": "30.00"},
                "MRN-B": {"balance": "50.00", "charged": "50.00"},
            },
        }),
    );
}

#[test]
fn the_survivor_takes_over_totals_rows_and_open_items_counted_once() {
    let store = replay(&Billing, merged_accounts(true).events());
    assert_tables(
        &store,
        &json!({
            "billing_accounts": {
                "MRN-A": {"status": "merged", "merged_into": "MRN-B", "balance": "0.00",
                          "charged": "0.00", "paid": "0.00", "adjusted": "0.00",
                          "charge_count": 0, "payment_count": 0},
                "MRN-B": {"balance": "120.00", "charged": "150.00", "paid": "30.00",
                          "charge_count": 2, "payment_count": 1, "merged_from": ["MRN-A"]},
            },
            "billing_charges": {
                "MRN-B/C1": {"account_id": "MRN-B", "amount": "100.00"},
                "MRN-B/C9": {"account_id": "MRN-B", "amount": "50.00"},
            },
            "billing_payments": {"MRN-B/P1": {"account_id": "MRN-B", "amount": "30.00"}},
            "billing_claim_lines": {
                "V1/C1": {"account_id": "MRN-B"},
                "V9/C9": {"account_id": "MRN-B"},
            },
        }),
    );
    // The open items moved in age order: C1 (70.00 left after P1), then C9.
    let report = aging(&store, "2025-03-05".parse().unwrap()).unwrap();
    let report = serde_json::to_value(&report).unwrap();
    let accounts = report["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{report}");
    assert_eq!(accounts[0]["account_id"], "MRN-B", "{report}");
    assert_eq!(accounts[0]["buckets"]["total"], "120.00", "{report}");
}
