#!/usr/bin/env python3
"""Runs the Argo CD health script of the Entrepot kinds in a real Lua 5.1.

    test_argocd_health.py

Argo CD evaluates health scripts with gopher-lua, a Lua 5.1; lupa (PyPI, in
.tools/venv) carries the reference Lua 5.1 interpreter. For each fixture of
scripts/argocd_health_fixtures.yaml the script charts/entrepot/argocd/health.lua
gets the object as `obj`, and must return the wanted status (and message
part). Also checked: every reason the script decides on, and every reason of
the SyncFlow fixtures, is one the Rust code sets; each argocd-cm key of
charts/entrepot/argocd/argocd-cm.yaml carries the script unchanged.
Prints one line per fixture and exits 1 on any failure.
"""

import os
import pathlib
import re
import sys

import yaml
from lupa import lua51

ROOT = pathlib.Path(__file__).resolve().parent.parent
# ENTREPOT_ARGOCD_HEALTH_SCRIPT: test another script (check-chart.sh's negative case).
SCRIPT = pathlib.Path(os.environ.get("ENTREPOT_ARGOCD_HEALTH_SCRIPT", ROOT / "charts/entrepot/argocd/health.lua"))
ARGOCD_CM = ROOT / "charts/entrepot/argocd/argocd-cm.yaml"
FIXTURES = ROOT / "scripts/argocd_health_fixtures.yaml"
KINDS = ("Connector", "Mapping", "SyncFlow", "ReconcileSchedule")


def health(source, obj):
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert lua.eval("_VERSION") == "Lua 5.1"
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(source)
    return result["status"], result["message"]


def rust_string_literals():
    found = set()
    for path in list((ROOT / "operator/src").rglob("*.rs")) + list((ROOT / "runner/src").rglob("*.rs")):
        found.update(re.findall(r'"([A-Z][A-Za-z]+)"', path.read_text()))
    return found


def main():
    source = SCRIPT.read_text()
    failures = []
    for fixture in yaml.safe_load(FIXTURES.read_text()):
        status, message = health(source, fixture["obj"])
        ok = status == fixture["want"] and fixture.get("message", "") in (message or "")
        print(f"{'ok  ' if ok else 'FAIL'}  {fixture['obj']['kind']}: {fixture['name']}: {status} ({message})")
        if not ok:
            failures.append(f"{fixture['name']}: want {fixture['want']} {fixture.get('message', '')!r}, got {status} {message!r}")
    for kind in KINDS:
        if not any(f["obj"]["kind"] == kind for f in yaml.safe_load(FIXTURES.read_text())):
            failures.append(f"no fixture of kind {kind}")

    # The reasons the script matches on, and those of the SyncFlow fixtures (whose
    # status code exists), must be reasons the operator really writes.
    rust = rust_string_literals()
    terminal = re.search(r"local terminal = \{(.*?)\n\}", source, re.S).group(1)
    reasons = set(re.findall(r"(\w+) = true", terminal))
    for fixture in yaml.safe_load(FIXTURES.read_text()):
        if fixture["obj"]["kind"] == "SyncFlow":
            reasons.update(c["reason"] for c in (fixture["obj"].get("status") or {}).get("conditions") or [])
    for reason in sorted(reasons - rust):
        failures.append(f"reason {reason} is in the script or a SyncFlow fixture, but no Rust code sets it")

    # argocd-cm: one key per kind, each the script itself.
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    for kind in KINDS:
        key = f"resource.customizations.health.entrepot.io_{kind}"
        if (cm.get("data") or {}).get(key, "").strip() != source.strip():
            failures.append(f"{ARGOCD_CM.name}: {key} is not charts/entrepot/argocd/health.lua")

    for f in failures:
        print(f"argocd-health: {f}")
    print(f"argocd-health: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
