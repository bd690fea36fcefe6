"""PII redaction for logs and exports: emails, phones, payment cards, IBANs and secrets.

:func:`redact` replaces what it finds with a typed placeholder (``[email]``, ``[phone]``,
``[card]``, ``[iban]``, ``[secret]``), so an export still shows *that* a customer gave a
phone number without showing it. Everything here is deterministic and offline: patterns,
checksums (Luhn for cards, mod 97 for IBANs) and Google's libphonenumber metadata through
the ``phonenumbers`` package. No NER model is involved (none can be downloaded here), so
names and street addresses are not redacted.

The detectors run in a fixed order, each over the output of the previous one: secrets
first (a key may contain digit runs or an ``@``), then emails (``4155552671@txt.att.net``
is one email, not a phone), IBANs (their digits would otherwise look like a card or a
phone), cards, and phones last, the slowest and the most ambiguous.

The target (SECURITY.md #21) is zero card numbers leaked and a recall of at least 0.99 per
type on a synthetic labelled set, without touching invoice numbers, years, prices, order
ids, versions, times or IP addresses; ``tests/test_redaction.py`` measures both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

import phonenumbers

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
IBAN = "[iban]"
SECRET = "[secret]"  # noqa: S105 (a placeholder, not a credential)

# Regions whose national formats (a leading 0 in GB and DE, "(415) 555-2671" in the US)
# are recognised. Numbers written with a leading "+" or "00" are found whatever the
# region, so passing None as well would find nothing more.
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE")

# -- secrets -------------------------------------------------------------------------------

# Tokens with a well-known prefix: the prefix makes them near-certain, the length keeps
# ordinary words like "sk-8" or "ghp_x" out.
_SECRET_TOKENS = re.compile(
    r"""
    (?<![A-Za-z0-9_-])(?:
        sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}   # OpenAI, Anthropic
      | (?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}           # Stripe
      | whsec_[A-Za-z0-9]{20,}                                # Stripe webhook secret
      | gh[pousr]_[A-Za-z0-9]{30,}                            # GitHub
      | github_pat_[A-Za-z0-9_]{30,}                          # GitHub fine-grained
      | glpat-[A-Za-z0-9_-]{20,}                              # GitLab
      | (?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}         # AWS access key id
      | AIza[A-Za-z0-9_-]{35}                                 # Google API key
      | xox[abposr]-[A-Za-z0-9-]{10,}                         # Slack
      | hf_[A-Za-z0-9]{30,}                                   # Hugging Face
      | npm_[A-Za-z0-9]{36}                                   # npm
      | SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}            # SendGrid
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}  # JWT
    )(?![A-Za-z0-9_-])
    """,
    re.VERBOSE,
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
# "Authorization: Bearer <token>" and "api_key=<value>": the label says it is a secret
# even when the value has no known prefix. The label is kept so the log stays readable.
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*")
_LABELLED_SECRET = re.compile(
    r"""(?ix)
    (\b(?:api[_-]?key|api[_-]?secret|client[_-]?secret|secret[_-]?key|access[_-]?token
        |auth[_-]?token|refresh[_-]?token|private[_-]?key|password|passwd)
     ["']?\s*[:=]\s*["']?)
    ([^\s"',;&]{6,})
    """
)

# -- emails --------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])"
)

# -- IBANs ---------------------------------------------------------------------------------

# Lengths from the SWIFT IBAN registry. A country outside this table is not an IBAN,
# which keeps "ab12 ..." and friends out before any checksum is computed.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")

# -- cards ---------------------------------------------------------------------------------

# A run of digit groups joined by single spaces, dashes or dots.
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ .-]\d+)*(?!\d)")
_GROUP = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")

# -- phones --------------------------------------------------------------------------------

# A number that continues an identifier ("INV-2024-001042", "#4155552671") or follows a
# word naming one ("order 4155552671") is a reference, not a phone. Only the word right
# before the number counts, so "order 1042, call 415-555-2671" still loses the phone.
_ID_BEFORE = re.compile(
    r"""(?ix)
    (?: [A-Za-z0-9][-_/]        # continues an identifier
      | \#\s*                   # "#1234", "no. # 1234"
      | \b(?:order|invoice|inv|ticket|ref|reference|sku|tracking|case|po|id|account|acct
            |transaction|txn|receipt|confirmation|serial|build|version)
        \.?\s*[:#]?\s*
    )$
    """
)
_ID_AFTER = re.compile(r"[-_/][A-Za-z0-9]")  # used with match(): anchored
# A run of digits with the separators phone numbers are written with (any dash, dots,
# slashes, brackets, spaces); runs with fewer than 7 digits are never handed to the matcher.
_PHONE_RUN = re.compile(r"[+(]*\d(?:[\d\s().\-/\u2010-\u2015\u2212\uff0d]*\d)?")
_CONTEXT = 12  # characters of context either side of a run
# IPv4 addresses and day-first dates ("95.124.218.38", "16.8.2022", "15/01/2024") parse
# as valid US or German numbers; a phone match overlapping one is dropped.
_NOT_PHONE = re.compile(
    r"""(?x)
    (?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])         # IPv4
  | (?<![\d./-])\d{1,2}([./-])\d{1,2}\1\d{2,4}(?![\d./-])  # 16.8.2022, 01/15/24
  | (?<![\d.-])\d{4}-\d{1,2}-\d{1,2}(?![\d-])           # 2024-01-15
    """
)


def redact(text: str) -> str:
    """Replace emails, phone numbers, payment cards, IBANs and secrets with placeholders.

    Args:
        text: Any text: a customer message, a log line, a JSON string.

    Returns:
        The text with each finding replaced by ``[email]``, ``[phone]``, ``[card]``,
        ``[iban]`` or ``[secret]``; everything else is left exactly as it was.
    """
    if not text:
        return text
    text = _redact_secrets(text)
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    digits = _count_digits(text)
    if digits >= 4:  # an IBAN's check digits and more (Dutch ones have only 12 digits)
        text = _redact_ibans(text)
        digits = _count_digits(text)
    if digits >= 13:  # the shortest card number
        text = _DIGIT_RUN.sub(_card_replacement, text)
        digits = _count_digits(text)
    if digits >= 7:  # no valid phone number in the supported regions is shorter
        text = _redact_phones(text)
    return text


def _count_digits(text: str) -> int:
    return len(_DIGIT.findall(text))


def redact_value(value: Any) -> Any:
    """:func:`redact` every string inside a JSON-like value; keys and types are kept.

    Integers that are themselves a Luhn-valid card number become ``"[card]"``: a payload
    that stored a card as a number must not leak it either.

    Args:
        value: A dict, list, tuple, string or scalar (as loaded from a JSON column).

    Returns:
        A redacted copy (the input is not modified).
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_value(item) for item in value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        digits = str(value)
        return CARD if _is_card(digits) else value
    return value


def luhn_ok(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """Whether a compact IBAN (no spaces) has its country's length and a valid checksum."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    if not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# -- detectors -----------------------------------------------------------------------------


def _redact_secrets(text: str) -> str:
    if "-----BEGIN" in text:
        text = _PRIVATE_KEY.sub(SECRET, text)
    text = _SECRET_TOKENS.sub(SECRET, text)
    text = _BEARER.sub(lambda m: m.group(1) + SECRET, text)
    return _LABELLED_SECRET.sub(
        lambda m: m.group(0) if m.group(2) == SECRET else m.group(1) + SECRET, text
    )


def _redact_ibans(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for start in _IBAN_START.finditer(text):
        if spans and start.start() < spans[-1][1]:
            continue
        end = _iban_end(text, start)
        if end is not None:
            spans.append((start.start(), end))
    return _replace_spans(text, spans, IBAN)


def _iban_end(text: str, start: re.Match[str]) -> int | None:
    """Where the IBAN starting at ``start`` ends, or None if it is not a valid one."""
    length = IBAN_LENGTHS.get(start.group(1).upper())
    if length is None:
        return None
    chars = [start.group(1), start.group(2)]
    count, pos = 4, start.end()
    # Printed IBANs come in groups of four separated by a space (sometimes a dash): take
    # single separators, stop at anything else, and stop at the country's length.
    while count < length and pos < len(text):
        ch = text[pos]
        if ch in " -" and pos + 1 < len(text) and text[pos + 1].isalnum():
            pos += 1
            continue
        if not (ch.isascii() and ch.isalnum()):
            break
        chars.append(ch)
        count += 1
        pos += 1
    if count != length or (pos < len(text) and text[pos].isalnum()):
        return None
    return pos if iban_ok("".join(chars)) else None


def _is_card(digits: str) -> bool:
    # Payment networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro)
    # issue numbers starting with 2 to 6; the prefix rule keeps millisecond timestamps
    # and zero-padded ids that happen to pass Luhn (one in ten does) out.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _card_replacement(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) < 13 or _count_digits(run) < 13:
        return run
    if match.start() > 0 and match.string[match.start() - 1] == "+" and _is_phone("+" + run):
        # "+4915123456789" is a phone even when its digits happen to pass Luhn; a card
        # written after a "+" is still a card, as it is no valid phone number.
        return run
    groups = [(g.start(), g.end()) for g in _GROUP.finditer(run)]
    spans = _card_spans(run, groups)
    return _replace_spans(run, spans, CARD) if spans else run


def _is_phone(text: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(text, None))
    except phonenumbers.NumberParseException:
        return False


def _card_spans(run: str, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The Luhn-valid card numbers in a run of digit groups, longest first from the left.

    A card is one group of 13-19 digits or several groups as printed or typed (4-4-4-4,
    4-6-5, 4-4-4-4-3, 4-8-4, ...): every group but the last has 3-8 digits. So a date or
    a phone number next to a card ("4111 1111 1111 1111 12/26") does not hide it, and a
    run of short groups ("2024-01-15") never forms one.
    """
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        best = None
        digits = ""
        for j in range(i, len(groups)):
            start, end = groups[j]
            if j > i and not 3 <= groups[j - 1][1] - groups[j - 1][0] <= 8:
                break
            digits += run[start:end]
            if len(digits) > 19:
                break
            if _is_card(digits):
                best = j
        if best is None:
            i += 1
            continue
        spans.append((groups[i][0], groups[best][1]))
        i = best + 1
    return spans


def _redact_phones(text: str) -> str:
    found: list[tuple[int, int]] = []
    protected = [m.span() for m in _NOT_PHONE.finditer(text)]
    for window_start, window in _phone_windows(text, protected):
        for region in PHONE_REGIONS:
            found.extend(_phones_in(text, window_start, window, region, protected))
    return _replace_spans(text, _merge(found), PHONE)


def _phone_windows(text: str, protected: list[tuple[int, int]]) -> Iterator[tuple[int, str]]:
    """The parts of ``text`` worth giving to libphonenumber, with their offsets.

    The matcher parses every digit group it meets ("1042", "$49", "2024") once per
    region, which made it most of the cost of :func:`redact`. Only runs with at least 7
    digits can be a phone number; each is passed with some context either side, which is
    what the matcher's own checks look at (a letter or currency sign right before it, a
    ":30" after a date that makes it a time stamp). A run inside a date or an IP address
    is skipped: whatever the matcher found there would be dropped anyway.
    """
    spans = [
        m.span() for m in _PHONE_RUN.finditer(text)
        if sum(ch.isdigit() for ch in m.group(0)) >= 7
        and not any(p_start <= m.start() and m.end() <= p_end for p_start, p_end in protected)
    ]
    for start, end in _merge((max(0, s - _CONTEXT), e + _CONTEXT) for s, e in spans):
        yield start, text[start:end]


def _phones_in(text: str, offset: int, window: str, region: str,
               protected: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    for match in phonenumbers.PhoneNumberMatcher(
        window, region, leniency=phonenumbers.Leniency.VALID
    ):
        start, end = offset + match.start, offset + match.end
        # The matcher sometimes includes the space before a number ("/ 030 ...").
        while start < end and text[start].isspace():
            start += 1
        if region != "US" and text[start:end].lstrip("(")[:1] not in ("+", "0"):
            # In GB and DE a number is written with its trunk prefix 0 (or +44/+49);
            # without it, 13-digit millisecond timestamps parse as German mobiles.
            continue
        if _ID_BEFORE.search(text, 0, start) or _ID_AFTER.match(text, end):
            continue
        if any(start < p_end and p_start < end for p_start, p_end in protected):
            continue
        yield start, end


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _replace_spans(text: str, spans: list[tuple[int, int]], placeholder: str) -> str:
    """Replace sorted, non-overlapping ``(start, end)`` spans of ``text``."""
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(placeholder)
        last = end
    parts.append(text[last:])
    return "".join(parts)


# -- logging -------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """A handler (or logger) filter that redacts every record before it is formatted.

    The message is rendered with its arguments, redacted and stored back with
    ``args=None``, so no formatter ever sees the raw values. Tracebacks are rendered and
    redacted too (an exception message may quote customer input).

    Args:
        name: As for :class:`logging.Filter`.
        keep_args: Redact each string argument in place and keep ``args`` instead of
            rendering: for formatters that read ``record.args`` themselves, such as
            uvicorn's access log formatter.
    """

    def __init__(self, name: str = "", *, keep_args: bool = False) -> None:
        super().__init__(name)
        self.keep_args = keep_args

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops a record."""
        if getattr(record, "_redacted", False):  # the same record reaches every handler
            return True
        if self.keep_args and isinstance(record.args, tuple):
            record.msg = redact(str(record.msg))
            record.args = tuple(redact_value(arg) for arg in record.args)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: keep what it was given, redacted
                message = f"{record.msg} {record.args!r}"
            record.msg = redact(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = True
        return True


# uvicorn's loggers do not propagate to the root logger and get their handlers only when
# the server starts, so they carry the filter themselves (a logger's filters survive
# uvicorn's dictConfig). The access log's formatter unpacks ``record.args``.
_LOGGER_FILTERS = {"uvicorn": False, "uvicorn.error": False, "uvicorn.access": True}


def install_log_redaction() -> None:
    """Redact every log record the process writes; call once logging is configured.

    Adds a :class:`RedactingFilter` to each handler of the root logger (what
    ``logging.basicConfig`` set up) and to uvicorn's loggers. Calling it again adds
    nothing twice.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name, keep_args in _LOGGER_FILTERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter(keep_args=keep_args))
