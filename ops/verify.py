"""``ops verify``: does the live account match what the program declared for this stack?

Every expectation comes from the project itself: the firewall table is ``components.firewalls.RULES``
(imported, never copied), Multi-AZ and the replica come from the stack's settings files, the IDs come
from the stack outputs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from components.certificates import (
    CA_PARAMETER,
    CERT_PARAMETER,
    LEAF_EARLY_RENEWAL_HOURS,
    LEAF_ROLES,
    LEAF_VALIDITY_HOURS,
    param_path,
)
from components.firewalls import GROUPS, RULES, Rule
from ops.aws import Clients
from ops.https import Finding, HttpsCheck

# A certificate with fewer days left fails verify (--cert-min-days). For the internal leaves this is
# their early-renewal window: verify fails exactly when a `pulumi up` would re-issue them.
CERT_MIN_DAYS = LEAF_EARLY_RENEWAL_HOURS // 24
# The internal CA must still have a whole leaf lifetime left on top: a leaf issued later would
# outlive it (its CA_EARLY_RENEWAL_HOURS window, the same span).
LEAF_LIFETIME_DAYS = LEAF_VALIDITY_HOURS // 24
# ACM starts renewing a managed certificate 60 days before it expires (ACM User Guide, "Managed
# certificate renewal"); inside that window a certificate ACM won't renew is a problem now.
ACM_RENEWAL_DAYS = 60
LAG_WINDOW = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Expectations:
    """What the stack's settings say the database should look like."""

    multi_az: bool
    replica: bool
    max_replica_lag_seconds: float
    source: str
    cert_min_days: float = CERT_MIN_DAYS
    """Fewer days left on any certificate (ACM or internal) fail verify; the internal CA needs a leaf lifetime more."""


class RuleKey(NamedTuple):
    """A security-group rule reduced to what decides who may connect: no IDs, no descriptions."""

    direction: str
    protocol: str
    from_port: int
    to_port: int
    peer: str

    def __str__(self) -> str:
        ports = "all" if self.protocol == "all" else f"{self.protocol}/{self._ports()}"
        way = "from" if self.direction == "ingress" else "to"
        return f"{self.direction} {ports} {way} {self.peer}"

    def _ports(self) -> str:
        return str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"


def declared_rules(group: str) -> dict[RuleKey, Rule]:
    """The rules ``components.firewalls.RULES`` declares for one group, keyed like live rules."""
    return {RuleKey(r.direction, r.protocol, r.port, r.port, r.peer): r for r in RULES if r.group == group}


_PROTOCOLS = {"-1": "all", "6": "tcp", "17": "udp", "1": "icmp"}


def live_rules(group: dict[str, Any], names: dict[str, str]) -> list[RuleKey]:
    """Every rule of a described security group; peer groups are named by the outputs' mapping."""
    keys: list[RuleKey] = []
    for direction, field in (("ingress", "IpPermissions"), ("egress", "IpPermissionsEgress")):
        for perm in group.get(field, []):
            protocol = _PROTOCOLS.get(str(perm.get("IpProtocol")), str(perm.get("IpProtocol")))
            low = int(perm.get("FromPort", -1)) if protocol != "all" else -1
            high = int(perm.get("ToPort", -1)) if protocol != "all" else -1
            peers = [r["CidrIp"] for r in perm.get("IpRanges", [])]
            peers += [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])]
            peers += [r["PrefixListId"] for r in perm.get("PrefixListIds", [])]
            peers += [names.get(p["GroupId"], p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])]
            keys.extend(RuleKey(direction, protocol, low, high, peer) for peer in peers)
    return keys


