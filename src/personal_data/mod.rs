//! Personal data at rest: per-patient data keys, the encrypting store, and erasure.
//!
//! DESIGN.md "Personal data": every personal field of a patient's events sits under one
//! `personal` object (see `careflow_aggregates::personal`). This module keeps that object
//! encrypted in the store with the patient's own AES-256-GCM data key, so that destroying the
//! key erases the data while the events, their hashes and every figure outside `personal` stay:
//!
//! - [`MasterKey`]: config `master_key` (base64 or hex, 32 bytes), else generated once into
//!   `<data_dir>/master_key` (0600). It only wraps data keys; losing it loses every patient's
//!   personal data (docs/operations.md).
//! - [`PersonalKeys`]: the wrapped data keys "in the store beside the events" (`keys.db` on
//!   SQLite, table `patient_keys` on PostgreSQL, see [`keys`]) behind a bounded in-memory cache
//!   of unwrapped keys, so the command path pays for a key only when a patient registers.
//! - [`EncryptingStore`]: an [`crate::store::EventStore`] wrapper. Appends replace
//!   `data.personal` with a ciphertext envelope *before* the backend hashes the event, so the
//!   chain covers the ciphertext; reads hand back the plain object, or `null` once the key is
//!   gone. [`EncryptingSnapshots`] does the same for patient-account snapshots.
//! - [`erase`]: the right to erasure, used by `careflow erase` and
//!   `POST /v1/patient-accounts/{mrn}/erase`.
//!
//! What it deliberately does not do: decrypt for the hash checks and exports. `audit verify`,
//! `GET /v1/audit/verify`, the signed checkpoints and `audit export` read the stored bytes
//! (ciphertext), which is what the hashes cover; an export therefore never carries plaintext
//! personal data, and one taken before an erasure becomes unreadable with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, StoreKind};

pub mod erase;
pub mod keys;
mod store;

pub use erase::erase;
pub use keys::{KeyStore, StoredKey};
pub use store::{EncryptingSnapshots, EncryptingStore};

/// The only stream kind whose events carry a `personal` object (`grep Personal<` in
/// aggregates/src: PatientRegistered, DemographicsUpdated, PaymentRecorded).
pub const PATIENT_KIND: &str = "patient_account";

/// The event that destroys a patient's key (see [`EncryptingStore`]).
pub const ERASED_EVENT: &str = "PersonalDataErased";

/// The envelope's algorithm name.
const ALGORITHM: &str = "aes-256-gcm";

/// Unwrapped keys kept in memory at most; beyond it the cache starts over (a miss costs one
/// indexed read and one unwrap).
const CACHE_CAPACITY: usize = 100_000;

/// Why personal data could not be protected or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersonalDataError {
    /// Occurs when `master_key` is not 32 bytes of base64 or hex.
    ///
    /// ### Handling
    /// A startup error (exit 2) naming the key, never its value.
    #[error("master_key is not valid: {0}")]
    InvalidMasterKey(&'static str),
    /// Occurs when the generated master key file cannot be read or written.
    #[error("master key file {path} cannot be used: {reason}")]
    MasterKeyFile { path: String, reason: String },
    /// Occurs when the store's keys were wrapped with another master key (a restored data dir,
    /// a node configured differently): decrypting would fail for every patient.
    ///
    /// ### Handling
    /// A startup error: configure the master key the store was created with.
    #[error(
        "the master key does not match the one this store's patient keys are wrapped with (fingerprint {expected}); configure that master_key"
    )]
    MasterKeyMismatch { expected: String },
    /// Occurs when the key store cannot be opened, read or written.
    ///
    /// ### Handling
    /// HTTP 503; nothing appended (a key is stored before the events that need it).
    #[error("patient key store unavailable: {0}")]
    Unavailable(String),
    /// Occurs when a stored key does not unwrap with the master key (an edited row).
    #[error("the data key of {mrn} does not unwrap")]
    Unwrap { mrn: String },
    /// Occurs when a value cannot be encrypted (serialisation; never in practice).
    #[error("personal data cannot be encrypted: {0}")]
    Seal(String),
}

