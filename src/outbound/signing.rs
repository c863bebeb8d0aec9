//! Standard Webhooks signatures (standardwebhooks.com, spec 1.0.0, the symmetric scheme).
//!
//! The secret is shown to people as `whsec_` + base64 of 24 to 64 random bytes; the key is the
//! decoded bytes, never the text. The signed content is `{msg_id}.{timestamp}.{body}` with the
//! body exactly as sent, and the `webhook-signature` header is `v1,` + base64 of its
//! HMAC-SHA256 (a space-delimited list when several keys sign; careflow signs with one).
//!
//! This module only computes and checks signatures; who is sent what lives in
//! [`super::webhooks`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The prefix of a serialised symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Shortest key the spec accepts (192 bits).
const MIN_KEY_BYTES: usize = 24;
/// Longest key careflow accepts (512 bits).
const MAX_KEY_BYTES: usize = 64;
/// The size of a generated key.
const GENERATED_KEY_BYTES: usize = 32;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Occurs when the text does not start with `whsec_`.
    ///
    /// ### Handling
    /// HTTP 422 at registration; nothing appended.
    #[error("webhook secret must start with whsec_")]
    Prefix,
    /// Occurs when the part after the prefix is not base64.
    #[error("webhook secret after whsec_ must be base64")]
    Base64,
    /// Occurs when the key is shorter than 24 or longer than 64 bytes.
    #[error("webhook secret must decode to 24 to 64 bytes, not {0}")]
    Length(usize),
}

/// A webhook's signing key: the decoded bytes of a `whsec_` secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    ///
    /// # Errors
    /// [`SecretError`].
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = BASE64.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// A fresh random secret of 32 bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// The `whsec_` text, shown once to whoever registers the webhook.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// The `webhook-signature` header value for one delivery attempt.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(self.mac(msg_id, timestamp, body)))
    }

    /// True when one of the space-delimited `v1,` signatures of `header` is this key's over
    /// the same content (compared in constant time by the MAC itself).
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|signature| {
            let Some(encoded) = signature.strip_prefix("v1,") else {
                return false;
            };
            let Ok(expected) = BASE64.decode(encoded) else {
                return false;
            };
            self.hmac(msg_id, timestamp, body)
                .verify_slice(&expected)
                .is_ok()
        })
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        self.hmac(msg_id, timestamp, body)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    fn hmac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(error) => unreachable!("HMAC takes keys of any length: {error}"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks libraries' test suites ("sign function
    /// works"): any receiver built on them verifies careflow's signatures.
    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
            &signature
        ));
        // A stray space in the body, another id or another timestamp breaks it.
        assert!(!secret.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test":2432232314}"#,
            &signature
        ));
        assert!(!secret.verify("msg_other", 1_614_265_330, body, &signature));
        assert!(!secret.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_331,
            body,
            &signature
        ));
    }

    #[test]
    fn a_rotated_header_verifies_when_any_signature_matches() {
        let secret = WebhookSecret::generate();
        let signature = secret.sign("msg_1", 10, b"{}");
        let header = format!("v1,AAAA {signature} v1a,abc");
        assert!(secret.verify("msg_1", 10, b"{}", &header));
        assert!(!WebhookSecret::generate().verify("msg_1", 10, b"{}", &header));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let secret = WebhookSecret::generate();
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&text).unwrap(), secret);
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!"),
            Err(SecretError::Base64)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_AAAA"),
            Err(SecretError::Length(3))
        );
        assert!(format!("{secret:?}").contains("redacted"));
    }
}
