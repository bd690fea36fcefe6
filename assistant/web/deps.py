"""FastAPI dependencies: the runtime, and the conversation a bearer token opens."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from assistant.conversations import ConversationService
from assistant.errors import InvalidInput, NotFound, Unauthorized
from assistant.identity import hash_token as hash_secret
from assistant.identity import token_matches
from assistant.runtime import Runtime
from assistant.storage.records import ConversationRecord


def get_runtime(request: Request) -> Runtime:
    """The runtime built by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_conversations(runtime: RuntimeDep) -> ConversationService:
    """The conversation service."""
    return runtime.conversations


ConversationsDep = Annotated[ConversationService, Depends(get_conversations)]


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (never a query parameter)."""
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def customer_conversation(
    conversation_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")],
    token: Annotated[str, Depends(bearer_token)],
    conversations: ConversationsDep,
) -> ConversationRecord:
    """The conversation in the path, if the bearer token opens it."""
    return conversations.authorize(conversation_id, token)


ConversationDep = Annotated[ConversationRecord, Depends(customer_conversation)]


def staff(token: Annotated[str, Depends(bearer_token)], runtime: RuntimeDep) -> str:
    """A staff caller: the admin token, or an active agent's API token; returns the role.

    Customers' conversation tokens never pass it.
    """
    configured = runtime.settings.admin_token
    if configured is not None and token_matches(token, hash_secret(configured.get_secret_value())):
        return "admin"
    agent = runtime.handoffs.agent_for_token(hash_secret(token))
    if agent is not None and agent.active:
        return agent.role
    raise Unauthorized(
        "the bearer token is not a staff token (use an agent API token from "
        "`assistant agents token`, or ASSISTANT_ADMIN_TOKEN)"
    )


StaffDep = Annotated[str, Depends(staff)]


def staff_conversation(
    conversation_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")],
    _role: StaffDep,
    runtime: RuntimeDep,
) -> ConversationRecord:
    """Any conversation, for staff."""
    conversation = runtime.store.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id!r}")
    return conversation


StaffConversationDep = Annotated[ConversationRecord, Depends(staff_conversation)]


def idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str | None:
    """The optional ``Idempotency-Key`` header, validated."""
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be 1-255 printable characters")
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]
