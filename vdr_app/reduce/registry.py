"""The name → strategy registry and the description of each strategy's parameters.

A strategy is a pure function `func(page, **params) -> (vectors, groups, info)` over one page's
`PageEmbedding`; `reduce_page` (in `vdr_app.reduce`) wraps its result in a `Reduction`. Registering
a function here is all it takes for it to reach the CLI, the UI, the evaluation and the
parametrised tests.

Kinds say how to read a strategy's `groups`:
    PRUNING  the strategy may drop patches (group -1).
    MERGING  an output vector may stand for several patches (its group's normalised mean).
A strategy with neither kind keeps every patch as it is (identity); prune-then-merge has both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from vdr_app.errors import UnknownStrategyError

PRUNING = "pruning"
MERGING = "merging"

# Parameter types. A "ratio" is the share of image patches a view keeps, given either as
# `keep` in (0, 1] or as `factor` >= 1 meaning keep = 1/factor (see vdr_app.reduce.spec).
RATIO = "ratio"
FLOAT = "float"
INT = "int"
CHOICE = "choice"
# A range of decoder layers: "auto" (the strategy chooses) or "a-b" / "a" (0-based, inclusive).
LAYERS = "layers"

# Other spellings of strategy names accepted by `parse_spec`.
ALIASES = {"full": "identity"}


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy.

    Attributes:
        name: the name in specs (for RATIO always "keep"; "factor" is accepted as well).
        type: RATIO, FLOAT, INT or CHOICE.
        default: the value an omitted parameter takes (for RATIO: the keep share as a string
            such as "1/9" or "0.5", parsed exactly).
        doc: one line for the UI and README.
        low, high: inclusive bounds for FLOAT and INT (None: unbounded).
        choices: allowed values for CHOICE.
    """

    name: str
    type: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> dict:
        """JSON-friendly description (bounds, aliases) for `describe_strategies`."""
        out: dict[str, Any] = dict(name=self.name, type=self.type, doc=self.doc)
        if self.type == RATIO:
            from fractions import Fraction

            keep = Fraction(self.default)
            out.update(default=float(keep), range="keep in (0, 1]; or factor >= 1 (keep = 1/factor)",
                       aliases=["factor"], default_factor=float(1 / keep))
        elif self.type == CHOICE:
            out.update(default=self.default, choices=list(self.choices))
        elif self.type == LAYERS:
            out.update(default=self.default, range="auto, or first-last decoder layers (0-based, inclusive)")
        else:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            out.update(default=self.default, range=f"[{lo}, {hi}]")
        return out


@dataclass(frozen=True)
class Strategy:
    """A registered reduction strategy.

    Attributes:
        name: registry name, used in specs.
        func: `func(page, **params) -> (vectors (k, d), groups (n,), info dict)`.
        kinds: subset of {PRUNING, MERGING}.
        params: the parameters, each always passed (defaults filled by `parse_spec`).
        doc: one line for the UI and README.
        needs_attention: refuses pages whose `attention` is None.
        needs_centrality: refuses pages whose `centrality` is None (encoded before it was captured).
    """

    name: str
    func: Callable[..., tuple]
    kinds: frozenset[str]
    params: tuple[Param, ...] = ()
    doc: str = ""
    needs_attention: bool = False
    needs_centrality: bool = False
    param_by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_by_name", {p.name: p for p in self.params})

    @property
    def ratio_param(self) -> Param | None:
        """The RATIO parameter, if the strategy takes one."""
        return next((p for p in self.params if p.type == RATIO), None)


_REGISTRY: dict[str, Strategy] = {}


def register(
    name: str,
    *,
    kinds: set[str] | frozenset[str] = frozenset(),
    params: tuple[Param, ...] = (),
    doc: str = "",
    needs_attention: bool = False,
    needs_centrality: bool = False,
) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Decorator registering `func(page, **params) -> (vectors, groups, info)` under `name`.

    Raises:
        ValueError: the name is taken, or a kind or parameter is malformed (a programming error).
    """
    if name in _REGISTRY or name in ALIASES:
        raise ValueError(f"strategy {name!r} is already registered")
    if not set(kinds) <= {PRUNING, MERGING}:
        raise ValueError(f"unknown kinds {set(kinds) - {PRUNING, MERGING}} for strategy {name!r}")
    if sum(p.type == RATIO for p in params) > 1:
        raise ValueError(f"strategy {name!r} has more than one ratio parameter")

    def wrap(func: Callable[..., tuple]) -> Callable[..., tuple]:
        one_line = doc or (func.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = Strategy(
            name, func, frozenset(kinds), tuple(params), one_line, needs_attention, needs_centrality
        )
        return func

    return wrap


def available_strategies() -> list[str]:
    """Registered strategy names, in registration order (aliases such as "full" not included)."""
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as `name` (or an alias of it).

    Raises:
        UnknownStrategyError: naming the known strategies.
    """
    key = ALIASES.get(name, name)
    try:
        return _REGISTRY[key]
    except KeyError:
        known = ", ".join(available_strategies())
        aliases = ", ".join(f"{a} = {t}" for a, t in ALIASES.items())
        raise UnknownStrategyError(
            f"unknown reduction strategy {name!r}; known strategies: {known} (aliases: {aliases})"
        ) from None
