"""What the local-site tests share: a site of their own, up for a module, and a client TLS context."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

from local.mariadb import MariaDB, TlsFiles
from local.site import Layout, LocalSite


def running(folder: Path, layout: Layout) -> Iterator[LocalSite]:
    """A local site in ``folder`` on ``layout``'s addresses, stopped afterwards even if a test failed."""
    site = LocalSite(folder, layout)
    site.up()
    try:
        yield site
    finally:
        site.down()


def tls_context(site: LocalSite) -> ssl.SSLContext:
    """Verifies the site's certificates against its own CA, as a client trusting that CA would."""
    return ssl.create_default_context(cafile=str(site.dir / "pki" / "ca.pem"))


def replica(site: LocalSite) -> MariaDB:
    """The site's running replica, to stop and start its replication from a test."""
    tls = site.dir / "db" / "replica" / "tls"
    files = TlsFiles(tls / "ca.pem", tls / "server.pem", tls / "server.key")
    return MariaDB("replica", site.layout.db_replica, site.layout.db_port, site.dir / "db", files, role="replica")
