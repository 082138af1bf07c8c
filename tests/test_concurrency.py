"""Page and query passes overlapping on one shared model, on every encoder.

The overlap is real: the page pass is stopped *inside* the model's forward, at the layer whose
attention it captures (a pre-hook with a barrier), while a query pass runs through the whole
model on another thread; only then does the page pass go on. Before captures were per call, the
page's hook fired on the query's tensors there (wrong attention, or a shape error).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vdr_app.models import load_encoder
from vdr_app.checkpoints.tiny import BUILDERS

from .test_models import mixed_pages
from .test_text_layout import draw_pdf, rendered

TEXT_LAYOUT = "text-layout-minilm"


@pytest.fixture(scope="module")
def encoders(tiny_checkpoint):
    cache = {}

    def get(family):
        if family not in cache:
            if family == TEXT_LAYOUT:
                cache[family] = load_encoder(TEXT_LAYOUT, device="cpu", batch_size=2)
            else:
                cache[family] = load_encoder(str(tiny_checkpoint(family)), device="cpu", batch_size=2)
        return cache[family]

    return get


def _pages(family):
    if family == TEXT_LAYOUT:
        words = [[(40, 40 + 30 * i, f"line {i} about quarterly revenue and costs") for i in range(6)]] * 3
        return rendered(draw_pdf(words))
    return mixed_pages()


def _captured_module(encoder):
    """The module whose attention (or input) the page pass captures."""
    if encoder.family == TEXT_LAYOUT:
        return encoder.model.encoder.layer[-1].attention.self
    return encoder.attention_module()


@pytest.mark.parametrize("family", [*BUILDERS, TEXT_LAYOUT])
def test_a_query_pass_inside_a_page_pass_changes_neither(encoders, family):
    encoder = encoders(family)
    pages = _pages(family)
    query = "quarterly revenue by region"
    reference_pages = encoder.encode_pages(pages)
    reference_query = encoder.encode_queries([query])[0]

    both_inside = threading.Barrier(2, timeout=60)
    query_done = threading.Event()
    waited: set[str] = set()
    results: dict = {}

    def gate(module, args, kwargs):
        name = threading.current_thread().name
        if name in ("page", "query") and name not in waited:
            waited.add(name)
            both_inside.wait()  # both passes are inside the model now
            if name == "page":
                assert query_done.wait(60), "the query pass did not finish"

    def run(name, fn):
        try:
            results[name] = fn()
        except BaseException as error:  # noqa: BLE001 - reported below
            results[name] = error
        finally:
            if name == "query":
                query_done.set()

    handle = _captured_module(encoder).register_forward_pre_hook(gate, with_kwargs=True)
    try:
        threads = [
            threading.Thread(target=run, name="page", args=("page", lambda: encoder.encode_pages(pages))),
            threading.Thread(target=run, name="query", args=("query", lambda: encoder.encode_queries([query])[0])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        handle.remove()
    assert waited == {"page", "query"}, "the two passes never overlapped"
    for name in ("page", "query"):
        assert not isinstance(results.get(name), BaseException), f"{name} pass failed: {results.get(name)!r}"
    got_query = results["query"]
    np.testing.assert_allclose(got_query.vectors, reference_query.vectors, atol=1e-5)
    assert got_query.tokens == reference_query.tokens
    assert len(results["page"]) == len(reference_pages)
    for got, ref in zip(results["page"], reference_pages):
        np.testing.assert_allclose(got.patches, ref.patches, atol=1e-5)
        assert (got.attention is None) == (ref.attention is None)
        if ref.attention is not None:
            np.testing.assert_allclose(got.attention, ref.attention, atol=1e-6)


def test_a_query_alone_does_not_capture(encoders):
    """Outside a page pass the capture stays silent (queries never pay for attention): neither the
    final-row capture (the default, a ContextVar per call) nor the eager-mode shared hook sees a
    query's forward pass run on another thread."""
    import torch

    from vdr_app.models.capture import CallCapture
    from vdr_app.models.final_row import final_row_capture

    encoder = encoders("colqwen2")
    encoder.encode_pages(mixed_pages()[:1])
    with final_row_capture(torch.zeros(1, dtype=torch.int64)) as target:
        other = threading.Thread(target=lambda: encoder.encode_queries(["a query"]), name="other")
        other.start()
        other.join(60)
    assert "attention" not in target  # the other thread's pass did not fill this thread's capture

    capture = CallCapture(encoder.attention_module())
    fired = []
    try:
        with capture.capturing(lambda *a: fired.append(threading.current_thread().name)):
            other = threading.Thread(target=lambda: encoder.encode_queries(["a query"]), name="other")
            other.start()
            other.join(60)
    finally:
        capture.remove()
    assert fired == []  # the other thread's pass did not reach this thread's capture
