"""The job kinds by name, the statuses a job goes through, and each kind's handler.

`app/jobs` knows a kind by its name only: each area's worker side (`app/imports/job.py`,
`app/transforms/job.py`, `app/exports/job.py`) is registered under its name when the app is
built (`app.job_kinds.register_job_kinds`), so the queue and the runner never import the areas
whose work they run (the areas import them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the CLI reads the statuses without loading SQLAlchemy
    from sqlalchemy import Connection

KINDS = ("import", "transform", "export")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ENDED = ("succeeded", "failed", "cancelled")


class Handler(Protocol):
    """A kind's work, and what its record becomes when the job ends without publishing."""

    # `ctx`: the attempt's JobContext (app/jobs/runner.py, which imports this module).
    def run(self, ctx: Any) -> dict[str, Any]: ...

    def on_failed(self, conn: Connection, params: dict, error: dict) -> None: ...

    def on_cancelled(self, conn: Connection, params: dict) -> None: ...


_factories: dict[str, Callable[[], Handler]] = {}
_handlers: dict[str, Handler] = {}


def register(kind: str, make: Callable[[], Handler]) -> None:
    """`make` builds the kind's handler when a job of the kind first runs or is cancelled in
    this process, so a command loads the code of its own kind only. Every app built registers
    the same kinds: registering a kind again replaces it."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(KINDS)}")
    _factories[kind] = make
    _handlers.pop(kind, None)


def handler_for(kind: str) -> Handler:
    if kind not in _handlers:
        try:
            make = _factories[kind]
        except KeyError:
            raise LookupError(
                f"no handler for job kind {kind!r}: kinds are registered when the app is built "
                "(create_app)"
            ) from None
        _handlers[kind] = make()
    return _handlers[kind]
