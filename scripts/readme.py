"""Writes the generated parts of README.md (settings and firewall tables); `--check` fails if stale.

Usage: python scripts/readme.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.firewalls import RULES  # noqa: E402
from scripts.settings_table import table  # noqa: E402


def firewall_table() -> str:
    rows = ["| group | direction | port | peer | why |", "| --- | --- | --- | --- | --- |"]
    for r in RULES:
        peer = f"{r.peer} group" if r.peer_is_group else r.peer
        what = f"{r.flow} (IP protocol {r.protocol})" if r.has_no_ports else f"{r.protocol}/{r.port}"
        rows.append(f"| {r.group} | {r.direction} | {what} | {peer} | {r.description} |")
    return "\n".join(rows)


def render(text: str) -> str:
    for name, body in (("settings", table()), ("firewalls", firewall_table())):
        block = f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->"
        start, end = text.index(f"<!-- {name}:start -->"), text.index(f"<!-- {name}:end -->")
        text = text[:start] + block + text[end + len(f"<!-- {name}:end -->") :]
    return text


if __name__ == "__main__":
    readme = ROOT / "README.md"
    current = readme.read_text()
    wanted = render(current)
    if "--check" in sys.argv:
        if current != wanted:
            sys.exit("README.md is stale: run python scripts/readme.py")
    else:
        readme.write_text(wanted)
