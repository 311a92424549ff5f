"""Feeds the policies what the engine would: resources of the mocked program (or crafted ones) as
pulumi-policy's own argument objects, with inputs deserialized and wrapped in its unknown-checking proxy.

The engine also tells a stack policy which resources each input came from (property dependencies);
mocks don't, so they are rebuilt here by matching input values against other resources' ids and
computed outputs (name, arn, identifier), which is where those values came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from policy.foobar_policies import CATALOG, POLICIES
from tests.unit.harness import PROJECT, Registration, Run

PROVIDER_TYPE = "pulumi:providers:aws"
_COMPUTED_REFS = ("name", "arn", "identifier")


@dataclass(frozen=True)
class Finding:
    policy: str
    level: EnforcementLevel
    message: str
    urn: str | None


@dataclass
class Resource:
    """A crafted resource: type, name, inputs (camelCase) and the role its provider tags it with."""

    type: str
    name: str
    props: dict[str, Any]
    role: str | None = "app"
    extra_tags: dict[str, str] = field(default_factory=dict)
    protect: bool | None = None
    delete_before_replace: bool | None = None
    deps: dict[str, list[str]] = field(default_factory=dict)
    """Property dependencies: input key -> names of the crafted resources it came from."""
    provider: str | None = "explicit"
    """``explicit`` (a tagged provider), ``default`` (the engine's default provider) or None."""


def urn(stack: str, typ: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{typ}::{name}"


def options(protect: bool | None = None, delete_before_replace: bool | None = None) -> PolicyResourceOptions:
    """Resource options as the engine sends them. ``None`` (a crafted resource that doesn't say) tells the
    policies "not known" rather than "off"; the program's resources carry the ``protect`` they registered."""
    return PolicyResourceOptions(
        protect,  # type: ignore[arg-type]
        [],
        delete_before_replace,
        [],
        PolicyCustomTimeouts(0, 0, 0),
        [],
    )


def engine_props(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Inputs as a policy sees them: wire form decoded (secrets unwrapped), unknowns behind the proxy."""
    clean = {k: v for k, v in props.items() if not k.startswith("__")}
    return unknown_checking_proxy(deserialize_properties(clean))


def provider_resource(stack: str, name: str, default_tags: Mapping[str, str] | None) -> PolicyProviderResource:
    props: dict[str, Any] = {"region": "eu-west-1"}
    if default_tags is not None:
        props["defaultTags"] = {"tags": dict(default_tags)}
    return PolicyProviderResource(PROVIDER_TYPE, engine_props(props), urn(stack, PROVIDER_TYPE, name), name)


def crafted(resources: Iterable[Resource], stack: str = "dev", ephemeral: bool = False) -> list[PolicyResource]:
    """Crafted resources as the engine would hand them to a stack policy."""
    built: dict[str, PolicyResource] = {}
    specs = list(resources)
    for spec in specs:
        provider: PolicyProviderResource | None = None
        if spec.provider == "explicit":
            tags = {"project": PROJECT, "stack": stack, **({"role": spec.role} if spec.role else {})}
            if ephemeral:
                tags["expires-at"] = "2030-01-01T00:00:00Z"
            tags.update(spec.extra_tags)
            provider = provider_resource(stack, f"aws-{spec.role}", tags)
        elif spec.provider == "default":
            provider = provider_resource(stack, "default_7_0_0", None)
        built[spec.name] = PolicyResource(
            spec.type,
            engine_props(spec.props),
            urn(stack, spec.type, spec.name),
            spec.name,
            options(spec.protect, spec.delete_before_replace),
            provider,
            None,
            [],
            {},
        )
    for spec in specs:
        built[spec.name].property_dependencies = {k: [built[n] for n in names] for k, names in spec.deps.items()}
    return list(built.values())


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):  # the engine names a nested input's sources under its top-level key
        for item in value.values():
            yield from _strings(item)


def from_run(result: Run, stack: str) -> list[PolicyResource]:
    """Every custom resource the mocked program registered, as the engine would send it."""
    regs = [r for r in result.resources if not r.type.startswith("foobar:")]
    providers: dict[str, PolicyProviderResource] = {}
    for reg in regs:
        if reg.type.startswith("pulumi:providers:"):
            providers[reg.name] = PolicyProviderResource(
                reg.type, engine_props(reg.inputs), urn(stack, reg.type, reg.name), reg.name
            )
    by_value: dict[str, Registration] = {}
    for reg in regs:
        by_value[reg.id] = reg
        for key in _COMPUTED_REFS:
            value = reg.outputs.get(key)
            if isinstance(value, str) and key not in reg.inputs:
                by_value.setdefault(value, reg)
    built = {
        reg.name: PolicyResource(
            reg.type,
            engine_props(reg.inputs),
            urn(stack, reg.type, reg.name),
            reg.name,
            options(reg.protect),
            providers.get(reg.provider.split("::")[3]) if reg.provider else None,
            None,
            [],
            {},
        )
        for reg in regs
    }
    for reg in regs:
        deps: dict[str, list[PolicyResource]] = {}
        for key, value in reg.inputs.items():
            sources = [by_value[v] for v in _strings(value) if v in by_value and by_value[v] is not reg]
            if sources:
                deps[key] = [built[s.name] for s in sources]
        built[reg.name].property_dependencies = deps
    return list(built.values())


def analyze(resources: list[PolicyResource], only: str | None = None) -> list[Finding]:
    """Run every policy (or just ``only``) the way the analyzer does, collecting what they report."""
    levels = {entry.name: entry.level for entry in CATALOG}
    findings: list[Finding] = []
    for policy in POLICIES:
        if only is not None and policy.name != only:
            continue

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            findings.append(Finding(name, levels[name], message, urn))

        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(resources), report)
        elif isinstance(policy, ResourceValidationPolicy):
            for res in resources:
                args = ResourceValidationArgs(
                    res.resource_type, res.props, res.urn, res.name, res.opts, res.provider, None
                )
                before = len(findings)
                policy.validate(args, report)
                for i in range(before, len(findings)):
                    f = findings[i]
                    findings[i] = Finding(f.policy, f.level, f.message, res.urn)
    return findings


def mandatory(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == EnforcementLevel.MANDATORY]
