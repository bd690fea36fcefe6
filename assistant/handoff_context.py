"""The context packet a human agent sees when a conversation is handed off to them.

The point of the packet is that the customer never has to repeat themselves: the agent gets
a few extractive summary lines, the full transcript, how the customer's mood moved message
by message, why the bot escalated, which help articles the bot already sent (and whether
they seemed to help), who the customer is, and their earlier conversations.

Pure: plain records in (:mod:`assistant.storage.records`), a plain dataclass out; no SQL,
no HTTP, no environment. Everything is read from the annotations the turn pipeline stores
(:meth:`assistant.engine.TurnResult.annotations` on bot replies,
:meth:`~assistant.engine.TurnResult.message_annotations` on customer messages) and every
reader tolerates missing or partial annotations: rows stored before the understanding
step existed, fallback replies (``answerer: "fallback"``), hand-written fixtures.

Text is returned exactly as written (no HTML escaping): escaping belongs to the renderer.
Internal notes (role ``"note"``) never appear in, or influence, the packet; the console
shows them separately.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from assistant.storage.records import CustomerRecord, HandoffRecord, MessageRecord
from assistant.understanding.history import PriorTurn, repeated_question, stem

# Roles that are internal to the support team; filtered defensively everywhere.
INTERNAL_ROLES = frozenset({"note"})
SMALL_TALK_INTENTS = frozenset({"greeting", "thanks_goodbye"})
SUMMARY_LINE_CHARS = 200
# Token Jaccard at or above which two customer sentences say the same thing.
NEAR_DUPLICATE = 0.7
# Same threshold the shipped policy uses for "the customer asks again" (repeat_similarity).
REPEAT_SIMILARITY = 0.7
# The classifier labels whole messages: only trust "greeting"/"thanks" on short ones, so a
# long "Hi! I was charged twice..." mislabelled as a greeting still counts as the problem.
SMALL_TALK_MAX_WORDS = 8
# A sentence without any signal must carry at least this many content words to be worth a
# summary line ("ok.", "yes please" are not).
MIN_CONTENT_WORDS = 3

# Summary scoring: a churn signal matters most to an agent, then frustration cues, then
# the latest message (what the customer is waiting on right now).
_CHURN_WEIGHT = 3.0
_CUE_WEIGHT = 1.5
_FRUSTRATION_WEIGHT = 2.0
_NEGATIVE_BONUS = 0.5
_LATEST_BONUS = 1.0
_INFO_WEIGHT = 0.05  # per content word, capped: breaks ties towards informative sentences
_INFO_CAP = 12
_FRUSTRATED_AT = 0.5  # message frustration from which a line is labelled "Frustrated"

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP = frozenset(
    {
        "a", "an", "the", "i", "im", "ive", "me", "my", "we", "our", "us", "you", "your",
        "it", "its", "is", "are", "was", "were", "be", "been", "am", "do", "does",
        "did", "to", "of", "in", "on", "for", "and", "or", "but", "with", "at", "by", "from",
        "this", "that", "these", "those", "can", "could", "would", "should", "will", "how",
        "what", "why", "when", "where", "which", "who", "please", "hi", "hello", "hey",
        "thanks", "thank", "just", "still", "again", "any", "some", "there", "have", "has",
        "had", "so", "get", "got", "if", "as", "into", "about", "all", "also", "then", "now",
        "here", "up", "out", "ok", "okay", "yes", "really", "very",
    }
)
# Words a pure greeting / thank-you / "anyone there?" message is made of.
_SMALL_TALK_WORDS = frozenset(
    {
        "hi", "hello", "hey", "heya", "hiya", "howdy", "yo", "greetings", "good", "morning",
        "afternoon", "evening", "day", "there", "all", "team", "everyone", "folks", "guys",
        "support", "anyone", "anybody", "someone", "is", "are", "this", "you", "thanks",
        "thank", "thx", "ty", "cheers", "much", "so", "very", "a", "lot", "ok", "okay",
        "great", "cool", "perfect", "awesome", "bye", "goodbye", "see", "ya", "have", "nice",
        "that's", "it", "the", "for", "your", "help", "again", "many",
    }
)
# "Hello, my invoice..." -> "my invoice...": a greeting glued to the first sentence.
_LEADING_GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|good\s+(?:morning|afternoon|evening))"
    r"(?:\s+(?:there|team|all|everyone|folks))?\s*[,!.:;-]+\s*(?=\S)",
    re.IGNORECASE,
)
# Only used when a customer message carries no annotations at all (old rows).
_THANKS_TEXT = re.compile(
    r"\b(?:thanks|thank\s+you|thx|cheers|that\s+(?:worked|helped|fixed\s+it)|"
    r"(?:it|this)\s+works\s+now)\b",
    re.IGNORECASE,
)
_NOT_HELPED_TEXT = re.compile(
    r"\b(?:didn'?t|did\s+not|doesn'?t|does\s+not|not)\s+(?:work|help)|\bstill\s+(?:not|no|can'?t|"
    r"cannot|doesn'?t|isn'?t|won'?t|broken|failing)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PreviousConversation:
    """One earlier conversation of the same customer, as the packet lists it."""

    id: str
    started_at: datetime
    status: str
    first_message: str | None  # first customer message text, may be None
    messages: int

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``started_at`` as an ISO string."""
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "status": self.status,
            "first_message": self.first_message,
            "messages": self.messages,
        }


