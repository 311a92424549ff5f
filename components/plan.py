"""The address plan of the VPC: pure CIDR math with the stdlib ``ipaddress``.

The VPC is cut into 16 equal slots (prefix + 4). Each tier owns a fixed band of four slots and each
AZ a fixed slot inside it, so a subnet's CIDR depends only on (tier, AZ index): adding an AZ never
moves an existing subnet. Servers and NAT gateways get no fixed address: a replacement is created
before the old one goes, and would ask for an address still in use (``InvalidIPAddress.InUse``).
The load balancer finds its backends at run time.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Tier = Literal["public", "web", "app", "db"]
TIERS: tuple[Tier, ...] = ("public", "web", "app", "db")
SLOTS_PER_TIER = 4


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
