"""The constraint table: what Pulumi mocks accept and AWS (or a provider) refuses.

Mocks take any combination of arguments; the provider and the AWS APIs don't, and a real
``pulumi up`` is the first to say so. Each row of ``ROWS`` is one rule that an argument the program
sets must obey, taken from the pulumi_aws / pulumi_tls / pulumi_random docstrings ("Conflicts
with", "you may not specify", "Required when", "Must be unique") or the service's limits pages,
and cites where it comes from. The tests below make the table hold its own weight:

* every row runs over every matching registration of dev, prod, a per-pull-request stack and the
  settings that register more types (``SCENARIOS``), and names resource, argument and rule;
* every row refuses a minimal bad example of its own, so no row is a predicate that never bites;
* every resource type the program registers has at least one row (a new type means new rows);
* every row's type is registered somewhere, so no row guards nothing.

How to add a row: docs/constraints.md.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

import pulumi
import pytest

from tests.unit.harness import ACCOUNT, PROJECT, ROOT, Registration, Run, run

# --------------------------------------------------------------------------------------------------
# Resource types (tokens as the engine sees them)

ACM = "aws:acm/certificate:Certificate"
ACM_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
EIP = "aws:ec2/eip:Eip"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
INSTANCE = "aws:ec2/instance:Instance"
IGW = "aws:ec2/internetGateway:InternetGateway"
NAT = "aws:ec2/natGateway:NatGateway"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
SCALING_POLICY = "aws:autoscaling/policy:Policy"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
RTA = "aws:ec2/routeTableAssociation:RouteTableAssociation"
SG = "aws:ec2/securityGroup:SecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
VPC = "aws:ec2/vpc:Vpc"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
KMS_ALIAS = "aws:kms/alias:Alias"
KMS_KEY = "aws:kms/key:Key"
RDS = "aws:rds/instance:Instance"
DB_PARAMS = "aws:rds/parameterGroup:ParameterGroup"
DB_SUBNETS = "aws:rds/subnetGroup:SubnetGroup"
RECORD = "aws:route53/record:Record"
BUCKET = "aws:s3/bucket:Bucket"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PUBLIC_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_POLICY = "aws:secretsmanager/secretPolicy:SecretPolicy"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
PARAMETER = "aws:ssm/parameter:Parameter"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
PROVIDER = "pulumi:providers:aws"
PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_STRING = "random:index/randomString:RandomString"
TLS_KEY = "tls:index/privateKey:PrivateKey"
TLS_CA = "tls:index/selfSignedCert:SelfSignedCert"
TLS_CSR = "tls:index/certRequest:CertRequest"
TLS_LEAF = "tls:index/locallySignedCert:LocallySignedCert"
ANY = "*"
"""A row about every AWS resource with tags; it doesn't count as coverage of any one type."""

BASE = ("dev", "prod", "pr-7")
"""The stacks of conftest's ``runs``: what the program registers with the committed settings."""

SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    # A Route 53 zone registers validation records, the validation and the domain record; the Sumo
    # Logic token makes every user-data bigger.
    "prod-zone": ("prod", {"hostedZoneId": "Z0123456789ABC", "sumoTokenParameter": "/foobar/prod/sumo-token"}),
}
"""Settings under which the program registers types the base stacks don't: name -> (stack, overrides)."""

REF_KEYS = ("arn", "name", "identifier", "keyId", "allocationId")
"""Outputs by which one resource names another (besides its id and URN)."""


# --------------------------------------------------------------------------------------------------
# The graph the rows look at


@dataclass
class Graph:
    """One run of the program as the rows see it, with the lookups cross-resource rules need."""

    stack: str
    region: str
    ephemeral: bool
    resources: Sequence[Registration]
    _refs: dict[str, list[Registration]] = field(init=False, default_factory=lambda: defaultdict(list))
    _urns: dict[str, Registration] = field(init=False, default_factory=dict)
    _children: dict[str, list[Registration]] = field(init=False, default_factory=lambda: defaultdict(list))
    _deps: dict[str, frozenset[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.resources:
            self._urns[r.urn] = r
            if r.parent:
                self._children[r.parent].append(r)
            for value in {r.id, r.urn, *(r.outputs.get(k) for k in REF_KEYS)}:
                if isinstance(value, str) and value:
                    self._refs[value].append(r)

    @classmethod
    def of(cls, stack: str, result: Run) -> Graph:
        settings = result.namespace.get("settings")
        return cls(stack, result.mocks.region, bool(getattr(settings, "ephemeral", False)), result.resources)

    def of_type(self, *types: str) -> list[Registration]:
        return [r for r in self.resources if r.type in types]

    def ref(self, value: Any, *types: str) -> Registration | None:
        """The resource of one of ``types`` that ``value`` (an id, ARN, name, ...) names, if the program made it."""
        if not isinstance(value, str):
            return None
        found = [r for r in self._refs.get(value, []) if not types or r.type in types]
        return found[0] if found else None

    def deps(self, r: Registration) -> frozenset[str]:
        """Every URN ``r`` waits for, directly or not; waiting for a component means waiting for its children."""
        if r.urn in self._deps:
            return self._deps[r.urn]
        self._deps[r.urn] = frozenset()  # cycles can't happen in a real graph; don't loop on a fake one
        seen: set[str] = set()
        todo = list(r.dependencies)
        while todo:
            urn = todo.pop()
            if urn in seen:
                continue
            seen.add(urn)
            other = self._urns.get(urn)
            if other is not None:
                todo.extend(other.dependencies)
                todo.extend(child.urn for child in self._children.get(urn, []))
        self._deps[r.urn] = frozenset(seen)
        return self._deps[r.urn]

    def waits_for(self, r: Registration, other: Registration) -> bool:
        return other.urn in self.deps(r)


Check = Callable[[Registration, Graph], str | None]
"""A row's predicate: None when the registration obeys the rule, else what is wrong (argument and value)."""


@dataclass(frozen=True, eq=False)
class Row:
    id: str
    types: tuple[str, ...]
    rule: str
    source: str
    """Where the rule comes from, quoted briefly: a provider docstring or an AWS page."""
    check: Check
    bad: tuple[Registration, ...]
    """Minimal examples the row must refuse, and the registrations they refer to."""
    bad_ephemeral: bool = False
    only_under: str = ""
    """A scenario name: the row's types are registered only under those settings."""
    subjects: int = 1
    """How many of the registrations in ``bad`` the row applies to are counter-examples (the rest are context)."""

    def applies(self, r: Registration) -> bool:
        if ANY in self.types:
            return r.type.startswith("aws:") and isinstance(r.inputs.get("tags"), dict)
        return r.type in self.types


ROWS: list[Row] = []
"""The table. Rows are added by ``@row`` next to their predicate."""


def row(
    id: str,
    types: str | tuple[str, ...],
    rule: str,
    source: str,
    bad: Sequence[Registration],
    *,
    bad_ephemeral: bool = False,
    only_under: str = "",
    subjects: int = 1,
) -> Callable[[Check], Check]:
    def add(check: Check) -> Check:
        kinds = types if isinstance(types, tuple) else (types,)
        ROWS.append(Row(id, kinds, rule, source, check, tuple(bad), bad_ephemeral, only_under, subjects))
        return check

    return add


def fake(
    type_: str,
    logical: str,
    /,
    *,
    out: Mapping[str, Any] | None = None,
    deps: Sequence[Registration] = (),
    **inputs: Any,
) -> Registration:
    """A registration shaped like the harness records them: id ``<name>-id``, outputs = inputs + arn/name."""
    outputs = {"arn": f"arn:aws:mock:eu-west-1:{ACCOUNT}:{logical}", "name": logical, **inputs, **(out or {})}
    return Registration(
        type_,
        logical,
        dict(inputs),
        outputs,
        "",
        f"urn:fake::{logical}",
        f"{logical}-id",
        dependencies=[d.urn for d in deps],
    )


# --------------------------------------------------------------------------------------------------
# Small helpers


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _doc(value: Any) -> dict[str, Any] | None:
    """A policy or JSON body given as a string or a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _statements(value: Any) -> list[dict[str, Any]]:
    doc = _doc(value)
    return [s for s in _list(doc.get("Statement")) if isinstance(s, dict)] if doc else []


def _compact(text: Any) -> int:
    """Policy size as IAM counts it: whitespace doesn't count."""
    return len("".join(str(text).split())) if text is not None else 0


def _problems(*items: str | None) -> str | None:
    found = [i for i in items if i]
    return "; ".join(found) if found else None


def _set(r: Registration, *keys: str) -> list[str]:
    """Which of ``keys`` the registration sets (to anything but None)."""
    return [k for k in keys if r.inputs.get(k) is not None]


def _trusted_services(role: Registration) -> set[str]:
    services: set[str] = set()
    for st in _statements(role.inputs.get("assumeRolePolicy")):
        if st.get("Effect") == "Allow" and isinstance(st.get("Principal"), dict):
            services |= {str(s) for s in _list(st["Principal"].get("Service"))}
    return services


def _role_of(value: Any, g: Graph) -> Registration | None:
    return g.ref(value, ROLE)


def _role_statements(role: Registration, g: Graph) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies."""
    return [
        st
        for p in g.of_type(ROLE_POLICY)
        if _role_of(p.inputs.get("role"), g) is role
        for st in _statements(p.inputs.get("policy"))
    ]


def _allows(statements: Iterable[dict[str, Any]], action: str, resource: str, via: str | None = None) -> bool:
    """Whether some Allow statement grants ``action`` on ``resource`` (and, with a kms:ViaService
    condition, for the service ``via``)."""
    for st in statements:
        if st.get("Effect") != "Allow" or not any(
            fnmatchcase(action.lower(), str(a).lower()) for a in _list(st.get("Action"))
        ):
            continue
        if not any(fnmatchcase(resource, str(p)) for p in _list(st.get("Resource"))):
            continue
        services = [
            str(v)
            for op in (st.get("Condition") or {}).values()
            if isinstance(op, dict)
            for v in _list(op.get("kms:ViaService"))
        ]
        if via is None or not services or any(fnmatchcase(via, s) for s in services):
            return True
    return False


IAM_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*?]+$")


def _grammar(value: Any, kind: Literal["identity", "trust", "resource"]) -> str | None:
    """What IAM's policy grammar refuses in a document (MalformedPolicyDocument)."""
    doc = _doc(value)
    if doc is None:
        return f"not a JSON policy document: {str(value)[:60]!r}"
    found: list[str] = []
    if doc.get("Version") not in (None, "2012-10-17", "2008-10-17"):
        found.append(f"Version {doc.get('Version')!r}")
    statements = _statements(doc)
    if not statements:
        found.append("no Statement")
    sids = Counter(str(st["Sid"]) for st in statements if "Sid" in st)
    found += [f"Sid {sid!r} used {n} times (Sids must be unique in a policy)" for sid, n in sids.items() if n > 1]
    for i, st in enumerate(statements):
        where = f"Statement[{i}]"
        if st.get("Effect") not in ("Allow", "Deny"):
            found.append(f"{where}.Effect {st.get('Effect')!r}")
        if ("Action" in st) == ("NotAction" in st):
            found.append(f"{where} needs exactly one of Action, NotAction")
        bad = [a for a in _list(st.get("Action", st.get("NotAction"))) if a != "*" and not IAM_ACTION.match(str(a))]
        if bad:
            found.append(f"{where} actions {bad} are not service:Action")
        principal = "Principal" in st or "NotPrincipal" in st
        resource = "Resource" in st or "NotResource" in st
        if kind == "identity" and principal:
            found.append(f"{where} names a Principal (an identity policy may not)")
        if kind != "trust" and ("Resource" in st) == ("NotResource" in st):
            found.append(f"{where} needs exactly one of Resource, NotResource")
        if kind == "trust" and resource:
            found.append(f"{where} names a Resource (a trust policy may not)")
        if kind != "identity" and not principal:
            found.append(f"{where} names no Principal")
        if kind != "resource" and "Sid" in st and not re.fullmatch(r"[A-Za-z0-9]*", str(st["Sid"])):
            found.append(f"{where}.Sid {st['Sid']!r} is not alphanumeric")
    return "; ".join(found) or None


def _trust(*services: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": list(services)}, "Action": "sts:AssumeRole"}],
        }
    )


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ARN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/"
DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _dns_problem(name: str, *, wildcard: bool = False) -> str | None:
    labels = name.rstrip(".").split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if len(name.rstrip(".")) > 253 or len(labels) < 2 or not all(DNS_LABEL.match(label) for label in labels):
        return f"{name!r} is not a DNS name (labels 1-63 of letters, digits, hyphens; 253 in all)"
    return None


# --------------------------------------------------------------------------------------------------
# RDS


def _replica(r: Registration) -> bool:
    return bool(r.inputs.get("replicateSourceDb"))


def _source(r: Registration, g: Graph) -> Registration | None:
    return g.ref(r.inputs.get("replicateSourceDb"), RDS) if _replica(r) else None


def _effective(r: Registration, g: Graph, key: str) -> Any:
    """An RDS argument, or the source's for a replica that doesn't set it (replicas inherit)."""
    value = r.inputs.get(key)
    if value is None and (src := _source(r, g)) is not None:
        return src.inputs.get(key)
    return value


def _db_parameters(r: Registration, g: Graph) -> dict[str, str] | None:
    group = g.ref(r.inputs.get("parameterGroupName"), DB_PARAMS)
    if group is None:
        return None
    return {
        str(p.get("name")): str(p.get("value")) for p in _list(group.inputs.get("parameters")) if isinstance(p, dict)
    }


@row(
    "rds-replica-of-managed-password",
    RDS,
    "a read replica's source must not have manageMasterUserPassword",
    'RDS User Guide, "Limitations for Secrets Manager integration with Amazon RDS": "Creating read replicas for '
    'source instance with engine mysql where ManageMasterUserPassword is enabled is not supported"',
    [
        fake(RDS, "db-replica", replicateSourceDb="foobar-dev-a1b2c3"),
        fake(RDS, "db-primary", out={"identifier": "foobar-dev-a1b2c3"}, engine="mysql", manageMasterUserPassword=True),
    ],
)
def _rds_replica_of_managed(r: Registration, g: Graph) -> str | None:
    src = _source(r, g)
    if src is not None and src.inputs.get("manageMasterUserPassword"):
        source = r.inputs["replicateSourceDb"]
        return f"replicateSourceDb={source!r} is {src.name}, which sets manageMasterUserPassword=true"
    return None


@row(
    "rds-managed-password-conflicts",
    RDS,
    "manageMasterUserPassword excludes password and passwordWo",
    'pulumi_aws rds.Instance manage_master_user_password: "Cannot be set if `password` or `password_wo` is provided"',
    [
        fake(RDS, "db", manageMasterUserPassword=True, password="s3cret-pass"),
        fake(RDS, "db-wo", manageMasterUserPassword=True, passwordWo="s3cret-pass", passwordWoVersion=1),
    ],
    subjects=2,
)
def _rds_managed_conflicts(r: Registration, g: Graph) -> str | None:
    both = _set(r, "password", "passwordWo")
    if r.inputs.get("manageMasterUserPassword") and both:
        return f"manageMasterUserPassword=true together with {', '.join(both)}"
    return None


def _unique_part(value: str, g: Graph) -> bool:
    """Whether ``value`` carries something that differs per instance: a random resource's value,
    or a run of hex digits (what a random suffix looks like under mocks) beyond the stack name."""
    randoms = [
        str(v)
        for x in g.resources
        if x.type.startswith("random:") and x.type != PASSWORD
        for k in ("result", "hex", "b64Url", "dec")
        if isinstance(v := x.outputs.get(k), str | int) and len(str(v)) >= 4
    ]
    if any(v in value for v in randoms):
        return True
    rest = value.replace(g.stack, "")
    return any(any(c.isdigit() for c in run_) for run_ in re.findall(r"[0-9a-f]{6,}", rest))


@row(
    "rds-final-snapshot-unique",
    RDS,
    "finalSnapshotIdentifier is unique per instance, not a constant of the stack",
    "RDS DeleteDBInstance: FinalDBSnapshotIdentifier must not name an existing snapshot, else "
    "DBSnapshotAlreadyExists: the second delete or replacement of the stack's database fails (issue 10, item 5)",
    [
        fake(RDS, "db", skipFinalSnapshot=False, finalSnapshotIdentifier="foobar-dev-final"),
        fake(RDS, "db-2", skipFinalSnapshot=False, finalSnapshotIdentifier="foobar-dev-db-final-snapshot-v2"),
    ],
    subjects=2,
)
def _rds_final_unique(r: Registration, g: Graph) -> str | None:
    ident = r.inputs.get("finalSnapshotIdentifier")
    if isinstance(ident, str) and not _replica(r) and not _unique_part(ident, g):
        return f"finalSnapshotIdentifier={ident!r} is derived from the stack name only: the same for every instance"
    return None


@row(
    "rds-final-snapshot-required",
    RDS,
    "without skipFinalSnapshot a final snapshot identifier is required; a replica must not have one",
    'pulumi_aws rds.Instance final_snapshot_identifier: "Must be provided if `skip_final_snapshot` is set to '
    '`false`. ... Must not be provided when deleting a read replica" (skip_final_snapshot "Default is `false`")',
    [
        fake(RDS, "db", engine="mysql"),
        fake(RDS, "db-replica", replicateSourceDb="foobar-dev-a1b2c3", finalSnapshotIdentifier="replica-final"),
    ],
    subjects=2,
)
def _rds_final_required(r: Registration, g: Graph) -> str | None:
    ident = r.inputs.get("finalSnapshotIdentifier")
    if _replica(r):
        return f"a read replica sets finalSnapshotIdentifier={ident!r}" if ident else None
    if not r.inputs.get("skipFinalSnapshot") and not ident:
        return "skipFinalSnapshot is false (or unset) and finalSnapshotIdentifier is not set"
    return None


SNAPSHOT_ID = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)$")


@row(
    "rds-final-snapshot-format",
    RDS,
    "finalSnapshotIdentifier: 1-255 letters, digits, hyphens; a letter first; no '--'; no hyphen last",
    'pulumi_aws rds.Instance final_snapshot_identifier: "must begin with a letter, only contain alphanumeric '
    'characters and hyphens, and not end with a hyphen or contain two consecutive hyphens"',
    [fake(RDS, "db", finalSnapshotIdentifier="foobar--dev-final-")],
)
def _rds_final_format(r: Registration, g: Graph) -> str | None:
    ident = r.inputs.get("finalSnapshotIdentifier")
    if isinstance(ident, str) and not SNAPSHOT_ID.match(ident):
        return f"finalSnapshotIdentifier={ident!r}"
    return None


RDS_ID = re.compile(r"^[a-z](?!.*--)[a-z0-9-]*(?<!-)$")
PREFIX_SUFFIX = 26
"""What the provider appends to a ``*_prefix`` (terraform-plugin-sdk id.UniqueIDSuffixLength)."""


@row(
    "rds-identifier",
    RDS,
    "the instance identifier: 1-63 lowercase letters, digits, hyphens; a letter first; no '--'; no hyphen last "
    "(identifierPrefix: at most 63 - 26 = 37 characters; identifier conflicts with identifierPrefix)",
    'RDS CreateDBInstance DBInstanceIdentifier: "From 1 to 63 letters, numbers, or hyphens. First character must '
    "be a letter. Can't end with a hyphen or contain two consecutive hyphens\"; pulumi_aws identifier_prefix: "
    '"Conflicts with `identifier`"',
    [fake(RDS, "db", identifierPrefix="foobar-a-rather-long-stack-name-replica-")],
)
def _rds_identifier(r: Registration, g: Graph) -> str | None:
    ident, prefix = r.inputs.get("identifier"), r.inputs.get("identifierPrefix")
    if ident is not None and prefix is not None:
        return "identifier and identifierPrefix are both set"
    if isinstance(ident, str):
        return None if len(ident) <= 63 and RDS_ID.match(ident) else f"identifier={ident!r}"
    if isinstance(prefix, str):
        ok = len(prefix) + PREFIX_SUFFIX <= 63 and re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]*", prefix)
        return None if ok else f"identifierPrefix={prefix!r} ({len(prefix)} characters, at most 37)"
    auto = f"{r.name}-abcdefg"  # Pulumi's auto-name: the resource name and 7 random characters
    return None if len(auto) <= 63 and RDS_ID.match(auto) else f"auto-named from resource name {r.name!r}"