@dataclass(frozen=True)
class ContextPacket:
    """What a human agent needs to pick up a handed-off conversation without asking again.

    Attributes:
        summary: 1-4 short extractive lines ("Asked: ...", "Bot tried: ...", "Latest: ...").
        transcript: Every visible message: ``id``, ``role``, ``text``, ``created_at`` (ISO)
            and ``author`` (the agent's name, ``"bot"``, ``"customer"`` or ``"system"``).
        trajectory: Per customer message: ``message_id``, ``created_at``, ``intent``,
            ``intent_confidence``, ``sentiment``, ``frustration``, ``churn_signals``.
        reasons: Why the conversation was escalated.
        evidence: What made each reason fire.
        articles_tried: Per distinct article the bot cited: ``article_id``, ``title``,
            ``url``, ``times_cited``, ``helped`` (``True``/``False``/``None`` = unknown).
        customer: ``id``, ``name``, ``email``, ``plan``, ``verified``, ``external_id``.
        health: A per-conversation snapshot (see :func:`conversation_health`).
        previous_conversations: Earlier conversations, newest first.
    """

    summary: list[str]
    transcript: list[dict[str, Any]]
    trajectory: list[dict[str, Any]]
    reasons: list[str]
    evidence: dict[str, Any]
    articles_tried: list[dict[str, Any]]
    customer: dict[str, Any] | None
    health: dict[str, Any]
    previous_conversations: list[dict[str, Any]]
    summary_source: str = "extractive"  # "llm" when the configured model wrote it

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable deep copy (datetimes are already ISO strings)."""
        return {
            "summary": list(self.summary),
            "summary_source": self.summary_source,
            "transcript": copy.deepcopy(self.transcript),
            "trajectory": copy.deepcopy(self.trajectory),
            "reasons": list(self.reasons),
            "evidence": copy.deepcopy(self.evidence),
            "articles_tried": copy.deepcopy(self.articles_tried),
            "customer": copy.deepcopy(self.customer),
            "health": copy.deepcopy(self.health),
            "previous_conversations": copy.deepcopy(self.previous_conversations),
        }


@dataclass(frozen=True)
class _Understood:
    """How one customer message was understood (all optional: annotations may be missing)."""

    intent: str | None = None
    intent_confidence: float | None = None
    sentiment: str | None = None
    frustration: float | None = None
    cues: tuple[tuple[str, str], ...] = ()  # (name, words)
    churn: tuple[tuple[str, str], ...] = ()  # (kind, words)
    annotated: bool = False


@dataclass(frozen=True)
class _Turn:
    """A customer message, how it was understood and the bot's reply to it (if any)."""

    index: int  # position among the visible messages
    message: MessageRecord
    understood: _Understood
    reply: MessageRecord | None


