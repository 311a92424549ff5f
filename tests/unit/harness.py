"""Runs the real __main__.py under Pulumi mocks and records every registration.

The CLI applies Pulumi.yaml defaults and passes config as strings; mocks do neither, so ``run``
does both from the same files the CLI reads. Each run gets fresh mocks and config; :func:`run`
shares the runs of an identical configuration.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import hashlib
import json
import runpy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.mocks
import pulumi.runtime.resource
import pulumi.runtime.settings
import yaml
from pulumi.runtime.proto import source_pb2

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "foobar"
ZONES = {"eu-west-1": ["eu-west-1a", "eu-west-1b", "eu-west-1c"], "us-east-1": [f"us-east-1{c}" for c in "abcdef"]}
ACCOUNT = "123456789012"


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how the engine marks a secret value on the wire


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Replace secret envelopes by their values and note where they were."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            secrets.add(path)
            return _unwrap(value["value"], path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    provider: str
    urn: str
    id: str
    secrets: set[str] = field(default_factory=set)
    """Input paths that arrived as secrets."""
    parent: str = ""
    protect: bool = False
    dependencies: list[str] = field(default_factory=list)
    """URNs this resource waits for (explicit depends_on and every Output it consumes)."""
    ignore_changes: list[str] = field(default_factory=list)


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The stock mock monitor, plus what it drops: parent, protect and dependencies of each resource."""

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        deps = set(request.dependencies)
        for prop in request.propertyDependencies.values():
            deps |= set(prop.urns)
        mocks: Recorder = self.mocks  # type: ignore[assignment]
        mocks.meta[(request.type, request.name)] = (response.urn, request.parent, request.protect, sorted(deps))
        mocks.ignore_changes[(request.type, request.name)] = list(request.ignoreChanges)
        return response


@dataclass
class Recorder(pulumi.runtime.Mocks):
    region: str
    resources: list[Registration] = field(default_factory=list)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    meta: dict[tuple[str, str], tuple[str, str, bool, list[str]]] = field(default_factory=dict)
    ignore_changes: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def finish(self) -> None:
        for r in self.resources:
            r.urn, r.parent, r.protect, r.dependencies = self.meta.get((r.type, r.name), ("", "", False, []))
            r.ignore_changes = self.ignore_changes.get((r.type, r.name), [])

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        secrets: set[str] = set()
        inputs = _unwrap(dict(args.inputs), "", secrets)
        rid = f"{args.name}-id"
        out = dict(inputs)
        t = args.typ
        digest = hashlib.sha1(args.name.encode()).hexdigest()
        if t == "aws:ec2/instance:Instance":
            out.setdefault("privateIp", inputs.get("privateIp", "10.0.0.1"))
            rid = "i-" + digest[:17]
        elif t == "aws:ec2/eip:Eip":
            out.update(
                publicIp="203.0.113." + str(int(digest[:2], 16) % 250 + 1), allocationId="eipalloc-" + digest[:8]
            )
        elif t == "aws:ec2/securityGroup:SecurityGroup":
            rid = "sg-" + digest[:17]
        elif t in ("aws:iam/role:Role",):
            out.update(name=args.name, arn=f"arn:aws:iam::{ACCOUNT}:role/{args.name}")
        elif t == "aws:cloudwatch/logGroup:LogGroup":
            out["arn"] = f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{inputs.get('name', args.name)}"
        elif t == "aws:acm/certificate:Certificate":
            out.update(
                arn=f"arn:aws:acm:{self.region}:{ACCOUNT}:certificate/{digest[:8]}",
                domainValidationOptions=[
                    {
                        "domainName": inputs["domainName"],
                        "resourceRecordName": f"_x1.{inputs['domainName']}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": "_x2.acm-validations.aws.",
                    }
                ],
            )
        elif t == "aws:acm/certificateValidation:CertificateValidation":
            out["certificateArn"] = inputs["certificateArn"]
        elif t == "aws:route53/record:Record":
            out["fqdn"] = inputs["name"]
        elif t == "aws:rds/instance:Instance":
            ident = inputs.get("identifier") or (inputs.get("identifierPrefix") or args.name) + digest[:6]
            out.update(
                identifier=ident,
                address=f"{ident}.abc.{self.region}.rds.amazonaws.com",
                arn=f"arn:aws:rds:{self.region}:{ACCOUNT}:db:{ident}",
            )
            if inputs.get("manageMasterUserPassword"):
                out["masterUserSecrets"] = [
                    {
                        "secretArn": f"arn:aws:secretsmanager:{self.region}:{ACCOUNT}:secret:rds!db-{digest[:8]}",
                        "secretStatus": "active",
                    }
                ]
        elif t == "aws:rds/parameterGroup:ParameterGroup" or t == "aws:rds/subnetGroup:SubnetGroup":
            out.setdefault("name", args.name)
        elif t == "aws:iam/instanceProfile:InstanceProfile":
            out["name"] = args.name
        elif t == "tls:index/privateKey:PrivateKey":
            out.update(
                privateKeyPem=f"-----BEGIN PRIVATE KEY-----\nMOCK{digest}\n-----END PRIVATE KEY-----\n",
                publicKeyPem="pub",
            )
        elif t in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            out["certPem"] = f"-----BEGIN CERTIFICATE-----\nMOCK{digest}\n-----END CERTIFICATE-----\n"
        elif t == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = "lt-" + digest[:17]
            out.update(latestVersion=1, defaultVersion=1, name=(inputs.get("namePrefix") or "") + digest[:8])
        elif t == "aws:autoscaling/group:Group":
            name = (inputs.get("namePrefix") or args.name) + digest[:8]
            rid = name
            out.update(
                name=name,
                arn=f"arn:aws:autoscaling:{self.region}:{ACCOUNT}:autoScalingGroup:{digest[:8]}:autoScalingGroupName/{name}",
            )
        elif t == "random:index/randomString:RandomString":
            length = int(inputs.get("length", 8))
            out["result"] = (digest * 4)[:length]
        elif t == "random:index/randomPassword:RandomPassword":
            # Recognisable, so tests can look for it wherever it must not be.
            out["result"] = f"MOCK-PASSWORD-{digest[:12]}"
        elif t == "aws:secretsmanager/secret:Secret":
            out["arn"] = (
                f"arn:aws:secretsmanager:{self.region}:{ACCOUNT}:secret:{inputs.get('namePrefix', '')}{digest[:6]}"
            )
        elif t == "aws:kms/key:Key":
            out["arn"] = f"arn:aws:kms:{self.region}:{ACCOUNT}:key/{digest[:8]}"
            out["keyId"] = digest[:8]
        elif t == "tls:index/certRequest:CertRequest":
            out["certRequestPem"] = "-----BEGIN CERTIFICATE REQUEST-----\nMOCK\n-----END CERTIFICATE REQUEST-----\n"
        out.setdefault("arn", f"arn:aws:mock:{self.region}:{ACCOUNT}:{args.name}")
        self.resources.append(Registration(t, args.name, inputs, out, args.provider or "", "", rid, secrets))
        return rid, out

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = ZONES.get(self.region, ["zone-a", "zone-b"])
            return {"names": names, "zoneIds": [f"z{i}" for i in range(len(names))], "id": self.region}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/test",
                "userId": "AID",
                "id": ACCOUNT,
            }, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if args.token == "aws:ec2/getAmi:getAmi":
            pattern = args.args["filters"][0]["values"][0]
            arch = "arm64" if "arm64" in pattern else "amd64"
            return {"id": f"ami-ubuntu-{arch}", "name": pattern, "architecture": arch}, []
        return {}, []


