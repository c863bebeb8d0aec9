//! Stream ids: `{kind}-{id}`, parsed once and trusted afterwards.
//!
//! The id part is what the upstream system uses (an MRN, a visit number, a requisition
//! number), so the rule is deliberately narrow: 1-128 characters of `[A-Za-z0-9._:-]`. That is
//! wide enough for every identifier scheme we have met (HL7 CX, FHIR ids, OIDs) and narrow
//! enough that an id can go into a URL path, an Odoo external id or a NATS subject token
//! without escaping. The kind is lower-case `[a-z_]`, so the first `-` always separates the
//! two halves even though ids may themselves contain `-`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted id part, in bytes (all accepted characters are ASCII).
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted kind.
pub const MAX_KIND_LEN: usize = 32;

/// A validated stream id such as `patient_account-MRN001`.
///
/// The fields are private: the only ways in are [`StreamId::new`] and [`StreamId::parse`], so
/// a `StreamId` in hand always satisfies the id rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId {
    value: String,
    kind_len: usize,
}

/// Why a stream id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// Occurs when the id part is empty or longer than [`MAX_ID_LEN`].
    #[error("id must be 1 to {MAX_ID_LEN} characters long, got {0}")]
    IdLength(usize),
    /// Occurs when the id part holds a character outside `[A-Za-z0-9._:-]`.
    #[error("id may hold only A-Z, a-z, 0-9 and . _ : - (found {0:?})")]
    IdCharacter(char),
    /// Occurs when a new id is `.` or `..`: URL path segments that clients and proxies
    /// normalise away, so `/v1/patient-accounts/../commands` could never be reached.
    #[error("id must not be . or ..")]
    DotSegment,
    /// Occurs when the kind is empty, too long, or not lower-case `[a-z_]`.
    #[error("stream kind must be 1 to {MAX_KIND_LEN} characters of a-z and _")]
    Kind,
    /// Occurs when a full stream id has no `-` between kind and id.
    #[error("stream id must look like kind-id")]
    Shape,
}

impl StreamId {
    /// Builds `{kind}-{id}` after checking both halves.
    ///
    /// # Errors
    /// [`StreamIdError`] naming the first rule broken.
    pub fn new(kind: &str, id: &str) -> Result<Self, StreamIdError> {
        validate_kind(kind)?;
        validate_id(id)?;
        Ok(Self {
            value: format!("{kind}-{id}"),
            kind_len: kind.len(),
        })
    }

    /// Parses a full stream id (`patient_account-MRN001`).
    ///
    /// # Errors
    /// [`StreamIdError::Shape`] without a `-`, otherwise as [`StreamId::new`].
    ///
    /// Streams already stored are read with the id rule as it stood when they were written:
    /// a `.` or `..` id (refused for new ids since issue #15 part 5) still parses, so such a
    /// history stays readable and verifiable.
    pub fn parse(value: &str) -> Result<Self, StreamIdError> {
        let (kind, id) = value.split_once('-').ok_or(StreamIdError::Shape)?;
        validate_kind(kind)?;
        validate_id_characters(id)?;
        Ok(Self {
            value: value.to_owned(),
            kind_len: kind.len(),
        })
    }

    /// The kind half (`patient_account`).
    pub fn kind(&self) -> &str {
        &self.value[..self.kind_len]
    }

    /// The upstream id half (`MRN001`).
    pub fn id(&self) -> &str {
        &self.value[self.kind_len + 1..]
    }

    /// The whole id as stored.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// Checks the id rule on its own, for ids that travel in bodies (an `account_id`, an
/// `item_id`) rather than as streams.
///
/// # Errors
/// [`StreamIdError::IdLength`], [`StreamIdError::IdCharacter`] or
/// [`StreamIdError::DotSegment`].
pub fn validate_id(id: &str) -> Result<(), StreamIdError> {
    validate_id_characters(id)?;
    if id == "." || id == ".." {
        return Err(StreamIdError::DotSegment);
    }
    Ok(())
}

/// Length and characters: the part of the id rule that every stored id has always met.
fn validate_id_characters(id: &str) -> Result<(), StreamIdError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(StreamIdError::IdLength(id.chars().count()));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some(c) => Err(StreamIdError::IdCharacter(c)),
        None => Ok(()),
    }
}

fn validate_kind(kind: &str) -> Result<(), StreamIdError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok { Ok(()) } else { Err(StreamIdError::Kind) }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<(&str, &str), StreamIdError>) {
        let got = StreamId::parse(input);
        match expected {
            Ok((kind, id)) => {
                let got = got.unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
                assert_eq!((got.kind(), got.id()), (kind, id));
                assert_eq!(got.as_str(), input);
            }
            Err(err) => assert_eq!(got, Err(err), "{input:?}"),
        }
    }

    #[test]
    fn accepts_upstream_identifier_shapes() {
        check("patient_account-MRN001", Ok(("patient_account", "MRN001")));
        check("encounter-V-2024-001", Ok(("encounter", "V-2024-001")));
        check("purchase-REQ:17.a_b", Ok(("purchase", "REQ:17.a_b")));
        check("inventory_item-1", Ok(("inventory_item", "1")));
    }

    #[test]
    fn id_length_boundaries() {
        let longest = "a".repeat(MAX_ID_LEN);
        check(&format!("encounter-{longest}"), Ok(("encounter", &longest)));
        check(
            &format!("encounter-{longest}a"),
            Err(StreamIdError::IdLength(129)),
        );
        check("encounter-", Err(StreamIdError::IdLength(0)));
    }

    #[test]
    fn refuses_characters_outside_the_rule() {
        check("encounter-a/b", Err(StreamIdError::IdCharacter('/')));
        check("encounter-a b", Err(StreamIdError::IdCharacter(' ')));
        check("encounter-é", Err(StreamIdError::IdCharacter('é')));
        check("Encounter-1", Err(StreamIdError::Kind));
        check("-1", Err(StreamIdError::Kind));
        check("encounter", Err(StreamIdError::Shape));
    }

    #[test]
    fn serde_goes_through_the_same_rule() {
        let ok: StreamId = serde_json::from_str("\"encounter-V1\"").unwrap();
        assert_eq!(ok.id(), "V1");
        assert!(serde_json::from_str::<StreamId>("\"encounter-V 1\"").is_err());
    }
}
