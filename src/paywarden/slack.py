"""The Slack-compatible body of a webhook event (`WebhookOptions(format="slack")`).

Every outbox event (approval events, alerts) carries a `text` made inert for chat tools (no
mentions, no links, one line). A destination configured as Slack (an incoming webhook URL)
receives `{"text": ..., "blocks": [...]}`: the text as a section, and a context line naming the
event type and the object it is about. Other destinations receive the event as it is.
"""

from __future__ import annotations

import json

from paywarden.audit.canonical import canonical_text

FORMATS = ("json", "slack")
# The members that name what an event is about, in the order the context line shows them.
_ABOUT = ("alert_id", "rule_id", "approval_id", "ref_id")


def slack_body(body: str) -> str:
    """The Slack message of an event body (canonical JSON); the body as it is when it is not a
    JSON object with a `text`."""
    try:
        event = json.loads(body)
    except ValueError:
        return body
    if not isinstance(event, dict) or not isinstance(event.get("text"), str):
        return body
    text: str = event["text"]
    about = " · ".join(
        f"{name} `{event[name]}`" for name in _ABOUT if isinstance(event.get(name), str)
    )
    context = f"paywarden {event.get('type', 'event')}" + (f" · {about}" if about else "")
    message = {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }
    return canonical_text(message)
