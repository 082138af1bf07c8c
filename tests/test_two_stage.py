"""Two-stage search (vdr_app.index.first_stage, vdr_app.index.muvera): each piece against a plain reference.

* MUVERA encodings equal a per-page loop written from the paper / FastEmbed's description.
* The first stage returns exactly the best encodings while it is flat, keeps high overlap once it
  is an inverted file, and forgets removed pages.
* The vector file gives back exactly the bfloat16 values it was given, after removals and compaction.
* Two-stage top-k equals exhaustive MaxSim when every page is a candidate, and keeps recall@10 on
  structured pages when only a few are.
* Settings and `index status`.
"""

from __future__ import annotations

import numpy as np
import pytest

from vdr_app.config import Settings
from vdr_app.errors import ConfigError
from vdr_app.index.first_stage import FirstStage, VectorFile, make_first_stage, packed_maxsim, two_stage_top_k
from vdr_app.index.token_stage import TokenStage
from vdr_app.index.muvera import Muvera
from vdr_app.index.maxsim import MaxSimIndex, _round_bits, _widen_into

DIM = 32


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _bf16(x):
    out = np.empty(x.shape, np.float32)
    _widen_into(_round_bits(np.asarray(x, np.float32), "bfloat16"), out, "bfloat16")
    return out


def structured_pages(rng, n_pages, n_vectors=(10, 40), topics=12):
    """Pages drawn around a few of `topics` centres, so pages differ by degree (not uniform noise)."""
    centres = _unit(rng.standard_normal((topics, DIM)))
    pages = []
    for _ in range(n_pages):
        mix = rng.choice(topics, size=3, replace=False)
        n = int(rng.integers(*n_vectors))
        pages.append(_unit(centres[rng.choice(mix, n)] + 0.6 * rng.standard_normal((n, DIM)) / np.sqrt(DIM)))
    return pages


def _packed(pages):
    return np.concatenate(pages), np.concatenate([[0], np.cumsum([len(p) for p in pages])]).astype(np.int64)


def reference_fde(m: Muvera, vectors: np.ndarray, document: bool) -> np.ndarray:
    """The encoding of one page or query by a plain loop (the paper's steps, FastEmbed's choices)."""
    rng = np.random.default_rng(m.seed)
    planes = [rng.normal(size=(m.dim, m.k_sim)) for _ in range(m.r_reps)]
    proj = rng.choice([-1, 1], size=(m.r_reps, m.dim, m.dim_proj))
    out = []
    for r in range(m.r_reps):
        ids = [int(sum(1 << b for b in range(m.k_sim) if (v @ planes[r])[b] > 0)) for v in vectors]
        centres = np.zeros((m.buckets, m.dim))
        members = {b: [i for i, c in enumerate(ids) if c == b] for b in range(m.buckets)}
        for b, rows in members.items():
            if rows:
                centres[b] = vectors[rows].sum(axis=0) / (len(rows) if document else 1)
            elif document:
                occupied = [c for c in range(m.buckets) if members[c]]
                nearest = min(occupied, key=lambda c: (bin(c ^ b).count("1"), c))
                centres[b] = vectors[members[nearest][0]]
        out.append((centres @ proj[r] / np.sqrt(m.dim_proj)).reshape(-1))
    return np.concatenate(out)


@pytest.mark.parametrize("k_sim", [2, 3, 5])
def test_muvera_encodings_equal_a_per_page_loop(k_sim):
    rng = np.random.default_rng(k_sim)
    m = Muvera(DIM, k_sim=k_sim, dim_proj=8, r_reps=3, seed=11)
    pages = [rng.standard_normal((int(rng.integers(1, 25)), DIM)).astype(np.float32) for _ in range(12)]
    pages.insert(4, np.zeros((0, DIM), np.float32))  # a page without vectors encodes as zeros
    packed, offsets = _packed(pages)
    got = m.encode_pages(packed, offsets)
    assert got.shape == (len(pages), m.size)
    for page, row in zip(pages, got):
        want = reference_fde(m, page, document=True) if len(page) else np.zeros(m.size)
        np.testing.assert_allclose(row, want, atol=1e-4)
    np.testing.assert_allclose(m.encode_query(pages[0]), reference_fde(m, pages[0], document=False), atol=1e-4)


