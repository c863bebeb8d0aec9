//! Given/when/then tests of every PatientAccount rule, its codec and its command contract.

use chrono::NaiveDate;
use serde_json::json;

use super::*;
use crate::aggregate::Aggregate;
use crate::codec::{DecodeError, DomainEvent};
use crate::money::{Cents, Currency};
use crate::personal::Personal;
use crate::rejection::Rejection;
use crate::stream_id::StreamIdError;
use crate::testing::{assert_codec_round_trip, assert_contract_body, given, given_no_history};

// ---- fixtures ----

fn jane() -> HumanName {
    HumanName {
        family: "Doe".into(),
        given: vec!["Jane".into()],
    }
}

fn birth_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1980, 4, 12).unwrap()
}

fn register() -> RegisterPatient {
    RegisterPatient {
        name: jane(),
        birth_date: birth_date(),
        gender: Gender::Female,
        facility: "MAIN".into(),
        coverage: Some(CoverageDetails {
            payer_id: "ACME".into(),
            member_id: "M-123".into(),
            plan: Some("gold".into()),
        }),
        address: None,
    }
}

fn registered() -> Event {
    PatientRegistered {
        facility: "MAIN".into(),
        gender: Gender::Female,
        coverage: Some(Coverage {
            payer_id: "ACME".into(),
            plan: Some("gold".into()),
        }),
        personal: Personal::Present(PatientIdentity {
            name: jane(),
            birth_date: birth_date(),
            member_id: Some("M-123".into()),
            address: None,
        }),
    }
    .into()
}

fn charge(charge_id: &str, unit_price: i64) -> PostCharge {
    PostCharge {
        charge_id: charge_id.into(),
        encounter_id: "V-1".into(),
        code: "99213".into(),
        description: "office visit".into(),
        quantity: 1,
        unit_price: Cents(unit_price),
        currency: Currency::USD,
    }
}

fn charged(charge_id: &str, amount: i64) -> Event {
    ChargePosted {
        charge_id: charge_id.into(),
        encounter_id: "V-1".into(),
        code: "99213".into(),
        description: "office visit".into(),
        quantity: 1,
        unit_price: Cents(amount),
        amount: Cents(amount),
        currency: Currency::USD,
    }
    .into()
}

fn payment(payment_id: &str, amount: i64) -> RecordPayment {
    RecordPayment {
        payment_id: payment_id.into(),
        amount: Cents(amount),
        method: PaymentMethod::Card,
        payer: None,
        currency: Currency::USD,
    }
}

fn paid(payment_id: &str, amount: i64) -> Event {
    PaymentRecorded {
        payment_id: payment_id.into(),
        amount: Cents(amount),
        currency: Currency::USD,
        method: PaymentMethod::Card,
        personal: Personal::Present(PaymentParty { payer: None }),
    }
    .into()
}

fn adjustment(adjustment_id: &str, amount: i64) -> ApplyAdjustment {
    ApplyAdjustment {
        adjustment_id: adjustment_id.into(),
        amount: Cents(amount),
        reason: "contractual write-off".into(),
        currency: Currency::USD,
    }
}

fn adjusted(adjustment_id: &str, amount: i64) -> Event {
    AdjustmentApplied {
        adjustment_id: adjustment_id.into(),
        amount: Cents(amount),
        currency: Currency::USD,
        reason: "contractual write-off".into(),
    }
    .into()
}

fn closed() -> Event {
    AccountClosed {}.into()
}

fn erased() -> Event {
    PersonalDataErased {
        reason: "patient request".into(),
    }
    .into()
}

// ---- registration ----

#[test]
fn registering_opens_the_account() {
    given_no_history::<PatientAccount>()
        .when(register())
        .then_expect([registered()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(AccountStatus::Registered));
            assert_eq!(s.balance, Cents::ZERO);
            assert_eq!(s.identity.as_ref().map(|i| &i.name), Some(&jane()));
        });
}

#[test]
fn registering_twice_is_a_conflict() {
    given([registered()])
        .when(register())
        .then_rejects(Rejection::AlreadyRegistered);
}

#[test]
fn registration_is_validated_before_the_state() {
    given([registered()])
        .when(RegisterPatient {
            name: HumanName {
                family: " ".into(),
                given: vec![],
            },
            ..register()
        })
        .then_rejects(Rejection::EmptyField {
            field: "name.family",
        });
    given_no_history::<PatientAccount>()
        .when(RegisterPatient {
            birth_date: NaiveDate::from_ymd_opt(2025, 3, 2).unwrap(),
            ..register()
        })
        .then_rejects(Rejection::BirthDateInFuture);
    given_no_history::<PatientAccount>()
        .when(RegisterPatient {
            coverage: Some(CoverageDetails {
                payer_id: "ACME".into(),
                member_id: "M 123".into(),
                plan: None,
            }),
            ..register()
        })
        .then_rejects(Rejection::InvalidId {
            field: "coverage.member_id",
            reason: StreamIdError::IdCharacter(' '),
        });
    given_no_history::<PatientAccount>()
        .when(RegisterPatient {
            facility: "".into(),
            ..register()
        })
        .then_rejects(Rejection::EmptyField { field: "facility" });
}

