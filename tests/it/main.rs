//! careflow's one integration-test binary (STYLE.md §1): the event store conformance suite,
//! black-box tests of the real binary, and the payer client against a fake payer.

mod api;
mod audit_cli;
mod backup;
mod conformance;
mod consumers;
mod crash;
mod dead_letters;
mod erasure;
mod errors;
mod fake_odoo;
mod fake_payer;
mod fhir;
mod fuzz_replay;
mod journey;
mod kurrentdb;
mod matrix;
mod merge;
mod mllp;
mod odoo;
mod outbound;
mod passivation;
mod payer;
mod postgres_api;
mod postgres_tls;
mod process_managers;
mod projections;
mod revenue;
mod roles;
mod serve;
mod server;
mod support;
mod tamper;
mod tls;
mod views;
mod workforce;
