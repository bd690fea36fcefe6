"""PII redaction (SECURITY.md #21): 0 card numbers leaked, recall >= 0.99 per type.

Hand-written cases pin the behaviour; a synthetic labelled set (fixed seed) measures recall
per PII type and how many ordinary sentences (invoice numbers, dates, prices, order ids,
versions, IP addresses) come out unchanged.
"""

from __future__ import annotations

import logging
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator

import phonenumbers
import pytest

from assistant.redaction import (
    CARD,
    EMAIL,
    IBAN,
    PHONE,
    SECRET,
    RedactingFilter,
    iban_ok,
    install_log_redaction,
    luhn_ok,
    redact,
    redact_value,
)

PLACEHOLDER = {"email": EMAIL, "phone": PHONE, "card": CARD, "iban": IBAN, "secret": SECRET}

# -- hand-written cases -------------------------------------------------------------------

POSITIVES = [
    ("write to jane.doe+billing@example.co.uk today", "write to [email] today"),
    ("Mail: J_Smith99@mail.sub-domain.io.", "Mail: [email]."),
    ("call me at (415) 555-2671 please", "call me at [phone] please"),
    ("US: +1 415 555 2671, +14155552671 or 415.555.2671", "US: [phone], [phone] or [phone]"),
    ("UK mobile 07911 123456 or +44 7911 123456", "UK mobile [phone] or [phone]"),
    ("London office 020 7123 4567", "London office [phone]"),
    ("Berlin 030 12345678, Handy 0151 23456789", "Berlin [phone], Handy [phone]"),
    ("+49 (0)30 1234 5678 / 0049 30 12345678", "[phone] / [phone]"),
    ("my card is 4111 1111 1111 1111 exp 12/26", "my card is [card] exp 12/26"),
    ("4111-1111-1111-1111", "[card]"),
    ("4111.1111.1111.1111 or 4111 11111111 1111", "[card] or [card]"),
    ("card:5555555555554444.", "card:[card]."),
    ("typo +4111111111111111", "typo +[card]"),  # no valid phone, so still a card
    ("amex 3782 822463 10005 cvc 1234", "amex [card] cvc 1234"),
    ("diners 3056 930902 5904", "diners [card]"),
    ("19 digits 6212 3456 7890 1234 569", "19 digits [card]"),
    ("paid on 2024-01-15 4111 1111 1111 1111", "paid on 2024-01-15 [card]"),
    ("IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX", "IBAN [iban], BIC COBADEFFXXX"),
    ("GB82WEST12345698765432 and fr1420041010050500013m02606", "[iban] and [iban]"),
    ("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "key [secret]"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789!", "token [secret]!"),
    ("AWS AKIAIOSFODNN7EXAMPLE here", "AWS [secret] here"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [secret]"),
    ("slack xoxb-123456789012-abcdefghijkl", "slack [secret]"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: Bearer [secret]"),
    ('{"api_key": "abcd1234efgh5678"}', '{"api_key": "[secret]"}'),
    ("password=correct-horse-battery", "password=[secret]"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "jwt [secret]",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY----- done",
        "[secret] done",
    ),
]

NEGATIVES = [
    "Invoice 1042 for $49 was paid",
    "INV-2024-001042 is overdue since 2024-01-15",
    "order 4155552671 shipped",  # a ten-digit order number named as one
    "Order #4155552671 is late",
    "ticket 48213 at 10:30, next at 14:05:33",
    "In 2024 we paid $1,299.00 (EUR 1.299,00) for 12 seats",
    "upgrade to v2.14.0 or 1.2.3-beta",
    "server 192.168.1.100 port 8080, gateway 10.0.0.254",
    "timestamp 1718000000000 and 1718000000",
    "not a card: 4111 1111 1111 1112",
    "not an iban: DE89370400440532013001",  # (grouped, its digits could pass Luhn)
    "SKU 000123456, ZIP 94103, build 20240115",
    "tracking 1Z999AA10123456784",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
    "dates 15/01/2024, 01/15/2024 and 15.01.2024",
    "sk-8 and ghp_x are too short to be keys",
    "email me at support at example dot com",
    "the password: must have 12 characters",
    "50% off, 3x faster, 99.9% uptime, 1,000,000 requests",
    "[email] [phone] [card] [iban] [secret]",
]


@pytest.mark.parametrize(("text", "expected"), POSITIVES, ids=lambda v: str(v)[:30])
def test_positives(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", NEGATIVES, ids=lambda v: str(v)[:30])
def test_negatives_are_untouched(text: str) -> None:
    assert redact(text) == text


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # one character short for Germany
    assert not iban_ok("ZZ89370400440532013000")


def test_redact_value_walks_json_and_keeps_keys() -> None:
    value = {
        "jane@example.com": ["call 415-555-2671", {"card": "4111 1111 1111 1111"}],
        "n": 4111111111111111,
        "count": 3,
        "ok": True,
        "nothing": None,
        "pair": ("x@y.io", 1.5),
    }
    assert redact_value(value) == {
        "jane@example.com": ["call [phone]", {"card": "[card]"}],
        "n": "[card]",
        "count": 3,
        "ok": True,
        "nothing": None,
        "pair": ("[email]", 1.5),
    }
    assert value["n"] == 4111111111111111  # the input is not modified


# -- the synthetic labelled set -------------------------------------------------------------

SEED = 20240521


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


CARD_BRANDS = [  # (prefixes, lengths, grouping)
    (["4"], [16], (4, 4, 4, 4)),
    (["4"], [13], (4, 4, 4, 1)),
    (["51", "52", "53", "54", "55", "2221", "2720"], [16], (4, 4, 4, 4)),
    (["34", "37"], [15], (4, 6, 5)),
    (["6011", "65"], [16], (4, 4, 4, 4)),
    (["3528", "3589"], [16], (4, 4, 4, 4)),
    (["36", "300", "305"], [14], (4, 6, 4)),
    (["62"], [19], (4, 4, 4, 4, 3)),
]


def gen_card(rng: random.Random) -> str:
    prefixes, lengths, grouping = rng.choice(CARD_BRANDS)
    digits = _luhn_complete(rng.choice(prefixes), rng.choice(lengths), rng)
    style = rng.choice(["plain", " ", " ", "-", "."])
    if style == "plain":
        return digits
    parts, pos = [], 0
    for size in grouping:
        parts.append(digits[pos:pos + size])
        pos += size
    return style.join(parts)


FIRST = ["jane", "john", "maria", "li", "ahmed", "olga", "kim", "sam", "noah", "eva"]
LAST = ["doe", "smith", "garcia", "chen", "khan", "ivanova", "park", "lee", "brown", "muller"]
DOMAINS = ["example.com", "mail.co.uk", "corp.example.de", "acme.io", "post.example.org"]


def gen_email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([
        f"{first}.{last}", f"{first}_{last}{rng.randint(1, 99)}", f"{first}+support",
        f"{first[0]}{last}", f"{last}.{first}{rng.randint(1970, 2005)}",
    ])
    return f"{local}@{rng.choice(DOMAINS)}"


def _valid_number(rng: random.Random, region: str, national: Callable[[], str]) -> str:
    while True:
        candidate = national()
        parsed = phonenumbers.parse(candidate, region)
        if phonenumbers.is_valid_number(parsed):
            return candidate


def gen_phone(rng: random.Random) -> str:
    region = rng.choice(["US", "GB", "DE"])
    if region == "US":
        area = rng.choice(["212", "415", "646", "312", "617", "303", "206", "512", "702", "919"])
        exchange = str(rng.randint(200, 999))
        line = f"{rng.randint(0, 9999):04d}"
        number = _valid_number(rng, "US", lambda: f"{area}{exchange}{line}")
        a, e, s = number[:3], number[3:6], number[6:]
        return rng.choice([
            f"+1{a}{e}{s}", f"+1 {a} {e} {s}", f"({a}) {e}-{s}", f"{a}-{e}-{s}",
            f"{a}.{e}.{s}", f"+1 ({a}) {e}-{s}", f"1-{a}-{e}-{s}",
        ])
    if region == "GB":
        kind = rng.choice(["mobile", "london", "manchester"])
        if kind == "mobile":
            number = _valid_number(
                rng, "GB", lambda: f"07{rng.choice('4589')}{rng.randint(0, 99999999):08d}")
            head, tail = number[1:5], number[5:]
        elif kind == "london":
            number = _valid_number(
                rng, "GB", lambda: f"020{rng.choice('378')}{rng.randint(0, 9999999):07d}")
            head, tail = number[1:3], f"{number[3:7]} {number[7:]}"
        else:
            number = _valid_number(rng, "GB", lambda: f"0161{rng.randint(2000000, 9999999)}")
            head, tail = number[1:4], f"{number[4:7]} {number[7:]}"
        return rng.choice([
            f"+44 {head} {tail}", f"0{head} {tail}", f"+44{head}{tail.replace(' ', '')}",
            f"0044 {head} {tail}",
        ])
    kind = rng.choice(["mobile", "berlin", "munich"])
    if kind == "mobile":
        number = _valid_number(
            rng, "DE", lambda: f"01{rng.choice(['51', '52', '60', '70', '76'])}"
                               f"{rng.randint(1000000, 99999999)}")
        head, tail = number[1:4], number[4:]
    elif kind == "berlin":
        number = _valid_number(rng, "DE", lambda: f"030{rng.randint(1000000, 99999999)}")
        head, tail = number[1:3], number[3:]
    else:
        number = _valid_number(rng, "DE", lambda: f"089{rng.randint(1000000, 99999999)}")
        head, tail = number[1:3], number[3:]
    return rng.choice([
        f"+49 {head} {tail}", f"0{head} {tail}", f"+49{head}{tail}", f"0{head}/{tail}",
        f"+49 (0){head} {tail}", f"0{head}-{tail}",
    ])


IBAN_BBAN = {  # country -> BBAN shape: d digit, A letter, c alphanumeric
    "DE": "dddddddddddddddddd", "GB": "AAAAdddddddddddddd", "FR": "ddddddddddcccccccccccdd",
    "NL": "AAAAdddddddddd", "ES": "dddddddddddddddddddd", "IT": "Addddddddddcccccccccccc",
    "CH": "dddddcccccccccccc", "AT": "dddddddddddddddd", "BE": "dddddddddddd",
}


def gen_iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_BBAN))
    pools = {"d": string.digits, "A": string.ascii_uppercase,
             "c": string.digits + string.ascii_uppercase}
    bban = "".join(rng.choice(pools[kind]) for kind in IBAN_BBAN[country])
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    assert iban_ok(iban)
    style = rng.choice(["compact", "grouped", "grouped", "lower"])
    if style == "compact":
        return iban
    grouped = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return grouped if style == "grouped" else iban.lower()


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def gen_secret(rng: random.Random) -> str:
    upper = string.ascii_uppercase + string.digits
    return rng.choice([
        lambda: f"sk-proj-{_token(rng, 48)}",
        lambda: f"sk-{_token(rng, 48)}",
        lambda: f"sk-ant-api03-{_token(rng, 40)}",
        lambda: f"ghp_{_token(rng, 36)}",
        lambda: f"github_pat_{_token(rng, 22)}_{_token(rng, 59)}",
        lambda: f"AKIA{_token(rng, 16, upper)}",
        lambda: f"sk_live_{_token(rng, 24)}",
        lambda: f"xoxb-{rng.randint(10**11, 10**12 - 1)}-{_token(rng, 24)}",
        lambda: f"AIza{_token(rng, 35)}",
        lambda: f"glpat-{_token(rng, 20)}",
        lambda: f"hf_{_token(rng, 34)}",
    ])()


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "card": gen_card, "email": gen_email, "phone": gen_phone, "iban": gen_iban,
    "secret": gen_secret,
}