@row(
    "rds-log-exports-to-file",
    RDS,
    "exporting slowquery/general needs a parameter group with log_output=FILE and that log turned on",
    'RDS User Guide, "Publishing MySQL logs to Amazon CloudWatch Logs": "The DB instance must use a custom '
    'parameter group with the parameter setting log_output = FILE"; slow query log: "slow_query_log = 1"; general '
    'log: "general_log = 1" (MySQL writes them to a table by default)',
    [
        fake(RDS, "db", enabledCloudwatchLogsExports=["error", "slowquery"], parameterGroupName="db-params"),
        fake(RDS, "db-general", enabledCloudwatchLogsExports=["general"], parameterGroupName="file-params"),
        fake(RDS, "db-default-group", enabledCloudwatchLogsExports=["slowquery"]),
        fake(DB_PARAMS, "db-params", family="mysql8.4", parameters=[{"name": "slow_query_log", "value": "1"}]),
        fake(DB_PARAMS, "file-params", family="mysql8.4", parameters=[{"name": "log_output", "value": "FILE"}]),
    ],
    subjects=3,
)
def _rds_log_exports(r: Registration, g: Graph) -> str | None:
    wanted = {"slowquery": "slow_query_log", "general": "general_log"}
    exports = set(_list(r.inputs.get("enabledCloudwatchLogsExports"))) & set(wanted)
    if not exports:
        return None
    params = _db_parameters(r, g)
    if params is None:
        return f"exports {sorted(exports)} with the default parameter group (log_output=TABLE)"
    found = []
    if "FILE" not in params.get("log_output", "TABLE").upper().split(","):
        found.append(
            f"exports {sorted(exports)} but parameter log_output={params.get('log_output', 'TABLE (default)')}"
        )
    found += [f"exports {e} but {wanted[e]} is not 1" for e in sorted(exports) if params.get(wanted[e]) != "1"]
    return "; ".join(found) or None


MYSQL_EXPORTS = {"audit", "error", "general", "slowquery", "iam-db-auth-error"}


@row(
    "rds-log-export-values",
    RDS,
    "enabledCloudwatchLogsExports holds MySQL log types only; audit needs an option group",
    'RDS CreateDBInstance EnableCloudwatchLogsExports, MySQL: "audit, error, general, iam-db-auth-error, '
    'slowquery"; audit log: "a custom option group with the MARIADB_AUDIT_PLUGIN option"',
    [fake(RDS, "db", engine="mysql", enabledCloudwatchLogsExports=["error", "slow-query"])],
)
def _rds_export_values(r: Registration, g: Graph) -> str | None:
    exports = set(_list(r.inputs.get("enabledCloudwatchLogsExports")))
    return _problems(
        f"unknown log types {sorted(exports - MYSQL_EXPORTS)}" if exports - MYSQL_EXPORTS else None,
        "exports audit without optionGroupName" if "audit" in exports and not r.inputs.get("optionGroupName") else None,
    )


@row(
    "rds-replica-no-master-arguments",
    RDS,
    "a read replica sets none of dbName, username, password, passwordWo, manageMasterUserPassword",
    'pulumi_aws rds.Instance db_name / username: "Cannot be specified for a replica"; a replica takes its master '
    "user from the source",
    [
        fake(RDS, "db-replica", replicateSourceDb="foobar-dev-a1b2c3", dbName="foobar", username="foobar_admin"),
        fake(RDS, "db-replica-2", replicateSourceDb="foobar-dev-a1b2c3", passwordWo="long-enough-password"),
        fake(RDS, "db-replica-3", replicateSourceDb="foobar-dev-a1b2c3", manageMasterUserPassword=True),
    ],
    subjects=3,
)
def _rds_replica_master(r: Registration, g: Graph) -> str | None:
    if not _replica(r):
        return None
    found = _set(r, "dbName", "username", "password", "passwordWo")
    if r.inputs.get("manageMasterUserPassword"):
        found.append("manageMasterUserPassword")
    return f"a replica sets {', '.join(found)}" if found else None


@row(
    "rds-replica-subnet-group",
    RDS,
    "a same-region replica with dbSubnetGroupName names its source by ARN",
    'pulumi_aws rds.Instance replicate_source_db: "If specifying the `db_subnet_group_name` in the same region, '
    'use the `arn` of the source DB"',
    [fake(RDS, "db-replica", replicateSourceDb="foobar-dev-a1b2c3", dbSubnetGroupName="db-subnets")],
)
def _rds_replica_subnets(r: Registration, g: Graph) -> str | None:
    source = r.inputs.get("replicateSourceDb")
    if _replica(r) and r.inputs.get("dbSubnetGroupName") and not str(source).startswith("arn:"):
        return f"dbSubnetGroupName is set and replicateSourceDb={source!r} is not an ARN"
    return None


@row(
    "rds-replica-source-backups",
    RDS,
    "the source of a read replica keeps backups (backupRetentionPeriod > 0)",
    'pulumi_aws rds.Instance backup_retention_period: "Must be greater than `0` if the database is used as a '
    'source for a Read Replica"',
    [
        fake(RDS, "db-replica", replicateSourceDb="foobar-dev-a1b2c3"),
        fake(RDS, "db-primary", out={"identifier": "foobar-dev-a1b2c3"}, backupRetentionPeriod=0),
    ],
)
def _rds_source_backups(r: Registration, g: Graph) -> str | None:
    src = _source(r, g)
    if src is not None and not (_num(src.inputs.get("backupRetentionPeriod")) or 0) > 0:
        return f"source {src.name} has backupRetentionPeriod={src.inputs.get('backupRetentionPeriod')!r}"
    return None


@row(
    "rds-backup-retention",
    RDS,
    "backupRetentionPeriod is 0 to 35",
    'pulumi_aws rds.Instance backup_retention_period: "Must be between `0` and `35`"',
    [fake(RDS, "db", backupRetentionPeriod=36)],
)
def _rds_retention(r: Registration, g: Graph) -> str | None:
    days = _num(r.inputs.get("backupRetentionPeriod"))
    return f"backupRetentionPeriod={days:g}" if days is not None and not 0 <= days <= 35 else None


NO_INSIGHTS = {"db.t2.micro", "db.t2.small", "db.t3.micro", "db.t3.small", "db.t4g.micro", "db.t4g.small"}


@row(
    "rds-performance-insights-class",
    RDS,
    "performanceInsightsEnabled only on classes that support it (not db.t2/t3/t4g micro and small)",
    'RDS User Guide, "DB engine, Region, and instance class support for Database Insights", RDS for MySQL: '
    "\"isn't supported for the following instance classes: db.t2.micro, db.t2.small, db.t3.micro, db.t3.small, "
    'db.t4g.micro, db.t4g.small"',
    [fake(RDS, "db", instanceClass="db.t4g.micro", performanceInsightsEnabled=True)],
)
def _rds_insights(r: Registration, g: Graph) -> str | None:
    cls = r.inputs.get("instanceClass")
    if r.inputs.get("performanceInsightsEnabled") and cls in NO_INSIGHTS:
        return f"performanceInsightsEnabled=true on instanceClass={cls}"
    return None


MONITORING_INTERVALS = {0, 1, 5, 10, 15, 30, 60}


@row(
    "rds-monitoring-interval",
    RDS,
    "monitoringInterval is one of 0, 1, 5, 10, 15, 30, 60; > 0 requires monitoringRoleArn, and a role requires > 0",
    'pulumi_aws rds.Instance monitoring_interval: "Valid Values: 0, 1, 5, 10, 15, 30, 60"; RDS CreateDBInstance '
    'MonitoringRoleArn: "If MonitoringInterval is set to a value other than 0, supply a MonitoringRoleArn value" '
    '/ "If MonitoringRoleArn is specified, then you must set MonitoringInterval to a value other than 0"',
    [
        fake(RDS, "db", monitoringInterval=60),
        fake(RDS, "db-2", monitoringInterval=0, monitoringRoleArn=f"{ARN_ROLE}db-monitoring"),
        fake(RDS, "db-3", monitoringInterval=20, monitoringRoleArn=f"{ARN_ROLE}db-monitoring"),
    ],
    subjects=3,
)
def _rds_monitoring(r: Registration, g: Graph) -> str | None:
    interval = _num(r.inputs.get("monitoringInterval")) or 0
    role = r.inputs.get("monitoringRoleArn")
    return _problems(
        f"monitoringInterval={interval:g}" if interval not in MONITORING_INTERVALS else None,
        f"monitoringInterval={interval:g} without monitoringRoleArn" if interval and not role else None,
        f"monitoringRoleArn={role!r} with monitoringInterval=0" if role and not interval else None,
    )


@row(
    "rds-monitoring-role",
    RDS,
    "the Enhanced Monitoring role trusts monitoring.rds.amazonaws.com and has AmazonRDSEnhancedMonitoringRole",
    'RDS User Guide, "Setting up and enabling Enhanced Monitoring": the role trusts monitoring.rds.amazonaws.com '
    'and has the AmazonRDSEnhancedMonitoringRole policy; else InvalidParameterValue: "IAM role ARN value is '
    'invalid or does not include the required permissions for: ENHANCED_MONITORING"',
    [
        fake(RDS, "db", monitoringInterval=60, monitoringRoleArn=f"{ARN_ROLE}db-monitoring"),
        fake(
            ROLE, "db-monitoring", out={"arn": f"{ARN_ROLE}db-monitoring"}, assumeRolePolicy=_trust("ec2.amazonaws.com")
        ),
    ],
)
def _rds_monitoring_role(r: Registration, g: Graph) -> str | None:
    role = g.ref(r.inputs.get("monitoringRoleArn"), ROLE)
    if role is None:
        return None
    attached = [a.inputs.get("policyArn") for a in g.of_type(ATTACHMENT) if _role_of(a.inputs.get("role"), g) is role]
    return _problems(
        None
        if "monitoring.rds.amazonaws.com" in _trusted_services(role)
        else f"role {role.name} doesn't trust monitoring.rds.amazonaws.com",
        None
        if any(str(p).endswith(":policy/service-role/AmazonRDSEnhancedMonitoringRole") for p in attached)
        else f"role {role.name} lacks service-role/AmazonRDSEnhancedMonitoringRole",
    )


@row(
    "rds-engine-version-prefix",
    RDS,
    "an engineVersion prefix (8.4, not 8.4.7) needs autoMinorVersionUpgrade",
    'pulumi_aws rds.Instance engine_version: "If `auto_minor_version_upgrade` is enabled, you can provide a '
    'prefix of the version such as `8.0`"',
    [fake(RDS, "db", engine="mysql", engineVersion="8.4", autoMinorVersionUpgrade=False)],
)
def _rds_version_prefix(r: Registration, g: Graph) -> str | None:
    version = r.inputs.get("engineVersion")
    if (
        isinstance(version, str)
        and re.fullmatch(r"\d+\.\d+", version)
        and r.inputs.get("autoMinorVersionUpgrade") is False
    ):
        return f"engineVersion={version!r} with autoMinorVersionUpgrade=false"
    return None


@row(
    "rds-parameter-group-family",
    RDS,
    "the instance's parameter group is of its engine's family (mysql + major.minor)",
    'RDS ModifyDBInstance/CreateDBInstance: "The parameter group ... is not compatible with the engine version" '
    "(InvalidParameterCombination): a group of family mysql8.0 can't serve MySQL 8.4",
    [
        fake(RDS, "db", engine="mysql", engineVersion="8.4", parameterGroupName="db-params"),
        fake(DB_PARAMS, "db-params", family="mysql8.0"),
    ],
)
def _rds_family(r: Registration, g: Graph) -> str | None:
    group = g.ref(r.inputs.get("parameterGroupName"), DB_PARAMS)
    engine, version = _effective(r, g, "engine"), _effective(r, g, "engineVersion")
    if group is None or engine != "mysql" or not isinstance(version, str):
        return None
    family = "mysql" + ".".join(version.split(".")[:2])
    if group.inputs.get("family") != family:
        found = group.inputs.get("family")
        return f"engineVersion={version!r} uses parameter group {group.name} of family {found!r}, not {family}"
    return None


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@row(
    "rds-windows",
    RDS,
    "backupWindow hh24:mi-hh24:mi and maintenanceWindow ddd:hh24:mi-ddd:hh24:mi, each >= 30 minutes, not overlapping",
    'pulumi_aws rds.Instance backup_window: "Must not overlap with `maintenance_window`"; RDS CreateDBInstance '
    'PreferredBackupWindow / PreferredMaintenanceWindow: "Must be at least 30 minutes"',
    [fake(RDS, "db", backupWindow="04:00-05:00", maintenanceWindow="sun:04:30-sun:05:30")],
)
def _rds_windows(r: Registration, g: Graph) -> str | None:
    backup, maintenance = r.inputs.get("backupWindow"), r.inputs.get("maintenanceWindow")
    found = []
    spans: list[tuple[int, int]] = []
    if isinstance(backup, str):
        m = re.fullmatch(r"(\d\d:\d\d)-(\d\d:\d\d)", backup)
        if not m:
            return f"backupWindow={backup!r}"
        start, end = _minutes(m[1]), _minutes(m[2])
        length = (end - start) % 1440
        if length < 30:
            found.append(f"backupWindow={backup!r} is shorter than 30 minutes")
        spans = [(day * 1440 + start, day * 1440 + start + length) for day in range(8)]
    if isinstance(maintenance, str):
        m = re.fullmatch(r"([a-z]{3}):(\d\d:\d\d)-([a-z]{3}):(\d\d:\d\d)", maintenance.lower())
        if not m or m[1] not in DAYS or m[3] not in DAYS:
            return _problems(*found, f"maintenanceWindow={maintenance!r}")
        start = DAYS.index(m[1]) * 1440 + _minutes(m[2])
        end = DAYS.index(m[3]) * 1440 + _minutes(m[4])
        length = (end - start) % (7 * 1440)
        if length < 30:
            found.append(f"maintenanceWindow={maintenance!r} is shorter than 30 minutes")
        if any(a < start + length and start < b for a, b in spans):
            found.append(f"backupWindow={backup!r} overlaps maintenanceWindow={maintenance!r}")
    return "; ".join(found) or None


@row(
    "rds-storage",
    RDS,
    "gp3 MySQL storage 20-65536 GiB; maxAllocatedStorage (when not 0) above allocatedStorage and at most 65536",
    'pulumi_aws rds.Instance max_allocated_storage: "set `max_allocated_storage` to **greater than or equal to** '
    '`allocated_storage`"; RDS User Guide, "Amazon RDS DB instance storage": MySQL gp3 20 GiB-64 TiB',
    [fake(RDS, "db", storageType="gp3", allocatedStorage=100, maxAllocatedStorage=80)],
)
def _rds_storage(r: Registration, g: Graph) -> str | None:
    allocated = _num(_effective(r, g, "allocatedStorage"))
    top = _num(r.inputs.get("maxAllocatedStorage"))
    return _problems(
        f"allocatedStorage={allocated:g}" if allocated is not None and not 20 <= allocated <= 65536 else None,
        f"maxAllocatedStorage={top:g} is not above allocatedStorage={allocated:g}"
        if top and allocated is not None and top < allocated
        else None,
        f"maxAllocatedStorage={top:g} exceeds 65536" if top and top > 65536 else None,
    )


@row(
    "rds-gp3-performance",
    RDS,
    "iops and storageThroughput only with io1/io2/gp3, and on gp3 only from 400 GiB (MySQL)",
    'pulumi_aws rds.Instance iops: "Can only be set when `storage_type` is `"io1"`, `"io2` or `"gp3"`. Cannot be '
    'specified for gp3 storage if the `allocated_storage` value is below a per-`engine` threshold"',
    [fake(RDS, "db", storageType="gp3", allocatedStorage=100, iops=12000)],
)
def _rds_gp3(r: Registration, g: Graph) -> str | None:
    tuned = _set(r, "iops", "storageThroughput")
    kind = r.inputs.get("storageType", "gp2")
    allocated = _num(_effective(r, g, "allocatedStorage")) or 0
    if tuned and (kind not in ("io1", "io2", "gp3") or (kind == "gp3" and allocated < 400)):
        return f"{', '.join(tuned)} with storageType={kind} and {allocated:g} GiB"
    return None


@row(
    "rds-replica-encryption",
    RDS,
    "a read replica is encrypted exactly when its source is",
    'RDS User Guide, "Encrypting Amazon RDS resources": "You can\'t have an encrypted read replica of an '
    'unencrypted DB instance or an unencrypted read replica of an encrypted DB instance"',
    [
        fake(RDS, "db-replica", replicateSourceDb="foobar-dev-a1b2c3", storageEncrypted=False),
        fake(RDS, "db-primary", out={"identifier": "foobar-dev-a1b2c3"}, storageEncrypted=True),
    ],
)
def _rds_replica_encryption(r: Registration, g: Graph) -> str | None:
    src = _source(r, g)
    mine = r.inputs.get("storageEncrypted")
    if src is not None and mine is not None and bool(mine) != bool(src.inputs.get("storageEncrypted")):
        return f"storageEncrypted={mine} but source {src.name} has {bool(src.inputs.get('storageEncrypted'))}"
    return None


RDS_PASSWORD = re.compile(r"[\x21-\x7e]*")


@row(
    "rds-master-password",
    RDS,
    'the master password: 8-41 printable ASCII characters, none of / " @ or space; passwordWo needs passwordWoVersion',
    'RDS CreateDBInstance MasterUserPassword: "Can include any printable ASCII character except \\"/\\", \\"\\"\\", '
    'or \\"@\\" ... RDS for MySQL - Must contain from 8 to 41 characters"; pulumi_aws password_wo_version: '
    '"Required when `password_wo` is set"',
    [
        fake(RDS, "db", password="pass@word-1"),
        fake(RDS, "db-short", password="short"),
        fake(RDS, "db-wo", passwordWo="long-enough-password"),
    ],
    subjects=3,
)
def _rds_password(r: Registration, g: Graph) -> str | None:
    found = []
    for key in ("password", "passwordWo"):
        value = r.inputs.get(key)
        if isinstance(value, str):
            if not 8 <= len(value) <= 41:
                found.append(f"{key} has {len(value)} characters")
            if not RDS_PASSWORD.fullmatch(value) or set(value) & set('/"@'):
                found.append(f'{key} has a character outside printable ASCII or one of / " @ space')
    if r.inputs.get("passwordWo") is not None and r.inputs.get("passwordWoVersion") is None:
        found.append("passwordWo without passwordWoVersion")
    return "; ".join(found) or None


RESERVED_USERS = {"rdsadmin", "rdsrepladmin", "rdsproxyadmin", "rdssecretsmanager", "mysql.sys", "mysql.session"}


