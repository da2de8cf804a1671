"""The files a job may read and write, and how it creates them.

A job's parameters are a row of the data engine's `workspace.jobs`; whoever can write that table
must not be able to make a worker read or write any file of its host. So a path taken from a
job is accepted only inside the folders the configuration names (`EXPORT_DIR` for exports;
uploads are stored in the database, so no folder is readable), after resolving `..` and
symbolic links, or when the person who typed it runs the job in this very process (the CLI's
synchronous mode vouches for the paths it was given). Files are created with `O_EXCL` and
`O_NOFOLLOW`, so a symbolic link planted at the name cannot redirect the write, and private from
the start (0600, folders 0700): never made world-readable and then narrowed.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path

from app.jobs.runner import JobFailed

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def checked(value: object, folders: Iterable[Path], vouched: Collection[str], *, what: str) -> Path:
    """The job's path, absolute, when it lies inside one of `folders` (its folder resolved) or
    was given in this process; else the job fails, naming the path, before touching anything."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise JobFailed(f"{what}: not a path: {value!r}")
    path = Path(os.path.abspath(value))  # `..` goes here, before any folder is looked at
    if str(path) in vouched:
        return path
    folder = Path(os.path.realpath(path.parent))  # symbolic links in the folders, resolved
    roots = [Path(os.path.realpath(f)) for f in folders]
    if not any(folder == root or folder.is_relative_to(root) for root in roots):
        where = " or ".join(str(r) for r in roots) or "no folder (uploads are in the database)"
        raise JobFailed(
            f"{what} {value} is outside the folders jobs may use ({where}); nothing was done"
        )
    return folder / path.name


def make_folder(folder: Path) -> None:
    """The folder and its missing parents, private (an existing folder keeps its mode)."""
    os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)


def create_private(path: Path) -> int:
    """A new file, 0600, as a descriptor; refuses anything already at the name, a symbolic
    link included (never followed)."""
    try:
        return os.open(path, _CREATE, FILE_MODE)
    except FileExistsError:
        raise JobFailed(f"{path} already exists (a symbolic link?); not overwritten") from None
    except OSError as exc:
        raise JobFailed(f"cannot create {path}: {exc.strerror}") from None


def open_for_reading(path: Path) -> int:
    """An existing file as a descriptor; a symbolic link at the name is refused."""
    try:
        return os.open(path, _READ)
    except OSError as exc:
        raise JobFailed(f"cannot read {path} on this host: {exc.strerror}") from None


def refuse_link(path: Path) -> None:
    """A rename over a symbolic link would replace the link, not follow it; we refuse it anyway,
    so that a planted link is reported rather than silently removed."""
    if path.is_symlink():
        raise JobFailed(f"{path} is a symbolic link; not followed, nothing was written")
