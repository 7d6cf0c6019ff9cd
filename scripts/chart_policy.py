#!/usr/bin/env python3
"""Policy checks on the manifests the chart renders (`helm template` output).

    chart_policy.py rbac FILE          least-privilege RBAC
    chart_policy.py pod-security FILE  the "restricted" Pod Security Standard
    chart_policy.py operator FILE      the operator's wiring: leader election,
                                       PodDisruptionBudget, runner defaults,
                                       its own NATS credentials (a mounted
                                       Secret file, never an env value),
                                       NetworkPolicy, ServiceMonitor
    chart_policy.py facts FILE         prints key=value facts of the rendering
                                       (replicas, leader-election, pdb, ...) for
                                       check-chart.sh to assert on

Each check prints what it checked, one line per problem, and exits 1 on any
problem. Needs PyYAML (the .tools/venv python has it).

rbac: no Role or ClusterRole rule may grant more than `create` on Secrets (the
operator creates each flow's admin token once and never reads a Secret: runner
pods mount the Secrets they reference), use a wildcard
resource, verb or API group, or grant escalate/bind/impersonate; no
ClusterRole may aggregate others (its rules would come from outside the
chart); every binding must point at a role the chart itself renders (so no
binding to cluster-admin, admin or edit slips past the rule check). And the
rules must grant exactly what the operator needs (OPERATOR_NEEDS, plus the
Lease verbs when leader election is on), no more and no less: a permission
added to the chart must be added here too, on purpose. The on-call ClusterRole
(for people, bound by the user, never by the chart) is held to ONCALL_NEEDS the same way.
"""

import os
import sys

import yaml

RBAC_KINDS = {"Role", "ClusterRole"}
BINDING_KINDS = {"RoleBinding", "ClusterRoleBinding"}
DANGEROUS_VERBS = {"escalate", "bind", "impersonate"}

ENTREPOT_KINDS = ("connectors", "mappings", "syncflows", "reconcileschedules")
READ = ("get", "list", "watch")
MANAGE = READ + ("create", "patch", "update", "delete")


def grants(group, resources, verbs):
    return {(group, r, v) for r in resources for v in verbs}


# What the operator's (Cluster)Role must grant, as (apiGroup, resource, verb).
OPERATOR_NEEDS = (
    grants("entrepot.io", ENTREPOT_KINDS, READ + ("patch", "update"))
    | grants("entrepot.io", [k + "/status" for k in ENTREPOT_KINDS], ("get", "patch", "update"))
    | grants("entrepot.io", [k + "/finalizers" for k in ENTREPOT_KINDS], ("update",))
    | grants("", ("configmaps", "services", "persistentvolumeclaims"), MANAGE)
    | grants("", ("pods",), READ)
    | grants("apps", ("deployments", "statefulsets"), MANAGE)
    | grants("batch", ("cronjobs",), MANAGE)
    | grants("batch", ("jobs",), READ)
    | grants("policy", ("poddisruptionbudgets",), MANAGE)
    | grants("", ("secrets",), ("create",))
    | grants("networking.k8s.io", ("networkpolicies",), MANAGE)
    | grants("", ("events",), ("create", "patch"))
    | grants("events.k8s.io", ("events",), ("create", "patch"))
)
# What the on-call ClusterRole (label entrepot.io/role: oncall) must grant:
# reading flows, dead letters and the audit trail, replaying and discarding, through the
# runner pods' proxy. Never Secrets: the runner checks the user's own token.
ONCALL_NEEDS = (
    grants("entrepot.io", ENTREPOT_KINDS, READ)
    | grants("entrepot.io", ("syncflows/deadletters", "syncflows/audit"), ("get",))
    | grants("entrepot.io", ("syncflows/deadletters",), ("update",))
    | grants("", ("pods",), ("get", "list"))
    | grants("", ("pods/proxy",), ("get", "create"))
)
# Leader election, in a Role of the release namespace only.
LEASE_NEEDS = grants("coordination.k8s.io", ("leases",), ("get", "create", "update", "patch"))


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
        if r.split("/")[0] == "secrets" and (r != "secrets" or set(verbs) - {"create"}):
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


def is_oncall(role):
    return ((role.get("metadata") or {}).get("labels") or {}).get("entrepot.io/role") == "oncall"


