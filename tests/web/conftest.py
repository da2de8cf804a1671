"""Fixtures of the web pages' tests: gunicorn and a job worker on the module's committed
databases, Debian's Chromium, one browser context per person, and a folder of screenshots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Gunicorn, WorkerProcess
from tests.web.browser import CHROMIUM_ARGS, Visit, find_chromium

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(committed_env) -> Iterator[Gunicorn]:
    gunicorn = Gunicorn(committed_env, workers=2)
    yield gunicorn
    gunicorn.stop()


@pytest.fixture(scope="module")
def worker(committed_env) -> Iterator[WorkerProcess]:
    process = WorkerProcess({**committed_env, "WORKER_POLL_SECONDS": "0.2"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def base_url(server) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def chromium():
    executable, reason = find_chromium()
    if executable is None:
        pytest.skip(reason)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nscreenshots of the pages: {folder}")


@pytest.fixture
def visit(chromium, base_url):
    opened: list[Visit] = []

    def open_visit(width: int = 1280, javascript: bool = True) -> Visit:
        opened.append(Visit(chromium, base_url, width, javascript))
        return opened[-1]

    yield open_visit
    for v in opened:
        v.close()
