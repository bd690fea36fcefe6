"""The console's analytics and customer-health pages: admins only, the same numbers as the
JSON API, every customer-provided string escaped, date filters and their errors.

Data goes in the way production data does: identified customers talk through the widget
API, agents take hand-offs through the agent API, and the health projector folds it all.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import auth, make_agent
from fastapi.testclient import TestClient
from markupsafe import escape
from pydantic import SecretStr

from assistant.identity import user_hash
from assistant.runtime import Runtime
from assistant.web.charts import (
    Bar,
    Series,
    days_between,
    hbar_chart,
    line_chart,
    spark_bars,
    stacked_day_bars,
)
from assistant.web.console import SECURITY_HEADERS, moved_by

SECRET = "console-analytics-secret"
XSS = "<img src=x onerror=alert(1)>"
HOSTILE_NAME = "<b>Mallory</b><svg onload=alert(3)>"
ANGRY = (
    "This is useless!!! I am cancelling and switching to Tableau, I want a refund",
    "Third time asking. Your product is garbage, cancel my account now",
)


@pytest.fixture
def settings(settings):
    # Identified customers need the widget secret. With the tests' hashing embedder a
    # KB question scores about 0.03 and nonsense about 0.001: 0.01 makes the bot abstain
    # on nonsense only, so nonsense becomes a knowledge gap (as in test_health_api).
    return settings.model_copy(update={"widget_secret": SecretStr(SECRET),
                                       "answer_min_confidence": 0.01})


class Customer:
    """One identified customer talking through the widget API."""

    def __init__(self, http: TestClient | httpx.Client, external_id: str, *,
                 name: str | None = None, plan: str | None = None) -> None:
        self.http = http
        self.external_id = external_id
        self.name = name
        self.plan = plan
        self.conversation = ""
        self.token = ""

    def start(self) -> str:
        customer: dict[str, Any] = {"id": self.external_id,
                                    "email": f"{self.external_id}@example.com"}
        if self.name:
            customer["name"] = self.name
        if self.plan:
            customer["plan"] = self.plan
        response = self.http.post("/v1/conversations", json={
            "customer": customer, "user_hash": user_hash(SECRET, self.external_id)})
        assert response.status_code == 201, response.text
        self.conversation, self.token = response.json()["id"], response.json()["token"]
        return self.conversation

    def say(self, text: str) -> dict[str, Any]:
        response = self.http.post(f"/v1/conversations/{self.conversation}/messages",
                                  json={"text": text}, headers=auth(self.token))
        assert response.status_code == 200, response.text
        return response.json()

    def ask_for_person(self) -> None:
        response = self.http.post(f"/v1/conversations/{self.conversation}/handoff",
                                  headers=auth(self.token))
        assert response.status_code == 200, response.text

    def rate(self, score: int) -> None:
        response = self.http.post(f"/v1/conversations/{self.conversation}/csat",
                                  json={"score": score}, headers=auth(self.token))
        assert response.status_code == 201, response.text

    def helped(self, message_id: int) -> None:
        response = self.http.post(f"/v1/conversations/{self.conversation}/feedback",
                                  json={"message_id": message_id, "helpful": True},
                                  headers=auth(self.token))
        assert response.status_code == 204, response.text


def handle(http: TestClient | httpx.Client, agent: Any, conversation_id: str,
           reply: str) -> None:
    """An agent claims the conversation's hand-off, replies, and resolves it."""
    queue = http.get("/v1/agent/queue", headers=auth(agent.token)).json()
    (item,) = [i["handoff"] for i in queue["items"]
               if i["handoff"]["conversation_id"] == conversation_id]
    assert http.post(f"/v1/agent/handoffs/{item['id']}/claim",
                     headers=auth(agent.token)).status_code == 200
    assert http.post(f"/v1/agent/conversations/{conversation_id}/messages",
                     json={"text": reply}, headers=auth(agent.token)).status_code == 201
    assert http.post(f"/v1/agent/conversations/{conversation_id}/resolve",
                     json={"resolution_code": "answered"},
                     headers=auth(agent.token)).status_code == 200


def sign_in(client: TestClient, account: Any) -> None:
    response = client.post("/console/login", follow_redirects=False,
                           data={"email": account.email, "password": account.password})
    assert response.status_code == 303, response.text


