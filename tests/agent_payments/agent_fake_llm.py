"""A fake OpenAI-compatible server for the tests: real HTTP on loopback, scripted answers.

`FakeLLM` is a Starlette app serving `POST /v1/chat/completions`; each request takes the next
scripted answer (the assistant message's content) and is kept in `requests` for asserts. An
answer `REFUSE_SCHEMA` answers HTTP 400 to a request that asks for a JSON schema (a server
without structured outputs) and is kept for the retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from support.servers import serving

REFUSE_SCHEMA = "<refuse json_schema>"


class FakeLLM:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])]
        )

    async def complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        if not self.answers:
            return JSONResponse({"error": {"message": "script exhausted"}}, status_code=500)
        answer = self.answers[0]
        if answer == REFUSE_SCHEMA:
            if body.get("response_format", {}).get("type") == "json_schema":
                return JSONResponse(
                    {"error": {"message": "json_schema is not supported", "type": "invalid"}},
                    status_code=400,
                )
            self.answers.pop(0)
            answer = self.answers.pop(0)
        else:
            self.answers.pop(0)
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@contextlib.contextmanager
def fake_llm(*answers: str) -> Iterator[tuple[FakeLLM, str]]:
    """The fake server running; yields it and its OpenAI base URL (`.../v1`)."""
    llm = FakeLLM(*answers)
    with serving(llm.app) as url:
        yield llm, f"{url}/v1"
