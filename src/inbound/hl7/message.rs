//! Reading a parsed HL7 v2 message by position (`PID-3.5`), with escapes decoded.
//!
//! hl7-parser gives the structure (segments, fields, repetitions, components,
//! subcomponents); this module adds the two things every read needs: the 1-based HL7
//! numbering without index arithmetic at the call sites, and decoded text (see
//! [`super::escape`]). Empty values read as `None`, as HL7 treats an empty field as absent.

use hl7_parser::Message;
use hl7_parser::message::{Field, Repeat, Segment, Separators};

use super::escape::{decode, encode};
use super::{Header, Malformed, Routing};

/// Most segments a message may have. careflow's messages have a handful (a DFT one FT1 per
/// charge); a thousand leaves room for long DFTs and Z-segments.
pub const MAX_SEGMENTS: usize = 1_000;
/// Most fields one segment may have (HL7 defines at most about 50 for any segment).
pub const MAX_FIELDS: usize = 256;
/// Most repetitions (`~`) one field may have.
pub const MAX_REPETITIONS: usize = 100;
/// Most delimiters (field, component, repetition and subcomponent separators) in a message.
///
/// Why: the parser builds a node per field, repetition, component and subcomponent, about a
/// kilobyte per delimiter for empty fields, so a 1 MB message of `|` cost ~0.7 GB and 2 s.
/// 20,000 delimiters is a DFT of a few hundred charges and bounds a parse to tens of MB.
pub const MAX_DELIMITERS: usize = 20_000;

/// Counts the structure of `text` in one pass over its bytes, before anything is allocated
/// for it, and refuses it at the first bound passed: what a parse costs is then bounded by
/// the bounds, not by the input.
///
/// # Errors
/// [`Malformed::TooComplex`] naming the bound.
fn check_structure(text: &str) -> Result<(), Malformed> {
    let bytes = text.as_bytes();
    // MSH-1 is the field separator, MSH-2 the other separators (checked by the caller's MSH).
    let Some(&field) = bytes.get(3) else {
        return Ok(());
    };
    let encoding: Vec<u8> = bytes
        .iter()
        .skip(4)
        .take_while(|&&b| b != field && b != b'\r' && b != b'\n')
        .copied()
        .collect();
    let repetition = encoding.get(1).copied();
    let too_complex = |what, max| Err(Malformed::TooComplex { what, max });
    let (mut segments, mut fields, mut repetitions, mut delimiters) = (1, 0, 0, 0);
    for &byte in bytes {
        if byte == b'\r' || byte == b'\n' {
            segments += 1;
            fields = 0;
            repetitions = 0;
            if segments > MAX_SEGMENTS {
                return too_complex("segments", MAX_SEGMENTS);
            }
            continue;
        }
        if byte == field {
            fields += 1;
            repetitions = 0;
            if fields > MAX_FIELDS {
                return too_complex("fields in a segment", MAX_FIELDS);
            }
        } else if Some(byte) == repetition {
            repetitions += 1;
            if repetitions > MAX_REPETITIONS {
                return too_complex("repetitions of a field", MAX_REPETITIONS);
            }
        } else if !encoding.contains(&byte) {
            continue;
        }
        delimiters += 1;
        if delimiters > MAX_DELIMITERS {
            return too_complex("delimiters", MAX_DELIMITERS);
        }
    }
    Ok(())
}

/// A parsed message and its separators.
pub struct Hl7<'m> {
    message: Message<'m>,
}

impl<'m> Hl7<'m> {
    /// Parses `text` (segments separated by `\r`; `\n` and `\r\n` are accepted too, as many
    /// senders write files that way; a leading byte order mark is skipped).
    ///
    /// # Errors
    /// [`Malformed::Unparsable`] when the text is not an HL7 v2 message starting with `MSH`.
    pub fn parse(text: &'m str) -> Result<Self, Malformed> {
        // A UTF-8 byte order mark (Windows tools write one) is not part of the message.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = text.trim_end_matches(['\r', '\n']);
        if !text.starts_with("MSH") {
            return Err(Malformed::Unparsable(
                "the message does not start with MSH".into(),
            ));
        }
        check_structure(text)?;
        let message = Message::parse_with_lenient_newlines(text, true).map_err(|error| {
            // The parser's error quotes the input; only the position leaves this module.
            let detail = match error {
                hl7_parser::parser::ParseError::FailedToParse { position, .. } => {
                    format!("the structure breaks at character {position}")
                }
                hl7_parser::parser::ParseError::IncompleteInput(_) => {
                    "the message ends too early".to_owned()
                }
            };
            Malformed::Unparsable(detail)
        })?;
        Ok(Self { message })
    }

