//! Configuration: `careflow.toml`, overridden by `CAREFLOW_*` environment variables.
//!
//! Parsing is separate from acting (STYLE.md §3): [`Config::load`] reads and validates, and
//! nothing here opens a database or a socket. With no file and no variables careflow runs
//! embedded on 127.0.0.1:8080 with `./data`. The keys are pinned by DESIGN.md
//! "Configuration keys"; the ones careflow adds beyond them are listed in
//! docs/operations.md, and those of the actors and the HTTP API (actor_idle_seconds,
//! actor_max_live, snapshot_every, rate_limit_per_second, rate_limit_burst) in
//! docs/http-api.md "Settings this API added".

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use careflow_aggregates::policies::staffing::{RoleRatios, StaffingRules};
use serde::Deserialize;

/// A value that must not reach a log line: `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which event store backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Postgres,
    Kurrentdb,
}

/// What careflow writes on a patient's Odoo partner (`odoo_partner_details`, docs/odoo.md
/// "Privacy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartnerDetails {
    /// The MRN as the name, nothing else (the default): Odoo holds no personal data.
    #[default]
    Mrn,
    /// The patient's name and billing address, which statements need; an erasure puts the
    /// partner back to the MRN and clears the address.
    Billing,
}

impl std::str::FromStr for PartnerDetails {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mrn" => Ok(PartnerDetails::Mrn),
            "billing" => Ok(PartnerDetails::Billing),
            other => Err(ConfigError::Invalid {
                key: "odoo_partner_details",
                value: other.to_string(),
                hint: "use mrn or billing",
            }),
        }
    }
}

