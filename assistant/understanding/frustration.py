"""How frustrated a customer sounds, in [0, 1], with the cues that say so.

Sentiment lexicons miss much of what signals frustration in support conversations:
"this is the third time I'm asking", "been waiting two weeks", "great, just great",
"I'm cancelling". Each cue below is a named family of phrase-level patterns; a cue reports
the words that triggered it: ``repeated_contact``, ``waiting``, ``shouting``,
``punctuation``, ``profanity``, ``sarcasm``, ``threat_to_leave`` and ``escalation``
(manager, lawyer, chargeback, bad review). The score combines the cues with the message's
sentiment as a noisy-OR, ``1 - prod(1 - weight)``, so every extra cue raises it and none
alone reaches 1.

* A negative sentiment adds ``NEGATIVE_WEIGHT * p(negative)``.
* Shouting and repeated punctuation are arousal, not anger: "THANK YOU!!!" is happy. When
  the sentiment is positive they count only ``1 - p(positive)`` of their weight.

Patterns use bounded alternations and no nested quantifiers (linear time on any input);
text beyond ``MAX_CHARS`` is not scanned. Letters are Unicode-aware, so shouting works for
"ÇA NE MARCHE PAS" and scripts without case never count as shouting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from assistant.understanding.sentiment import SentimentResult

MAX_CHARS = 5_000
MAX_CUES_PER_NAME = 3  # reported matches per cue name (the score counts each name once)
NEGATIVE_WEIGHT = 0.35
REPEAT_BONUS = 0.1  # extra weight per additional distinct match of the same cue, capped

CUE_WEIGHTS: dict[str, float] = {
    "repeated_contact": 0.35,
    "waiting": 0.3,
    "shouting": 0.3,
    "punctuation": 0.2,
    "profanity": 0.45,
    "sarcasm": 0.4,
    "threat_to_leave": 0.5,
    "escalation": 0.35,
}
AROUSAL_CUES = frozenset({"shouting", "punctuation"})

_NUM = (
    r"(?:\d{1,4}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"fifteen|twenty|thirty|a\s+few|a\s+couple\s+(?:of\s+)?|several|many|multiple|few)"
)
_UNIT = r"(?:minutes?|mins?|hours?|hrs?|days?|weeks?|wks?|months?|years?|business\s+days?)"
_ORDINAL = (
    r"(?:second|2nd|third|3rd|fourth|4th|fifth|5th|sixth|6th|seventh|7th|eighth|8th|"
    r"ninth|9th|tenth|10th|\d{1,3}th|nth|umpteenth|hundredth|millionth)"
)
_CONTACT_VERB = (
    r"(?:call(?:ed)?|email(?:ed)?|e-mailed|written|wrote|messag(?:ed|e)|contact(?:ed)?|"
    r"ask(?:ed)?|report(?:ed)?|explain(?:ed)?|told|raised|submitted|opened|chatted|"
    r"reached\s+out)"
)
_PROBLEM = (
    r"(?:not|no|n't|nothing|never|broken|wrong|missing|down|failing|fails|failed|"
    r"crashing|crashes|crashed|charging|charged|waiting|stuck|locked|unable|the\s+same|"
    r"happening|an?\s+(?:issue|problem|error|bug)|doesn'?t|don'?t|didn'?t|isn'?t|"
    r"aren'?t|hasn'?t|haven'?t|can'?t|cannot|won'?t)"
)

_BROKE = (
    r"(?:happen\w*|crash\w*|broke\w*|break\w*|fail\w*|down|charg\w*|lock\w*|wrong|stopped|"
    r"stuck|missing|error|issue|problem|bug|lost|logged\s+out|declin\w*|disconnect\w*|"
    r"freez\w*|froze|not\s+work\w*|doesn'?t\s+work|won'?t\s+\w+|isn'?t\s+\w+|can'?t\s+\w+)"
)
_SUBJECT = (
    r"(?:i'?m|i\s+am|we'?re|we\s+are|i'?ll|i\s+will|we'?ll|we\s+will|i'?ve|we'?ve|"
    r"going\s+to|gonna|about\s+to|ready\s+to|want\s+to|plan(?:ning)?\s+to|"
    r"thinking\s+(?:of|about)|considering|seriously)"
)
_END = r"(?=\s*(?:[.!?,;:)]|$|and\b|but\b|now\b|today\b|unless\b|if\b))"

_PATTERNS: dict[str, list[str]] = {
    "repeated_contact": [
        rf"\b(?:the\s+|my\s+|a\s+|for\s+the\s+)?{_ORDINAL}\s+(?:time|attempt|ticket|email|call|request|message)\b",
        rf"\b(?:{_NUM}|countless|numerous|so\s+many|too\s+many|how\s+many)\s+times\b",
        r"\b(?:yet|once)\s+again\b",
        # "again" alone is often a plain request ("send it again"): only after a problem,
        # with "!", shouted, or opening the message.
        rf"\b{_BROKE}\s+(?:\w+\s+){{0,3}}?again\b",
        r"\bagain\s*(?:\?+!|!)",
        r"(?-i:\bAGAIN\b)",
        r"^\s*again\b",
        rf"\bstill\s+(?:\w+\s+){{0,2}}?{_PROBLEM}\b",
        rf"\b(?:already|previously|repeatedly)\s+{_CONTACT_VERB}\b",
        rf"\b(?:i|we)\s*(?:have|'ve|had|'d)\s+(?:already\s+)?{_CONTACT_VERB}\s+(?:you\s+|support\s+|this\s+)?(?:about\s+this\s+)?(?:twice|three\s+times|before|already|multiple\s+times|several\s+times)\b",
        r"\b(?:keep|keeps|kept)\s+(?:having|getting|happening|asking|telling|saying|failing|crashing|charging|sending)\b",
        r"\bevery\s+(?:single\s+)?time\b",
        r"\b(?:not|n't)\s+(?:the\s+)?first\s+time\b",
    ],
    "waiting": [
        r"\b(?:been|still|kept|keep|am|was|were|'m|'re)\s+(?:\w+\s+)?waiting\b",
        rf"\bwait(?:ed|ing)?\s+(?:for\s+)?(?:over\s+|almost\s+|nearly\s+|more\s+than\s+|about\s+)?{_NUM}\s+{_UNIT}",
        rf"\bbeen\s+(?:\w+\s+){{0,3}}?(?:for|over|about|almost|nearly)\s+(?:the\s+)?(?:past\s+|last\s+|more\s+than\s+)?{_NUM}\s+{_UNIT}",
        rf"\bbeen\s+(?:over\s+|almost\s+|nearly\s+|more\s+than\s+|about\s+)?{_NUM}\s+{_UNIT}",
        rf"\b{_NUM}\s+{_UNIT}\s+(?:now|already|later|and\s+(?:still|nothing|no))\b",
        r"\bfor\s+(?:days|weeks|hours|months|ages|ever|forever|so\s+long|a\s+long\s+time)\b",
        r"\b(?:takes?|taking|took)\s+(?:forever|ages|so\s+long)\b",
        r"\b(?:no|zero|not\s+a\s+single|not\s+one)\s+(?:reply|replies|response|responses|answer|answers|update|updates|word|callback|call\s+back)\b",
        r"\b(?:haven'?t|have\s+not|hasn'?t|has\s+not|never|still\s+not|didn'?t|did\s+not)\s+(?:\w+\s+)?(?:heard\s+back|heard\s+anything|received|gotten|got|replied|responded|answered|arrived|come|shipped)\b",
        r"\b(?:nobody|no\s+one|no-one)\s+(?:has\s+)?(?:\w+\s+)?(?:replied|responded|answered|got\s+back|gotten\s+back|called|helped)\b",
        r"\bon\s+hold\s+(?:for|again)\b",
        r"\bsince\s+(?:last\s+(?:week|month|monday|tuesday|wednesday|thursday|friday|saturday|sunday)|yesterday|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|june|july|august|september|october|november|december)\b",
        r"\b(?:still|yet)\s+to\s+(?:hear|receive|get)\b",
        r"\bhow\s+(?:much\s+)?longer\b",
    ],
    "profanity": [
        r"\b(?:fuck\w*|f+u+c+k+\w*|motherfuck\w*|shit\w*|bullshit|horseshit|crap|crappy|damn|damned|"
        r"goddamn\w*|dammit|wtf|ffs|stfu|omfg|fml|piss(?:ed|ing)?|bastards?|bollocks|bloody|"
        r"arse|asshole|assholes|dickheads?|dumbass|jackass|screw\s+(?:you|this|that|it)|sucks|"
        r"sucked|hell|bs|freaking|frigging|effing)\b",
        r"(?<![\w*])(?:f[*#@$!]{1,3}(?:k|ck|ing|king)|s[*#@$!]{1,3}t|sh[*#@$!]{1,2}t|f[*#@$!]{3,4}|"
        r"d[*#@$!]mn|a[*#@$!]{2})(?![\w*])",
    ],
    "sarcasm": [
        r"\b(?:great|wonderful|perfect|fantastic|brilliant|awesome|lovely|excellent|amazing|terrific|superb|marvell?ous|splendid)\s*[,.!]*\s+just\s+(?:great|wonderful|perfect|fantastic|brilliant|awesome|lovely|excellent|amazing|terrific)\b",
        r"\bthanks?\s+(?:you\s+)?(?:a\s+lot\s+|so\s+much\s+)?for\s+(?:nothing|absolutely\s+nothing|wasting\s+my\s+time|(?:all\s+)?the\s+(?:non-?|un)help)\b",
        r"(?:^|\s)/s\b",
        r"\b(?:oh|ah)\s*[,.!]*\s+(?:how\s+)?(?:wonderful|great|perfect|fantastic|brilliant|lovely|marvell?ous|terrific|splendid|joy|goody)\b(?!\s*[,.!]*\s*(?:thanks?\b(?!\s+for\s+nothing)|thank\s+you\b(?!\s+for\s+nothing)|that\s+(?:worked|works|fixed|helps|helped|did)|it\s+(?:works|worked)))",
        r"\byeah[,.]?\s+right\b",
        r"\b(?:real|very|so|super)\s+helpful\s*(?:\.{3}|…|\s+not\b)",
        r"\b(?:just\s+)?lov(?:e|ing)\s+(?:having\s+to|being\s+(?:ignored|charged|told|kept|put|left|sent|transferred|passed))\b",
        r"\b(?:what\s+a\s+(?:joke|surprise|shock)|big\s+surprise|colou?r\s+me\s+surprised|surprise,?\s+surprise|shocker)\b",
        r"\b(?:nice|good|great)\s+job\s*,?\s+(?:breaking|losing|ruining|messing)\b",
        r"\bthanks?\s+(?:a\s+lot|so\s+much|a\s+bunch)\s*(?:\.{3}|…)",
        r"\b(?:sure\s+you\s+(?:are|do|will|did)|because\s+that\s+makes\s+(?:total\s+)?sense)\b",
    ],
    "threat_to_leave": [
        rf"\b{_SUBJECT}\s+(?:\w+\s+)?cancel+(?:ing|ling)?(?:\s+(?:my|our|the|this)\s+(?:account|subscription|plan|membership|contract|service)|\s+(?:everything|it\s+all)|{_END})",
        rf"\b{_SUBJECT}\s+(?:\w+\s+)?leav(?:e|ing)(?:\s+(?:you|your\s+(?:service|company|platform|app|product|bank))\b|{_END})",
        rf"\b{_SUBJECT}\s+(?:\w+\s+)?(?:switch(?:ing)?|mov(?:e|ing)|go(?:ing)?|migrat(?:e|ing))\s+(?:over\s+)?to\s+(?:(?-i:[A-Z])[\w.-]{{1,40}}|another\s+\w+|a\s+different\s+\w+|a\s+competitor|your\s+competitors?|a\s+rival)",
        r"\bswitch(?:ing)?\s+(?:providers|companies|banks|vendors|services|platforms|apps)\b",
        r"\bswitching\s+(?:over\s+)?to\s+(?:(?-i:[A-Z])[\w.-]{1,40}|another\s+(?:provider|company|service|bank|vendor|platform|app|tool)|a\s+competitor|your\s+competitors?)",
        r"\bcancel+(?:ing|ling|ed|led)?\s+(?:my|our)\s+(?:account|subscription|plan|membership|contract)\b",
        r"\b(?:take|taking)\s+(?:my|our)\s+(?:business|money|custom)\s+(?:elsewhere|somewhere\s+else)\b",
        r"\b(?:find|finding|look(?:ing)?\s+for)\s+(?:a|another|a\s+new|a\s+different)\s+(?:provider|company|service|bank|vendor|platform|solution)\b",
        r"\b(?:never|not)\s+(?:\w+\s+)?(?:using|use|buying|buy|ordering|order|recommend(?:ing)?)\s+(?:\w+\s+){0,3}?again\b",
        r"\b(?:close|delete|terminate)\s+(?:my|our)\s+(?:account|subscription)\b",
        r"\b(?:done|finished|through)\s+with\s+(?:you|your\s+(?:company|service|product|app))\b",
        r"\blast\s+(?:chance|straw)\b",
        r"\b(?:lost|losing)\s+(?:a|another|a\s+loyal)\s+(?:customer|client)\b",
    ],
    "escalation": [
        # Asking for a person is not frustration by itself (the policy handles it); asking
        # for someone's boss is.
        r"\b(?:speak|talk)\s+(?:to|with)\s+(?:a|an|your|the)\s+(?:manager|supervisor|boss)\b",
        r"\b(?:get|give)\s+me\s+(?:a|an|your|the)\s+(?:manager|supervisor)\b",
        r"\b(?:my|our)\s+(?:lawyer|attorney|solicitor)s?\b",
        r"\b(?:legal\s+action|sue\s+you|lawsuit|small\s+claims)\b",
        r"\b(?:report(?:ing)?\s+you|file\s+a\s+complaint|formal\s+complaint|better\s+business\s+bureau|bbb|ombudsman)\b",
        r"\b(?:charge\s*-?\s*back|dispute\s+the\s+(?:charge|payment))\b",
        r"\b(?:leave|leaving|write|writing|post|posting)\s+(?:a\s+)?(?:bad|negative|1-star|one-star|one\s+star|terrible|scathing)\s+review\b",
    ],
}

_COMPILED: dict[str, list[re.Pattern[str]]] = {
    name: [re.compile(p, re.IGNORECASE) for p in patterns] for name, patterns in _PATTERNS.items()
}
_PUNCTUATION = re.compile(r"[!?¡¿！？]{2,}")
_WORD = re.compile(r"[^\W\d_]{2,}")
# All-caps words that are not shouting: acronyms common in support messages.
_ACRONYM_WORDS = """
API APIS URL URLS SMS PDF CSV VPN FAQ USB SSO SAML SCIM MFA OTP PIN ID IDS UI UX OK
IT HR CEO CTO CFO VP US USA UK EU GDPR VAT TAX USD EUR GBP AM PM ETA ASAP FYI IOS
PC MAC TV DNS SSL TLS HTTP HTTPS HTML JSON XML SQL AWS GCP IP ISP LTE WIFI GPS ATM
IBAN SWIFT BIC PO QA SLA CRM ERP SDK CLI IDE PR DM AI ML RSVP TBD NA
"""
_ACRONYMS = frozenset(_ACRONYM_WORDS.split())
_SHOUT_MIN_WORDS = 2
_SHOUT_MIN_LETTERS = 8


@dataclass(frozen=True)
class Cue:
    """One frustration cue: its name and the words that triggered it."""

    name: str
    text: str

    def as_dict(self) -> dict[str, str]:
        """``{"name": ..., "text": ...}``."""
        return {"name": self.name, "text": self.text}


@dataclass(frozen=True)
class FrustrationResult:
    """A frustration score in [0, 1] and the cues found in the message."""

    score: float
    cues: list[Cue] = field(default_factory=list)

    @property
    def cue_names(self) -> list[str]:
        """The distinct cue names, in order of first appearance."""
        return list(dict.fromkeys(cue.name for cue in self.cues))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form: the rounded score and the cues."""
        return {"score": round(self.score, 4), "cues": [cue.as_dict() for cue in self.cues]}