def check_instances(clients: Clients, instance_ids: dict[str, list[str]]) -> list[Finding]:
    """Every server of every role is running and passes both EC2 status checks."""
    ec2 = clients.client("ec2")
    wanted = {iid: role for role, ids in instance_ids.items() for iid in ids or []}
    if not wanted:
        return [Finding("instances", "-", "fail", "the outputs list no instances")]
    found: dict[str, dict[str, Any]] = {}
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-id", "Values": sorted(wanted)}]
    )
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance
    running = [iid for iid in wanted if iid in found and found[iid]["State"]["Name"] == "running"]
    statuses: dict[str, dict[str, Any]] = {}
    if running:
        for page in ec2.get_paginator("describe_instance_status").paginate(
            InstanceIds=running, IncludeAllInstances=True
        ):
            statuses.update({s["InstanceId"]: s for s in page["InstanceStatuses"]})

    findings = []
    for iid, role in sorted(wanted.items(), key=lambda item: (item[1], item[0])):
        subject = f"{role} {iid}"
        if iid not in found:
            findings.append(Finding("instance", subject, "fail", "not found"))
            continue
        state = found[iid]["State"]["Name"]
        if state != "running":
            findings.append(Finding("instance", subject, "fail", f"state is {state}, expected running"))
            continue
        status = statuses.get(iid, {})
        system = status.get("SystemStatus", {}).get("Status", "unknown")
        instance = status.get("InstanceStatus", {}).get("Status", "unknown")
        ok = system == "ok" and instance == "ok"
        findings.append(
            Finding("instance", subject, "ok" if ok else "fail", f"running, system {system}, instance {instance}")
        )
    return findings


def check_address(clients: Clients, allocation_id: str, public_ip: str, lb_ids: list[str]) -> list[Finding]:
    """The site's Elastic IP is on a running load balancer of the stack (the MASTER claims it):
    otherwise the site has no public address, whatever else is healthy."""
    if not allocation_id:
        return [Finding("site address", "-", "skip", "the outputs have no lbAddressAllocationId (an older stack)")]
    ec2 = clients.client("ec2")
    (address,) = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"]
    subject = f"{address.get('PublicIp', '?')} ({allocation_id})"
    holder = address.get("InstanceId") or ""
    if public_ip and address.get("PublicIp") != public_ip:
        return [Finding("site address", subject, "fail", f"lbPublicIp is {public_ip}, not this address")]
    if not holder:
        why = "on no instance: the site has no public address (see journalctl -u foobar-eip on the load balancers)"
        return [Finding("site address", subject, "fail", why)]
    if holder not in lb_ids:
        why = f"on {holder}, not a load balancer of the stack ({', '.join(lb_ids)})"
        return [Finding("site address", subject, "fail", why)]
    state = ec2.describe_instances(InstanceIds=[holder])["Reservations"][0]["Instances"][0]["State"]["Name"]
    if state != "running":
        return [Finding("site address", subject, "fail", f"on {holder}, which is {state}")]
    return [Finding("site address", subject, "ok", f"on load balancer {holder}")]


def check_groups(clients: Clients, group_names: dict[str, str]) -> list[Finding]:
    """Each tier's Auto Scaling group exists and keeps at least its minimum in service; every member in
    service is running and passes both status checks."""
    if not group_names:
        return []
    autoscaling = clients.client("autoscaling")
    found: dict[str, dict[str, Any]] = {}
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        AutoScalingGroupNames=sorted(group_names.values())
    )
    for page in pages:
        found.update({g["AutoScalingGroupName"]: g for g in page["AutoScalingGroups"]})
    findings: list[Finding] = []
    members: dict[str, list[str]] = {}
    for tier, name in sorted(group_names.items()):
        group = found.get(name)
        if group is None:
            findings.append(Finding("group", f"{tier} {name}", "fail", "not found"))
            continue
        in_service = [i["InstanceId"] for i in group.get("Instances", []) if i.get("LifecycleState") == "InService"]
        low, want = group["MinSize"], group["DesiredCapacity"]
        ok = len(in_service) >= low
        detail = f"{len(in_service)} in service (min {low}, desired {want}, max {group['MaxSize']})"
        findings.append(Finding("group", f"{tier} {name}", "ok" if ok else "fail", detail))
        if in_service:
            members[tier] = in_service
    if members:
        findings += check_instances(clients, members)
    return findings