impl std::str::FromStr for StoreKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(StoreKind::Sqlite),
            "postgres" => Ok(StoreKind::Postgres),
            "kurrentdb" => Ok(StoreKind::Kurrentdb),
            other => Err(ConfigError::Invalid {
                key: "store",
                value: other.to_string(),
                hint: "use sqlite, postgres or kurrentdb",
            }),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreKind,
    pub database_url: Option<Secret>,
    /// PostgreSQL schema holding careflow's tables (default `careflow`).
    pub database_schema: String,
    pub kurrentdb_url: Option<Secret>,
    pub jwt_secret: Option<Secret>,
    pub master_key: Option<Secret>,
    pub payer_url: Option<String>,
    /// A PEM file of CA certificates an `https` payer's certificate may chain to, besides the
    /// system's trusted roots (a hospital's own CA). Read when `serve` starts: a file that
    /// cannot be used stops it.
    pub payer_tls_ca_file: Option<PathBuf>,
    /// Longest one payer exchange may take, in milliseconds (default 2,000).
    pub payer_timeout_ms: u64,
    /// Attempts per eligibility check, the first included (default 3).
    pub payer_attempts: u32,
    /// Consecutive payer failures that open its circuit breaker (default 5).
    pub payer_breaker_failures: u32,
    /// How long the open breaker refuses calls before one probe, in milliseconds (default
    /// 30,000).
    pub payer_breaker_cool_down_ms: u64,
    /// Run the process managers on this node (default true). Off, nothing reacts to events:
    /// for tools and tests of the bare command path.
    pub process_managers: bool,
    /// How long the payer may stay unanswered before a registration is flagged self-pay, in
    /// seconds (default 900).
    pub eligibility_deadline_seconds: u64,
    /// The approval deadline of a purchase request that names none, in seconds (default
    /// 172,800: 48 hours).
    pub approval_deadline_seconds: u64,
    pub odoo_url: Option<String>,
    /// As `payer_tls_ca_file`, for an `https` `odoo_url`.
    pub odoo_tls_ca_file: Option<PathBuf>,
    pub odoo_db: Option<String>,
    pub odoo_user: Option<String>,
    pub odoo_api_key: Option<Secret>,
    /// What a patient's Odoo partner carries: `mrn` (default) or `billing` (name and
    /// billing address).
    pub odoo_partner_details: PartnerDetails,
    pub mllp_listen: SocketAddr,
    pub nats_url: Option<String>,
    pub log: String,
    /// Seconds an aggregate actor may sit idle before it is passivated (default 300).
    pub actor_idle_seconds: u64,
    /// Most aggregate actors alive at once; the least recently used is passivated beyond it
    /// (default 100,000).
    pub actor_max_live: usize,
    /// A state snapshot is written every this many events of a stream (default 100; 0 turns
    /// snapshots off).
    pub snapshot_every: u64,
    /// Requests per second each token subject may make on average (default 200; 0 turns the
    /// limit off).
    pub rate_limit_per_second: u32,
    /// Requests a token subject may make in a burst above the average (default 400).
    pub rate_limit_burst: u32,
    /// The JetStream stream the NATS publisher writes to (default `CAREFLOW_EVENTS`).
    pub nats_stream: String,
    /// Subjects are `{nats_subject_prefix}.{kind}.{event_type}` (default `careflow.events`).
    pub nats_subject_prefix: String,
    /// Attempts per webhook delivery, the first included, before it is dead-lettered
    /// (default 8).
    pub webhook_max_attempts: u32,
    /// The pause after a webhook's first failed attempt, in milliseconds; doubles (with
    /// jitter) up to `webhook_backoff_max_ms` (default 1,000).
    pub webhook_backoff_first_ms: u64,
    /// The longest pause between two attempts of one delivery, in milliseconds (default
    /// 300,000: five minutes).
    pub webhook_backoff_max_ms: u64,
    /// Longest one webhook request may take, in milliseconds (default 15,000, inside the
    /// Standard Webhooks recommendation of 15 to 30 s).
    pub webhook_timeout_ms: u64,
    /// The FHIR identifier system whose value is a patient's MRN (unset: only identifiers
    /// typed `MR` are MRNs). An addition beyond DESIGN.md's pinned keys (docs/operations.md).
    pub mrn_system: Option<String>,
    /// Largest MLLP frame (an HL7 message) taken, in bytes (default 1 MiB); a larger one is
    /// answered `AR` and its connection closed.
    pub mllp_max_frame_bytes: usize,
    /// Test hook: a pause between a message's events being durable and its ACK being written,
    /// in milliseconds (default 0). Lets a test kill the server inside that window.
    pub mllp_ack_delay_ms: u64,
    /// An MLLP connection with nothing unanswered and no complete frame for this long is
    /// closed, in milliseconds (default 600,000: ten minutes).
    pub mllp_idle_timeout_ms: u64,
    /// MLLP connections open at once, all senders together (default 256). Bounds the file
    /// descriptors MLLP can hold, so a flood of connections cannot starve HTTP.
    pub mllp_max_connections: usize,
    /// MLLP connections open at once from one peer IP address (default 16).
    pub mllp_max_connections_per_peer: usize,
    /// Encounters per staff member of each role and class, per department (the `[staffing]`
    /// table; a sane default set without it). See [`parse_staffing`].
    pub staffing: StaffingRules,
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Occurs when the config file exists but cannot be read.
    #[error("config file {path} cannot be read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Occurs when the config file is not valid TOML or holds a key careflow does not know.
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    /// Occurs when a value does not parse (an address, a store name).
    #[error("invalid {key} {value:?}: {hint}")]
    Invalid {
        key: &'static str,
        value: String,
        hint: &'static str,
    },
    /// Occurs when a backend is chosen without what it needs.
    #[error("{key} is required when store is {store}")]
    Missing {
        key: &'static str,
        store: &'static str,
    },
}

