"""The real program for a stack under Pulumi mocks, as the seed of a local stand-in for AWS.

``mocked_deployment("dev")`` runs ``__main__.py`` with the recorder of ``tests/unit/harness.py``
(same config handling) and a subclass of it that issues REAL TLS material where pulumi-tls would:
the servers' boot code checks key against certificate with openssl, and nginx/HAProxy load them,
so the stock "MOCK..." PEMs would stop every boot. Everything a local harness needs to seed moto
and boot the servers from their real user-data comes back as one frozen :class:`Deployment`.

What the servers call in AWS at boot and after, and where the seed for each comes from:

- fetch-tls (all roles, and the foobar-tls timer): ``ssm:GetParameters`` WithDecryption of
  ``/foobar/<stack>/<role>/{tls-cert,tls-key,ca-cert}`` -> :attr:`Deployment.parameters`
  (components/certificates.py; tls-key is a SecureString).
- refresh-cert (LB, only with ``publicCertificate: acm``): ``acm:ExportCertificate`` of
  :attr:`Deployment.certificate_arn` (None on dev: internal-ca, no ACM certificate, no job).
- fetch-app (web: site, app: code, lb: node agent): ``s3:GetObject`` of the ``s3://bucket/key`` in
  the role's ``/etc/foobar/<kind>-archive.json`` plan, body checked against its sha256 ->
  :attr:`Deployment.objects` (components/artifacts.py, ``contentBase64`` decoded).
- app-env (app): ``ssm:GetParameters`` of ``/foobar/<stack>/app/{db-writer,db-reader,db-secret-arn}``
  -> :attr:`Deployment.parameters` (components/site.py); then an HTTPS download of the RDS CA
  bundle (truststore.pki.rds.amazonaws.com: not AWS API, not seeded here).
- the app itself: ``secretsmanager:GetSecretValue`` of the db-secret-arn; JSON keys ``username``
  and ``password`` (app/credentials.py) -> :attr:`Deployment.database` (the SecretVersion's
  secretString; the password is the harness's RandomPassword placeholder ``MOCK-PASSWORD-...``).
- private-address (LB) and launch-hook: IMDSv2 ``local-ipv4`` / ``instance-id`` (not an AWS API;
  the stand-in serves them; :attr:`Instance.private_ip` is the harness's placeholder 10.0.0.1).
- launch-hook (web, app): ``autoscaling:DescribeAutoScalingInstances`` (own group and lifecycle
  state), ``RecordLifecycleActionHeartbeat``, ``CompleteLifecycleAction`` of hook ``foobar-launch``
  -> :attr:`Deployment.groups` (names, hooks).
- node.discovery (LB): ``autoscaling:DescribeAutoScalingGroups`` filtered on ``tag:project=foobar``,
  ``tag:stack=<stack>``, tier from each group's ``role`` tag; then ``ec2:DescribeInstances`` by id
  for PrivateIpAddress -> :attr:`Group.tags`.
- node.pair (LB, ``--source ec2``): ``ec2:DescribeInstances`` filtered on ``tag:project=foobar``,
  ``tag:stack``, ``tag:role=lb``, ``instance-state-name`` pending/running -> :attr:`Instance.tags`
  (the instance's Name plus the lb provider's default tags project/stack/role).
- node.eip (LB): ``ec2:DescribeAddresses`` of the allocation id in /etc/foobar/eip.json,
  ``ec2:DescribeInstances`` (holder's tags), ``ec2:AssociateAddress``, ``ec2:CreateTags``
  (``foobar-vrrp-state``) -> :attr:`Deployment.address`.
- monitoring agent: CloudWatch ``PutMetricData`` and Logs ``PutLogEvents``; not seeded, as the agent
  can't be downloaded here. With a Sumo token parameter (none on dev) ``ssm:GetParameter``.

Mock-only values a stand-in cannot reproduce as they are: ids and ARNs (moto makes its own EIP
allocation ids, instance ids and secret ARN suffixes), RDS endpoints (``*.abc.<region>.rds...``),
the LB's private address, and the AMI id (``ami-ubuntu-amd64``).
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import ipaddress
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from components.certificates import INTERNAL_DOMAIN
from tests.unit import harness
from tests.unit.harness import Recorder, Registration
from userdata import from_ec2

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"

# -- pulumi-tls, for real ----------------------------------------------------------------------

_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "P224": ec.SECP224R1,
    "P256": ec.SECP256R1,
    "P384": ec.SECP384R1,
    "P521": ec.SECP521R1,
}
_KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
_EXTENDED_USAGES = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "ipsec_end_system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec_tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec_user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "microsoft_server_gated_crypto": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape_server_gated_crypto": ObjectIdentifier("2.16.840.1.113730.4.1"),
    "microsoft_commercial_code_signing": ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "microsoft_kernel_code_signing": ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}
_SUBJECT = {
    "commonName": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "postalCode": NameOID.POSTAL_CODE,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}


def _algorithm(key: PrivateKeyTypes | x509.Certificate) -> str:
    """pulumi-tls's name of a key's algorithm (RSA, ECDSA, ED25519)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA"
    return "ECDSA" if isinstance(public, ec.EllipticCurvePublicKey) else "ED25519"


