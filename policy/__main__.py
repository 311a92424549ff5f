"""Entry point the Pulumi CLI runs for ``pulumi preview --policy-pack policy``.

``PolicyPack(...)`` starts the analyzer's gRPC server and never returns, so the policies live in
``foobar_policies`` where tests import them without starting a server.
"""

from foobar_policies import PACK_DESCRIPTION, PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    PACK_NAME,
    POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description=PACK_DESCRIPTION,
)
