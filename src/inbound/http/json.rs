//! Request bodies in JSON: the one reader of every route that takes one (the commands, FHIR,
//! webhooks, erasure, dead-letter discards).
//!
//! It owns three checks that used to differ from route to route: the Content-Type (a JSON
//! media type, else 415: a form, XML or text body was executed as if it were JSON), the size
//! (413 by the declared length or while reading, never a 400), and duplicate keys in an object
//! (400 `duplicate_key`: with "the last one wins", two systems reading one body could disagree
//! on what it says). It knows nothing of what the body means.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ApiError;

/// What a body must be declared as: `application/json`, or any `application/*+json` (FHIR's
/// `application/fhir+json`), parameters such as `charset` allowed.
pub const JSON_MEDIA_TYPES: &str = "application/json or application/*+json";

/// Reads the request's body as one JSON value, at most `max` bytes.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] (415) unless the Content-Type is JSON,
/// [`ApiError::PayloadTooLarge`] (413), a 400 `unreadable_body`,
/// [`ApiError::MalformedJson`] (400) for what is not JSON and a 400 `duplicate_key`.
pub async fn read(req: &HttpRequest, payload: web::Payload, max: usize) -> Result<Value, ApiError> {
    if !is_json(req) {
        return Err(ApiError::UnsupportedMediaType {
            accepted: JSON_MEDIA_TYPES,
        });
    }
    let body = read_bytes(req, payload, max).await?;
    parse(&body)
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// The body's bytes, refused beyond `max` (by its declared length when there is one, else
/// while reading).
async fn read_bytes(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(ApiError::PayloadTooLarge { max });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(max));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(
                "unreadable_body",
                "request body could not be read",
                error.to_string(),
                "send the body again",
            )
        })?;
        if body.len() + chunk.len() > max {
            return Err(ApiError::PayloadTooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What the duplicate-key error starts with, so [`parse`] can tell it from a syntax error
/// (serde's custom errors carry only text).
const DUPLICATE: &str = "duplicate key ";

/// Parses JSON, refusing an object that names a key twice (at any depth).
///
/// # Errors
/// A 400 `duplicate_key`, or [`ApiError::MalformedJson`].
pub fn parse(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Strict>(body) {
        Ok(Strict(value)) => Ok(value),
        Err(error) if error.to_string().starts_with(DUPLICATE) => Err(ApiError::bad_request(
            "duplicate_key",
            "an object names a key twice",
            format!("{error}"),
            "send each key once per object",
        )),
        Err(error) => Err(ApiError::MalformedJson {
            detail: format!(
                "{} at line {} column {}",
                classify(&error),
                error.line(),
                error.column()
            ),
        }),
    }
}

/// serde_json's syntax error category, without echoing input.
fn classify(error: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => "the body ends too early",
        Category::Syntax => "syntax error",
        Category::Io => "the body could not be read",
        Category::Data => "unexpected JSON data",
    }
}

/// A JSON value read by a visitor that refuses duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                // The key is a field name, never a value; cut short all the same.
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format!("{DUPLICATE}{shown:?}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_and_the_rest_parses() {
        let code = |body: &str| match parse(body.as_bytes()) {
            Ok(_) => "ok",
            Err(ApiError::BadRequest { code, .. }) => code,
            Err(ApiError::MalformedJson { .. }) => "malformed_json",
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(
            code(r#"{"a": 1, "b": [1, 2.5, null, true, {"c": "d"}]}"#),
            "ok"
        );
        assert_eq!(code(r#"{"a": 1, "a": 1}"#), "duplicate_key");
        assert_eq!(code(r#"[{"x": {"y": 1, "y": 2}}]"#), "duplicate_key");
        assert_eq!(code(r#"{"a": "duplicate key \"a\""}"#), "ok");
        assert_eq!(code(r#"{"a": "#), "malformed_json");
        assert_eq!(code(""), "malformed_json");
        assert_eq!(
            parse(br#"{"n": 18446744073709551615, "m": -1}"#).unwrap(),
            serde_json::json!({"n": u64::MAX, "m": -1})
        );
    }
}