def _hash(key: PrivateKeyTypes) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The digest Go's x509 picks for the signing key (pulumi-tls signs with it); None for Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        return hashes.SHA512() if size == 521 else hashes.SHA384() if size == 384 else hashes.SHA256()
    return hashes.SHA256()


def private_key_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What pulumi-tls's PrivateKey outputs: PEMs (traditional and PKCS#8), OpenSSH forms, fingerprints."""
    algorithm = str(inputs.get("algorithm", "RSA")).upper()
    key: PrivateKeyTypes
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits") or 2048))
    elif algorithm == "ECDSA":
        key = ec.generate_private_key(_CURVES[str(inputs.get("ecdsaCurve") or "P224")]())
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"tls PrivateKey: unknown algorithm {algorithm!r}")
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # RSA "RSA PRIVATE KEY" and ECDSA "EC PRIVATE KEY", as the provider writes them; Ed25519 has PKCS#8 only.
    fmt = (
        serialization.PrivateFormat.PKCS8 if algorithm == "ED25519" else serialization.PrivateFormat.TraditionalOpenSSL
    )
    out: dict[str, Any] = {
        "algorithm": algorithm,
        "privateKeyPem": key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode(),
        "privateKeyPemPkcs8": pkcs8.decode(),
        "publicKeyPem": key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "privateKeyOpenssh": "",
        "publicKeyOpenssh": "",
        "publicKeyFingerprintMd5": "",
        "publicKeyFingerprintSha256": "",
    }
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp224r1"):  # OpenSSH has no P-224
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        blob = base64.b64decode(public.split()[1])
        out.update(
            privateKeyOpenssh=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ).decode(),
            publicKeyOpenssh=public.decode() + "\n",
            publicKeyFingerprintMd5=":".join(f"{b:02x}" for b in hashlib.md5(blob).digest()),
            publicKeyFingerprintSha256="SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
        )
    return out


def _name(subject: Mapping[str, Any] | None) -> x509.Name:
    attributes = [x509.NameAttribute(oid, str(subject[k])) for k, oid in _SUBJECT.items() if subject and subject.get(k)]
    attributes += [
        x509.NameAttribute(NameOID.STREET_ADDRESS, str(s)) for s in (subject or {}).get("streetAddresses") or []
    ]
    return x509.Name(attributes)


