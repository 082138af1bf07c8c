"""SAP's layer window: the score-retention (OSR) table against a plain loop, the chooser on a page
built so that one layer marks the query's patches, the store's recorded window, `layers=auto`
resolving to it (or to the middle band), and bad input changing nothing."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import InvalidLabelsError, InvalidSpecError
from vdr_app.evaluate import parse_labels
from vdr_app.evaluate.sap_window import calibrate, evaluate_sap_cv, folds_of, labelled_pairs
from vdr_app.reduce import reduce_page
from vdr_app.reduce.sap_window import (
    MIN_PAIRS,
    LabelledPair,
    choose_window,
    pair_retention,
    window_retention,
    windows,
)
from vdr_app.types import PageEmbedding

from .fakes import GridEncoder


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def page(seed: int, n: int = 60, dim: int = 12, layers: int = 6, extra: int = 2) -> PageEmbedding:
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(n), 10)
    boxes = np.stack([c / 10, r / 10, (c + 1) / 10, (r + 1) / 10], 1)
    return PageEmbedding(unit(rng.standard_normal((n, dim))), boxes, extra=unit(rng.standard_normal((extra, dim))),
                         centrality=rng.random((layers, n)).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# the numbers


def osr_loop(query, pg, a, b, keep) -> float:
    """OSR of one pair under window a-b, written out: mean centrality per patch, the k most central
    (ties: lower index first), then sum over query tokens of the best dot product kept / in full."""
    n = pg.n_patches
    score = [sum(float(pg.centrality[layer, j]) for layer in range(a, b + 1)) / (b - a + 1) for j in range(n)]
    k = max(1, int(n * keep))
    kept = sorted(range(n), key=lambda j: (-score[j], j))[:k]
    vectors = [pg.patches[j].astype(float) for j in range(n)] + list(pg.extra.astype(float))
    kept_vectors = [pg.patches[j].astype(float) for j in kept] + list(pg.extra.astype(float))
    num = sum(max(float(np.dot(q.astype(float), v)) for v in kept_vectors) for q in query)
    den = sum(max(float(np.dot(q.astype(float), v)) for v in vectors) for q in query)
    return num / den


def test_osr_of_every_window_equals_a_plain_loop():
    rng = np.random.default_rng(1)
    pairs = []
    for seed in range(3):
        pg = page(seed)
        query = unit(pg.patches[rng.choice(pg.n_patches, 4)] + 0.3 * rng.standard_normal((4, pg.dim)))
        pairs.append(LabelledPair(query, pg))
    keeps = [0.5, 0.11, 0.04]
    table = window_retention(pairs, keeps)
    assert sorted(table) == windows(6) and len(table) == 21
    for (a, b), values in table.items():
        expected = [np.mean([osr_loop(p.query, p.page, a, b, Fraction(str(k))) for p in pairs]) for k in keeps]
        np.testing.assert_allclose(values, expected, rtol=1e-9)


def test_osr_keeps_what_the_sap_view_keeps():
    pg = page(4)
    query = unit(np.random.default_rng(2).standard_normal((5, pg.dim)))
    view = reduce_page(pg, "sap:keep=0.1,layers=1-4")
    kept = np.flatnonzero(view.groups >= 0)
    assert window_retention([LabelledPair(query, pg)], [0.1], [(1, 4)])[(1, 4)][0] == pytest.approx(
        pair_retention(query, pg, kept))
    full = (query @ pg.all_vectors().T).max(1).sum()
    assert pair_retention(query, pg, kept) == pytest.approx((query @ view.all_vectors().T).max(1).sum() / full)


def marked_pairs(count: int, marked_layer: int = 5, layers: int = 6, seed: int = 0) -> list[LabelledPair]:
    """Pages of 150 patches whose query matches 6 of them: `marked_layer`'s centrality is highest on
    those 6, every other layer's lowest there (random elsewhere), so only that layer alone keeps them."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        pg = page(100 + i, n=150, layers=layers)
        target = rng.choice(pg.n_patches, 6, replace=False)
        query = unit(pg.patches[target] + 0.05 * rng.standard_normal((6, pg.dim)))
        centrality = rng.random((layers, pg.n_patches)).astype(np.float32)
        centrality[:, target] = 0.0
        centrality[marked_layer, target] = 1.0 + rng.random(6)
        pairs.append(LabelledPair(query, PageEmbedding(pg.patches, pg.boxes, extra=pg.extra, centrality=centrality)))
    return pairs


