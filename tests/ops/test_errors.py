"""AWS failures end in one clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from ops.aws import CLIENT_CONFIG, describe_aws_error
from ops.cli import EXIT_ERROR, main
from tests.ops.conftest import REGION

ROOT = Path(__file__).resolve().parents[2]

OUTPUTS = {
    "url": "https://www.foobar.test/",
    "lbPublicIp": "192.0.2.10",
    "certificateArn": "",
    "internalCaCertPem": "",
    "dbWriterEndpoint": "w.example",
    "dbReaderEndpoint": "r.example",
    "instanceIds": {"lb": ["i-0123456789abcdef0"]},
    "securityGroupIds": {"lb": "sg-0123456789abcdef0"},
    "stack": "dev",
}


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, with no credentials anywhere boto3 looks (and no metadata service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    return subprocess.run(
        [sys.executable, "-m", "ops", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_no_credentials_verify(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    done = _run(["verify", "--outputs", str(outputs), "--region", REGION, "--skip-https"], tmp_path)
    assert done.returncode == EXIT_ERROR
    assert done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("ops verify: no AWS credentials found")
    assert "Traceback" not in done.stderr


def test_no_credentials_reap(tmp_path: Path) -> None:
    done = _run(["reap", "--region", REGION], tmp_path)
    assert done.returncode == EXIT_ERROR
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("ops reap: no AWS credentials found")


def test_invalid_region(tmp_path: Path) -> None:
    done = _run(["reap", "--region", "eu west 1"], tmp_path)
    assert done.returncode == EXIT_ERROR
    assert done.stderr.strip() == "ops reap: invalid AWS region 'eu west 1' - pass --region with a name like eu-west-1"


def test_no_region(tmp_path: Path) -> None:
    done = _run(["reap"], tmp_path)
    assert done.returncode == EXIT_ERROR
    assert done.stderr.strip() == "ops reap: no region: pass --region or set AWS_REGION"


class StubbedSession:
    """A session whose clients answer from a botocore Stubber."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, service_name: str, **kwargs: Any) -> Any:
        return self._client


def test_access_denied(capsys: pytest.CaptureFixture[str]) -> None:
    tagging = boto3.client("resourcegroupstaggingapi", region_name=REGION)
    with Stubber(tagging) as stub:
        stub.add_client_error(
            "get_resources",
            service_error_code="AccessDeniedException",
            service_message=(
                "User: arn:aws:sts::123456789012:assumed-role/ci is not authorized to perform: tag:GetResources"
            ),
            http_status_code=400,
        )
        code = main(["reap", "--region", REGION], sessions=lambda region: StubbedSession(tagging))
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err.strip().splitlines() == [
        "ops reap: access denied calling GetResources (AccessDeniedException): User: arn:aws:sts::123456789012:"
        "assumed-role/ci is not authorized to perform: tag:GetResources - check the role's permissions"
    ]


def test_unreachable_endpoint_message() -> None:
    err = EndpointConnectionError(endpoint_url="https://ec2.xx-moon-1.amazonaws.com/")
    assert describe_aws_error(err, "xx-moon-1") == (
        "cannot reach the AWS endpoint https://ec2.xx-moon-1.amazonaws.com/ - check the region ('xx-moon-1') "
        "and the network"
    )


def test_throttling_is_retried(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A local endpoint answers "Rate exceeded" twice, then succeeds: reap still completes."""
    calls: list[str] = []

    class Throttler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            calls.append(self.headers.get("X-Amz-Target", ""))
            body: dict[str, Any] = {"ResourceTagMappingList": [], "PaginationToken": ""}
            status = 200
            if len(calls) <= 2:
                status, body = 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        code = main(["reap", "--region", REGION], destroyer=lambda stack: None)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert code == 0, capsys.readouterr().err
    assert calls == ["ResourceGroupsTaggingAPI_20170126.GetResources"] * 3
    assert CLIENT_CONFIG.retries == {"mode": "adaptive", "total_max_attempts": 10}
