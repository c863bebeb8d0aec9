//! The fuzz corpora, replayed on stable (issue #15): every committed input of every fuzz
//! target (`fuzz/seeds/`, the minimised `fuzz/corpus/` and the inputs that once failed,
//! `fuzz/regressions/`) through the same `careflow::fuzzing` function the libFuzzer target
//! calls. CI runs this with the rest of `cargo test`; the fuzzer itself needs nightly and runs
//! from scripts/fuzz.sh (docs/reliability.md, "Fuzzing").

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A fuzz target's function.
type Target = fn(&[u8]);

/// The targets, as named in fuzz/Cargo.toml, and the function each runs.
const TARGETS: &[(&str, Target)] = &[
    ("hl7_message", careflow::fuzzing::hl7_message),
    ("mllp_codec", careflow::fuzzing::mllp_codec),
    ("fhir_resource", careflow::fuzzing::fhir_resource),
    ("fhir_bundle", careflow::fuzzing::fhir_bundle),
    ("http_command_body", careflow::fuzzing::http_command_body),
    ("stored_event", careflow::fuzzing::stored_event),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/{folder}/{target}`, sorted (none when the folder does not exist).
fn inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(folder).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `run` over `files`; the ones that panic, with the panic's message.
fn failures(run: Target, files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for path in files {
        let data = std::fs::read(path)
            .unwrap_or_else(|error| panic!("{} cannot be read: {error}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{}: {message}", path.display()));
        }
    }
    failed
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let mut failed = Vec::new();
    for (target, run) in TARGETS {
        let mut files = inputs("seeds", target);
        files.extend(inputs("corpus", target));
        files.extend(inputs("regressions", target));
        assert!(
            !files.is_empty(),
            "fuzz target {target} has no committed inputs"
        );
        failed.extend(failures(*run, &files));
    }
    assert!(
        failed.is_empty(),
        "inputs that fail:\n{}",
        failed.join("\n")
    );
}

/// Writes fuzz/seeds/stored_event/ from the other targets' seeds (scripts/fuzz-seed.py writes
/// those): run after it, with `cargo test --test it fuzz_replay::write_stored_event_seeds --
/// --ignored`.
#[test]
#[ignore = "writes seed files; run by hand after scripts/fuzz-seed.py"]
fn write_stored_event_seeds() {
    let read = |target: &str| -> Vec<Vec<u8>> {
        inputs("seeds", target)
            .iter()
            .map(|path| std::fs::read(path).unwrap())
            .collect()
    };
    let hl7 = read("hl7_message");
    let mut fhir = read("fhir_resource");
    fhir.extend(read("fhir_bundle"));
    let bodies = read("http_command_body");
    assert!(!bodies.is_empty(), "run scripts/fuzz-seed.py first");
    let folder = fuzz_dir().join("seeds").join("stored_event");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let seeds = careflow::fuzzing::stored_event_seeds(&hl7, &fhir, &bodies);
    for (index, seed) in seeds.iter().enumerate() {
        std::fs::write(folder.join(format!("seed-{index:04}.json")), seed).unwrap();
    }
    println!("{} stored-event seeds", seeds.len());
}
