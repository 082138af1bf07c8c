"""Load the model in the background at launch and say plainly what happened.

The page is served at once; the checkpoint loads in a thread. If it cannot be loaded (no network
for a hub id, a wrong folder, an unknown family), the app keeps running: the banner shows the
error, what to do, and offers the configured fallback encoder, which is a text-layout retriever
(it reads the PDF's text layer), not a visual model.
"""

from __future__ import annotations

import logging
import threading

from ..errors import VdrError

log = logging.getLogger(__name__)

LOADING, READY, FAILED = "loading", "ready", "failed"


class ModelStatus:
    """The state of the engine's encoder: loading, ready or failed (with the message)."""

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self.state = READY if engine.model_loaded else (FAILED if engine.model_error else LOADING)
        self.error = engine.model_error
        self.model = engine.settings.model
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load the configured encoder in a daemon thread (returns at once)."""
        with self._lock:
            if self.engine.model_loaded:
                self.state = READY
                return
            if self._thread is not None and self._thread.is_alive():
                return
            self.state, self.error, self.model = LOADING, "", self.engine.settings.model
            self._thread = threading.Thread(target=self._load, name="vdr-model-load", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        try:
            encoder = self.engine.encoder
            if hasattr(encoder, "check_ocr"):
                encoder.check_ocr()  # an OCR engine that cannot load is a warning at start
        except VdrError as error:
            log.warning("model %s could not be loaded: %s", self.model, error)
            self._fail(str(error))
        except Exception as error:  # a broken checkpoint can raise anything; the app must stay up
            log.exception("model %s could not be loaded", self.model)
            self._fail(f"{type(error).__name__}: {error}")
        else:
            with self._lock:
                self.state = READY

    def retry(self) -> None:
        """Forget the failed load and try the configured model again (in the background)."""
        self.engine.retry_model()
        self.start()

    def _fail(self, message: str) -> None:
        with self._lock:
            self.state, self.error = FAILED, message

    def wait(self, timeout: float | None = None) -> str:
        """Block until loading ends (for tests and scripts); returns the state."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state

    @property
    def fallback(self) -> str:
        """The offered fallback encoder ('' when disabled or already in use)."""
        fallback = self.engine.settings.fallback_model
        return "" if not fallback or fallback == self.model else fallback

    def use_fallback(self) -> None:
        """Switch the engine to the fallback encoder and load it in the background.

        Only after the configured model failed to load: the switch is global (every visitor's
        searches and uploads use the new encoder), so a healthy model is never replaced.
        """
        if not self.fallback:
            raise VdrError("no fallback encoder is configured (set VDR_FALLBACK_MODEL)")
        with self._lock:
            if self.state != FAILED:
                raise VdrError(f"the model is {self.state}, not failed: the fallback is offered only after "
                               "the configured model could not be loaded")
        self.engine.set_model(self.fallback)
        self.start()

    def markdown(self, for_operator: bool = True) -> str:
        """The banner text for the current state.

        Args:
            for_operator: with what to do about a failed load; a public demo's visitors, who can
                do nothing about it, get one line (the operator finds the error in the log).
        """
        if self.state == READY:
            encoder = self.engine.encoder
            kind = getattr(encoder, "kind", "visual")
            if kind != "visual":
                return (f"**Model:** `{encoder.model_id}` — a **{kind} retriever**: it reads the PDF's text and "
                        "its position on the page, **not the page image**. Heatmaps show text boxes, not visual "
                        "patches.")
            return f"**Model:** `{encoder.model_id}` ({encoder.family}, {encoder.dim}-d vectors) · ready"
        if self.state == LOADING:
            return f"**Loading model** `{self.model}` … the Library and Explore tabs work meanwhile."
        if not for_operator:
            return (f"**Search and uploads are unavailable:** the model `{self.model}` could not be loaded. "
                    "The documents already here can still be browsed.")
        first = self.error.split(". ")[0].strip().rstrip(".")
        lines = [f"**The model `{self.model}` could not be loaded:** {first}."]
        fix = "**To fix:** "
        if _looks_like_hub_id(self.model) and not self.error.startswith("this store holds"):
            fix += f"`hf download {self.model}` on a machine with network, or "
        fix += "set `VDR_MODEL` to a local checkpoint folder, then **Retry**."
        if self.fallback:
            fix += f" Or continue with `{self.fallback}`, which ranks pages by their text and its layout, not by how they look."
        lines.append(fix)
        if first.rstrip(".") != self.error.strip().rstrip("."):
            lines.append(f"<details><summary>full message</summary>\n\n{self.error}\n\n</details>")
        return "\n\n".join(lines)


def _looks_like_hub_id(model: str) -> bool:
    parts = str(model).split("/")
    return len(parts) == 2 and all(parts) and not str(model).startswith((".", "/", "~"))
