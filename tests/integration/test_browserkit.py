"""The real-browser toolchain: Playwright drives Debian's chromium against a local page."""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browserkit import artifacts_dir, browser_page, chromium_path, screenshot

pytestmark = pytest.mark.integration

PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>browserkit check</title></head>
<body>
  <h1>AI Mass browser check</h1>
  <label>Name <input id="name" name="name"></label>
  <button id="greet" type="button">Greet</button>
  <p id="greeting"></p>
  <script>
    document.getElementById("greet").addEventListener("click", () => {
      const name = document.getElementById("name").value;
      document.getElementById("greeting").textContent = "Hello, " + name + "!";
    });
  </script>
</body>
</html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """http://127.0.0.1:<port>/ serving a one-page site from a temporary folder."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: the OS picks a free one
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_chromium_drives_a_form_and_screenshots_it(site: str) -> None:
    artifacts = artifacts_dir("test_browserkit")
    with browser_page(base_url=site, artifacts=artifacts) as page:
        page.goto("/index.html")
        assert page.title() == "browserkit check"
        page.fill("#name", "Chicago")
        page.click("#greet")
        page.wait_for_selector("#greeting:has-text('Hello, Chicago!')")
        assert page.inner_text("#greeting") == "Hello, Chicago!"
        assert "Chrome/" in page.evaluate("navigator.userAgent")
        shot = screenshot(page, artifacts, "greeting")

    assert shot == artifacts / "greeting.png"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width == 1400 and height >= 900
    assert len(data) > 5_000  # a rendered page with text, not an empty canvas


def test_a_failing_body_leaves_a_failure_screenshot(site: str, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with pytest.raises(AssertionError, match="on purpose"):
        with browser_page(base_url=site, artifacts=artifacts) as page:
            page.goto("/index.html")
            raise AssertionError("on purpose")
    assert (artifacts / "failure.png").stat().st_size > 0


def test_chromium_path_is_the_system_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMASS_CHROMIUM", raising=False)
    path = Path(chromium_path())
    assert path.name in {"chromium", "chromium-browser"} and path.is_file()


def test_a_bad_chromium_override_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMASS_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(RuntimeError, match="AIMASS_CHROMIUM"):
        chromium_path()
