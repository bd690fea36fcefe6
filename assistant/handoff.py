"""Human hand-off: the ownership state machine, what the customer is told, and agent actions.

A conversation is owned by the bot ("bot"), waiting for a person ("waiting"), owned by one
agent ("agent") or closed ("resolved"). :class:`HandoffService` is the one place that
moves it between those states; the storage layer makes each move a single conditional
write (so a claim has exactly one winner) and logs a ``handoff.*`` event with it. This
module knows nothing of HTTP or SQL.

Customer-visible moves also leave a short ``system`` message in the conversation ("Alex
joined the conversation."), so the transcript and the widget tell the same story.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from assistant.answer.grounding import check_text
from assistant.errors import Forbidden, InvalidInput, NotFound
from assistant.handoff_context import ContextPacket, PreviousConversation, build_context_packet
from assistant.llm import ChatModel, LLMError, failure_usage
from assistant.policy import EscalationPolicy
from assistant.storage.handoff_repo import HandoffStore
from assistant.storage.records import AgentRecord, ConversationRecord, HandoffRecord, MessageRecord
from assistant.storage.repos import Store

logger = logging.getLogger(__name__)

# While a person owns the conversation, or one is on the way, the bot stays silent.
HUMAN_OWNED = frozenset({"waiting", "agent"})
DEFAULT_TEAM = "support"
MAX_EMAIL_CHARS = 320
RECENT_WAITS = 20  # claims that the expected-wait estimate looks at
SUMMARY_CACHE = 1000  # conversations whose model summary is kept in memory


@dataclass(frozen=True)
class Availability:
    """Whether a person can pick a hand-off up soon, and what to tell the customer.

    Attributes:
        open: Within business hours.
        agents_online: Active agents of the team (or admins) online now.
        expected_wait_minutes: The estimate given to the customer; ``None`` when nobody
            can come (closed or no one online).
        notice: The customer-facing sentence.
    """

    open: bool
    agents_online: int
    expected_wait_minutes: int | None
    notice: str
    email_left: bool = False  # the customer already left an address for follow-up

    @property
    def staffed(self) -> bool:
        """Someone can take the hand-off now."""
        return self.expected_wait_minutes is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the API and annotations."""
        return {
            "open": self.open,
            "agents_online": self.agents_online,
            "expected_wait_minutes": self.expected_wait_minutes,
            "notice": self.notice,
            "can_leave_email": not self.staffed and not self.email_left,
        }


