"""Analytics and customer health in a real browser: an admin reads the numbers, follows the
at-risk list to a customer and on to the conversation that hurt the score.

Drives Debian's Chromium through Playwright against a real uvicorn server (skipped when
either is missing). With ``ASSISTANT_WRITE_SCREENSHOTS=1`` it also writes the README's two
screenshots, ``assistant/web/screenshots/analytics.png`` and ``customer-health.png``; CI
leaves them alone.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from chromium import BROWSER_MARKS, WatchedPage, open_page, sync_api
from conftest import ROOT, make_agent
from pydantic import SecretStr
from sqlalchemy import select, update
from test_console_analytics import SECRET, XSS, Customer, handle

from assistant.runtime import Runtime
from assistant.storage.db import make_engine
from assistant.storage.tables import Conversation, Event, Handoff, Message

pytestmark = BROWSER_MARKS

SCREENSHOTS = ROOT / "assistant" / "web" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture
def settings(settings):
    # As in test_console_analytics: identified customers, and a bot that abstains on
    # questions the KB does not cover (they become knowledge gaps).
    return settings.model_copy(update={"widget_secret": SecretStr(SECRET),
                                       "answer_min_confidence": 0.01})


def write_screenshots() -> bool:
    """Only on request: the PNGs are committed, and a test run should not churn them."""
    return os.environ.get("ASSISTANT_WRITE_SCREENSHOTS") == "1"


# --- a month of support, compressed -----------------------------------------------------


class Month:
    """Seeds conversations through the API, then spreads them over the past weeks.

    Every conversation happens now, in milliseconds; charts of a month need days, and
    times to a first human reply need minutes. So each conversation is written with the
    real API and then moved to ``days_ago`` (its events and messages re-timed, in their
    order, with believable waits) before the health projector has folded anything:
    nothing reads health until the pages do, and the test runtime has no folding worker.
    """

    def __init__(self, http: httpx.Client, runtime: Runtime, agent: Any) -> None:
        self.http = http
        self.runtime = runtime
        self.agent = agent
        self.when: list[tuple[str, float]] = []  # (conversation id, days ago), in order
        self.customers: dict[str, Customer] = {}

    def customer(self, external_id: str, name: str, plan: str) -> Customer:
        self.customers[external_id] = Customer(self.http, external_id, name=name, plan=plan)
        return self.customers[external_id]

    def talk(self, who: Customer, days_ago: float, *texts: str, person: str | None = None,
             helped: bool = False, rate: int | None = None, ask: bool = False) -> str:
        """One conversation: the customer's messages, maybe a person's reply, a rating."""
        conversation = who.start()
        answers = [who.say(text).get("reply") for text in texts]
        if helped and answers[0]:
            who.helped(answers[0]["id"])  # the answer to the question, not to "thanks"
        if ask:
            who.ask_for_person()
        if person is not None:
            handle(self.http, self.agent, conversation, person)
        if rate is not None:
            who.rate(rate)
        self.when.append((conversation, days_ago))
        return conversation

    def spread(self) -> None:
        """Move every conversation to its day, keeping the order of what happened in it."""
        rng = random.Random(7)  # the same month every run
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        engine = make_engine(self.runtime.settings.resolved_database_url)
        try:
            with engine.begin() as db:
                for conversation_id, days_ago in self.when:
                    start = now - timedelta(days=days_ago)
                    self._retime(db, conversation_id, start, rng)
        finally:
            engine.dispose()

    @staticmethod
    def _retime(db: Any, conversation_id: str, start: datetime, rng: random.Random) -> None:
        events = db.execute(select(Event.id, Event.created_at, Event.type)
                            .where(Event.conversation_id == conversation_id)).all()
        messages = db.execute(select(Message.id, Message.created_at, Message.role)
                              .where(Message.conversation_id == conversation_id)).all()
        rows = sorted([(at, "event", kind, row_id) for row_id, at, kind in events]
                      + [(at, "message", role, row_id) for row_id, at, role in messages])
        first = rows[0][0]
        moment = start
        waits = {  # seconds before each kind of step, as a support day would have them
            "customer": (25, 90), "assistant": (1, 3), "agent": (90, 420),
            "handoff.claimed": (120, 1500), "handoff.resolved": (240, 900),
            "csat.submitted": (30, 120),
        }
        for _, table, kind, row_id in rows:
            low, high = waits.get(kind, (0, 0))
            moment += timedelta(seconds=rng.uniform(low, high) if high else 0.2)
            target = Event if table == "event" else Message
            db.execute(update(target).where(target.id == row_id).values(created_at=moment))
        shift = start - first
        for table in (Conversation, Handoff):
            for row in db.execute(select(table).where(
                    table.id == conversation_id if table is Conversation
                    else table.conversation_id == conversation_id)).scalars():
                for column in ("created_at", "updated_at", "due_at", "claimed_at",
                               "first_reply_at", "resolved_at", "returned_at"):
                    value = getattr(row, column, None)
                    if value is not None:
                        db.execute(update(table).where(table.id == row.id)
                                   .values({column: value + shift}))


def seed_month(http: httpx.Client, runtime: Runtime, agent: Any) -> dict[str, Any]:
    """Sixteen conversations of six customers over three weeks, one of whom is
    clearly about to leave. Returns that customer's external id and conversations."""
    month = Month(http, runtime, agent)
    priya = month.customer("priya", "Priya Shah", "business")
    tom = month.customer("tom", "Tom Becker", "pro")
    lena = month.customer("lena", "Lena Novak", "pro")
    marco = month.customer("marco", "Marco Rossi", "business")
    sam = month.customer("sam", "Sam Lee", "free")
    ines = month.customer("ines", "Ines García", "pro")

    month.talk(priya, 21.2, "How do I reset my password?", "Thanks, that worked!",
               helped=True, rate=5)
    month.talk(marco, 20.1, "How do I connect Slack to get alerts?", helped=True)
    month.talk(tom, 18.3, "I was charged twice this month, I want a refund for the duplicate",
               ask=True, person="Sorry about that! I refunded the duplicate charge today.",
               rate=4)
    month.talk(ines, 16.4, "Does the app support SAML single sign-on with Okta?",
               ask=True, person="Yes: SAML with Okta is on the Business plan, under "
               "Settings > Security > SSO.", rate=5)
    month.talk(lena, 14.2, "How do I connect Slack?", "Great, thank you", helped=True, rate=4)
    month.talk(marco, 13.1, "The export to CSV failed again",
               "This is the second time this week, it is really annoying", ask=True,
               person="I have restarted your export; it should arrive within the hour.",
               rate=2)
    month.talk(sam, 11.3, "Where can I download my invoices?", rate=3)
    month.talk(ines, 9.2, "Can we use SAML SSO with Okta for the whole team?", ask=True,
               person="Yes, once SSO is on every member signs in through Okta.", rate=5)
    month.talk(priya, 8.1, "How long is a password reset link valid?", "Perfect, thanks!",
               helped=True, rate=5)
    month.talk(lena, 6.3, f"Does the flux capacitor support plutonium refills? {XSS}", rate=3)
    # Asked twice, so its knowledge-gap topic is the biggest, whatever the word order of
    # tied topic labels (group_gaps builds them from a set).
    month.talk(sam, 5.9, f"Does the flux capacitor support plutonium refills? {XSS}")
    month.talk(marco, 5.2, "The export is broken AGAIN.",
               "This is useless!!! Third time. I am cancelling and switching to Tableau",
               ask=True,
               person="I am sorry. I have sent the export bug to our engineers as urgent.",
               rate=1)
    month.talk(tom, 4.1, "How do I connect Slack?", "Nice, works now", helped=True, rate=5)
    month.talk(sam, 2.4, "Why is the dashboard so slow?", "It is really frustrating",
               ask=True)
    month.talk(marco, 1.3, "Still no export. Your product is garbage",
               "Cancel my account now and refund me", ask=True)
    month.talk(priya, 0.2, "How do I reset my password?", "Thanks!", helped=True)
    month.spread()
    return {"at_risk": "marco", "name": "Marco Rossi"}


