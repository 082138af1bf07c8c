"""SAP's layer window from a store's labelled corpus: calibrate it (`sap-window`), or measure `sap`
with a window chosen on other queries than the ones it is scored on (`eval --sap-window cv`).

The window is chosen by `vdr_app.reduce.sap_window.choose_window` (the paper's Oracle Score
Retention over labelled (query, relevant page) pairs; see there for ties and short label sets).
Choosing among every window on the same queries a table is then computed on flatters the chosen
window; `evaluate_sap_cv` splits the labelled queries into folds (seeded, 2 by default), chooses a
window on all folds but one and scores `sap` on that one, so every query's figure is held out, and
reports the window each fold got.
"""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidLabelsError, InvalidSpecError
from ..reduce import parse_spec
from ..reduce.sap import AUTO
from ..reduce.sap_window import DEFAULT_KEEPS, MIN_PAIRS, LabelledPair, WindowChoice, as_keeps, choose_window
from ..types import Progress
from .labels import LabeledQuery
from .metrics import label_metrics
from .run import Evaluation, ViewEvaluation, _score, checked_documents, evaluate, relevant_pages, set_retention
from .sweep import FULL, view_family

if TYPE_CHECKING:
    from ..engine import Engine

CV_FOLDS = 2
CV_SEED = 0


def labelled_pairs(engine: "Engine", labels: Sequence[LabeledQuery],
                   documents: dict[str, int] | None = None) -> list[list[LabelledPair]]:
    """Each label's (query vectors, relevant page) pairs, the query encoded by the store's model.

    Raises:
        InvalidLabelsError: no labels, or a label names a file or page that is not stored.
        InvalidSpecError: a labelled page has no stored centrality (encoded before it was captured).
    """
    if not labels:
        raise InvalidLabelsError("no labelled queries: the window is chosen from (query, relevant page) pairs")
    documents = checked_documents(engine, labels, documents)
    relevant = relevant_pages(engine, labels, documents)
    pages = {page_id: engine.store.page_embedding(page_id) for ids in relevant for page_id in sorted(ids)}
    missing = sum(page.centrality is None for page in pages.values())
    if missing:
        raise InvalidSpecError(
            f"{missing} of the {len(pages)} labelled pages have no stored centrality (encoded before it was "
            "captured): re-encode their documents (`python -m vdr_app reencode FILE.pdf`) first")
    out = []
    for label, ids in zip(labels, relevant):
        query = engine.encode_query(label.query).vectors
        out.append([LabelledPair(query, pages[page_id]) for page_id in sorted(ids)])
    return out


def _choose(pairs: list[LabelledPair], keeps, min_pairs: int) -> WindowChoice:
    try:
        return choose_window(pairs, keeps, min_pairs)
    except ValueError as error:  # pages of different depths: not one model's
        raise InvalidSpecError(f"sap window: {error}") from None


