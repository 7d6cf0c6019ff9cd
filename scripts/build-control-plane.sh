#!/usr/bin/env bash
# Builds the real Kubernetes control plane that the cluster tests start (tests/cluster/):
# unmodified upstream etcd, kube-apiserver, kube-controller-manager and kubectl, from the
# Go modules pinned in tests/cluster/go.mod and go.sum, into .tools/bin.
#
# Once per version: the binaries are kept in a cache folder keyed by the hash of
# go.mod + go.sum (default ~/.cache/entrepot/control-plane, or $ENTREPOT_CONTROL_PLANE_CACHE),
# so a second checkout on the same machine copies them instead of building. A run with
# everything in place takes well under a second.
#
# Needs: go (1.26, as tests/cluster/go.mod says) and the Go module proxy.
# Prints the build time; docs/testing.md records cold and warm figures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE="$ROOT/tests/cluster"
BIN="$ROOT/.tools/bin"
say() { printf 'build-control-plane: %s\n' "$*"; }

if ! command -v go >/dev/null 2>&1; then
    say "ERROR: go is not on PATH; the cluster tests build the control plane from Go modules (Go 1.26 or newer)" >&2
    exit 1
fi

# The versions, as go.mod pins them.
module_version() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$MODULE/go.mod"; }
KUBE_VERSION="$(module_version k8s.io/kubernetes)"
ETCD_VERSION="$(module_version go.etcd.io/etcd/server/v3)"
if [[ -z "$KUBE_VERSION" || -z "$ETCD_VERSION" ]]; then
    say "ERROR: tests/cluster/go.mod must require k8s.io/kubernetes and go.etcd.io/etcd/server/v3" >&2
    exit 1
fi
KUBE_MINOR="${KUBE_VERSION#v1.}"
KUBE_MINOR="${KUBE_MINOR%%.*}"

KEY="$(cat "$MODULE/go.mod" "$MODULE/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
CACHE="${ENTREPOT_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/entrepot/control-plane}/$KUBE_VERSION-$ETCD_VERSION-$KEY"
BINARIES=(etcd kube-apiserver kube-controller-manager kubectl)
STAMP="$BIN/.control-plane"

have_all() { local b; for b in "${BINARIES[@]}"; do [[ -x "$1/$b" ]] || return 1; done; }

mkdir -p "$BIN"
if have_all "$BIN" && [[ "$(cat "$STAMP" 2>/dev/null)" == "$KEY" ]]; then
    say "present   kubernetes $KUBE_VERSION, etcd $ETCD_VERSION in $BIN"
    exit 0
fi

if ! have_all "$CACHE"; then
    say "building kubernetes $KUBE_VERSION (kube-apiserver, kube-controller-manager, kubectl) and etcd $ETCD_VERSION into $CACHE"
    start=$SECONDS
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    # -X sets what `--version` and /version report; upstream's own build (hack/lib/version.sh)
    # sets the same variables.
    pkg=k8s.io/component-base/version
    ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    (
        cd "$MODULE"
        # -mod=readonly: go.sum is the lock; a missing entry is an error, not a download.
        go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$scratch/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kubectl
        # etcd's main package is the server module's root, so go names the binary "server".
        go build -mod=readonly -trimpath -ldflags "-s -w" -o "$scratch/etcd" go.etcd.io/etcd/server/v3
    )
    mkdir -p "$CACHE"
    for b in "${BINARIES[@]}"; do mv -f "$scratch/$b" "$CACHE/$b"; done
    say "built in $((SECONDS - start)) s"
fi

for b in "${BINARIES[@]}"; do
    cp -f "$CACHE/$b" "$BIN/$b.new" && mv -f "$BIN/$b.new" "$BIN/$b"
done
printf '%s\n' "$KEY" > "$STAMP"
got="$("$BIN/kube-apiserver" --version)"
if [[ "$got" != "Kubernetes $KUBE_VERSION" ]]; then
    say "ERROR: kube-apiserver reports '$got', expected 'Kubernetes $KUBE_VERSION'" >&2
    exit 1
fi
say "installed $got, $("$BIN/etcd" --version | head -n1) into $BIN"
