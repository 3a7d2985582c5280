"""The instance folder and the secrets and databases kept in it: readable by the app's own user only.

`instance/` is made 0700, `instance/secret_key` and SQLite files 0600. Files are created with those modes in
the same system call (never created first and narrowed afterwards), so there is no moment at which another
local user could open them. SQLite creates its `-wal` and `-shm` files with the mode of the database file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def _narrow(path: Path, mode: int) -> None:
    """Take group and other permissions away from a path of ours that has them (made by an older version)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid != os.getuid() or not stat.S_IMODE(st.st_mode) & 0o077:
        return
    with contextlib.suppress(OSError):
        path.chmod(mode)
        log.warning("%s was readable by other users; narrowed to %o", path.name, mode)


def prepare_instance(path: Path) -> None:
    """Create the instance folder 0700 (or narrow an existing one)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _narrow(path, DIR_MODE)


def _create_private(path: Path, data: bytes) -> bool:
    """Write `data` to a new file `path` with mode 0600, atomically; False when it already exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def secret_key(instance: Path) -> str:
    """A random key kept in instance/secret_key, so sessions survive restarts without configuration."""
    path = instance / "secret_key"
    if not path.exists():
        _create_private(path, secrets.token_hex(32).encode())
    _narrow(path, FILE_MODE)
    return path.read_text().strip()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None (another database, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):
        return None  # URI filenames: left as the operator wrote them
    return Path(parsed.database)


def protect_sqlite(url: str) -> None:
    """Create a missing SQLite database file 0600 before SQLite does (it would use the umask, usually 0644),
    and narrow an existing one and its -wal/-shm files."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.exists() and path.parent.is_dir():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for suffix in ("", "-wal", "-shm", "-journal"):
        _narrow(Path(str(path) + suffix), FILE_MODE)
