"""The three roles booted from their real user-data (systemd + cloud-init in containers, AWS stood
in: ``local.boot``), then checked as a server would be on AWS, and the site used through them.

Skips only where the machine can't boot containers (not root, no debootstrap or systemd-nspawn),
with the reason; `make` installs both here, so on this machine nothing skips.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from local.boot import ROLES, Boot, BootError, Container, check_available
from userdata.agent import SETUP_UNIT
from userdata.configs import HAPROXY_INTERNAL_PEM, HAPROXY_SITE_PEM, NGINX_KEY

try:
    check_available()
except BootError as why:
    pytest.skip(f"can't boot containers here: {why}", allow_module_level=True)

DAEMONS = {
    "lb": ["haproxy", "foobar-pair", "foobar-eip", "foobar-discovery", "foobar-tls.timer"],
    "web": ["nginx", "prometheus-nginx-exporter", "foobar-tls.timer"],
    "app": ["nginx", "foobar-app-env", "foobar-app", "prometheus-nginx-exporter", "foobar-tls.timer"],
}
"""What each role runs once booted (the user-data enables them; the image has them all off)."""
KEYS = {"lb": [HAPROXY_SITE_PEM, HAPROXY_INTERNAL_PEM], "web": [NGINX_KEY], "app": [NGINX_KEY]}
"""Private keys: root's only, 0600 (DESIGN: keys never readable by another user)."""


@pytest.fixture(scope="module")
def boot() -> Iterator[Boot]:
    with Boot(ROLES) as booted:
        for container in booted.containers.values():
            container.wait_cloud_init()
        yield booted


def _container(boot: Boot, role: str) -> Container:
    return boot.containers[role]


def _active(container: Container, unit: str) -> str:
    return container.exec("systemctl", "is-active", unit, check=False).stdout.strip()


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)


@pytest.mark.parametrize("role", ROLES)
def test_cloud_init_finishes_without_errors(boot: Boot, role: str) -> None:
    container = _container(boot, role)
    result = container.wait_cloud_init()
    assert result.get("errors") == [], f"{result.get('errors')}\n{container.tail()}"
    status = container.exec("cloud-init", "status", "--long").stdout
    assert "status: done" in status, status


@pytest.mark.parametrize("role", ROLES)
def test_the_roles_daemons_are_active(boot: Boot, role: str) -> None:
    container = _container(boot, role)
    for unit in DAEMONS[role]:
        _wait(partial(lambda name: _active(container, name) == "active", unit), 60, f"{role}: {unit} active")


@pytest.mark.parametrize("role", ROLES)
def test_keys_are_private_to_root(boot: Boot, role: str) -> None:
    container = _container(boot, role)
    for path in KEYS[role]:
        info = (container.rootfs / path.lstrip("/")).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, f"{role}: {path} mode {stat.S_IMODE(info.st_mode):o}"
        assert (info.st_uid, info.st_gid) == (0, 0), f"{role}: {path} owned by {info.st_uid}:{info.st_gid}"


