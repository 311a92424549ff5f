"""The root file system the boot tests start servers from: Debian 12 with systemd, cloud-init and
every package the roles' user-data installs.

Debian 12 stands in for the servers' Ubuntu 24.04 (no Ubuntu archive is reachable here). It is
built once with debootstrap and kept under ``.cache/boot-image/<key>/``; the key is a hash of the
package list and of this module's build recipe, so it is rebuilt only when either changes. A build
goes into a temporary folder and is renamed into place only when complete: a cut-short build
leaves no half-made image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from userdata.agent import agent_cloud_config_parts
from userdata.render import PACKAGES, PAIR_PACKAGES

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "boot-image"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = [
    *("systemd", "systemd-sysv", "dbus", "cloud-init", "python3-cffi-backend", "iproute2", "ca-certificates"),
    "locales",
]
"""The platform's own: systemd as PID 1, cloud-init, and what debootstrap's resolver misses
(python3-cryptography needs the cffi backend only through a virtual package, so it must be named), and
the locale cloud-init sets by default (en_US.UTF-8, which Ubuntu's cloud images carry)."""
CLOUD_CFG = """\
# The boot tests' platform: NoCloud only, and the network is set up from outside the container
# (as EC2's is): cloud-init writes no network configuration.
datasource_list: [NoCloud, None]
network: {config: disabled}
"""
RECIPE_VERSION = "3"
"""Bump when the steps below change, so cached images are rebuilt."""


class ImageError(RuntimeError):
    """The image can't be built; the message says which step and why."""


def role_packages() -> list[str]:
    """Every package any role's user-data installs (pair included), from the renderer's own lists."""
    names: set[str] = set(PAIR_PACKAGES)
    for role, listed in PACKAGES.items():
        names.update(listed)
        names.update(agent_cloud_config_parts(role, "dev", region="eu-west-1")["packages"])
    return sorted(names)


def packages() -> list[str]:
    """What the image holds: the platform's packages and every role's."""
    return sorted(set(BASE_PACKAGES) | set(role_packages()))


def key() -> str:
    """The cache key: the package list and the recipe (a change to either means a new image)."""
    recipe = "\n".join([SUITE, MIRROR, RECIPE_VERSION, CLOUD_CFG, *packages()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def path() -> Path:
    """Where the image for today's package list lives (built or not)."""
    return CACHE / key() / "rootfs"


def missing_tools() -> list[str]:
    """The host tools a build or a boot needs that aren't installed."""
    return [tool for tool in ("debootstrap", "systemd-nspawn", "chroot") if shutil.which(tool) is None]


def _run(step: str, cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise ImageError(f"image build: {step} exited {result.returncode}; log {log}:\n" + "\n".join(tail))


def _mounts_below(tree: Path) -> list[str]:
    """Mount points inside ``tree`` (``/proc/self/mountinfo`` escapes spaces and such as octal)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point.startswith(f"{tree}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove(tree: Path) -> None:
    """Delete a build or an old image; first unmount what debootstrap may have left mounted inside
    it (/proc, /sys), so nothing of the host's is ever deleted through it."""
    for point in _mounts_below(tree):
        subprocess.run(["umount", "-l", point], check=False)
    if _mounts_below(tree):
        raise ImageError(f"image build: {tree} still has mounts; not deleting it")
    shutil.rmtree(tree, ignore_errors=True)


def _enabled(rootfs: Path) -> set[str]:
    """The units enabled in the image (the symlinks in /etc/systemd/system/*.wants/)."""
    return {link.name for link in (rootfs / "etc/systemd/system").glob("*.wants/*") if "@" not in link.name}


def build(force: bool = False, echo: bool = True) -> Path:
    """The cached image, built first if it isn't there (about 2 minutes here on a first build)."""
    target = path()
    if target.is_dir() and not force:
        return target
    if os.geteuid() != 0:
        raise ImageError("image build: debootstrap needs root")
    if missing := missing_tools():
        raise ImageError(f"image build: missing {', '.join(missing)} (apt-get install debootstrap systemd-container)")
    home = target.parent
    home.mkdir(parents=True, exist_ok=True)
    work = home / f"building-{os.getpid()}"
    _remove(work)
    log = home / "build.log"
    log.write_text("")
    started = time.monotonic()
    if echo:
        print(f"boot image: building {target} with debootstrap ({len(packages())} packages; log {log})", flush=True)
    try:
        _run(
            "debootstrap",
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(work), MIRROR],
            log,
        )
        policy = work / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        chroot = [*env, "chroot", str(work)]
        # One image serves every role: each role's daemons are installed but off, as on a server
        # before its user-data's packages arrive; the user-data enables what its role runs.
        platform = _enabled(work)
        apt = [*chroot, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold"]
        _run("apt-get install (the roles' packages)", [*apt, "install", *role_packages()], log)
        _run("apt-get clean", [*chroot, "apt-get", "clean"], log)
        added = sorted(_enabled(work) - platform)
        if added:
            _run("disable the roles' services", [*chroot, "systemctl", "disable", *added], log)
        (work / "etc/locale.gen").write_text("en_US.UTF-8 UTF-8\n")
        _run("locale-gen", [*chroot, "locale-gen"], log)
        policy.unlink()
        (work / "etc/cloud/cloud.cfg.d/05_foobar_boot.cfg").write_text(CLOUD_CFG)
        # Each container gets its own machine id at boot; an empty file lets systemd make one.
        (work / "etc/machine-id").write_text("")
        (work / "etc/hostname").write_text("localhost\n")
        if target.exists():  # --force: the old image goes only once the new one is complete
            old = home / f"old-{os.getpid()}"
            os.replace(target, old)
            _remove(old)
        os.replace(work, target)
    except BaseException:
        _remove(work)
        raise
    if echo:
        print(f"boot image: built in {time.monotonic() - started:.0f} s", flush=True)
    for stale in CACHE.iterdir():  # images of older package lists, and builds cut short
        if stale.name != target.parent.name:
            _remove(stale)
    for cut_short in home.glob("building-*"):
        _remove(cut_short)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.image", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if the image is cached")
    args = parser.parse_args(argv)
    try:
        print(build(force=args.force))
    except ImageError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