# --- the browser --------------------------------------------------------------------------


class Browser(WatchedPage):
    """A Chromium page that signs in to the console."""

    def sign_in(self, base_url: str, account: Any) -> None:
        page = self.page
        page.goto(f"{base_url}/console/login")
        page.get_by_label("Email").fill(account.email)
        page.get_by_label("Password").fill(account.password)
        page.get_by_role("button", name="Sign in").click()
        sync_api.expect(page).to_have_url(f"{base_url}/console")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with open_page(Browser, viewport=VIEWPORT) as watched:
        yield watched


def assert_charts_drawn(page: Any, at_least: int) -> None:
    """Every chart on the page has an accessible name and takes up room."""
    charts = page.locator("svg.chart")
    assert charts.count() >= at_least, charts.count()
    for index in range(charts.count()):
        chart = charts.nth(index)
        box = chart.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, index
        assert chart.get_attribute("role") == "img"
        assert chart.locator("title").first.text_content()


def screenshot(page: Any, name: str) -> None:
    if write_screenshots():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name))


def test_an_admin_reads_analytics_and_follows_an_at_risk_customer_to_a_conversation(
    live_server, runtime: Runtime, browser: Browser
) -> None:
    expect = sync_api.expect
    base, page = live_server.url, browser.page
    admin = make_agent(runtime, "Ada Admin", role="admin")
    agent = make_agent(runtime, "Alex Agent")
    with httpx.Client(base_url=base, timeout=30) as http:
        seeded = seed_month(http, runtime, agent)

    browser.sign_in(base, admin)
    page.get_by_role("link", name="Analytics").click()
    expect(page).to_have_url(f"{base}/console/analytics")
    expect(page.get_by_role("heading", name="Analytics", level=1)).to_be_visible()
    expect(page.locator('[data-metric="conversations"]')).to_have_text("16")
    expect(page.get_by_text("out of conversations whose 7 days are over")).to_be_visible()
    assert_charts_drawn(page, at_least=4)
    # The hostile question is a knowledge-gap example, shown as text; nothing ran.
    expect(page.locator(".gaps .gap").first.locator(".quote", has_text=XSS)).to_have_count(2)
    expect(page.locator("main img")).to_have_count(0)
    screenshot(page, "analytics.png")

    # A range with nothing in it: a friendly empty state, not an error.
    page.get_by_label("From", exact=True).fill("2020-01-01")
    page.get_by_label("To", exact=True).fill("2020-01-31")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(f"{base}/console/analytics?since=2020-01-01&until=2020-01-31")
    expect(page.get_by_role("heading", name="No conversations in this range")).to_be_visible()

    # The at-risk list, the customer, and the conversation that moved the score.
    page.get_by_role("link", name="At-risk customers").click()
    expect(page).to_have_url(f"{base}/console/customers")
    row = page.locator("table.customers tbody tr", has_text=seeded["name"])
    expect(row).to_be_visible()
    row.get_by_role("link", name=seeded["name"]).click()
    expect(page).to_have_url(f"{base}/console/customers/"
                             f"{runtime.store.customer_by_external_id('marco').id}")
    expect(page.get_by_role("heading", name=seeded["name"], level=1)).to_be_visible()
    expect(page.locator('[data-metric="band"]')).to_have_text("At risk")
    assert_charts_drawn(page, at_least=8)  # the trend and a bar per component
    screenshot(page, "customer-health.png")
    link = page.locator("table.evidence a").first
    short_id = link.text_content()
    link.click()
    expect(page).to_have_url(re.compile(rf"/console/conversations/{short_id}[0-9a-f]+$"))
    expect(page.get_by_role("heading", name=f"Conversation {short_id}")).to_be_visible()

    assert browser.dialogs == [], f"customer text ran as script: {browser.dialogs}"
    assert browser.problems() == [], browser.problems()

