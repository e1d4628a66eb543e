"""paywarden for AutoGen (the `autogen` extra): a thin guarded payment tool.

`payment_tool(warden, agent=...)` is an `autogen_core.tools.FunctionTool` `pay(amount,
currency, recipient, purpose)` for an `AssistantAgent` (or any workbench). Its body pays with
`warden.pay`, keyed on the model's tool-call id (`ag.<call id>`; a fresh key when called
without one):

* a denial, an invalid call or a payment waiting for a human raises `PaymentRefusedError`; the
  agent hands the error's sentence (reason code and reason) back to the model as a tool error,
  so it can adapt (give the agent `max_tool_iterations` above 1 to let it try again);
* a payment that needs a human names its paywarden approval; once an operator approved it, the
  same payment asked again (a new tool call) consumes the approval and pays, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import FunctionTool

from paywarden.agents.tools import DESCRIPTION, PaymentPort, fresh_key, pay_call

# The tool-call id of the call being run (AutoGen passes it to `run_json`, not to the function).
_CALL_ID: ContextVar[str | None] = ContextVar("paywarden_autogen_call_id", default=None)


class PaymentTool(FunctionTool):
    """A `FunctionTool` that keys each payment on the tool-call id it is run with."""

    async def run_json(
        self,
        args: Mapping[str, Any],
        cancellation_token: CancellationToken,
        call_id: str | None = None,
    ) -> Any:
        token = _CALL_ID.set(call_id)
        try:
            return await super().run_json(args, cancellation_token, call_id=call_id)
        finally:
            _CALL_ID.reset(token)


def payment_tool(
    warden: PaymentPort, *, agent: str, action: str = "purchase", name: str = "pay"
) -> PaymentTool:
    """The guarded payment tool for `agent` (see the module docstring)."""

    async def pay(amount: str, currency: str, recipient: str, purpose: str | None = None) -> str:
        call_id = _CALL_ID.get()
        key = f"ag.{call_id}" if call_id else fresh_key("ag")
        return await asyncio.to_thread(
            pay_call,
            warden,
            amount,
            currency,
            recipient,
            purpose,
            agent=agent,
            action=action,
            key=key,
        )

    return PaymentTool(pay, description=DESCRIPTION, name=name)
