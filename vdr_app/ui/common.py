"""Helpers shared by the tabs: error translation, progress, page image caches, view controls.

Handlers stay thin: convert UI values, make one engine call, convert the result back. User errors
(`VdrError`) become `gr.Error` with the engine's message; anything else is a bug and is logged.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import tempfile
import threading
import typing
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from .. import figures
from ..errors import VdrError
from . import access

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
FULL = "full"


def user_errors(fn: Callable) -> Callable:
    """Wrap a handler so a VdrError shows as a gr.Error (a toast with the message) in the page.

    The wrapper also asks Gradio for the call's `gr.Request` (one extra positional parameter after
    the handler's own, which Gradio fills) and runs the handler inside `access.scope`, so mode
    checks and per-session libraries see who is calling; the app's `Access` is the one being
    built when the handler is wrapped (see access.py). `functools.wraps` keeps the rest of the
    signature visible to Gradio (gr.Progress injection).
    """
    app_access = access.access_being_built()
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params)
               if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)), len(params))
    request_param = inspect.Parameter("vdr_request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                      annotation=gr.Request)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = list(args)
        request = args.pop(at) if len(args) > at else kwargs.pop("vdr_request", None)
        with access.scope(app_access, request):
            try:
                return fn(*args, **kwargs)
            except VdrError as error:
                raise gr.Error(access.redact(str(error)), title=_error_title(error), print_exception=False) from error

    wrapper.__signature__ = signature.replace(parameters=[*params[:at], request_param, *params[at:]])
    # What Gradio reads to inject the request, and the handler's own hints (e.g. gr.SelectData), resolved.
    wrapper.__annotations__ = {**_type_hints(fn), "vdr_request": gr.Request}
    return wrapper


def _type_hints(fn: Callable) -> dict:
    """fn's annotations as objects (this package writes them as strings: `from __future__ import annotations`)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - a hint that does not resolve is one Gradio cannot use either
        return {}


def _error_title(error: VdrError) -> str:
    """'NotAPdfError' -> 'Not a PDF' style title for the toast."""
    name = type(error).__name__.removesuffix("Error")
    words = "".join(f" {c}" if c.isupper() else c for c in name).strip()
    return words.replace("Pdf", "PDF") or "Error"


def bind(fn: Callable, *args: Any) -> Callable:
    """fn with its leading arguments (the engine, caches) bound, errors translated.

    The result keeps fn's name and docstring, which Gradio shows as the endpoint's description on
    the API page (a bare partial would show "partial(func, *args, **keywords)").
    """
    bound = functools.partial(fn, *args)
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(bound, attribute, getattr(fn, attribute, None))
    bound.__annotations__ = _type_hints(fn)  # a partial has none; resolved here, where fn's module is known
    return user_errors(bound)


def progress_adapter(progress: gr.Progress) -> Callable[[float, str], None]:
    """The engine's progress(fraction, message) callback driving a gr.Progress bar."""
    return lambda fraction, message: progress(max(0.0, min(1.0, float(fraction))), desc=message)


class PageImages:
    """Per-page figure backgrounds and thumbnails, cached (decoding + encoding a page costs
    ~20-60 ms, and the Explore slider redraws the same page over and over).

    Page ids can be reused by SQLite after a delete, so the library calls `clear()` whenever
    documents change.
    """

    def __init__(self, engine, size: int = 64):
        self._engine = engine
        self._size = size
        self._lock = threading.Lock()
        self._backgrounds: OrderedDict[int, figures.PageBackground] = OrderedDict()
        self._thumbnails: OrderedDict[int, str] = OrderedDict()
        self._folder = tempfile.TemporaryDirectory(prefix="vdr-thumbnails-")
        self._counter = itertools.count()

    def _get(self, cache: OrderedDict, page_id: int, make: Callable[[], Any]) -> Any:
        with self._lock:
            if page_id in cache:
                cache.move_to_end(page_id)
                return cache[page_id]
        value = make()
        with self._lock:
            cache[page_id] = value
            while len(cache) > self._size:
                cache.popitem(last=False)
        return value

    def background(self, page_id: int) -> figures.PageBackground:
        return self._get(self._backgrounds, page_id,
                         lambda: figures.page_background(self._engine.page_image(page_id)))

    def thumbnail(self, page_id: int, width: int = 320) -> str:
        """Path of a WebP thumbnail of the page (written once, atomically).

        A file path rather than a PIL image: Gradio writes PIL images into its cache in place, so
        two concurrent searches returning the same page could serve a half-written file; for
        paths it copies under a temporary name and renames.
        """

        def make() -> str:
            image = self._engine.page_image(page_id)
            image.thumbnail((width, width * 2))
            path = Path(self._folder.name) / f"page-{page_id}-{next(self._counter)}.webp"
            staging = path.with_suffix(".tmp")
            image.save(staging, format="WEBP", quality=80)
            os.replace(staging, path)
            return str(path)

        return self._get(self._thumbnails, page_id, make)

    def clear(self) -> None:
        with self._lock:
            self._backgrounds.clear()
            self._thumbnails.clear()

    def close(self) -> None:
        """Clear and remove the thumbnail folder (a public-demo session's caches end with it)."""
        self.clear()
        self._folder.cleanup()


