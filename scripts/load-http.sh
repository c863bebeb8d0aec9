#!/usr/bin/env bash
# Load test of the HTTP command path against the release binary (docs/performance.md).
#
#   scripts/load-http.sh [sqlite|postgres] [extra `careflow bench http` flags...]
#
# Starts `careflow serve` on a free port with a fresh data dir (and, for postgres, a fresh
# schema in CAREFLOW_TEST_DATABASE_URL's database), raises the per-token rate limit so the
# limiter is not what is measured, runs `careflow bench http` from the same machine, then
# prints the server's peak RSS and the projections' live lag (p99 of the time from an event's
# recorded_at to the commit of the view that reflects it, from the server's histogram, read
# once the views have caught up), then stops it. Everything runs on loopback and stops by
# itself. CAREFLOW_LOAD_BENCH picks another `careflow bench` client against the same server
# (scripts/load-fhir.sh sets `fhir`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

store=${1:-sqlite}
shift || true
bin=${CARGO_TARGET_DIR:-target}/release/careflow
[[ -x $bin ]] || cargo build --release
data=$(mktemp -d /tmp/careflow-load.XXXXXX)
schema=load_$RANDOM$RANDOM

export CAREFLOW_DATA_DIR=$data/data
export CAREFLOW_LISTEN=127.0.0.1:0
export CAREFLOW_LOG=warn
export CAREFLOW_RATE_LIMIT_PER_SECOND=10000000
export CAREFLOW_RATE_LIMIT_BURST=10000000
if [[ $store == postgres ]]; then
    export CAREFLOW_STORE=postgres
    export CAREFLOW_DATABASE_URL=${CAREFLOW_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    export CAREFLOW_DATABASE_SCHEMA=$schema
fi

"$bin" serve >"$data/serve.out" 2>"$data/serve.err" &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ $store == postgres ]]; then
        psql -q "$CAREFLOW_DATABASE_URL" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE" || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 100); do
    url=$(sed -n 's/^careflow listening on //p' "$data/serve.out")
    [[ -n $url ]] && curl -fs "$url/readyz" >/dev/null && break
    sleep 0.1
done
[[ -n ${url:-} ]] || { cat "$data/serve.err"; exit 1; }

echo "server: $url store: $store pid: $pid"
"$bin" bench "${CAREFLOW_LOAD_BENCH:-http}" --url "$url" "$@"
grep -E '^VmHWM' "/proc/$pid/status" | awk '{printf "server_peak_rss_mib: %.0f\n", $2/1024}'
# CPU the server used over the whole run (set-up included): on a shared 2-core machine this is
# steadier than commands/s, which any other process's load moves.
awk -v hz="$(getconf CLK_TCK)" '{printf "server_cpu_seconds: %.2f\n", ($14 + $15) / hz}' "/proc/$pid/stat"
curl -fs "$url/metrics" | grep -E '^careflow_projection_lag_events' | sed 's/^/at_end_of_load: /' || true
# Wait (at most 60 s) for every view to reflect the newest event, then read the histogram.
for _ in $(seq 600); do
    lagging=$(curl -fs "$url/metrics" | awk '/^careflow_projection_lag_events/ && $2 > 0' | wc -l)
    [[ $lagging == 0 ]] && break
    sleep 0.1
done
curl -fs "$url/metrics" | awk '
    /^careflow_projection_delay_seconds_bucket/ {
        match($0, /projection="[a-z_]+"/); p = substr($0, RSTART + 12, RLENGTH - 13)
        match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
        n[p] += 0; les[p, ++n[p]] = le; cum[p, n[p]] = $2
    }
    /^careflow_projection_delay_seconds_count/ {
        match($0, /projection="[a-z_]+"/); p = substr($0, RSTART + 12, RLENGTH - 13); count[p] = $2
    }
    END {
        for (p in count) {
            for (q = 1; q <= 2; q++) {
                target = (q == 1 ? 0.5 : 0.99) * count[p]
                for (i = 1; i <= n[p]; i++) if (cum[p, i] >= target) break
                printf "projection_%s_delay_%s_at_most_s: %s (of %d events)\n", p, (q == 1 ? "p50" : "p99"), les[p, i], count[p]
            }
        }
    }'
