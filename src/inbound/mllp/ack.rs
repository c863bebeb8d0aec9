//! The HL7 v2 acknowledgement (original mode): `MSH` + `MSA` (+ `ERR`).
//!
//! MSA-1 is `AA` once every command of the message is durable, `AE` when the domain refused
//! one (ERR-5 carries the rejection's code), `AR` when the message could not be mapped
//! (ERR-3 carries the HL7 table 0357 condition and ERR-2 the field) or could not be applied
//! for a reason unrelated to its content (store unavailable: ERR-3 `207`, resend later).

use chrono::{DateTime, Utc};

use crate::inbound::hl7::{self, Header, Malformed};

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accept,
    Error,
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// What the ERR segment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// ERR-2: the field at fault (`PID-3`), when known.
    pub location: Option<String>,
    /// ERR-3: HL7 table 0357 code and text (`207`, `Application internal error`).
    pub condition: (&'static str, &'static str),
    /// ERR-5: careflow's stable code (`already_scheduled`, `missing_field`).
    pub application_code: String,
    /// ERR-8 and MSA-3: a short text for the sending system's operator (no PHI: codes, field
    /// names and ids only).
    pub message: String,
}

/// An acknowledgement to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: AckCode,
    pub error: Option<AckError>,
}

impl Ack {
    pub fn accept() -> Self {
        Self {
            code: AckCode::Accept,
            error: None,
        }
    }

    /// The answer to a message that could not become commands: `AE` for a content error,
    /// else `AR`, the ERR segment naming the condition, the field and careflow's code.
    pub fn refusal(malformed: &Malformed) -> Self {
        Self {
            code: if malformed.is_content_error() {
                AckCode::Error
            } else {
                AckCode::Reject
            },
            error: Some(AckError {
                location: malformed.location().map(str::to_owned),
                condition: malformed.hl7_error(),
                application_code: malformed.code().to_owned(),
                message: malformed.to_string(),
            }),
        }
    }

    /// The ACK text (segments separated by `\r`) answering `header`; without a header (the
    /// message's MSH could not be read) MSA-2 is empty.
    pub fn render(&self, header: Option<&Header>, now: DateTime<Utc>, ack_id: &str) -> String {
        let empty = Header::default();
        let h = header.unwrap_or(&empty);
        let mut out = String::with_capacity(256);
        out.push_str("MSH|^~\\&|");
        let routing = &h.routing;
        out.push_str(if routing.receiving_application.is_empty() {
            "CAREFLOW"
        } else {
            &routing.receiving_application
        });
        for echoed in [
            &routing.receiving_facility,
            &routing.sending_application,
            &routing.sending_facility,
        ] {
            out.push('|');
            out.push_str(echoed);
        }
        out.push('|');
        out.push_str(&now.format("%Y%m%d%H%M%S+0000").to_string());
        out.push_str("||ACK");
        if !h.trigger.is_empty() {
            out.push('^');
            out.push_str(&text(&h.trigger));
            out.push_str("^ACK");
        }
        out.push('|');
        out.push_str(ack_id);
        out.push_str("|P|");
        out.push_str(&text(if h.version.is_empty() {
            "2.5"
        } else {
            &h.version
        }));
        out.push_str("\rMSA|");
        out.push_str(self.code.as_str());
        out.push('|');
        out.push_str(&text(&h.control_id));
        if let Some(error) = &self.error {
            out.push('|');
            out.push_str(&text(&error.message));
            out.push_str("\rERR||");
            if let Some(location) = &error.location {
                // ERR-2 is an ERL: segment^sequence^field.
                match location.split_once('-') {
                    Some((segment, number)) => {
                        out.push_str(&text(segment));
                        out.push_str("^1^");
                        out.push_str(&text(number));
                    }
                    None => out.push_str(&text(location)),
                }
            }
            out.push('|');
            out.push_str(error.condition.0);
            out.push('^');
            out.push_str(&text(error.condition.1));
            out.push_str("^HL70357|E|");
            out.push_str(&text(&error.application_code));
            out.push_str("^^careflow|||");
            out.push_str(&text(&error.message));
        }
        out.push('\r');
        out
    }
}

