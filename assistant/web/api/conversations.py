"""Customer endpoints: open a conversation, post messages, read them back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from assistant.conversations import ConversationService, CustomerClaim, PostedMessage
from assistant.errors import AssistantError
from assistant.live import LiveEvent
from assistant.storage.records import ConversationRecord, MessageRecord
from assistant.web.deps import (
    ConversationDep,
    ConversationsDep,
    IdempotencyKeyDep,
    RuntimeDep,
    limit_per_conversation,
    limit_per_ip,
)
from assistant.web.rate_limits import client_ip
from assistant.web.schemas import (
    MAX_EVENT_ID,
    MAX_MESSAGE_ID,
    ConversationCreate,
    ConversationPublic,
    ConversationState,
    CsatCreate,
    CsatPublic,
    ErrorBody,
    FeedbackCreate,
    FollowupCreate,
    HandoffPublic,
    MessageCreate,
    MessageList,
    MessagePublic,
    TurnPublic,
)
from assistant.web.sse import SSE_HEADERS, Watched, event_stream, resume_point

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 404, 409, 413, 422, 429)
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationPublic,
    responses=_ERRORS,
    dependencies=[Depends(limit_per_ip)],
)
def start_conversation(
    conversations: ConversationsDep, body: ConversationCreate | None = None
) -> ConversationPublic:
    """Open a conversation. Returns its id and a bearer token that opens it (shown once)."""
    body = body or ConversationCreate()
    claim = None
    if body.customer is not None:
        c = body.customer
        claim = CustomerClaim(external_id=c.id, email=c.email, name=c.name, plan=c.plan)
    started = conversations.start(claim=claim, user_hash=body.user_hash)
    return ConversationPublic(
        id=started.conversation.id,
        token=started.token,
        status=started.conversation.status,
        verified=bool(started.customer and started.customer.verified),
    )


def _turn_public(posted: PostedMessage) -> TurnPublic:
    availability = (posted.reply.annotations if posted.reply else {}).get("availability")
    return TurnPublic(
        message=MessagePublic.of(posted.message),
        reply=MessagePublic.of(posted.reply) if posted.reply is not None else None,
        handoff=(
            HandoffPublic.of(posted.handoff, availability) if posted.handoff is not None else None
        ),
        replayed=posted.replayed,
    )


@router.post(
    "/{conversation_id}/messages",
    response_model=TurnPublic,
    dependencies=[Depends(limit_per_conversation)],
    responses={
        **_ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "JSON, or with `Accept: text/event-stream` a stream of `stored`, "
            "`delta`, `reset` and `done` events (`done` carries the same body as the JSON "
            "answer).",
        },
    },
)
async def post_message(
    request: Request,
    conversation: ConversationDep,
    conversations: ConversationsDep,
    body: MessageCreate,
    idempotency_key: IdempotencyKeyDep,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """Post a customer message; it is stored before the reply is computed.

    Send an ``Idempotency-Key`` header so a retry never creates a second message: the same
    key and body return the original result, another body gets 422, and a retry while the
    first request is still running gets 409.

    With ``Accept: text/event-stream`` the answer streams: ``stored`` (the customer's message,
    committed), ``delta`` (reply text as it is produced), then ``done`` (the full result) or
    ``error``. The widget reads it with ``fetch``.
    """
    if accept is None or "text/event-stream" not in accept:
        posted = await run_in_threadpool(
            conversations.post_message,
            conversation, text=body.text, idempotency_key=idempotency_key,
            client_address=client_ip(request),
        )
        return _turn_public(posted)
    conversations.validate_text(body.text)  # bad input is still a plain 422
    return StreamingResponse(
        _stream_turn(
            conversations, conversation, body.text, idempotency_key, client_ip(request)
        ),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


class _QueueStream:
    """Carries reply deltas from the worker thread to the SSE response."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, out: asyncio.Queue[tuple[str, Any]]
    ) -> None:
        self._loop = loop
        self._out = out
        self.shown = False

    def put(self, kind: str, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._out.put_nowait, (kind, value))

    def delta(self, text: str) -> None:
        self.shown = True
        self.put("delta", text)

    def reset(self) -> None:
        if self.shown:
            self.shown = False
            self.put("reset", None)


