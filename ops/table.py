"""Plain-text tables for people reading a CI log or a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from jinja2 import Environment, StrictUndefined

_ENV = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
_TEMPLATE = _ENV.from_string(
    "{% for row in rows %}"
    "{% for cell in row %}{{ cell.ljust(widths[loop.index0]) if not loop.last else cell }}"
    "{% if not loop.last %}  {% endif %}{% endfor %}\n"
    "{% endfor %}"
)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, a rule under the headers; the last column is not padded."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    rule = ["-" * w for w in widths]
    return str(_TEMPLATE.render(rows=[cells[0], rule, *cells[1:]], widths=widths))
