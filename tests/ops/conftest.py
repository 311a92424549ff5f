"""A foobar deployment built in moto from the same tables the program declares."""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from components.certificates import CA_PARAMETER, CERT_PARAMETER, KEY_PARAMETER, LEAF_ROLES, param_path
from components.firewalls import GROUPS, RULES
from local.mariadb import CertificateAuthority

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Moto credentials, and nothing that could reach a real AWS endpoint or the instance metadata service."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def self_signed(domain: str, days: int) -> tuple[bytes, bytes]:
    """A certificate and key for ACM import; ``days`` from now until it expires."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority.create(Path(tmp), common_name=f"{domain} issuer", days=days + 1)
        files = ca.issue_server_cert(Path(tmp), domain, dns_names=[domain], days=days)
        return files.cert.read_bytes(), files.key.read_bytes()


@dataclass
class InternalCA:
    """A stand-in for the stack's pulumi-tls CA (the local site's CA, ECDSA P-256): it signs leaves
    like LocallySignedCert does."""

    authority: CertificateAuthority

    @classmethod
    def create(cls, stack: str, days: int) -> InternalCA:
        home = Path(tempfile.mkdtemp(prefix="foobar-ca-"))
        return cls(CertificateAuthority.create(home, common_name=f"foobar {stack} internal CA", days=days))

    @property
    def pem(self) -> str:
        return Path(self.authority.cert).read_text()

    def leaf(self, dns_name: str, days: int) -> tuple[str, str]:
        """A leaf certificate and its key (PEM), ``days`` from now until it expires, even past the CA."""
        with tempfile.TemporaryDirectory() as tmp:
            files = self.authority.issue_server_cert(
                Path(tmp), dns_name, dns_names=[dns_name], days=days, within_ca=False
            )
            return files.cert.read_text(), files.key.read_text()


@dataclass
class Deployment:
    """The moto account and the stack outputs `pulumi stack output --json` would print for it."""

    outputs: dict[str, Any]
    ec2: Any
    rds: Any
    cloudwatch: Any
    acm: Any
    ssm: Any
    ca: InternalCA

    def put_leaf(self, role: str, days: int, ca: InternalCA | None = None) -> None:
        """Store a role's internal certificate and key in SSM the way components/certificates.py does."""
        cert, key = (ca or self.ca).leaf(f"{role}.foobar.internal", days)
        path = param_path(self.outputs["stack"], role)
        self.ssm.put_parameter(Name=f"{path}/{CERT_PARAMETER}", Value=cert, Type="String", Overwrite=True)
        self.ssm.put_parameter(Name=f"{path}/{KEY_PARAMETER}", Value=key, Type="SecureString", Overwrite=True)

    def put_ca(self, ca: InternalCA, roles: tuple[str, ...] = LEAF_ROLES) -> None:
        for role in roles:
            name = f"{param_path(self.outputs['stack'], role)}/{CA_PARAMETER}"
            self.ssm.put_parameter(Name=name, Value=ca.pem, Type="String", Overwrite=True)

    def put_replica_lag(self, seconds: float, ago: float = 30.0) -> None:
        identifier = self.outputs["_replicaIdentifier"]
        self.cloudwatch.put_metric_data(
            Namespace="AWS/RDS",
            MetricData=[
                {
                    "MetricName": "ReplicaLag",
                    "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": identifier}],
                    "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago),
                    "Value": seconds,
                    "Unit": "Seconds",
                }
            ],
        )