def metric(html: str, name: str) -> str:
    """The text of the element marked ``data-metric="name"``."""
    found = re.search(rf'data-metric="{re.escape(name)}">([^<]*)<', html)
    assert found, f"no metric {name}"
    return found.group(1).strip()


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


@pytest.fixture
def admin(runtime: Runtime) -> Any:
    return make_agent(runtime, "Ada Admin", role="admin")


@pytest.fixture
def agent(runtime: Runtime) -> Any:
    return make_agent(runtime, "Alex Agent")


def a_support_day(client: TestClient, agent: Any) -> dict[str, str]:
    """Three customers, four conversations: helped by the bot, handed off and rated,
    a question the KB cannot answer (hostile HTML), and a churning customer."""
    ana = Customer(client, "ana", name="Ana Lima", plan="pro")
    ben = Customer(client, "ben", name="Ben Okafor")
    mallory = Customer(client, "mallory", name=HOSTILE_NAME, plan="free")
    ana.start()
    answer = ana.say("How do I reset my password?")["reply"]
    ana.helped(answer["id"])
    handed = ben.start()
    assert ben.say("I want to talk to a human agent please")["handoff"] is not None
    handle(client, agent, handed, "Use <Settings> > Security > Reset to do that.")
    ben.rate(5)
    ben.start()
    ben.say(f"Does the flux capacitor support plutonium refills? {XSS}")
    ben.rate(2)
    for text in ANGRY:
        mallory.start()
        mallory.say(text)
    return {"handed": handed, "mallory": mallory.conversation}


PAGES = ("/console/analytics", "/console/customers", "/console/customers?band=watch")


