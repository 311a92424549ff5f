"""The address plan of the VPC: pure CIDR math with the stdlib ``ipaddress``.

The VPC is cut into 16 equal slots (prefix + 4). Each tier owns a fixed band of four slots and each
AZ a fixed slot inside it, so a subnet's CIDR depends only on (tier, AZ index): adding an AZ or a
server never moves an existing subnet. Servers get fixed private addresses too, derived from
(role, index), so the load balancer's configuration is known before any server exists and no
server has to wait for another.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Tier = Literal["public", "web", "app", "db"]
TIERS: tuple[Tier, ...] = ("public", "web", "app", "db")
SLOTS_PER_TIER = 4
FIRST_HOST = 10  # AWS reserves .0-.3 and the last address of each subnet; keep clear of them.


@dataclass(frozen=True)
class Subnet:
    tier: Tier
    index: int  # AZ index
    az: str
    cidr: str


def subnet_cidr(vpc_cidr: str, tier: Tier, az_index: int) -> str:
    vpc = ipaddress.IPv4Network(vpc_cidr)
    if not 0 <= az_index < SLOTS_PER_TIER:
        raise ValueError(f"az_index {az_index} is outside 0..{SLOTS_PER_TIER - 1}")
    slots = list(vpc.subnets(new_prefix=vpc.prefixlen + 4))
    return str(slots[TIERS.index(tier) * SLOTS_PER_TIER + az_index])


def subnets(vpc_cidr: str, azs: tuple[str, ...] | list[str]) -> list[Subnet]:
    """Every subnet of the VPC: one per tier and AZ."""
    return [Subnet(tier, i, az, subnet_cidr(vpc_cidr, tier, i)) for tier in TIERS for i, az in enumerate(azs)]


NAT_HOST = 5  # in the public subnet: after AWS's reserved .0-.3, before FIRST_HOST


def nat_address(vpc_cidr: str, az_index: int) -> str:
    """The fixed private address of the NAT gateway in a public subnet."""
    net = ipaddress.IPv4Network(subnet_cidr(vpc_cidr, "public", az_index))
    return str(net.network_address + NAT_HOST)


def server_az_index(index: int, az_count: int) -> int:
    """Servers of a role go round-robin over the AZs."""
    return index % az_count


def server_address(vpc_cidr: str, tier: Tier, index: int, az_count: int) -> str:
    """The fixed private IPv4 address of server ``index`` of a tier."""
    net = ipaddress.IPv4Network(subnet_cidr(vpc_cidr, tier, server_az_index(index, az_count)))
    host = FIRST_HOST + index // az_count
    if host >= net.num_addresses - 1:
        raise ValueError(f"subnet {net} has no room for server {index} of tier {tier}")
    return str(net.network_address + host)
