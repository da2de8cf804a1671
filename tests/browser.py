"""A real headless Chromium for the web pages' tests: Debian's package, driven by Playwright.

Playwright's own browser download is not used: the tests launch the system's Chromium with
`executable_path`. When it is missing and the run is root, `apt-get` installs it; otherwise
the browser tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
