//! Each supported message mapped from the sample fixtures (tests/fixtures/hl7).

use careflow_aggregates::encounter::{self, EncounterClass};
use careflow_aggregates::patient_account::{self, Gender};
use careflow_aggregates::{Cents, Currency};

use super::*;
use crate::inbound::hl7::read;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines().collect::<Vec<_>>().join("\r")
}

fn names(inbound: &Inbound) -> Vec<(&'static str, String)> {
    inbound
        .steps
        .iter()
        .map(|s| (s.command.command().name(), s.command.target().to_string()))
        .collect()
}

#[test]
fn a01_registers_if_new_schedules_if_new_and_checks_in() {
    let inbound = read(&fixture("adt_a01.hl7")).unwrap();
    assert_eq!(
        inbound.mrn, "10006579",
        "PID-3 has no MR repetition: its first ID"
    );
    assert_eq!(inbound.header.control_id, "599102");
    assert_eq!(
        names(&inbound),
        vec![
            ("RegisterPatient", "patient_account-10006579".into()),
            ("ScheduleEncounter", "encounter-40007716".into()),
            ("CheckIn", "encounter-40007716".into()),
        ]
    );
    let AnyCommand::PatientAccount(patient_account::Command::RegisterPatient(r)) =
        inbound.steps[0].command.command()
    else {
        panic!("not a registration");
    };
    assert_eq!(r.name.family, "DUCK");
    assert_eq!(r.name.given, vec!["DONALD".to_string(), "D".to_string()]);
    assert_eq!(r.birth_date.to_string(), "1924-10-10");
    assert_eq!(r.gender, Gender::Male);
    assert_eq!(inbound.steps[0].tolerate, Tolerate::AlreadyRegistered);
    let AnyCommand::Encounter(encounter::Command::ScheduleEncounter(s)) =
        inbound.steps[1].command.command()
    else {
        panic!("not a schedule");
    };
    assert_eq!(s.account_id, "10006579");
    assert_eq!(s.department, "PREOP");
    assert_eq!(s.encounter_class, EncounterClass::Inpatient);
    assert_eq!(s.scheduled_for.to_rfc3339(), "2005-01-10T04:52:53+00:00");
    assert_eq!(
        inbound.steps[1].tolerate,
        Tolerate::AlreadyScheduledFor("10006579".into())
    );
}

#[test]
fn command_ids_are_v5_of_facility_control_id_and_step_so_a_resend_maps_to_the_same_ids() {
    let first = read(&fixture("adt_a01.hl7")).unwrap();
    let again = read(&fixture("adt_a01.hl7")).unwrap();
    assert_eq!(first, again);
    let ids: Vec<Uuid> = first.steps.iter().map(|s| s.command.command_id()).collect();
    assert_eq!(ids[0], command_id("1", "599102", 0));
    assert_eq!(ids[2], command_id("1", "599102", 2));
    assert_ne!(ids[0], ids[1]);
    assert_ne!(
        command_id("1", "599102", 0),
        command_id("2", "599102", 0),
        "another facility's same control id is another message"
    );
}

#[test]
fn a04_without_a_visit_only_registers() {
    let inbound = read(&fixture("adt_a04.hl7")).unwrap();
    assert_eq!(inbound.mrn, "PATID1234");
    assert_eq!(
        names(&inbound),
        vec![("RegisterPatient", "patient_account-PATID1234".into())]
    );
    let AnyCommand::PatientAccount(patient_account::Command::RegisterPatient(r)) =
        inbound.steps[0].command.command()
    else {
        panic!("not a registration");
    };
    assert_eq!(r.facility, "MCM");
    assert_eq!(r.gender, Gender::Unknown, "M- is not in table 0001");
    assert_eq!(r.coverage, None, "IN1 has no member id (IN1-36)");
}

