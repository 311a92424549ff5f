"""Command line of ``python -m ops``: argument parsing, the report tables and the exit codes.

Exit codes: 0 all checks passed (or nothing to do), 1 a check failed or a stack could not be
destroyed, 2 bad arguments or an AWS error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence

from ops import table
from ops.aws import AWS_ERRORS, Clients, Session, describe_aws_error
from ops.https import HttpsCheck, check_https
from ops.reap import DEFAULT_STACK_PATTERN, Destroyer, pulumi_destroyer, reap
from ops.stack import OpsError, load_outputs, stack_settings
from ops.verify import CERT_MIN_DAYS, Expectations, failed, run_checks

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

SessionFactory = Callable[[str], Clients]


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="check a deployed stack against what the program declares")
    verify.add_argument("--outputs", required=True, metavar="FILE|-", help="JSON of `pulumi stack output --json`")
    verify.add_argument("--region", help="AWS region (default: the stack's aws:region, then AWS_REGION)")
    verify.add_argument("--max-replica-lag-seconds", type=_positive, default=30.0, metavar="SECONDS")
    verify.add_argument("--skip-https", action="store_true", help="do not connect to the site")
    verify.add_argument(
        "--cert-min-days",
        type=_positive,
        default=CERT_MIN_DAYS,
        metavar="DAYS",
        help=(
            f"fail when a certificate (ACM or internal) has fewer days left (default: {CERT_MIN_DAYS}, when a "
            "`pulumi up` starts re-issuing internal ones); the internal CA needs a leaf lifetime more"
        ),
    )
    verify.add_argument(
        "--expect-multi-az",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override the dbMultiAz setting read from Pulumi.<stack>.yaml",
    )
    verify.add_argument(
        "--expect-replica",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override the dbReplica setting read from Pulumi.<stack>.yaml",
    )
    verify.add_argument(
        "--wait-seconds",
        type=_positive,
        default=0.0,
        metavar="SECONDS",
        help="repeat failing checks until they pass or this time is up (right after a deploy)",
    )

    reaper = commands.add_parser("reap", help="destroy ephemeral stacks whose expires-at tag has passed")
    reaper.add_argument("--yes", action="store_true", help="really destroy (default: dry run)")
    reaper.add_argument("--region", help="AWS region (default: AWS_REGION)")
    reaper.add_argument("--org", help="Pulumi Cloud organization of the stacks (default: the backend's default)")
    reaper.add_argument(
        "--stack-pattern",
        default=DEFAULT_STACK_PATTERN,
        help=f"only stacks whose name fully matches this regex are reaped (default: {DEFAULT_STACK_PATTERN})",
    )
    return parser


def _env_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def cmd_verify(args: argparse.Namespace, sessions: SessionFactory, https_check: HttpsCheck | None) -> int:
    outputs = load_outputs(args.outputs)
    stack = str(outputs["stack"])
    settings = stack_settings(stack, bool(outputs.get("ephemeral")))
    region = args.region or outputs.get("region") or settings.region or _env_region()
    if not region:
        raise OpsError(f"no region for stack {stack}: pass --region")
    expect = Expectations(
        multi_az=settings.flag("dbMultiAz") if args.expect_multi_az is None else args.expect_multi_az,
        replica=settings.flag("dbReplica") if args.expect_replica is None else args.expect_replica,
        max_replica_lag_seconds=args.max_replica_lag_seconds,
        source=settings.source if args.expect_multi_az is None and args.expect_replica is None else "flags",
        cert_min_days=args.cert_min_days,
    )
    clients = sessions(region)
    check = None if args.skip_https else https_check
    deadline = time.monotonic() + args.wait_seconds
    while True:
        findings = run_checks(clients, outputs, expect, check)
        if not failed(findings) or time.monotonic() >= deadline:
            break
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
    print(f"verify stack {stack} in {region} (settings: {settings.source})")
    rows = [(f.check, f.subject, f.status.upper(), f.detail) for f in findings]
    print(table.render(("CHECK", "SUBJECT", "STATUS", "DETAIL"), rows), end="")
    counts = {status: sum(f.status == status for f in findings) for status in ("fail", "ok", "skip")}
    print(f"{counts['fail']} failed, {counts['ok']} ok, {counts['skip']} skipped")
    return EXIT_FAILED if counts["fail"] else EXIT_OK


def cmd_reap(args: argparse.Namespace, sessions: SessionFactory, destroyer: Destroyer | None) -> int:
    region = args.region or _env_region()
    if not region:
        raise OpsError("no region: pass --region or set AWS_REGION")
    rows = reap(
        sessions(region),
        destroyer or pulumi_destroyer(args.org),
        yes=args.yes,
        now=dt.datetime.now(dt.UTC),
        stack_pattern=args.stack_pattern,
    )
    mode = "destroying" if args.yes else "dry run"
    print(f"reap in {region} ({mode}), {len(rows)} stack(s) with an expires-at tag")
    if rows:
        print(
            table.render(
                ("STACK", "EXPIRES-AT", "RESOURCES", "ACTION", "RESULT"),
                [(r.stack, r.expires_at, str(r.resources), r.action, r.result) for r in rows],
            ),
            end="",
        )
    return EXIT_FAILED if any(r.failed for r in rows) else EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    sessions: SessionFactory = Session,
    https_check: HttpsCheck | None = check_https,
    destroyer: Destroyer | None = None,
) -> int:
    """Run one command. AWS clients, the HTTPS check and the destroy step are injectable for tests."""
    args = build_parser().parse_args(argv)
    prog = f"ops {args.command}"
    try:
        if args.command == "verify":
            return cmd_verify(args, sessions, https_check)
        return cmd_reap(args, sessions, destroyer)
    except OpsError as err:
        print(f"{prog}: {err}", file=sys.stderr)
    except AWS_ERRORS as err:
        print(f"{prog}: {describe_aws_error(err, getattr(args, 'region', None))}", file=sys.stderr)
    return EXIT_ERROR