def test_muvera_refuses_a_projection_wider_than_the_vectors():
    with pytest.raises(ValueError, match="dim_proj"):
        Muvera(8, dim_proj=16)


@pytest.mark.parametrize("kind", ["muvera", "mean"])
def test_flat_first_stage_returns_the_best_encodings_and_forgets_removed_pages(kind):
    rng = np.random.default_rng(0)
    pages = structured_pages(rng, 120)
    stage = FirstStage(DIM, kind=kind)
    ids = np.arange(500, 620)
    stage.add(ids, *_packed(pages))
    enc = stage.encode_pages(*_packed(pages))
    query = pages[7][:5]
    want = ids[np.argsort(-(enc @ stage.encode_query(query)), kind="stable")[:20]]
    got = stage.candidates(query, 20)
    assert set(got) == set(want) and stage.state == "flat (exact)"
    gone = got[:5]
    stage.remove(gone)
    assert len(stage) == 115 and not set(stage.candidates(query, 120)) & set(gone)
    stage.add(gone[:1], pages[0][:3][None].reshape(3, DIM), np.array([0, 3]))  # added again: back, once
    again = stage.candidates(query, 200)
    assert len(stage) == 116 and list(again).count(gone[0]) == 1


def test_inverted_file_first_stage_keeps_the_flat_stages_candidates():
    rng = np.random.default_rng(1)
    pages = structured_pages(rng, 1500, (8, 16))
    flat, ivf = FirstStage(DIM), FirstStage(DIM, ivf_min_pages=1000, nprobe=16)
    packed, offsets = _packed(pages)
    flat.add(np.arange(1500), packed, offsets)
    ivf.add(np.arange(1000), packed[: offsets[1000]], offsets[:1001])  # crosses the threshold: trains
    ivf.add(np.arange(1000, 1500), packed[offsets[1000]:], offsets[1000:] - offsets[1000])
    assert ivf.state.startswith("ivf") and len(ivf) == 1500
    overlap = [len(set(flat.candidates(p[:6], 50)) & set(ivf.candidates(p[:6], 50))) / 50 for p in pages[:20]]
    assert np.mean(overlap) >= 0.8, overlap
    ivf.remove(np.arange(0, 1500, 2))
    assert len(ivf) == 750 and all(c % 2 == 1 for c in ivf.candidates(pages[1][:6], 100))


def test_vector_file_round_trips_bfloat16_values_through_removal_and_compaction(tmp_path):
    rng = np.random.default_rng(2)
    pages = [rng.standard_normal((int(rng.integers(0, 9)), DIM)).astype(np.float32) for _ in range(30)]
    vf = VectorFile(tmp_path / "v.bf16", DIM)
    vf.append(range(100, 130), pages)
    vf.remove([101, 105, 129])
    assert len(vf) == 27 and 105 not in vf
    for compacted in (False, True):
        if compacted:
            vf.compact()
            assert vf.disk_bytes == sum(len(p) for i, p in enumerate(pages) if i not in (1, 5, 29)) * DIM * 2
        ids, bits, offsets = vf.read([110, 105, 100, 103])
        assert ids.tolist() == [110, 100, 103]
        packed = np.empty(bits.shape, np.float32)
        _widen_into(bits, packed, "bfloat16")
        for j, pid in enumerate(ids):
            np.testing.assert_array_equal(packed[offsets[j]:offsets[j + 1]], _bf16(pages[pid - 100]))
    assert vf.n_vectors == sum(len(p) for i, p in enumerate(pages) if i not in (1, 5, 29))


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_vector_file_concurrent_reads_equal_the_memory_map(tmp_path, threads):
    """The preadv read (neighbouring pages joined into one read, groups read by threads at once)
    returns what one fancy index of the memory map does, in the asked order, over > 1 MiB so the
    threads are used, with pages rewritten (moved to the end) and removed."""
    rng = np.random.default_rng(12)
    lengths = rng.integers(0, 300, 120)
    vf = VectorFile(tmp_path / "v.bf16", DIM)
    vf.append(range(120), [rng.standard_normal((int(n), DIM)).astype(np.float32) for n in lengths])
    vf.append([7, 8], [rng.standard_normal((5, DIM)).astype(np.float32)] * 2)  # moved to the end
    vf.remove([3, 50])
    order = np.concatenate([np.arange(0, 60), rng.permutation(np.arange(60, 120)), [999]])
    ids, bits, offsets = vf.read(order, threads=threads)
    assert bits.nbytes > 1 << 20
    want = vf.read_mapped(order)
    assert ids.tolist() == [p for p in order.tolist() if p not in (3, 50, 999)] == want[0].tolist()
    np.testing.assert_array_equal(offsets, want[2])
    np.testing.assert_array_equal(bits, want[1])


