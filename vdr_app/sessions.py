"""Per-visitor temporary libraries for the public-demo mode.

Each browser session gets its own library, searched and changed only by that session, with the
one shared encoder (`Engine.sharing_model`). A library starts as the optional sample store, which
is only ever read: until a visitor changes something, every visitor reads the one sample engine
(one connection, one search index), so memory and disk do not grow with visitors who only look.
The first change (upload, delete, a new view) gives the visitor a compact private copy of the
sample in a folder of their own (copy on write). A library is removed when it has been idle for
`ttl_s`, when `max_libraries` are open and it is the least recently used, and when the app stops. Folders left by a process that died (kill -9, power loss) are swept when
the next one starts, and periodically. Each private library is capped in pages and bytes.

A library is keyed by its browser, not by the page: on the first page load the browser gets a
random key that this app issued (`resume`; the UI keeps it in the browser's localStorage), and
every later page of that browser is bound to the same library, so a reload keeps it. A key the
app did not issue, or whose library has gone, is replaced by a new one: no visitor can reach
another's library. API clients, which load no page, are keyed by their session.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .engine import Engine, LibraryQuota
from .errors import StoreError
from .store import Store
from .store.sqlite_errors import ReadOnlyStoreError

try:  # POSIX: a folder's owner holds a lock on it; a folder nobody holds is left over
    import fcntl
except ImportError:  # pragma: no cover - Windows: folders are swept by age only
    fcntl = None

log = logging.getLogger(__name__)

_PREFIX = "session-"
_OWNER = ".owner"
_SWEEP_EVERY_S = 60.0
# Engine methods that write to the store: called on a shared (sample) library, they first give the
# visitor a private copy. Anything else that turns out to write fails read-only and is retried on
# a copy (the read-only store refuses before changing anything).
_WRITES = frozenset({"add_pdf", "add_files", "delete_document", "add_view", "delete_view", "sync_index"})


@dataclass
class Library:
    """One session's engine, its folder (None while it reads the shared sample), and whatever the
    UI keeps beside it (caches)."""

    engine: Any
    folder: Path | None
    extras: dict = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    owner: Any = None  # the open, locked `.owner` file of the folder

    @property
    def shared(self) -> bool:
        return self.folder is None


class _CopyOnWrite:
    """The engine of a library that still reads the shared sample: reads go to the sample engine,
    the first write makes the library private first."""

    __slots__ = ("_libraries", "_library")

    def __init__(self, libraries: "SessionLibraries", library: Library):
        self._libraries = libraries
        self._library = library

    def __getattr__(self, name):
        library = self._library
        if not library.shared:
            return getattr(library.engine, name)
        sample = self._libraries._sample_engine
        if name in _WRITES:
            return getattr(self._libraries._make_private(library), name)
        if name == "ensure_view":  # a read when the sample has the view; else a write (no wasted reduce)
            def ensure_view(spec, *args, **kwargs):
                stored = sample.store.has_view(sample.resolve_view(spec))
                engine = sample if stored else self._libraries._make_private(library)
                return engine.ensure_view(spec, *args, **kwargs)

            return ensure_view
        value = getattr(sample, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            try:
                return value(*args, **kwargs)
            except ReadOnlyStoreError:
                return getattr(self._libraries._make_private(library), name)(*args, **kwargs)

        return call


class SessionLibraries:
    """session key -> Library, created on first use, bounded in number, idle time, pages and bytes.

    Args:
        base: the app's engine (its encoder is shared; its store is not used by sessions).
        root: folder under which session folders are made.
        sample_store: the store every library starts as (read-only, never changed), or None;
            it must exist and be readable (checked here, at start).
        ttl_s: idle seconds after which a library is removed.
        max_libraries: libraries kept at once.
        extras: builds per-library UI objects, e.g. page caches: `extras(engine) -> dict`.
        quota: pages and bytes one visitor may add (None: no limit).
    """

    def __init__(self, base: Engine, root: Path, sample_store: Path | None = None, ttl_s: float = 3600.0,
                 max_libraries: int = 50, extras: Callable[[Engine], dict] | None = None,
                 quota: LibraryQuota | None = None):
        self.base = base
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sample_store = Path(sample_store) if sample_store else None
        self.ttl_s = float(ttl_s)
        self.max_libraries = max(1, int(max_libraries))
        self.quota = quota
        self._extras = extras or (lambda engine: {})
        self._lock = threading.Lock()
        self._libraries: OrderedDict[str, Library] = OrderedDict()
        self._sample_engine: Engine | None = None
        self._sample_extras: dict = {}
        if self.sample_store is not None:
            if not self.sample_store.is_file():
                raise StoreError(f"VDR_SAMPLE_STORE={self.sample_store} does not exist: give a store made with "
                                 "`python -m vdr_app add` (or unset it for empty visitor libraries)")
            self._sample_engine = base.sharing_model(Store(self.sample_store, read_only=True))
            self._sample_extras = self._extras(self._sample_engine)
        self._last_sweep = 0.0
        self.swept = self.sweep()
        # Stopping the app (Ctrl-C, SIGTERM via app.py, interpreter exit) removes every library.
        finalizer = weakref.WeakMethod(self.close_all)
        atexit.register(lambda: (method := finalizer()) is not None and method())
        self._pages: dict[str, str] = {}  # page session -> browser key (`resume`)

    def __len__(self) -> int:
        return len(self._libraries)

    def get(self, key: str) -> Library:
        """The library of session `key`, made on first use; expired ones are removed first."""
        if not key:
            raise ValueError("a session key is needed")
        with self._lock:
            self._expire_locked()
            library = self._libraries.get(key)
            if library is None:
                while len(self._libraries) >= self.max_libraries:
                    old_key, old = self._libraries.popitem(last=False)
                    self._close(old_key, old, "the most sessions are open")
                library = self._open()
                self._libraries[key] = library
            self._libraries.move_to_end(key)
            library.last_used = time.monotonic()
            return library

    def resume(self, session: str, browser_key: str | None) -> str:
        """Bind a page session to its browser's library; returns the key the browser keeps.

        Args:
            session: the page's session (Gradio's session hash).
            browser_key: the key this browser kept from an earlier page, or empty. Used only when
                its library is open (a key issued by this app and not yet expired); otherwise a
                new random key is issued.
        """
        with self._lock:
            self._expire_locked()
            if not browser_key or browser_key not in self._libraries:
                browser_key = secrets.token_urlsafe(24)
            self._pages[session] = browser_key
            return browser_key

    def key_for(self, session: str) -> str:
        """The library key of a page session: its browser's key once `resume`d, else the session."""
        return self._pages.get(session, session)

    def leave(self, session: str) -> None:
        """A page closed (or reloaded). Its binding stays until its library goes: events the page
        started can still be running (an upload's follow-up refreshes, on a loaded machine), and
        unbound they would each open a stray library under the old page's session."""
        with self._lock:
            if self._pages.get(session) not in self._libraries:
                self._pages.pop(session, None)

    def end(self, key: str) -> bool:
        """Remove the library of a session that ended; True if there was one."""
        with self._lock:
            library = self._libraries.pop(key, None)
            if library is not None:
                self._close(key, library, "the session ended")
            return library is not None

    def expire(self) -> int:
        """Remove libraries idle for longer than ttl_s; returns how many."""
        with self._lock:
            return self._expire_locked()

    def close_all(self) -> None:
        with self._lock:
            while self._libraries:
                key, library = self._libraries.popitem()
                self._close(key, library, "the app stopped")

    def sweep(self) -> int:
        """Remove session folders no library of a running app holds (left by a process that died),
        and unlocked-looking ones older than ttl_s where locks are not available; returns how many."""
        self._last_sweep = time.monotonic()
        removed = 0
        for folder in self.root.glob(f"{_PREFIX}*"):
            if folder.is_dir() and self._abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed += not folder.exists()
        if removed:
            log.info("removed %d session folder(s) left by an earlier run", removed)
        return removed

    def _abandoned(self, folder: Path) -> bool:
        owner = folder / _OWNER
        if fcntl is not None and owner.is_file():
            with open(owner, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False  # a running app holds it
                fcntl.flock(handle, fcntl.LOCK_UN)
                return True
        try:
            return time.time() - folder.stat().st_mtime > self.ttl_s
        except OSError:
            return False

    def _expire_locked(self) -> int:
        now = time.monotonic()
        stale = [k for k, lib in self._libraries.items() if now - lib.last_used > self.ttl_s]
        for key in stale:
            self._close(key, self._libraries.pop(key), "idle")
        if stale:  # bindings of pages whose library is gone
            self._pages = {page: key for page, key in self._pages.items() if key in self._libraries}
        if now - self._last_sweep > _SWEEP_EVERY_S:
            self.sweep()
        return len(stale)

    def _open(self) -> Library:
        if self._sample_engine is not None:
            library = Library(engine=None, folder=None, extras=self._sample_extras)
            library.engine = _CopyOnWrite(self, library)
            return library
        library = Library(engine=None, folder=None)
        self._own(library, Store(self._new_folder(library) / "vdr.sqlite"))
        return library

    def _new_folder(self, library: Library) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=self.root))
        if fcntl is not None:
            library.owner = open(folder / _OWNER, "a")
            fcntl.flock(library.owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        library.folder = folder
        return folder

    def _own(self, library: Library, store: Store) -> Engine:
        engine = self.base.sharing_model(store)
        engine.quota = self.quota
        library.engine, library.extras = engine, self._extras(engine)
        return engine

    def _make_private(self, library: Library) -> Engine:
        """Copy the sample into the library's own folder (compact) and switch the library to it."""
        with self._lock:
            if not library.shared:
                return library.engine
            path = self._new_folder(library) / "vdr.sqlite"
            try:
                self._sample_engine.store.compact_copy(path)
                return self._own(library, Store(path))
            except BaseException:
                self._remove_folder(library)
                raise

    def _close(self, key: str, library: Library, why: str) -> None:
        if not library.shared:
            for extra in library.extras.values():
                close = getattr(extra, "close", None)
                if callable(close):
                    close()
            library.engine.store.close()
        self._remove_folder(library)
        log.info("removed a session library (%s)", why)

    @staticmethod
    def _remove_folder(library: Library) -> None:
        if library.folder is not None:
            shutil.rmtree(library.folder, ignore_errors=True)
            library.folder = None
        if library.owner is not None:
            library.owner.close()
            library.owner = None


def proxy(resolve: Callable[[], Any]) -> Any:
    """An object whose attributes are those of `resolve()` at the moment they are read."""

    class _Proxy:
        __slots__ = ()

        def __getattr__(self, name):
            return getattr(resolve(), name)

    return _Proxy()
