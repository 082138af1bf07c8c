"""Evaluation: how much retrieval quality each view keeps, for the memory it saves.

Three questions, one module:

1. **With labels** (JSON lines `{"query": ..., "file": "x.pdf", "page": 3, "kind": "table"}`):
   nDCG@5, recall@1, recall@5 and MRR@10 of the full index and of every view, and each view's
   *retention* = metric(view) / metric(full), the ratio of the means over queries (Light-ColPali's
   aggregation). A query may appear on several lines, one per relevant page; relevance is binary.
2. **Without labels** (just queries): *fidelity*, how far a view's ranking moves from the full
   index's, so a view can be judged before anything is labelled (see `overlap_at_k` and
   `kendall_tau_at_k` for the exact definitions).
3. **Sweeps**: `sweep_specs()` is the default grid that draws the whole trade-off curve at once.

Everything goes through `Engine`: views are derived from the stored full embeddings (no
re-encoding), queries are encoded once and searched against every view.

Metric definitions (binary relevance, R = the query's relevant pages, r_i = 1 if the page at rank
i is relevant):
    nDCG@k   = Σ_{i≤k} r_i / log2(i+1)  /  Σ_{i≤min(|R|,k)} 1 / log2(i+1)
    recall@k = |R ∩ top-k| / |R|            (with one relevant page: hit rate at k)
    MRR@k    = 1 / rank of the first relevant page if it is within the top k, else 0
All are averaged over queries (macro). Memory counts every stored vector, non-image tokens
included, at the bytes it is stored in: float16, or a quantised view's codes and scales (see
vdr_app.memory). A quantised view (`...@int8`, `...@int4`, `...@int2`, `...@binary`) is evaluated
on its own codes (rescore 0) unless other rescoring depths are asked for (`rescore`); each depth
is a row of its own, a *variant* of the view. Rescoring is not a property of the view: a variant
whose depth, max(rescore, 10), re-scores more than MAX_FRONTIER_RESCORE_SHARE of the library's
pages with the float vectors is marked (`off_frontier`) and never placed on the Pareto frontier
(on a 30-page library, rescoring 100 deep is the float view's ranking, whatever the codes).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..errors import InvalidLabelsError, InvalidSpecError, NotFoundError
from ..memory import format_bytes
from ..pareto import pareto_front
from ..types import Progress, log_progress, scaled_progress

if TYPE_CHECKING:  # the engine pulls in the whole pipeline; evaluate's pure parts do not need it
    from ..engine import Engine

log = logging.getLogger(__name__)

FULL = "full"
# The metrics computed against labels, in table order.
METRICS = ("ndcg@5", "recall@1", "recall@5", "mrr@10")
# The label-free fidelity figures, in table order.
FIDELITY = ("overlap@5", "overlap@10", "kendall_tau@10", "top1_agreement")
BOOTSTRAP_RESAMPLES = 2000
DEPTH = 10  # ranks retrieved per query: enough for MRR@10 and the fidelity figures
LABEL_KEYS = ("query", "file", "page", "kind")
MAX_ERRORS_SHOWN = 5

# The default sweep (see `sweep_specs`). Factors 2, 4, 9, 25, 49 keep 50 %, 25 %, 11 %, 4 % and
# 2 % of a page's patches: Light-ColPali's merging factors (9, 25, 49) plus the two mild ones.
SWEEP_FACTORS = (2, 4, 9, 25, 49)
SWEEP_RATIO_STRATEGIES = ("random", "attention", "pool1d", "pool2d", "cluster")
SWEEP_DOCPRUNER_K = ("-0.5", "-0.25", "0", "0.5", "1")
SWEEP_PTM = (("-0.75", 2), ("-0.75", 4), ("-0.5", 2), ("-0.5", 4))  # (DocPruner k, merge factor)
# Quantised variants of the main strategies (each @int8, @int4, @int2 and @binary): the full index,
# the two merging strategies that do best at equal memory, and DocPruner at its default.
SWEEP_QUANTISERS = ("int8", "int4", "int2", "binary")
# A rescoring variant that re-scores more than this share of the library is left off the frontier.
MAX_FRONTIER_RESCORE_SHARE = 0.05
SWEEP_QUANTISED = ("full", "pool1d:factor=2", "pool1d:factor=9", "pool1d:factor=49", "cluster:factor=2",
                   "cluster:factor=9", "cluster:factor=49", "docpruner:k=-0.25")


# -- metrics (pure) -------------------------------------------------------------------------------


def ndcg_at_k(ranked: Sequence, relevant: Iterable, k: int = 5) -> float:
    """Binary nDCG@k of one ranking.

    Args:
        ranked: page keys, best first (only the first k are read).
        relevant: the relevant page keys (non-empty).
        k: cut-off.

    Returns:
        DCG@k / ideal DCG@k in [0, 1]; 1.0 when every relevant page (up to k) leads the ranking.
    """
    relevant = set(relevant)
    if not relevant:
        raise ValueError("nDCG needs at least one relevant page")
    dcg = sum(1.0 / math.log2(i + 2) for i, key in enumerate(ranked[:k]) if key in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at_k(ranked: Sequence, relevant: Iterable, k: int) -> float:
    """Share of the relevant pages found in the top k."""
    relevant = set(relevant)
    if not relevant:
        raise ValueError("recall needs at least one relevant page")
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence, relevant: Iterable, k: int = 10) -> float:
    """Reciprocal rank of the first relevant page within the top k (0 when none is)."""
    relevant = set(relevant)
    for i, key in enumerate(ranked[:k]):
        if key in relevant:
            return 1.0 / (i + 1)
    return 0.0


def first_relevant_rank(ranked: Sequence, relevant: Iterable) -> int | None:
    """1-based rank of the first relevant page in `ranked`, or None."""
    relevant = set(relevant)
    return next((i + 1 for i, key in enumerate(ranked) if key in relevant), None)


def label_metrics(ranked: Sequence, relevant: Iterable) -> dict[str, float]:
    """Every metric of `METRICS` for one ranking (at least 10 deep for MRR@10)."""
    relevant = set(relevant)
    return {
        "ndcg@5": ndcg_at_k(ranked, relevant, 5),
        "recall@1": recall_at_k(ranked, relevant, 1),
        "recall@5": recall_at_k(ranked, relevant, 5),
        "mrr@10": mrr_at_k(ranked, relevant, 10),
    }


def overlap_at_k(reference: Sequence, other: Sequence, k: int) -> float:
    """|top-k(reference) ∩ top-k(other)| / min(k, |reference|): 1.0 when the same pages lead.

    The denominator is the number of pages the reference ranks (at most k), so a corpus smaller
    than k does not cap the figure below 1. Two empty rankings overlap fully.
    """
    top = list(reference[:k])
    if not top:
        return 1.0
    return len(set(top).intersection(other[:k])) / len(top)


def kendall_tau_at_k(reference: Sequence, other: Sequence, k: int = 10) -> float:
    """Kendall's τ-b between two top-k lists over the union of their pages.

    Every page in either top k gets a rank in each list: its position (1..k) if the list holds
    it, else k + 1 (tied at the bottom: "beyond the cut-off"). τ-b (which corrects for those
    ties) is then taken over the paired ranks. 1.0 means the same pages in the same order;
    swapping, dropping or replacing pages lowers it; disjoint lists give a negative value.
    When τ-b is undefined (fewer than two pages, or one list holds no page of the union) it is
    1.0 if the two lists are identical and 0.0 otherwise.
    """
    from scipy.stats import kendalltau

    a, b = list(reference[:k]), list(other[:k])
    if a == b:
        return 1.0  # exactly, not scipy's 0.9999999999999999
    union = list(dict.fromkeys(a + b))
    if len(union) < 2 or not a or not b:
        return 1.0 if a == b else 0.0
    rank_a = {key: i + 1 for i, key in enumerate(a)}
    rank_b = {key: i + 1 for i, key in enumerate(b)}
    x = [rank_a.get(key, k + 1) for key in union]
    y = [rank_b.get(key, k + 1) for key in union]
    tau = kendalltau(x, y).statistic
    return float(tau) if np.isfinite(tau) else (1.0 if a == b else 0.0)


def fidelity_metrics(reference: Sequence, other: Sequence) -> dict[str, float]:
    """Every figure of `FIDELITY` for one query: a view's ranking against the full index's."""
    return {
        "overlap@5": overlap_at_k(reference, other, 5),
        "overlap@10": overlap_at_k(reference, other, 10),
        "kendall_tau@10": kendall_tau_at_k(reference, other, 10),
        "top1_agreement": _same_first(reference, other),
    }


def distinctive_phrase(words: Sequence[str], other_pages: Sequence[str], length: int = 6) -> str | None:
    """A run of `length` words from the middle of a page that no other page contains (lower-cased).

    Self-retrieval queries without labels: such a phrase should find its own page first.

    Args:
        words: the page's words in reading order.
        other_pages: every other page's text, lower-cased.
        length: words in the phrase.

    Returns:
        the phrase, or None when the page is too short or every candidate occurs elsewhere.
    """
    words = [w for w in words if any(ch.isalnum() for ch in w)]
    if len(words) < 2 * length:
        return None
    for at in (len(words) // 2, len(words) // 3, 2 * len(words) // 3):
        phrase = " ".join(words[at : at + length])
        if not any(phrase.lower() in other for other in other_pages):
            return phrase
    return None


def _same_first(reference: Sequence, other: Sequence) -> float:
    """1.0 when both rankings lead with the same page (or are both empty), else 0.0."""
    if not reference or not other:
        return float(not reference and not other)
    return float(reference[0] == other[0])


def _mean(rows: list[dict[str, float]], keys: Sequence[str]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) if rows else float("nan") for key in keys}


def _ratio(view: float, full: float) -> float | None:
    """view / full, or None when the full index scores 0 (retention undefined)."""
    return view / full if full > 0 else None


def frontier_rows(views: Sequence[dict], y: str = "retention.ndcg@5") -> list[dict]:
    """The rows of `Evaluation.as_dict()["views"]` on the memory (bytes) / quality Pareto front
    (rows marked `off_frontier`, deep rescoring variants, never are)."""
    rows = [r for r in views if not r.get("skipped") and not r.get("off_frontier")]
    points = [(_row_bytes(r), _dotted_value(r, y)) for r in rows]
    return [rows[i] for i in pareto_front(points)]


# Byte budgets (shares of the float16 full index) of the stacked frontier table.
STACKED_BUDGETS = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def stacked_frontier(views: Sequence[dict], budgets: Sequence[float] = STACKED_BUDGETS,
                     y: str = "retention.ndcg@5") -> list[tuple[float, dict | None]]:
    """Best strategy × precision per byte budget: for each budget (a share of the full index's
    bytes), the row of `Evaluation.as_dict()["views"]` with the highest `y` among those that
    store at most that share (ties: fewer bytes), or None when none fits. Skipped rows and rows
    marked `off_frontier` (deep rescoring variants) never count."""
    rows = [r for r in views if not r.get("skipped") and not r.get("off_frontier")
            and r.get("memory_ratio") is not None and _dotted_value(r, y) is not None]
    out = []
    for budget in budgets:
        fits = [r for r in rows if r["memory_ratio"] <= budget + 1e-12]
        best = max(fits, key=lambda r: (_dotted_value(r, y), -r["memory_ratio"]), default=None)
        out.append((float(budget), best))
    return out


def _row_bytes(row: dict) -> float | None:
    value = (row.get("memory") or {}).get("bytes")
    return float(value) if value else None


def _dotted_value(row: dict, path: str):
    value = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else float(value)


# -- label and query files ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledQuery:
    """One query with its relevant pages.

    Attributes:
        query: the query text.
        relevant: (file name, 1-based page) pairs, in file order.
        kind: the optional category ("text", "table", ...), or None.
        lines: the 1-based lines of the label file it came from.
    """

    query: str
    relevant: tuple[tuple[str, int], ...]
    kind: str | None = None
    lines: tuple[int, ...] = ()


def _raise_errors(errors: list[str]) -> None:
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
        raise InvalidLabelsError("; ".join(shown) + more)


def parse_labels(text: str, source: str = "labels") -> list[LabeledQuery]:
    """Parse a JSON-lines label file (no check that files and pages exist: see `check_labels`).

    Each non-blank line is an object with "query" (non-empty text), "file" (a PDF file name),
    "page" (1-based integer) and optionally "kind" (text). Lines repeating a query add relevant
    pages to it (their kinds must agree).

    Args:
        text: the file's content.
        source: the name used in error messages (the file name).

    Returns:
        The queries in order of first appearance.

    Raises:
        InvalidLabelsError: naming `source:line` and what is wrong, for every bad line (the first
            five are shown).
    """
    errors: list[str] = []
    merged: dict[str, dict] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(f"{where}: not valid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}: expected a JSON object like "
                          '{"query": "...", "file": "doc.pdf", "page": 1}, got ' + type(row).__name__)
            continue
        unknown = sorted(set(row) - set(LABEL_KEYS))
        if unknown:
            errors.append(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(LABEL_KEYS)})")
            continue
        missing = [key for key in ("query", "file", "page") if key not in row]
        if missing:
            errors.append(f"{where}: missing {', '.join(repr(m) for m in missing)}")
            continue
        query, file, page, kind = row["query"], row["file"], row["page"], row.get("kind")
        if not isinstance(query, str) or not query.strip():
            errors.append(f"{where}: 'query' must be non-empty text, got {query!r}")
            continue
        if not isinstance(file, str) or not file.strip():
            errors.append(f"{where}: 'file' must be a PDF file name, got {file!r}")
            continue
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            errors.append(f"{where}: 'page' must be a page number >= 1, got {page!r}")
            continue
        if kind is not None and (not isinstance(kind, str) or not kind.strip()):
            errors.append(f"{where}: 'kind' must be non-empty text when given, got {kind!r}")
            continue
        query, file = query.strip(), Path(file.strip()).name
        kind = kind.strip() if kind is not None else None
        entry = merged.setdefault(query, dict(relevant=[], kind=kind, lines=[]))
        if entry["kind"] != kind:
            errors.append(f"{where}: kind {kind!r} differs from {entry['kind']!r} given for the same query "
                          f"on line {entry['lines'][0]}")
            continue
        if (file, page) not in entry["relevant"]:
            entry["relevant"].append((file, page))
        entry["lines"].append(number)
    _raise_errors(errors)
    if not merged:
        raise InvalidLabelsError(f"{source}: no labelled queries (expected JSON lines like "
                                 '{"query": "...", "file": "doc.pdf", "page": 1})')
    return [LabeledQuery(q, tuple(e["relevant"]), e["kind"], tuple(e["lines"])) for q, e in merged.items()]


def check_labels(labels: Sequence[LabeledQuery], page_counts: dict[str, int], source: str = "labels") -> None:
    """Check that every labelled page exists.

    Args:
        labels: parsed labels.
        page_counts: file name -> number of pages, of the documents being evaluated.
        source: the name used in error messages.

    Raises:
        InvalidLabelsError: naming the line, the file (with close matches) or the page and the
            file's page count.
    """
    errors = []
    for label in labels:
        for i, (file, page) in enumerate(label.relevant):
            line = label.lines[min(i, len(label.lines) - 1)] if label.lines else "?"
            where = f"{source}:{line}"
            if file not in page_counts:
                close = difflib.get_close_matches(file, list(page_counts), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                errors.append(f"{where}: unknown file {file!r}, not among the {len(page_counts)} documents{hint}")
            elif not 1 <= page <= page_counts[file]:
                errors.append(f"{where}: page {page} is out of range: {file!r} has {page_counts[file]} pages")
    _raise_errors(errors)


def load_labels(path: str | Path, page_counts: dict[str, int] | None = None) -> list[LabeledQuery]:
    """Read, parse and (when `page_counts` is given) check a label file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such label file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidLabelsError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    labels = parse_labels(text, path.name)
    if page_counts is not None:
        check_labels(labels, page_counts, path.name)
    return labels


