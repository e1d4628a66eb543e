"""paywarden for CrewAI (the `crewai` extra): a thin guarded payment tool.

CrewAI pins older `mcp` and `openai` than paywarden's other extras, so it is not part of
`paywarden[all]`: install it in an environment of its own (`pip install 'paywarden[crewai]'`).
This module imports CrewAI only when a tool is made.

`payment_tool(warden, agent=...)` is a CrewAI tool (made with `crewai.tools.tool`) `pay(amount,
currency, recipient, purpose)` for an `Agent`'s `tools`. Its body pays with `warden.pay` under a
fresh idempotency key `cr.<random>` (CrewAI gives a tool no call id, so each call is a payment
of its own, which the policy's budgets and velocity limits bound):

* a denial, an invalid call or a payment waiting for a human raises `PaymentRefusedError`; CrewAI
  hands the error's sentence (reason code and reason) back to the agent's model, so it can
  adapt;
* a payment that needs a human names its paywarden approval; once an operator approved it, the
  same payment asked again consumes the approval and pays, once.
"""

from __future__ import annotations

from typing import Any

from paywarden.agents.tools import DESCRIPTION, PaymentPort, fresh_key, pay_call
from paywarden.errors import InvalidInputError
from paywarden.extras import missing_extra, needs_extra_message


def payment_tool(
    warden: PaymentPort, *, agent: str, action: str = "purchase", name: str = "pay"
) -> Any:
    """The guarded payment tool for `agent` (a `crewai.tools.BaseTool`; see the module
    docstring). Without CrewAI installed, `InvalidInputError` names the extra."""
    try:
        from crewai.tools import tool
    except ImportError as error:
        if not missing_extra(error, "crewai"):
            raise
        raise InvalidInputError(needs_extra_message("the CrewAI payment tool", "crewai")) from error

    def pay(amount: str, currency: str, recipient: str, purpose: str | None = None) -> str:
        return pay_call(
            warden,
            amount,
            currency,
            recipient,
            purpose,
            agent=agent,
            action=action,
            key=fresh_key("cr"),
        )

    pay.__doc__ = DESCRIPTION  # CrewAI describes a tool to the model by its docstring
    return tool(name)(pay)