def check_rbac(docs):
    problems = []
    all_roles = [d for d in docs if d.get("kind") in RBAC_KINDS]
    oncall = [d for d in all_roles if is_oncall(d)]
    roles = [d for d in all_roles if not is_oncall(d)]
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
    problems += exact_grant_problems(roles)
    problems += oncall_problems(oncall)
    oncall_refs = {(d["kind"], (d.get("metadata") or {}).get("name")) for d in oncall}
    for binding in (d for d in docs if d.get("kind") in BINDING_KINDS):
        ref = binding.get("roleRef") or {}
        if (ref.get("kind"), ref.get("name")) in oncall_refs:
            problems.append(f"{name_of(binding)}: binds the on-call role, which only users bind")
            continue
        if (ref.get("kind"), ref.get("name")) not in rendered:
            problems.append(
                f"{name_of(binding)}: roleRef {ref.get('kind')}/{ref.get('name')} is not a role this chart renders")
    return f"{len(roles)} roles, {rules} rules", problems


def oncall_problems(roles):
    """The on-call ClusterRole grants exactly ONCALL_NEEDS, and the chart binds it to nobody."""
    problems = []
    for role in roles:
        for i, rule in enumerate(role.get("rules") or []):
            for p in rule_problems(rule):
                problems.append(f"{name_of(role)} rule {i}: {p}")
        granted = role_grants(role)
        for group, resource, verb in sorted(granted - ONCALL_NEEDS):
            problems.append(f"{name_of(role)} grants {verb} on {group or 'core'}/{resource}, beyond what on-call needs")
        for group, resource, verb in sorted(ONCALL_NEEDS - granted):
            problems.append(f"{name_of(role)} does not grant {verb} on {group or 'core'}/{resource}, which on-call needs")
    return problems


def role_grants(role):
    out = set()
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            out |= grants(group, rule.get("resources") or [], rule.get("verbs") or [])
    return out


def exact_grant_problems(roles):
    """The roles grant OPERATOR_NEEDS (and LEASE_NEEDS, or nothing on leases), exactly."""
    if not roles:
        return []
    problems = []
    granted, lease_granted = set(), set()
    for role in roles:
        for g in role_grants(role):
            if g[0] == "coordination.k8s.io":
                lease_granted.add(g)
                if role["kind"] != "Role":
                    problems.append(f"{name_of(role)}: Lease access must be a Role in the release namespace, not a {role['kind']}")
            else:
                granted.add(g)
    for group, resource, verb in sorted(granted - OPERATOR_NEEDS):
        problems.append(f"grants {verb} on {group or 'core'}/{resource}, which the operator does not need")
    for group, resource, verb in sorted(OPERATOR_NEEDS - granted):
        problems.append(f"does not grant {verb} on {group or 'core'}/{resource}, which the operator needs")
    if lease_granted and lease_granted != LEASE_NEEDS:
        extra = sorted(v for _, _, v in lease_granted - LEASE_NEEDS)
        missing = sorted(v for _, _, v in LEASE_NEEDS - lease_granted)
        problems.append(f"Lease verbs: extra {extra}, missing {missing} (want exactly get, create, update, patch)")
    return problems


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


def operator_deployment(docs):
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        return None, None, [f"expected one Deployment (the operator), found {len(deployments)}"]
    deployment = deployments[0]
    pod = ((deployment.get("spec") or {}).get("template") or {})
    container = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == "operator"), None)
    if container is None:
        return deployment, None, [f"{name_of(deployment)}: no container named operator"]
    return deployment, container, []


