"""``ops reap``: destroy the per-pull-request stacks whose ``expires-at`` tag has passed.

The account is the source of truth: every resource of an ephemeral stack carries the tags
``project``, ``stack`` and ``expires-at`` (provider default tags), so the Resource Groups Tagging API
finds expired stacks even when the pull request's workflow never ran its teardown.

A stack that no longer exists counts as reaped. Two things make a gone stack look alive, and both
are handled here rather than reported as failures:

- AWS keeps some deleted resources, with their tags, for a while: a KMS key stays ``PendingDeletion``
  for its deletion window (7-30 days), a Secrets Manager secret for its recovery window. The Tagging
  API still lists them. They are not counted as the stack's resources.
- The Pulumi backend has no stack of that name any more (destroyed and removed by the pull request's
  teardown or an earlier reap): the destroyer raises :class:`StackNotFound` and the row says so.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from components.settings import PROJECT
from ops.aws import ACCESS_DENIED_CODES, Clients
from ops.stack import ROOT

# Only stacks named like the ephemeral workflow names them are ever reaped, whatever their tags say.
DEFAULT_STACK_PATTERN = r"pr-[0-9]+"

# KMS key states in which the key is already on its way out (kms:DescribeKey ``KeyState``).
KMS_GONE_STATES = frozenset({"PendingDeletion", "PendingReplicaDeletion"})
# How many left-over ARNs a row names when a stack is gone but some of its tags are still listed.
SHOWN_ARNS = 3

Destroyer = Callable[[str], None]
"""Destroys and removes one stack; raises :class:`StackNotFound` when the backend has no such stack."""


class StackNotFound(Exception):
    """The Pulumi backend has no stack of this name: it was destroyed and removed already."""


@dataclass
class TaggedStack:
    """One stack as seen through its resources' tags (resources AWS is already deleting left out)."""

    name: str
    resources: int = 0
    expiries: set[str] = field(default_factory=set)
    arns: list[str] = field(default_factory=list)
    pending_deletion: int = 0
    """Resources that still carry the stack's tags but that AWS has scheduled for deletion."""

    def expires_at(self) -> dt.datetime | None:
        """The latest expiry among the stack's resources: a stack expires only when all of it has."""
        parsed = [parse_expiry(raw) for raw in self.expiries]
        return max(parsed) if parsed and all(p is not None for p in parsed) else None  # type: ignore[type-var]


def parse_expiry(raw: str) -> dt.datetime | None:
    """``2026-12-01T18:00Z`` (the tag's format) or any RFC 3339 time with a zone; None if neither."""
    try:
        when = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(dt.UTC) if when.tzinfo else None


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class DeletionCheck:
    """Asks the owning service whether a tagged resource is already being deleted.

    Only resource types that AWS keeps around after a delete are asked about (one call each); any
    other ARN is taken as live. Without permission to ask (``kms:DescribeKey``,
    ``secretsmanager:DescribeSecret``) the resource is taken as live too: the destroyer then finds
    no stack and the row still counts it as reaped, naming what is left. Other errors propagate.
    """

    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._cache: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._cache:
            self._cache[service] = self._clients.client(service)
        return self._cache[service]

    def __call__(self, arn: str) -> bool:
        parts = arn.split(":", 5)
        service, resource = (parts[2], parts[5]) if len(parts) == 6 else ("", "")
        try:
            if service == "kms" and resource.startswith("key/"):
                state = self._client("kms").describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
                return state in KMS_GONE_STATES
            if service == "secretsmanager" and resource.startswith("secret:"):
                secret = self._client("secretsmanager").describe_secret(SecretId=arn)
                return secret.get("DeletedDate") is not None
        except ClientError as err:
            code = _error_code(err)
            if code in ("NotFoundException", "ResourceNotFoundException"):
                return True  # deleted since the Tagging API listed it
            if code in ACCESS_DENIED_CODES:
                return False
            raise
        return False


