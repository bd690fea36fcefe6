"""Agent endpoints: the hand-off queue, claims, live replies, notes, resolve, return to bot.

Every route needs a staff caller (an agent's API token, the admin token, or a console
session with its CSRF token). Actions that own a conversation (claim, reply, resolve,
return) need an agent account; the admin token can read but not own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from assistant.live import LiveEvent, staff_message
from assistant.runtime import Runtime
from assistant.storage.records import HandoffRecord
from assistant.web.deps import AgentDep, RuntimeDep, StaffConversationDep, StaffDep
from assistant.web.schemas import (
    MAX_EVENT_ID,
    MAX_MESSAGE_ID,
    AgentPublic,
    AgentText,
    ErrorBody,
    HandoffDetail,
    HandoffStaff,
    PresenceUpdate,
    QueueItem,
    QueuePublic,
    ReassignCreate,
    ResolveCreate,
    StaffMessage,
    StaffMessageList,
)
from assistant.web.sse import Watched, event_stream, resume_point

router = APIRouter(prefix="/v1/agent", tags=["agent"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)
}
HandoffId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]
TeamQuery = Annotated[
    str | None, Query(max_length=100, pattern=r"^[a-z][a-z0-9_-]*$", description="One team only.")
]


def _now() -> datetime:
    return datetime.now(UTC)


def _queue(runtime: Runtime, team: str | None, *, with_context: bool) -> list[QueueItem]:
    now = _now()
    items = []
    for handoff, packet in runtime.handoff.waiting(team):
        context: dict[str, Any] = {}
        if packet is not None:
            context = packet.as_dict() if with_context else {"summary": packet.summary}
        items.append(QueueItem(handoff=HandoffStaff.of(handoff, now), context=context))
    return items


def _staff(record: HandoffRecord) -> HandoffStaff:
    return HandoffStaff.of(record, _now())


@router.get("/me", response_model=AgentPublic | None, responses=_ERRORS)
def me(principal: StaffDep) -> AgentPublic | None:
    """The signed-in agent (``null`` for the bootstrap admin token)."""
    return AgentPublic.of(principal.agent) if principal.agent is not None else None


@router.get("/agents", response_model=list[AgentPublic], responses=_ERRORS)
def agents(_principal: StaffDep, runtime: RuntimeDep) -> list[AgentPublic]:
    """Active agents, for reassigning."""
    return [AgentPublic.of(a) for a in runtime.handoffs.list_agents() if a.active]


@router.post("/presence", response_model=AgentPublic, responses=_ERRORS)
def presence(body: PresenceUpdate, agent: AgentDep, runtime: RuntimeDep) -> AgentPublic:
    """Go online (take hand-offs) or offline (customers are offered to leave an email)."""
    return AgentPublic.of(runtime.handoffs.set_online(agent.id, body.online))


@router.get("/stats", response_model=dict[str, int], responses=_ERRORS)
def stats(_principal: StaffDep, runtime: RuntimeDep) -> dict[str, int]:
    """Hand-offs by status, and bot messages sent while a person owned the conversation
    (the target is zero)."""
    return runtime.handoff.stats()


@router.get("/queue", response_model=QueuePublic, responses=_ERRORS)
def queue(_principal: StaffDep, runtime: RuntimeDep, team: TeamQuery = None) -> QueuePublic:
    """Waiting hand-offs, most urgent first then longest waiting, each with its context."""
    return QueuePublic(items=_queue(runtime, team, with_context=True))


@router.get("/queue/events", response_class=StreamingResponse, responses=_ERRORS)
def queue_events(
    request: Request,
    _principal: StaffDep,
    runtime: RuntimeDep,
    team: TeamQuery = None,
) -> StreamingResponse:
    """SSE: a ``queue`` event with the whole queue (summaries) now and on every change."""

    def fetch(seen: int) -> list[LiveEvent]:
        version = runtime.live.queue_version()
        if seen and version <= seen:
            return []
        items = _queue(runtime, team, with_context=False)
        return [
            LiveEvent(
                max(version, 1), "queue", {"items": [i.model_dump(mode="json") for i in items]}
            )
        ]

    return event_stream(request, fetch, after=0, poll_seconds=runtime.settings.live_poll_seconds)


@router.get("/handoffs/{handoff_id}", response_model=HandoffStaff, responses=_ERRORS)
def get_handoff(handoff_id: HandoffId, _principal: StaffDep, runtime: RuntimeDep) -> HandoffStaff:
    """One hand-off."""
    return _staff(runtime.handoff.get(handoff_id))


@router.post("/handoffs/{handoff_id}/claim", response_model=HandoffStaff, responses=_ERRORS)
def claim(handoff_id: HandoffId, agent: AgentDep, runtime: RuntimeDep) -> HandoffStaff:
    """Take a queued hand-off: 200 for exactly one agent, 409 for every other."""
    return _staff(runtime.handoff.claim(handoff_id, agent))


@router.post("/handoffs/{handoff_id}/release", response_model=HandoffStaff, responses=_ERRORS)
def release(handoff_id: HandoffId, agent: AgentDep, runtime: RuntimeDep) -> HandoffStaff:
    """Unclaim: put a hand-off you hold back in the queue."""
    return _staff(runtime.handoff.release(handoff_id, agent))


@router.post("/handoffs/{handoff_id}/reassign", response_model=HandoffStaff, responses=_ERRORS)
def reassign(
    handoff_id: HandoffId, body: ReassignCreate, agent: AgentDep, runtime: RuntimeDep
) -> HandoffStaff:
    """Give a hand-off to another agent (its holder or an admin may)."""
    return _staff(runtime.handoff.reassign(handoff_id, body.agent_id, agent))


@router.get("/conversations/{conversation_id}", response_model=HandoffDetail, responses=_ERRORS)
def conversation_detail(conversation: StaffConversationDep, runtime: RuntimeDep) -> HandoffDetail:
    """The conversation's hand-off, its context packet and the internal notes."""
    handoff = runtime.handoff.open_handoff(conversation.id)
    if handoff is None:
        handoff = runtime.handoffs.last_for_conversation(conversation.id)
    return HandoffDetail(
        conversation_id=conversation.id,
        status=conversation.status,
        handoff=_staff(handoff) if handoff is not None else None,
        context=runtime.handoff.context(conversation).as_dict(),
        notes=runtime.handoff.notes(conversation.id),
    )


