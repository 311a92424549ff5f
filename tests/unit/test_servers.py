"""Instances: hardening, placement, IAM least privilege, user-data without secrets."""

from __future__ import annotations

import base64
import json
import re

import pytest

from components.servers import architecture
from tests.configs.checks import decoded_files
from tests.unit.harness import Run, run
from userdata import from_ec2

# A key block, a literal password value, or an AWS secret key; code that names a password is fine.
SECRET = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|password\s*[=:]\s*['\"][^'\"\s]{4,}|aws_secret_access_key",
    re.IGNORECASE,
)


def instances(r: Run, role: str | None = None) -> list:
    found = r.of_type("aws:ec2/instance:Instance")
    return [i for i in found if role is None or i.name.split("-")[1] == role]


def user_data(r: Run) -> dict[str, str]:
    """Every server's user-data by role: the load balancer's instance and the groups' templates."""
    found = {i.name.split("-")[1]: from_ec2(i.inputs["userDataBase64"]) for i in instances(r)}
    for lt in r.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        found[lt.name.split("-")[1]] = from_ec2(lt.inputs["userData"])
    return found


def test_counts_per_role(stack_run: Run) -> None:
    s = stack_run.namespace["settings"]
    assert len(instances(stack_run, "lb")) == s.lb_count
    assert not instances(stack_run, "web") and not instances(stack_run, "app")  # groups: tests/unit/test_groups.py
    assert set(user_data(stack_run)) == {"lb", "web", "app"} and s.web_count >= 1