    pub fn separators(&self) -> &Separators {
        &self.message.separators
    }

    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<&Segment<'m>> {
        self.message.segment(name)
    }

    /// Every segment named `name`, in message order.
    pub fn segments<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Segment<'m>> + 's {
        self.message.segments().filter(move |s| s.name == name)
    }

    /// `SEG-field.component.subcomponent` of the first repetition, decoded; `None` when empty.
    pub fn value(&self, segment: &str, field: usize, component: usize) -> Option<String> {
        let segment = self.segment(segment)?;
        self.field_value(segment, field, component)
    }

    /// Component `component` (subcomponent 1) of a segment's field, first repetition.
    pub fn field_value(
        &self,
        segment: &Segment<'m>,
        field: usize,
        component: usize,
    ) -> Option<String> {
        let repeat = field_of(segment, field)?.repeats().next()?;
        self.repeat_value(repeat, component, 1)
    }

    /// Component and subcomponent of one repetition, decoded; `None` when empty.
    pub fn repeat_value(
        &self,
        repeat: &Repeat<'m>,
        component: usize,
        subcomponent: usize,
    ) -> Option<String> {
        non_empty(self.exact_value(repeat, component, subcomponent)?)
    }

    /// Component and subcomponent of one repetition, decoded but not trimmed (for values
    /// whose rule is exact, such as amounts); `None` when empty.
    pub fn exact_value(
        &self,
        repeat: &Repeat<'m>,
        component: usize,
        subcomponent: usize,
    ) -> Option<String> {
        if component == 0 || subcomponent == 0 {
            return None;
        }
        let raw = repeat
            .component(component)?
            .subcomponent(subcomponent)?
            .raw_value();
        Some(decode(raw, self.separators())).filter(|text| !text.is_empty())
    }

    /// The whole field as sent (first repetition, every component), decoded.
    pub fn raw_field(&self, segment: &Segment<'m>, field: usize) -> Option<String> {
        let raw = field_of(segment, field)?.raw_value();
        non_empty(decode(raw, self.separators()))
    }

    /// A field's first repetition written for a message with the standard separators: its
    /// components and subcomponents kept, each decoded and [`encode`]d ([`Routing`]).
    pub fn echo_field(&self, segment: &Segment<'m>, field: usize) -> String {
        let Some(repeat) = field_of(segment, field).and_then(|f| f.repeats().next()) else {
            return String::new();
        };
        let separators = self.separators();
        let components: Vec<String> = repeat
            .components()
            .map(|component| {
                let subcomponents: Vec<String> = component
                    .subcomponents()
                    .map(|sub| encode(&decode(sub.raw_value(), separators)))
                    .collect();
                subcomponents.join("&")
            })
            .collect();
        components.join("^")
    }

    /// The repetitions of a field (`~`), in order.
    pub fn repeats<'s>(
        &'s self,
        segment: &'s Segment<'m>,
        field: usize,
    ) -> impl Iterator<Item = &'s Repeat<'m>> + 's {
        field_of(segment, field)
            .into_iter()
            .flat_map(Field::repeats)
    }

    /// MSH as a [`Header`].
    ///
    /// # Errors
    /// [`Malformed`] when MSH-9 or MSH-10 is empty.
    pub fn header(&self) -> Result<Header, Malformed> {
        let msh = self
            .segment("MSH")
            .ok_or_else(|| Malformed::Unparsable("the message has no MSH segment".into()))?;
        let header = Header {
            sending_application: self.raw_field(msh, 3).unwrap_or_default(),
            sending_facility: self.raw_field(msh, 4).unwrap_or_default(),
            receiving_application: self.raw_field(msh, 5).unwrap_or_default(),
            receiving_facility: self.raw_field(msh, 6).unwrap_or_default(),
            message_time: self.field_value(msh, 7, 1),
            message_type: self.field_value(msh, 9, 1).unwrap_or_default(),
            trigger: self.field_value(msh, 9, 2).unwrap_or_default(),
            control_id: self.field_value(msh, 10, 1).unwrap_or_default(),
            version: self
                .field_value(msh, 12, 1)
                .unwrap_or_else(|| "2.5".to_owned()),
            routing: Routing {
                sending_application: self.echo_field(msh, 3),
                sending_facility: self.echo_field(msh, 4),
                receiving_application: self.echo_field(msh, 5),
                receiving_facility: self.echo_field(msh, 6),
            },
        };
        if header.control_id.is_empty() {
            return Err(Malformed::Missing { field: "MSH-10" });
        }
        if header.message_type.is_empty() {
            return Err(Malformed::Missing { field: "MSH-9" });
        }
        Ok(header)
    }
}

