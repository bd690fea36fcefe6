"""The agent console: server-rendered pages where support agents work the hand-off queue.

The pages are rendered here with Jinja2 (autoescaping every value: customer text is
attacker-controlled) and a small static script (``static/console.js``) keeps them live
over the JSON API and its SSE streams in :mod:`assistant.web.api.agent`. There is no
inline script or style anywhere, so a strict Content-Security-Policy can forbid them.

Sessions: ``POST /console/login`` checks the password through :class:`~assistant.
agent_auth.AgentAuth` and sets the session token in an HttpOnly, SameSite=Strict cookie.
Pages embed the session's CSRF token in ``<meta name="csrf-token">``; the script sends it
as ``X-CSRF-Token`` on every API call that changes something, and the sign-out form sends
it as a hidden field. Form posts here are also refused when the browser says they come
from another site (``Origin`` / ``Sec-Fetch-Site``), which stops login CSRF.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from assistant.agent_auth import csrf_matches, csrf_token
from assistant.errors import InvalidInput, NotFound, RateLimited, Unauthorized
from assistant.health.analytics import Window
from assistant.health.model import Bands
from assistant.health.service import TREND_DAYS
from assistant.live import STAFF_EVENTS
from assistant.runtime import Runtime
from assistant.storage.records import AgentRecord, HandoffRecord
from assistant.web.api.analytics import window
from assistant.web.charts import (
    Bar,
    Series,
    Zone,
    days_between,
    hbar_chart,
    line_chart,
    spark_bars,
    stacked_day_bars,
)
from assistant.web.deps import SESSION_COOKIE, get_runtime
from assistant.web.schemas import HandoffStaff

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
WRONG_CREDENTIALS = "Wrong email or password."
MAX_FORM_FIELDS = 10
PRIORITY_NAMES = {0: "routine", 1: "low", 2: "normal", 3: "high", 4: "urgent"}
_ID = re.compile(r"^[0-9a-f]{1,64}$")
# Where a sign-in may send the agent afterwards: console pages only, never another site.
_NEXT = re.compile(
    r"^/console(?:/conversations/[0-9a-f]{1,64}|/analytics|/customers(?:/[0-9a-f]{1,64})?)?$"
)
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(?:js|css)$")
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class _ConsoleRoute(APIRoute):
    """A route whose every response carries the console's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so no page can forget the headers."""
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            response = await handler(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return secured


router = APIRouter(route_class=_ConsoleRoute, include_in_schema=False)


# --- template helpers ----------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def format_duration(seconds: float) -> str:
    """A short human duration: ``"<1 min"``, ``"5 min"``, ``"1 h 5 min"``, ``"2 d 3 h"``.

    ``console.js`` formats the same way (``formatDuration``); keep the two in step.
    """
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def sla_text(due_at: Any, now: datetime | None = None) -> str:
    """``"due in 5 min"`` or ``"overdue by 5 min"`` for an SLA due time."""
    due = _parse_time(due_at)
    if due is None:
        return ""
    left = (due - (now or datetime.now(UTC))).total_seconds()
    if left >= 0:
        return f"due in {format_duration(left)}"
    return f"overdue by {format_duration(-left)}"


def clock(value: Any) -> str:
    """``HH:MM UTC`` (the script rewrites it in the agent's local time)."""
    moment = _parse_time(value)
    return moment.astimezone(UTC).strftime("%H:%M UTC") if moment else ""


def iso(value: Any) -> str:
    """An ISO 8601 timestamp for ``<time datetime=...>``."""
    moment = _parse_time(value)
    return moment.isoformat() if moment else ""


def http_url(value: Any) -> str | None:
    """``value`` if it is an http(s) URL, else ``None``.

    Autoescaping does not make a ``javascript:`` URL harmless in an ``href``; article URLs
    come from knowledge-base files, so only web links become links.
    """
    if not isinstance(value, str):
        return None
    return value if urlsplit(value).scheme.lower() in {"http", "https"} else None


def describe(value: Any) -> str:
    """Evidence values (any JSON) as one short line of plain text."""
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {describe(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(describe(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if value is None:
        return "—"
    return str(value)


def stamp(value: Any) -> str:
    """``3 Nov 2026, 14:05 UTC`` (the script rewrites ``time.js-date`` in local time)."""
    moment = _parse_time(value)
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def long_day(value: date) -> str:
    """``3 Nov 2026``."""
    return f"{value.day} {value:%b %Y}"


def helped_text(value: Any) -> str:
    """An article's ``helped`` verdict in words: yes, no or unknown."""
    if value is True:
        return "yes"
    return "no" if value is False else "unknown"


def author_label(role: str, author: Any) -> str:
    """Who wrote a transcript entry, in words (``console.js`` has the same rule)."""
    if role == "customer":
        return "Customer"
    if role == "assistant":
        return "Bot"
    if role == "agent":
        return f"Agent · {author}" if isinstance(author, str) and author.strip() else "Agent"
    if role == "system":
        return "System"
    return role.capitalize()


BAND_NAMES = {"healthy": "Healthy", "watch": "Watch", "at_risk": "At risk"}
BAND_TONES = {"healthy": "ok", "watch": "warn", "at_risk": "danger"}
LIST_BANDS = ("at_risk", "watch")
COMPONENT_NAMES = {
    "sentiment": "Sentiment",
    "frustration": "Frustration",
    "churn_signals": "Churn signals",
    "escalations": "Escalations",
    "unresolved": "Unresolved hand-offs",
    "contact_frequency": "Contact frequency",
    "csat": "Satisfaction ratings",
}
EVENT_NAMES = {
    "conversation.started": "Conversation started",
    "message.classified": "Customer message",
    "handoff.enqueued": "Handed to a person",
    "handoff.resolved": "Hand-off resolved",
    "handoff.returned": "Returned to the bot",
    "csat.submitted": "Satisfaction rating",
}
QUICK_RANGES = (7, 30, 90)
GAP_TOPICS_SHOWN = 10
MOVED_BY_SHOWN = 3
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_FIELDS = {"since": "From", "until": "To"}


def percent(rate: Any) -> str:
    """A rate (0-1) as ``"42%"``; ``"—"`` when it has no denominator (``None``)."""
    if not isinstance(rate, int | float):
        return "—"
    return f"{rate * 100:.0f}%"


def seconds_text(value: Any) -> str:
    """A duration metric: ``"45 s"`` under a minute, else like :func:`format_duration`."""
    if not isinstance(value, int | float):
        return "—"
    return f"{round(value)} s" if value < 60 else format_duration(value)


def signed(value: Any) -> str:
    """A score change with its sign and a real minus: ``"−12"``, ``"+3"``."""
    number = round(float(value))
    return f"−{-number}" if number < 0 else f"+{number}"


def component_label(name: Any) -> str:
    """A score component in words: ``csat`` is "Satisfaction ratings"."""
    text = str(name)
    return COMPONENT_NAMES.get(text, text.replace("_", " ").capitalize())


def customer_label(name: Any, email: Any, external_id: Any) -> str:
    """What to call a customer: their name, else their email, else the host app's id."""
    for value in (name, email, external_id):
        if isinstance(value, str) and value.strip():
            return value
    return "Unnamed customer"


def _environment() -> jinja2.Environment:
    # Autoescape on for every template, whatever its extension: all data here may be a
    # customer's words. StrictUndefined makes a misspelt variable an error, not a blank.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=format_duration,
        sla=sla_text,
        clock=clock,
        iso=iso,
        http_url=http_url,
        describe=describe,
        helped=helped_text,
        percent=percent,
        seconds=seconds_text,
        signed=signed,
        stamp=stamp,
        long_day=long_day,
        component=component_label,
    )
    env.globals.update(
        static_url=static_url, priority_names=PRIORITY_NAMES, author_label=author_label,
        band_names=BAND_NAMES, band_tones=BAND_TONES, event_names=EVENT_NAMES,
        customer_label=customer_label,
    )
    return env


@functools.cache
def _static_version(name: str) -> str:
    # Content hash in the URL: a new deploy gets new URLs, so browsers may cache forever.
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The cache-busting URL of a console static file."""
    return f"/console/static/{name}?v={_static_version(name)}"


templates = Jinja2Templates(env=_environment())


# --- sessions and forms --------------------------------------------------------------------


def _secure(runtime: Runtime) -> bool:
    return bool(runtime.settings.secure_cookies)


def _signed_in(request: Request, runtime: Runtime) -> tuple[AgentRecord, str] | None:
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        return None
    agent = runtime.auth.agent_for(session)
    return (agent, session) if agent is not None else None


def _to_login(request: Request) -> RedirectResponse:
    query = urlencode({"next": request.url.path}) if _NEXT.match(request.url.path) else ""
    return RedirectResponse(f"/console/login{'?' + query if query else ''}", status_code=303)


def _cross_site(request: Request) -> bool:
    """Whether the browser says this request comes from another site.

    Browsers send ``Origin`` on every form POST; a page elsewhere cannot forge it. A
    missing header (old clients, tests) is let through: SameSite=Strict still applies.
    """
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "")
    return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()


async def _form(request: Request) -> dict[str, str] | None:
    """The fields of a url-encoded form body (first value of each), or ``None`` if not one.

    Parsed here because Starlette's own form parser needs python-multipart, a dependency
    the rest of the project has no use for. The app's body-size limit already applies.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    try:
        text = (await request.body()).decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in fields.items()}


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    base: dict[str, Any] = {"agent": None, "csrf": None, "page": name.removesuffix(".html")}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


def _error_page(request: Request, status_code: int, title: str, message: str,
                signed_in: tuple[AgentRecord, str] | None = None) -> HTMLResponse:
    context: dict[str, Any] = {"title": title, "message": message}
    if signed_in is not None:
        context.update(agent=signed_in[0], csrf=csrf_token(signed_in[1]))
    return _page(request, "console/error.html", context, status_code=status_code)


def _login_page(request: Request, *, email: str = "", next_url: str = "",
                error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return _page(
        request,
        "console/login.html",
        {"email": email, "next_url": next_url, "error": error, "title": "Sign in"},
        status_code=status_code,
    )


def _clear_session(response: Response, runtime: Runtime) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(runtime), httponly=True, samesite="strict"
    )


# --- routes --------------------------------------------------------------------------------


@router.get("/console/login")
def login_form(
    request: Request, next_url: Annotated[str, Query(alias="next", max_length=200)] = ""
) -> Response:
    """The sign-in form (signed-in agents go straight to the queue)."""
    runtime = get_runtime(request)
    next_url = next_url if _NEXT.match(next_url) else ""
    if _signed_in(request, runtime) is not None:
        return RedirectResponse(next_url or "/console", status_code=303)
    return _login_page(request, next_url=next_url)


@router.post("/console/login")
async def login(request: Request) -> Response:
    """Check the email and password; on success set the session cookie and go to the queue.

    Every failure says the same generic thing (accounts cannot be probed), except the
    lockout after repeated failures, which says how long to wait (429).
    """
    runtime = get_runtime(request)
    if _cross_site(request):
        return _error_page(request, 403, "Sign-in refused",
                           "This sign-in did not come from the console's own page.")
    form = await _form(request)
    if form is None:
        return _login_page(request, error="Send the sign-in form.", status_code=400)
    email = form.get("email", "").strip()
    password = form.get("password", "")
    next_url = form.get("next", "")
    next_url = next_url if _NEXT.match(next_url) else ""
    if not email or not password:
        return _login_page(request, email=email, next_url=next_url,
                           error="Enter your email and password.", status_code=400)
    # Sign-ins are audited (by AuditMiddleware) whatever the outcome; failed ones name no
    # one, since a mistyped email may be anything.
    request.state.audit_actor = "unknown"
    try:
        # Password hashing is slow on purpose; keep it off the event loop.
        signed = await run_in_threadpool(runtime.auth.sign_in, email, password)
    except RateLimited as exc:
        return _login_page(request, email=email, next_url=next_url,
                           error=_capitalised(str(exc)), status_code=429)
    except Unauthorized:
        return _login_page(request, email=email, next_url=next_url, error=WRONG_CREDENTIALS,
                           status_code=401)
    request.state.audit_actor = f"agent:{signed.agent.id}"
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await run_in_threadpool(_end_previous_session, runtime, previous, signed.agent)
    response = RedirectResponse(next_url or "/console", status_code=303)
    max_age = int((signed.expires_at - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        signed.session_token,
        max_age=max(max_age, 0),
        path="/",
        secure=_secure(runtime),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    """End the session (CSRF token required as the ``csrf_token`` field or header)."""
    runtime = get_runtime(request)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        form = await _form(request) or {}
        candidate = request.headers.get("x-csrf-token") or form.get("csrf_token")
        if _cross_site(request) or not csrf_matches(session, candidate):
            return _error_page(request, 403, "Sign-out refused",
                               "The sign-out request did not carry this session's token. "
                               "Use the Sign out button in the console.")
        await run_in_threadpool(runtime.auth.sign_out, session)
    response = RedirectResponse("/console/login", status_code=303)
    _clear_session(response, runtime)
    return response


@router.get("/console")
def queue_page(request: Request) -> Response:
    """The hand-off queue; ``console.js`` keeps it live from ``/v1/agent/queue/events``."""
    runtime = get_runtime(request)
    signed_in = _signed_in(request, runtime)
    if signed_in is None:
        return _to_login(request)
    agent, session = signed_in
    return _page(
        request,
        "console/queue.html",
        {"agent": agent, "csrf": csrf_token(session), "items": _queue_items(runtime),
         "title": "Queue"},
    )


@router.get("/console/conversations/{conversation_id}")
def conversation_page(request: Request, conversation_id: str) -> Response:
    """One conversation: transcript beside the context packet, notes, reply and actions."""
    runtime = get_runtime(request)
    signed_in = _signed_in(request, runtime)
    if signed_in is None:
        return _to_login(request)
    agent, session = signed_in
    conversation = (
        runtime.store.get_conversation(conversation_id) if _ID.match(conversation_id) else None
    )
    if conversation is None:
        return _error_page(request, 404, "Conversation not found",
                           "There is no conversation with that id.", signed_in)
    # Read the stream position first: anything logged after it is replayed by the stream,
    # and the script drops what the page already shows (by message and note id).
    cursor = _latest_event(runtime, conversation.id)
    handoff = runtime.handoff.open_handoff(conversation.id)
    if handoff is None:
        handoff = runtime.handoffs.last_for_conversation(conversation.id)
    holder = None
    if handoff is not None and handoff.agent_id:
        holder = runtime.handoffs.get_agent(handoff.agent_id)
    state, ownership = handoff_state(
        handoff, agent, holder.name if holder is not None else None
    )
    return _page(
        request,
        "console/conversation.html",
        {
            "agent": agent,
            "csrf": csrf_token(session),
            "conversation": conversation,
            "handoff": HandoffStaff.of(handoff, datetime.now(UTC)) if handoff else None,
            "state": state,
            "ownership": ownership,
            "context": runtime.handoff.context(conversation).as_dict(),
            "notes": runtime.handoff.notes(conversation.id),
            "cursor": cursor,
            "resolution_codes": RESOLUTION_CODES,
            "title": f"Conversation {conversation.id[:8]}",
        },
    )


RESOLUTION_CODES = (
    ("answered", "Answered"),
    ("fixed", "Fixed"),
    ("refund_issued", "Refund issued"),
    ("bug_reported", "Bug reported"),
    ("feature_request", "Feature request"),
    ("duplicate", "Duplicate"),
    ("no_response", "No response from customer"),
    ("other", "Other"),
)


@router.get("/console/static/{name}")
def static_file(name: str, v: str = "") -> Response:
    """``console.js`` / ``console.css``; immutable when asked for by their content hash."""
    path = STATIC_DIR / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    cache = (
        "public, max-age=31536000, immutable" if v == _static_version(name) else "no-cache"
    )
    return FileResponse(
        path, media_type=_STATIC_TYPES[path.suffix], headers={"Cache-Control": cache}
    )


def handoff_state(
    handoff: HandoffRecord | None, agent: AgentRecord, holder_name: str | None
) -> tuple[str, str]:
    """Which controls the agent gets, and the sentence saying who has the conversation.

    States: ``queued`` (claim), ``mine`` (reply, release, resolve, return), ``other``
    (someone else holds it), ``closed`` (resolved or returned) and ``none`` (never handed
    off). ``console.js`` (``handoffState``) applies the same rule to live updates.
    """
    if handoff is None:
        return "none", "This conversation was never handed off; the bot has it."
    if handoff.status == "queued":
        return "queued", f"Waiting in the {handoff.team} queue."
    if handoff.status == "assigned":
        if handoff.agent_id == agent.id:
            return "mine", "You are handling this conversation."
        return "other", f"{holder_name or 'Another agent'} is handling this conversation."
    if handoff.status == "resolved":
        return "closed", f"Resolved ({handoff.resolution_code or 'no code'})."
    return "closed", "Returned to the bot."


# --- analytics and customer health (admins only) ------------------------------------------

def _admin(request: Request, runtime: Runtime) -> tuple[AgentRecord, str] | Response:
    """The signed-in admin, or the response to send instead: sign-in or a 403 page."""
    signed_in = _signed_in(request, runtime)
    if signed_in is None:
        return _to_login(request)
    if signed_in[0].role != "admin":
        return _error_page(request, 403, "Admins only",
                           "Analytics and customer health are for admins. Ask an admin to "
                           "give your account the admin role.", signed_in)
    return signed_in


def _parse_day(field: str, value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` query value (blank means not given).

    Raises:
        InvalidInput: Not a real date in that form (the message names the field).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if not _DAY.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise InvalidInput(f"“{_DAY_FIELDS[field]}” must be a date written YYYY-MM-DD, "
                           f"not “{shown}”") from None


def _last_day(window: Window) -> date:
    return (window.until - timedelta(microseconds=1)).date()


def analytics_view(summary: Mapping[str, Any], window: Window) -> dict[str, Any]:
    """The analytics page's charts and derived lists, from a summary of ``window``."""
    days = days_between(window.since.date(), _last_day(window))
    engaged = int(summary.get("engaged") or 0)
    escalation = summary["escalation"]
    reasons = [
        Bar(label=reason.replace("_", " "), value=item["count"],
            text=f"{item['count']} · {percent(item['rate'])}", tone="danger")
        for reason, item in escalation["by_reason"].items()
    ]
    csat = summary["csat"]
    ratings = [
        Bar(label=label, value=csat[who]["average"] or 0.0, maximum=5.0, tone=tone,
            text=(f"{csat[who]['average']:.1f} / 5 · {_plural(csat[who]['count'], 'rating')}"
                  if csat[who]["count"] else "no ratings"))
        for who, label, tone in (("bot", "Bot only", "accent"),
                                 ("person", "With a person", "ok"))
    ]
    sentiment = {row["day"]: row for row in summary["sentiment_trend"]}
    series = [
        Series(name=label, tone=label, values=[
            int(sentiment.get(day.isoformat(), {}).get(label, 0)) for day in days])
        for label in ("negative", "neutral", "positive")
    ]
    intents = [
        {**item, "chart": spark_bars(
            item["trend"], days, ident=f"intent-{index}",
            title=f"{item['intent'].replace('_', ' ')}: messages per day")}
        for index, item in enumerate(summary["top_intents"])
    ]
    bands = {band: int(summary["customers"].get(band, 0)) for band in BAND_NAMES}
    topics = summary["knowledge_gaps"]["topics"]
    return {
        "days": days,
        "engaged": engaged,
        "escalation_chart": hbar_chart(
            reasons, ident="escalation-reasons",
            title="Hand-offs by reason (a hand-off counts once per reason)",
        ) if reasons else None,
        "csat_chart": hbar_chart(ratings, ident="csat", maximum=5.0,
                                 title="Average satisfaction rating out of 5, and ratings"),
        "intents": intents,
        "sentiment_chart": stacked_day_bars(
            days, series, ident="sentiment", title="Customer messages per day by sentiment"),
        "bands": bands,
        "band_chart": hbar_chart(
            [Bar(label=BAND_NAMES[band], value=count, text=str(count), tone=BAND_TONES[band])
             for band, count in bands.items()],
            ident="bands", title="Customers per health band"),
        "topics": topics[:GAP_TOPICS_SHOWN],
        "more_topics": max(len(topics) - GAP_TOPICS_SHOWN, 0),
    }


def _quick_ranges(today: date) -> list[dict[str, str]]:
    return [{"label": f"Last {n} days",
             "href": "/console/analytics?" + urlencode(
                 {"since": (today - timedelta(days=n - 1)).isoformat(),
                  "until": today.isoformat()})}
            for n in QUICK_RANGES]


@router.get("/console/analytics")
def analytics_page(request: Request, since: str | None = None,
                   until: str | None = None) -> Response:
    """Support metrics over a date range (the last 30 days by default), with charts."""
    runtime = get_runtime(request)
    allowed = _admin(request, runtime)
    if isinstance(allowed, Response):
        return allowed
    agent, session = allowed
    context: dict[str, Any] = {
        "agent": agent, "csrf": csrf_token(session), "title": "Analytics", "error": None,
        "summary": None, "view": None, "since": since or "", "until": until or "",
        "quick_ranges": _quick_ranges(datetime.now(UTC).date()),
    }
    try:
        first, last = _parse_day("since", since), _parse_day("until", until)
    except InvalidInput as exc:
        return _page(request, "console/analytics.html", {**context, "error": str(exc)},
                     status_code=400)
    try:
        chosen = window(first, last)
    except InvalidInput as exc:
        return _page(request, "console/analytics.html",
                     {**context, "error": _capitalised(str(exc))}, status_code=422)
    summary = runtime.analytics.summary(chosen, now=datetime.now(UTC))
    context.update(
        summary=summary, view=analytics_view(summary, chosen),
        since=chosen.since.date().isoformat(), until=_last_day(chosen).isoformat(),
        first_day=chosen.since.date(), last_day=_last_day(chosen),
    )
    return _page(request, "console/analytics.html", context)


def moved_by(evidence: Sequence[Mapping[str, Any]],
             limit: int = MOVED_BY_SHOWN) -> list[dict[str, Any]]:
    """The conversations that moved a score, newest first, with their total change.

    ``evidence`` is newest first; one conversation usually moves a score several times
    (each message, the hand-off), so its entries are added up into one line.
    """
    moved: dict[str, dict[str, Any]] = {}
    for item in evidence:
        conversation_id = item.get("conversation_id")
        if not conversation_id:
            continue
        line = moved.get(conversation_id)
        if line is None:
            if len(moved) == limit:
                continue
            line = moved[conversation_id] = {"conversation_id": conversation_id, "delta": 0,
                                             "components": [], "at": item.get("at")}
        line["delta"] += int(item.get("delta") or 0)
        for name in item.get("components") or []:
            if name not in line["components"]:
                line["components"].append(name)
    return list(moved.values())


@router.get("/console/customers")
def customers_page(request: Request, band: str = "at_risk") -> Response:
    """The at-risk list (``?band=watch``: the watch list), lowest score first."""
    runtime = get_runtime(request)
    allowed = _admin(request, runtime)
    if isinstance(allowed, Response):
        return allowed
    agent, session = allowed
    if band not in LIST_BANDS:
        return _error_page(request, 400, "Unknown band",
                           "The customer lists are “at_risk” and “watch”.", allowed)
    rows = runtime.health.at_risk(limit=100, bands=(band,))
    customers = [
        {"row": row, "label": customer_label(row.name, row.email, row.external_id),
         "moved_by": moved_by(list(reversed(row.state.get("evidence", []))))}
        for row in rows
    ]
    return _page(request, "console/customers.html", {
        "agent": agent, "csrf": csrf_token(session), "band": band, "customers": customers,
        "counts": runtime.health.band_counts(), "bands": runtime.health.config.bands,
        "title": f"Customers · {BAND_NAMES[band]}",
    })


def customer_view(health: Mapping[str, Any], *, today: date, bands: Bands) -> dict[str, Any]:
    """The customer page's component rows and trend chart, from ``CustomerHealthView``."""
    components = []
    # A component can lose at most its share of the weights: the length of its bar.
    weight_total = sum(c["weight"] for c in health["components"].values()) or 1.0
    for name, part in health["components"].items():
        most = 100 * part["weight"] / weight_total
        components.append({
            "name": name, "label": component_label(name),
            "points_lost": part["points_lost"], "most": most, "detail": part["detail"],
            "chart": hbar_chart(
                [Bar(label=component_label(name), value=part["points_lost"],
                     maximum=most, tone="danger" if part["points_lost"] >= 1 else "accent",
                     text=f"{part['points_lost']:.1f} of {most:.0f}")],
                ident=f"component-{name}", width=330, label_width=0,
                maximum=most or 1.0,
                title=f"{component_label(name)}: {part['points_lost']:.1f} of "
                      f"{most:.0f} points lost"),
        })
    components.sort(key=lambda c: -c["points_lost"])
    first = today - timedelta(days=TREND_DAYS - 1)
    points = [(date.fromisoformat(p["day"]), float(p["score"])) for p in health["trend"]]
    # The score now, decayed since the last event, ends the line at today.
    points = [p for p in points if p[0] != today] + [(today, float(health["score"]))]
    zones = [
        Zone(low=0, high=bands.watch, tone="danger", name="At risk"),
        Zone(low=bands.watch, high=bands.healthy, tone="warn", name="Watch"),
        Zone(low=bands.healthy, high=100, tone="ok", name="Healthy"),
    ]
    return {
        "components": components,
        "trend_chart": line_chart(points, first=first, last=today, ident="trend", zones=zones,
                                  title=f"Health score per day over the last {TREND_DAYS} "
                                        "days (0-100)"),
    }


@router.get("/console/customers/{customer_id}")
def customer_page(request: Request, customer_id: str) -> Response:
    """One customer's health: score, components, 90-day trend, what moved it."""
    runtime = get_runtime(request)
    allowed = _admin(request, runtime)
    if isinstance(allowed, Response):
        return allowed
    agent, session = allowed
    try:
        health = runtime.health.customer(customer_id[:255]).as_dict()
    except NotFound:
        return _error_page(request, 404, "Customer not found",
                           "There is no customer with that id.", allowed)
    customer = health["customer"]
    label = customer_label(customer["name"], customer["email"], customer["external_id"])
    return _page(request, "console/customer.html", {
        "agent": agent, "csrf": csrf_token(session), "health": health, "label": label,
        "view": customer_view(health, today=datetime.now(UTC).date(),
                              bands=runtime.health.config.bands),
        "title": f"Customer health · {label}",
    })


# --- helpers -------------------------------------------------------------------------------


def _queue_items(runtime: Runtime) -> list[dict[str, Any]]:
    """The queue as the page first shows it (``console.js`` then re-renders it live)."""
    now = datetime.now(UTC)
    return [
        {"handoff": HandoffStaff.of(handoff, now), "summary": packet.summary if packet else []}
        for handoff, packet in runtime.handoff.waiting()
    ]


def _end_previous_session(runtime: Runtime, previous: str, agent: AgentRecord) -> None:
    """End the session this browser had before signing in: one browser, one session.

    Signing out marks that session's agent offline; when it is the agent who just signed
    in again (a second tab, a double submit), they stay online.
    """
    before = runtime.auth.agent_for(previous)
    runtime.auth.sign_out(previous)
    if before is not None and before.id == agent.id:
        runtime.handoffs.set_online(agent.id, True)


def _latest_event(runtime: Runtime, conversation_id: str) -> int:
    """The id of the conversation's newest staff-stream event (0 when none)."""
    return runtime.store.latest_event_id(STAFF_EVENTS, conversation_id=conversation_id)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
