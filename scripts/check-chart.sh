#!/usr/bin/env bash
# Checks the Helm chart offline, with Helm 3 and Helm 4, for every values file
# in charts/entrepot/ci/:
#   lint          helm lint --strict
#   validate      helm template --include-crds, then kubernetes-validate --strict
#                 against the oldest Kubernetes we support and the newest the
#                 schemas know; a kind without a schema counts as a failure
#   rbac          no rule on Secrets, no wildcards (scripts/chart_policy.py)
#   pod-security  the restricted Pod Security Standard (scripts/chart_policy.py)
# and the negative cases: values with a typo or a wrong type, and a cluster
# older than kubeVersion, must be refused; the policy script must refuse a bad
# role and a bad pod (so its passes mean something).
#
# Runs every check, prints the output of the failed ones, and ends with
# "chart: N passed, M failed"; exits 1 if any failed.
# Tools come from scripts/install-tools.sh (.tools/bin).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ENTREPOT_CHART_DIR: check another copy of the chart (used to test this script).
CHART="${ENTREPOT_CHART_DIR:-$ROOT/charts/entrepot}"
TOOLS_BIN="$ROOT/.tools/bin"
export PATH="$TOOLS_BIN:$PATH"
PY="$ROOT/.tools/venv/bin/python"
POLICY="$ROOT/scripts/chart_policy.py"

HELMS=(helm3 helm4)
# Chart.yaml's kubeVersion floor, and the newest version the schemas cover.
OLDEST_KUBE="1.32"
NEWEST_KUBE="$("$PY" -c 'import kubernetes_validate.utils as u; print(u.major_minor(u.latest_version()))' 2>/dev/null || echo 1.32)"
RELEASE="t"
NAMESPACE="entrepot-system"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Keep helm away from the user's ~/.config, ~/.cache and repositories.
export HELM_CONFIG_HOME="$WORK/helm/config" HELM_CACHE_HOME="$WORK/helm/cache" HELM_DATA_HOME="$WORK/helm/data"

passed=0
failed=0
failed_names=()

# check NAME COMMAND...: runs COMMAND, output kept aside; shown only on failure.
check() {
    local name="$1"; shift
    local log="$WORK/log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      | /' "$log"
    fi
}

# expect_refused PATTERN COMMAND...: COMMAND must fail and say PATTERN (so it
# failed for the reason we mean, not another).
expect_refused() {
    local pattern="$1"; shift
    local out
    if out="$("$@" 2>&1)"; then
        echo "accepted, but should have been refused:"
        echo "$out" | head -n 20
        return 1
    fi
    if ! grep -qiE -- "$pattern" <<<"$out"; then
        echo "refused, but not with /$pattern/:"
        echo "$out"
        return 1
    fi
    echo "$out"
}

render() { # HELM VALUES OUT
    "$1" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$2" \
        --include-crds --kube-version "$OLDEST_KUBE.0" >"$3"
}

validate() { # HELM VALUES
    local helm="$1" values="$2" out="$WORK/validate.yaml"
    render "$helm" "$values" "$out" || return 1
    local docs crds report
    docs="$("$PY" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$out")" || return 1
    crds="$(grep -c '^kind: CustomResourceDefinition' "$out")"
    report="$(kubernetes-validate --strict -k "$OLDEST_KUBE" -k "$NEWEST_KUBE" "$out" 2>&1)"
    local rc=$?
    grep -v '^INFO' <<<"$report"  # the problems only
    echo "rendered $docs objects ($crds CRDs); kubernetes-validate exit $rc"
    [[ $rc -eq 0 ]] || return 1
    # A kind with no schema is only a warning to kubernetes-validate: here it
    # is a failure, since nothing was checked.
    if grep -q '^WARN' <<<"$report"; then echo "some objects have no schema"; return 1; fi
    local want=$((docs * 2)) got
    got="$(grep -c '^INFO .* passed for resource' <<<"$report")"
    if [[ "$docs" -eq 0 || "$got" -ne "$want" ]]; then
        echo "expected $want passes ($docs objects x 2 versions), got $got"
        return 1
    fi
    # CRD files in crds/ must reach the output (--include-crds) and be validated.
    local crd_files
    crd_files="$(find "$CHART/crds" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) | wc -l)"
    if [[ "$crd_files" -gt 0 && "$crds" -eq 0 ]]; then
        echo "crds/ has $crd_files files, but no CustomResourceDefinition was rendered"
        return 1
    fi
}

