"""Headless Chromium for the view tests (imported by test modules; tests/ is on sys.path).

    from browser import chromium, need_browser, non_local
    with chromium(tmp_path) as (context, requests):   # every URL the page asks for is recorded
        page = context.new_page(); page.goto(path.as_uri())
    assert not non_local(requests)

Locally a missing chromium or playwright skips the test with the reason; in CI (`CI` set, as
.ci/run does) it fails instead, because CI installs both.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def need(ok: bool, reason: str) -> None:
    """Skip locally when a browser tool is missing; in CI (which installs it) that is a failure."""
    if not ok:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


def need_browser():
    """playwright's sync_playwright, after checking chromium and playwright are there."""
    need(CHROMIUM is not None, "chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install playwright; no browser download needed)")
    return sync_playwright


@contextmanager
def chromium(tmp_path, width: int = 1400, height: int = 900):
    """(browser context, list of every requested URL), closed on exit."""
    sync_playwright = need_browser()
    requests: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": width, "height": height})
        context.on("request", lambda request: requests.append(request.url))
        try:
            yield context, requests
        finally:
            context.close()


def non_local(urls: list[str]) -> list[str]:
    """The URLs that would leave this machine. file:/// only: a protocol-relative "//host/x" on a
    file page resolves to file://host/x, a remote share."""
    bad = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "about", "blob") or url.startswith("file:///"):
            continue
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOCAL_HOSTS | {"::1"}:
            continue
        bad.append(url)
    return bad
