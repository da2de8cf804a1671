"""What the application holds for its lifetime (`Backoffice`), and the one way to reach the
current app's: `current_backoffice()`. Light to import: the CLI reads it without Flask."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from app.auth.session_cache import Principal
    from app.config import Settings
    from app.db.engines import Engines
    from app.db.notices import Notices, TrustedCache
    from app.db.session import BackofficeSession
    from app.references import ReferenceChecker


@dataclass
class Backoffice:
    """What the app holds for its lifetime, at `app.extensions["backoffice"]`: settings, engines,
    sessions, the change listener and the caches."""

    settings: Settings
    engines: Engines
    session_factory: sessionmaker[BackofficeSession] = field(repr=False)
    notices: Notices = field(repr=False)
    session_cache: TrustedCache[Principal] = field(repr=False)
    references: ReferenceChecker = field(repr=False)
    instance_path: str = ""

    def close(self) -> None:
        self.notices.stop()
        self.engines.dispose()


def current_backoffice() -> Backoffice:
    """The Backoffice of the app handling the current request (or app context)."""
    from flask import current_app

    return current_app.extensions["backoffice"]
