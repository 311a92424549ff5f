"""AWS, stood in, for servers booted from their real user-data (``local.boot``).

One process inside the boot network's hub namespace serves what the servers reach in AWS:

- **the AWS APIs**: moto (``ThreadedMotoServer``) over HTTPS on :data:`ENDPOINT_ADDRESS`:443, under
  the real endpoint names (``ssm.eu-west-1.amazonaws.com``, ``<bucket>.s3.eu-west-1.amazonaws.com``,
  ...), which the containers' ``/etc/hosts`` point there; its certificate is signed by a stand-in CA
  that the containers trust. So boto3 on the servers runs unchanged: no endpoint override (Debian
  12's botocore 1.29 predates ``AWS_ENDPOINT_URL``), no credentials in the user-data.
- **the instance metadata service** on 169.254.169.254 (IMDSv2 only, tokens required): each
  server's own instance id, private address, zone and role credentials (test keys, as EC2 hands
  out an instance profile's), told apart by the caller's address.
- **RDS**: a MariaDB primary and replica (``local.mariadb``), TLS required, under the writer and
  reader names the program gives the database, their certificates from the stand-in CA.

The harness writes a plan (JSON, 0600) and starts ``python -m local.standin PLAN`` in the hub
namespace; the process seeds moto, writes ``ready`` beside the plan and serves until SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ENDPOINT_ADDRESS = "198.18.1.1"
"""Where every AWS API name resolves in the containers (the benchmarking range: never routed)."""
IMDS_ADDRESS = "169.254.169.254"
DB_ADDRESSES = ("198.18.1.11", "198.18.1.12")
"""RDS stood in: the primary (writer) and the replica (reader)."""
SERVICES = ("ssm", "s3", "acm", "autoscaling", "ec2", "secretsmanager", "sts", "logs", "monitoring", "kms")
"""The API endpoints the servers' boto3 may call; anything else under amazonaws.com stays unreachable,
as the internet is here (the CloudWatch agent download, the RDS CA bundle)."""
ROLE_NAME = "foobar-boot-test"
TEST_KEY_ID = "AKIAFOOBARBOOTTEST00"


@dataclass(frozen=True)
class Member:
    """One booted server as the stand-in knows it: EC2's view of it."""

    role: str
    instance_id: str
    address: str
    zone: str


def endpoint_names(region: str, buckets: list[str]) -> list[str]:
    """Every host name the servers' boto3 calls, for ``/etc/hosts`` and the endpoint certificate."""
    names = [f"{service}.{region}.amazonaws.com" for service in SERVICES]
    for bucket in buckets:
        names += [f"{bucket}.s3.{region}.amazonaws.com", f"{bucket}.s3.amazonaws.com"]
    return [*names, "s3.amazonaws.com"]


