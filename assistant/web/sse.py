"""Server-Sent Events over the shared store: resumable, cross-process, heartbeat-kept.

A stream polls a fetch function (run in the thread pool, it reads the database) every
``poll_seconds`` for events after the last id it sent. Each event carries its log id as
the SSE ``id``, so a browser's automatic reconnect (``Last-Event-ID``) or an explicit
``?after=`` resumes exactly where the client left off.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from assistant.errors import InvalidInput
from assistant.live import ActivityWatch, LiveEvent

HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 1000
SSE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def resume_point(after: int | None, last_event_id: str | None) -> int:
    """Where to resume: ``?after=`` wins, then ``Last-Event-ID``, else the beginning."""
    if after is not None:
        return after
    if last_event_id is None or not last_event_id.strip():
        return 0
    try:
        value = int(last_event_id.strip())
    except ValueError as exc:
        raise InvalidInput("Last-Event-ID must be the integer id of an event") from exc
    if not 0 <= value < 2**63:
        raise InvalidInput("Last-Event-ID must be an event id, 0 to 2**63 - 1")
    return value


def format_event(event: LiveEvent) -> str:
    """One event in the SSE wire format (JSON data on one line)."""
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


@dataclass(frozen=True)
class Watched:
    """A conversation stream's link to the process's :class:`ActivityWatch`."""

    watch: ActivityWatch
    conversation_id: str


def event_stream(
    request: Request,
    fetch: Callable[[int], list[LiveEvent]],
    *,
    after: int,
    poll_seconds: float,
    watched: Watched | None = None,
) -> StreamingResponse:
    """A streaming response that sends ``fetch(after)`` results until the client leaves.

    With ``watched``, the stream reads its conversation only when the shared watch says
    something new was written there (the first read always happens).
    """

    async def generate() -> AsyncIterator[str]:
        cursor = after
        seen = -1  # events up to this id are known to have been read
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        last_sent = time.monotonic()
        while not await request.is_disconnected():
            mark = None
            if watched is not None:
                if watched.watch.due(poll_seconds):
                    await run_in_threadpool(watched.watch.poll, poll_seconds)
                mark = watched.watch.latest(watched.conversation_id)
            if mark is None or seen < 0 or mark > seen:
                events = await run_in_threadpool(fetch, cursor)
            else:
                events = []
            for event in events:
                yield format_event(event)
                cursor = event.id
            if events:
                seen = cursor  # a full page may have more: read again at once
                last_sent = time.monotonic()
                continue
            if mark is not None:
                seen = max(cursor, mark, seen)
            if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(poll_seconds)

    return StreamingResponse(generate(), media_type="text/event-stream", headers=SSE_HEADERS)
