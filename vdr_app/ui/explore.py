"""Explore tab: one page under one view: the model's attention, and what the reduction kept,
pruned or merged, with the memory it saves. Changing the view reduces on the fly (no encoding)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from .. import figures
from ..memory import format_bytes
from .common import FULL, PageImages, ViewControls, bind, spec_text, strategy_defaults, view_controls

# Facts every Reduction.info has; anything else is the strategy's own (e.g. DocPruner's threshold).
_STANDARD_INFO = {"spec", "strategy", "quant", "n_patches", "n_vectors", "n_extra", "keep_ratio", "memory_ratio",
                  "pruned"}


@dataclass
class ExploreTab:
    document: gr.Dropdown
    page: gr.Dropdown
    controls: ViewControls
    view_page: gr.Button  # opens the page viewer (wired by the app)


def document_choices(engine, current=None):
    """Dropdown update listing the documents; keeps the current one when it still exists."""
    docs = engine.list_documents()
    choices = [(f"{d.name} (id {d.id})", d.id) for d in docs]
    ids = [d.id for d in docs]
    value = current if current in ids else (ids[0] if ids else None)
    return gr.update(choices=choices, value=value)


def page_choices(engine, doc_id):
    """Dropdown update listing a document's pages (value: page id), first page selected."""
    if doc_id is None or doc_id == "":
        return gr.update(choices=[], value=None)
    rows = engine.pages(int(doc_id))
    choices = [(f"page {r.page_number}", r.id) for r in rows]
    return gr.update(choices=choices, value=rows[0].id if rows else None)


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def is_text_layout(ex) -> bool:
    """The page was encoded by the text-layout encoder (its vectors are text cells, not image patches)."""
    return "text_source" in (ex.page.info or {}) or "text_source" in ex.embedding.info


def attention_label(ex) -> str:
    """What the page's attention is, in words true to the encoder that made it."""
    if ex.embedding.attention is None:
        return "attention (not given by this encoder)"
    if is_text_layout(ex):  # MiniLM's [CLS]
        return "[CLS] attention to each text cell (MiniLM, not a visual model)"
    return "final-token attention to each patch"


def centrality_label(ex) -> str:
    """The centrality panel's title: which layers, or plainly that the page needs a re-encode."""
    if ex.centrality_window is None:
        return "centrality: not stored (re-encode for SAP)"
    first, last, n_layers = ex.centrality_window
    where = f"layer {first}" if first == last else f"layers {first}-{last}"
    return f"mid-layer centrality, {where} of {n_layers} (what SAP keeps)"


def _nominal_keep(spec: str) -> float | None:
    """The share of patches a spec asks to keep ("factor=9" -> 1/9, "keep=0.5" -> 0.5), or None."""
    params = dict(part.split("=", 1) for part in spec.partition(":")[2].split(",") if "=" in part)
    try:
        if "factor" in params:
            return 1.0 / float(params["factor"])
        return float(params["keep"]) if "keep" in params else None
    except (ValueError, ZeroDivisionError):
        return None


def summary(ex) -> tuple[str, dict]:
    """Markdown for people and a dict for API clients: vectors and bytes before -> after."""
    emb, red = ex.embedding, ex.reduction
    n, m = emb.n_patches, len(emb.extra)
    kept = int(red.vectors.shape[0])
    ratio = ex.view_bytes / ex.full_bytes if ex.full_bytes else 1.0
    facts = {k: v for k, v in red.info.items() if k not in _STANDARD_INFO}
    pruned = int((red.groups < 0).sum())
    regions = sorted(set(emb.cells[:, 0].tolist())) if n else []
    smaller = f" ({1 / ratio:.1f}× smaller)" if ratio > 0 else ""
    units = "text cells" if is_text_layout(ex) else "image patches"
    stats = [
        f"vectors **{ex.full_vectors} → {ex.view_vectors}** ({n} → {kept} {units}, + {m} other tokens)",
        f"memory **{format_bytes(ex.full_bytes)} → {format_bytes(ex.view_bytes)}**{smaller}",
        f"ratio **{ratio:.3f}**",
        f"pruned {pruned} of {n}",
    ]
    if ex.quant_cosine is not None:
        cos = ex.quant_cosine[np.isfinite(ex.quant_cosine)]
        if cos.size:
            stats.append(f"{ex.quant}: cos with the float vectors mean **{cos.mean():.4f}**, worst {cos.min():.4f}")
    stats += [f"{k} **{_number(v)}**" for k, v in facts.items()]
    lines = [
        f"**{ex.page.doc_name} · page {ex.page.page_number}** · view `{ex.spec}` ({ex.kind})",
        "",
        " · ".join(stats),
    ]
    nominal = _nominal_keep(ex.spec)
    if ex.kind == "merging" and nominal and n and kept > 1.25 * max(1, int(n * nominal)):
        realised = n / max(kept, 1)
        lines += ["", (f"_Asked for 1 vector per {1 / nominal:.0f} patches; this page realises **{realised:.1f}×**. "
                       f"`{red.info.get('strategy', ex.spec.split(':')[0])}` merges fixed blocks of neighbouring "
                       "cells, and only cells that hold a patch count: on a sparse page (text-layout cells exist "
                       "only where there is text) most blocks are partial, so they merge fewer patches._")]
    if len(regions) > 1:
        extra_tokens = int((emb.cells[:, 0] > 0).sum())
        lines += ["", f"_The {extra_tokens} global-thumbnail tokens of this model are drawn in the small panels on "
                      "the right, not over the page._"]
    details = dict(
        page_id=ex.page.id, doc_name=ex.page.doc_name, page_number=ex.page.page_number, spec=ex.spec, kind=ex.kind,
        patches_before=n, patches_after=kept, extra_tokens=m, vectors_before=ex.full_vectors,
        vectors_after=ex.view_vectors, bytes_before=ex.full_bytes, bytes_after=ex.view_bytes,
        ratio=round(ratio, 6), pruned=pruned, precision=ex.quant or "float16",
        quant_cosine_mean=(None if ex.quant_cosine is None or not np.isfinite(ex.quant_cosine).any()
                           else round(float(np.nanmean(ex.quant_cosine)), 6)),
        info={k: (float(v) if isinstance(v, float) else v) for k, v in red.info.items()},
    )
    return "\n".join(lines), details