def flag_value(args, flag):
    """The value after `flag` in args (`--flag VALUE` or `--flag=VALUE`), None if absent."""
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def selects(selector, labels):
    wanted = (selector or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def facts_of(docs):
    deployment, container, problems = operator_deployment(docs)
    if container is None:
        return {}, deployment, container, problems
    spec = deployment.get("spec") or {}
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    args = [str(a) for a in container.get("args") or []]
    kinds = [d.get("kind") for d in docs]
    facts = {
        "replicas": spec.get("replicas", 1),
        "leader-election": "--leader-election" in args,
        "lease-name": flag_value(args, "--lease-name"),
        "runner-defaults": flag_value(args, "--runner-defaults"),
        "strategy": (spec.get("strategy") or {}).get("type"),
        "pdb": any(d.get("kind") == "PodDisruptionBudget" and selects((d.get("spec") or {}).get("selector"), pod_labels)
                   for d in docs),
        "networkpolicy": "NetworkPolicy" in kinds,
        "servicemonitor": "ServiceMonitor" in kinds,
        "podmonitor": "PodMonitor" in kinds,
        "prometheusrule": "PrometheusRule" in kinds,
        "dashboards": sum(1 for d in docs if d.get("kind") == "ConfigMap"
                          and ((d.get("metadata") or {}).get("labels") or {}).get("grafana_dashboard") == "1"),
        "cluster-role": "ClusterRole" in kinds,
        "nats-url": runner_defaults_of(docs, args).get("nats", {}).get("url", ""),
        "nats-auth": next((n for n in NATS_AUTH_ENVS if any(e.get("name") == n for e in container.get("env") or [])),
                          "none"),
        # An egress rule to NATS' client port (the chart's default, 4222).
        "nats-egress": any(p.get("port") == 4222 for d in docs if d.get("kind") == "NetworkPolicy"
                           for r in (d.get("spec") or {}).get("egress") or [] for p in r.get("ports") or []),
    }
    return facts, deployment, container, problems


def runner_defaults_of(docs, args):
    """The runner defaults file the operator reads, parsed; {} when it cannot be found."""
    path = flag_value(args, "--runner-defaults") or ""
    key = os.path.basename(path)
    for d in docs:
        if d.get("kind") == "ConfigMap" and key in (d.get("data") or {}):
            return yaml.safe_load(d["data"][key]) or {}
    return {}


def env_field_ref(container, name):
    for env in container.get("env") or []:
        if env.get("name") == name:
            return (((env.get("valueFrom") or {}).get("fieldRef")) or {}).get("fieldPath")
    return None


def check_operator(docs):
    facts, deployment, container, problems = facts_of(docs)
    if container is None:
        return "nothing", problems
    where = name_of(deployment)
    namespace = (deployment.get("metadata") or {}).get("namespace")
    pod = (deployment.get("spec") or {}).get("template") or {}
    pod_labels = (pod.get("metadata") or {}).get("labels") or {}
    pod_spec = pod.get("spec") or {}
    replicas = facts["replicas"]

    # Leader election.
    if replicas > 1 and not facts["leader-election"]:
        problems.append(f"{where}: {replicas} replicas without --leader-election: every replica would reconcile")
    if facts["leader-election"]:
        if not facts["lease-name"]:
            problems.append(f"{where}: --leader-election without --lease-name NAME")
        for env, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            if env_field_ref(container, env) != path:
                problems.append(f"{where}: env {env} must come from the downward API fieldRef {path}")
        if any(d.get("kind") in RBAC_KINDS for d in docs):
            problems += lease_role_problems(docs, namespace, facts["lease-name"], pod_spec.get("serviceAccountName"))
    elif facts["strategy"] != "Recreate":
        problems.append(f"{where}: without leader election the strategy must be Recreate, not {facts['strategy']}")

    # PodDisruptionBudget: only with more than one replica, and then minAvailable 1.
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"
            and selects((d.get("spec") or {}).get("selector"), pod_labels)]
    if replicas > 1 and len(pdbs) != 1:
        problems.append(f"{where}: {replicas} replicas need one PodDisruptionBudget selecting them, found {len(pdbs)}")
    if replicas <= 1 and pdbs:
        problems.append(f"{where}: {replicas} replica(s) with a PodDisruptionBudget would block every node drain")
    for pdb in pdbs:
        if (pdb.get("spec") or {}).get("minAvailable") != 1:
            problems.append(f"{name_of(pdb)}: minAvailable must be 1")

    problems += runner_defaults_problems(docs, where, facts["runner-defaults"], container, pod_spec, pod_labels)
    problems += nats_auth_problems(where, container, pod_spec)
    problems += network_policy_problems(docs, pod_labels)
    problems += service_monitor_problems(docs)
    return f"{where} with {replicas} replicas", problems


