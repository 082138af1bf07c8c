"""Who is asking, what they may do, and which library they see: the deployment modes in the UI.

- local: one user; everything allowed.
- shared: Gradio's login (`Settings.auth`) guards the whole app; the destructive and global
  actions check for a signed-in user again here (they are the ones that change the app for
  everyone).
- public-demo: every browser session works on its own temporary library (`vdr_app.sessions`);
  the engine and page caches the tabs hold are proxies that resolve to the current session's.

`build_demo` builds the tabs inside `building(access)`; every handler is wrapped by
`common.user_errors` while building, which takes that `Access` and, on each call, records it with
the call's request (`scope`): `require` and `current_library` read them. Nothing is global, so
apps in different modes can run in one process. Outside local mode, error and banner text
shown to a visitor has server paths cut to their last part (`redact`).
"""

from __future__ import annotations

import contextvars
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import VdrError

_request: contextvars.ContextVar[Any] = contextvars.ContextVar("vdr_request", default=None)
_access: contextvars.ContextVar["Access | None"] = contextvars.ContextVar("vdr_access", default=None)
_building: contextvars.ContextVar["Access | None"] = contextvars.ContextVar("vdr_building", default=None)

# An absolute path: "/" then at least one folder; kept: its last part.
_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"`()<>]+/)+([^\s/'\"`()<>]*)")


class AccessDenied(VdrError):
    """The action is not open to this visitor in the app's deployment mode."""


class Access:
    """The app's mode and, in public-demo mode, the session libraries."""

    def __init__(self, mode: str, libraries=None):
        self.mode = mode
        self.libraries = libraries


@contextmanager
def building(access: Access) -> Iterator[None]:
    """Handlers wrapped within the block (by `user_errors`) belong to this app's `access`."""
    token = _building.set(access)
    try:
        yield
    finally:
        _building.reset(token)


def access_being_built() -> Access | None:
    return _building.get()


def mode() -> str:
    access = _access.get() or _building.get()
    return access.mode if access is not None else "local"


@contextmanager
def scope(access: Access | None, request: Any) -> Iterator[None]:
    """Within the block, `require` and `current_library` see this call's app and request."""
    tokens = _access.set(access), _request.set(request)
    try:
        yield
    finally:
        _access.reset(tokens[0])
        _request.reset(tokens[1])


def current_access() -> Access | None:
    return _access.get()


def has_session() -> bool:
    """Whether the current call came with a request (so a session library can be found)."""
    return _request.get() is not None


def username() -> str | None:
    request = _request.get()
    return getattr(request, "username", None) if request is not None else None


def require(action: str, everyone: bool = False) -> None:
    """Raise AccessDenied unless the current visitor may do `action` (e.g. "delete documents").

    Args:
        everyone: the action changes the app for every visitor (the model switch): never open to
            a public demo's visitors, whose own libraries are all they may change.
    """
    if mode() == "shared" and not username():
        raise AccessDenied(f"sign in to {action}: in this shared app only signed-in users may")
    if everyone and mode() == "public-demo":
        raise AccessDenied(f"visitors of a public demo cannot {action}: the app's operator sets the model")


def session_hash() -> str:
    """The calling page's (or API client's) Gradio session."""
    request = _request.get()
    key = getattr(request, "session_hash", None) if request is not None else None
    if not key:
        raise AccessDenied("this action needs a browser session (open the app's page, or use gradio_client)")
    return key


def session_key() -> str:
    """The key of the calling visitor's library: their browser's key once the page resumed it
    (vdr_app.sessions), else the session."""
    key = session_hash()
    access = _access.get()
    libraries = access.libraries if access is not None else None
    return libraries.key_for(key) if libraries is not None else key


def current_library():
    """The public-demo library of the current session (made on first use)."""
    access = _access.get()
    if access is None or access.libraries is None:
        raise AccessDenied("no session libraries in this app")
    return access.libraries.get(session_key())


def redact(text: str) -> str:
    """Outside local mode, server paths in text shown to visitors are cut to their last part."""
    if mode() == "local" or not text:
        return text
    return _PATH.sub(lambda m: m.group(1) or "…", text)


def shown_model(model_id: str | None) -> str:
    """A model id for display: a local folder is named by its last part outside local mode."""
    if not model_id or mode() == "local" or not Path(model_id).is_absolute():
        return model_id or ""
    return Path(model_id).name
