"""Abuse by volume: one agent must not starve the others (issue 12, section 5).

Three bounds are proved here, each with real parts (a SQLite file, a real uvicorn server on a
loopback port, a real MCP client):

- the per-agent caps of the policy's `approvals:` (`pending_max_per_agent`,
  `pending_amount_max_per_agent`): an agent at a cap gets `approval_queue_full`, with nothing
  held and no request opened, while other agents still get in; under concurrency from threads
  and several Wardens on one file, never more than the cap waits;
- the operators' inbox order: pending first, agents taking turns, so a flood never hides
  another agent's request, paged with a bounded page size (library, REST and command line);
- the MCP HTTP sessions of one API key: at most `sessions_per_key_max` open, a refusal with a
  JSON-RPC error beyond it, and the slot freed by DELETE or idle expiry.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_support import open_gateway

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly
from paywarden.approval_request import ApprovalView
from paywarden.entrypoints.cli.main import cli
from paywarden.entrypoints.mcp.http import McpHttpApp
from paywarden.errors import InvalidInputError
from paywarden.policy import check_policy
from paywarden.policy.approval_settings import PENDING_MAX_PER_AGENT_DEFAULT
from paywarden.policy.decision import Decision
from paywarden.testing import example_intent
from support.mcp import INITIALIZE, JSON_RPC_HEADERS, http_client
from support.servers import serving
from support.wardens import OpenWarden
from support.workers import run_threads

COUNT_POLICY = """
currency: USD
approvals:
  ttl: 15m
  pending_max_per_agent: 3
rules:
  - {id: review, effect: require_approval, actions: ["payments.*"], amount: {gt: 100}}
  - {id: allow-small, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: "100000.00", window: day}
"""
AMOUNT_POLICY = """
currency: USD
fx:
  as_of: "2026-01-05"
  rates:
    EUR/USD: "1.25"
approvals:
  pending_amount_max_per_agent: 1000
rules:
  - {id: review, effect: require_approval, actions: ["payments.*"]}