def _clean(match: str) -> str:
    return " ".join(match.split()).rstrip(".,;:")


def _phrase_cues(text: str) -> list[Cue]:
    """Per cue name: all pattern matches, overlapping ones merged into one phrase."""
    cues: list[Cue] = []
    for name, patterns in _COMPILED.items():
        spans = sorted(m.span() for p in patterns for m in p.finditer(text) if m.end() > m.start())
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        seen: set[str] = set()
        for start, end in merged:
            words = _clean(text[start:end])
            if words and words.lower() not in seen:
                seen.add(words.lower())
                cues.append(Cue(name, words))
            if len(seen) >= MAX_CUES_PER_NAME:
                break
    return cues


def _shouting(text: str) -> Cue | None:
    words = _WORD.findall(text)
    shouted = [w for w in words if w.isupper() and w.upper() not in _ACRONYMS]
    letters = sum(len(w) for w in shouted)
    if len(shouted) >= _SHOUT_MIN_WORDS and letters >= _SHOUT_MIN_LETTERS:
        return Cue("shouting", " ".join(shouted[:8]))
    # One long shouted word ("UNACCEPTABLE") counts too.
    long_words = [w for w in shouted if len(w) >= 6]
    if long_words:
        return Cue("shouting", long_words[0])
    return None


