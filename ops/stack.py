"""What a stack is meant to be: its outputs (from ``pulumi stack output --json``) and its settings files."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.settings import PROJECT, defaults

ROOT = Path(__file__).resolve().parent.parent

REQUIRED_OUTPUTS = (
    "url",
    "lbPublicIp",
    "certificateArn",
    "internalCaCertPem",
    "dbWriterEndpoint",
    "dbReaderEndpoint",
    "instanceIds",
    "securityGroupIds",
    "stack",
)


class OpsError(Exception):
    """Bad input to an ops command. The message names the argument or file at fault."""


def load_outputs(source: str) -> dict[str, Any]:
    """Read the stack outputs JSON from a file, or from stdin when ``source`` is ``-``."""
    where = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as err:
        raise OpsError(f"--outputs {source}: cannot read ({err.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise OpsError(f"--outputs {where}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise OpsError(f"--outputs {where}: expected a JSON object of stack outputs")
    missing = [key for key in REQUIRED_OUTPUTS if key not in data]
    if missing:
        raise OpsError(
            f"--outputs {where}: missing stack output(s) {', '.join(missing)} "
            "(use `pulumi stack output --json --show-secrets`)"
        )
    if not isinstance(data["instanceIds"], dict) or not isinstance(data["securityGroupIds"], dict):
        raise OpsError(f"--outputs {where}: instanceIds and securityGroupIds must be JSON objects")
    return data


@dataclass(frozen=True)
class StackSettings:
    """The settings a stack was deployed with: Pulumi.yaml defaults under Pulumi.<stack>.yaml."""

    values: dict[str, Any]
    region: str | None
    source: str

    def flag(self, key: str) -> bool:
        value = self.values[key]
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)


def stack_settings(stack: str, ephemeral: bool, root: Path = ROOT) -> StackSettings:
    """Read the stack's settings file; an ephemeral stack without one is a copy of dev."""
    values: dict[str, Any] = defaults()
    candidates = [root / f"Pulumi.{stack}.yaml"]
    if ephemeral:
        candidates.append(root / "Pulumi.dev.yaml")
    for path in candidates:
        if path.is_file():
            config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
            prefix = f"{PROJECT}:"
            values.update({k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)})
            region = config.get("aws:region")
            return StackSettings(values, str(region) if region else None, path.name)
    return StackSettings(values, None, "Pulumi.yaml defaults")