def assert_secured(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


# --- who may see the pages ---------------------------------------------------------------


def test_signed_out_visitors_are_sent_to_sign_in_and_come_back(
    client: TestClient, runtime: Runtime, admin
) -> None:
    customer_id = runtime.store.upsert_customer(external_id="c1", email=None, name=None,
                                                plan=None, verified=True).id
    for path in (*PAGES, f"/console/customers/{customer_id}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login"), path
        assert_secured(response)
    bounced = client.get("/console/analytics", follow_redirects=False)
    assert bounced.headers["location"] == "/console/login?next=%2Fconsole%2Fanalytics"
    back = client.post("/console/login", follow_redirects=False, data={
        "email": admin.email, "password": admin.password, "next": "/console/analytics"})
    assert back.headers["location"] == "/console/analytics"


def test_agents_get_a_403_page_and_no_admin_links(
    client: TestClient, runtime: Runtime, agent
) -> None:
    customer_id = runtime.store.upsert_customer(external_id="c1", email=None, name=None,
                                                plan=None, verified=True).id
    sign_in(client, agent)
    for path in (*PAGES, f"/console/customers/{customer_id}"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Admins only" in response.text
        assert response.headers["content-type"].startswith("text/html")
        assert_secured(response)
    queue = client.get("/console").text
    assert 'href="/console/analytics"' not in queue
    assert 'href="/console/customers"' not in queue


def test_admins_see_the_pages_and_the_links_to_them(client: TestClient, admin) -> None:
    sign_in(client, admin)
    queue = client.get("/console").text
    assert '<a href="/console/analytics">Analytics</a>' in queue
    assert '<a href="/console/customers">Customers</a>' in queue
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_secured(response)
    analytics = client.get("/console/analytics").text
    assert '<a href="/console/analytics" aria-current="page">Analytics</a>' in analytics


# --- the numbers ---------------------------------------------------------------------------


def test_the_analytics_page_shows_the_numbers_of_the_json_api(
    client: TestClient, runtime: Runtime, agent, admin
) -> None:
    ids = a_support_day(client, agent)
    sign_in(client, admin)
    html = client.get("/console/analytics").text
    s = client.get("/v1/analytics/summary").json()  # the admin's session opens the API too
    assert s["conversations"] == 5
    assert metric(html, "conversations") == str(s["conversations"])
    resolution = s["bot_resolution"]
    for name in ("customer_confirmed", "no_handoff", "durable"):
        assert metric(html, name) == percent(resolution[name]["rate"]), name
        # Each measure's definition is on the page, word for word (escaped).
        assert str(escape(resolution[name]["definition"])) in html, name
    assert metric(html, "escalation") == percent(s["escalation"]["rate"])
    assert str(escape(s["escalation"]["definition"])) in html
    # Escalations by reason: a bar per reason, with its count and share.
    chart = re.search(r'<svg class="chart chart-hbar"[^>]*aria-labelledby="escalation-reasons'
                      r'.*?</svg>', html, re.S).group(0)
    for reason, item in s["escalation"]["by_reason"].items():
        assert f"{reason.replace('_', ' ')}: {item['count']} · {percent(item['rate'])}" in chart
    # CSAT bot vs person, each as the API averages it.
    csat = re.search(r'<desc id="csat-desc">([^<]*)</desc>', html).group(1)
    assert csat == (f"Bot only: {s['csat']['bot']['average']:.1f} / 5 · 1 rating; "
                    f"With a person: {s['csat']['person']['average']:.1f} / 5 · 1 rating")
    for key in ("first_human_response_seconds", "handle_seconds", "resolution_seconds"):
        assert s["times"][key]["count"] == 1
        assert metric(html, f"{key}_median").endswith((" s", " min", " h"))
    for item in s["top_intents"]:
        assert metric(html, f"intent_{item['intent']}") == str(item["count"])
    assert metric(html, "gap_questions") == str(s["knowledge_gaps"]["questions"])
    # Knowledge gaps link to their conversations; the agent's reply is quoted (escaped).
    for topic in s["knowledge_gaps"]["topics"]:
        for conversation_id in topic["conversation_ids"]:
            assert f'<a href="/console/conversations/{conversation_id}">' in html
    assert "Use &lt;Settings&gt; &gt; Security &gt; Reset to do that." in html
    assert f'href="/console/conversations/{ids["handed"]}"' in html
    # Customers per band, with the way to the at-risk list.
    assert s["customers"] == {"at_risk": 1, "healthy": 2}
    assert '<a href="/console/customers">At-risk customers (1)</a>' in html
    assert html.count('<svg class="chart') >= 4 + len(s["top_intents"])


def test_hostile_customer_text_stays_text_on_every_page(
    client: TestClient, runtime: Runtime, agent, admin
) -> None:
    a_support_day(client, agent)
    sign_in(client, admin)
    mallory = runtime.store.customer_by_external_id("mallory")
    pages = [client.get(path).text for path in
             (*PAGES, f"/console/customers/{mallory.id}", "/console/customers?band=at_risk")]
    analytics, at_risk, _, customer, _ = pages
    for html in pages:
        assert "<img" not in html and "<svg onload" not in html and "<b>Mallory" not in html
        # The only script is the console's own file (the CSP would block any other).
        assert len(re.findall(r"<script[^>]*>", html)) == 1
        assert re.search(r'<script src="/console/static/console\.js\?v=\w+" defer>', html)
        assert "style=" not in html  # the CSP forbids inline styles: charts use classes
    assert "&lt;img src=x onerror=alert(1)&gt;" in analytics  # a knowledge-gap example
    escaped_name = "&lt;b&gt;Mallory&lt;/b&gt;&lt;svg onload=alert(3)&gt;"
    assert escaped_name in at_risk and escaped_name in customer


def test_the_date_range_filters_the_numbers(
    client: TestClient, runtime: Runtime, agent, admin
) -> None:
    a_support_day(client, agent)
    sign_in(client, admin)
    today = datetime.now(UTC).date()
    default = client.get("/console/analytics").text
    assert metric(default, "conversations") == "5"
    first = (today - timedelta(days=29)).isoformat()
    assert f'name="since" type="date" value="{first}"' in default
    assert f'name="until" type="date" value="{today.isoformat()}"' in default
    # A quick range, exactly as its link says.
    week = re.search(r'href="(/console/analytics\?since=[^"]+)">Last 7 days', default).group(1)
    assert metric(client.get(week.replace("&amp;", "&")).text, "conversations") == "5"
    # A range in the past: the friendly empty state, the customers still shown.
    past = client.get("/console/analytics?since=2020-01-01&until=2020-01-31")
    assert past.status_code == 200
    assert "No conversations in this range" in past.text
    assert 'data-metric="conversations"' not in past.text
    assert 'value="2020-01-01"' in past.text and 'value="2020-01-31"' in past.text
    assert '<a href="/console/customers">At-risk customers (1)</a>' in past.text
    # Blank fields (the form sent empty) mean the default range.
    blank = client.get("/console/analytics?since=&until=")
    assert blank.status_code == 200 and metric(blank.text, "conversations") == "5"
    # Only today: the same numbers as the API for the same range.
    day = today.isoformat()
    api = client.get(f"/v1/analytics/summary?since={day}&until={day}").json()
    html = client.get(f"/console/analytics?since={day}&until={day}").text
    assert metric(html, "conversations") == str(api["conversations"]) == "5"


@pytest.mark.parametrize(("query", "status", "message"), [
    ("since=2026-13-01", 400, "“From” must be a date written YYYY-MM-DD, not “2026-13-01”"),
    ("until=yesterday", 400, "“To” must be a date written YYYY-MM-DD, not “yesterday”"),
    ("since=20260101", 400, "“From” must be a date written YYYY-MM-DD"),
    ("since=2026-02-01&until=2026-01-01", 422,
     "Since (2026-02-01) is after until (2026-01-01)."),
    ("since=2020-01-01&until=2026-01-01", 422, "The range is longer than 366 days."),
])
def test_bad_dates_get_a_clear_message_on_the_page(
    client: TestClient, admin, query: str, status: int, message: str
) -> None:
    sign_in(client, admin)
    response = client.get(f"/console/analytics?{query}")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text
    assert 'role="alert"' in response.text and 'name="since"' in response.text  # can fix it
    assert "Traceback" not in response.text
    assert_secured(response)


def test_a_hostile_date_is_echoed_as_text(client: TestClient, admin) -> None:
    sign_in(client, admin)
    response = client.get("/console/analytics", params={"since": "<script>alert(1)</script>"})
    assert response.status_code == 400
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# --- the customer lists and a customer -----------------------------------------------------


def test_the_at_risk_list_links_to_customers_and_the_conversations_that_moved_them(
    client: TestClient, runtime: Runtime, agent, admin
) -> None:
    ids = a_support_day(client, agent)
    sign_in(client, admin)
    html = client.get("/console/customers").text
    api = client.get("/v1/customers/at-risk").json()["customers"]
    assert [c["external_id"] for c in api] == ["mallory"]
    (row,) = re.findall(r'<tr data-customer-id="([0-9a-f]+)">', html)
    assert row == api[0]["id"]
    assert f'<a href="/console/customers/{row}" class="customer-link">' in html
    assert f'<span class="score score-danger">{api[0]["score"]}</span>' in html
    assert "mallory@example.com" in html and "id mallory" in html and ">free<" in html
    assert f'<a href="/console/conversations/{ids["mallory"]}">' in html
    assert "At risk (1)" in html and "Watch (0)" in html
    watch = client.get("/console/customers?band=watch").text
    assert "No customer is on the watch list right now." in watch
    assert '<a href="/console/customers?band=watch" aria-current="page">' in watch
    bogus = client.get("/console/customers?band=healthy")
    assert bogus.status_code == 400 and "Unknown band" in bogus.text


def test_a_customer_page_shows_the_score_components_trend_and_evidence(
    client: TestClient, runtime: Runtime, agent, admin
) -> None:
    ids = a_support_day(client, agent)
    sign_in(client, admin)
    mallory = runtime.store.customer_by_external_id("mallory")
    html = client.get(f"/console/customers/{mallory.id}").text
    api = client.get(f"/v1/customers/{mallory.id}/health").json()
    assert metric(html, "score") == str(api["score"])
    assert metric(html, "band") == "At risk" and api["band"] == "at_risk"
    for name, part in api["components"].items():
        row = re.search(rf'<tr data-component="{name}">(.*?)</tr>', html, re.S).group(1)
        assert str(escape(part["detail"])) in row, name
        assert f"{part['points_lost']:.1f} of" in row, name
        assert '<svg class="chart chart-hbar"' in row
    assert 'aria-labelledby="trend-title trend-desc"' in html
    # Everything happened today: one point (today's score), drawn as a dot.
    assert [p["day"] for p in api["trend"]] == [datetime.now(UTC).date().isoformat()]
    assert html.count('<circle class="chart-dot"') == 1
    for item in api["evidence"]:
        assert f'<a href="/console/conversations/{item["conversation_id"]}">' in html
    assert f'href="/console/conversations/{ids["mallory"]}"' in html
    # By the host application's id as well; unknown ids get a 404 page.
    assert client.get("/console/customers/mallory").status_code == 200
    missing = client.get("/console/customers/nobody-here")
    assert missing.status_code == 404 and "Customer not found" in missing.text


def test_a_customer_nothing_happened_to_yet_has_a_calm_page(
    client: TestClient, runtime: Runtime, admin
) -> None:
    quiet = runtime.store.upsert_customer(external_id="quiet", email="q@example.com",
                                          name="Quinn", plan=None, verified=True)
    sign_in(client, admin)
    html = client.get(f"/console/customers/{quiet.id}").text
    assert metric(html, "score") == "100" and metric(html, "band") == "Healthy"
    assert "Nothing has moved this customer's score yet." in html
    assert "never" in html  # last change


# --- the chart helpers ---------------------------------------------------------------------


def test_charts_escape_their_labels_and_survive_no_data() -> None:
    day = date(2026, 11, 3)
    bars = hbar_chart([Bar(label=XSS, value=2, text="2 <b>")], ident="x", title="<t>")
    assert "<img" not in bars and "&lt;img src=x onerror=alert(1)&gt;" in bars
    assert "2 &lt;b&gt;" in bars and "<title id=\"x-title\">&lt;t&gt;</title>" in bars
    assert 'role="img"' in bars and 'aria-labelledby="x-title x-desc"' in bars
    empty = hbar_chart([Bar(label="none", value=0, text="0")], ident="e", title="t")
    assert 'width="0"' in empty  # a zero bar, and no division by zero
    assert "nothing in this range" in spark_bars({}, [day], ident="s", title="t")
    stacked = stacked_day_bars([day], [Series(name="negative", tone="negative", values=[0])],
                               ident="st", title="t")
    assert "nothing in this range" in stacked and "<rect" not in stacked
    line = line_chart([], first=day, last=day, ident="l", title="t")
    assert "no data in this range" in line and "<polyline" not in line


def test_charts_draw_what_they_are_given() -> None:
    days = days_between(date(2026, 11, 1), date(2026, 11, 30))
    assert len(days) == 30 and days[-1] == date(2026, 11, 30)
    spark = spark_bars({"2026-11-02": 3, "2026-11-05": 1}, days, ident="s", title="t")
    assert spark.count("<rect") == 2 and "2 Nov: 3, 5 Nov: 1" in spark
    stacked = stacked_day_bars(days[:2], [
        Series(name="negative", tone="negative", values=[1, 0]),
        Series(name="positive", tone="positive", values=[2, 3]),
    ], ident="st", title="t")
    assert stacked.count('class="bar bar-') == 3
    assert "1 Nov: 1 negative, 2 positive; 2 Nov: 0 negative, 3 positive" in stacked
    line = line_chart([(days[0], 90), (days[9], 35)], first=days[0], last=days[-1],
                      ident="l", title="t")
    assert line.count("<circle") == 2 and "<polyline" in line


def test_the_conversations_that_moved_a_score_are_added_up_per_conversation() -> None:
    evidence = [  # newest first, as the page gets it
        {"conversation_id": "b", "delta": -8, "components": ["escalations"]},
        {"conversation_id": "b", "delta": -3, "components": ["sentiment", "escalations"]},
        {"conversation_id": None, "delta": 2, "components": ["csat"]},
        {"conversation_id": "a", "delta": -5, "components": ["contact_frequency"]},
        {"conversation_id": "c", "delta": 4, "components": ["unresolved"]},
    ]
    assert [(m["conversation_id"], m["delta"], m["components"])
            for m in moved_by(evidence, limit=2)] == [
        ("b", -11, ["escalations", "sentiment"]), ("a", -5, ["contact_frequency"])]