def lease_role_problems(docs, namespace, lease, service_account):
    problems = []
    roles = {(d.get("metadata") or {}).get("name"): d for d in docs
             if d.get("kind") == "Role" and (d.get("metadata") or {}).get("namespace") == namespace
             and any("leases" in (r.get("resources") or []) for r in d.get("rules") or [])}
    if not roles:
        return [f"no Role on leases in the release namespace {namespace}"]
    for name, role in roles.items():
        for rule in role.get("rules") or []:
            verbs = set(rule.get("verbs") or []) - {"create"}
            if verbs and rule.get("resourceNames") != [lease]:
                problems.append(f"{name_of(role)}: {sorted(verbs)} on leases must be limited to resourceNames [{lease}]")
        bound = any(d.get("kind") == "RoleBinding" and (d.get("roleRef") or {}).get("name") == name
                    and any(s.get("name") == service_account for s in d.get("subjects") or [])
                    for d in docs)
        if not bound:
            problems.append(f"{name_of(role)}: not bound to the operator's ServiceAccount {service_account}")
    return problems


# The top-level keys of the operator's RunnerDefaults (operator/src/sync_flow/defaults.rs);
# a test there fails when this set and the struct disagree.
RUNNER_DEFAULT_KEYS = {"image", "imagePullPolicy", "resources", "queue", "networkPolicy", "nats", "otlpEndpoint"}
NATS_AUTH_ENVS = ("ENTREPOT_NATS_CREDENTIALS_FILE", "ENTREPOT_NATS_TOKEN_FILE")


def runner_defaults_problems(docs, where, path, container, pod_spec, pod_labels):
    if not path:
        return [f"{where}: no --runner-defaults FILE"]
    directory, key = os.path.dirname(path), os.path.basename(path)
    mount = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == directory), None)
    if mount is None:
        return [f"{where}: nothing mounted at {directory} for --runner-defaults {path}"]
    volume = next((v for v in pod_spec.get("volumes") or [] if v.get("name") == mount.get("name")), {})
    cm_name = (volume.get("configMap") or {}).get("name")
    cm = next((d for d in docs if d.get("kind") == "ConfigMap" and (d.get("metadata") or {}).get("name") == cm_name), None)
    if cm is None or key not in (cm.get("data") or {}):
        return [f"{where}: {path} is not a key {key} of a ConfigMap the chart renders (volume {mount.get('name')})"]
    defaults = yaml.safe_load(cm["data"][key]) or {}
    problems = []
    if not isinstance(defaults.get("image"), str) or not defaults["image"]:
        problems.append(f"{name_of(cm)}: {key} has no image")
    for unknown in sorted(set(defaults) - RUNNER_DEFAULT_KEYS):
        problems.append(f"{name_of(cm)}: {key} has unknown key {unknown}")
    for unknown in sorted(set(defaults.get("queue") or {}) - {"storageClassName", "size"}):
        problems.append(f"{name_of(cm)}: {key} has unknown key queue.{unknown}")
    for unknown in sorted(set(defaults.get("resources") or {}) - {"requests", "limits"}):
        problems.append(f"{name_of(cm)}: {key} has unknown key resources.{unknown}")
    nats = defaults.get("nats") or {}
    for unknown in sorted(set(nats) - {"url", "replicas", "credentialsSecret"}):
        problems.append(f"{name_of(cm)}: {key} has unknown key nats.{unknown}")
    if "@" in str(nats.get("url") or ""):
        problems.append(f"{name_of(cm)}: {key} nats.url carries credentials")
    secret = nats.get("credentialsSecret")
    if secret is not None and set(secret) != {"name", "key"}:
        problems.append(f"{name_of(cm)}: {key} nats.credentialsSecret must be exactly {{name, key}}, is {secret}")
    policy = defaults.get("networkPolicy") or {}
    for unknown in sorted(set(policy) - {"enabled", "operator", "webhookFrom", "adminFrom"}):
        problems.append(f"{name_of(cm)}: {key} has unknown key networkPolicy.{unknown}")
    # The runners' admin port admits the operator's pods: the peer must select them.
    operator_labels = (((policy.get("operator") or {}).get("podSelector") or {}).get("matchLabels")) or {}
    if policy.get("enabled") and not operator_labels:
        problems.append(f"{name_of(cm)}: {key} networkPolicy.operator selects no operator pods")
    elif any((pod_labels or {}).get(k) != v for k, v in operator_labels.items()):
        problems.append(f"{name_of(cm)}: {key} networkPolicy.operator does not select the operator's pods")
    return problems


