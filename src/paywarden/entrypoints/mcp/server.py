"""The paywarden MCP server: nine tools, each limited to what the calling agent may do.

`build_server(warden, identity)` returns an `MCPServer` (the official `mcp` SDK). `identity` is
called on every tool call and returns the `Principal` of the API key in use: stdio re-checks
its one key each time (a revoked key stops working at once); HTTP reads the key of the request
being served. Only agent keys may call the tools.

A paywarden error becomes a tool error (`isError`) whose text starts with its code
(`not_found: ...`) and whose `structuredContent` is `{"code", "message"}`; a decision (deny,
require approval) is a normal result, so the agent can read the reason and adapt.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from paywarden import __version__
from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import MetadataValue
from paywarden.keys import Principal

from .agent_tools import AgentTools, Caller, PaymentArgs, WardenSource, caller_of
from .models import (
    ApprovalStatusView,
    BudgetList,
    LimitsView,
    PaymentList,
    PaymentRequestResult,
    PaymentView,
    SessionView,
    ToolFailure,
)
from .schemas import flat_schema

__all__ = ["IdentitySource", "build_server", "fixed_identity", "tool_failure"]

IdentitySource = Callable[[], Principal]
Model = TypeVar("Model", bound=BaseModel)

INSTRUCTIONS = (
    "paywarden guards your payments. Call request_payment to pay; the policy decides (allow, "
    "deny, or a human approval) and the answer says why and what to do next. Your agent id and "
    "environment come from your API key. When the policy gates payments by session phase, "
    "start_session, advance_session_phase (EXPLORE, DECIDE, COMMIT) and pay with its "
    "session_id. You can read only your own payments, approvals, sessions, budgets and "
    "limits. Nothing here changes the policy, approves, grants or halts."
)
_READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
_PAYS = ToolAnnotations(
    title="Request a payment",
    read_only_hint=False,
    destructive_hint=False,
    idempotent_hint=False,
    open_world_hint=True,
)

SessionPhase = Literal["DECIDE", "COMMIT"]
PaymentState = Literal["authorized", "submitted", "settled", "failed", "unknown", "refunded"]


def tool_failure(code: str, message: str) -> CallToolResult:
    """A tool error that carries a paywarden code, as text and as structured content."""
    failure = ToolFailure(code=code, message=message)
    return CallToolResult(
        content=[TextContent(type="text", text=f"{code}: {message}")],
        structured_content=failure.model_dump(mode="json"),
        is_error=True,
    )


class _Runner:
    """Resolves the caller and runs one tool body, on a worker thread unless told otherwise."""

    def __init__(self, tools: AgentTools, identity: IdentitySource, offload: bool) -> None:
        self.tools = tools
        self._identity = identity
        self._offload = offload

    def _run(self, work: Callable[[Caller], Model]) -> Model:
        return work(caller_of(self._identity()))

    def refuse_arguments(self, arguments: object, error: ValidationError) -> str:
        """Audit `request_payment` arguments that are not even the right types; the text of
        the tool error (with the refusal's decision id)."""
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()[:5]
        )
        refusal = InvalidInputError(f"invalid arguments: {problems}")
        fields = dict(arguments) if isinstance(arguments, dict) else {"arguments": arguments}
        try:
            caller = caller_of(self._identity())
            self.tools.refuse(caller, fields, refusal)
        except PaywardenError as failure:  # not an agent key, or the store failed: no record
            return f"{failure.code}: {failure}"
        return f"invalid_input: {refusal} (refusal recorded as decision `{refusal.decision_id}`)"

    async def call(self, work: Callable[[Caller], Model]) -> CallToolResult:
        try:
            if self._offload:
                # The copied context carries the HTTP request's principal into the thread.
                context = contextvars.copy_context()
                model = await anyio.to_thread.run_sync(context.run, self._run, work)
            else:
                model = self._run(work)
        except PaywardenError as error:
            message = str(error)
            if error.decision_id is not None:  # the refusal was recorded: name it
                message += f" (refusal recorded as decision `{error.decision_id}`)"
            return tool_failure(error.code, message)
        return CallToolResult(
            content=[TextContent(type="text", text=model.model_dump_json())],
            structured_content=model.model_dump(mode="json"),
        )


