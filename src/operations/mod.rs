//! Operations: what compliance auditors and operators use.
//!
//! - [`audit`]: replay, `audit verify` with signed checkpoints, signed exports;
//! - [`dead_letters`]: what a consumer could not do, for operators to retry or discard;
//! - [`personal_data`]: per-patient encryption of personal data and erasure;
//! - [`metrics`]: the one Prometheus catalogue.

pub mod audit;
pub mod dead_letters;
pub mod metrics;
pub mod personal_data;
