"""What the servers download at boot: the app's code and the static site, as reproducible archives
in a private, encrypted S3 bucket. They are too big for EC2's 16 KB of user-data; their sha256 goes
into the user-data instead, so a server is replaced exactly when its code or content changes."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import Settings
from userdata.render import app_archive, node_archive, site_archive


@dataclass(frozen=True)
class Archive:
    key: str
    sha256: str
    data: bytes


def archives() -> dict[str, Archive]:
    """The role -> archive it fetches (web: the site, app: the code). Pure, for tests."""
    out = {}
    for role, data in (("web", site_archive()), ("app", app_archive()), ("lb", node_archive())):
        digest = hashlib.sha256(data).hexdigest()
        out[role] = Archive(f"{role}/{digest}.tar.gz", digest, data)
    return out


@dataclass
class ArtifactsArgs:
    settings: Settings
    provider: pulumi.ProviderResource
    partition: str


class Artifacts(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    archives: dict[str, Archive]

    def __init__(self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:artifacts:Artifacts", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"foobar-{s.stack}-artifacts-".lower()[:37],
            force_destroy=True,  # only build outputs live here: a teardown must not stop at them
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "DenyPlainHttp",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Resource": [arn, f"{arn}/*"],
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        self.archives = archives()
        for role, archive in self.archives.items():
            aws.s3.BucketObjectv2(
                f"{name}-{role}-archive",
                bucket=bucket.id,
                key=archive.key,
                content_base64=base64.b64encode(archive.data).decode(),
                content_type="application/gzip",
                server_side_encryption="AES256",
                opts=child,
            )
        self.bucket_name = bucket.id
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucketName": bucket.id, **{f"{r}ArchiveKey": a.key for r, a in self.archives.items()}})

    def url(self, role: str) -> pulumi.Output[str]:
        return self.bucket_name.apply(lambda b: f"s3://{b}/{self.archives[role].key}")

    def read_statement(self, role: str) -> pulumi.Output[dict[str, object]]:
        """The policy statement that lets ``role`` read its own archive and nothing else."""
        key = self.archives[role].key
        return self.bucket_arn.apply(
            lambda arn: {
                "Sid": "ReadOwnArchive",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"{arn}/{key}",
            }
        )