def nats_auth_problems(where, container, pod_spec):
    """The operator's own NATS credentials: a file of a mounted Secret volume, named by
    its env variable; never a Secret's value in the environment."""
    problems = []
    envs = {e.get("name"): e for e in container.get("env") or []}
    for env in container.get("env") or []:
        if (env.get("valueFrom") or {}).get("secretKeyRef"):
            problems.append(f"{where}: env {env.get('name')} takes a Secret's value; mount it as a file instead")
    named = [n for n in NATS_AUTH_ENVS if n in envs]
    if len(named) > 1:
        problems.append(f"{where}: both {named[0]} and {named[1]} are set; the operator takes one")
    for name in named:
        path = str(envs[name].get("value") or "")
        directory, file = os.path.dirname(path), os.path.basename(path)
        mount = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == directory), None)
        volume = next((v for v in pod_spec.get("volumes") or [] if mount and v.get("name") == mount.get("name")), {})
        items = [i.get("path") for i in (volume.get("secret") or {}).get("items") or []]
        if mount is None or file not in items:
            problems.append(f"{where}: {name}={path} is not a file of a mounted Secret volume")
        elif not mount.get("readOnly"):
            problems.append(f"{where}: the NATS credentials at {directory} are not mounted read-only")
    return problems


def network_policy_problems(docs, pod_labels):
    problems = []
    for np in (d for d in docs if d.get("kind") == "NetworkPolicy"):
        spec = np.get("spec") or {}
        at = name_of(np)
        if not selects(spec.get("podSelector"), pod_labels):
            problems.append(f"{at}: podSelector does not select the operator pods")
        if sorted(spec.get("policyTypes") or []) != ["Egress", "Ingress"]:
            problems.append(f"{at}: policyTypes must be Ingress and Egress")
        ingress_ports = [p.get("port") for r in spec.get("ingress") or [] for p in r.get("ports") or []]
        if ingress_ports != ["metrics"]:
            problems.append(f"{at}: ingress must open the metrics port only, opens {ingress_ports}")
        egress = spec.get("egress") or []
        ports = {(p.get("protocol", "TCP"), p.get("port")) for r in egress for p in r.get("ports") or []}
        if not {("UDP", 53), ("TCP", 53)} <= ports:
            problems.append(f"{at}: egress does not allow DNS (53/UDP and 53/TCP)")
        if not any(r.get("to") and all("ipBlock" in t for t in r["to"]) for r in egress):
            problems.append(f"{at}: egress has no rule to the Kubernetes API (ipBlock)")
        runner = {"app.kubernetes.io/managed-by": "entrepot-operator"}
        if not any(((t.get("podSelector") or {}).get("matchLabels") or {}) == runner
                   for r in egress for t in r.get("to") or []):
            problems.append(f"{at}: egress has no rule to the runner pods (app.kubernetes.io/managed-by: entrepot-operator)")
        if any(not r.get("ports") for r in egress):
            problems.append(f"{at}: an egress rule without ports opens every port")
    return problems


def service_monitor_problems(docs):
    problems = []
    services = [d for d in docs if d.get("kind") == "Service"]
    for sm in (d for d in docs if d.get("kind") == "ServiceMonitor"):
        spec = sm.get("spec") or {}
        targets = [s for s in services if selects(spec.get("selector"), (s.get("metadata") or {}).get("labels") or {})]
        if len(targets) != 1:
            problems.append(f"{name_of(sm)}: selects {len(targets)} Services, want the metrics Service only")
            continue
        port_names = {p.get("name") for p in (targets[0].get("spec") or {}).get("ports") or []}
        for ep in spec.get("endpoints") or []:
            if ep.get("port") not in port_names:
                problems.append(f"{name_of(sm)}: endpoint port {ep.get('port')!r} is not a port of {name_of(targets[0])}")
    return problems


def print_facts(docs):
    facts, _, _, problems = facts_of(docs)
    for key, value in facts.items():
        print(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return "facts", problems


CHECKS = {"rbac": check_rbac, "pod-security": check_pod_security, "operator": check_operator}


def main(argv):
    if len(argv) == 3 and argv[1] == "facts":
        _, problems = print_facts(load(argv[2]))
        for p in problems:
            print(f"facts: {argv[2]}: {p}", file=sys.stderr)
        return 1 if problems else 0
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
