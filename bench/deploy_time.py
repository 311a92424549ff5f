"""Estimates how long `pulumi up` takes for a fresh stack: the critical path of the program's
dependency graph (recorded under Pulumi mocks) weighted with typical AWS creation times.

Usage: .venv/bin/python bench/deploy_time.py
Prints, per stack, the estimated total and the resources on the critical path, and checks the
target: no chain longer than the database's (subnet group -> primary -> replica), and no server
waiting on the database.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.bench import Row, emit_rows, format_table
from tests.unit.harness import Registration, Run, run

BENCH = "deploy_time"

# Typical creation times in seconds (DESIGN.md section 9, public apply logs); the rest take ~3 s.
SECONDS = {
    "aws:ec2/natGateway:NatGateway": 105,
    "aws:ec2/instance:Instance": 25,
    "aws:acm/certificateValidation:CertificateValidation": 60,
    "aws:ec2/vpc:Vpc": 5,
    "aws:ec2/subnet:Subnet": 5,
    "aws:ec2/eip:Eip": 3,
    "aws:iam/instanceProfile:InstanceProfile": 8,
    # `pulumi up` waits until min_size members are in service: launch, cloud-init (~2 min), own /healthz,
    # then the member completes its launch hook.
    "aws:autoscaling/group:Group": 180,
}
RDS_SINGLE_AZ, RDS_MULTI_AZ, RDS_REPLICA = 270, 900, 600
DEFAULT = 3


def cost(r: Registration) -> int:
    if r.type == "aws:rds/instance:Instance":
        if r.inputs.get("replicateSourceDb"):
            return RDS_REPLICA
        return RDS_MULTI_AZ if r.inputs.get("multiAz") else RDS_SINGLE_AZ
    if r.type.startswith("foobar:") or r.type.startswith("pulumi:providers:"):
        return 0
    return SECONDS.get(r.type, DEFAULT)


def critical_path(result: Run, *, exclude_db: bool = False) -> tuple[int, list[Registration]]:
    by_urn = {r.urn: r for r in result.resources}
    skip = {"aws:rds/instance:Instance"} if exclude_db else set()

    @cache
    def longest(urn: str) -> tuple[int, tuple[str, ...]]:
        r = by_urn[urn]
        best: tuple[int, tuple[str, ...]] = (0, ())
        for dep in r.dependencies:
            if dep in by_urn and by_urn[dep].type not in skip:
                best = max(best, longest(dep))
        return best[0] + cost(r), (*best[1], urn)

    ends = [longest(r.urn) for r in result.resources if r.type not in skip]
    total, chain = max(ends)
    return total, [by_urn[u] for u in chain]


def waits_on_database(result: Run) -> list[str]:
    """Servers (instances, launch templates, groups) with an RDS instance anywhere upstream."""
    by_urn = {r.urn: r for r in result.resources}

    @cache
    def upstream(urn: str) -> frozenset[str]:
        out: set[str] = set()
        for dep in by_urn[urn].dependencies if urn in by_urn else []:
            out |= {dep} | upstream(dep)
        return frozenset(out)

    return [
        r.name
        for r in result.resources
        if r.type
        in ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate", "aws:autoscaling/group:Group")
        and any(by_urn[u].type == "aws:rds/instance:Instance" for u in upstream(r.urn) if u in by_urn)
    ]


def main() -> int:
    ok = True
    rows: list[Row] = []
    for label, result in (
        ("dev", run("dev")),
        ("prod", run("prod")),
        ("pr-1 (ephemeral)", run("pr-1", base="dev", ephemeral=True)),
    ):
        total, chain = critical_path(result)
        rest, rest_chain = critical_path(result, exclude_db=True)
        print(f"\n== {label}: {len(result.resources)} resources, critical path ~{total / 60:.1f} min")
        for r in chain:
            if cost(r):
                print(f"   {cost(r):>5} s  {r.type.split(':')[-1]:<22} {r.name}")
        print(f"   longest chain without the database: ~{rest / 60:.1f} min, ending at {rest_chain[-1].name}")
        waiting = waits_on_database(result)
        db_chain = any(r.type == "aws:rds/instance:Instance" for r in chain)
        verdict = "OK" if db_chain and not waiting and rest <= total else "MISSED"
        ok &= verdict == "OK"
        rows.append(
            Row(
                BENCH,
                f"{label}: critical path (estimate)",
                total / 60,
                "min",
                "db chain longest",
                verdict == "OK",
                f"without the database ~{rest / 60:.1f} min; servers waiting on it: {len(waiting)}",
            )
        )
        print(f"   target (the database chain is the longest, no server waits on it): {verdict}")
        if waiting:
            print(f"   servers waiting on the database: {', '.join(waiting)}")
    print("\n" + format_table(rows))
    emit_rows(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
