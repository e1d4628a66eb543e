"""JSON log lines for `paywarden serve --log-format json` (setting `log_format`).

Each record becomes one JSON object on one line: `time` (UTC, ISO 8601 with milliseconds),
`level`, `logger` and `message`; uvicorn's access records add `client`, `method`, `path` (never
the query string: `QueryFreeAccessLog` drops it first) and `status`; a record that carries
`request_id`, `decision_id` or `agent` (`extra=` of a logging call, else the values bound in
`paywarden.log_context` when the record was made: the request's `X-Request-Id`, the agent being
decided for) adds them; an exception adds `exception` (its traceback as text).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from paywarden import log_context

# Attributes a logging call may attach (`extra=`) that the JSON line carries when present.
CONTEXT_FIELDS = log_context.FIELDS


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access":
            line.update(_access_fields(record))
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None) or log_context.current(name)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access record: args `(client_addr, method, path, http_version, status)`."""
    args = record.args
    if not (isinstance(args, tuple) and len(args) == 5):
        return {}
    client, method, path, _version, status = args
    return {
        "client": str(client),
        "method": str(method),
        "path": str(path).split("?", 1)[0],
        "status": status if isinstance(status, int) else str(status),
    }


def root_handler(log_format: str) -> logging.Handler:
    """The handler of the root logger for `log_format` (`text` or `json`), on stderr."""
    from paywarden.entrypoints.rest.server import LOG_FORMAT

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT))
    return handler
