//! Message -> commands: the HL7 v2 meaning of each supported trigger (DESIGN.md "Interop").
//!
//! | message  | commands, in order                                                        |
//! |----------|---------------------------------------------------------------------------|
//! | ADT^A01  | `RegisterPatient` (if new), `ScheduleEncounter` (if new), `CheckIn`        |
//! | ADT^A04  | `RegisterPatient` (if new); with PV1-19 also schedule (if new) + check in  |
//! | ADT^A08  | `UpdateDemographics`                                                      |
//! | ADT^A03  | `CompleteEncounter` (unless completed), `Discharge`                       |
//! | ADT^A11  | `CancelEncounter`                                                         |
//! | DFT^P03  | `PostCharge` per FT1, charge id `{MSH-10}-{FT1-1}`                         |
//! | SIU^S12  | `ScheduleEncounter`                                                       |
//! | ADT^A40  | `MergePatient` {`into`: PID-3} to the account MRG-1 names                  |
//!
//! "If new" is a [`Tolerate`] on the step: the aggregate still decides, and the one refusal
//! that means "already there" is taken as done. Every step's command id is
//! [`command_id`]`(MSH-4, MSH-10, step)`, so a resent message finds each step already
//! appended and appends nothing.

use careflow_aggregates::encounter::{
    self, CancelEncounter, CheckIn, CompleteEncounter, Discharge, EncounterClass, ScheduleEncounter,
};
use careflow_aggregates::patient_account::{
    self, CoverageDetails, Gender, HumanName, MergePatient, PostCharge, PostalAddress,
    RegisterPatient, UpdateDemographics,
};
use careflow_aggregates::stream_id::validate_id;
use careflow_aggregates::{AddressedCommand, AnyCommand, Cents, Currency};
use chrono::{DateTime, Utc};
use hl7_parser::message::Segment;
use uuid::Uuid;

use super::message::Hl7;
use super::time;
use super::{Header, Malformed};

/// The UUID v5 namespace of HL7 command ids (fixed forever: changing it would make every
/// resent message look new).
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_3c2a_8b0e_4f5e_9a47_2c1d_5e8f_7a30);

/// The command id of step `index` of the message `control_id` from `facility`.
pub fn command_id(facility: &str, control_id: &str, index: usize) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{facility}\u{1f}{control_id}\u{1f}{index}").as_bytes(),
    )
}

/// A mapped message: what to run, for which patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub header: Header,
    /// The MRN: messages of one patient are applied in arrival order.
    pub mrn: String,
    /// Business time (EVN-6, else EVN-2, else MSH-7, else when it arrived).
    pub occurred_at: Option<DateTime<Utc>>,
    pub steps: Vec<Step>,
}

/// One command of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// To the patient's account or the visit's encounter, under [`command_id`]`(MSH-4,
    /// MSH-10, step)`.
    pub command: AddressedCommand,
    pub tolerate: Tolerate,
}

/// A refusal that means the step's purpose is already met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tolerate {
    Nothing,
    /// `already_registered`: the patient exists (register "if new").
    AlreadyRegistered,
    /// `already_scheduled`: the visit exists, and must belong to this MRN (checked by the
    /// runner against the encounter's state).
    AlreadyScheduledFor(String),
    /// `invalid_transition` from `completed`: the encounter was completed before the A03.
    AlreadyCompleted,
    /// `account_merged` naming this survivor: an A40 for a merge already made (under
    /// another control id).
    AlreadyMergedInto(String),
}

/// The message types careflow takes (docs/interop.md has the table).
#[derive(Debug, Clone, Copy)]
enum Kind {
    AdtA01,
    AdtA04,
    AdtA08,
    AdtA03,
    AdtA11,
    DftP03,
    SiuS12,
    AdtA40,
}

impl Kind {
    /// MSH-9's type and trigger.
    ///
    /// # Errors
    /// [`Malformed::Unsupported`] for any other.
    fn of(header: &Header) -> Result<Self, Malformed> {
        Ok(
            match (header.message_type.as_str(), header.trigger.as_str()) {
                ("ADT", "A01") => Kind::AdtA01,
                ("ADT", "A04") => Kind::AdtA04,
                ("ADT", "A08") => Kind::AdtA08,
                ("ADT", "A03") => Kind::AdtA03,
                ("ADT", "A11") => Kind::AdtA11,
                ("DFT", "P03") => Kind::DftP03,
                ("SIU", "S12") => Kind::SiuS12,
                ("ADT", "A40") => Kind::AdtA40,
                (kind, trigger) => {
                    return Err(Malformed::Unsupported(format!("{kind}^{trigger}")));
                }
            },
        )
    }
}

