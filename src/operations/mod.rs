//! Operations: what compliance auditors and operators use.
//!
//! - [`backup`]: `careflow backup` and `restore`, a consistent online copy of a data dir;
//! - [`audit`]: replay, `audit verify` with signed checkpoints, signed exports;
//! - [`dead_letters`]: what a consumer could not do, for operators to retry or discard;
//! - [`personal_data`]: per-patient encryption of personal data and erasure;
//! - [`metrics`]: the one Prometheus catalogue;
//! - [`node_files`]: the files of a node's data dir and how each is copied (backup, store copy);
//! - [`store_copy`]: moving a node's log and data to KurrentDB (`careflow store copy`).

pub mod audit;
pub mod backup;
pub mod dead_letters;
pub mod metrics;
pub mod node_files;
pub mod personal_data;
pub mod store_copy;
