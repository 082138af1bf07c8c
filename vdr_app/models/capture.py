"""Capture what one module of a shared model sees, per call, while other threads use the model too.

A torch hook belongs to the module, so it fires for every forward pass in the process: a query
encoded in one thread while a page is encoded in another would run the page's hook on the query's
tensors (wrong attention, or a shape error). `CallCapture` installs one hook for the life of the
model and routes each firing to the capture opened by the thread that runs the forward pass; a
pass without an open capture (a query) is left alone. Torch runs a module's hooks on the thread
that calls it, so a thread-local slot is per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class CallCapture:
    """One hook on `module`, firing `fn` only inside `capturing(fn)` on the calling thread.

    Args:
        module: the torch module to watch.
        pre: a forward pre-hook (sees the inputs: `fn(module, args, kwargs)`) instead of a
            forward hook (sees the output: `fn(module, args, output)`).
    """

    def __init__(self, module: Any, pre: bool = False):
        self._local = threading.local()
        if pre:
            self._handle = module.register_forward_pre_hook(self._fire, with_kwargs=True)
        else:
            self._handle = module.register_forward_hook(self._fire)

    def _fire(self, module, args, third):
        fn = getattr(self._local, "fn", None)
        if fn is not None:
            fn(module, args, third)

    @contextmanager
    def capturing(self, fn: Callable[[Any, Any, Any], None]) -> Iterator[None]:
        """Within the block, forward passes on this thread call `fn`; other threads' do not."""
        previous = getattr(self._local, "fn", None)
        self._local.fn = fn
        try:
            yield
        finally:
            self._local.fn = previous

    def remove(self) -> None:
        self._handle.remove()


_install_lock = threading.Lock()


def capture_for(owner: Any, attribute: str, module_getter: Callable[[], Any], pre: bool = False) -> CallCapture:
    """The `CallCapture` stored on `owner.attribute`, installed on first use (once, thread-safe)."""
    capture = getattr(owner, attribute, None)
    if capture is None:
        with _install_lock:
            capture = getattr(owner, attribute, None)
            if capture is None:
                capture = CallCapture(module_getter(), pre=pre)
                setattr(owner, attribute, capture)
    return capture
