"""Running an evaluation through the engine: every view searched with the same queries, scored
against the labels and the full index (`evaluate`), and its result (`Evaluation`, `ViewEvaluation`)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from ..errors import InvalidLabelsError, InvalidSpecError, NotFoundError
from ..memory import format_bytes
from ..types import Progress, log_progress, scaled_progress
from .bootstrap import bootstrap_retention
from .frontier import MAX_FRONTIER_RESCORE_SHARE
from .labels import LabeledQuery, check_labels
from .metrics import FIDELITY, METRICS, _mean, _ratio, fidelity_metrics, first_relevant_rank, label_metrics
from .sweep import FULL, nominal_keep, view_family, view_quant

if TYPE_CHECKING:  # the engine pulls in the whole pipeline; evaluate's pure parts do not need it
    from ..engine import Engine

log = logging.getLogger(__name__)

DEPTH = 10  # ranks retrieved per query: enough for MRR@10 and the fidelity figures
TWO_STAGE = "two-stage"


@dataclass
class ViewEvaluation:
    """One view's figures (the full index is a ViewEvaluation too, with view "full").

    Attributes:
        view: canonical spec.
        family: strategy name (one plot line per family).
        memory: `MemorySummary.as_dict()` (vectors, bytes, ratio_to_full, per-page counts).
        metrics: mean of each of METRICS over the labelled queries ({} without labels).
        retention: metric(view) / metric(full) for each of METRICS (None where full scores 0).
        retention_ci: for each of METRICS, the 95 % paired-bootstrap interval [low, high] of the
            retention over queries (see `bootstrap_retention`), or None.
        by_kind: kind -> {"queries": n, "metrics": {...}, "retention": {...}}.
        fidelity: mean of each of FIDELITY over all queries, against the full index.
        build_seconds: time to compute and store the view (0 when it was stored already).
        search_ms: mean search time per query.
        per_query: per query: "query", "rank" (of the first relevant page, None if not in the
            top 10; labelled queries only), "top" (the top-10 page ids), and its fidelity figures.
        skipped: why the view could not be evaluated (its figures are then empty), or None.
        held_out: for a `sap` view with `layers=auto` evaluated with `--sap-window cv`, the window
            each fold's queries were scored with (chosen on the other folds' queries), else None.
        rescore: for a quantised view, the rescoring depth it was searched with (None otherwise).
        rescore_share: for a rescoring variant (rescore > 0), the share of the library's pages
            it re-scores with float vectors, max(rescore, 10) / pages (capped at 1); 0 for
            rescore 0; None for float views.
        search: "exhaustive" (every vector of the view), or "two-stage" (the same float view
            searched through a first stage and exact MaxSim of its candidates: docs/scale.md).
    """

    view: str
    family: str
    memory: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    retention: dict = field(default_factory=dict)
    retention_ci: dict = field(default_factory=dict)
    by_kind: dict = field(default_factory=dict)
    fidelity: dict = field(default_factory=dict)
    build_seconds: float = 0.0
    search_ms: float = 0.0
    per_query: list = field(default_factory=list)
    skipped: str | None = None
    rescore: int | None = None
    rescore_share: float | None = None
    search: str = "exhaustive"
    held_out: list[str] | None = None

    @property
    def memory_ratio(self) -> float | None:
        return self.memory.get("ratio_to_full")

    @property
    def label(self) -> str:
        """The row's name: the view, for a held-out `sap` row the window of each fold, for a
        rescoring variant its depth, for a two-stage row "two-stage"."""
        name = self.view if not self.held_out else f"{self.view} held-out {'/'.join(self.held_out)}"
        if self.search == TWO_STAGE:
            return f"{name} {TWO_STAGE}"
        return name if not self.rescore else f"{name} rescore={self.rescore}"

    @property
    def off_frontier(self) -> str | None:
        """Why this row may not stand on the frontier (a deep rescoring variant, a two-stage row),
        or None."""
        if self.search == TWO_STAGE:
            return "two-stage search of a stored view: the same bytes as its exhaustive row, shown beside it"
        if self.rescore and self.rescore_share is not None and self.rescore_share > MAX_FRONTIER_RESCORE_SHARE:
            return (f"rescoring re-scores {self.rescore_share:.0%} of the library's pages with float vectors "
                    f"(more than {MAX_FRONTIER_RESCORE_SHARE:.0%})")
        return None

    def as_dict(self, per_query: bool = True) -> dict:
        out = dict(
            view=self.view, label=self.label, family=self.family, quant=view_quant(self.view), rescore=self.rescore,
            rescore_share=None if self.rescore_share is None else round(self.rescore_share, 6),
            off_frontier=self.off_frontier, nominal_keep=nominal_keep(self.view), memory=self.memory,
            memory_ratio=self.memory_ratio, metrics=self.metrics, retention=self.retention,
            retention_ci=self.retention_ci, by_kind=self.by_kind, fidelity=self.fidelity,
            build_seconds=round(self.build_seconds, 3), held_out=self.held_out,
            search_ms=round(self.search_ms, 3), skipped=self.skipped, search=self.search,
        )
        if per_query:
            out["per_query"] = self.per_query
        return out


@dataclass
class Evaluation:
    """The result of `evaluate`: the full index first, then every view."""

    model: str | None
    documents: int
    pages: int
    queries: list[str]
    labelled: int
    kinds: list[str]
    views: list[ViewEvaluation]
    sap_window: dict | None = None  # `--sap-window cv`: the folds and the window chosen for each
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def full(self) -> ViewEvaluation:
        return self.views[0]

    def view(self, spec: str) -> ViewEvaluation:
        """The row of a view (its first, for a quantised view evaluated at several depths), or of a
        label such as "full@binary rescore=100"."""
        for v in self.views:
            if spec in (v.view, v.label):
                return v
        raise NotFoundError(f"view {spec!r} was not evaluated; evaluated: {', '.join(v.view for v in self.views)}")

    def as_dict(self, per_query: bool = True) -> dict:
        """Every figure as plain JSON-friendly data (what `--json` writes)."""
        return dict(
            created_at=self.created_at,
            model=self.model,
            documents=self.documents,
            pages=self.pages,
            queries=len(self.queries),
            labelled_queries=self.labelled,
            kinds=self.kinds,
            definitions=dict(
                metrics="binary relevance; nDCG@5, recall@1, recall@5, MRR@10 averaged over labelled queries",
                retention="mean metric of the view / mean metric of the full index",
                retention_ci="95% percentile bootstrap over queries (paired, 2000 resamples, seed 0)",
                memory_ratio="bytes stored by the view / bytes of the full index at float16 (non-image tokens "
                             "counted; a quantised view counts its codes and scales)",
                rescore="quantised views: the quantised top max(rescore, 10) re-scored exactly with the float "
                        "view's vectors (0 = quantised scores only, the default)",
                rescore_share="max(rescore, 10) / pages: the share of the library a rescoring variant re-scores; "
                              f"above {MAX_FRONTIER_RESCORE_SHARE:.0%} the row is marked off_frontier and left off "
                              "the Pareto frontier",
                overlap="|top-k(full) ∩ top-k(view)| / k, averaged over all queries",
                kendall_tau="Kendall tau-b over the union of both top-10 lists, a missing page ranked 11",
                top1_agreement="share of queries whose first page is the same as the full index's",
            ),
            views=[v.as_dict(per_query) for v in self.views],
            **({} if self.sap_window is None else {"sap_window": self.sap_window}),
        )

    def table(self) -> str:
        """A readable table: memory, metrics, retention and fidelity of every view."""
        labelled = self.labelled > 0
        w = max([4] + [len(v.label) for v in self.views])
        head = f"{'view':{w}} {'vec/page':>8} {'bytes':>9} {'memory':>7} {'rescored':>8}"
        if labelled:
            head += "".join(f" {m:>8}" for m in METRICS) + f" {'ret@nDCG5':>9} {'95% CI':>16}"
        head += f" {'ov@5':>5} {'ov@10':>5} {'tau@10':>6}"
        lines = [head, "-" * len(head)]
        for v in self.views:
            if v.skipped:
                lines.append(f"{v.label:{w}} skipped: {v.skipped}")
                continue
            mem = v.memory
            rescored = "-" if not v.rescore else f"{v.rescore_share:.0%}" + ("*" if v.off_frontier else "")
            line = (f"{v.label:{w}} {mem.get('per_page_mean', 0):8.1f} {format_bytes(mem.get('bytes', 0)):>9} "
                    f"{_fmt(v.memory_ratio, '7.3f')} {rescored:>8}")
            if labelled:
                line += "".join(f" {_fmt(v.metrics.get(m), '8.3f')}" for m in METRICS)
                line += f" {_fmt(v.retention.get('ndcg@5'), '9.1%')}"
                ci = v.retention_ci.get("ndcg@5")
                line += f" {f'[{ci[0]:.1%}, {ci[1]:.1%}]' if ci else '-':>16}"
            fid = v.fidelity
            line += f" {_fmt(fid.get('overlap@5'), '5.2f')} {_fmt(fid.get('overlap@10'), '5.2f')}"
            line += f" {_fmt(fid.get('kendall_tau@10'), '6.2f')}"
            lines.append(line)
        if any(v.off_frontier for v in self.views):
            lines.append(f"* rescoring covers more than {MAX_FRONTIER_RESCORE_SHARE:.0%} of the library's pages: "
                         "not a property of the view, left off the frontier")
        return "\n".join(lines)

    def kind_table(self, metric: str = "ndcg@5") -> str:
        """`metric` per query kind for every view (empty when the labels have no kinds)."""
        if not self.kinds:
            return ""
        counts = {k: self.full.by_kind.get(k, {}).get("queries", 0) for k in self.kinds}
        w = max([len(metric) + 8] + [len(v.label) for v in self.views])
        head = f"{metric + ' by kind':{w}}" + "".join(f" {f'{k} ({counts[k]})':>16}" for k in self.kinds)
        lines = [head, "-" * len(head)]
        for v in self.views:
            if v.skipped:
                continue
            cells = []
            for k in self.kinds:
                entry = v.by_kind.get(k)
                value = entry["metrics"].get(metric) if entry else None
                ret = entry["retention"].get(metric) if entry else None
                text = _fmt(value, ".3f") + ("" if v.view == FULL or ret is None else f" ({ret:.0%})")
                cells.append(f" {text:>16}")
            lines.append(f"{v.label:{w}}" + "".join(cells))
        return "\n".join(lines)


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width) if width else 1)
    return format(value, spec)


def documents_by_name(engine: "Engine") -> dict[str, int]:
    """Stored document name -> id (InvalidLabelsError when two stored documents share a name)."""
    out: dict[str, int] = {}
    for doc in engine.list_documents():
        if doc.name in out:
            raise InvalidLabelsError(
                f"two stored documents are named {doc.name!r} (ids {out[doc.name]} and {doc.id}); "
                "labels name files, so delete or rename one of them"
            )
        out[doc.name] = doc.id
    return out


def _two_stage_index(engine: "Engine"):
    """A memory index over the engine's store that searches every float view in two stages (the
    settings' first stage, middle stage and depths), beside the engine's own index; closed after the evaluation."""
    from ..index.memory import MemoryIndex

    settings = engine.settings
    return MemoryIndex(engine.store, search_mode=TWO_STAGE, depth=settings.two_stage_depth,
                       first_stage=settings.first_stage, code_depth=settings.two_stage_code_depth)


def checked_documents(engine: "Engine", labels: Sequence[LabeledQuery],
                      documents: dict[str, int] | None) -> dict[str, int]:
    """The labels' file name -> stored document id (by name unless given), once every label is
    checked against the stored pages (InvalidLabelsError otherwise)."""
    if documents is None:
        documents = documents_by_name(engine)
        check_labels(labels, stored_page_counts(engine))
    else:
        known = {doc.id: doc.n_pages for doc in engine.list_documents()}
        check_labels(labels, {name: known.get(doc_id, 0) for name, doc_id in documents.items()})
    return documents


def stored_page_counts(engine: "Engine") -> dict[str, int]:
    """Stored document name -> number of pages (for `check_labels` against a store)."""
    return {doc.name: doc.n_pages for doc in engine.list_documents()}


def relevant_pages(engine: "Engine", labels: Sequence[LabeledQuery], documents: dict[str, int]) -> list[set[int]]:
    """Each label's relevant stored page ids (labels already checked against `documents`)."""
    page_ids = {(r.doc_id, r.page_number): r.id for r in engine.pages()}
    return [{page_ids[(documents[file], page)] for file, page in label.relevant} for label in labels]


