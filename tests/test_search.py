"""MaxSim index: the blocked, threaded kernel against a per-page loop and colpali-engine, padding
safety, top-k order and tie-break, incremental updates, and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from vdr_app.index import maxsim as search
from vdr_app.index.maxsim import DTYPES, MaxSimIndex, top_k_of

D = 128
# Rigorous bound on |stored - original| per value, relative: the unit roundoff of each format.
UNIT_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}


def _unit(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ragged(seed: int, lengths) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_unit(rng, int(n)) for n in lengths]


def _loop_scores(pages: list[np.ndarray], query: np.ndarray) -> np.ndarray:
    """The obvious reference: one page at a time, float32, max over the page's own rows."""
    out = np.empty(len(pages), dtype=np.float32)
    for i, page in enumerate(pages):
        out[i] = (page @ query.T).max(axis=0).sum() if len(page) else -np.inf
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of at most 64 vectors, so small test indexes span many blocks and all threads,
    and pages longer than a block occur."""
    monkeypatch.setattr(search, "BLOCK_VECTORS", 64)


RAGGED_LENGTHS = [1, 7, 64, 65, 130, 1, 3, 200, 40, 1, 90, 33, 12, 64, 5]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_tokens", [1, 20])
def test_scores_equal_loop_on_stored_vectors(small_blocks, dtype, q_tokens):
    """The fast path computes exactly MaxSim of the stored (rounded) vectors, page by page."""
    pages = _ragged(0, RAGGED_LENGTHS)
    index = MaxSimIndex(pages, dtype=dtype)
    query = _unit(np.random.default_rng(1), q_tokens)
    stored = [index.page_vectors(i) for i in range(len(index))]
    got = index.scores(query)
    assert got.dtype == np.float32 and got.shape == (len(pages),)
    np.testing.assert_allclose(got, _loop_scores(stored, query), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scores_close_to_float32_originals(small_blocks, dtype):
    """Half-precision storage moves each dot product by at most the unit roundoff (unit
    vectors), so a score by at most q_tokens * roundoff."""
    pages = _ragged(2, RAGGED_LENGTHS)
    query = _unit(np.random.default_rng(3), 20)
    got = MaxSimIndex(pages, dtype=dtype).scores(query)
    exact = _loop_scores(pages, query)
    assert np.abs(got - exact).max() <= 20 * UNIT_ROUNDOFF[dtype]
    # And in practice far below the bound (errors of single values cancel in the dot products).
    assert np.abs(got - exact).max() <= 2 * UNIT_ROUNDOFF[dtype]


def test_stored_vectors_are_rounded_not_truncated():
    x = np.array(
        [[1.0 + 2.0**-8 + 2.0**-10, 1.0 + 2.0**-9, 1.0 + 3 * 2.0**-9, -(1.0 + 2.0**-8 + 2.0**-10)]], np.float32
    )
    got = MaxSimIndex([x]).page_vectors(0)
    # bfloat16 keeps 7 fraction bits: nearest value, ties to even
    np.testing.assert_array_equal(got, [[1.0 + 2.0**-7, 1.0, 1.0 + 2.0**-7, -(1.0 + 2.0**-7)]])
    f16 = MaxSimIndex([x], dtype="float16").page_vectors(0)
    np.testing.assert_array_equal(f16, x.astype(np.float16).astype(np.float32))


def test_float16_widening_is_exact_for_subnormals_zero_and_signs():
    """The integer float16 -> float32 widening must agree with numpy's cast bit for bit."""
    vals = np.array([0.0, -0.0, 6e-8, -6e-8, 3e-5, -3e-5, 6.1e-5, 1.0, -1.0, 0.333, -65504.0, 65504.0], np.float32)
    got = MaxSimIndex([vals.reshape(1, -1)], dtype="float16").page_vectors(0)[0]
    want = vals.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("q_tokens", [1, 20])
def test_equals_colpali_score_multi_vector_for_equal_lengths(small_blocks, q_tokens):
    """Where pages have equal length (no padding), colpali-engine's reference agrees."""
    import torch

    from vdr_app.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

    pages = _ragged(4, [48] * 40)
    index = MaxSimIndex(pages)
    query = _unit(np.random.default_rng(5), q_tokens)
    stored = [torch.from_numpy(index.page_vectors(i)) for i in range(len(index))]
    theirs = BaseVisualRetrieverProcessor.score_multi_vector([torch.from_numpy(query)], stored, batch_size=16)
    np.testing.assert_allclose(index.scores(query), theirs[0].numpy(), rtol=1e-6, atol=1e-5)