#[test]
fn registration_keeps_personal_fields_under_one_object() {
    let encoded = PatientAccount::encode(&registered());
    assert_eq!(encoded.event_type, "PatientRegistered");
    assert_eq!(encoded.schema_version, 1);
    assert_eq!(
        encoded.data,
        json!({
            "facility": "MAIN",
            "gender": "female",
            "coverage": {"payer_id": "ACME", "plan": "gold"},
            "personal": {
                "name": {"family": "Doe", "given": ["Jane"]},
                "birth_date": "1980-04-12",
                "member_id": "M-123"
            }
        })
    );
}

// ---- every other command needs a registered, open account ----

fn every_command_but_registration() -> Vec<Command> {
    vec![
        UpdateDemographics {
            facility: Some("EAST".into()),
            ..Default::default()
        }
        .into(),
        RecordEligibility {
            payer_id: "ACME".into(),
            eligible: true,
            reference: None,
        }
        .into(),
        ActivateAccount {}.into(),
        FlagSelfPay {
            reason: "no coverage".into(),
        }
        .into(),
        charge("C1", 100).into(),
        payment("P1", 100).into(),
        adjustment("A1", -100).into(),
        CloseAccount {}.into(),
    ]
}

#[test]
fn nothing_but_registration_before_registering() {
    for command in every_command_but_registration() {
        given_no_history::<PatientAccount>()
            .when(command)
            .then_rejects(Rejection::NotRegistered);
    }
    given_no_history::<PatientAccount>()
        .when(ErasePersonalData {
            reason: "patient request".into(),
        })
        .then_rejects(Rejection::NotRegistered);
}

#[test]
fn nothing_but_erasure_after_closing() {
    for command in every_command_but_registration() {
        given([registered(), closed()])
            .when(command)
            .then_rejects(Rejection::AccountClosed);
    }
    given([registered(), closed()])
        .when(register())
        .then_rejects(Rejection::AlreadyRegistered);
    given([registered(), closed()])
        .when(ErasePersonalData {
            reason: "patient request".into(),
        })
        .then_expect([erased()]);
}

// ---- demographics ----

#[test]
fn demographics_update_changes_only_what_it_names() {
    let new_name = HumanName {
        family: "Roe".into(),
        given: vec!["Jane".into(), "Q".into()],
    };
    given([registered()])
        .when(UpdateDemographics {
            name: Some(new_name.clone()),
            facility: Some("EAST".into()),
            ..Default::default()
        })
        .then_expect([DemographicsUpdated {
            facility: Some("EAST".into()),
            gender: None,
            coverage: None,
            personal: Personal::Present(IdentityChanges {
                name: Some(new_name.clone()),
                birth_date: None,
                member_id: None,
                address: None,
            }),
        }
        .into()])
        .then_state_matches(|s| {
            let identity = s.identity.as_ref().unwrap();
            assert_eq!(identity.name, new_name);
            assert_eq!(identity.birth_date, birth_date());
            assert_eq!(identity.member_id.as_deref(), Some("M-123"));
            assert_eq!(s.facility, "EAST");
            assert_eq!(s.gender, Some(Gender::Female));
        });
}

#[test]
fn coverage_update_splits_member_id_into_personal() {
    given([registered()])
        .when(UpdateDemographics {
            coverage: Some(CoverageDetails {
                payer_id: "OTHER".into(),
                member_id: "X9".into(),
                plan: None,
            }),
            ..Default::default()
        })
        .then_expect([DemographicsUpdated {
            facility: None,
            gender: None,
            coverage: Some(Coverage {
                payer_id: "OTHER".into(),
                plan: None,
            }),
            personal: Personal::Present(IdentityChanges {
                member_id: Some("X9".into()),
                ..Default::default()
            }),
        }
        .into()])
        .then_state_matches(|s| {
            assert_eq!(s.coverage.as_ref().unwrap().payer_id, "OTHER");
            assert_eq!(
                s.identity.as_ref().unwrap().member_id.as_deref(),
                Some("X9")
            );
        });
}

#[test]
fn demographics_update_must_name_a_field() {
    given([registered()])
        .when(UpdateDemographics::default())
        .then_rejects(Rejection::EmptyUpdate);
}

#[test]
fn personal_fields_cannot_return_after_erasure() {
    given([registered(), erased()])
        .when(UpdateDemographics {
            name: Some(jane()),
            ..Default::default()
        })
        .then_rejects(Rejection::PersonalDataErased);
    given([registered(), erased()])
        .when(UpdateDemographics {
            gender: Some(Gender::Other),
            ..Default::default()
        })
        .then_state_matches(|s| assert_eq!(s.gender, Some(Gender::Other)));
}

// ---- eligibility and status ----

#[test]
fn eligibility_answers_are_recorded() {
    given([registered()])
        .when(RecordEligibility {
            payer_id: "ACME".into(),
            eligible: true,
            reference: Some("R-1".into()),
        })
        .then_expect([EligibilityVerified {
            payer_id: "ACME".into(),
            reference: Some("R-1".into()),
        }
        .into()]);
    given([registered()])
        .when(RecordEligibility {
            payer_id: "ACME".into(),
            eligible: false,
            reference: None,
        })
        .then_expect([EligibilityDenied {
            payer_id: "ACME".into(),
            reference: None,
        }
        .into()])
        .then_state_matches(|s| assert!(!s.eligibility.as_ref().unwrap().eligible));
    given([registered()])
        .when(RecordEligibility {
            payer_id: "ac me".into(),
            eligible: true,
            reference: None,
        })
        .then_rejects(Rejection::InvalidId {
            field: "payer_id",
            reason: StreamIdError::IdCharacter(' '),
        });
}