@row(
    "rds-names",
    RDS,
    "dbName: a letter, then letters, digits, underscores (<= 64); username: the same, <= 16, not an RDS-reserved user",
    'RDS CreateDBInstance DBName (MySQL): "1 to 64 letters or numbers ... Must begin with a letter. Subsequent '
    'characters can be letters, underscores, or digits"; MasterUsername: "Must be 1 to 16 letters, numbers, or '
    "underscores. First character must be a letter. Can't be a reserved word\"",
    [fake(RDS, "db", dbName="foo-bar", username="rdsadmin")],
)
def _rds_names(r: Registration, g: Graph) -> str | None:
    db, user = r.inputs.get("dbName"), r.inputs.get("username")
    return _problems(
        f"dbName={db!r}" if isinstance(db, str) and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", db) else None,
        f"username={user!r}"
        if isinstance(user, str)
        and (not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", user) or user.lower() in RESERVED_USERS)
        else None,
    )


# --------------------------------------------------------------------------------------------------
# RDS parameter and subnet groups

STATIC_MYSQL = {
    "tls_version",
    "performance_schema",
    "lower_case_table_names",
    "innodb_buffer_pool_instances",
    "innodb_log_buffer_size",
}
"""MySQL parameters RDS marks static (apply only after a reboot)."""


@row(
    "rds-parameter-group-family-value",
    DB_PARAMS,
    "family is a MySQL family RDS offers (mysql8.0, mysql8.4)",
    'pulumi_aws rds.ParameterGroup family: "Family of the DB parameter group"; RDS DescribeDBEngineVersions '
    "DBParameterGroupFamily for MySQL 8.0 and 8.4",
    [fake(DB_PARAMS, "db-params", family="mysql8")],
)
def _pg_family(r: Registration, g: Graph) -> str | None:
    family = r.inputs.get("family")
    return None if family in ("mysql8.0", "mysql8.4") else f"family={family!r}"


@row(
    "rds-parameter-apply-method",
    DB_PARAMS,
    "static parameters use applyMethod pending-reboot; each parameter appears once",
    'RDS ModifyDBParameterGroup: "You can use the immediate value with dynamic parameters only. You can use the '
    'pending-reboot value for both dynamic and static parameters" (InvalidParameterCombination); tls_version is '
    "static",
    [
        fake(
            DB_PARAMS,
            "db-params",
            family="mysql8.4",
            parameters=[{"name": "tls_version", "value": "TLSv1.2", "applyMethod": "immediate"}],
        )
    ],
)
def _pg_apply(r: Registration, g: Graph) -> str | None:
    params = [p for p in _list(r.inputs.get("parameters")) if isinstance(p, dict)]
    counts = Counter(str(p.get("name")) for p in params)
    return _problems(
        *(
            f"{p.get('name')} is static but applyMethod={p.get('applyMethod', 'immediate')!r}"
            for p in params
            if p.get("name") in STATIC_MYSQL and p.get("applyMethod", "immediate") != "pending-reboot"
        ),
        *(f"parameter {n} appears {c} times" for n, c in counts.items() if c > 1),
    )


@row(
    "rds-group-names",
    (DB_PARAMS, DB_SUBNETS),
    "parameter group names: letters, digits, hyphens, a letter first, no '--', no hyphen last; subnet group "
    "names: lowercase letters, digits, '.', '_', ' ', '-', not 'default'; both <= 255 (auto-names add 8 characters)",
    'RDS CreateDBParameterGroup DBParameterGroupName: "Must be 1 to 255 letters, numbers, or hyphens. First '
    "character must be a letter. Can't end with a hyphen or contain two consecutive hyphens\"; CreateDBSubnetGroup "
    'DBSubnetGroupName: "no more than 255 letters, numbers, periods, underscores, spaces, or hyphens. Must not be '
    'default"',
    [fake(DB_PARAMS, "db_params", family="mysql8.4")],
)
def _rds_group_names(r: Registration, g: Graph) -> str | None:
    name = r.inputs.get("name") or f"{r.name}-abcdefg"
    if r.type == DB_PARAMS:
        ok = len(name) <= 255 and re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]*(?<!-)", name)
    else:
        ok = len(name) <= 255 and name != "default" and re.fullmatch(r"[a-z0-9._ -]+", name)
    return None if ok else f"name {name!r}"


@row(
    "rds-subnet-group-spans-azs",
    DB_SUBNETS,
    "a DB subnet group has subnets in at least two AZs, all in one VPC",
    'RDS CreateDBSubnetGroup: "must contain at least one subnet in at least two AZs in the Amazon Web Services '
    'Region" (DBSubnetGroupDoesNotCoverEnoughAZs); "InvalidSubnet: subnets must be in the same VPC"',
    [
        fake(DB_SUBNETS, "db-subnets", subnetIds=["db-0-id"]),
        fake(SUBNET, "db-0", availabilityZone="eu-west-1a", vpcId="vpc-id"),
    ],
)
def _rds_subnet_azs(r: Registration, g: Graph) -> str | None:
    subnets = [g.ref(s, SUBNET) for s in _list(r.inputs.get("subnetIds"))]
    known = [s for s in subnets if s is not None]
    if len(known) != len(subnets):
        return None
    zones = {s.inputs.get("availabilityZone") for s in known}
    vpcs = {s.inputs.get("vpcId") for s in known}
    return _problems(
        f"subnets cover {len(zones)} AZ: {sorted(map(str, zones))}" if len(zones) < 2 else None,
        f"subnets in {len(vpcs)} VPCs" if len(vpcs) > 1 else None,
    )


# --------------------------------------------------------------------------------------------------
# CloudWatch alarms

SINGLE_METRIC = ("metricName", "namespace", "period", "statistic", "extendedStatistic", "dimensions")


def _queries(r: Registration) -> list[dict[str, Any]]:
    return [q for q in _list(r.inputs.get("metricQueries")) if isinstance(q, dict)]


@row(
    "alarm-metric-queries-exclusive",
    ALARM,
    "with metricQueries: none of metricName, namespace, period, statistic, extendedStatistic, dimensions",
    'pulumi_aws cloudwatch.MetricAlarm: "If you specify at least one `metric_query`, you may not specify a '
    '`metric_name`, `namespace`, `period` or `statistic`"',
    [
        fake(ALARM, "lb-5xx-rate", period=60, metricQueries=[{"id": "pct", "expression": "1", "returnData": True}]),
        fake(
            ALARM,
            "rate-2",
            namespace="foobar",
            dimensions={"Stack": "dev"},
            metricQueries=[{"id": "m", "expression": "1"}],
        ),
    ],
    subjects=2,
)
def _alarm_exclusive(r: Registration, g: Graph) -> str | None:
    clash = _set(r, *SINGLE_METRIC)
    return f"metricQueries together with {', '.join(clash)}" if _queries(r) and clash else None


@row(
    "alarm-single-metric-complete",
    ALARM,
    "without metricQueries: metricName, namespace, period and exactly one of statistic, extendedStatistic",
    'pulumi_aws cloudwatch.MetricAlarm: "If you do not specify a `metric_query`, you must specify each of these '
    '(although you may use `extended_statistic` instead of `statistic`)"',
    [
        fake(ALARM, "cpu", metricName="CPUUtilization", namespace="AWS/EC2", statistic="Average"),
        fake(
            ALARM,
            "cpu-2",
            metricName="CPUUtilization",
            namespace="AWS/EC2",
            period=60,
            statistic="Average",
            extendedStatistic="p99",
        ),
    ],
    subjects=2,
)
def _alarm_single(r: Registration, g: Graph) -> str | None:
    if _queries(r) or r.inputs.get("thresholdMetricId"):
        return None
    missing = [k for k in ("metricName", "namespace", "period") if r.inputs.get(k) is None]
    stats = _set(r, "statistic", "extendedStatistic")
    return _problems(
        f"no metricQueries and no {', '.join(missing)}" if missing else None,
        f"needs exactly one of statistic, extendedStatistic; has {stats or 'none'}" if len(stats) != 1 else None,
    )


QUERY_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")


def _expression_ids(expression: str) -> set[str]:
    """The ids a metric-math expression refers to: lowercase names that aren't quoted or called."""
    if re.search(r"\bSELECT\b|SEARCH\s*\(", expression):
        return set()
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", expression)
    return set(re.findall(r"(?<![\w.])([a-z][A-Za-z0-9_]*)\b(?!\s*\()", bare))


@row(
    "alarm-metric-queries-well-formed",
    ALARM,
    "metric queries: at most 20; ids unique, lowercase first; each exactly one of metric, expression; a metric "
    "has metricName, stat, period; expressions refer to defined ids; exactly one query returns data (unset means "
    "true)",
    'pulumi_aws MetricAlarmMetricQuery: "Specify exactly one `metric_query` to be `true`" / "You must specify '
    'either `metric` or `expression`. Not both" / id: "The first character must be a lowercase letter"; '
    'metric_queries: "You may specify at most 20"',
    [
        fake(
            ALARM,
            "lb-5xx-rate",
            metricQueries=[
                {
                    "id": "e",
                    "returnData": False,
                    "metric": {"metricName": "x", "namespace": "n", "stat": "Sum", "period": 60},
                },
                {"id": "Pct", "expression": "100 * e / r", "returnData": False},
            ],
        ),
        fake(ALARM, "two-results", metricQueries=[{"id": "a", "expression": "1"}, {"id": "b", "expression": "a * 2"}]),
        fake(
            ALARM,
            "both",
            metricQueries=[{"id": "m", "expression": "1", "metric": {"metricName": "x", "stat": "Sum", "period": 60}}],
        ),
    ],
    subjects=3,
)
def _alarm_queries(r: Registration, g: Graph) -> str | None:
    queries = _queries(r)
    if not queries:
        return None
    ids = [str(q.get("id")) for q in queries]
    found = [f"{len(queries)} queries (at most 20)"] if len(queries) > 20 else []
    found += [f"query id {i!r}" for i in ids if not QUERY_ID.match(i)]
    found += [f"query id {i!r} is used {n} times" for i, n in Counter(ids).items() if n > 1]
    returning = [str(q.get("id")) for q in queries if q.get("returnData", True) is not False]
    if len(returning) != 1:
        found.append(f"{len(returning)} queries return data: {returning}")
    for q in queries:
        qid, metric, expr = q.get("id"), q.get("metric"), q.get("expression")
        if (metric is None) == (expr is None):
            found.append(f"query {qid!r} needs exactly one of metric, expression")
        if isinstance(metric, dict):
            missing = [k for k in ("metricName", "stat", "period") if metric.get(k) is None]
            if missing:
                found.append(f"query {qid!r} metric lacks {', '.join(missing)}")
        if isinstance(expr, str) and (unknown := _expression_ids(expr) - set(ids)):
            found.append(f"query {qid!r} expression refers to unknown ids {sorted(unknown)}")
    return "; ".join(found) or None


def _valid_period(p: float, *, high_resolution: bool = True) -> bool:
    return p in ((1, 5, 10, 20, 30) if high_resolution else ()) or (p >= 60 and p % 60 == 0)


@row(
    "alarm-period",
    ALARM,
    "period is 10, 20, 30 or a multiple of 60 (queries also 1, 5); period x evaluationPeriods <= 1 day (7 days "
    "from a 1-hour period)",
    'pulumi_aws cloudwatch.MetricAlarm period: "Valid values are `10`, `20`, `30`, or any multiple of `60`"; '
    "CloudWatch PutMetricAlarm: \"Period multiplied by EvaluationPeriods can't be more than 604,800 seconds. For "
    "alarms with a period of less than one hour (3,600 seconds), the total evaluation period can't be longer than "
    'one day (86,400 seconds)"',
    [fake(ALARM, "cpu", period=90, evaluationPeriods=5)],
)
def _alarm_period(r: Registration, g: Graph) -> str | None:
    periods: list[float] = []
    found = []
    own = _num(r.inputs.get("period"))
    if own is not None:
        periods.append(own)
        if own not in (10, 20, 30) and not _valid_period(own, high_resolution=False):
            found.append(f"period={own:g}")
    for q in _queries(r):
        metric: dict[str, Any] = q["metric"] if isinstance(q.get("metric"), dict) else {}
        for p in filter(None, (_num(metric.get("period")), _num(q.get("period")))):
            periods.append(p)
            if not _valid_period(p):
                found.append(f"query {q.get('id')!r} period={p:g}")
    evaluations = _num(r.inputs.get("evaluationPeriods")) or 1
    if periods:
        longest = max(periods)
        limit = 86400 if longest < 3600 else 604800
        if longest * evaluations > limit:
            found.append(f"period {longest:g} x evaluationPeriods {evaluations:g} > {limit}")
    return "; ".join(found) or None


@row(
    "alarm-datapoints",
    ALARM,
    "evaluationPeriods >= 1; datapointsToAlarm between 1 and evaluationPeriods",
    'CloudWatch PutMetricAlarm DatapointsToAlarm: "The number of data points that must be breaching to trigger '
    'the alarm" (an M of N alarm: M <= N); pulumi_aws evaluation_periods: "Required for traditional metric alarms"',
    [fake(ALARM, "lb-5xx-rate", evaluationPeriods=3, datapointsToAlarm=5)],
)
def _alarm_datapoints(r: Registration, g: Graph) -> str | None:
    n, m = _num(r.inputs.get("evaluationPeriods")), _num(r.inputs.get("datapointsToAlarm"))
    return _problems(
        f"evaluationPeriods={n!r}" if n is None or n < 1 else None,
        f"datapointsToAlarm={m:g} with evaluationPeriods={n:g}"
        if m is not None and n is not None and not 1 <= m <= n
        else None,
    )


STATIC_OPS = {
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
}
BAND_OPS = {"LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"}
STATISTICS = {"SampleCount", "Average", "Sum", "Minimum", "Maximum"}
MISSING_DATA = {"missing", "ignore", "breaching", "notBreaching"}


@row(
    "alarm-values",
    ALARM,
    "comparisonOperator, statistic and treatMissingData take their documented values; a static operator needs "
    "threshold, a band operator thresholdMetricId",
    'pulumi_aws cloudwatch.MetricAlarm comparison_operator: "`GreaterThanOrEqualToThreshold`, ..., the values '
    '`LessThanLowerOrGreaterThanUpperThreshold` ... are used only for alarms based on anomaly detection models"; '
    'statistic: "`SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum`"; treat_missing_data: "`missing`, '
    '`ignore`, `breaching` and `notBreaching`"; threshold: "required for alarms based on static thresholds"',
    [fake(ALARM, "cpu", comparisonOperator="GreaterThan", statistic="Mean", treatMissingData="zero")],
)
def _alarm_values(r: Registration, g: Graph) -> str | None:
    op, stat, missing = r.inputs.get("comparisonOperator"), r.inputs.get("statistic"), r.inputs.get("treatMissingData")
    return _problems(
        f"comparisonOperator={op!r}" if op not in STATIC_OPS | BAND_OPS else None,
        "static comparisonOperator without threshold"
        if op in STATIC_OPS and r.inputs.get("threshold") is None
        else None,
        "band comparisonOperator without thresholdMetricId"
        if op in BAND_OPS and not r.inputs.get("thresholdMetricId")
        else None,
        f"statistic={stat!r}" if stat is not None and stat not in STATISTICS else None,
        f"treatMissingData={missing!r}" if missing is not None and missing not in MISSING_DATA else None,
    )


@row(
    "alarm-actions",
    ALARM,
    "at most 5 ARNs in each of alarmActions, okActions, insufficientDataActions",
    'CloudWatch PutMetricAlarm AlarmActions / OKActions / InsufficientDataActions: "Array Members: Maximum number '
    'of 5 items"',
    [fake(ALARM, "cpu", alarmActions=[f"arn:aws:sns:eu-west-1:{ACCOUNT}:t{i}" for i in range(6)])],
)
def _alarm_actions(r: Registration, g: Graph) -> str | None:
    found = []
    for key in ("alarmActions", "okActions", "insufficientDataActions"):
        actions = _list(r.inputs.get(key))
        if len(actions) > 5:
            found.append(f"{key} has {len(actions)} actions")
        found += [f"{key} entry {a!r} is not an ARN" for a in actions if not str(a).startswith("arn:")]
    return "; ".join(found) or None


@row(
    "alarm-name",
    ALARM,
    "name: 1-255 characters, unique among the stack's alarms; alarmDescription <= 1024",
    'pulumi_aws cloudwatch.MetricAlarm name: "This name must be unique within the user\'s AWS account"; CloudWatch '
    'PutMetricAlarm AlarmName: "Length Constraints: Minimum length of 1. Maximum length of 255", '
    'AlarmDescription: "Maximum length of 1024"',
    [fake(ALARM, "cpu-0", name="foobar-dev-cpu"), fake(ALARM, "cpu-1", name="foobar-dev-cpu")],
)
def _alarm_name(r: Registration, g: Graph) -> str | None:
    name, description = r.inputs.get("name"), r.inputs.get("alarmDescription")
    twins = [a.name for a in g.of_type(ALARM) if a is not r and a.inputs.get("name") == name] if name else []
    return _problems(
        f"name {name!r} ({len(str(name))} characters)" if name is not None and not 1 <= len(str(name)) <= 255 else None,
        f"name {name!r} is also used by {twins}" if twins else None,
        f"alarmDescription has {len(description)} characters"
        if isinstance(description, str) and len(description) > 1024
        else None,
    )


@row(
    "alarm-dimensions",
    ALARM,
    "at most 30 dimensions per metric; names 1-255, values 1-1024 characters",
    'CloudWatch Dimension: Name "Minimum length of 1. Maximum length of 255", Value "Minimum length of 1. Maximum '
    'length of 1024"; PutMetricAlarm Dimensions "Maximum number of 30 items"',
    [fake(ALARM, "replica-lag", dimensions={"DBInstanceIdentifier": ""})],
)
def _alarm_dimensions(r: Registration, g: Graph) -> str | None:
    sets = [r.inputs.get("dimensions")] + [(q.get("metric") or {}).get("dimensions") for q in _queries(r)]
    found = []
    for dims in filter(None, sets):
        if not isinstance(dims, dict) or len(dims) > 30:
            found.append(f"dimensions {dims!r}")
            continue
        found += [
            f"dimension {k!r}={v!r}"
            for k, v in dims.items()
            if not 1 <= len(str(k)) <= 255 or not isinstance(v, str) or not 1 <= len(v) <= 1024
        ]
    return "; ".join(found) or None


# --------------------------------------------------------------------------------------------------
# CloudWatch logs and dashboards

# What CloudWatch accepts, written down from its documentation on purpose: the settings' own
# LOG_RETENTION_DAYS is what this row checks, so it can't be where the row learns the answer.
RETENTION_DAYS = {
    0,
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
}


@row(
    "logs-retention",
    LOG_GROUP,
    "retentionInDays is one of CloudWatch's values",
    'pulumi_aws cloudwatch.LogGroup retention_in_days: "Possible values are: 1, 3, 5, 7, 14, 30, 60, 90, 120, '
    '150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653, and 0"',
    [fake(LOG_GROUP, "flow-logs", name="/foobar/dev/vpc-flow-logs", retentionInDays=45)],
)
def _logs_retention(r: Registration, g: Graph) -> str | None:
    days = _num(r.inputs.get("retentionInDays"))
    return f"retentionInDays={days:g}" if days is not None and days not in RETENTION_DAYS else None


@row(
    "logs-name",
    LOG_GROUP,
    "name: 1-512 of [.-_/#A-Za-z0-9], not starting with aws/, unique among the stack's log groups",
    'CloudWatch Logs CreateLogGroup logGroupName: "Length Constraints: Minimum length of 1. Maximum length of '
    '512. Pattern: [\\.\\-_/#A-Za-z0-9]+"; "Log group names can\'t start with the string aws/"; a second group of '
    "the same name: ResourceAlreadyExistsException",
    [fake(LOG_GROUP, "a", name="/foobar/dev/nginx access"), fake(LOG_GROUP, "b", name="/foobar/dev/nginx access")],
)
def _logs_name(r: Registration, g: Graph) -> str | None:
    name = r.inputs.get("name")
    if not isinstance(name, str):
        return None
    twins = [x.name for x in g.of_type(LOG_GROUP) if x is not r and x.inputs.get("name") == name]
    return _problems(
        f"name {name!r}" if not re.fullmatch(r"[.\-_/#A-Za-z0-9]{1,512}", name) or name.startswith("aws/") else None,
        f"name {name!r} is also used by {twins}" if twins else None,
    )


@row(
    "logs-kms-key",
    LOG_GROUP,
    "a log group encrypted with a key of the stack: that key's policy lets logs.<region>.amazonaws.com use it",
    'CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS KMS": the key policy must allow '
    '"Service": "logs.<region>.amazonaws.com" kms:Encrypt*, kms:Decrypt*, kms:GenerateDataKey*; else '
    "AccessDeniedException at CreateLogGroup",
    [
        fake(LOG_GROUP, "flow-logs", name="/foobar/dev/flow", kmsKeyId="arn:aws:kms:eu-west-1:123456789012:key/k1"),
        fake(
            KMS_KEY,
            "k1",
            out={"arn": "arn:aws:kms:eu-west-1:123456789012:key/k1"},
            policy=_policy({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}),
        ),
    ],
)
def _logs_kms(r: Registration, g: Graph) -> str | None:
    key = g.ref(r.inputs.get("kmsKeyId"), KMS_KEY)
    if key is None:
        return None
    service = f"logs.{g.region}.amazonaws.com"
    for st in _statements(key.inputs.get("policy")):
        principal = st.get("Principal")
        if st.get("Effect") == "Allow" and isinstance(principal, dict) and service in _list(principal.get("Service")):
            return None
    return f"kmsKeyId is {key.name}, whose policy doesn't allow {service}"


WIDGET_TYPES = {"metric", "text", "log", "alarm", "explorer", "custom"}


@row(
    "dashboard-name",
    DASHBOARD,
    "dashboardName: 1-255 letters, digits, '-' and '_'",
    'CloudWatch PutDashboard DashboardName: "Can be up to 255 characters long and can include only alphanumerics, '
    '-, and _"',
    [fake(DASHBOARD, "dashboard", dashboardName="foobar pr.7", dashboardBody='{"widgets": []}')],
)
def _dashboard_name(r: Registration, g: Graph) -> str | None:
    name = r.inputs.get("dashboardName")
    return None if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name) else f"dashboardName={name!r}"


