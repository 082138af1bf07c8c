"""Choosing SAP's layer window from labelled pairs: the paper's Oracle Score Retention (OSR).

For one labelled pair (a query's token vectors q_i, and a page relevant to it) and one set of
kept patches,

    OSR = sum_i max_{v in kept} q_i . v  /  sum_i max_{v in full} q_i . v

how much of the relevant page's own MaxSim score survives the pruning (the page's non-image
tokens count on both sides: every view keeps them). For a window [a, b] of decoder layers and a
keep share, the kept patches are the ones `sap:keep=...,layers=a-b` keeps (`sap.sap_order`, the
same ranking and ties), so a window's OSR is exactly what its view would retain of each pair.

`choose_window` scores every contiguous window [a, b], 0 <= a <= b < L (L (L+1) / 2 of them: 21
for MiniLM's 6 layers, 666 for ColQwen2.5's 36; centrality is stored, so each is a re-cut), by its
mean OSR over the pairs at each keep share, and picks the one with the highest mean over the keep
shares. Rules where the paper left room:
  - Ties (equal means, to the last bit) go to the window nearest the paper's middle band
    (sum of the distances of both ends), then the narrower, then the earlier.
  - Fewer than MIN_PAIRS usable pairs is taken as too few to tell windows apart (a floor set by
    judgement, not measured): the middle band is kept, and the choice says so (`calibrated`
    False, `reason`); the OSR table is still computed for whatever pairs there are.
  - A pair whose full score is not positive has nothing to retain and is left out (counted in
    `skipped`).
  - One window for every keep share (the mean over them), as `layers=auto` is one window per
    store: the default shares 1/4, 0.11 and 0.04 are the 75-96 % pruning the window matters for.

The choice is fitted to the labelled pairs it was measured on; its held-out effect is what
`vdr_app eval --sap-window cv` measures (choose on one half of the queries, score on the other).
Pure numpy: pairs come in as vectors and `PageEmbedding`s (`vdr_app.evaluate.sap_window` builds
them from a store and labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np

from vdr_app.errors import InvalidSpecError
from vdr_app.reduce.ops import target_count
from vdr_app.reduce.sap import middle_window, sap_order
from vdr_app.types import PageEmbedding

MIN_PAIRS = 10
DEFAULT_KEEPS = (Fraction(1, 4), Fraction(11, 100), Fraction(1, 25))
RANDOM_SEEDS = 5  # the random baseline: mean over this many seeds, as the paper reports random


@dataclass(frozen=True)
class LabelledPair:
    """One labelled (query, relevant page) pair.

    Attributes:
        query: float (q, d) the query's token vectors.
        page: the relevant page's full embedding, with its per-layer centrality.
    """

    query: np.ndarray
    page: PageEmbedding


def as_keeps(keeps: Sequence[float | str | Fraction]) -> tuple[Fraction, ...]:
    """Keep shares as exact fractions (0.11 -> 11/100, as a spec's `keep=0.11` reads)."""
    try:
        out = tuple(Fraction(str(k)) if not isinstance(k, Fraction) else k for k in keeps)
    except (ValueError, OverflowError):
        out = (Fraction(0),)  # nan, inf
    if not out or any(not 0 < k <= 1 for k in out):
        raise InvalidSpecError(f"keep shares must be in (0, 1], got {', '.join(map(str, keeps)) or 'none'}")
    return out


def windows(n_layers: int) -> list[tuple[int, int]]:
    """Every contiguous window (a, b), 0 <= a <= b < n_layers, in order of a then b."""
    return [(a, b) for a in range(n_layers) for b in range(a, n_layers)]


class _Scored:
    """One pair's similarities, computed once for every window and keep share."""

    def __init__(self, pair: LabelledPair):
        page = pair.page
        query = np.asarray(pair.query, dtype=np.float64)
        self.sims = query @ page.patches.astype(np.float64).T  # (q, n)
        extra = page.extra if page.extra is not None else np.zeros((0, page.dim), np.float32)
        self.extra = (query @ extra.astype(np.float64).T).max(1) if len(extra) else np.full(len(query), -np.inf)
        self.full = float(np.maximum(self.sims.max(1), self.extra).sum())
        self.n = page.n_patches
        self.centrality = page.centrality

    def retention(self, kept_idx: np.ndarray) -> float:
        best = self.sims[:, kept_idx].max(1) if len(kept_idx) else np.full(len(self.extra), -np.inf)
        return float(np.maximum(best, self.extra).sum() / self.full)


def pair_retention(query: np.ndarray, page: PageEmbedding, kept_idx: np.ndarray) -> float:
    """OSR of one pair when only the patches at `kept_idx` (and the page's extra tokens) are kept."""
    return _Scored(LabelledPair(query, page)).retention(np.asarray(kept_idx, dtype=np.int64))


def _usable(pairs: Sequence[LabelledPair]) -> tuple[list[_Scored], int, int]:
    """The pairs' similarity tables, the layer count they share, and how many were left out."""
    if any(p.page.centrality is None for p in pairs):
        raise ValueError("a labelled page has no stored centrality (encoded before it was captured): re-encode it")
    layers = {int(p.page.centrality.shape[0]) for p in pairs}
    if len(layers) > 1:
        raise ValueError(f"the labelled pages come from models of different depths ({sorted(layers)} layers)")
    scored = [_Scored(p) for p in pairs]
    usable = [s for s in scored if s.full > 0]
    return usable, (layers.pop() if layers else 0), len(scored) - len(usable)


def window_retention(pairs: Sequence[LabelledPair], keeps: Sequence[float | Fraction] = DEFAULT_KEEPS,
                     candidates: Sequence[tuple[int, int]] | None = None) -> dict[tuple[int, int], np.ndarray]:
    """Mean OSR of each window at each keep share.

    Args:
        pairs: labelled pairs whose pages share one layer count.
        keeps: keep shares.
        candidates: the windows to score (default: every contiguous window).

    Returns:
        window -> float64 (len(keeps),) mean OSR over the usable pairs (NaN without any).
    """
    keeps = as_keeps(keeps)
    usable, n_layers, _ = _usable(pairs)
    return _window_table(usable, n_layers, keeps, candidates)


def _window_table(usable: list[_Scored], n_layers: int, keeps: tuple[Fraction, ...],
                  candidates: Sequence[tuple[int, int]] | None = None) -> dict[tuple[int, int], np.ndarray]:
    """`window_retention` over pairs whose similarities are computed already."""
    out = {}
    for a, b in candidates if candidates is not None else windows(n_layers):
        values = np.full((len(usable), len(keeps)), np.nan)
        for i, s in enumerate(usable):
            order, _ = sap_order(s.centrality, f"{a}-{b}")
            for j, keep in enumerate(keeps):
                values[i, j] = s.retention(order[: target_count(s.n, keep)])
        out[(a, b)] = values.mean(0) if len(usable) else np.full(len(keeps), np.nan)
    return out


def random_retention(pairs: Sequence[LabelledPair], keeps: Sequence[float | Fraction] = DEFAULT_KEEPS,
                     seeds: int = RANDOM_SEEDS) -> np.ndarray:
    """Mean OSR of `random` pruning (its own patch choice, seeds 0..seeds-1 averaged): the floor a
    window has to beat. Returns float64 (len(keeps),)."""
    from vdr_app.reduce import reduce_page

    keeps = as_keeps(keeps)
    usable = [(pair, scored) for pair, scored in ((p, _Scored(p)) for p in pairs) if scored.full > 0]
    values = np.full((len(usable), len(keeps)), np.nan)
    for i, (pair, scored) in enumerate(usable):
        for j, keep in enumerate(keeps):
            values[i, j] = np.mean([scored.retention(np.flatnonzero(
                reduce_page(pair.page, f"random:keep={keep},seed={seed}").groups >= 0)) for seed in range(seeds)])
    return values.mean(0) if len(usable) else np.full(len(keeps), np.nan)


@dataclass(frozen=True)
class WindowChoice:
    """The window `choose_window` picked, and what it was picked from.

    Attributes:
        window: (first, last) decoder layers, 0-based, inclusive.
        n_layers: the model's decoder layers.
        calibrated: True if chosen by OSR; False if the middle band was kept (too few pairs).
        reason: one line saying which and why.
        keeps: the keep shares the OSR was averaged over.
        pairs: usable pairs measured; skipped: pairs left out (no positive full score).
        osr: window -> mean OSR at each keep share (every contiguous window).
    """

    window: tuple[int, int]
    n_layers: int
    calibrated: bool
    reason: str
    keeps: tuple[Fraction, ...]
    pairs: int
    skipped: int = 0
    osr: dict[tuple[int, int], tuple[float, ...]] = field(default_factory=dict)

    @property
    def layers(self) -> str:
        """The window as a spec's `layers=` value ("4-5")."""
        return f"{self.window[0]}-{self.window[1]}"

    def mean(self, window: tuple[int, int]) -> float:
        """A window's OSR averaged over the keep shares (NaN if it was not measured)."""
        values = self.osr.get(tuple(window))
        return float(np.mean(values)) if values else float("nan")

    def ranked(self) -> list[tuple[int, int]]:
        """The measured windows, best first (the chooser's order, ties included)."""
        return sorted(self.osr, key=lambda w: _rank_key(w, self.mean(w), middle_window(self.n_layers)))

    def as_dict(self) -> dict:
        return dict(
            layers=self.layers, n_layers=self.n_layers, calibrated=self.calibrated, reason=self.reason,
            keeps=[float(k) for k in self.keeps], pairs=self.pairs, skipped=self.skipped,
            middle_band="{}-{}".format(*middle_window(self.n_layers)),
            osr={f"{a}-{b}": [round(v, 6) for v in values] for (a, b), values in self.osr.items()},
        )


def _rank_key(window: tuple[int, int], mean: float, band: tuple[int, int]) -> tuple:
    a, b = window
    return (-mean if mean == mean else np.inf, abs(a - band[0]) + abs(b - band[1]), b - a, a)


def choose_window(pairs: Sequence[LabelledPair], keeps: Sequence[float | Fraction] = DEFAULT_KEEPS,
                  min_pairs: int = MIN_PAIRS) -> WindowChoice:
    """The contiguous layer window with the highest mean OSR over `keeps` (see the module doc).

    Raises:
        ValueError: no pairs, a page without centrality, or pages of different depths.
    """
    keeps = as_keeps(keeps)
    if not pairs:
        raise ValueError("no labelled (query, page) pairs to choose a window from")
    usable, n_layers, skipped = _usable(pairs)
    band = middle_window(n_layers)
    table = {w: tuple(float(v) for v in values) for w, values in _window_table(usable, n_layers, keeps).items()}
    if len(usable) < min_pairs:
        return WindowChoice(band, n_layers, False,
                            f"middle band {band[0]}-{band[1]} kept: {len(usable)} usable labelled pairs, fewer than "
                            f"the {min_pairs} a choice needs", keeps, len(usable), skipped, table)
    choice = WindowChoice(band, n_layers, True, "", keeps, len(usable), skipped, table)
    best = choice.ranked()[0]
    return WindowChoice(best, n_layers, True,
                        f"layers {best[0]}-{best[1]} of {n_layers}: highest mean score retention over "
                        f"{len(usable)} labelled pairs at keep {', '.join(f'{float(k):g}' for k in keeps)} "
                        f"({choice.mean(best):.1%}; middle band {band[0]}-{band[1]}: {choice.mean(band):.1%})",
                        keeps, len(usable), skipped, table)
