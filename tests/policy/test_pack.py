"""The pack as the Pulumi CLI runs it: `python -m pulumi.policy <engine> <pack dir>` in the pack's
directory, which prints the analyzer's port; then the engine's gRPC calls, over 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.deserialize import serialize_properties
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE

from policy.foobar_policies import CATALOG
from tests.policy.adapter import Resource, crafted

PACK = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=PACK,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"the pack did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _struct(props: object) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(serialize_properties(props))), out)  # type: ignore[arg-type]
    return out


def test_pack_describes_every_policy_with_its_level(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "foobar-security"
    levels = {p.name: p.enforcementLevel for p in info.policies}
    expected = {
        e.name: (analyzer_pb2.MANDATORY if e.level.value == "mandatory" else analyzer_pb2.ADVISORY) for e in CATALOG
    }
    assert levels == expected


def _request(res: Resource) -> analyzer_pb2.AnalyzeRequest:
    (built,) = crafted([res])
    assert built.provider is not None
    return analyzer_pb2.AnalyzeRequest(
        type=built.resource_type,
        properties=_struct(built.props),
        urn=built.urn,
        name=built.name,
        options=analyzer_pb2.AnalyzerResourceOptions(),
        provider=analyzer_pb2.AnalyzerProviderResource(
            type=built.provider.resource_type,
            properties=_struct(built.provider.props),
            urn=built.provider.urn,
            name=built.provider.name,
        ),
    )


def test_engine_call_reports_a_mandatory_violation(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    bad = Resource("aws:ec2/instance:Instance", "web-0", {"metadataOptions": {"httpTokens": "optional"}}, role="web")
    response = analyzer.Analyze(_request(bad))
    by_policy = {d.policyName: d for d in response.diagnostics}
    assert by_policy["ec2-imdsv2-required"].enforcementLevel == analyzer_pb2.MANDATORY
    assert "web-0" in by_policy["ec2-imdsv2-required"].message
    assert {"ec2-volumes-encrypted", "ec2-no-public-ip", "ec2-instance-profile"} <= set(by_policy)


def test_unknowns_from_the_engine_produce_no_diagnostic(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """The engine's own unknown sentinels: no violation and no "can't run policy" note either."""
    props = {
        "metadataOptions": {"httpTokens": UNKNOWN_STRING_VALUE},
        "rootBlockDevice": {"encrypted": UNKNOWN_BOOLEAN_VALUE},
        "associatePublicIpAddress": False,
        "iamInstanceProfile": UNKNOWN_STRING_VALUE,
        "userData": UNKNOWN_STRING_VALUE,
    }
    response = analyzer.Analyze(_request(Resource("aws:ec2/instance:Instance", "app-0", props, role="app")))
    assert list(response.diagnostics) == []


def test_policy_pack_config_changes_the_level(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """`--policy-pack-config` reaches the pack as Configure; an advisory policy can be made mandatory."""
    analyzer.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={"rds-multi-az": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.MANDATORY)}
        )
    )
    try:
        db = Resource("aws:rds/instance:Instance", "db", {"multiAz": False}, role="db")
        diagnostics = {d.policyName: d for d in analyzer.Analyze(_request(db)).diagnostics}
        assert diagnostics["rds-multi-az"].enforcementLevel == analyzer_pb2.MANDATORY
    finally:
        analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={}))