impl PersonalDataError {
    pub(crate) fn unavailable(error: impl std::fmt::Display) -> Self {
        PersonalDataError::Unavailable(error.to_string())
    }
}

/// The key that wraps every patient's data key.
pub struct MasterKey {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint)
    }
}

impl MasterKey {
    /// Parses 32 bytes written as 64 hex digits or as base64.
    ///
    /// # Errors
    /// [`PersonalDataError::InvalidMasterKey`].
    pub fn parse(text: &str) -> Result<Self, PersonalDataError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| PersonalDataError::InvalidMasterKey("bad hex"))?
        } else {
            BASE64.decode(text).map_err(|_| {
                PersonalDataError::InvalidMasterKey("use 64 hex digits or base64 of 32 bytes")
            })?
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PersonalDataError::InvalidMasterKey("it must be exactly 32 bytes"))?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"careflow-master-key-check-v1\0");
        hasher.update(bytes);
        let fingerprint = hex::encode(&hasher.finalize()[..16]);
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
            fingerprint,
        }
    }

    /// A public digest of the key: stored beside the wrapped keys so a different master key is
    /// refused at startup instead of reading every patient as erased.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Wraps a fresh data key for `mrn`: `nonce || ciphertext`, bound to the MRN and key id.
    fn wrap(&self, mrn: &str, kid: &str, key: &[u8; 32]) -> Result<Vec<u8>, PersonalDataError> {
        let nonce = random_nonce();
        let aad = wrap_aad(mrn, kid);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key,
                    aad: &aad,
                },
            )
            .map_err(|_| PersonalDataError::Seal("key wrap failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap_key(
        &self,
        mrn: &str,
        kid: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, PersonalDataError> {
        let fail = || PersonalDataError::Unwrap { mrn: mrn.into() };
        if wrapped.len() < 12 {
            return Err(fail());
        }
        let (nonce, ct) = wrapped.split_at(12);
        let aad = wrap_aad(mrn, kid);
        let key = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| fail())?;
        let key: [u8; 32] = key.try_into().map_err(|_| fail())?;
        Ok(DataKey::new(kid.to_owned(), &key))
    }
}

fn wrap_aad(mrn: &str, kid: &str) -> Vec<u8> {
    [
        b"careflow-patient-key-v1\0",
        mrn.as_bytes(),
        b"\0",
        kid.as_bytes(),
    ]
    .concat()
}