#[test]
fn activation_and_self_pay_move_between_each_other() {
    given([registered()])
        .when(ActivateAccount {})
        .then_expect([AccountActivated {}.into()])
        .then_state_matches(|s| assert_eq!(s.status, Some(AccountStatus::Active)));
    given([registered(), AccountActivated {}.into()])
        .when(ActivateAccount {})
        .then_no_events();
    given([registered(), AccountActivated {}.into()])
        .when(FlagSelfPay {
            reason: "coverage denied".into(),
        })
        .then_expect([AccountFlaggedSelfPay {
            reason: "coverage denied".into(),
        }
        .into()])
        .then_state_matches(|s| assert_eq!(s.status, Some(AccountStatus::SelfPay)));
    let self_pay: Event = AccountFlaggedSelfPay { reason: "x".into() }.into();
    given([registered(), self_pay.clone()])
        .when(FlagSelfPay { reason: "y".into() })
        .then_no_events();
    given([registered(), self_pay])
        .when(ActivateAccount {})
        .then_expect([AccountActivated {}.into()]);
    given([registered()])
        .when(FlagSelfPay { reason: "".into() })
        .then_rejects(Rejection::EmptyField { field: "reason" });
}

// ---- charges ----

#[test]
fn a_charge_adds_quantity_times_unit_price_to_the_balance() {
    given([registered()])
        .when(PostCharge {
            quantity: 3,
            unit_price: Cents(12_550),
            ..charge("C1", 0)
        })
        .then_expect([ChargePosted {
            charge_id: "C1".into(),
            encounter_id: "V-1".into(),
            code: "99213".into(),
            description: "office visit".into(),
            quantity: 3,
            unit_price: Cents(12_550),
            amount: Cents(37_650),
            currency: Currency::USD,
        }
        .into()])
        .then_state_matches(|s| {
            assert_eq!(s.balance, Cents(37_650));
            assert_eq!(s.charges.len(), 1);
            assert_eq!(s.currency, Some(Currency::USD));
        });
}

#[test]
fn a_charge_id_is_posted_once() {
    given([registered(), charged("C1", 100)])
        .when(charge("C1", 100))
        .then_rejects(Rejection::DuplicateCharge {
            charge_id: "C1".into(),
        });
}

#[test]
fn charges_are_validated() {
    let cases: Vec<(PostCharge, Rejection)> = vec![
        (
            PostCharge {
                quantity: 0,
                ..charge("C1", 100)
            },
            Rejection::InvalidQuantity { field: "quantity" },
        ),
        (
            charge("C1", -1),
            Rejection::NegativeAmount {
                field: "unit_price",
            },
        ),
        (
            charge("C/1", 100),
            Rejection::InvalidId {
                field: "charge_id",
                reason: StreamIdError::IdCharacter('/'),
            },
        ),
        (
            PostCharge {
                encounter_id: "".into(),
                ..charge("C1", 100)
            },
            Rejection::InvalidId {
                field: "encounter_id",
                reason: StreamIdError::IdLength(0),
            },
        ),
        (
            PostCharge {
                quantity: 2,
                ..charge("C1", i64::MAX)
            },
            Rejection::AmountOutOfRange {
                field: "unit_price",
            },
        ),
    ];
    for (command, rejection) in cases {
        assert_eq!(rejection.status(), 422);
        given([registered()]).when(command).then_rejects(rejection);
    }
}

#[test]
fn a_free_charge_is_allowed() {
    given([registered()])
        .when(charge("C0", 0))
        .then_state_matches(|s| assert_eq!(s.balance, Cents::ZERO));
}

#[test]
fn a_balance_that_would_overflow_is_refused() {
    given([registered(), charged("C1", i64::MAX)])
        .when(charge("C2", 1))
        .then_rejects(Rejection::AmountOutOfRange { field: "amount" });
}

#[test]
fn an_account_keeps_one_currency() {
    given([registered(), charged("C1", 100)])
        .when(PostCharge {
            currency: Currency::parse("EUR").unwrap(),
            ..charge("C2", 100)
        })
        .then_rejects(Rejection::CurrencyMismatch {
            expected: Currency::USD,
            found: Currency::parse("EUR").unwrap(),
        });
    given([registered(), charged("C1", 100)])
        .when(RecordPayment {
            currency: Currency::parse("EUR").unwrap(),
            ..payment("P1", 100)
        })
        .then_rejects_with_status(409);
}

// ---- payments ----

#[test]
fn a_payment_reduces_the_balance() {
    given([registered(), charged("C1", 12_500)])
        .when(payment("P1", 5_000))
        .then_expect([paid("P1", 5_000)])
        .then_state_matches(|s| assert_eq!(s.balance, Cents(7_500)));
}

#[test]
fn a_payment_may_settle_the_balance_exactly() {
    given([registered(), charged("C1", 12_500)])
        .when(payment("P1", 12_500))
        .then_state_matches(|s| assert_eq!(s.balance, Cents::ZERO));
}

#[test]
fn a_payment_above_the_balance_is_an_overpayment() {
    given([registered(), charged("C1", 12_500)])
        .when(payment("P1", 20_000))
        .then_rejects(Rejection::Overpayment {
            balance: Cents(12_500),
        });
}

