#!/usr/bin/env bash
# Checks the Helm chart offline, with Helm 3 and Helm 4, for every values file
# in charts/entrepot/ci/:
#   lint          helm lint --strict
#   validate      helm template --include-crds, then kubernetes-validate --strict
#                 against the oldest Kubernetes we support and the newest the
#                 schemas know; a kind without a schema counts as a failure.
#                 ServiceMonitor, PodMonitor and PrometheusRule (no schema in
#                 kubernetes-validate) are checked against the committed
#                 scripts/schemas/ instead
#                 (scripts/chart_custom_kinds.py), nothing else is exempt
#   rbac          no rule on Secrets, no wildcards, exactly the permissions the
#                 operator needs (scripts/chart_policy.py)
#   pod-security  the restricted Pod Security Standard (scripts/chart_policy.py)
#   operator      leader election flags and Lease Role, PodDisruptionBudget iff
#                 replicas > 1, runner defaults mounted, the operator's NATS
#                 credentials a mounted file, NetworkPolicy and ServiceMonitor
#                 wired to the operator (scripts/chart_policy.py)
#   argocd-health the Argo CD health script of the four kinds, run in Lua 5.1
#                 over status fixtures (scripts/test_argocd_health.py)
# then what given values must render (leader election on by default, a PDB iff
# replicas > 1, NetworkPolicy and ServiceMonitor when enabled, the NATS wiring
# when nats.* is set), and the
# negative cases: values with a typo or a wrong type, replicas without leader
# election, a cluster older than kubeVersion, must be refused; the policy
# scripts must refuse a bad role, a bad pod, a bad operator wiring and a bad
# ServiceMonitor (so their passes mean something).
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
    local helm="$1" values="$2" rendered="$WORK/rendered.yaml" out="$WORK/validate.yaml"
    render "$helm" "$values" "$rendered" || return 1
    # Kinds with a committed schema are checked here and left out of $out.
    "$PY" "$ROOT/scripts/chart_custom_kinds.py" "$rendered" "$out" || return 1
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

