"""User-data of the three server roles, rendered by pure functions from plain values.

The same functions serve the Pulumi program (values from settings and resource outputs), the tests
(which check the result with the real daemons) and the local site (which runs the rendered files).
"""

from __future__ import annotations

import base64
import functools
import gzip
from dataclasses import dataclass, field
from typing import Literal

import zopfli.gzip

from app.config import MAX_BODY_BYTES

Role = Literal["lb", "web", "app"]


@dataclass(frozen=True)
class EdgeLimits:
    """Per-client limits at the load balancers, counted per source address and shared by the pair.

    Defaults are the settings' (``rateLimit*`` in Pulumi.yaml; a test keeps them equal): what a site
    like this starts with. A page with its assets is about 20 requests; a browser holds up to 6
    connections per host over HTTP/1.1 and 1 over HTTP/2; an office behind one NAT address is many
    browsers; a person writes a guestbook entry or two, not one a second.
    """

    requests_per_10s: int = 300
    connections: int = 100
    new_connections_per_10s: int = 200
    posts_per_minute: int = 5
    max_body_bytes: int = MAX_BODY_BYTES
    """Declared request bodies above this are refused at the door (413): the app's own limit."""

    def __post_init__(self) -> None:
        for name in (
            "requests_per_10s",
            "connections",
            "new_connections_per_10s",
            "posts_per_minute",
            "max_body_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EdgeLimits.{name}: {value!r} must be a positive integer")
        if self.max_body_bytes > MAX_BODY_BYTES:
            raise ValueError(
                f"EdgeLimits.max_body_bytes: {self.max_body_bytes} is above the app's own limit {MAX_BODY_BYTES}:"
                " the app would refuse what the load balancer let through"
            )


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
    lb_count: int = 1
    """LB only: 1, or 2 for a pair (keepalived between them, node.pair); settings lbCount."""
    eip_allocation_id: str = ""
    """LB only: the site's Elastic IP, which the MASTER (or the single LB) claims (node.eip)."""
    vpc_cidr: str = "10.0.0.0/8"
    """LB only: "inside": /readyz answers only to these addresses."""
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    """LB only: the per-client limits at the door (settings rateLimit*)."""


@functools.lru_cache(maxsize=64)
def for_ec2(text: str) -> str:
    """User-data as EC2 takes it: gzip, then base64. EC2 counts 16 KB before base64, and the per-file
    packing can't shrink the document itself; cloud-init inflates gzip before it reads the YAML.

    The same text must give the same bytes wherever `pulumi up` runs, or every server would be
    replaced: zopfli (pinned, its own deflate code, no timestamp) rather than the system's zlib,
    whose output may differ between builds (zlib-ng says so). Cached: the program measures each
    role's user-data before it sends the same text, and the tests render the same stacks often."""
    return base64.b64encode(zopfli.gzip.compress(text.encode(), numiterations=5)).decode()


def from_ec2(encoded: str) -> str:
    """The cloud-config text of :func:`for_ec2`'s output (what cloud-init reads on the server)."""
    return gzip.decompress(base64.b64decode(encoded, validate=True)).decode()


def cloud_config(values: RoleValues) -> str:
    """The ``#cloud-config`` user-data of one server."""
    from userdata.render import render_cloud_config

    return render_cloud_config(values)
