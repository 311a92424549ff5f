"""Checks with the real tools (cloud-init, haproxy, nginx, openssl) and helpers to read user-data."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

CLOUD_INIT_SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")


class CheckFailed(AssertionError):
    """A real tool rejected a file; the message carries the tool's output."""


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)
    if result.returncode != 0:
        raise CheckFailed(f"{what} rejected (exit {result.returncode}): {result.stdout}{result.stderr}")


def check_cloud_config(path: Path) -> None:
    _run(["cloud-init", "schema", "-c", str(path)], f"cloud-init schema {path}")


def check_haproxy(path: Path, peers: Path | None = None, own_address: str = "127.0.0.1") -> None:
    """``-dW``: any warning is fatal. ``-q`` hides the reason, so a failure is re-run without it.
    FOOBAR_PRIVATE_IP is in HAProxy's environment, as the load balancer's boot sets it. HAProxy
    loads the peers file with it, as on the load balancers: node.pair's, or one naming only itself."""
    if peers is None:
        peers = peers_alone(path.with_name(path.name + ".peers"), own_address)
    env = {**os.environ, "FOOBAR_PRIVATE_IP": own_address}
    command = ["haproxy", "-c", "-dW", "-f", str(path), "-f", str(peers)]
    try:
        _run([*command, "-q"], f"haproxy -c {path}", env)
    except CheckFailed:
        _run(command, f"haproxy -c {path}", env)
        raise


def peers_alone(path: Path, own_address: str) -> Path:
    """The peers file node.pair writes for a load balancer that has found no other yet."""
    from node.pair import PairConfig, render_peers

    alone = PairConfig(own_address=own_address, interface="lo", health_url=f"http://{own_address}:8404/healthz")
    path.write_text(render_peers(alone, [own_address]))
    return path


def check_nginx(conf: Path, prefix: Path) -> None:
    _run(["nginx", "-t", "-q", "-c", str(conf.resolve()), "-p", str(prefix.resolve())], f"nginx -t {conf}")


def known_cloud_config_keys() -> set[str]:
    """Every top-level key a cloud-config module reads, from cloud-init's own schema."""
    schema = json.loads(CLOUD_INIT_SCHEMA.read_text())
    keys: set[str] = set()
    for name, definition in schema["$defs"].items():
        if name.startswith("cc_") or name == "base_config":
            keys.update(definition.get("properties", {}))
    return keys


INSTALL_PLANS = ("/etc/foobar/packages.json",)
"""Plans of the boot's install job: after the packages, it copies each ``files`` entry to ``dest``."""


def written_files(user_data: str) -> dict[str, tuple[bytes, dict[str, object]]]:
    """``{path: (content, entry)}`` of the user-data's write_files, gz+b64 decoded."""
    doc = yaml.safe_load(user_data)
    out: dict[str, tuple[bytes, dict[str, object]]] = {}
    for entry in doc.get("write_files", []):
        content = entry.get("content", "")
        encoding = entry.get("encoding", "text/plain")
        if encoding in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
            data = gzip.decompress(base64.b64decode(content))
        elif encoding in ("b64", "base64"):
            data = base64.b64decode(content)
        else:
            data = content.encode()
        out[entry["path"]] = (data, entry)
    return out


def decoded_files(user_data: str) -> dict[str, tuple[bytes, dict[str, object]]]:
    """Every file the user-data leaves on the server: :func:`written_files`, plus the daemon configs
    cloud-init writes beside the install plan, also under the path the install job copies them to
    (entry ``{"installed_from": staged path, ...}``)."""
    out = written_files(user_data)
    for plan_path in INSTALL_PLANS:
        if plan_path in out:
            for f in json.loads(out[plan_path][0]).get("files", []):
                data, entry = out[f["src"]]
                out[f["dest"]] = (data, {**entry, "path": f["dest"], "installed_from": f["src"]})
    return out


@dataclass(frozen=True)
class Pki:
    """An ECDSA P-256 CA and leaves made with openssl, like the internal CA of the stack."""

    dir: Path
    ca: Path

    def leaf(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"

    def combined(self, name: str) -> Path:
        """Cert then key in one PEM, the way HAProxy reads it."""
        path = self.dir / f"{name}.pem"
        crt, key = self.leaf(name)
        path.write_bytes(crt.read_bytes() + key.read_bytes())
        path.chmod(0o600)
        return path


def make_pki(directory: Path, names: list[str]) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=foobar test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name in names:
        key, csr, crt = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        ext = directory / f"{name}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n")
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
        key.chmod(0o600)
    return Pki(directory, ca)
