//! `careflow::fuzzing::http_command_body`: the logic and the invariants live there (docs/reliability.md,
//! "Fuzzing").
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| careflow::fuzzing::http_command_body(data));
