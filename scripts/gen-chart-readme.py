#!/usr/bin/env python3
"""Regenerate the values table of charts/k8s-janus/README.md from values.yaml.

The table sits between the markers
    <!-- values-table:start -->  and  <!-- values-table:end -->
and lists every value of values.yaml with its default (as JSON) and the
description from the `# -- text` comment above the key.

Flattening rule (tests/chart/test_readme.py applies the same rule on its own):
maps are descended into key by key, except empty maps and maps whose keys are
not plain identifiers (labels, annotations), which are one row each; lists are
one row each.

Usage: .tools/venv/bin/python scripts/gen-chart-readme.py [--check]
"""
import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "k8s-janus"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
IDENT = re.compile(r"^[A-Za-z0-9_]+$")
KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_]+):")
DESC_LINE = re.compile(r"^\s*# -- (.*)$")


def flatten(values, prefix=""):
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(IDENT.match(str(k)) for k in value):
            yield from flatten(value, path + ".")
        else:
            yield path, value


def descriptions(text):
    """Map dotted key paths to the `# --` comment right above them."""
    found, stack, pending = {}, [], None
    for line in text.splitlines():
        m = DESC_LINE.match(line)
        if m:
            pending = m.group(1).strip()
            continue
        m = KEY_LINE.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if pending is not None:
            found[".".join(k for _, k in stack)] = pending
            pending = None
    return found


def table(values_text):
    values = yaml.safe_load(values_text)
    desc = descriptions(values_text)
    rows = ["| Key | Default | Description |", "|-----|---------|-------------|"]
    missing = []
    for path, value in flatten(values):
        if path not in desc:
            missing.append(path)
        default = json.dumps(value, ensure_ascii=False)
        rows.append(f"| `{path}` | `{default}` | {desc.get(path, '')} |")
    if missing:
        sys.exit("values.yaml keys without a `# --` description: " + ", ".join(missing))
    return "\n".join(rows)


def main():
    check = "--check" in sys.argv[1:]
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    if START not in readme or END not in readme:
        sys.exit(f"{readme_path}: markers {START} / {END} not found")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table((CHART / 'values.yaml').read_text())}\n{END}{tail}"
    if check:
        if new != readme:
            sys.exit(f"{readme_path} is out of date: run scripts/gen-chart-readme.py")
        print(f"{readme_path} is up to date")
    elif new != readme:
        readme_path.write_text(new)
        print(f"updated {readme_path}")
    else:
        print(f"{readme_path} already up to date")


if __name__ == "__main__":
    main()
