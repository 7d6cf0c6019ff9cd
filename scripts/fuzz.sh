#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo fuzz, libFuzzer) for SECONDS each (default 30:
# the smoke of the test command) or until RUNS executions, whichever comes first, and
# prints a table of what each did. A crash fails the script and leaves its input in
# fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [SECONDS] [RUNS] [TARGET...]
#   scripts/fuzz.sh 1800 10000000      # the long runs of docs/security.md
# Corpora are fuzz/corpus/<target>/ (committed: the seeds and what the long runs kept,
# cut to the fewest inputs that reach the same edges, named seeds always kept; new finds of a smoke run go to a
# scratch copy, not into the checkout).
# Stable Rust: cargo fuzz passes `-Z` flags only for sanitizers, and this runs without
# one (-s none, the instrumentation is stable); RUSTC_BOOTSTRAP covers the rest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
export PATH="$ROOT/.tools/bin:$PATH" RUSTC_BOOTSTRAP=1

SECONDS_EACH="${1:-30}"
RUNS="${2:-10000000}"
shift $(( $# > 2 ? 2 : $# ))
if [[ $# -gt 0 ]]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list --fuzz-dir .); fi
# ENTREPOT_FUZZ_KEEP_CORPUS=1 (the long runs) adds new inputs to the committed corpus;
# otherwise they go to a scratch copy, and the checkout stays as it is.
keep="${ENTREPOT_FUZZ_KEEP_CORPUS:-0}"

echo "fuzz: building the targets (release, libFuzzer's instrumentation)"
cargo fuzz build -s none --fuzz-dir .

status=0
rows=()
for t in "${targets[@]}"; do
    corpus="corpus/$t"
    mkdir -p "$corpus" "artifacts/$t"
    work="$corpus"
    if [[ "$keep" != 1 ]]; then
        work="$(mktemp -d)"
        cp -r "$corpus/." "$work/"
    fi
    log="$(mktemp)"
    if cargo fuzz run -s none --fuzz-dir . "$t" "$work" -- \
        -max_total_time="$SECONDS_EACH" -runs="$RUNS" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
        tail -n 40 "$log"
    fi
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    took="$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo '?')"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+' || echo '?')"
    files="$(find "$work" -type f | wc -l)"
    rows+=("$(printf '%-16s %-6s %12s %8s %8s %8s' "$t" "$result" "$runs" "$took" "$cov" "$files")")
    if [[ "$keep" == 1 ]]; then
        # Keep a small corpus: the fewest inputs that still reach every edge reached.
        small="$(mktemp -d)"
        # Named inputs (the seeds, the input of each crash found and fixed) stay whatever
        # edges they reach; only libFuzzer's own finds (named by their SHA-1) are cut.
        "target/$(rustc -vV | sed -n 's/^host: //p')/release/$t" -set_cover_merge=1 -use_counters=0 \
            "$small" "$corpus" >/dev/null 2>&1 \
            && find "$corpus" -maxdepth 1 -type f ! -regex '.*/[0-9a-f]\{40\}' -exec cp {} "$small/" \; \
            && rm -rf "$corpus" && mv "$small" "$corpus"
    else
        rm -rf "$work"
    fi
    rm -f "$log"
done

printf '%-16s %-6s %12s %8s %8s %8s\n' target result executions seconds coverage corpus
printf '%s\n' "${rows[@]}"
exit "$status"
