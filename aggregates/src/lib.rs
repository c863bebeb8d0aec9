//! careflow-aggregates: the pure domain.
//!
//! This crate owns what careflow *decides*: the event envelope (`RecordedEvent`,
//! `EventMetadata`, `StreamId`), the canonical encoding and per-stream SHA-256 hash chain that
//! make a history tamper-evident, and (as the domain grows) the deciders of `PatientAccount`,
//! `Encounter`, `InventoryItem` and `PurchaseWorkflow` plus the process-manager policies
//! (`policies`: event in, commands and timers out), and `AddressedCommand`, the command to
//! any one of them that every channel hands to the shell.
//!
//! **Architecture Invariant:** no clock, no I/O, no async, no randomness. Time and ids come in
//! as arguments, so every function here is a deterministic function of its inputs and every
//! test of it runs in microseconds.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod chain;
pub mod envelope;
pub mod log_verifier;
pub mod stream_id;

pub use chain::{
    ChainBreak, ChainVerifier, EventHash, EventText, MetadataText, canonical_bytes, chain_hash,
    chain_hash_text, chain_hash_with_data_text,
};
pub use envelope::{EventMetadata, RecordedEvent, event_id_for};
pub use stream_id::{StreamId, StreamIdError};

pub mod addressed;
pub mod aggregate;
pub mod claim;
pub mod codec;
pub mod context;
pub mod encounter;
pub mod field;
pub mod inventory_item;
pub mod money;
pub mod patient_account;
pub mod personal;
pub mod policies;
pub mod purchase;
pub mod rejection;
pub mod roster;
pub mod staffing;
pub mod testing;
pub mod upcast;

pub use addressed::{AddressedCommand, AnyCommand};
pub use aggregate::{Aggregate, CommandBody};
pub use claim::Claim;
pub use codec::{DecodeError, DomainEvent, EncodedEvent};
pub use context::Ctx;
pub use encounter::Encounter;
pub use inventory_item::InventoryItem;
pub use money::{Cents, Currency, MoneyError, Total};
pub use patient_account::PatientAccount;
pub use personal::Personal;
pub use purchase::PurchaseWorkflow;
pub use rejection::Rejection;
pub use roster::Roster;
pub use staffing::Staffing;