def test_vector_file_read_joins_neighbouring_pages_into_one_run():
    from vdr_app.index.first_stage import _runs

    starts, lengths = np.array([0, 10, 30, 35, 5]), np.array([10, 20, 5, 0, 5])
    dest = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # pages 0-3 follow each other in the file (the empty one too); page 4 lies before them
    assert _runs(starts, lengths, dest).tolist() == [[0, 0, 35], [5, 35, 5]]
    # asked in reverse: no page follows its predecessor in the file, every page is its own read
    starts, lengths = starts[::-1].copy(), lengths[::-1].copy()
    dest = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    assert _runs(starts, lengths, dest).tolist() == [[5, 0, 5], [35, 5, 0], [30, 5, 5], [10, 10, 20], [0, 30, 10]]


def test_packed_maxsim_equals_a_loop_and_keeps_negative_and_empty_pages():
    rng = np.random.default_rng(3)
    pages = [rng.standard_normal((n, DIM)).astype(np.float32) for n in (3, 0, 7, 1)]
    pages[3] = -np.abs(pages[3])
    query = np.abs(rng.standard_normal((4, DIM)).astype(np.float32))
    got = packed_maxsim(query, *_packed(pages))
    want = [(query @ p.T).max(axis=1).sum() if len(p) else -np.inf for p in pages]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[3] < 0


def test_two_stage_equals_exhaustive_when_every_page_is_a_candidate(tmp_path):
    rng = np.random.default_rng(4)
    pages = structured_pages(rng, 200)
    ids = np.arange(1000, 1200)
    stage, vf = FirstStage(DIM), VectorFile(tmp_path / "v.bf16", DIM)
    stage.add(ids, *_packed(pages))
    vf.append(ids, pages)
    exhaustive = MaxSimIndex(pages)
    for j in range(5):
        query = _unit(pages[j * 13][:6] + 0.3 * rng.standard_normal((6, DIM)) / np.sqrt(DIM))
        want_pos, want_scores = exhaustive.top_k(query, 10)
        got_ids, got_scores = two_stage_top_k(query, 10, stage, vf, depth=200)
        assert got_ids.tolist() == (ids[want_pos]).tolist()
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)  # the same kernel, other blocks
    allowed = set(ids[50:60].tolist())  # a document filter: only these may come back
    got_ids, _ = two_stage_top_k(pages[0][:4], 5, stage, vf, depth=20, allowed=allowed)
    assert len(got_ids) == 5 and set(got_ids) <= allowed


@pytest.mark.parametrize("kind", ["muvera", "mean"])
def test_two_stage_recall_at_10_on_structured_pages(tmp_path, kind):
    """Candidates = 10 % of the pages: the exact top 10 is still found (>= 0.9 on average)."""
    rng = np.random.default_rng(5)
    pages = structured_pages(rng, 1000, (20, 60), topics=30)
    ids = np.arange(1000)
    stage, vf = FirstStage(DIM, kind=kind), VectorFile(tmp_path / "v.bf16", DIM)
    stage.add(ids, *_packed(pages))
    vf.append(ids, pages)
    exhaustive = MaxSimIndex(pages)
    recalls = []
    for j in rng.choice(1000, 20, replace=False):
        query = _unit(pages[j][rng.choice(len(pages[j]), 8)] + 0.4 * rng.standard_normal((8, DIM)) / np.sqrt(DIM))
        want, _ = exhaustive.top_k(query, 10)
        got, _ = two_stage_top_k(query, 10, stage, vf, depth=100)
        recalls.append(len(set(got.tolist()) & set(want.tolist())) / 10)
    assert np.mean(recalls) >= 0.9, recalls


