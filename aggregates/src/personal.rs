//! [`Personal`]: the one place in event data where a patient's personal fields live.
//!
//! DESIGN.md "Personal data": every personal field (name, birth date, member id, a payer who
//! may be a person) sits under one `personal` object of the event data, which the shell
//! encrypts as a whole with the patient's data key. After `careflow erase` destroys the key the
//! shell cannot decrypt it and hands the data to `decode` with `personal` set to `null` (or
//! without it); that decodes to [`Personal::Erased`], so the history still replays. This crate
//! never encrypts anything; it only keeps the personal fields in one place.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The JSON key the shell encrypts in an event's data.
pub const PERSONAL_FIELD: &str = "personal";

/// Personal fields as written (`Present`), or erased / undecryptable (`Erased`, JSON `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Personal<T> {
    Present(T),
    Erased,
}

impl<T> Personal<T> {
    /// The fields, if they can still be read.
    pub fn present(&self) -> Option<&T> {
        match self {
            Personal::Present(value) => Some(value),
            Personal::Erased => None,
        }
    }

    pub fn into_present(self) -> Option<T> {
        match self {
            Personal::Present(value) => Some(value),
            Personal::Erased => None,
        }
    }
}

impl<T> Default for Personal<T> {
    /// A missing `personal` key reads as erased: the shell may drop the ciphertext entirely.
    fn default() -> Self {
        Personal::Erased
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Present(value) => value.serialize(s),
            Personal::Erased => s.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            Some(value) => Personal::Present(value),
            None => Personal::Erased,
        })
    }
}