#[test]
fn a_payment_must_be_positive() {
    for amount in [0, -100] {
        given([registered(), charged("C1", 12_500)])
            .when(payment("P1", amount))
            .then_rejects(Rejection::NonPositiveAmount { field: "amount" });
    }
}

#[test]
fn a_payment_id_is_recorded_once() {
    given([registered(), charged("C1", 12_500), paid("P1", 100)])
        .when(payment("P1", 100))
        .then_rejects(Rejection::DuplicatePayment {
            payment_id: "P1".into(),
        });
}

#[test]
fn the_payer_is_personal() {
    let command = RecordPayment {
        payer: Some("John Guarantor".into()),
        ..payment("P1", 100)
    };
    let outcome = given([registered(), charged("C1", 12_500)]).when(command);
    let encoded = PatientAccount::encode(&outcome.events()[0]);
    assert_eq!(encoded.data["personal"], json!({"payer": "John Guarantor"}));
    assert!(encoded.data.get("payer").is_none());
}

// ---- adjustments ----

#[test]
fn adjustments_are_signed() {
    given([registered(), charged("C1", 12_500)])
        .when(adjustment("A1", -2_500))
        .then_expect([adjusted("A1", -2_500)])
        .then_state_matches(|s| assert_eq!(s.balance, Cents(10_000)));
    given([registered(), charged("C1", 12_500)])
        .when(adjustment("A1", 700))
        .then_state_matches(|s| assert_eq!(s.balance, Cents(13_200)));
}

#[test]
fn adjustments_are_unique_and_not_zero() {
    given([registered(), adjusted("A1", 100)])
        .when(adjustment("A1", 100))
        .then_rejects(Rejection::DuplicateAdjustment {
            adjustment_id: "A1".into(),
        });
    given([registered()])
        .when(adjustment("A2", 0))
        .then_rejects(Rejection::ZeroAmount { field: "amount" });
}

#[test]
fn balance_is_charges_minus_payments_plus_adjustments() {
    given([
        registered(),
        charged("C1", 10_000),
        charged("C2", 2_550),
        paid("P1", 5_000),
        adjusted("A1", -550),
        adjusted("A2", 100),
    ])
    .when(ActivateAccount {})
    .then_state_matches(|s| {
        assert_eq!(s.balance, Cents(10_000 + 2_550 - 5_000 - 550 + 100));
    });
}

// ---- closing ----

#[test]
fn an_account_closes_only_at_zero() {
    given([registered(), charged("C1", 12_500), paid("P1", 2_500)])
        .when(CloseAccount {})
        .then_rejects(Rejection::BalanceNotZero {
            balance: Cents(10_000),
        });
    given([registered(), adjusted("A1", -100)])
        .when(CloseAccount {})
        .then_rejects(Rejection::BalanceNotZero {
            balance: Cents(-100),
        });
    given([registered(), charged("C1", 12_500), paid("P1", 12_500)])
        .when(CloseAccount {})
        .then_expect([closed()])
        .then_state_matches(|s| assert_eq!(s.status, Some(AccountStatus::Closed)));
}

// ---- erasure ----

#[test]
fn erasure_forgets_identity_and_payers_and_repeats_as_a_no_op() {
    let paid_by_guarantor: Event = PaymentRecorded {
        payment_id: "P1".into(),
        amount: Cents(100),
        currency: Currency::USD,
        method: PaymentMethod::Cash,
        personal: Personal::Present(PaymentParty {
            payer: Some("guarantor".into()),
        }),
    }
    .into();
    given([registered(), charged("C1", 500), paid_by_guarantor])
        .when(ErasePersonalData {
            reason: "patient request".into(),
        })
        .then_expect([erased()])
        .then_state_matches(|s| {
            assert_eq!(s.identity, None);
            assert!(s.personal_data_erased);
            assert_eq!(s.payments[0].payer, None);
            assert_eq!(s.balance, Cents(400), "money survives erasure");
        });
    given([registered(), erased()])
        .when(ErasePersonalData {
            reason: "patient request".into(),
        })
        .then_no_events();
}

#[test]
fn an_erased_history_still_decodes_and_replays() {
    // What the shell hands over once the data key is destroyed: `personal` is null or gone.
    let mut registered_data = PatientAccount::encode(&registered()).data;
    registered_data["personal"] = serde_json::Value::Null;
    let mut paid_data = PatientAccount::encode(&paid("P1", 100)).data;
    paid_data.as_object_mut().unwrap().remove("personal");
    let history = [
        PatientAccount::decode("PatientRegistered", 1, registered_data).unwrap(),
        PatientAccount::decode(
            "ChargePosted",
            2,
            PatientAccount::encode(&charged("C1", 500)).data,
        )
        .unwrap(),
        PatientAccount::decode("PaymentRecorded", 1, paid_data).unwrap(),
        erased(),
    ];
    let Event::PatientRegistered(e) = &history[0] else {
        panic!("not a registration")
    };
    assert_eq!(e.personal, Personal::Erased);
    let state = PatientAccount::replay(&history);
    assert_eq!(state.status, Some(AccountStatus::Registered));
    assert_eq!(state.identity, None);
    assert_eq!(state.balance, Cents(400));
}

// ---- codec ----

