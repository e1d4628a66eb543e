"""The bounded `action` label of the gateway's metrics, the JSON log formatter and the
`log_format` setting, in process."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from paywarden.entrypoints.rest.metrics import ACTION_LABELS_MAX, GatewayMetrics
from paywarden.entrypoints.rest.server import log_config
from paywarden.entrypoints.rest.settings import load_settings
from paywarden.errors import InvalidInputError


def test_action_label_is_the_first_segment_and_bounded() -> None:
    metrics = GatewayMetrics(lambda: None)
    assert metrics.action_label("payments.transfer") == "payments"
    assert metrics.action_label("payments") == "payments"
    assert metrics.action_label("Payments.x") == "other"  # not plain lower-case text
    assert metrics.action_label("a" * 40 + ".x") == "other"  # too long
    labels = {metrics.action_label(f"kind{number}.call") for number in range(ACTION_LABELS_MAX * 3)}
    # `payments` took one place: the first ACTION_LABELS_MAX - 1 new segments, then `other`.
    assert len(labels) == ACTION_LABELS_MAX
    assert "other" in labels and f"kind{ACTION_LABELS_MAX - 2}" in labels
    assert f"kind{ACTION_LABELS_MAX - 1}" not in labels
    assert metrics.action_label("payments.refund") == "payments"  # a known one still counts


def test_scrape_without_a_warden_has_no_budget_samples() -> None:
    from prometheus_client import generate_latest

    text = generate_latest(GatewayMetrics(lambda: None).registry).decode()
    assert "# TYPE paywarden_budget_use_ratio gauge" in text
    assert "paywarden_budget_use_ratio{" not in text


@pytest.fixture
def json_logs() -> Iterator[dict[str, io.StringIO]]:
    streams = {"default": io.StringIO(), "access": io.StringIO()}
    config = log_config("json")
    for name, stream in streams.items():
        config["handlers"][name] = {
            "class": "logging.StreamHandler",
            "formatter": name,
            "stream": stream,
        }
    logging.config.dictConfig(config)
    yield streams
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "paywarden"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def test_json_lines_carry_the_fields(json_logs: dict[str, io.StringIO]) -> None:
    paywarden = logging.getLogger("paywarden.rest")
    paywarden.setLevel(logging.INFO)
    paywarden.info("decided %s", "d-1", extra={"decision_id": "d-1", "agent": "agent-a"})
    try:
        raise ValueError("boom")
    except ValueError:
        paywarden.exception("failed")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz?key=secret", "1.1", 200
    )
    decided, failed = (json.loads(line) for line in json_logs["default"].getvalue().splitlines())
    assert decided["message"] == "decided d-1" and decided["logger"] == "paywarden.rest"
    assert decided["level"] == "INFO" and decided["time"].endswith("Z")
    assert (decided["decision_id"], decided["agent"]) == ("d-1", "agent-a")
    assert "request_id" not in decided
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]
    (access,) = (json.loads(line) for line in json_logs["access"].getvalue().splitlines())
    assert (access["client"], access["method"], access["path"], access["status"]) == (
        "127.0.0.1:5000",
        "GET",
        "/healthz",
        200,
    )
    assert "secret" not in json_logs["access"].getvalue()


def test_an_unknown_log_format_refuses_to_start() -> None:
    with pytest.raises(InvalidInputError, match="log_format"):
        load_settings(environ={"PAYWARDEN_LOG_FORMAT": "xml"})
    assert load_settings(environ={"PAYWARDEN_LOG_FORMAT": "json"}).log_format == "json"
    assert load_settings(environ={}).metrics_enabled is True


def test_request_ids_are_kept_when_sane_and_made_otherwise() -> None:
    from paywarden.entrypoints.rest.request_ids import request_id_of

    def scope(*values: bytes) -> dict[str, object]:
        return {"headers": [(b"x-request-id", value) for value in values]}

    assert request_id_of(scope(b"trace-1.2:3_x")) == "trace-1.2:3_x"
    for bad in (b"", b"has space", b"a" * 65, b'quote"', b"\xc3\xa9t\xc3\xa9", b"new\nline"):
        made = request_id_of(scope(bad))
        assert made.startswith("req_") and len(made) == 28, bad
    assert request_id_of({"headers": []}) != request_id_of({"headers": []})


def test_log_context_binds_and_notes_per_request() -> None:
    from paywarden import log_context

    assert log_context.current("request_id") is None
    log_context.note(decision_id="dec_1")  # no request: nothing kept
    assert log_context.current("decision_id") is None
    with log_context.request("req_a"):
        with log_context.bound(agent="agent-a"):
            assert log_context.current("agent") == "agent-a"
        assert log_context.current("agent") is None
        log_context.note(decision_id="dec_2", agent="agent-a")
        assert (log_context.current("request_id"), log_context.current("decision_id")) == (
            "req_a",
            "dec_2",
        )
    assert log_context.current("request_id") is None
