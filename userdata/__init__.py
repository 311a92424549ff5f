"""User-data of the three server roles, rendered by pure functions from plain values.

The same functions serve the Pulumi program (values from settings and resource outputs), the tests
(which check the result with the real daemons) and the local site (which runs the rendered files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["lb", "web", "app"]


@dataclass(frozen=True)
class RoleValues:
    """Everything a server needs to know at boot. Plain values only: never a secret."""

    role: Role
    stack: str
    region: str
    domain: str
    param_path: str
    """SSM path holding the role's tls-key (SecureString), tls-cert and ca-cert."""
    private_address: str = ""
    """Only the monitoring agent's scrape target of the LB reads it (userdata.agent.exporter_target).
    Nothing per server belongs here: every member of a group boots the same user-data, and HAProxy
    finds its backends at run time (node.discovery)."""
    acm_certificate_arn: str = ""
    """LB only: the exportable ACM certificate; empty means the internal-CA certificate serves."""
    log_group_prefix: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    app_archive_url: str = ""
    """App only: ``s3://bucket/key`` of :func:`userdata.render.app_archive`; empty ships the code in the user-data."""
    app_archive_sha256: str = ""
    """App only: sha256 of that archive; checked at boot, and it changes the user-data when the code changes."""
    site_archive_url: str = ""
    """Web only: ``s3://bucket/key`` of :func:`userdata.render.site_archive`; empty ships the site in the user-data."""
    site_archive_sha256: str = ""
    """Web only: sha256 of that archive, checked at boot."""
    node_archive_url: str = ""
    """LB only: ``s3://bucket/key`` of :func:`userdata.render.node_archive` (the discovery agent)."""
    node_archive_sha256: str = ""
    """LB only: sha256 of that archive, checked at boot."""
    sumo_token_parameter: str = ""
    """SSM parameter holding a Sumo Logic installation token; empty means CloudWatch only."""
    internal_domain: str = "foobar.internal"
    """Backends present ``<role>.<internal_domain>`` certificates; HAProxy sends it as SNI and verifies it."""


def cloud_config(values: RoleValues) -> str:
    """The ``#cloud-config`` user-data of one server."""
    from userdata.render import render_cloud_config

    return render_cloud_config(values)