fn one_of_each_event() -> Vec<Event> {
    vec![
        registered(),
        DemographicsUpdated {
            facility: Some("EAST".into()),
            gender: Some(Gender::Unknown),
            coverage: None,
            personal: Personal::Present(IdentityChanges::default()),
        }
        .into(),
        EligibilityVerified {
            payer_id: "ACME".into(),
            reference: None,
        }
        .into(),
        EligibilityDenied {
            payer_id: "ACME".into(),
            reference: Some("R".into()),
        }
        .into(),
        AccountActivated {}.into(),
        AccountFlaggedSelfPay { reason: "r".into() }.into(),
        charged("C1", 100),
        paid("P1", 100),
        adjusted("A1", -5),
        closed(),
        erased(),
        merged_into("MRN-2", moved(100, vec![office_visit("C1", 100)], vec![])),
        merged_in(
            "MRN-1",
            moved(
                -50,
                vec![],
                vec![MovedPayment {
                    payment_id: "P1".into(),
                    amount: Cents(50),
                    method: PaymentMethod::Insurance,
                }],
            ),
        ),
    ]
}

#[test]
fn every_event_type_round_trips_through_the_codec() {
    let events = one_of_each_event();
    let mut types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    types.sort_unstable();
    let mut all = Event::EVENT_TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(types, all, "the sample covers every event type");
    for event in &events {
        assert_codec_round_trip::<PatientAccount>(event);
    }
}

#[test]
fn charge_posted_v1_is_upcast_on_read() {
    let v1 = json!({
        "charge_id": "C1",
        "encounter_id": "V-1",
        "code": "99213",
        "description": "office visit",
        "quantity": 2,
        "unit_price": 12_550
    });
    let event = PatientAccount::decode("ChargePosted", 1, v1).unwrap();
    assert_eq!(
        event,
        ChargePosted {
            charge_id: "C1".into(),
            encounter_id: "V-1".into(),
            code: "99213".into(),
            description: "office visit".into(),
            quantity: 2,
            unit_price: Cents(12_550),
            amount: Cents(25_100),
            currency: Currency::USD,
        }
        .into()
    );
    // Re-encoding writes the current version; the stored v1 bytes are never rewritten.
    let encoded = PatientAccount::encode(&event);
    assert_eq!(encoded.schema_version, 2);
    assert_eq!(encoded.data["unit_price"], json!("125.50"));
    assert_eq!(encoded.data["amount"], json!("251.00"));
}

#[test]
fn a_malformed_v1_charge_is_reported_not_guessed() {
    let v1 = json!({"charge_id": "C1", "encounter_id": "V", "code": "c", "description": "d",
                    "quantity": 1, "unit_price": "125.50"});
    assert_eq!(
        PatientAccount::decode("ChargePosted", 1, v1),
        Err(DecodeError::Upcast {
            event_type: "ChargePosted".into(),
            version: 1,
            reason: "v1 unit_price must be an integer of cents".into()
        })
    );
}

#[test]
fn decoding_refuses_unknown_types_future_versions_and_bad_data() {
    assert_eq!(
        PatientAccount::decode("ChargeReversed", 1, json!({})),
        Err(DecodeError::UnknownEventType {
            kind: "patient_account",
            event_type: "ChargeReversed".into()
        })
    );
    assert_eq!(
        PatientAccount::decode("AccountClosed", 2, json!({})),
        Err(DecodeError::FutureSchemaVersion {
            event_type: "AccountClosed".into(),
            found: 2,
            current: 1
        })
    );
    assert_eq!(
        PatientAccount::decode("ChargePosted", 0, json!({})),
        Err(DecodeError::MissingUpcaster {
            event_type: "ChargePosted".into(),
            version: 0
        })
    );
    let bad = PatientAccount::decode("AccountFlaggedSelfPay", 1, json!({"reason": 7}));
    assert!(
        matches!(bad, Err(DecodeError::Data { ref detail, .. }) if !detail.contains('7')),
        "{bad:?}"
    );
}

// ---- command bodies (the pinned contract) ----

#[track_caller]
fn parse(body: serde_json::Value) -> Result<Command, Rejection> {
    PatientAccount::parse_command(body).map(|b| b.command)
}

