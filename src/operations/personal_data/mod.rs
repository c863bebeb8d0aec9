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
//!   SQLite, table `patient_keys` on PostgreSQL, see [`keys`]), made in batches ahead of need
//!   (one commit per 256 patients) and found by the key id each envelope carries, behind a
//!   bounded in-memory cache of unwrapped keys: the command path never waits for a key commit.
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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::Config;
use crate::secret_file;
use crate::store::side::SideStore;

pub mod erase;
pub mod keys;
mod store;

pub use erase::erase;
pub use keys::{KeyStore, WrappedKey};
pub(crate) use store::destroy_patient;
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

/// Fresh keys written (one commit) each time the stock of ready keys runs out: a registration
/// then waits for a commit once per this many patients instead of every time.
const KEY_BATCH: usize = 256;

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
    #[error("data key {kid} does not unwrap")]
    Unwrap { kid: String },
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

    /// Wraps a fresh data key: `nonce || ciphertext`, bound to its key id.
    fn wrap(&self, kid: &str, key: &[u8; 32]) -> Result<Vec<u8>, PersonalDataError> {
        let nonce = random_nonce();
        let aad = wrap_aad(kid);
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

    fn unwrap_key(&self, kid: &str, wrapped: &[u8]) -> Result<DataKey, PersonalDataError> {
        let fail = || PersonalDataError::Unwrap { kid: kid.into() };
        if wrapped.len() < 12 {
            return Err(fail());
        }
        let (nonce, ct) = wrapped.split_at(12);
        let aad = wrap_aad(kid);
        let key = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| fail())?;
        let key: [u8; 32] = key.try_into().map_err(|_| fail())?;
        Ok(DataKey::new(kid.to_owned(), &key))
    }
}

impl MasterKey {
    /// Seals a small secret that has to live in the event log (a webhook's signing key, see
    /// `crate::outbound::webhooks`): base64 of `nonce || ciphertext`, bound to `context` (the
    /// webhook id), so the log, its exports and its outbound copies never hold it in clear.
    ///
    /// # Errors
    /// [`PersonalDataError::Seal`] (never in practice with AES-GCM).
    pub fn seal_secret(&self, context: &str, plain: &[u8]) -> Result<String, PersonalDataError> {
        let nonce = random_nonce();
        let aad = secret_aad(context);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| PersonalDataError::Seal("secret seal failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(BASE64.encode(out))
    }

    /// Opens what [`MasterKey::seal_secret`] sealed for `context`; `None` when it was sealed
    /// for another context, by another master key, or altered.
    pub fn open_secret(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = BASE64.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(12);
        let aad = secret_aad(context);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()
    }
}

fn secret_aad(context: &str) -> Vec<u8> {
    [
        b"careflow-sealed-secret-v1\0".as_slice(),
        context.as_bytes(),
    ]
    .concat()
}

/// Binds a wrapped key to its id: a wrapped key copied under another id does not unwrap.
fn wrap_aad(kid: &str) -> Vec<u8> {
    [b"careflow-patient-key-v1\0".as_slice(), kid.as_bytes()].concat()
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
    let text = secret_file::load_or_create(&path, || {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    })
    .map_err(|error| PersonalDataError::MasterKeyFile {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    MasterKey::parse(&text)
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

/// The in-memory side of [`PersonalKeys`]: bounded, rebuilt from the store on a miss.
#[derive(Default)]
struct Cache {
    /// Unwrapped keys by id, with when they were read.
    keys: HashMap<String, (Arc<DataKey>, Instant)>,
    /// The key each patient's new data is sealed with.
    current: HashMap<String, String>,
    /// Patients known to be erased (final, so never stale).
    erased: HashSet<String>,
}

/// The data keys of every patient: wrapped in the [`KeyStore`], unwrapped in a bounded cache,
/// plus a stock of fresh keys already stored, ready to hand to new patients.
pub struct PersonalKeys {
    master: MasterKey,
    store: Box<dyn KeyStore>,
    cache: Mutex<Cache>,
    ready: tokio::sync::Mutex<Vec<Arc<DataKey>>>,
    /// How long an unwrapped key is trusted without looking at the store again: unbounded
    /// where this process is the only writer (SQLite), short where another node may erase.
    ttl: Option<Duration>,
    /// Where key ids come from (the key bytes come from the OS's random generator).
    clock: Clock,
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
            cache: Mutex::new(Cache::default()),
            ready: tokio::sync::Mutex::new(Vec::new()),
            ttl,
            clock: Clock::system(),
        })
    }

    /// The master key, for the few secrets sealed with it directly (webhook secrets).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Opens the key store the configuration implies.
    ///
    /// # Errors
    /// As [`PersonalKeys::new`], [`load_or_create_master_key`] and the store.
    pub async fn open(config: &Config, clock: &Clock) -> Result<Arc<Self>, PersonalDataError> {
        let master = load_or_create_master_key(config)?;
        let (store, ttl): (Box<dyn KeyStore>, _) =
            match SideStore::of(config, keys::FILE).map_err(keys::not_opened)? {
                SideStore::Postgres { url, schema } => (
                    Box::new(keys::PostgresKeys::open(&url, &schema).await?),
                    Some(Duration::from_secs(30)),
                ),
                SideStore::Sqlite(path) => (Box::new(keys::SqliteKeys::open(path)?), None),
            };
        Ok(Arc::new(
            Self::new(master, store, ttl)
                .await?
                .with_clock(clock.clone()),
        ))
    }

    /// The same keys with their ids from `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn with_cache<T>(&self, f: impl FnOnce(&mut Cache) -> T) -> Option<T> {
        self.cache.lock().ok().map(|mut cache| f(&mut cache))
    }