#[test]
fn a08_updates_demographics_present_in_pid() {
    let inbound = read(&fixture("adt_a08.hl7")).unwrap();
    let [step] = inbound.steps.as_slice() else {
        panic!("one step expected");
    };
    let AnyCommand::PatientAccount(patient_account::Command::UpdateDemographics(u)) =
        step.command.command()
    else {
        panic!("not an update");
    };
    let name = u.name.as_ref().unwrap();
    assert_eq!(name.given, vec!["DONALD".to_string(), "DUNCAN".to_string()]);
    assert_eq!(u.gender, Some(Gender::Male));
    assert_eq!(
        u.facility, None,
        "an update never moves the account's facility"
    );
}

#[test]
fn a03_completes_then_discharges_and_a11_cancels() {
    let a03 = read(&fixture("adt_a03.hl7")).unwrap();
    assert_eq!(
        names(&a03),
        vec![
            ("CompleteEncounter", "encounter-40007716".into()),
            ("Discharge", "encounter-40007716".into()),
        ]
    );
    assert_eq!(a03.steps[0].tolerate, Tolerate::AlreadyCompleted);
    let AnyCommand::Encounter(encounter::Command::Discharge(d)) = a03.steps[1].command.command()
    else {
        panic!("not a discharge");
    };
    assert_eq!(d.disposition, "1", "PV1-36");

    let a11 = read(&fixture("adt_a11.hl7")).unwrap();
    let AnyCommand::Encounter(encounter::Command::CancelEncounter(c)) =
        a11.steps[0].command.command()
    else {
        panic!("not a cancellation");
    };
    assert_eq!(c.reason, "Admitted in error", "EVN-4.2");
}

#[test]
fn dft_posts_one_charge_per_ft1_with_escapes_decoded() {
    let inbound = read(&fixture("dft_p03.hl7")).unwrap();
    let charges: Vec<&patient_account::PostCharge> = inbound
        .steps
        .iter()
        .map(|s| match s.command.command() {
            AnyCommand::PatientAccount(patient_account::Command::PostCharge(c)) => c,
            other => panic!("not a charge: {other:?}"),
        })
        .collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].charge_id, "DFT599200-1");
    assert_eq!(charges[0].encounter_id, "40007716");
    assert_eq!(charges[0].code, "99213");
    assert_eq!(charges[0].description, "Office visit&consult, level 3");
    assert_eq!(charges[0].unit_price, Cents(12_550));
    assert_eq!(charges[0].currency, Currency::USD);
    assert_eq!(charges[1].charge_id, "DFT599200-2");
    assert_eq!(charges[1].quantity, 2);
    assert_eq!(
        charges[1].unit_price,
        Cents(2_250),
        "FT1-12, the unit amount"
    );
}

#[test]
fn siu_s12_schedules_the_appointment() {
    let inbound = read(&fixture("siu_s12.hl7")).unwrap();
    let [step] = inbound.steps.as_slice() else {
        panic!("one step expected");
    };
    let AnyCommand::Encounter(encounter::Command::ScheduleEncounter(s)) = step.command.command()
    else {
        panic!("not a schedule");
    };
    assert_eq!(step.command.target().to_string(), "encounter-V50012");
    assert_eq!(s.account_id, "10006579");
    assert_eq!(s.department, "ORTHO");
    assert_eq!(s.encounter_class, EncounterClass::Outpatient);
    assert_eq!(s.scheduled_for.to_rfc3339(), "2005-01-20T14:00:00+00:00");
}

#[test]
fn the_mr_repetition_of_pid_3_wins_and_legal_name_repetition_is_used() {
    let text = "MSH|^~\\&|REG|GH|CF|CF|20240105083000||ADT^A04|M1|P|2.5\r\
PID|1||X-9^^^GH^PI~CF-1001^^^GH^MR||Alias^Al^^^^^A~O\\E\\Brien^Ann^Marie^^^^L||19800131|F\r";
    let inbound = read(text).unwrap();
    assert_eq!(inbound.mrn, "CF-1001");
    let AnyCommand::PatientAccount(patient_account::Command::RegisterPatient(r)) =
        inbound.steps[0].command.command()
    else {
        panic!("not a registration");
    };
    assert_eq!(r.name.family, "O\\Brien");
    assert_eq!(r.name.given, vec!["Ann".to_string(), "Marie".to_string()]);
}

