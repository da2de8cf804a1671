"""A real headless Chromium for the web pages' tests: Debian's package, driven by Playwright,
and what the tests do in it as a person would.

Playwright's own browser download is not used: the tests launch the system's Chromium with
`executable_path`. When it is missing and the run is root, `apt-get` installs it; otherwise
the browser tests are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import PASSWORD

# How long a test waits for a job to end on a page that follows it (generous: a loaded machine
# runs the browser, gunicorn, the worker and PostgreSQL on the same cores).
JOB_WAIT = 90_000
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Headless, and quiet towards a closed network: no background fetches, updates or sync.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_chromium() -> tuple[str | None, str]:
    """The Chromium binary, installing Debian's package as root when it is missing; or None
    and the reason."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate, ""
    found = shutil.which("chromium")
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "Chromium is not installed and apt-get cannot install it (not root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return (
        (CHROMIUM_CANDIDATES[0], "")
        if Path(CHROMIUM_CANDIDATES[0]).exists()
        else (
            None,
            "apt-get installed chromium but /usr/bin/chromium is missing",
        )
    )


class Visit:
    """One browser context (one person's browser): its page, its console errors, and every
    request it made, to check that none left the origin."""

    def __init__(self, browser, base_url: str, width: int = 1280, javascript: bool = True) -> None:
        self.base_url = base_url
        self.context = browser.new_context(
            base_url=base_url,
            viewport={"width": width, "height": 900},
            java_script_enabled=javascript,
        )
        self.context.set_default_timeout(60_000)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        self.page.on("request", lambda req: self.requests.append(req.url))

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def foreign_requests(self) -> list[str]:
        origin = urlsplit(self.base_url).netloc
        return [url for url in self.requests if urlsplit(url).netloc not in (origin, "")]

    def close(self) -> None:
        self.context.close()


def path_of(page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


PRODUCTS = (
    "sku;name;unit_price;currency;weight_kg;active\r\n"
    "A-1;Anvil;10.50;EUR;2;yes\r\n"
    'B-2;"Bolt; zinc";0.20;EUR;0.01;no\r\n'
    "C-3;Crate;abc;EUR;5;yes\r\n"  # a price that is not a number
    "A-1;Anvil, again;11.00;EUR;2;yes\r\n"  # the key once more
    "D-4;Drill;99;XXX;1.5;maybe\r\n"  # unknown currency, not a boolean
)


def create_customer(v: Visit, code: str) -> None:
    v.page.goto("/customers/new")
    v.page.get_by_label("Code").fill(code)
    v.page.get_by_label("Name", exact=True).fill(f"{code} Trading")
    v.page.get_by_role("button", name="Create").click()
    assert re.fullmatch(r"/customers/\d+", path_of(v.page))


def upload(v: Visit, tmp_path, code: str, content: str, name: str = "products.csv") -> None:
    path = tmp_path / name
    path.write_bytes(content.encode())
    v.page.goto("/imports/new")
    v.page.get_by_label("Customer").select_option(label=f"{code} · {code} Trading")
    v.page.get_by_label("File").set_input_files(str(path))
    v.page.get_by_role("button", name="Upload").click()
    assert re.fullmatch(r"/imports/\d+", path_of(v.page))


def wait_for_outcome(v: Visit, locator, *, live: float = 30_000) -> None:
    """Wait for what a job's end shows on the page that follows it. Tests of the live follow
    itself wait on the page alone; the others, which test what the end shows, reload once if
    it has not come in `live` ms, as a person would."""
    try:
        locator.wait_for(timeout=live)
    except Exception:  # Playwright's TimeoutError
        v.page.reload()
        locator.wait_for(timeout=JOB_WAIT)