/// `segment`'s field `number` in HL7's numbering. hl7-parser counts MSH-1 (the field
/// separator) as a field too, so MSH and every other segment read with the same numbers.
fn field_of<'s, 'm>(segment: &'s Segment<'m>, number: usize) -> Option<&'s Field<'m>> {
    if number == 0 {
        return None;
    }
    segment.field(number)
}

fn non_empty(text: String) -> Option<String> {
    let trimmed = text.trim();
    // `""` is HL7's explicit null ("delete this value"); careflow treats it as absent.
    if trimmed.is_empty() || trimmed == "\"\"" {
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A04: &str = "MSH|^~\\&|REG|GOOD HEALTH|CAREFLOW|CF|20240105083000||ADT^A04^ADT_A01|MSG00001|P|2.5\r\
PID|1||X-9^^^GH^PI~CF-1001^^^GH^MR||Tre\\T\\Gauss^Ann^Marie~Alias^Ann||19800131|F\r";

    #[test]
    fn reads_header_fields_in_hl7_numbering() {
        let hl7 = Hl7::parse(A04).unwrap();
        let header = hl7.header().unwrap();
        assert_eq!(header.sending_application, "REG");
        assert_eq!(header.sending_facility, "GOOD HEALTH");
        assert_eq!(header.message_type, "ADT");
        assert_eq!(header.trigger, "A04");
        assert_eq!(header.control_id, "MSG00001");
        assert_eq!(header.version, "2.5");
    }

    #[test]
    fn reads_repetitions_components_and_decodes_escapes() {
        let hl7 = Hl7::parse(A04).unwrap();
        let pid = hl7.segment("PID").unwrap();
        let ids: Vec<(Option<String>, Option<String>)> = hl7
            .repeats(pid, 3)
            .map(|r| (hl7.repeat_value(r, 1, 1), hl7.repeat_value(r, 5, 1)))
            .collect();
        assert_eq!(
            ids,
            vec![
                (Some("X-9".into()), Some("PI".into())),
                (Some("CF-1001".into()), Some("MR".into()))
            ]
        );
        assert_eq!(hl7.value("PID", 5, 1).as_deref(), Some("Tre&Gauss"));
        assert_eq!(hl7.value("PID", 7, 1).as_deref(), Some("19800131"));
        assert_eq!(hl7.value("PID", 9, 1), None, "past the last field");
        assert_eq!(hl7.value("PV1", 19, 1), None, "no such segment");
    }

    /// Issue #15 part 5, defect 3: the structure is bounded before the parser allocates.
    #[test]
    fn structure_is_bounded_before_parsing() {
        let msh = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5\r";
        let check = |body: String| Hl7::parse(&format!("{msh}{body}")).err();
        let refused = |what, max| Some(Malformed::TooComplex { what, max });
        // The MSH line above has 11 field separators; ZZZ's make up the rest.
        assert_eq!(check(format!("ZZZ{}", "|".repeat(MAX_FIELDS))), None);
        assert_eq!(
            check(format!("ZZZ{}", "|".repeat(MAX_FIELDS + 1))),
            refused("fields in a segment", MAX_FIELDS)
        );
        assert_eq!(
            check(format!("ZZZ|{}", "~".repeat(MAX_REPETITIONS + 1))),
            refused("repetitions of a field", MAX_REPETITIONS)
        );
        assert_eq!(
            check("ZZZ|a\r".repeat(MAX_SEGMENTS)),
            refused("segments", MAX_SEGMENTS)
        );
        assert_eq!(
            check(format!("ZZZ|{}", "^".repeat(MAX_DELIMITERS))),
            refused("delimiters", MAX_DELIMITERS)
        );
        // Half a million empty fields stop at the first bound, whatever follows.
        assert_eq!(
            check(format!("ZZZ{}", "|".repeat(500_000))),
            refused("fields in a segment", MAX_FIELDS)
        );
    }

    /// Issue #15 part 5, defect 5: a message starting with a UTF-8 byte order mark (as
    /// Windows tools write files) was answered AR with an empty MSA-2.
    #[test]
    fn a_byte_order_mark_is_not_part_of_the_message() {
        let text = format!("\u{feff}{A04}");
        let hl7 = Hl7::parse(&text).unwrap();
        assert_eq!(hl7.header().unwrap().control_id, "MSG00001");
        assert_eq!(
            super::super::msh_header(&text).map(|h| h.control_id),
            Some("MSG00001".to_owned())
        );
    }

    #[test]
    fn refuses_what_is_not_hl7() {
        assert!(matches!(Hl7::parse("hello"), Err(Malformed::Unparsable(_))));
        let no_id = Hl7::parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A08||P|2.5\r").unwrap();
        assert!(matches!(
            no_id.header(),
            Err(Malformed::Missing { field: "MSH-10" })
        ));
    }
}