def explore(engine, pages: PageImages, page_id, spec):
    """One page under one view: what the reduction kept, pruned or merged, over the attention.

    Args:
        page_id: the page's id (from /search hits or the Library).
        spec: a view spec, e.g. "docpruner:k=-0.25", "cluster:factor=9" or "full".

    Returns:
        figure: the page with the attention map and the reduction's decision (plotly).
        summary: vectors and bytes before and after, as Markdown.
        details: the same as data: patches_before/after, vectors_before/after, bytes_before/after,
            ratio, pruned, precision, quant_cosine_mean (quantised views), info (the strategy's own
            facts, e.g. DocPruner's threshold).
    """
    if page_id is None or page_id == "":
        return figures.message_figure("Add a PDF in the Library tab, then pick a document and a page."), "", {}
    ex = engine.explore(int(page_id), spec or FULL)
    title = f"{ex.page.doc_name} · page {ex.page.page_number} · {ex.spec}"
    text, details = summary(ex)
    if ex.embedding.n_patches == 0:
        return figures.message_figure(f"{title}: this page has no patches to draw"), text, details
    fig = figures.exploration_figure(
        pages.background(ex.page.id), ex.embedding.boxes, ex.embedding.cells, ex.reduction.groups,
        ex.embedding.attention, title=title, merging=ex.kind == "merging", attention_label=attention_label(ex),
        quant_cosine=ex.quant_cosine, quant=ex.quant,
        centrality=ex.centrality, centrality_label=centrality_label(ex),
    )
    return fig, text, details


def build(engine, pages: PageImages) -> ExploreTab:
    """Lay out the Explore tab and wire its events (call inside `with gr.Tab(...)`)."""
    strategies = engine.strategies()
    names = [s["name"] for s in strategies]
    default = "docpruner" if "docpruner" in names else next((n for n in names if n != "identity"), FULL)
    # Controls in one row above the page, so the page gets the whole width.
    with gr.Row(equal_height=True, elem_id="explore-controls"):
        document = gr.Dropdown([], label="document", allow_custom_value=True, elem_id="explore-doc", scale=4,
                               min_width=400)
        page = gr.Dropdown([], label="page", allow_custom_value=True, elem_id="explore-page", scale=1,
                           min_width=120)
        controls = view_controls(strategies, default, include_full=True, prefix="explore")
        # Widths that keep every label readable at 1400 px: the precision names are short.
        for component, scale, width in ((controls.strategy, 2, 230), (controls.keep, 2, 200), (controls.factor, 2, 200),
                                        (controls.k, 2, 200), (controls.precision, 1, 130), (controls.spec, 2, 200)):
            component.scale, component.min_width = scale, width
    with gr.Row(equal_height=False):
        numbers = gr.Markdown(elem_id="explore-numbers", label="summary")
        view_page = gr.Button("View page full size", size="sm", scale=0, min_width=190, elem_id="explore-view-btn")
    plot = gr.Plot(label="page", elem_id="explore-plot", show_label=False)
    gr.Markdown("_Drag on the page to zoom in; double-click to zoom out. In a merging view, hover a group to outline it "
                "on both panels (click to keep it outlined). **View page full size** shows the page as stored._",
                elem_id="explore-hint")
    with gr.Accordion("details (JSON)", open=False):
        details = gr.JSON(label="exploration")

    outputs = [plot, numbers, details]
    run = bind(explore, engine, pages)
    document.change(bind(page_choices, engine), [document], [page], api_name="pages",
                    api_visibility="undocumented")
    page.change(run, [page, controls.spec], outputs, api_name="explore_page", api_visibility="undocumented",
                trigger_mode="always_last")
    controls.spec.submit(run, [page, controls.spec], outputs, api_name="explore", api_visibility="undocumented")
    controls.strategy.input(
        lambda name, precision: strategy_defaults(strategies, name, precision), [controls.strategy, controls.precision],
        [controls.keep, controls.factor, controls.k, controls.spec], api_name="explore_strategy",
        api_visibility="undocumented", queue=False,
    ).then(run, [page, controls.spec], outputs, api_name="explore_after_strategy", api_visibility="undocumented")
    for slider in controls.sliders:
        slider.release(
            lambda s, keep, factor, k, precision: spec_text(strategies, s, keep, factor, k, precision),
            controls.inputs, [controls.spec], api_name=f"explore_{slider_name(slider)}",
            api_visibility="undocumented", queue=False,
        ).then(run, [page, controls.spec], outputs, api_name=f"explore_after_{slider_name(slider)}",
               api_visibility="undocumented", trigger_mode="always_last")
    controls.precision.input(
        lambda s, keep, factor, k, precision: spec_text(strategies, s, keep, factor, k, precision),
        controls.inputs, [controls.spec], api_name="explore_precision", api_visibility="undocumented", queue=False,
    ).then(run, [page, controls.spec], outputs, api_name="explore_after_precision", api_visibility="undocumented",
           trigger_mode="always_last")
    return ExploreTab(document, page, controls, view_page)


def slider_name(slider: gr.Slider) -> str:
    """'keep', 'factor' or 'k' from the slider's label (for api names)."""
    return str(slider.label).split(" ")[0]
