"""Ranking metrics of one query (binary relevance) and the label-free fidelity of one ranking
against another (definitions: `vdr_app.evaluate`). Pure functions, no engine."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

# The metrics computed against labels, in table order.
METRICS = ("ndcg@5", "recall@1", "recall@5", "mrr@10")
# The label-free fidelity figures, in table order.
FIDELITY = ("overlap@5", "overlap@10", "kendall_tau@10", "top1_agreement")


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
