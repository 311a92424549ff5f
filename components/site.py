"""www.foobar.com: the whole site as one component, wiring the concerns together."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import plan
from components.artifacts import Artifacts, ArtifactsArgs
from components.certificates import Certificates, CertificatesArgs, param_path
from components.database import Database, DatabaseArgs, reader_statements
from components.edge import LoadBalancers, LoadBalancersArgs
from components.firewalls import Firewalls, FirewallsArgs
from components.groups import ServerGroup, ServerGroupArgs, discovery_statement
from components.monitoring import (
    AgentLogs,
    AgentLogsArgs,
    Monitoring,
    MonitoringArgs,
    agent_statements,
    sumo_token_statement,
)
from components.network import Network, NetworkArgs
from components.servers import RoleAccess
from components.settings import PROJECT, Settings
from userdata import RoleValues, cloud_config

# The role tag of every resource; one AWS provider per role carries it as a default tag.
TAG_ROLES = ("network", "lb", "web", "app", "db", "certificates", "monitoring")


def default_tags(settings: Settings, role: str) -> dict[str, str]:
    tags = {"project": PROJECT, "stack": settings.stack, "role": role}
    expiry = settings.expiry()
    if expiry:
        tags["expires-at"] = expiry
    return tags


@dataclass
class SiteArgs:
    settings: Settings
    region: str


class Site(pulumi.ComponentResource):
    url: pulumi.Output[str]
    lb_public_ip: pulumi.Output[str]
    outputs: dict[str, object]

    def __init__(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:site:Site", name, None, opts)
        s, region = args.settings, args.region

        providers = {
            role: aws.Provider(
                f"aws-{role}",
                region=region,
                default_tags=aws.ProviderDefaultTagsArgs(tags=default_tags(s, role)),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for role in TAG_ROLES
        }
        invoke = pulumi.InvokeOptions(provider=providers["network"])
        account = aws.get_caller_identity(opts=invoke).account_id
        partition = aws.get_partition(opts=invoke).partition

        network = Network(
            f"{name}-network",
            NetworkArgs(s, providers["network"], region, account),
            pulumi.ResourceOptions(parent=self),
        )
        artifacts = Artifacts(
            f"{name}-artifacts",
            ArtifactsArgs(s, providers["network"], partition),
            pulumi.ResourceOptions(parent=self),
        )
        firewalls = Firewalls(
            f"{name}-firewalls",
            FirewallsArgs(vpc_id=network.vpc_id, providers=providers),
            pulumi.ResourceOptions(parent=self),
        )
        certs = Certificates(
            f"{name}-certificates",
            CertificatesArgs(s, providers["certificates"], {r: providers[r] for r in ("lb", "web", "app")}),
            pulumi.ResourceOptions(parent=self),
        )

        # The agents' log groups exist before any server and outlive them (see AgentLogs).
        logs = AgentLogs(
            f"{name}-logs",
            AgentLogsArgs(stack=s.stack, log_retention_days=s.log_retention_days, provider=providers["monitoring"]),
            pulumi.ResourceOptions(parent=self),
        )

        # Per server role: the subnet tier it lives in and its instance type. The load balancer is a
        # plain instance; web and app are Auto Scaling groups that the load balancer discovers.
        tiers: dict[str, plan.Tier] = {"lb": "public", "web": "web", "app": "app"}
        instance_types = {"lb": s.lb_instance_type, "web": s.web_instance_type, "app": s.app_instance_type}

        def values(role: str, **extra: object) -> RoleValues:
            return RoleValues(
                role=role,  # type: ignore[arg-type]
                stack=s.stack,
                region=region,
                domain=s.domain,
                param_path=param_path(s.stack, role),
                sumo_token_parameter=s.sumo_token_parameter,
                **extra,  # type: ignore[arg-type]
            )

        # With a Sumo Logic token configured, every role may read that one parameter at boot.
        sumo: list[dict[str, object]] = []
        if s.sumo_token_parameter:
            sumo = [
                sumo_token_statement(
                    partition=partition, region=region, account=account, parameter=s.sumo_token_parameter
                )
            ]

        def agent(role: str) -> list[dict[str, object]]:
            """The role's CloudWatch agent permissions, plus the Sumo token when configured."""
            return [
                *agent_statements(partition=partition, region=region, account=account, log_groups=logs.names[role]),
                *sumo,
            ]

        # Web and app servers fetch their content and code from S3; only its address and hash are in the user-data.
        def fetching(role: str) -> pulumi.Output[str]:
            archive = artifacts.archives[role]
            kind = "site" if role == "web" else "app"
            return artifacts.url(role).apply(
                lambda url: cloud_config(
                    values(role, **{f"{kind}_archive_url": url, f"{kind}_archive_sha256": archive.sha256})
                )
            )

        def access(role: str) -> RoleAccess:
            return RoleAccess(
                role=role, param_path=param_path(s.stack, role), partition=partition, region=region, account=account
            )

        def with_archive(role: str) -> pulumi.Output[list[dict[str, object]]]:
            return artifacts.read_statement(role).apply(lambda st: [st, *agent(role)])

        sizes = {"web": (s.web_min, s.web_count, s.web_max), "app": (s.app_min, s.app_count, s.app_max)}
        web, app = (
            ServerGroup(
                f"{name}-{role}",
                ServerGroupArgs(
                    access=access(role),
                    stack=s.stack,
                    min_size=sizes[role][0],
                    desired=sizes[role][1],
                    max_size=sizes[role][2],
                    instance_type=instance_types[role],
                    subnet_ids=network.subnet_ids[tiers[role]],
                    security_group_id=firewalls.group_ids[role],  # type: ignore[index]
                    user_data=fetching(role),
                    root_volume_gib=s.root_volume_gib,
                    provider=providers[role],
                    tags=default_tags(s, role),
                    cpu_target=s.scaling_cpu_target,
                    # An app server comes into service once the database exists: on a first deploy
                    # that is RDS's creation time (Multi-AZ, then the replica: up to ~35 min), within
                    # the boot's own wait for it (60 min) plus its health check (10 min).
                    capacity_timeout="75m" if role == "app" else "20m",
                    extra_statements=with_archive(role),
                    wait_for=[*network.egress[tiers[role]], *logs.groups[role]],
                ),
                pulumi.ResourceOptions(parent=self),
            )
            for role in ("web", "app")
        )

        acm_arn = certs.acm_certificate_arn

        def lb_statements(arn: str, own: list[dict[str, object]]) -> list[dict[str, object]]:
            """Discovery, its archive and agent; with ACM, the export of its one certificate."""
            export: dict[str, object] = {
                "Sid": "ExportOwnCertificate",
                "Effect": "Allow",
                "Action": "acm:ExportCertificate",
                "Resource": arn,
            }
            statements: list[dict[str, object]] = [discovery_statement(), *own]
            return [export, *statements] if arn else statements

        lb_extra = pulumi.Output.all(acm_arn if acm_arn is not None else "", with_archive("lb")).apply(
            lambda v: lb_statements(v[0], v[1])
        )

        # The discovery agent (node/) is too big for the load balancer's user-data: it comes from S3.
        node = artifacts.archives["lb"]

        def lb_user_data(allocation_id: pulumi.Output[str]) -> pulumi.Input[str]:
            return pulumi.Output.all(artifacts.url("lb"), acm_arn if acm_arn is not None else "", allocation_id).apply(
                lambda v: cloud_config(
                    values(
                        "lb",
                        acm_certificate_arn=v[1],
                        node_archive_url=v[0],
                        node_archive_sha256=node.sha256,
                        lb_count=s.lb_count,
                        eip_allocation_id=v[2],
                        vpc_cidr=s.vpc_cidr,
                        limits=s.edge_limits,
                    )
                )
            )

        lb = LoadBalancers(
            f"{name}-lb",
            LoadBalancersArgs(
                access=access("lb"),
                count=s.lb_count,
                instance_type=instance_types["lb"],
                subnet_ids=network.subnet_ids["public"],
                security_group_id=firewalls.group_ids["lb"],
                user_data=lb_user_data,
                root_volume_gib=s.root_volume_gib,
                provider=providers["lb"],
                extra_statements=lb_extra,
                wait_for=[*network.egress["public"], *logs.groups["lb"]],
            ),
            pulumi.ResourceOptions(parent=self),
        )

        db = Database(
            f"{name}-database",
            DatabaseArgs(
                settings=s,
                subnet_ids=network.subnet_ids["db"],
                security_group_id=firewalls.group_ids["db"],
                provider=providers["db"],
                account=account,
                region=region,
                partition=partition,
                readers=[app.role_arn],
            ),
            pulumi.ResourceOptions(parent=self),
        )
        # The app learns where the database is from SSM at boot, so no server waits for RDS.
        app_path = param_path(s.stack, "app")
        app_opts = pulumi.ResourceOptions(parent=self, provider=providers["app"])
        for key, value in (
            ("db-writer", db.writer_endpoint),
            ("db-reader", db.reader_endpoint),
            ("db-secret-arn", db.secret_arn),
        ):
            aws.ssm.Parameter(
                f"{name}-app-{key}",
                name=f"{app_path}/{key}",
                type="String",
                value=value,
                description=f"foobar {s.stack}: {key} for the app servers",
                opts=app_opts,
            )
        aws.iam.RolePolicy(
            f"{name}-app-db-secret",
            role=app.role_name,
            policy=pulumi.Output.all(db.secret_arn, db.secret_key_arn).apply(
                lambda v: json.dumps({"Version": "2012-10-17", "Statement": reader_statements(v[0], v[1], region)})
            ),
            opts=app_opts,
        )

        monitoring = Monitoring(
            f"{name}-monitoring",
            MonitoringArgs(
                stack=s.stack,
                region=region,
                account=account,
                partition=partition,
                alarm_email=s.alarm_email,
                instance_ids={"lb": lb.instance_ids},
                group_names={"web": web.group_name, "app": app.group_name},
                group_min_sizes={"web": s.web_min, "app": s.app_min},
                db_primary_identifier=db.primary_identifier,
                db_replica_identifier=db.replica_identifier,
                db_allocated_storage_gib=s.db_allocated_storage_gib,
                provider=providers["monitoring"],
            ),
            pulumi.ResourceOptions(parent=self),
        )

        lb_ip = lb.public_ip
        if s.hosted_zone_id and s.public_certificate == "acm":
            aws.route53.Record(
                f"{name}-domain",
                zone_id=s.hosted_zone_id,
                name=s.domain,
                type="A",
                ttl=300,
                records=[lb_ip],
                opts=pulumi.ResourceOptions(parent=self, provider=providers["lb"]),
            )

        self.url = pulumi.Output.from_input(f"https://{s.domain}/")
        self.lb_public_ip = lb_ip
        self.outputs = {
            "url": self.url,
            "lbPublicIp": lb_ip,
            "lbAddressAllocationId": lb.allocation_id,
            "certificateArn": acm_arn if acm_arn is not None else "",
            "certificateValidationRecords": certs.validation_records,
            "internalCaCertPem": certs.ca_cert_pem,
            "dbWriterEndpoint": db.writer_endpoint,
            "dbReaderEndpoint": db.reader_endpoint,
            "dbSecretArn": db.secret_arn,
            "instanceIds": {"lb": lb.instance_ids},
            "groupNames": {"web": web.group_name, "app": app.group_name},
            "securityGroupIds": firewalls.group_ids,
            "vpcId": network.vpc_id,
            "alarmTopicArn": monitoring.topic_arn,
            "dashboardName": monitoring.dashboard_name,
            "stack": s.stack,
            "ephemeral": s.ephemeral,
            "expiresAt": s.expiry() or "",
        }
        self.register_outputs(self.outputs)