def parse_queries(text: str) -> list[str]:
    """Queries from text, one per line: blank lines skipped, surrounding spaces removed, duplicates dropped."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def load_queries(path: str | Path) -> list[str]:
    """Read a query file (UTF-8 text, one query per line)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such query file")
    queries = parse_queries(path.read_text(encoding="utf-8"))
    if not queries:
        raise InvalidLabelsError(f"{path}: no queries (expected one query per line)")
    return queries


def folder_pdfs(folder: str | Path) -> list[Path]:
    """The PDF files directly inside a folder, sorted by name (NotFoundError when none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"{folder}: no such folder")
    pdfs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".pdf")
    if not pdfs:
        raise NotFoundError(f"{folder}: no PDF files in this folder")
    return pdfs


# -- the sweep grid -------------------------------------------------------------------------------


def sweep_specs() -> list[str]:
    """The default sweep, as canonical view specs (only strategies that are registered).

    - random, attention, pool1d, pool2d, cluster at factor 2, 4, 9, 25, 49 (keep 50 %, 25 %,
      11 %, 4 %, 2 %). pool2d turns a factor into a kernel: squares 4/9/25/49 give 2×2, 3×3,
      5×5, 7×7 blocks, factor 2 a 1×2 block (see `vdr_app.reduce.pool2d_kernel`); its realised
      ratio is a little above 1/factor because of border blocks, and is measured, not assumed.
    - docpruner at k = -0.5, -0.25, 0, 0.5, 1 (adaptive: the kept share varies per page).
    - prune_then_merge at k = -0.75 and -0.5, each merged by factor 2 and 4 (PtM's grid).
    - quantised variants, @int8, @int4, @int2 and @binary, of the full index, pool1d and cluster at factors 2,
      9 and 49, and docpruner at k = -0.25 (`SWEEP_QUANTISED`).
    """
    from .. import reduce as reduce_lib

    known = set(reduce_lib.available_strategies())
    specs = []
    for name in SWEEP_RATIO_STRATEGIES:
        if name in known:
            specs += [str(reduce_lib.make_spec(name, factor=f)) for f in SWEEP_FACTORS]
    if "docpruner" in known:
        specs += [str(reduce_lib.make_spec("docpruner", k=k)) for k in SWEEP_DOCPRUNER_K]
    if "prune_then_merge" in known:
        specs += [str(reduce_lib.make_spec("prune_then_merge", k=k, factor=f)) for k, f in SWEEP_PTM]
    for base in SWEEP_QUANTISED:
        parsed = reduce_lib.parse_spec(base)
        if parsed.strategy in known:
            for quant in SWEEP_QUANTISERS:
                text = str(reduce_lib.ViewSpec(parsed.strategy, parsed.values, quant))
                specs.append(text.replace("identity@", "full@"))
    return list(dict.fromkeys(specs))


def view_family(spec: str) -> str:
    """The strategy a view belongs to ("full" for the full index, quantised or not): one curve
    per family and precision."""
    if spec == FULL:
        return FULL
    from .. import reduce as reduce_lib

    strategy = reduce_lib.parse_spec(spec).strategy
    return FULL if strategy == "identity" else strategy


def view_quant(spec: str) -> str | None:
    """A view's quantiser ("int8", "int4", "int2", "binary") or None."""
    if spec == FULL:
        return None
    from .. import reduce as reduce_lib

    return reduce_lib.parse_spec(spec).quant


def nominal_keep(spec: str) -> float | None:
    """The share of patches a view asks to keep (None for adaptive strategies and full)."""
    if spec == FULL:
        return 1.0
    from .. import reduce as reduce_lib

    parsed = reduce_lib.parse_spec(spec)
    keep = parsed.nominal_keep
    if parsed.strategy == "identity":
        return 1.0
    if parsed.strategy == "prune_then_merge":
        return None  # keep applies to DocPruner's survivors, whose share varies per page
    return keep


# -- running an evaluation ------------------------------------------------------------------------


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
        rescore: for a quantised view, the rescoring depth it was searched with (None otherwise).
        rescore_share: for a rescoring variant (rescore > 0), the share of the library's pages
            it re-scores with float vectors, max(rescore, 10) / pages (capped at 1); 0 for
            rescore 0; None for float views.
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

    @property
    def memory_ratio(self) -> float | None:
        return self.memory.get("ratio_to_full")

    @property
    def label(self) -> str:
        """The row's name: the view, and for a rescoring variant its depth."""
        if not self.rescore:
            return self.view
        return f"{self.view} rescore={self.rescore}"

    @property
    def off_frontier(self) -> str | None:
        """Why this row may not stand on the frontier (a deep rescoring variant), or None."""
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
            build_seconds=round(self.build_seconds, 3),
            search_ms=round(self.search_ms, 3), skipped=self.skipped,
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


def stored_page_counts(engine: "Engine") -> dict[str, int]:
    """Stored document name -> number of pages (for `check_labels` against a store)."""
    return {doc.name: doc.n_pages for doc in engine.list_documents()}


def evaluate(
    engine: "Engine",
    views: Sequence[str] = (),
    labels: Sequence[LabeledQuery] = (),
    queries: Sequence[str] = (),
    documents: dict[str, int] | None = None,
    progress: Progress | None = None,
    skip_unavailable: bool = False,
    rescore: int | Sequence[int] | None = None,
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
    if documents is None:
        documents = documents_by_name(engine)
        check_labels(labels, stored_page_counts(engine))
    else:
        known = {doc.id: doc.n_pages for doc in engine.list_documents()}
        check_labels(labels, {name: known.get(doc_id, 0) for name, doc_id in documents.items()})
    page_ids = {(r.doc_id, r.page_number): r.id for r in engine.pages()}
    relevant = [
        {page_ids[(documents[file], page)] for file, page in label.relevant} for label in labels
    ]
    labelled_texts = [label.query for label in labels]
    texts = labelled_texts + [q for q in dict.fromkeys(q.strip() for q in queries if q.strip())
                              if q not in set(labelled_texts)]
    if not texts:
        raise InvalidQueryError("nothing to evaluate: give labelled queries or at least one query")
    specs = []
    for spec in views:
        canonical = engine.canonical_view(spec)
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
    runs = [(spec, depth) for spec in [FULL] + specs
            for depth in (depths if view_quant(spec) else [None])]
    for index, (spec, depth) in enumerate(runs):
        start, end = 0.1 + 0.9 * index / len(runs), 0.1 + 0.9 * (index + 1) / len(runs)
        result = ViewEvaluation(view=spec, family=view_family(spec), rescore=depth,
                                rescore_share=None if depth is None else (min(1.0, max(depth, DEPTH) / n_pages)
                                                                          if depth else 0.0))
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
            tops.append([hit.page_id for hit in engine.search_embedding(embedding, DEPTH, spec, rescore=depth)])
        result.search_ms = 1000 * (time.perf_counter() - searched) / len(texts)
        if spec == FULL:
            full_top = tops
        per_label[result.label] = _score(result, tops, full_top, texts, labels, relevant)
        progress(end, f"{result.label}: done")

    memory = {m.view: m.as_dict() for m in engine.views()}
    for result in results:
        result.memory = memory.get(result.view, {})
    full = results[0]
    for result in results:
        if result.skipped:
            continue
        result.retention = {m: _ratio(result.metrics[m], full.metrics[m]) for m in result.metrics}
        result.retention_ci = {
            m: bootstrap_retention([r[m] for r in per_label[result.label]], [r[m] for r in per_label[FULL]])
            for m in result.metrics
        }
        for kind, entry in result.by_kind.items():
            base = full.by_kind[kind]["metrics"]
            entry["retention"] = {m: _ratio(entry["metrics"][m], base[m]) for m in entry["metrics"]}
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


def bootstrap_retention(
    view: Sequence[float], full: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> list[float] | None:
    """95 % percentile-bootstrap interval of mean(view) / mean(full), resampling queries in pairs.

    Each resample draws n queries with replacement and takes the ratio of the two means over the
    same draw, so the interval reflects how much the retention depends on which queries were
    asked. Resamples whose full-index mean is 0 are dropped.

    Args:
        view, full: one metric per query, (n,) each, same query order.

    Returns:
        [low, high], or None without queries or when the full index scores 0 everywhere.
    """
    v, f = np.asarray(view, dtype=np.float64), np.asarray(full, dtype=np.float64)
    if v.size == 0 or not f.any():
        return None
    draws = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))  # (B, n)
    den = f[draws].mean(axis=1)
    ratios = v[draws].mean(axis=1)[den > 0] / den[den > 0]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return [float(low), float(high)]


def write_json(evaluation: Evaluation, path: str | Path) -> Path:
    """Write every figure of an evaluation as JSON (UTF-8, indented)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def curve_metric(evaluation: Evaluation) -> tuple[str, str]:
    """What the trade-off curve plots: ("retention.ndcg@5", label) with labels, else overlap@10."""
    if evaluation.labelled:
        return "retention.ndcg@5", "nDCG@5 retention (view / full)"
    return "fidelity.overlap@10", "overlap@10 with the full index (label-free)"


def write_html(evaluation: Evaluation, path: str | Path, include_plotlyjs: bool | str = True) -> Path:
    """Save the retention-vs-memory figure as a standalone HTML file (plotly.js inlined by default,
    so it opens offline)."""
    from ..figures import retention_figure

    y, title = curve_metric(evaluation)
    figure = retention_figure(evaluation.as_dict(per_query=False)["views"], y=y, y_title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(str(path), include_plotlyjs=include_plotlyjs, full_html=True)
    return path


__all__ = [
    "Evaluation",
    "FIDELITY",
    "LabeledQuery",
    "MAX_FRONTIER_RESCORE_SHARE",
    "METRICS",
    "ViewEvaluation",
    "bootstrap_retention",
    "check_labels",
    "curve_metric",
    "evaluate",
    "fidelity_metrics",
    "first_relevant_rank",
    "folder_pdfs",
    "frontier_rows",
    "kendall_tau_at_k",
    "label_metrics",
    "load_labels",
    "load_queries",
    "mrr_at_k",
    "ndcg_at_k",
    "overlap_at_k",
    "parse_labels",
    "pareto_front",
    "parse_queries",
    "recall_at_k",
    "stacked_frontier",
    "sweep_specs",
    "view_family",
    "view_quant",
    "write_html",
    "write_json",
]
