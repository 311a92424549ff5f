"""``ops reap``: destroy the per-pull-request stacks whose ``expires-at`` tag has passed.

The account is the source of truth: every resource of an ephemeral stack carries the tags
``project``, ``stack`` and ``expires-at`` (provider default tags), so the Resource Groups Tagging API
finds expired stacks even when the pull request's workflow never ran its teardown.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from components.settings import PROJECT
from ops.aws import Clients
from ops.stack import ROOT

# Only stacks named like the ephemeral workflow names them are ever reaped, whatever their tags say.
DEFAULT_STACK_PATTERN = r"pr-[0-9]+"

Destroyer = Callable[[str], None]


@dataclass
class TaggedStack:
    """One stack as seen through its resources' tags."""

    name: str
    resources: int = 0
    expiries: set[str] = field(default_factory=set)

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


def find_tagged_stacks(clients: Clients, project: str = PROJECT) -> dict[str, TaggedStack]:
    """All stacks of the project that have resources tagged ``expires-at``, grouped by the ``stack`` tag."""
    tagging = clients.client("resourcegroupstaggingapi")
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
            entry.resources += 1
            entry.expiries.add(tags["expires-at"])
    return stacks


@dataclass(frozen=True)
class ReapRow:
    stack: str
    expires_at: str
    resources: int
    action: str
    result: str
    failed: bool = False


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
        raw = ", ".join(sorted(entry.expiries))
        when = entry.expires_at()
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
        except Exception as err:  # one stack's failure must not stop the others; reported, exit non-zero
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            rows.append(ReapRow(name, raw, entry.resources, "destroy", f"FAILED: {first[:200]}", failed=True))
            continue
        rows.append(ReapRow(name, raw, entry.resources, "destroy", "destroyed and removed"))
    return rows


def pulumi_destroyer(org: str | None = None) -> Destroyer:
    """Destroy through the Pulumi Automation API (needs the Pulumi CLI, backend login and AWS access)."""

    def destroy(stack: str) -> None:
        from pulumi import automation as auto

        name = f"{org}/{stack}" if org else stack
        selected = auto.select_stack(stack_name=name, work_dir=str(ROOT))
        selected.destroy(on_output=print)
        selected.workspace.remove_stack(name)

    return destroy