    fn fresh(&self, at: Instant) -> bool {
        self.ttl.is_none_or(|ttl| at.elapsed() < ttl)
    }

    fn remember(&self, mrn: Option<&str>, key: &Arc<DataKey>) {
        self.with_cache(|cache| {
            if cache.keys.len() >= CACHE_CAPACITY {
                cache.keys.clear();
                cache.current.clear();
            }
            cache
                .keys
                .insert(key.kid.clone(), (Arc::clone(key), Instant::now()));
            if let Some(mrn) = mrn {
                cache.current.insert(mrn.to_owned(), key.kid.clone());
            }
        });
    }

    fn mark_erased(&self, mrn: &str, kids: &[String]) {
        self.with_cache(|cache| {
            if cache.erased.len() >= CACHE_CAPACITY {
                cache.erased.clear();
            }
            cache.erased.insert(mrn.to_owned());
            if let Some(kid) = cache.current.remove(mrn) {
                cache.keys.remove(&kid);
            }
            for kid in kids {
                cache.keys.remove(kid);
            }
        });
    }

    /// A fresh key from the stock, storing a new batch first when it is empty.
    async fn fresh_key(&self) -> Result<Arc<DataKey>, PersonalDataError> {
        let mut ready = self.ready.lock().await;
        if let Some(key) = ready.pop() {
            return Ok(key);
        }
        let mut batch = Vec::with_capacity(KEY_BATCH);
        let mut wrapped = Vec::with_capacity(KEY_BATCH);
        for _ in 0..KEY_BATCH {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let kid = self.clock.new_id().simple().to_string();
            wrapped.push(WrappedKey {
                kid: kid.clone(),
                wrapped: self.master.wrap(&kid, &bytes)?,
            });
            batch.push(Arc::new(DataKey::new(kid, &bytes)));
        }
        // Durable before any of them seals anything.
        self.store.add(wrapped).await?;
        let key = batch
            .pop()
            .ok_or_else(|| PersonalDataError::Seal("empty batch".into()))?;
        *ready = batch;
        Ok(key)
    }