def calibrate(engine: "Engine", labels: Sequence[LabeledQuery], keeps: Sequence[float] = DEFAULT_KEEPS,
              documents: dict[str, int] | None = None, record: bool = True,
              min_pairs: int = MIN_PAIRS,
              pairs: Sequence[LabelledPair] | None = None) -> tuple[WindowChoice, dict[str, str] | None]:
    """Choose the store's SAP window on labelled queries and, if `record` and the choice was
    calibrated (enough pairs), record it for the store's model (`Engine.record_sap_window`).

    Args:
        pairs: the labels' pairs when the caller has them already (`labelled_pairs`, flattened).

    Returns:
        The choice, and the views renamed by recording it (None when nothing was recorded).
    """
    keeps = as_keeps(keeps)
    if pairs is None:
        pairs = [pair for group in labelled_pairs(engine, labels, documents) for pair in group]
    choice = _choose(pairs, keeps, min_pairs)
    if not record or not choice.calibrated:
        return choice, None
    details = dict(pairs=choice.pairs, keeps=[float(k) for k in keeps], mean_osr=round(choice.mean(choice.window), 6),
                   recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return choice, engine.record_sap_window(choice.layers, choice.n_layers, details)


def folds_of(n: int, folds: int = CV_FOLDS, seed: int = CV_SEED) -> np.ndarray:
    """int (n,) the fold of each labelled query: a seeded permutation dealt round the folds."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return fold


def evaluate_sap_cv(
    engine: "Engine",
    views: Sequence[str],
    labels: Sequence[LabeledQuery],
    queries: Sequence[str] = (),
    documents: dict[str, int] | None = None,
    progress: Progress | None = None,
    skip_unavailable: bool = False,
    rescore=None,
    keeps: Sequence[float | Fraction] = DEFAULT_KEEPS,
    folds: int = CV_FOLDS,
    seed: int = CV_SEED,
    min_pairs: int = MIN_PAIRS,
) -> Evaluation:
    """`evaluate`, with every `sap` view whose layers are `auto` scored held out.

    The labelled queries are dealt into `folds` folds (`folds_of`); for each fold a window is
    chosen (`choose_window`) on the other folds' pairs, and that fold's queries are scored with the
    `sap` view cut at that window. The row of `sap:...,layers=auto` then holds, for every labelled
    query, the figures of the window chosen without it (`ViewEvaluation.held_out` names the windows;
    unlabelled queries are dealt round the folds by position). Its retention and interval are over
    all labelled queries, as for every other row. Other views are evaluated as `evaluate` does; the
    per-fold views are stored like any view and named by their window.

    Raises:
        InvalidSpecError: no `sap` view with `layers=auto` among `views`, or too few labelled queries
            to make the folds (fewer than `folds`).
        as `evaluate` and `labelled_pairs` otherwise.
    """
    labels = list(labels)
    canonical = list(dict.fromkeys(engine.canonical_view(v) for v in views))
    auto = [v for v in canonical if v.startswith("sap:") and parse_spec(v).kwargs["layers"] == AUTO]
    if not auto:
        raise InvalidSpecError("--sap-window cv scores sap views whose window is automatic: give at least one "
                               "such as sap:factor=9 (no layers=) in --views")
    if len(labels) < folds:
        raise InvalidSpecError(f"--sap-window cv needs at least {folds} labelled queries, got {len(labels)}")
    keeps = as_keeps(keeps)
    documents = checked_documents(engine, labels, documents)
    groups = labelled_pairs(engine, labels, documents)
    fold = folds_of(len(labels), folds, seed)
    choices = [_choose([p for g, f in zip(groups, fold) if f != k for p in g], keeps, min_pairs) for k in range(folds)]
    per_fold = {spec: [str(parse_spec(spec).with_values(layers=c.layers)) for c in choices] for spec in auto}
    others = [v for v in canonical if v not in auto]
    fold_views = [s for spec in auto for s in per_fold[spec] if s not in others]
    evaluation = evaluate(engine, others + list(dict.fromkeys(fold_views)), labels, queries, documents, progress,
                          skip_unavailable, rescore)

    relevant = relevant_pages(engine, labels, documents)
    full = evaluation.full
    full_top = [row["top"] for row in full.per_query]
    full_rows = [label_metrics(top, rel) for top, rel in zip(full_top, relevant)]
    query_fold = np.concatenate([fold, np.arange(len(evaluation.queries) - len(labels)) % folds])
    held_out_rows: list[ViewEvaluation] = []
    for spec in auto:
        for base in [r for r in evaluation.views if r.view == per_fold[spec][0]]:
            rows = [next(r for r in evaluation.views if r.view == s and r.rescore == base.rescore)
                    for s in per_fold[spec]]
            row = ViewEvaluation(view=spec, family=view_family(spec), memory=base.memory, rescore=base.rescore,
                                 rescore_share=base.rescore_share, held_out=[c.layers for c in choices],
                                 build_seconds=sum(r.build_seconds for r in rows),
                                 search_ms=float(np.mean([r.search_ms for r in rows])))
            if any(r.skipped for r in rows):
                row.skipped = next(r.skipped for r in rows if r.skipped)
            else:
                tops = [rows[query_fold[i]].per_query[i]["top"] for i in range(len(evaluation.queries))]
                view_rows = _score(row, tops, full_top, evaluation.queries, labels, relevant)
                set_retention(row, full, view_rows, full_rows)
            held_out_rows.append(row)
    shown = [r for r in evaluation.views if r.view == FULL or r.view in others]
    evaluation.views = shown[:1] + held_out_rows + shown[1:]
    evaluation.sap_window = dict(
        method=f"{folds}-fold: each fold's labelled queries scored with the window chosen on the other folds' "
               "pairs (mean Oracle Score Retention over the keep shares)",
        folds=folds, seed=seed, keeps=[float(k) for k in keeps],
        fold_queries=[int((fold == k).sum()) for k in range(folds)],
        windows=[c.as_dict() for c in choices],
    )
    return evaluation


def osr_lines(choice: WindowChoice, random: Sequence[float] | None = None, best: int = 5) -> list[str]:
    """The score-retention table of a choice: every single layer, the middle band, the best windows,
    the chosen one (and random, if given), one row each, a column per keep share."""
    from ..reduce.sap import middle_window

    band = middle_window(choice.n_layers)
    rows: list[tuple[str, tuple[int, int] | None]] = [(f"layer {i}", (i, i)) for i in range(choice.n_layers)]
    rows.append((f"middle band {band[0]}-{band[1]}", band))
    rows += [(f"window {a}-{b}", (a, b)) for a, b in choice.ranked()[:best] if a != b]
    head = f"{'pruned by':24}" + "".join(f"{f'keep {float(k):g}':>11}" for k in choice.keeps) + f"{'mean':>9}"
    lines = [head, "-" * len(head)]
    for name, window in rows:
        values = choice.osr.get(window)
        if not values:
            continue
        mark = "  <- chosen" if window == choice.window and choice.calibrated else ""
        lines.append(f"{name:24}" + "".join(f"{v:11.1%}" for v in values) + f"{choice.mean(window):9.1%}{mark}")
    if random is not None:
        lines.append(f"{'random (5 seeds)':24}" + "".join(f"{v:11.1%}" for v in random) + f"{np.mean(random):9.1%}")
    return lines
