#!/usr/bin/env bash
# Builds the real NATS server that the JetStream queue tests start (sim/src/nats.rs):
# unmodified upstream nats-server, from the Go module pinned in tests/nats/go.mod and
# go.sum, into .tools/bin/nats-server.
#
# Built rather than taken from Debian: Debian's nats-server is 2.9.10, end-of-life and
# without what the queue uses (multi-filter consumers came in 2.10, per-message TTL and
# batch direct get in 2.11); and only the package registries are reachable here, so the
# Go module proxy is where an upstream release comes from.
#
# Once per version: the binary is kept in a cache folder keyed by the hash of go.mod +
# go.sum + this script (default ~/.cache/entrepot/nats-server, or $ENTREPOT_NATS_CACHE),
# so a second checkout on the same machine copies it instead of building. A run with it
# in place takes well under a second.
#
# Needs: go (1.26, as tests/nats/go.mod says) and the Go module proxy.
# Prints the build time; docs/testing.md records cold and warm figures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE="$ROOT/tests/nats"
BIN="$ROOT/.tools/bin"
say() { printf 'build-nats-server: %s\n' "$*"; }

if ! command -v go >/dev/null 2>&1; then
    say "ERROR: go is not on PATH; the JetStream tests build nats-server from its Go module (Go 1.26 or newer)" >&2
    exit 1
fi

# The version, as go.mod pins it.
NATS_VERSION="$(awk '$1 == "github.com/nats-io/nats-server/v2" && $2 ~ /^v/ { print $2; exit }' "$MODULE/go.mod")"
if [[ -z "$NATS_VERSION" ]]; then
    say "ERROR: tests/nats/go.mod must require github.com/nats-io/nats-server/v2" >&2
    exit 1
fi

KEY="$(cat "$MODULE/go.mod" "$MODULE/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
CACHE="${ENTREPOT_NATS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/entrepot/nats-server}/$NATS_VERSION-$KEY"
STAMP="$BIN/.nats-server"

mkdir -p "$BIN"
# The stamp, not `nats-server --version`, says what is there: no process to start, and a
# change to go.sum or to this script (same version, other build) is seen too.
if [[ -x "$BIN/nats-server" && "$(cat "$STAMP" 2>/dev/null)" == "$KEY" ]]; then
    say "present   nats-server $NATS_VERSION in $BIN"
    exit 0
fi

if [[ ! -x "$CACHE/nats-server" ]]; then
    say "building nats-server $NATS_VERSION into $CACHE"
    start=$SECONDS
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    (
        cd "$MODULE"
        # -mod=readonly: go.sum is the lock; a missing entry is an error, not a download.
        # CGO_ENABLED=0 as upstream's release build (.goreleaser.yml): a static binary
        # that needs no C toolchain. The server's main package is the module's root.
        CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$scratch/nats-server" \
            github.com/nats-io/nats-server/v2
    )
    mkdir -p "$CACHE"
    mv -f "$scratch/nats-server" "$CACHE/nats-server"
    say "built in $((SECONDS - start)) s"
fi

# Copy, then rename: a test that is starting the old binary never sees half a file.
cp -f "$CACHE/nats-server" "$BIN/nats-server.new" && mv -f "$BIN/nats-server.new" "$BIN/nats-server"
# `nats-server --version` says "nats-server: v2.15.3". Checked before the stamp is
# written, so that a wrong binary is looked at again on the next run.
got="$("$BIN/nats-server" --version)"
if [[ "$got" != "nats-server: $NATS_VERSION" ]]; then
    say "ERROR: nats-server reports '$got', expected 'nats-server: $NATS_VERSION'" >&2
    exit 1
fi
printf '%s\n' "$KEY" > "$STAMP"
say "installed $got into $BIN"