def build(
    stack: str = "dev",
    multi_az: bool = False,
    cert_days: int = 90,
    suffix: str = "20261126",
    leaf_days: int = 200,
    ca_days: int = 3650,
) -> Deployment:
    """VPC, the four groups with exactly RULES, running servers, primary + replica, an issued certificate,
    and the internal CA and leaves in SSM."""
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    acm = boto3.client("acm", region_name=REGION)
    ssm = boto3.client("ssm", region_name=REGION)
    tags = [{"Key": "project", "Value": "foobar"}, {"Key": "stack", "Value": stack}]

    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/20")["Subnet"]["SubnetId"]
    groups: dict[str, str] = {}
    for group in GROUPS:
        gid = ec2.create_security_group(GroupName=f"foobar-{group}", Description=f"foobar {group}", VpcId=vpc)[
            "GroupId"
        ]
        # The AWS provider removes the default allow-all egress rule of a new group; so do we.
        ec2.revoke_security_group_egress(
            GroupId=gid, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        )
        groups[group] = gid
    for rule in RULES:
        perm: dict[str, Any] = {"IpProtocol": rule.protocol, "FromPort": rule.port, "ToPort": rule.port}
        if rule.peer_is_group:
            perm["UserIdGroupPairs"] = [{"GroupId": groups[rule.peer], "Description": rule.description}]
        else:
            perm["IpRanges"] = [{"CidrIp": rule.peer, "Description": rule.description}]
        authorize = (
            ec2.authorize_security_group_ingress if rule.direction == "ingress" else ec2.authorize_security_group_egress
        )
        authorize(GroupId=groups[rule.group], IpPermissions=[perm])

    answer = ec2.run_instances(
        ImageId="ami-0123456789abcdef0",  # moto does not validate AMIs by default
        InstanceType="t3.micro",
        MinCount=2,  # the pair
        MaxCount=2,
        SubnetId=subnet,
        SecurityGroupIds=[groups["lb"]],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [*tags, {"Key": "role", "Value": "lb"}]}],
    )
    instances = {"lb": [i["InstanceId"] for i in answer["Instances"]]}
    # The site's address, on the MASTER (node.eip claimed it).
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=instances["lb"][0])
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    group_names: dict[str, str] = {}
    for role, count in (("web", 1), ("app", 2)):
        template = ec2.create_launch_template(
            LaunchTemplateName=f"foobar-{stack}-{role}-{secrets.token_hex(4)}",
            LaunchTemplateData={
                "ImageId": "ami-0123456789abcdef0",
                "InstanceType": "t3.micro",
                "SecurityGroupIds": [groups[role]],
            },
        )["LaunchTemplate"]["LaunchTemplateId"]
        name = f"foobar-{stack}-{role}-{secrets.token_hex(4)}"
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
            MinSize=count,
            MaxSize=4,
            DesiredCapacity=count,
            VPCZoneIdentifier=subnet,
            Tags=[{**t, "PropagateAtLaunch": True} for t in [*tags, {"Key": "role", "Value": role}]],
        )
        group_names[role] = name

    primary = rds.create_db_instance(
        DBInstanceIdentifier=f"foobar-{stack}-{suffix}",
        Engine="mysql",
        EngineVersion="8.4.3",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        MasterUsername="foobar",
        MasterUserPassword="not-a-real-password-1",
        MultiAZ=multi_az,
        StorageEncrypted=True,
        BackupRetentionPeriod=1,
        Tags=tags,
    )["DBInstance"]
    replica = rds.create_db_instance_read_replica(
        DBInstanceIdentifier=f"foobar-{stack}-replica-{suffix}",
        SourceDBInstanceIdentifier=primary["DBInstanceIdentifier"],
        DBInstanceClass="db.t4g.micro",
        Tags=tags,
    )["DBInstance"]

    cert, key = self_signed("www.foobar.test", cert_days)
    arn = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]

    describe = {d["DBInstanceIdentifier"]: d for d in rds.describe_db_instances()["DBInstances"]}
    outputs = {
        "url": "https://www.foobar.test/",
        "lbPublicIp": address["PublicIp"],
        "lbAddressAllocationId": address["AllocationId"],
        "certificateArn": arn,
        "certificateValidationRecords": [],
        "internalCaCertPem": "",  # set below, from the CA that signs the leaves in SSM
        "dbWriterEndpoint": describe[primary["DBInstanceIdentifier"]]["Endpoint"]["Address"],
        "dbReaderEndpoint": describe[replica["DBInstanceIdentifier"]]["Endpoint"]["Address"],
        "dbSecretArn": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:rds!db-1",
        "instanceIds": instances,
        "groupNames": group_names,
        "securityGroupIds": groups,
        "vpcId": vpc,
        "stack": stack,
        "ephemeral": False,
        "expiresAt": "",
        "_replicaIdentifier": replica["DBInstanceIdentifier"],
    }
    ca = InternalCA.create(stack, ca_days)
    outputs["internalCaCertPem"] = ca.pem
    deployment = Deployment(outputs, ec2, rds, cloudwatch, acm, ssm, ca)
    deployment.put_ca(ca)
    for role in LEAF_ROLES:
        deployment.put_leaf(role, leaf_days)
    deployment.put_replica_lag(2.0, ago=90)
    return deployment


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def deployment(aws: None) -> Deployment:
    return build()
