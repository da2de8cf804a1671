"""gunicorn's settings for the backoffice: `gunicorn -c python:app.gunicorn_conf app.wsgi:app`
(other settings on the command line as usual).

Only what `/metrics` needs to sum every worker of the host (prometheus_client's multiprocess
mode): a folder for the workers' samples, PROMETHEUS_MULTIPROC_DIR (best on a tmpfs), set in the
master before it loads the app or forks, so every worker inherits it; emptied when the master
starts (never on a HUP reload, which would lose the live workers' counts); a worker's live
gauges dropped when it exits. Without the variable, a private folder is made under the system's
temporary folder and removed when the master exits.
"""

from __future__ import annotations

import os as _os
import shutil as _shutil
import tempfile as _tempfile

from dotenv import load_dotenv as _load_dotenv

from app.metrics_dir import VARIABLE as _VARIABLE
from app.metrics_dir import empty_metrics_dir as _empty_metrics_dir

# gunicorn reads this module's globals as its settings: private names for everything else.
# `.env` as app.wsgi reads it (a variable already set wins), so the master sees the folder the
# workers would.
_load_dotenv()
_made_here: str | None = None
if not _os.environ.get(_VARIABLE):
    _made_here = _tempfile.mkdtemp(prefix="backoffice-metrics-")
    _os.environ[_VARIABLE] = _made_here


def on_starting(server) -> None:
    _empty_metrics_dir(_os.environ[_VARIABLE])


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _made_here is not None:
        _shutil.rmtree(_made_here, ignore_errors=True)
