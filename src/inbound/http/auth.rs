//! Bearer tokens and roles: who may call what.
//!
//! Tokens are JWTs signed with HS256 (`jsonwebtoken`), with claims `sub` (the caller, which
//! becomes the events' `principal`), `role` and `exp` (plus `iat`). The secret is the
//! configured `jwt_secret`, or else a random one generated into `<data_dir>/jwt_secret` (mode
//! 0600) the first time `serve` or `token issue` needs it; both read the same file, so a token
//! issued on the command line is accepted by the server.
//!
//! The rights each role has are one table, [`Role::allows`], listed in docs/http-api.md.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::secret_file;

/// The four roles of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Upstream systems: send commands, read current state.
    System,
    /// Finance reconciliation: billing and analytics read models.
    Finance,
    /// Compliance: histories, state as of a time, the global log, audit views, exports; no
    /// commands.
    Auditor,
    /// Operators: projection rebuilds, dead letters, the global log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The rights table (docs/http-api.md "Roles").
    pub fn allows(self, right: Right) -> bool {
        match right {
            Right::SendCommands => self == Role::System,
            Right::ReadState => matches!(self, Role::System | Role::Auditor),
            Right::ReadHistory => self == Role::Auditor,
            Right::ReadEvents => matches!(self, Role::Auditor | Role::Admin),
            Right::ReadBilling | Right::ReadAnalytics => self == Role::Finance,
            Right::ReadAudit | Right::Export => self == Role::Auditor,
            Right::Rebuild | Right::DeadLetters | Right::ErasePersonalData => self == Role::Admin,
            Right::ManageWebhooks => self == Role::Admin,
        }
    }
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    SendCommands,
    ReadState,
    ReadHistory,
    ReadEvents,
    ReadBilling,
    ReadAnalytics,
    ReadAudit,
    Export,
    Rebuild,
    DeadLetters,
    ErasePersonalData,
    ManageWebhooks,
}

impl Right {
    /// For error messages ("role finance may not {describe}").
    pub fn describe(self) -> &'static str {
        match self {
            Right::SendCommands => "send commands",
            Right::ReadState => "read aggregate state",
            Right::ReadHistory => "read histories",
            Right::ReadEvents => "read the global event log",
            Right::ReadBilling => "read billing views",
            Right::ReadAnalytics => "read analytics views",
            Right::ReadAudit => "read audit views",
            Right::Export => "export audit data",
            Right::Rebuild => "rebuild projections",
            Right::DeadLetters => "manage dead letters",
            Right::ErasePersonalData => "erase personal data",
            Right::ManageWebhooks => "manage webhooks",
        }
    }

    /// The roles that have this right, for hints.
    pub fn roles(self) -> Vec<&'static str> {
        [Role::System, Role::Finance, Role::Auditor, Role::Admin]
            .into_iter()
            .filter(|role| role.allows(self))
            .map(Role::as_str)
            .collect()
    }
}

/// Who may call a route: anyone (no token looked at), or a valid token whose role has the
/// right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Token(Right),
}

/// One row of the route table (`openapi::ROUTES`): the guard in the [`super::Caller`]
/// extractor, the OpenAPI document's security and 401/403 answers, the authorization matrix
/// in docs/http-api.md and its black-box test all read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Lower case, as OpenAPI writes it.
    pub method: &'static str,
    /// The actix pattern, which is the OpenAPI path too.
    pub path: &'static str,
    pub access: Access,
}

impl Route {
    pub const fn public(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            access: Access::Public,
        }
    }

    pub const fn token(method: &'static str, path: &'static str, right: Right) -> Self {
        Self {
            method,
            path,
            access: Access::Token(right),
        }
    }

    /// The route of a matched request (its method and actix match pattern).
    pub fn find(method: &str, pattern: &str) -> Option<&'static Route> {
        super::openapi::ROUTES
            .iter()
            .find(|route| route.path == pattern && route.method.eq_ignore_ascii_case(method))
    }

    /// What `who` is answered on this route, whatever else the request holds.
    pub fn answer(&self, who: Principal) -> Answer {
        match (self.access, who) {
            (Access::Public, _) => Answer::Served,
            (Access::Token(right), Principal::Role(role)) if role.allows(right) => Answer::Served,
            (Access::Token(_), Principal::Role(_)) => Answer::Forbidden,
            (Access::Token(_), _) => Answer::Unauthorized,
        }
    }
}

/// Who calls, in the authorization matrix: a valid token of each role, or one of the ways a
/// token fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Role(Role),
    /// No `Authorization` header.
    NoToken,
    /// Signed with the server's key, `exp` in the past.
    Expired,
    /// HS256 with a key that is not the server's.
    OtherKey,
    /// `{"alg": "none"}` and no signature.
    AlgNone,
}