/// Maps a parsed message.
///
/// # Errors
/// [`Malformed`] for a message type careflow does not take or a field it cannot read.
pub fn map(hl7: &Hl7<'_>, header: &Header) -> Result<Inbound, Malformed> {
    // The type first: a message careflow does not take is "unsupported", whatever it lacks.
    let kind = Kind::of(header)?;
    let reader = Reader { hl7, header };
    let mrn = reader.mrn()?;
    let mut plan = Plan::new(header, &mrn);
    match kind {
        Kind::AdtA01 => {
            plan.register(reader.registration(&mrn)?)?;
            let visit = reader.visit()?;
            plan.admit(&visit, reader.schedule(&mrn, EncounterClass::Inpatient)?)?;
        }
        Kind::AdtA04 => {
            plan.register(reader.registration(&mrn)?)?;
            if let Some(visit) = reader.optional_visit()? {
                plan.admit(&visit, reader.schedule(&mrn, EncounterClass::Outpatient)?)?;
            }
        }
        Kind::AdtA08 => {
            let update = reader.demographics()?;
            plan.account(update.into(), Tolerate::Nothing)?;
        }
        Kind::AdtA03 => {
            let visit = reader.visit()?;
            let disposition = reader
                .hl7
                .value("PV1", 36, 1)
                .unwrap_or_else(|| "unspecified".to_owned());
            plan.encounter(
                &visit,
                CompleteEncounter {}.into(),
                Tolerate::AlreadyCompleted,
            )?;
            plan.encounter(&visit, Discharge { disposition }.into(), Tolerate::Nothing)?;
        }
        Kind::AdtA11 => {
            let visit = reader.visit()?;
            let reason = reader
                .hl7
                .value("EVN", 4, 2)
                .or_else(|| reader.hl7.value("EVN", 4, 1))
                .unwrap_or_else(|| "admit cancelled (ADT^A11)".to_owned());
            plan.encounter(&visit, CancelEncounter { reason }.into(), Tolerate::Nothing)?;
        }
        Kind::DftP03 => {
            let visit = reader.visit()?;
            let mut any = false;
            for ft1 in hl7.segments("FT1") {
                let charge = reader.charge(ft1, &visit)?;
                plan.account(charge.into(), Tolerate::Nothing)?;
                any = true;
            }
            if !any {
                return Err(Malformed::Missing { field: "FT1" });
            }
        }
        Kind::SiuS12 => {
            let visit = reader
                .optional_visit()?
                .or_else(|| hl7.value("SCH", 1, 1))
                .or_else(|| hl7.value("SCH", 2, 1))
                .ok_or(Malformed::Missing { field: "PV1-19" })?;
            let visit = checked_visit(visit)?;
            let schedule = reader.appointment(&mrn)?;
            plan.encounter(&visit, schedule.into(), Tolerate::Nothing)?;
        }
        Kind::AdtA40 => {
            // PID-3 is the survivor, MRG-1 the account that disappears: the merge is that
            // account's command.
            let merged = reader.merged_mrn()?;
            let reason = reader
                .hl7
                .value("EVN", 4, 2)
                .or_else(|| reader.hl7.value("EVN", 4, 1))
                .unwrap_or_else(|| "patient merge (ADT^A40)".to_owned());
            let merge = MergePatient {
                into: mrn.clone(),
                reason,
            };
            plan.push(
                "MRG-1",
                &merged,
                AnyCommand::PatientAccount(merge.into()),
                Tolerate::AlreadyMergedInto(mrn.clone()),
            )?;
        }
    }
    let steps = plan.steps;
    Ok(Inbound {
        header: header.clone(),
        mrn,
        occurred_at: reader.occurred_at(),
        steps,
    })
}

