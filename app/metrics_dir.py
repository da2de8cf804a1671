"""The folder where prometheus_client's multiprocess mode keeps each worker's samples
(PROMETHEUS_MULTIPROC_DIR), emptied when a server starts.

Light on purpose: it must run before `prometheus_client` is imported (which opens this
process's files at once), so it imports nothing of the library or the app.
"""

from __future__ import annotations

import os

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def empty_metrics_dir(folder: str) -> None:
    """Remove the samples of an earlier run (created if missing). Only the library's `*.db`
    files go: the folder may be a mount point, or hold something else by mistake."""
    os.makedirs(folder, exist_ok=True)
    for entry in os.scandir(folder):
        if entry.name.endswith(".db") and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def empty_configured_metrics_dir() -> str | None:
    """For a server starting in this process: empty PROMETHEUS_MULTIPROC_DIR if it is set."""
    folder = os.environ.get(VARIABLE)
    if folder:
        empty_metrics_dir(folder)
    return folder