@row(
    "dashboard-body",
    DASHBOARD,
    "the body is JSON with at most 500 widgets of known types, width 1-24, height 1-1000; metric widgets name "
    "their region; metric rows are namespace, name, dimension pairs; ids lowercase first, unique; expressions use "
    "known ids",
    'CloudWatch "Dashboard body structure and syntax": widget width "1-24", height "1-1000", metric widget '
    'property region "Required: Yes", metric id "must start with a lowercase letter"; PutDashboard: "The '
    'dashboard body is invalid" (InvalidParameterInput)',
    [
        fake(
            DASHBOARD,
            "dashboard",
            dashboardName="foobar-dev",
            dashboardBody=json.dumps(
                {
                    "widgets": [
                        {
                            "type": "metric",
                            "width": 30,
                            "properties": {
                                "metrics": [
                                    ["AWS/EC2", "CPUUtilization", "InstanceId"],
                                    [{"expression": "m1 * 2", "id": "Q"}],
                                ]
                            },
                        }
                    ]
                }
            ),
        )
    ],
)
def _dashboard_body(r: Registration, g: Graph) -> str | None:
    body = _doc(r.inputs.get("dashboardBody"))
    if body is None or not isinstance(body.get("widgets"), list):
        return "dashboardBody is not a JSON object with a widgets list"
    widgets = body["widgets"]
    found = [f"{len(widgets)} widgets (at most 500)"] if len(widgets) > 500 else []
    for i, w in enumerate(widgets):
        where = f"widget {i}"
        if w.get("type") not in WIDGET_TYPES:
            found.append(f"{where} type {w.get('type')!r}")
        if "width" in w and not 1 <= w["width"] <= 24:
            found.append(f"{where} width {w['width']}")
        if "height" in w and not 1 <= w["height"] <= 1000:
            found.append(f"{where} height {w['height']}")
        props = w.get("properties") or {}
        if w.get("type") != "metric":
            continue
        if not props.get("region"):
            found.append(f"{where} has no region")
        ids: list[str] = []
        expressions: list[str] = []
        for m in _list(props.get("metrics")):
            options = m[-1] if m and isinstance(m[-1], dict) else {}
            plain = [x for x in m if not isinstance(x, dict)]
            if plain and not str(plain[0]).startswith(".") and (len(plain) < 2 or len(plain) % 2):
                found.append(f"{where} metric {plain} is not namespace, name, then dimension name/value pairs")
            if "id" in options:
                ids.append(str(options["id"]))
            if isinstance(options.get("expression"), str):
                expressions.append(options["expression"])
        found += [f"{where} id {i!r}" for i in ids if not QUERY_ID.match(i)]
        found += [f"{where} id {i!r} is used {n} times" for i, n in Counter(ids).items() if n > 1]
        for expr in expressions:
            if unknown := _expression_ids(expr) - set(ids):
                found.append(f"{where} expression {expr!r} refers to unknown ids {sorted(unknown)}")
    return "; ".join(found) or None


# --------------------------------------------------------------------------------------------------
# KMS, SNS


@row(
    "kms-deletion-window",
    KMS_KEY,
    "deletionWindowInDays is 7 to 30",
    'pulumi_aws kms.Key deletion_window_in_days: "If you specify a value, it must be between `7` and `30`, inclusive"',
    [fake(KMS_KEY, "key", deletionWindowInDays=5)],
)
def _kms_window(r: Registration, g: Graph) -> str | None:
    days = _num(r.inputs.get("deletionWindowInDays"))
    return f"deletionWindowInDays={days:g}" if days is not None and not 7 <= days <= 30 else None


def _lets_account_manage(statements: Iterable[dict[str, Any]]) -> bool:
    for st in statements:
        principal = st.get("Principal")
        aws = _list(principal.get("AWS")) if isinstance(principal, dict) else _list(principal)
        actions = [str(a) for a in _list(st.get("Action"))]
        admin = any(str(p).endswith(":root") or p == "*" for p in aws)
        if st.get("Effect") == "Allow" and admin and any(fnmatchcase("kms:PutKeyPolicy", a) for a in actions):
            return True
    return False


@row(
    "kms-key-policy",
    KMS_KEY,
    "the key policy is a resource policy (every statement has a Principal and Resource), <= 32 KB, and lets the "
    "account manage the key (kms:PutKeyPolicy) unless bypassPolicyLockoutSafetyCheck",
    'KMS CreateKey Policy: "the key policy must allow the calling principal to make a subsequent PutKeyPolicy '
    'request ... MalformedPolicyDocumentException", "maximum length of 32768"; pulumi_aws '
    "bypass_policy_lockout_safety_check",
    [
        fake(
            KMS_KEY,
            "key",
            policy=_policy(
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                }
            ),
        )
    ],
)
def _kms_policy(r: Registration, g: Graph) -> str | None:
    policy = r.inputs.get("policy")
    if policy is None:
        return None
    return _problems(
        _grammar(policy, "resource"),
        f"policy has {len(str(policy))} characters" if len(str(policy)) > 32768 else None,
        "no statement lets the account call kms:PutKeyPolicy"
        if not r.inputs.get("bypassPolicyLockoutSafetyCheck") and not _lets_account_manage(_statements(policy))
        else None,
    )