def evaluate(
    engine: "Engine",
    views: Sequence[str] = (),
    labels: Sequence[LabeledQuery] = (),
    queries: Sequence[str] = (),
    documents: dict[str, int] | None = None,
    progress: Progress | None = None,
    skip_unavailable: bool = False,
    rescore: int | Sequence[int] | None = None,
    two_stage: bool = False,
) -> Evaluation:
    """Evaluate the full index and each view on the engine's stored pages.

    Args:
        engine: an engine whose store holds the documents (index them first).
        views: view specs; "full" and duplicates (by canonical form) are ignored. Views not
            stored yet are computed and stored (no re-encoding).
        labels: labelled queries (checked against the stored documents here).
        queries: extra unlabelled queries, for fidelity only.
        documents: file name in the labels -> stored document id, when the caller knows it
            (e.g. from `Engine.add_files`, which also maps a file whose bytes were stored under
            another name); by default the stored document names.
        progress: progress(fraction, message).
        skip_unavailable: record a view the pages cannot support (e.g. an attention strategy on a
            model without attention) as skipped instead of raising.
        rescore: rescoring depth(s) for quantised views (one row per depth; None: 0, the codes'
            own scores). A depth above MAX_FRONTIER_RESCORE_SHARE of the pages marks its rows
            `off_frontier`.
        two_stage: also search every float view (the full index included) in two stages, with the
            settings' first stage and depth, whatever the view's size (a row "<view> two-stage"
            beside its exhaustive row; off the frontier: it stores the same bytes).

    Returns:
        Evaluation with the full index first, then the views in the order given.

    Raises:
        InvalidLabelsError: a label names a file or page that is not stored.
        InvalidQueryError: no query at all, or one the engine refuses (too long).
        InvalidSpecError, UnknownStrategyError: a bad view spec (or an unsupported one, unless
            skip_unavailable).
    """
    from ..errors import InvalidQueryError

    progress = progress or log_progress
    labels = list(labels)
    documents = checked_documents(engine, labels, documents)
    page_ids = {(r.doc_id, r.page_number): r.id for r in engine.pages()}
    relevant = relevant_pages(engine, labels, documents)
    labelled_texts = [label.query for label in labels]
    texts = labelled_texts + [q for q in dict.fromkeys(q.strip() for q in queries if q.strip())
                              if q not in set(labelled_texts)]
    if not texts:
        raise InvalidQueryError("nothing to evaluate: give labelled queries or at least one query")
    specs = []
    for spec in views:
        canonical = engine.resolve_view(spec)
        if canonical != FULL and canonical not in specs:
            specs.append(canonical)

    progress(0.0, f"encoding {len(texts)} queries")
    embeddings = []
    for i, text in enumerate(texts):
        embeddings.append(engine.encode_query(text))
        progress(0.1 * (i + 1) / len(texts), f"encoded query {i + 1}/{len(texts)}")

    from ..engine import check_rescore

    if rescore is None:
        rescore = 0  # the view's own codes: rescoring is a variant the caller asks for
    depths = list(dict.fromkeys(check_rescore(r) for r in (
        [rescore] if isinstance(rescore, (int, float, str)) else list(rescore) or [0])))
    n_pages = max(1, len(page_ids))
    kinds = sorted({label.kind for label in labels if label.kind})
    results: list[ViewEvaluation] = []
    full_top: list[list[int]] = []
    per_label: dict[str, list[dict[str, float]]] = {}
    runs = [(spec, depth, search) for spec in [FULL] + specs
            for depth in (depths if view_quant(spec) else [None])
            for search in (["exhaustive", TWO_STAGE] if two_stage and not view_quant(spec) else ["exhaustive"])]
    staged = _two_stage_index(engine) if two_stage else None
    try:
        for index, (spec, depth, search) in enumerate(runs):
            start, end = 0.1 + 0.9 * index / len(runs), 0.1 + 0.9 * (index + 1) / len(runs)
            result = ViewEvaluation(view=spec, family=view_family(spec), rescore=depth, search=search,
                                    rescore_share=None if depth is None else (
                                        min(1.0, max(depth, DEPTH) / n_pages) if depth else 0.0))
            results.append(result)
            built = time.perf_counter()
            try:
                if spec != FULL and not engine.store.has_view(spec):
                    engine.ensure_view(spec, scaled_progress(progress, start, start + (end - start) * 0.8))
                    result.build_seconds = time.perf_counter() - built
            except InvalidSpecError as error:
                if not skip_unavailable:
                    raise
                log.warning("skipping view %s: %s", spec, error)
                result.skipped = str(error)
                continue
            progress(start + (end - start) * 0.8, f"{result.label}: searching {len(texts)} queries")
            tops, searched = [], time.perf_counter()
            for embedding in embeddings:
                if search == TWO_STAGE:
                    tops.append([pid for pid, _ in staged.top_k(spec, embedding.vectors, DEPTH)])
                else:
                    tops.append([hit.page_id for hit in engine.search_embedding(embedding, DEPTH, spec, rescore=depth)])
            result.search_ms = 1000 * (time.perf_counter() - searched) / len(texts)
            if spec == FULL and search != TWO_STAGE:
                full_top = tops
            per_label[result.label] = _score(result, tops, full_top, texts, labels, relevant)
            progress(end, f"{result.label}: done")
    finally:
        if staged is not None:
            staged.close()

    memory = {m.view: m.as_dict() for m in engine.views()}
    for result in results:
        result.memory = memory.get(result.view, {})
    full = results[0]
    for result in results:
        if result.skipped:
            continue
        set_retention(result, full, per_label[result.label], per_label[FULL])
    documents_stored = engine.list_documents()
    return Evaluation(
        model=engine.store.model_id,
        documents=len(documents_stored),
        pages=sum(d.n_pages for d in documents_stored),
        queries=texts,
        labelled=len(labels),
        kinds=kinds,
        views=results,
    )