def _punctuation(text: str) -> Cue | None:
    runs = [m.group(0) for m in _PUNCTUATION.finditer(text)]
    if not runs:
        return None
    return Cue("punctuation", max(runs, key=len)[:12])


_HOW_QUESTION = re.compile(
    r"^\s*(?:how\s+(?:do|can|would|should|to)\b|where\s+(?:do|can)\s+(?:i|we)\b|"
    r"can\s+(?:i|we)\b|is\s+it\s+possible\b|what\s+happens\s+(?:if|when)\b)",
    re.IGNORECASE,
)


def detect_cues(text: str) -> list[Cue]:
    """Every frustration cue in ``text`` (its first ``MAX_CHARS`` characters)."""
    if not text or not text.strip():
        return []
    text = text[:MAX_CHARS]
    # Curly apostrophes would defeat "haven't"/"I'm" patterns.
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    cues = _phrase_cues(text)
    if _HOW_QUESTION.match(text):
        # "How do I cancel my subscription?" asks for steps; it is not a threat to leave
        # (the churn detector still records the cancellation for customer health).
        cues = [cue for cue in cues if cue.name != "threat_to_leave"]
    for extra in (_shouting(text), _punctuation(text)):
        if extra is not None:
            cues.append(extra)
    return cues


def _combine(cues: list[Cue], sentiment: SentimentResult | None) -> float:
    positive = sentiment.scores.get("positive", 0.0) if sentiment is not None else 0.0
    if sentiment is not None and sentiment.label != "positive":
        positive = 0.0
    counts: dict[str, int] = {}
    for cue in cues:
        counts[cue.name] = counts.get(cue.name, 0) + 1
    calm = 1.0
    for name, count in counts.items():
        weight = CUE_WEIGHTS.get(name, 0.3)
        weight = min(0.9, weight + REPEAT_BONUS * (count - 1))
        if name in AROUSAL_CUES:
            weight *= 1.0 - positive
        calm *= 1.0 - weight
    if sentiment is not None:
        negative = min(max(sentiment.scores.get("negative", 0.0), 0.0), 1.0)
        calm *= 1.0 - NEGATIVE_WEIGHT * negative
    return min(max(1.0 - calm, 0.0), 1.0)


def frustration(text: str, sentiment: SentimentResult | None = None) -> FrustrationResult:
    """Frustration of one customer message: a score in [0, 1] and its cues.

    ``sentiment`` (optional) is the message's :class:`SentimentResult`; its negative
    probability raises the score, and a positive label damps shouting and punctuation.
    Without it the score comes from the cues alone.
    """
    cues = detect_cues(text)
    return FrustrationResult(score=_combine(cues, sentiment), cues=cues)