def test_search_mode_settings_are_checked():
    s = Settings.from_env({"VDR_SEARCH_MODE": "two-stage", "VDR_TWO_STAGE_DEPTH": "250", "VDR_FIRST_STAGE": "mean"})
    assert (s.search_mode, s.two_stage_depth, s.first_stage) == ("two-stage", 250, "mean")
    assert Settings.from_env({}).search_mode == "auto"
    with pytest.raises(ConfigError, match="VDR_SEARCH_MODE"):
        Settings.from_env({"VDR_SEARCH_MODE": "fast"})
    with pytest.raises(ConfigError, match="VDR_TWO_STAGE_DEPTH"):
        Settings.from_env({"VDR_TWO_STAGE_DEPTH": "0"})
    assert Settings.from_env({"VDR_TWO_STAGE_CODE_DEPTH": "0"}).two_stage_code_depth == 0  # no middle stage
    with pytest.raises(ConfigError, match="VDR_TWO_STAGE_CODE_DEPTH"):
        Settings.from_env({"VDR_TWO_STAGE_CODE_DEPTH": "-1"})
    # the app's defaults are the index's (measured at 1M pages, docs/scale.md)
    from vdr_app.index.first_stage import DEFAULT_CODE_DEPTH, DEFAULT_DEPTH

    assert (Settings().two_stage_depth, Settings().two_stage_code_depth) == (DEFAULT_DEPTH, DEFAULT_CODE_DEPTH)


@pytest.mark.parametrize("threshold, two_stage", [(10, True), (10**9, False)])
def test_auto_mode_switches_by_view_size_and_status_reports_the_first_stage(tmp_path, threshold, two_stage):
    from vdr_app.index import MemoryIndex
    from vdr_app.store import FULL_VIEW, Store

    from .test_index_contract import _query, add_random_document

    rng = np.random.default_rng(6)
    store = Store(tmp_path / "s.sqlite")
    add_random_document(store, rng, "a.pdf", 6)
    index = MemoryIndex(store, search_mode="auto", two_stage_min_vectors=threshold, vectors_dir=tmp_path / "v")
    exhaustive = MemoryIndex(store)
    query = _query(rng).vectors
    got, want = index.top_k(FULL_VIEW, query, 5), exhaustive.top_k(FULL_VIEW, query, 5)
    assert [p for p, _ in got] == [p for p, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5)
    view = index.status().views[0]
    assert view.index_pages == 6 and view.index_vectors == view.store_vectors
    if two_stage:
        assert "token centroids" in view.first_stage and any((tmp_path / "v").rglob("*.bf16"))
    else:
        assert view.first_stage == "none (exhaustive)"
    index.close()
    assert not any((tmp_path / "v").rglob("*.bf16"))  # the vector files go with the index
    store.close()


def test_qdrant_two_stage_status_names_its_first_stage(tmp_path):
    from vdr_app.index.qdrant import QdrantIndex
    from vdr_app.store import Store

    from .test_index_contract import add_random_document

    store = Store(tmp_path / "s.sqlite")
    add_random_document(store, np.random.default_rng(8), "a.pdf", 3)
    index = QdrantIndex(store, path=tmp_path / "q", two_stage=True, depth=50)
    index.sync()
    view = index.status().views[0]
    assert view.index_pages == 3 and "summary" in view.first_stage and "prefetch 50" in view.first_stage
    index.close()
    store.close()


# -- the token stage (vdr_app.index.token_stage) ---------------------------------------------------

def _token_stage(pages, ids, **kw):
    stage = TokenStage(DIM, min_train_vectors=kw.pop("min_train_vectors", 500), **kw)
    stage.add(ids, *_packed(pages))
    return stage


def reference_token_scores(stage: TokenStage, query: np.ndarray, pages) -> np.ndarray:
    """The approximate score of every page by the definition, one page and one query token at a
    time: the best (probed score - lowest probed score) among the probed centroids the page holds."""
    centroids, scores = stage.probe(query)
    out = []
    for page in pages:
        held = set(stage.assign(page).tolist())
        total = 0.0
        for ids, s in zip(centroids, scores):
            gains = [float(g - s[-1]) for c, g in zip(ids, s) if int(c) in held]
            total += max(gains, default=0.0)
        out.append(total)
    return np.array(out)


