"""The static site with fingerprinted asset names, so caches may keep ``/static/`` files for a year.

``static/app.css`` becomes ``static/app.<first 12 hex of its sha256>.css`` and every HTML reference to
it is rewritten; a name changes exactly when the file's content changes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

SITE_DIR = Path(__file__).resolve().parent.parent / "site"
FINGERPRINTED_DIR = "static"
HASH_LENGTH = 12


def fingerprinted_name(rel_path: str, content: bytes) -> str:
    """``static/app.css`` -> ``static/app.<sha256[:12]>.css``."""
    path = PurePosixPath(rel_path)
    digest = hashlib.sha256(content).hexdigest()[:HASH_LENGTH]
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


def fingerprint_files(files: Mapping[str, bytes]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Rename the files under ``static/`` and rewrite the HTML that references them.

    Takes and returns ``{relative posix path: content}``; also returns the renames ``{old: new}``.
    Pure: the same input gives the same output.
    """
    renames = {
        rel: fingerprinted_name(rel, content)
        for rel, content in files.items()
        if PurePosixPath(rel).parts[0] == FINGERPRINTED_DIR and len(PurePosixPath(rel).parts) > 1
    }
    # Only whole attribute values ("/static/app.css" in quotes) are rewritten, never a longer name.
    pattern = re.compile(
        r"""(["'])/(""" + "|".join(re.escape(old) for old in sorted(renames, key=len, reverse=True)) + r""")\1"""
    )
    out: dict[str, bytes] = {}
    for rel, content in files.items():
        if rel.endswith(".html") and renames:
            text = content.decode("utf-8")
            text = pattern.sub(lambda m: f"{m.group(1)}/{renames[m.group(2)]}{m.group(1)}", text)
            content = text.encode("utf-8")
        out[renames.get(rel, rel)] = content
        if rel in renames:
            # The plain name too, for pages that cannot know the hash (the app's): revalidated, not immutable.
            out[rel] = content
    return out, renames


def read_site(src: Path = SITE_DIR) -> dict[str, bytes]:
    """Every file of the site as ``{relative posix path: content}``, in a stable order."""
    if not src.is_dir():
        raise ValueError(f"site directory {src} does not exist")
    return {
        p.relative_to(src).as_posix(): p.read_bytes()
        for p in sorted(src.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    }


def build_site(src: Path, dest: Path) -> dict[str, str]:
    """Write the fingerprinted site from ``src`` into ``dest`` (replaced if present); returns the renames."""
    files, renames = fingerprint_files(read_site(src))
    if dest.exists():
        shutil.rmtree(dest)
    for rel, content in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return renames