async def _stream_turn(
    conversations: ConversationService,
    conversation: ConversationRecord,
    text: str,
    idempotency_key: str | None,
    client_address: str,
) -> AsyncIterator[str]:
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stream = _QueueStream(asyncio.get_running_loop(), events)

    def on_stored(message: MessageRecord) -> None:
        stream.put("stored", MessagePublic.of(message))

    work = asyncio.ensure_future(run_in_threadpool(
        conversations.post_message, conversation, text=text,
        idempotency_key=idempotency_key, on_stored=on_stored, stream=stream,
        client_address=client_address,
    ))
    work.add_done_callback(lambda _: events.put_nowait(("finished", None)))
    streamed = False
    while True:
        kind, value = await events.get()
        if kind == "stored":
            yield _sse("stored", {"message": value.model_dump(mode="json")})
        elif kind == "delta":
            streamed = True
            yield _sse("delta", {"text": value})
        elif kind == "reset":
            # The model's text was replaced (fallback): clients drop what they showed and
            # render ``done``'s reply.
            yield _sse("reset", {})
        else:
            break
    try:
        posted = work.result()
    except AssistantError as exc:
        yield _sse("error", {"error": {"code": type(exc).__name__, "message": str(exc)}})
        return
    result = _turn_public(posted)
    if result.reply is not None and not streamed:
        # Extractive answers are composed at once: one delta carries the whole text.
        # (After a reset, ``done`` alone brings the replacement, formatted.)
        yield _sse("delta", {"text": result.reply.text})
    yield _sse("done", result.model_dump(mode="json"))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/{conversation_id}/messages", response_model=MessageList, responses=_ERRORS)
def list_messages(
    conversation: ConversationDep,
    conversations: ConversationsDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_MESSAGE_ID, description="only messages with a larger id")
    ] = None,
) -> MessageList:
    """The conversation's messages, oldest first."""
    records = conversations.messages(conversation, after=after)
    return MessageList(messages=[MessagePublic.of(r) for r in records])


@router.get(
    "/{conversation_id}/events", response_class=StreamingResponse, responses=_ERRORS
)
def conversation_events(
    request: Request,
    conversation: ConversationDep,
    runtime: RuntimeDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Server-Sent Events: new messages (the bot's, agents', notices) and status changes.

    Each event's ``id`` is its position in the log: reconnect with ``Last-Event-ID`` (or
    ``?after=``) and the stream resumes exactly after it. Authenticate with the
    conversation token in the ``Authorization`` header (read the stream with ``fetch``;
    tokens never go in URLs).
    """
    start = resume_point(after, last_event_id)

    def fetch(cursor: int) -> list[LiveEvent]:
        return runtime.live.conversation(conversation.id, after=cursor, audience="customer")

    return event_stream(
        request, fetch, after=start, poll_seconds=runtime.settings.live_poll_seconds,
        watched=Watched(runtime.live.watch, conversation.id),
    )


@router.post("/{conversation_id}/handoff", response_model=HandoffPublic, responses=_ERRORS)
def request_handoff(conversation: ConversationDep, runtime: RuntimeDep) -> HandoffPublic:
    """The customer asks for a person ("Talk to a person"). Says when one will come, or,
    when no one can (outside business hours, nobody online), that an email can be left."""
    handoff, available = runtime.handoff.request_by_customer(conversation)
    return HandoffPublic.of(handoff, available.as_dict())


@router.post(
    "/{conversation_id}/followup", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS
)
def leave_email(conversation: ConversationDep, body: FollowupCreate, runtime: RuntimeDep) -> None:
    """Leave an email address for follow-up when no person could come."""
    runtime.handoff.leave_email(conversation, str(body.email))


@router.post(
    "/{conversation_id}/csat",
    status_code=status.HTTP_201_CREATED,
    response_model=CsatPublic,
    responses=_ERRORS,
)
def rate(
    conversation: ConversationDep, conversations: ConversationsDep, body: CsatCreate
) -> CsatPublic:
    """Rate the conversation 1-5 with an optional comment (once; 409 after that)."""
    return CsatPublic(
        **conversations.rate(conversation, score=body.score, comment=body.comment)
    )


@router.post(
    "/{conversation_id}/feedback", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS
)
def answer_feedback(
    conversation: ConversationDep, conversations: ConversationsDep, body: FeedbackCreate
) -> None:
    """Say whether a bot answer helped ("That helped" / "Didn't help"); once per answer."""
    conversations.feedback(conversation, message_id=body.message_id, helpful=body.helpful)


@router.get("/{conversation_id}", response_model=ConversationState, responses=_ERRORS)
def conversation_state(
    conversation: ConversationDep, conversations: ConversationsDep, runtime: RuntimeDep
) -> ConversationState:
    """The conversation's status, its open hand-off (with the expected wait, or whether an
    email can be left), and whether it was rated: what a widget needs after a reload."""
    found = runtime.handoff.open_with_availability(conversation.id)
    customer = (
        runtime.store.get_customer(conversation.customer_id) if conversation.customer_id else None
    )
    return ConversationState(
        id=conversation.id,
        status=conversation.status,
        verified=bool(customer and customer.verified),
        handoff=HandoffPublic.of(found[0], found[1].as_dict()) if found else None,
        rated=conversations.rated(conversation),
    )
