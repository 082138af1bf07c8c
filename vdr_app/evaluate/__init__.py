"""Evaluation: how much retrieval quality each view keeps, for the memory it saves.

Three questions, one package (metrics, labels, sweep, run, bootstrap, frontier, report):

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

from ..pareto import pareto_front
from .bootstrap import BOOTSTRAP_RESAMPLES, bootstrap_retention
from .frontier import MAX_FRONTIER_RESCORE_SHARE, STACKED_BUDGETS, frontier_rows, stacked_frontier
from .labels import (
    LABEL_KEYS,
    LabeledQuery,
    check_labels,
    folder_pdfs,
    load_labels,
    load_queries,
    parse_labels,
    parse_queries,
)
from .metrics import (
    FIDELITY,
    METRICS,
    distinctive_phrase,
    fidelity_metrics,
    first_relevant_rank,
    kendall_tau_at_k,
    label_metrics,
    mrr_at_k,
    ndcg_at_k,
    overlap_at_k,
    recall_at_k,
)
from .report import curve_metric, write_html, write_json
from .run import DEPTH, TWO_STAGE, Evaluation, ViewEvaluation, documents_by_name, evaluate, stored_page_counts
from .sweep import (
    FULL,
    SWEEP_DOCPRUNER_K,
    SWEEP_FACTORS,
    SWEEP_PTM,
    SWEEP_QUANTISED,
    SWEEP_QUANTISERS,
    SWEEP_RATIO_STRATEGIES,
    nominal_keep,
    sweep_specs,
    view_family,
    view_quant,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "DEPTH",
    "Evaluation",
    "FIDELITY",
    "FULL",
    "LABEL_KEYS",
    "LabeledQuery",
    "MAX_FRONTIER_RESCORE_SHARE",
    "METRICS",
    "STACKED_BUDGETS",
    "SWEEP_DOCPRUNER_K",
    "SWEEP_FACTORS",
    "SWEEP_PTM",
    "SWEEP_QUANTISED",
    "SWEEP_QUANTISERS",
    "SWEEP_RATIO_STRATEGIES",
    "TWO_STAGE",
    "ViewEvaluation",
    "bootstrap_retention",
    "check_labels",
    "curve_metric",
    "distinctive_phrase",
    "documents_by_name",
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
    "nominal_keep",
    "overlap_at_k",
    "pareto_front",
    "parse_labels",
    "parse_queries",
    "recall_at_k",
    "stacked_frontier",
    "stored_page_counts",
    "sweep_specs",
    "view_family",
    "view_quant",
    "write_html",
    "write_json",
]