/// The steps of one message, numbered as they are added (the number is in the command id).
struct Plan<'h> {
    header: &'h Header,
    /// Checked against the id rule by `Reader::mrn`.
    mrn: &'h str,
    steps: Vec<Step>,
}

impl<'h> Plan<'h> {
    fn new(header: &'h Header, mrn: &'h str) -> Self {
        Self {
            header,
            mrn,
            steps: Vec::new(),
        }
    }

    /// A step on the patient's account.
    fn account(
        &mut self,
        command: patient_account::Command,
        tolerate: Tolerate,
    ) -> Result<(), Malformed> {
        let mrn = self.mrn;
        self.push("PID-3", mrn, AnyCommand::PatientAccount(command), tolerate)
    }

    /// A step on the encounter of `visit` (PV1-19).
    fn encounter(
        &mut self,
        visit: &str,
        command: encounter::Command,
        tolerate: Tolerate,
    ) -> Result<(), Malformed> {
        self.push("PV1-19", visit, AnyCommand::Encounter(command), tolerate)
    }

    /// Adds the next step; `field` is where `id` came from, should it break the id rule
    /// (the readers check it first, so it does not).
    fn push(
        &mut self,
        field: &'static str,
        id: &str,
        command: AnyCommand,
        tolerate: Tolerate,
    ) -> Result<(), Malformed> {
        let command_id = command_id(
            &self.header.sending_facility,
            &self.header.control_id,
            self.steps.len(),
        );
        let command =
            AddressedCommand::new(id, command_id, command).map_err(|error| Malformed::Invalid {
                field,
                reason: error.to_string(),
            })?;
        self.steps.push(Step { command, tolerate });
        Ok(())
    }

    fn register(&mut self, registration: RegisterPatient) -> Result<(), Malformed> {
        self.account(registration.into(), Tolerate::AlreadyRegistered)
    }

    /// Schedule (unless the visit exists for this patient) and check in.
    fn admit(&mut self, visit: &str, schedule: ScheduleEncounter) -> Result<(), Malformed> {
        let mrn = self.mrn.to_owned();
        self.encounter(visit, schedule.into(), Tolerate::AlreadyScheduledFor(mrn))?;
        self.encounter(visit, CheckIn {}.into(), Tolerate::Nothing)
    }
}

/// An id read from `field`, checked against the id rule.
fn checked_field(field: &'static str, id: String) -> Result<String, Malformed> {
    validate_id(&id).map_err(|error| Malformed::Invalid {
        field,
        reason: error.to_string(),
    })?;
    Ok(id)
}

/// PV1-19 (or the SCH visit id) checked against the id rule.
fn checked_visit(visit: String) -> Result<String, Malformed> {
    validate_id(&visit).map_err(|error| Malformed::Invalid {
        field: "PV1-19",
        reason: error.to_string(),
    })?;
    Ok(visit)
}

/// Field reads with the message's meaning attached.
struct Reader<'a, 'm> {
    hl7: &'a Hl7<'m>,
    header: &'a Header,
}

impl Reader<'_, '_> {
    /// PID-3's repetition whose identifier type (PID-3.5) is `MR`, else the first one's ID.
    fn mrn(&self) -> Result<String, Malformed> {
        self.medical_record_number("PID", 3, "PID-3")
    }

    /// MRG-1's repetition whose identifier type (MRG-1.5) is `MR`, else the first one's ID:
    /// the MRN of the account merged away (ADT^A40).
    fn merged_mrn(&self) -> Result<String, Malformed> {
        self.medical_record_number("MRG", 1, "MRG-1")
    }

    /// The repetition of CX field `field` of `segment` typed `MR` (component 5), else the
    /// first one's ID (component 1), checked against the id rule.
    fn medical_record_number(
        &self,
        segment: &'static str,
        field: usize,
        name: &'static str,
    ) -> Result<String, Malformed> {
        let found = self
            .hl7
            .segment(segment)
            .ok_or(Malformed::Missing { field: segment })?;
        let mut first = None;
        for repeat in self.hl7.repeats(found, field) {
            let id = self.hl7.repeat_value(repeat, 1, 1);
            if self.hl7.repeat_value(repeat, 5, 1).as_deref() == Some("MR")
                && let Some(id) = id
            {
                return checked_field(name, id);
            }
            if first.is_none() {
                first = id;
            }
        }
        checked_field(name, first.ok_or(Malformed::Missing { field: name })?)
    }