# -- view controls: a strategy dropdown + the sliders of its main parameters -> one spec text ----


@dataclass
class ViewControls:
    """The components that pick a view; `spec` holds the canonical text every handler takes."""

    strategy: gr.Dropdown
    keep: gr.Slider
    factor: gr.Slider
    k: gr.Slider
    spec: gr.Textbox
    precision: gr.Dropdown

    @property
    def sliders(self) -> list[gr.Slider]:
        return [self.keep, self.factor, self.k]

    @property
    def inputs(self) -> list:
        """What `spec_text` reads after the strategy list: the sliders and the precision."""
        return [self.strategy, *self.sliders, self.precision]


PRECISIONS = [("float16", "float16"), ("int8", "int8"), ("int4", "int4"), ("int2", "int2"), ("binary", "binary")]


def _ratio_is_factor(strategy: dict) -> bool:
    """Merging strategies are read as 'merge every F patches' (factor); pruning ones as 'keep a share'."""
    return "merging" in strategy["kinds"]


def _param(strategy: dict, name: str) -> dict | None:
    return next((p for p in strategy["params"] if p["name"] == name), None)


def _ratio(strategy: dict) -> dict | None:
    return next((p for p in strategy["params"] if p["type"] == "ratio"), None)


def strategy_choices(strategies: list[dict], include_full: bool) -> list[tuple[str, str]]:
    """(label, value) dropdown choices: 'full' first, then every strategy with its kind."""
    out = [("full (no reduction)", FULL)] if include_full else []
    for s in strategies:
        if s["name"] == "identity":
            continue
        kind = " + ".join(s["kinds"]) if s["kinds"] else "identity"
        out.append((f"{s['name']} ({kind})", s["name"]))
    return out


def _with_precision(spec: str, precision: str | None) -> str:
    return spec if not precision or precision == "float16" else f"{spec}@{precision}"


def spec_text(strategies: list[dict], strategy: str | None, keep: float, factor: float, k: float,
              precision: str | None = None) -> str:
    """The view spec for the chosen strategy, slider values and precision ("float16", "int8",
    "int4", "int2", "binary"; other parameters at defaults)."""
    if not strategy or strategy in (FULL, "identity"):
        return _with_precision(FULL, precision)
    by_name = {s["name"]: s for s in strategies}
    if strategy not in by_name:
        return _with_precision(str(strategy), precision)  # let the engine name the known strategies
    s = by_name[strategy]
    parts = []
    if _ratio(s) is not None:
        parts.append(f"factor={int(round(factor))}" if _ratio_is_factor(s) else f"keep={round(float(keep), 4)}")
    if _param(s, "k") is not None:
        parts.append(f"k={round(float(k), 4)}")
    return _with_precision(f"{strategy}:{','.join(parts)}" if parts else strategy, precision)


def strategy_defaults(strategies: list[dict], strategy: str | None,
                      precision: str | None = None) -> tuple[dict, dict, dict, str]:
    """Slider updates (visibility + default value) for a strategy, and its default spec (at
    `precision`)."""
    s = next((x for x in strategies if x["name"] == strategy), None)
    ratio = _ratio(s) if s else None
    k = _param(s, "k") if s else None
    is_factor = bool(s and ratio and _ratio_is_factor(s))
    keep_value = float(ratio["default"]) if ratio else 0.5
    factor_value = int(round(float(ratio["default_factor"]))) if ratio else 9
    k_value = float(k["default"]) if k else 0.0
    updates = (
        gr.update(visible=bool(ratio) and not is_factor, value=keep_value),
        gr.update(visible=is_factor, value=factor_value),
        gr.update(visible=k is not None, value=k_value),
    )
    return (*updates, spec_text(strategies, strategy, keep_value, factor_value, k_value, precision))


def view_controls(strategies: list[dict], default: str, include_full: bool, prefix: str,
                  label: str = "strategy") -> ViewControls:
    """Lay out the view picker (call inside a layout block); elem_ids start with `prefix`."""
    keep0, factor0, k0, spec0 = strategy_defaults(strategies, default)
    strategy = gr.Dropdown(strategy_choices(strategies, include_full), value=default, label=label,
                           allow_custom_value=True, elem_id=f"{prefix}-strategy")
    keep = gr.Slider(0.05, 1.0, step=0.05, label="keep (share of patches kept)", elem_id=f"{prefix}-keep",
                     **_slider(keep0))
    factor = gr.Slider(1, 32, step=1, label="merge factor (patches per vector)", elem_id=f"{prefix}-factor",
                       **_slider(factor0))
    k = gr.Slider(-3.0, 3.0, step=0.25, label="k (DocPruner: keep attention > mean + k·std)", elem_id=f"{prefix}-k",
                  **_slider(k0))
    precision = gr.Dropdown(PRECISIONS, value="float16", label="precision (quantisation)",
                            elem_id=f"{prefix}-precision")
    spec = gr.Textbox(spec0, label="view spec (edit and press Enter for other parameters)", max_lines=1,
                      elem_id=f"{prefix}-spec")
    return ViewControls(strategy, keep, factor, k, spec, precision)


def _slider(update: dict) -> dict:
    return dict(value=update["value"], visible=update["visible"])
