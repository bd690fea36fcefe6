"""The hand-off context packet, built from plain records (no database).

Annotations are produced by the real ``Classification.as_dict()`` and
``TurnResult.annotations()``, so these tests break if the stored shape drifts away from
what :mod:`assistant.handoff_context` reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from assistant.answer.types import Answer, Citation
from assistant.engine import TurnResult
from assistant.handoff_context import (
    ContextPacket,
    PreviousConversation,
    build_context_packet,
    summarize_extractive,
)
from assistant.policy import Action, Decision
from assistant.storage.records import CustomerRecord, HandoffRecord, MessageRecord
from assistant.understanding.churn import ChurnSignal
from assistant.understanding.classify import Classification
from assistant.understanding.frustration import Cue, FrustrationResult
from assistant.understanding.intent import IntentPrediction
from assistant.understanding.sentiment import SentimentResult

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ARTICLES = {
    "reset-password": "Reset your password",
    "two-factor": "Two-factor authentication",
    "refunds": "Refunds",
}


def classification(
    intent: str = "login_access",
    *,
    confidence: float = 0.9,
    sentiment: str = "neutral",
    frustration: float = 0.0,
    cues: tuple[tuple[str, str], ...] = (),
    churn: tuple[tuple[str, str], ...] = (),
) -> Classification:
    return Classification(
        intent=IntentPrediction(label=intent, confidence=confidence, top=[(intent, confidence)]),
        sentiment=SentimentResult(label=sentiment, scores={sentiment: 0.9}),
        frustration=FrustrationResult(
            score=frustration, cues=[Cue(name=n, text=t) for n, t in cues]
        ),
        churn=[ChurnSignal(kind=k, text=t) for k, t in churn],
    )


class Chat:
    """A conversation built message by message: increasing ids, one minute apart."""

    def __init__(self) -> None:
        self.messages: list[MessageRecord] = []
        self._last: Classification | None = classification()

    def _add(self, role: str, text: str, annotations: dict[str, Any]) -> MessageRecord:
        n = len(self.messages) + 1
        message = MessageRecord(
            id=100 + n,
            conversation_id="conv-1",
            role=role,
            text=text,
            annotations=annotations,
            created_at=T0 + timedelta(minutes=n),
        )
        self.messages.append(message)
        return message

    def customer(
        self, text: str, *, bare: bool = False, old: bool = False, **understood: Any
    ) -> MessageRecord:
        """A customer message. ``bare``: stored without annotations, but the bot's reply
        still carries them; ``old``: neither has them (rows from before classification)."""
        self._last = None if old else classification(**understood)
        if bare or self._last is None:
            return self._add("customer", text, {})
        return self._add("customer", text, self._last.as_dict())

    def bot(
        self,
        text: str = "Here is how.",
        *,
        cites: tuple[str, ...] = (),
        abstained: bool = False,
        action: Action = Action.ANSWER,
        reasons: tuple[str, ...] = (),
    ) -> MessageRecord:
        """A bot reply annotated exactly as the engine does it."""
        turn = TurnResult(
            answer=Answer(
                text=text,
                citations=[
                    Citation(n=i + 1, article_id=a, title=ARTICLES[a], url=f"https://help/{a}")
                    for i, a in enumerate(cites)
                ],
                abstained=abstained,
            ),
            retrieval=None,
            decision=Decision(
                action=action,
                reasons=list(reasons),
                priority=2 if reasons else 0,
                evidence={r: f"why {r}" for r in reasons},
                team="support" if action == Action.HANDOFF else None,
            ),
            classification=self._last or classification(),
        )
        annotations = turn.annotations()
        if self._last is None:
            for key in ("intent", "sentiment", "frustration", "churn_signals"):
                del annotations[key]
        return self._add("assistant", text, annotations)

    def fallback(self) -> MessageRecord:
        """The reply stored when the engine raised (see ConversationService._answer)."""
        return self._add(
            "assistant",
            "Sorry, something went wrong on our side while answering.",
            {"answerer": "fallback", "abstained": True, "citations": [],
             "decision": {"action": "answer_and_offer_human", "reasons": ["bot_failure"],
                          "priority": 2, "evidence": {"bot_failure": "RuntimeError"},
                          "team": None}},
        )

    def agent(self, text: str, name: str = "Ann Agent") -> MessageRecord:
        return self._add("agent", text, {"agent_id": "agent-1", "agent_name": name})

    def note(self, text: str) -> MessageRecord:
        return self._add("note", text, {"agent_id": "agent-1", "agent_name": "Ann Agent"})

    def summary(self, max_lines: int = 4) -> list[str]:
        return summarize_extractive(self.messages, max_lines=max_lines)

    def packet(
        self,
        *,
        handoff: HandoffRecord | None = None,
        customer: CustomerRecord | None = None,
        previous: tuple[PreviousConversation, ...] = (),
    ) -> ContextPacket:
        return build_context_packet(
            messages=self.messages, handoff=handoff, customer=customer, previous=previous
        )

    def articles(self, handoff: HandoffRecord | None = None) -> dict[str, dict[str, Any]]:
        return {a["article_id"]: a for a in self.packet(handoff=handoff).articles_tried}


def make_handoff(
    created_at: datetime,
    *,
    reasons: tuple[str, ...] = ("repeated_question",),
    evidence: dict[str, Any] | None = None,
) -> HandoffRecord:
    return HandoffRecord(
        id="h" * 32,
        conversation_id="conv-1",
        status="queued",
        team="support",
        priority=2,
        reasons=reasons,
        evidence=evidence if evidence is not None else {"repeated_question": 'repeats "x"'},
        agent_id=None,
        created_at=created_at,
        due_at=created_at + timedelta(hours=1),
        claimed_at=None,
        first_reply_at=None,
        resolved_at=None,
        returned_at=None,
        resolution_code=None,
        version=1,
    )


@pytest.fixture
def chat() -> Chat:
    return Chat()


@pytest.fixture
def customer() -> CustomerRecord:
    return CustomerRecord(
        id="cust-1",
        external_id="u-42",
        email="jo@example.com",
        name="Jo <b>Doe</b>",
        plan="pro",
        verified=True,
        created_at=T0 - timedelta(days=90),
    )


# --- summary -------------------------------------------------------------------------------


@pytest.mark.parametrize("old", [False, True], ids=["annotated", "no-annotations"])
def test_summary_skips_greetings_and_leading_hello(chat: Chat, old: bool) -> None:
    chat.customer("Hello there!", old=old, intent="greeting")
    chat.bot("Hi! Ask me anything.")
    chat.customer("Hi. I can't log in to my account since this morning.", old=old)
    summary = chat.summary()
    assert summary[0] == "Asked: I can't log in to my account since this morning."
    assert not any("Hello there" in line for line in summary)


def test_greeting_glued_to_the_problem_is_dropped(chat: Chat) -> None:
    chat.customer("Hello, my invoice shows 12 seats but we have 9 users.", intent="how_to")
    assert chat.summary() == ["Asked: My invoice shows 12 seats but we have 9 users."]


def test_greeting_intent_catches_greetings_the_word_list_misses(chat: Chat) -> None:
    chat.customer("Hola, buenos días", intent="greeting")
    chat.customer("Where do I change my billing email address?", intent="billing_question")
    assert chat.summary() == ["Asked: Where do I change my billing email address?"]


def test_long_message_mislabelled_as_greeting_is_still_the_problem(chat: Chat) -> None:
    chat.customer(
        "Hi! I was charged twice for March on my company card and need one charge reversed",
        intent="greeting",
    )
    assert chat.summary()[0].startswith("Asked: I was charged twice for March")


def test_summary_picks_churn_and_frustration_over_plain_sentences(chat: Chat) -> None:
    chat.customer("I can't log in to my account.")
    chat.bot(cites=("reset-password",))
    chat.customer("My browser is Chrome on a work laptop.")
    chat.bot(cites=("reset-password",))
    chat.customer(
        "I tried the reset link. This is the third time I'm asking and nothing works. "
        "If this isn't fixed today I'm switching to Asana.",
        sentiment="negative",
        frustration=0.82,
        cues=(("repeated_contact", "third time I'm asking"),),
        churn=(("competitor", "switching to Asana"),),
    )
    assert chat.summary() == [
        "Asked: I can't log in to my account.",
        "Bot tried: Reset your password",
        "Frustrated: This is the third time I'm asking and nothing works.",
        "Churn risk: If this isn't fixed today I'm switching to Asana.",
    ]


def test_churn_outranks_frustration_when_one_line_is_left(chat: Chat) -> None:
    chat.customer("I can't log in to my account.")
    chat.bot(cites=("reset-password",))
    chat.customer(
        "This is the third time I'm asking and nothing works. "
        "If this isn't fixed today I'm switching to Asana.",
        sentiment="negative",
        frustration=0.82,
        cues=(("repeated_contact", "third time I'm asking"),),
        churn=(("competitor", "switching to Asana"),),
    )
    assert chat.summary(max_lines=3)[2] == (
        "Churn risk: If this isn't fixed today I'm switching to Asana.")


def test_sentence_cut_from_a_long_problem_can_still_be_picked(chat: Chat) -> None:
    chat.customer(
        "Our team has used the Gantt view for two years and since Monday the export to PDF "
        "loses every dependency arrow, which we need for the board meeting on Thursday "
        "morning with our investors. We will cancel our subscription if this stays broken.",
        intent="bug_report",
        churn=(("cancellation", "cancel our subscription"),),
    )
    summary = chat.summary()
    assert summary[0].endswith("…")
    assert summary[-1] == (
        "Churn risk: We will cancel our subscription if this stays broken.")


def test_latest_message_is_labelled_latest(chat: Chat) -> None:
    chat.customer("How do I export my board to CSV?", intent="how_to")
    chat.bot(abstained=True)
    chat.customer("I need it for the quarterly report on Friday.", intent="how_to")
    assert chat.summary() == [
        "Asked: How do I export my board to CSV?",
        "Bot could not find an answer",
        "Latest: I need it for the quarterly report on Friday.",
    ]


def test_near_duplicate_repeats_collapse_into_one_asked_line(chat: Chat) -> None:
    chat.customer("I can't log in to my account")
    chat.bot(cites=("reset-password",))
    chat.customer("I STILL can't log in to my account!!", sentiment="negative", frustration=0.5)
    chat.bot(cites=("reset-password",))
    chat.customer("i cant log in to my account.", sentiment="negative")
    chat.customer("The export button does nothing when I click it.")
    chat.customer("The export button does nothing when I click it!")
    summary = chat.summary()
    assert summary[0] == "Asked (3 times): I can't log in to my account"
    assert sum("log in" in line.lower() for line in summary) == 1
    assert sum("export button" in line for line in summary) == 1


FOLLOW_UPS = (
    "Invoice 1001 shows sales tax applied twice.",
    "Our finance team cannot close the quarter because of this.",
    "The March credit note never arrived by email.",
    "Seats removed in January are still being billed.",
    "Your dashboard shows a different amount than the PDF.",
)


@pytest.mark.parametrize("max_lines", [0, 1, 2, 3, 4])
def test_summary_respects_line_and_length_bounds(chat: Chat, max_lines: int) -> None:
    long_problem = "My invoices are wrong " + "and the totals do not add up " * 20
    chat.customer(long_problem, intent="billing_question")
    chat.bot(cites=("refunds",))
    for i, text in enumerate(FOLLOW_UPS):
        chat.customer(text, sentiment="negative", frustration=0.3 + i / 10)
    summary = chat.summary(max_lines)
    assert len(summary) == max_lines  # enough material to fill every line
    for line in summary:
        body = line.split(": ", 1)[1]
        assert len(body) <= 200
    if max_lines:
        assert summary[0].startswith("Asked: My invoices are wrong")
        assert summary[0].endswith("…")
    if max_lines == 2:
        # The last free line goes to the customer, not to "Bot tried".
        assert not summary[1].startswith("Bot tried")


def test_summary_quotes_only_the_customer(chat: Chat) -> None:
    chat.customer("My export to CSV fails with an error.")
    chat.bot("Try the export wizard under Settings.", cites=("two-factor",))
    chat.agent("Could you send a screenshot of the error please?")
    chat.note("Customer is on the legacy billing system, SECRET-NOTE.")
    chat.customer("Sure, the error says quota exceeded for workspace.")
    text = " ".join(chat.summary())
    assert "quota exceeded" in text
    for foreign in ("export wizard", "screenshot", "SECRET-NOTE"):
        assert foreign not in text


def test_summary_of_only_greetings_is_empty(chat: Chat) -> None:
    chat.customer("hi", intent="greeting")
    chat.bot("Hi! Ask me anything.")
    chat.customer("thanks, bye", intent="thanks_goodbye")
    assert chat.summary() == []


# --- articles tried ------------------------------------------------------------------------


def test_article_helped_when_customer_thanks(chat: Chat) -> None:
    chat.customer("How do I reset my password?")
    chat.bot(cites=("reset-password",))
    chat.customer("Thanks, that worked!", intent="thanks_goodbye", sentiment="positive")
    assert chat.articles() == {
        "reset-password": {
            "article_id": "reset-password",
            "title": "Reset your password",
            "url": "https://help/reset-password",
            "times_cited": 1,
            "helped": True,
        }
    }


def test_article_helped_from_wording_on_rows_without_annotations(chat: Chat) -> None:
    chat.customer("How do I reset my password?", old=True)
    chat.bot(cites=("reset-password",))
    chat.customer("Thanks, that worked!", old=True)
    chat.bot(cites=("two-factor",))
    chat.customer("That did not help at all", old=True)
    articles = chat.articles()
    assert articles["reset-password"]["helped"] is True
    assert articles["two-factor"]["helped"] is False


@pytest.mark.parametrize(
    "follow_up",
    [
        {"text": "That's useless, it says my link expired.", "sentiment": "negative"},
        {"text": "Let me talk to a human", "intent": "human_request"},
        {"text": "how do I reset my account password in the mobile app", "intent": "x"},
    ],
    ids=["negative", "asks-for-person", "repeats-question"],
)
def test_article_did_not_help_when_next_message_says_so(
    chat: Chat, follow_up: dict[str, Any]
) -> None:
    chat.customer("How do I reset my account password in the mobile app?")
    chat.bot(cites=("reset-password",))
    text = follow_up.pop("text")
    chat.customer(text, **follow_up)
    assert chat.articles()["reset-password"]["helped"] is False


def test_article_did_not_help_when_next_turn_handed_off(chat: Chat) -> None:
    chat.customer("Where is the invoice download?", intent="billing_question")
    chat.bot(cites=("refunds",))
    chat.customer("Where can I find the invoice PDF?", intent="billing_question")
    chat.bot("A person will join.", action=Action.HANDOFF, reasons=("low_confidence",))
    assert chat.articles()["refunds"]["helped"] is False


@pytest.mark.parametrize("naive", [False, True], ids=["aware", "naive-sqlite-datetime"])
def test_article_did_not_help_when_escalated_right_after(chat: Chat, naive: bool) -> None:
    chat.customer("How do I reset my password?")
    reply = chat.bot(cites=("reset-password",))
    created = reply.created_at + timedelta(seconds=5)
    handoff = make_handoff(created.replace(tzinfo=None) if naive else created)
    assert chat.articles(handoff)["reset-password"]["helped"] is False


def test_article_did_not_help_when_a_person_stepped_in(chat: Chat) -> None:
    chat.customer("How do I reset my password?")
    chat.bot(cites=("reset-password",))
    chat.agent("Hi, I'm Ann, I'll take it from here.")
    assert chat.articles()["reset-password"]["helped"] is False


def test_article_help_unknown_without_a_next_customer_message(chat: Chat) -> None:
    chat.customer("How do I reset my password?")
    chat.bot(cites=("reset-password",))
    # A hand-off from before the answer (then returned to the bot) says nothing about it.
    handoff = make_handoff(T0)
    assert chat.articles(handoff)["reset-password"]["helped"] is None


def test_article_help_unknown_when_customer_moves_on_neutrally(chat: Chat) -> None:
    chat.customer("How do I reset my password?")
    chat.bot(cites=("reset-password",))
    chat.customer("Also, can I change the colour of my boards?", intent="how_to")
    assert chat.articles()["reset-password"]["helped"] is None


def test_articles_aggregate_false_over_true_over_unknown(chat: Chat) -> None:
    chat.customer("How do I reset my password?")
    chat.bot(cites=("reset-password", "two-factor"))
    chat.customer("Great, thanks!", intent="thanks_goodbye", sentiment="positive")
    chat.customer("Now my authenticator app codes are rejected.", intent="login_access")
    chat.bot(cites=("two-factor", "refunds", "refunds"))  # two sections of one article
    chat.customer("Still rejected, this is annoying.", sentiment="negative")
    chat.bot(cites=("reset-password",))
    articles = chat.articles()
    assert [a["article_id"] for a in articles.values()] == [
        "reset-password", "two-factor", "refunds"]
    assert {k: (a["times_cited"], a["helped"]) for k, a in articles.items()} == {
        "reset-password": (2, True),  # True then unknown
        "two-factor": (2, False),  # True then False
        "refunds": (1, False),
    }


# --- trajectory, transcript, health ---------------------------------------------------------


def test_trajectory_per_customer_message_rounded(chat: Chat) -> None:
    first = chat.customer(
        "Cancel my subscription now.",
        intent="cancellation",
        confidence=0.912345,
        sentiment="negative",
        frustration=0.87691,  # stored as 0.8769 (TurnResult rounds to 4)
        churn=(("cancellation", "Cancel my subscription"),),
    )
    chat.bot("Sorry to hear that.")
    chat.agent("Let me help.")
    second = chat.customer("ok", bare=True)
    trajectory = chat.packet().trajectory
    assert trajectory == [
        {
            "message_id": first.id,
            "created_at": first.created_at.isoformat(),
            "intent": "cancellation",
            "intent_confidence": 0.912,
            "sentiment": "negative",
            "frustration": 0.877,
            "churn_signals": ["cancellation"],
        },
        {
            "message_id": second.id,
            "created_at": second.created_at.isoformat(),
            "intent": None,
            "intent_confidence": None,
            "sentiment": None,
            "frustration": None,
            "churn_signals": [],
        },
    ]


def test_trajectory_reads_the_reply_when_the_customer_row_is_bare(chat: Chat) -> None:
    chat.customer("I want a refund", bare=True, intent="refund_request", sentiment="negative")
    chat.bot()  # the engine spreads the classification into the reply's annotations too
    (entry,) = chat.packet().trajectory
    assert (entry["intent"], entry["sentiment"]) == ("refund_request", "negative")


def test_transcript_lists_every_message_but_notes(chat: Chat) -> None:
    chat.customer("My <script> tag & export fail")
    chat.bot("Here is how.")
    chat.note("internal: VIP, be nice")
    chat.agent("Looking into it.", name="Ann Agent")
    chat._add("system", "Ann joined the conversation", {})
    chat._add("assistant", "hidden", {"internal": True})
    transcript = chat.packet().transcript
    assert [(m["role"], m["author"]) for m in transcript] == [
        ("customer", "customer"),
        ("assistant", "bot"),
        ("agent", "Ann Agent"),
        ("system", "system"),
    ]
    assert transcript[0]["text"] == "My <script> tag & export fail"  # not escaped here
    assert transcript[0]["created_at"] == chat.messages[0].created_at.isoformat()
    assert all("internal" not in m["text"] for m in transcript)


def test_health_snapshot(chat: Chat) -> None:
    chat.customer("Refund me now, this is too expensive.", sentiment="negative",
                  frustration=0.61, churn=(("refund_demand", "Refund me"),
                                           ("not_worth_it", "too expensive")))
    chat.fallback()
    chat.customer("Or I go to Trello.", sentiment="negative", frustration=0.7,
                  churn=(("competitor", "Trello"), ("refund_demand", "x")))
    chat.customer("Well, thanks anyway.", intent="thanks_goodbye", sentiment="positive")
    previous = (PreviousConversation("p1", T0 - timedelta(days=3), "resolved", "Hi", 4),)
    health = chat.packet(previous=previous).health
    assert health == {
        "latest_sentiment": "positive",
        "negative_messages": 2,
        "customer_messages": 3,
        "max_frustration": 0.7,
        "churn_signals": ["refund_demand", "not_worth_it", "competitor"],
        "previous_conversations": 1,
    }


def test_fallback_reply_counts_as_no_answer(chat: Chat) -> None:
    chat.customer("Why is my dashboard empty since the update?")
    chat.fallback()
    packet = chat.packet()
    assert packet.summary[1] == "Bot could not find an answer"
    assert packet.articles_tried == []


# --- reasons, customer, previous, serialisation --------------------------------------------


def test_reasons_and_evidence_come_from_the_handoff(chat: Chat) -> None:
    chat.customer("Let me talk to a human", intent="human_request")
    chat.bot("A person will join.", action=Action.HANDOFF, reasons=("human_requested",))
    handoff = make_handoff(
        T0 + timedelta(minutes=5),
        reasons=("churn_risk", "frustrated"),
        evidence={"churn_risk": 'competitor: "Asana"', "at": T0, "kinds": ("a", "b")},
    )
    packet = chat.packet(handoff=handoff)
    assert packet.reasons == ["churn_risk", "frustrated"]
    assert packet.evidence == {
        "churn_risk": 'competitor: "Asana"', "at": T0.isoformat(), "kinds": ["a", "b"]}
    # Without a hand-off record, the reply that decided to hand off explains why.
    fallback = chat.packet()
    assert fallback.reasons == ["human_requested"]
    assert fallback.evidence == {"human_requested": "why human_requested"}


def test_customer_and_previous_conversations(chat: Chat, customer: CustomerRecord) -> None:
    chat.customer("Where is my invoice?")
    older = PreviousConversation("p-old", T0 - timedelta(days=30), "resolved", None, 2)
    newer = PreviousConversation("p-new", T0 - timedelta(days=1), "agent", "Refund?", 7)
    packet = chat.packet(customer=customer, previous=(older, newer))
    assert packet.customer == {
        "id": "cust-1",
        "name": "Jo <b>Doe</b>",  # as-is: the renderer escapes
        "email": "jo@example.com",
        "plan": "pro",
        "verified": True,
        "external_id": "u-42",
    }
    assert packet.previous_conversations == [
        {"id": "p-new", "started_at": (T0 - timedelta(days=1)).isoformat(), "status": "agent",
         "first_message": "Refund?", "messages": 7},
        {"id": "p-old", "started_at": (T0 - timedelta(days=30)).isoformat(),
         "status": "resolved", "first_message": None, "messages": 2},
    ]
    assert packet.health["previous_conversations"] == 2


def test_as_dict_is_json_and_a_copy(chat: Chat, customer: CustomerRecord) -> None:
    chat.customer("Cancel my subscription.", churn=(("cancellation", "Cancel my subscription"),))
    chat.bot(cites=("refunds",))
    packet = chat.packet(
        handoff=make_handoff(T0 + timedelta(hours=1)),
        customer=customer,
        previous=(PreviousConversation("p1", T0, "resolved", "Hi", 2),),
    )
    data = packet.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "summary", "summary_source", "transcript", "trajectory", "reasons", "evidence",
        "articles_tried", "customer", "health", "previous_conversations"}
    data["transcript"].clear()
    data["health"]["customer_messages"] = 99
    assert len(packet.transcript) == 2
    assert packet.health["customer_messages"] == 1


def test_none_customer(chat: Chat) -> None:
    chat.customer("Is there an API for tasks?", intent="how_to")
    packet = chat.packet(customer=None)
    assert packet.customer is None
    assert json.dumps(packet.as_dict())


def test_empty_conversation() -> None:
    packet = build_context_packet(messages=[], handoff=None, customer=None)
    assert packet.as_dict() == {
        "summary": [],
        "summary_source": "extractive",
        "transcript": [],
        "trajectory": [],
        "reasons": [],
        "evidence": {},
        "articles_tried": [],
        "customer": None,
        "health": {
            "latest_sentiment": None,
            "negative_messages": 0,
            "customer_messages": 0,
            "max_frustration": None,
            "churn_signals": [],
            "previous_conversations": 0,
        },
        "previous_conversations": [],
    }


def test_messages_out_of_order_are_sorted(chat: Chat) -> None:
    chat.customer("How do I reset my password?")
    chat.bot(cites=("reset-password",))
    chat.customer("Thanks!", intent="thanks_goodbye", sentiment="positive")
    shuffled = list(reversed(chat.messages))
    packet = build_context_packet(messages=shuffled, handoff=None, customer=None)
    assert [m["id"] for m in packet.transcript] == [m.id for m in chat.messages]
    assert packet.articles_tried[0]["helped"] is True
