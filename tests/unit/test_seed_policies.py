"""The seeds' policies load and decide as their documents say."""

from __future__ import annotations

from paywarden import PaymentIntent
from paywarden.entrypoints.cli.demo import example_policy_text
from paywarden.testing import example_intent
from support.intents import TREASURY_TRANSFER
from support.wardens import OpenWarden


def _transfer(amount: str, environment: str = "production") -> PaymentIntent:
    return example_intent(amount, environment=environment, **TREASURY_TRANSFER)


def test_capfence_fintech_policy_loads_unchanged_and_decides_three_tiers(
    open_warden: OpenWarden,
) -> None:
    warden = open_warden(example_policy_text("fintech_policy.yaml"), database=":memory:")
    assert warden.policy is not None
    assert warden.policy.dialect == "capfence"
    assert warden.authorize(_transfer("120")).outcome == "allow"
    assert warden.authorize(_transfer("15000")).outcome == "deny"
    assert warden.authorize(_transfer("2500")).outcome == "require_approval"
    # The default deployment is production: a staging intent never reaches the rules there.
    mismatch = warden.authorize(_transfer("60", environment="staging"))
    assert (mismatch.outcome, mismatch.reason_code) == ("deny", "environment_mismatch")
    staging = open_warden(
        example_policy_text("fintech_policy.yaml"), database=":memory:", environment="staging"
    )
    assert staging.authorize(_transfer("60", environment="staging")).rule_ids == ("deny[1]",)