policy() { # CHECK HELM VALUES
    local out="$WORK/policy.yaml"
    render "$2" "$3" "$out" || return 1
    "$PY" "$POLICY" "$1" "$out"
}

schema_refuses() { # HELM KEY VALUES_YAML: rendering with these values must fail on KEY
    printf '%s\n' "$3" >"$WORK/bad-values.yaml"
    expect_refused "schema.*$2|$2.*not allowed|$2.*want|$2.*expected" \
        "$1" template "$RELEASE" "$CHART" -f "$WORK/bad-values.yaml"
}

# --- tools ---------------------------------------------------------------
missing=()
for tool in "${HELMS[@]}" kubernetes-validate; do
    [[ -x "$TOOLS_BIN/$tool" ]] || missing+=("$tool")
done
"$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null || missing+=(".tools/venv with PyYAML")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "missing: ${missing[*]} (run scripts/install-tools.sh)"
    echo "chart: 0 passed, 1 failed"
    exit 1
fi
echo "helm3 $(helm3 version --template '{{.Version}}'), helm4 $(helm4 version --template '{{.Version}}'), kubernetes-validate $(kubernetes-validate --version), Kubernetes $OLDEST_KUBE and $NEWEST_KUBE"
crd_count="$(find "$CHART/crds" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) | wc -l)"
echo "crds/: $crd_count CRD files"

# --- every values file, every helm ----------------------------------------
shopt -s nullglob
values_files=("$CHART"/ci/*.yaml)
if [[ ${#values_files[@]} -eq 0 ]]; then
    check "values files in charts/entrepot/ci/" false
fi
for values in "${values_files[@]}"; do
    v="$(basename "$values" .yaml)"
    for helm in "${HELMS[@]}"; do
        check "$helm lint $v" "$helm" lint --strict "$CHART" -f "$values"
        check "$helm validate $v" validate "$helm" "$values"
        check "$helm rbac $v" policy rbac "$helm" "$values"
        check "$helm pod-security $v" policy pod-security "$helm" "$values"
    done
done

# --- what must be refused -------------------------------------------------
for helm in "${HELMS[@]}"; do
    check "$helm schema refuses a misspelt top-level key" schema_refuses "$helm" replicas 'replicas: 2'
    check "$helm schema refuses a misspelt nested key" schema_refuses "$helm" tagg $'image:\n  tagg: "1.0"'
    check "$helm schema refuses a wrong type" schema_refuses "$helm" replicaCount 'replicaCount: two'
    check "$helm schema refuses a misspelt key in a list item" schema_refuses "$helm" vaule \
        $'extraEnv:\n  - name: RUST_LOG\n    vaule: debug'
    check "$helm refuses Kubernetes 1.31 (kubeVersion)" expect_refused "incompatible with Kubernetes" \
        "$helm" template "$RELEASE" "$CHART" --kube-version 1.31.0
done

cat >"$WORK/bad-role.yaml" <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reads-secrets}
rules:
  - apiGroups: [""]
    resources: ["configmaps", "secrets"]
    verbs: ["get", "list"]
EOF
check "policy refuses a role that reads Secrets" expect_refused "secrets" \
    "$PY" "$POLICY" rbac "$WORK/bad-role.yaml"
cat >"$WORK/bad-pod.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: root}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: x, securityContext: {runAsUser: 0}}]
EOF
check "policy refuses a pod running as root" expect_refused "UID 0" \
    "$PY" "$POLICY" pod-security "$WORK/bad-pod.yaml"

# --- summary ----------------------------------------------------------------
if [[ $failed -gt 0 ]]; then
    echo
    echo "failed:"
    printf '  %s\n' "${failed_names[@]}"
fi
echo "chart: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
