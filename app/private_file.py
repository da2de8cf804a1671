"""Secrets kept in files of their own (the development secret key, the embedded server's
password): readable by the app's user only from the moment they exist."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from app.errors import ConfigError


def read_or_create(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    """The secret in `path`; made with `make()` when the file does not exist.

    The file is written whole under a name of its own, created 0600 (never readable by
    others, not even for a moment), then linked into place: of processes starting at once,
    one wins and the others read the winner's file, never a half-written one.
    """
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(make() + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.link(draft, path)
        except FileExistsError:
            pass  # another process was first: its secret is the one
        finally:
            draft.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # written by an older version, or by hand
    secret = path.read_text().strip()
    if not secret:
        raise ConfigError(f"{path} is empty: delete it, and a new secret is made at next start")
    return secret
