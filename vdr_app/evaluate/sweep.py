"""The default sweep grid of views, and what a view spec says about itself (family, precision,
nominal share kept)."""

from __future__ import annotations

FULL = "full"


# The default sweep (see `sweep_specs`). Factors 2, 4, 9, 25, 49 keep 50 %, 25 %, 11 %, 4 % and
# 2 % of a page's patches: Light-ColPali's merging factors (9, 25, 49) plus the two mild ones.
SWEEP_FACTORS = (2, 4, 9, 25, 49)
SWEEP_RATIO_STRATEGIES = ("random", "attention", "pool1d", "pool2d", "cluster")
SWEEP_DOCPRUNER_K = ("-0.5", "-0.25", "0", "0.5", "1")
SWEEP_PTM = (("-0.75", 2), ("-0.75", 4), ("-0.5", 2), ("-0.5", 4))  # (DocPruner k, merge factor)
# Quantised variants of the main strategies (each @int8, @int4, @int2 and @binary): the full index,
# the two merging strategies that do best at equal memory, and DocPruner at its default.
SWEEP_QUANTISERS = ("int8", "int4", "int2", "binary")
SWEEP_QUANTISED = ("full", "pool1d:factor=2", "pool1d:factor=9", "pool1d:factor=49", "cluster:factor=2",
                   "cluster:factor=9", "cluster:factor=49", "docpruner:k=-0.25")


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
