//! `careflow::fuzzing::fhir_resource`: the logic and the invariants live there (docs/reliability.md,
//! "Fuzzing").
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| careflow::fuzzing::fhir_resource(data));