def build_context_packet(
    *,
    messages: Sequence[MessageRecord],
    handoff: HandoffRecord | None,
    customer: CustomerRecord | None,
    previous: Sequence[PreviousConversation] = (),
    max_summary_lines: int = 4,
) -> ContextPacket:
    """The context packet for one conversation.

    Args:
        messages: The conversation's messages (any order; sorted by id here). Internal notes
            are dropped.
        handoff: The hand-off being worked on. Without one, the reasons and evidence come
            from the latest bot reply that decided to hand off (e.g. when queueing failed).
        customer: The customer, or ``None`` for an anonymous visitor.
        previous: The customer's earlier conversations.
        max_summary_lines: Upper bound on summary lines.
    """
    visible = _visible(messages)
    turns = _turns(visible)
    reasons, evidence = _escalation(visible, handoff)
    return ContextPacket(
        summary=_summarize(visible, turns, max_summary_lines),
        transcript=[_transcript_entry(m) for m in visible],
        trajectory=[_trajectory_entry(turn) for turn in turns],
        reasons=reasons,
        evidence=evidence,
        articles_tried=articles_tried(visible, handoff=handoff),
        customer=_customer_dict(customer),
        health=conversation_health(visible, previous=previous),
        previous_conversations=[
            p.as_dict()
            for p in sorted(previous, key=lambda p: (_utc(p.started_at), p.id), reverse=True)
        ],
    )


def summarize_extractive(messages: Sequence[MessageRecord], max_lines: int = 4) -> list[str]:
    """Up to ``max_lines`` short lines an agent can read in seconds, picked from the customer.

    Deterministic and offline. Only the customer's own sentences are quoted (trimmed to
    :data:`SUMMARY_LINE_CHARS` with an ellipsis), never notes or the bot's text:

    1. ``"Asked: ..."``: the first substantive customer message (greetings and thank-yous
       skipped; "talk to a person" only when nothing else was asked), without its leading
       "Hi there." sentence or "Hello," phrase. ``"Asked (3 times): ..."`` when later
       messages repeat it.
    2. ``"Bot tried: <titles>"`` when the bot cited articles, else ``"Bot could not find an
       answer"`` when it abstained. It never takes the last free line from a customer
       sentence (with ``max_lines=2``: "Asked" and the best customer sentence).
    3. The most informative later sentences, in conversation order, prefixed by why they
       were picked: ``"Churn risk: "``, ``"Frustrated: "``, ``"Latest: "`` (from the latest
       customer message) or ``"Said: "``. Near-duplicates (token Jaccard >=
       :data:`NEAR_DUPLICATE`) of the problem or of a picked line are collapsed.
    """
    visible = _visible(messages)
    return _summarize(visible, _turns(visible), max_lines)


def articles_tried(
    messages: Sequence[MessageRecord], *, handoff: HandoffRecord | None = None
) -> list[dict[str, Any]]:
    """Each distinct article the bot cited, in order of first citation, and whether it helped.

    For one citing reply, ``helped`` is judged from what happened next:

    * ``False`` when a person stepped in, or the hand-off was created, before the customer
      wrote again; or when the customer's next message is negative, asks for a person,
      repeats an earlier question, or made the bot hand off.
    * ``True`` when the next message is a thank-you / goodbye or positive.
    * ``None`` (unknown) when the customer has not written since, or moved on neutrally.

    Per article, ``False`` wins over ``True`` wins over ``None``: an article that failed
    once is not one to send again, even if it helped with another question.
    """
    visible = _visible(messages)
    understood = {turn.message.id: turn for turn in _turns(visible)}
    found: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, list[bool | None]] = {}
    for i, message in enumerate(visible):
        if message.role != "assistant":
            continue
        cited = _citations(message.annotations)
        if not cited:
            continue
        verdict = _helped(visible, i, understood, handoff)
        for citation in cited:
            article_id = citation["article_id"]
            entry = found.setdefault(
                article_id,
                {
                    "article_id": article_id,
                    "title": citation["title"],
                    "url": citation["url"],
                    "times_cited": 0,
                    "helped": None,
                },
            )
            entry["times_cited"] += 1
            verdicts.setdefault(article_id, []).append(verdict)
    for article_id, entry in found.items():
        entry["helped"] = _aggregate(verdicts[article_id])
    return list(found.values())