/// The `[staffing]` table (or `CAREFLOW_STAFFING`, the same table as TOML text):
///
/// ```toml
/// [staffing.default]            # departments without an entry of their own
/// nurse = { inpatient = 4, outpatient = 8, emergency = 3 }
/// physician = { inpatient = 10, outpatient = 4, emergency = 5 }
/// [staffing.departments.ED]     # replaces the default for ED, whole
/// nurse = { emergency = 2 }
/// ```
///
/// Each number is how many encounters of that class one staff member of that role looks
/// after in an hour; a class left out needs none of the role. Without `default`, the built-in
/// set (`StaffingRules::default`) serves the departments not listed.
///
/// # Errors
/// [`ConfigError::Invalid`] (`staffing`) for text that is not such a table (an unknown role,
/// class or key) or a ratio of 0.
pub fn parse_staffing(text: &str) -> Result<StaffingRules, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        default: Option<RoleRatios>,
        #[serde(default)]
        departments: BTreeMap<String, RoleRatios>,
    }
    let table: Table = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        key: "staffing",
        value: e.message().to_owned(),
        hint: "roles are nurse, physician or technician; classes inpatient, outpatient or \
               emergency; e.g. [staffing.departments.ED] nurse = { emergency = 2 }",
    })?;
    let rules = StaffingRules {
        default: table.default.unwrap_or(StaffingRules::default().default),
        departments: table.departments,
    };
    let ratios = std::iter::once(&rules.default).chain(rules.departments.values());
    if ratios
        .flat_map(|roles| roles.values())
        .flat_map(|classes| classes.values())
        .any(|n| *n == 0)
    {
        return Err(ConfigError::Invalid {
            key: "staffing",
            value: "0".into(),
            hint: "a ratio is encounters per staff member, at least 1; leave a class out when \
                   the role is not needed for it",
        });
    }
    let department_id = |d: &str| {
        !d.is_empty()
            && d.len() <= 64
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
    };
    if let Some(bad) = rules.departments.keys().find(|d| !department_id(d)) {
        return Err(ConfigError::Invalid {
            key: "staffing",
            value: bad.clone(),
            hint: "a department is named as in encounters and roster ids (A-Z, a-z, 0-9, _, - and :)",
        });
    }
    Ok(rules)
}

/// Every key, as `careflow.toml` spells it; the variable is `CAREFLOW_` + upper case.
const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "store",
    "database_url",
    "database_schema",
    "kurrentdb_url",
    "jwt_secret",
    "master_key",
    "payer_url",
    "payer_tls_ca_file",
    "payer_timeout_ms",
    "payer_attempts",
    "payer_breaker_failures",
    "payer_breaker_cool_down_ms",
    "process_managers",
    "eligibility_deadline_seconds",
    "approval_deadline_seconds",
    "odoo_url",
    "odoo_tls_ca_file",
    "odoo_db",
    "odoo_user",
    "odoo_api_key",
    "odoo_partner_details",
    "mllp_listen",
    "nats_url",
    "log",
    "actor_idle_seconds",
    "actor_max_live",
    "snapshot_every",
    "rate_limit_per_second",
    "rate_limit_burst",
    "nats_stream",
    "nats_subject_prefix",
    "webhook_max_attempts",
    "webhook_backoff_first_ms",
    "webhook_backoff_max_ms",
    "webhook_timeout_ms",
    "mrn_system",
    "mllp_max_frame_bytes",
    "mllp_ack_delay_ms",
    "mllp_idle_timeout_ms",
    "mllp_max_connections",
    "mllp_max_connections_per_peer",
    "staffing",
];

