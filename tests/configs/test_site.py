"""Fingerprinting of the static site: names change exactly when content changes."""

from __future__ import annotations

import re
from pathlib import Path

from userdata.site import SITE_DIR, build_site, fingerprint_files, fingerprinted_name, read_site


def test_real_site_builds_with_every_reference_rewritten(tmp_path: Path) -> None:
    renames = build_site(SITE_DIR, tmp_path / "out")
    assert set(renames) == {"static/app.css", "static/app.js"}
    out = tmp_path / "out"
    for old, new in renames.items():
        assert re.fullmatch(r"static/app\.[0-9a-f]{12}\.(css|js)", new)
        assert (out / new).read_bytes() == (SITE_DIR / old).read_bytes()
        # The plain name stays too, for the app's pages, which cannot know the hash.
        assert (out / old).read_bytes() == (SITE_DIR / old).read_bytes()
    for page in ("index.html", "404.html"):
        html = (out / page).read_text()
        assert "/static/app.css" not in html
        assert f'"/{renames["static/app.css"]}"' in html
    assert (out / "favicon.ico").read_bytes()[:4] == b"\0\0\1\0"
    assert (out / "robots.txt").read_text().startswith("User-agent:")


def test_names_change_exactly_when_content_changes() -> None:
    site = read_site(SITE_DIR)
    _, before = fingerprint_files(site)
    _, html_only = fingerprint_files({**site, "index.html": site["index.html"] + b"<!-- -->"})
    assert html_only == before
    _, css_changed = fingerprint_files({**site, "static/app.css": site["static/app.css"] + b"p{}"})
    assert css_changed["static/app.css"] != before["static/app.css"]
    assert css_changed["static/app.js"] == before["static/app.js"]
    assert fingerprinted_name("static/app.css", b"x") == fingerprinted_name("static/app.css", b"x")


def test_only_exact_references_are_rewritten() -> None:
    files = {
        "index.html": b'<link href="/static/app.css"><a href="/static/app.css.map">m</a><p>/static/app.css</p>',
        "static/app.css": b"body{}",
    }
    out, renames = fingerprint_files(files)
    new = renames["static/app.css"]
    assert out["index.html"] == (
        f'<link href="/{new}"><a href="/static/app.css.map">m</a><p>/static/app.css</p>'.encode()
    )
