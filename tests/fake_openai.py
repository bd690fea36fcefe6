"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol.

Tests script its replies (text, an HTTP error, or a stall) and read the requests it got.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class FakeOpenAI:
    """The server's script and log."""

    url: str = ""
    replies: list[str] = field(default_factory=lambda: ["- A scripted summary."])
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(body)
            if self.status != 200:
                return JSONResponse({"error": {"message": "scripted failure"}},
                                    status_code=self.status)
            text = self.replies[min(len(self.requests), len(self.replies)) - 1]
            return JSONResponse({
                "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "test"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })

        return app


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    """Start the fake on a free loopback port; stop it afterwards."""
    fake = FakeOpenAI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    ready = threading.Event()
    while not server.started:
        ready.wait(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