def test_token_stage_scores_equal_a_per_page_loop_through_adds_and_removals():
    rng = np.random.default_rng(6)
    pages = structured_pages(rng, 150, (10, 30), topics=20)
    ids = np.arange(300, 450)
    stage = _token_stage(pages[:100], ids[:100], nprobe=12)
    assert stage.trained and stage.n_centroids >= 256
    stage.add(ids[100:], *_packed(pages[100:]))  # added after training: pending, merged at query
    stage.remove(ids[10:20])
    stage.add(ids[15:16], *_packed([pages[3]]))  # a page added again under an old id: new vectors
    held = [p for i, p in enumerate(pages) if not 10 <= i < 20] + [pages[3]]
    held_ids = np.array([i for i in ids if not 310 <= i < 320] + [315])
    for j in (0, 40, 120):
        query = _unit(pages[j][:6] + 0.2 * rng.standard_normal((6, DIM)) / np.sqrt(DIM))
        want = reference_token_scores(stage, query, held)
        got = stage.candidates(query, len(held) - 1)  # n < pages held: the ranked path
        order = np.argsort(-want, kind="stable")
        best = want[order[len(got) - 1]]
        assert set(got) >= set(held_ids[want > best]), "every page scoring above the cut is a candidate"
        assert not set(got) & set(range(310, 320)) - {315}, "removed pages never come back"
        assert ids[j] in got[:5] or j in range(10, 20)


def test_token_stage_before_training_offers_every_page_and_trains_on_the_way():
    rng = np.random.default_rng(7)
    pages = structured_pages(rng, 40, (10, 20))
    stage = TokenStage(DIM, min_train_vectors=10_000)
    stage.add(np.arange(40), *_packed(pages))
    assert not stage.trained and stage.state.startswith("untrained")
    assert sorted(stage.candidates(pages[0][:3], 5)) == list(range(40))  # every page: exact stage decides
    stage.remove([3, 4])
    assert 3 not in stage.candidates(pages[3][:3], 5) and len(stage) == 38
    more = structured_pages(rng, 700, (10, 20))
    stage.add(np.arange(100, 800), *_packed(more))  # crosses min_train_vectors: trains on what it holds
    assert stage.trained and len(stage) == 738
    got = stage.candidates(more[5][:4], 50)
    assert 105 in got and not {3, 4} & set(got)


def test_token_stage_compacts_its_lists_when_many_pages_are_removed():
    rng = np.random.default_rng(8)
    pages = structured_pages(rng, 400, (10, 20))
    stage = _token_stage(pages, np.arange(400))
    entries = stage.n_entries
    stage.remove(np.arange(0, 400, 2))
    stage.remove(np.arange(1, 300, 2))  # past a quarter dead: compacted
    assert stage.n_entries < entries / 2 and len(stage) == 50
    assert set(stage.candidates(pages[301][:5], 400)) <= set(range(301, 400, 2))


def recombined_pages(rng, n_pages, n_sources=60, rows=40, vectors=(20, 60)):
    """Pages recombined from 3 of `n_sources` source pages of distinct rows, plus noise: the
    structure of benchmarks/scale_data.py (pages share content by degree, as real pages do)."""
    sources = _unit(rng.standard_normal((n_sources, rows, DIM)))
    pages = []
    for _ in range(n_pages):
        src = rng.choice(n_sources, 3, replace=False)
        n = int(rng.integers(*vectors))
        picked = sources[rng.choice(src, n), rng.integers(0, rows, n)]
        pages.append(_unit(picked + 0.5 * rng.standard_normal((n, DIM)) / np.sqrt(DIM)))
    return pages


