"""Pieces of KMS key policies shared by the stack's customer-managed keys."""

from __future__ import annotations


def account_administers_key(partition: str, account: str) -> dict[str, object]:
    """The key policy statement that lets the account's IAM policies govern the key.

    Without it, only the key policy itself could grant use, and a key policy that locks out its
    creator is refused by KMS.
    """
    return {
        "Sid": "AccountAdministersKey",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
