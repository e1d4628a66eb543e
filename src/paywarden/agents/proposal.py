"""A planner's payment proposal: parsed strictly, because what an LLM writes is hostile.

A proposal is one JSON object with only these members (any other is refused, so a model cannot
slip in an agent, an environment, a session, a rail or metadata; the loop sets those):

| member | type | |
| --- | --- | --- |
| `amount` | decimal text (`"120.50"`) | required; a JSON number is refused, a float above all |
| `currency` | ISO 4217 code | required |
| `recipient` | a payee (domain, URL, account id) | required |
| `recipient_name`, `category`, `purpose` | text | optional |
| `more` | boolean | optional: another payment follows for the same goal |

`Money` and `PaymentIntent` validate the values; a proposal that fails is an attempt that
failed (`ProposalError`), never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import MetadataValue, PaymentIntent
from paywarden.json_depth import nests_deeper_than
from paywarden.money import DEFAULT_CURRENCIES, CurrencyTable

PROPOSAL_BYTES_MAX = 8192
# How deeply a proposal may nest (it is one flat object); deeper is refused before parsing.
JSON_DEPTH_MAX = 16
REQUIRED = ("amount", "currency", "recipient")
OPTIONAL = ("recipient_name", "category", "purpose", "more")
FIELDS = frozenset((*REQUIRED, *OPTIONAL))
# What the planner is told to write (the OpenAI adapter also sends it as the response schema).
PROPOSAL_SCHEMA: dict[str, object] = {
    "type": "object",
    "additionalProperties": False,
    "required": [*REQUIRED],
    "properties": {
        "amount": {"type": "string", "description": "decimal text in major units, e.g. 120.50"},
        "currency": {"type": "string", "description": "ISO 4217 code, e.g. USD"},
        "recipient": {"type": "string", "description": "who is paid: a domain or account id"},
        "recipient_name": {"type": "string"},
        "category": {"type": "string"},
        "purpose": {"type": "string"},
        "more": {"type": "boolean", "description": "true when another payment follows"},
    },
}


class ProposalError(InvalidInputError):
    """A proposal that cannot become an intent: the attempt failed, with this sentence."""


@dataclass(frozen=True, slots=True)
class Proposal:
    amount: str
    currency: str
    recipient: str
    recipient_name: str | None = None
    category: str | None = None
    purpose: str | None = None
    more: bool = False

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "amount": self.amount,
            "currency": self.currency,
            "recipient": self.recipient,
        }
        for name in ("recipient_name", "category", "purpose"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.more:
            data["more"] = True
        return data

    def intent(
        self,
        *,
        agent: str,
        action: str,
        idempotency_key: str,
        session_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        currencies: CurrencyTable = DEFAULT_CURRENCIES,
    ) -> PaymentIntent:
        """The intent this proposal asks for; who asks, and for which goal, come from the
        caller. A value `PaymentIntent` refuses raises `ProposalError`."""
        try:
            return PaymentIntent(
                agent=agent,
                action=action,
                amount=self.amount,
                currency=self.currency,
                recipient=self.recipient,
                recipient_name=self.recipient_name,
                category=self.category,
                purpose=self.purpose,
                session_id=session_id,
                idempotency_key=idempotency_key,
                metadata=metadata,
                currencies=currencies,
            )
        except PaywardenError as error:
            raise ProposalError(f"the proposal is not a valid payment: {error}") from error


def _no_floats(text: str) -> object:
    raise ProposalError(f'`{text}` is a JSON number: amounts are decimal text, like "12.50"')


def _no_constants(text: str) -> object:
    raise ProposalError(f"`{text}` is not JSON")


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object without repeated members: two `amount`s would mean what each reader picks."""
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ProposalError("a member of the proposal appears twice")
    return data


def parse_proposal(raw: str | Mapping[str, object]) -> Proposal:
    """A proposal from the planner's JSON text (or an already decoded object); `ProposalError`
    says what is wrong with it."""
    if isinstance(raw, str):
        if len(raw.encode("utf-8", "surrogatepass")) > PROPOSAL_BYTES_MAX:
            raise ProposalError(f"the proposal is longer than {PROPOSAL_BYTES_MAX} bytes")
        if nests_deeper_than(raw, JSON_DEPTH_MAX):
            raise ProposalError("the proposal is nested too deeply")
        try:
            data = json.loads(
                raw,
                parse_float=_no_floats,
                parse_constant=_no_constants,
                object_pairs_hook=_unique_members,
            )
        except json.JSONDecodeError as error:
            raise ProposalError(f"the proposal is not JSON: {error.msg}") from error
        except RecursionError as error:
            raise ProposalError("the proposal is nested too deeply") from error
    else:
        data = dict(raw)
    if not isinstance(data, dict):
        raise ProposalError("the proposal must be one JSON object")
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise ProposalError(f"unknown proposal fields: {', '.join(unknown)}")
    missing = [name for name in REQUIRED if data.get(name) is None]
    if missing:
        raise ProposalError(f"missing proposal fields: {', '.join(missing)}")
    for name in (*REQUIRED, "recipient_name", "category", "purpose"):
        if data.get(name) is not None and not isinstance(data[name], str):
            kind = type(data[name]).__name__
            raise ProposalError(f"`{name}` must be text, not {kind} (amounts are decimal text)")
    more = False if data.get("more") is None else data["more"]
    if not isinstance(more, bool):
        raise ProposalError("`more` must be true or false")
    return Proposal(
        amount=str(data["amount"]),
        currency=str(data["currency"]),
        recipient=str(data["recipient"]),
        recipient_name=_text(data.get("recipient_name")),
        category=_text(data.get("category")),
        purpose=_text(data.get("purpose")),
        more=more,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