@router.get(
    "/conversations/{conversation_id}/messages",
    response_model=StaffMessageList,
    responses=_ERRORS,
)
def conversation_messages(
    conversation: StaffConversationDep,
    runtime: RuntimeDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_MESSAGE_ID, description="Only messages after this id.")
    ] = None,
) -> StaffMessageList:
    """Every message with its annotations: intent, sentiment, frustration, churn signals on
    customer messages; citations, retrieval and the escalation decision on replies."""
    messages = runtime.store.list_messages(conversation_id=conversation.id, after=after)
    return StaffMessageList(
        conversation_id=conversation.id,
        status=conversation.status,
        messages=[StaffMessage.of(m) for m in messages],
    )


@router.get(
    "/conversations/{conversation_id}/events",
    response_class=StreamingResponse,
    responses=_ERRORS,
)
def conversation_events(
    request: Request,
    conversation: StaffConversationDep,
    runtime: RuntimeDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """SSE: the conversation live for staff (messages, notes, status changes)."""
    start = resume_point(after, last_event_id)

    def fetch(cursor: int) -> list[LiveEvent]:
        return runtime.live.conversation(conversation.id, after=cursor, audience="staff")

    return event_stream(
        request, fetch, after=start, poll_seconds=runtime.settings.live_poll_seconds,
        watched=Watched(runtime.live.watch, conversation.id),
    )


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=201,
    responses=_ERRORS,
)
def reply(
    conversation: StaffConversationDep, body: AgentText, agent: AgentDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Send a message to the customer; you must have claimed the conversation."""
    return staff_message(runtime.handoff.reply(conversation.id, agent, body.text))


@router.post("/conversations/{conversation_id}/notes", status_code=201, responses=_ERRORS)
def note(
    conversation: StaffConversationDep, body: AgentText, agent: AgentDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Add an internal note: visible to staff only, never to the customer."""
    return {"id": runtime.handoff.note(conversation.id, agent, body.text)}


@router.post(
    "/conversations/{conversation_id}/resolve", response_model=HandoffStaff, responses=_ERRORS
)
def resolve(
    conversation: StaffConversationDep, body: ResolveCreate, agent: AgentDep, runtime: RuntimeDep
) -> HandoffStaff:
    """Resolve the conversation with a resolution code."""
    return _staff(runtime.handoff.resolve(conversation.id, agent, body.resolution_code))


@router.post(
    "/conversations/{conversation_id}/return-to-bot",
    response_model=HandoffStaff,
    responses=_ERRORS,
)
def return_to_bot(
    conversation: StaffConversationDep, agent: AgentDep, runtime: RuntimeDep
) -> HandoffStaff:
    """Hand the conversation back to the bot (it will not bounce straight back)."""
    return _staff(runtime.handoff.return_to_bot(conversation.id, agent))
