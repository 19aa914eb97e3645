"""The service's own files are private from the moment they exist.

A `chmod` after writing leaves a window in which another local user can open the file (and
keep the descriptor); so files are created by `os.open` with mode 0600, folders with 0700,
and `selfie serve` runs under umask 077, so what SQLite, MLflow and the job runner create
beside them (WAL files, mlflow.db, job logs) is private too."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """`path` and its missing parents, created 0700 (existing folders are left as they are)."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    return path


def write_private_file(path: Path, text: str) -> None:
    """Create `path` 0600 and write `text`; refuses to replace an existing file."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file of `url` 0600 before SQLite does (it would use the umask)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