def test_all_negative_page_keeps_its_negative_score(small_blocks):
    """Zero padding would raise a token's max to 0 when all of a short page's dot products are
    negative (colpali-engine's batched scorer does). Here no padding enters a max."""
    rng = np.random.default_rng(6)
    query = _unit(rng, 4)
    # Every vector points away from every query token: all dot products are negative.
    away = -query.mean(axis=0)
    short = _unit(rng, 3) * 0.05 + away
    short /= np.linalg.norm(short, axis=1, keepdims=True)
    assert (short @ query.T).max() < 0
    pages = [_unit(rng, 150), short, _unit(rng, 90), short[:1]]
    index = MaxSimIndex(pages)
    got = index.scores(query)
    want = _loop_scores([index.page_vectors(i) for i in range(len(index))], query)
    assert got[1] < 0 and got[3] < 0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    # The page is ranked last, below pages with positive scores.
    idx, _ = index.top_k(query, 4)
    assert set(idx[-2:].tolist()) == {1, 3}


def test_empty_pages_score_minus_inf_and_rank_last(small_blocks):
    rng = np.random.default_rng(7)
    pages = [np.zeros((0, D), np.float32), _unit(rng, 5), np.zeros((0, D), np.float32), _unit(rng, 70), _unit(rng, 1)]
    index = MaxSimIndex(pages)
    query = _unit(rng, 3)
    got = index.scores(query)
    assert np.isneginf(got[[0, 2]]).all() and np.isfinite(got[[1, 3, 4]]).all()
    np.testing.assert_allclose(
        got[[1, 3, 4]], _loop_scores([index.page_vectors(i) for i in (1, 3, 4)], query), rtol=1e-6, atol=1e-5
    )
    idx, sc = index.top_k(query, 10)
    assert idx.tolist()[-2:] == [0, 2] and np.isneginf(sc[-2:]).all()
    assert MaxSimIndex([np.zeros((0, D))] * 3).scores(query).tolist() == [-np.inf] * 3


def test_top_k_is_sorted_with_lower_index_first_on_ties(small_blocks):
    rng = np.random.default_rng(8)
    a, b, c = _unit(rng, 10), _unit(rng, 30), _unit(rng, 2)
    # Duplicated pages score bit-identically, so they tie exactly.
    pages = [a, b, c, b, a, c, b, _unit(rng, 5), a]
    index = MaxSimIndex(pages)
    query = _unit(rng, 6)
    scores = index.scores(query)
    want = np.lexsort((np.arange(len(pages)), -scores))
    for k in range(len(pages) + 3):
        idx, sc = index.top_k(query, k)
        assert idx.dtype == np.int64 and sc.dtype == np.float32
        assert idx.tolist() == want[: min(k, len(pages))].tolist()
        np.testing.assert_array_equal(sc, scores[idx])
    # Ties cut by k: the lower indices win.
    ties = np.array([1.0, 3.0, 2.0, 3.0, 3.0, 0.5, 3.0], np.float32)
    assert top_k_of(ties, 2)[0].tolist() == [1, 3]
    assert top_k_of(ties, 5)[0].tolist() == [1, 3, 4, 6, 2]
    with pytest.raises(ValueError, match="-1"):
        index.top_k(query, -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_and_remove_equal_a_fresh_index(small_blocks, dtype):
    pages = _ragged(9, np.random.default_rng(9).integers(1, 120, size=60))
    query = _unit(np.random.default_rng(10), 20)
    index = MaxSimIndex(pages[:20], dtype=dtype)
    index.add(pages[20:45])
    for page in pages[45:]:
        index.add([page])
    fresh = MaxSimIndex(pages, dtype=dtype)
    assert len(index) == len(pages) and index.n_vectors == fresh.n_vectors
    np.testing.assert_array_equal(index.lengths, fresh.lengths)
    np.testing.assert_array_equal(index.scores(query), fresh.scores(query))

    index.remove([3, 10, -1, 10, 0, 59 - 5])
    kept = [p for i, p in enumerate(pages) if i not in {0, 3, 10, 54, 59}]
    fresh = MaxSimIndex(kept, dtype=dtype)
    assert len(index) == len(kept)
    np.testing.assert_array_equal(index.scores(query), fresh.scores(query))
    for i in (0, 7, len(kept) - 1):
        np.testing.assert_array_equal(index.page_vectors(i), fresh.page_vectors(i))
    # Adding after a removal reuses the compacted space.
    index.add(pages[:2])
    np.testing.assert_array_equal(index.scores(query), MaxSimIndex(kept + pages[:2], dtype=dtype).scores(query))

    index.remove(range(len(index)))
    assert len(index) == 0 and index.scores(query).shape == (0,)
    index.add(pages[:3])
    np.testing.assert_array_equal(index.scores(query), MaxSimIndex(pages[:3], dtype=dtype).scores(query))
    with pytest.raises(IndexError, match="3"):
        index.remove([3])


def test_nbytes_is_half_of_float32():
    pages = _ragged(11, [10, 20, 30])
    index = MaxSimIndex(pages)
    assert index.nbytes == 60 * D * 2 + 4 * 8
    index.add([_unit(np.random.default_rng(0), 1)])
    assert index.nbytes >= 61 * D * 2 + 5 * 8  # plus spare capacity from geometric growth
    index.shrink()
    assert index.nbytes == 61 * D * 2 + 5 * 8
    # A generator is consumed page by page and leaves no spare capacity either.
    assert MaxSimIndex(iter(pages)).nbytes == 60 * D * 2 + 4 * 8


def test_invalid_page_in_add_changes_nothing():
    pages = _ragged(15, [5, 6])
    query = _unit(np.random.default_rng(16), 4)
    index = MaxSimIndex(pages)
    before = index.scores(query)
    bad = np.ones((3, D), np.float32)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="page 3 holds NaN or infinite"):
        index.add([_unit(np.random.default_rng(17), 500), bad])
    assert len(index) == 2 and index.n_vectors == 11
    np.testing.assert_array_equal(index.scores(query), before)
    empty = MaxSimIndex()
    with pytest.raises(ValueError):
        empty.add([np.full((2, 64), np.nan)])
    assert empty.dim is None  # a rejected first page does not fix the dimension
    empty.add([np.ones((1, 32))])
    assert empty.dim == 32