#[test]
fn every_command_parses_from_its_contract_shape() {
    let cases = [
        (
            json!({"type": "RegisterPatient", "name": {"family": "Doe", "given": ["Jane"]},
                   "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
                   "coverage": {"payer_id": "ACME", "member_id": "M-123", "plan": "gold"}}),
            register().into(),
        ),
        (
            json!({"type": "RegisterPatient", "name": {"family": "Doe", "given": ["Jane"]},
                   "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN"}),
            RegisterPatient {
                coverage: None,
                ..register()
            }
            .into(),
        ),
        (
            json!({"type": "UpdateDemographics", "gender": "other"}),
            UpdateDemographics {
                gender: Some(Gender::Other),
                ..Default::default()
            }
            .into(),
        ),
        (
            json!({"type": "RecordEligibility", "payer_id": "ACME", "eligible": true,
                   "reference": "R-1"}),
            RecordEligibility {
                payer_id: "ACME".into(),
                eligible: true,
                reference: Some("R-1".into()),
            }
            .into(),
        ),
        (
            json!({"type": "ActivateAccount"}),
            ActivateAccount {}.into(),
        ),
        (
            json!({"type": "FlagSelfPay", "reason": "no coverage"}),
            FlagSelfPay {
                reason: "no coverage".into(),
            }
            .into(),
        ),
        (
            json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V-1",
                   "code": "99213", "description": "office visit", "quantity": 1,
                   "unit_price": "125.50"}),
            charge("C1", 12_550).into(),
        ),
        (
            json!({"type": "RecordPayment", "payment_id": "P1", "amount": "50",
                   "method": "card"}),
            payment("P1", 5_000).into(),
        ),
        (
            json!({"type": "RecordPayment", "payment_id": "P1", "amount": "50.00",
                   "method": "insurance", "payer": "ACME", "currency": "USD"}),
            RecordPayment {
                method: PaymentMethod::Insurance,
                payer: Some("ACME".into()),
                ..payment("P1", 5_000)
            }
            .into(),
        ),
        (
            json!({"type": "ApplyAdjustment", "adjustment_id": "A1", "amount": "-4.1",
                   "reason": "contractual write-off"}),
            adjustment("A1", -410).into(),
        ),
        (json!({"type": "CloseAccount"}), CloseAccount {}.into()),
    ];
    for (body, expected) in cases {
        assert_contract_body::<PatientAccount>(body, expected);
    }
}

#[test]
fn occurred_at_is_taken_out_of_the_body() {
    let body = PatientAccount::parse_command(
        json!({"type": "CloseAccount", "occurred_at": "2025-02-01T08:00:00Z"}),
    )
    .unwrap();
    assert_eq!(body.command, CloseAccount {}.into());
    assert_eq!(
        body.occurred_at.map(|t| t.to_rfc3339()),
        Some("2025-02-01T08:00:00+00:00".into())
    );
    assert_eq!(
        parse(json!({"type": "CloseAccount", "occurred_at": "yesterday"})),
        Err(Rejection::InvalidCommand {
            detail: "occurred_at must be an RFC 3339 timestamp".into()
        })
    );
}

#[test]
fn bodies_outside_the_contract_are_refused() {
    let refused = [
        json!({"type": "CloseAccount", "force": true}),
        json!({"type": "ActivateAccount", "reason": "x"}),
        json!({"type": "RegisterPatient", "name": {"family": "Doe", "given": [], "nick": "J"},
               "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN"}),
        json!({"type": "RegisterPatient", "name": {"family": "Doe"},
               "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
               "coverage": {"payer_id": "A", "member_id": "M", "group": "g"}}),
        json!({"type": "RegisterPatient", "name": {"family": "Doe"},
               "birth_date": "1980-04-12", "gender": "f", "facility": "MAIN"}),
        json!({"type": "RegisterPatient", "name": {"family": "Doe"},
               "birth_date": "12/04/1980", "gender": "female", "facility": "MAIN"}),
        json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V-1", "code": "c",
               "description": "d", "quantity": 1, "unit_price": 125.5}),
        json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V-1", "code": "c",
               "description": "d", "quantity": 1, "unit_price": "125.505"}),
        json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V-1", "code": "c",
               "description": "d", "quantity": -1, "unit_price": "1"}),
        json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V-1", "code": "c",
               "description": "d", "quantity": 1, "unit_price": "1", "currency": "usd"}),
        json!({"type": "RecordPayment", "payment_id": "P1", "amount": "5", "method": "cheque"}),
        json!({"type": "ErasePersonalData"}),
        json!({"type": "PostPayment"}),
        json!({"charge_id": "C1"}),
        json!(["PostCharge"]),
    ];
    for body in refused {
        let result = parse(body.clone());
        assert!(
            matches!(result, Err(Rejection::InvalidCommand { .. })),
            "{body} gave {result:?}"
        );
        if let Err(rejection) = result {
            assert_eq!(rejection.status(), 422);
        }
    }
}

#[test]
fn an_unknown_field_is_named_in_the_rejection() {
    assert_eq!(
        parse(json!({"type": "CloseAccount", "force": true})),
        Err(Rejection::InvalidCommand {
            detail: "unknown field `force`, there are no fields".into()
        })
    );
}

#[test]
fn a_misplaced_name_never_reaches_the_rejection_text() {
    let result = parse(json!({"type": "RegisterPatient", "name": "Jane Doe",
                              "birth_date": "1980-04-12", "gender": "female",
                              "facility": "MAIN"}));
    let text = result.unwrap_err().to_string();
    assert!(!text.contains("Jane"), "{text}");
    let result = parse(json!({"type": "RegisterPatient", "name": {"family": "Doe"},
                              "birth_date": "1980-13-45", "gender": "female",
                              "facility": "MAIN"}));
    let text = result.unwrap_err().to_string();
    assert!(!text.contains("1980"), "{text}");
}

#[test]
fn commands_serialise_back_to_their_contract_shape() {
    let value = serde_json::to_value(Command::from(charge("C1", 12_550))).unwrap();
    assert_eq!(
        value,
        json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V-1", "code": "99213",
               "description": "office visit", "quantity": 1, "unit_price": "125.50",
               "currency": "USD"})
    );
    assert_eq!(parse(value), Ok(charge("C1", 12_550).into()));
    assert_eq!(
        PatientAccount::command_name(&CloseAccount {}.into()),
        "CloseAccount"
    );
}

// ---- state rendering and snapshots ----

