#!/usr/bin/env bash
# Load test of HL7 v2 over MLLP against the release binary (docs/performance.md "MLLP").
#
#   scripts/load-mllp.sh [extra `careflow bench mllp` flags...]
#
# Starts `careflow serve` (SQLite, fresh data dir, HTTP and MLLP on free ports, process
# managers on as in production unless CAREFLOW_PROCESS_MANAGERS says otherwise), runs
# `careflow bench mllp` against its MLLP address from the same machine, then prints the
# server's CPU time and peak RSS, checks every ACKed message is in the log, and stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${CARGO_TARGET_DIR:-target}/release/careflow
[[ -x $bin ]] || cargo build --release
data=$(mktemp -d /tmp/careflow-mllp.XXXXXX)

export CAREFLOW_DATA_DIR=$data/data
export CAREFLOW_LISTEN=127.0.0.1:0
export CAREFLOW_MLLP_LISTEN=127.0.0.1:0
export CAREFLOW_LOG=warn

"$bin" serve >"$data/serve.out" 2>"$data/serve.err" &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 100); do
    url=$(sed -n 's/^careflow listening on //p' "$data/serve.out")
    mllp=$(sed -n 's/^careflow mllp listening on //p' "$data/serve.out")
    [[ -n $url && -n $mllp ]] && curl -fs "$url/readyz" >/dev/null && break
    sleep 0.1
done
[[ -n ${mllp:-} ]] || { cat "$data/serve.err"; exit 1; }

echo "server: $url mllp: $mllp pid: $pid process_managers: ${CAREFLOW_PROCESS_MANAGERS:-true}"
"$bin" bench mllp --addr "$mllp" "$@"
awk -v hz="$(getconf CLK_TCK)" '{printf "server_cpu_seconds: %.2f\n", ($14 + $15) / hz}' "/proc/$pid/stat"
grep -E '^VmHWM' "/proc/$pid/status" | awk '{printf "server_peak_rss_mib: %.0f\n", $2/1024}'
curl -fs "$url/metrics" | grep -E '^careflow_interface_messages_total\{interface="mllp"' || true
curl -fs "$url/metrics" | grep -E '^careflow_event_store_commit_batch_commands_(sum|count)' || true