    fn visit(&self) -> Result<String, Malformed> {
        self.optional_visit()?
            .ok_or(Malformed::Missing { field: "PV1-19" })
    }

    /// PV1-19.1, checked against the id rule.
    fn optional_visit(&self) -> Result<Option<String>, Malformed> {
        match self.hl7.value("PV1", 19, 1) {
            None => Ok(None),
            Some(visit) => checked_visit(visit).map(Some),
        }
    }

    /// The patient's name: PID-5's legal-name repetition (XPN-7 `L`), else its first.
    fn name(&self) -> Option<HumanName> {
        let pid = self.hl7.segment("PID")?;
        let repeats: Vec<_> = self.hl7.repeats(pid, 5).collect();
        let chosen = repeats
            .iter()
            .find(|r| self.hl7.repeat_value(r, 7, 1).as_deref() == Some("L"))
            .or_else(|| repeats.first())?;
        let family = self.hl7.repeat_value(chosen, 1, 1)?;
        let given = [2, 3]
            .into_iter()
            .filter_map(|c| self.hl7.repeat_value(chosen, c, 1))
            .collect();
        Some(HumanName { family, given })
    }

    /// PID-11 (XAD): the repetition typed `BI` (billing, HL7 table 0190), else `M` (mailing),
    /// else `H` (home), else the first: street XAD-1.1 and other designation XAD-2 as the
    /// lines, city XAD-3, postal code XAD-5, country XAD-6 (the aggregate takes ISO 3166-1
    /// alpha-2 and refuses other codes, which then answer `AE`). `None` when PID-11 holds
    /// none of these.
    fn address(&self) -> Option<PostalAddress> {
        let pid = self.hl7.segment("PID")?;
        let repeats: Vec<_> = self.hl7.repeats(pid, 11).collect();
        let typed = |kind: &str| {
            repeats
                .iter()
                .find(|r| self.hl7.repeat_value(r, 7, 1).as_deref() == Some(kind))
        };
        let chosen = typed("BI")
            .or_else(|| typed("M"))
            .or_else(|| typed("H"))
            .or_else(|| repeats.first())?;
        let address = PostalAddress {
            line: [(1, 1), (2, 1)]
                .into_iter()
                .filter_map(|(c, s)| self.hl7.repeat_value(chosen, c, s))
                .collect(),
            city: self.hl7.repeat_value(chosen, 3, 1),
            postal_code: self.hl7.repeat_value(chosen, 5, 1),
            country: self.hl7.repeat_value(chosen, 6, 1),
        };
        (address != PostalAddress::default()).then_some(address)
    }

    fn birth_date(&self) -> Result<Option<chrono::NaiveDate>, Malformed> {
        match self.hl7.value("PID", 7, 1) {
            None => Ok(None),
            Some(text) => time::date(&text).map(Some).ok_or(Malformed::Invalid {
                field: "PID-7",
                reason: "not a date (YYYYMMDD)".into(),
            }),
        }
    }

    /// PID-8 (HL7 table 0001).
    fn gender(&self) -> Option<Gender> {
        self.hl7.value("PID", 8, 1).map(|code| match code.as_str() {
            "M" => Gender::Male,
            "F" => Gender::Female,
            "O" | "A" => Gender::Other,
            _ => Gender::Unknown,
        })
    }

    /// The first IN1: payer IN1-3.1, member IN1-36, plan IN1-2.1. Absent unless payer and
    /// member are both there.
    fn coverage(&self) -> Option<CoverageDetails> {
        let payer_id = self.hl7.value("IN1", 3, 1)?;
        let member_id = self.hl7.value("IN1", 36, 1)?;
        Some(CoverageDetails {
            payer_id,
            member_id,
            plan: self.hl7.value("IN1", 2, 1),
        })
    }

    /// PV1-3.4 (the location's facility), else MSH-4.1.
    fn facility(&self) -> String {
        self.hl7
            .value("PV1", 3, 4)
            .or_else(|| {
                let msh = self.hl7.segment("MSH")?;
                self.hl7.field_value(msh, 4, 1)
            })
            .unwrap_or_else(|| self.header.sending_facility.clone())
    }

