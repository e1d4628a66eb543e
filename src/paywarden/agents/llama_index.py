"""paywarden for LlamaIndex (the `llama-index` extra): a thin guarded payment tool.

`payment_tool(warden, agent=...)` is a `llama_index.core.tools.FunctionTool` `pay(amount,
currency, recipient, purpose)` for a `FunctionAgent` (or any LlamaIndex agent). Its body pays
with `warden.pay` under a fresh idempotency key `li.<random>` (LlamaIndex gives a tool no call
id, so each call is a payment of its own, which the policy's budgets and velocity limits
bound):

* a denial, an invalid call or a payment waiting for a human raises `PaymentRefusedError`; the
  agent hands the error's sentence (reason code and reason) back to the model as the tool's
  output, so it can adapt;
* a payment that needs a human names its paywarden approval; once an operator approved it, the
  same payment asked again consumes the approval and pays, once.
"""

from __future__ import annotations

import asyncio

from llama_index.core.tools import FunctionTool

from paywarden.agents.tools import DESCRIPTION, PaymentPort, fresh_key, pay_call


def payment_tool(
    warden: PaymentPort, *, agent: str, action: str = "purchase", name: str = "pay"
) -> FunctionTool:
    """The guarded payment tool for `agent` (see the module docstring)."""

    def pay(amount: str, currency: str, recipient: str, purpose: str | None = None) -> str:
        return pay_call(
            warden,
            amount,
            currency,
            recipient,
            purpose,
            agent=agent,
            action=action,
            key=fresh_key("li"),
        )

    async def apay(amount: str, currency: str, recipient: str, purpose: str | None = None) -> str:
        return await asyncio.to_thread(pay, amount, currency, recipient, purpose)

    return FunctionTool.from_defaults(fn=pay, async_fn=apay, name=name, description=DESCRIPTION)
