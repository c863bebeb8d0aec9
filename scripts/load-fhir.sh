#!/usr/bin/env bash
# Load test of the FHIR R4 adapter (transaction Bundles) against the release binary
# (docs/performance.md "FHIR"):
#
#   scripts/load-fhir.sh [sqlite|postgres] [extra `careflow bench fhir` flags...]
#
# The same server set-up and report as scripts/load-http.sh, with `careflow bench fhir` as the
# client.
set -euo pipefail
CAREFLOW_LOAD_BENCH=fhir exec "$(dirname "${BASH_SOURCE[0]}")/load-http.sh" "$@"
