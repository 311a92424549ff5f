"""Internal certificates under mocks: lifetimes and early renewal, and the SSM parameters `ops verify` reads.

Nothing renews an internal certificate but a `pulumi up` inside its early-renewal window, so these
numbers are the whole renewal design (docs/certificates.md); `ops verify` warns from the same window.
"""

from __future__ import annotations

from components.certificates import CA_PARAMETER, CERT_PARAMETER, KEY_PARAMETER, LEAF_ROLES, param_path
from ops.verify import CERT_MIN_DAYS, LEAF_LIFETIME_DAYS
from tests.unit.harness import Registration, Run

LEAF = "tls:index/locallySignedCert:LocallySignedCert"
CA = "tls:index/selfSignedCert:SelfSignedCert"
DAY = 24


def _leaves(r: Run) -> list[Registration]:
    leaves = r.of_type(LEAF)
    assert len(leaves) == len(LEAF_ROLES)
    return leaves


def test_leaves_are_reissued_by_any_up_in_their_last_30_days(stack_run: Run) -> None:
    for leaf in _leaves(stack_run):
        hours = leaf.inputs["validityPeriodHours"]
        assert hours <= 366 * DAY, leaf.name  # DESIGN 4
        assert leaf.inputs["earlyRenewalHours"] == 30 * DAY, leaf.name
        assert leaf.inputs["earlyRenewalHours"] < hours
        # verify fails from the moment a `pulumi up` would re-issue the leaf, not later.
        assert leaf.inputs["earlyRenewalHours"] == CERT_MIN_DAYS * DAY


def test_ca_outlives_the_leaves_by_far_and_is_reissued_before_a_leaf_could_outlive_it(stack_run: Run) -> None:
    (ca,) = stack_run.of_type(CA)
    leaves = _leaves(stack_run)
    leaf_hours = max(leaf.inputs["validityPeriodHours"] for leaf in leaves)
    leaf_window = max(leaf.inputs["earlyRenewalHours"] for leaf in leaves)
    assert ca.inputs["validityPeriodHours"] >= 5 * leaf_hours
    # pulumi-tls does not cap a leaf at its CA's expiry: the CA's own window must hold a whole leaf
    # lifetime plus the leaves' window, so no leaf issued under the old CA outlives it ...
    assert ca.inputs["earlyRenewalHours"] >= leaf_hours + leaf_window
    # ... and must not be so wide that most `pulumi up`s re-issue the CA.
    assert ca.inputs["earlyRenewalHours"] <= ca.inputs["validityPeriodHours"] // 4
    # verify's CA threshold (--cert-min-days plus a leaf lifetime) is that window.
    assert ca.inputs["earlyRenewalHours"] == (CERT_MIN_DAYS + LEAF_LIFETIME_DAYS) * DAY


def test_reissuing_keeps_the_keys_and_the_ca_name(stack_run: Run) -> None:
    """Leaves signed under the old and the new CA certificate verify against either: same key, same subject."""
    (ca,) = stack_run.of_type(CA)
    keys = {k.outputs["privateKeyPem"] for k in stack_run.of_type("tls:index/privateKey:PrivateKey")}
    assert ca.inputs["privateKeyPem"] in keys  # a key resource of its own, not replaced with the certificate
    stack = stack_run.namespace["settings"].stack
    assert ca.inputs["subject"] == {"commonName": f"foobar {stack} internal CA", "organization": "foobar"}
    csr_keys = {c.inputs["privateKeyPem"] for c in stack_run.of_type("tls:index/certRequest:CertRequest")}
    assert csr_keys <= keys  # each leaf's key is its own resource too: a renewal re-signs, it does not re-key


def test_certificates_are_where_ops_verify_reads_them(stack_run: Run) -> None:
    stack = stack_run.namespace["settings"].stack
    params = {p.inputs["name"]: p for p in stack_run.of_type("aws:ssm/parameter:Parameter")}
    (ca,) = stack_run.of_type(CA)
    for role in LEAF_ROLES:
        path = param_path(stack, role)
        leaf = stack_run.named(f"foobar-certificates-{role}-cert")
        cert, ca_copy, key = (params[f"{path}/{n}"] for n in (CERT_PARAMETER, CA_PARAMETER, KEY_PARAMETER))
        assert cert.inputs["type"] == "String" and cert.inputs["value"] == leaf.outputs["certPem"]
        assert ca_copy.inputs["type"] == "String" and ca_copy.inputs["value"] == ca.outputs["certPem"]
        assert key.inputs["type"] == "SecureString" and "value" in key.secrets