def check_security_groups(clients: Clients, group_ids: dict[str, str]) -> list[Finding]:
    """Each group's live rules are exactly the declared ones; drift is reported rule by rule."""
    ec2 = clients.client("ec2")
    names = {gid: name for name, gid in group_ids.items()}
    known = [gid for name, gid in group_ids.items() if name in GROUPS and gid]
    described: dict[str, dict[str, Any]] = {}
    if known:
        for page in ec2.get_paginator("describe_security_groups").paginate(
            Filters=[{"Name": "group-id", "Values": known}]
        ):
            described.update({g["GroupId"]: g for g in page["SecurityGroups"]})

    findings = []
    for group in GROUPS:
        gid = group_ids.get(group)
        subject = f"{group} {gid or '-'}"
        if not gid:
            findings.append(Finding("firewall", subject, "fail", "no security group ID in the outputs"))
            continue
        if gid not in described:
            findings.append(Finding("firewall", subject, "fail", "security group not found"))
            continue
        declared = declared_rules(group)
        live = live_rules(described[gid], names)
        missing = [key for key in declared if key not in live]
        unexpected = sorted({key for key in live if key not in declared})
        for key in missing:
            findings.append(Finding("firewall", subject, "fail", f"missing: {key} ({declared[key].description})"))
        for key in unexpected:
            findings.append(Finding("firewall", subject, "fail", f"unexpected: {key}"))
        if not missing and not unexpected:
            findings.append(
                Finding(
                    "firewall",
                    subject,
                    "ok",
                    f"{len(declared)} rule{'' if len(declared) == 1 else 's'}, exactly as declared",
                )
            )
    return findings


def _db_by_endpoint(clients: Clients) -> dict[str, dict[str, Any]]:
    rds = clients.client("rds")
    by_address: dict[str, dict[str, Any]] = {}
    for page in rds.get_paginator("describe_db_instances").paginate():
        for db in page["DBInstances"]:
            address = (db.get("Endpoint") or {}).get("Address")
            if address:
                by_address[address] = db
    return by_address


def _replica_lag(clients: Clients, identifier: str, now: dt.datetime) -> float | None:
    """The newest ReplicaLag maximum (seconds) of the last minutes, or None when RDS sent none."""
    cloudwatch = clients.client("cloudwatch")
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/RDS",
        MetricName="ReplicaLag",
        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": identifier}],
        StartTime=now - LAG_WINDOW,
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    )
    points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return float(points[-1]["Maximum"]) if points else None


def check_database(clients: Clients, writer: str, reader: str, expect: Expectations, now: dt.datetime) -> list[Finding]:
    """The primary is available (Multi-AZ as set); the replica is available and keeps up."""
    dbs = _db_by_endpoint(clients)
    findings = []
    primary = dbs.get(writer)
    if primary is None:
        findings.append(Finding("db primary", writer, "fail", "no RDS instance has this endpoint"))
    else:
        subject = primary["DBInstanceIdentifier"]
        status = primary["DBInstanceStatus"]
        multi_az = bool(primary.get("MultiAZ"))
        problems = []
        if status != "available":
            problems.append(f"status {status}, expected available")
        if multi_az != expect.multi_az:
            problems.append(f"MultiAZ is {multi_az}, settings ({expect.source}) say {expect.multi_az}")
        detail = "; ".join(problems) or f"available, MultiAZ {multi_az}"
        findings.append(Finding("db primary", subject, "fail" if problems else "ok", detail))

    if not expect.replica:
        findings.append(Finding("db replica", "-", "skip", f"dbReplica is false ({expect.source})"))
        return findings
    replica = dbs.get(reader) if reader and reader != writer else None
    if replica is None:
        findings.append(Finding("db replica", reader or "-", "fail", "missing: no read replica at the reader endpoint"))
        return findings
    subject = replica["DBInstanceIdentifier"]
    problems = []
    if replica["DBInstanceStatus"] != "available":
        problems.append(f"status {replica['DBInstanceStatus']}, expected available")
    source = replica.get("ReadReplicaSourceDBInstanceIdentifier")
    if primary is not None and source not in (primary["DBInstanceIdentifier"], primary.get("DBInstanceArn")):
        problems.append(f"replicates {source or 'nothing'}, not the primary")
    lag = _replica_lag(clients, subject, now)
    if lag is None:
        problems.append(f"no ReplicaLag data in the last {int(LAG_WINDOW.total_seconds() // 60)} minutes")
    elif lag > expect.max_replica_lag_seconds:
        problems.append(f"ReplicaLag {lag:g}s above {expect.max_replica_lag_seconds:g}s")
    detail = "; ".join(problems) or f"available, ReplicaLag {lag:g}s"
    findings.append(Finding("db replica", subject, "fail" if problems else "ok", detail))
    return findings


