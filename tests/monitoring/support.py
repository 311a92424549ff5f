"""MonitoringArgs of a small stack, for the tests that build them by hand."""

from __future__ import annotations

from typing import Any

from components.monitoring import MonitoringArgs


def monitoring_args(**overrides: Any) -> MonitoringArgs:
    """dev with one load balancer, both groups of one, no replica; ``overrides`` replace fields."""
    fields: dict[str, Any] = {
        "stack": "dev",
        "region": "eu-west-1",
        "account": "123456789012",
        "alarm_email": "",
        "instance_ids": {"lb": ["i-1"]},
        "group_names": {"web": "w", "app": "a"},
        "group_min_sizes": {"web": 1, "app": 1},
        "db_primary_identifier": "db",
        "db_replica_identifier": None,
        "db_allocated_storage_gib": 20,
        "provider": None,
    }
    return MonitoringArgs(**{**fields, **overrides})
