"""The boot image's recipe: what it holds, and when the cache is rebuilt (no build here: the boot
tests use the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local import image
from userdata import render


def test_the_image_holds_every_package_a_role_installs() -> None:
    for role, listed in render.PACKAGES.items():
        assert set(listed) <= set(image.packages()), role
    assert set(render.PAIR_PACKAGES) <= set(image.packages())
    assert {"prometheus-nginx-exporter", "curl"} <= set(image.packages()), "the monitoring agent's"
    assert {"systemd", "cloud-init", "python3-cffi-backend", "locales"} <= set(image.packages())


def test_a_changed_package_list_means_a_new_image(monkeypatch: pytest.MonkeyPatch) -> None:
    before = image.path()
    monkeypatch.setitem(render.PACKAGES, "web", [*render.PACKAGES["web"], "jq"])
    assert image.path() != before
    assert image.path().parent.parent == image.CACHE


def test_the_cache_is_ignored_by_git() -> None:
    ignored = (image.ROOT / ".gitignore").read_text().splitlines()
    assert ".cache/" in ignored


def test_enabled_units_are_read_from_the_wants_folders(tmp_path: Path) -> None:
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    for name in ("nginx.service", "haproxy.service", "getty@tty1.service"):
        (wants / name).symlink_to(f"/lib/systemd/system/{name}")
    assert image._enabled(tmp_path) == {"nginx.service", "haproxy.service"}
