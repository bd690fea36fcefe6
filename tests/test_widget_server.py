"""The server side of the widget: loader, frame with its CSP, assets, demo page, CORS."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.web.app import create_app

FRAME = """<!doctype html><html lang="{{ locale }}"><head><title>{{ title }}</title>
<link rel="stylesheet" href="{{ assets.css }}"></head>
<body data-host-origin="{{ host_origin }}" data-locale="{{ locale }}">
<script src="{{ assets.js }}"></script></body></html>"""
DEMO = """<!doctype html><script src="{{ assistant_url }}/widget.js"
data-assistant-url="{{ assistant_url }}" async></script>"""


@pytest.fixture
def widget_dir(tmp_path: Path) -> Path:
    """A minimal widget directory, so these tests check the server, not the widget's JS."""
    root = tmp_path / "widget"
    (root / "i18n").mkdir(parents=True)
    (root / "loader.js").write_text("/* loader */")
    (root / "frame.js").write_text("/* frame */")
    (root / "frame.css").write_text("/* css */")
    (root / "frame.html").write_text(FRAME)
    (root / "demo.html").write_text(DEMO)
    (root / "i18n" / "en.json").write_text('{"send": "Send"}')
    (root / "i18n" / "de.json").write_text('{"send": "Senden"}')
    (root / "secret.txt").write_text("not for the web")
    return root


def app_client(runtime, widget_dir: Path, **settings) -> TestClient:
    runtime.settings = runtime.settings.model_copy(update={"widget_dir": widget_dir, **settings})
    return TestClient(create_app(runtime=runtime))


@pytest.fixture
def client(runtime, widget_dir: Path):
    with app_client(runtime, widget_dir) as test_client:
        yield test_client


def test_the_loader_is_cached_and_revalidated(client) -> None:
    first = client.get("/widget.js")
    assert first.status_code == 200 and first.text == "/* loader */"
    assert first.headers["content-type"].startswith("application/javascript")
    assert first.headers["cache-control"] == "public, max-age=300"
    again = client.get("/widget.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_only_the_frame_assets_are_served(client) -> None:
    assert client.get("/widget/assets/frame.js").text == "/* frame */"
    assert client.get("/widget/assets/i18n/de.json").json() == {"send": "Senden"}
    for path in ["/widget/assets/secret.txt", "/widget/assets/..%2Fsecret.txt",
                 "/widget/assets/i18n/..%2F..%2Fsecret.json", "/widget/assets/i18n/xx.json"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "not for the web" not in response.text


def test_the_frame_allows_only_configured_hosts(runtime, widget_dir) -> None:
    with app_client(runtime, widget_dir, widget_origins=["https://shop.example"]) as client:
        framed = client.get("/widget/frame", params={"host": "https://shop.example",
                                                     "locale": "de", "title": "<b>Help</b>"})
        assert framed.status_code == 200
        policy = framed.headers["content-security-policy"]
        assert "frame-ancestors 'self' https://shop.example" in policy
        assert "script-src 'self';" in policy and "object-src 'none'" in policy
        assert 'data-host-origin="https://shop.example"' in framed.text
        assert 'lang="de"' in framed.text and "&lt;b&gt;Help&lt;/b&gt;" in framed.text
        refused = client.get("/widget/frame", params={"host": "https://evil.example"})
        assert refused.status_code == 403
        assert "ASSISTANT_WIDGET_ORIGINS" in refused.json()["error"]["message"]
        bad = client.get("/widget/frame", params={"host": "javascript:alert(1)"})
        assert bad.status_code == 422
        unknown_locale = client.get("/widget/frame", params={"host": "https://shop.example",
                                                             "locale": "zz"})
        assert 'lang="en"' in unknown_locale.text


def test_the_demo_page_embeds_the_widget_from_this_server(client) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/demo"
    page = client.get("/demo")
    assert page.status_code == 200
    assert 'src="http://testserver/widget.js"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    own = client.get("/widget/frame", params={"host": "http://testserver"})
    assert own.status_code == 200  # the server's own pages may always embed it


def test_with_a_public_url_the_host_header_is_not_trusted(runtime, widget_dir) -> None:
    public = "https://support.example.com"
    with app_client(runtime, widget_dir, public_url=public) as client:
        spoofed = {"Host": "evil.example"}
        page = client.get("/demo", headers=spoofed)
        assert f'src="{public}/widget.js"' in page.text and "evil.example" not in page.text
        assert page.headers["cache-control"] == "no-store"
        # A frame request naming the spoofed host as its own origin is not "this server".
        assert client.get("/widget/frame", params={"host": "http://evil.example"},
                          headers=spoofed).status_code == 403
        assert client.get("/widget/frame", params={"host": public}).status_code == 200


def test_without_one_the_demo_is_never_cached(client) -> None:
    # Rendered from the Host header: a shared cache must not hand one client's copy on.
    assert client.get("/demo").headers["cache-control"] == "no-store"


def test_cors_only_for_configured_origins(runtime, widget_dir) -> None:
    with app_client(runtime, widget_dir, widget_origins=["https://shop.example"]) as client:
        allowed = client.options("/v1/conversations", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.options("/v1/conversations", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def test_bad_widget_origins_setting_is_refused() -> None:
    from pydantic import ValidationError

    from assistant.config import Settings

    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(widget_origins="https://shop.example/path", _env_file=None)


def test_bad_public_url_setting_is_refused() -> None:
    from pydantic import ValidationError

    from assistant.config import Settings

    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(public_url="support.example.com/help", _env_file=None)
    assert Settings(public_url="https://support.example.com/",
                    _env_file=None).public_url == "https://support.example.com"
