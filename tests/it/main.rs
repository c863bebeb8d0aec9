//! careflow's one integration-test binary (STYLE.md §1): the event store conformance suite
//! and black-box tests of the real binary.

mod api;
mod audit_cli;
mod conformance;
mod crash;
mod errors;
mod journey;
mod passivation;
mod postgres_api;
mod roles;
mod serve;
mod support;
mod tamper;
