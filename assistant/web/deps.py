"""FastAPI dependencies: the runtime, and the conversation a bearer token opens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from assistant.agent_auth import csrf_matches
from assistant.conversations import ConversationService
from assistant.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from assistant.identity import hash_token as hash_secret
from assistant.identity import token_matches
from assistant.runtime import Runtime
from assistant.storage.records import AgentRecord, ConversationRecord
from assistant.web.rate_limits import Limiter, client_ip


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


SESSION_COOKIE = "assistant_session"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    """A staff caller: ``agent`` is ``None`` for the bootstrap admin token."""

    role: str
    agent: AgentRecord | None
    session_token: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"agent:{self.agent.id}" if self.agent else "admin-token"


def staff(
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> Principal:
    """A staff caller, also recorded on the request for the audit log (see ``audit``)."""
    principal = _staff(request, runtime, authorization, x_csrf_token)
    request.state.audit_actor = principal.actor
    return principal


def _staff(
    request: Request,
    runtime: Runtime,
    authorization: str | None,
    x_csrf_token: str | None,
) -> Principal:
    """A staff caller: a bearer token (admin, or an agent's API token) or a console session.

    Console requests that change something must also carry the session's CSRF token in
    ``X-CSRF-Token``; the cookie alone (which a cross-site form would send) is not enough.
    Customers' conversation tokens never pass.
    """
    if authorization:
        token = bearer_token(authorization)
        configured = runtime.settings.admin_token
        if configured is not None and token_matches(
            token, hash_secret(configured.get_secret_value())
        ):
            return Principal(role="admin", agent=None)
        agent = runtime.handoffs.agent_for_token(hash_secret(token))
        if agent is not None and agent.active:
            return Principal(role=agent.role, agent=agent)
        raise Unauthorized(
            "the bearer token is not a staff token (use an agent API token from "
            "`assistant agents token`, or ASSISTANT_ADMIN_TOKEN)"
        )
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        agent = runtime.auth.agent_for(session)
        if agent is None:
            raise Unauthorized("the console session has expired; sign in again at /console/login")
        if request.method in _UNSAFE_METHODS and not csrf_matches(session, x_csrf_token):
            raise Forbidden(
                "missing or wrong X-CSRF-Token header (the console sends it; scripts should "
                "use an agent API token instead of the session cookie)"
            )
        return Principal(role=agent.role, agent=agent, session_token=session)
    raise Unauthorized(
        "sign in at /console/login, or send 'Authorization: Bearer <agent API token>'"
    )


StaffDep = Annotated[Principal, Depends(staff)]


def admin(principal: StaffDep) -> Principal:
    """A staff caller with the admin role (analytics, health, webhooks)."""
    if principal.role != "admin":
        raise Forbidden("this needs an admin (an agent account with role admin, or the "
                        "admin token)")
    return principal


AdminDep = Annotated[Principal, Depends(admin)]


def metrics_reader(
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> None:
    """A Prometheus scraper with ``ASSISTANT_METRICS_TOKEN``, or an admin.

    Metrics are aggregate counts, but they are the business's numbers, and a scrape folds
    pending events first: not something to hand to anyone who asks.
    """
    configured = runtime.settings.metrics_token
    if (
        authorization
        and configured is not None
        and token_matches(bearer_token(authorization), hash_secret(configured.get_secret_value()))
    ):
        return
    try:
        admin(staff(request, runtime, authorization, x_csrf_token))
    except Unauthorized as exc:
        raise Unauthorized(
            f"{exc} (a Prometheus scraper sends 'Authorization: Bearer "
            "<ASSISTANT_METRICS_TOKEN>')"
        ) from exc


def acting_agent(principal: StaffDep) -> AgentRecord:
    """The agent behind the request; actions that own conversations need one."""
    if principal.agent is None:
        raise Forbidden(
            "this action needs an agent account; the admin token cannot own conversations "
            "(create one with `assistant agents create`)"
        )
    return principal.agent


AgentDep = Annotated[AgentRecord, Depends(acting_agent)]


def staff_conversation(
    conversation_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")],
    _principal: StaffDep,
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


def _limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.rate_limiter
    return limiter


def limit_per_ip(request: Request, runtime: RuntimeDep) -> None:
    """Spend one request of the client address's budget (429 when it is spent)."""
    _limiter(request).hit(
        f"ip:{client_ip(request)}",
        runtime.settings.ip_rate_limit_per_minute,
        "requests from your address",
    )


def limit_per_conversation(
    request: Request, conversation: ConversationDep, runtime: RuntimeDep
) -> None:
    """Spend one message of the conversation's budget, and one of the address's."""
    limit_per_ip(request, runtime)
    _limiter(request).hit(
        f"conversation:{conversation.id}",
        runtime.settings.rate_limit_per_minute,
        "messages in this conversation",
    )