    /// The key this process last used or read for `mrn`, without asking the store: snapshots
    /// are sealed only with a key the patient's events already name, so that erasure, which
    /// destroys those, leaves no snapshot readable.
    pub fn known(&self, mrn: &str) -> Option<Arc<DataKey>> {
        self.with_cache(|cache| {
            if cache.erased.contains(mrn) {
                return None;
            }
            let kid = cache.current.get(mrn)?;
            let (key, at) = cache.keys.get(kid)?;
            self.fresh(*at).then(|| Arc::clone(key))
        })
        .flatten()
    }

    /// The key to encrypt `mrn`'s personal data with: the one this process last used or read
    /// for the patient, else a fresh one from the stock (a patient may so hold several keys;
    /// erasure destroys every one its events name). `None` once the patient was erased:
    /// nothing personal is stored for them again. `new_patient` (a stream's first append)
    /// skips the erasure look-up: only a registered patient can be erased.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`] and unwrap errors.
    pub async fn for_writing(
        &self,
        mrn: &str,
        new_patient: bool,
    ) -> Result<Option<Arc<DataKey>>, PersonalDataError> {
        let cached = self
            .with_cache(|cache| {
                if cache.erased.contains(mrn) {
                    return Some(None);
                }
                let kid = cache.current.get(mrn)?;
                let (key, at) = cache.keys.get(kid)?;
                self.fresh(*at).then(|| Some(Arc::clone(key)))
            })
            .flatten();
        if let Some(found) = cached {
            return Ok(found);
        }
        if !new_patient && self.store.is_erased(mrn).await? {
            self.mark_erased(mrn, &[]);
            return Ok(None);
        }
        let key = self.fresh_key().await?;
        self.remember(Some(mrn), &key);
        Ok(Some(key))
    }

    /// The key `kid` of patient `mrn`, to decrypt with; `None` when it was destroyed (or never
    /// stored, which is logged: that data is lost).
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`] and unwrap errors.
    pub async fn for_reading(
        &self,
        mrn: &str,
        kid: &str,
    ) -> Result<Option<Arc<DataKey>>, PersonalDataError> {
        let cached = self
            .with_cache(|cache| {
                if cache.erased.contains(mrn) {
                    return Some(None);
                }
                let (key, at) = cache.keys.get(kid)?;
                self.fresh(*at).then(|| Some(Arc::clone(key)))
            })
            .flatten();
        if let Some(found) = cached {
            return Ok(found);
        }
        match self.store.by_kid(kid).await? {
            Some(wrapped) => {
                let key = Arc::new(self.master.unwrap_key(kid, &wrapped)?);
                // The patient's newest key as far as this process knows: new data goes under it.
                self.remember(Some(mrn), &key);
                Ok(Some(key))
            }
            None => {
                if self.store.is_erased(mrn).await? {
                    self.mark_erased(mrn, &[]);
                } else {
                    tracing::error!(
                        mrn,
                        kid,
                        "patient data key missing: personal data reads as erased"
                    );
                }
                Ok(None)
            }
        }
    }

    /// Destroys the data keys `kids` (every one `mrn`'s events name) for good, idempotently,
    /// records the erasure, and forgets them here.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`].
    pub async fn destroy(&self, mrn: &str, kids: &[String]) -> Result<(), PersonalDataError> {
        self.mark_erased(mrn, kids);
        self.store.destroy(mrn, kids).await?;
        self.mark_erased(mrn, kids);
        Ok(())
    }

    /// The stored (wrapped) form of key `kid`: for tests that check it is really gone.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`].
    pub async fn stored(&self, kid: &str) -> Result<Option<Vec<u8>>, PersonalDataError> {
        self.store.by_kid(kid).await
    }

    /// Whether `mrn` was erased, as stored.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`].
    pub async fn is_erased(&self, mrn: &str) -> Result<bool, PersonalDataError> {
        self.store.is_erased(mrn).await
    }
}

#[cfg(test)]
mod tests;
