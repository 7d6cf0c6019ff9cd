#!/usr/bin/env python3
"""Extracts the examples of jq 1.7's manual into the Mapping engine's conformance fixture.

Usage (needs a checkout of the jqlang/jq repository, so not offline):
    git -C <jq checkout> show <commit>:docs/content/manual/v1.7/manual.yml > /tmp/manual.yml
    python3 scripts/jq_manual_examples.py /tmp/manual.yml <commit> > api/tests/fixtures/jq-1.7-manual-examples.json

Each example is a program, an input (JSON text) and the outputs jq 1.7 gives (JSON texts),
with the title of the manual section it comes from. Needs PyYAML.
"""

import json
import sys

import yaml


def examples(manual):
    for section in manual.get("sections", []):
        for entry in section.get("entries", []) or []:
            for example in entry.get("examples", []) or []:
                yield {
                    "section": entry.get("title", section.get("title", "")),
                    "program": example["program"],
                    "input": example["input"],
                    "output": list(example.get("output") or []),
                }


def main():
    path, commit = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        manual = yaml.safe_load(f)
    fixture = {
        "source": f"jq 1.7 manual, docs/content/manual/v1.7/manual.yml at the jqlang/jq repository, commit {commit}",
        "licence": "jq's documentation is licensed under CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/)",
        "generated_by": "scripts/jq_manual_examples.py (see its docstring for the command); do not edit by hand",
        "examples": list(examples(manual)),
    }
    # One example a line: the file stays short and its diffs readable.
    out = sys.stdout
    out.write("{\n")
    for key in ("source", "licence", "generated_by"):
        out.write(f" {json.dumps(key)}: {json.dumps(fixture[key], ensure_ascii=False)},\n")
    out.write(' "examples": [\n')
    lines = [json.dumps(e, ensure_ascii=False) for e in fixture["examples"]]
    out.write(",\n".join("  " + line for line in lines))
    out.write("\n ]\n}\n")


if __name__ == "__main__":
    main()