def _alt_names(inputs: Mapping[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(str(n)) for n in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(str(a))) for a in inputs.get("ipAddresses") or []]
    return names + [x509.UniformResourceIdentifier(str(u)) for u in inputs.get("uris") or []]


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificate(
    inputs: Mapping[str, Any],
    *,
    subject: x509.Name,
    public_key: Any,
    alt_names: list[x509.GeneralName],
    issuer: x509.Name,
    signing_key: PrivateKeyTypes,
    issuer_cert: x509.Certificate | None,
) -> dict[str, Any]:
    """Issue a certificate the way pulumi-tls does (validity from now, usages from allowedUses)."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    end = now + datetime.timedelta(hours=float(inputs.get("validityPeriodHours") or 0))
    is_ca = bool(inputs.get("isCaCertificate"))
    uses = [str(u) for u in inputs.get("allowedUses") or []]
    unknown = [u for u in uses if u not in _KEY_USAGES and u not in _EXTENDED_USAGES]
    if unknown:
        raise ValueError(f"tls certificate: unknown allowedUses {unknown}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now)
        .not_valid_after(end)
    )
    path_length = inputs.get("maxPathLength")
    builder = builder.add_extension(
        x509.BasicConstraints(ca=is_ca, path_length=int(path_length) if is_ca and path_length else None), critical=True
    )
    usage_flags = {flag: False for flag in _KEY_USAGES.values()}
    usage_flags.update({_KEY_USAGES[u]: True for u in uses if u in _KEY_USAGES})
    if any(usage_flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**usage_flags), critical=True)
    extended = [_EXTENDED_USAGES[u] for u in uses if u in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if is_ca or inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(Any, issuer_cert.public_key())), critical=False
        )
    elif inputs.get("setAuthorityKeyId"):
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(Any, public_key)), critical=False
        )
    cert = builder.sign(cast(CertificateIssuerPrivateKeyTypes, signing_key), _hash(signing_key))
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": _rfc3339(now),
        "validityEndTime": _rfc3339(end),
        "readyForRenewal": False,
    }


def _load_key(pem: str) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def self_signed_cert_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    key = _load_key(str(inputs["privateKeyPem"]))
    subject = _name(inputs.get("subject"))
    out = _certificate(
        inputs,
        subject=subject,
        public_key=key.public_key(),
        alt_names=_alt_names(inputs),
        issuer=subject,
        signing_key=key,
        issuer_cert=None,
    )
    return {**out, "keyAlgorithm": _algorithm(key)}


def cert_request_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    key = _load_key(str(inputs["privateKeyPem"]))
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
    alt_names = _alt_names(inputs)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    csr = builder.sign(cast(CertificateIssuerPrivateKeyTypes, key), _hash(key))
    return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode(), "keyAlgorithm": _algorithm(key)}


def locally_signed_cert_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Sign the request with the CA: subject, SANs and key from the CSR (as the provider does)."""
    csr = x509.load_pem_x509_csr(str(inputs["certRequestPem"]).encode())
    ca_key = _load_key(str(inputs["caPrivateKeyPem"]))
    ca_cert = x509.load_pem_x509_certificate(str(inputs["caCertPem"]).encode())
    try:
        alt_names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        alt_names = []
    out = _certificate(
        inputs,
        subject=csr.subject,
        public_key=csr.public_key(),
        alt_names=alt_names,
        issuer=ca_cert.subject,
        signing_key=ca_key,
        issuer_cert=ca_cert,
    )
    return {**out, "caKeyAlgorithm": _algorithm(ca_key)}


TLS_OUTPUTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    PRIVATE_KEY: private_key_outputs,
    SELF_SIGNED: self_signed_cert_outputs,
    CERT_REQUEST: cert_request_outputs,
    LOCALLY_SIGNED: locally_signed_cert_outputs,
}