def find_tagged_stacks(clients: Clients, project: str = PROJECT) -> dict[str, TaggedStack]:
    """All stacks of the project that have resources tagged ``expires-at``, grouped by the ``stack`` tag.

    Resources pending deletion are counted apart and their tags ignored, so a stack of which only
    those remain has ``resources == 0``.
    """
    tagging = clients.client("resourcegroupstaggingapi")
    pending_deletion = DeletionCheck(clients)
    stacks: dict[str, TaggedStack] = {}
    pages = tagging.get_paginator("get_resources").paginate(
        TagFilters=[{"Key": "project", "Values": [project]}, {"Key": "expires-at"}],
        ResourcesPerPage=100,
    )
    for page in pages:
        for resource in page.get("ResourceTagMappingList", []):
            tags = {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
            name = tags.get("stack")
            if not name or "expires-at" not in tags:
                continue
            entry = stacks.setdefault(name, TaggedStack(name))
            arn = str(resource.get("ResourceARN", ""))
            if pending_deletion(arn):
                entry.pending_deletion += 1
                continue
            entry.resources += 1
            entry.expiries.add(tags["expires-at"])
            entry.arns.append(arn)
    return stacks


@dataclass(frozen=True)
class ReapRow:
    stack: str
    expires_at: str
    resources: int
    action: str
    result: str
    failed: bool = False


def _first_line(err: Exception) -> str:
    """The line of an error worth a table cell: the CLI's ``error:`` line when there is one.

    A Pulumi ``CommandError`` prints as ``code: N`` / ``stdout: ...`` / ``stderr: ...``; its first
    line is the exit code, which says nothing.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    line = next((ln for ln in lines if "error:" in ln), lines[0])
    return line.removeprefix("stderr:").strip()[:200]


def _left_over(entry: TaggedStack) -> str:
    shown = ", ".join(entry.arns[:SHOWN_ARNS]) + (", ..." if len(entry.arns) > SHOWN_ARNS else "")
    return f"{entry.resources} tagged resource(s) still listed: {shown}"


def reap(
    clients: Clients,
    destroy: Destroyer,
    *,
    yes: bool,
    now: dt.datetime | None = None,
    stack_pattern: str = DEFAULT_STACK_PATTERN,
) -> list[ReapRow]:
    """Decide per stack; destroy the expired ones only when ``yes``. Never raises for one stack's failure."""
    now = now or dt.datetime.now(dt.UTC)
    allowed = re.compile(stack_pattern)
    rows = []
    for name, entry in sorted(find_tagged_stacks(clients).items()):
        raw = ", ".join(sorted(entry.expiries)) or "-"
        when = entry.expires_at()
        if entry.resources == 0:
            rows.append(
                ReapRow(name, raw, 0, "none", f"already gone: {entry.pending_deletion} resource(s) pending deletion")
            )
            continue
        if not allowed.fullmatch(name):
            rows.append(ReapRow(name, raw, entry.resources, "keep", f"name does not match {stack_pattern}"))
            continue
        if when is None:
            rows.append(ReapRow(name, raw, entry.resources, "keep", "expires-at tag is not a time", failed=True))
            continue
        if when > now:
            hours = (when - now).total_seconds() / 3600
            rows.append(ReapRow(name, raw, entry.resources, "keep", f"expires in {hours:.1f} h"))
            continue
        if not yes:
            rows.append(ReapRow(name, raw, entry.resources, "destroy", "dry run: would destroy (pass --yes)"))
            continue
        try:
            destroy(name)
        except StackNotFound as gone:
            # Destroyed and removed before (the tags lag behind); what is still listed is named for a person.
            result = f"already gone: no Pulumi stack {gone or name}, counted as reaped; {_left_over(entry)}"
            rows.append(ReapRow(name, raw, entry.resources, "destroy", result))
            continue
        except Exception as err:  # one stack's failure must not stop the others; reported, exit non-zero
            rows.append(ReapRow(name, raw, entry.resources, "destroy", f"FAILED: {_first_line(err)}", failed=True))
            continue
        rows.append(ReapRow(name, raw, entry.resources, "destroy", "destroyed and removed"))
    return rows


def pulumi_destroyer(org: str | None = None) -> Destroyer:
    """Destroy through the Pulumi Automation API (needs the Pulumi CLI, backend login and AWS access).

    ``pulumi stack select`` of a stack the backend doesn't have fails with ``no stack named ... found``
    (the Automation API raises ``StackNotFoundError``); that becomes :class:`StackNotFound`.
    """

    def destroy(stack: str) -> None:
        from pulumi import automation as auto

        name = f"{org}/{stack}" if org else stack
        try:
            selected = auto.select_stack(stack_name=name, work_dir=str(ROOT))
        except auto.StackNotFoundError:
            raise StackNotFound(name) from None
        selected.destroy(on_output=print)
        selected.workspace.remove_stack(name)

    return destroy
