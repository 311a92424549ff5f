"""Tags through providers, component parenting, certificates and stack outputs."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.settings import PROJECT
from tests.unit.harness import Run, resolve, run


def providers(r: Run) -> dict[str, dict[str, str]]:
    """provider reference ("urn::id") -> its default tags."""
    out = {}
    for p in r.of_type("pulumi:providers:aws"):
        default_tags = p.inputs.get("defaultTags", "{}")  # provider inputs travel as JSON strings
        out[f"{p.urn}::{p.id}"] = json.loads(default_tags).get("tags", {})
    return out


def test_every_aws_resource_is_tagged_project_stack_role(stack_run: Run) -> None:
    s = stack_run.namespace["settings"]
    tags_of = providers(stack_run)
    aws_resources = [x for x in stack_run.resources if x.type.startswith("aws:")]
    assert aws_resources
    for x in aws_resources:
        tags = tags_of.get(x.provider)
        assert tags is not None, f"{x.type} {x.name} does not use one of the site's tagged providers"
        assert tags["project"] == PROJECT and tags["stack"] == s.stack and tags["role"], x.name
        assert ("expires-at" in tags) is s.ephemeral


def test_role_tags_follow_the_tier(runs: dict[str, Run]) -> None:
    r = runs["dev"]
    tags_of = providers(r)
    for x in r.of_type("aws:ec2/instance:Instance"):
        assert tags_of[x.provider]["role"] == x.name.split("-")[1]
    for x in r.of_type("aws:rds/instance:Instance"):
        assert tags_of[x.provider]["role"] == "db"
    for x in r.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert tags_of[x.provider]["role"] == x.name.rsplit("-", 1)[1]


def test_ephemeral_stack_expiry_tag(runs: dict[str, Run]) -> None:
    tags = set(frozenset(t.items()) for t in providers(runs["pr-7"]).values())
    assert all(("expires-at", "2026-12-01T18:00Z") in t for t in tags)


COMPONENTS = {
    "foobar:site:Site",
    "foobar:network:Network",
    "foobar:firewalls:Firewalls",
    "foobar:certificates:Certificates",
    "foobar:edge:LoadBalancers",
    "foobar:groups:ServerGroup",
    "foobar:database:Database",
    "foobar:monitoring:Monitoring",
    "foobar:monitoring:AgentLogs",
    "foobar:artifacts:Artifacts",
}


def test_every_resource_belongs_to_a_component(stack_run: Run) -> None:
    by_urn = {x.urn: x for x in stack_run.resources}
    types = {x.type for x in stack_run.resources}
    assert types >= COMPONENTS
    (site,) = stack_run.of_type("foobar:site:Site")
    for x in stack_run.resources:
        if x is site:
            assert x.parent.endswith("pulumi:pulumi:Stack::foobar-" + stack_run.namespace["settings"].stack)
            continue
        chain, node = [], x
        while node.parent in by_urn:
            node = by_urn[node.parent]
            chain.append(node.type)
        assert node is site, f"{x.type} {x.name} is not under the site component"
        if not x.type.startswith("foobar:") and not x.type.startswith("pulumi:providers"):
            assert chain[0] in COMPONENTS | {"foobar:site:Site"}, x.name


def test_internal_ca_is_ecdsa_and_leaves_are_short_lived(stack_run: Run) -> None:
    for key in stack_run.of_type("tls:index/privateKey:PrivateKey"):
        assert key.inputs["algorithm"] == "ECDSA" and key.inputs["ecdsaCurve"] == "P256"
    (ca,) = stack_run.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert ca.inputs["isCaCertificate"] is True
    leaves = stack_run.of_type("tls:index/locallySignedCert:LocallySignedCert")
    assert len(leaves) == 3
    assert all(leaf.inputs["validityPeriodHours"] <= 366 * 24 for leaf in leaves)
    csrs = {c.name: c.inputs["dnsNames"] for c in stack_run.of_type("tls:index/certRequest:CertRequest")}
    assert csrs["foobar-certificates-web-csr"] == ["web.foobar.internal"]
    assert csrs["foobar-certificates-app-csr"] == ["app.foobar.internal"]


def test_private_keys_only_in_secure_parameters(stack_run: Run) -> None:
    """A key goes to the TLS resources that sign with it and to SecureString parameters, always as a secret."""
    keys = {k.outputs["privateKeyPem"] for k in stack_run.of_type("tls:index/privateKey:PrivateKey")}
    carriers = set()
    for x in stack_run.resources:
        for path, value in _strings(x.inputs):
            if any(k in value for k in keys):
                carriers.add(x.type)
                assert x.type.startswith("tls:") or x.inputs.get("type") == "SecureString", x.name
                assert path in x.secrets, f"{x.name}.{path} carries a private key but not as a secret"
    assert "aws:ssm/parameter:Parameter" in carriers


def _strings(value: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}[{i}]")]
    return []


def test_acm_certificate_exportable_and_dns_validated(runs: dict[str, Run]) -> None:
    r = runs["prod"]
    (cert,) = r.of_type("aws:acm/certificate:Certificate")
    assert cert.inputs["domainName"] == "www.foobar.com" and "*" not in cert.inputs["domainName"]
    assert cert.inputs["validationMethod"] == "DNS"
    assert cert.inputs["options"]["export"] == "ENABLED"
    # No hosted zone in prod's file: records are exported, nothing waits for validation.
    assert r.of_type("aws:acm/certificateValidation:CertificateValidation") == []
    assert r.of_type("aws:route53/record:Record") == []
    outputs = resolve(r.namespace["site"].outputs)
    assert outputs["certificateValidationRecords"] == [
        {"name": "_x1.www.foobar.com.", "type": "CNAME", "value": "_x2.acm-validations.aws."}
    ]


def test_with_a_hosted_zone_records_are_written_and_validated() -> None:
    r = run("prod", hostedZoneId="Z0123456789ABC")
    (cert,) = r.of_type("aws:acm/certificate:Certificate")
    records = {x.name: x.inputs for x in r.of_type("aws:route53/record:Record")}
    assert records["foobar-certificates-validation-0"]["name"] == "_x1.www.foobar.com."
    (validation,) = r.of_type("aws:acm/certificateValidation:CertificateValidation")
    assert validation.inputs["certificateArn"] == cert.outputs["arn"]
    assert validation.inputs["validationRecordFqdns"] == ["_x1.www.foobar.com."]
    domain = records["foobar-domain"]
    (eip,) = [e for e in r.of_type("aws:ec2/eip:Eip") if e.name.endswith("-lb-address")]
    assert (
        domain["name"] == "www.foobar.com" and domain["type"] == "A" and domain["records"] == [eip.outputs["publicIp"]]
    )
    assert all(x.inputs["zoneId"] == "Z0123456789ABC" for x in r.of_type("aws:route53/record:Record"))


def test_internal_ca_stacks_have_no_acm_certificate(runs: dict[str, Run]) -> None:
    assert runs["dev"].of_type("aws:acm/certificate:Certificate") == []


@pulumi.runtime.test
def test_outputs_of_a_stack() -> pulumi.Output[None]:
    """Decorated so the assertion runs inside the program's Output graph."""
    r = run("prod")
    site = r.namespace["site"]
    (eip,) = [e for e in r.of_type("aws:ec2/eip:Eip") if e.name.endswith("-lb-address")]

    def check(out: dict) -> None:
        assert out["url"] == "https://www.foobar.com/"
        assert out["lbPublicIp"] == eip.outputs["publicIp"]
        assert out["certificateArn"].startswith("arn:aws:acm:")
        assert out["dbWriterEndpoint"] != out["dbReaderEndpoint"]
        assert {k: len(v) for k, v in out["instanceIds"].items()} == {"lb": 2}  # prod: a pair
        assert out["lbAddressAllocationId"] == eip.outputs["allocationId"]
        groups = {g.outputs["name"] for g in r.of_type("aws:autoscaling/group:Group")}
        assert set(out["groupNames"]) == {"web", "app"} and set(out["groupNames"].values()) == groups
        assert set(out["securityGroupIds"]) == {"lb", "web", "app", "db"}
        assert "PRIVATE KEY" not in str(out)

    return pulumi.Output.all(**site.outputs).apply(check)


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_program_runs_for_each_stack(runs: dict[str, Run], stack: str) -> None:
    r = runs[stack]
    assert len(r.resources) > 80
    assert r.namespace["settings"].stack == stack