def test_the_chooser_picks_the_layer_that_marks_the_querys_patches():
    choice = choose_window(marked_pairs(MIN_PAIRS + 2))
    assert choice.calibrated and choice.window == (5, 5) and choice.layers == "5-5"
    assert choice.mean((5, 5)) > choice.mean((2, 3)) + 0.05  # the middle band does not see them
    assert choice.ranked()[0] == (5, 5) and len(choice.osr) == 21
    # the same with the mark in layer 1: the choice follows the data, not the band
    assert choose_window(marked_pairs(MIN_PAIRS, marked_layer=1)).window == (1, 1)


def test_too_few_pairs_keep_the_middle_band_and_say_so():
    choice = choose_window(marked_pairs(MIN_PAIRS - 1))
    assert not choice.calibrated and choice.window == (2, 3)
    assert "middle band 2-3 kept" in choice.reason and f"fewer than the {MIN_PAIRS}" in choice.reason
    assert choice.mean((5, 5)) > choice.mean((2, 3))  # the table is still there to read


def test_ties_go_to_the_middle_band_then_the_narrower_window():
    pairs = marked_pairs(MIN_PAIRS)
    flat = [LabelledPair(p.query, PageEmbedding(p.page.patches, p.page.boxes, extra=p.page.extra,
                                                centrality=np.ones_like(p.page.centrality))) for p in pairs]
    choice = choose_window(flat)  # every window keeps the same patches (page order)
    assert len({choice.mean(w) for w in windows(6)}) == 1 and choice.window == (2, 3)


def test_pages_without_centrality_or_of_mixed_depths_are_refused():
    pg = page(0)
    query = pg.patches[:2]
    with pytest.raises(ValueError, match="no stored centrality"):
        choose_window([LabelledPair(query, PageEmbedding(pg.patches, pg.boxes, extra=pg.extra))])
    with pytest.raises(ValueError, match="different depths"):
        choose_window([LabelledPair(query, pg), LabelledPair(query, page(1, layers=4))])
    with pytest.raises(ValueError, match="no labelled"):
        choose_window([])


def test_folds_are_seeded_and_balanced():
    fold = folds_of(9)
    assert sorted(np.bincount(fold)) == [4, 5] and np.array_equal(fold, folds_of(9))


# ---------------------------------------------------------------------------------------------
# the engine: recorded window, `auto`, renames, bad input


class LayeredEncoder(GridEncoder):
    """GridEncoder plus a 6-layer centrality: layer l ranks patches by their dot product with a
    fixed direction of its own (deterministic, positive)."""

    layers = 6

    def encode_pages(self, pages, progress=None):
        out = []
        directions = unit(np.random.default_rng(7).standard_normal((self.layers, self.dim)))
        for emb in super().encode_pages(pages, progress):
            centrality = (1.0 + emb.patches @ directions.T).T.astype(np.float32)
            out.append(PageEmbedding(emb.patches, emb.boxes, emb.attention, emb.extra, emb.cells, emb.model_id,
                                     emb.info, centrality))
        return out


def _engine(tmp_path, encoder=None) -> Engine:
    return Engine(Settings(data_dir=tmp_path, dpi=30), encoder=encoder or LayeredEncoder())