def test_single_thread_path_without_threadpoolctl(small_blocks, monkeypatch):
    """Without threadpoolctl the kernel runs on the calling thread; results are identical."""
    pages = _ragged(12, RAGGED_LENGTHS)
    query = _unit(np.random.default_rng(13), 20)
    threaded = MaxSimIndex(pages).scores(query)
    monkeypatch.setattr(search, "_BLAS", False)
    np.testing.assert_array_equal(MaxSimIndex(pages).scores(query), threaded)


def test_dimension_mismatch_raises_with_the_numbers():
    index = MaxSimIndex(_ragged(14, [4, 5]))
    with pytest.raises(ValueError, match=r"query has dimension 64, the index has 128"):
        index.scores(np.ones((3, 64), np.float32))
    with pytest.raises(ValueError, match=r"page 2 has dimension 96, the index has 128"):
        index.add([np.ones((2, 96), np.float32)])
    assert len(index) == 2  # nothing added
    with pytest.raises(ValueError, match=r"page 0 has dimension 96, the index has 128"):
        MaxSimIndex(dim=128).add([np.ones((2, 96))])
    with pytest.raises(ValueError, match=r"\(q, d\).*\(128,\)"):
        index.scores(np.ones(128, np.float32))
    with pytest.raises(ValueError, match=r"\(0, 128\)"):
        index.scores(np.ones((0, 128), np.float32))
    with pytest.raises(ValueError, match="shape"):
        MaxSimIndex([np.ones(128)])


def test_non_finite_values_are_rejected():
    bad = np.ones((2, 8), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="page 0 holds NaN"):
        MaxSimIndex([bad])
    with pytest.raises(ValueError, match="NaN"):
        MaxSimIndex([np.ones((2, 8))]).scores(bad)
    with pytest.raises(ValueError, match="float16's range"):
        MaxSimIndex([np.full((1, 8), 1e6)], dtype="float16")
    with pytest.raises(ValueError, match="dtype"):
        MaxSimIndex([], dtype="float32")


def test_empty_index_returns_empty_arrays():
    query = np.ones((3, D), np.float32)
    for index in (MaxSimIndex([]), MaxSimIndex(dim=D)):
        assert len(index) == 0 and index.n_vectors == 0
        scores = index.scores(query)
        assert scores.shape == (0,) and scores.dtype == np.float32
        idx, sc = index.top_k(query, 5)
        assert idx.shape == (0,) and idx.dtype == np.int64 and sc.shape == (0,) and sc.dtype == np.float32
    with pytest.raises(ValueError, match="dimension 64"):
        MaxSimIndex(dim=D).scores(np.ones((2, 64)))


def test_concurrent_queries_and_updates_are_consistent(small_blocks):
    """Queries from several threads (Gradio serves requests concurrently) share worker threads
    and buffers safely, also while another thread adds pages."""
    from concurrent.futures import ThreadPoolExecutor

    pages = _ragged(18, np.random.default_rng(18).integers(1, 100, size=40))
    queries = [_unit(np.random.default_rng(19 + i), 1 + 3 * i) for i in range(6)]
    index = MaxSimIndex(pages)
    want = [index.scores(q) for q in queries]
    with ThreadPoolExecutor(4) as ex:
        futures = [ex.submit(index.scores, queries[i % 6]) for i in range(24)]
        grow = ex.submit(index.add, _ragged(20, [30] * 10))
        got = [f.result() for f in futures]
        grow.result()
    for i, scores in enumerate(got):
        np.testing.assert_array_equal(scores[:40], want[i % 6])  # before or after the add: same first 40
    assert len(index) == 50


def test_worker_count_respects_a_cgroup_cpu_quota(tmp_path):
    """In a container capped by a CPU quota (docker --cpus, Spaces) the kernel must not start one
    thread per visible host CPU."""
    visible = len(search._usable_cpus(str(tmp_path / "absent"))[0])
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert search._usable_cpus(str(quota))[1] == min(visible, 2)
    quota.write_text("max 100000\n")
    assert search._usable_cpus(str(quota))[1] == visible