impl Principal {
    /// The matrix's columns, in order.
    pub const ALL: [Principal; 8] = [
        Principal::Role(Role::System),
        Principal::Role(Role::Finance),
        Principal::Role(Role::Auditor),
        Principal::Role(Role::Admin),
        Principal::NoToken,
        Principal::Expired,
        Principal::OtherKey,
        Principal::AlgNone,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Principal::Role(role) => role.as_str(),
            Principal::NoToken => "no token",
            Principal::Expired => "expired",
            Principal::OtherKey => "other key",
            Principal::AlgNone => "alg none",
        }
    }
}

/// A cell of the authorization matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Past the guard: a 2xx, or a 4xx that is not 401/403 (the request's own fault).
    Served,
    /// 403 `forbidden`.
    Forbidden,
    /// 401 `unauthorized`.
    Unauthorized,
}

impl Answer {
    pub fn cell(self) -> &'static str {
        match self {
            Answer::Served => "ok",
            Answer::Forbidden => "403",
            Answer::Unauthorized => "401",
        }
    }
}

/// The authorization matrix as a markdown table: every route of `openapi::ROUTES` × every
/// [`Principal`]. docs/http-api.md holds exactly this text (`tests/it/matrix.rs` compares
/// it and walks every cell against a real server).
pub fn authorization_matrix() -> String {
    let mut out = String::from("| Route |");
    for who in Principal::ALL {
        out.push_str(&format!(" {} |", who.label()));
    }
    out.push_str("\n|---|");
    for _ in Principal::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for route in super::openapi::ROUTES {
        out.push_str(&format!(
            "| `{} {}` |",
            route.method.to_ascii_uppercase(),
            route.path
        ));
        for who in Principal::ALL {
            out.push_str(&format!(" {} |", route.answer(who).cell()));
        }
        out.push('\n');
    }
    out
}

/// The claims careflow signs and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    pub iat: u64,
}

/// Why a token was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Occurs when the token is expired, badly signed, malformed or lacks a claim.
    #[error("token is not valid: {0}")]
    InvalidToken(String),
    /// Occurs when the subject is empty, too long or holds control characters.
    #[error("subject must be 1 to 128 printable characters")]
    InvalidSubject,
    /// Occurs when the secret file cannot be read or written.
    #[error("JWT secret at {path} cannot be used: {reason}")]
    Secret { path: String, reason: String },
    /// Occurs when signing fails (never with HS256 and a non-empty key).
    #[error("token could not be signed: {0}")]
    Sign(String),
}

/// Signs and checks tokens with one HS256 secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// What `iat` and `exp` are measured by: the runtime's clock, not the library's own
    /// reading of the system clock, so a test's clock decides expiry too.
    clock: Clock,
}

