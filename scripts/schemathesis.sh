#!/usr/bin/env bash
# Schema-driven API tests (issue #15 part 2): schemathesis against the served /openapi.json,
# once per role, every operation.
#
#   scripts/schemathesis.sh                 # what CI runs (.ci/run)
#   CAREFLOW_ST_EXAMPLES=100 scripts/schemathesis.sh   # a longer run
#
# 1. Installs schemathesis (pinned, from PyPI) into a venv unless it is there already
#    ($CAREFLOW_ST_VENV, default /var/cache/careflow-ci/schemathesis-venv, outside the clone
#    like the cargo target dir, so the next CI run reuses it).
# 2. Builds the binary, starts `careflow serve` on a temp data dir (port 0, process managers
#    off, a rate limit high enough that schemathesis is never throttled), waits for /readyz.
# 3. Mints a token per role with `careflow token issue` (same data dir, so the same secret).
# 4. Runs `st run` with every check (no 5xx, status codes, content types, headers and bodies
#    as documented, authentication not ignored), positive and negative data, a bounded
#    number of examples per operation, derandomized (the same cases every run). Two
#    exceptions, both schemathesis's and not careflow's: `negative_data_rejection` is off
#    (3.39 reports "accepted negative data" for negative query values it then drops from the
#    URL: the request it sends is a valid one, answered 200), and headers that are not valid
#    HTTP at all are filtered out (scripts/schemathesis_hooks.py says why). Each role's
#    requests are recorded in a cassette, which is how the cases are counted.
# 5. Prints operations, cases and failures per role (docs/reliability.md records them) and
#    exits 1 if any role had a failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=3.39.16
HYPOTHESIS_VERSION=6.122.3
VENV=${CAREFLOW_ST_VENV:-/var/cache/careflow-ci/schemathesis-venv}
EXAMPLES=${CAREFLOW_ST_EXAMPLES:-20}
ROLES=(system finance auditor admin)

say() {
    printf 'schemathesis: %s\n' "$*" >&2
}

installed() {
    "$VENV/bin/python" -c "import sys, schemathesis, hypothesis
sys.exit(not (schemathesis.__version__ == '$SCHEMATHESIS_VERSION'
              and hypothesis.__version__ == '$HYPOTHESIS_VERSION'))" 2>/dev/null
}

if ! installed; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    # hypothesis pinned too: later releases dropped an API this schemathesis uses
    # (`many.more`), and every operation then errors before sending anything.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
fi

if [[ -z "${CAREFLOW_BIN:-}" ]]; then
    cargo build --quiet --bin careflow
    CAREFLOW_BIN="${CARGO_TARGET_DIR:-target}/debug/careflow"
fi

work=$(mktemp -d)
server=
cleanup() {
    if [[ -n "$server" ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# careflow with this run's settings only (no CAREFLOW_* from the caller's shell).
# `exec`: `careflow serve &` runs this in a subshell, and the pid the cleanup kills must be
# the server's own, not a shell's that would leave the server running.
careflow() {
    # shellcheck disable=SC2046 # one `-u NAME` pair per variable, split on purpose
    exec env $(env | awk -F= '/^CAREFLOW_/ {print "-u " $1}') \
        CAREFLOW_DATA_DIR="$work/data" \
        CAREFLOW_LISTEN=127.0.0.1:0 \
        CAREFLOW_MLLP_LISTEN=127.0.0.1:0 \
        CAREFLOW_PROCESS_MANAGERS=false \
        CAREFLOW_RATE_LIMIT_PER_SECOND=100000 \
        CAREFLOW_RATE_LIMIT_BURST=100000 \
        CAREFLOW_LOG=warn \
        "$CAREFLOW_BIN" "$@"
}

careflow serve >"$work/serve.out" 2>"$work/serve.err" &
server=$!

base=
for ((i = 0; i < 300; i++)); do
    base=$(sed -n 's/^careflow listening on //p' "$work/serve.out" | head -n 1)
    if [[ -n "$base" ]] && curl -fsS "$base/readyz" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.err" >&2; say "serve exited"; exit 2; }
    sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$work/serve.err" >&2; say "serve is not ready"; exit 2; }
say "careflow serve at $base"

operations=$(curl -fsS "$base/openapi.json" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(v) for v in d["paths"].values()))')

failed=0
total_cases=0
summary=()
for role in "${ROLES[@]}"; do
    token=$(careflow token issue --role "$role" --subject "schemathesis-$role" --ttl 1h)
    cassette="$work/$role.yaml"
    say "role $role: $operations operations, up to $EXAMPLES examples each, positive and negative"
    status=0
    PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
        "$VENV/bin/st" run "$base/openapi.json" \
        --experimental=openapi-3.1 \
        --checks all \
        --exclude-checks negative_data_rejection \
        --data-generation-method all \
        --hypothesis-max-examples "$EXAMPLES" \
        --hypothesis-derandomize \
        --hypothesis-suppress-health-check all \
        --hypothesis-phases explicit,generate \
        --request-timeout 10000 \
        --cassette-path "$cassette" \
        --no-color \
        -H "Authorization: Bearer $token" \
        >"$work/$role.log" 2>&1 || status=$?
    cases=$(grep -c '^- id:' "$cassette" 2>/dev/null || true)
    total_cases=$((total_cases + ${cases:-0}))
    result=$(grep -E '^=+ .*(passed|failed|errored).* =+$' "$work/$role.log" | tail -n 1 | tr -d '=' | xargs || true)
    summary+=("$role: $cases cases; $result")
    if ((status != 0)); then
        failed=1
        cat "$work/$role.log" >&2
    fi
done

printf 'schemathesis %s, %s operations x %s roles, max %s examples per operation:\n' \
    "$SCHEMATHESIS_VERSION" "$operations" "${#ROLES[@]}" "$EXAMPLES"
printf '  %s\n' "${summary[@]}"
printf '  total: %s cases\n' "$total_cases"
if ((failed)); then
    say "failures above"
    exit 1
fi