#[test]
fn malformed_messages_name_the_field_at_fault() {
    let base = fixture("adt_a01.hl7");
    let refuse = |text: &str| read(text).unwrap_err();

    let (header, error) = refuse(&base.replace("10006579^^^1^MRN^1", ""));
    assert_eq!(
        header.unwrap().control_id,
        "599102",
        "the ACK can still name it"
    );
    assert_eq!(error, Malformed::Missing { field: "PID-3" });

    let (_, error) = refuse(&base.replace("10006579^^^1^MRN^1", "NOT VALID"));
    assert_eq!(error.location(), Some("PID-3"));
    assert_eq!(error.hl7_error().0, "102");

    let (_, error) = refuse(&base.replace("ADT^A01", "ADT^A99"));
    assert_eq!(error, Malformed::Unsupported("ADT^A99".into()));
    assert_eq!(error.hl7_error().0, "200");

    let (_, error) = refuse(&base.replace("40007716^^^AccMgr^VN", ""));
    assert_eq!(error, Malformed::Missing { field: "PV1-19" });

    let (_, error) = refuse(&base.replace("19241010", "1924-10-10"));
    assert_eq!(error.location(), Some("PID-7"));

    let (header, error) = refuse("not hl7 at all");
    assert!(header.is_none());
    assert_eq!(error.code(), "unparsable");

    let dft = fixture("dft_p03.hl7");
    let (_, error) = refuse(&dft.replace("1|125.50&USD|125.50&USD", "1|12.555|12.555"));
    assert_eq!(error.location(), Some("FT1-12"));
    let (_, error) = refuse(&dft.replace("|CG|99213", "|PY|99213"));
    assert_eq!(error.location(), Some("FT1-6"));
}

#[test]
fn quantities_as_hl7_senders_write_them() {
    assert_eq!(whole_quantity("2.00"), Some(2));
    assert_eq!(whole_quantity("0"), None);
    assert_eq!(whole_quantity("1.5"), None);
}

/// Issue #15 part 5, defect 6: an ORU (a type careflow does not take) was answered "PID-3 is
/// required"; and a missing or unreadable field, which HL7's original mode answers AE (the
/// message was read; its content is in error), was answered AR.
#[test]
fn an_unsupported_type_is_named_before_any_field_and_field_errors_are_content_errors() {
    let oru = "MSH|^~\\&|LAB|GH|CAREFLOW|CF|20240105083000||ORU^R01|LAB1|P|2.5\rOBX|1|TX|||text\r";
    let (header, error) = read(oru).unwrap_err();
    assert_eq!(header.unwrap().control_id, "LAB1");
    assert_eq!(error, Malformed::Unsupported("ORU^R01".into()));
    assert!(!error.is_content_error());

    let base = fixture("adt_a01.hl7");
    let (_, missing) = read(&base.replace("40007716^^^AccMgr^VN", "")).unwrap_err();
    assert!(missing.is_content_error(), "{missing:?}");
    let (_, invalid) = read(&base.replace("19241010", "1924-10-10")).unwrap_err();
    assert!(invalid.is_content_error(), "{invalid:?}");
    let (_, unparsable) = read("not hl7 at all").unwrap_err();
    assert!(!unparsable.is_content_error());
}

/// Issue #15 part 5, defect 8: MLLP took `+1.00`, ` 1.00` and `12.500`, which HTTP refuses.
/// An amount in HL7 now reads by the contract's one rule (`Cents::parse`), spaces included.
#[test]
fn amounts_follow_the_one_money_rule_of_the_contract() {
    let dft = fixture("dft_p03.hl7");
    let with = |amount: &str| {
        dft.replace(
            "1|125.50&USD|125.50&USD",
            &format!("1|{amount}&USD|{amount}&USD"),
        )
    };
    for bad in ["+125.50", " 125.50", "125.50 ", "125.500", "1,000", "1e2"] {
        let (_, error) = read(&with(bad)).unwrap_err();
        assert_eq!(error.code(), "invalid_field", "{bad:?}");
        assert!(error.location().unwrap().starts_with("FT1-1"), "{bad:?}");
    }
    for good in ["125.5", "125", "0.05"] {
        assert!(read(&with(good)).is_ok(), "{good:?}");
    }
}
