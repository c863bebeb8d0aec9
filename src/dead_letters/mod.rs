//! TEMPORARY local stand-in with the lead's announced API, never committed: replaced by the
//! lead's module on `git merge main`.
#![allow(dead_code, clippy::unused_async)]
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    Dead,
    Parked,
    RetryRequested,
    Resolved,
    Discarded,
}
#[derive(Debug, Clone, serde::Serialize)]
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
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeadLetterError {
    #[error("not open")]
    NotOpen,
    #[error("unavailable: {0}")]
    Unavailable(String),
}
#[derive(Clone, Default)]
pub struct DeadLetters {
    rows: Arc<Mutex<Vec<DeadLetter>>>,
}
impl DeadLetters {
    pub async fn record(
        &self,
        new: NewDeadLetter,
        status: DeadLetterStatus,
    ) -> Result<i64, DeadLetterError> {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(row) = rows
            .iter_mut()
            .find(|r| r.source == new.source && r.event_id == new.event_id && r.key == new.key)
        {
            row.error = new.error;
            row.attempts = new.attempts;
            row.last_failure = Utc::now();
            return Ok(row.id);
        }
        let id = rows.len() as i64 + 1;
        rows.push(DeadLetter {
            id,
            source: new.source,
            key: new.key,
            event_id: new.event_id,
            position: new.position,
            payload: new.payload,
            error: new.error,
            attempts: new.attempts,
            first_failure: Utc::now(),
            last_failure: Utc::now(),
            status,
            discard_reason: None,
        });
        Ok(id)
    }
    pub async fn list(
        &self,
        source: Option<&str>,
        _all: bool,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(rows
            .iter()
            .filter(|r| source.is_none_or(|s| s == r.source))
            .cloned()
            .collect())
    }
    pub async fn request_retry(&self, id: i64) -> Result<DeadLetter, DeadLetterError> {
        self.set(id, DeadLetterStatus::RetryRequested)
    }
    pub async fn retry_requests(&self, source: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(rows
            .iter()
            .filter(|r| r.source == source && r.status == DeadLetterStatus::RetryRequested)
            .cloned()
            .collect())
    }
    pub async fn resolve(&self, id: i64) -> Result<(), DeadLetterError> {
        self.set(id, DeadLetterStatus::Resolved).map(|_| ())
    }
    pub async fn failed_again(&self, id: i64, _error: &str) -> Result<(), DeadLetterError> {
        self.set(id, DeadLetterStatus::Dead).map(|_| ())
    }
    fn set(&self, id: i64, status: DeadLetterStatus) -> Result<DeadLetter, DeadLetterError> {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let row = rows
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or(DeadLetterError::NotOpen)?;
        row.status = status;
        Ok(row.clone())
    }
}