def build_server(
    warden: WardenSource, identity: IdentitySource, *, offload: bool = True
) -> MCPServer:
    """The MCP server for agents of `warden`; `identity()` names the caller of each call.

    `warden` is a Warden, or a function returning the one to use at call time (for a host app
    that opens its Warden at startup, after building its routes).

    With `offload` (the default) each tool body runs on a worker thread, so a slow rail or a
    busy ledger never blocks the event loop; stdio and HTTP always offload. In process, an
    application that calls the server from its own loop and would call `warden.pay` inline
    anyway may pass `offload=False` to save the thread hand-off.
    """
    server: MCPServer = MCPServer(
        name="paywarden", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    runner = _Runner(AgentTools(warden), identity, offload)
    _add_request_payment(server, runner)
    _add_payment_reads(server, runner)
    _add_approval_and_budget_reads(server, runner)
    _add_session_tools(server, runner)
    _strict_arguments(server, runner)
    _flat_outputs(server)
    return server


def _flat_outputs(server: MCPServer) -> None:
    """Publish every output schema flat (`schemas.flat_schema`): the same results are valid,
    and a client checks each result in 40 to 55 % less time. The SDK still validates what a
    tool returns against the tool's output model."""
    for tool in server._tool_manager.list_tools():
        schema = tool.fn_metadata.output_schema
        if schema is not None:
            tool.fn_metadata.output_schema = flat_schema(schema)
            tool.__dict__.pop("output_schema", None)  # the Tool caches the schema it read


def _strict_arguments(server: MCPServer, runner: _Runner) -> None:
    """Every tool refuses arguments it does not declare and coerces nothing: no `true` or `1.0`
    for an integer amount, no number for a text field, no float in metadata. The SDK builds
    each tool's argument model leniently; this replaces it with a strict subclass (and
    publishes the stricter schema), like the REST API's request models. Arguments of
    `request_payment` that fail are a refused request: audited like any other."""
    for tool in server._tool_manager.list_tools():  # the SDK offers no public hook for this
        lenient = tool.fn_metadata.arg_model
        namespace: dict[str, object] = {
            "model_config": ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True),
            "__module__": lenient.__module__,
        }
        if tool.name == "request_payment":
            namespace["model_validate"] = classmethod(_audited_validate(runner))
        strict: type[ArgModelBase] = type(lenient.__name__, (lenient,), namespace)
        tool.fn_metadata.arg_model = strict
        tool.parameters = strict.model_json_schema(by_alias=True)


def _audited_validate(runner: _Runner) -> Callable[..., ArgModelBase]:
    def model_validate(cls: type[ArgModelBase], obj: object, **options: Any) -> ArgModelBase:
        try:
            return super(cls, cls).model_validate(obj, **options)
        except ValidationError as error:
            refused = runner.refuse_arguments(obj, error)
            # A ValidationError again, so that the SDK reports it to the agent as its mistake.
            raise ValidationError.from_exception_data(
                cls.__name__,
                [{"type": PydanticCustomError("invalid_input", refused), "loc": (), "input": obj}],
            ) from None

    return model_validate