class HandoffService:
    """Enqueues hand-offs, tells the customer what happens, and carries out agent actions."""

    def __init__(
        self,
        *,
        store: Store,
        handoffs: HandoffStore,
        policy: EscalationPolicy,
        max_message_chars: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        summarizer: ChatModel | None = None,
    ) -> None:
        self._store = store
        self._handoffs = handoffs
        self._policy = policy
        self._max_chars = max_message_chars
        self._clock = clock
        self._summarizer = summarizer
        # (conversation id, newest message id) -> summary lines: a queue page reads the
        # same packets again and again; the model is asked once per new message.
        self._summaries: OrderedDict[tuple[str, int], list[str]] = OrderedDict()
        self._summaries_lock = threading.Lock()

    @property
    def handoffs(self) -> HandoffStore:
        """The hand-off storage (agents, tokens, sessions, queue)."""
        return self._handoffs

    # -- customer side ---------------------------------------------------------------

    def availability(self, team: str, priority: int) -> Availability:
        """Who can come, and how soon, for a hand-off of ``priority`` to ``team``.

        The wait is the median of the team's recent queue-to-claim times (the SLA of the
        priority until there are three), stretched by the hand-offs queued ahead per
        online agent, and never above the SLA.
        """
        now = self._clock()
        messages = self._policy.messages
        is_open = self._policy.is_open(now)
        online = self._handoffs.online_agents(team)
        if not is_open or online == 0:
            reason = (
                f"our hours are {self._policy.hours_text()}"
                if not is_open
                else "no one from the team is online"
            )
            return Availability(
                open=is_open,
                agents_online=online,
                expected_wait_minutes=None,
                notice=messages.offline.replace("{hours}", reason),
            )
        sla = self._policy.sla_minutes(priority)
        waits = self._handoffs.recent_waits(team, RECENT_WAITS)
        base = statistics.median(waits) / 60 if len(waits) >= 3 else float(sla)
        ahead = sum(1 for h in self._handoffs.queue(team) if h.priority >= priority)
        minutes = max(1, min(sla, math.ceil(base * (1 + ahead / online))))
        notice = messages.expected_wait.replace("{team}", team).replace("{minutes}", str(minutes))
        return Availability(
            open=True, agents_online=online, expected_wait_minutes=minutes, notice=notice
        )

    def enqueue(
        self,
        conversation_id: str,
        *,
        team: str | None,
        priority: int,
        reasons: list[str],
        evidence: dict[str, Any],
    ) -> HandoffRecord:
        """Queue the conversation for a person (or update its open hand-off)."""
        return self._handoffs.enqueue(
            conversation_id=conversation_id,
            team=team or DEFAULT_TEAM,
            priority=priority,
            reasons=reasons,
            evidence=evidence,
            due_at=self._clock() + timedelta(minutes=self._policy.sla_minutes(priority)),
        )

    def request_by_customer(
        self, conversation: ConversationRecord
    ) -> tuple[HandoffRecord, Availability]:
        """The customer pressed "Talk to a person": queue the conversation and say so.

        Returns:
            The open hand-off, and who can come when (its notice is stored in the
            conversation as a system message).

        Raises:
            InvalidInput: The conversation is resolved.
        """
        if conversation.status == "resolved":
            raise InvalidInput("this conversation is resolved; start a new one")
        open_handoff = self._handoffs.open_for_conversation(conversation.id)
        if open_handoff is not None:
            return open_handoff, self.availability(open_handoff.team, open_handoff.priority)
        priority, team = self._policy.rule_for("human_requested")
        team = team or DEFAULT_TEAM
        available = self.availability(team, priority)
        handoff = self.enqueue(
            conversation.id,
            team=team,
            priority=priority,
            reasons=["human_requested"],
            evidence={"human_requested": "the customer pressed 'Talk to a person'"},
        )
        self._system_message(conversation.id, available.notice, kind="handoff_notice")
        return handoff, available

    def leave_email(self, conversation: ConversationRecord, email: str) -> None:
        """Record the address a customer left for follow-up when no one could come.

        Raises:
            InvalidInput: Not an email address.
        """
        email = email.strip()
        if not (0 < len(email) <= MAX_EMAIL_CHARS) or "@" not in email.strip("@"):
            raise InvalidInput("give an email address like name@example.com")
        self._store.append_event(
            type="handoff.followup_requested",
            conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            payload={"email": email},
        )
        self._system_message(
            conversation.id, f"Thanks, we will follow up at {email}.", kind="followup"
        )

    def open_handoff(self, conversation_id: str) -> HandoffRecord | None:
        """The conversation's queued or assigned hand-off."""
        return self._handoffs.open_for_conversation(conversation_id)

    def open_with_availability(
        self, conversation_id: str
    ) -> tuple[HandoffRecord, Availability] | None:
        """The open hand-off and who can come when, as the customer should see it now:
        once an email was left for follow-up, the widget no longer asks for one."""
        handoff = self._handoffs.open_for_conversation(conversation_id)
        if handoff is None:
            return None
        available = self.availability(handoff.team, handoff.priority)
        if not available.staffed and self._store.has_event(
            conversation_id, "handoff.followup_requested"
        ):
            available = replace(available, email_left=True)
        return handoff, available

    def returned_reasons(self, conversation_id: str) -> frozenset[str]:
        """Reasons of the hand-off last handed back to the bot (for the loop guard)."""
        returned = self._handoffs.last_returned(conversation_id)
        return frozenset(returned.reasons) if returned is not None else frozenset()

    # -- agent side --------------------------------------------------------------------

    def queue(self, team: str | None = None, limit: int = 50) -> list[HandoffRecord]:
        """Queued hand-offs, most urgent first, then longest waiting."""
        return self._handoffs.queue(team, limit)

    def waiting(
        self, team: str | None = None, limit: int = 50
    ) -> list[tuple[HandoffRecord, ContextPacket | None]]:
        """Queued hand-offs in order, each with its conversation's context packet."""
        found = []
        for handoff in self.queue(team, limit):
            conversation = self._store.get_conversation(handoff.conversation_id)
            found.append((handoff, self.context(conversation) if conversation else None))
        return found

    def get(self, handoff_id: str) -> HandoffRecord:
        """A hand-off by id.

        Raises:
            NotFound: No such hand-off.
        """
        found = self._handoffs.get(handoff_id)
        if found is None:
            raise NotFound(f"no handoff {handoff_id!r}")
        return found

    def claim(self, handoff_id: str, agent: AgentRecord) -> HandoffRecord:
        """Take a queued hand-off; exactly one concurrent caller wins (others: Conflict).

        Raises:
            Forbidden: The hand-off is for a team the agent does not work for.
        """
        queued = self.get(handoff_id)
        if agent.role != "admin" and queued.team not in agent.teams:
            raise Forbidden(
                f"this hand-off is for the {queued.team} team; you work for "
                f"{', '.join(agent.teams) or 'no team'}"
            )
        handoff = self._handoffs.claim(handoff_id, agent.id)
        self._system_message(
            handoff.conversation_id,
            self._policy.messages.joined.replace("{agent}", agent.name),
            kind="agent_joined",
            extra={"agent_name": agent.name},
        )
        return handoff

    def release(self, handoff_id: str, agent: AgentRecord) -> HandoffRecord:
        """Put a hand-off the agent holds back in the queue."""
        return self._handoffs.release(handoff_id, agent.id)

    def reassign(self, handoff_id: str, to_agent_id: str, by: AgentRecord) -> HandoffRecord:
        """Give a hand-off to another agent: its owner or an admin may.

        Raises:
            Forbidden: The caller neither holds it nor is an admin.
        """
        current = self.get(handoff_id)
        if by.role != "admin" and current.agent_id != by.id:
            raise Forbidden("only the agent holding a hand-off, or an admin, may reassign it")
        return self._handoffs.reassign(handoff_id, to_agent_id)

    def resolve(self, conversation_id: str, agent: AgentRecord, code: str) -> HandoffRecord:
        """Close the conversation's hand-off as resolved with a resolution code."""
        handoff = self._owned(conversation_id)
        resolved = self._handoffs.resolve(handoff.id, agent.id, code)
        self._system_message(conversation_id, self._policy.messages.resolved, kind="resolved")
        return resolved

    def return_to_bot(self, conversation_id: str, agent: AgentRecord) -> HandoffRecord:
        """Hand the conversation back to the bot, explicitly."""
        handoff = self._owned(conversation_id)
        returned = self._handoffs.return_to_bot(handoff.id, agent.id)
        self._system_message(conversation_id, self._policy.messages.returned, kind="returned")
        return returned

    def reply(self, conversation_id: str, agent: AgentRecord, text: str) -> MessageRecord:
        """Send the agent's message to the customer (the agent must own the conversation)."""
        return self._handoffs.agent_message(conversation_id, agent.id, self._text(text))

    def note(self, conversation_id: str, agent: AgentRecord, text: str) -> int:
        """Add an internal note; customers never see notes."""
        return self._handoffs.add_note(conversation_id, agent.id, self._text(text))

    def context(self, conversation: ConversationRecord) -> ContextPacket:
        """Everything an agent needs to take the conversation over, built from the log."""
        messages = self._store.list_messages(conversation_id=conversation.id, limit=1000)
        handoff = self._handoffs.open_for_conversation(conversation.id)
        if handoff is None:
            handoff = self._handoffs.last_for_conversation(conversation.id)
        customer = (
            self._store.get_customer(conversation.customer_id) if conversation.customer_id else None
        )
        previous = []
        if conversation.customer_id:
            previous = [
                PreviousConversation(
                    id=record.id,
                    started_at=record.created_at,
                    status=record.status,
                    first_message=first,
                    messages=count,
                )
                for record, first, count in self._store.customer_conversations(
                    conversation.customer_id, exclude=conversation.id
                )
            ]
        packet = build_context_packet(
            messages=messages, handoff=handoff, customer=customer, previous=previous
        )
        if self._summarizer is not None and messages:
            lines = self._llm_summary(conversation.id, messages[-1].id, packet)
            if lines:
                packet = replace(packet, summary=lines, summary_source="llm")
        return packet

    def _llm_summary(self, conversation_id: str, newest: int, packet: ContextPacket) -> list[str]:
        """The model's summary, cached per newest message; [] when the model fails."""
        key = (conversation_id, newest)
        with self._summaries_lock:
            if key in self._summaries:
                self._summaries.move_to_end(key)
                return self._summaries[key]
        assert self._summarizer is not None
        transcript = packet.transcript[-40:]
        system, user = self._summarizer.render(
            "handoff_summary", reasons=packet.reasons, transcript=transcript
        )
        try:
            completion = self._summarizer.complete("handoff_summary", system, user)
            # Agents read it: the same leak and link checks as customer answers.
            checked = check_text(
                completion.text, canary=self._summarizer.canary, system_prompt=system,
                allowed_text="\n".join(str(m.get("text", "")) for m in transcript),
            )
            if checked.leak or checked.no_answer:
                raise LLMError(f"handoff_summary: blocked ({checked.leak or 'no answer'})",
                               kind=f"leak_{checked.leak}" if checked.leak else "empty",
                               attempts=completion.attempts, latency_ms=completion.latency_ms)
        except LLMError as exc:
            logger.warning("hand-off summary fell back to extractive: %s", exc)
            self._store.append_event(
                type="llm.called", conversation_id=conversation_id,
                payload=failure_usage("handoff_summary", self._summarizer.model, exc,
                                      streamed=False),
            )
            self._store.append_event(
                type="llm.failed", conversation_id=conversation_id,
                payload={"prompt": "handoff_summary", "error": str(exc), "kind": exc.kind},
            )
            return []
        self._store.append_event(
            type="llm.called", conversation_id=conversation_id, payload=completion.usage()
        )
        text = checked.text
        lines = [line.strip().lstrip("-*• ").strip() for line in text.splitlines()]
        lines = [line[:300] for line in lines if line][:4]
        with self._summaries_lock:
            self._summaries[key] = lines
            while len(self._summaries) > SUMMARY_CACHE:
                self._summaries.popitem(last=False)
        return lines

    def notes(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's internal notes, oldest first."""
        return [
            {
                "id": event.id,
                "text": event.payload.get("text", ""),
                "agent_name": event.payload.get("agent_name"),
                "created_at": event.created_at.isoformat(),
            }
            for event in self._store.events_after(
                after=0, types=["agent.note"], conversation_id=conversation_id, limit=1000
            )
        ]

    def stats(self) -> dict[str, int]:
        """Queue figures and the ownership promise, counted from the log.

        ``bot_messages_while_human_owned`` must stay 0: the bot never answers while a
        person owns the conversation or is on the way. ``answers_suppressed`` counts bot
        answers dropped because a hand-off happened while they were being composed.
        """
        by_status = self._handoffs.count_by_status()
        return {
            "queued": by_status.get("queued", 0),
            "assigned": by_status.get("assigned", 0),
            "resolved": by_status.get("resolved", 0),
            "returned": by_status.get("returned", 0),
            "bot_messages_while_human_owned": self._store.count_bot_messages_while_owned(
                sorted(HUMAN_OWNED)
            ),
            "answers_suppressed": self._store.count_events("answer.suppressed"),
        }

    # -- helpers -----------------------------------------------------------------------

    def _owned(self, conversation_id: str) -> HandoffRecord:
        handoff = self._handoffs.open_for_conversation(conversation_id)
        if handoff is None:
            raise NotFound(f"conversation {conversation_id!r} has no open hand-off")
        return handoff

    def _text(self, text: str) -> str:
        cleaned = text.strip()
        if not cleaned:
            raise InvalidInput("text is empty")
        if len(cleaned) > self._max_chars:
            raise InvalidInput(f"text is {len(cleaned)} characters; the limit is {self._max_chars}")
        if "\x00" in cleaned:
            raise InvalidInput("text contains a NUL character")
        return cleaned

    def _system_message(
        self, conversation_id: str, text: str, *, kind: str, extra: dict[str, Any] | None = None
    ) -> None:
        # The state change is already committed; a lost notice must not undo it.
        try:
            self._store.add_message(
                conversation_id=conversation_id,
                role="system",
                text=text,
                annotations={"kind": kind, **(extra or {})},
                event_type="system.message",
            )
        except Exception:
            logger.exception("could not store the %s notice in %s", kind, conversation_id)