def _store_bytes(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.parent.glob(path.name + "*")):
        if not p.name.endswith("-shm"):
            digest.update(p.name.encode() + p.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def library(tmp_path, pdf_factory):
    a = pdf_factory([[(72, 72, "alpha budget")], [(72, 300, "beta table")]], name="a.pdf",
                    blocks={0: [(100, 100, 200, 200, (1, 0, 0))]})
    b = pdf_factory([[(72, 72, "gamma chart")], [(300, 500, "delta notes")]], name="b.pdf",
                    blocks={1: [(300, 500, 150, 150, (0, 0, 1))]})
    engine = _engine(tmp_path)
    engine.add_files([a, b])
    return engine


def labels_text(n: int) -> str:
    words = ["alpha", "beta", "gamma", "delta", "red", "blue", "budget", "table", "chart", "notes", "page", "box"]
    lines = []
    for i in range(n):
        lines.append(f'{{"query": "{words[i % len(words)]} {words[(i * 5 + 3) % len(words)]} {i}", '
                     f'"file": "{"ab"[i % 2]}.pdf", "page": {1 + (i // 2) % 2}}}')
    return "\n".join(lines)


def test_auto_without_calibration_is_the_middle_band(library):
    assert library.store.sap_window(library.store.model_id) is None
    window = library.sap_window()
    assert (window.first, window.last, window.n_layers, window.calibrated) == (2, 3, 6, False)
    assert library.resolve_view("sap:keep=0.25") == "sap:keep=0.25,layers=2-3"
    assert library.add_view("sap:keep=0.25") == "sap:keep=0.25,layers=2-3"
    assert library.store.view_specs() == ["sap:keep=0.25,layers=2-3"]
    assert library.resolve_view("sap:keep=0.25,layers=1-4") == "sap:keep=0.25,layers=1-4"  # explicit stays
    assert library.resolve_view("random:keep=0.25") == "random:keep=0.25,seed=0"
    page_id = library.store.page_ids()[0]
    assert library.explore(page_id, "sap:keep=0.25").centrality_window == (2, 3, 6)


def test_recorded_window_round_trips_and_auto_resolves_to_it(library, tmp_path):
    page_id = library.store.page_ids()[0]
    library.add_view("sap:keep=0.5")  # cut with the band before the window is recorded
    renames = library.record_sap_window("4-5", 6, {"pairs": 12})
    assert renames == {}
    assert library.store.sap_window(library.store.model_id) == {"pairs": 12, "layers": "4-5", "n_layers": 6}
    reopened = _engine(tmp_path)  # a new process reads it from the store
    assert reopened.sap_window().calibrated and reopened.sap_window().layers == "4-5"
    assert reopened.resolve_view("sap:keep=0.5") == "sap:keep=0.5,layers=4-5"
    assert reopened.resolve_view("sap:keep=0.5@int8") == "sap:keep=0.5,layers=4-5@int8"
    # the stored band view keeps its name and rows; auto now cuts a view of its own
    assert "sap:keep=0.5,layers=2-3" in reopened.store.view_specs()
    hits = reopened.search("alpha", k=2, view="sap:keep=0.5")
    assert len(hits) == 2 and "sap:keep=0.5,layers=4-5" in reopened.store.view_specs()
    expected = reduce_page(reopened.store.page_embedding(page_id), "sap:keep=0.5,layers=4-5")
    assert np.array_equal(reopened.store.view_reduction("sap:keep=0.5,layers=4-5", page_id).groups, expected.groups)
    explored = reopened.explore(page_id, "sap:keep=0.5")
    assert explored.spec == "sap:keep=0.5,layers=4-5" and explored.centrality_window == (4, 5, 6)
    assert reopened.explore(page_id, "random:keep=0.5").centrality_window == (4, 5, 6)  # the panel shows it too


def test_recording_renames_views_stored_with_auto_to_their_band(library):
    """A store written before `auto` was resolved holds `layers=auto` views cut with the band: they
    answer to their name until a window is recorded, then carry the band's name, rows unchanged."""
    page_ids = library.store.page_ids()
    legacy = "sap:keep=0.25,layers=auto"
    library.store.add_view(legacy, {pid: reduce_page(library.store.page_embedding(pid), legacy) for pid in page_ids})
    assert library.resolve_view("sap:keep=0.25") == legacy  # uncalibrated: auto is still the band it holds
    assert len(library.search("alpha", k=2, view="sap:keep=0.25")) == 2
    before = {pid: library.store.view_reduction(legacy, pid).groups for pid in page_ids}
    renames = library.record_sap_window("5-5", 6)
    assert renames == {legacy: "sap:keep=0.25,layers=2-3"}
    assert library.store.view_specs() == ["sap:keep=0.25,layers=2-3"]
    for pid in page_ids:
        stored = library.store.view_reduction("sap:keep=0.25,layers=2-3", pid)
        assert np.array_equal(stored.groups, before[pid]) and stored.info["spec"] == "sap:keep=0.25,layers=2-3"
    assert library.resolve_view("sap:keep=0.25") == "sap:keep=0.25,layers=5-5"
    assert len(library.search("alpha", k=2, view="sap:keep=0.25,layers=2-3")) == 2


def test_calibrate_records_the_chosen_window(library):
    labels = parse_labels(labels_text(MIN_PAIRS + 2))
    choice, renames = calibrate(library, labels)
    assert choice.calibrated and choice.pairs == MIN_PAIRS + 2 and renames == {}
    recorded = library.store.sap_window(library.store.model_id)
    assert recorded["layers"] == choice.layers and recorded["pairs"] == choice.pairs
    # the choice is the best mean over every window, measured independently of the chooser
    pairs = [p for group in labelled_pairs(library, labels) for p in group]
    table = window_retention(pairs)
    best = max(np.mean(v) for v in table.values())
    assert np.mean(table[choice.window]) == pytest.approx(best)


def test_dry_run_and_short_label_sets_record_nothing(library, tmp_path):
    path = Path(library.store.path)
    before = _store_bytes(path)
    choice, renames = calibrate(library, parse_labels(labels_text(MIN_PAIRS + 2)), record=False)
    assert renames is None and choice.calibrated
    choice, renames = calibrate(library, parse_labels(labels_text(3)))
    assert renames is None and not choice.calibrated and choice.window == (2, 3)
    assert _store_bytes(path) == before and library.store.sap_window(library.store.model_id) is None


def test_bad_input_is_one_clear_error_and_changes_nothing(library, tmp_path, pdf_factory):
    path = Path(library.store.path)
    before = _store_bytes(path)
    with pytest.raises(InvalidLabelsError, match="missing.pdf"):
        calibrate(library, parse_labels('{"query": "alpha", "file": "missing.pdf", "page": 1}'))
    with pytest.raises(InvalidLabelsError, match="page"):
        calibrate(library, parse_labels('{"query": "alpha", "file": "a.pdf", "page": 9}'))
    for keeps in ([0], [1.5], [float("nan")], []):
        with pytest.raises(InvalidSpecError, match="keep shares"):
            calibrate(library, parse_labels(labels_text(MIN_PAIRS + 2)), keeps)
    assert _store_bytes(path) == before
    # a store whose pages were encoded without centrality
    old = Engine(Settings(data_dir=tmp_path / "old", dpi=30), encoder=GridEncoder())
    old.add_files([pdf_factory([[(72, 72, "alpha")]], name="a.pdf")])
    old_before = _store_bytes(Path(old.store.path))
    with pytest.raises(InvalidSpecError, match="re-encode"):
        calibrate(old, parse_labels('{"query": "alpha", "file": "a.pdf", "page": 1}'))
    assert old.sap_window() is None and old.resolve_view("sap:keep=0.5") == "sap:keep=0.5,layers=auto"
    assert _store_bytes(Path(old.store.path)) == old_before


def test_cross_validated_eval_scores_each_fold_with_the_window_chosen_on_the_other(library):
    labels = parse_labels(labels_text(2 * MIN_PAIRS + 2))
    evaluation = evaluate_sap_cv(library, ["sap:keep=0.25", "random:keep=0.25"], labels)
    rows = {v.label.split(" held-out")[0]: v for v in evaluation.views}
    assert list(rows) == ["full", "sap:keep=0.25,layers=auto", "random:keep=0.25,seed=0"]
    held = rows["sap:keep=0.25,layers=auto"]
    cv = evaluation.sap_window
    assert cv["folds"] == 2 and sum(cv["fold_queries"]) == len(labels)
    assert held.held_out == [w["layers"] for w in cv["windows"]]
    # each fold's window is what the chooser picks on the other fold's pairs alone
    groups = labelled_pairs(library, labels)
    fold = folds_of(len(labels))
    for k in range(2):
        train = [p for g, f in zip(groups, fold) if f != k for p in g]
        assert choose_window(train).layers == held.held_out[k]
    # and each query's figures are those of its fold's view
    for i, row in enumerate(held.per_query):
        spec = f"sap:keep=0.25,layers={held.held_out[fold[i]]}"
        top = [h.page_id for h in library.search(labels[i].query, k=10, view=spec)]
        assert row["top"] == top
    assert held.retention["ndcg@5"] is not None and held.retention_ci["ndcg@5"] is not None
    with pytest.raises(InvalidSpecError, match="automatic"):
        evaluate_sap_cv(library, ["sap:keep=0.25,layers=1-2"], labels)
