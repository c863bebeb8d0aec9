//! HL7 v2 escape sequences, decoded ([`decode`]) and written ([`encode`]).
//!
//! hl7-parser has a `Separators::decode`, but it indexes the text by character count while
//! slicing by byte offset, so a value with a non-ASCII letter before an escape decodes wrongly
//! or panics. This decoder walks bytes, keeps UTF-8 intact and follows HL7 v2.5 §2.7:
//! `\F\ \S\ \T\ \R\ \E\` become the message's own separators, `\Xhh..\` the bytes it spells,
//! `\.br\` a line break; formatting escapes (`\H\`, `\N\`, `\.sp\`, ...) and ones it does not
//! know are dropped, as the standard asks of a receiver that does not render them.

use hl7_parser::message::Separators;

/// The text of `raw` with every escape sequence resolved.
pub fn decode(raw: &str, separators: &Separators) -> String {
    let escape = separators.escape;
    if !raw.contains(escape) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + escape.len_utf8()..];
        let Some(end) = after.find(escape) else {
            // An escape character with no closing one is kept as it was sent.
            out.push_str(&rest[start..]);
            return out;
        };
        let sequence = &after[..end];
        match sequence {
            "F" => out.push(separators.field),
            "S" => out.push(separators.component),
            "T" => out.push(separators.subcomponent),
            "R" => out.push(separators.repetition),
            "E" => out.push(escape),
            ".br" => out.push('\n'),
            hex if hex.starts_with('X') => push_hex(&mut out, &hex[1..]),
            _ => {}
        }
        rest = &after[end + escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// `\Xhhhh\`: the bytes in hex, read as UTF-8 when they are, else one character per byte
/// (Latin-1). Odd or non-hex digits drop the sequence.
fn push_hex(out: &mut String, digits: &str) {
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return;
    }
    let bytes: Option<Vec<u8>> = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect();
    let Some(bytes) = bytes else {
        return;
    };
    match String::from_utf8(bytes) {
        Ok(text) => out.push_str(&text),
        Err(error) => out.extend(error.into_bytes().into_iter().map(char::from)),
    }
}

/// `value` as one subcomponent of a message careflow writes (the standard separators
/// `|^~\\&`): every separator and the escape character escaped, a line break as `\.br\`, any
/// other control character as an HL7 hex escape (`\X1C\`). A raw 0x0B or 0x1C would end or
/// restart an MLLP frame, and a raw `\r` would start a segment.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '\r' | '\n' => out.push_str("\\.br\\"),
            c if c.is_control() => {
                use std::fmt::Write;
                let _ = write!(out, "\\X{:02X}\\", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_escapes_every_separator_and_control_character_and_decode_reads_it_back() {
        let value = "a|b^c&d~e\\f\u{1c}g\u{0b}h\u{85}é";
        let encoded = encode(value);
        assert_eq!(
            encoded,
            "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X1C\\g\\X0B\\h\\X85\\é"
        );
        assert_eq!(d(&encoded), value);
        assert_eq!(encode("one\r\ntwo"), "one\\.br\\\\.br\\two");
    }

    fn d(raw: &str) -> String {
        decode(raw, &Separators::default())
    }

    #[test]
    fn each_separator_escape_becomes_its_character() {
        assert_eq!(
            d(r"A\F\B\S\C\T\D\R\E\E\F"),
            "A|B^C&D~E\\F",
            "field, component, subcomponent, repetition, escape"
        );
    }

    #[test]
    fn text_without_escapes_is_unchanged_and_non_ascii_survives() {
        assert_eq!(d("Müller"), "Müller");
        assert_eq!(d(r"Müller\T\Söhne"), "Müller&Söhne");
        assert_eq!(d(r"Łódź\S\Zürich\F\"), "Łódź^Zürich|");
    }

    #[test]
    fn hex_line_break_and_formatting_escapes() {
        assert_eq!(d(r"caf\XC3A9\"), "café");
        assert_eq!(
            d(r"\XE9\t\XE9\"),
            "été",
            "a byte that is not UTF-8 reads as Latin-1"
        );
        assert_eq!(d(r"line one\.br\line two"), "line one\nline two");
        assert_eq!(d(r"\H\bold\N\ text"), "bold text");
        assert_eq!(d(r"odd \X123\ digits"), "odd  digits");
    }

    #[test]
    fn an_unclosed_escape_is_kept_as_sent() {
        assert_eq!(d(r"C:\temp"), r"C:\temp");
    }

    #[test]
    fn the_message_s_own_separators_are_used() {
        let separators = Separators {
            field: '#',
            component: '!',
            subcomponent: '$',
            repetition: '*',
            escape: '/',
            lenient_newlines: false,
        };
        assert_eq!(decode("a/F/b/S/c/E/", &separators), "a#b!c/");
    }
}