    fn registration(&self, _mrn: &str) -> Result<RegisterPatient, Malformed> {
        Ok(RegisterPatient {
            name: self.name().ok_or(Malformed::Missing { field: "PID-5" })?,
            birth_date: self
                .birth_date()?
                .ok_or(Malformed::Missing { field: "PID-7" })?,
            gender: self.gender().unwrap_or(Gender::Unknown),
            facility: self.facility(),
            coverage: self.coverage(),
            address: self.address(),
        })
    }

    fn demographics(&self) -> Result<UpdateDemographics, Malformed> {
        let update = UpdateDemographics {
            name: self.name(),
            birth_date: self.birth_date()?,
            gender: self.gender(),
            facility: None,
            address: self.address(),
            coverage: self.coverage(),
        };
        if update == UpdateDemographics::default() {
            return Err(Malformed::Missing { field: "PID-5" });
        }
        Ok(update)
    }

    /// PV1-2 (HL7 table 0004): `E` emergency, `I`/`B` inpatient, `O`/`R` outpatient, else
    /// `default` (inpatient for an admit, outpatient for a registration or appointment).
    fn encounter_class(&self, default: EncounterClass) -> EncounterClass {
        match self.hl7.value("PV1", 2, 1).as_deref() {
            Some("E") => EncounterClass::Emergency,
            Some("I" | "B") => EncounterClass::Inpatient,
            Some("O" | "R") => EncounterClass::Outpatient,
            _ => default,
        }
    }

    /// PV1-3.1 (point of care), else PV1-10 (hospital service), else `unassigned`.
    fn department(&self) -> String {
        self.hl7
            .value("PV1", 3, 1)
            .or_else(|| self.hl7.value("PV1", 10, 1))
            .unwrap_or_else(|| "unassigned".to_owned())
    }

    fn schedule(&self, mrn: &str, default: EncounterClass) -> Result<ScheduleEncounter, Malformed> {
        let scheduled_for = self
            .time_field("PV1", 44, "PV1-44")?
            .or_else(|| self.occurred_at())
            .ok_or(Malformed::Missing { field: "PV1-44" })?;
        Ok(ScheduleEncounter {
            account_id: mrn.to_owned(),
            facility: self.facility(),
            department: self.department(),
            encounter_class: self.encounter_class(default),
            scheduled_for,
        })
    }

    /// SIU^S12: the start is TQ1-7, else SCH-11.4 (v2.3-2.5's TQ), else AIS-4; the place is
    /// AIL-3 when the message books a location, else PV1-3.
    fn appointment(&self, mrn: &str) -> Result<ScheduleEncounter, Malformed> {
        let scheduled_for = match self.time_field("TQ1", 7, "TQ1-7")? {
            Some(t) => t,
            None => match self.time_component("SCH", 11, 4, "SCH-11")? {
                Some(t) => t,
                None => self
                    .time_field("AIS", 4, "AIS-4")?
                    .ok_or(Malformed::Missing { field: "SCH-11" })?,
            },
        };
        let department = self
            .hl7
            .value("AIL", 3, 1)
            .unwrap_or_else(|| self.department());
        let facility = self
            .hl7
            .value("AIL", 3, 4)
            .unwrap_or_else(|| self.facility());
        Ok(ScheduleEncounter {
            account_id: mrn.to_owned(),
            facility,
            department,
            encounter_class: self.encounter_class(EncounterClass::Outpatient),
            scheduled_for,
        })
    }

