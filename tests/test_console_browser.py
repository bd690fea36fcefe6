"""The console in a real browser: an agent takes a live hand-off and answers the customer.

Drives Debian's Chromium (``/usr/bin/chromium``) through Playwright against a real uvicorn
server; Playwright never downloads a browser here. Skipped when either is missing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chromium import BROWSER_MARKS, WatchedPage, open_page, sync_api
from conftest import auth, make_agent

pytestmark = BROWSER_MARKS

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"


class CustomerStream(threading.Thread):
    """The customer's live stream, read in the background until ``want`` arrives."""

    def __init__(self, base_url: str, conversation: dict[str, str], want: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/v1/conversations/{conversation['id']}/events"
        self.token = conversation["token"]
        self.want = want
        self.opened = threading.Event()
        self.arrived = threading.Event()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(30, connect=5)) as http, http.stream(
                "GET", self.url, headers=auth(self.token)
            ) as response:
                response.raise_for_status()
                self.opened.set()
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        data = json.loads(line.removeprefix("data:"))
                        self.events.append((kind, data))
                        message = data.get("message") or {}
                        if kind == "message" and message.get("text") == self.want:
                            self.arrived.set()
                            return
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.opened.set()


class Browser(WatchedPage):
    """A Chromium page that can sign an agent in to the console."""

    def sign_in(self, base_url: str, agent: Any) -> None:
        page = self.page
        page.goto(f"{base_url}/console/login")
        page.get_by_label("Email").fill(agent.email)
        page.get_by_label("Password").fill(agent.password)
        page.get_by_role("button", name="Sign in").click()
        sync_api.expect(page).to_have_url(f"{base_url}/console")


@pytest.fixture
def console_browser() -> Iterator[Browser]:
    with open_page(Browser) as browser:
        yield browser


