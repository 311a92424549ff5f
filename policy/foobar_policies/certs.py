"""Certificates and keys: ACM by DNS, no wildcards, strong keys, create-before-destroy, short-lived
internal leaves; and CloudWatch log groups with a retention."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .support import Res, as_list, is_unknown, message

ACM_CERTIFICATE: Final = "aws:acm/certificate:Certificate"
TLS_PRIVATE_KEY: Final = "tls:index/privateKey:PrivateKey"
TLS_LOCAL_CERT: Final = "tls:index/locallySignedCert:LocallySignedCert"
TLS_SELF_SIGNED: Final = "tls:index/selfSignedCert:SelfSignedCert"
LOG_GROUP: Final = "aws:cloudwatch/logGroup:LogGroup"

ACM_KEY_ALGORITHMS: Final = frozenset(
    {"RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"}
)
ECDSA_CURVES: Final = frozenset({"P256", "P384", "P521"})
MAX_LEAF_HOURS: Final = 366 * 24


def _imported(res: Res) -> bool:
    return res.props.get("certificateBody") is not None or res.props.get("privateKey") is not None


def acm_dns_validation(res: Res) -> Iterator[str]:
    """ACM certificates are validated through DNS, which renews by itself."""
    if _imported(res):
        return
    method = res.props.get("validationMethod")
    if not is_unknown(method) and method != "DNS":
        yield message(res, f"validationMethod is {method!r}", 'set validation_method="DNS"')


def acm_no_wildcard(res: Res) -> Iterator[str]:
    """No wildcard names (CKV2_AWS_71): a leaked key would cover every host of the domain."""
    names = [res.props.get("domainName")]
    alternatives = as_list(res.props.get("subjectAlternativeNames"))
    if not is_unknown(alternatives):
        names.extend(alternatives)  # type: ignore[arg-type]
    for name in names:
        if isinstance(name, str) and "*" in name:
            yield message(res, f"wildcard name {name!r}", "request the exact host names (setting domain)")


def acm_key_algorithm(res: Res) -> Iterator[str]:
    """ACM keys are RSA >= 2048 or ECDSA (DESIGN 10); ACM's default is RSA_2048."""
    algorithm = res.props.get("keyAlgorithm")
    if algorithm is None or is_unknown(algorithm) or _imported(res):
        return
    if algorithm not in ACM_KEY_ALGORITHMS:
        yield message(res, f"key algorithm {algorithm!r} is too weak", 'use key_algorithm="EC_prime256v1" or RSA_2048+')


def create_before_destroy(res: Res) -> Iterator[str]:
    """A replaced certificate exists before the old one goes (CKV_AWS_233), so HTTPS never breaks."""
    if res.delete_before_replace is True:
        yield message(
            res,
            "the certificate is deleted before its replacement exists",
            "drop delete_before_replace=True (Pulumi creates the replacement first by default)",
        )


def tls_key_strength(res: Res) -> Iterator[str]:
    """Keys made with pulumi-tls are RSA >= 2048, ECDSA P-256 or stronger, or Ed25519."""
    algorithm = res.props.get("algorithm")
    if is_unknown(algorithm):
        return
    if algorithm == "RSA":
        bits = res.props.get("rsaBits")
        if not is_unknown(bits) and bits is not None and float(bits) < 2048:
            yield message(res, f"RSA key of {bits:g} bits", "use rsa_bits >= 2048, or ECDSA P256")
    elif algorithm == "ECDSA":
        curve = res.props.get("ecdsaCurve") or "P224"  # the provider's default curve
        if not is_unknown(curve) and curve not in ECDSA_CURVES:
            yield message(res, f"ECDSA curve {curve}", 'set ecdsa_curve="P256"')
    elif algorithm != "ED25519":
        yield message(res, f"key algorithm {algorithm!r}", 'use algorithm="ECDSA" with ecdsa_curve="P256"')


def tls_leaf_lifetime(res: Res) -> Iterator[str]:
    """Leaves from the internal CA live at most 366 days (DESIGN 4)."""
    hours = res.props.get("validityPeriodHours")
    if res.type == TLS_SELF_SIGNED and res.props.get("isCaCertificate") is True:
        return  # the CA itself may live longer
    if not is_unknown(hours) and hours is not None and float(hours) > MAX_LEAF_HOURS:
        yield message(
            res,
            f"the certificate is valid for {float(hours):g} hours, more than {MAX_LEAF_HOURS}",
            f"set validity_period_hours <= {MAX_LEAF_HOURS} and early_renewal_hours so it renews",
        )


def log_retention(res: Res) -> Iterator[str]:
    """Log groups expire their logs (CKV_AWS_66): flow and server logs are kept a known time."""
    days = res.props.get("retentionInDays")
    if is_unknown(days):
        return
    if not days or float(days) <= 0:
        yield message(
            res, "the log group keeps logs forever", "set retention_in_days (setting logRetentionDays, e.g. 30)"
        )
