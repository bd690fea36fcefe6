"""Staff endpoints: conversations with everything the bot understood and decided.

Authenticated with the admin token for now; agent accounts and the hand-off queue build on
this router (see issue #4). Customer tokens never open it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from assistant.web.deps import RuntimeDep, StaffConversationDep
from assistant.web.schemas import ErrorBody, StaffMessage, StaffMessageList

router = APIRouter(prefix="/v1/agent", tags=["staff"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 404, 422)
}


@router.get(
    "/conversations/{conversation_id}/messages",
    response_model=StaffMessageList,
    responses=_ERRORS,
)
def conversation_messages(
    conversation: StaffConversationDep,
    runtime: RuntimeDep,
    after: Annotated[int | None, Query(ge=0, description="Only messages after this id.")] = None,
) -> StaffMessageList:
    """Every message with its annotations: intent, sentiment, frustration, churn signals on
    customer messages; citations, retrieval and the escalation decision on replies."""
    messages = runtime.store.list_messages(conversation_id=conversation.id, after=after)
    return StaffMessageList(
        conversation_id=conversation.id,
        status=conversation.status,
        messages=[StaffMessage.of(m) for m in messages],
    )
