"""Certificates: the public ACM certificate (exportable, DNS-validated) and the internal CA.

The internal CA (ECDSA P-256) signs one leaf per role: the web and app backends present theirs to
HAProxy, which verifies them; the load balancer's leaf serves the public side on stacks that use
``publicCertificate: internal-ca`` and is the fallback until an ACM export succeeds. Private keys
go only to SSM SecureString parameters under the role's path; servers fetch them at boot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from components.settings import Settings

# Lifetimes. Nothing renews a certificate by itself: a `pulumi up` re-issues any certificate that is
# inside its early-renewal window (pulumi-tls marks it `ready_for_renewal` at plan time and replaces
# it; a `pulumi preview` shows the pending replacement). `ops verify` fails from the moment a window
# opens, so the scheduled verify says "run pulumi up" long before anything expires. docs/certificates.md.
LEAF_VALIDITY_HOURS = 365 * 24  # at most 366 days, what browsers and the design allow
LEAF_EARLY_RENEWAL_HOURS = 30 * 24
CA_VALIDITY_HOURS = 10 * 365 * 24  # ten leaf lifetimes: the CA is re-issued about once a decade
# A leaf is not valid past its CA, and pulumi-tls does not cap a leaf at its CA's expiry: the CA is
# re-issued while a full leaf lifetime (plus the leaves' own window) still fits, so no leaf issued
# under the old CA outlives it. Re-issuing keeps the CA key and subject, so leaves signed before
# and after verify against either CA certificate: the roles may pick the new one up in any order.
CA_EARLY_RENEWAL_HOURS = LEAF_VALIDITY_HOURS + LEAF_EARLY_RENEWAL_HOURS
BACKEND_ROLES = ("web", "app")
LEAF_ROLES = (*BACKEND_ROLES, "lb")
"""Every role with a leaf certificate (and a copy of the CA) in SSM."""
INTERNAL_DOMAIN = "foobar.internal"

# Parameter names under param_path(stack, role). The certificates are plain Strings (public data,
# read by `ops verify`); the key is a SecureString that only the role's instance profile may read.
CERT_PARAMETER = "tls-cert"
KEY_PARAMETER = "tls-key"
CA_PARAMETER = "ca-cert"


def internal_name(role: str) -> str:
    """The fixed name a backend's certificate carries; HAProxy sends it as SNI and verifies it."""
    return f"{role}.{INTERNAL_DOMAIN}"


def param_path(stack: str, role: str) -> str:
    """The SSM path a role's instance profile may read, and nothing outside it."""
    return f"/foobar/{stack}/{role}"


@dataclass
class CertificatesArgs:
    settings: Settings
    provider: pulumi.ProviderResource
    """Provider tagged role=certificates, for the ACM certificate and DNS records."""
    role_providers: Mapping[str, pulumi.ProviderResource]
    """Provider per server role, for the SSM parameters that role reads."""


class Certificates(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    acm_certificate_arn: pulumi.Output[str] | None
    validation_records: pulumi.Output[list[dict[str, str | None]]]

    def __init__(self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:certificates:Certificates", name, None, opts)
        s = args.settings
        tls_opts = pulumi.ResourceOptions(parent=self)

        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=tls_opts)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            early_renewal_hours=CA_EARLY_RENEWAL_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"foobar {s.stack} internal CA", organization="foobar"),
            opts=tls_opts,
        )
        self.ca_cert_pem = ca_cert.cert_pem

        dns_names = {role: [internal_name(role)] for role in BACKEND_ROLES}
        dns_names["lb"] = [s.domain, internal_name("lb")]
        for role in LEAF_ROLES:  # the roles `ops verify` reads certificates of
            names = dns_names[role]
            key = tls.PrivateKey(f"{name}-{role}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=tls_opts)
            csr = tls.CertRequest(
                f"{name}-{role}-csr",
                private_key_pem=key.private_key_pem,
                dns_names=names,
                subject=tls.CertRequestSubjectArgs(common_name=names[0], organization="foobar"),
                opts=tls_opts,
            )
            leaf = tls.LocallySignedCert(
                f"{name}-{role}-cert",
                cert_request_pem=csr.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca_cert.cert_pem,
                validity_period_hours=LEAF_VALIDITY_HOURS,
                # Re-issued by any `pulumi up` in the last 30 days; the key (a separate resource) stays.
                early_renewal_hours=LEAF_EARLY_RENEWAL_HOURS,
                # The load balancers also show theirs to each other as clients (HAProxy peers, mutual TLS).
                allowed_uses=["digital_signature", "key_encipherment", "server_auth"]
                + (["client_auth"] if role == "lb" else []),
                opts=tls_opts,
            )
            ssm = pulumi.ResourceOptions(parent=self, provider=args.role_providers[role])
            path = param_path(s.stack, role)
            aws.ssm.Parameter(
                f"{name}-{role}-tls-key",
                name=f"{path}/{KEY_PARAMETER}",
                type="SecureString",
                value=key.private_key_pem,  # a secret Output: stays encrypted in state
                description=f"Private key of the {role} role's internal-CA certificate",
                opts=ssm,
            )
            aws.ssm.Parameter(
                f"{name}-{role}-tls-cert",
                name=f"{path}/{CERT_PARAMETER}",
                type="String",
                value=leaf.cert_pem,
                description=f"Internal-CA certificate of the {role} role",
                opts=ssm,
            )
            aws.ssm.Parameter(
                f"{name}-{role}-ca-cert",
                name=f"{path}/{CA_PARAMETER}",
                type="String",
                value=ca_cert.cert_pem,
                description="The stack's internal CA certificate, to verify backends and the database chain",
                opts=ssm,
            )

        self.acm_certificate_arn = None
        self.validation_records = pulumi.Output.from_input([])
        if s.public_certificate == "acm":
            acm_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
            cert = aws.acm.Certificate(
                f"{name}-public",
                domain_name=s.domain,
                validation_method="DNS",
                options=aws.acm.CertificateOptionsArgs(export="ENABLED"),
                opts=acm_opts,  # Pulumi replaces by create-before-destroy unless told otherwise
            )
            self.acm_certificate_arn = cert.arn
            self.validation_records = cert.domain_validation_options.apply(
                lambda options: [
                    {"name": o.resource_record_name, "type": o.resource_record_type, "value": o.resource_record_value}
                    for o in options
                ]
            )
            if s.hosted_zone_id:
                records = [
                    aws.route53.Record(
                        f"{name}-validation-{i}",
                        zone_id=s.hosted_zone_id,
                        name=cert.domain_validation_options[i].resource_record_name,
                        type=cert.domain_validation_options[i].resource_record_type,
                        records=[cert.domain_validation_options[i].resource_record_value],
                        ttl=300,
                        allow_overwrite=True,
                        opts=acm_opts,
                    )
                    for i in range(1)  # one domain, no SANs: exactly one validation record
                ]
                # `pulumi up` waits here for ACM to issue; servers don't: the load balancer's
                # refresh timer keeps trying the export until the certificate is issued.
                aws.acm.CertificateValidation(
                    f"{name}-validation",
                    certificate_arn=cert.arn,
                    validation_record_fqdns=[r.fqdn for r in records],
                    opts=acm_opts,
                )

        self.register_outputs(
            {
                "caCertPem": self.ca_cert_pem,
                "acmCertificateArn": self.acm_certificate_arn,
                "validationRecords": self.validation_records,
            }
        )