impl TokenKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` is checked in `verify` against `clock`, with no leeway: careflow issues its
        // tokens itself, so issuer and checker share a clock (several nodes: keep them on
        // NTP). A 30 s leeway let a token live 30 s past `exp`.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            clock: Clock::system(),
        }
    }

    /// The same keys with `iat` and `exp` measured by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now_seconds(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).unwrap_or(0)
    }

    /// A token for `subject` in `role`, valid for `ttl`.
    ///
    /// # Errors
    /// [`AuthError::InvalidSubject`], or [`AuthError::Sign`].
    pub fn issue(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, AuthError> {
        check_subject(subject)?;
        let now = self.now_seconds();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| AuthError::Sign(error.to_string()))
    }

    /// The claims of a valid token.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] saying why (expired, signature, malformed).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            let reason = match error.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidSignature => "the signature does not match this server's secret",
                ErrorKind::InvalidAlgorithm => "only HS256 tokens are accepted",
                ErrorKind::MissingRequiredClaim(_) => {
                    "a required claim (sub, role, exp) is missing"
                }
                ErrorKind::Json(_) => "the claims are not what careflow issues (sub, role, exp)",
                _ => "the token is malformed",
            };
            AuthError::InvalidToken(reason.to_owned())
        })?;
        let now = self.now_seconds();
        if data.claims.exp < now {
            return Err(AuthError::InvalidToken("the token has expired".to_owned()));
        }
        // jsonwebtoken does not look at `iat`; one in the future is a token from a clock
        // that is wrong, or one made to outlive its `exp` check elsewhere.
        if data.claims.iat > now {
            return Err(AuthError::InvalidToken(
                "the token was issued in the future (iat)".to_owned(),
            ));
        }
        check_subject(&data.claims.sub)?;
        Ok(data.claims)
    }
}

fn check_subject(subject: &str) -> Result<(), AuthError> {
    let ok = !subject.trim().is_empty()
        && subject.chars().count() <= 128
        && !subject.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidSubject)
    }
}

/// The configured secret, or the one in `<data_dir>/jwt_secret`, created (0600) when absent.
///
/// [`secret_file::load_or_create`] makes `serve` and `token issue`, starting at once, agree
/// on one secret.
///
/// # Errors
/// [`AuthError::Secret`] when the data dir or the file cannot be read or written.
pub fn load_or_create_secret(config: &Config) -> Result<Secret, AuthError> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let path = config.jwt_secret_path();
    let text = secret_file::load_or_create(&path, || {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    })
    .map_err(|error| AuthError::Secret {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    Ok(Secret::new(text))
}

/// Parses a token lifetime: `3600`, `90s`, `15m`, `12h`, `30d`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid ttl {text:?}: use e.g. 3600, 90s, 15m, 12h or 30d"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value.saturating_mul(60),
        "h" => value.saturating_mul(3_600),
        "d" => value.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "invalid ttl {text:?}: use e.g. 3600, 90s, 15m, 12h or 30d"
            ));
        }
    };
    if seconds == 0 {
        return Err("ttl must be at least one second".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_or_expired_ones_are_refused() {
        let keys = TokenKeys::new(&Secret::new("s3cret"));
        let token = keys
            .issue("ehr", Role::System, Duration::from_secs(60))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("ehr", Role::System));

        let other = TokenKeys::new(&Secret::new("other"));
        let err = other.verify(&token).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");

        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "ehr".into(),
                role: Role::System,
                iat: 0,
                exp: 1,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(
            keys.verify(&expired)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        assert!(keys.verify("not.a.token").is_err());
    }

    /// Issue #15 part 5, defect 9: tokens were accepted ~30 s past `exp`, and `nbf` or `iat`
    /// in the future were ignored.
    #[test]
    fn no_leeway_past_exp_and_nbf_or_iat_in_the_future_are_refused() {
        let keys = TokenKeys::new(&Secret::new("s3cret"));
        let now = chrono::Utc::now().timestamp();
        let sign = |claims: serde_json::Value| {
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"s3cret"),
            )
            .unwrap()
        };
        let refusal =
            |claims: serde_json::Value| keys.verify(&sign(claims)).unwrap_err().to_string();
        let claims = |exp: i64, iat: i64| serde_json::json!({"sub": "ehr", "role": "system", "exp": exp, "iat": iat});
        assert!(refusal(claims(now - 5, now - 60)).contains("expired"));
        let mut not_yet = claims(now + 600, now);
        not_yet["nbf"] = serde_json::json!(now + 300);
        assert!(refusal(not_yet).contains("not valid yet"));
        assert!(refusal(claims(now + 600, now + 300)).contains("issued in the future"));
        let mut fine = claims(now + 600, now - 1);
        fine["nbf"] = serde_json::json!(now - 1);
        assert!(keys.verify(&sign(fine)).is_ok());
    }

    #[test]
    fn expiry_is_measured_by_the_injected_clock() {
        use chrono::TimeZone;
        let manual = Clock::manual(chrono::Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap());
        let keys = TokenKeys::new(&Secret::new("s3cret")).with_clock(manual.clock());
        let token = keys
            .issue("ehr", Role::System, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            keys.verify(&token).unwrap().iat,
            u64::try_from(manual.now().timestamp()).unwrap()
        );
        manual.advance(Duration::from_secs(60));
        assert!(
            keys.verify(&token).is_ok(),
            "valid through the second of its exp"
        );
        manual.advance(Duration::from_secs(1));
        let err = keys.verify(&token).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn the_rights_table() {
        use Right::*;
        let table = [
            (Role::System, vec![SendCommands, ReadState]),
            (Role::Finance, vec![ReadBilling, ReadAnalytics]),
            (
                Role::Auditor,
                vec![ReadState, ReadHistory, ReadEvents, ReadAudit, Export],
            ),
            (
                Role::Admin,
                vec![ReadEvents, Rebuild, DeadLetters, ErasePersonalData],
            ),
        ];
        let all = [
            SendCommands,
            ReadState,
            ReadHistory,
            ReadEvents,
            ReadBilling,
            ReadAnalytics,
            ReadAudit,
            Export,
            Rebuild,
            DeadLetters,
            ErasePersonalData,
        ];
        for (role, allowed) in table {
            for right in all {
                assert_eq!(
                    role.allows(right),
                    allowed.contains(&right),
                    "{role:?} {right:?}"
                );
            }
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7_200));
        assert_eq!(parse_ttl("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0").is_err());
    }

    #[test]
    fn the_generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "CAREFLOW_DATA_DIR".to_string(),
            dir.path().join("data").display().to_string(),
        );
        let config = Config::from_sources(None, None, &env).unwrap();
        let first = load_or_create_secret(&config).unwrap();
        let second = load_or_create_secret(&config).unwrap();
        assert_eq!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(config.jwt_secret_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
