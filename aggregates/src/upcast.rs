//! Upcasting: turning the data of an old schema version into the current shape, on read.
//!
//! Stored bytes never change (the hash chain covers them); instead every read passes
//! `(event_type, schema_version, data)` through a chain of [`Upcaster`]s, one step per version,
//! until the data has the current version's shape, and only then deserialises it. An upcaster is
//! a plain function over JSON, so it can be written and tested without the old Rust type.
//!
//! Each aggregate lists its upcasters in [`crate::aggregate::Aggregate::UPCASTERS`]; the current
//! version of every event type is the number next to it in the aggregate's event enum.

use serde_json::Value;

use crate::codec::DecodeError;

/// One step: the data of `event_type` at `from_version` becomes `from_version + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u32,
    /// Returns the next version's data, or why this data cannot be upcast (a message with no
    /// values in it: it is logged).
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// Brings `data` from `schema_version` to `current`, one upcaster at a time.
///
/// # Errors
/// [`DecodeError::FutureSchemaVersion`] when the data is newer than this build,
/// [`DecodeError::MissingUpcaster`] when a step is missing from the chain (a programming error
/// caught by the codec tests), [`DecodeError::Upcast`] when a step refuses the data.
pub fn upcast(
    upcasters: &[Upcaster],
    event_type: &str,
    schema_version: u32,
    current: u32,
    mut data: Value,
) -> Result<Value, DecodeError> {
    if schema_version > current {
        return Err(DecodeError::FutureSchemaVersion {
            event_type: event_type.to_owned(),
            found: schema_version,
            current,
        });
    }
    let mut version = schema_version;
    while version < current {
        let step = upcasters
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| DecodeError::MissingUpcaster {
                event_type: event_type.to_owned(),
                version,
            })?;
        data = (step.upcast)(data).map_err(|reason| DecodeError::Upcast {
            event_type: event_type.to_owned(),
            version,
            reason,
        })?;
        version += 1;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add_b(mut data: Value) -> Result<Value, String> {
        data["b"] = json!(2);
        Ok(data)
    }

    fn add_c(mut data: Value) -> Result<Value, String> {
        if data.get("b").is_none() {
            return Err("b is missing".into());
        }
        data["c"] = json!(3);
        Ok(data)
    }

    const CHAIN: &[Upcaster] = &[
        Upcaster {
            event_type: "ThingHappened",
            from_version: 2,
            upcast: add_c,
        },
        Upcaster {
            event_type: "ThingHappened",
            from_version: 1,
            upcast: add_b,
        },
    ];

    #[test]
    fn applies_every_step_in_version_order() {
        let data = upcast(CHAIN, "ThingHappened", 1, 3, json!({"a": 1})).unwrap();
        assert_eq!(data, json!({"a": 1, "b": 2, "c": 3}));
        let data = upcast(CHAIN, "ThingHappened", 3, 3, json!({"a": 1})).unwrap();
        assert_eq!(data, json!({"a": 1}), "current data passes untouched");
    }

    #[test]
    fn reports_future_missing_and_failing_steps() {
        assert_eq!(
            upcast(CHAIN, "ThingHappened", 4, 3, json!({})),
            Err(DecodeError::FutureSchemaVersion {
                event_type: "ThingHappened".into(),
                found: 4,
                current: 3
            })
        );
        assert_eq!(
            upcast(CHAIN, "OtherThing", 1, 2, json!({})),
            Err(DecodeError::MissingUpcaster {
                event_type: "OtherThing".into(),
                version: 1
            })
        );
        assert_eq!(
            upcast(CHAIN, "ThingHappened", 2, 3, json!({})),
            Err(DecodeError::Upcast {
                event_type: "ThingHappened".into(),
                version: 2,
                reason: "b is missing".into()
            })
        );
    }
}
