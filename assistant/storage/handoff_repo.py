"""Storage of human hand-off: agents, their credentials, and the handoff queue.

Like :class:`assistant.storage.repos.Store`, every public method is one short transaction
and returns records from :mod:`assistant.storage.records`, never ORM objects.

Concurrency: every handoff write first locks the handoff's conversation row (``SELECT ...
FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so
all writers take their locks in the same order (conversation, then handoff) and cannot
deadlock, and they also queue with :class:`~assistant.storage.repos.Store`'s writers of
that conversation. The state changes themselves are single conditional ``UPDATE``\\ s
(``... WHERE id = ? AND status = 'queued'``) whose row count decides who won, so a claim
succeeds for exactly one caller even against a writer that skipped the lock. The partial
unique index ``uq_handoffs_open_conversation`` guarantees at most one open handoff per
conversation whatever happens above it.

Every state change appends a ``handoff.*`` event to the interaction log in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assistant.errors import Conflict, InvalidInput, NotFound
from assistant.storage.conversation_rows import add_conversation_event, lock_conversation
from assistant.storage.db import EngineStore
from assistant.storage.records import AgentRecord, HandoffRecord, MessageRecord
from assistant.storage.tables import (
    OPEN_HANDOFF_STATUSES,
    Agent,
    AgentSession,
    AgentToken,
    Conversation,
    Event,
    Handoff,
    Message,
    new_id,
    utcnow,
)

AGENT_ROLES = frozenset({"agent", "admin"})
MIN_PRIORITY = 0
MAX_PRIORITY = 4
MAX_EMAIL_CHARS = 320
MAX_NAME_CHARS = 255
MAX_TEAM_CHARS = 100
MAX_TOKEN_NAME_CHARS = 100
MAX_RESOLUTION_CODE_CHARS = 100

# How often an enqueue that lost the open-handoff unique-index race is retried (the next
# round finds the winner's handoff and merges into it).
_RACE_RETRIES = 3


def _agent(row: Agent) -> AgentRecord:
    return AgentRecord(
        id=row.id,
        email=row.email,
        name=row.name,
        role=row.role,
        password_hash=row.password_hash,
        teams=tuple(row.teams or ()),
        capacity=row.capacity,
        online=row.online,
        active=row.active,
        created_at=row.created_at,
    )


def _handoff(row: Handoff) -> HandoffRecord:
    return HandoffRecord(
        id=row.id,
        conversation_id=row.conversation_id,
        status=row.status,
        team=row.team,
        priority=row.priority,
        reasons=tuple(row.reasons or ()),
        evidence=dict(row.evidence or {}),
        agent_id=row.agent_id,
        created_at=row.created_at,
        due_at=row.due_at,
        claimed_at=row.claimed_at,
        first_reply_at=row.first_reply_at,
        resolved_at=row.resolved_at,
        returned_at=row.returned_at,
        resolution_code=row.resolution_code,
        version=row.version,
    )


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None:
        raise InvalidInput(f"{what} must be timezone-aware")


def _text(value: str, what: str, max_chars: int) -> str:
    value = value.strip()
    if not 0 < len(value) <= max_chars:
        raise InvalidInput(f"{what} must be 1 to {max_chars} characters")
    return value


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


TOKEN_USE_RESOLUTION_SECONDS = 60


def _log_first_reply(
    session: Session, conversation: Conversation, row: Handoff, agent_id: str | None, at: datetime
) -> None:
    """The ``handoff.first_reply`` event: time to first human response, and the SLA kept."""
    add_conversation_event(
        session,
        type="handoff.first_reply",
        conversation=conversation,
        payload={
            "handoff_id": row.id,
            "agent_id": agent_id,
            "first_reply_seconds": _seconds(row.created_at, at),
            "within_sla": at <= row.due_at,
        },
        now=at,
    )


class HandoffStore(EngineStore):
    """Agents, their tokens and sessions, and handoffs, over one engine.

    Args:
        engine: An engine from :func:`assistant.storage.db.make_engine`, already migrated.
    """

    # -- agents ----------------------------------------------------------------------

    def create_agent(
        self,
        *,
        email: str,
        name: str,
        role: str,
        password_hash: str,
        teams: Sequence[str],
        capacity: int = 3,
    ) -> AgentRecord:
        """Create an agent account.

        Args:
            email: Login email; stored stripped and lowercased.
            name: Display name.
            role: "agent" or "admin".
            password_hash: The password hash computed by the caller.
            teams: Team names the agent works for (duplicates are dropped).
            capacity: Maximum number of conversations handled at once (0 or more).

        Returns:
            The stored agent.

        Raises:
            InvalidInput: A malformed email, empty name or team, unknown role, empty
                password hash or negative capacity.
            Conflict: An agent with this email exists.
        """
        email = _text(email, "email", MAX_EMAIL_CHARS).lower()
        if "@" not in email:
            raise InvalidInput("email must contain '@'")
        name = _text(name, "name", MAX_NAME_CHARS)
        if role not in AGENT_ROLES:
            raise InvalidInput(f"unknown agent role {role!r}")
        if not password_hash:
            raise InvalidInput("password_hash must not be empty")
        if isinstance(teams, str):
            raise InvalidInput("teams must be a list of team names")
        team_list = _unique(_text(team, "team", MAX_TEAM_CHARS) for team in teams)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise InvalidInput("capacity must be a non-negative integer")
        try:
            with self._write.begin() as session:
                row = Agent(
                    id=new_id(),
                    email=email,
                    name=name,
                    role=role,
                    password_hash=password_hash,
                    teams=team_list,
                    capacity=capacity,
                    online=False,
                    active=True,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                return _agent(row)
        except IntegrityError as exc:
            raise Conflict(f"an agent with email {email!r} exists") from exc

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        """Load an agent by id.

        Args:
            agent_id: The agent's id.

        Returns:
            The agent, or ``None`` when there is none with that id.
        """
        with self._read() as session:
            row = session.get(Agent, agent_id)
            return _agent(row) if row is not None else None

    def agent_by_email(self, email: str) -> AgentRecord | None:
        """Load an agent by login email (case-insensitive).

        Args:
            email: The email address.

        Returns:
            The agent, or ``None`` when no agent has that email.
        """
        with self._read() as session:
            row = session.scalars(
                select(Agent).where(Agent.email == email.strip().lower())
            ).one_or_none()
            return _agent(row) if row is not None else None

    def list_agents(self) -> list[AgentRecord]:
        """All agents, active or not.

        Returns:
            The agents ordered by email.
        """
        with self._read() as session:
            return [_agent(row) for row in session.scalars(select(Agent).order_by(Agent.email))]

    def set_online(self, agent_id: str, online: bool) -> AgentRecord:
        """Mark an agent as taking conversations now, or not.

        Args:
            agent_id: The agent's id.
            online: The new state.

        Returns:
            The updated agent.

        Raises:
            NotFound: No agent has that id.
        """
        with self._write.begin() as session:
            row = session.get(Agent, agent_id)
            if row is None:
                raise NotFound(f"no agent {agent_id!r}")
            row.online = online
            return _agent(row)

    # -- API tokens ------------------------------------------------------------------

    def set_password(self, agent_id: str, password_hash: str) -> int:
        """Replace an agent's password hash and end all its console sessions.

        Args:
            agent_id: The agent.
            password_hash: The new hash (from :func:`assistant.passwords.hash_password`).

        Returns:
            How many sessions were ended.

        Raises:
            NotFound: No such agent.
        """
        with self._write.begin() as session:
            agent = session.get(Agent, agent_id)
            if agent is None:
                raise NotFound(f"no agent {agent_id!r}")
            agent.password_hash = password_hash
            result = session.execute(delete(AgentSession).where(AgentSession.agent_id == agent_id))
            return int(cast("CursorResult[Any]", result).rowcount or 0)

    def add_token(self, agent_id: str, token_hash: str, name: str) -> None:
        """Register an API token of an agent.

        Args:
            agent_id: The agent the token acts as.
            token_hash: sha256 hex digest of the token (the token itself is never stored).
            name: A label, e.g. "zapier".

        Raises:
            InvalidInput: Empty or too long name, or empty hash.
            NotFound: No agent has that id.
            Conflict: A token with this hash exists.
        """
        name = _text(name, "token name", MAX_TOKEN_NAME_CHARS)
        if not token_hash:
            raise InvalidInput("token_hash must not be empty")
        try:
            with self._write.begin() as session:
                if session.get(Agent, agent_id) is None:
                    raise NotFound(f"no agent {agent_id!r}")
                session.add(
                    AgentToken(
                        token_hash=token_hash,
                        agent_id=agent_id,
                        name=name,
                        created_at=utcnow(),
                        last_used_at=None,
                        revoked=False,
                    )
                )
                session.flush()
        except IntegrityError as exc:
            raise Conflict("this token is already registered") from exc

    def agent_for_token(self, token_hash: str) -> AgentRecord | None:
        """The agent an API token acts as; records the use.

        Args:
            token_hash: sha256 hex digest of the presented token.

        Returns:
            The agent, or ``None`` when the token is unknown or revoked or its agent is
            deactivated.
        """
        # Read first: most lookups need no write, and on SQLite a write takes the
        # database-wide lock. last_used_at is refreshed at most once a minute.
        now = utcnow()
        with self._read() as session:
            token = session.get(AgentToken, token_hash)
            if token is None or token.revoked:
                return None
            agent = session.get_one(Agent, token.agent_id)
            if not agent.active:
                return None
            record = _agent(agent)
            fresh = token.last_used_at is not None and now - token.last_used_at < timedelta(
                seconds=TOKEN_USE_RESOLUTION_SECONDS
            )
        if not fresh:
            with self._write.begin() as session:
                stored = session.get(AgentToken, token_hash)
                if stored is not None:
                    stored.last_used_at = now
        return record

    def revoke_token(self, token_hash: str) -> None:
        """Revoke an API token for good (revoking twice is harmless).

        Args:
            token_hash: sha256 hex digest of the token.

        Raises:
            NotFound: No token has that hash.
        """
        with self._write.begin() as session:
            token = session.get(AgentToken, token_hash)
            if token is None:
                raise NotFound("no such token")
            token.revoked = True

    # -- console sessions ------------------------------------------------------------

    def create_session(self, agent_id: str, session_hash: str, expires_at: datetime) -> None:
        """Store a console login session.

        Args:
            agent_id: The agent who logged in.
            session_hash: sha256 hex digest of the session cookie value.
            expires_at: When the session stops being valid (timezone-aware).

        Raises:
            InvalidInput: Empty hash or naive ``expires_at``.
            NotFound: No agent has that id.
            Conflict: A session with this hash exists.
        """
        if not session_hash:
            raise InvalidInput("session_hash must not be empty")
        _require_aware(expires_at, "expires_at")
        try:
            with self._write.begin() as session:
                if session.get(Agent, agent_id) is None:
                    raise NotFound(f"no agent {agent_id!r}")
                session.add(
                    AgentSession(
                        session_hash=session_hash,
                        agent_id=agent_id,
                        created_at=utcnow(),
                        expires_at=expires_at,
                    )
                )
                session.flush()
        except IntegrityError as exc:
            raise Conflict("this session already exists") from exc

    def agent_for_session(self, session_hash: str, now: datetime) -> AgentRecord | None:
        """The agent logged in with a console session.

        Args:
            session_hash: sha256 hex digest of the presented cookie value.
            now: The current time (timezone-aware), to check expiry against.

        Returns:
            The agent, or ``None`` when the session is unknown or expired (at ``now`` or
            before) or its agent is deactivated.
        """
        _require_aware(now, "now")
        with self._read() as session:
            row = session.get(AgentSession, session_hash)
            if row is None or row.expires_at <= now:
                return None
            agent = session.get_one(Agent, row.agent_id)
            return _agent(agent) if agent.active else None

    def live_sessions(self, agent_id: str, now: datetime) -> int:
        """How many unexpired console sessions the agent has."""
        _require_aware(now, "now")
        with self._read() as session:
            found = session.scalar(
                select(func.count())
                .select_from(AgentSession)
                .where(AgentSession.agent_id == agent_id, AgentSession.expires_at > now)
            )
            return int(found or 0)

    def delete_session(self, session_hash: str) -> bool:
        """End a console session (log out).

        Args:
            session_hash: sha256 hex digest of the cookie value.

        Returns:
            Whether a session was deleted.
        """
        with self._write.begin() as session:
            result = session.execute(
                delete(AgentSession).where(AgentSession.session_hash == session_hash)
            )
            return cast("CursorResult[Any]", result).rowcount == 1

    # -- handoffs: writes ------------------------------------------------------------

    def enqueue(
        self,
        *,
        conversation_id: str,
        team: str,
        priority: int,
        reasons: Sequence[str],
        evidence: dict[str, Any],
        due_at: datetime,
    ) -> HandoffRecord:
        """Queue a conversation for a human, or update its open handoff.

        A new handoff starts "queued" and moves the conversation to "waiting". When the
        conversation already has an open (queued or assigned) handoff, that one is
        returned instead, with the higher of both priorities, the earlier ``due_at``, the
        new reasons appended and ``evidence`` merged (new keys win); its status and the
        conversation's status do not change. Either way a ``handoff.enqueued`` event is
        logged (``"merged": true`` for the second case).

        Args:
            conversation_id: The conversation to hand off.
            team: The team whose queue it goes to.
            priority: 0 (lowest) to 4 (most urgent).
            reasons: Why, e.g. ``["customer_asked", "frustration"]``.
            evidence: JSON details supporting the reasons.
            due_at: When a human should have picked it up (timezone-aware).

        Returns:
            The open handoff of the conversation.

        Raises:
            InvalidInput: Priority out of range, empty team or reason, naive ``due_at``.
            NotFound: The conversation does not exist.
        """
        team = _text(team, "team", MAX_TEAM_CHARS)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidInput("priority must be an integer")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidInput(f"priority must be {MIN_PRIORITY} to {MAX_PRIORITY}")
        if isinstance(reasons, str):
            raise InvalidInput("reasons must be a list of strings")
        reason_list = _unique(_text(reason, "reason", MAX_TEAM_CHARS) for reason in reasons)
        _require_aware(due_at, "due_at")
        for attempt in range(_RACE_RETRIES):
            try:
                with self._write.begin() as session:
                    conversation = lock_conversation(session, conversation_id)
                    now = utcnow()
                    row = session.scalars(
                        select(Handoff)
                        .where(
                            Handoff.conversation_id == conversation_id,
                            Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                        )
                        .with_for_update()
                    ).one_or_none()
                    if row is not None:
                        return self._merge(
                            session, conversation, row, priority, reason_list, evidence, due_at
                        )
                    row = Handoff(
                        id=new_id(),
                        conversation_id=conversation_id,
                        status="queued",
                        team=team,
                        priority=priority,
                        reasons=reason_list,
                        evidence=dict(evidence),
                        agent_id=None,
                        created_at=now,
                        due_at=due_at,
                        version=1,
                    )
                    session.add(row)
                    session.flush()
                    conversation.status = "waiting"
                    conversation.updated_at = now
                    add_conversation_event(
                        session,
                        type="handoff.enqueued",
                        conversation=conversation,
                        payload={
                            "handoff_id": row.id,
                            "team": team,
                            "priority": priority,
                            "reasons": reason_list,
                            "due_at": due_at.isoformat(),
                            "merged": False,
                        },
                        now=now,
                    )
                    return _handoff(row)
            except IntegrityError:
                # Another enqueue created the open handoff first (only possible for a
                # writer that skipped the conversation lock); the next round merges.
                if attempt == _RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def claim(self, handoff_id: str, agent_id: str) -> HandoffRecord:
        """Take a queued handoff; exactly one of any number of concurrent callers wins.

        The decision is one conditional ``UPDATE ... WHERE id = ? AND status = 'queued'``
        whose row count must be 1. The conversation moves to "agent".

        Args:
            handoff_id: The handoff.
            agent_id: The agent taking it.

        Returns:
            The assigned handoff.

        Raises:
            NotFound: No such handoff or agent.
            Conflict: The handoff is not queued (claimed by someone, or closed), the
                agent is deactivated, or the agent already holds ``capacity`` handoffs.
        """
        with self._write.begin() as session:
            # The agent row is locked first (before the conversation, the same order in
            # every claim), so two claims by one agent cannot both pass the capacity check.
            agent = session.scalars(
                select(Agent).where(Agent.id == agent_id).with_for_update()
            ).one_or_none()
            if agent is None:
                raise NotFound(f"no agent {agent_id!r}")
            if not agent.active:
                raise Conflict(f"agent {agent_id!r} is deactivated")
            held = session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(Handoff.agent_id == agent_id, Handoff.status == "assigned")
            )
            if (held or 0) >= agent.capacity:
                raise Conflict(
                    f"agent {agent.email} already handles {held} conversation(s), their "
                    f"capacity is {agent.capacity}"
                )
            conversation = self._lock_conversation_of(session, handoff_id)
            now = utcnow()
            if not self._update(
                session,
                handoff_id,
                [Handoff.status == "queued"],
                {"status": "assigned", "agent_id": agent_id, "claimed_at": now},
            ):
                raise self._refusal(session, handoff_id, "claim", agent_id)
            row = self._reload(session, handoff_id)
            conversation.status = "agent"
            conversation.updated_at = now
            add_conversation_event(
                session,
                type="handoff.claimed",
                conversation=conversation,
                payload={
                    "handoff_id": row.id,
                    "agent_id": agent_id,
                    "agent_name": agent.name,
                    "wait_seconds": _seconds(row.created_at, now),
                    "overdue": now > row.due_at,
                },
                now=now,
            )
            return _handoff(row)

    def release(self, handoff_id: str, agent_id: str) -> HandoffRecord:
        """Put an assigned handoff back in the queue; only its agent may.

        The conversation moves back to "waiting".

        Args:
            handoff_id: The handoff.
            agent_id: The agent holding it.

        Returns:
            The queued handoff.

        Raises:
            NotFound: No such handoff.
            Conflict: The handoff is not assigned to this agent.
        """
        with self._write.begin() as session:
            conversation = self._lock_conversation_of(session, handoff_id)
            now = utcnow()
            claimed_at = self._reload(session, handoff_id).claimed_at
            if not self._update(
                session,
                handoff_id,
                [Handoff.status == "assigned", Handoff.agent_id == agent_id],
                {"status": "queued", "agent_id": None, "claimed_at": None},
            ):
                raise self._refusal(session, handoff_id, "release", agent_id)
            row = self._reload(session, handoff_id)
            conversation.status = "waiting"
            conversation.updated_at = now
            add_conversation_event(
                session,
                type="handoff.released",
                conversation=conversation,
                payload={
                    "handoff_id": row.id,
                    "agent_id": agent_id,
                    "held_seconds": _seconds(claimed_at, now),
                },
                now=now,
            )
            return _handoff(row)

    def reassign(self, handoff_id: str, to_agent_id: str) -> HandoffRecord:
        """Give an open handoff (queued or assigned) to a given agent (an admin's action).

        Args:
            handoff_id: The handoff.
            to_agent_id: The agent who gets it.

        Returns:
            The handoff, assigned to ``to_agent_id`` (``claimed_at`` is now).

        Raises:
            NotFound: No such handoff or agent.
            Conflict: The handoff is closed or already assigned to that agent, or the
                agent is deactivated.
        """
        with self._write.begin() as session:
            self._active_agent(session, to_agent_id)
            conversation = self._lock_conversation_of(session, handoff_id)
            now = utcnow()
            from_agent_id = self._reload(session, handoff_id).agent_id
            if not self._update(
                session,
                handoff_id,
                [
                    Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                    Handoff.agent_id.is_distinct_from(to_agent_id),
                ],
                {"status": "assigned", "agent_id": to_agent_id, "claimed_at": now},
            ):
                raise self._refusal(session, handoff_id, "reassign", to_agent_id)
            row = self._reload(session, handoff_id)
            conversation.status = "agent"
            conversation.updated_at = now
            add_conversation_event(
                session,
                type="handoff.reassigned",
                conversation=conversation,
                payload={
                    "handoff_id": row.id,
                    "agent_id": to_agent_id,
                    "from_agent_id": from_agent_id,
                    "wait_seconds": _seconds(row.created_at, now),
                },
                now=now,
            )
            return _handoff(row)

    def resolve(self, handoff_id: str, agent_id: str, resolution_code: str) -> HandoffRecord:
        """Close an assigned handoff as resolved; only its agent may.

        The conversation moves to "resolved".

        Args:
            handoff_id: The handoff.
            agent_id: The agent holding it.
            resolution_code: How it was resolved, e.g. "refund_issued".

        Returns:
            The resolved handoff.

        Raises:
            InvalidInput: Empty or too long resolution code.
            NotFound: No such handoff.
            Conflict: The handoff is not assigned to this agent.
        """
        resolution_code = _text(resolution_code, "resolution code", MAX_RESOLUTION_CODE_CHARS)
        return self._close(
            handoff_id,
            agent_id,
            action="resolve",
            values={"status": "resolved", "resolution_code": resolution_code},
            at_column="resolved_at",
            conversation_status="resolved",
            event_type="handoff.resolved",
        )

    def return_to_bot(self, handoff_id: str, agent_id: str) -> HandoffRecord:
        """Hand an assigned conversation back to the bot; only the handoff's agent may.

        The conversation moves to "bot".

        Args:
            handoff_id: The handoff.
            agent_id: The agent holding it.

        Returns:
            The returned handoff.

        Raises:
            NotFound: No such handoff.
            Conflict: The handoff is not assigned to this agent.
        """
        return self._close(
            handoff_id,
            agent_id,
            action="return",
            values={"status": "returned"},
            at_column="returned_at",
            conversation_status="bot",
            event_type="handoff.returned",
        )

    def record_first_reply(self, handoff_id: str, at: datetime) -> bool:
        """Note when a human first answered; later calls change nothing.

        Args:
            handoff_id: The handoff.
            at: When the reply was sent (timezone-aware).

        Returns:
            Whether this call set it (``False`` when it was already set).

        Raises:
            InvalidInput: Naive ``at``.
            NotFound: No such handoff.
        """
        _require_aware(at, "at")
        with self._write.begin() as session:
            conversation = self._lock_conversation_of(session, handoff_id)
            if not self._update(
                session, handoff_id, [Handoff.first_reply_at.is_(None)], {"first_reply_at": at}
            ):
                return False
            row = self._reload(session, handoff_id)
            _log_first_reply(session, conversation, row, row.agent_id, at)
            return True

    def agent_message(self, conversation_id: str, agent_id: str, text: str) -> MessageRecord:
        """Store a human agent's message to the customer; only the owning agent may send.

        In one transaction: the message (role "agent", annotated with the agent's id and
        name), an ``agent.message`` event for live streams, and, the first time, the
        handoff's ``first_reply_at`` with a ``handoff.first_reply`` event.

        Args:
            conversation_id: The conversation.
            agent_id: The agent sending it.
            text: The message (already validated by the caller).

        Returns:
            The stored message.

        Raises:
            NotFound: No such conversation or agent.
            Conflict: The conversation is not assigned to this agent.
        """
        with self._write.begin() as session:
            conversation = lock_conversation(session, conversation_id)
            agent = self._active_agent(session, agent_id)
            row = session.scalars(
                select(Handoff).where(
                    Handoff.conversation_id == conversation_id,
                    Handoff.status == "assigned",
                    Handoff.agent_id == agent_id,
                )
            ).one_or_none()
            if row is None:
                raise Conflict(
                    "claim the conversation before replying: it is not assigned to you "
                    f"(status {conversation.status})"
                )
            now = utcnow()
            message = Message(
                conversation_id=conversation_id,
                role="agent",
                text=text,
                annotations={"agent_id": agent.id, "agent_name": agent.name},
                created_at=now,
            )
            session.add(message)
            conversation.updated_at = now
            session.flush()
            add_conversation_event(
                session,
                type="agent.message",
                conversation=conversation,
                payload={"message_id": message.id, "agent_id": agent.id, "handoff_id": row.id},
                now=now,
            )
            if row.first_reply_at is None:
                row.first_reply_at = now
                row.version += 1
                _log_first_reply(session, conversation, row, agent.id, now)
            return MessageRecord(
                id=message.id,
                conversation_id=conversation_id,
                role="agent",
                text=text,
                annotations=dict(message.annotations),
                created_at=now,
            )

    def add_note(self, conversation_id: str, agent_id: str, text: str) -> int:
        """Add an internal note (never shown to the customer) as an ``agent.note`` event.

        Args:
            conversation_id: The conversation.
            agent_id: The agent writing it.
            text: The note (already validated by the caller).

        Returns:
            The event's id.

        Raises:
            NotFound: No such conversation or agent.
        """
        with self._write.begin() as session:
            conversation = lock_conversation(session, conversation_id)
            agent = self._active_agent(session, agent_id)
            row = Event(
                type="agent.note",
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
                payload={"text": text, "agent_id": agent.id, "agent_name": agent.name},
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    # -- handoffs: reads -------------------------------------------------------------

    def last_returned(self, conversation_id: str) -> HandoffRecord | None:
        """The conversation's most recent handoff that was handed back to the bot.

        Args:
            conversation_id: The conversation.

        Returns:
            The handoff, or ``None`` when none was returned.
        """
        with self._read() as session:
            row = session.scalars(
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id, Handoff.status == "returned")
                .order_by(Handoff.returned_at.desc())
                .limit(1)
            ).one_or_none()
            return _handoff(row) if row is not None else None

    def count_by_status(self) -> dict[str, int]:
        """How many handoffs are in each status."""
        with self._read() as session:
            rows = session.execute(
                select(Handoff.status, func.count()).group_by(Handoff.status)
            ).all()
        return {status: int(count) for status, count in rows}

    def last_for_conversation(self, conversation_id: str) -> HandoffRecord | None:
        """The conversation's newest handoff, whatever its status."""
        with self._read() as session:
            row = session.scalars(
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id)
                .order_by(Handoff.created_at.desc(), Handoff.id.desc())
                .limit(1)
            ).one_or_none()
            return _handoff(row) if row is not None else None

    def online_agents(self, team: str) -> int:
        """How many active agents of ``team`` (or admins) are online now."""
        with self._read() as session:
            rows = session.execute(
                select(Agent.teams, Agent.role).where(Agent.active, Agent.online)
            ).all()
        return sum(1 for teams, role in rows if role == "admin" or team in (teams or []))

    def recent_waits(self, team: str, limit: int = 20) -> list[float]:
        """Seconds from queued to claimed of the team's latest claimed handoffs.

        Args:
            team: The team.
            limit: How many of the newest claims to look at.

        Returns:
            Wait times in seconds, newest first.
        """
        with self._read() as session:
            rows = session.execute(
                select(Handoff.created_at, Handoff.claimed_at)
                .where(Handoff.team == team, Handoff.claimed_at.is_not(None))
                .order_by(Handoff.claimed_at.desc())
                .limit(max(limit, 0))
            ).all()
        return [
            max((claimed - created).total_seconds(), 0.0) for created, claimed in rows if claimed
        ]

    def agents_by_ids(self, ids: Iterable[str]) -> dict[str, AgentRecord]:
        """The agents with these ids, by id (unknown ids are left out)."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        with self._read() as session:
            return {
                row.id: _agent(row)
                for row in session.scalars(select(Agent).where(Agent.id.in_(wanted)))
            }

    def get(self, handoff_id: str) -> HandoffRecord | None:
        """Load a handoff by id.

        Args:
            handoff_id: The handoff's id.

        Returns:
            The handoff, or ``None`` when there is none with that id.
        """
        with self._read() as session:
            row = session.get(Handoff, handoff_id)
            return _handoff(row) if row is not None else None

    def open_for_conversation(self, conversation_id: str) -> HandoffRecord | None:
        """The conversation's open (queued or assigned) handoff.

        Args:
            conversation_id: The conversation.

        Returns:
            The handoff, or ``None`` when the conversation has no open handoff.
        """
        with self._read() as session:
            row = session.scalars(
                select(Handoff).where(
                    Handoff.conversation_id == conversation_id,
                    Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                )
            ).one_or_none()
            return _handoff(row) if row is not None else None

    def queue(self, team: str | None = None, limit: int = 100) -> list[HandoffRecord]:
        """Queued handoffs in the order they should be taken.

        Args:
            team: Only this team's queue.
            limit: At most this many handoffs.

        Returns:
            The handoffs, most urgent first, then oldest first.
        """
        query = select(Handoff).where(Handoff.status == "queued")
        if team is not None:
            query = query.where(Handoff.team == team)
        query = query.order_by(Handoff.priority.desc(), Handoff.created_at, Handoff.id).limit(
            max(limit, 0)
        )
        with self._read() as session:
            return [_handoff(row) for row in session.scalars(query)]

    def assigned_count(self, agent_id: str) -> int:
        """How many handoffs an agent holds now (to compare with its capacity).

        Args:
            agent_id: The agent.

        Returns:
            The number of handoffs assigned to the agent.
        """
        with self._read() as session:
            count = session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(Handoff.agent_id == agent_id, Handoff.status == "assigned")
            )
            return int(count or 0)

    # -- helpers ---------------------------------------------------------------------

    def _close(
        self,
        handoff_id: str,
        agent_id: str,
        *,
        action: str,
        values: dict[str, Any],
        at_column: str,
        conversation_status: str,
        event_type: str,
    ) -> HandoffRecord:
        with self._write.begin() as session:
            conversation = self._lock_conversation_of(session, handoff_id)
            now = utcnow()
            if not self._update(
                session,
                handoff_id,
                [Handoff.status == "assigned", Handoff.agent_id == agent_id],
                {**values, at_column: now},
            ):
                raise self._refusal(session, handoff_id, action, agent_id)
            row = self._reload(session, handoff_id)
            conversation.status = conversation_status
            conversation.updated_at = now
            payload: dict[str, Any] = {
                "handoff_id": row.id,
                "agent_id": agent_id,
                "wait_seconds": _seconds(row.created_at, row.claimed_at),
                "handle_seconds": _seconds(row.claimed_at, now),
                "total_seconds": _seconds(row.created_at, now),
                "first_reply_seconds": _seconds(row.created_at, row.first_reply_at),
            }
            if row.resolution_code is not None:
                payload["resolution_code"] = row.resolution_code
            add_conversation_event(
                session, type=event_type, conversation=conversation, payload=payload, now=now
            )
            return _handoff(row)

    @staticmethod
    def _merge(
        session: Session,
        conversation: Conversation,
        row: Handoff,
        priority: int,
        reasons: list[str],
        evidence: dict[str, Any],
        due_at: datetime,
    ) -> HandoffRecord:
        before = (row.priority, list(row.reasons or []), dict(row.evidence or {}), row.due_at)
        row.priority = max(row.priority, priority)
        row.reasons = _unique([*(row.reasons or []), *reasons])
        row.evidence = {**(row.evidence or {}), **evidence}
        row.due_at = min(row.due_at, due_at)
        if (row.priority, row.reasons, row.evidence, row.due_at) != before:
            row.version += 1
        session.flush()
        now = utcnow()
        add_conversation_event(
            session,
            type="handoff.enqueued",
            conversation=conversation,
            payload={
                "handoff_id": row.id,
                "team": row.team,
                "priority": row.priority,
                "reasons": list(row.reasons),
                "due_at": row.due_at.isoformat(),
                "merged": True,
            },
            now=now,
        )
        return _handoff(row)

    @staticmethod
    def _lock_conversation_of(session: Session, handoff_id: str) -> Conversation:
        # A handoff's conversation never changes, so reading it unlocked is safe; locking
        # the conversation before the handoff keeps one lock order for every writer.
        conversation_id = session.scalar(
            select(Handoff.conversation_id).where(Handoff.id == handoff_id)
        )
        if conversation_id is None:
            raise NotFound(f"no handoff {handoff_id!r}")
        return lock_conversation(session, conversation_id)

    @staticmethod
    def _active_agent(session: Session, agent_id: str) -> Agent:
        agent = session.get(Agent, agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id!r}")
        if not agent.active:
            raise Conflict(f"agent {agent_id!r} is deactivated")
        return agent

    @staticmethod
    def _update(
        session: Session,
        handoff_id: str,
        conditions: Sequence[ColumnElement[bool]],
        values: dict[str, Any],
    ) -> bool:
        """One conditional UPDATE of a handoff (bumping ``version``); whether it matched."""
        result = session.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, *conditions)
            .values(**values, version=Handoff.version + 1)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount == 1

    @staticmethod
    def _reload(session: Session, handoff_id: str) -> Handoff:
        return session.scalars(
            select(Handoff)
            .where(Handoff.id == handoff_id)
            .execution_options(populate_existing=True)
        ).one()

    @staticmethod
    def _refusal(session: Session, handoff_id: str, action: str, agent_id: str) -> Conflict:
        row = HandoffStore._reload(session, handoff_id)
        if row.status == "assigned" and action == "claim":
            return Conflict(f"handoff {handoff_id} already claimed by agent {row.agent_id}")
        if row.status == "assigned" and action == "reassign" and row.agent_id == agent_id:
            return Conflict(f"handoff {handoff_id} is already assigned to agent {agent_id}")
        if row.status == "assigned" and row.agent_id != agent_id:
            return Conflict(f"handoff {handoff_id} is assigned to another agent")
        return Conflict(f"cannot {action} handoff {handoff_id}: it is {row.status}")
