"""The embeddable chat widget in a real browser, the way a customer meets it.

Drives Debian's Chromium (``/usr/bin/chromium``) through Playwright against a real uvicorn
server; Playwright never downloads a browser here. Skipped when either is missing.

Host pages are the server's own ``/demo`` and, for hostile or identified hosts, pages on a
second loopback server (:class:`HostSite`): another origin that embeds the widget from the
assistant server, as a customer's site would.

The loader puts its launcher in a *closed* shadow root, which Playwright's locators cannot
enter. Every page here therefore runs :data:`OPEN_SHADOW_ROOTS` first: it records the mode
the loader asked for (the tests assert "closed") and opens the root so the tests can drive
the launcher by its accessible name, like a user would.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from chromium import (
    BROWSER_MARKS,
    OPEN_SHADOW_ROOTS,
    WIDGET_FRAME,
    WatchedPage,
    ask,
    open_chat,
    open_page,
    sync_api,
)
from conftest import auth, make_agent
from pydantic import SecretStr

from assistant.identity import user_hash

pytestmark = BROWSER_MARKS

SECRET = "widget-test-secret"
XSS_HTML = "<img src=x onerror=alert(1)>"
XSS_LINK = "[click](javascript:alert(1))"
XSS_LINK_BARE = "[open](javascript:alert`2`)"  # no parentheses: the link syntax matches
AGGRESSIVE_CSS = """
* { display: block !important; font-size: 40px !important; color: red !important;
    position: static !important; visibility: visible !important; }
