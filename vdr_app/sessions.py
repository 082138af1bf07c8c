"""Per-visitor temporary libraries for the public-demo mode.

Each browser session gets its own store in a temporary folder, searched and changed only by that
session, with the one shared encoder (`Engine.sharing_model`). A library starts as a copy of the
optional sample store (which is only ever read), and is removed when it has been idle for
`ttl_s`, or when `max_libraries` are open and it is the least recently used.

A library is keyed by its browser, not by the page: on the first page load the browser gets a
random key that this app issued (`resume`; the UI keeps it in the browser's localStorage), and
every later page of that browser is bound to the same library, so a reload keeps it. A key the
app did not issue, or whose library has gone, is replaced by a new one: no visitor can reach
another's library. API clients, which load no page, are keyed by their session.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .engine import Engine
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Library:
    """One session's engine, its folder, and whatever the UI keeps beside it (caches)."""

    engine: Engine
    folder: Path
    extras: dict = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)


class SessionLibraries:
    """session key -> Library, created on first use, bounded in number and idle time.

    Args:
        base: the app's engine (its encoder is shared; its store is not used by sessions).
        root: folder under which session folders are made.
        sample_store: a store copied into each new library (read-only, never changed), or None.
        ttl_s: idle seconds after which a library is removed.
        max_libraries: libraries kept at once.
        extras: builds per-library UI objects, e.g. page caches: `extras(engine) -> dict`.
    """

    def __init__(self, base: Engine, root: Path, sample_store: Path | None = None, ttl_s: float = 3600.0,
                 max_libraries: int = 50, extras: Callable[[Engine], dict] | None = None):
        self.base = base
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sample_store = Path(sample_store) if sample_store else None
        self.ttl_s = float(ttl_s)
        self.max_libraries = max(1, int(max_libraries))
        self._extras = extras or (lambda engine: {})
        self._lock = threading.Lock()
        self._libraries: OrderedDict[str, Library] = OrderedDict()
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
        """A page closed (or reloaded): its binding goes; the library stays until it idles out."""
        with self._lock:
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

    def _expire_locked(self) -> int:
        now = time.monotonic()
        stale = [k for k, lib in self._libraries.items() if now - lib.last_used > self.ttl_s]
        for key in stale:
            self._close(key, self._libraries.pop(key), "idle")
        return len(stale)

    def _open(self) -> Library:
        folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
        path = folder / "vdr.sqlite"
        if self.sample_store is not None:
            sample = Store(self.sample_store, read_only=True)
            try:
                sample.backup(path)
            finally:
                sample.close()
        engine = self.base.sharing_model(Store(path))
        return Library(engine=engine, folder=folder, extras=self._extras(engine))

    @staticmethod
    def _close(key: str, library: Library, why: str) -> None:
        for extra in library.extras.values():
            close = getattr(extra, "close", None)
            if callable(close):
                close()
        library.engine.store.close()
        shutil.rmtree(library.folder, ignore_errors=True)
        log.info("removed a session library (%s)", why)


def proxy(resolve: Callable[[], Any]) -> Any:
    """An object whose attributes are those of `resolve()` at the moment they are read."""

    class _Proxy:
        __slots__ = ()

        def __getattr__(self, name):
            return getattr(resolve(), name)

    return _Proxy()