    /// One FT1 as a charge on the patient's account.
    fn charge(&self, ft1: &Segment<'_>, visit: &str) -> Result<PostCharge, Malformed> {
        let hl7 = self.hl7;
        let set_id = hl7
            .field_value(ft1, 1, 1)
            .ok_or(Malformed::Missing { field: "FT1-1" })?;
        let charge_id = format!("{}-{set_id}", self.header.control_id);
        careflow_aggregates::stream_id::validate_id(&charge_id).map_err(|error| {
            Malformed::Invalid {
                field: "FT1-1",
                reason: format!("the charge id {{MSH-10}}-{{FT1-1}}: {error}"),
            }
        })?;
        match hl7.field_value(ft1, 6, 1).as_deref() {
            None | Some("CG") => {}
            Some(_) => {
                return Err(Malformed::Invalid {
                    field: "FT1-6",
                    reason: "only charges (CG) are taken; credits, payments and adjustments are \
                             not"
                    .into(),
                });
            }
        }
        let code = hl7
            .field_value(ft1, 7, 1)
            .ok_or(Malformed::Missing { field: "FT1-7" })?;
        let description = hl7
            .field_value(ft1, 7, 2)
            .or_else(|| hl7.field_value(ft1, 8, 1))
            .unwrap_or_else(|| code.clone());
        let quantity = match hl7.field_value(ft1, 10, 1) {
            None => 1,
            Some(text) => whole_quantity(&text).ok_or(Malformed::Invalid {
                field: "FT1-10",
                reason: "not a whole quantity of at least 1".into(),
            })?,
        };
        let (unit_price, currency) = match self.money(ft1, 12, "FT1-12")? {
            Some(price) => price,
            None => {
                let (extended, currency) = self
                    .money(ft1, 11, "FT1-11")?
                    .ok_or(Malformed::Missing { field: "FT1-12" })?;
                let per_unit = extended.0 / i64::from(quantity);
                if per_unit * i64::from(quantity) != extended.0 {
                    return Err(Malformed::Invalid {
                        field: "FT1-11",
                        reason: "the extended amount does not divide by the quantity into cents"
                            .into(),
                    });
                }
                (Cents(per_unit), currency)
            }
        };
        Ok(PostCharge {
            charge_id,
            encounter_id: visit.to_owned(),
            code,
            description,
            quantity,
            unit_price,
            currency,
        })
    }

    /// A `CP`/`MO` amount: component 1, subcomponent 1 the quantity (by `Cents::parse`, as
    /// over HTTP), subcomponent 2 the currency (default USD).
    fn money(
        &self,
        segment: &Segment<'_>,
        field: usize,
        name: &'static str,
    ) -> Result<Option<(Cents, Currency)>, Malformed> {
        let Some(repeat) = self.hl7.repeats(segment, field).next() else {
            return Ok(None);
        };
        // Untrimmed: an amount reads by the contract's one rule, the HTTP API's, in which a
        // space, a `+` or a third fraction digit is not an amount.
        let Some(amount) = self.hl7.exact_value(repeat, 1, 1) else {
            return Ok(None);
        };
        let cents = Cents::parse(&amount).map_err(|error| Malformed::Invalid {
            field: name,
            reason: error.to_string(),
        })?;
        let currency = match self.hl7.repeat_value(repeat, 1, 2) {
            None => Currency::USD,
            Some(code) => Currency::parse(&code).map_err(|_| Malformed::Invalid {
                field: name,
                reason: "the currency is not an ISO 4217 code".into(),
            })?,
        };
        Ok(Some((cents, currency)))
    }

    fn time_field(
        &self,
        segment: &str,
        field: usize,
        name: &'static str,
    ) -> Result<Option<DateTime<Utc>>, Malformed> {
        self.time_component(segment, field, 1, name)
    }

    fn time_component(
        &self,
        segment: &str,
        field: usize,
        component: usize,
        name: &'static str,
    ) -> Result<Option<DateTime<Utc>>, Malformed> {
        match self.hl7.value(segment, field, component) {
            None => Ok(None),
            Some(text) => time::date_time(&text).map(Some).ok_or(Malformed::Invalid {
                field: name,
                reason: "not an HL7 date/time".into(),
            }),
        }
    }

    /// EVN-6 (event occurred), else EVN-2 (recorded), else MSH-7.
    fn occurred_at(&self) -> Option<DateTime<Utc>> {
        [("EVN", 6), ("EVN", 2), ("MSH", 7)]
            .into_iter()
            .find_map(|(segment, field)| time::date_time(&self.hl7.value(segment, field, 1)?))
    }
}

/// `2`, `2.0`, `2.00`: a whole number of at least 1.
fn whole_quantity(text: &str) -> Option<u32> {
    let whole = match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|b| b == b'0') => whole,
        Some(_) => return None,
        None => text,
    };
    whole.parse::<u32>().ok().filter(|q| *q >= 1)
}

#[cfg(test)]
mod tests;