def test_every_instance_is_hardened(stack_run: Run) -> None:
    for inst in instances(stack_run):
        meta = inst.inputs["metadataOptions"]
        assert meta["httpTokens"] == "required" and meta["httpPutResponseHopLimit"] == 1, inst.name
        root = inst.inputs["rootBlockDevice"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3", inst.name
        assert inst.inputs["userDataReplaceOnChange"] is True
        assert inst.inputs["associatePublicIpAddress"] is inst.name.startswith("foobar-lb-")
        assert inst.inputs["iamInstanceProfile"]
        assert inst.inputs["ami"].startswith("ami-ubuntu-")


def test_private_roles_sit_in_private_subnets_and_only_the_lb_has_an_eip(stack_run: Run) -> None:
    tier_of = {s.id: s.inputs["tags"]["tier"] for s in stack_run.of_type("aws:ec2/subnet:Subnet")}
    for inst in instances(stack_run):
        role = inst.name.split("-")[1]
        assert tier_of[inst.inputs["subnetId"]] == ("public" if role == "lb" else role)
    (eip,) = [e for e in stack_run.of_type("aws:ec2/eip:Eip") if e.name.endswith("-lb-address")]  # the site's
    assert eip.inputs["domain"] == "vpc"


def test_servers_have_no_fixed_address(stack_run: Run) -> None:
    """Replacement is create-before-destroy: a fixed address would still be held (InvalidIPAddress.InUse)."""
    assert all("privateIp" not in i.inputs for i in instances(stack_run))


def test_user_data_has_no_secret_and_fits(stack_run: Run) -> None:
    keys = [k.outputs["privateKeyPem"].split("\n")[1] for k in stack_run.of_type("tls:index/privateKey:PrivateKey")]
    for role, data in user_data(stack_run).items():
        assert data.startswith("#cloud-config")
        assert not SECRET.search(data), role
        for path, (content, _) in decoded_files(data).items():  # packed files too
            text = content.decode(errors="replace")
            assert not SECRET.search(text), (role, path)
            assert not any(key in text for key in keys), (role, path)
        assert len(data.encode()) < 16384
    # ... and the keys really exist somewhere else: SSM SecureString parameters.
    keys = [p for p in stack_run.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"].endswith("/tls-key")]
    assert {p.inputs["type"] for p in keys} == {"SecureString"} and len(keys) == 3


def policies_of(r: Run, role: str) -> list[dict]:
    roles = {x.outputs["name"]: x.name for x in r.of_type("aws:iam/role:Role")}
    docs = []
    for pol in r.of_type("aws:iam/rolePolicy:RolePolicy"):
        if roles.get(pol.inputs["role"], "").startswith(f"foobar-{role}-"):
            docs.append(json.loads(pol.inputs["policy"]))
    return docs


@pytest.mark.parametrize("role", ["lb", "web", "app"])
def test_each_role_reads_only_its_own_parameters(stack_run: Run, role: str) -> None:
    stack = stack_run.namespace["settings"].stack
    own = f":parameter/foobar/{stack}/{role}"
    statements = [st for doc in policies_of(stack_run, role) for st in doc["Statement"]]
    allows = [st for st in statements if st["Effect"] == "Allow"]
    ssm = [st for st in allows if any(str(a).startswith("ssm:") for a in _list(st["Action"]))]
    resources = [res for st in ssm for res in _list(st["Resource"])]
    assert resources and all(own in res for res in resources)
    assert all("*" not in _list(st["Action"]) for st in allows)
    # The managed SSM policy allows reading every parameter: an explicit Deny takes that back.
    (deny,) = [st for st in statements if st["Effect"] == "Deny"]
    assert set(deny["Action"]) >= {"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"}
    assert deny["NotResource"] and all(own in res for res in deny["NotResource"])
    actions = {a for st in allows for a in _list(st["Action"])}
    acm = role == "lb" and stack_run.namespace["settings"].public_certificate == "acm"
    assert ("acm:ExportCertificate" in actions) == acm
    assert ("secretsmanager:GetSecretValue" in actions) == (role == "app")


def test_a_sumo_token_is_the_one_parameter_outside_the_own_path() -> None:
    r = run("dev", sumoTokenParameter="/foobar/shared/sumo-token")
    for role in ("lb", "web", "app"):
        statements = [st for doc in policies_of(r, role) for st in doc["Statement"]]
        (deny,) = [st for st in statements if st["Effect"] == "Deny"]
        outside = [res for res in deny["NotResource"] if f"/foobar/dev/{role}" not in res]
        assert [res.split(":parameter")[1] for res in outside] == ["/foobar/shared/sumo-token"], role


def test_lb_exports_only_its_own_certificate(runs: dict[str, Run]) -> None:
    r = runs["prod"]
    (cert,) = r.of_type("aws:acm/certificate:Certificate")
    st = [s for d in policies_of(r, "lb") for s in d["Statement"] if s["Action"] == "acm:ExportCertificate"]
    assert [s["Resource"] for s in st] == [cert.outputs["arn"]]


def test_app_reads_only_the_database_secret(runs: dict[str, Run]) -> None:
    r = runs["dev"]
    secret = r.namespace["site"].outputs["dbSecretArn"]
    from tests.unit.harness import resolve

    arn = resolve(secret)
    st = [s for d in policies_of(r, "app") for s in d["Statement"] if s["Action"] == "secretsmanager:GetSecretValue"]
    assert [s["Resource"] for s in st] == [arn] and arn.startswith("arn:aws:secretsmanager:")


def _list(x: object) -> list:
    return x if isinstance(x, list) else [x]


def test_graviton_types_get_arm_images() -> None:
    assert architecture("t4g.micro") == "arm64" and architecture("c7gn.large") == "arm64"
    assert architecture("t3.micro") == "amd64" and architecture("m7i.large") == "amd64"
    r = run("dev", lbInstanceType="m7g.large")
    (lb,) = instances(r, "lb")
    assert lb.inputs["ami"] == "ami-ubuntu-arm64"
    assert any("arm64" in str(args) for token, args in r.mocks.invokes if token == "aws:ec2/getAmi:getAmi")


def test_servers_never_wait_for_the_database(stack_run: Run) -> None:
    """No instance input is an RDS output: instances are created while RDS is still building."""
    db_values = set()
    for db in stack_run.of_type("aws:rds/instance:Instance"):
        db_values |= {db.outputs["address"], db.outputs["identifier"], db.id}
    servers = instances(stack_run) + stack_run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    servers += stack_run.of_type("aws:autoscaling/group:Group")
    for server in servers:
        assert not any(v in json.dumps(server.inputs) for v in db_values), server.name
        rds = {x.urn for x in stack_run.of_type("aws:rds/instance:Instance")}
        assert not rds & set(server.dependencies), server.name


def test_servers_boot_after_their_way_out_exists(runs: dict[str, Run]) -> None:
    """cloud-init installs packages at first boot: the instance must wait for its default route."""
    r = runs["prod"]
    routes = {x.urn: x for x in r.of_type("aws:ec2/route:Route")}
    for inst in instances(r):
        waited = [routes[u] for u in inst.dependencies if u in routes]
        assert waited, inst.name
        role = inst.name.split("-")[1]
        assert all(("gatewayId" in x.inputs) == (role == "lb") for x in waited)


@pytest.mark.parametrize("role", ["web", "app"])
def test_servers_fetch_their_archive_by_hash_and_may_read_only_it(stack_run: Run, role: str) -> None:
    import hashlib
    import json as _json

    objects = {o.inputs["key"]: o for o in stack_run.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    (bucket,) = stack_run.of_type("aws:s3/bucket:Bucket")
    key = next(k for k in objects if k.startswith(f"{role}/"))
    import base64

    data = base64.b64decode(objects[key].inputs["contentBase64"])
    digest = hashlib.sha256(data).hexdigest()
    assert key == f"{role}/{digest}.tar.gz"
    kind = "site" if role == "web" else "app"
    fetch = _json.loads(decoded_files(user_data(stack_run)[role])[f"/etc/foobar/{kind}-archive.json"][0])
    assert fetch["archive_url"] == f"s3://{bucket.id}/{key}" and fetch["sha256"] == digest
    s3 = [st for d in policies_of(stack_run, role) for st in d["Statement"] if str(st["Action"]).startswith("s3:")]
    assert [(st["Action"], st["Resource"]) for st in s3] == [("s3:GetObject", f"{bucket.outputs['arn']}/{key}")]
    # The load balancer reads only its own archive (the discovery agent), never the tiers'.
    lb_s3 = [st for d in policies_of(stack_run, "lb") for st in d["Statement"] if str(st["Action"]).startswith("s3:")]
    (node_key,) = [k for k in objects if k.startswith("lb/")]
    assert [(st["Action"], st["Resource"]) for st in lb_s3] == [("s3:GetObject", f"{bucket.outputs['arn']}/{node_key}")]


def test_artifact_bucket_is_private_and_encrypted(stack_run: Run) -> None:
    (block,) = stack_run.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block.inputs[k] is True
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    (enc,) = stack_run.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert enc.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    (endpoint,) = stack_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway" and endpoint.inputs["serviceName"].endswith(".s3")
    db_table = next(t.id for t in stack_run.of_type("aws:ec2/routeTable:RouteTable") if t.name.endswith("db-rt"))
    assert db_table not in endpoint.inputs["routeTableIds"]


def test_lb_has_a_way_out_before_its_elastic_ip(stack_run: Run) -> None:
    """Its first boot installs packages: it must not depend on when the EIP gets associated.

    It is also what keeps it from being replaced: with ``false`` and an EIP, the provider reads
    the association back as ``true`` and plans a replacement on every later `pulumi up`
    (terraform-provider-aws#37318).
    """
    for inst in instances(stack_run):
        public = inst.name.startswith("foobar-lb-")
        assert inst.inputs["associatePublicIpAddress"] is public, inst.name


def test_agents_cannot_create_log_groups(stack_run: Run) -> None:
    """CloudWatchAgentServerPolicy allows logs:CreateLogGroup on every group: an agent of a server
    still running at teardown recreates its group without retention, and the next stack of that
    name fails with ResourceAlreadyExistsException."""
    attached = [a.inputs["policyArn"] for a in stack_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert not [a for a in attached if "CloudWatchAgentServerPolicy" in a]
    for role in ("lb", "web", "app"):
        actions = {a for d in policies_of(stack_run, role) for st in d["Statement"] for a in _list(st["Action"])}
        assert not {"logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:*"} & actions, role
        assert {"logs:PutLogEvents", "logs:CreateLogStream", "cloudwatch:PutMetricData"} <= actions, role


@pytest.mark.parametrize("role", ["lb", "web", "app"])
def test_agents_write_only_their_own_log_groups(stack_run: Run, role: str) -> None:
    stack = stack_run.namespace["settings"].stack
    groups = {
        g.inputs["name"]
        for g in stack_run.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g.inputs["name"].startswith(f"/foobar/{stack}/{role}/")
    }
    assert groups
    writes = [
        st for d in policies_of(stack_run, role) for st in d["Statement"] if "logs:PutLogEvents" in _list(st["Action"])
    ]
    resources = {r.split(":log-group:", 1)[1].removesuffix(":*") for st in writes for r in st["Resource"]}
    assert resources == groups
    (metrics,) = [
        st for d in policies_of(stack_run, role) for st in d["Statement"] if st["Action"] == "cloudwatch:PutMetricData"
    ]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "foobar"}}


def test_servers_wait_for_their_log_groups(stack_run: Run) -> None:
    """So `pulumi destroy` deletes the servers before the groups their agents write into."""
    stack = stack_run.namespace["settings"].stack
    groups = {g.urn: g.inputs["name"] for g in stack_run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for inst in instances(stack_run):
        role = inst.name.split("-")[1]
        mine = {u for u, n in groups.items() if n.startswith(f"/foobar/{stack}/{role}/")}
        assert mine and mine <= set(inst.dependencies), inst.name


def test_lb_fetches_the_discovery_agent_by_hash(stack_run: Run) -> None:
    import hashlib

    objects = {o.inputs["key"]: o for o in stack_run.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    (key,) = [k for k in objects if k.startswith("lb/")]
    digest = hashlib.sha256(base64.b64decode(objects[key].inputs["contentBase64"])).hexdigest()
    assert key == f"lb/{digest}.tar.gz"
    assert digest in user_data(stack_run)["lb"] or any(
        digest in content.decode(errors="replace") for content, _ in decoded_files(user_data(stack_run)["lb"]).values()
    )
