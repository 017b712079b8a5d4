"""Fixtures of the console tests: a real server, and the system Chromium driven by Playwright.

Chromium is Debian's (``.ci/services.sh`` installs it); Playwright's own browser download does not
work offline, so ``executable_path`` points at ``/usr/bin/chromium``. Without either, the browser tests
skip on a developer machine and fail in CI (``CI`` set), where both must be present.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return os.environ.get("TINGYIN_TEST_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        missing = "chromium (apt-get install chromium)" if executable is None else "playwright (pip)"
        if os.environ.get("CI"):
            raise RuntimeError(f"CI must provide {missing} for the console's browser tests")
        pytest.skip(f"{missing} is not installed")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("console") / "home", env={"TINGYIN_JOB_LEASE_SECONDS": "20"}
    ).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests put their screenshots: TINGYIN_CONSOLE_SCREENSHOTS (e.g. docs/console
    when refreshing the committed ones), else a temporary folder."""
    target = os.environ.get("TINGYIN_CONSOLE_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
