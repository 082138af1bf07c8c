"""SQLite failures of the store as one line each, saying what to do.

`translate_errors` wraps every public method of `Store`: an `sqlite3.Error` becomes a
`StoreError` subclass chosen from SQLite's own error name (busy/locked, disk full, read-only,
damaged, not a database); a user sees one line, the CLI exits 1, the web app shows a message.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3

from ..errors import StoreError


class StoreBusyError(StoreError):
    """Another connection held the write lock for longer than the busy timeout."""


class StoreFullError(StoreError):
    """The disk (or SQLite's page limit) is full; the transaction was rolled back."""


class ReadOnlyStoreError(StoreError):
    """The store can be read but not written."""


class StoreDamagedError(StoreError):
    """SQLite found the file corrupt."""


def _name(error: sqlite3.Error) -> str:
    return getattr(error, "sqlite_errorname", "") or ""


def translate(error: sqlite3.Error, path: str, busy_timeout: float | None = None) -> StoreError:
    """The one-line StoreError for an SQLite failure on the store at `path`."""
    name, text = _name(error), str(error)
    waited = f" for {busy_timeout:g} s" if busy_timeout else ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StoreBusyError(
            f"the store {path} is locked: another process (the app or a CLI command) kept writing to it{waited}; "
            "nothing was changed, try again when it is done"
        )
    if name == "SQLITE_FULL" or "disk is full" in text:
        return StoreFullError(
            f"the disk holding {path} is full: nothing was written (the store is as it was); free some space and try again"
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return ReadOnlyStoreError(
            f"{path} is read-only: searching and browsing work, but adding or deleting needs a writable file "
            "(check its permissions and the disk)"
        )
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return StoreDamagedError(
            f"the store {path} is damaged ({text}): run `python -m vdr_app check --store {path}` to see which part, "
            "and restore a backup (`python -m vdr_app backup` makes one)"
        )
    if text.startswith(("no such table", "no such column")):
        return StoreDamagedError(
            f"the store {path} is missing part of its schema ({text}): run `python -m vdr_app check --store {path}`, "
            "and restore a backup"
        )
    if name == "SQLITE_NOTADB" or "not a database" in text:
        return StoreError(
            f"{path} is not a vdr_app store (not an SQLite database); it was left unchanged: give another file with "
            "--store (or VDR_STORE)"
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StoreError(f"cannot open the store {path}: check that the file and its folder exist and can be read")
    if name.startswith("SQLITE_IOERR"):
        return StoreError(f"the disk failed while reading or writing {path} ({text}); check the disk (is it full?)")
    return StoreError(f"the store {path} failed: {text}")


def open_error(error: sqlite3.Error, path: str) -> StoreError:
    return translate(error, path)


def translate_errors(cls):
    """Class decorator: every public method and property of `cls` raises StoreError, not sqlite3.Error."""

    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except sqlite3.Error as error:
                raise translate(error, self.path, getattr(self, "busy_timeout", None)) from error

        return wrapper

    for name, value in list(vars(cls).items()):
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(value, property):
            setattr(cls, name, property(wrap(value.fget), value.fset, value.fdel, value.__doc__))
        elif inspect.isfunction(value) and name != "__init__":
            setattr(cls, name, wrap(value))
    return cls