# facts_are HELM FACT... -- HELM_ARGS...: the rendering has every key=value FACT.
facts_are() {
    local helm="$1"; shift
    local want=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do want+=("$1"); shift; done
    shift
    local out="$WORK/facts.yaml" facts
    "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$OLDEST_KUBE.0" "$@" >"$out" || return 1
    facts="$("$PY" "$POLICY" facts "$out")" || return 1
    echo "$facts"
    local f missing=0
    for f in "${want[@]}"; do
        grep -qxF -- "$f" <<<"$facts" || { echo "missing: $f"; missing=1; }
    done
    return "$missing"
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
"$PY" -c 'import yaml, kubernetes_validate, jsonschema, lupa.lua51' 2>/dev/null \
    || missing+=(".tools/venv with PyYAML, jsonschema and lupa")
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
        check "$helm operator $v" policy operator "$helm" "$values"
    done
done

# --- what given values render ----------------------------------------------
for helm in "${HELMS[@]}"; do
    check "$helm default: 2 replicas, leader election, Lease named after the release, a PDB" facts_are "$helm" \
        replicas=2 leader-election=true lease-name=t-entrepot strategy=RollingUpdate pdb=true \
        runner-defaults=/etc/entrepot/runner-defaults.yaml networkpolicy=false servicemonitor=false \
        podmonitor=false prometheusrule=false dashboards=0 --
    check "$helm operator.replicas=1: no PDB" facts_are "$helm" replicas=1 pdb=false leader-election=true -- \
        --set operator.replicas=1
    check "$helm 1 replica without leader election: no PDB, Recreate" facts_are "$helm" \
        replicas=1 pdb=false leader-election=false strategy=Recreate -- \
        --set operator.replicas=1 --set operator.leaderElection.enabled=false
    check "$helm production: NetworkPolicy, ServiceMonitor, PodMonitor, alerts, 4 dashboards and a PDB" facts_are "$helm" \
        replicas=3 pdb=true networkpolicy=true servicemonitor=true podmonitor=true prometheusrule=true dashboards=4 \
        -- -f "$CHART/ci/production-values.yaml"
    check "$helm networkPolicy.enabled alone renders a NetworkPolicy" facts_are "$helm" networkpolicy=true -- \
        --set networkPolicy.enabled=true
    check "$helm NATS: runner defaults, the operator's credentials mounted, an egress rule" facts_are "$helm" \
        nats-url=nats://nats.nats:4222 nats-auth=ENTREPOT_NATS_CREDENTIALS_FILE nats-egress=true -- \
        --set nats.url=nats://nats.nats:4222 --set nats.operatorCredentialsSecret.name=nats-operator \
        --set nats.operatorCredentialsSecret.key=operator.creds --set networkPolicy.enabled=true
    check "$helm no NATS: no credentials, no egress rule" facts_are "$helm" nats-url= nats-auth=none nats-egress=false -- \
        --set networkPolicy.enabled=true
    check "$helm refuses both operator NATS credentials and token" expect_refused "at most one of nats.operatorCredentialsSecret" \
        "$helm" template "$RELEASE" "$CHART" --set nats.operatorCredentialsSecret.name=a \
        --set nats.operatorCredentialsSecret.key=b --set nats.operatorTokenSecret.name=c --set nats.operatorTokenSecret.key=d
    check "$helm refuses 2 replicas without leader election" expect_refused "needs operator.leaderElection.enabled" \
        "$helm" template "$RELEASE" "$CHART" --set operator.leaderElection.enabled=false
    check "$helm refuses a ServiceMonitor without the metrics Service" expect_refused "needs metrics.service.enabled" \
        "$helm" template "$RELEASE" "$CHART" --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false
done

# --- Argo CD health checks ------------------------------------------------
check "argocd health.lua (Lua 5.1) gives each status fixture its health" \
    "$PY" "$ROOT/scripts/test_argocd_health.py"
sed 's/return "Healthy", says(ready, "Ready")/return "Progressing", says(ready, "Ready")/' \
    "$CHART/argocd/health.lua" >"$WORK/health.lua"
check "the argocd health test fails for a script that is never Healthy" expect_refused "want Healthy" \
    env ENTREPOT_ARGOCD_HEALTH_SCRIPT="$WORK/health.lua" "$PY" "$ROOT/scripts/test_argocd_health.py"

# --- what must be refused -------------------------------------------------
for helm in "${HELMS[@]}"; do
    check "$helm schema refuses a misspelt top-level key" schema_refuses "$helm" replicas 'replicas: 2'
    check "$helm schema refuses a misspelt nested key" schema_refuses "$helm" tagg $'image:\n  tagg: "1.0"'
    check "$helm schema refuses a wrong type" schema_refuses "$helm" replicas $'operator:\n  replicas: two'
    check "$helm schema refuses a misspelt runner default" schema_refuses "$helm" storageClass \
        $'runner:\n  queue:\n    storageClass: fast'
    check "$helm schema refuses a misspelt NATS key" schema_refuses "$helm" urls $'nats:\n  urls: nats://n:4222'
    check "$helm schema refuses a NATS Secret without its key" expect_refused "nats|credentialsSecret|key" \
        "$helm" template "$RELEASE" "$CHART" --set nats.credentialsSecret.name=nats-runner
    check "$helm schema refuses a NATS URL with a password" expect_refused "url|pattern" \
        "$helm" template "$RELEASE" "$CHART" --set "nats.url=nats://u:p@nats:4222"
    check "$helm schema refuses a runbook base URL with an #anchor" expect_refused "runbookBaseUrl.*pattern" \
        "$helm" template "$RELEASE" "$CHART" --set "metrics.prometheusRules.runbookBaseUrl=https://wiki.example.com/runbooks#top"
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

# A role granting one permission more than the operator needs (pods/log), and
# one granting one less (no delete on statefulsets).
render "helm3" "$CHART/ci/default-values.yaml" "$WORK/good.yaml"
"$PY" - "$WORK/good.yaml" "$WORK/more-role.yaml" "$WORK/less-role.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") in ("ClusterRole", "Role")]
more = [dict(d) for d in docs]
more[0]["rules"] = more[0]["rules"] + [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
yaml.safe_dump_all(more, open(sys.argv[2], "w"))
less = [dict(d) for d in docs]
less[0]["rules"] = [dict(r, verbs=[v for v in r["verbs"] if v != "delete"]) if "statefulsets" in r["resources"] else r
                    for r in less[0]["rules"]]
yaml.safe_dump_all(less, open(sys.argv[3], "w"))
PY
check "policy refuses a role granting more than the operator needs" expect_refused "get on core/pods/log, which the operator does not need" \
    "$PY" "$POLICY" rbac "$WORK/more-role.yaml"
check "policy refuses a role granting less than the operator needs" expect_refused "delete on apps/statefulsets, which the operator needs" \
    "$PY" "$POLICY" rbac "$WORK/less-role.yaml"
# Two replicas, but the PDB and the leader election flag removed.
"$PY" - "$WORK/good.yaml" "$WORK/bad-operator.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") != "PodDisruptionBudget"]
for d in docs:
    if d.get("kind") == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["args"] = [a for a in c["args"] if a != "--leader-election"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
check "policy refuses 2 replicas without leader election or PDB" expect_refused "without --leader-election.*|need one PodDisruptionBudget" \
    "$PY" "$POLICY" operator "$WORK/bad-operator.yaml"
render "helm3" "$CHART/ci/production-values.yaml" "$WORK/prod.yaml"
# The operator's NATS credentials taken from a Secret into the environment instead of a mounted file.
"$PY" - "$WORK/prod.yaml" "$WORK/env-secret.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d.get("kind") == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        for e in c["env"]:
            if e["name"] == "ENTREPOT_NATS_CREDENTIALS_FILE":
                e.pop("value")
                e["valueFrom"] = {"secretKeyRef": {"name": "nats-entrepot-operator", "key": "operator.creds"}}
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
check "policy refuses the operator's NATS credentials as an env value" expect_refused "takes a Secret's value" \
    "$PY" "$POLICY" operator "$WORK/env-secret.yaml"
sed -e 's/^    - port: metrics$/    - port: metrics\n      intervall: 30s/' "$WORK/prod.yaml" >"$WORK/bad-sm.yaml"
check "custom-kinds refuses a ServiceMonitor with a misspelt field" expect_refused "intervall.*unexpected|Additional properties.*intervall" \
    "$PY" "$ROOT/scripts/chart_custom_kinds.py" "$WORK/bad-sm.yaml" "$WORK/rest.yaml"

# --- summary ----------------------------------------------------------------
if [[ $failed -gt 0 ]]; then
    echo
    echo "failed:"
    printf '  %s\n' "${failed_names[@]}"
fi
echo "chart: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
