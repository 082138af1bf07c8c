"""`Store`: one SQLite file opened (read-write or read-only), migrated, locked for writes and bound
to one model; composed of one part per concept (documents, embeddings, views, quantised views,
maintenance)."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

from ..errors import ModelMismatchError, StoreError
from .documents import DocumentsMixin
from .embeddings import EmbeddingsMixin
from .maintenance import MaintenanceMixin
from .paths import _make_parent, _read_only_uri, _writable
from .quantised import QuantisedMixin
from .schema import MIGRATIONS, SCHEMA_VERSION
from .sqlite_errors import ReadOnlyStoreError, open_error, translate_errors
from .views import ViewsMixin

BUSY_TIMEOUT_S = 15.0  # how long a write waits for another process's write before "busy"


@translate_errors
class Store(DocumentsMixin, EmbeddingsMixin, ViewsMixin, QuantisedMixin, MaintenanceMixin):
    """One SQLite file (or ":memory:") holding one model's page embeddings and views.

    Several processes may use one file (the app, CLI commands): writes take SQLite's write lock
    up front (BEGIN IMMEDIATE) and wait up to `busy_timeout` for it; `data_version()` tells a
    reader that another connection has committed. Every SQLite failure surfaces as one
    `StoreError` line saying what to do (sqlite_errors.py).

    Args:
        path: SQLite file, created with its folder if missing, or ":memory:".
        read_only: open for reading only (also chosen when the file or its folder is not
            writable): search and browse work, writes are refused with one line.
        busy_timeout: seconds a write waits for another writer.
    """

    def __init__(self, path: str | Path = ":memory:", read_only: bool = False, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = str(path)
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.RLock()
        memory = self.path == ":memory:"
        if not memory:
            _make_parent(Path(self.path))
        self.read_only = bool(read_only) or (not memory and not _writable(Path(self.path)))
        try:
            if self.read_only:
                conn = sqlite3.connect(_read_only_uri(Path(self.path)), uri=True, check_same_thread=False,
                                       timeout=busy_timeout)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=busy_timeout)
            self.db = sqlite_utils.Database(conn)
            self._refuse_foreign()
            if not memory and not self.read_only and self._page_count() == 0:
                # A new file gives freed pages back to the disk (`_give_back_space`); only possible
                # before the first table: an older store switches with `compact`.
                self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if not memory and not self.read_only and self.db.journal_mode != "wal":
                self.db.enable_wal()
            self._migrate()
        except sqlite3.Error as error:
            raise open_error(error, self.path) from error

    # -- schema ---------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _refuse_foreign(self) -> None:
        """An SQLite file that is not a vdr_app store is left exactly as it is (never converted)."""
        if self.schema_version != 0:
            return
        tables = [r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        if tables:
            shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
            raise StoreError(
                f"{self.path} is an SQLite database but not a vdr_app store (it has the tables {shown}); "
                "it was left unchanged: give a new file with --store (or VDR_STORE)"
            )

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this vdr_app understands "
                f"({SCHEMA_VERSION}); upgrade vdr_app"
            )
        if version == SCHEMA_VERSION:
            return  # opening an up-to-date store writes nothing
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.path} is read-only and not yet a vdr_app store: nothing can be read")
        with self._write():
            for step in MIGRATIONS[version:]:
                step(self.db)
            # PRAGMA user_version is transactional in SQLite, so it commits with the steps.
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction holding SQLite's write lock from the start (BEGIN IMMEDIATE).

        Taking the lock up front means the checks made inside it (which pages, which views)
        still hold at commit, also against other processes; a busy store is waited for up to
        the busy timeout instead of failing halfway.
        """
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self.path} is read-only: searching and browsing work, but adding or deleting needs a "
                "writable file (check its permissions, or copy it with `python -m vdr_app backup DEST`)"
            )
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.conn.rollback()
                raise
            self.db.conn.commit()

    def data_version(self) -> int:
        """A number that changes whenever another connection (another process: the CLI, a second
        app) commits to this file; this connection's own writes do not change it."""
        with self._lock:
            return self.db.execute("PRAGMA data_version").fetchone()[0]

    # -- model binding ----------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    @property
    def model_id(self) -> str | None:
        """The model whose vectors this store holds, or None while empty of any."""
        return self._meta("model_id")

    @property
    def dim(self) -> int | None:
        value = self._meta("dim")
        return int(value) if value else None

    def check_model(self, model_id: str, dim: int | None = None) -> None:
        """Raise ModelMismatchError if the store holds another model's vectors."""
        stored = self.model_id
        if stored is not None and stored != model_id:
            raise ModelMismatchError(
                f"this store holds vectors of '{stored}', not '{model_id}': use the same model "
                f"(--model {stored}) or another store (--store PATH)"
            )
        if stored is not None and dim is not None and self.dim != dim:
            raise ModelMismatchError(f"this store holds {self.dim}-d vectors, the model gives {dim}-d")
