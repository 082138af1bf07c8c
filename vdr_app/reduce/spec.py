"""View specs: the one short text form of "strategy + parameters" shared by CLI, UI and evaluation.

Grammar: `name[:param=value[,param=value...]][@quantiser]`, e.g. `docpruner:k=-0.25`,
`cluster:factor=9`, `random:keep=0.5,seed=0`, `full` (= `identity`), `full@binary`,
`cluster:factor=9@int8`. Names and keys are case-insensitive; spaces around tokens are ignored.

The quantiser. A spec may end in one `@int8`, `@int4`, `@int2` or `@binary` (vdr_app.quantise): the view is the
reduction computed first, then every vector of it quantised (groups unchanged). Without a
suffix, vectors are stored at float16.

The ratio. Every strategy that targets a size takes the same notion of it: `keep` in (0, 1], the
share of the page's image patches the view keeps as vectors (kept patches for pruning, output
vectors for merging), or equivalently `factor` >= 1 with keep = 1/factor (`cluster:factor=9` is
`cluster:keep=1/9`). Values are held as exact fractions, so a factor and its keep are the same
spec. A view keeps max(1, floor(n * keep)) vectors of a page with n patches; for an integer factor
f that is n // f, the count colpali-engine's HierarchicalTokenPooler and Light-ColPali use.
(`pool2d` is the exception: its factor picks a kernel, see `merge.pool2d_kernel`; and
`prune_then_merge` applies its ratio to the DocPruner survivors.)

Canonical form (`str(spec)`): lower-case name, every parameter present (defaults filled), sorted by
name, numbers as short decimals; the ratio printed as `factor=` for merging strategies and `keep=`
for pruning ones when that is a short decimal, otherwise as the other one; the quantiser, if any,
last in lower case. Equal specs print equally, so the canonical string can key a stored view:
`parse_spec(str(s)) == s`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vdr_app.errors import InvalidSpecError
from vdr_app.quantise import QUANTISERS
from vdr_app.reduce.registry import (
    CHOICE,
    FLOAT,
    INT,
    LAYERS,
    MERGING,
    RATIO,
    Strategy,
    available_strategies,
    get_strategy,
)

# Parameter values are held exactly; a value needing more decimals than this is rounded to it.
_MAX_PLACES = 9
_INT_RE = re.compile(r"[+-]?\d+")


def _short_decimal(value: Fraction) -> str | None:
    """`value` as a plain decimal string with at most _MAX_PLACES places, or None if it has none.

    A fraction p/q has a finite decimal form exactly when q has no prime factors but 2 and 5.
    """
    q, twos, fives = value.denominator, 0, 0
    while q % 2 == 0:
        q, twos = q // 2, twos + 1
    while q % 5 == 0:
        q, fives = q // 5, fives + 1
    places = max(twos, fives)
    if q != 1 or places > _MAX_PLACES:
        return None
    scaled = abs(value.numerator * 10**places // value.denominator)
    digits = str(scaled).rjust(places + 1, "0")
    text = digits if places == 0 else f"{digits[:-places]}.{digits[-places:]}"
    return ("-" if value < 0 else "") + text


# Numbers are checked for size before any exact arithmetic: Fraction("1e30000000") builds
# 10**30000000 (27 s holding the GIL) and int() refuses more than 4300 digits with a traceback.
_MAX_NUMBER_CHARS = 40
_MAX_EXPONENT = 12
_MAX_INT_DIGITS = 18
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?|[+-]?\d+/\d+")


def _shown(text: str) -> str:
    """A value for an error message: long ones cut, with their length."""
    return repr(text) if len(text) <= _MAX_NUMBER_CHARS else f"{text[:20]!r}... ({len(text)} characters)"


def _number(text: str, where: str) -> Fraction:
    text = text.strip()
    if len(text) > _MAX_NUMBER_CHARS:
        raise InvalidSpecError(f"{where} must be a number of at most {_MAX_NUMBER_CHARS} characters, got {_shown(text)}")
    match = _NUMBER_RE.fullmatch(text)
    if match is None:
        raise InvalidSpecError(f"{where} must be a number, got {_shown(text)} (e.g. 0.25, 1/9 or 9)")
    if match.group(1) is not None and abs(int(match.group(1))) > _MAX_EXPONENT:  # <= 40 digits: cheap
        raise InvalidSpecError(f"{where}: {text} is out of range (exponents up to ±{_MAX_EXPONENT})")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InvalidSpecError(f"{where} must be a number, got {_shown(text)}") from None


def _integer(text: str, where: str) -> int:
    text = text.strip()
    if not _INT_RE.fullmatch(text):
        raise InvalidSpecError(f"{where} must be an integer, got {_shown(text)}")
    if len(text.lstrip("+-")) > _MAX_INT_DIGITS:
        raise InvalidSpecError(f"{where} must be an integer of at most {_MAX_INT_DIGITS} digits, got {_shown(text)}")
    return int(text)


_LAYERS_RE = re.compile(r"(\d{1,3})(?:-(\d{1,3}))?")


def _layers(text: str, where: str) -> str:
    """Canonical layer range: "auto", "a" or "a-b" (0-based, inclusive, a <= b)."""
    text = text.strip().lower()
    if text == "auto":
        return text
    match = _LAYERS_RE.fullmatch(text)
    if match is None:
        raise InvalidSpecError(f"{where} must be auto or first-last layers such as 4-8, got {_shown(text)}")
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if first > last:
        raise InvalidSpecError(f"{where}: the first layer comes after the last in {text!r}")
    return f"{first}-{last}"


def _ratio_text(keep: Fraction, merging: bool) -> str:
    as_keep, as_factor = _short_decimal(keep), _short_decimal(1 / keep)
    order = [("factor", as_factor), ("keep", as_keep)] if merging else [("keep", as_keep), ("factor", as_factor)]
    name, text = next((n, t) for n, t in order if t is not None)
    return f"{name}={text}"


@dataclass(frozen=True)
class ViewSpec:
    """A validated strategy + parameters. Build it with `parse_spec` or `make_spec`.

    Attributes:
        strategy: the registered strategy name (aliases resolved).
        values: (name, value) for every parameter of the strategy, sorted by name; the ratio is
            stored as `keep` (a `Fraction`), floats as `Fraction`, ints as int, choices as str.
        quant: "int8", "int4", "int2" or "binary" for a quantised view, None for float16 vectors.
    """

    strategy: str
    values: tuple[tuple[str, Any], ...] = ()
    quant: str | None = None

    def __str__(self) -> str:
        strat = get_strategy(self.strategy)
        parts = []
        for name, value in self.values:
            kind = strat.param_by_name[name].type
            if kind == RATIO:
                parts.append(_ratio_text(value, MERGING in strat.kinds))
            elif kind == FLOAT:
                parts.append(f"{name}={_short_decimal(value)}")
            else:
                parts.append(f"{name}={value}")
        body = ",".join(sorted(parts, key=lambda text: text.partition("=")[0]))
        text = f"{self.strategy}:{body}" if body else self.strategy
        return f"{text}@{self.quant}" if self.quant else text

    def with_values(self, **changes: Any) -> "ViewSpec":
        """The same view with some parameters' values replaced (each name one of its parameters)."""
        unknown = set(changes) - {name for name, _ in self.values}
        if unknown:
            raise InvalidSpecError(f"{self.strategy} has no parameter {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, values=tuple((name, changes.get(name, value)) for name, value in self.values))

    @property
    def base(self) -> "ViewSpec":
        """The same reduction without its quantiser (the float view it was quantised from)."""
        return ViewSpec(self.strategy, self.values) if self.quant else self

    def __repr__(self) -> str:
        return f"ViewSpec({str(self)!r})"

    @property
    def kwargs(self) -> dict[str, Any]:
        """The strategy's keyword arguments: ratio `keep` as an exact Fraction, floats as float."""
        strat = get_strategy(self.strategy)
        return {
            name: float(value) if strat.param_by_name[name].type == FLOAT else value for name, value in self.values
        }

    @property
    def params(self) -> dict[str, Any]:
        """JSON-friendly parameters (numbers as int/float), e.g. for display or logging."""
        return {name: float(v) if isinstance(v, Fraction) else v for name, v in self.values}

    @property
    def kinds(self) -> frozenset[str]:
        """The strategy's kinds: a subset of {PRUNING, MERGING}."""
        return get_strategy(self.strategy).kinds

    @property
    def nominal_keep(self) -> float | None:
        """The requested share of patches kept, for strategies with a ratio (None otherwise).

        Adaptive strategies (docpruner) report the realised share in `Reduction.info` instead.
        """
        ratio = get_strategy(self.strategy).ratio_param
        return None if ratio is None else float(dict(self.values)[ratio.name])


def _quantiser(text: str, source: str) -> str:
    """The canonical quantiser name of a spec's `@...` suffix (InvalidSpecError when unknown)."""
    name = text.strip().lower()
    if name not in QUANTISERS:
        shown = _shown(text.strip()) if text.strip() else "nothing"
        raise InvalidSpecError(
            f"unknown quantiser {shown} after '@' in {source!r}; quantisers: "
            f"{', '.join('@' + q for q in QUANTISERS)} (leave the suffix out for float16 vectors)"
        )
    return name


def _split_quantiser(source: str) -> tuple[str, str | None]:
    """("cluster:factor=9", "int8") from "cluster:factor=9@int8"; at most one quantiser."""
    body, *quants = source.split("@")
    if len(quants) > 1:
        raise InvalidSpecError(
            f"a view spec takes at most one quantiser, got {len(quants)} in {source!r} "
            f"(e.g. 'cluster:factor=9@int8'; quantisers: {', '.join(QUANTISERS)})"
        )
    return body, (_quantiser(quants[0], source) if quants else None)


def _coerce(strat: Strategy, raw: dict[str, str], source: str, quant: str | None = None) -> ViewSpec:
    """Validate raw string values against the strategy's parameters, filling defaults."""
    ratio = strat.ratio_param
    accepted = [p.name for p in strat.params] + (["factor"] if ratio else [])
    for key in raw:
        if key not in accepted:
            allowed = ", ".join(accepted) if accepted else "none"
            raise InvalidSpecError(f"{strat.name}: unknown parameter {key!r} in {source!r}; parameters: {allowed}")
    if ratio and "keep" in raw and "factor" in raw:
        raise InvalidSpecError(f"{strat.name}: give keep or factor, not both ({source!r})")

    values: list[tuple[str, Any]] = []
    for p in strat.params:
        where = f"{strat.name}: {p.name}"
        if p.type == RATIO:
            if "factor" in raw:
                factor = _number(raw["factor"], f"{strat.name}: factor")
                if factor < 1:
                    raise InvalidSpecError(f"{strat.name}: factor must be >= 1, got {raw['factor']}")
                keep = 1 / factor
            else:
                keep = _number(raw.get("keep", str(p.default)), where)
                if not 0 < keep <= 1:
                    raise InvalidSpecError(f"{strat.name}: keep must be in (0, 1], got {raw.get('keep')}")
            if _short_decimal(keep) is None and _short_decimal(1 / keep) is None:
                keep = round(keep, _MAX_PLACES)
                if keep == 0:
                    raise InvalidSpecError(f"{strat.name}: keep is too small ({source!r})")
            values.append((p.name, keep))
            continue
        text = raw.get(p.name)
        if p.type == LAYERS:
            values.append((p.name, p.default if text is None else _layers(text, where)))
            continue
        if p.type == CHOICE:
            value: Any = p.default if text is None else text.strip().lower()
            if value not in p.choices:
                raise InvalidSpecError(f"{where} must be one of {', '.join(p.choices)}, got {text!r}")
        elif p.type == INT:
            value = p.default if text is None else _integer(text, where)
        else:
            value = Fraction(str(p.default)) if text is None else _number(text, where)
            if _short_decimal(value) is None:
                value = round(value, _MAX_PLACES)
        if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
            raise InvalidSpecError(f"{where} must be in [{p.low}, {p.high}], got {text}")
        values.append((p.name, value))
    return ViewSpec(strat.name, tuple(sorted(values)), quant)


def parse_spec(text: str | ViewSpec) -> ViewSpec:
    """Parse and validate a view spec such as "cluster:factor=9".

    Args:
        text: the spec text, or a ViewSpec (re-validated through its canonical form).

    Returns:
        The canonical ViewSpec (defaults filled).

    Raises:
        UnknownStrategyError: the name is not registered (the message lists the known ones).
        InvalidSpecError: malformed text, an unknown or repeated parameter, a value of the wrong
            type or out of range, an unknown quantiser (`@int3`) or more than one (`@binary@int8`).
    """
    if isinstance(text, ViewSpec):
        text = str(text)
    if not isinstance(text, str):
        raise InvalidSpecError(f"a view spec must be text such as 'cluster:factor=9', got {type(text).__name__}")
    source = text.strip()
    if not source:
        raise InvalidSpecError(
            f"empty view spec; expected e.g. 'cluster:factor=9'; strategies: {', '.join(available_strategies())}"
        )
    body, quant = _split_quantiser(source)
    name, _, rest = body.partition(":")
    if not name.strip():
        raise InvalidSpecError(
            f"no strategy before '@' in {source!r}; expected e.g. 'full@int8' or 'cluster:factor=9@binary'")
    strat = get_strategy(name.strip().lower())
    raw: dict[str, str] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not eq or not key or not value:
                raise InvalidSpecError(f"malformed parameter {item.strip()!r} in {source!r}; expected name=value")
            if key in raw:
                raise InvalidSpecError(f"parameter {key!r} given twice in {source!r}")
            raw[key] = value
    return _coerce(strat, raw, source, quant)


def make_spec(strategy: str, quant: str | None = None, **params: Any) -> ViewSpec:
    """Build a validated ViewSpec from Python values, e.g. `make_spec("cluster", keep=0.25)` or
    `make_spec("cluster", quant="binary", factor=9)` (quant: None or one of QUANTISERS).

    Floats are taken at their shortest decimal form (0.1 means 1/10). Raises like `parse_spec`.
    """
    raw = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Fraction)):
            raise InvalidSpecError(f"{strategy}: {key} must be a number or text, got {value!r}")
        raw[key.lower()] = repr(value) if isinstance(value, float) else str(value)
    source = f"{strategy} {params}"
    quant = None if quant in (None, "", "float16") else _quantiser(str(quant), source)
    return _coerce(get_strategy(strategy.strip().lower()), raw, source, quant)


def describe_strategies() -> list[dict]:
    """Every registered strategy, for the UI and README.

    Returns:
        One JSON-friendly dict per strategy: name, kinds, needs_attention, needs_centrality, doc (one line),
        params (name, type, default, range or choices, aliases, doc) and example (the canonical
        spec with all defaults).
    """
    out = []
    for name in available_strategies():
        strat = get_strategy(name)
        out.append(
            dict(
                name=name,
                kinds=sorted(strat.kinds),
                needs_attention=strat.needs_attention,
                needs_centrality=strat.needs_centrality,
                doc=strat.doc,
                params=[p.describe() for p in strat.params],
                example=str(parse_spec(name)),
            )
        )
    return out