def _acm_renewal_problem(cert: dict[str, Any], days: float) -> str | None:
    """Why ACM is not going to renew this certificate in time, or None when it will (as far as it says)."""
    summary = cert.get("RenewalSummary") or {}
    status = summary.get("RenewalStatus")
    reason = summary.get("RenewalStatusReason")
    if status == "FAILED":
        return (
            f"renewal FAILED ({reason or 'no reason given'}): fix the cause, then `pulumi up --replace` the "
            "ACM certificate for a new one (docs/certificates.md)"
        )
    if status == "PENDING_VALIDATION":
        return (
            "renewal waits for DNS validation: the CNAME in certificateValidationRecords must still exist "
            "(ACM re-validates with it)"
        )
    if cert.get("RenewalEligibility") == "INELIGIBLE" and days < ACM_RENEWAL_DAYS:
        return (
            "ACM will not renew it (RenewalEligibility INELIGIBLE: an exportable "
            "certificate renews only if exported since it was issued: has the load balancer's refresh-cert job "
            "exported it?)"
        )
    return None


def check_certificate(clients: Clients, arn: str, now: dt.datetime, min_days: float = CERT_MIN_DAYS) -> list[Finding]:
    """The ACM certificate is issued, has at least ``min_days`` left, and ACM is not failing to renew it."""
    if not arn:
        return [Finding("certificate", "-", "skip", "no certificateArn: the stack uses its internal CA")]
    acm = clients.client("acm")
    cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    subject = str(cert.get("DomainName", arn))
    status = cert.get("Status", "UNKNOWN")
    if status != "ISSUED":
        return [Finding("certificate", subject, "fail", f"status {status}, expected ISSUED")]
    not_after: dt.datetime | None = cert.get("NotAfter")
    if not_after is None:
        return [Finding("certificate", subject, "fail", "issued but has no expiry date")]
    days = (not_after - now).total_seconds() / 86400
    problems = []
    if days < min_days:
        problems.append(f"expires {not_after:%Y-%m-%d}, in {days:.0f} days (under {min_days:g})")
    renewal = _acm_renewal_problem(cert, days)
    if renewal:
        problems.append(renewal if problems else f"{days:.0f} days left and {renewal}")
    if problems:
        return [Finding("certificate", subject, "fail", "; ".join(problems))]
    return [Finding("certificate", subject, "ok", f"ISSUED, expires {not_after:%Y-%m-%d} ({days:.0f} days)")]


