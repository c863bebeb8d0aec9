//! Inbound adapters: each turns an outside message into typed commands for the runtime and
//! answers in its own protocol.
//!
//! - [`http`]: the actix-web edge (the only module that knows HTTP, its routes and DTOs);
//! - [`fhir`]: FHIR R4 resources and transaction Bundles (served under `/fhir/r4`);
//! - [`hl7`]: HL7 v2 messages into commands (meaning only, no socket);
//! - [`mllp`]: HL7 v2 over MLLP (the socket, framing, ACKs).
//!
//! A new inbound message type gets a module here that parses it into commands addressed to an
//! aggregate and sends them through the runtime's `Registry` (ARCHITECTURE.md, "Where does a
//! new ... go").

pub mod fhir;
pub mod hl7;
pub mod http;
pub mod mllp;
