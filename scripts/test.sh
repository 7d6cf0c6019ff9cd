#!/usr/bin/env bash
# The project's test command (README): works on a fresh machine of ours.
#   1. scripts/install-tools.sh  (idempotent; under a second when done)
#   2. cargo fmt --check, and cargo clippy with warnings as errors
#   3. scripts/check-chart.sh    (ends with "chart: N passed, M failed")
#   4. scripts/fuzz.sh           (each fuzz target for ENTREPOT_FUZZ_SECONDS, 30 s by
#                                 default; 0 skips it)
#   5. cargo nextest run --workspace --no-fail-fast  (last, so its summary
#      closes the output)
# Every step runs even when the first fails; the exit code is non-zero if
# any step failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

bash scripts/install-tools.sh || exit 1
export PATH="$ROOT/.tools/bin:$PATH"

status=0

echo "== cargo fmt --check"
cargo fmt --all --check || status=1

echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings || status=1

echo "== scripts/check-chart.sh"
bash scripts/check-chart.sh || status=1

FUZZ_SECONDS="${ENTREPOT_FUZZ_SECONDS:-30}"
if [[ "$FUZZ_SECONDS" != 0 ]]; then
    echo "== scripts/fuzz.sh $FUZZ_SECONDS"
    bash scripts/fuzz.sh "$FUZZ_SECONDS" || status=1
fi

echo "== cargo nextest run --workspace --no-fail-fast"
cargo nextest run --workspace --no-fail-fast || status=1

exit "$status"
