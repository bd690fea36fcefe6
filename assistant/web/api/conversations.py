"""Customer endpoints: open a conversation, post messages, read them back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from assistant.conversations import CustomerClaim
from assistant.web.deps import ConversationDep, ConversationsDep, IdempotencyKeyDep
from assistant.web.schemas import (
    ConversationCreate,
    ConversationPublic,
    ErrorBody,
    HandoffPublic,
    MessageCreate,
    MessageList,
    MessagePublic,
    TurnPublic,
)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 404, 409, 413, 422)
}


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ConversationPublic, responses=_ERRORS
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


@router.post("/{conversation_id}/messages", response_model=TurnPublic, responses=_ERRORS)
def post_message(
    conversation: ConversationDep,
    conversations: ConversationsDep,
    body: MessageCreate,
    idempotency_key: IdempotencyKeyDep,
) -> TurnPublic:
    """Post a customer message; it is stored before the reply is computed.

    Send an ``Idempotency-Key`` header so a retry never creates a second message: the same
    key and body return the original result, another body gets 422, and a retry while the
    first request is still running gets 409.
    """
    posted = conversations.post_message(
        conversation, text=body.text, idempotency_key=idempotency_key
    )
    return TurnPublic(
        message=MessagePublic.of(posted.message),
        reply=MessagePublic.of(posted.reply) if posted.reply is not None else None,
        handoff=HandoffPublic.of(posted.handoff) if posted.handoff is not None else None,
        replayed=posted.replayed,
    )


@router.get("/{conversation_id}/messages", response_model=MessageList, responses=_ERRORS)
def list_messages(
    conversation: ConversationDep,
    conversations: ConversationsDep,
    after: Annotated[int | None, Query(ge=0, description="only messages with a larger id")] = None,
) -> MessageList:
    """The conversation's messages, oldest first."""
    records = conversations.messages(conversation, after=after)
    return MessageList(messages=[MessagePublic.of(r) for r in records])
