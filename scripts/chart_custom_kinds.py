#!/usr/bin/env python3
"""Validates the objects of kinds kubernetes-validate has no schema for.

    chart_custom_kinds.py RENDERED OUT

Each object of RENDERED (`helm template` output) whose kind has a committed
JSON schema in scripts/schemas/<group>_<version>_<Kind>.json is validated
against it (unknown fields refused); every other object is written to OUT for
kubernetes-validate --strict, which still fails on any kind it does not know.
So no kind is exempt: each is checked by one of the two. Prints one line per
problem and exits 1 on any. Needs PyYAML and jsonschema (.tools/venv).
"""

import pathlib
import sys

import jsonschema
import yaml

SCHEMAS = pathlib.Path(__file__).resolve().parent / "schemas"


def schema_for(doc):
    api_version = str(doc.get("apiVersion") or "")
    if "/" not in api_version:
        return None, None
    group, version = api_version.split("/", 1)
    path = SCHEMAS / f"{group}_{version}_{doc.get('kind')}.json"
    if not path.is_file():
        return None, None
    return path.name, yaml.safe_load(path.read_text())


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rest, problems, checked = [], [], 0
    for doc in docs:
        name, schema = schema_for(doc)
        if schema is None:
            rest.append(doc)
            continue
        checked += 1
        where = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        validator = jsonschema.Draft202012Validator(schema)
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{where}: {path}: {error.message} (schema {name})")
    with open(argv[2], "w") as f:
        yaml.safe_dump_all(rest, f, sort_keys=False)
    for p in problems:
        print(f"custom-kinds: {p}")
    print(f"custom-kinds: {checked} objects checked against scripts/schemas/, "
          f"{len(rest)} left for kubernetes-validate: {'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
