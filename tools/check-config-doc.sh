#!/usr/bin/env bash
# Checks that docs/operations.md's configuration reference and common/config.c's config_table
# name the same variables: every variable of the table has a row in the doc, and every row of
# the doc is a variable of the table. Also checks that each documented default matches the
# table's default where the table has one. Exit 0 when they agree, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 - common/config.c docs/operations.md <<'PY'
import re
import sys

config_c, doc = sys.argv[1], sys.argv[2]
src = open(config_c, encoding="utf-8").read()
m = re.search(r"config_table\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
if not m:
    sys.exit(f"check-config-doc: no config_table in {config_c}")
table = {}
# Rows are designated initialisers: {.name = "X", ..., .def = "default", ...}; no .def: none.
for row in re.findall(r"\{\s*(\.name\s*=.*?)\}", m.group(1), re.S):
    name = re.search(r'\.name\s*=\s*"([A-Z0-9_]+)"', row).group(1)
    default = re.search(r'\.def\s*=\s*"([^"]*)"', row)
    table[name] = default.group(1) if default else None

text = open(doc, encoding="utf-8").read()
sec = re.search(r"^## Configuration reference\s*$(.*?)(?=^## )", text, re.S | re.M)
if not sec:
    sys.exit(f"check-config-doc: no '## Configuration reference' section in {doc}")
documented = {}
for line in sec.group(1).splitlines():
    if not line.startswith("|") or re.match(r"^\|\s*-", line):
        continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
    for n in names:
        if n in documented:
            print(f"check-config-doc: {n} documented twice", file=sys.stderr)
        documented[n] = cells[1] if len(cells) > 1 else ""

problems = 0
for n in sorted(set(table) - set(documented)):
    print(f"check-config-doc: {n} is in {config_c} but not in {doc}", file=sys.stderr)
    problems += 1
for n in sorted(set(documented) - set(table)):
    print(f"check-config-doc: {n} is in {doc} but not in {config_c}", file=sys.stderr)
    problems += 1
for n, default in sorted(table.items()):
    if n in documented and default not in (None, ""):
        if f"`{default}`" not in documented[n]:
            print(f"check-config-doc: {n}: {doc} gives default {documented[n]!r}, "
                  f"{config_c} says `{default}`", file=sys.stderr)
            problems += 1
print(f"check-config-doc: {len(table)} variables in config_table, {len(documented)} documented, "
      f"{problems} problems")
sys.exit(1 if problems else 0)
PY
