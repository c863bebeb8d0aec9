//! PLACEHOLDER until the lead's dead-letter module lands on `main` (then `git merge main` and
//! take main's version of this file). It has exactly the API of /tmp/prompts/dead_letters.md,
//! kept in memory, so the Odoo executor builds and its unit tests run meanwhile. It is not
//! the storage: main's module keeps dead letters in `dead_letters.db` / PostgreSQL.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub struct NewDeadLetter {
    pub source: String,
    pub key: String,
    pub event_id: Uuid,
    pub position: u64,
    pub payload: Value,
    pub error: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    Dead,
    Parked,
    RetryRequested,
    Resolved,
    Discarded,
}

impl DeadLetterStatus {
    fn is_open(self) -> bool {
        matches!(
            self,
            DeadLetterStatus::Dead | DeadLetterStatus::Parked | DeadLetterStatus::RetryRequested
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub source: String,
    pub key: String,
    pub event_id: Uuid,
    pub position: u64,
    pub payload: Value,
    pub error: String,
    pub attempts: u32,
    pub first_failure: DateTime<Utc>,
    pub last_failure: DateTime<Utc>,
    pub status: DeadLetterStatus,
    pub discard_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead letter {0} is not open")]
    NotOpen(i64),
    #[error("no dead letter {0}")]
    NotFound(i64),
}

#[derive(Clone, Default)]
pub struct DeadLetters {
    rows: Arc<Mutex<Vec<DeadLetter>>>,
}

impl DeadLetters {
    pub fn in_memory() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<DeadLetter>) -> T) -> T {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut rows)
    }

    pub async fn record(
        &self,
        new: NewDeadLetter,
        status: DeadLetterStatus,
    ) -> Result<i64, DeadLetterError> {
        Ok(self.with(|rows| {
            let now = Utc::now();
            let item = new.payload.get("id").cloned();
            if let Some(row) = rows.iter_mut().find(|r| {
                r.source == new.source
                    && r.event_id == new.event_id
                    && r.key == new.key
                    && r.payload.get("id").cloned() == item
            }) {
                row.error = new.error;
                row.attempts = new.attempts;
                row.last_failure = now;
                return row.id;
            }
            let id = i64::try_from(rows.len()).unwrap_or(i64::MAX) + 1;
            rows.push(DeadLetter {
                id,
                source: new.source,
                key: new.key,
                event_id: new.event_id,
                position: new.position,
                payload: new.payload,
                error: new.error,
                attempts: new.attempts,
                first_failure: now,
                last_failure: now,
                status,
                discard_reason: None,
            });
            id
        }))
    }

    pub async fn list(
        &self,
        source: Option<&str>,
        include_closed: bool,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(self.with(|rows| {
            rows.iter()
                .filter(|r| source.is_none_or(|s| r.source == s))
                .filter(|r| include_closed || r.status.is_open())
                .cloned()
                .collect()
        }))
    }

    pub async fn get(&self, id: i64) -> Result<Option<DeadLetter>, DeadLetterError> {
        Ok(self.with(|rows| rows.iter().find(|r| r.id == id).cloned()))
    }

    fn transition(
        &self,
        id: i64,
        f: impl FnOnce(&mut DeadLetter) -> Result<(), DeadLetterError>,
    ) -> Result<DeadLetter, DeadLetterError> {
        self.with(|rows| {
            let row = rows
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or(DeadLetterError::NotFound(id))?;
            f(row)?;
            Ok(row.clone())
        })
    }

    pub async fn request_retry(&self, id: i64) -> Result<DeadLetter, DeadLetterError> {
        self.transition(id, |row| match row.status {
            DeadLetterStatus::Dead | DeadLetterStatus::Parked => {
                row.status = DeadLetterStatus::RetryRequested;
                Ok(())
            }
            _ => Err(DeadLetterError::NotOpen(id)),
        })
    }

    pub async fn retry_requests(&self, source: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(self.with(|rows| {
            rows.iter()
                .filter(|r| r.source == source && r.status == DeadLetterStatus::RetryRequested)
                .cloned()
                .collect()
        }))
    }

    pub async fn resolve(&self, id: i64) -> Result<(), DeadLetterError> {
        self.transition(id, |row| {
            row.status = DeadLetterStatus::Resolved;
            Ok(())
        })
        .map(|_| ())
    }

    pub async fn failed_again(&self, id: i64, error: &str) -> Result<(), DeadLetterError> {
        self.transition(id, |row| {
            row.status = DeadLetterStatus::Dead;
            row.attempts += 1;
            row.error = error.to_owned();
            row.last_failure = Utc::now();
            Ok(())
        })
        .map(|_| ())
    }

    pub async fn discard(&self, id: i64, reason: &str) -> Result<DeadLetter, DeadLetterError> {
        self.transition(id, |row| {
            if !row.status.is_open() {
                return Err(DeadLetterError::NotOpen(id));
            }
            row.status = DeadLetterStatus::Discarded;
            row.discard_reason = Some(reason.to_owned());
            Ok(())
        })
    }

    pub async fn open_keys(&self, source: &str) -> Result<Vec<String>, DeadLetterError> {
        Ok(self.with(|rows| {
            let mut keys: Vec<String> = rows
                .iter()
                .filter(|r| r.source == source && r.status.is_open())
                .map(|r| r.key.clone())
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }))
    }

    pub async fn open_for_key(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(self.with(|rows| {
            rows.iter()
                .filter(|r| r.source == source && r.key == key && r.status.is_open())
                .cloned()
                .collect()
        }))
    }
}