#[test]
fn state_renders_status_and_money_as_the_contract_says() {
    let state = PatientAccount::replay(&[registered(), charged("C1", 12_550), paid("P1", 2_550)]);
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["status"], json!("registered"));
    assert_eq!(json["balance"], json!("100.00"));
    assert_eq!(json["charges"][0]["unit_price"], json!("125.50"));
    assert_eq!(json["payments"][0]["payment_id"], json!("P1"));
    assert_eq!(json["adjustments"], json!([]));
    let snapshot: State = serde_json::from_value(json).unwrap();
    assert_eq!(snapshot, state);
    assert_eq!(PatientAccount::SNAPSHOT_VERSION, 1);
    assert_eq!(PatientAccount::KIND, "patient_account");
}

/// Issue #15 part 5, defect 1: every amount a command carries is bounded by
/// [`Cents::MAX_AMOUNT`] (a line total too), so no history the contract accepts can make a
/// view's sum leave its range (docs/domain.md, "Money").
#[test]
fn amounts_above_the_contract_bound_are_refused() {
    let max = Cents::MAX_AMOUNT.0;
    let out_of_range = |field| Rejection::AmountOutOfRange { field };
    given([registered()])
        .when(charge("C1", max))
        .then_state_matches(|s| assert_eq!(s.balance, Cents::MAX_AMOUNT));
    given([registered()])
        .when(charge("C1", max + 1))
        .then_rejects(out_of_range("unit_price"));
    given([registered()])
        .when(PostCharge {
            quantity: 2,
            ..charge("C1", max / 2 + 1)
        })
        .then_rejects(out_of_range("unit_price"));
    given([registered(), charged("C1", max), charged("C2", max)])
        .when(payment("P1", max + 1))
        .then_rejects(out_of_range("amount"));
    given([registered()])
        .when(adjustment("A1", max + 1))
        .then_rejects(out_of_range("amount"));
    given([registered(), charged("C1", max), charged("C2", max)])
        .when(adjustment("A1", -max - 1))
        .then_rejects(out_of_range("amount"));
    given([registered(), charged("C1", max)])
        .when(adjustment("A1", -max))
        .then_state_matches(|s| assert_eq!(s.balance, Cents::ZERO));
}

// ---- patient merge ----

fn moved(balance: i64, charges: Vec<Charge>, payments: Vec<MovedPayment>) -> MovedAccount {
    MovedAccount {
        currency: Some(Currency::USD),
        balance: Cents(balance),
        charges,
        payments,
        adjustments: vec![],
    }
}

fn office_visit(charge_id: &str, amount: i64) -> Charge {
    Charge {
        charge_id: charge_id.into(),
        encounter_id: "V-1".into(),
        code: "99213".into(),
        description: "office visit".into(),
        quantity: 1,
        unit_price: Cents(amount),
        amount: Cents(amount),
    }
}

fn merge_into(into: &str) -> MergePatient {
    MergePatient {
        into: into.into(),
        reason: "duplicate registration".into(),
    }
}

fn merged_into(into: &str, moved: MovedAccount) -> Event {
    PatientMerged {
        into: into.into(),
        reason: "duplicate registration".into(),
        moved,
    }
    .into()
}

fn merged_in(from: &str, moved: MovedAccount) -> Event {
    PatientAccountMergedIn {
        from: from.into(),
        reason: "duplicate registration".into(),
        moved,
    }
    .into()
}

#[test]
fn merge_moves_charges_payments_and_balance_out_and_the_account_becomes_merged() {
    let card = MovedPayment {
        payment_id: "P1".into(),
        amount: Cents(2_000),
        method: PaymentMethod::Card,
    };
    given([registered(), charged("C1", 12_500), paid("P1", 2_000)])
        .when(merge_into("MRN-2"))
        .then_expect([merged_into(
            "MRN-2",
            moved(10_500, vec![office_visit("C1", 12_500)], vec![card]),
        )])
        .then_state_matches(|state| {
            assert_eq!(state.status, Some(AccountStatus::Merged));
            assert_eq!(state.merged_into.as_deref(), Some("MRN-2"));
            assert_eq!(state.balance, Cents::ZERO);
            assert!(state.charges.is_empty() && state.payments.is_empty());
        });
}

#[test]
fn every_later_command_to_a_merged_account_names_the_survivor() {
    let history = || [registered(), merged_into("MRN-2", moved(0, vec![], vec![]))];
    let rejection = Rejection::AccountMerged {
        into: "MRN-2".into(),
    };
    assert_eq!(rejection.status(), 409);
    assert_eq!(rejection.code(), "account_merged");
    assert!(rejection.to_string().contains("MRN-2"));
    given(history())
        .when(charge("C1", 100))
        .then_rejects(rejection.clone());
    given(history())
        .when(payment("P1", 100))
        .then_rejects(rejection.clone());
    given(history())
        .when(merge_into("MRN-3"))
        .then_rejects(rejection.clone());
    given(history())
        .when(ActivateAccount {})
        .then_rejects(rejection.clone());
    given(history())
        .when(CloseAccount {})
        .then_rejects(rejection);
}