def test_an_agent_claims_a_live_handoff_and_the_reply_reaches_the_customer(
    live_server, runtime, console_browser: Browser
) -> None:
    browser = console_browser
    expect = sync_api.expect
    agent = make_agent(runtime)
    base = live_server.url
    page = browser.page
    first_message = "My invoice for March shows a double charge"
    reply = "Hi! I am sorry about the double charge; I am refunding it now."

    # Sign in; the queue is empty and its stream is open.
    browser.sign_in(base, agent)
    expect(page.get_by_text("Nobody is waiting")).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("Live")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # A customer arrives, explains, and asks for a person.
    with httpx.Client(base_url=base, timeout=10) as http:
        conversation = http.post("/v1/conversations", json={}).json()
        customer = auth(conversation["token"])
        messages = f"/v1/conversations/{conversation['id']}/messages"
        for text in (first_message, XSS, "I want to talk to a human"):
            sent = http.post(messages, json={"text": text}, headers=customer)
            assert sent.status_code == 200, sent.text
        assert sent.json()["handoff"]["status"] == "queued"

        # The hand-off shows up in the open queue page by itself.
        row = page.locator("#queue-body tr", has_text=first_message)
        expect(row).to_be_visible()
        assert page.evaluate("window.__sameDocument") is True
        expect(page.get_by_text("Nobody is waiting")).to_be_hidden()

        page.get_by_role("button", name="Claim", exact=True).click()
        expect(page).to_have_url(f"{base}/console/conversations/{conversation['id']}")
        expect(page.locator(".context .summary li", has_text=first_message)).to_be_visible()
        expect(page.get_by_text("You are handling this conversation.")).to_be_visible()
        # The attack is shown as text and nothing ran.
        expect(page.get_by_text(XSS, exact=True)).to_be_visible()
        expect(page.locator("#transcript img, #transcript script")).to_have_count(0)
        expect(page.locator("#live-state")).to_have_text("Live")

        stream = CustomerStream(base, conversation, reply)
        stream.start()
        assert stream.opened.wait(5) and stream.error is None, stream.error

        page.get_by_role("textbox", name="Reply").fill(reply)
        page.get_by_role("button", name="Send reply").click()
        assert stream.arrived.wait(5), f"reply not streamed; got {stream.events}"
        kind, data = stream.events[-1]
        assert kind == "message"
        assert data["message"]["role"] == "agent"
        assert data["message"]["author"] == agent.name
        expect(page.get_by_role("textbox", name="Reply")).to_have_value("")

        # The customer answers; it appears live (as text: the script builds it with
        # textContent), after the reply, which shows once (added from the response
        # and again from the stream, deduplicated).
        answer = "Thank you <img src=y onerror=alert(3)> that is great"
        steps = page.locator("table.trajectory tbody tr")
        steps_before = steps.count()
        assert http.post(messages, json={"text": answer},
                         headers=customer).status_code == 200
        expect(page.locator("#transcript .msg-customer", has_text=answer)).to_be_visible()
        # The context panel follows the conversation: the new message joins the trajectory.
        expect(steps).to_have_count(steps_before + 1)
        expect(page.locator("#transcript .msg-agent", has_text=reply)).to_have_count(1)
        expect(page.locator("#transcript img")).to_have_count(0)

        # Keyboard: Ctrl+Enter adds an internal note.
        note_box = page.get_by_role("textbox", name="Internal note")
        note_box.fill("Refund approved by billing")
        note_box.press("Control+Enter")
        expect(page.locator("#notes .note", has_text="Refund approved")).to_have_count(1)

        # Release, take it back from the conversation page, resolve with a code.
        ownership = page.locator("#ownership")
        page.get_by_role("button", name="Release").click()
        expect(ownership).to_have_text("Waiting in the support queue.")
        expect(page.get_by_role("textbox", name="Reply")).to_be_hidden()
        page.get_by_role("button", name="Claim", exact=True).click()
        expect(ownership).to_have_text("You are handling this conversation.")
        page.get_by_label("Resolution code").select_option("refund_issued")
        page.get_by_role("button", name="Resolve").click()
        expect(ownership).to_have_text("Resolved (refund_issued).")
        expect(page.locator("#conversation-status")).to_have_text("resolved")
        expect(page.get_by_role("button", name="Return to bot")).to_be_hidden()

    assert browser.dialogs == [], f"customer text ran as script: {browser.dialogs}"
    assert browser.problems() == [], browser.problems()


def test_a_claim_lost_to_another_agent_is_announced_and_the_queue_works_by_keyboard(
    live_server, runtime, console_browser: Browser
) -> None:
    expect = sync_api.expect
    browser, page, base = console_browser, console_browser.page, live_server.url
    # Streams check for changes every 5 s here, so the page cannot learn of the other
    # agent's claim before the click: the server's 409 is what the page must handle.
    runtime.settings = runtime.settings.model_copy(update={"live_poll_seconds": 5.0})
    me, rival = make_agent(runtime, "Alex Agent"), make_agent(runtime, "Robin Rival")
    with httpx.Client(base_url=base, timeout=10) as http:
        conversation = http.post("/v1/conversations", json={}).json()
        asked = http.post(f"/v1/conversations/{conversation['id']}/handoff",
                          headers=auth(conversation["token"]))
        assert asked.status_code == 200, asked.text
        (queued,) = runtime.handoffs.queue()

        browser.sign_in(base, me)
        expect(page.locator("#live-state")).to_have_text("Live")
        page.keyboard.press("Tab")  # the first stop is the skip link
        expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
        claim = page.get_by_role("button", name="Claim", exact=True)
        claim.focus()

        taken = http.post(f"/v1/agent/handoffs/{queued.id}/claim", headers=auth(rival.token))
        assert taken.status_code == 200
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_have_text("Someone else claimed it.")
        expect(page).to_have_url(f"{base}/console")
        expect(claim).to_be_enabled()

    assert browser.dialogs == []
    # Chromium logs every failed fetch; the 409 was the point, anything else is not.
    expected = "Failed to load resource: the server responded with a status of 409"
    assert browser.problems(expected) == [], browser.problems()
