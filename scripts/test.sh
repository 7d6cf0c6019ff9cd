#!/usr/bin/env bash
# The project's test command (README): works on a fresh machine of ours.
#   1. scripts/install-tools.sh  (idempotent; under a second when done)
#   2. scripts/check-chart.sh    (ends with "chart: N passed, M failed")
#   3. cargo nextest run --workspace --no-fail-fast  (last, so its summary
#      closes the output)
# Both suites run even when the first fails; the exit code is non-zero if
# either failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

bash scripts/install-tools.sh || exit 1
export PATH="$ROOT/.tools/bin:$PATH"

status=0

echo "== scripts/check-chart.sh"
bash scripts/check-chart.sh || status=1

echo "== cargo nextest run --workspace --no-fail-fast"
cargo nextest run --workspace --no-fail-fast || status=1

exit "$status"
