"""Real Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright
(never a downloaded browser), with a page that records its console and dialogs.

Importing this module skips the importing test module when Playwright is not installed;
``BROWSER_MARKS`` skips it when Chromium is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e .[dev])"
)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@dataclass
class WatchedPage:
    """A Chromium page, what it logged, and any dialog (script that ran from data)."""

    page: Any
    console: list[str] = field(default_factory=list)  # every frame's console and page errors
    dialogs: list[str] = field(default_factory=list)  # alert() and co

    def problems(self, *allowed: str) -> list[str]:
        """Errors and warnings (CSP violations among them), minus the allowed ones."""
        return [
            line for line in self.console
            if line.split(":", 1)[0] in {"error", "warning", "pageerror"}
            and not any(a in line for a in allowed)
        ]


Watched = TypeVar("Watched", bound=WatchedPage)


@contextmanager
def open_page(
    kind: type[Watched], *, viewport: dict[str, int] | None = None, init_script: str | None = None
) -> Iterator[Watched]:
    """A fresh Chromium with one watched page of type ``kind``; closed afterwards."""
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = chromium.new_context(viewport=viewport) if viewport else \
                chromium.new_context()
            if init_script:
                context.add_init_script(init_script)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            watched = kind(page)
            page.on("console", lambda m: watched.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda exc: watched.console.append(f"pageerror: {exc}"))

            def on_dialog(dialog: Any) -> None:
                watched.dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            yield watched
        finally:
            # Closed before the server stops, so no stream is left open on it.
            chromium.close()


WIDGET_FRAME = 'iframe[title="Support chat"]'
# The widget's loader puts its launcher in a *closed* shadow root, which Playwright's
# locators cannot enter. Pages run this first: it records the mode the loader asked for
# (test_widget_browser.py asserts "closed") and opens the root so tests can click the
# launcher by its accessible name, as a user would.
OPEN_SHADOW_ROOTS = """
window.__shadowModes = [];
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) {
  window.__shadowModes.push(init.mode);
  return attach.call(this, { ...init, mode: "open" });
};
"""


def open_chat(page: Any) -> Any:
    """Click the widget's launcher; the panel opens with the message box focused."""
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator(WIDGET_FRAME)
    sync_api.expect(frame.get_by_role("textbox", name="Message")).to_be_focused()
    return frame


def ask(frame: Any, text: str) -> None:
    """Type a message in the widget and press Enter."""
    box = frame.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    sync_api.expect(box).to_have_value("")
