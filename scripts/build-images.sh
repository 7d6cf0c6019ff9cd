#!/usr/bin/env bash
# Builds Entrepot's two images from ./Dockerfile with docker or podman:
#   $REGISTRY/entrepot:$TAG           the runner     (--target entrepot)
#   $REGISTRY/entrepot-operator:$TAG  the operator   (--target entrepot-operator)
# These are the names and tag the Helm chart installs by default (tests/tests/images.rs
# checks that they agree).
#
# Usage: scripts/build-images.sh [--push] [--dry-run] [--list] [--engine docker|podman]
#   --push      push both images after building them
#   --dry-run   print the commands instead of running them (no engine needed)
#   --list      print the two image references, one a line, and exit
#   --engine    the container engine; default: $ENGINE, else the first of docker and
#               podman that answers `<engine> info`
# Environment:
#   REGISTRY  default ghcr.io/entrepot-io
#   TAG       default the chart's appVersion (charts/entrepot/Chart.yaml)
#   PLATFORM  passed as --platform (e.g. linux/arm64); default: the engine's own
#   ENGINE    see --engine
#
# Written with bash builtins only (besides the engine, and git for the revision label
# when it is there), so that its tests can run it with a PATH of their choosing.
set -euo pipefail

ROOT="$(cd "${BASH_SOURCE[0]%/*}/.." && pwd)"
CHART="$ROOT/charts/entrepot/Chart.yaml"

# The comment block at the top of this file.
usage() {
    local line
    while IFS= read -r line; do
        [[ "$line" == "#!"* ]] && continue
        [[ "$line" == "#"* ]] || break
        line="${line#\#}"
        printf '%s\n' "${line# }"
    done <"${BASH_SOURCE[0]}"
}
say() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: ERROR: %s\n' "$*" >&2; exit 1; }

push=false
dry_run=false
list=false
engine="${ENGINE:-}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --push) push=true ;;
        --dry-run) dry_run=true ;;
        --list) list=true ;;
        --engine) [[ $# -ge 2 ]] || die "--engine needs a value: docker or podman"; engine="$2"; shift ;;
        --engine=*) engine="${1#--engine=}" ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done

# The chart's appVersion, read with builtins: `appVersion: "0.1.0"` or unquoted.
app_version() {
    local line re='^appVersion:[[:space:]]*["'\'']?([^"'\''[:space:]]+)'
    [[ -r "$CHART" ]] || die "cannot read $CHART"
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ $re ]]; then
            printf '%s\n' "${BASH_REMATCH[1]}"
            return
        fi
    done <"$CHART"
    die "no appVersion in $CHART"
}

REGISTRY="${REGISTRY:-ghcr.io/entrepot-io}"
REGISTRY="${REGISTRY%/}"
TAG="${TAG:-$(app_version)}"
RUNNER_IMAGE="$REGISTRY/entrepot:$TAG"
OPERATOR_IMAGE="$REGISTRY/entrepot-operator:$TAG"

if $list; then
    printf '%s\n' "$RUNNER_IMAGE" "$OPERATOR_IMAGE"
    exit 0
fi

# answers ENGINE: the engine is installed and `ENGINE info` works; otherwise sets
# $why to what went wrong. A docker client without a daemon does not answer.
why=""
answers() {
    local out
    if ! command -v "$1" >/dev/null 2>&1; then
        why="$1: not found on PATH"
        return 1
    fi
    if ! out="$("$1" info 2>&1)"; then
        # The last line of its complaint is usually the useful one.
        out="${out%$'\n'}"
        why="$1 is installed, but '$1 info' failed (${out##*$'\n'}): start its daemon or service, or check that you may use it"
        return 1
    fi
}

# The engine: the one named, or the first of docker and podman that answers.
if [[ -n "$engine" ]]; then
    $dry_run || answers "$engine" || die "$why"
else
    reasons=()
    for candidate in docker podman; do
        if answers "$candidate"; then engine="$candidate"; break; fi
        reasons+=("$why")
    done
    if [[ -z "$engine" ]]; then
        # A dry run only prints commands: name the usual engine.
        $dry_run && engine=docker
    fi
    if [[ -z "$engine" ]]; then
        printf 'build-images: ERROR: no usable container engine (docker or podman):\n' >&2
        printf '  %s\n' "${reasons[@]}" >&2
        printf '  Install docker or podman, or set ENGINE; --dry-run prints the commands without one.\n' >&2
        exit 1
    fi
fi

revision=unknown
if command -v git >/dev/null 2>&1; then
    revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
fi

run() {
    if $dry_run; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$@"
    fi
}

platform=()
[[ -n "${PLATFORM:-}" ]] && platform=(--platform "$PLATFORM")
# Cache mounts (RUN --mount=type=cache) need BuildKit; docker before 23.0 needs asking.
export DOCKER_BUILDKIT=1

for pair in "entrepot $RUNNER_IMAGE" "entrepot-operator $OPERATOR_IMAGE"; do
    target="${pair%% *}"
    image="${pair#* }"
    $dry_run || say "building $image (--target $target) with $engine"
    run "$engine" build "${platform[@]+"${platform[@]}"}" \
        --file "$ROOT/Dockerfile" --target "$target" --tag "$image" \
        --build-arg "VERSION=$TAG" --build-arg "REVISION=$revision" \
        "$ROOT"
done

if $push; then
    for image in "$RUNNER_IMAGE" "$OPERATOR_IMAGE"; do
        $dry_run || say "pushing $image"
        run "$engine" push "$image"
    done
fi

$dry_run || say "built $RUNNER_IMAGE and $OPERATOR_IMAGE$($push && echo ', pushed')"
