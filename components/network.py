"""The VPC: public subnets for the load balancer, private subnets for web and app, isolated subnets
for the database, NAT by strategy, flow logs, and a default security group with no rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import plan
from components.settings import Settings


@dataclass
class NetworkArgs:
    settings: Settings
    provider: pulumi.ProviderResource
    region: str
    account: str


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    subnet_ids: Mapping[plan.Tier, Sequence[pulumi.Input[str]]]
    egress: dict[str, list[pulumi.Resource]]
    """Per tier, the routes a server's first boot needs (package installs): wait for them."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:network:Network", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=s.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"foobar-{s.stack}"},
            opts=child,
        )
        # Adopt the default group and strip it: nothing may use it by accident (CKV2_AWS_12).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)

        subnet_ids: dict[plan.Tier, list[pulumi.Output[str]]] = {tier: [] for tier in plan.TIERS}
        for sub in plan.subnets(s.vpc_cidr, s.azs):
            resource = aws.ec2.Subnet(
                f"{name}-{sub.tier}-{sub.index}",  # index-based: stable across renames and new AZs
                vpc_id=vpc.id,
                cidr_block=sub.cidr,
                availability_zone=sub.az,
                map_public_ip_on_launch=False,  # the load balancer gets an Elastic IP instead
                tags={"Name": f"foobar-{s.stack}-{sub.tier}-{sub.az}", "tier": sub.tier},
                opts=child,
            )
            subnet_ids[sub.tier].append(resource.id)

        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, tags={"Name": "foobar-public"}, opts=child)
        public_default = aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        for i, subnet_id in enumerate(subnet_ids["public"]):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet_id, route_table_id=public_rt.id, opts=child
            )

        nat_ids: list[pulumi.Output[str]] = []
        nat_count = {"none": 0, "single": 1, "per-az": s.az_count}[s.nat_strategy]
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-eip-{i}", domain="vpc", tags={"Name": f"foobar-nat-{i}"}, opts=child)
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{i}",
                allocation_id=eip.allocation_id,
                subnet_id=subnet_ids["public"][i],
                tags={"Name": f"foobar-nat-{i}"},
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[igw]),
            )
            nat_ids.append(nat.id)

        # One private route table per AZ, so per-az NAT keeps traffic in its zone.
        private_defaults: list[pulumi.Resource] = []
        private_tables: list[pulumi.Output[str]] = []
        for i in range(s.az_count):
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}", vpc_id=vpc.id, tags={"Name": f"foobar-private-{i}"}, opts=child
            )
            private_tables.append(rt.id)
            if nat_ids:
                route = aws.ec2.Route(
                    f"{name}-private-default-{i}",
                    route_table_id=rt.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nat_ids[i % len(nat_ids)],
                    opts=child,
                )
                private_defaults.append(route)
            for tier in ("web", "app"):
                aws.ec2.RouteTableAssociation(
                    f"{name}-{tier}-{i}", subnet_id=subnet_ids[tier][i], route_table_id=rt.id, opts=child
                )

        # Servers fetch their code and site from S3 through a gateway endpoint: free, and it works
        # without NAT too. The database subnets stay without it.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[public_rt.id, *private_tables],
            tags={"Name": f"foobar-{s.stack}-s3"},
            opts=child,
        )

        # The database subnets get a table with only the VPC-local route: no way out, ever.
        db_rt = aws.ec2.RouteTable(f"{name}-db-rt", vpc_id=vpc.id, tags={"Name": "foobar-db-isolated"}, opts=child)
        for i, subnet_id in enumerate(subnet_ids["db"]):
            aws.ec2.RouteTableAssociation(f"{name}-db-{i}", subnet_id=subnet_id, route_table_id=db_rt.id, opts=child)

        # Flow logs of every accepted and rejected connection, kept for logRetentionDays.
        flow_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/foobar/{s.stack}/vpc-flow-logs",
            retention_in_days=s.log_retention_days,
            opts=child,
        )
        flow_role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            # Only flow logs of this account may use the role (no confused deputy).
                            "Condition": {"StringEquals": {"aws:SourceAccount": args.account}},
                        }
                    ],
                }
            ),
            opts=child,
        )
        flow_policy = aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=flow_role.id,
            policy=flow_group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                                "Resource": [arn, f"{arn}:*"],
                            },
                            {
                                # Flow logs look their group up before delivering (VPC User Guide,
                                # "IAM role for publishing flow logs to CloudWatch Logs").
                                "Effect": "Allow",
                                "Action": "logs:DescribeLogGroups",
                                "Resource": arn.rsplit(":log-group:", 1)[0] + ":log-group:*",
                            },
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=flow_group.arn,
            iam_role_arn=flow_role.arn,
            # Without its policy in place, the flow log is created but can't deliver (and says so
            # only in its DeliverLogsErrorMessage).
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[flow_policy])),
        )

        self.vpc_id = vpc.id
        self.subnet_ids = subnet_ids
        self.egress = {"public": [public_default], "web": private_defaults, "app": private_defaults}
        self.register_outputs(
            {
                "vpcId": vpc.id,
                "publicSubnetIds": subnet_ids["public"],
                "webSubnetIds": subnet_ids["web"],
                "appSubnetIds": subnet_ids["app"],
                "dbSubnetIds": subnet_ids["db"],
                "natGatewayIds": nat_ids,
            }
        )
