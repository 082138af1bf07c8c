"""The store file on disk: its folder made, a read-only URI for it, whether it can be written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import StoreError

log = logging.getLogger(__name__)


def _make_parent(path: Path) -> None:
    """Create the folder of a store file; one line when a part of it is a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in [path.parent, *path.parent.parents] if p.is_file()), path.parent)
        raise StoreError(f"cannot put the store at {path}: {blocking} is a file, not a folder") from None
    except OSError as error:
        raise StoreError(f"cannot create the folder of the store {path}: {error.strerror}") from None


def _read_only_uri(path: Path) -> str:
    """The URI that opens `path` for reading only.

    A WAL store needs its `-shm` file beside it even to be read; where the folder cannot be
    written (a read-only mount, a folder of another user) SQLite could not create it and every
    read would fail with "unable to open". `immutable=1` tells SQLite that nobody writes the file,
    so it reads it without `-shm` or locks. A `-wal` left beside such a file is not read (SQLite
    folds it in the next time the store is opened writable), hence the warning.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if os.access(path.parent, os.W_OK):
        return uri
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        log.warning("%s is read-only and has an unmerged %s: its latest changes are not seen", path, wal.name)
    return uri + "&immutable=1"


def _writable(path: Path) -> bool:
    """Whether SQLite can write the file (and its journal beside it)."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return os.access(path.parent, os.W_OK)
