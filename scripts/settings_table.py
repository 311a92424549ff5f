"""Prints the settings table of the README from Pulumi.yaml, so the two never disagree.

Usage: python scripts/settings_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.settings import ALLOWED, declared


def table() -> str:
    rows = ["| setting | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    for key, spec in declared().items():
        default = spec["default"]
        shown = "(empty)" if default == "" else str(default).lower() if isinstance(default, bool) else str(default)
        rows.append(f"| `foobar:{key}` | {spec['type']} | `{shown}` | {ALLOWED[key]} | {spec['description']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