impl Config {
    /// Reads `file` (or `./careflow.toml` when it exists) and the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable or invalid file or value.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CAREFLOW_"))
            .collect();
        let default_file = Path::new("careflow.toml");
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None => env
                .get("CAREFLOW_CONFIG")
                .map(PathBuf::from)
                .or_else(|| default_file.exists().then(|| default_file.to_path_buf())),
        };
        let text = match &file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::from_sources(file.as_deref(), text.as_deref(), &env)
    }

    /// Builds a config from a file's text and environment variables (variables win).
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid file or value.
    pub fn from_sources(
        path: Option<&Path>,
        toml_text: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        if let Some(text) = toml_text {
            let path = path.unwrap_or(Path::new("careflow.toml")).to_path_buf();
            let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for (key, value) in table {
                if !KEYS.contains(&key.as_str()) {
                    return Err(ConfigError::Parse {
                        path,
                        message: format!("no such key {key:?}"),
                    });
                }
                let value = match value {
                    toml::Value::String(s) => s,
                    // `[staffing]` is a table: kept as TOML text, parsed like the variable.
                    toml::Value::Table(table) => {
                        toml::to_string(&table).map_err(|e| ConfigError::Parse {
                            path: path.clone(),
                            message: e.to_string(),
                        })?
                    }
                    other => other.to_string(),
                };
                values.insert(key, value);
            }
        }
        for key in KEYS {
            if let Some(value) = env.get(&format!("CAREFLOW_{}", key.to_uppercase())) {
                values.insert((*key).to_string(), value.clone());
            }
        }
        let get = |key: &str| values.get(key).filter(|v| !v.is_empty()).cloned();
        let addr = |key: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
            let value = get(key).unwrap_or_else(|| default.to_string());
            value.parse().map_err(|_| ConfigError::Invalid {
                key,
                value,
                hint: "use host:port, e.g. 127.0.0.1:8080",
            })
        };
        let number = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(key) {
                None => Ok(default),
                Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
                    key,
                    value,
                    hint: "use a whole number",
                }),
            }
        };
        let store = match get("store") {
            Some(s) => s.parse()?,
            None => StoreKind::Sqlite,
        };
        let config = Config {
            listen: addr("listen", "127.0.0.1:8080")?,
            data_dir: PathBuf::from(get("data_dir").unwrap_or_else(|| "./data".into())),
            store,
            database_url: get("database_url").map(Secret),
            database_schema: get("database_schema").unwrap_or_else(|| "careflow".into()),
            kurrentdb_url: get("kurrentdb_url").map(Secret),
            jwt_secret: get("jwt_secret").map(Secret),
            master_key: get("master_key").map(Secret),
            payer_url: get("payer_url"),
            payer_tls_ca_file: get("payer_tls_ca_file").map(PathBuf::from),
            payer_timeout_ms: number("payer_timeout_ms", 2_000)?,
            payer_attempts: u32::try_from(number("payer_attempts", 3)?).unwrap_or(u32::MAX),
            payer_breaker_failures: u32::try_from(number("payer_breaker_failures", 5)?)
                .unwrap_or(u32::MAX),
            payer_breaker_cool_down_ms: number("payer_breaker_cool_down_ms", 30_000)?,
            process_managers: match get("process_managers").as_deref() {
                None | Some("true" | "on" | "1") => true,
                Some("false" | "off" | "0") => false,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        key: "process_managers",
                        value: other.to_owned(),
                        hint: "use true or false",
                    });
                }
            },
            eligibility_deadline_seconds: number("eligibility_deadline_seconds", 900)?,
            approval_deadline_seconds: number("approval_deadline_seconds", 172_800)?,
            odoo_url: get("odoo_url"),
            odoo_tls_ca_file: get("odoo_tls_ca_file").map(PathBuf::from),
            odoo_db: get("odoo_db"),
            odoo_user: get("odoo_user"),
            odoo_api_key: get("odoo_api_key").map(Secret),
            odoo_partner_details: match get("odoo_partner_details") {
                Some(value) => value.parse()?,
                None => PartnerDetails::Mrn,
            },
            mllp_listen: addr("mllp_listen", "127.0.0.1:2575")?,
            nats_url: get("nats_url"),
            log: get("log").unwrap_or_else(|| "info".into()),
            actor_idle_seconds: number("actor_idle_seconds", 300)?,
            actor_max_live: usize::try_from(number("actor_max_live", 100_000)?)
                .unwrap_or(usize::MAX),
            snapshot_every: number("snapshot_every", 100)?,
            rate_limit_per_second: u32::try_from(number("rate_limit_per_second", 200)?)
                .unwrap_or(u32::MAX),
            rate_limit_burst: u32::try_from(number("rate_limit_burst", 400)?).unwrap_or(u32::MAX),
            nats_stream: get("nats_stream").unwrap_or_else(|| "CAREFLOW_EVENTS".into()),
            nats_subject_prefix: get("nats_subject_prefix")
                .unwrap_or_else(|| "careflow.events".into()),
            webhook_max_attempts: u32::try_from(number("webhook_max_attempts", 8)?)
                .unwrap_or(u32::MAX),
            webhook_backoff_first_ms: number("webhook_backoff_first_ms", 1_000)?,
            webhook_backoff_max_ms: number("webhook_backoff_max_ms", 300_000)?,
            webhook_timeout_ms: number("webhook_timeout_ms", 15_000)?,
            mrn_system: get("mrn_system"),
            mllp_max_frame_bytes: usize::try_from(number("mllp_max_frame_bytes", 1 << 20)?)
                .unwrap_or(usize::MAX),
            mllp_ack_delay_ms: number("mllp_ack_delay_ms", 0)?,
            mllp_idle_timeout_ms: number("mllp_idle_timeout_ms", 600_000)?,
            mllp_max_connections: usize::try_from(number("mllp_max_connections", 256)?)
                .unwrap_or(usize::MAX),
            mllp_max_connections_per_peer: usize::try_from(number(
                "mllp_max_connections_per_peer",
                16,
            )?)
            .unwrap_or(usize::MAX),
            staffing: match get("staffing") {
                None => StaffingRules::default(),
                Some(text) => parse_staffing(&text)?,
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.store == StoreKind::Postgres && self.database_url.is_none() {
            return Err(ConfigError::Missing {
                key: "database_url",
                store: "postgres",
            });
        }
        if self.store == StoreKind::Kurrentdb && self.kurrentdb_url.is_none() {
            return Err(ConfigError::Missing {
                key: "kurrentdb_url",
                store: "kurrentdb",
            });
        }
        if self.actor_max_live == 0 {
            return Err(ConfigError::Invalid {
                key: "actor_max_live",
                value: "0".into(),
                hint: "at least one actor must be allowed to live",
            });
        }
        if !is_identifier(&self.database_schema) {
            return Err(ConfigError::Invalid {
                key: "database_schema",
                value: self.database_schema.clone(),
                hint: "use lower-case letters, digits and _ (at most 63), starting with a letter",
            });
        }
        self.validate_outbound()
    }

    /// The NATS names go into subjects and the stream API as they are: no wildcard, space or
    /// dot where NATS gives them a meaning.
    fn validate_outbound(&self) -> Result<(), ConfigError> {
        let token = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.nats_stream.is_empty() || !self.nats_stream.chars().all(token) {
            return Err(ConfigError::Invalid {
                key: "nats_stream",
                value: self.nats_stream.clone(),
                hint: "use letters, digits, _ and -, e.g. CAREFLOW_EVENTS",
            });
        }
        if self
            .nats_subject_prefix
            .split('.')
            .any(|part| part.is_empty() || !part.chars().all(token))
        {
            return Err(ConfigError::Invalid {
                key: "nats_subject_prefix",
                value: self.nats_subject_prefix.clone(),
                hint: "use dot-separated tokens of letters, digits, _ and -, e.g. careflow.events",
            });
        }
        if self.webhook_max_attempts == 0 {
            return Err(ConfigError::Invalid {
                key: "webhook_max_attempts",
                value: "0".into(),
                hint: "at least one attempt is needed",
            });
        }
        Ok(())
    }

    /// Where a generated JWT secret is kept when `jwt_secret` is not configured.
    pub fn jwt_secret_path(&self) -> PathBuf {
        self.data_dir.join("jwt_secret")
    }

    /// The SQLite database file inside the data dir.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("careflow.db")
    }
}

