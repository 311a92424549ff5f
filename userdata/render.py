"""Renders cloud-config documents from the Jinja templates beside this file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

if TYPE_CHECKING:
    from userdata import RoleValues

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)

DAEMONS = {"lb": ["haproxy"], "web": ["nginx"], "app": ["nginx"]}


def render_cloud_config(values: RoleValues) -> str:
    return _ENV.get_template("cloud-config.yaml.j2").render(v=values, packages=DAEMONS[values.role])
