"""Warden: the one service that orders the steps of a payment decision."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from paywarden.bootstrap import LoadedPolicy, load_policy
from paywarden.clock import Clock, SystemClock
from paywarden.intent import PaymentIntent
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import deny_everything, evaluate
from paywarden.policy.facts import StateSnapshot


class Warden:
    """Guards payments: `authorize(intent)` returns a `Decision`.

    Open one with `Warden.open(policy=PATH_OR_YAML_TEXT)`. A missing, empty or invalid policy
    does not raise: the Warden opens and denies everything, with a reason code saying why, so a
    deployment mistake can never turn into "allow".
    """

    def __init__(
        self, loaded: LoadedPolicy, *, clock: Clock, environment: str | None = None
    ) -> None:
        self._loaded = loaded
        self._clock = clock
        self._environment = environment.lower() if environment else None

    @classmethod
    def open(
        cls,
        policy: str | Path | None = None,
        *,
        clock: Clock | None = None,
        environment: str | None = None,
    ) -> Warden:
        return cls(load_policy(policy), clock=clock or SystemClock(), environment=environment)

    @property
    def policy(self) -> CompiledPolicy | None:
        return self._loaded.policy

    @property
    def loaded_policy(self) -> LoadedPolicy:
        return self._loaded

    def authorize(self, intent: PaymentIntent, *, phase: str | None = None) -> Decision:
        """Decide one intent against the policy at the server's current time."""
        now = self._clock.now()
        policy = self._loaded.policy
        if policy is None:
            return self._deny_without_policy(now)
        intent, mismatch = self._with_environment(intent)
        if mismatch is not None:
            return deny_everything("environment_mismatch", mismatch, policy.version, now)
        return evaluate(policy, intent, StateSnapshot(phase=phase), now)

    def _with_environment(self, intent: PaymentIntent) -> tuple[PaymentIntent, str | None]:
        """The environment comes from the deployment; an intent may only repeat it."""
        deployment = self._environment
        if intent.environment is None:
            return intent.replace(environment=deployment or "production"), None
        if deployment is not None and intent.environment != deployment:
            return intent, (
                f"intent environment `{intent.environment}` differs from this deployment's "
                f"`{deployment}`"
            )
        return intent, None

    def _deny_without_policy(self, now: datetime) -> Decision:
        code = self._loaded.reason_code or "policy_invalid"
        summary = self._loaded.report.summary()
        return deny_everything(code, f"no usable policy ({summary}); denied", "none", now)
