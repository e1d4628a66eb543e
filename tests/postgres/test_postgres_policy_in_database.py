"""On PostgreSQL the policy in force is the database's: a Warden on another host, given no
policy, decides with it, and follows a new version the moment another one records it."""

from __future__ import annotations

from paywarden import Warden
from paywarden.testing import example_intent

POLICY = """
currency: USD
rules:
  - {id: too-large, effect: deny, amount: {gt: 100}}
  - {id: pay, effect: allow, actions: ["payments.*"]}
"""


def test_wardens_on_one_database_share_the_policy_it_keeps(
    pg_database: str, key_secret: str
) -> None:
    with Warden.open(POLICY, database=pg_database) as host_a:
        with Warden.open(None, database=pg_database) as host_b:
            assert host_b.ready() == []
            assert host_b.authorize(example_intent("50.00")).outcome == "allow"
            host_a.reload_policy(POLICY.replace("gt: 100", "gt: 10"), actor="admin:ops")
            assert host_b.authorize(example_intent("50.00")).outcome == "deny"
            assert host_b.policy is not None and host_a.policy is not None
            assert host_b.policy.version == host_a.policy.version
        # A restart with the first file does not roll the database back.
        with Warden.open(POLICY, database=pg_database) as restarted:
            assert restarted.authorize(example_intent("50.00")).outcome == "deny"