"""
NO_EUR_RATE = AMOUNT_POLICY.replace('    EUR/USD: "1.25"\n', '    GBP/USD: "1.25"\n')
DEFAULT_POLICY = COUNT_POLICY.replace("  pending_max_per_agent: 3\n", "")
DAY_SECONDS = 86_400


def _ask(
    warden: Warden, n: int, agent: str = "agent-a", amount: str = "500.00", currency: str = "USD"
) -> Decision:
    """A request for approval; `n` makes the recipient, and so the intent, distinct."""
    intent = example_intent(
        amount, agent=agent, currency=currency, recipient=f"vendor-{n}.example.com"
    )
    return warden.authorize(intent)


def _held(warden: Warden) -> int:
    return sum(row.held_minor for row in warden.budgets())


def _full(decision: Decision, setting: str) -> None:
    assert (decision.outcome, decision.reason_code) == ("deny", "approval_queue_full")
    assert decision.hold_id is None and decision.approval_id is None
    assert decision.rule_ids[-1] == f"approvals:{setting}"
    assert setting in decision.reason


def _ids(views: list[ApprovalView] | tuple[ApprovalView, ...]) -> list[str]:
    return [view.approval_id for view in views]


# The caps -------------------------------------------------------------------------------------


def test_an_agent_at_its_cap_is_denied_with_nothing_held_while_others_get_in(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(COUNT_POLICY) as warden:
        opened = [_ask(warden, n) for n in range(3)]
        assert [d.reason_code for d in opened] == ["approval_required"] * 3
        held = _held(warden)
        assert held == 3 * 50_000
        full = _ask(warden, 3)
        _full(full, "pending_max_per_agent")
        assert full.rule_ids == ("review", "approvals:pending_max_per_agent")
        assert "3 approval requests waiting" in full.reason
        assert _held(warden) == held
        assert len(warden.approvals(agent="agent-a")) == 3
        # The same intent again while its request waits is that request, not a denial.
        again = _ask(warden, 0)
        assert (again.outcome, again.approval_id, again.hold_id) == (
            "require_approval",
            opened[0].approval_id,
            opened[0].hold_id,
        )
        # Another agent is not held up, and payments that need no human are not capped.
        assert _ask(warden, 0, agent="agent-b").reason_code == "approval_required"
        assert warden.authorize(example_intent("50.00")).outcome == "allow"
    entries = list(iter_audit_readonly(database))
    requested = [e for e in entries if e.kind == "approval.requested"]
    assert len(requested) == 4  # three of agent-a, one of agent-b
    recorded = [e for e in entries if e.ref_id == full.decision_id]
    assert len(recorded) == 1 and recorded[0].kind == "decision"
    body = json.loads(recorded[0].body)["decision"]
    assert (body["outcome"], body["reason_code"]) == ("deny", "approval_queue_full")


def test_a_decided_or_expired_request_frees_its_place(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(COUNT_POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        opened = [_ask(warden, n) for n in range(3)]
        warden.reject(str(opened[0].approval_id), operator="alice", reason="not needed")
        assert _ask(warden, 3).reason_code == "approval_required"
        _full(_ask(warden, 4), "pending_max_per_agent")
        warden.approve(str(opened[1].approval_id), operator="alice", reason="fine")
        assert _ask(warden, 5).reason_code == "approval_required"  # approved no longer waits
        _full(_ask(warden, 6), "pending_max_per_agent")
        clock.advance(15 * 60)  # every request of agent-a has expired
        assert [_ask(warden, 10 + n).reason_code for n in range(3)] == ["approval_required"] * 3
        _full(_ask(warden, 13), "pending_max_per_agent")


def test_without_a_setting_an_agent_may_keep_twenty_requests_waiting(
    open_warden: OpenWarden,
) -> None:
    with open_warden(DEFAULT_POLICY) as warden:
        assert warden.policy is not None
        assert warden.policy.approvals.pending_max_per_agent == PENDING_MAX_PER_AGENT_DEFAULT == 20
        codes = Counter(_ask(warden, n).reason_code for n in range(22))
    assert codes == {"approval_required": 20, "approval_queue_full": 2}


def test_the_amount_cap_counts_other_currencies_rounded_up_and_fails_closed(
    open_warden: OpenWarden,
) -> None:
    with open_warden(AMOUNT_POLICY) as warden:
        assert _ask(warden, 0, amount="600.00").outcome == "require_approval"
        assert _ask(warden, 1, amount="400.00").outcome == "require_approval"  # exactly 1000
        over = _ask(warden, 2, amount="0.01")
        _full(over, "pending_amount_max_per_agent")
        assert "1000.00 USD waiting" in over.reason
        # 799.99 EUR is 999.9875 USD, counted as 999.99: one cent more fits, a second does not
        # (rounded down it would be 999.98, and the second cent would fit too).
        assert _ask(warden, 0, "agent-b", "799.99", "EUR").outcome == "require_approval"
        assert _ask(warden, 1, "agent-b", "0.01").outcome == "require_approval"
        _full(_ask(warden, 2, "agent-b", "0.01"), "pending_amount_max_per_agent")
        # No rate: the request counts as over the cap.
        no_rate = _ask(warden, 0, "agent-c", "100", "JPY")
        _full(no_rate, "pending_amount_max_per_agent")
        assert "no FX rate to USD" in no_rate.reason
        assert _ask(warden, 0, "agent-d", "10.00", "EUR").outcome == "require_approval"
        held = _held(warden)
    # A waiting amount whose rate the policy no longer has blocks the agent's next request.
    with open_warden(NO_EUR_RATE) as warden:
        blocked = _ask(warden, 1, "agent-d", "1.00")
        _full(blocked, "pending_amount_max_per_agent")
        assert "an amount it has waiting has no FX rate" in blocked.reason
        assert _ask(warden, 0, "agent-e", "1.00").outcome == "require_approval"
        assert _held(warden) == held


@pytest.mark.parametrize(
    ("settings_yaml", "message"),
    [
        ("pending_max_per_agent: 0", "`approvals.pending_max_per_agent` must be an integer"),
        ("pending_max_per_agent: -2", "`approvals.pending_max_per_agent` must be an integer"),
        ("pending_max_per_agent: 10001", "from 1 to 10000"),
        ("pending_max_per_agent: 2.5", "`approvals.pending_max_per_agent` must be an integer"),
        ("pending_max_per_agent: '5'", "`approvals.pending_max_per_agent` must be an integer"),
        ("pending_max_per_agent: true", "`approvals.pending_max_per_agent` must be an integer"),
        ("pending_amount_max_per_agent: 0", "`approvals.pending_amount_max_per_agent`: amount"),
        ("pending_amount_max_per_agent: -5", "`approvals.pending_amount_max_per_agent`: amount"),
        ("pending_amount_max_per_agent: lots", "`approvals.pending_amount_max_per_agent`: amount"),
        ("pending_amount_max_per_agent: 0.001", "more decimal places than USD allows"),
        ("pending_amount_max_per_agent: yes", "must be an amount such as `5000`"),
        ("pending_max: 5", "`approvals` must be a mapping with `ttl`, `two_person_above`"),
    ],
)
def test_bad_caps_are_policy_errors(settings_yaml: str, message: str) -> None:
    text = f"currency: USD\napprovals:\n  {settings_yaml}\nrules: []\n"
    policy, report = check_policy(text)
    assert policy is None
    assert any(message in line for line in report.lines()), report.lines()


@given(count=st.integers(1, 10_000), amount_cents=st.integers(1, 10**9))
def test_every_cap_in_range_compiles_exactly(count: int, amount_cents: int) -> None:
    amount = f"{amount_cents // 100}.{amount_cents % 100:02d}"
    text = (
        "currency: EUR\napprovals:\n"
        f"  pending_max_per_agent: {count}\n  pending_amount_max_per_agent: {amount}\nrules: []\n"
    )
    policy, report = check_policy(text)
    assert policy is not None, report.lines()
    cap = policy.approvals.pending_amount_max_per_agent
    assert policy.approvals.pending_max_per_agent == count
    assert cap is not None and (cap.amount_minor, cap.currency) == (amount_cents, "EUR")


# Steps: ("ask", agent, whole dollars) or ("reject", agent, 0) for the agent's oldest request.
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("ask"), st.sampled_from(["agent-a", "agent-b"]), st.integers(1, 60)),
        st.tuples(st.just("reject"), st.sampled_from(["agent-a", "agent-b"]), st.just(0)),
    ),
    max_size=14,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS)
def test_the_caps_decide_exactly_as_a_model_of_them(steps: list[tuple[str, str, int]]) -> None:
    policy = AMOUNT_POLICY.replace(
        "  pending_amount_max_per_agent: 1000\n",
        "  pending_amount_max_per_agent: 100\n  pending_max_per_agent: 3\n",
    )
    waiting: dict[str, list[tuple[str, int]]] = {"agent-a": [], "agent-b": []}
    with Warden.open(policy, clock=FrozenClock()) as warden:
        warden.add_operator("alice", name="Alice")
        for n, (step, agent, dollars) in enumerate(steps):
            mine = waiting[agent]
            if step == "reject":
                if mine:
                    warden.reject(mine.pop(0)[0], operator="alice", reason="model")
                continue
            fits = len(mine) < 3 and sum(d for _, d in mine) + dollars <= 100
            decision = _ask(warden, n, agent, f"{dollars}.00")
            if fits:
                assert decision.reason_code == "approval_required", decision.reason
                mine.append((str(decision.approval_id), dollars))
            else:
                assert decision.reason_code == "approval_queue_full", decision.reason
        for agent, mine in waiting.items():
            assert sorted(_ids(warden.approvals("pending", agent))) == sorted(i for i, _ in mine)


def test_concurrent_requests_through_several_wardens_never_pass_the_cap(
    open_warden: OpenWarden,
) -> None:
    """32 threads over 4 Wardens on one file: agent-a asks 30 times at once, agent-b twice."""
    wardens = [open_warden(COUNT_POLICY) for _ in range(4)]
    barrier = threading.Barrier(32)
    results: list[tuple[str, str]] = []
    lock = threading.Lock()

    def ask(index: int) -> None:
        agent = "agent-b" if index % 16 == 0 else "agent-a"
        barrier.wait()
        decision = _ask(wardens[index % 4], index, agent)
        with lock:
            results.append((agent, decision.reason_code))

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(32)]
    try:
        run_threads(threads, 120)
        assert Counter(results) == {
            ("agent-a", "approval_required"): 3,
            ("agent-a", "approval_queue_full"): 27,
            ("agent-b", "approval_required"): 2,
        }
        assert len(wardens[0].approvals("pending", "agent-a")) == 3
        assert len(wardens[1].approvals("pending", "agent-b")) == 2
        assert _held(wardens[2]) == 5 * 50_000
    finally:
        for warden in wardens:
            warden.close()


# The inbox ------------------------------------------------------------------------------------


def _flood(warden: Warden, clock: FrozenClock) -> tuple[list[str], str, str]:
    """Ten requests of `flood`, then one of agent-b and one of agent-c, a second apart."""
    flood = []
    for n in range(10):
        flood.append(str(_ask(warden, n, "flood").approval_id))
        clock.advance(1)
    late_b = str(_ask(warden, 0, "agent-b").approval_id)
    clock.advance(1)
    late_c = str(_ask(warden, 0, "agent-c").approval_id)
    return flood, late_b, late_c


def test_the_first_page_shows_every_agents_oldest_request_before_a_flood(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DEFAULT_POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        flood, late_b, late_c = _flood(warden, clock)
        first = warden.approvals_page(limit=3)
        assert (_ids(first.views), first.next_offset) == ([flood[0], late_b, late_c], 3)
        second = warden.approvals_page(limit=3, offset=3)
        assert (_ids(second.views), second.next_offset) == (flood[1:4], 6)
        # Decided requests come after every pending one, newest first, agents taking turns.
        clock.advance(1)
        for approval_id in (late_c, flood[0], flood[1]):
            warden.reject(approval_id, operator="alice", reason="no")
        listed = _ids(warden.approvals())
        assert listed == [flood[2], late_b, *flood[3:], late_c, flood[1], flood[0]]
        last = warden.approvals_page(limit=3, offset=9)
        assert (_ids(last.views), last.next_offset) == ([late_c, flood[1], flood[0]], None)
        assert _ids(warden.approvals(status="rejected")) == [late_c, flood[1], flood[0]]
        assert _ids(warden.approvals("pending", "agent-b")) == [late_b]
        assert warden.approvals_page(limit=5, offset=12).views == ()
        for limit, offset in ((0, 0), (501, 0), (100, -1), (100, 1_000_001)):
            with pytest.raises(InvalidInputError):
                warden.approvals(limit=limit, offset=offset)
        with pytest.raises(InvalidInputError, match="unknown approval status"):
            warden.approvals("bogus")


def _fair_order(views: list[ApprovalView]) -> list[str]:
    """The documented order, computed independently: pending first; in each group, the
    agent's n-th request (pending from the oldest, the rest from the newest) in round n;
    within a round by age the same way; then by id."""
    ranked: list[tuple[tuple[bool, int, int, str], str]] = []
    for closed in (False, True):
        sign = -1 if closed else 1
        group = [v for v in views if (v.status != "pending") == closed]
        group.sort(key=lambda v: (sign * v.row.created_us, v.approval_id))
        turns: Counter[str] = Counter()
        for view in group:
            turns[view.row.agent] += 1
            key = (closed, turns[view.row.agent], sign * view.row.created_us, view.approval_id)
            ranked.append((key, view.approval_id))
    return [approval_id for _, approval_id in sorted(ranked)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    asks=st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=18,
    ),
    page=st.integers(1, 7),
)
def test_pages_follow_the_documented_fair_order(
    asks: list[tuple[str, int, bool]], page: int
) -> None:
    clock = FrozenClock()
    with Warden.open(DEFAULT_POLICY, clock=clock) as warden:
        warden.add_operator("alice", name="Alice")
        for n, (agent, seconds, reject) in enumerate(asks):
            decision = _ask(warden, n, f"agent-{agent}")
            if reject:
                warden.reject(str(decision.approval_id), operator="alice", reason="no")
            clock.advance(seconds)  # 0: several requests share a time; ids break the tie
        everything = warden.approvals(limit=500)
        assert _ids(everything) == _fair_order(everything)
        paged: list[str] = []
        offset: int | None = 0
        while offset is not None:
            result = warden.approvals_page(limit=page, offset=offset)
            paged += _ids(result.views)
            offset = result.next_offset
        assert paged == _ids(everything)
        pending_agents = {view.row.agent for view in everything if view.status == "pending"}
        first_round = everything[: len(pending_agents)]
        assert {view.row.agent for view in first_round} == pending_agents


def test_rest_lists_approvals_in_pages_with_the_next_offset(tmp_path: Path) -> None:
    policy = COUNT_POLICY.replace("pending_max_per_agent: 3", "pending_max_per_agent: 4")
    with open_gateway(tmp_path, policy) as gateway:
        mine = []
        for n in range(4):
            mine.append(str(_ask(gateway.warden, n).approval_id))
            gateway.clock.advance(1)
        theirs = str(_ask(gateway.warden, 0, "agent-b").approval_id)
        body = {
            "action": "payments.transfer",
            "amount": "500.00",
            "currency": "USD",
            "recipient": "vendor-9.example.com",
        }
        full = gateway.client.post("/v1/authorizations", json=body, headers=gateway.auth("agent-a"))
        assert full.status_code == 200, full.text
        assert (full.json()["outcome"], full.json()["reason_code"]) == (
            "deny",
            "approval_queue_full",
        )
        operator = gateway.auth("operator")
        first = gateway.client.get("/v1/approvals?limit=2", headers=operator)
        assert first.status_code == 200, first.text
        assert [item["approval_id"] for item in first.json()] == [mine[0], theirs]
        assert first.headers["next-offset"] == "2"
        rest = gateway.client.get("/v1/approvals?limit=2&offset=4", headers=operator)
        assert [item["approval_id"] for item in rest.json()] == [mine[3]]
        assert "next-offset" not in rest.headers
        own = gateway.client.get("/v1/approvals?agent=agent-a", headers=gateway.auth("agent-b"))
        assert [item["approval_id"] for item in own.json()] == [theirs]
        for query in ("limit=0", "limit=501", "offset=-1", "offset=abc", "status=bogus"):
            refused = gateway.client.get(f"/v1/approvals?{query}", headers=operator)
            assert refused.status_code == 422, query
            assert refused.json()["code"] == "invalid_input", refused.json()


def _cli(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def test_the_command_line_lists_a_page_and_says_where_the_next_starts(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DEFAULT_POLICY) as warden:
        flood, late_b, late_c = _flood(warden, clock)
    first = _cli("approvals", "list", "--limit", "2", "--database", database)
    assert first.exit_code == 0, first.output
    assert [line.split()[0] for line in first.stdout.splitlines()] == [flood[0], late_b]
    assert first.stderr == "more requests follow: run again with --offset 2\n"
    last = _cli("approvals", "list", "--offset", "10", "--json", "--database", database)
    assert [item["approval_id"] for item in json.loads(last.stdout)] == flood[8:]
    assert last.stderr == ""
    for bad in (("--limit", "0"), ("--limit", "501"), ("--offset", "-1")):
        assert _cli("approvals", "list", *bad, "--database", database).exit_code == 2


# MCP HTTP sessions ------------------------------------------------------------------------------

MCP_POLICY = "currency: USD\nrules:\n  - {id: pay, effect: allow, actions: ['payments.*']}\n"


@pytest.fixture
def mcp_warden(open_warden: OpenWarden) -> Warden:
    return open_warden(MCP_POLICY)


def _agent_key(warden: Warden, agent: str) -> tuple[str, str]:
    secret, row = warden.create_key(role="agent", agent=agent, actor="test")
    return secret, row.key_id


async def _initialize(http: httpx2.AsyncClient, url: str, secret: str) -> httpx2.Response:
    headers = {**JSON_RPC_HEADERS, "authorization": f"Bearer {secret}"}
    return await http.post(url, json=INITIALIZE, headers=headers)


def _session(response: httpx2.Response, secret: str) -> dict[str, str]:
    return {
        **JSON_RPC_HEADERS,
        "authorization": f"Bearer {secret}",
        "mcp-session-id": response.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }


def test_a_key_holds_at_most_its_sessions_and_delete_frees_one(mcp_warden: Warden) -> None:
    (key_a, id_a), (key_b, _) = _agent_key(mcp_warden, "agent-a"), _agent_key(mcp_warden, "b")
    app = McpHttpApp(mcp_warden, sessions_per_key_max=2)

    async def main(url: str) -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            opened = [await _initialize(http, url, key_a) for _ in range(2)]
            assert [r.status_code for r in opened] == [200, 200]
            refused = await _initialize(http, url, key_a)
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/json"
            error = refused.json()
            assert (error["jsonrpc"], error["id"]) == ("2.0", None)
            assert error["error"]["data"] == {"code": "too_many_sessions"}
            assert "most open MCP sessions allowed (2)" in error["error"]["message"]
            assert app.open_sessions(id_a) == 2
            assert (await _initialize(http, url, key_b)).status_code == 200  # another key
            ended = await http.delete(url, headers=_session(opened[0], key_a))
            assert ended.status_code == 200
            assert app.open_sessions(id_a) == 1
            assert (await _initialize(http, url, key_a)).status_code == 200
            assert (await _initialize(http, url, key_a)).status_code == 429

    with serving(app) as base:
        anyio.run(main, f"{base}/mcp")


def _messages(error: BaseException) -> list[str]:
    if isinstance(error, BaseExceptionGroup):
        return [text for inner in error.exceptions for text in _messages(inner)]
    return [str(error)]


def test_a_real_client_beyond_the_bound_is_told_why(mcp_warden: Warden) -> None:
    secret, key_id = _agent_key(mcp_warden, "agent-a")
    app = McpHttpApp(mcp_warden, sessions_per_key_max=1)

    async def main(url: str) -> None:
        async with http_client(url, secret, "legacy") as first:
            assert not (await first.call_tool("describe_my_limits", {})).is_error
            with pytest.raises(BaseException) as refused:
                async with http_client(url, secret, "legacy"):
                    pass
            assert any("most open MCP sessions allowed" in m for m in _messages(refused.value))
            # A client on a protocol version without sessions holds no slot and is not refused.
            async with http_client(url, secret, "auto") as stateless:
                assert not (await stateless.call_tool("describe_my_limits", {})).is_error
        assert app.open_sessions(key_id) == 0  # the client ended its session on the way out
        async with http_client(url, secret, "legacy") as again:
            assert not (await again.call_tool("describe_my_limits", {})).is_error

    with serving(app) as base:
        anyio.run(main, f"{base}/mcp")


def test_concurrent_openings_of_one_key_never_pass_the_bound(mcp_warden: Warden) -> None:
    secret, key_id = _agent_key(mcp_warden, "agent-a")
    other, other_id = _agent_key(mcp_warden, "agent-b")
    app = McpHttpApp(mcp_warden, sessions_per_key_max=3)
    statuses: list[tuple[str, int]] = []

    async def open_one(http: httpx2.AsyncClient, url: str, key: str) -> None:
        statuses.append((key, (await _initialize(http, url, key)).status_code))

    async def main(url: str) -> None:
        async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as group:
            for index in range(14):
                group.start_soon(open_one, http, url, other if index % 7 == 0 else secret)

    with serving(app) as base:
        anyio.run(main, f"{base}/mcp")
        assert (app.open_sessions(key_id), app.open_sessions(other_id)) == (3, 2)
    assert Counter(statuses) == {(secret, 200): 3, (secret, 429): 9, (other, 200): 2}


def test_an_idle_session_expires_and_frees_its_slot(mcp_warden: Warden) -> None:
    secret, key_id = _agent_key(mcp_warden, "agent-a")
    app = McpHttpApp(mcp_warden, sessions_per_key_max=1, session_idle_seconds=0.3)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

    async def main(url: str) -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            first = await _initialize(http, url, secret)
            assert first.status_code == 200
            assert (await _initialize(http, url, secret)).status_code == 429
            deadline = time.monotonic() + 20
            while app.open_sessions(key_id) and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            assert app.open_sessions(key_id) == 0
            gone = await http.post(url, json=call, headers=_session(first, secret))
            assert gone.status_code == 404
            assert (await _initialize(http, url, secret)).status_code == 200

    with serving(app) as base:
        anyio.run(main, f"{base}/mcp")


@pytest.mark.parametrize(
    "options",
    [
        {"sessions_per_key_max": 0},
        {"sessions_per_key_max": True},
        {"sessions_per_key_max": 2.0},
        {"session_idle_seconds": 0},
        {"session_idle_seconds": -1.0},
        {"session_idle_seconds": float("inf")},
        {"session_idle_seconds": float("nan")},
        {"session_idle_seconds": True},
    ],
)
def test_bad_session_bounds_are_refused(mcp_warden: Warden, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        McpHttpApp(mcp_warden, **options)
