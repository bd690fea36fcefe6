"""The widget's files, checked without a browser: safe by construction, localised, small."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, select_autoescape

WIDGET = Path(__file__).resolve().parent.parent / "widget"
SCRIPTS = ("loader.js", "frame.js")
PAGES = ("frame.html", "demo.html")
GZIP_BUDGET = 20 * 1024
# Ways to turn a string into markup or code; text must only ever reach the DOM as text.
UNSAFE = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
          "new Function", "createContextualFragment", "srcdoc")


def strings(locale: str) -> dict[str, str]:
    return json.loads((WIDGET / "i18n" / f"{locale}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_never_turn_text_into_markup_or_code(name: str) -> None:
    source = (WIDGET / name).read_text(encoding="utf-8")
    found = [word for word in UNSAFE if word in source]
    assert found == [], f"{name} uses {found}"
    # setTimeout/setInterval with a string argument are eval too.
    assert not re.search(r"set(?:Timeout|Interval)\(\s*['\"`]", source)


@pytest.mark.parametrize("name", PAGES)
def test_pages_have_no_inline_script_or_style(name: str) -> None:
    page = (WIDGET / name).read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline <script>"
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page), "style attribute"
    assert not re.search(r"\son[a-z]+=", page), "event handler attribute"
    assert "javascript:" not in page


def test_every_locale_has_the_same_keys_and_placeholders() -> None:
    english = strings("en")
    locales = sorted(p.stem for p in (WIDGET / "i18n").glob("*.json"))
    assert {"en", "de"} <= set(locales)
    for locale in locales:
        table = strings(locale)
        assert set(table) == set(english), f"{locale}: keys differ from en"
        for key, text in table.items():
            assert isinstance(text, str) and text.strip(), f"{locale}.{key} is empty"
            placeholders = set(re.findall(r"\{\w+\}", text))
            assert placeholders == set(re.findall(r"\{\w+\}", english[key])), f"{locale}.{key}"


def test_every_string_the_frame_uses_is_in_english() -> None:
    english = strings("en")
    page = (WIDGET / "frame.html").read_text(encoding="utf-8")
    script = (WIDGET / "frame.js").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-label|-placeholder)?="(\w+)"', page))
    used |= set(re.findall(r'\bt\("(\w+)"', script))
    used |= set(re.findall(r'"(\w+)"', script.split("const labels = [", 1)[1].split("]", 1)[0]))
    assert used, "found no strings: the patterns above are out of date"
    assert sorted(used - set(english)) == []
    # What the loader shows before the frame sends it the translated labels.
    loader = (WIDGET / "loader.js").read_text(encoding="utf-8")
    for key in ("openChat", "closeChat", "frameTitle", "unread"):
        assert f'{key}: "{english[key]}"' in loader


def test_the_frame_template_renders_its_data_attributes_escaped() -> None:
    env = Environment(loader=FileSystemLoader(str(WIDGET)), autoescape=select_autoescape(["html"]))
    html = env.get_template("frame.html").render(
        host_origin="https://shop.example.com", locale="de", title='<b>"Hi"</b>', api_base="",
        assets={"js": "/widget/assets/frame.js", "css": "/widget/assets/frame.css"},
    )
    assert 'data-host-origin="https://shop.example.com"' in html
    assert 'data-locale="de"' in html and '<html lang="de">' in html
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert '<script src="/widget/assets/frame.js" defer></script>' in html
    for name in ("Message", "Rate this conversation", "Talk to a person", "Email"):
        assert name in html


def test_loader_frame_script_and_styles_stay_under_20_kb_gzipped() -> None:
    total = sum(
        len(gzip.compress((WIDGET / name).read_bytes(), compresslevel=9))
        for name in (*SCRIPTS, "frame.css")
    )
    assert total < GZIP_BUDGET, f"{total} bytes gzipped; the budget is {GZIP_BUDGET}"