class TlsRecorder(Recorder):
    """The harness's recorder, with pulumi-tls resources issued for real (keys, CSRs, certificates)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, out = super().new_resource(args)
        make = TLS_OUTPUTS.get(args.typ)
        if make is not None:
            recorded = self.resources[-1]
            assert recorded.name == args.name and recorded.outputs is out
            out.update(make(recorded.inputs))  # the same dict: the recorded outputs are the real ones too
        return rid, out


# -- the deployment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """An SSM parameter as the servers read it (value hidden from repr: tls-key is a key)."""

    name: str
    type: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    body: bytes = field(repr=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Database:
    """Where the app finds the database and how it logs in (app/credentials.py reads the secret's JSON)."""

    writer_host: str
    reader_host: str
    port: int
    name: str
    username: str
    secret_arn: str
    """What /foobar/<stack>/app/db-secret-arn holds: the app's GetSecretValue SecretId."""
    secret_name: str
    password: str = field(repr=False)
    secret_string: str = field(repr=False)
    """The secret's JSON exactly as the program writes it (engine, username, password, port)."""


@dataclass(frozen=True)
class Instance:
    """A plain EC2 instance (the load balancer): what node.pair's and node.eip's DescribeInstances see."""

    role: str
    tags: dict[str, str]
    """The instance's own tags plus its provider's default tags (project, stack, role)."""


@dataclass(frozen=True)
class Group:
    """An Auto Scaling group: what node.discovery and the launch hook look up."""

    role: str
    name: str
    tags: dict[str, str]
    """The group's tags (discovery filters on project and stack, reads role)."""
    member_tags: dict[str, str]
    """Tags the launch template puts on each member instance."""
    lifecycle_hooks: tuple[str, ...]


@dataclass(frozen=True)
class Address:
    """The site's Elastic IP (node.eip claims it by allocation id)."""

    allocation_id: str


@dataclass(frozen=True)
class Deployment:
    stack: str
    region: str
    account: str
    domain: str
    internal_domain: str
    vpc_cidr: str
    user_data: dict[str, str] = field(repr=False)
    """role -> the #cloud-config text cloud-init reads (decoded from what EC2 gets)."""
    parameters: list[Parameter]
    objects: list[S3Object]
    database: Database
    certificate_arn: str | None
    """The exportable ACM certificate of the LB; None when the internal CA serves (dev)."""
    instances: list[Instance]
    groups: dict[str, Group]
    address: Address
    internal_ca_pem: str = field(repr=False)

    def parameter(self, name: str) -> Parameter:
        found = [p for p in self.parameters if p.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} SSM parameters named {name}")
        return found[0]

    def object(self, url: str) -> S3Object:
        found = [o for o in self.objects if o.url == url]
        if len(found) != 1:
            raise KeyError(f"{len(found)} S3 objects at {url}")
        return found[0]


def write_files(user_data: str) -> dict[str, bytes]:
    """The files a ``#cloud-config`` writes (``path -> bytes``, gz+b64 unpacked): its plans, units, configs."""
    doc = yaml.safe_load(user_data)
    out: dict[str, bytes] = {}
    for entry in doc.get("write_files", []):
        content = entry.get("content", "")
        encoding = entry.get("encoding", "")
        if encoding in ("gz+b64", "gzip+base64"):
            out[entry["path"]] = gzip.decompress(base64.b64decode(content))
        elif encoding in ("b64", "base64"):
            out[entry["path"]] = base64.b64decode(content)
        else:
            out[entry["path"]] = content.encode()
    return out


def _json_or(value: Any) -> Any:
    """Provider inputs travel JSON-encoded (``defaultTags``); resource inputs as objects."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _default_tags(resources: list[Registration], provider_ref: str) -> dict[str, str]:
    """The default tags of the provider a resource was registered with (``urn::id``)."""
    pid = provider_ref.rsplit("::", 1)[-1]
    for r in resources:
        if r.type.startswith("pulumi:providers:") and r.id == pid:
            tags = _json_or(r.inputs.get("defaultTags")) or {}
            return {str(k): str(v) for k, v in (tags.get("tags") or {}).items()}
    return {}


def _one(resources: list[Registration], typ: str, name: str | None = None) -> Registration:
    found = [r for r in resources if r.type == typ and (name is None or r.name == name)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} registrations of {typ} {name or ''}".strip())
    return found[0]


def _role_of(resources: list[Registration], r: Registration) -> str:
    return _default_tags(resources, r.provider).get("role", "")


def _instances(resources: list[Registration]) -> list[Instance]:
    out = []
    for r in resources:
        if r.type != "aws:ec2/instance:Instance":
            continue
        tags = {**_default_tags(resources, r.provider), **(r.inputs.get("tags") or {})}
        out.append(Instance(role=tags.get("role", ""), tags=tags))
    return out


def _groups(resources: list[Registration]) -> dict[str, Group]:
    templates = {r.id: r for r in resources if r.type == "aws:ec2/launchTemplate:LaunchTemplate"}
    out = {}
    for r in resources:
        if r.type != "aws:autoscaling/group:Group":
            continue
        tags = {str(t["key"]): str(t["value"]) for t in r.inputs.get("tags") or []}
        template = templates[r.inputs["launchTemplate"]["id"]]
        member: dict[str, str] = {}
        for spec in template.inputs.get("tagSpecifications") or []:
            if spec.get("resourceType") == "instance":
                member = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
        role = tags.get("role") or _role_of(resources, r)
        out[role] = Group(
            role=role,
            name=str(r.outputs["name"]),
            tags=tags,
            member_tags=member,
            lifecycle_hooks=tuple(str(h["name"]) for h in r.inputs.get("initialLifecycleHooks") or []),
        )
    return out


def _user_data(resources: list[Registration]) -> dict[str, str]:
    """LB instance: ``userDataBase64``; web/app launch templates: ``userData`` (both gzip+base64)."""
    out: dict[str, str] = {}
    for r in resources:
        if r.type == "aws:ec2/instance:Instance":
            encoded = r.inputs["userDataBase64"]
        elif r.type == "aws:ec2/launchTemplate:LaunchTemplate":
            encoded = r.inputs["userData"]
        else:
            continue
        role = _role_of(resources, r)
        text = from_ec2(encoded)
        if out.setdefault(role, text) != text:
            raise ValueError(f"two different user-data for role {role}")
    return out


def _database(resources: list[Registration], parameters: list[Parameter]) -> Database:
    by_name = {p.name.rsplit("/", 1)[-1]: p.value for p in parameters if "/app/db-" in p.name}
    rds = [r for r in resources if r.type == "aws:rds/instance:Instance"]
    primary = next(r for r in rds if not r.inputs.get("replicateSourceDb"))
    secret = _one(resources, "aws:secretsmanager/secret:Secret")
    version = _one(resources, "aws:secretsmanager/secretVersion:SecretVersion")
    value = str(version.inputs["secretString"])
    data = json.loads(value)
    arn = str(secret.outputs["arn"])
    if by_name.get("db-secret-arn") != arn:
        raise ValueError("db-secret-arn parameter is not the master secret's ARN")
    return Database(
        writer_host=by_name["db-writer"],
        reader_host=by_name["db-reader"],
        port=int(data.get("port", 3306)),
        name=str(primary.inputs["dbName"]),
        username=str(data["username"]),
        secret_arn=arn,
        secret_name=arn.split(":secret:", 1)[1],
        password=str(data["password"]),
        secret_string=value,
    )


def mocked_deployment(stack: str = "dev") -> Deployment:
    """Run the real program for ``stack`` under mocks with real TLS, and collect the stand-in's seed."""
    config = harness.stack_config(stack)
    result = harness.run_with(TlsRecorder, stack)
    resources = result.resources
    parameters = [
        Parameter(str(r.inputs["name"]), str(r.inputs.get("type", "String")), str(r.inputs["value"]))
        for r in resources
        if r.type == "aws:ssm/parameter:Parameter"
    ]
    objects = [
        S3Object(
            bucket=str(r.inputs["bucket"]),
            key=str(r.inputs["key"]),
            body=base64.b64decode(r.inputs["contentBase64"])
            if "contentBase64" in r.inputs
            else str(r.inputs.get("content", "")).encode(),
        )
        for r in resources
        if r.type == "aws:s3/bucketObjectv2:BucketObjectv2"
    ]
    acm = [r for r in resources if r.type == "aws:acm/certificate:Certificate"]
    lb_address = next(
        r
        for r in resources
        if r.type == "aws:ec2/eip:Eip" and _role_of(resources, r) == "lb"  # not the NAT gateway's
    )
    ca = _one(resources, SELF_SIGNED)
    return Deployment(
        stack=stack,
        region=result.mocks.region,
        account=harness.ACCOUNT,
        domain=str(config["foobar:domain"]),
        internal_domain=INTERNAL_DOMAIN,
        vpc_cidr=str(_one(resources, "aws:ec2/vpc:Vpc").inputs.get("cidrBlock", config["foobar:vpcCidr"])),
        user_data=_user_data(resources),
        parameters=parameters,
        objects=objects,
        database=_database(resources, parameters),
        certificate_arn=str(acm[0].outputs["arn"]) if acm else None,
        instances=_instances(resources),
        groups=_groups(resources),
        address=Address(allocation_id=str(lb_address.outputs["allocationId"])),
        internal_ca_pem=str(ca.outputs["certPem"]),
    )
