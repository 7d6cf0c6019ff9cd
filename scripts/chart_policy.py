#!/usr/bin/env python3
"""Policy checks on the manifests the chart renders (`helm template` output).

    chart_policy.py rbac FILE          least-privilege RBAC
    chart_policy.py pod-security FILE  the "restricted" Pod Security Standard

Each prints what it checked, one line per problem, and exits 1 on any problem.
Needs PyYAML (the .tools/venv python has it).

rbac: no Role or ClusterRole rule may touch Secrets (the operator never reads
them: runner pods get secret values through secretKeyRef), use a wildcard
resource, verb or API group, or grant escalate/bind/impersonate; no
ClusterRole may aggregate others (its rules would come from outside the
chart); every binding must point at a role the chart itself renders (so no
binding to cluster-admin, admin or edit slips past the rule check).
"""

import sys

import yaml

RBAC_KINDS = {"Role", "ClusterRole"}
BINDING_KINDS = {"RoleBinding", "ClusterRoleBinding"}
DANGEROUS_VERBS = {"escalate", "bind", "impersonate"}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(doc):
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def rule_problems(rule):
    problems = []
    resources = [str(r).lower() for r in rule.get("resources") or []]
    verbs = [str(v).lower() for v in rule.get("verbs") or []]
    groups = [str(g) for g in rule.get("apiGroups") or []]
    for r in resources:
        if r == "*" or r.startswith("*/"):
            problems.append(f"wildcard resource {r!r}")
        if r.split("/")[0] == "secrets":
            problems.append(f"grants {verbs} on {r!r}")
    if "*" in verbs:
        problems.append("wildcard verb '*'")
    for v in sorted(DANGEROUS_VERBS.intersection(verbs)):
        problems.append(f"privilege-escalating verb {v!r}")
    if "*" in groups:
        problems.append("wildcard apiGroup '*'")
    for url in rule.get("nonResourceURLs") or []:
        if "*" in str(url):
            problems.append(f"wildcard nonResourceURL {url!r}")
    return problems


def check_rbac(docs):
    problems = []
    roles = [d for d in docs if d.get("kind") in RBAC_KINDS]
    if not roles:
        problems.append("no Role or ClusterRole rendered: nothing to check")
    rendered = {(d["kind"], (d.get("metadata") or {}).get("name")) for d in roles}
    rules = 0
    for role in roles:
        if role.get("aggregationRule"):
            problems.append(f"{name_of(role)}: aggregationRule pulls in rules from outside the chart")
        for i, rule in enumerate(role.get("rules") or []):
            rules += 1
            for p in rule_problems(rule):
                problems.append(f"{name_of(role)} rule {i}: {p}")
    for binding in (d for d in docs if d.get("kind") in BINDING_KINDS):
        ref = binding.get("roleRef") or {}
        if (ref.get("kind"), ref.get("name")) not in rendered:
            problems.append(
                f"{name_of(binding)}: roleRef {ref.get('kind')}/{ref.get('name')} is not a role this chart renders")
    return f"{len(roles)} roles, {rules} rules", problems


def pod_specs(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield (spec.get("template") or {}).get("spec") or {}
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield (job.get("template") or {}).get("spec") or {}
    elif kind == "Pod":
        yield spec


def check_pod_security(docs):
    problems = []
    containers_checked = 0
    for doc in docs:
        for pod in pod_specs(doc):
            where = name_of(doc)
            psc = pod.get("securityContext") or {}
            for host in ("hostNetwork", "hostPID", "hostIPC"):
                if pod.get(host):
                    problems.append(f"{where}: {host} is set")
            for vol in pod.get("volumes") or []:
                if "hostPath" in vol:
                    problems.append(f"{where}: volume {vol.get('name')} is a hostPath")
            if psc.get("runAsUser") == 0:
                problems.append(f"{where}: pod runs as UID 0")
            containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
            for c in containers:
                containers_checked += 1
                at = f"{where} container {c.get('name')}"
                csc = c.get("securityContext") or {}
                if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                    problems.append(f"{at}: runAsNonRoot is not true")
                if csc.get("runAsUser") == 0:
                    problems.append(f"{at}: runs as UID 0")
                seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
                if seccomp not in ("RuntimeDefault", "Localhost"):
                    problems.append(f"{at}: seccompProfile is {seccomp!r}, not RuntimeDefault")
                if csc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{at}: allowPrivilegeEscalation is not false")
                if csc.get("privileged"):
                    problems.append(f"{at}: privileged")
                if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{at}: capabilities do not drop ALL")
                added = set((csc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
                if added:
                    problems.append(f"{at}: adds capabilities {sorted(added)}")
                if csc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{at}: readOnlyRootFilesystem is not true")
    if containers_checked == 0:
        problems.append("no pod template rendered: nothing to check")
    return f"{containers_checked} containers", problems


CHECKS = {"rbac": check_rbac, "pod-security": check_pod_security}


def main(argv):
    if len(argv) != 3 or argv[1] not in CHECKS:
        print(__doc__, file=sys.stderr)
        return 2
    what, problems = CHECKS[argv[1]](load(argv[2]))
    for p in problems:
        print(f"{argv[1]}: {argv[2]}: {p}")
    print(f"{argv[1]}: checked {what}: {'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