def _load_pem(value: str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        return None


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_internal_certificates(
    clients: Clients, stack: str, now: dt.datetime, min_days: float = CERT_MIN_DAYS
) -> list[Finding]:
    """Each role's internal-CA leaf and the CA, as the servers fetch them from SSM, are far from expiry.

    Nothing renews them but a `pulumi up` (their early-renewal windows), so this is the warning that
    comes before a stack left alone breaks backend TLS. Only the String parameters holding
    certificates are read; the keys (SecureString) never are.
    """
    fix = f"run `pulumi up` on stack {stack} to re-issue it"
    names = {
        role: (f"{param_path(stack, role)}/{CERT_PARAMETER}", f"{param_path(stack, role)}/{CA_PARAMETER}")
        for role in LEAF_ROLES
    }
    wanted = sorted({name for pair in names.values() for name in pair})
    answer = clients.client("ssm").get_parameters(Names=wanted, WithDecryption=False)
    values = {p["Name"]: str(p.get("Value", "")) for p in answer.get("Parameters", [])}
    findings: list[Finding] = []

    # The CA: every role holds a copy, and they must be the same certificate.
    ca: x509.Certificate | None = None
    ca_name = ""
    for role in LEAF_ROLES:
        name = names[role][1]
        if name not in values:
            findings.append(Finding("internal CA", name, "fail", f"parameter not found: {fix}"))
            continue
        loaded = _load_pem(values[name])
        if loaded is None:
            findings.append(Finding("internal CA", name, "fail", f"not a PEM certificate: {fix}"))
        elif ca is None:
            ca, ca_name = loaded, name
        elif loaded != ca:
            findings.append(
                Finding("internal CA", name, "fail", f"differs from {ca_name}: the roles disagree on the CA; {fix}")
            )
    if ca is not None:
        ca_after = ca.not_valid_after_utc
        days = (ca_after - now).total_seconds() / 86400
        ca_min = min_days + LEAF_LIFETIME_DAYS
        if days < ca_min:
            detail = (
                f"expires {ca_after:%Y-%m-%d}, in {days:.0f} days (under {ca_min:g}: a leaf issued now would "
                f"outlive it): {fix} (same key: certificates in service stay valid)"
            )
            findings.append(Finding("internal CA", ca_name, "fail", detail))
        else:
            findings.append(Finding("internal CA", ca_name, "ok", f"expires {ca_after:%Y-%m-%d} ({days:.0f} days)"))

    for role in LEAF_ROLES:
        name = names[role][0]
        if name not in values:
            findings.append(Finding("internal cert", name, "fail", f"parameter not found: {fix}"))
            continue
        leaf = _load_pem(values[name])
        if leaf is None:
            findings.append(Finding("internal cert", name, "fail", f"not a PEM certificate: {fix}"))
            continue
        if ca is not None and not _issued_by(leaf, ca):
            findings.append(Finding("internal cert", name, "fail", f"not issued by the stack's CA ({ca_name}): {fix}"))
            continue
        after = leaf.not_valid_after_utc
        why = ""
        if ca is not None and ca.not_valid_after_utc < after:
            after, why = ca.not_valid_after_utc, " (its CA's expiry)"
        days = (after - now).total_seconds() / 86400
        if days < min_days:
            detail = f"expires {after:%Y-%m-%d}{why}, in {days:.0f} days (under {min_days:g}): {fix}"
            findings.append(Finding("internal cert", name, "fail", detail))
        else:
            findings.append(Finding("internal cert", name, "ok", f"expires {after:%Y-%m-%d}{why} ({days:.0f} days)"))
    return findings


def run_checks(
    clients: Clients,
    outputs: dict[str, Any],
    expect: Expectations,
    https_check: HttpsCheck | None,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """All checks in order. ``https_check`` None means skipped."""
    now = now or dt.datetime.now(dt.UTC)
    findings: list[Finding] = []
    findings += check_instances(clients, outputs["instanceIds"])
    findings += check_address(
        clients,
        str(outputs.get("lbAddressAllocationId") or ""),
        str(outputs.get("lbPublicIp") or ""),
        list(outputs["instanceIds"].get("lb") or []),
    )
    findings += check_groups(clients, outputs.get("groupNames") or {})
    findings += check_security_groups(clients, outputs["securityGroupIds"])
    findings += check_database(clients, outputs["dbWriterEndpoint"], outputs["dbReaderEndpoint"], expect, now)
    findings += check_certificate(clients, outputs.get("certificateArn") or "", now, expect.cert_min_days)
    findings += check_internal_certificates(clients, str(outputs["stack"]), now, expect.cert_min_days)
    if https_check is None:
        findings.append(Finding("https", str(outputs["url"]), "skip", "--skip-https"))
    else:
        ca = None if outputs.get("certificateArn") else outputs.get("internalCaCertPem") or None
        findings += https_check(str(outputs["url"]), outputs.get("lbPublicIp") or None, ca)
    return findings


def failed(findings: Iterable[Finding]) -> bool:
    return any(f.status == "fail" for f in findings)