class _Metadata(BaseHTTPRequestHandler):
    """IMDSv2: a token first (PUT with a TTL header), then GETs that carry it."""

    server: _MetadataServer

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.write(f"imds {self.client_address[0]} {format % args}\n")
        self.server.log.flush()

    def _reply(self, status: int, body: str, kind: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._reply(400, "token TTL header required")
            return
        token = secrets.token_urlsafe(24)
        self.server.tokens.add(token)
        self._reply(200, token)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") not in self.server.tokens:
            self._reply(401, "")  # IMDSv1 is off on every server of the stack (METADATA_OPTIONS)
            return
        member = self.server.members.get(self.client_address[0])
        if member is None:
            self._reply(404, "")
            return
        now = dt.datetime.now(dt.UTC)
        credentials = {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": TEST_KEY_ID,
            "SecretAccessKey": "foobar-boot-test-secret",
            "Token": "foobar-boot-test-token",
            "Expiration": (now + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        items = {
            "meta-data/instance-id": member.instance_id,
            "meta-data/local-ipv4": member.address,
            "meta-data/placement/availability-zone": member.zone,
            "meta-data/placement/region": self.server.region,
            "meta-data/iam/security-credentials/": ROLE_NAME,
            f"meta-data/iam/security-credentials/{ROLE_NAME}": json.dumps(credentials),
            "dynamic/instance-identity/document": json.dumps(
                {
                    "instanceId": member.instance_id,
                    "privateIp": member.address,
                    "region": self.server.region,
                    "availabilityZone": member.zone,
                    "accountId": self.server.account,
                }
            ),
        }
        value = items.get(self.path.removeprefix("/latest/"))
        self._reply(200, value) if value is not None else self._reply(404, "")


class _MetadataServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, members: dict[str, Member], region: str, account: str, log: Any) -> None:
        super().__init__((IMDS_ADDRESS, 80), _Metadata)
        self.members, self.region, self.account, self.log = members, region, account, log
        self.tokens: set[str] = set()


def _tls_moto(cert: Path, key: Path) -> Any:
    """moto's own threaded server, its socket wrapped in TLS (the servers call https://<service>...)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    class TlsMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(
                self._ip_address, self._port, app, threaded=True, ssl_context=(str(cert), str(key))
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return TlsMotoServer(ip_address=ENDPOINT_ADDRESS, port=443, verbose=False)


def seed(plan: dict[str, Any]) -> dict[str, Member]:
    """Put the mocked run's AWS state into moto: the VPC and the servers (at the containers'
    addresses, with the program's tags), the groups, the SSM parameters, the S3 archives and the
    database secret. Returns the servers by address, with the instance ids moto gave them."""
    import boto3

    region, data = plan["region"], plan["seed"]
    session = boto3.session.Session(
        aws_access_key_id=TEST_KEY_ID, aws_secret_access_key="foobar-boot-test-secret", region_name=region
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=f"https://{ENDPOINT_ADDRESS}", verify=plan["ca_cert"])

    ec2, autoscaling, ssm, s3, sm = (client(s) for s in ("ec2", "autoscaling", "ssm", "s3", "secretsmanager"))
    vpc = ec2.create_vpc(CidrBlock=data["vpc_cidr"])["Vpc"]["VpcId"]
    subnets: dict[str, str] = {}
    members: dict[str, Member] = {}
    for server in data["servers"]:
        network = server["subnet"]
        if network not in subnets:
            subnets[network] = ec2.create_subnet(VpcId=vpc, CidrBlock=network, AvailabilityZone=server["zone"])[
                "Subnet"
            ]["SubnetId"]
        tags = [{"Key": k, "Value": v} for k, v in server["tags"].items()]
        instance = ec2.run_instances(
            ImageId="ami-12c6146b",  # one of moto's own images; the container is the server
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=subnets[network],
            PrivateIpAddress=server["address"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]
        members[server["address"]] = Member(server["role"], instance["InstanceId"], server["address"], server["zone"])
        group = server.get("group")
        if group:
            existing = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
            if not existing:
                autoscaling.create_auto_scaling_group(
                    AutoScalingGroupName=group,
                    InstanceId=instance["InstanceId"],
                    MinSize=0,
                    MaxSize=20,
                    DesiredCapacity=0,
                    VPCZoneIdentifier=subnets[network],
                    Tags=[
                        {
                            "Key": k,
                            "Value": v,
                            "PropagateAtLaunch": True,
                            "ResourceId": group,
                            "ResourceType": "auto-scaling-group",
                        }
                        for k, v in server.get("group_tags", {}).items()
                    ],
                )
            autoscaling.attach_instances(AutoScalingGroupName=group, InstanceIds=[instance["InstanceId"]])
    # The site's Elastic IP under the program's allocation id (the LB's eip.json names it): moto
    # makes its own ids, so the address it allocated is renamed in its backend, in this process.
    from moto.ec2.models import ec2_backends

    allocated = ec2.allocate_address(Domain="vpc")["AllocationId"]
    for address in ec2_backends[plan["account"]][region].addresses:
        if address.allocation_id == allocated:
            address.allocation_id = address.id = data["allocation_id"]
    for bucket in sorted({o["bucket"] for o in data["objects"]}):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    for obj in data["objects"]:
        s3.put_object(Bucket=obj["bucket"], Key=obj["key"], Body=Path(obj["file"]).read_bytes())
    arns: dict[str, str] = {}
    for secret in data["secrets"]:
        # moto names its own ARNs (a random suffix): parameters that held the program's ARN get moto's.
        arns[secret["arn"]] = sm.create_secret(Name=secret["name"], SecretString=secret["value"])["ARN"]
    for parameter in data["parameters"]:
        value = arns.get(parameter["value"], parameter["value"])
        ssm.put_parameter(Name=parameter["name"], Type=parameter["type"], Value=value, Overwrite=True)
    return members


def serve(plan_path: Path) -> int:
    plan = json.loads(plan_path.read_text())
    home = plan_path.parent
    log = (home / "standin.log").open("a")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    from local.mariadb import AppAccount, CertificateAuthority, start_pair

    moto = _tls_moto(Path(plan["endpoint_cert"]), Path(plan["endpoint_key"]))
    moto.start()
    members = seed(plan)
    metadata = _MetadataServer(members, plan["region"], plan["account"], log)
    threading.Thread(target=metadata.serve_forever, daemon=True).start()
    ca = CertificateAuthority(cert=Path(plan["ca_cert"]), key=Path(plan["ca_key"]))
    db = plan["database"]
    account = AppAccount(db["name"], db["user"], db["password"])
    primary, replica = start_pair(
        home / "db",
        DB_ADDRESSES[0],
        DB_ADDRESSES[1],
        int(db["port"]),
        ca,
        app=account,
        server_names=(db["writer"], db["reader"]),
        timeout=120,
    )
    ready = {"members": [vars(m) for m in members.values()], "db": [primary.pid(), replica.pid()]}
    (home / "ready.tmp").write_text(json.dumps(ready))
    os.replace(home / "ready.tmp", home / "ready")  # the harness never reads half a file
    log.write(f"ready: moto on {ENDPOINT_ADDRESS}:443, IMDS for {sorted(members)}\n")
    log.flush()
    try:
        while not stop.wait(1):
            pass
    finally:
        metadata.shutdown()
        moto.stop()
        replica.stop()
        primary.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m local.standin PLAN.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(Path(sys.argv[1])))