def conversation_health(
    messages: Sequence[MessageRecord], *, previous: Sequence[PreviousConversation] = ()
) -> dict[str, Any]:
    """Interim health figures: a snapshot of this one conversation, not a customer score.

    ``{"latest_sentiment", "negative_messages", "customer_messages", "max_frustration",
    "churn_signals", "previous_conversations"}``. ``churn_signals`` lists distinct kinds in
    order of first appearance; ``max_frustration`` is ``None`` when no customer message was
    scored. Previous escalations are left out: :class:`PreviousConversation` does not say
    whether a person was involved, and guessing from the status would mislead.
    """
    turns = _turns(_visible(messages))
    sentiments = [t.understood.sentiment for t in turns if t.understood.sentiment]
    scores = [t.understood.frustration for t in turns if t.understood.frustration is not None]
    kinds: list[str] = []
    for turn in turns:
        for kind, _ in turn.understood.churn:
            if kind not in kinds:
                kinds.append(kind)
    return {
        "latest_sentiment": sentiments[-1] if sentiments else None,
        "negative_messages": sum(1 for s in sentiments if s == "negative"),
        "customer_messages": len(turns),
        "max_frustration": round(max(scores), 3) if scores else None,
        "churn_signals": kinds,
        "previous_conversations": len(previous),
    }


# --- reading stored messages -------------------------------------------------------------


def _visible(messages: Iterable[MessageRecord]) -> list[MessageRecord]:
    """Messages an agent may see in the packet, oldest first (ids are the global order)."""
    return sorted(
        (m for m in messages if m.role not in INTERNAL_ROLES and not _flag(m, "internal")),
        key=lambda m: m.id,
    )


def _flag(message: MessageRecord, key: str) -> bool:
    notes = message.annotations if isinstance(message.annotations, Mapping) else {}
    return notes.get(key) is True


def _notes(message: MessageRecord | None) -> Mapping[str, Any]:
    if message is None or not isinstance(message.annotations, Mapping):
        return {}
    return message.annotations


def _turns(visible: Sequence[MessageRecord]) -> list[_Turn]:
    """The customer messages with their understanding and the bot's reply."""
    turns: list[_Turn] = []
    for i, message in enumerate(visible):
        if message.role != "customer":
            continue
        reply = None
        for later in visible[i + 1 :]:
            if later.role == "customer":
                break
            if later.role == "assistant":
                reply = later
                break
        understood = _understand(_notes(message))
        if not understood.annotated:
            # The reply carries the same classification (TurnResult.annotations spreads
            # it in), which helps with rows whose customer message was stored bare.
            understood = _understand(_notes(reply))
        turns.append(_Turn(index=i, message=message, understood=understood, reply=reply))
    return turns


def _understand(notes: Mapping[str, Any]) -> _Understood:
    """Parse ``Classification.as_dict()`` defensively (any key may be missing or odd)."""
    keys = ("intent", "sentiment", "frustration", "churn_signals")
    if not any(key in notes for key in keys):
        return _Understood()
    intent = notes.get("intent")
    frustration = notes.get("frustration")
    cues: list[tuple[str, str]] = []
    score: float | None
    if isinstance(frustration, Mapping):
        score = _number(frustration.get("score"))
        cues = _pairs(frustration.get("cues"), "name")
    else:
        score = _number(frustration)
    confidence = _number(intent.get("confidence")) if isinstance(intent, Mapping) else None
    return _Understood(
        intent=_label(intent),
        intent_confidence=confidence,
        sentiment=_label(notes.get("sentiment")),
        frustration=score,
        cues=tuple(cues),
        churn=tuple(_pairs(notes.get("churn_signals"), "kind")),
        annotated=True,
    )