def test_token_two_stage_recalls_the_exact_top_10_where_a_page_summary_cannot(tmp_path):
    """1,000 recombined pages, 200 candidates: the token stage finds >= 0.9 of the exact top 10,
    and at least 0.2 more of it than the MUVERA summary given the same depth (0.95 vs 0.60 here)."""
    rng = np.random.default_rng(5)
    pages = recombined_pages(rng, 1000)
    ids = np.arange(1000)
    vf = VectorFile(tmp_path / "v.bf16", DIM)
    vf.append(ids, pages)
    tokens, summary = _token_stage(pages, ids), FirstStage(DIM)
    summary.add(ids, *_packed(pages))
    exhaustive = MaxSimIndex(pages)
    recalls = {"tokens": [], "muvera": []}
    for j in rng.choice(1000, 20, replace=False):
        query = _unit(pages[j][rng.choice(len(pages[j]), 8)] + 0.4 * rng.standard_normal((8, DIM)) / np.sqrt(DIM))
        want = set(exhaustive.top_k(query, 10)[0].tolist())
        for name, stage in (("tokens", tokens), ("muvera", summary)):
            got, _ = two_stage_top_k(query, 10, stage, vf, depth=200)
            recalls[name].append(len(set(got.tolist()) & want) / 10)
    assert np.mean(recalls["tokens"]) >= 0.9, recalls
    assert np.mean(recalls["tokens"]) >= np.mean(recalls["muvera"]) + 0.2, recalls


def test_make_first_stage_names_every_kind():
    assert isinstance(make_first_stage("tokens", DIM), TokenStage)
    assert make_first_stage("mean", DIM).kind == "mean"
    with pytest.raises(ValueError, match="page-summary"):
        FirstStage(DIM, kind="tokens")
    with pytest.raises(ValueError, match="one of \\('tokens', 'muvera', 'mean'\\)"):
        make_first_stage("graph", DIM)


# -- the middle stage: low-bit codes in RAM (vdr_app.index.page_codes) -----------------------------

def test_page_codes_score_like_the_quantised_index_through_replacement_removal_and_compaction():
    """PageCodes.scores equals QuantisedMaxSimIndex.scores of the same pages (the same kernels),
    in the asked order, after a page is replaced, pages are removed and the rows are compacted."""
    from vdr_app.index.maxsim_quantised import QuantisedMaxSimIndex
    from vdr_app.index.page_codes import PageCodes
    from vdr_app.quantise import quantise

    rng = np.random.default_rng(21)
    pages = structured_pages(rng, 300, n_vectors=(0, 30))
    codes = PageCodes(DIM)
    codes.add(np.arange(300), *_packed(pages))
    pages[7] = _unit(rng.standard_normal((12, DIM)))
    codes.add([7], *_packed([pages[7]]))  # replaced: its old rows are dead
    query = _unit(rng.standard_normal((5, DIM)))
    ask = rng.permutation(300)[:120].tolist() + [7, 5000]

    def check(gone):
        held = [p for p in ask if p < 300 and p not in gone]
        want = QuantisedMaxSimIndex([quantise(pages[p], "int2") for p in held], kind="int2", dim=DIM).scores(query)
        ids, got = codes.scores(query, ask)
        assert ids.tolist() == held
        np.testing.assert_array_equal(got, want)

    check(set())
    gone = set(range(0, 300, 3)) - {7}
    codes.remove(sorted(gone))  # a third of the pages: more than a quarter of the rows, so compacted
    assert codes._dead == 0 and len(codes) == 300 - len(gone)
    check(gone)


def test_page_codes_best_scores_only_the_candidates_within_the_vector_budget():
    """best() keeps the `keep` best by codes among the longest prefix of the candidates holding at
    most max_vectors vectors (never fewer than `keep` pages), ties to the earlier candidate."""
    from vdr_app.index.page_codes import PageCodes

    rng = np.random.default_rng(22)
    query = _unit(rng.standard_normal((4, DIM)))
    pages = [_unit(rng.standard_normal((10, DIM))) for _ in range(6)]
    pages[5] = np.concatenate([query, query, query[:2]])  # the best page by far, last in the candidates
    codes = PageCodes(DIM)
    codes.add(np.arange(6), *_packed(pages))
    _, scores = codes.scores(query, range(6))
    by_codes = np.argsort(-scores, kind="stable")
    assert by_codes[0] == 5
    assert codes.best(query, np.arange(6), 2, max_vectors=60).tolist() == by_codes[:2].tolist()
    within = by_codes[by_codes < 3][:2].tolist()  # 30 vectors: only the first 3 candidates are scored
    assert codes.best(query, np.arange(6), 2, max_vectors=30).tolist() == within
    assert codes.best(query, np.arange(6), 2, max_vectors=5).tolist() == by_codes[by_codes < 2].tolist()
    assert codes.best(query, np.arange(2), 2).tolist() == [0, 1]


