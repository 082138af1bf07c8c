"""ZeroGPU (Hugging Face Spaces): the encoder's forward passes, and only they, run on the GPU.

On ZeroGPU, `spaces.GPU` runs each call of a decorated function in a forked worker process that
holds a GPU for the call's `duration` seconds; the call's arguments and its result are pickled
across. Hence:

* the decorated functions below are module-level (ZeroGPU registers them at startup) and take an
  encoder key plus page images or query strings. The encoder is looked up in the worker's forked
  copy of `_ENCODERS`, never pickled; no store, SQLite handle, lock or index is reachable from the
  arguments, and the worker only encodes: rendering, reducing and storing stay in the app process.
* results are numpy arrays (`PageEmbedding`, `QueryEmbedding`), off the GPU before they cross back.
* the model is moved to "cuda" when it is loaded, in the app's main thread, before the app is
  launched (app.py does this on ZeroGPU): ZeroGPU intercepts CUDA only there, and moves those
  weights into each worker.
* duration grows with the page count (`page_seconds`); long PDFs go in chunks of `PAGES_PER_CALL`
  pages, one GPU call each, so progress is reported between them and no call asks for minutes.

Used only on ZeroGPU (`Settings.zero_gpu`, from the `SPACES_ZERO_GPU` the Space sets): elsewhere,
with or without the `spaces` package, encoders are used as they are.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from ..types import PageEmbedding, PageImage, Progress, QueryEmbedding
from .base import Encoder

log = logging.getLogger(__name__)

PAGES_PER_CALL = 16
# Seconds asked for: acquiring the GPU and moving the weights, then each page / query. A colSmol
# page takes well under a second on a GPU; the margin covers larger models (ColQwen2.5 3B).
_START_S = 15
_PAGE_S = 2.0
_QUERY_S = 0.5
_MAX_S = 120

_ENCODERS: dict[int, Encoder] = {}  # key -> encoder, filled in the app process before any fork
_keys = itertools.count(1)
_APP_PID = os.getpid()
_register_lock = threading.Lock()


def spaces_module() -> Any | None:
    """The `spaces` package (installed on every Space), or None."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def page_seconds(key: int, pages: Sequence[PageImage]) -> int:
    """GPU seconds to ask for one call of `_encode_pages` (same arguments)."""
    return int(min(_MAX_S, _START_S + _PAGE_S * len(pages)))


def query_seconds(key: int, queries: Sequence[str]) -> int:
    """GPU seconds to ask for one call of `_encode_queries` (same arguments)."""
    return int(min(_MAX_S, _START_S + _QUERY_S * len(queries)))


def _in_worker() -> None:
    """In a forked worker, one CPU thread for torch: GNU OpenMP's thread pool does not survive a
    fork, so the processor's first parallel CPU op (an image copy) would wait forever for threads
    that exist only in the app process (PyTorch's DataLoader workers do the same)."""
    if os.getpid() != _APP_PID:
        import torch

        torch.set_num_threads(1)


def _encode_pages(key: int, pages: Sequence[PageImage]) -> list[PageEmbedding]:
    _in_worker()
    return _ENCODERS[key].encode_pages(pages)


def _encode_queries(key: int, queries: Sequence[str]) -> list[QueryEmbedding]:
    _in_worker()
    return _ENCODERS[key].encode_queries(queries)


def _on_gpu(function, duration):
    spaces = spaces_module()
    return function if spaces is None else spaces.GPU(duration=duration)(function)


# Decorated at import: ZeroGPU counts the decorated functions when the app launches.
gpu_encode_pages = _on_gpu(_encode_pages, page_seconds)
gpu_encode_queries = _on_gpu(_encode_queries, query_seconds)


class GpuWorkerEncoder(Encoder):
    """An encoder whose `encode_pages` / `encode_queries` run under `spaces.GPU`.

    Everything else (model, processor, device, family hooks) is the wrapped encoder's.
    """

    def __init__(self, inner: Encoder):
        self.inner = inner
        self.model_id, self.family, self.dim, self.kind = inner.model_id, inner.family, inner.dim, inner.kind
        with _register_lock:
            self.key = next(_keys)
            _ENCODERS[self.key] = inner

    def __getattr__(self, name: str) -> Any:  # only for what this class does not define
        return getattr(self.inner, name)

    def encode_pages(self, pages: Sequence[PageImage], progress: Progress | None = None) -> list[PageEmbedding]:
        # Only the image and its number cross into the worker, not the PDF's bytes.
        light = [PageImage(image=p.image, page_number=p.page_number) for p in pages]
        out: list[PageEmbedding] = []
        for start in range(0, len(light), PAGES_PER_CALL):
            out.extend(gpu_encode_pages(self.key, light[start:start + PAGES_PER_CALL]))
            if progress is not None:
                progress(len(out) / len(light), f"encoded {len(out)}/{len(light)} pages on the GPU")
        return out

    def encode_queries(self, queries: Sequence[str]) -> list[QueryEmbedding]:
        return gpu_encode_queries(self.key, [str(q) for q in queries])

    def describe(self) -> str:
        return self.inner.describe() + " on ZeroGPU"


def on_gpu_worker(encoder: Encoder) -> Encoder:
    """`encoder`, its forward passes run under `spaces.GPU` (for a ZeroGPU Space: the engine
    calls this when `Settings.zero_gpu`); the encoder itself where `spaces` is not installed."""
    if isinstance(encoder, GpuWorkerEncoder) or encoder.kind != "visual":  # text-layout encoders run on CPU
        return encoder
    if spaces_module() is None:
        log.warning("ZeroGPU was announced (SPACES_ZERO_GPU) but the spaces package is missing: encoding here")
        return encoder
    log.info("%s: forward passes run under spaces.GPU", encoder.model_id)
    return GpuWorkerEncoder(encoder)