def _label(value: Any) -> str | None:
    # Stored as {"label": ...}; accept a bare label too (older or hand-made rows).
    if isinstance(value, Mapping):
        value = value.get("label")
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _pairs(items: Any, key: str) -> list[tuple[str, str]]:
    """``[{key: name, "text": words}, ...]`` as (name, words); tolerates bare strings."""
    pairs: list[tuple[str, str]] = []
    if not isinstance(items, list | tuple):
        return pairs
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get(key), str):
            text = item.get("text")
            pairs.append((item[key], text if isinstance(text, str) else ""))
        elif isinstance(item, str):
            pairs.append((item, ""))
    return pairs


def _citations(notes: Mapping[str, Any]) -> list[dict[str, str]]:
    """Distinct cited articles of one reply (a reply may cite two sections of one article)."""
    cited: dict[str, dict[str, str]] = {}
    raw = notes.get("citations")
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        article_id = item.get("article_id")
        if not isinstance(article_id, str) or not article_id or article_id in cited:
            continue
        title, url = item.get("title"), item.get("url")
        cited[article_id] = {
            "article_id": article_id,
            "title": title if isinstance(title, str) and title else article_id,
            "url": url if isinstance(url, str) else "",
        }
    return list(cited.values())


def _decision(message: MessageRecord | None) -> Mapping[str, Any]:
    decision = _notes(message).get("decision")
    return decision if isinstance(decision, Mapping) else {}


def _decision_reasons(decision: Mapping[str, Any]) -> list[str]:
    reasons = decision.get("reasons")
    return [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); comparing them with aware ones
    # would raise, so treat naive as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- articles and whether they helped ----------------------------------------------------


def _helped(
    visible: Sequence[MessageRecord],
    at: int,
    turns: Mapping[int, _Turn],
    handoff: HandoffRecord | None,
) -> bool | None:
    """Whether the bot reply ``visible[at]`` helped, judged from what came next."""
    reply = visible[at]
    following: _Turn | None = None
    for later in visible[at + 1 :]:
        if later.role == "agent":
            return False  # a person took over before the customer wrote again
        if later.role == "customer":
            following = turns.get(later.id)
            break
    if handoff is not None and _utc(handoff.created_at) >= _utc(reply.created_at) and (
        following is None or _utc(handoff.created_at) <= _utc(following.message.created_at)
    ):
        return False  # escalated right after this answer
    if following is None:
        return None
    seen = following.understood
    next_decision = _decision(following.reply)
    if next_decision.get("action") == "handoff" or (
        "repeated_question" in _decision_reasons(next_decision)
    ):
        return False
    if seen.sentiment == "negative" or seen.intent == "human_request":
        return False
    if _repeats_earlier(visible, following, turns):
        return False
    if seen.intent == "thanks_goodbye" or seen.sentiment == "positive":
        return True
    if not seen.annotated:
        # Old rows without annotations: fall back to plain wording.
        if _NOT_HELPED_TEXT.search(following.message.text):
            return False
        if _THANKS_TEXT.search(following.message.text):
            return True
    return None


def _repeats_earlier(
    visible: Sequence[MessageRecord], turn: _Turn, turns: Mapping[int, _Turn]
) -> bool:
    """Whether the customer asks again what they asked before (the engine's own test)."""
    prior = [
        PriorTurn(text=m.text, intent=turns[m.id].understood.intent)
        for m in visible[: turn.index]
        if m.id in turns
    ]
    return (
        repeated_question(
            prior, turn.message.text, turn.understood.intent, threshold=REPEAT_SIMILARITY
        )
        is not None
    )


def _aggregate(verdicts: Sequence[bool | None]) -> bool | None:
    """False wins (it failed at least once), then True, else unknown."""
    if any(v is False for v in verdicts):
        return False
    if any(v is True for v in verdicts):
        return True
    return None


# --- summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    score: float
    message_id: int
    position: int  # sentence index within the message
    text: str
    tokens: frozenset[str]
    prefix: str


