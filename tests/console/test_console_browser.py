"""The operator console in headless Chromium against a real gateway on loopback: approvals with
four eyes and the agent's retry, rejection, the kill switch, the audit log, policy upload, and
the attacks a console must shrug off (another origin's form, an agent key, stored XSS)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from playwright.sync_api import Browser, BrowserContext, Page, expect

from support.console import Gateway, Shoot, agent_pays, sign_in
from support.servers import LoopbackHTTPServer


def test_a_new_request_appears_then_two_operators_approve_and_the_retry_pays(
    gateway: Gateway, page: Page, context: BrowserContext, screenshot: Shoot
) -> None:
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    problems: list[str] = []  # a CSP violation or a script error is logged as an error
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page, gateway.url, gateway.alice)
    expect(page.locator(".empty")).to_be_visible()
    # The agent asks while the inbox is open: htmx polling shows it without a reload.
    first = agent_pays(gateway.url, gateway.agent, "1500.00", purpose="GPU cluster, March")
    assert first["state"] == "not_submitted"
    approval_id = first["decision"]["approval_id"]
    card = page.locator(f"#approval-{approval_id}")
    expect(card).to_be_visible(timeout=8_000)
    expect(card.locator(".purpose")).to_have_text("GPU cluster, March")
    expect(card).to_contain_text("1500.00 USD")
    expect(card).to_contain_text("review-large")
    expect(card).to_contain_text("0 of 2 approval(s)")
    screenshot(page, "approvals")
    card.locator("input[name=reason]").fill("known vendor, budgeted")
    with page.expect_response(lambda response: response.url.endswith("/approvals/live")):
        pass  # the inbox refreshes while the operator types: what they typed stays
    expect(card.locator("input[name=reason]")).to_have_value("known vendor, budgeted")
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Approved {approval_id}")
    card = page.locator(f"#approval-{approval_id}")
    expect(card.locator(".eyes")).to_contain_text("1 of 2 approval(s): alice")
    expect(card.locator(".eyes")).to_contain_text("you approved; another operator must decide")
    # Alice cannot be the second pair of eyes: refused, and the page says why.
    card.locator("input[name=reason]").fill("me again")
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash.error")).to_contain_text("already decided")
    assert gateway.warden.approval(approval_id).status == "pending"
    # Bob, in his own browser session, approves: the request is approved.
    bob = context.browser.new_context() if context.browser else None
    assert bob is not None
    bob_page = bob.new_page()
    sign_in(bob_page, gateway.url, gateway.bob)
    bob_card = bob_page.locator(f"#approval-{approval_id}")
    bob_card.locator("input[name=reason]").fill("second pair of eyes")
    bob_card.get_by_role("button", name="Approve").click()
    expect(bob_page.locator(".flash.ok")).to_contain_text(f"Approved {approval_id}")
    bob.close()
    assert gateway.warden.approval(approval_id).status == "approved"
    retry = agent_pays(gateway.url, gateway.agent, "1500.00", purpose="GPU cluster, March")
    assert (retry["state"], retry["decision"]["reason_code"]) == ("settled", "approved")
    # The payment's story, then nothing was fetched from outside the gateway.
    page.goto(f"{gateway.url}/console/payments")
    page.get_by_role("link", name=retry["payment"]["payment_id"]).click()
    expect(page.locator("h1")).to_contain_text("settled")
    expect(page.locator("body")).to_contain_text("approved by alice, bob")
    screenshot(page, "payment")
    page.goto(f"{gateway.url}/docs")
    expect(page.locator(".swagger-ui")).to_be_visible()
    assert requested and all(url.startswith(gateway.url) for url in requested), requested
    assert problems == []


def test_an_operator_rejects_with_a_reason_and_the_hold_is_released(
    gateway: Gateway, page: Page
) -> None:
    pending = agent_pays(gateway.url, gateway.agent, "250.00", purpose="team offsite")
    approval_id = pending["decision"]["approval_id"]
    sign_in(page, gateway.url, gateway.alice)
    card = page.locator(f"#approval-{approval_id}")
    card.locator("input[name=reason]").fill("not in this quarter")
    card.get_by_role("button", name="Reject").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Rejected {approval_id}")
    view = gateway.warden.approval(approval_id)
    assert view.status == "rejected" and view.votes[0].reason == "not in this quarter"
    assert sum(row.held_minor for row in gateway.warden.budgets()) == 0


def test_halting_an_agent_denies_its_next_payment_until_it_is_resumed(
    gateway: Gateway, page: Page, screenshot: Shoot
) -> None:
    sign_in(page, gateway.url, gateway.alice)
    page.goto(f"{gateway.url}/console/halts")
    page.fill("#h-agent", "agent-a")
    page.fill("#h-reason", "runaway loop")
    page.check("#h-confirm")
    page.get_by_role("button", name="Halt").click()
    expect(page.locator(".flash.ok")).to_contain_text("Halted agent-a")
    screenshot(page, "kill-switch")
    denied = agent_pays(gateway.url, gateway.agent, "20.00")
    assert denied["decision"]["outcome"] == "deny"
    assert denied["decision"]["reason_code"] == "halted"
    halt = gateway.warden.halts()[0]
    assert (halt.scope, halt.reason, halt.actor) == ("agent-a", "runaway loop", "alice")
    page.check("input[name=confirm]")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".flash.ok")).to_contain_text("Resumed agent-a")
    assert agent_pays(gateway.url, gateway.agent, "20.00")["state"] == "settled"


def test_the_audit_log_is_browsed_opened_and_verified(
    gateway: Gateway, page: Page, screenshot: Shoot
) -> None:
    agent_pays(gateway.url, gateway.agent, "30.00")
    sign_in(page, gateway.url, gateway.alice)
    page.goto(f"{gateway.url}/console/audit?kind=key.")
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("key.")
    assert all("key." in text for text in rows.all_inner_texts())
    page.goto(f"{gateway.url}/console/audit")
    screenshot(page, "audit")
    page.locator("table.audit tbody tr").nth(1).locator("a").first.click()
    expect(page.locator("h1")).to_contain_text("Audit entry 2")
    expect(page.locator("dl.facts")).to_contain_text("its parent hash matches")
    page.get_by_role("link", name="entry 1").click()
    expect(page.locator("h1")).to_contain_text("Audit entry 1")
    page.goto(f"{gateway.url}/console/audit")
    page.get_by_role("link", name="Verify the chain").click()
    head = gateway.warden.verify_audit().head_seq
    expect(page.locator(".verify-result")).to_contain_text(f"Intact: {head} entries verified")


def test_an_invalid_policy_upload_shows_where_and_keeps_the_policy_in_force(
    gateway: Gateway, page: Page, screenshot: Shoot
) -> None:
    before = gateway.warden.loaded_policy.policy
    assert before is not None
    sign_in(page, gateway.url, gateway.admin)
    page.goto(f"{gateway.url}/console/policy")
    expect(page.locator("dl.facts")).to_contain_text(f"version {before.version}")
    page.fill("#policy-text", "currency: USD\nrules:\n  - id: x\n    effect: maybe\n")
    page.get_by_role("button", name="Validate and put in force").click()
    problems = page.locator("ul.problems")
    expect(problems).to_contain_text("at line 4, column")
    expect(page.locator("#policy-text")).to_have_value(
        "currency: USD\nrules:\n  - id: x\n    effect: maybe\n"
    )
    screenshot(page, "policy-error")
    after = gateway.warden.loaded_policy.policy
    assert after is not None and after.version == before.version
    assert "review-large" in gateway.policy.read_text(encoding="utf-8")


def test_a_form_posted_from_another_origin_is_refused(gateway: Gateway, page: Page) -> None:
    """Another port on 127.0.0.1 is the same *site*, so the SameSite=Strict cookie goes along;
    the origin check refuses the post all the same, and nothing is halted."""
    action = f"{gateway.url}/console/halt"
    html = (
        f'<form method="post" action="{action}"><input name="confirm" value="yes">'
        '<input name="reason" value="pwned"><input name="csrf" value="guess">'
        '<button type="submit">win a prize</button></form>'
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            return None

    evil = LoopbackHTTPServer(Evil, poll_seconds=0.05)
    try:
        sign_in(page, gateway.url, gateway.alice)
        page.goto(f"http://127.0.0.1:{evil.port}/")
        page.get_by_role("button", name="win a prize").click()
        page.wait_for_url(action)
        expect(page.locator("h1")).to_contain_text("403")
        expect(page.locator(".flash.error")).to_contain_text("cross-origin")
    finally:
        evil.close()
    assert gateway.warden.halts() == []


def test_an_agent_key_cannot_sign_in(gateway: Gateway, page: Page) -> None:
    page.goto(f"{gateway.url}/console/login")
    page.fill("#key", gateway.agent)
    page.click("button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("Agent keys cannot sign in")
    assert page.context.cookies() == []
    page.goto(f"{gateway.url}/console/approvals")
    assert page.url.endswith("/console/login")


def test_a_script_in_a_purpose_is_shown_as_text_and_never_runs(
    gateway: Gateway, page: Page
) -> None:
    payload = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    pending = agent_pays(gateway.url, gateway.agent, "150.00", purpose=payload)
    approval_id = pending["decision"]["approval_id"]
    sign_in(page, gateway.url, gateway.alice)
    purpose = page.locator(f"#approval-{approval_id} .purpose")
    expect(purpose).to_have_text(payload)
    assert purpose.locator("script, img").count() == 0
    page.goto(f"{gateway.url}/console/approvals/{approval_id}")
    expect(page.locator(".purpose")).to_have_text(payload)
    assert page.evaluate("window.pwned === undefined")


def test_every_action_works_with_javascript_disabled(
    gateway: Gateway, browser: Browser, screenshot: Shoot
) -> None:
    """Plain forms: sign in, approve, refund, a dispute's life, grants, halt, keys (shown
    once), spend, sign out; each attributed to whoever signed in."""
    paid = agent_pays(gateway.url, gateway.agent, "80.00", purpose="api credits")
    payment_id = paid["payment"]["payment_id"]
    pending = agent_pays(gateway.url, gateway.agent, "120.00", purpose="one more")
    approval_id = pending["decision"]["approval_id"]
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, gateway.url, gateway.alice)
        card = page.locator(f"#approval-{approval_id}")
        card.locator("input[name=reason]").fill("fine")
        card.get_by_role("button", name="Approve").click()
        expect(page.locator(".flash.ok")).to_contain_text(f"Approved {approval_id}")
        _payment_actions(page, gateway, payment_id)
        _grant_and_halt(page, gateway)
        assert agent_pays(gateway.url, gateway.agent, "10.00")["decision"]["outcome"] == "deny"
        page.goto(f"{gateway.url}/console/spend")
        expect(page.locator("table.budgets")).to_contain_text("daily")
        expect(page.locator("figure.chart svg rect")).not_to_have_count(0)
        expect(page.locator("table.denials")).to_contain_text("halted")
        screenshot(page, "spend")
        page.get_by_role("button", name="Sign out").click()
        page.goto(f"{gateway.url}/console/halts")
        assert page.url.endswith("/console/login")
        _admin_keys(page, gateway, screenshot)
        _admin_policy_and_checkpoint(page, gateway)
    finally:
        context.close()
    assert gateway.warden.approval(approval_id).status == "approved"


def _payment_actions(page: Page, gateway: Gateway, payment_id: str) -> None:
    page.goto(f"{gateway.url}/console/payments/{payment_id}")
    page.fill("#amount", "5.00")
    page.fill("#refund-reason", "partial credit")
    page.get_by_role("button", name="Refund").click()
    expect(page.locator(".flash.ok")).to_contain_text("Refund of payment")
    page.fill("#dispute-reason", "service not delivered")
    page.get_by_role("button", name="Open dispute").click()
    expect(page.locator(".flash.ok")).to_contain_text("Dispute opened")
    page.get_by_role("button", name="Take for review").click()
    expect(page.locator(".flash.ok")).to_contain_text("under review")
    page.select_option("select[name=outcome]", "reject")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator(".flash.ok")).to_contain_text("resolved: reject")
    refund = gateway.warden.refunds(payment_id)[0]
    assert (refund.amount_minor, refund.actor) == (500, "operator:alice")
    dispute = gateway.warden.disputes(payment_id=payment_id)[0]
    assert (dispute.status, dispute.opened_by) == ("rejected", "operator:alice")


def _grant_and_halt(page: Page, gateway: Gateway) -> None:
    page.goto(f"{gateway.url}/console/grants")
    page.fill("#g-agent", "agent-a")
    page.fill("#g-per", "300.00")
    page.fill("#g-total", "900.00")
    page.get_by_role("button", name="Add grant").click()
    expect(page.locator(".flash.ok")).to_contain_text("Grant added")
    grant = gateway.warden.grants()[0]
    assert (grant.agent, grant.per_payment_minor, grant.created_by) == ("agent-a", 30_000, "alice")
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Grant {grant.grant_id} revoked")
    page.goto(f"{gateway.url}/console/halts")
    page.fill("#h-reason", "incident 7")
    page.check("#h-confirm")
    page.get_by_role("button", name="Halt").click()
    expect(page.locator(".flash.ok")).to_contain_text("Halted every agent")
    assert [(h.scope, h.actor) for h in gateway.warden.halts()] == [("*", "alice")]


def _admin_keys(page: Page, gateway: Gateway, screenshot: Shoot) -> None:
    sign_in(page, gateway.url, gateway.admin)
    page.goto(f"{gateway.url}/console/keys")
    page.select_option("#role", "agent")
    page.fill("#key-agent", "agent-b")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    assert gateway.warden.authenticate(secret).agent == "agent-b"
    screenshot(page, "keys")
    page.goto(f"{gateway.url}/console/keys")
    assert secret not in page.content()  # shown once
    row = page.locator("tr", has_text="agent-b")
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash.ok")).to_contain_text("revoked")
    rows = gateway.warden.keys()
    assert [row.revoked_us is not None for row in rows if row.agent == "agent-b"] == [True]


def _admin_policy_and_checkpoint(page: Page, gateway: Gateway) -> None:
    before = gateway.warden.loaded_policy.policy
    assert before is not None
    page.goto(f"{gateway.url}/console/policy")
    text = page.locator("#policy-text").input_value().replace('"10000.00"', '"20000.00"')
    page.fill("#policy-text", text)
    page.get_by_role("button", name="Validate and put in force").click()
    after = gateway.warden.loaded_policy.policy
    assert after is not None and after.version != before.version
    expect(page.locator(".flash.ok")).to_contain_text(f"Policy {after.version} is in force")
    assert '"20000.00"' in gateway.policy.read_text(encoding="utf-8")
    page.goto(f"{gateway.url}/console/audit")
    page.get_by_role("button", name="Sign a checkpoint").click()
    expect(page.locator(".flash.error")).to_contain_text("no audit signing key is configured")
