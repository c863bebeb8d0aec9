#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while, one after the other, in one process each (no
# -jobs, no -fork: the machine has 2 cores)
# (docs/reliability.md, "Fuzzing").
#
#   scripts/fuzz.sh [seconds per target, default 60] [target...]
#
# Installs cargo-fuzz when it is missing (the nightly toolchain must be installed: `rustup
# toolchain install nightly`). Each target starts from its seeds (fuzz/seeds/), its committed
# corpus (fuzz/corpus/) and the inputs that once failed (fuzz/regressions/); what the fuzzer
# learns goes to fuzz/corpus/<target>/ (minimise it with `cargo +nightly fuzz cmin` before
# committing). A crash leaves its input in fuzz/artifacts/<target>/ and stops the script.
#
# Built without a sanitizer (`--sanitizer none`): careflow's code is safe Rust and every
# invariant is an assertion, so AddressSanitizer would mostly slow the build and the runs on a
# 2-core machine; pass FUZZ_SANITIZER=address to use it. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(hl7_message mllp_codec fhir_resource fhir_bundle http_command_body stored_event)
fi
sanitizer=${FUZZ_SANITIZER:-none}

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build --sanitizer "$sanitizer"

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "regressions/$target"
    dict=()
    case $target in
    hl7_message | mllp_codec) dict=(-dict=dicts/hl7.dict) ;;
    *) dict=(-dict=dicts/json.dict) ;;
    esac
    echo "==> $target for ${seconds}s"
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" \
        "corpus/$target" "seeds/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "${dict[@]}"
done
