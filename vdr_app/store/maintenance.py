"""Accounting and upkeep of the store file: vector counts and bytes, giving space back, compacting,
checking and backing up."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import numpy as np

from ..errors import StoreError
from .paths import _make_parent
from .schema import FULL_VIEW, SCHEMA_VERSION, _expected_schema
from .sqlite_errors import ReadOnlyStoreError, StoreDamagedError, translate_errors

log = logging.getLogger(__name__)


@translate_errors
class MaintenanceMixin:
    """Accounting and upkeep (a part of `Store`)."""

    # -- accounting -------------------------------------------------------------------------------

    def vector_counts(self, spec: str = FULL_VIEW) -> np.ndarray:
        """int64 (N,): vectors stored per page for a view (extra tokens included), index order."""
        with self._lock:
            if spec == FULL_VIEW:
                sql = (
                    "SELECT e.n_patches + e.n_extra FROM embeddings e JOIN pages p ON p.id = e.page_id "
                    "ORDER BY p.doc_id, p.page_number"
                )
                rows = self.db.execute(sql).fetchall()
            else:
                self._require_view(spec)
                rows = self.db.execute(
                    "SELECT v.n_vectors FROM view_pages v JOIN pages p ON p.id = v.page_id WHERE v.spec = ? "
                    "ORDER BY p.doc_id, p.page_number",
                    [spec],
                ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def file_bytes(self) -> int:
        """Bytes of the SQLite file and its WAL (0 for an in-memory store)."""
        if self.path == ":memory:":
            return 0
        return sum(p.stat().st_size for p in (Path(self.path), Path(self.path + "-wal")) if p.exists())

    def _page_count(self) -> int:
        return self.db.execute("PRAGMA page_count").fetchone()[0]

    def reclaimable_bytes(self) -> int:
        """Bytes of free pages inside the file: what `compact` would give back to the disk."""
        with self._lock:
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
            return free * self.db.execute("PRAGMA page_size").fetchone()[0]

    def _give_back_space(self) -> None:
        """After a delete: on a store with incremental auto-vacuum, hand the freed pages back to
        the disk (the Lab adds and removes views by the dozen). Best effort: when another process
        holds the store the pages stay free inside the file until the next delete or `compact`."""
        if self.read_only or self.path == ":memory:":
            return
        with self._lock:
            try:
                if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                    return
                # executescript steps the pragma to the end: execute() would free a single page.
                self.db.conn.executescript("PRAGMA incremental_vacuum;")
                # Fold the WAL into the file (which then shrinks) and empty it, if no reader is in
                # the way within 0.1 s: a busy checkpoint is simply left to SQLite's own.
                self.db.execute("PRAGMA busy_timeout = 100")
                try:
                    self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    self.db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            except sqlite3.OperationalError as error:
                log.info("freed pages of %s stay in the file for now: %s", self.path, error)

    def compact(self) -> tuple[int, int]:
        """Rebuild the file without its free pages (SQLite VACUUM) and switch it to incremental
        auto-vacuum, so later deletes give their space back by themselves. Needs the store to
        itself for a moment (other writers wait or get "busy") and free disk space about the size
        of the store. Returns (bytes before, bytes after), WAL included."""
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.path} is read-only: it cannot be compacted")
        with self._lock:
            before = self.file_bytes()
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.db.execute("VACUUM")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return before, self.file_bytes()

    def compact_copy(self, destination: str | Path) -> Path:
        """Write a compact copy of the store (SQLite VACUUM INTO: no free pages) to a new file;
        works on a read-only store. A public-demo visitor's private copy of the sample is one."""
        target = Path(destination)
        if target.exists():
            raise StoreError(f"{target} already exists: a copy never overwrites")
        _make_parent(target)
        with self._lock:
            self.db.execute("VACUUM INTO ?", [str(target)])
        return target

    def integrity_ok(self) -> bool:
        with self._lock:
            return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def check(self) -> dict[str, list[str]]:
        """The schema against this version's, then SQLite's integrity check, table by table:
        {table: problems} for the missing, incomplete or damaged ones (empty when the store is
        sound). A table's indexes are checked with it."""
        damaged = self._schema_problems()
        with self._lock:
            tables = [r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()]
            for table in tables:
                try:
                    rows = [r[0] for r in self.db.execute(f"PRAGMA integrity_check('{table}')").fetchall()]
                except sqlite3.DatabaseError as error:
                    rows = [str(error)]
                if rows != ["ok"]:
                    damaged[table] = rows
            return damaged

    def _schema_problems(self) -> dict[str, list[str]]:
        """{table: problems} where the store lacks a table or column that schema SCHEMA_VERSION has."""
        expected = _expected_schema()
        with self._lock:
            version = self.schema_version
            found = {t: {r[1] for r in self.db.execute(f"PRAGMA table_info('{t}')")} for t in expected}
        problems: dict[str, list[str]] = {}
        if version != SCHEMA_VERSION:
            problems["user_version"] = [f"schema version {version}, expected {SCHEMA_VERSION}"]
        for table, columns in expected.items():
            if not found[table]:
                problems[table] = [f"table missing (schema version {SCHEMA_VERSION} has it)"]
            elif columns - found[table]:
                problems[table] = [f"column(s) missing: {', '.join(sorted(columns - found[table]))}"]
        return problems

    def backup(self, destination: str | Path, force: bool = False) -> Path:
        """Copy the store to a new file with SQLite's online backup (safe while others write),
        then check the copy (`PRAGMA integrity_check`): a damaged copy is deleted and the backup
        fails in one line, unless `force` (a damaged copy may still save some of the data).

        Returns:
            the file written (`destination`, or `destination/vdr.sqlite` for a folder).
        """
        target = Path(destination)
        if target.is_dir():
            target = target / Path(self.path).name
        if target.exists():
            raise StoreError(f"{target} already exists: give a new file name (a backup never overwrites)")
        _make_parent(target)
        staging = target.with_name(f".{target.name}.partial")
        try:
            destination_db = sqlite3.connect(str(staging))
            try:
                with self._lock:
                    self.db.conn.backup(destination_db)
                problem = _integrity_problem(destination_db)
            finally:
                destination_db.close()
            if problem and force:
                log.warning("the copy %s is damaged like its source (%s); written because of --force", target, problem)
            elif problem:
                raise StoreDamagedError(
                    f"{self.path} is damaged ({problem}), so no backup was written: run `python -m vdr_app check` "
                    "to see which part; `backup --force` copies it anyway"
                )
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
        return target


def _integrity_problem(conn: sqlite3.Connection) -> str | None:
    """SQLite's first complaint about a database (None when the integrity check passes)."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)").fetchall()]
    except sqlite3.DatabaseError as error:
        return str(error)
    return None if rows == ["ok"] else rows[0]
