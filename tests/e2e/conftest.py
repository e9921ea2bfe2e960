"""The browser the page's end-to-end tests drive (tests/e2e/test_web*.py), launched once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - reported by the browser fixture
    sync_playwright = None

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
PLAIN_HTTP_HOST = "plain-http.video2mp3.test"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A name for loopback that is no secure context, as a LAN address over plain HTTP is not.
    f"--host-resolver-rules=MAP {PLAIN_HTTP_HOST} 127.0.0.1",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Launch Debian's Chromium, headless, once for the session.

    The browser is the machine's own (``/usr/bin/chromium``), never one Playwright
    downloads. A missing browser or Playwright skips these tests locally and fails
    them under ``CI=true``.
    """
    if sync_playwright is None:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()