#[test]
fn a_merge_needs_a_registered_open_account_and_a_valid_body() {
    given_no_history::<PatientAccount>()
        .when(merge_into("MRN-2"))
        .then_rejects(Rejection::NotRegistered);
    given([registered(), closed()])
        .when(merge_into("MRN-2"))
        .then_rejects(Rejection::AccountClosed);
    given([registered()])
        .when(MergePatient {
            into: "MRN 2".into(),
            reason: "duplicate".into(),
        })
        .then_rejects_with_status(422);
    given([registered()])
        .when(MergePatient {
            into: "MRN-2".into(),
            reason: " ".into(),
        })
        .then_rejects(Rejection::EmptyField { field: "reason" });
}

#[test]
fn the_survivor_takes_over_the_moved_money_once() {
    let moved_in = moved(10_500, vec![office_visit("C9", 10_500)], vec![]);
    given([registered(), charged("C1", 1_000)])
        .when(AbsorbMergedAccount {
            from: "MRN-1".into(),
            reason: "duplicate registration".into(),
            moved: moved_in.clone(),
        })
        .then_expect([merged_in("MRN-1", moved_in.clone())])
        .then_state_matches(|state| {
            assert_eq!(state.balance, Cents(11_500));
            assert_eq!(state.charges.len(), 2);
            assert_eq!(state.merged_from, vec!["MRN-1".to_owned()]);
        });
    given([
        registered(),
        charged("C1", 1_000),
        merged_in("MRN-1", moved_in.clone()),
    ])
    .when(AbsorbMergedAccount {
        from: "MRN-1".into(),
        reason: "duplicate registration".into(),
        moved: moved_in,
    })
    .then_no_events();
}

#[test]
fn a_survivor_that_is_merged_closed_unregistered_or_in_another_currency_refuses_the_money() {
    let absorb = |currency: &str| AbsorbMergedAccount {
        from: "MRN-1".into(),
        reason: "duplicate registration".into(),
        moved: MovedAccount {
            currency: Some(Currency::parse(currency).unwrap()),
            ..moved(100, vec![], vec![])
        },
    };
    given([registered(), merged_into("MRN-3", moved(0, vec![], vec![]))])
        .when(absorb("USD"))
        .then_rejects(Rejection::MergeTargetMerged {
            into: "this account".into(),
            survivor: "MRN-3".into(),
        });
    given([registered(), closed()])
        .when(absorb("USD"))
        .then_rejects(Rejection::AccountClosed);
    given_no_history::<PatientAccount>()
        .when(absorb("USD"))
        .then_rejects(Rejection::NotRegistered);
    given([registered(), charged("C1", 100)])
        .when(absorb("EUR"))
        .then_rejects(Rejection::CurrencyMismatch {
            expected: Currency::USD,
            found: Currency::parse("EUR").unwrap(),
        });
}

#[track_caller]
fn check_merge_target(
    merged: &[Event],
    into: &str,
    survivor: &[Event],
    expected: Result<(), Rejection>,
) {
    let merged = PatientAccount::replay(merged);
    let survivor = PatientAccount::replay(survivor);
    assert_eq!(check_merge("MRN-1", &merged, into, &survivor), expected);
}

#[test]
fn a_merge_target_must_be_another_registered_open_account_in_the_same_currency() {
    let registered_usd = [registered(), charged("C1", 100)];
    check_merge_target(&registered_usd, "MRN-2", &registered_usd, Ok(()));
    check_merge_target(
        &registered_usd,
        "MRN-1",
        &registered_usd,
        Err(Rejection::MergeIntoSelf),
    );
    assert_eq!(Rejection::MergeIntoSelf.status(), 422);
    check_merge_target(
        &registered_usd,
        "MRN-2",
        &[],
        Err(Rejection::MergeTargetNotRegistered {
            into: "MRN-2".into(),
        }),
    );
    check_merge_target(
        &registered_usd,
        "MRN-2",
        &[registered(), merged_into("MRN-3", moved(0, vec![], vec![]))],
        Err(Rejection::MergeTargetMerged {
            into: "MRN-2".into(),
            survivor: "MRN-3".into(),
        }),
    );
    check_merge_target(
        &registered_usd,
        "MRN-2",
        &[registered(), closed()],
        Err(Rejection::MergeTargetClosed {
            into: "MRN-2".into(),
        }),
    );
    let eur = Currency::parse("EUR").unwrap();
    let survivor_eur: Event = ChargePosted {
        currency: eur,
        ..match charged("C7", 100) {
            Event::ChargePosted(c) => c,
            _ => unreachable!("charged builds a ChargePosted"),
        }
    }
    .into();
    check_merge_target(
        &registered_usd,
        "MRN-2",
        &[registered(), survivor_eur],
        Err(Rejection::CurrencyMismatch {
            expected: eur,
            found: Currency::USD,
        }),
    );
}

#[test]
fn merge_commands_keep_their_wire_contract() {
    let parsed = PatientAccount::parse_command(json!({
        "type": "MergePatient", "into": "MRN-2", "reason": "duplicate registration"
    }))
    .unwrap();
    assert_eq!(parsed.command, Command::from(merge_into("MRN-2")));
    // The survivor's command is the process manager's alone: no body can carry it.
    let absorb = PatientAccount::parse_command(json!({
        "type": "AbsorbMergedAccount", "from": "MRN-1", "reason": "x",
        "moved": {"balance": "1.00"}
    }));
    assert!(
        matches!(absorb, Err(Rejection::InvalidCommand { .. })),
        "{absorb:?}"
    );
}
