"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol.

Tests script its replies and read the requests it got. A reply is either text or a
:class:`Scripted` behaviour: an HTTP error, a hang, a trickle of tokens, or a malformed
body. Streaming requests (``"stream": true``) get Server-Sent Events chunk by chunk, with
the usage chunk when ``stream_options.include_usage`` asks for it, as the real API does.
``responder`` computes a reply from the request (a "compromised" model that obeys
injections, echoes its system prompt, and so on).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse


@dataclass(frozen=True)
class Scripted:
    """One scripted answer: text, or a failure mode."""

    text: str = ""
    status: int = 200
    hang: float = 0.0  # seconds before anything is sent
    trickle: float = 0.0  # seconds per token: between streamed chunks, or in total
    malformed: bool = False
    retry_after: str | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5


Reply = str | Scripted


@dataclass
class FakeOpenAI:
    """The server's script and log."""

    url: str = ""
    replies: list[Reply] = field(default_factory=lambda: ["- A scripted summary."])
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    responder: Callable[[dict[str, Any]], Reply] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def next_reply(self, body: dict[str, Any]) -> Scripted:
        """What to answer to the request just logged."""
        if self.status != 200:
            return Scripted(status=self.status)
        if self.responder is not None:
            reply = self.responder(body)
        else:
            reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return reply if isinstance(reply, Scripted) else Scripted(text=reply)

    async def _pause(self, seconds: float) -> None:
        # Waits in small steps so that stopping the server never waits for a "hang".
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            script = self.next_reply(body)
            if script.hang:
                await self._pause(script.hang)
            if script.status != 200:
                headers = {"Retry-After": script.retry_after} if script.retry_after else None
                return JSONResponse({"error": {"message": "scripted failure"}},
                                    status_code=script.status, headers=headers)
            if body.get("stream"):
                return StreamingResponse(
                    self._stream(body, script), media_type="text/event-stream"
                )
            if script.trickle:  # a slow model: the whole answer takes as long as its stream
                await self._pause(script.trickle * len(tokens(script.text)))
            if script.malformed:
                return PlainTextResponse("{not json", media_type="application/json")
            return JSONResponse({
                "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "test"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": script.text}}],
                "usage": _usage(script),
            })

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            return JSONResponse({"object": "list", "data": [{"id": "test", "object": "model"}]})

        return app

    async def _stream(self, body: dict[str, Any], script: Scripted) -> AsyncIterator[str]:
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model", "test")}
        if script.malformed:
            yield "data: {not json\n\n"
            return
        for piece in tokens(script.text):
            if script.trickle:
                await self._pause(script.trickle)
            if self.stopping.is_set():
                return
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield f"data: {json.dumps({**base, 'choices': [delta]})}\n\n"
        done = {"index": 0, "delta": {}, "finish_reason": "stop"}
        yield f"data: {json.dumps({**base, 'choices': [done]})}\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': _usage(script)})}\n\n"
        yield "data: [DONE]\n\n"


def tokens(text: str) -> list[str]:
    """Split text into small pieces the way a model streams it (word by word)."""
    return re.findall(r"\S+\s*|\s+", text)


def _usage(script: Scripted) -> dict[str, int]:
    return {"prompt_tokens": script.prompt_tokens, "completion_tokens": script.completion_tokens,
            "total_tokens": script.prompt_tokens + script.completion_tokens}


def system_prompt(body: dict[str, Any]) -> str:
    """The system message of a logged request."""
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def user_prompt(body: dict[str, Any]) -> str:
    """The last user message of a logged request."""
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    """Start the fake on a free loopback port; stop it afterwards."""
    fake = FakeOpenAI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    ready = threading.Event()
    while not server.started:
        ready.wait(0.01)
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.should_exit = True
        thread.join(10)
        sock.close()
