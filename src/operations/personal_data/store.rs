//! [`EncryptingStore`] and [`EncryptingSnapshots`]: the one place personal data is encrypted
//! on its way into storage and decrypted (or blanked) on its way out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use careflow_aggregates::personal::PERSONAL_FIELD;
use careflow_aggregates::{RecordedEvent, StreamId};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use super::{ERASED_EVENT, Envelope, PATIENT_KIND, PersonalDataError, PersonalKeys};
use crate::store::snapshot::{Snapshot, SnapshotError, SnapshotStore};
use crate::store::{AppendRequest, Appended, Direction, EventStore, ExpectedVersion, StoreError};

fn store_error(error: PersonalDataError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// The MRN of a patient-account stream; `None` for every other kind (no personal data).
fn patient(stream: &StreamId) -> Option<&str> {
    (stream.kind() == PATIENT_KIND).then(|| stream.id())
}

/// The plain `personal` object of `data`, if it has one to encrypt.
fn plain_personal(data: &mut Value) -> Option<&mut Value> {
    let personal = data.as_object_mut()?.get_mut(PERSONAL_FIELD)?;
    let plain = !personal.is_null() && Envelope::from_value(personal).is_none();
    plain.then_some(personal)
}

/// Destroys every data key the stored events of the patient of `stream` name.
///
/// # Errors
/// [`PersonalDataError::Unavailable`] when the store or the key store cannot be used.
pub(crate) async fn destroy_patient(
    keys: &PersonalKeys,
    stored: &dyn EventStore,
    stream: &StreamId,
) -> Result<(), PersonalDataError> {
    let Some(mrn) = patient(stream) else {
        return Ok(());
    };
    let mut kids: Vec<String> = Vec::new();
    let mut from = 1;
    loop {
        let page = stored
            .read_stream(stream, from, Direction::Forward, 1_000)
            .await
            .map_err(PersonalDataError::unavailable)?;
        for event in &page {
            let envelope = event
                .data
                .get(PERSONAL_FIELD)
                .and_then(Envelope::from_value);
            if let Some(envelope) = envelope
                && !kids.contains(&envelope.kid)
            {
                kids.push(envelope.kid);
            }
        }
        match page.last() {
            Some(last) if page.len() == 1_000 => from = last.version + 1,
            _ => break,
        }
    }
    keys.destroy(mrn, &kids).await
}

/// An event store that keeps patients' `personal` objects encrypted (module docs).
pub struct EncryptingStore {
    inner: Arc<dyn EventStore>,
    keys: Arc<PersonalKeys>,
}

impl EncryptingStore {
    pub fn new(inner: Arc<dyn EventStore>, keys: Arc<PersonalKeys>) -> Self {
        Self { inner, keys }
    }

    /// The backend underneath, which hands out the stored bytes (ciphertext): for the hash
    /// checks and exports.
    pub fn stored(&self) -> &Arc<dyn EventStore> {
        &self.inner
    }

    /// Replaces every envelope in `events` by its plaintext, or by `null` when the patient's
    /// key is gone or the envelope does not open (altered: `audit verify` reports it). For a
    /// consumer of the shared log (which holds the stored bytes) that needs a patient's
    /// personal data: the eligibility process manager.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the key store cannot be read.
    pub async fn open_events(&self, events: &mut [RecordedEvent]) -> Result<(), StoreError> {
        for event in events {
            let Some(mrn) = patient(&event.stream_id) else {
                continue;
            };
            let Some(slot) = event
                .data
                .as_object_mut()
                .and_then(|f| f.get_mut(PERSONAL_FIELD))
            else {
                continue;
            };
            let Some(envelope) = Envelope::from_value(slot) else {
                continue;
            };
            let key = self
                .keys
                .for_reading(mrn, &envelope.kid)
                .await
                .map_err(store_error)?;
            let plain = match key {
                None => None,
                Some(key) => {
                    let plain = key
                        .open(event.stream_id.as_str(), &envelope)
                        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
                    if plain.is_none() {
                        tracing::warn!(stream_id = %event.stream_id, version = event.version, "personal data does not decrypt with the patient's key; read as erased");
                    }
                    plain
                }
            };
            *slot = plain.unwrap_or(Value::Null);
        }
        Ok(())
    }
}

impl EncryptingStore {
    /// Seals the `personal` objects of a patient account's events with the patient's data
    /// key (and destroys the key first for an erasure), before the backend hashes them.
    async fn seal_request(&self, request: &mut AppendRequest) -> Result<(), StoreError> {
        if let Some(mrn) = patient(&request.stream_id) {
            // The key goes first: should the append then fail, the data is unreadable already
            // and a retried erasure appends the event.
            if request.events.iter().any(|e| e.event_type == ERASED_EVENT) {
                destroy_patient(&self.keys, self.inner.as_ref(), &request.stream_id)
                    .await
                    .map_err(store_error)?;
            }
            let needs_key = request
                .events
                .iter_mut()
                .any(|e| plain_personal(&mut e.data).is_some());
            if needs_key {
                let new_patient = request.expected == ExpectedVersion::NoStream;
                let key = self
                    .keys
                    .for_writing(mrn, new_patient)
                    .await
                    .map_err(store_error)?;
                let context = request.stream_id.as_str().to_owned();
                for event in &mut request.events {
                    let Some(slot) = plain_personal(&mut event.data) else {
                        continue;
                    };
                    *slot = match &key {
                        Some(key) => {
                            let plain = serde_json::to_vec(slot)
                                .map_err(|e| store_error(PersonalDataError::Seal(e.to_string())))?;
                            let envelope = key.seal(&context, &plain).map_err(store_error)?;
                            serde_json::to_value(envelope)
                                .map_err(|e| store_error(PersonalDataError::Seal(e.to_string())))?
                        }
                        // Erased: nothing personal is stored for this patient again.
                        None => Value::Null,
                    };
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for EncryptingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn append(&self, mut request: AppendRequest) -> Result<Appended, StoreError> {
        self.seal_request(&mut request).await?;
        let mut appended = self.inner.append(request).await?;
        self.open_events(&mut appended.events).await?;
        Ok(appended)
    }

    async fn append_all(
        &self,
        mut requests: Vec<AppendRequest>,
    ) -> Result<Vec<Appended>, StoreError> {
        for request in &mut requests {
            self.seal_request(request).await?;
        }
        let mut answers = self.inner.append_all(requests).await?;
        for appended in &mut answers {
            self.open_events(&mut appended.events).await?;
        }
        Ok(answers)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self
            .inner
            .read_stream(stream, from, direction, limit)
            .await?;
        self.open_events(&mut events).await?;
        Ok(events)
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.inner.read_all(from, limit).await?;
        self.open_events(&mut events).await?;
        Ok(events)
    }

    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError> {
        let mut found = self.inner.find_command(stream, command_id).await?;
        if let Some(appended) = &mut found {
            self.open_events(&mut appended.events).await?;
        }
        Ok(found)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.inner.head_watch()
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.inner.poll_interval()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// Snapshots whose patient-account states (which hold the identity in clear) are stored
/// encrypted with the patient's key: after an erasure an old snapshot cannot be read, so it
/// can never bring personal data back; it is ignored and the stream replayed.
pub struct EncryptingSnapshots {
    inner: Arc<dyn SnapshotStore>,
    keys: Arc<PersonalKeys>,
}

impl EncryptingSnapshots {
    pub fn new(inner: Arc<dyn SnapshotStore>, keys: Arc<PersonalKeys>) -> Self {
        Self { inner, keys }
    }
}

fn snapshot_error(error: PersonalDataError) -> SnapshotError {
    SnapshotError::Unavailable(error.to_string())
}

/// The context a snapshot's ciphertext is bound to (not an event's: never interchangeable).
fn snapshot_context(stream: &StreamId) -> String {
    format!("snapshot:{stream}")
}

#[async_trait]
impl SnapshotStore for EncryptingSnapshots {
    async fn load(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let Some(mut snapshot) = self.inner.load(stream).await? else {
            return Ok(None);
        };
        let Some(mrn) = patient(stream) else {
            return Ok(Some(snapshot));
        };
        // A plain patient snapshot (written before encryption) is not trusted: replay.
        let Some(envelope) = serde_json::from_str::<Envelope>(&snapshot.state).ok() else {
            return Ok(None);
        };
        let Some(key) = self
            .keys
            .for_reading(mrn, &envelope.kid)
            .await
            .map_err(snapshot_error)?
        else {
            return Ok(None);
        };
        let Some(plain) = key.open(&snapshot_context(stream), &envelope) else {
            return Ok(None);
        };
        snapshot.state =
            String::from_utf8(plain).map_err(|e| SnapshotError::Unavailable(e.to_string()))?;
        Ok(Some(snapshot))
    }

    async fn save(&self, mut snapshot: Snapshot) -> Result<(), SnapshotError> {
        let Some(mrn) = patient(&snapshot.stream_id) else {
            return self.inner.save(snapshot).await;
        };
        // Only under a key the patient's events name (see `PersonalKeys::known`); none (erased,
        // or not in the cache): no snapshot, and the account replays from its events instead.
        let Some(key) = self.keys.known(mrn) else {
            return Ok(());
        };
        let envelope = key
            .seal(
                &snapshot_context(&snapshot.stream_id),
                snapshot.state.as_bytes(),
            )
            .map_err(snapshot_error)?;
        snapshot.state = serde_json::to_string(&envelope)
            .map_err(|e| SnapshotError::Unavailable(e.to_string()))?;
        self.inner.save(snapshot).await
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), SnapshotError> {
        self.inner.delete(stream).await
    }
}
