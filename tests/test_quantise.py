"""Quantised views: quantisers, spec grammar, scoring against reference loops, exact rescoring,
storage and memory accounting (issue 14)."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from vdr_app.index import int8_matmul
from vdr_app import reduce as reduce_lib
from vdr_app.config import Settings
from vdr_app.engine import DEFAULT_RESCORE, Engine, check_rescore
from vdr_app.errors import InvalidQueryError, InvalidSpecError, UnknownStrategyError
from vdr_app.quantise import (
    LEVELS, ROTATED, STEP, QuantisedVectors, bytes_per_vector, cosine_error, dequantise_binary, dequantise_int8,
    packed_width, quantise, quantise_binary, quantise_int8, quantise_rotated, rotation, unpack_levels,
)
from vdr_app.reduce import make_spec, parse_spec, reduce_page
from vdr_app.index.maxsim_quantised import QuantisedMaxSimIndex, exact_scores
from vdr_app.store import SCHEMA_VERSION, Store, _create_v1
from vdr_app.types import PageEmbedding, PageImage, QueryEmbedding

from .fakes import GridEncoder

DIM = 16


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# -- quantisers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 7, 16, 128, 384])
def test_int8_round_trip_within_half_a_step(dim):
    rng = np.random.default_rng(dim)
    x = (rng.standard_normal((200, dim)) * rng.uniform(0.01, 10, size=(200, 1))).astype(np.float32)
    x[3] = 0.0  # an all-zero vector is exact
    codes, scales = quantise_int8(x)
    assert codes.dtype == np.int8 and codes.shape == x.shape and scales.dtype == np.float32
    assert np.abs(codes.astype(int)).max() <= 127
    back = dequantise_int8(codes, scales)
    bound = np.abs(x).max(axis=1) / 254  # the documented error: half a quantisation step
    assert (np.abs(back - x) <= bound[:, None] * (1 + 1e-5) + 1e-12).all()
    assert (back[3] == 0).all() and scales[3] == 0
    # the largest value of each vector is exact up to float32 rounding
    peak = np.abs(x).argmax(axis=1)
    rows = np.arange(len(x))
    assert np.allclose(back[rows, peak], x[rows, peak], rtol=1e-6)


@pytest.mark.parametrize("dim", [1, 7, 16, 128, 384])
def test_binary_round_trip_keeps_every_sign(dim):
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((100, dim)).astype(np.float32)
    x[0, 0] = 0.0
    packed = quantise_binary(x)
    assert packed.dtype == np.uint8 and packed.shape == (100, (dim + 7) // 8)
    back = dequantise_binary(packed, dim)
    assert set(np.unique(back)) <= {-1.0, 1.0}
    assert (np.sign(back[x != 0]) == np.sign(x[x != 0])).all()
    assert back[0, 0] == -1.0  # zero maps to -1 (bit 0), as documented
    # the documented cosine: ||x||_1 / (sqrt(d) ||x||_2)
    q = quantise(x, "binary")
    rest = x[1:]  # row 0 holds a zero (a zero vector at d = 1)
    want = np.abs(rest).sum(1) / (np.sqrt(dim) * np.linalg.norm(rest, axis=1))
    assert np.allclose(cosine_error(x, q)[1:], want, atol=1e-5)


@pytest.mark.parametrize("dim", [1, 9, 16, 128, 384])
@pytest.mark.parametrize("kind", [None, "float16", "int8", "int4", "int2", "binary"])
def test_bytes_per_vector_is_what_the_codes_take(dim, kind):
    x = np.random.default_rng(0).standard_normal((5, dim)).astype(np.float32)
    per = bytes_per_vector(dim, kind)
    if kind in (None, "float16"):
        assert per == x.astype(np.float16).nbytes // 5
    else:
        assert quantise(x, kind).nbytes == 5 * per
    assert {None: 2 * dim, "float16": 2 * dim, "int8": dim + 4, "int4": -(-dim // 2) + 4, "int2": -(-dim // 4) + 4,
            "binary": -(-dim // 8)}[kind] == per


def test_rotation_is_orthogonal_seeded_and_fixed():
    r = rotation(24)
    assert r.shape == (24, 24) and np.allclose(r @ r.T, np.eye(24), atol=1e-12)
    assert rotation(24) is r and not r.flags.writeable
    assert not np.allclose(r, np.eye(24), atol=0.3)  # a real rotation, not the identity
    # a fresh draw with the same seed is the same matrix (stored codes and later queries share it)
    rotation.cache_clear()
    assert np.array_equal(rotation(24), r)


def test_rotated_levels_are_the_odd_integers_of_the_uniform_grid():
    assert LEVELS[2].tolist() == [-3, -1, 1, 3]
    assert LEVELS[4].tolist() == list(range(-15, 16, 2))


@pytest.mark.parametrize("kind", ["int4", "int2"])
@pytest.mark.parametrize("dim", [1, 5, 16, 128, 130, 384])
def test_rotated_codes_pack_unpack_and_keep_dot_products(kind, dim):
    bits = ROTATED[kind]
    rng = np.random.default_rng(dim + bits)
    x = (rng.standard_normal((300, dim)) * rng.uniform(0.01, 10, size=(300, 1))).astype(np.float32)
    x[:, : min(3, dim)] *= 6  # uneven energy: the rotation spreads it
    x[7] = 0.0
    packed, scales = quantise_rotated(x, kind)
    assert packed.dtype == np.uint8 and packed.shape == (300, packed_width(dim, kind)) and scales.dtype == np.float32
    # the indices, recovered bit by bit (plane k: dimension j + k*w in bits k*b of byte j), are the
    # nearest level of each rotated value on the grid of step STEP * ||x|| / sqrt(d) (clipped)
    per_byte, w = 8 // bits, packed.shape[1]
    idx = np.concatenate([(packed >> (k * bits)) & ((1 << bits) - 1) for k in range(per_byte)], axis=1)
    assert idx.shape == (300, w * per_byte)
    y = x.astype(np.float64) @ rotation(dim)
    live = np.arange(300) != 7
    step = STEP[bits] * np.linalg.norm(x[live], axis=1, keepdims=True) / np.sqrt(dim)
    grid = LEVELS[bits] * step[..., None] / 2  # (n, 1, L) values of the levels
    nearest = np.abs(y[live][..., None] - grid).argmin(axis=2)
    # (the codes rotate in float32: a value within float32 rounding of a cell edge may round either way)
    assert (idx[live, :dim] != nearest).mean() < 1e-3
    assert np.abs(idx[live, :dim].astype(int) - nearest).max() <= 1
    assert np.array_equal(unpack_levels(packed, kind)[:, :dim], LEVELS[bits][idx[:, :dim]])
    back = quantise(x, kind).dequantise()
    # the scale is RaBitQ's unbiased estimator: <x, x'> = ||x||^2 exactly (up to float rounding)
    assert np.allclose((x * back).sum(1)[live], (x * x).sum(1)[live], rtol=1e-4)
    assert (back[7] == 0).all() and scales[7] == 0
    # directions: int4 within a few degrees, int2 within ~25 degrees, each better than binary
    cos = cosine_error(x, quantise(x, kind))[live]
    if dim >= 16:
        assert cos.min() > {"int4": 0.97, "int2": 0.85}[kind]
        assert cos.mean() > cosine_error(x, quantise(x, "binary"))[live].mean()
        if kind == "int2":
            assert cos.mean() < cosine_error(x, quantise(x, "int4"))[live].mean()


def test_quantiser_errors():
    with pytest.raises(ValueError, match="unknown quantiser"):
        quantise(np.zeros((1, 4)), "int3")
    with pytest.raises(ValueError, match="NaN"):
        quantise(np.full((1, 4), np.nan), "int8")
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        quantise(np.zeros(4), "binary")


# -- spec grammar -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, canonical", [
    ("full@binary", "identity@binary"),
    ("full@int8", "identity@int8"),
    ("cluster:factor=9@int8", "cluster:factor=9,features=profile@int8"),
    ("CLUSTER:factor=9 @ INT8", "cluster:factor=9,features=profile@int8"),
    ("docpruner:k=-0.25@binary", "docpruner:k=-0.25@binary"),
    ("random:keep=0.5,seed=0@int8", "random:keep=0.5,seed=0@int8"),
    ("pool1d:keep=1/9@binary", "pool1d:factor=9@binary"),
    ("cluster:factor=9", "cluster:factor=9,features=profile"),
])
def test_spec_forms_parse_to_one_canonical_text(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec and parse_spec(spec) == spec
    assert spec.quant == (canonical.rpartition("@")[2] if "@" in canonical else None)
    assert str(spec.base) == canonical.partition("@")[0]
    assert spec.kwargs == spec.base.kwargs and spec.kinds == spec.base.kinds


def test_quantised_and_float_specs_differ():
    assert parse_spec("cluster:factor=9@int8") != parse_spec("cluster:factor=9")
    assert parse_spec("cluster:factor=9@int8") != parse_spec("cluster:factor=9@binary")
    assert make_spec("cluster", quant="binary", factor=9) == parse_spec("cluster:factor=9@binary")
    assert make_spec("cluster", quant="float16", factor=9) == parse_spec("cluster:factor=9")
    assert Engine.canonical_view("full@int8") == "full@int8"
    assert Engine.canonical_view("identity@binary") == "full@binary"
    assert Engine.canonical_view("cluster:factor=9@binary") == "cluster:factor=9,features=profile@binary"


@pytest.mark.parametrize("text, message", [
    ("full@int3", r"unknown quantiser 'int3'.*@int8, @int4, @int2, @binary"),
    ("cluster:factor=9@float32", r"unknown quantiser 'float32'"),
    ("full@binary@int8", r"at most one quantiser, got 2"),
    ("full@int8@int8", r"at most one quantiser"),
    ("full@", r"unknown quantiser nothing"),
    ("@int8", r"no strategy before '@'"),
    ("cluster:factor=0.5@int8", r"factor must be >= 1"),
])
def test_bad_quantiser_specs_are_refused_with_one_clear_line(text, message):
    with pytest.raises(InvalidSpecError, match=message):
        parse_spec(text)


def test_quantiser_on_an_unknown_strategy_names_the_strategy():
    with pytest.raises(UnknownStrategyError, match=r"unknown reduction strategy 'nosuch'; known strategies: identity"):
        parse_spec("nosuch@int8")
    with pytest.raises(InvalidSpecError, match="unknown quantiser"):
        make_spec("cluster", quant="int3", factor=9)


# -- reduction then quantisation --------------------------------------------------------------------


def _page(seed=0, n=60, extra=3, dim=DIM) -> PageEmbedding:
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    rows, cols = np.divmod(np.arange(n), side)
    boxes = np.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], 1)
    return PageEmbedding(patches=_unit(rng.standard_normal((n, dim))), boxes=boxes,
                         attention=rng.dirichlet(np.ones(n)), extra=_unit(rng.standard_normal((extra, dim))))


@pytest.mark.parametrize("base", ["full", "random:keep=0.5", "docpruner:k=-0.25", "pool1d:factor=4", "cluster:factor=9",
                                  "prune_then_merge:k=-0.5,factor=2"])
@pytest.mark.parametrize("quant", ["int8", "int4", "int2", "binary"])
def test_reduction_first_then_quantised_groups_unchanged(base, quant):
    page = _page()
    plain = reduce_page(page, base)
    red = reduce_page(page, f"{base}@{quant}")
    assert np.array_equal(red.groups, plain.groups)
    assert np.array_equal(red.vectors, plain.vectors) and np.array_equal(red.extra, plain.extra)
    assert plain.quantised is None and red.info["quant"] == quant and red.info["spec"].endswith("@" + quant)
    want = quantise(plain.all_vectors(), quant)
    assert isinstance(red.quantised, QuantisedVectors) and red.quantised.n == plain.n_vectors
    assert np.array_equal(red.quantised.codes, want.codes)


# -- scoring against reference loops ----------------------------------------------------------------


def _ragged_pages(rng, n_pages=40, dim=DIM, empty=(3, 17)):
    pages = []
    for i in range(n_pages):
        n = 0 if i in empty else int(rng.integers(1, 40))
        pages.append(rng.standard_normal((n, dim)).astype(np.float32))
    return pages


def _reference(kind, codes, query, dim, float_query=False):
    """MaxSim by a plain float64 loop over the dequantised codes and the dequantised query
    (int8: per-token int8 query, as the torch kernel; int4 / int2: the query rotated, per-token
    int8, rotated back; binary: binarised query, / d).
    float_query: the float query itself (the numpy fallback of int8, int4 and int2)."""
    q = np.asarray(query, np.float64)
    if kind == "binary":
        q = dequantise_binary(quantise_binary(query), dim).astype(np.float64)
    elif kind == "int8" and not float_query and int8_matmul.available(dim):
        q = dequantise_int8(*quantise_int8(query)).astype(np.float64)
    elif kind in ROTATED and not float_query and int8_matmul.available(packed_width(dim, kind) * (8 // ROTATED[kind])):
        r = rotation(dim)
        q = dequantise_int8(*quantise_int8((q @ r).astype(np.float32))).astype(np.float64) @ r.T
    out = []
    for page in codes:
        if page.n == 0:
            out.append(-np.inf)
            continue
        sims = q @ page.dequantise().astype(np.float64).T
        if kind == "binary":
            sims = sims / dim
        out.append(sims.max(axis=1).sum())
    return np.array(out)


@pytest.mark.parametrize("kind", ["int8", "int4", "int2", "binary"])
@pytest.mark.parametrize("dim", [5, 16, 24, 128])
def test_scores_equal_a_reference_loop_over_the_dequantised_codes(kind, dim):
    rng = np.random.default_rng(dim)
    codes = [quantise(p, kind) for p in _ragged_pages(rng, dim=dim)]
    index = QuantisedMaxSimIndex(codes, kind=kind, dim=dim)
    assert len(index) == len(codes) and index.n_vectors == sum(c.n for c in codes)
    for q_tokens in (1, 7, 20):
        query = rng.standard_normal((q_tokens, dim)).astype(np.float32)
        got, want = index.scores(query), _reference(kind, codes, query, dim)
        assert np.array_equal(np.isinf(got), np.isinf(want))
        fin = np.isfinite(want)
        if kind == "binary":  # integer Hamming counts: exact
            assert np.allclose(got[fin], want[fin], rtol=0, atol=1e-6)
        else:
            assert np.allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["int8", "int4", "int2"])
@pytest.mark.parametrize("dim", [5, 16, 128])
def test_int8_numpy_fallback_equals_the_float_query_reference(kind, dim, monkeypatch):
    """Without torch's int8 kernel (switched off, unavailable, or failing) int8, int4 and int2
    score the float query."""
    rng = np.random.default_rng(dim + 1)
    codes = [quantise(p, kind) for p in _ragged_pages(rng, dim=dim)]
    query = rng.standard_normal((7, dim)).astype(np.float32)
    want = _reference(kind, codes, query, dim, float_query=True)
    fin = np.isfinite(want)

    def check(got):
        assert np.array_equal(np.isinf(got), np.isinf(want))
        assert np.allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5)

    check(QuantisedMaxSimIndex(codes, kind=kind, dim=dim, int_mm=False).scores(query))
    index = QuantisedMaxSimIndex(codes, kind=kind, dim=dim)

    def fail(a, b):
        raise RuntimeError("no int8 kernel here")

    monkeypatch.setattr(int8_matmul, "int_mm", fail)
    check(index.scores(query))
    monkeypatch.setattr(int8_matmul, "available", lambda k: False)
    check(index.scores(query))


@pytest.mark.parametrize("kind", ["int8", "int4", "int2"])
def test_int8_torch_kernel_scores_the_quantised_query(kind):
    """With torch: the int32 products are exact and the scores follow the int8 query, not the float one."""
    if not int8_matmul.available(DIM):
        pytest.skip("torch._int_mm is not available here")
    rng = np.random.default_rng(3)
    a = rng.integers(-127, 128, (20, DIM), dtype=np.int8)
    b = rng.integers(-127, 128, (1000, DIM), dtype=np.int8)
    assert np.array_equal(int8_matmul.int_mm(a, b), a.astype(np.int64) @ b.astype(np.int64).T)
    codes = [quantise(p, kind) for p in _ragged_pages(rng)]
    query = rng.standard_normal((20, DIM)).astype(np.float32)
    got = QuantisedMaxSimIndex(codes, kind=kind, dim=DIM).scores(query)
    fin = np.isfinite(got)
    quantised = _reference(kind, codes, query, DIM)[fin]
    float_query = _reference(kind, codes, query, DIM, float_query=True)[fin]
    assert np.allclose(got[fin], quantised, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[fin], float_query, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["int8", "int4", "int2", "binary"])
def test_blocks_and_threads_do_not_change_scores(kind, monkeypatch):
    """Many small blocks (handed out to both workers) give the one-block scores."""
    import vdr_app.index.maxsim_quantised as sq

    rng = np.random.default_rng(5)
    codes = [quantise(p, kind) for p in _ragged_pages(rng, n_pages=300)]
    query = rng.standard_normal((9, DIM)).astype(np.float32)
    whole = QuantisedMaxSimIndex(codes, kind=kind, dim=DIM).scores(query)
    monkeypatch.setattr(sq, "INT8_BLOCK_VECTORS", 64)
    monkeypatch.setattr(sq, "INT8_MM_BLOCK_VECTORS", 64)
    monkeypatch.setattr(sq, "BINARY_BLOCK_BYTES", 64)
    small = QuantisedMaxSimIndex(codes, kind=kind, dim=DIM)
    assert len(small._get_plan()) > 10 and len(small._get_plan(sq.INT8_MM_BLOCK_VECTORS)) > 10
    assert np.allclose(small.scores(query), whole, rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("kind", ["int8", "int4", "int2", "binary"])
def test_padding_safe_all_negative_page_keeps_its_negative_score(kind):
    dim = 16
    q = np.ones((2, dim), np.float32) / 4
    short = -np.ones((2, dim), np.float32) / 4  # every dot product negative
    long = np.random.default_rng(0).standard_normal((50, dim)).astype(np.float32)
    index = QuantisedMaxSimIndex([quantise(short, kind), quantise(long, kind)], kind=kind, dim=dim)
    # int4 / int2: <x, x'> = ||x||^2 (the unbiased scale), the rotated query only int8-rounded
    want, rel = {"int8": (0.25 * 0.25 * dim, 1e-5), "binary": (1.0, 1e-5)}.get(kind, (0.25 * 0.25 * dim, 2e-2))
    assert index.scores(q)[0] == pytest.approx(-2.0 * want, rel=rel)


@pytest.mark.parametrize("kind", ["int8", "int4", "int2", "binary"])
def test_add_and_remove_equal_a_fresh_index(kind):
    rng = np.random.default_rng(11)
    codes = [quantise(p, kind) for p in _ragged_pages(rng, n_pages=30)]
    query = rng.standard_normal((6, DIM)).astype(np.float32)
    index = QuantisedMaxSimIndex(codes[:10], kind=kind, dim=DIM)
    index.add(codes[10:])
    index.remove([0, 4, 29, -2])
    kept = [c for i, c in enumerate(codes) if i not in (0, 4, 29, 28)]
    fresh = QuantisedMaxSimIndex(kept, kind=kind, dim=DIM)
    assert np.array_equal(index.scores(query), fresh.scores(query))
    assert index.nbytes == fresh.nbytes == sum(c.nbytes for c in kept) + fresh.lengths.nbytes + 8
    assert np.array_equal(index.page_codes(1).codes, kept[1].codes)
    with pytest.raises(ValueError, match="index holds"):
        index.add([quantise(np.ones((2, DIM)), "binary" if kind == "int8" else "int8")])
    with pytest.raises(IndexError):
        index.remove([100])


# -- rescoring --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["int8", "int4", "int2", "binary"])
@pytest.mark.parametrize("rescore, k", [(0, 5), (8, 5), (3, 5), (100, 10)])
def test_rescoring_returns_exactly_the_float_scores_of_the_candidates(kind, rescore, k):
    rng = np.random.default_rng(rescore + k)
    floats = _ragged_pages(rng, n_pages=60)
    index = QuantisedMaxSimIndex([quantise(p, kind) for p in floats], kind=kind, dim=DIM)
    query = rng.standard_normal((8, DIM)).astype(np.float32)
    asked = []

    def float_pages(positions):
        asked.append(np.asarray(positions).copy())
        return [floats[i] for i in positions]

    best, scores = index.top_k(query, k, rescore=rescore, float_pages=float_pages)
    quantised = index.scores(query)
    if rescore == 0:
        assert not asked
        order = np.lexsort((np.arange(60), -quantised))[:k]
        assert np.array_equal(best, order) and np.array_equal(scores, quantised[order])
        return
    depth = max(rescore, k)
    cand = asked[0]
    # the candidates are the quantised top max(rescore, k) ...
    assert set(cand.tolist()) == set(np.lexsort((np.arange(60), -quantised))[:depth].tolist())
    # ... and each returned score is that page's exact float MaxSim (a float64 loop)
    for page, score in zip(best, scores):
        x = floats[page].astype(np.float64)
        want = (query.astype(np.float64) @ x.T).max(axis=1).sum() if len(x) else -np.inf
        assert score == pytest.approx(want, rel=1e-5, abs=1e-5)
    exact = exact_scores(query, [floats[i] for i in cand])
    assert np.array_equal(scores, np.sort(exact)[::-1][:k])
    assert set(best.tolist()) <= set(cand.tolist())


def test_rescoring_within_a_document_filter_only_looks_at_allowed_pages():
    rng = np.random.default_rng(3)
    floats = _ragged_pages(rng, n_pages=30, empty=())
    index = QuantisedMaxSimIndex([quantise(p, "binary") for p in floats], kind="binary", dim=DIM)
    allowed = np.arange(0, 30, 3)
    best, _ = index.top_k(rng.standard_normal((4, DIM)), 4, rescore=5,
                          float_pages=lambda pos: [floats[i] for i in pos], positions=allowed)
    assert set(best.tolist()) <= set(allowed.tolist()) and len(best) == 4
    with pytest.raises(ValueError, match="float_pages"):
        index.top_k(np.ones((1, DIM)), 3, rescore=5)


def test_rescore_setting_is_checked():
    assert check_rescore(None) == DEFAULT_RESCORE and check_rescore(0) == 0 and check_rescore("25") == 25
    for bad in (-1, 2.5, "x", 10**9):
        with pytest.raises(InvalidQueryError, match="rescore"):
            check_rescore(bad)


# -- rebuild: the float view from the full patches and the groups ---------------------------------


@pytest.mark.parametrize("spec", ["full", "random:keep=0.3", "attention:keep=0.5", "docpruner:k=0", "pool1d:factor=4",
                                  "pool2d:factor=4", "cluster:factor=9", "kmeans:factor=4", "kmeans:keep=1",
                                  "prune_then_merge:k=-0.5,factor=2"])
def test_rebuilt_vectors_equal_the_reduction(spec):
    page = _page(seed=4, n=70)
    red = reduce_page(page, spec)
    assert np.array_equal(reduce_lib.rebuild_vectors(page.patches, red.groups, spec + "@binary"), red.vectors)


# -- store, engine, memory accounting ---------------------------------------------------------------


def _store_with_pages(path, n_docs=3, seed=0):
    rng = np.random.default_rng(seed)
    store = Store(path)
    for d in range(n_docs):
        pages = [(PageImage(Image.new("RGB", (8, 8)), i + 1), _page(seed=100 * d + i, n=int(rng.integers(10, 60))))
                 for i in range(4)]
        views = {s: [reduce_page(e, s) for _, e in pages] for s in store.view_specs()}
        store.add_document(f"doc{d}.pdf", hashlib.sha256(f"{seed}-{d}".encode()).hexdigest(), 1, "fake-grid",
                           pages, views)
    return store


@pytest.fixture
def engine(tmp_path):
    store = _store_with_pages(tmp_path / "q.sqlite")
    eng = Engine(Settings(data_dir=tmp_path), encoder=GridEncoder(dim=DIM), store=store)
    yield eng
    eng.index.close()


SPECS = ["full@int8", "full@binary", "cluster:factor=4@int8", "cluster:factor=4@binary", "docpruner:k=-0.25@binary",
         "full@int4", "cluster:factor=4@int2"]


@pytest.mark.parametrize("spec", SPECS)
def test_quantised_views_are_stored_as_codes_and_counted_in_real_bytes(engine, spec):
    canonical = engine.add_view(spec)
    quant = parse_spec(spec).quant
    store = engine.store
    assert store.view_quant(canonical) == quant and store.view_quant("full") is None
    counts = store.vector_counts(canonical)
    # the stored blobs hold exactly the codes (and scales), nothing else
    rows = store.db.execute("SELECT n_vectors, length(vectors), length(scales) FROM view_pages WHERE spec = ?",
                            [canonical]).fetchall()
    assert sum(r[0] for r in rows) == int(counts.sum())
    for n, codes_len, scales_len in rows:
        assert codes_len == n * {"int8": DIM, "int4": -(-DIM // 2), "int2": -(-DIM // 4), "binary": -(-DIM // 8)}[quant]
        assert scales_len == (None if quant == "binary" else 4 * n)
    memory = {v.view: v for v in engine.views()}[canonical]
    assert memory.bytes == int(counts.sum()) * bytes_per_vector(DIM, quant) == sum(
        r[1] + (r[2] or 0) for r in rows)
    assert memory.precision == quant
    full = {v.view: v for v in engine.views()}["full"]
    assert memory.ratio_to_full == pytest.approx(memory.bytes / full.bytes, abs=1e-6)
    stats = engine.stats()
    entry = next(v for v in stats["views"] if v["view"] == canonical)
    assert entry["bytes"] == memory.bytes and entry["precision"] == quant
    json.dumps(stats)
    # a page's stored view: dequantised codes for vectors and extra, the codes themselves, the groups
    pid = store.page_ids()[0]
    red = store.view_reduction(canonical, pid)
    want = reduce_page(store.page_embedding(pid), canonical)
    assert np.array_equal(red.groups, want.groups)
    assert np.array_equal(red.quantised.codes, want.quantised.codes)
    assert np.allclose(np.concatenate([red.vectors, red.extra]), want.quantised.dequantise())


def test_quantised_views_follow_documents_added_later(engine):
    engine.add_view("cluster:factor=4@binary")
    before = engine.store.vector_counts("cluster:factor=4,features=profile@binary").size
    pages = [(PageImage(Image.new("RGB", (8, 8)), 1), _page(seed=999, n=30))]
    views = {s: [reduce_page(e, s) for _, e in pages] for s in engine.store.view_specs()}
    engine.store.add_document("late.pdf", "f" * 64, 1, "fake-grid", pages, views)
    assert engine.store.vector_counts("cluster:factor=4,features=profile@binary").size == before + 1
    with pytest.raises(ValueError, match="holds float16"):
        engine.store.add_document("bad.pdf", "e" * 64, 1, "fake-grid", pages,
                                  {s: [reduce_page(e, parse_spec(s).base) for _, e in pages]
                                   for s in engine.store.view_specs()})


def _float_view_reference(store, spec, query):
    """page id -> exact MaxSim over the float view rebuilt from the stored full embeddings (float64 loop)."""
    base = parse_spec(spec).base
    out = {}
    for pid in store.page_ids():
        vectors = reduce_page(store.page_embedding(pid), base).all_vectors().astype(np.float64)
        out[pid] = float((np.asarray(query, np.float64) @ vectors.T).max(axis=1).sum())
    return out


def _quantised_reference(store, spec, query):
    kind = parse_spec(spec).quant
    ids, codes = store.load_quantised(spec)
    return dict(zip(ids, _reference(kind, codes, query, store.dim)))


@pytest.mark.parametrize("spec", SPECS)
def test_engine_search_rescored_and_not(engine, spec):
    canonical = engine.add_view(spec)
    rng = np.random.default_rng(1)
    n_pages = len(engine.store.page_ids())
    for _ in range(3):
        query = QueryEmbedding(vectors=_unit(rng.standard_normal((5, DIM))), tokens=list("abcde"))
        # no rescoring: the quantised scores of the reference loop, best first
        ref = _quantised_reference(engine.store, canonical, query.vectors)
        hits = engine.search_embedding(query, k=6, view=canonical, rescore=0)
        assert [h.score for h in hits] == pytest.approx(sorted(ref.values(), reverse=True)[:6], rel=1e-5, abs=1e-5)
        assert all(ref[h.page_id] == pytest.approx(h.score, rel=1e-5, abs=1e-5) for h in hits)
        # rescoring every page: exactly the float view's ranking and scores
        exact = _float_view_reference(engine.store, canonical, query.vectors)
        hits = engine.search_embedding(query, k=6, view=canonical, rescore=n_pages)
        assert [h.score for h in hits] == pytest.approx(sorted(exact.values(), reverse=True)[:6], rel=1e-5)
        assert all(exact[h.page_id] == pytest.approx(h.score, rel=1e-5) for h in hits)
        # rescoring 3 (< k): the quantised top 6 re-scored, each hit carrying its exact float score
        hits = engine.search_embedding(query, k=6, view=canonical, rescore=3)
        top6 = sorted(ref, key=lambda p: (-ref[p], engine.store.page_ids().index(p)))[:6]
        assert {h.page_id for h in hits} == set(top6)
        assert all(exact[h.page_id] == pytest.approx(h.score, rel=1e-5) for h in hits)


def test_no_float_copy_of_a_quantised_view_is_held(engine):
    canonical = engine.add_view("full@binary")
    engine.search_embedding(QueryEmbedding(vectors=_unit(np.ones((2, DIM)))), k=3, view=canonical)
    view = engine.index._views[canonical]
    assert isinstance(view.index, QuantisedMaxSimIndex)
    n = int(engine.store.vector_counts(canonical).sum())
    assert view.index.nbytes == n * bytes_per_vector(DIM, "binary") + view.index.lengths.nbytes + 8


def test_explore_gives_a_per_patch_quantisation_error(engine):
    pid = engine.store.page_ids()[0]
    ex = engine.explore(pid, "cluster:factor=4@int8")
    assert ex.quant == "int8" and ex.quant_cosine.shape == (ex.embedding.n_patches,)
    assert (ex.quant_cosine > 0.99).all()  # int8 keeps directions to well under a degree
    assert ex.view_bytes == ex.view_vectors * (DIM + 4)
    binary = engine.explore(pid, "docpruner:k=0@binary")
    pruned = binary.reduction.groups < 0
    assert pruned.any() and np.isnan(binary.quant_cosine[pruned]).all()
    assert (binary.quant_cosine[~pruned] < 1).all() and (binary.quant_cosine[~pruned] > 1 / np.sqrt(DIM)).all()
    assert engine.explore(pid, "cluster:factor=4").quant_cosine is None
    # int4 / int2: the error panel and the bytes of the packed codes and their scales; int4 sits
    # between int8 and int2, int2 above binary
    four, two = engine.explore(pid, "cluster:factor=4@int4"), engine.explore(pid, "cluster:factor=4@int2")
    assert four.view_bytes == four.view_vectors * (DIM // 2 + 4) and two.view_bytes == two.view_vectors * (DIM // 4 + 4)
    kept = np.isfinite(four.quant_cosine)
    assert kept.all() and np.isfinite(two.quant_cosine).all()
    assert ex.quant_cosine.mean() > four.quant_cosine.mean() > two.quant_cosine.mean()
    assert two.quant_cosine.mean() > engine.explore(pid, "cluster:factor=4@binary").quant_cosine.mean()


def test_a_v1_store_migrates_and_takes_quantised_views(tmp_path):
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    _create_v1(db)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION == 3
    assert "quant" in store.db["views"].columns_dict and "scales" in store.db["view_pages"].columns_dict
    store.close()