@row(
    "kms-rotation",
    KMS_KEY,
    "enableKeyRotation only on symmetric encryption keys",
    'KMS EnableKeyRotation: "Automatic key rotation is supported only on symmetric encryption KMS keys" '
    "(customer_master_key_spec SYMMETRIC_DEFAULT, key_usage ENCRYPT_DECRYPT)",
    [fake(KMS_KEY, "key", enableKeyRotation=True, customerMasterKeySpec="RSA_2048")],
)
def _kms_rotation(r: Registration, g: Graph) -> str | None:
    spec, usage = (
        r.inputs.get("customerMasterKeySpec", "SYMMETRIC_DEFAULT"),
        r.inputs.get("keyUsage", "ENCRYPT_DECRYPT"),
    )
    if r.inputs.get("enableKeyRotation") and (spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT"):
        return f"enableKeyRotation with customerMasterKeySpec={spec}, keyUsage={usage}"
    return None


@row(
    "kms-alias",
    KMS_ALIAS,
    "name: alias/ then letters, digits, / _ -, not alias/aws/, <= 256, unique; targetKeyId set",
    'pulumi_aws kms.Alias name: "The name must start with the word \\"alias\\" followed by a forward slash '
    '(alias/)"; KMS CreateAlias AliasName: "Pattern: ^[a-zA-Z0-9:/_-]+$ ... cannot begin with alias/aws/"; '
    "AlreadyExistsException",
    [fake(KMS_ALIAS, "alias", name="alias/aws/foobar")],
)
def _kms_alias(r: Registration, g: Graph) -> str | None:
    name = r.inputs.get("name")
    twins = [x.name for x in g.of_type(KMS_ALIAS) if x is not r and name and x.inputs.get("name") == name]
    return _problems(
        f"name {name!r}"
        if not isinstance(name, str)
        or not re.fullmatch(r"alias/[A-Za-z0-9/_-]{1,250}", name)
        or name.startswith("alias/aws/")
        else None,
        f"name {name!r} is also used by {twins}" if twins else None,
        "targetKeyId is not set" if not r.inputs.get("targetKeyId") else None,
    )


@row(
    "sns-topic-name",
    TOPIC,
    "name: 1-256 ASCII letters, digits, '_' and '-' (.fifo only for FIFO topics)",
    'pulumi_aws sns.Topic name: "Topic names must be made up of only uppercase and lowercase ASCII letters, '
    'numbers, underscores, and hyphens, and must be between 1 and 256 characters long. For a FIFO ... `.fifo` suffix"',
    [fake(TOPIC, "alarms", name="foobar.dev alarms")],
)
def _sns_name(r: Registration, g: Graph) -> str | None:
    name = r.inputs.get("name")
    if not isinstance(name, str):
        return None
    base = name.removesuffix(".fifo") if r.inputs.get("fifoTopic") else name
    return None if re.fullmatch(r"[A-Za-z0-9_-]{1,256}", base) else f"name {name!r}"


@row(
    "sns-topic-key-for-alarms",
    TOPIC,
    "a topic that alarms publish to is not encrypted with alias/aws/sns, and its own key lets "
    "cloudwatch.amazonaws.com use kms:Decrypt and kms:GenerateDataKey*",
    'SNS Developer Guide, "Configure AWS KMS permissions for AWS services": CloudWatch needs kms:Decrypt and '
    "kms:GenerateDataKey* in the key policy; the AWS-managed alias/aws/sns key's policy can't be changed to allow it",
    [
        fake(TOPIC, "alarms", name="foobar-dev-alarms", kmsMasterKeyId="alias/aws/sns"),
        fake(ALARM, "cpu", alarmActions=[f"arn:aws:mock:eu-west-1:{ACCOUNT}:alarms"]),
    ],
)
def _sns_key(r: Registration, g: Graph) -> str | None:
    arn = r.outputs.get("arn")
    used = any(
        arn in _list(a.inputs.get(k))
        for a in g.of_type(ALARM)
        for k in ("alarmActions", "okActions", "insufficientDataActions")
    )
    key_id = r.inputs.get("kmsMasterKeyId")
    if not used or not key_id:
        return None
    if key_id == "alias/aws/sns":
        return "alarms publish to a topic encrypted with alias/aws/sns"
    key = g.ref(key_id, KMS_KEY)
    if key is None:
        return None
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        if not any(
            st.get("Effect") == "Allow"
            and isinstance(st.get("Principal"), dict)
            and "cloudwatch.amazonaws.com" in _list(st["Principal"].get("Service"))
            and any(fnmatchcase(action, str(a)) for a in _list(st.get("Action")))
            for st in _statements(key.inputs.get("policy"))
        ):
            return f"key {key.name} doesn't allow cloudwatch.amazonaws.com {action}"
    return None


SNS_PROTOCOLS = {"sqs", "sms", "lambda", "firehose", "application", "email", "email-json", "http", "https"}


@row(
    "sns-subscription",
    SUBSCRIPTION,
    "protocol is one SNS knows; an email subscription's endpoint is an address; http(s) endpoints are URLs",
    'pulumi_aws sns.TopicSubscription protocol: "Valid values are: `sqs`, `sms`, `lambda`, `firehose`, and '
    '`application`. Protocols `email`, `email-json`, `http` and `https` are also valid"; SNS Subscribe: '
    '"InvalidParameter: Invalid parameter: Email address"',
    [
        fake(
            SUBSCRIPTION,
            "alarms-email",
            protocol="email",
            endpoint="ops at foobar.com",
            topic="arn:aws:sns:eu-west-1:1:t",
        )
    ],
)
def _sns_subscription(r: Registration, g: Graph) -> str | None:
    protocol, endpoint = r.inputs.get("protocol"), str(r.inputs.get("endpoint"))
    return _problems(
        f"protocol={protocol!r}" if protocol not in SNS_PROTOCOLS else None,
        f"endpoint {endpoint!r} is not an e-mail address"
        if protocol in ("email", "email-json") and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", endpoint)
        else None,
        f"endpoint {endpoint!r} is not a URL of its protocol"
        if protocol in ("http", "https") and not endpoint.startswith(f"{protocol}://")
        else None,
    )


# --------------------------------------------------------------------------------------------------
# EC2: servers


@row(
    "ec2-no-fixed-private-ip",
    (INSTANCE, NAT),
    "no fixed privateIp on a server or NAT gateway",
    "DESIGN.md section 3 / 13: Pulumi replaces create-before-destroy, and a replacement asking for an address "
    "still in use fails with InvalidIPAddress.InUse (pulumi/pulumi#8679)",
    [fake(INSTANCE, "web-0", privateIp="10.20.16.10")],
)
def _fixed_ip(r: Registration, g: Graph) -> str | None:
    ip = r.inputs.get("privateIp")
    return f"privateIp={ip!r}: a replacement can't get it while the old one holds it" if ip else None


@row(
    "lt-user-data",
    LAUNCH_TEMPLATE,
    "userData is base64 and decodes to at most 16 KB",
    'pulumi_aws ec2.LaunchTemplate user_data: "The base64-encoded user data"; EC2 User Guide: "User data is '
    'limited to 16 KB, in raw form, before it is base64-encoded"',
    [
        fake(LAUNCH_TEMPLATE, "web-template", userData="#cloud-config\n"),
        fake(LAUNCH_TEMPLATE, "app-template", userData=base64.b64encode(b"x" * 16385).decode()),
    ],
    subjects=2,
)
def _lt_user_data(r: Registration, g: Graph) -> str | None:
    data = r.inputs.get("userData")
    if not isinstance(data, str):
        return None
    try:
        size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return "userData is not base64 (a launch template takes it encoded)"
    return f"userData decodes to {size} bytes" if size > 16384 else None


@row(
    "lt-security-groups-in-one-place",
    LAUNCH_TEMPLATE,
    "vpcSecurityGroupIds or networkInterfaces[].securityGroups, not both; at most 5",
    'pulumi_aws ec2.LaunchTemplate vpc_security_group_ids: "Conflicts with `network_interfaces.security_groups`"; '
    'VPC quotas: "Security groups per network interface: 5"',
    [
        fake(
            LAUNCH_TEMPLATE,
            "web-template",
            vpcSecurityGroupIds=["sg-1"],
            networkInterfaces=[{"deviceIndex": 0, "securityGroups": ["sg-1"]}],
        )
    ],
)
def _lt_security_groups(r: Registration, g: Graph) -> str | None:
    nics = [n for n in _list(r.inputs.get("networkInterfaces")) if isinstance(n, dict)]
    in_nics = [sg for n in nics for sg in _list(n.get("securityGroups"))]
    top = _list(r.inputs.get("vpcSecurityGroupIds"))
    return _problems(
        "vpcSecurityGroupIds together with networkInterfaces[].securityGroups" if top and in_nics else None,
        f"{len(top or in_nics)} security groups" if len(top or in_nics) > 5 else None,
    )


@row(
    "lt-hardening-values",
    LAUNCH_TEMPLATE,
    "metadataOptions as for an instance; EBS gp3 1-16384 GiB; string booleans are 'true' or 'false'",
    "EC2 LaunchTemplateInstanceMetadataOptionsRequest (HttpTokens optional|required, HttpPutResponseHopLimit 1-64); "
    'EBS volume types: gp3 "1 GiB - 16 TiB"; pulumi_aws LaunchTemplateBlockDeviceMappingEbsArgs encrypted / '
    "delete_on_termination and network interface associate_public_ip_address are strings",
    [
        fake(
            LAUNCH_TEMPLATE,
            "web-template",
            metadataOptions={"httpTokens": "require", "httpPutResponseHopLimit": 65},
            blockDeviceMappings=[{"deviceName": "/dev/sda1", "ebs": {"volumeType": "gp3", "volumeSize": 0}}],
            networkInterfaces=[{"deviceIndex": 0, "associatePublicIpAddress": "no"}],
        )
    ],
)
def _lt_hardening(r: Registration, g: Graph) -> str | None:
    m = r.inputs.get("metadataOptions") or {}
    hops = _num(m.get("httpPutResponseHopLimit"))
    problems: list[str | None] = [
        f"httpTokens={m.get('httpTokens')!r}" if m.get("httpTokens") not in (None, "optional", "required") else None,
        f"httpPutResponseHopLimit={hops:g}" if hops is not None and not 1 <= hops <= 64 else None,
    ]
    for d in _list(r.inputs.get("blockDeviceMappings")):
        ebs = d.get("ebs") or {}
        size = _num(ebs.get("volumeSize"))
        if ebs.get("volumeType", "gp3") == "gp3" and size is not None and not 1 <= size <= 16384:
            problems.append(f"{d.get('deviceName')}: volumeSize={size:g}")
        for key in ("encrypted", "deleteOnTermination"):
            if key in ebs and ebs[key] not in ("true", "false"):
                problems.append(f"{d.get('deviceName')}: {key}={ebs[key]!r}")
    for n in _list(r.inputs.get("networkInterfaces")):
        value = n.get("associatePublicIpAddress")
        if value is not None and value not in ("true", "false"):
            problems.append(f"associatePublicIpAddress={value!r}")
    return _problems(*problems)


@row(
    "lt-names-and-image",
    LAUNCH_TEMPLATE,
    "name or namePrefix, not both; imageId is ami-... or resolve:ssm:<parameter>; iamInstanceProfile arn or name",
    'pulumi_aws ec2.LaunchTemplate name_prefix: "Conflicts with `name`"; image_id: "The AMI ... or use a Systems '
    'Manager parameter convention e.g. `resolve:ssm:parameter-name`"; LaunchTemplateIamInstanceProfileArgs: arn '
    '"Conflicts with `name`"; update_default_version "Conflicts with `default_version`"',
    [
        fake(
            LAUNCH_TEMPLATE,
            "web-template",
            name="x",
            namePrefix="x-",
            imageId="ubuntu-24.04",
            iamInstanceProfile={"arn": "a", "name": "n"},
        )
    ],
)
def _lt_names(r: Registration, g: Graph) -> str | None:
    image = r.inputs.get("imageId")
    profile = r.inputs.get("iamInstanceProfile") or {}
    return _problems(
        "name with namePrefix" if r.inputs.get("name") and r.inputs.get("namePrefix") else None,
        f"imageId={image!r}"
        if isinstance(image, str)
        and not re.fullmatch(r"ami-[0-9a-f]{8,17}|resolve:ssm:/[A-Za-z0-9_.\-/]+", image)
        and not image.startswith("ami-ubuntu-")  # the mocks' stand-in id
        else None,
        "iamInstanceProfile with arn and name" if profile.get("arn") and profile.get("name") else None,
        "updateDefaultVersion with defaultVersion"
        if r.inputs.get("updateDefaultVersion") and r.inputs.get("defaultVersion") is not None
        else None,
    )


@row(
    "asg-sizes-and-placement",
    ASG,
    "minSize <= desiredCapacity <= maxSize; vpcZoneIdentifiers or availabilityZones, not both; name or namePrefix",
    'AutoScaling CreateAutoScalingGroup: "DesiredCapacity ... must be greater than or equal to the minimum size of '
    'the group and less than or equal to the maximum size"; pulumi_aws autoscaling.Group vpc_zone_identifiers: '
    '"Conflicts with `availability_zones`"; name: "Conflicts with `name_prefix`"',
    [
        fake(ASG, "web-group", minSize=2, desiredCapacity=1, maxSize=4),
        fake(ASG, "app-group", minSize=1, maxSize=2, vpcZoneIdentifiers=["s"], availabilityZones=["a"]),
    ],
    subjects=2,
)
def _asg_sizes(r: Registration, g: Graph) -> str | None:
    low, want, high = (_num(r.inputs.get(k)) for k in ("minSize", "desiredCapacity", "maxSize"))
    return _problems(
        f"minSize={low:g} > maxSize={high:g}" if low is not None and high is not None and low > high else None,
        f"desiredCapacity={want:g} outside {low:g}..{high:g}"
        if None not in (low, want, high) and not low <= want <= high  # type: ignore[operator]
        else None,
        "vpcZoneIdentifiers with availabilityZones"
        if r.inputs.get("vpcZoneIdentifiers") and r.inputs.get("availabilityZones")
        else None,
        "name with namePrefix" if r.inputs.get("name") and r.inputs.get("namePrefix") else None,
        f"metricsGranularity={r.inputs.get('metricsGranularity')!r}"
        if r.inputs.get("metricsGranularity") not in (None, "1Minute")
        else None,
    )


@row(
    "asg-instance-refresh",
    ASG,
    "refresh preferences: max healthy 100-200, min <= max, max - min <= 100; autoRollback needs a launch template "
    "at a fixed version (not $Latest or $Default)",
    'pulumi_aws GroupInstanceRefreshPreferencesArgs max_healthy_percentage: "Values must be between `100` and '
    '`200`", auto_rollback: "may only be set to `true` when specifying a `launch_template` or '
    '`mixed_instances_policy`"; AutoScaling RefreshPreferences: "the difference between them cannot be greater '
    'than 100"; User Guide, "Undo changes with a rollback": not supported when the launch template version is '
    "$Latest or $Default",
    [
        fake(
            ASG,
            "web-group",
            launchTemplate={"id": "lt-1", "version": "$Latest"},
            instanceRefresh={
                "strategy": "Rolling",
                "preferences": {"minHealthyPercentage": 90, "maxHealthyPercentage": 210, "autoRollback": True},
            },
        )
    ],
)
def _asg_refresh(r: Registration, g: Graph) -> str | None:
    refresh = r.inputs.get("instanceRefresh") or {}
    p = refresh.get("preferences") or {}
    low, high = _num(p.get("minHealthyPercentage")), _num(p.get("maxHealthyPercentage"))
    template = r.inputs.get("launchTemplate") or {}
    return _problems(
        f"strategy={refresh.get('strategy')!r}" if refresh and refresh.get("strategy") != "Rolling" else None,
        f"maxHealthyPercentage={high:g}" if high is not None and not 100 <= high <= 200 else None,
        f"minHealthyPercentage={low:g} > 100" if low is not None and low > 100 else None,
        f"max - min healthy = {high - low:g} > 100"
        if low is not None and high is not None and high - low > 100
        else None,
        "autoRollback without a launch template"
        if p.get("autoRollback") and not template and not r.inputs.get("mixedInstancesPolicy")
        else None,
        f"autoRollback with launch template version {template.get('version')!r}"
        if p.get("autoRollback") and template.get("version") in (None, "$Latest", "$Default")
        else None,
    )


@row(
    "asg-lifecycle-hooks",
    ASG,
    "hooks: transition EC2_INSTANCE_LAUNCHING|TERMINATING, default result CONTINUE|ABANDON, heartbeat 30-7200 s",
    'AutoScaling PutLifecycleHook: LifecycleTransition "autoscaling:EC2_INSTANCE_LAUNCHING | '
    'autoscaling:EC2_INSTANCE_TERMINATING", DefaultResult "CONTINUE | ABANDON", HeartbeatTimeout "from 30 to '
    '7200 seconds"',
    [
        fake(
            ASG,
            "web-group",
            initialLifecycleHooks=[
                {"name": "h", "lifecycleTransition": "launch", "defaultResult": "ABANDON", "heartbeatTimeout": 10}
            ],
        )
    ],
)
def _asg_hooks(r: Registration, g: Graph) -> str | None:
    problems: list[str | None] = []
    for h in _list(r.inputs.get("initialLifecycleHooks")):
        beat = _num(h.get("heartbeatTimeout"))
        if h.get("lifecycleTransition") not in (
            "autoscaling:EC2_INSTANCE_LAUNCHING",
            "autoscaling:EC2_INSTANCE_TERMINATING",
        ):
            problems.append(f"{h.get('name')}: lifecycleTransition={h.get('lifecycleTransition')!r}")
        if h.get("defaultResult") not in (None, "CONTINUE", "ABANDON"):
            problems.append(f"{h.get('name')}: defaultResult={h.get('defaultResult')!r}")
        if beat is not None and not 30 <= beat <= 7200:
            problems.append(f"{h.get('name')}: heartbeatTimeout={beat:g}")
    return _problems(*problems)


@row(
    "asg-target-tracking",
    SCALING_POLICY,
    "TargetTrackingScaling: a targetTrackingConfiguration, a known predefined metric, and none of the simple/step "
    "policy arguments",
    'pulumi_aws autoscaling.Policy policy_type: "SimpleScaling", "StepScaling", "TargetTrackingScaling", or '
    '"PredictiveScaling"; AutoScaling PutScalingPolicy: AdjustmentType, ScalingAdjustment, Cooldown "Valid only '
    'if the policy type is SimpleScaling", StepAdjustments "Required if the policy type is StepScaling"; '
    "PredefinedMetricType ASGAverageCPUUtilization | ASGAverageNetworkIn | ASGAverageNetworkOut | "
    "ALBRequestCountPerTarget",
    [fake(SCALING_POLICY, "web-cpu-target", policyType="TargetTrackingScaling", scalingAdjustment=1)],
)
def _target_tracking(r: Registration, g: Graph) -> str | None:
    if r.inputs.get("policyType") != "TargetTrackingScaling":
        return None
    ttc = r.inputs.get("targetTrackingConfiguration") or {}
    metric = (ttc.get("predefinedMetricSpecification") or {}).get("predefinedMetricType")
    return _problems(
        "no targetTrackingConfiguration" if not ttc else None,
        f"predefinedMetricType={metric!r}"
        if metric is not None
        and metric
        not in ("ASGAverageCPUUtilization", "ASGAverageNetworkIn", "ASGAverageNetworkOut", "ALBRequestCountPerTarget")
        else None,
        *(
            f"{k} on a target-tracking policy"
            for k in ("adjustmentType", "scalingAdjustment", "cooldown", "stepAdjustments")
            if r.inputs.get(k) is not None
        ),
    )


@row(
    "ec2-user-data-size",
    INSTANCE,
    "userData is at most 16 KB before base64",
    'EC2 User Guide, "Run commands on your Amazon EC2 instance at launch": "User data is limited to 16 KB, in raw '
    'form, before it is base64-encoded"',
    [fake(INSTANCE, "app-0", userData="#cloud-config\n" + "x" * 16384)],
)
def _user_data(r: Registration, g: Graph) -> str | None:
    data = r.inputs.get("userData")
    if isinstance(data, str) and len(data.encode()) > 16384:
        return f"userData is {len(data.encode())} bytes"
    encoded = r.inputs.get("userDataBase64")
    if isinstance(encoded, str):
        try:
            size = len(base64.b64decode(encoded))
        except (binascii.Error, ValueError):
            return "userDataBase64 is not base64"
        return f"userDataBase64 decodes to {size} bytes" if size > 16384 else None
    return None


@row(
    "ec2-metadata-options",
    INSTANCE,
    "metadataOptions: httpTokens optional|required, httpEndpoint and instanceMetadataTags enabled|disabled, "
    "httpPutResponseHopLimit 1-64",
    'EC2 ModifyInstanceMetadataOptions / InstanceMetadataOptionsRequest: HttpTokens "optional | required", '
    'HttpPutResponseHopLimit "Possible values: Integers from 1 to 64", HttpEndpoint / InstanceMetadataTags '
    '"disabled | enabled"',
    [fake(INSTANCE, "lb-0", metadataOptions={"httpTokens": "require", "httpPutResponseHopLimit": 0})],
)
def _metadata(r: Registration, g: Graph) -> str | None:
    m = r.inputs.get("metadataOptions")
    if not isinstance(m, dict):
        return None
    hops = _num(m.get("httpPutResponseHopLimit"))
    return _problems(
        f"httpTokens={m.get('httpTokens')!r}" if m.get("httpTokens") not in (None, "optional", "required") else None,
        f"httpEndpoint={m.get('httpEndpoint')!r}"
        if m.get("httpEndpoint") not in (None, "enabled", "disabled")
        else None,
        f"instanceMetadataTags={m.get('instanceMetadataTags')!r}"
        if m.get("instanceMetadataTags") not in (None, "enabled", "disabled")
        else None,
        f"httpPutResponseHopLimit={hops:g}" if hops is not None and not 1 <= hops <= 64 else None,
    )


@row(
    "ec2-root-volume",
    INSTANCE,
    "rootBlockDevice: gp3 1-16384 GiB; iops only for gp3/io1/io2, throughput only for gp3",
    'EBS User Guide, "Amazon EBS volume types": gp3 "1 GiB - 16 TiB"; EC2 EbsBlockDevice Iops: "required for io1 '
    'and io2 volumes ... gp3 optional ... not supported for gp2, st1, sc1, or standard", Throughput "valid only '
    'for gp3"',
    [fake(INSTANCE, "web-0", rootBlockDevice={"volumeType": "gp2", "volumeSize": 16, "throughput": 250})],
)
def _root_volume(r: Registration, g: Graph) -> str | None:
    d = r.inputs.get("rootBlockDevice")
    if not isinstance(d, dict):
        return None
    kind, size = d.get("volumeType", "gp3"), _num(d.get("volumeSize"))
    return _problems(
        f"volumeSize={size:g} for {kind}" if kind == "gp3" and size is not None and not 1 <= size <= 16384 else None,
        f"iops with volumeType={kind}" if d.get("iops") is not None and kind not in ("gp3", "io1", "io2") else None,
        f"throughput with volumeType={kind}" if d.get("throughput") is not None and kind != "gp3" else None,
    )


@row(
    "ec2-security-groups",
    INSTANCE,
    "at most 5 security groups, all in the VPC of the instance's subnet",
    'VPC quotas: "Security groups per network interface: 5"; EC2 RunInstances: "InvalidParameter: Security group '
    'sg-... and subnet subnet-... belong to different networks"',
    [
        fake(INSTANCE, "web-0", subnetId="web-0-id", vpcSecurityGroupIds=["sg-web-id"]),
        fake(SUBNET, "web-0", vpcId="vpc-a-id"),
        fake(SG, "sg-web", vpcId="vpc-b-id"),
    ],
)
def _instance_sgs(r: Registration, g: Graph) -> str | None:
    groups = _list(r.inputs.get("vpcSecurityGroupIds"))
    subnet = g.ref(r.inputs.get("subnetId"), SUBNET)
    others = [
        sg.name
        for sg in filter(None, (g.ref(x, SG) for x in groups))
        if subnet is not None and sg.inputs.get("vpcId") != subnet.inputs.get("vpcId")
    ]
    return _problems(
        f"{len(groups)} security groups" if len(groups) > 5 else None,
        f"security groups {others} are not in the VPC of subnet {subnet.name if subnet else '?'}" if others else None,
    )


@row(
    "ec2-ebs-optimized",
    INSTANCE,
    "ebsOptimized=true only on instance types that support it (not t1, t2)",
    'EC2 User Guide, "Amazon EBS-optimized instance types": T1 and T2 have no EBS optimization; RunInstances: '
    '"Unsupported: EBS-optimized instances are not supported for your requested configuration"',
    [fake(INSTANCE, "web-0", instanceType="t2.micro", ebsOptimized=True)],
)
def _ebs_optimized(r: Registration, g: Graph) -> str | None:
    kind = str(r.inputs.get("instanceType", ""))
    if r.inputs.get("ebsOptimized") and kind.split(".")[0] in ("t1", "t2"):
        return f"ebsOptimized=true on instanceType={kind}"
    return None


GRAVITON = re.compile(r"^(a1|[a-z]+\d+[a-z]*g[a-z]*)\.")


@row(
    "ec2-image-architecture",
    INSTANCE,
    "the image's CPU architecture is the instance type's (Graviton: arm64)",
    "EC2 RunInstances: \"InvalidParameterValue: The architecture 'x86_64' of the specified instance type does not "
    "match the architecture 'arm64' of the specified AMI\" (DESIGN.md section 13); under mocks the image id names "
    "its architecture (ami-ubuntu-<arch>)",
    [fake(INSTANCE, "app-0", instanceType="m7g.large", ami="ami-ubuntu-amd64")],
)
def _architecture(r: Registration, g: Graph) -> str | None:
    kind, ami = str(r.inputs.get("instanceType", "")), str(r.inputs.get("ami", ""))
    m = re.fullmatch(r"ami-ubuntu-(amd64|arm64)", ami)
    want = "arm64" if GRAVITON.match(kind) else "amd64"
    return f"instanceType={kind} ({want}) with ami={ami}" if m and m[1] != want else None


@row(
    "ec2-instance-profile",
    INSTANCE,
    "iamInstanceProfile names a profile whose role trusts ec2.amazonaws.com",
    'EC2 User Guide, "IAM roles for Amazon EC2": the role\'s trust policy must allow ec2.amazonaws.com to assume '
    "it; else the instance gets no credentials",
    [
        fake(INSTANCE, "web-0", iamInstanceProfile="web-profile"),
        fake(PROFILE, "web-profile", role="web-role"),
        fake(ROLE, "web-role", assumeRolePolicy=_trust("lambda.amazonaws.com")),
    ],
)
def _instance_profile(r: Registration, g: Graph) -> str | None:
    profile = g.ref(r.inputs.get("iamInstanceProfile"), PROFILE)
    role = _role_of(profile.inputs.get("role"), g) if profile is not None else None
    if role is not None and "ec2.amazonaws.com" not in _trusted_services(role):
        return f"profile {profile.name if profile else '?'} has role {role.name}, which doesn't trust ec2.amazonaws.com"
    return None


# --------------------------------------------------------------------------------------------------
# EC2: addresses and gateways


@row(
    "eip-arguments",
    EIP,
    "domain is vpc; not both instance and networkInterface",
    'pulumi_aws ec2.Eip domain: "Indicates if this EIP is for use in VPC (`vpc`)"; "You can specify either the '
    '`instance` ID or the `network_interface` ID, but not both"',
    [fake(EIP, "lb-0-eip", domain="standard", instance="i-1", networkInterface="eni-1")],
)
def _eip_arguments(r: Registration, g: Graph) -> str | None:
    return _problems(
        f"domain={r.inputs.get('domain')!r}" if r.inputs.get("domain") != "vpc" else None,
        "both instance and networkInterface" if len(_set(r, "instance", "networkInterface")) == 2 else None,
    )


def _vpc_of_subnet(value: Any, g: Graph) -> Any:
    subnet = g.ref(value, SUBNET)
    return subnet.inputs.get("vpcId") if subnet is not None else None


def _igw_of(vpc_id: Any, g: Graph) -> Registration | None:
    return next((x for x in g.of_type(IGW) if vpc_id is not None and x.inputs.get("vpcId") == vpc_id), None)


@row(
    "eip-after-internet-gateway",
    EIP,
    "an Elastic IP associated with an instance is created after its VPC's internet gateway",
    'pulumi_aws ec2.Eip: "EIP may require IGW to exist prior to association. Use `depends_on` to set an explicit '
    'dependency on the IGW"; EC2 AssociateAddress: "Gateway.NotAttached"',
    [
        fake(EIP, "lb-0-eip", domain="vpc", instance="lb-0-id"),
        fake(INSTANCE, "lb-0", subnetId="public-0-id"),
        fake(SUBNET, "public-0", vpcId="vpc-id"),
        fake(IGW, "igw", vpcId="vpc-id"),
    ],
)
def _eip_igw(r: Registration, g: Graph) -> str | None:
    instance = g.ref(r.inputs.get("instance"), INSTANCE)
    igw = _igw_of(_vpc_of_subnet(instance.inputs.get("subnetId"), g), g) if instance is not None else None
    if igw is not None and not g.waits_for(r, igw):
        return f"associates with {instance.name if instance else '?'} without waiting for {igw.name}"
    return None


def _routes_to_igw(subnet_id: Any, g: Graph) -> bool:
    tables = {a.inputs.get("routeTableId") for a in g.of_type(RTA) if a.inputs.get("subnetId") == subnet_id}
    return any(
        x.inputs.get("routeTableId") in tables
        and x.inputs.get("destinationCidrBlock") == "0.0.0.0/0"
        and g.ref(x.inputs.get("gatewayId"), IGW)
        for x in g.of_type(ROUTE)
    )


@row(
    "nat-gateway",
    NAT,
    "a public NAT gateway has an Elastic IP, sits in a subnet routed to the internet gateway, and is created after it",
    'pulumi_aws ec2.NatGateway allocation_id: "Required when `connectivity_type` is set to `public`"; VPC User '
    'Guide, "NAT gateways": "you must ... create the NAT gateway in a public subnet"; the docstring example uses '
    "depends_on=[internet_gateway]",
    [
        fake(NAT, "nat-0", subnetId="app-0-id"),
        fake(SUBNET, "app-0", vpcId="vpc-id"),
        fake(IGW, "igw", vpcId="vpc-id"),
    ],
)
def _nat(r: Registration, g: Graph) -> str | None:
    if r.inputs.get("connectivityType", "public") != "public" or r.inputs.get("availabilityMode") == "regional":
        return None
    subnet = r.inputs.get("subnetId")
    igw = _igw_of(_vpc_of_subnet(subnet, g), g)
    return _problems(
        "no allocationId" if not r.inputs.get("allocationId") else None,
        f"subnet {subnet!r} has no default route to an internet gateway"
        if g.ref(subnet, SUBNET) and not _routes_to_igw(subnet, g)
        else None,
        f"doesn't wait for {igw.name}" if igw is not None and not g.waits_for(r, igw) else None,
    )


@row(
    "igw-one-per-vpc",
    IGW,
    "one internet gateway per VPC",
    'VPC quotas: "Internet gateways per Region ... You can attach only one internet gateway to a VPC at a time" '
    "(Resource.AlreadyAssociated)",
    [fake(IGW, "igw-a", vpcId="vpc-id"), fake(IGW, "igw-b", vpcId="vpc-id")],
)
def _igw(r: Registration, g: Graph) -> str | None:
    twins = [x.name for x in g.of_type(IGW) if x is not r and x.inputs.get("vpcId") == r.inputs.get("vpcId")]
    return f"VPC {r.inputs.get('vpcId')!r} also has {twins}" if twins else None


# --------------------------------------------------------------------------------------------------
# VPC, subnets, routes


@row(
    "vpc",
    VPC,
    "cidrBlock /16 to /28; DNS hostnames only with DNS support",
    'VPC User Guide, "VPC CIDR blocks": "between a /16 netmask (65,536 IP addresses) and /28 netmask"; "DNS '
    'attributes for your VPC": enableDnsHostnames needs enableDnsSupport',
    [fake(VPC, "vpc", cidrBlock="10.0.0.0/12", enableDnsHostnames=True, enableDnsSupport=False)],
)
def _vpc(r: Registration, g: Graph) -> str | None:
    try:
        net = ipaddress.IPv4Network(str(r.inputs.get("cidrBlock")))
    except ValueError:
        return f"cidrBlock={r.inputs.get('cidrBlock')!r}"
    return _problems(
        f"cidrBlock /{net.prefixlen}" if not 16 <= net.prefixlen <= 28 else None,
        "enableDnsHostnames without enableDnsSupport"
        if r.inputs.get("enableDnsHostnames") and r.inputs.get("enableDnsSupport") is False
        else None,
    )


@row(
    "subnet",
    SUBNET,
    "cidrBlock /16 to /28 inside its VPC, overlapping no other subnet; availabilityZone in the stack's region",
    'VPC User Guide, "Subnet CIDR blocks": "between a /28 netmask and /16 netmask ... must be a subset of the VPC '
    "CIDR block ... can't overlap\" (InvalidSubnet.Range, InvalidSubnet.Conflict)",
    [
        fake(SUBNET, "web-0", vpcId="vpc-id", cidrBlock="10.30.0.0/20", availabilityZone="us-east-1a"),
        fake(VPC, "vpc", cidrBlock="10.20.0.0/16"),
    ],
)
def _subnet(r: Registration, g: Graph) -> str | None:
    try:
        net = ipaddress.IPv4Network(str(r.inputs.get("cidrBlock")))
    except ValueError:
        return f"cidrBlock={r.inputs.get('cidrBlock')!r}"
    vpc = g.ref(r.inputs.get("vpcId"), VPC)
    found = [f"cidrBlock /{net.prefixlen}"] if not 16 <= net.prefixlen <= 28 else []
    if vpc is not None and not net.subnet_of(ipaddress.IPv4Network(str(vpc.inputs.get("cidrBlock")))):
        found.append(f"cidrBlock {net} is outside VPC {vpc.inputs.get('cidrBlock')}")
    for other in g.of_type(SUBNET):
        if (
            other is not r
            and other.inputs.get("vpcId") == r.inputs.get("vpcId")
            and net.overlaps(ipaddress.IPv4Network(str(other.inputs.get("cidrBlock"))))
        ):
            found.append(f"cidrBlock {net} overlaps {other.name}")
    zone = r.inputs.get("availabilityZone")
    if isinstance(zone, str) and not zone.startswith(g.region):
        found.append(f"availabilityZone={zone} is not in {g.region}")
    return "; ".join(found) or None


ROUTE_TARGETS = (
    "gatewayId", "natGatewayId", "networkInterfaceId", "transitGatewayId", "vpcPeeringConnectionId", "vpcEndpointId",
    "egressOnlyGatewayId", "carrierGatewayId", "localGatewayId", "coreNetworkArn", "odbNetworkArn",
)  # fmt: skip
ROUTE_DESTINATIONS = ("destinationCidrBlock", "destinationIpv6CidrBlock", "destinationPrefixListId")


@row(
    "route",
    ROUTE,
    "exactly one destination and one target; gatewayId is an internet gateway, natGatewayId a NAT gateway; one "
    "route per table and destination",
    'pulumi_aws ec2.Route: "One of the following destination arguments must be supplied" / "One of the following '
    'target arguments must be supplied"; gateway_id: "Identifier of a VPC internet gateway or a virtual private '
    'gateway"; EC2 CreateRoute: RouteAlreadyExists',
    [
        fake(ROUTE, "private-default-0", routeTableId="rt-id", destinationCidrBlock="0.0.0.0/0", gatewayId="nat-0-id"),
        fake(NAT, "nat-0"),
    ],
)
def _route(r: Registration, g: Graph) -> str | None:
    targets, destinations = _set(r, *ROUTE_TARGETS), _set(r, *ROUTE_DESTINATIONS)
    gateway, nat = r.inputs.get("gatewayId"), r.inputs.get("natGatewayId")
    twins = [
        x.name
        for x in g.of_type(ROUTE)
        if x is not r
        and x.inputs.get("routeTableId") == r.inputs.get("routeTableId")
        and all(x.inputs.get(d) == r.inputs.get(d) for d in ROUTE_DESTINATIONS)
    ]
    return _problems(
        f"targets {targets or 'none'}" if len(targets) != 1 else None,
        f"destinations {destinations or 'none'}" if len(destinations) != 1 else None,
        f"gatewayId={gateway!r} is a NAT gateway (use natGatewayId)" if g.ref(gateway, NAT) else None,
        f"natGatewayId={nat!r} is not a NAT gateway" if nat and g.ref(nat) and not g.ref(nat, NAT) else None,
        f"same table and destination as {twins}" if twins else None,
    )


@row(
    "route-table-inline-routes",
    ROUTE_TABLE,
    "a route table with inline routes gets no ec2.Route resources",
    'pulumi_aws ec2.RouteTable: "you cannot use a `ec2.RouteTable` inline `route` blocks in conjunction with any '
    '`ec2.Route` resources. Doing so will cause a conflict of rule settings and will overwrite rules"',
    [
        fake(ROUTE_TABLE, "public-rt", vpcId="vpc-id", routes=[{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-id"}]),
        fake(
            ROUTE, "public-default", routeTableId="public-rt-id", destinationCidrBlock="0.0.0.0/0", gatewayId="igw-id"
        ),
    ],
)
def _route_table(r: Registration, g: Graph) -> str | None:
    if not r.inputs.get("routes"):
        return None
    separate = [x.name for x in g.of_type(ROUTE) if g.ref(x.inputs.get("routeTableId"), ROUTE_TABLE) is r]
    return f"inline routes and route resources {separate}" if separate else None


@row(
    "route-table-association",
    RTA,
    "exactly one of subnetId, gatewayId; a subnet is associated once; subnet and table in one VPC",
    'pulumi_aws ec2.RouteTableAssociation subnet_id: "Conflicts with `gateway_id`"; EC2 AssociateRouteTable: '
    '"Resource.AlreadyAssociated"; "InvalidParameterValue: route table and subnet belong to different networks"',
    [
        fake(RTA, "web-0", subnetId="web-0-id", routeTableId="private-rt-id"),
        fake(RTA, "web-0-again", subnetId="web-0-id", routeTableId="public-rt-id"),
    ],
)
def _rta(r: Registration, g: Graph) -> str | None:
    subnet_id = r.inputs.get("subnetId")
    twins = [x.name for x in g.of_type(RTA) if x is not r and subnet_id and x.inputs.get("subnetId") == subnet_id]
    subnet, table = g.ref(subnet_id, SUBNET), g.ref(r.inputs.get("routeTableId"), ROUTE_TABLE)
    return _problems(
        f"sets {_set(r, 'subnetId', 'gatewayId') or 'neither of subnetId, gatewayId'}"
        if len(_set(r, "subnetId", "gatewayId")) != 1
        else None,
        f"subnet {subnet_id!r} is also associated by {twins}" if twins else None,
        f"subnet {subnet.name} and route table {table.name} are in different VPCs"
        if subnet and table and subnet.inputs.get("vpcId") != table.inputs.get("vpcId")
        else None,
    )


@row(
    "vpc-endpoint",
    ENDPOINT,
    "a Gateway endpoint is for s3 or dynamodb of the stack's region, takes route tables (of its VPC) and no "
    "subnets, security groups or private DNS; one per service and route table",
    'pulumi_aws ec2.VpcEndpoint route_table_ids: "Applicable for endpoints of type `Gateway`"; VPC User Guide, '
    '"Gateway endpoints": "Amazon S3 and DynamoDB"; "You can\'t have multiple gateway endpoints for the same '
    'service in a single route table" (RouteAlreadyExists)',
    [
        fake(
            ENDPOINT,
            "s3",
            vpcId="vpc-id",
            serviceName="com.amazonaws.us-east-1.s3",
            vpcEndpointType="Gateway",
            subnetIds=["a-id"],
            routeTableIds=["rt-id"],
        )
    ],
)
def _endpoint(r: Registration, g: Graph) -> str | None:
    kind, service = r.inputs.get("vpcEndpointType", "Gateway"), str(r.inputs.get("serviceName"))
    if kind != "Gateway":
        return "routeTableIds on a non-Gateway endpoint" if r.inputs.get("routeTableIds") else None
    tables = set(_list(r.inputs.get("routeTableIds")))
    twins = [
        x.name
        for x in g.of_type(ENDPOINT)
        if x is not r and x.inputs.get("serviceName") == service and tables & set(_list(x.inputs.get("routeTableIds")))
    ]
    elsewhere = [
        t.name
        for t in filter(None, (g.ref(t, ROUTE_TABLE) for t in tables))
        if t.inputs.get("vpcId") != r.inputs.get("vpcId")
    ]
    return _problems(
        f"serviceName={service!r} is not com.amazonaws.{g.region}.s3|dynamodb"
        if service not in (f"com.amazonaws.{g.region}.s3", f"com.amazonaws.{g.region}.dynamodb")
        else None,
        f"a Gateway endpoint with {_set(r, 'subnetIds', 'securityGroupIds', 'privateDnsEnabled')}"
        if _set(r, "subnetIds", "securityGroupIds", "privateDnsEnabled")
        else None,
        f"shares route tables with {twins} for the same service" if twins else None,
        f"route tables {elsewhere} are in another VPC" if elsewhere else None,
    )


# --------------------------------------------------------------------------------------------------
# Security groups

SG_TEXT = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$")


@row(
    "sg-description-and-name",
    SG,
    "description 1-255 characters of a-z A-Z 0-9 space ._-:/()#,@[]+=&;{}!$*; a name (if set) the same and not sg-*",
    'pulumi_aws ec2.SecurityGroup description: "Cannot be `\\"\\"`"; EC2 CreateSecurityGroup GroupDescription / '
    'GroupName: "Up to 255 characters in length ... a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*", GroupName '
    '"Cannot start with sg-"',
    [fake(SG, "web", vpcId="vpc-id", description="web tier: HTTPS from the load balancer's group only")],
)
def _sg_text(r: Registration, g: Graph) -> str | None:
    description = r.inputs.get("description", "Managed by Pulumi")
    name = r.inputs.get("name")
    return _problems(
        f"description {description!r}"
        if not isinstance(description, str) or not 1 <= len(description) <= 255 or not SG_TEXT.match(description)
        else None,
        f"name {name!r}"
        if isinstance(name, str) and (len(name) > 255 or not SG_TEXT.match(name) or name.startswith("sg-"))
        else None,
    )


RULE_TYPES = (INGRESS, EGRESS)


def _rules_of(group: Registration, g: Graph) -> list[Registration]:
    return [x for x in g.of_type(*RULE_TYPES) if g.ref(x.inputs.get("securityGroupId"), SG, DEFAULT_SG) is group]


@row(
    "sg-rules-separate-and-within-quota",
    SG,
    "a group with inline ingress/egress gets no rule resources; at most 60 inbound and 60 outbound rules",
    'pulumi_aws ec2.SecurityGroup: "You should not use the `ec2.SecurityGroup` resource with _in-line rules_ ... '
    'in conjunction with the `vpc.SecurityGroupEgressRule` and `vpc.SecurityGroupIngressRule` resources"; VPC '
    'quotas: "Inbound or outbound rules per security group: 60" (RulesPerSecurityGroupLimitExceeded)',
    [
        fake(SG, "lb", vpcId="vpc-id", description="lb", ingress=[{"fromPort": 443, "toPort": 443, "protocol": "tcp"}]),
        fake(
            INGRESS,
            "lb-in-443",
            securityGroupId="lb-id",
            ipProtocol="tcp",
            fromPort=443,
            toPort=443,
            cidrIpv4="0.0.0.0/0",
        ),
    ],
)
def _sg_rules(r: Registration, g: Graph) -> str | None:
    rules = _rules_of(r, g)
    inline = _set(r, "ingress", "egress") if (r.inputs.get("ingress") or r.inputs.get("egress")) else []
    counts = Counter(x.type for x in rules)
    return _problems(
        f"inline {inline} and rule resources {[x.name for x in rules]}" if inline and rules else None,
        *(f"{n} {t.split(':')[-1]}s" for t, n in counts.items() if n > 60),
    )


@row(
    "default-sg",
    DEFAULT_SG,
    "one per VPC; its rules only inline (no rule resources on the default group)",
    'pulumi_aws ec2.DefaultSecurityGroup: adopts the VPC\'s one default group and "removes all rules" not in its '
    "ingress/egress; rule resources on it fight that (the same in-line WARNING as ec2.SecurityGroup)",
    [
        fake(DEFAULT_SG, "default-sg", vpcId="vpc-id", ingress=[], egress=[]),
        fake(DEFAULT_SG, "default-sg-2", vpcId="vpc-id"),
    ],
)
def _default_sg(r: Registration, g: Graph) -> str | None:
    twins = [x.name for x in g.of_type(DEFAULT_SG) if x is not r and x.inputs.get("vpcId") == r.inputs.get("vpcId")]
    rules = [x.name for x in _rules_of(r, g)]
    return _problems(
        f"VPC {r.inputs.get('vpcId')!r} also adopted by {twins}" if twins else None,
        f"rule resources {rules} on the default group" if rules else None,
    )


PEERS = ("cidrIpv4", "cidrIpv6", "prefixListId", "referencedSecurityGroupId")


def _rule_key(x: Registration) -> tuple[Any, ...]:
    return (
        x.type,
        x.inputs.get("securityGroupId"),
        str(x.inputs.get("ipProtocol")),
        x.inputs.get("fromPort"),
        x.inputs.get("toPort"),
        *(x.inputs.get(p) for p in PEERS),
    )


@row(
    "sg-rule",
    RULE_TYPES,
    "exactly one peer; ports for tcp/udp/icmp (fromPort <= toPort), none for -1 nor for a protocol without ports "
    "(VRRP, 112); a network CIDR; a description of the SG charset; peers in the same VPC; no duplicate rules",
    'pulumi_aws vpc.SecurityGroupIngressRule: "you *must* provide one of them [cidr_ipv4, cidr_ipv6, '
    'prefix_list_id, referenced_security_group_id]", "The `from_port` and `to_port` arguments are required unless '
    '`ip_protocol` is set to `-1`"; EC2 AuthorizeSecurityGroupIngress: "If you specify a protocol other than tcp, '
    'udp, icmp, or icmpv6, traffic on all ports is allowed, regardless of any ports you specify" (and the provider '
    'reads back -1, a null only when none was planned); EC2: "InvalidPermission.Duplicate"; Description: "Up to '
    '255 characters ... a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=;{}!$*"',
    [
        fake(
            INGRESS,
            "lb-in-443",
            securityGroupId="lb-id",
            ipProtocol="tcp",
            fromPort=443,
            toPort=80,
            cidrIpv4="0.0.0.1/0",
            referencedSecurityGroupId="sg-x",
        ),
        fake(SG, "lb", vpcId="vpc-id", description="lb"),
    ],
)
def _sg_rule(r: Registration, g: Graph) -> str | None:
    peers, protocol = _set(r, *PEERS), str(r.inputs.get("ipProtocol"))
    low, high = _num(r.inputs.get("fromPort")), _num(r.inputs.get("toPort"))
    found = [f"peers {peers or 'none'}"] if len(peers) != 1 else []
    if protocol in ("-1", "all"):
        found += ["ports with ipProtocol -1"] if low is not None or high is not None else []
    elif protocol not in ("tcp", "udp", "icmp", "icmpv6", "6", "17", "1", "58"):
        found += [f"ports with ipProtocol {protocol} (it has none)"] if low is not None or high is not None else []
    elif protocol != "icmpv6" and (low is None or high is None or low > high):
        found.append(f"ports {low!r}-{high!r} for {protocol}")
    for key in ("cidrIpv4", "cidrIpv6"):
        if (cidr := r.inputs.get(key)) is not None:
            try:
                ipaddress.ip_network(str(cidr), strict=True)
            except ValueError:
                found.append(f"{key}={cidr!r} is not a network address")
    description = r.inputs.get("description")
    if isinstance(description, str) and (len(description) > 255 or not SG_TEXT.match(description)):
        found.append(f"description {description!r}")
    own, peer = g.ref(r.inputs.get("securityGroupId"), SG), g.ref(r.inputs.get("referencedSecurityGroupId"), SG)
    if own and peer and own.inputs.get("vpcId") != peer.inputs.get("vpcId"):
        found.append(f"references {peer.name} of another VPC")
    twins = [x.name for x in g.of_type(r.type) if x is not r and _rule_key(x) == _rule_key(r)]
    found += [f"duplicates {twins}"] if twins else []
    return "; ".join(found) or None


# --------------------------------------------------------------------------------------------------
# Flow logs

FLOW_LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams")


@row(
    "flow-log-destination",
    FLOW_LOG,
    "one source (vpcId, subnetId, eniId, ...) with trafficType; cloud-watch-logs needs iamRoleArn and a log group "
    "ARN, s3 takes no role",
    'pulumi_aws ec2.FlowLog: "One of `eni_id`, ..., or `vpc_id` must be specified"; traffic_type "Required if '
    '`eni_id`, `regional_nat_gateway_id`, `subnet_id`, or `vpc_id` is specified"; EC2 CreateFlowLogs '
    'DeliverLogsPermissionArn: "required if the destination type is cloud-watch-logs ... unsupported for s3"',
    [
        fake(
            FLOW_LOG,
            "flow-log",
            vpcId="vpc-id",
            logDestinationType="cloud-watch-logs",
            logDestination="arn:aws:logs:eu-west-1:1:log-group:x:*",
        )
    ],
)
def _flow_log(r: Registration, g: Graph) -> str | None:
    sources = _set(
        r, "eniId", "subnetId", "vpcId", "transitGatewayId", "transitGatewayAttachmentId", "regionalNatGatewayId"
    )
    kind, role, dest = (
        r.inputs.get("logDestinationType", "cloud-watch-logs"),
        r.inputs.get("iamRoleArn"),
        r.inputs.get("logDestination"),
    )
    return _problems(
        f"sources {sources or 'none'}" if len(sources) != 1 else None,
        "no trafficType"
        if set(sources) & {"eniId", "subnetId", "vpcId", "regionalNatGatewayId"} and not r.inputs.get("trafficType")
        else None,
        "cloud-watch-logs without iamRoleArn" if kind == "cloud-watch-logs" and not role else None,
        f"logDestination={dest!r} is not a log group ARN"
        if kind == "cloud-watch-logs"
        and dest is not None
        and not re.fullmatch(r"arn:[^:]+:logs:[^:]+:\d{12}:log-group:[^:*]+", str(dest))
        else None,
        "iamRoleArn with an s3 destination" if kind == "s3" and role else None,
    )


@row(
    "flow-log-role",
    FLOW_LOG,
    "the flow log's role trusts vpc-flow-logs.amazonaws.com, may CreateLogStream, PutLogEvents, DescribeLogGroups "
    "and DescribeLogStreams on the group, and exists with its policies before the flow log",
    'VPC User Guide, "IAM role for publishing flow logs to CloudWatch Logs": trust vpc-flow-logs.amazonaws.com; '
    '"logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents, logs:DescribeLogGroups, '
    'logs:DescribeLogStreams"; a flow log created before its policy only reports an access error in '
    "DeliverLogsErrorMessage (issue 10, item 10)",
    [
        fake(
            FLOW_LOG,
            "flow-log",
            vpcId="vpc-id",
            trafficType="ALL",
            iamRoleArn=f"{ARN_ROLE}flow",
            logDestination=f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/f",
        ),
        fake(ROLE, "flow", out={"arn": f"{ARN_ROLE}flow"}, assumeRolePolicy=_trust("vpc-flow-logs.amazonaws.com")),
        fake(
            ROLE_POLICY,
            "flow-policy",
            role="flow-id",
            policy=_policy(
                {
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    "Resource": "*",
                }
            ),
        ),
    ],
)
def _flow_log_role(r: Registration, g: Graph) -> str | None:
    role = g.ref(r.inputs.get("iamRoleArn"), ROLE)
    if role is None:
        return None
    group = str(r.inputs.get("logDestination", "*"))
    statements = _role_statements(role, g)
    missing = [
        a for a in FLOW_LOG_ACTIONS if not any(_allows(statements, a, res) for res in (group, f"{group}:log-stream:x"))
    ]
    policies = [p for p in g.of_type(ROLE_POLICY, ATTACHMENT) if _role_of(p.inputs.get("role"), g) is role]
    early = [p.name for p in policies if not g.waits_for(r, p)]
    return _problems(
        None
        if "vpc-flow-logs.amazonaws.com" in _trusted_services(role)
        else f"role {role.name} doesn't trust vpc-flow-logs.amazonaws.com",
        f"role {role.name} may not {', '.join(missing)} on {group}" if missing else None,
        f"doesn't wait for the role's policies {early}" if early else None,
    )


# --------------------------------------------------------------------------------------------------
# IAM

IAM_NAME = re.compile(r"^[\w+=,.@-]+$")


@row(
    "iam-role-name",
    ROLE,
    "name <= 64, namePrefix <= 38 (the provider adds 26), auto-name <= 64, of [A-Za-z0-9+=,.@_-]; description <= 1000",
    'IAM CreateRole RoleName: "Maximum length of 64. Pattern: [\\w+=,.@-]+"; pulumi_aws name_prefix: "Creates a '
    'unique friendly name beginning with the specified prefix"; Description "Maximum length of 1000"',
    [fake(ROLE, "web-role", namePrefix="foobar-a-rather-long-stack-name-web-role-")],
)
def _role_name(r: Registration, g: Graph) -> str | None:
    name, prefix, description = r.inputs.get("name"), r.inputs.get("namePrefix"), r.inputs.get("description")
    if isinstance(name, str):
        bad_name = f"name {name!r}" if len(name) > 64 or not IAM_NAME.match(name) else None
    elif isinstance(prefix, str):
        bad_name = (
            f"namePrefix {prefix!r} ({len(prefix)} characters, at most 38)"
            if len(prefix) > 38 or not IAM_NAME.match(prefix)
            else None
        )
    else:
        auto = f"{r.name}-abcdefg"
        bad_name = (
            f"auto-name from {r.name!r} ({len(auto)} characters)"
            if len(auto) > 64 or not IAM_NAME.match(auto)
            else None
        )
    return _problems(
        bad_name,
        f"description has {len(description)} characters"
        if isinstance(description, str) and len(description) > 1000
        else None,
    )


@row(
    "iam-role-trust-policy",
    ROLE,
    "assumeRolePolicy: a trust policy (Principal, no Resource, sts: actions), <= 2048 characters without whitespace",
    'IAM quotas: "Role trust policy length: 2,048 characters"; IAM policy grammar: a trust policy names a '
    'Principal and may not name a Resource ("MalformedPolicyDocument: Has prohibited field Resource")',
    [
        fake(
            ROLE, "web-role", assumeRolePolicy=_policy({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"})
        )
    ],
)
def _role_trust(r: Registration, g: Graph) -> str | None:
    policy = r.inputs.get("assumeRolePolicy")
    actions = [str(a) for st in _statements(policy) for a in _list(st.get("Action"))]
    return _problems(
        _grammar(policy, "trust"),
        f"actions {[a for a in actions if not a.startswith('sts:')]} are not sts:"
        if any(not a.startswith("sts:") for a in actions)
        else None,
        f"{_compact(policy)} characters" if _compact(policy) > 2048 else None,
    )


@row(
    "iam-inline-policy",
    ROLE_POLICY,
    "an identity policy (no Principal) on a role of the stack; the role's inline policies together <= 10,240 "
    "characters",
    'IAM quotas: "Role policy size cannot exceed 10,240 characters" (aggregate of inline policies, whitespace not '
    'counted); "MalformedPolicyDocument: Policy document should not specify a principal"',
    [
        fake(
            ROLE_POLICY,
            "web-policy",
            role="web-role",
            policy=_policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Principal": "*"}),
        ),
        fake(ROLE, "web-role"),
    ],
)
def _inline_policy(r: Registration, g: Graph) -> str | None:
    role = _role_of(r.inputs.get("role"), g)
    total = sum(
        _compact(p.inputs.get("policy"))
        for p in g.of_type(ROLE_POLICY)
        if role is not None and _role_of(p.inputs.get("role"), g) is role
    )
    name = r.inputs.get("name")
    return _problems(
        _grammar(r.inputs.get("policy"), "identity"),
        f"role {r.inputs.get('role')!r} is not a role of the stack" if role is None else None,
        f"role {role.name} has {total} characters of inline policy" if role is not None and total > 10240 else None,
        f"name {name!r}" if isinstance(name, str) and (len(name) > 128 or not IAM_NAME.match(name)) else None,
    )


MANAGED_PATHS = {
    "AmazonRDSEnhancedMonitoringRole": "service-role/",
    "AWSLambdaBasicExecutionRole": "service-role/",
    "AmazonSSMManagedInstanceCore": "",
    "CloudWatchAgentServerPolicy": "",
}
"""Where AWS keeps managed policies the program might attach (a wrong path: NoSuchEntity)."""


@row(
    "iam-policy-attachment",
    ATTACHMENT,
    "policyArn is a policy ARN (AWS-managed ones at their real path); at most 10 managed policies per role",
    'IAM quotas: "Managed policies attached to an IAM role: 10" (LimitExceeded); AttachRolePolicy: "NoSuchEntity" '
    "for an ARN that doesn't exist, e.g. AmazonRDSEnhancedMonitoringRole lives under policy/service-role/",
    [
        fake(
            ATTACHMENT,
            "monitoring",
            role="db-monitoring",
            policyArn="arn:aws:iam::aws:policy/AmazonRDSEnhancedMonitoringRole",
        )
    ],
)
def _attachment(r: Registration, g: Graph) -> str | None:
    arn = str(r.inputs.get("policyArn"))
    m = re.fullmatch(r"arn:aws[a-z-]*:iam::(aws|\d{12}):policy/(.*/)?([\w+=,.@-]+)", arn)
    role = _role_of(r.inputs.get("role"), g)
    count = sum(1 for a in g.of_type(ATTACHMENT) if role is not None and _role_of(a.inputs.get("role"), g) is role)
    wrong_path = (
        bool(m) and m is not None and m[1] == "aws" and m[3] in MANAGED_PATHS and (m[2] or "") != MANAGED_PATHS[m[3]]
    )
    return _problems(
        f"policyArn={arn!r}" if not m or wrong_path else None,
        f"role {role.name} has {count} managed policies" if role is not None and count > 10 else None,
    )


@row(
    "iam-instance-profile",
    PROFILE,
    "the profile's role is a role of the stack that trusts ec2.amazonaws.com; name (or auto-name) <= 128",
    'IAM CreateInstanceProfile InstanceProfileName: "Maximum length of 128"; EC2 User Guide, "IAM roles for '
    'Amazon EC2": the role must trust ec2.amazonaws.com',
    [
        fake(PROFILE, "web-profile", role="web-role"),
        fake(ROLE, "web-role", assumeRolePolicy=_trust("ecs-tasks.amazonaws.com")),
    ],
)
def _profile(r: Registration, g: Graph) -> str | None:
    role = _role_of(r.inputs.get("role"), g)
    name = r.inputs.get("name") or f"{r.name}-abcdefg"
    return _problems(
        f"role {r.inputs.get('role')!r} is not a role of the stack" if role is None else None,
        f"role {role.name} doesn't trust ec2.amazonaws.com"
        if role is not None and "ec2.amazonaws.com" not in _trusted_services(role)
        else None,
        f"name {name!r}" if len(str(name)) > 128 or not IAM_NAME.match(str(name)) else None,
    )


# --------------------------------------------------------------------------------------------------
# S3

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def _bucket_name_problem(name: str, *, prefix: bool) -> str | None:
    limit = 37 if prefix else 63
    bad = (
        len(name) > limit
        or (not prefix and len(name) < 3)
        or not BUCKET_NAME.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or (not prefix and (name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3")) or not name[-1].isalnum()))
    )
    return f"{'bucketPrefix' if prefix else 'bucket'} {name!r}" if bad else None


@row(
    "s3-bucket-name",
    BUCKET,
    "bucket 3-63 / bucketPrefix <= 37 of lowercase letters, digits, '.', '-'; alphanumeric first (and last); no "
    "'..', no reserved prefix or suffix",
    'pulumi_aws s3.Bucket bucket_prefix: "Must be lowercase and less than or equal to 37 characters in length"; '
    'S3 User Guide, "General purpose bucket naming rules": "3 (min) and 63 (max) characters ... lowercase '
    'letters, numbers, dots, and hyphens ... must not start with the prefix xn--"',
    [fake(BUCKET, "artifacts", bucketPrefix="Foobar_Dev-artifacts-")],
)
def _bucket_name(r: Registration, g: Graph) -> str | None:
    if isinstance(bucket := r.inputs.get("bucket"), str):
        return _bucket_name_problem(bucket, prefix=False)
    if isinstance(prefix := r.inputs.get("bucketPrefix"), str):
        return _bucket_name_problem(prefix, prefix=True)
    return _bucket_name_problem(f"{r.name}-abcdefg", prefix=False)


def _bucket_of(r: Registration, g: Graph) -> Registration | None:
    return g.ref(r.inputs.get("bucket"), BUCKET)


def _one_per_bucket(r: Registration, g: Graph) -> str | None:
    twins = [x.name for x in g.of_type(r.type) if x is not r and x.inputs.get("bucket") == r.inputs.get("bucket")]
    return f"bucket {r.inputs.get('bucket')!r} also has {twins}" if twins else None


@row(
    "s3-public-access-block",
    PUBLIC_BLOCK,
    "one public access block per bucket, on a bucket of the stack",
    "S3 PutPublicAccessBlock replaces the bucket's one configuration: two resources overwrite each other",
    [fake(PUBLIC_BLOCK, "a", bucket="artifacts-id"), fake(PUBLIC_BLOCK, "b", bucket="artifacts-id")],
)
def _public_block(r: Registration, g: Graph) -> str | None:
    return _problems(
        _one_per_bucket(r, g),
        None if _bucket_of(r, g) or not g.of_type(BUCKET) else f"bucket {r.inputs.get('bucket')!r} is not the stack's",
    )


@row(
    "s3-ownership-controls",
    OWNERSHIP,
    "objectOwnership is BucketOwnerPreferred, ObjectWriter or BucketOwnerEnforced; one per bucket",
    'S3 PutBucketOwnershipControls ObjectOwnership: "BucketOwnerPreferred | ObjectWriter | BucketOwnerEnforced"',
    [fake(OWNERSHIP, "ownership", bucket="artifacts-id", rule={"objectOwnership": "BucketOwner"})],
)
def _ownership(r: Registration, g: Graph) -> str | None:
    value = (r.inputs.get("rule") or {}).get("objectOwnership")
    return _problems(
        f"objectOwnership={value!r}"
        if value not in ("BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced")
        else None,
        _one_per_bucket(r, g),
    )


@row(
    "s3-encryption",
    BUCKET_SSE,
    "exactly one rule; sseAlgorithm AES256, aws:kms or aws:kms:dsse; kmsMasterKeyId only with a KMS algorithm",
    'pulumi_aws s3.BucketServerSideEncryptionConfiguration rules: "Currently, only a single rule is supported"; '
    'S3 ServerSideEncryptionByDefault SSEAlgorithm "AES256 | aws:kms | aws:kms:dsse", KMSMasterKeyID "only if '
    'SSEAlgorithm is aws:kms or aws:kms:dsse"',
    [
        fake(
            BUCKET_SSE,
            "encryption",
            bucket="artifacts-id",
            rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256", "kmsMasterKeyId": "k"}}] * 2,
        )
    ],
)
def _bucket_sse(r: Registration, g: Graph) -> str | None:
    rules = [x for x in _list(r.inputs.get("rules")) if isinstance(x, dict)]
    found = [f"{len(rules)} rules"] if len(rules) != 1 else []
    for x in rules:
        default = x.get("applyServerSideEncryptionByDefault") or {}
        algorithm = default.get("sseAlgorithm")
        if algorithm not in ("AES256", "aws:kms", "aws:kms:dsse"):
            found.append(f"sseAlgorithm={algorithm!r}")
        if default.get("kmsMasterKeyId") and algorithm == "AES256":
            found.append("kmsMasterKeyId with AES256")
    return _problems(*found, _one_per_bucket(r, g))


def _public_allow(statements: Iterable[dict[str, Any]]) -> list[int]:
    """Statements S3 counts as public: Allow to everyone without a condition."""
    return [
        i
        for i, st in enumerate(statements)
        if st.get("Effect") == "Allow"
        and (
            st.get("Principal") == "*"
            or (isinstance(st.get("Principal"), dict) and "*" in _list(st["Principal"].get("AWS")))
        )
        and not st.get("Condition")
    ]


@row(
    "s3-bucket-policy",
    BUCKET_POLICY,
    "a resource policy (Principal and Resource in every statement), <= 20 KB, not public when the bucket blocks "
    "public policies",
    'pulumi_aws s3.BucketPolicy policy: "Bucket policies are limited to 20 KB in size"; '
    's3.BucketPublicAccessBlock block_public_policy: "When set to `true`, Amazon S3 rejects calls to PUT Bucket '
    'policy if the specified bucket policy allows public access"',
    [
        fake(
            BUCKET_POLICY,
            "policy",
            bucket="artifacts-id",
            policy=_policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}),
        ),
        fake(PUBLIC_BLOCK, "public-access", bucket="artifacts-id", blockPublicPolicy=True),
    ],
)
def _bucket_policy(r: Registration, g: Graph) -> str | None:
    policy = r.inputs.get("policy")
    blocked = any(
        b.inputs.get("bucket") == r.inputs.get("bucket") and b.inputs.get("blockPublicPolicy")
        for b in g.of_type(PUBLIC_BLOCK)
    )
    public = _public_allow(_statements(policy))
    return _problems(
        _grammar(policy, "resource"),
        f"{len(str(policy))} characters" if len(str(policy)) > 20480 else None,
        f"statements {public} are public and the bucket blocks public policies" if blocked and public else None,
    )


@row(
    "s3-object",
    OBJECT,
    "at most one of content, contentBase64, source (valid base64); key 1-1024 bytes; serverSideEncryption valid; "
    "no ACL but private/bucket-owner-full-control when the bucket enforces owner",
    'pulumi_aws s3.BucketObjectv2 server_side_encryption: "Valid values are `\\"AES256\\"`, `\\"aws:kms\\"`, '
    '`\\"aws:kms:dsse\\"`, and `\\"aws:fsx\\"`"; S3 object key "up to 1,024 bytes long"; S3 User Guide, '
    '"Controlling ownership of objects": with BucketOwnerEnforced, PUT with an ACL fails '
    "(AccessControlListNotSupported)",
    [
        fake(
            OBJECT,
            "web-archive",
            bucket="artifacts-id",
            key="web/x.tar.gz",
            content="x",
            contentBase64="eA==",
            acl="public-read",
        ),
        fake(OWNERSHIP, "ownership", bucket="artifacts-id", rule={"objectOwnership": "BucketOwnerEnforced"}),
    ],
)
def _object(r: Registration, g: Graph) -> str | None:
    sources = _set(r, "content", "contentBase64", "source")
    key, sse, acl = str(r.inputs.get("key", "")), r.inputs.get("serverSideEncryption"), r.inputs.get("acl")
    enforced = any(
        o.inputs.get("bucket") == r.inputs.get("bucket")
        and (o.inputs.get("rule") or {}).get("objectOwnership") == "BucketOwnerEnforced"
        for o in g.of_type(OWNERSHIP)
    )
    bad_base64 = None
    if isinstance(encoded := r.inputs.get("contentBase64"), str):
        try:
            base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            bad_base64 = "contentBase64 is not base64"
    return _problems(
        f"sets {sources}" if len(sources) > 1 else None,
        bad_base64,
        f"key of {len(key.encode())} bytes" if not 1 <= len(key.encode()) <= 1024 else None,
        f"serverSideEncryption={sse!r}"
        if sse is not None and sse not in ("AES256", "aws:kms", "aws:kms:dsse", "aws:fsx")
        else None,
        f"acl={acl!r} on a BucketOwnerEnforced bucket"
        if enforced and acl not in (None, "private", "bucket-owner-full-control")
        else None,
    )


# --------------------------------------------------------------------------------------------------
# SSM parameters

SSM_NAME = re.compile(r"^[a-zA-Z0-9_.\-/]+$")


@row(
    "ssm-parameter",
    PARAMETER,
    "name of a-zA-Z0-9_.-/ (a path starts with /), <= 1011, <= 15 levels, not aws*/ssm*, unique; type String, "
    "StringList or SecureString; a non-empty value of at most 4 KB (Standard tier)",
    'pulumi_aws ssm.Parameter name: "If the name contains a path (e.g., any forward slashes (`/`)), it must be '
    'fully qualified with a leading forward slash"; SSM User Guide, "Parameter name requirements and '
    'constraints": "can\'t be prefixed with aws or ssm", "a maximum of 15 levels"; PutParameter Value "Minimum '
    'length of 1", Standard parameters "4 KB"; ParameterAlreadyExists',
    [fake(PARAMETER, "db-secret-arn", name="foobar/dev/app/db secret", type="String", value="")],
)
def _ssm(r: Registration, g: Graph) -> str | None:
    name, kind, value = str(r.inputs.get("name", "")), r.inputs.get("type"), r.inputs.get("value")
    tier = r.inputs.get("tier", "Standard")
    limit = 8192 if tier in ("Advanced", "Intelligent-Tiering") else 4096
    twins = [x.name for x in g.of_type(PARAMETER) if x is not r and x.inputs.get("name") == name] if name else []
    return _problems(
        f"name {name!r}"
        if not SSM_NAME.match(name)
        or ("/" in name and not name.startswith("/"))
        or len(name) > 1011
        or name.count("/") > 15
        or name.lstrip("/").lower().startswith(("aws", "ssm"))
        else None,
        f"name {name!r} is also used by {twins}" if twins else None,
        f"type={kind!r}" if kind not in ("String", "StringList", "SecureString") else None,
        f"value of {len(str(value))} characters" if value is not None and not 1 <= len(str(value)) <= limit else None,
    )


# --------------------------------------------------------------------------------------------------
# TLS (the internal CA)


@row(
    "tls-private-key",
    TLS_KEY,
    "algorithm RSA, ECDSA or ED25519; an ECDSA key names a TLS-usable curve (P256/P384, not the P224 default); "
    "rsaBits only for RSA, ecdsaCurve only for ECDSA",
    'pulumi_tls PrivateKey algorithm: "`RSA`, `ECDSA`, `ED25519`"; ecdsa_curve: "When `algorithm` is `ECDSA` ... '
    '(default: `P224`)"; P-224 is in no TLS 1.3 group list and OpenSSL/HAProxy clients refuse it',
    [fake(TLS_KEY, "ca-key", algorithm="ECDSA", rsaBits=2048)],
)
def _tls_key(r: Registration, g: Graph) -> str | None:
    algorithm, curve = r.inputs.get("algorithm"), r.inputs.get("ecdsaCurve")
    return _problems(
        f"algorithm={algorithm!r}" if algorithm not in ("RSA", "ECDSA", "ED25519") else None,
        f"ECDSA with ecdsaCurve={curve or 'P224 (default)'}"
        if algorithm == "ECDSA" and curve not in ("P256", "P384")
        else None,
        "rsaBits without RSA" if r.inputs.get("rsaBits") is not None and algorithm != "RSA" else None,
        "ecdsaCurve without ECDSA" if curve is not None and algorithm != "ECDSA" else None,
    )


def _common_name_problem(r: Registration) -> str | None:
    cn = (r.inputs.get("subject") or {}).get("commonName")
    return f"subject.commonName of {len(cn)} characters (at most 64)" if isinstance(cn, str) and len(cn) > 64 else None


@row(
    "tls-ca",
    TLS_CA,
    "a CA certificate may sign certificates (cert_signing), has a validity > 0 and a commonName <= 64",
    'pulumi_tls SelfSignedCert is_ca_certificate / allowed_uses ("cert_signing"); RFC 5280 section 4.2.1.3 '
    "keyCertSign for CA certificates, appendix A ub-common-name INTEGER ::= 64",
    [fake(TLS_CA, "ca", isCaCertificate=True, allowedUses=["digital_signature"], validityPeriodHours=0)],
)
def _tls_ca(r: Registration, g: Graph) -> str | None:
    hours = _num(r.inputs.get("validityPeriodHours")) or 0
    return _problems(
        "isCaCertificate without cert_signing"
        if r.inputs.get("isCaCertificate") and "cert_signing" not in _list(r.inputs.get("allowedUses"))
        else None,
        f"validityPeriodHours={hours:g}" if hours <= 0 else None,
        _common_name_problem(r),
    )


@row(
    "tls-cert-request",
    TLS_CSR,
    "dnsNames are DNS names; subject.commonName <= 64 characters",
    "RFC 5280 appendix A: ub-common-name INTEGER ::= 64 (a domain longer than 64 can't be the CN); RFC 1035 labels",
    [fake(TLS_CSR, "lb-csr", dnsNames=["www.-foobar.com"], subject={"commonName": "x" * 70})],
)
def _tls_csr(r: Registration, g: Graph) -> str | None:
    return _problems(*(_dns_problem(str(n)) for n in _list(r.inputs.get("dnsNames"))), _common_name_problem(r))


@row(
    "tls-leaf",
    TLS_LEAF,
    "earlyRenewalHours below validityPeriodHours, validity within the CA's; signed by a CA of the stack with that "
    "CA's own key; usable by a TLS server (digital_signature, server_auth)",
    'pulumi_tls LocallySignedCert early_renewal_hours: "consider the certificate to have expired the given number '
    'of hours before its actual expiry time" (at or above the validity: replaced on every `pulumi up`); RFC 5280 '
    "section 4.2.1.12 id-kp-serverAuth",
    [
        fake(
            TLS_LEAF,
            "web-cert",
            caCertPem="CA",
            caPrivateKeyPem="OTHER-KEY",
            validityPeriodHours=8760,
            earlyRenewalHours=8760,
            allowedUses=["server_auth"],
        ),
        fake(TLS_CA, "ca", out={"certPem": "CA"}, privateKeyPem="CA-KEY", validityPeriodHours=43800),
    ],
)
def _tls_leaf(r: Registration, g: Graph) -> str | None:
    hours, early = _num(r.inputs.get("validityPeriodHours")) or 0, _num(r.inputs.get("earlyRenewalHours")) or 0
    ca = next((c for c in g.of_type(TLS_CA) if c.outputs.get("certPem") == r.inputs.get("caCertPem")), None)
    uses = set(_list(r.inputs.get("allowedUses")))
    return _problems(
        f"earlyRenewalHours={early:g} >= validityPeriodHours={hours:g}" if early >= hours else None,
        "caCertPem is not a CA of the stack" if ca is None and g.of_type(TLS_CA) else None,
        f"signed with a key that isn't {ca.name}'s"
        if ca is not None and ca.inputs.get("privateKeyPem") != r.inputs.get("caPrivateKeyPem")
        else None,
        f"validityPeriodHours={hours:g} outlives the CA ({ca.inputs.get('validityPeriodHours')})"
        if ca is not None and hours > (_num(ca.inputs.get("validityPeriodHours")) or 0)
        else None,
        f"allowedUses lack {sorted({'digital_signature', 'server_auth'} - uses)}"
        if {"digital_signature", "server_auth"} - uses
        else None,
    )


# --------------------------------------------------------------------------------------------------
# ACM, Route 53


@row(
    "acm-certificate",
    ACM,
    "domainName a DNS name whose first name is <= 64 characters; validationMethod DNS or EMAIL; options.export "
    "ENABLED or DISABLED",
    'ACM RequestCertificate DomainName: "In compliance with RFC 5280, the length of the domain name (technically, '
    'the Common Name) that you provide cannot exceed 64 octets (characters), including periods"; ValidationMethod '
    '"EMAIL | DNS | HTTP"; pulumi_aws CertificateOptions export: "Valid values are `ENABLED` or `DISABLED`"',
    [fake(ACM, "public", domainName="a" * 60 + ".foobar.com", validationMethod="HTTPS", options={"export": "YES"})],
)
def _acm(r: Registration, g: Graph) -> str | None:
    domain = str(r.inputs.get("domainName", ""))
    imported = _set(r, "privateKey", "certificateBody", "certificateAuthorityArn")
    method, export = r.inputs.get("validationMethod"), (r.inputs.get("options") or {}).get("export")
    return _problems(
        _dns_problem(domain, wildcard=True),
        f"domainName of {len(domain)} characters (the first name: at most 64)" if len(domain) > 64 else None,
        f"validationMethod={method!r}" if not imported and method not in ("DNS", "EMAIL") else None,
        f"options.export={export!r}" if export is not None and export not in ("ENABLED", "DISABLED") else None,
    )


@row(
    "acm-validation",
    ACM_VALIDATION,
    "validates a certificate of the stack; validationRecordFqdns only for DNS validation",
    'pulumi_aws acm.CertificateValidation validation_record_fqdns: "Only valid for DNS validation method ACM '
    'certificates"',
    [
        fake(ACM_VALIDATION, "validation", certificateArn="arn:acm:cert", validationRecordFqdns=["_x.www.foobar.com"]),
        fake(ACM, "public", out={"arn": "arn:acm:cert"}, domainName="www.foobar.com", validationMethod="EMAIL"),
    ],
    only_under="prod-zone",
)
def _acm_validation(r: Registration, g: Graph) -> str | None:
    cert = g.ref(r.inputs.get("certificateArn"), ACM)
    return _problems(
        f"certificateArn={r.inputs.get('certificateArn')!r} is not a certificate of the stack"
        if cert is None
        else None,
        f"validationRecordFqdns for a {cert.inputs.get('validationMethod')} certificate"
        if cert is not None and r.inputs.get("validationRecordFqdns") and cert.inputs.get("validationMethod") != "DNS"
        else None,
    )


RECORD_TYPES = {
    "A",
    "AAAA",
    "CAA",
    "CNAME",
    "DS",
    "HTTPS",
    "MX",
    "NAPTR",
    "NS",
    "PTR",
    "SOA",
    "SPF",
    "SRV",
    "SSHFP",
    "SVCB",
    "TLSA",
    "TXT",
}


@row(
    "route53-record",
    RECORD,
    "a known type; exactly one of records, aliases; ttl with records only; A values IPv4; one CNAME value; one "
    "record per zone, name, type and set identifier",
    'pulumi_aws route53.Record: "Exactly one of `records` or `alias` must be specified", aliases: "Conflicts with '
    '`ttl` & `records`", type: "Valid values are `A`, ...", Terraform aws_route53_record ttl: "Required for '
    'non-alias records"; Route 53 ChangeResourceRecordSets: "Tried to create resource record set ... but it '
    'already exists"',
    [
        fake(RECORD, "domain", zoneId="Z1", name="www.foobar.com", type="A", records=["203.0.113.300"]),
        fake(RECORD, "domain-again", zoneId="Z1", name="www.foobar.com.", type="A", records=["203.0.113.7"], ttl=300),
    ],
    only_under="prod-zone",
)
def _record(r: Registration, g: Graph) -> str | None:
    kind, records, aliases = r.inputs.get("type"), _list(r.inputs.get("records")), r.inputs.get("aliases")

    def key(x: Registration) -> tuple[Any, ...]:
        return (
            x.inputs.get("zoneId"),
            str(x.inputs.get("name", "")).lower().rstrip("."),
            x.inputs.get("type"),
            x.inputs.get("setIdentifier"),
        )

    twins = [x.name for x in g.of_type(RECORD) if x is not r and key(x) == key(r)]
    bad_a = []
    if kind == "A":
        for value in records:
            try:
                ipaddress.IPv4Address(str(value))
            except ValueError:
                bad_a.append(value)
    return _problems(
        f"type={kind!r}" if kind not in RECORD_TYPES else None,
        "both records and aliases" if records and aliases else None,
        "neither records nor aliases" if not records and not aliases else None,
        "records without ttl" if records and r.inputs.get("ttl") is None else None,
        "ttl with aliases" if aliases and r.inputs.get("ttl") is not None else None,
        f"A records {bad_a} are not IPv4 addresses" if bad_a else None,
        f"CNAME with {len(records)} values" if kind == "CNAME" and len(records) != 1 else None,
        f"the same record as {twins}" if twins else None,
    )


# --------------------------------------------------------------------------------------------------
# Tags and providers

TAG_TEXT = re.compile(r"^[\w .:/=+\-@]*$")


def _tag_problems(tags: Mapping[str, Any], where: str) -> list[str]:
    found = []
    for k, v in tags.items():
        if not 1 <= len(k) <= 128 or k.lower().startswith("aws:") or not TAG_TEXT.match(k):
            found.append(f"{where} key {k!r}")
        if not isinstance(v, str) or len(v) > 256 or not TAG_TEXT.match(v):
            found.append(f"{where} {k}={v!r}")
    return found


def _default_tags(provider: Registration) -> dict[str, Any]:
    raw = provider.inputs.get("defaultTags")
    parsed = _doc(raw) if isinstance(raw, str | dict) else None
    tags = (parsed or {}).get("tags")
    return tags if isinstance(tags, dict) else {}


@row(
    "provider",
    PROVIDER,
    "region is an AWS region name; default tags: keys 1-128 without aws:, values <= 256, of the tag charset",
    'AWS "Tagging AWS resources": "Maximum key length: 128 Unicode characters ... value length: 256 ... The aws: '
    'prefix is reserved", allowed characters "letters, numbers, and spaces representable in UTF-8, and + - = . _ '
    ': / @"',
    [fake(PROVIDER, "aws-network", region="eu-west", defaultTags=json.dumps({"tags": {"aws:owner": "ops"}}))],
)
def _provider(r: Registration, g: Graph) -> str | None:
    region = str(r.inputs.get("region", ""))
    return _problems(
        f"region={region!r}" if not re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", region) else None,
        *_tag_problems(_default_tags(r), "default tag"),
    )


@row(
    "tags",
    ANY,
    "every resource's tags, with its provider's default tags: at most 50; keys 1-128 without aws:, values <= 256, "
    "of the tag charset",
    'AWS "Tagging AWS resources": "Maximum number of tags per resource: 50", key 128, value 256, "The aws: prefix '
    'is reserved for AWS use"',
    [fake(VPC, "vpc", cidrBlock="10.0.0.0/16", tags={"Name": "x" * 300})],
)
def _tags(r: Registration, g: Graph) -> str | None:
    tags: dict[str, Any] = dict(r.inputs.get("tags") or {})
    provider = next((p for p in g.of_type(PROVIDER) if r.provider.startswith(f"{p.urn}::")), None)
    merged = {**(_default_tags(provider) if provider else {}), **tags}
    return _problems(
        *_tag_problems(tags, "tag"), f"{len(merged)} tags with the provider's" if len(merged) > 50 else None
    )


# --------------------------------------------------------------------------------------------------
# Generated secrets (pulumi-random, Secrets Manager)

RANDOM_DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def _min_sum(r: Registration) -> float:
    return sum(_num(r.inputs.get(k)) or 0 for k in ("minUpper", "minLower", "minNumeric", "minSpecial"))


def _used_by_rds(r: Registration, g: Graph) -> list[Registration]:
    return [db for db in g.of_type(RDS) if r.urn in db.dependencies]


@row(
    "random-password",
    PASSWORD,
    'length >= 1 and >= the sum of the min_* counts; a master password for RDS: 8-41 characters with no / " @ or '
    "space in its special set",
    'pulumi_random RandomPassword length: "The minimum value for length is 1 and, length must also be >= '
    '(`min_upper` + `min_lower` + `min_numeric` + `min_special`)", special characters default '
    '"!@#$%&*()-_=+[]{}<>:?"; RDS MasterUserPassword: "any printable ASCII character except \\"/\\", \\"\\"\\", or '
    '\\"@\\" ... MySQL 8 to 41"',
    [_PASSWORD := fake(PASSWORD, "db-master-password", length=48), fake(RDS, "db-primary", deps=[_PASSWORD])],
)
def _random_password(r: Registration, g: Graph) -> str | None:
    length = _num(r.inputs.get("length")) or 0
    found = [f"length={length:g} below 1 or the min_* sum {_min_sum(r):g}"] if length < max(1, _min_sum(r)) else []
    if _used_by_rds(r, g):
        special = r.inputs.get("overrideSpecial", RANDOM_DEFAULT_SPECIAL) if r.inputs.get("special", True) else ""
        if not 8 <= length <= 41:
            found.append(f"length={length:g} for an RDS master password (8-41)")
        if forbidden := set(str(special)) & set('/"@ '):
            found.append(f"special characters include {sorted(forbidden)}")
    return "; ".join(found) or None


@row(
    "random-string-identifier",
    RANDOM_STRING,
    "length >= 1 and >= the sum of the min_* counts; a suffix of an RDS identifier has no upper case and no specials",
    'pulumi_random RandomString length: "length must also be >= (`min_upper` + `min_lower` + `min_numeric` + '
    '`min_special`)"; RDS DBInstanceIdentifier: "letters, numbers, or hyphens ... stored as a lowercase string" '
    "(upper case comes back lower: a diff on every preview)",
    [_SUFFIX := fake(RANDOM_STRING, "db-primary-suffix", length=8), fake(RDS, "db-primary", deps=[_SUFFIX])],
)
def _random_string(r: Registration, g: Graph) -> str | None:
    length = _num(r.inputs.get("length")) or 0
    used = _used_by_rds(r, g)
    return _problems(
        f"length={length:g} below 1 or the min_* sum {_min_sum(r):g}" if length < max(1, _min_sum(r)) else None,
        f"feeds {used[0].name} with upper={r.inputs.get('upper', True)}, special={r.inputs.get('special', True)}"
        if used and (r.inputs.get("upper", True) or r.inputs.get("special", True))
        else None,
    )


SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]+$")


@row(
    "secret",
    SECRET,
    "name or namePrefix (not both) of A-Za-z0-9/_+=.@-, <= 512; recoveryWindowInDays 0 or 7-30; on an ephemeral "
    "stack a fixed name is deleted at once (0), else the next stack of that name can't create it",
    'pulumi_aws secretsmanager.Secret name: "can consist of uppercase letters, lowercase letters, digits, and any '
    'of the following characters: `/_+=.@-` Conflicts with `name_prefix`"; recovery_window_in_days: "`0` to force '
    'deletion without recovery or range from `7` to `30` days"; CreateSecret: "You can\'t create this secret '
    'because a secret with this name is already scheduled for deletion"',
    [fake(SECRET, "db-master-secret", name="foobar/pr-7/db master", recoveryWindowInDays=7)],
    bad_ephemeral=True,
)
def _secret(r: Registration, g: Graph) -> str | None:
    name, prefix = r.inputs.get("name"), r.inputs.get("namePrefix")
    window = _num(r.inputs.get("recoveryWindowInDays"))
    window = 30 if window is None else window
    found = ["name and namePrefix"] if name is not None and prefix is not None else []
    for key, value, limit in (("name", name, 512), ("namePrefix", prefix, 512 - PREFIX_SUFFIX)):
        if isinstance(value, str) and (len(value) > limit or not SECRET_NAME.match(value)):
            found.append(f"{key} {value!r}")
    if not (window == 0 or 7 <= window <= 30):
        found.append(f"recoveryWindowInDays={window:g}")
    if g.ephemeral and isinstance(name, str) and window:
        found.append(f"fixed name {name!r} on an ephemeral stack with recoveryWindowInDays={window:g}")
    return "; ".join(found) or None


@row(
    "secret-readable",
    SECRET,
    "a role that may read the secret may also decrypt it: kms:Decrypt on its key of the stack, via Secrets Manager",
    'Secrets Manager User Guide, "Secret encryption and decryption": "To retrieve a secret encrypted with a '
    'customer managed key, the caller needs kms:Decrypt" (AccessDeniedException ... "Access to KMS is not allowed")',
    [
        fake(
            SECRET,
            "db-secret",
            out={"arn": "arn:aws:secretsmanager:eu-west-1:1:secret:db"},
            kmsKeyId="arn:aws:kms:eu-west-1:1:key/k",
        ),
        fake(KMS_KEY, "db-key", out={"arn": "arn:aws:kms:eu-west-1:1:key/k"}),
        fake(ROLE, "app-role"),
        fake(
            ROLE_POLICY,
            "app-policy",
            role="app-role",
            policy=_policy(
                {
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": "arn:aws:secretsmanager:eu-west-1:1:secret:db",
                }
            ),
        ),
    ],
)
def _secret_readable(r: Registration, g: Graph) -> str | None:
    key = g.ref(r.inputs.get("kmsKeyId"), KMS_KEY)
    arn = str(r.outputs.get("arn"))
    if key is None:
        return None
    key_arn = str(key.outputs.get("arn"))
    via = f"secretsmanager.{g.region}.amazonaws.com"
    blind = [
        role.name
        for role in g.of_type(ROLE)
        if _allows(st := _role_statements(role, g), "secretsmanager:GetSecretValue", arn)
        and not _allows(st, "kms:Decrypt", key_arn, via)
    ]
    return f"roles {blind} may read the secret but not decrypt it with {key.name}" if blind else None


@row(
    "secret-version",
    SECRET_VERSION,
    "exactly one of secretString, secretBinary, secretStringWo (which needs secretStringWoVersion); <= 65,536 "
    "bytes; of a secret of the stack",
    'pulumi_aws secretsmanager.SecretVersion secret_string: "This is required if `secret_binary` or '
    '`secret_string_wo` is not set"; secret_string_wo_version: "Required when `secret_string_wo` is set"; '
    'PutSecretValue SecretString "Maximum length of 65536"',
    [fake(SECRET_VERSION, "db-secret-value", secretId="db-secret-id")],
)
def _secret_version(r: Registration, g: Graph) -> str | None:
    given = _set(r, "secretString", "secretBinary", "secretStringWo")
    text = r.inputs.get("secretString")
    return _problems(
        f"sets {given or 'none'} of secretString, secretBinary, secretStringWo" if len(given) != 1 else None,
        "secretStringWo without secretStringWoVersion"
        if "secretStringWo" in given and r.inputs.get("secretStringWoVersion") is None
        else None,
        f"secretString of {len(text.encode())} bytes" if isinstance(text, str) and len(text.encode()) > 65536 else None,
        None
        if g.ref(r.inputs.get("secretId"), SECRET) or not g.of_type(SECRET)
        else f"secretId={r.inputs.get('secretId')!r} is not the stack's",
    )


@row(
    "secret-policy",
    SECRET_POLICY,
    "a resource policy (Principal, Resource in every statement) of <= 20,480 characters on a secret of the stack",
    'Secrets Manager PutResourcePolicy ResourcePolicy: "Maximum length of 20480"; "MalformedPolicyDocumentException"',
    [
        fake(
            SECRET_POLICY,
            "db-secret-policy",
            secretArn="arn:x",
            policy=_policy({"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}),
        )
    ],
)
def _secret_policy(r: Registration, g: Graph) -> str | None:
    policy = r.inputs.get("policy")
    return _problems(
        _grammar(policy, "resource"),
        f"{len(str(policy))} characters" if len(str(policy)) > 20480 else None,
        None
        if g.ref(r.inputs.get("secretArn"), SECRET) or not g.of_type(SECRET)
        else f"secretArn={r.inputs.get('secretArn')!r} is not the stack's",
    )


# --------------------------------------------------------------------------------------------------
# The tests


def _is_component(type_: str) -> bool:
    return type_.startswith((f"{PROJECT}:", "pulumi:pulumi:"))


@pytest.fixture(scope="module")
def graphs(runs: dict[str, Run]) -> dict[str, Graph]:
    """The base stacks and every scenario, as the rows see them."""
    found = {name: Graph.of(name, result) for name, result in runs.items()}
    for name, (stack, overrides) in SCENARIOS.items():
        found[name] = Graph.of(name, run(stack, **overrides))
    return found


@pytest.mark.parametrize("rule", ROWS, ids=lambda r: r.id)
def test_the_program_obeys(rule: Row, graphs: dict[str, Graph]) -> None:
    """Each row over every matching registration of every stack and scenario."""
    failures = [
        f"[{name}] {r.type} {r.name}: {problem}"
        for name, g in graphs.items()
        for r in g.resources
        if rule.applies(r) and (problem := rule.check(r, g))
    ]
    assert not failures, f"{rule.id}: {rule.rule}\n  source: {rule.source}\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("rule", ROWS, ids=lambda r: r.id)
def test_the_row_refuses_its_bad_example(rule: Row) -> None:
    """A row that accepts its own counter-example would pass for any program."""
    g = Graph("pr-7" if rule.bad_ephemeral else "dev", "eu-west-1", rule.bad_ephemeral, rule.bad)
    subjects = [r for r in g.resources if rule.applies(r)][: rule.subjects]
    assert len(subjects) == rule.subjects, f"{rule.id} has {len(subjects)} counter-examples, declares {rule.subjects}"
    accepted = [f"{r.name}: {r.inputs}" for r in subjects if not rule.check(r, g)]
    assert not accepted, f"{rule.id} accepts its bad examples: {accepted}"


def test_every_registered_type_has_rows(graphs: dict[str, Graph]) -> None:
    """A type the program starts to register needs its rows before it ships."""
    registered = {r.type for g in graphs.values() for r in g.resources if not _is_component(r.type)}
    covered = {t for rule in ROWS for t in rule.types}
    missing = sorted(registered - covered)
    assert not missing, f"no constraint rows for {missing}: read their argument docs and add rows (docs/constraints.md)"


def test_every_row_guards_a_registered_type(graphs: dict[str, Graph]) -> None:
    """No dead rows: a row's type is registered by the base stacks, or by the scenario it names."""
    base = {r.type for name in BASE for r in graphs[name].resources}
    dead = []
    for rule in ROWS:
        where = {r.type for r in graphs[rule.only_under].resources} if rule.only_under else base
        dead += [f"{rule.id}: {t}" for t in rule.types if t != ANY and t not in where]
        if rule.only_under:
            dead += [f"{rule.id}: {t} is in the base stacks, drop only_under" for t in rule.types if t in base]
    assert not dead, "rows that guard nothing:\n  " + "\n  ".join(dead)


RISKY_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    # dbInstanceClass defaults to db.t4g.micro, which has no Performance Insights.
    "performance-insights-on-the-default-class": ("dev", {"dbPerformanceInsights": True}),
    # The instances are EBS-optimized; T2 can't be.
    "t2-instance-type": ("dev", {"webInstanceType": "t2.micro"}),
    # A valid DNS name, but ACM's first domain name and a certificate's CN stop at 64 characters.
    "domain-over-64-characters": (
        "prod",
        {"domain": "the-public-site-of-the-foobar-project.customer-region.foobar-example.com"},
    ),
}
"""Settings the settings validation accepts today; each makes the program break a row."""


def _failures(g: Graph) -> set[tuple[str, str, str]]:
    return {
        (rule.id, r.name, problem)
        for rule in ROWS
        for r in g.resources
        if rule.applies(r) and (problem := rule.check(r, g))
    }


@pytest.mark.parametrize("case", RISKY_SETTINGS)
def test_settings_refuse_what_aws_refuses(case: str, graphs: dict[str, Graph]) -> None:
    """DESIGN.md section 3: a bad value stops the program with one message naming the key, before AWS
    refuses it halfway through a deploy. Either the settings refuse these values, or no row breaks."""
    stack, overrides = RISKY_SETTINGS[case]
    try:
        result = run(stack, **overrides)
    except pulumi.RunError as err:
        assert any(f"{PROJECT}:{key}" in str(err) for key in overrides), str(err)
        return
    new = sorted(_failures(Graph.of(stack, result)) - _failures(graphs[stack]))
    assert not new, f"settings {overrides} pass validation, then AWS refuses: " + "; ".join(
        f"{rule} {name}: {problem}" for rule, name, problem in new
    )


def test_row_ids_are_unique_and_sourced() -> None:
    ids = Counter(rule.id for rule in ROWS)
    assert not [i for i, n in ids.items() if n > 1]
    assert all(rule.source and rule.rule and rule.bad for rule in ROWS)


def test_docs_list_every_row() -> None:
    """docs/constraints.md is where people look the table up; it names every row."""
    text = (ROOT / "docs" / "constraints.md").read_text()
    missing = [rule.id for rule in ROWS if f"`{rule.id}`" not in text]
    assert not missing, f"docs/constraints.md doesn't list rows {missing}"
