"""Browser fixtures: Debian's Chromium driven by Playwright (never Playwright's own browser
download, which does not work here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServeProcess

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium's own requests to Google's hosts are
# refused by this machine's closed network, many at a time.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: apt-get install chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=ARGS, headless=True
        )
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    """``gateway serve`` processes a test starts: killed at its end, however it ends."""
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        process.kill()