TEMPLATES = {
    "card": ["my card is {}", "charge {} again", "card number: {}", "({}) was declined",
             "use {}, exp 09/27", "paid with {} on 2024-03-02"],
    "email": ["email me at {}", "my address is {}.", "send it to <{}>", "login {} fails",
              "contact: {}, thanks"],
    "phone": ["call me at {}", "my number is {}.", "phone: {}", "text {} after 5pm",
              "reach me on {} or by mail", "(tel. {})"],
    "iban": ["IBAN: {}", "refund to {} please", "my account {}.", "transfer to {}, thanks"],
    "secret": ["my key is {}", "OPENAI_API_KEY={}", "token {} leaked", "used `{}` in curl"],
}

FILLERS = ["Hi,", "Hello team.", "Invoice 1042 for $49 is wrong.", "Order ORD-88412345:",
           "Since 2024-01-15", "It happened at 10:30.", "", "Urgent!", "Re: ticket #48213 -"]


def positive_sentences(n: int, rng: random.Random) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Sentences with 1-3 PII items each, and their labels ``(type, value)``."""
    kinds = sorted(GENERATORS)
    for i in range(n):
        items = [kinds[i % len(kinds)], *rng.sample(kinds, rng.randint(0, 2))]
        labels, parts = [], [rng.choice(FILLERS)]
        for kind in items:
            value = GENERATORS[kind](rng)
            labels.append((kind, value))
            parts.append(rng.choice(TEMPLATES[kind]).format(value))
        parts.append(rng.choice(FILLERS))
        yield " ".join(p for p in parts if p), labels


def negative_sentence(rng: random.Random) -> str:
    r = rng.randint
    pieces = [
        lambda: f"Invoice {r(1000, 99999)} for ${r(5, 999)}",
        lambda: f"INV-{r(2019, 2026)}-{r(1, 999999):06d}",
        lambda: f"order ORD-{r(10**7, 10**8 - 1)}",
        lambda: f"order #{r(100000, 9999999999)}",
        lambda: f"on {r(2019, 2026)}-{r(1, 12):02d}-{r(1, 28):02d}",
        lambda: f"on {r(1, 28):02d}/{r(1, 12):02d}/{r(2019, 2026)}",
        lambda: f"on {r(1, 28)}.{r(1, 12)}.{r(2019, 2026)}",
        lambda: f"at {r(0, 23):02d}:{r(0, 59):02d}",
        lambda: f"{r(2019, 2026)}-{r(1, 12):02d}-{r(1, 28):02d}T{r(0, 23):02d}:{r(0, 59):02d}:00Z",
        lambda: f"€{r(1, 9)},{r(0, 999):03d}.{r(0, 99):02d}",
        lambda: f"{r(1, 500)}.{r(0, 99):02d} USD",
        lambda: f"version {r(0, 9)}.{r(0, 30)}.{r(0, 99)}",
        lambda: f"v{r(0, 9)}.{r(0, 30)}",
        lambda: f"IP {r(1, 254)}.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}",
        lambda: f"port {r(1024, 65535)}",
        lambda: f"ticket #{r(1000, 999999)}",
        lambda: f"{r(1, 100)}% of {r(2, 500)} seats",
        lambda: f"in {r(1990, 2030)}",
        lambda: f"took {r(1, 99999)} ms",
        lambda: f"SKU {r(0, 999999999):09d}",
        lambda: f"ZIP {r(10000, 99999)}",
        lambda: f"ref {r(10**9, 10**10 - 1)}",
        lambda: f"ts {r(1_600_000_000_000, 1_800_000_000_000)}",
        lambda: f"qty {r(1, 50)} x {r(1, 999)}.{r(0, 99):02d}",
        lambda: f"build {r(2019, 2026)}{r(1, 12):02d}{r(1, 28):02d}",
    ]
    return " and ".join(rng.choice(pieces)() for _ in range(rng.randint(1, 3)))


def _digits(text: str) -> str:
    return re.sub(r"[\s().+/-]", "", text)


def test_synthetic_set_recall_and_no_card_leaks() -> None:
    rng = random.Random(SEED)
    found: Counter[str] = Counter()
    typed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    misses: list[tuple[str, str]] = []
    cards_leaked = 0
    for sentence, labels in positive_sentences(500, rng):
        redacted = redact(sentence)
        compact = _digits(redacted)
        expected = Counter(kind for kind, _ in labels)
        for kind, value in labels:
            total[kind] += 1
            gone = value not in redacted
            if kind == "card":
                gone = gone and _digits(value) not in compact
                cards_leaked += not gone
            if gone:
                found[kind] += 1
            else:
                misses.append((kind, sentence))
        for kind, count in expected.items():
            typed[kind] += min(count, redacted.count(PLACEHOLDER[kind]))
    recall = {kind: found[kind] / total[kind] for kind in total}
    typed_recall = {kind: typed[kind] / total[kind] for kind in total}
    assert cards_leaked == 0, misses
    assert all(value >= 0.99 for value in recall.values()), (recall, misses[:10])
    assert all(value >= 0.99 for value in typed_recall.values()), typed_recall


def test_synthetic_negatives_stay_untouched() -> None:
    rng = random.Random(SEED + 1)
    sentences = [negative_sentence(rng) for _ in range(500)]
    changed = [(s, redact(s)) for s in sentences if redact(s) != s]
    precision = 1 - len(changed) / len(sentences)
    assert precision >= 0.98, changed


# -- logging -------------------------------------------------------------------------------


def test_filter_redacts_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("assistant.test_redaction")
    redacting = RedactingFilter()
    caplog.handler.addFilter(redacting)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("customer %s paid with %s", "jane@example.com", "4111 1111 1111 1111")
            try:
                raise ValueError("bad phone +44 7911 123456")
            except ValueError:
                logger.exception("lookup failed for %(who)s", {"who": "bob@example.org"})
    finally:
        caplog.handler.removeFilter(redacting)
    first, second = caplog.records
    assert first.getMessage() == "customer [email] paid with [card]" and first.args is None
    assert second.getMessage() == "lookup failed for [email]"
    assert "[phone]" in caplog.text and "7911" not in caplog.text
    assert "jane@" not in caplog.text and "4111" not in caplog.text


def test_filter_can_keep_args_for_formatters_that_read_them() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/v1/kb/search?q=jane@example.com",
                                "1.1", 200), None)
    assert RedactingFilter(keep_args=True).filter(record)
    assert isinstance(record.args, tuple) and record.args[2] == "/v1/kb/search?q=[email]"
    assert record.args[4] == 200


def test_install_log_redaction_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = logging.StreamHandler()
    # Only this handler and fresh uvicorn filter lists: the test leaves pytest's own
    # capture handlers and the real loggers as they were.
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    install_log_redaction()
    install_log_redaction()
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    access = logging.getLogger("uvicorn.access").filters
    assert len(access) == 1 and isinstance(access[0], RedactingFilter) and access[0].keep_args
    assert len(logging.getLogger("uvicorn.error").filters) == 1


def test_the_command_line_installs_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    import assistant.cli

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)  # basicConfig sets it; restored after
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    monkeypatch.setattr(assistant.cli, "app", lambda: None)
    assistant.cli.main()
    (handler,) = logging.getLogger().handlers  # the one basicConfig added
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
