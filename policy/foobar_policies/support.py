"""What every policy needs: plain values with preview unknowns made explicit, tags, roles, messages.

During ``pulumi preview`` a value that is only known after the update (a new group's id, a computed
name) reaches the pack as a sentinel string, and reading it through pulumi-policy's proxy raises
``UnknownValueError``. The framework turns that into an advisory "can't run policy" note and stops
the whole policy, so one unknown id would silence a stack policy for every other resource. Instead
``plain`` turns each unknown into ``UNKNOWN`` and every check skips exactly the value it can't see.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
from pulumi_policy import (
    PolicyProviderResource,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

PROJECT: Final = "foobar"
REQUIRED_TAGS: Final = ("project", "stack", "role")
EXPIRY_TAG: Final = "expires-at"
LB_ROLE: Final = "lb"

_SENTINELS: Final = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


class _Unknown:
    """A value that is computed during the update and so can't be judged at preview."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        raise TypeError("an unknown preview value has no truth value; test it with is_unknown() first")


UNKNOWN: Final = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def plain(value: Any) -> Any:
    """``value`` (proxied or plain) as dicts/lists/scalars, with every preview unknown as ``UNKNOWN``."""
    if isinstance(value, str):
        return UNKNOWN if value in _SENTINELS else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[str(key)] = plain(value[key])
            except UnknownValueError:
                out[str(key)] = UNKNOWN
        return out
    if isinstance(value, Sequence):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def get(props: Any, *path: str | int) -> Any:
    """The value at ``path`` in plain props: ``None`` when absent, ``UNKNOWN`` when not yet known."""
    current = props
    for step in path:
        if is_unknown(current) or current is None:
            return current
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return None
            current = current[step]
        else:
            if not isinstance(current, dict):
                return None
            current = current.get(step)
    return current


def as_list(value: Any) -> list[Any] | _Unknown:
    """A list property: absent is empty; unknown stays unknown."""
    if is_unknown(value):
        return UNKNOWN
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def parse_default_tags(value: Any) -> dict[str, Any] | _Unknown | None:
    """The tags of a provider's ``defaultTags`` input.

    The engine sends provider inputs either as objects or, like the state file, as JSON strings
    (``'{"tags": {...}}'``); both mean the same.
    """
    if is_unknown(value):
        return UNKNOWN
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    tags = get(value, "tags")
    if is_unknown(tags):
        return UNKNOWN
    return tags if isinstance(tags, dict) else None


def is_default_provider(urn_or_name: str) -> bool:
    """The engine names the provider it creates implicitly ``default`` or ``default_<version>``."""
    return provider_short_name(urn_or_name) == "default" or provider_short_name(urn_or_name).startswith("default_")


def provider_short_name(urn_or_name: str) -> str:
    """``aws-lb`` from ``urn:pulumi:dev::foobar::...$pulumi:providers:aws::aws-lb[::<id>]`` (or a bare name)."""
    parts = urn_or_name.split("::")
    return parts[3] if len(parts) >= 4 else urn_or_name


@dataclass
class Res:
    """One resource as the checks see it: plain inputs plus where it gets its default tags from."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]
    provider_name: str | None = None
    provider_tags: dict[str, Any] | _Unknown | None = None
    protect: bool | None = None
    """Pulumi ``protect``; ``None`` when the caller didn't say."""
    delete_before_replace: bool | None = None
    property_dependencies: dict[str, list[Res]] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, Any]:
        """Effective tags: the provider's default tags, overridden by the resource's own tags."""
        merged: dict[str, Any] = {}
        if isinstance(self.provider_tags, dict):
            merged.update(self.provider_tags)
        own = self.props.get("tags")
        if isinstance(own, dict):
            merged.update(own)
        return merged

    @property
    def role(self) -> Any:
        """The ``role`` tag (``UNKNOWN`` if the provider's tags aren't known yet, ``None`` if missing)."""
        if is_unknown(self.provider_tags) and "role" not in (self.props.get("tags") or {}):
            return UNKNOWN
        return self.tags.get("role")

    @property
    def label(self) -> str:
        return f"{self.type.rsplit(':', 1)[-1]} '{self.name}'"

    def depends_on(self, key: str) -> list[Res]:
        return self.property_dependencies.get(key, [])

    @classmethod
    def from_args(cls, args: ResourceValidationArgs) -> Res:
        return cls._build(args.resource_type, args.name, args.urn, args.props, args.provider, args.opts)

    @classmethod
    def from_policy_resource(cls, resource: PolicyResource) -> Res:
        return cls._build(resource.resource_type, resource.name, resource.urn, resource.props, resource.provider, None)

    @classmethod
    def _build(
        cls, typ: str, name: str, urn: str, props: Any, provider: PolicyProviderResource | None, opts: Any
    ) -> Res:
        provider_name = (provider.urn or provider.name) if provider is not None else None
        provider_tags = None
        if provider is not None:
            provider_tags = parse_default_tags(plain(provider.props).get("defaultTags"))
        return cls(
            type=typ,
            name=name,
            urn=urn,
            props=plain(props),
            provider_name=provider_name,
            provider_tags=provider_tags,
            protect=getattr(opts, "protect", None),
            delete_before_replace=getattr(opts, "delete_before_replace", None),
        )


def stack_resources(args: StackValidationArgs) -> list[Res]:
    """The stack's resources with property dependencies linked to the same ``Res`` objects."""
    by_urn = {r.urn: Res.from_policy_resource(r) for r in args.resources}
    for source in args.resources:
        res = by_urn[source.urn]
        for key, deps in (source.property_dependencies or {}).items():
            res.property_dependencies[key] = [by_urn[d.urn] for d in deps if d.urn in by_urn]
    return list(by_urn.values())


def configured_ephemeral() -> bool | None:
    """``foobar:ephemeral`` from the stack config, which the CLI hands to policy packs; ``None`` if unset."""
    try:
        return pulumi.Config(PROJECT).get_bool("ephemeral")
    except Exception:  # a malformed value is the program's error to report, not the pack's
        return None


def is_ephemeral(tag_sets: Iterable[Any]) -> bool:
    """A throw-away stack: the stack config says so, or (without config) its providers tag ``expires-at``."""
    configured = configured_ephemeral()
    if configured is not None:
        return configured
    return any(isinstance(tags, dict) and EXPIRY_TAG in tags for tags in tag_sets)


def message(res: Res, problem: str, fix: str) -> str:
    """A violation that names the resource, what is wrong and how to fix it."""
    return f"{res.label}: {problem}. Fix: {fix}."


Check = Callable[[Res], Iterator[str]]
StackCheck = Callable[[list[Res]], Iterator[tuple[str, str | None]]]


def resource_validation(
    types: frozenset[str], check: Check
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """A pulumi-policy validate callback running ``check`` on resources of ``types``."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in types:
            return
        for text in check(Res.from_args(args)):
            report_violation(text, None)

    validate.__doc__ = check.__doc__
    return validate


def stack_validation(check: StackCheck) -> Callable[[StackValidationArgs, ReportViolation], None]:
    """A pulumi-policy stack validate callback; ``check`` yields (message, urn) pairs."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for text, urn in check(stack_resources(args)):
            report_violation(text, urn)

    validate.__doc__ = check.__doc__
    return validate