def _secrets(boot: Boot) -> dict[str, str]:
    """Every secret the servers handle, as strings that would show up in a log: a line from the
    middle of each private key, the database password and secret."""
    assert boot.deployment is not None
    found: dict[str, str] = {}
    for parameter in boot.deployment.parameters:
        if parameter.type == "SecureString":
            lines = [line for line in parameter.value.splitlines() if line and not line.startswith("-----")]
            found[parameter.name] = lines[len(lines) // 2] if lines else parameter.value
    found["database password"] = boot.deployment.database.password
    return found


@pytest.mark.parametrize("role", ROLES)
def test_no_secret_in_any_log(boot: Boot, role: str) -> None:
    container = _container(boot, role)
    secrets = _secrets(boot)
    texts: dict[str, bytes] = {}
    for path in (container.rootfs / "var/log").rglob("*"):
        if path.is_file() and not path.is_symlink():
            texts[str(path)] = path.read_bytes()
    # The journal compresses long entries: read it as text too.
    texts["journalctl"] = container.exec("journalctl", "--no-pager", "-o", "export", timeout=60).stdout.encode()
    assert len(texts) > 3
    # Each probe is what a leak would show: this server's own keys are found on its disk, in its key files.
    keys = b"".join((container.rootfs / path.lstrip("/")).read_bytes() for path in KEYS[role])
    own = [value for name, value in secrets.items() if name.endswith(f"/{role}/tls-key")]
    assert len(own) == 1 and own[0].encode() in keys, f"{role}: its tls-key probe isn't in its key files"
    for where, data in texts.items():
        for name, value in secrets.items():
            assert value.encode() not in data, f"{role}: {name} appears in {where}"


def test_the_site_answers_through_lb_web_and_app(boot: Boot) -> None:
    """HTTPS to the LB container: the home page (the app, through nginx on the app server), a static
    file (the web server), and a guestbook entry written and read back."""

    def home() -> bool:
        status, body = boot.request("/")
        return status == 200 and 'action="/entries"' in body  # the app's page, rendered from the database

    _wait(home, 90, "the home page through the load balancer")
    status, body = boot.request("/robots.txt")
    assert status == 200, body
    entry = {"name": "boot test", "message": f"written through three containers {os.getpid()}"}
    status, body = boot.request("/api/entries", json_body=entry)
    assert status == 201, body

    def read_back() -> bool:
        status, body = boot.request("/api/entries")
        return status == 200 and entry["message"] in body

    _wait(read_back, 30, "the entry read back")


def test_steps_that_need_the_internet_fail_visibly_without_blocking(boot: Boot) -> None:
    """The CloudWatch agent download retries in its own unit and says why in the journal; the RDS CA
    bundle refresh says it kept the bundle; the roles serve regardless (cloud-init done, daemons up)."""
    for role, container in boot.containers.items():
        journal = container.exec("journalctl", "--no-pager", "-u", SETUP_UNIT).stdout

        def retrying(container: Container = container) -> bool:
            text = container.exec("journalctl", "--no-pager", "-u", SETUP_UNIT).stdout
            return text.count("Could not resolve host: amazoncloudwatch-agent.s3.amazonaws.com") >= 2

        _wait(retrying, 60, f"{role}: the agent download retrying")
        assert _active(container, SETUP_UNIT) == "active", journal  # still trying: curl's retries last 10 min
        assert _active(container, DAEMONS[role][0]) == "active"
    app = _container(boot, "app").exec("journalctl", "--no-pager", "-u", "foobar-app-env").stdout
    assert "RDS CA bundle not refreshed" in app, app


def test_the_image_is_reused_and_holds_the_roles_packages(boot: Boot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built once per package list: asked again, it is returned without a build step; and it really
    holds every package the image recipe lists (dpkg's own database in the image)."""
    from local import image

    def no_build(step: str, cmd: list[str], log: Path) -> None:
        raise AssertionError(f"the cached image was rebuilt: {step}")

    monkeypatch.setattr(image, "_run", no_build)
    rootfs = image.build()
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W", "-f", "${Package} ${Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {line.split()[0] for line in listed.splitlines() if line.endswith("install ok installed")}
    assert set(image.packages()) <= installed, set(image.packages()) - installed


def test_the_load_balancer_claims_the_sites_address(boot: Boot) -> None:
    """node.eip on the lone LB claims the Elastic IP the program allocated (by the allocation id in
    its eip.json), as the LB's own boto3 sees it through the stand-in."""
    assert boot.deployment is not None
    lb = _container(boot, "lb")
    allocation = boot.deployment.address.allocation_id
    query = (
        "import boto3, sys; a = boto3.client('ec2', region_name=sys.argv[1])"
        ".describe_addresses(AllocationIds=[sys.argv[2]])['Addresses'][0]; print(a.get('PrivateIpAddress', '-'))"
    )

    def claimed() -> bool:
        done = lb.exec("python3", "-c", query, boot.deployment.region, allocation, check=False)  # type: ignore[union-attr]
        return done.stdout.strip() == lb.node.address

    _wait(claimed, 60, f"{allocation} on the load balancer ({lb.node.address})")
    journal = lb.exec("journalctl", "--no-pager", "-u", "foobar-eip").stdout
    assert "claimed" in journal, journal
