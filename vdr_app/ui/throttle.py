"""Login throttling for the shared mode: failed sign-ins per (user, address) lock that pair out
for a while, growing with each further failure.

Gradio checks the password in its own `/login` route and calls an `auth` function with the user
and password only, so the throttle sits in front of that route as ASGI middleware
(`LoginThrottleMiddleware`, given to FastAPI through `launch(app_kwargs=...)`): it reads the user
from the form, refuses a locked-out pair with 429 before the password is even compared, and learns
from the route's answer (200 signed in, anything else failed).

The address is the connection's peer (behind a proxy, the proxy's: then every visitor shares it and
the lock works per user). Another address, or another user, is not slowed down by someone's typos.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qs

FREE_FAILURES = 5  # wrong passwords in a row; the fifth locks the pair out
FIRST_LOCK_S = 30.0  # then locked out this long, doubled with every further failure...
MAX_LOCK_S = 15 * 60.0  # ...up to this
FORGET_S = 3600.0  # a pair without a failure for this long starts afresh
MAX_PAIRS = 10_000  # pairs remembered (the oldest are forgotten first): memory stays bounded


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Failures per (user, address) and the lockouts they earn. Thread-safe; `clock` for tests."""

    def __init__(self, free_failures: int = FREE_FAILURES, first_lock_s: float = FIRST_LOCK_S,
                 max_lock_s: float = MAX_LOCK_S, clock=time.monotonic):
        self.free_failures = free_failures
        self.first_lock_s = first_lock_s
        self.max_lock_s = max_lock_s
        self._clock = clock
        self._lock = threading.Lock()
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def wait_s(self, user: str, address: str) -> float:
        """Seconds this pair must still wait before a password is checked (0: go ahead)."""
        now = self._clock()
        with self._lock:
            record = self._records.get((user, address))
            return max(0.0, record.locked_until - now) if record else 0.0

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            key = (user, address)
            record = self._records.pop(key, None)
            if record is None or now - record.last > FORGET_S:
                record = _Record()
            record.failures += 1
            record.last = now
            beyond = record.failures - self.free_failures  # 0 at the last free failure: first lockout
            if beyond >= 0:
                record.locked_until = now + min(self.max_lock_s, self.first_lock_s * 2 ** min(beyond, 30))
            self._records[key] = record
            while len(self._records) > MAX_PAIRS:
                self._records.popitem(last=False)

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._records.pop((user, address), None)


class LoginThrottleMiddleware:
    """ASGI middleware: POST .../login goes through `throttle`; every other request passes untouched."""

    def __init__(self, app, throttle: LoginThrottle):
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:  # the form is small; read it to learn the user, then hand it on unchanged
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        user = (parse_qs(body.decode("latin-1")).get("username") or [""])[0].strip()
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.wait_s(user, address)
        if wait > 0:
            text = json.dumps({"detail": f"too many failed sign-ins: try again in {wait:.0f} s"}).encode()
            headers = [(b"content-type", b"application/json"), (b"retry-after", str(int(wait) + 1).encode())]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": text})
            return
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message):
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    self.throttle.succeeded(user, address)
                else:
                    self.throttle.failed(user, address)
            await send(message)

        await self.app(scope, replay, watch)