def _summarize(
    visible: Sequence[MessageRecord], turns: Sequence[_Turn], max_lines: int
) -> list[str]:
    if max_lines <= 0:
        return []
    substantive = [t for t in turns if not _is_chitchat(t)]
    problem = next(
        (t for t in substantive if t.understood.intent != "human_request"),
        substantive[0] if substantive else None,
    )
    head: list[str] = []
    seen: list[frozenset[str]] = []
    visible_problem = ""
    if problem is not None:
        body = " ".join(_content_sentences(problem.message.text))
        problem_tokens = _tokens(body)
        repeats = sum(
            1
            for t in substantive
            if t.message.id > problem.message.id
            and _jaccard(_tokens(" ".join(_content_sentences(t.message.text))), problem_tokens)
            >= NEAR_DUPLICATE
        )
        visible_problem = _trim(body)
        label = f"Asked ({repeats + 1} times): " if repeats else "Asked: "
        head.append(label + visible_problem)
        seen.append(problem_tokens)
        # Sentences cut off by the trim stay candidates, so only visible ones count as seen.
        seen.extend(
            _tokens(s) for s in _content_sentences(problem.message.text) if s in visible_problem
        )
    bot_line = _bot_line(visible)
    candidates = _candidates(substantive, problem)
    budget = max_lines - len(head)
    # The bot line never takes the only line left for a customer sentence.
    use_bot_line = bot_line is not None and budget >= 1 and (budget >= 2 or not candidates)
    budget -= 1 if use_bot_line else 0
    picked: list[_Candidate] = []
    for candidate in candidates:
        if len(picked) >= budget:
            break
        if any(_jaccard(candidate.tokens, other) >= NEAR_DUPLICATE for other in seen):
            continue
        picked.append(candidate)
        seen.append(candidate.tokens)
    # Read as a story: what they asked, what the bot tried, then what they said, in order.
    picked.sort(key=lambda c: (c.message_id, c.position))
    lines = head + ([bot_line] if use_bot_line and bot_line else [])
    lines.extend(c.prefix + _trim(c.text) for c in picked)
    return lines[:max_lines]


def _candidates(substantive: Sequence[_Turn], problem: _Turn | None) -> list[_Candidate]:
    """Customer sentences from the problem message on, best first (the ones already shown
    in the "Asked" line fall out as near-duplicates)."""
    if problem is None:
        return []
    later = [t for t in substantive if t.message.id >= problem.message.id]
    latest_id = later[-1].message.id if later else None
    found: list[_Candidate] = []
    for turn in later:
        seen = turn.understood
        for position, sentence in enumerate(_content_sentences(turn.message.text)):
            tokens = _tokens(sentence)
            churn = [kind for kind, words in seen.churn if _mentions(sentence, words)]
            cues = [name for name, words in seen.cues if _mentions(sentence, words)]
            if len(tokens) < (1 if churn or cues else MIN_CONTENT_WORDS):
                continue
            frustration = seen.frustration or 0.0
            is_latest = turn.message.id == latest_id
            score = (
                _CHURN_WEIGHT * len(churn)
                + _CUE_WEIGHT * len(cues)
                + _FRUSTRATION_WEIGHT * frustration
                + (_NEGATIVE_BONUS if seen.sentiment == "negative" else 0.0)
                + (_LATEST_BONUS if is_latest else 0.0)
                + _INFO_WEIGHT * min(len(tokens), _INFO_CAP)
            )
            if churn:
                prefix = "Churn risk: "
            elif cues or frustration >= _FRUSTRATED_AT:
                prefix = "Frustrated: "
            elif is_latest:
                prefix = "Latest: "
            else:
                prefix = "Said: "
            found.append(
                _Candidate(score, turn.message.id, position, sentence, tokens, prefix)
            )
    # Best first; on equal scores the more recent sentence is the more useful one.
    found.sort(key=lambda c: (-c.score, -c.message_id, c.position))
    return found


def _bot_line(visible: Sequence[MessageRecord]) -> str | None:
    replies = [m for m in visible if m.role == "assistant"]
    titles: list[str] = []
    for reply in replies:
        for citation in _citations(_notes(reply)):
            if citation["title"] not in titles:
                titles.append(citation["title"])
    if titles:
        return "Bot tried: " + _trim("; ".join(titles))
    if any(_notes(reply).get("abstained") is True for reply in replies):
        return "Bot could not find an answer"
    return None


