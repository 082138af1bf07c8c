"""Search tab: rank pages for a query over the full index or a view, see how the view's ranking
differs from the full one, and open a result to see which patches matched which query token."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from .. import figures, heatmap
from . import access
from .common import FULL, PageImages, ViewControls, bind, spec_text, strategy_defaults, view_controls


@dataclass
class SearchTab:
    query: gr.Textbox
    controls: ViewControls
    documents: gr.Dropdown  # document filter; refreshed by the app after uploads and deletes


def _caption(hit: dict) -> str:
    return f"{hit['rank']}. {hit['doc_name']} · p. {hit['page_number']} · {hit['score']:.3f}"


def comparison_markdown(comparison, spec: str, k: int) -> str:
    """How the view's top-k differs from the full index's top-k."""
    if spec == FULL:
        return f"Ranked over the **full index** (top {k}). Pick a view to compare a reduced index with it."
    full_ids = {h.page_id for h in comparison.full}
    view_ids = {h.page_id for h in comparison.view}
    dropped = [h for h in comparison.full if h.page_id not in view_ids]
    lines = [
        (
            f"**`{spec}` vs full index:** overlap of the top {len(comparison.full)} = "
            f"**{comparison.overlap:.0%}** · {len(view_ids - full_ids)} new, {len(dropped)} dropped"
        ),
        "",
        "| view rank | page | score | full rank | moved |",
        "|---:|---|---:|---:|---|",
    ]
    scores = {h.page_id: h.score for h in comparison.view}
    for move in comparison.moved:
        shift = move["shift"]
        arrow = "new" if shift is None else ("=" if shift == 0 else (f"↑ {shift}" if shift > 0 else f"↓ {-shift}"))
        full_rank = "—" if move["full_rank"] is None else move["full_rank"]
        lines.append(f"| {move['view_rank']} | {move['doc_name']} p. {move['page_number']} | "
                     f"{scores[move['page_id']]:.3f} | {full_rank} | {arrow} |")
    if dropped:
        lines.append("")
        lines.append("dropped from the top: " + ", ".join(f"{h.doc_name} p. {h.page_number} (full rank {h.rank})"
                                                         for h in dropped))
    return "\n".join(lines)


def document_filter_choices(engine, current=None):
    """Dropdown update for the document filter; keeps the chosen documents that still exist."""
    docs = engine.list_documents()
    ids = {d.id for d in docs}
    return gr.update(choices=[(f"{d.name} (id {d.id})", d.id) for d in docs],
                     value=[d for d in (current or []) if d in ids])


def search(engine, pages: PageImages, query, spec, k, docs=None):
    """Gallery of the view's hits, the comparison with the full index, and the hits as data.

    `docs`: document ids (or names) to search within; empty or None for every document."""
    k = int(k or 5)
    if access.mode() == "shared" and not engine.store.has_view(engine.canonical_view(spec or FULL)):
        access.require("save a new view")  # searching a view stores it for everyone
    comparison = engine.compare(query, k=k, view=spec or FULL, docs=list(docs) if docs else None)
    spec = engine.canonical_view(spec)
    hits = [h.as_dict() for h in comparison.view]
    if not hits:
        return [], "No pages indexed yet: add PDFs in the Library tab.", [], None
    gallery = [(pages.thumbnail(h["page_id"]), _caption(h)) for h in hits]
    return gallery, comparison_markdown(comparison, spec, k), hits, None


def select_result(hits, evt: gr.SelectData):
    """The page id of the clicked gallery item."""
    if not hits or evt.index is None:
        return None
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    return hits[index]["page_id"]


def explain(engine, pages: PageImages, query, page_id, spec, token):
    """The similarity map of one query token over a result page (for a view: mapped back through
    its groups), with the token choices; the default token is the one matching this page best."""
    if page_id is None or page_id == "":
        return figures.message_figure("Search, then click a result to see which patches matched."), gr.update(), ""
    ex = engine.explain(query, int(page_id), spec or FULL)
    if ex.maps.shape[1] == 0:
        return figures.message_figure("This page has no patches to draw."), gr.update(choices=[], value=None), ""
    tokens = ex.query.tokens or [str(i) for i in range(len(ex.query.vectors))]
    choices = [(f"{heatmap.display_token(tokens[i])} (#{i})", i) for i in ex.tokens]
    # Best match per token, -inf where the view pruned every patch the token could see.
    peaks = np.where(np.isfinite(ex.maps), ex.maps, -np.inf).max(axis=1)  # (q,)
    best = max(ex.tokens, key=lambda i: peaks[i])
    index = int(token) if token is not None and token != "" and int(token) in ex.tokens else best
    label = heatmap.display_token(tokens[index])
    title = f"{ex.page.doc_name} · page {ex.page.page_number} · {ex.spec}"
    fig = figures.similarity_figure(pages.background(ex.page.id), ex.embedding.boxes, ex.embedding.cells,
                                    ex.maps[index], label, title=title)
    pruned = int((~np.isfinite(ex.maps[index])).sum())
    text = f"token **“{label}”**: best patch similarity {peaks[index]:.3f}"
    if pruned:
        text += f" · {pruned} patches pruned in this view (dimmed)"
    return fig, gr.update(choices=choices, value=index), text


def build(engine, pages: PageImages) -> SearchTab:
    """Lay out the Search tab and wire its events (call inside `with gr.Tab(...)`)."""
    strategies = engine.strategies()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            query = gr.Textbox(label="query", placeholder="e.g. quarterly revenue by region", elem_id="query")
            controls = view_controls(strategies, FULL, include_full=True, prefix="search", label="view")
            k = gr.Slider(1, 50, value=8, step=1, label="top-k")
            # allow_custom_value: API callers pass document ids or names the page has not listed yet;
            # the engine refuses unknown ones with one message.
            documents = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                    label="only these documents (empty: all)",
                                    elem_id="search-documents")
            search_btn = gr.Button("Search", variant="primary", elem_id="search-btn")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="results", columns=5, height=380, object_fit="contain", allow_preview=False,
                                 elem_id="results")
            comparison = gr.Markdown(elem_id="comparison")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            page_id = gr.Number(label="selected page id", precision=0, interactive=True, elem_id="selected-page")
            token = gr.Dropdown([], label="query token", allow_custom_value=True, elem_id="token")
            token_info = gr.Markdown()
        with gr.Column(scale=3):
            plot = gr.Plot(label="similarity map", elem_id="search-plot")
    with gr.Accordion("results (JSON)", open=False):
        hits = gr.JSON(label="hits")

    run = bind(search, engine, pages)
    for trigger in (search_btn.click, query.submit):
        trigger(run, [query, controls.spec, k, documents], [gallery, comparison, hits, page_id],
                api_name="search" if trigger == search_btn.click else "search_submit",
                api_visibility="public" if trigger == search_btn.click else "undocumented",
                concurrency_limit=4, concurrency_id="search")
    show = bind(explain, engine, pages)
    explain_outputs = [plot, token, token_info]
    gallery.select(select_result, [hits], [page_id], api_name="select_result", api_visibility="undocumented",
                   queue=False).then(
        show, [query, page_id, controls.spec, gr.State(None)], explain_outputs, api_name="explain_selected",
        api_visibility="undocumented")
    token.input(show, [query, page_id, controls.spec, token], explain_outputs, api_name="explain")
    page_id.submit(show, [query, page_id, controls.spec, gr.State(None)], explain_outputs,
                   api_name="explain_page", api_visibility="undocumented")
    controls.strategy.input(lambda name: strategy_defaults(strategies, name), [controls.strategy],
                            [controls.keep, controls.factor, controls.k, controls.spec], api_name="search_strategy",
                            api_visibility="undocumented", queue=False)
    for slider in controls.sliders:
        slider.release(lambda s, keep, factor, kk: spec_text(strategies, s, keep, factor, kk),
                       [controls.strategy, *controls.sliders], [controls.spec],
                       api_name=f"search_{str(slider.label).split(' ')[0]}", api_visibility="undocumented",
                       queue=False)
    return SearchTab(query, controls, documents)