button, iframe { display: none !important; }
body { transform: none; overflow: hidden !important; }
html, body { width: 10px !important; height: 10px !important; }
support-assistant { display: none !important; opacity: 0 !important; }
"""


@pytest.fixture
def settings(settings):
    """The shared test settings, plus a widget secret for identity verification."""
    return settings.model_copy(update={"widget_secret": SecretStr(SECRET)})


class HostSite(ThreadingHTTPServer):
    """A customer's web site: a loopback HTTP server with pages the test puts on it.

    A real server rather than Playwright's router, because Chromium lets only pages that
    come from loopback load scripts and frames from loopback (local network access).
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HostHandler)
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"
        self.pages: dict[str, tuple[str, str, dict[str, str]]] = {}

    def serve(self, path: str, body: str, *, content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> str:
        """Publish ``body`` at ``path``; returns its URL."""
        self.pages[path] = (body, content_type, headers or {})
        return self.origin + path


class _HostHandler(BaseHTTPRequestHandler):
    server: HostSite

    def do_GET(self) -> None:
        page = self.server.pages.get(self.path)
        if page is None:
            self.send_error(404)
            return
        body, content_type, headers = page
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """No access log in the test output."""


@pytest.fixture
def host(runtime) -> Iterator[HostSite]:
    """A customer's site on another origin than the server's, allowed to embed the widget."""
    site = HostSite()
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    runtime.settings = runtime.settings.model_copy(update={"widget_origins": [site.origin]})
    yield site
    site.shutdown()
    site.server_close()


class Browser(WatchedPage):
    """A Chromium page with the widget's frame at hand."""

    def frame(self) -> Any:
        """The widget's frame (to read what the browser stored, as a developer would)."""
        return next(f for f in self.page.frames if "/widget/frame" in f.url)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with open_page(Browser, viewport={"width": 1200, "height": 800},
                   init_script=OPEN_SHADOW_ROOTS) as browser:
        yield browser


def snippet(base: str, **attributes: str) -> str:
    """The one-line embed, with optional ``data-*`` attributes."""
    extra = "".join(f' data-{k.replace("_", "-")}="{v}"' for k, v in attributes.items())
    return f'<script src="{base}/widget.js" data-assistant-url="{base}"{extra} async></script>'


def host_html(base: str, body: str = "", head: str = "", **attributes: str) -> str:
    """A minimal customer site embedding the widget."""
    return (f"<!doctype html><html lang='en'><head><title>Host</title>"
            f"<link rel='icon' href='data:,'>{head}</head><body>"
            f"<h1>Acme</h1>{body}{snippet(base, **attributes)}</body></html>")




def stored_conversation(browser: Browser) -> dict[str, Any]:
    """The {id, token} the frame keeps in its own origin's localStorage."""
    raw = browser.frame().evaluate(
        "() => Object.values({...localStorage}).find((v) => v.includes('token'))"
    )
    assert raw, "the frame stored no conversation"
    return json.loads(raw)


def test_a_question_is_answered_with_its_source_survives_a_failed_send_and_a_reload(
    live_server, browser: Browser
) -> None:
    expect = sync_api.expect
    page = browser.page
    page.goto(f"{live_server.url}/demo")
    assert page.evaluate("window.__shadowModes") == ["closed"]

    # The first send fails on the network: the message stays, marked, with a Retry.
    keys: list[str | None] = []

    def flaky(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route(re.compile(r".*/v1/conversations/[0-9a-f]+/messages$"), flaky)
    frame = open_chat(page)
    log = frame.get_by_role("log")
    ask(frame, "How do I reset my password?")
    failed = log.locator(".msg-customer", has_text="How do I reset my password?")
    expect(failed).to_contain_text("Not sent")
    expect(frame.get_by_role("alert")).to_contain_text("Can't reach support")
    failed.get_by_role("button", name="Retry").click()

    # The answer arrives with its source as a real link; [1] stays text.
    source = log.get_by_role("link", name="Reset your password")
    expect(source).to_be_visible()
    expect(source).to_have_attribute("href", "https://help.example.test/account/reset-password")
    expect(source).to_have_attribute("rel", "noopener noreferrer")
    expect(log.locator(".msg-assistant")).to_contain_text("Forgot password")
    expect(failed).not_to_contain_text("Not sent")
    expect(frame.get_by_role("alert")).to_be_hidden()
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], f"retry changed the key: {keys}"

    # Escape closes the panel and gives focus back to the launcher.
    frame.get_by_role("textbox", name="Message").press("Escape")
    expect(page.locator(WIDGET_FRAME)).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()

    # After a reload the conversation is still there (one copy of each message).
    page.reload()
    frame = open_chat(page)
    log = frame.get_by_role("log")
    expect(log.get_by_role("link", name="Reset your password")).to_be_visible()
    expect(log.locator(".msg-customer", has_text="How do I reset my password?")).to_have_count(1)
    expect(log.locator(".msg-assistant")).to_have_count(1)

    # ... and continues in a new tab of the same site.
    tab = page.context.new_page()
    tab.goto(f"{live_server.url}/demo")
    other = open_chat(tab)
    expect(other.get_by_role("log").get_by_role("link", name="Reset your password")).to_be_visible()
    tab.close()

    # "New conversation" starts fresh.
    first = stored_conversation(browser)["id"]
    frame.get_by_role("button", name="New conversation").click()
    expect(log.locator(".msg")).to_have_count(0)
    ask(frame, "How do I connect Slack?")
    expect(log.get_by_role("link", name="Connect Slack")).to_be_visible()
    assert stored_conversation(browser)["id"] != first

    assert browser.dialogs == []
    # Chromium logs the aborted request; nothing else (no CSP violation) may appear.
    assert browser.problems("net::ERR_INTERNET_DISCONNECTED") == []


def test_a_person_takes_over_live_hostile_text_stays_text_and_the_customer_rates(
    live_server, runtime, browser: Browser
) -> None:
    expect = sync_api.expect
    page, base = browser.page, live_server.url
    page.goto(f"{base}/demo")
    frame = open_chat(page)
    log = frame.get_by_role("log")
    status = frame.get_by_role("status")

    ask(frame, "How do I reset my password?")
    expect(log.get_by_role("link", name="Reset your password")).to_be_visible()

    # Nobody is online: the customer is told so and leaves an email address.
    frame.get_by_role("button", name="Talk to a person").click()
    expect(status).to_have_text("Waiting for a person")
    expect(log).to_contain_text("Leave your email address")  # the stored notice
    expect(frame.get_by_role("button", name="Talk to a person")).to_be_hidden()
    # After a reload the widget still offers the email form (from GET /v1/conversations/ID).
    page.reload()
    frame = open_chat(page)
    log = frame.get_by_role("log")
    status = frame.get_by_role("status")
    frame.get_by_label("Email", exact=True).fill("ada@example.com")
    frame.get_by_role("button", name="Leave email").click()
    expect(log).to_contain_text("we will follow up at ada@example.com")
    expect(frame.get_by_label("Email", exact=True)).to_be_hidden()
    page.reload()  # and once an address was left, it does not ask again
    frame = open_chat(page)
    log = frame.get_by_role("log")
    status = frame.get_by_role("status")
    expect(log).to_contain_text("we will follow up at ada@example.com")
    expect(frame.get_by_label("Email", exact=True)).to_be_hidden()

    # The customer closes the panel; an agent comes online and claims the hand-off.
    frame.get_by_role("button", name="Close").click()
    expect(page.locator(WIDGET_FRAME)).to_be_hidden()
    agent = make_agent(runtime, "Alex Agent")
    (queued,) = runtime.handoffs.queue()
    conversation = f"/v1/agent/conversations/{queued.conversation_id}"
    with httpx.Client(base_url=base, timeout=10, headers=auth(agent.token)) as http:
        items = http.get("/v1/agent/queue").json()["items"]
        assert [i["handoff"]["id"] for i in items] == [queued.id]
        assert http.post(f"/v1/agent/handoffs/{queued.id}/claim").status_code == 200
        greeting = "Hi, I'm Alex. Your reset link is on its way."
        assert http.post(f"{conversation}/messages", json={"text": greeting}).is_success

        # The reply arrives live while the panel is closed: the launcher says so.
        page.get_by_role("button", name="Open chat, 1 new").click()
        expect(status).to_have_text("Alex Agent joined")
        agent_messages = log.locator(".msg-agent")
        expect(agent_messages).to_have_count(1)
        expect(agent_messages).to_contain_text("Alex Agent")
        expect(agent_messages).to_contain_text(greeting)
        expect(page.get_by_role("button", name="Close chat")).to_be_visible()

        for text in (XSS_HTML, XSS_LINK, XSS_LINK_BARE):
            assert http.post(f"{conversation}/messages", json={"text": text}).is_success
        expect(agent_messages).to_have_count(4)
        # Hostile text shows as text and nothing ran.
        for text in (XSS_HTML, XSS_LINK, XSS_LINK_BARE):
            expect(log.get_by_text(text, exact=True)).to_be_visible()
        expect(log.locator("img, script, a[href^='javascript']")).to_have_count(0)

        resolved = http.post(f"{conversation}/resolve", json={"resolution_code": "answered"})
        assert resolved.status_code == 200, resolved.text

    rating = frame.get_by_role("group", name="Rate this conversation")
    expect(rating).to_be_visible()
    expect(status).to_have_text("This conversation is resolved")
    rating.get_by_role("button", name="5", exact=True).click()
    rating.get_by_label("Comment (optional)").fill("Quick and kind")
    rating.get_by_role("button", name="Send rating").click()
    expect(log).to_contain_text("Thanks for your feedback!")
    expect(rating).to_be_hidden()
    (csat,) = runtime.store.events_after(
        after=0, types=["csat.submitted"], conversation_id=queued.conversation_id, limit=5
    )
    assert csat.payload == {"score": 5, "comment": "Quick and kind", "handled_by": "person"}

    assert browser.dialogs == [], f"agent text ran as script: {browser.dialogs}"
    assert browser.problems() == []


def test_aggressive_host_css_and_a_strict_host_csp_do_not_break_the_widget(
    live_server, host: HostSite, browser: Browser
) -> None:
    expect = sync_api.expect
    page, base = browser.page, live_server.url
    host.serve("/site.css", AGGRESSIVE_CSS, content_type="text/css")
    # No 'unsafe-inline' styles: the launcher's styles are a constructed stylesheet.
    csp = (f"default-src 'self'; script-src 'self' {base}; style-src 'self'; "
           f"frame-src {base}; img-src 'self' data:")
    page.goto(host.serve(
        "/shop",
        host_html(base, body="<button>Host button</button>",
                  head="<link rel='stylesheet' href='/site.css'>"),
        headers={"Content-Security-Policy": csp},
    ))
    expect(page.get_by_text("Host button")).to_be_hidden()  # the host's CSS did apply

    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()
    box = launcher.bounding_box()
    assert box is not None and 50 <= box["width"] <= 60 and 50 <= box["height"] <= 60, box
    assert box["x"] > 1000 and box["y"] > 700, f"launcher not bottom-right: {box}"
    assert launcher.evaluate("(b) => getComputedStyle(b).color") == "rgb(255, 255, 255)"

    frame = open_chat(page)
    panel = page.locator(WIDGET_FRAME).bounding_box()
    assert panel is not None and panel["width"] == 380 and panel["height"] > 400, panel
    ask(frame, "How do I reset my password?")
    expect(frame.get_by_role("log").get_by_role("link", name="Reset your password")).to_be_visible()
    # The host page cannot read the conversation: it is in the frame's origin only.
    assert page.evaluate("() => Object.keys(localStorage)") == []
    assert stored_conversation(browser)["token"]

    assert browser.dialogs == []
    assert browser.problems() == []


def test_a_wrong_user_hash_is_refused_and_the_chat_still_works_anonymously(
    live_server, runtime, host: HostSite, browser: Browser
) -> None:
    expect = sync_api.expect
    page, base = browser.page, live_server.url
    page.goto(host.serve("/account", host_html(
        base, customer_id="cust-42", customer_email="ada@example.com", user_hash="0" * 64)))
    frame = open_chat(page)
    ask(frame, "How do I reset my password?")
    expect(frame.get_by_role("log").get_by_role("link", name="Reset your password")).to_be_visible()

    refused = [line for line in browser.console if "identity was refused" in line]
    assert refused and refused[0].startswith("warning:"), browser.console
    record = runtime.store.get_conversation(stored_conversation(browser)["id"])
    assert record is not None and record.customer_id is None  # anonymous

    # With the right hash the same customer is verified.
    page.goto(host.serve("/signed-in", host_html(
        base, customer_id="cust-42", customer_name="Ada", user_hash=user_hash(SECRET, "cust-42"))))
    frame = open_chat(page)
    frame.get_by_role("button", name="New conversation").click()
    ask(frame, "How do I reset my password?")
    expect(frame.get_by_role("log").get_by_role("link", name="Reset your password")).to_be_visible()
    record = runtime.store.get_conversation(stored_conversation(browser)["id"])
    assert record is not None and record.customer_id is not None
    customer = runtime.store.get_customer(record.customer_id)
    assert customer is not None and customer.verified and customer.external_id == "cust-42"

    assert browser.dialogs == []
    assert browser.problems("identity was refused", "status of 401") == []


def test_the_loader_included_twice_starts_once_speaks_german_and_checks_its_api(
    live_server, host: HostSite, browser: Browser
) -> None:
    expect = sync_api.expect
    page, base = browser.page, live_server.url
    page.set_viewport_size({"width": 390, "height": 700})  # a phone
    page.goto(host.serve("/twice", host_html(base, body=snippet(base, locale="de"), locale="de")))
    # The launcher's label comes from the frame's German strings (sent on "ready").
    expect(page.get_by_role("button", name="Chat öffnen")).to_have_count(1)
    expect(page.locator(WIDGET_FRAME.replace("Support chat", "Support-Chat"))).to_have_count(1)
    assert page.locator("support-assistant").count() == 1
    assert any("included more than once" in line for line in browser.console), browser.console

    # The API opens the panel, full screen on a phone; Shift+Enter is a new line.
    page.evaluate("SupportAssistant.open()")
    frame = page.frame_locator("iframe")
    box = frame.get_by_role("textbox", name="Nachricht")
    expect(box).to_be_focused()
    assert page.locator("iframe").bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 700}
    box.press_sequentially("Zeile 1")
    box.press("Shift+Enter")
    box.press_sequentially("Zeile 2")
    expect(box).to_have_value("Zeile 1\nZeile 2")
    expect(frame.get_by_role("button", name="Senden", exact=True)).to_be_visible()
    page.evaluate("SupportAssistant.close()")
    expect(page.locator("iframe")).to_be_hidden()

    # identify() refuses bad input with a TypeError that says what is wrong.
    errors = page.evaluate("""() => [
        () => SupportAssistant.identify({id: 42}),
        () => SupportAssistant.identify({id: "u1", email: "not an email"}),
        () => SupportAssistant.identify({id: "u1", role: "admin"}),
        () => SupportAssistant.identify({email: "a@b.c", userHash: "a".repeat(64)}),
        () => SupportAssistant.identify("u1"),
    ].map((f) => { try { f(); return "accepted"; } catch (e) {
        return `${e.constructor.name}: ${e.message}`; } })""")
    assert all(e.startswith("TypeError: SupportAssistant.identify") for e in errors), errors
    assert page.evaluate("SupportAssistant.identify({id: 'u1', plan: 'pro'}) ?? 'ok'") == "ok"

    assert browser.dialogs == []
    assert browser.problems("included more than once") == []