def set_retention(result: ViewEvaluation, full: ViewEvaluation, view_rows: list[dict], full_rows: list[dict]) -> None:
    """A scored view's retention against the full index, its bootstrap intervals (from the per-query
    label metrics of both, same query order) and its retention per kind."""
    result.retention = {m: _ratio(result.metrics[m], full.metrics[m]) for m in result.metrics}
    result.retention_ci = {
        m: bootstrap_retention([r[m] for r in view_rows], [r[m] for r in full_rows]) for m in result.metrics
    }
    for kind, entry in result.by_kind.items():
        base = full.by_kind[kind]["metrics"]
        entry["retention"] = {m: _ratio(entry["metrics"][m], base[m]) for m in entry["metrics"]}


def _score(
    result: ViewEvaluation,
    tops: list[list[int]],
    full_top: list[list[int]],
    texts: list[str],
    labels: list[LabeledQuery],
    relevant: list[set[int]],
) -> list[dict[str, float]]:
    """Fill a ViewEvaluation's metrics, per-kind metrics, fidelity and per-query rows.

    Returns:
        The unrounded label metrics of each labelled query (for the bootstrap).
    """
    per_label = [label_metrics(top, rel) for top, rel in zip(tops, relevant)]
    fidelity = [fidelity_metrics(ref, top) for ref, top in zip(full_top, tops)]
    if labels:
        result.metrics = _mean(per_label, METRICS)
        for kind in sorted({label.kind for label in labels if label.kind}):
            rows = [m for m, label in zip(per_label, labels) if label.kind == kind]
            result.by_kind[kind] = dict(queries=len(rows), metrics=_mean(rows, METRICS))
    result.fidelity = _mean(fidelity, FIDELITY)
    for i, (text, top) in enumerate(zip(texts, tops)):
        row = dict(query=text, top=top, **{k: round(v, 4) for k, v in fidelity[i].items()})
        if i < len(labels):
            row.update(kind=labels[i].kind, rank=first_relevant_rank(top, relevant[i]),
                       **{k: round(v, 4) for k, v in per_label[i].items()})
        result.per_query.append(row)
    return per_label