def test_codes_middle_stage_recovers_what_the_first_stage_ranks_too_deep(tmp_path):
    """1,000 recombined pages, a weak first stage (nprobe 4), 30 pages scored exactly: handing 300
    first-stage candidates to the int2 codes, which keep 30, finds far more of the exact top 10 than
    the first stage's own best 30 (0.96 against 0.65 here) and about what exact scores of all 300
    find."""
    from vdr_app.index.page_codes import PageCodes

    rng = np.random.default_rng(8)
    pages = recombined_pages(rng, 1000)
    ids = np.arange(1000)
    vf = VectorFile(tmp_path / "v.bf16", DIM)
    vf.append(ids, pages)
    tokens, codes = _token_stage(pages, ids, nprobe=4), PageCodes(DIM)
    codes.add(ids, *_packed(pages))
    exhaustive = MaxSimIndex(pages)
    recalls = {"first stage": [], "codes": [], "exact of all 300": []}
    for j in rng.choice(1000, 20, replace=False):
        query = _unit(pages[j][rng.choice(len(pages[j]), 8)] + 0.4 * rng.standard_normal((8, DIM)) / np.sqrt(DIM))
        want_ids, want_scores = exhaustive.top_k(query, 10)
        for name, kw in (("first stage", {"depth": 30}), ("codes", {"depth": 30, "codes": codes, "code_depth": 300}),
                         ("exact of all 300", {"depth": 300})):
            got, scores = two_stage_top_k(query, 10, tokens, vf, **kw)
            recalls[name].append(len(set(got.tolist()) & set(want_ids.tolist())) / 10)
            found = np.isin(got, want_ids)  # the final scores stay exact
            np.testing.assert_allclose(scores[found], want_scores[np.isin(want_ids, got)], rtol=1e-6)
    mean = {name: np.mean(r) for name, r in recalls.items()}
    assert mean["codes"] >= 0.95 and mean["codes"] >= mean["first stage"] + 0.2, mean
    assert mean["codes"] >= mean["exact of all 300"] - 0.02, mean


def test_memory_index_keeps_its_middle_stage_in_step_with_the_store(tmp_path):
    """A two-stage view with int2 codes: status names the middle stage; the codes hold exactly the
    stored pages after a document is removed; answers come from the codes' best `depth` pages
    with exact scores, and never a removed page."""
    from vdr_app.index import MemoryIndex
    from vdr_app.store import FULL_VIEW, Store

    from .test_index_contract import _query, add_random_document

    rng = np.random.default_rng(9)
    store = Store(tmp_path / "s.sqlite")
    docs = [add_random_document(store, rng, f"{name}.pdf", 30) for name in "abc"]
    index = MemoryIndex(store, search_mode="two-stage", depth=10, code_depth=60, vectors_dir=tmp_path / "v")
    exhaustive = MemoryIndex(store)
    query = _query(rng).vectors
    got = index.top_k(FULL_VIEW, query, 5)
    want = dict(exhaustive.top_k(FULL_VIEW, query, 90))
    assert len(got) == 5 and all(abs(s - want[p]) <= 1e-5 * abs(want[p]) for p, s in got)
    assert "middle stage: int2 codes, 90 pages" in index.status().views[0].first_stage
    store.delete_document(docs[1])
    index.remove_document(docs[1])
    exhaustive.remove_document(docs[1])
    held = {p for p, d in store.page_docs()}
    codes = index._views[FULL_VIEW].codes
    assert len(codes) == 60 and all(p in codes for p in held)
    got = index.top_k(FULL_VIEW, query, 5)
    assert {p for p, _ in got} <= held
    want = dict(exhaustive.top_k(FULL_VIEW, query, 60))
    assert all(abs(s - want[p]) <= 1e-5 * abs(want[p]) for p, s in got)
    index.close()
    store.close()