fn random_nonce() -> [u8; 12] {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// Where a generated master key is kept when `master_key` is not configured.
pub fn master_key_path(config: &Config) -> PathBuf {
    config.data_dir.join("master_key")
}

/// The configured master key, else the one in `<data_dir>/master_key`, created (0600) when
/// absent, like the JWT secret. Production sets `master_key` and backs it up separately.
///
/// # Errors
/// [`PersonalDataError::InvalidMasterKey`] or [`PersonalDataError::MasterKeyFile`].
pub fn load_or_create_master_key(config: &Config) -> Result<MasterKey, PersonalDataError> {
    if let Some(secret) = &config.master_key {
        return MasterKey::parse(secret.expose());
    }
    let path = master_key_path(config);
    let fail = |reason: String| PersonalDataError::MasterKeyFile {
        path: path.display().to_string(),
        reason,
    };
    if let Some(text) = read_key_file(&path).map_err(|e| fail(e.to_string()))? {
        return MasterKey::parse(&text);
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| fail(e.to_string()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let temp = path.with_extension(format!("tmp.{}", std::process::id()));
    write_private(&temp, &hex::encode(bytes)).map_err(|e| fail(e.to_string()))?;
    // A hard link never replaces a key another process created meanwhile.
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(MasterKey::from_bytes(&bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = read_key_file(&path)
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| fail("the file is empty".into()))?;
            MasterKey::parse(&text)
        }
        Err(error) => Err(fail(error.to_string())),
    }
}

fn read_key_file(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// One patient's unwrapped data key.
pub struct DataKey {
    kid: String,
    cipher: Aes256Gcm,
}

impl DataKey {
    fn new(kid: String, bytes: &[u8; 32]) -> Self {
        Self {
            kid,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Encrypts `plain` for `context` (the stream id): the envelope stored in place of it.
    ///
    /// # Errors
    /// [`PersonalDataError::Seal`] (never with AES-GCM and a sane length).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Envelope, PersonalDataError> {
        let nonce = random_nonce();
        let aad = data_aad(context, &self.kid);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| PersonalDataError::Seal("encryption failed".into()))?;
        Ok(Envelope {
            enc: ALGORITHM.into(),
            kid: self.kid.clone(),
            nonce: BASE64.encode(nonce),
            ct: BASE64.encode(ct),
        })
    }

    /// The plaintext of `envelope`, or `None` when it was sealed with another key or altered.
    pub fn open(&self, context: &str, envelope: &Envelope) -> Option<Vec<u8>> {
        if envelope.enc != ALGORITHM || envelope.kid != self.kid {
            return None;
        }
        let nonce = BASE64.decode(&envelope.nonce).ok()?;
        let ct = BASE64.decode(&envelope.ct).ok()?;
        if nonce.len() != 12 {
            return None;
        }
        let aad = data_aad(context, &self.kid);
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .ok()
    }
}

/// Binds a ciphertext to its stream: moved to another patient's events, it does not open.
fn data_aad(context: &str, kid: &str) -> Vec<u8> {
    [
        b"careflow-personal-v1\0",
        context.as_bytes(),
        b"\0",
        kid.as_bytes(),
    ]
    .concat()
}

/// What `data.personal` holds in the store: `{"enc","kid","nonce","ct"}` (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub enc: String,
    pub kid: String,
    pub nonce: String,
    pub ct: String,
}

impl Envelope {
    /// The envelope in `value`, if it is one (plain personal objects never have `enc`).
    pub fn from_value(value: &serde_json::Value) -> Option<Self> {
        let fields = value.as_object()?;
        if !fields.contains_key("enc") {
            return None;
        }
        serde_json::from_value(value.clone()).ok()
    }
}

enum Cached {
    Key(Arc<DataKey>, Instant),
    Erased,
}

/// The data keys of every patient: wrapped in the [`KeyStore`], unwrapped in a bounded cache.
pub struct PersonalKeys {
    master: MasterKey,
    store: Box<dyn KeyStore>,
    cache: Mutex<HashMap<String, Cached>>,
    /// How long an unwrapped key is trusted without looking at the store again: unbounded
    /// where this process is the only writer (SQLite), short where another node may erase.
    ttl: Option<Duration>,
}

impl PersonalKeys {
    /// Wraps `store` with `master`, checking (or recording) the master key's fingerprint.
    ///
    /// # Errors
    /// [`PersonalDataError::MasterKeyMismatch`], or the store's errors.
    pub async fn new(
        master: MasterKey,
        store: Box<dyn KeyStore>,
        ttl: Option<Duration>,
    ) -> Result<Self, PersonalDataError> {
        store.check_master(master.fingerprint()).await?;
        Ok(Self {
            master,
            store,
            cache: Mutex::new(HashMap::new()),
            ttl,
        })
    }

    /// Opens the key store the configuration implies.
    ///
    /// # Errors
    /// As [`PersonalKeys::new`], [`load_or_create_master_key`] and the store.
    pub async fn open(config: &Config) -> Result<Arc<Self>, PersonalDataError> {
        let master = load_or_create_master_key(config)?;
        let (store, ttl): (Box<dyn KeyStore>, _) = match config.store {
            StoreKind::Postgres => {
                let url = config
                    .database_url
                    .as_ref()
                    .ok_or_else(|| PersonalDataError::unavailable("database_url is not set"))?;
                (
                    Box::new(
                        keys::PostgresKeys::open(url.expose(), &config.database_schema).await?,
                    ),
                    Some(Duration::from_secs(30)),
                )
            }
            StoreKind::Sqlite | StoreKind::Kurrentdb => {
                (Box::new(keys::SqliteKeys::open(keys_path(config))?), None)
            }
        };
        Ok(Arc::new(Self::new(master, store, ttl).await?))
    }

    fn cached(&self, mrn: &str) -> Option<Option<Arc<DataKey>>> {
        let cache = self.cache.lock().ok()?;
        match cache.get(mrn)? {
            Cached::Erased => Some(None),
            Cached::Key(key, at) => {
                let fresh = self.ttl.is_none_or(|ttl| at.elapsed() < ttl);
                fresh.then(|| Some(Arc::clone(key)))
            }
        }
    }

    fn remember(&self, mrn: &str, entry: Cached) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY && !cache.contains_key(mrn) {
                cache.clear();
            }
            cache.insert(mrn.to_owned(), entry);
        }
    }

    fn settle(
        &self,
        mrn: &str,
        stored: StoredKey,
    ) -> Result<Option<Arc<DataKey>>, PersonalDataError> {
        match stored {
            StoredKey::Wrapped { kid, wrapped } => {
                let key = Arc::new(self.master.unwrap_key(mrn, &kid, &wrapped)?);
                self.remember(mrn, Cached::Key(Arc::clone(&key), Instant::now()));
                Ok(Some(key))
            }
            StoredKey::Erased => {
                self.remember(mrn, Cached::Erased);
                Ok(None)
            }
            StoredKey::Missing => Ok(None),
        }
    }

    /// The key to encrypt `mrn`'s personal data with, created (durably, before it is used)
    /// when the patient has none; `None` once the patient was erased: nothing personal is
    /// stored for them again.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`] and unwrap errors.
    pub async fn for_writing(&self, mrn: &str) -> Result<Option<Arc<DataKey>>, PersonalDataError> {
        if let Some(found) = self.cached(mrn) {
            return Ok(found);
        }
        match self.store.load(mrn).await? {
            StoredKey::Missing => {}
            other => return self.settle(mrn, other),
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let wrapped = self.master.wrap(mrn, &kid, &bytes)?;
        // Another node (or a racing command) may have created one first: use what is stored.
        let stored = self.store.create(mrn, &kid, wrapped).await?;
        self.settle(mrn, stored)
    }

    /// The key to decrypt `mrn`'s personal data with; `None` when it was destroyed (or never
    /// stored, which is logged: the data is lost).
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`] and unwrap errors.
    pub async fn for_reading(&self, mrn: &str) -> Result<Option<Arc<DataKey>>, PersonalDataError> {
        if let Some(found) = self.cached(mrn) {
            return Ok(found);
        }
        let stored = self.store.load(mrn).await?;
        if stored == StoredKey::Missing {
            tracing::error!(
                mrn,
                "patient data key missing: personal data reads as erased"
            );
        }
        self.settle(mrn, stored)
    }

    /// Destroys `mrn`'s data key for good (idempotent) and forgets it here.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`].
    pub async fn destroy(&self, mrn: &str) -> Result<(), PersonalDataError> {
        self.remember(mrn, Cached::Erased);
        self.store.destroy(mrn).await?;
        self.remember(mrn, Cached::Erased);
        Ok(())
    }

    /// The stored (wrapped) form of `mrn`'s key: for tests that check it is really gone.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`].
    pub async fn stored(&self, mrn: &str) -> Result<StoredKey, PersonalDataError> {
        self.store.load(mrn).await
    }
}

/// The SQLite key store beside `careflow.db`.
pub fn keys_path(config: &Config) -> PathBuf {
    config.data_dir.join("keys.db")
}

#[cfg(test)]
mod tests;
