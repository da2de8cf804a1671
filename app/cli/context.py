"""What a `backoffice` command runs in: this process's backoffice, built on first use; a unit of
work whose refusals become one line; the audit log's actor for a shell.

Only click is imported here at module level: every command module imports this one, and
`backoffice --help` imports every command module.
"""

from __future__ import annotations

import gc
import getpass
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import click

from app.backoffice import current_backoffice

if TYPE_CHECKING:
    from flask import Flask

    from app import Backoffice
    from app.audit import Actor
    from app.db.session import BackofficeSession

T = TypeVar("T")


class CliContext:
    """The `backoffice` group's object for one run. The backoffice (engines, sessions, caches)
    is built when a command first asks for it, without the web app: only `serve` builds that."""

    def __init__(self) -> None:
        self._backoffice: Backoffice | None = None

    def backoffice(self, *, listen: bool = False) -> Backoffice:
        """Built on first use. A command keeps no change listener unless it asks (a worker,
        which runs for days): a command lives seconds, looks up a few things, and a listener's
        thread would only contend with its per-row loops (a tenth of an export's time)."""
        if self._backoffice is None:
            from app import build_backoffice

            self._backoffice = build_backoffice(own_embedded=True, listen=listen)
            collect_again()
        return self._backoffice

    def flask_app(self) -> Flask:
        from app import create_app

        app = create_app(own_embedded=True)
        self._backoffice = app.extensions["backoffice"]
        collect_again()
        return app


def collect_again() -> None:
    """The cycle collector back on once the command's imports and its backoffice are made
    (`main` turns it off first: they make hundreds of thousands of objects and no garbage,
    and the collector walked them again and again: a few hundredths of a second of a command).
    What they made is frozen, so that later collections skip it."""
    gc.freeze()
    gc.enable()


def backoffice(*, listen: bool = False) -> Backoffice:
    """This process's backoffice: built by the `backoffice` group on first use (with a change
    listener when `listen`), or, under `flask --app app ...`, the loaded app's (Flask pushes
    its context for the app's commands)."""
    own = click.get_current_context().find_object(CliContext)
    if own is not None:
        return own.backoffice(listen=listen)

    return current_backoffice()


def flask_app() -> Flask:
    """The whole web application, for the commands that serve it."""
    own = click.get_current_context().find_object(CliContext)
    if own is not None:
        return own.flask_app()
    from flask import current_app

    return current_app._get_current_object()  # type: ignore[attr-defined]


def refusal_message(exc: BaseException) -> str | None:
    """The one line to print for an error a person can act on, or None for a bug (which keeps
    its traceback): a refused value, a setting that cannot work, an engine out of reach."""
    from sqlalchemy.exc import OperationalError

    from app.errors import ConfigError, DatabaseUnavailable, Refused, first_line

    if isinstance(exc, Refused):
        return exc.message
    if isinstance(exc, ConfigError | DatabaseUnavailable):
        return str(exc)
    if isinstance(exc, OperationalError):
        return f"database unavailable: {first_line(exc)}"
    return None


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Refusals become `Error: <message>` on stderr and exit 1, like any click error."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as exc:
        message = refusal_message(exc)
        if message is None:
            raise
        raise click.ClickException(message) from None


def in_session(work: Callable[[BackofficeSession], T]) -> T:
    """Run `work` in a unit of work of its own, committed when it returns and rolled back when
    it raises; a refusal, from the services or from building the backoffice, is one line."""
    from app.db.session import session_scope

    with one_line_errors(), session_scope(backoffice().session_factory) as session:
        return work(session)


def cli_actor() -> Actor:
    """The audit log's actor for a shell command: the operating-system user."""
    from app.audit import Actor

    return Actor(None, f"cli:{getpass.getuser()}")


class LazyChoice(click.Choice):
    """A choice whose values live in a module that is heavy to import (the ORM's): loaded when
    the option is parsed or its command's help is shown, not when the group lists commands."""

    def __init__(self, load: Callable[[], Sequence[Any]]) -> None:
        self._load = load
        self.case_sensitive = True

    @cached_property
    def choices(self) -> tuple[Any, ...]:  # type: ignore[override]
        return tuple(self._load())