def _is_chitchat(turn: _Turn) -> bool:
    """A greeting, thank-you or "anyone there?" with nothing to act on."""
    text = turn.message.text
    if _is_small_talk(text):
        return True
    return (
        turn.understood.intent in SMALL_TALK_INTENTS
        and len(_WORD.findall(text)) <= SMALL_TALK_MAX_WORDS
    )


def _is_small_talk(text: str) -> bool:
    words = _WORD.findall(_normalize(text).lower())
    return len(words) <= SMALL_TALK_MAX_WORDS and all(w in _SMALL_TALK_WORDS for w in words)


def _content_sentences(text: str) -> list[str]:
    """The sentences of ``text`` minus small talk ("Hi there.", "Thanks!")."""
    sentences = [_drop_greeting(" ".join(s.split())) for s in _SENTENCE_BREAK.split(text)]
    kept = [s for s in sentences if s and not _is_small_talk(s)]
    # A message that is all small talk but was judged substantive keeps its words.
    if kept:
        return kept
    return [" ".join(text.split())] if text.strip() else []


def _drop_greeting(sentence: str) -> str:
    rest = _LEADING_GREETING.sub("", sentence)
    # Capitalised again so the line reads as a sentence ("Hello, my..." -> "My...").
    return rest if rest == sentence else rest[:1].upper() + rest[1:]


def _mentions(sentence: str, words: str) -> bool:
    words = " ".join(words.split()).lower()
    return bool(words) and words in sentence.lower()


def _normalize(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


def _tokens(text: str) -> frozenset[str]:
    # Apostrophes dropped so "can't", "cant" and "cannot" are one word for near-duplicates.
    plain = _normalize(text).lower().replace("'", "").replace("cannot", "cant")
    words = (stem(w) for w in _WORD.findall(plain) if w not in _STOP)
    return frozenset(w for w in words if len(w) > 1)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _trim(text: str, limit: int = SUMMARY_LINE_CHARS) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis past ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


# --- the other sections --------------------------------------------------------------------


def _transcript_entry(message: MessageRecord) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
        "author": _author(message),
    }


def _author(message: MessageRecord) -> str:
    if message.role == "customer":
        return "customer"
    if message.role == "assistant":
        return "bot"
    if message.role == "agent":
        name = _notes(message).get("agent_name")
        return name if isinstance(name, str) and name.strip() else "agent"
    return message.role


def _trajectory_entry(turn: _Turn) -> dict[str, Any]:
    seen = turn.understood
    return {
        "message_id": turn.message.id,
        "created_at": turn.message.created_at.isoformat(),
        "intent": seen.intent,
        "intent_confidence": _round(seen.intent_confidence),
        "sentiment": seen.sentiment,
        "frustration": _round(seen.frustration),
        "churn_signals": list(dict.fromkeys(kind for kind, _ in seen.churn)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _escalation(
    visible: Sequence[MessageRecord], handoff: HandoffRecord | None
) -> tuple[list[str], dict[str, Any]]:
    """Reasons and evidence from the hand-off, else from the last reply that handed off."""
    if handoff is not None:
        return list(handoff.reasons), _jsonable(dict(handoff.evidence))
    for message in reversed(visible):
        decision = _decision(message) if message.role == "assistant" else {}
        if decision.get("action") == "handoff":
            evidence = decision.get("evidence")
            return _decision_reasons(decision), _jsonable(
                dict(evidence) if isinstance(evidence, Mapping) else {}
            )
    return [], {}


def _customer_dict(customer: CustomerRecord | None) -> dict[str, Any] | None:
    if customer is None:
        return None
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "plan": customer.plan,
        "verified": customer.verified,
        "external_id": customer.external_id,
    }


def _jsonable(value: Any) -> Any:
    """Evidence is JSON from the database, but be safe with dates, tuples and sets."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=str)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
