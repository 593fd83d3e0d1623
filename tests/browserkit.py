"""Real-browser helpers: Playwright driving the system chromium (Debian's package).

`make test` installs chromium first (tools/system_packages.sh); Playwright's own browser
download is never used. A missing chromium is an error, never a skip: CI runs these tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, ViewportSize, sync_playwright

from aimass.platform.settings import REPO_ROOT

SETUP_HINT = (
    "run `sudo tools/system_packages.sh` (`make test` runs it first; as root it installs chromium)"
)
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
DEFAULT_TIMEOUT_MS = 15_000


def chromium_path() -> str:
    """The system chromium: $AIMASS_CHROMIUM, else chromium / chromium-browser on PATH or in /usr/bin."""
    override = os.environ.get("AIMASS_CHROMIUM")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise RuntimeError(f"AIMASS_CHROMIUM={override} is not an executable file")
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
        )
        if found:
            return found
    raise RuntimeError(
        f"chromium not found (looked for chromium and chromium-browser): {SETUP_HINT}"
    )


def artifacts_root() -> Path:
    """Where browser tests leave screenshots: $AIMASS_TEST_ARTIFACTS, else <repo>/var/test-artifacts."""
    configured = os.environ.get("AIMASS_TEST_ARTIFACTS")
    return Path(configured) if configured else REPO_ROOT / "var" / "test-artifacts"


def artifacts_dir(name: str) -> Path:
    """A folder for one test's artifacts (created), under `artifacts_root()`."""
    path = artifacts_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def browser_page(*, base_url: str, artifacts: Path) -> Iterator[Page]:
    """A page in headless system chromium, 1400x900, relative URLs against `base_url`.

    If the body raises, the page is saved as `failure.png` under `artifacts` first.
    Browser, context and Playwright are closed on exit.
    """
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
            context.set_default_timeout(DEFAULT_TIMEOUT_MS)
            page = context.new_page()
            try:
                yield page
            except BaseException:
                try:
                    screenshot(page, artifacts, "failure")
                except Exception:  # noqa: BLE001 - the original error matters, not this one
                    pass
                raise
            finally:
                context.close()
        finally:
            browser.close()


def screenshot(page: Page, artifacts: Path, name: str) -> Path:
    """A full-page PNG of `page` at `artifacts/<name>.png`; returns its path."""
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path), full_page=True)
    return path
