"""What the benchmarks under ``bench/`` share: options that name themselves when wrong, and a local
site of their own for the length of one measurement."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from local.netns import signals_raise
from local.site import Layout, LocalSite


def positive(name: str, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse type that names the option when the value is not a positive number of ``kind``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} must be positive")
        return value

    return parse


def on_own_site(layout: Layout, prefix: str, measure: Callable[[LocalSite, Path], bool], *, strict: bool) -> int:
    """Bring up a local site on ``layout`` in a temporary folder, ``measure(site, folder)`` (True when
    every target is met), and take the site down again, also on Ctrl-C, SIGTERM or an error.

    The exit status: 0 measured, 1 with ``strict`` when a target is missed, 2 when the site or a tool
    failed, 130 when interrupted."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, signals_raise():
        site = LocalSite(Path(tmp) / "site", layout)
        try:
            print(f"bench: bringing up a local site in {site.dir} (LB {layout.lb})", flush=True)
            site.up()
            met = measure(site, Path(tmp))
        except KeyboardInterrupt:
            print("\nbench: interrupted, taking the site down", file=sys.stderr)
            return 130
        except Exception as err:
            print(f"bench: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown
            print(f"bench: {site.down()}", file=sys.stderr)
    return 1 if strict and not met else 0
