"""The "That helped" / "Didn't help" buttons under the bot's answers, in a real browser.

The customer rates an answer in the widget (``POST /v1/conversations/{id}/feedback``), the
server records an ``answer.feedback`` event, and the browser remembers which answers were
rated, so a reload shows no buttons for them. See tests/test_widget_browser.py for the
set-up (real Chromium, real uvicorn) and why the launcher's shadow root is opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chromium import (
    BROWSER_MARKS,
    OPEN_SHADOW_ROOTS,
    WatchedPage,
    ask,
    open_chat,
    open_page,
    sync_api,
)
from conftest import auth

pytestmark = BROWSER_MARKS

GROUP = "Was this answer helpful?"
THANKS = "Thanks for the feedback"
FEEDBACK_URL = re.compile(r".*/v1/conversations/[0-9a-f]+/feedback$")


class Browser(WatchedPage):
    def stored(self) -> dict[str, Any]:
        """The conversation the widget's frame keeps in its origin's localStorage."""
        frame = next(f for f in self.page.frames if "/widget/frame" in f.url)
        raw = frame.evaluate(
            "() => Object.values({...localStorage}).find((v) => v.includes('token'))"
        )
        assert raw, "the frame stored no conversation"
        return json.loads(raw)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with open_page(Browser, viewport={"width": 1200, "height": 800},
                   init_script=OPEN_SHADOW_ROOTS) as browser:
        yield browser


def answer_to(frame: Any, source: str) -> Any:
    """The bot's answer citing ``source``, once it is shown."""
    answer = frame.get_by_role("log").locator(".msg-assistant").filter(
        has=frame.get_by_role("link", name=source))
    sync_api.expect(answer).to_have_count(1)
    return answer


def feedback(runtime, message_id: int) -> list[bool]:
    """What the server recorded for one answer: the ``helpful`` of each feedback event."""
    return [e.payload["helpful"] for e in runtime.store.list_events(type="answer.feedback")
            if e.payload["message_id"] == message_id]


def test_the_customer_says_whether_answers_helped_once_per_answer(
    live_server, runtime, browser: Browser
) -> None:
    expect = sync_api.expect
    page = browser.page
    page.goto(f"{live_server.url}/demo")
    frame = open_chat(page)

    # Every bot answer offers the two buttons, in a named group.
    ask(frame, "How do I reset my password?")
    first = answer_to(frame, "Reset your password")
    group = first.get_by_role("group", name=GROUP)
    expect(group.get_by_role("button")).to_have_text(["That helped", "Didn't help"])
    first_id = int(first.get_attribute("data-id") or 0)

    group.get_by_role("button", name="That helped", exact=True).click()
    expect(first.get_by_text(THANKS)).to_be_visible()
    expect(first.get_by_role("button")).to_have_count(0)
    assert feedback(runtime, first_id) == [True]
    assert browser.stored()["feedback"] == [first_id]

    # After a reload the rated answer comes back from the history without the buttons.
    page.reload()
    frame = open_chat(page)
    first = answer_to(frame, "Reset your password")
    expect(first.get_by_role("group", name=GROUP)).to_have_count(0)
    expect(first.get_by_role("button")).to_have_count(0)

    # A failed rating shows the widget's alert and keeps the buttons; Retry sends it.
    ask(frame, "How do I connect Slack?")
    second = answer_to(frame, "Connect Slack")
    second_id = int(second.get_attribute("data-id") or 0)
    page.route(FEEDBACK_URL, lambda route: route.fulfill(
        status=429, json={"error": {"message": "slow down"}}))
    didnt = second.get_by_role("button", name="Didn't help", exact=True)
    didnt.focus()
    didnt.press("Enter")  # real buttons: the keyboard works
    expect(frame.get_by_role("alert")).to_contain_text("sending messages too quickly")
    expect(second.get_by_role("group", name=GROUP)).to_be_visible()
    assert feedback(runtime, second_id) == []
    page.unroute(FEEDBACK_URL)
    frame.get_by_role("alert").get_by_role("button", name="Retry").click()
    expect(second.get_by_text(THANKS)).to_be_visible()
    expect(frame.get_by_role("alert")).to_be_hidden()
    assert feedback(runtime, second_id) == [False]

    # Rated already elsewhere (another tab, the API): 409 means recorded, so thanks.
    ask(frame, "Can annual plans be refunded?")
    third = answer_to(frame, "Refunds")
    third_id = int(third.get_attribute("data-id") or 0)
    conversation = browser.stored()
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        response = http.post(f"/v1/conversations/{conversation['id']}/feedback",
                             json={"message_id": third_id, "helpful": True},
                             headers=auth(conversation["token"]))
        assert response.status_code == 204, response.text
    third.get_by_role("button", name="Didn't help", exact=True).click()
    expect(third.get_by_text(THANKS)).to_be_visible()
    expect(frame.get_by_role("alert")).to_be_hidden()
    assert feedback(runtime, third_id) == [True]  # the first rating stands
    assert sorted(browser.stored()["feedback"]) == sorted([first_id, second_id, third_id])

    # Nothing else went wrong; Chromium logs the refused requests (429, 409) it saw.
    assert browser.dialogs == []
    assert browser.problems("status of 429", "status of 409") == []