def stack_config(stack: str) -> dict[str, Any]:
    """The config the CLI would pass: Pulumi.yaml defaults, then the stack file (dev for ephemeral ones)."""
    config: dict[str, Any] = {}
    project = _yaml(ROOT / "Pulumi.yaml")
    for key, spec in project.get("config", {}).items():
        config[f"{PROJECT}:{key}"] = spec["default"]
    stack_file = ROOT / f"Pulumi.{stack}.yaml"
    if stack_file.exists():
        config.update(_yaml(stack_file).get("config", {}))
    return copy.deepcopy(config)


def _yaml(path: Path) -> dict[str, Any]:
    """A project or stack file, parsed once per version of it (10 ms a parse, on every run); read-only."""
    stat = path.stat()
    return _parsed(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parsed(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _as_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


@dataclass
class Run:
    mocks: Recorder
    namespace: dict[str, Any]

    @property
    def resources(self) -> list[Registration]:
        return self.mocks.resources

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Registration:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"{len(found)} resources named {name}"
        return found[0]


LAST: Recorder | None = None
"""The mocks of the latest run, kept so a test can look at what a failed run registered."""

RUNS = 0
"""How many times this process ran the program (runs served from :data:`_SHARED` not counted)."""

FAILED_RUNS = 0
"""How many of those runs stopped with an error (a refused setting, mostly: they end early)."""

SHARED_CALLS = 0
"""How many :func:`run` calls were served by an earlier run of an identical configuration."""


@dataclass(frozen=True)
class _Recorded:
    """A finished run as :func:`run` keeps it: never handed out, only copied."""

    mocks: Recorder
    namespace: dict[str, Any]
    root: pulumi.Resource | None
    """The run's root Stack resource, put back when the run is served again."""


_SHARED: dict[tuple[str, str], _Recorded] = {}
"""Finished runs by (stack, config as the program sees it)."""


def run(stack: str = "dev", base: str | None = None, **overrides: Any) -> Run:
    """Run __main__.py for ``stack`` with config from ``base``'s stack file (default: the stack's own)
    and overrides given as camelCase settings (``webCount=3``) or full keys (``aws:region``).

    Runs of an identical configuration are shared: the program runs once per stack and config (as
    the program sees them, so ``base`` and overrides that repeat a default give the same run). Each
    call gets its own deep copy of the registrations and invokes, so no test sees what another one
    changed, and leaves the runtime as a run of its own would (mocks, stack, config, root resource),
    since callers such as the policy tests read the stack config after a run. A run that fails is
    not kept; nor is one whose registrations depend on the clock (an ephemeral stack without
    ``expiresAt`` tags expires-at = now + ttlHours)."""
    global SHARED_CALLS
    config = _config(stack, base, overrides)
    if config.get(f"{PROJECT}:ephemeral") == "true" and not config.get(f"{PROJECT}:expiresAt"):
        return _run(Recorder, stack, config)
    key = (stack, json.dumps(config, sort_keys=True))
    recorded = _SHARED.get(key)
    if recorded is None:
        result = _run(Recorder, stack, config)
        root = pulumi.runtime.settings.ROOT.get()
        _SHARED[key] = _Recorded(copy.deepcopy(result.mocks), dict(result.namespace), root)
        return result
    SHARED_CALLS += 1
    mocks = copy.deepcopy(recorded.mocks)
    pulumi.runtime.settings.ROOT.set(recorded.root)  # so set_mocks makes no new Stack resource
    _configure(mocks, stack, config)
    return Run(mocks, dict(recorded.namespace))


def run_with(recorder: type[Recorder], stack: str = "dev", base: str | None = None, **overrides: Any) -> Run:
    """:func:`run` with a Recorder subclass as the mocks (local.mocked's issues TLS for real); the
    program always runs, nothing is shared."""
    return _run(recorder, stack, _config(stack, base, overrides))


def _config(stack: str, base: str | None, overrides: dict[str, Any]) -> dict[str, str]:
    """The full config, as the strings the program reads."""
    config = stack_config(base or stack)
    for key, value in overrides.items():
        config[key if ":" in key else f"{PROJECT}:{key}"] = value
    return {k: _as_config_string(v) for k, v in config.items()}


def _settle_heap() -> None:
    """Collect what earlier runs left, then freeze the survivors for the collector.

    A run allocates some 10^5 objects that live until it ends, so the collector's full passes come
    during every run, and each one walked the whole heap: the AWS provider's ~300,000 objects
    (modules, type classes), the runs kept for sharing. That was a third of a run's time (0.3 s of
    gen-2 passes per run, 10 s of the unit suite). Frozen objects are skipped by those passes (and
    never collected: a kept run's object graph lives as long as the process anyway)."""
    gc.collect()
    gc.freeze()


def _configure(mocks: Recorder, stack: str, config: dict[str, str]) -> None:
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config(config)
    global LAST
    LAST = mocks


def _run(recorder: type[Recorder], stack: str, config: dict[str, str]) -> Run:
    global RUNS, FAILED_RUNS
    RUNS += 1
    _settle_heap()
    mocks = recorder(region=config.get("aws:region", "us-east-1"))
    pulumi.runtime.settings.ROOT.set(None)  # a fresh root Stack resource named after this stack
    _configure(mocks, stack, config)
    namespace: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> None:
        namespace.update(runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"))

    try:
        with _no_stack_traces():
            program()
    except BaseException:
        FAILED_RUNS += 1
        raise
    finally:
        mocks.finish()
    return Run(mocks, namespace)


@contextlib.contextmanager
def _no_stack_traces() -> Iterator[None]:
    """Register without the SDK's stack trace of each constructor call, which the mock monitor drops.

    For the engine's diagnostics, the SDK turns every frame under each resource's constructor into
    a file URI and a line (about 50 frames under pytest): 3.3 s of the unit suite, and nothing
    reads them under mocks (``MockMonitor.RegisterResource`` uses type, name, inputs, provider, id;
    the recorder adds parent, protect, dependencies, ignoreChanges). The SDK's own answer when it
    finds no user frame, an empty trace, stands in while the program runs."""
    sdk = pulumi.runtime.resource
    captured = getattr(sdk, "_get_stack_trace", None)
    if captured is None:  # a later SDK without it: nothing to skip
        yield
        return
    sdk._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        sdk._get_stack_trace = captured


def resolve(output: Any) -> Any:
    """The value of an Output (or plain value) once the mocked program has finished."""
    box: list[Any] = []

    @pulumi.runtime.test
    def wait() -> pulumi.Output[Any]:
        return pulumi.Output.from_input(output).apply(box.append)

    wait()
    return box[0] if box else None