/// A PostgreSQL identifier careflow can splice into SQL without quoting.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_embedded_on_localhost() {
        let c = Config::from_sources(None, None, &env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.store, StoreKind::Sqlite);
        assert_eq!(c.mllp_listen.to_string(), "127.0.0.1:2575");
        assert_eq!(c.sqlite_path(), PathBuf::from("./data/careflow.db"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = "listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/lib/careflow\"\n";
        let c = Config::from_sources(
            None,
            Some(file),
            &env(&[("CAREFLOW_LISTEN", "0.0.0.0:7000")]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/careflow"));
    }

    #[test]
    fn refusals_say_what_to_fix() {
        let err = Config::from_sources(None, Some("lisen = \"x\""), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("no such key \"lisen\""), "{err}");
        let err =
            Config::from_sources(None, None, &env(&[("CAREFLOW_STORE", "postgres")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "database_url is required when store is postgres"
        );
        let err =
            Config::from_sources(None, None, &env(&[("CAREFLOW_LISTEN", "nowhere")])).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid listen \"nowhere\""),
            "{err}"
        );
        let err = Config::from_sources(
            None,
            None,
            &env(&[("CAREFLOW_DATABASE_SCHEMA", "x; drop table")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("database_schema"), "{err}");
    }

    #[test]
    fn actor_and_rate_limit_settings_have_defaults_and_are_checked() {
        let c = Config::from_sources(None, None, &env(&[])).unwrap();
        assert_eq!(
            (c.actor_idle_seconds, c.actor_max_live, c.snapshot_every),
            (300, 100_000, 100)
        );
        assert_eq!((c.rate_limit_per_second, c.rate_limit_burst), (200, 400));
        let c = Config::from_sources(
            None,
            Some("actor_idle_seconds = 60\nsnapshot_every = 0\n"),
            &env(&[("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")]),
        )
        .unwrap();
        assert_eq!(
            (
                c.actor_idle_seconds,
                c.snapshot_every,
                c.rate_limit_per_second
            ),
            (60, 0, 0)
        );
        let err = Config::from_sources(None, None, &env(&[("CAREFLOW_ACTOR_MAX_LIVE", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("actor_max_live"), "{err}");
        let err = Config::from_sources(None, None, &env(&[("CAREFLOW_SNAPSHOT_EVERY", "often")]))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid snapshot_every"),
            "{err}"
        );
    }

    #[test]
    fn staffing_rules_come_from_the_table_or_the_variable_and_are_checked() {
        use careflow_aggregates::encounter::EncounterClass;
        use careflow_aggregates::roster::StaffRole;
        let c = Config::from_sources(None, None, &env(&[])).unwrap();
        assert_eq!(c.staffing, StaffingRules::default());
        let c = Config::from_sources(
            None,
            Some("[staffing.departments.ED]\nnurse = { emergency = 2 }\n"),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            c.staffing.departments["ED"][&StaffRole::Nurse][&EncounterClass::Emergency],
            2
        );
        assert_eq!(c.staffing.default, StaffingRules::default().default);
        let c = Config::from_sources(
            None,
            None,
            &env(&[(
                "CAREFLOW_STAFFING",
                "default.physician = { outpatient = 6 }",
            )]),
        )
        .unwrap();
        assert_eq!(c.staffing.default.len(), 1);
        for bad in [
            "departments.ED.nurse = { emergency = 0 }",
            "departments.ED.janitor = { emergency = 2 }",
            "departments.ED.nurse = { walk_in = 2 }",
            "shifts = 3",
            "departments.\"E D\".nurse = { emergency = 2 }",
        ] {
            let err =
                Config::from_sources(None, None, &env(&[("CAREFLOW_STAFFING", bad)])).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid staffing"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Config::from_sources(
            None,
            None,
            &env(&[
                ("CAREFLOW_JWT_SECRET", "hunter2"),
                ("CAREFLOW_DATABASE_URL", "postgres://u:pw@h/db"),
            ]),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@"),
            "{shown}"
        );
    }

    #[test]
    fn outbound_settings_have_defaults_and_are_checked() {
        let c = Config::from_sources(None, None, &env(&[])).unwrap();
        assert_eq!(c.nats_url, None);
        assert_eq!(c.nats_stream, "CAREFLOW_EVENTS");
        assert_eq!(c.nats_subject_prefix, "careflow.events");
        assert_eq!(c.webhook_max_attempts, 8);
        let c = Config::from_sources(
            None,
            Some("nats_stream = \"CF_TEST\"\nwebhook_max_attempts = 3\n"),
            &env(&[("CAREFLOW_NATS_SUBJECT_PREFIX", "test.events")]),
        )
        .unwrap();
        assert_eq!(
            (c.nats_stream.as_str(), c.nats_subject_prefix.as_str()),
            ("CF_TEST", "test.events")
        );
        assert_eq!(c.webhook_max_attempts, 3);
        for (key, value) in [
            ("CAREFLOW_NATS_STREAM", "has.dot"),
            ("CAREFLOW_NATS_SUBJECT_PREFIX", "careflow.>"),
            ("CAREFLOW_NATS_SUBJECT_PREFIX", "careflow..events"),
            ("CAREFLOW_WEBHOOK_MAX_ATTEMPTS", "0"),
        ] {
            let refused = Config::from_sources(None, None, &env(&[(key, value)]));
            assert!(
                matches!(refused, Err(ConfigError::Invalid { .. })),
                "{key}={value}"
            );
        }
    }
}