def _add_request_payment(server: MCPServer, runner: _Runner) -> None:
    @server.tool(
        name="request_payment",
        annotations=_PAYS,
        description=(
            "Ask paywarden to pay. The policy decides: `paid`, `processing`, `denied` (with the "
            "reason, so you can adapt), or `approval_required` (a human must approve; poll "
            "get_approval_status with the approval_id, then request the same payment again). "
            "You pay only as yourself: the agent and environment come from your API key. Give "
            "an idempotency_key so a retry never pays twice."
        ),
    )
    async def request_payment(
        action: Annotated[str, Field(description="What you pay for, e.g. payments.transfer.")],
        amount: Annotated[
            str | int,
            Field(
                description='Major units as decimal text, e.g. "12.50", or a whole number; '
                "never a float, a bool or exponent text."
            ),
        ],
        currency: Annotated[str, Field(description="ISO 4217 code or configured token.")],
        recipient: Annotated[str, Field(description="Payee: account id, domain, e-mail, URL.")],
        purpose: Annotated[str | None, Field(description="Why, for the humans.")] = None,
        category: Annotated[str | None, Field(description="Spend category.")] = None,
        recipient_name: Annotated[str | None, Field(description="Payee's name.")] = None,
        rail: Annotated[str | None, Field(description="Payment rail; default sandbox.")] = None,
        session_id: Annotated[str | None, Field(description="Your session id.")] = None,
        idempotency_key: Annotated[
            str | None, Field(description="Same key + same payment = the same answer.")
        ] = None,
        metadata: Annotated[
            dict[str, MetadataValue] | None, Field(description="Extra flat fields.")
        ] = None,
    ) -> Annotated[CallToolResult, PaymentRequestResult]:
        args = PaymentArgs(
            action=action,
            amount=str(amount),
            currency=currency,
            recipient=recipient,
            category=category,
            purpose=purpose,
            recipient_name=recipient_name,
            rail=rail,
            session_id=session_id,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
        return await runner.call(lambda caller: runner.tools.request_payment(caller, args))


def _add_payment_reads(server: MCPServer, runner: _Runner) -> None:
    @server.tool(
        name="get_payment_status",
        annotations=_READ_ONLY,
        description=(
            "The current state of one of your payments (settled, submitted, unknown while it "
            "is reconciled, failed, refunded). Other agents' payments read as not_found."
        ),
    )
    async def get_payment_status(
        payment_id: Annotated[str, Field(description="The payment_id from request_payment.")],
    ) -> Annotated[CallToolResult, PaymentView]:
        return await runner.call(lambda caller: runner.tools.payment_status(caller, payment_id))

    @server.tool(
        name="list_my_payments",
        annotations=_READ_ONLY,
        description="Your payments, newest first, optionally in one state. Read-only.",
    )
    async def list_my_payments(
        state: Annotated[PaymentState | None, Field(description="Only this state.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many.")] = 20,
    ) -> Annotated[CallToolResult, PaymentList]:
        return await runner.call(lambda caller: runner.tools.my_payments(caller, state, limit))


def _add_approval_and_budget_reads(server: MCPServer, runner: _Runner) -> None:
    @server.tool(
        name="get_approval_status",
        annotations=_READ_ONLY,
        description=(
            "Whether a human approved one of your approval requests yet, with the votes and "
            "what to do next. You cannot approve anything yourself."
        ),
    )
    async def get_approval_status(
        approval_id: Annotated[str, Field(description="The approval_id from request_payment.")],
    ) -> Annotated[CallToolResult, ApprovalStatusView]:
        return await runner.call(lambda caller: runner.tools.approval_status(caller, approval_id))

    @server.tool(
        name="get_budget_status",
        annotations=_READ_ONLY,
        description=(
            "The budgets that count your payments: limit, spent, held and the room left in the "
            "current window. Read-only."
        ),
    )
    async def get_budget_status() -> Annotated[CallToolResult, BudgetList]:
        return await runner.call(runner.tools.budgets)

    @server.tool(
        name="describe_my_limits",
        annotations=_READ_ONLY,
        description=(
            "The policy as it applies to you, in plain words and as fields: the rules that can "
            "match your payments, your budgets and velocity limits, approval settings. Use it "
            "to shape a payment that will be allowed. You cannot change any of it."
        ),
    )
    async def describe_my_limits() -> Annotated[CallToolResult, LimitsView]:
        return await runner.call(runner.tools.limits)


_SESSION_ID = Field(description="Your session id, as start_session returned it.")


def _add_session_tools(server: MCPServer, runner: _Runner) -> None:
    changes = ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
    )

    @server.tool(
        name="start_session",
        annotations=changes,
        description=(
            "Start one of your sessions, in phase EXPLORE. Policies may let a session pay only "
            "in some phases (usually COMMIT) or require every payment to name a session. Give "
            "no session_id for a new one; an id already started is a conflict."
        ),
    )
    async def start_session(
        session_id: Annotated[str | None, Field(description="Your own id, or none.")] = None,
    ) -> Annotated[CallToolResult, SessionView]:
        return await runner.call(lambda caller: runner.tools.start_session(caller, session_id))

    @server.tool(
        name="advance_session_phase",
        annotations=changes,
        description=(
            "Move one of your sessions to its next phase: EXPLORE to DECIDE, DECIDE to COMMIT. "
            "Forward only, one step at a time; COMMIT is final."
        ),
    )
    async def advance_session_phase(
        session_id: Annotated[str, _SESSION_ID],
        phase: Annotated[SessionPhase, Field(description="The next phase.")],
    ) -> Annotated[CallToolResult, SessionView]:
        return await runner.call(
            lambda caller: runner.tools.advance_session(caller, session_id, phase)
        )

    @server.tool(
        name="get_session",
        annotations=_READ_ONLY,
        description="The phase of one of your sessions, and whether it may pay now. Read-only.",
    )
    async def get_session(
        session_id: Annotated[str, _SESSION_ID],
    ) -> Annotated[CallToolResult, SessionView]:
        return await runner.call(lambda caller: runner.tools.session(caller, session_id))


def fixed_identity(principal: Principal) -> IdentitySource:
    """An identity that is always `principal` (in-process use and tests)."""

    def identity() -> Principal:
        return principal

    return identity