/// A value written as one component ([`hl7::encode`]).
fn text(value: &str) -> String {
    hl7::encode(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::hl7::{Hl7, Routing};

    fn header() -> Header {
        Header {
            sending_application: "REG".into(),
            sending_facility: "GOOD HEALTH".into(),
            receiving_application: "CAREFLOW".into(),
            receiving_facility: "CF".into(),
            message_time: None,
            message_type: "ADT".into(),
            trigger: "A01".into(),
            control_id: "MSG|1".into(),
            version: "2.5".into(),
            routing: Routing {
                sending_application: "REG".into(),
                sending_facility: "GOOD HEALTH".into(),
                receiving_application: "CAREFLOW".into(),
                receiving_facility: "CF".into(),
            },
        }
    }

    fn now() -> DateTime<Utc> {
        "2024-01-05T08:30:00Z".parse().unwrap()
    }

    /// Issue #15 part 5, defect 4: a raw 0x1C (MLLP's end block) or any other control byte
    /// in an echoed MSH field broke the ACK's frame. Control characters go out as HL7 hex
    /// escapes (`\X1C\`), so the only one left in an ACK is the segment separator.
    #[test]
    fn control_characters_from_the_message_never_reach_the_ack_raw() {
        let message = "MSH|^~\\&|REG\u{1c}\\.br\\|GOOD\u{0b}HEALTH|CAREFLOW|CF|20240105083000||ADT^A01\u{0}|MSG\u{1c}1|P|2.5\r";
        let header = Hl7::parse(message).unwrap().header().unwrap();
        let text = Ack::accept().render(Some(&header), now(), "CF1");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\r'),
            "{text:?}"
        );
        assert_eq!(text.matches('\r').count(), 2, "{text:?}");
        assert!(
            text.contains("|REG\\X1C\\\\.br\\|GOOD\\X0B\\HEALTH|"),
            "{text:?}"
        );
        assert!(text.ends_with("MSA|AA|MSG\\X1C\\1\r"), "{text:?}");
    }

    /// Found by fuzzing (`hl7_message`, fuzz/regressions/hl7_message): MSH-3..6 were echoed
    /// from their decoded text, so what was data in the message (an escaped `\R\` or `\S\`,
    /// a `~` under the sender's own separators) came back as structure: a hundred `~` made an
    /// ACK with more repetitions than careflow accepts. The echo keeps the sender's components
    /// and escapes the rest.
    #[test]
    fn echoed_fields_keep_their_components_and_their_escapes() {
        let message =
            "MSH|^~\\&|APP\\R\\X^1.2\\S\\3^ISO|FAC&sub|CAREFLOW|CF|20240105||ADT^A01|M1|P|2.5\r";
        let header = Hl7::parse(message).unwrap().header().unwrap();
        let text = Ack::accept().render(Some(&header), now(), "CF1");
        assert!(
            text.starts_with("MSH|^~\\&|CAREFLOW|CF|APP\\R\\X^1.2\\S\\3^ISO|FAC&sub|"),
            "{text:?}"
        );
        let ack = Hl7::parse(&text).unwrap();
        let msh = ack.segment("MSH").unwrap();
        assert_eq!(ack.repeats(msh, 5).count(), 1);
        assert_eq!(ack.field_value(msh, 5, 1).as_deref(), Some("APP~X"));
        assert_eq!(ack.field_value(msh, 5, 2).as_deref(), Some("1.2^3"));
        // A message with separators of its own is answered in the standard ones.
        let message = "MSH#!*/$#APP!1.2/S/3#FAC#CAREFLOW#CF#20240105##ADT!A01#M1#P#2.5\r";
        let header = Hl7::parse(message).unwrap().header().unwrap();
        let text = Ack::accept().render(Some(&header), now(), "CF1");
        assert!(
            text.starts_with("MSH|^~\\&|CAREFLOW|CF|APP^1.2!3|FAC|"),
            "{text:?}"
        );
    }

    #[test]
    fn aa_answers_the_control_id_and_swaps_sender_and_receiver() {
        let text = Ack::accept().render(Some(&header()), now(), "CF1");
        assert_eq!(
            text,
            "MSH|^~\\&|CAREFLOW|CF|REG|GOOD HEALTH|20240105083000+0000||ACK^A01^ACK|CF1|P|2.5\r\
             MSA|AA|MSG\\F\\1\r"
        );
    }

    #[test]
    fn ae_carries_an_err_segment_and_the_result_parses_as_hl7() {
        let ack = Ack {
            code: AckCode::Error,
            error: Some(AckError {
                location: Some("PV1-19".into()),
                condition: ("207", "Application internal error"),
                application_code: "already_scheduled".into(),
                message: "encounter is already scheduled".into(),
            }),
        };
        let text = ack.render(Some(&header()), now(), "CF2");
        assert!(text.contains("\rMSA|AE|MSG\\F\\1|encounter is already scheduled\r"));
        assert!(text.contains(
            "\rERR||PV1^1^19|207^Application internal error^HL70357|E|already_scheduled^^careflow|||encounter is already scheduled\r"
        ));
        let parsed = hl7_parser::Message::parse(text.trim_end_matches('\r')).unwrap();
        assert_eq!(parsed.query("MSA.1").unwrap().raw_value(), "AE");
        assert_eq!(parsed.query("ERR.3.1").unwrap().raw_value(), "207");
    }

    #[test]
    fn without_a_header_msa_2_is_empty() {
        let ack = Ack {
            code: AckCode::Reject,
            error: None,
        };
        let text = ack.render(None, now(), "CF3");
        assert!(text.starts_with("MSH|^~\\&|CAREFLOW||||"));
        assert!(text.ends_with("\rMSA|AR|\r"));
    }
}
