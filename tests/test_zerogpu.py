"""ZeroGPU: the encoder's forward passes run in a forked GPU worker, as on a ZeroGPU Space.

No ZeroGPU here: a stand-in `spaces` module does what ZeroGPU does with a decorated call — pickles
its arguments, runs it in a process forked from the app, and pickles the result back through a
pipe. The encoded vectors must equal the in-process ones, and the store must be untouched by the
worker (its files fingerprinted in the worker before and after each call).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import multiprocessing
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.models import load_encoder, zerogpu
from vdr_app.types import PageImage

from .test_models import mixed_pages


def _fingerprint(paths: list[Path]) -> list[tuple]:
    out = []
    for path in paths:
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            if part.exists():
                stat = part.stat()
                out.append((part.name, stat.st_size, stat.st_mtime_ns, hashlib.sha256(part.read_bytes()).hexdigest()))
    return out


def _worker(function, payload: bytes, pipe, watched: list[Path]) -> None:
    """The forked GPU worker: unpickle the call, run it, send the result (or the error) back."""
    before = _fingerprint(watched)
    try:
        args, kwargs = pickle.loads(payload)
        result = ("ok", function(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, as ZeroGPU does
        result = ("error", f"{type(error).__name__}: {error}")
    pipe.send((*result, os.getpid(), before, _fingerprint(watched)))
    pipe.close()


def forking_spaces(calls: list[dict], watched: list[Path]) -> types.ModuleType:
    """A stand-in `spaces` package whose GPU decorator runs every call in a forked child."""
    module = types.ModuleType("spaces")

    def GPU(task=None, *, duration=None, size=None):  # noqa: N802 - the real package's name
        def decorate(function):
            @functools.wraps(function)
            def call(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                payload = pickle.dumps((args, kwargs))  # fails on a SQLite handle, a lock, an open file
                context = multiprocessing.get_context("fork")
                receive, send = context.Pipe(duplex=False)
                child = context.Process(target=_worker, args=(function, payload, send, watched), daemon=True)
                child.start()
                send.close()
                status, value, pid, before, after = receive.recv()
                child.join(60)
                calls.append({"function": function.__name__, "seconds": seconds, "pid": pid,
                              "payload": payload, "store_before": before, "store_after": after})
                if status != "ok":
                    raise RuntimeError(f"GPU worker failed: {value}")
                return value

            return call

        return decorate if task is None else decorate(task)

    module.GPU = GPU
    return module


@pytest.fixture
def zero_gpu():
    """(calls, watched): zerogpu re-imported under the forking stand-in; restored afterwards."""
    calls: list[dict] = []
    watched: list[Path] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "spaces", forking_spaces(calls, watched))
        importlib.reload(zerogpu)
        yield calls, watched
    importlib.reload(zerogpu)  # back to no `spaces`
    assert zerogpu.spaces_module() is None


def _same_pages(ours, reference):
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_allclose(a.patches, b.patches, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.extra, b.extra, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.attention, b.attention, rtol=0, atol=1e-6)


def test_forward_passes_in_a_forked_worker_give_the_in_process_vectors(zero_gpu, tiny_checkpoint):
    calls, _ = zero_gpu
    path = str(tiny_checkpoint("colidefics3"))
    plain = load_encoder(path, device="cpu", batch_size=2)
    wrapped = zerogpu.on_gpu_worker(load_encoder(path, device="cpu", batch_size=2))
    assert isinstance(wrapped, zerogpu.GpuWorkerEncoder) and wrapped.dim == plain.dim

    pages = mixed_pages()
    pages = [PageImage(p.image, p.page_number, pdf_bytes=b"%PDF-not-sent" * 1000) for p in pages]
    reported = []
    _same_pages(wrapped.encode_pages(pages, progress=lambda f, m: reported.append(f)), plain.encode_pages(pages))
    texts = ["revenue growth?", "bar chart of sales by year in region three"]
    for a, b in zip(wrapped.encode_queries(texts), plain.encode_queries(texts), strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.vectors, b.vectors, rtol=0, atol=1e-6)

    assert [c["function"] for c in calls] == ["_encode_pages", "_encode_queries"]
    assert all(c["pid"] != os.getpid() for c in calls)  # really ran in another process
    assert calls[0]["seconds"] == zerogpu.page_seconds(0, pages) and calls[1]["seconds"] == zerogpu.query_seconds(0, texts)
    assert reported == [1.0]
    assert b"%PDF-not-sent" not in calls[0]["payload"]  # the PDF's bytes stay in the app process


def test_long_pdfs_go_in_chunks_with_durations_from_the_page_count(zero_gpu, tiny_checkpoint, monkeypatch):
    calls, _ = zero_gpu
    monkeypatch.setattr(zerogpu, "PAGES_PER_CALL", 2)
    wrapped = zerogpu.on_gpu_worker(load_encoder(str(tiny_checkpoint("colidefics3")), device="cpu", batch_size=1))
    pages = mixed_pages()[:3]
    reported = []
    assert len(wrapped.encode_pages(pages, progress=lambda f, m: reported.append(round(f, 3)))) == 3
    assert [c["seconds"] for c in calls] == [zerogpu.page_seconds(0, pages[:2]), zerogpu.page_seconds(0, pages[2:])]
    assert zerogpu.page_seconds(0, pages[:2]) < zerogpu.page_seconds(0, pages) <= zerogpu.page_seconds(0, pages * 200)
    assert reported == [0.667, 1.0]


def test_an_engine_on_zero_gpu_stores_what_an_ordinary_one_does(zero_gpu, tiny_checkpoint, pdf_factory, tmp_path):
    """Through the engine: same stored vectors and search scores; the store untouched in the worker."""
    calls, watched = zero_gpu
    pdf = pdf_factory([[(72, 72, "zero gpu page one")], [(72, 72, "second page")]], name="zero.pdf",
                      blocks={1: [(100, 300, 200, 150, (0, 0, 1))]})
    results = {}
    for zero in (False, True):
        settings = Settings(data_dir=tmp_path / f"zero-{zero}", model=str(tiny_checkpoint("colidefics3")),
                            device="cpu", batch_size=1, dpi=30, zero_gpu=zero)
        engine = Engine(settings)
        watched[:] = [settings.store_file]
        engine.add_files([pdf])
        assert isinstance(engine.encoder, zerogpu.GpuWorkerEncoder) == zero
        hits = engine.search("zero gpu page one", k=2)
        results[zero] = [(h.doc_name, h.page_number, h.score) for h in hits]
        engine.store.close()
    assert [c["function"] for c in calls] == ["_encode_pages", "_encode_queries"]  # only on the ZeroGPU engine
    for call in calls:
        assert call["store_before"] and call["store_before"] == call["store_after"]
    (ours, reference) = results[True], results[False]
    assert [h[:2] for h in ours] == [h[:2] for h in reference]
    np.testing.assert_allclose([h[2] for h in ours], [h[2] for h in reference], rtol=1e-6)


def test_without_zero_gpu_or_without_spaces_nothing_changes(tiny_checkpoint, tmp_path):
    assert zerogpu.spaces_module() is None  # not installed here: the functions are the plain ones
    assert zerogpu.gpu_encode_pages is zerogpu._encode_pages
    encoder = load_encoder(str(tiny_checkpoint("colidefics3")), device="cpu", batch_size=1)
    assert zerogpu.on_gpu_worker(encoder) is encoder
    engine = Engine(Settings(data_dir=tmp_path / "d", model=str(tiny_checkpoint("colidefics3")), device="cpu"))
    assert not isinstance(engine.encoder, zerogpu.GpuWorkerEncoder)
    assert Settings.from_env({"SPACES_ZERO_GPU": "true"}).zero_gpu and not Settings.from_env({}).zero_gpu
