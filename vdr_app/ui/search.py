"""Search tab: rank pages for a query over the full index or a view, see how the view's ranking
differs from the full one, and open a result to see which patches matched which query token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from .. import figures, heatmap
from ..engine import DEFAULT_RESCORE
from . import access
from .common import FULL, PageImages, ViewControls, bind, spec_text, strategy_defaults, view_controls


_SCROLL_TO_MAP = "() => document.getElementById('search-map')?.scrollIntoView({behavior: 'smooth', block: 'start'})"


@dataclass
class SearchTab:
    query: gr.Textbox
    controls: ViewControls
    documents: gr.Dropdown  # document filter; refreshed by the app after uploads and deletes
    gallery: gr.Gallery  # a click opens the page viewer too (wired by the app)
    hits: gr.JSON


SCORE_NOTE = (
    "_Score = MaxSim: each query token's best cosine similarity with any vector of the page, summed over "
    "the query's tokens, so a query of n tokens scores at most n. Compare scores within one query only._"
)
MAP_PROMPT = "Click a result to see which parts of the page matched each word of the query."


def _caption(hit: dict, width: int = 18) -> str:
    """"document · p. N · score", the document's name shortened so the page and score stay visible."""
    name = Path(hit["doc_name"]).stem
    name = name if len(name) <= width else name[: width - 1] + "…"
    return f"{name} · p. {hit['page_number']} · {hit['score']:.2f}"


def results_markdown(hits: list[dict]) -> str:
    """The hits as a compact list: rank, document, page, score."""
    lines = ["| # | document | page | score |", "|---:|---|---:|---:|"]
    lines += [f"| {h['rank']} | {h['doc_name']} | {h['page_number']} | {h['score']:.3f} |" for h in hits]
    return "\n".join(lines)


def comparison_markdown(comparison, spec: str, k: int) -> str:
    """How the view's top-k differs from the full index's top-k."""
    if spec == FULL:
        return (f"Ranked over the **full index** (top {k}). Pick a view to compare a reduced index with it.\n\n"
                + results_markdown([h.as_dict() for h in comparison.view]))
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


def search(engine, pages: PageImages, query, spec, k, docs=None, rescore=DEFAULT_RESCORE):
    """Rank pages for a query by MaxSim over the full index or a view, and compare with the full index.

    Args:
        query: the question or keywords.
        spec: "full" or a view spec such as "cluster:factor=9" or "full@binary" (computed and
            stored on first use).
        k: how many pages to return.
        docs: document ids (or names) to search within; empty or None for every document.
        rescore: for a quantised view (`...@int8`, `...@binary`): re-score its best `rescore`
            candidates (at least k) exactly with the float vectors; 0 = quantised scores only.

    Returns:
        results: the result pages as a gallery, captioned "document · p. N · score".
        comparison: the ranked list, and for a view how its top k differs from the full index's (Markdown).
        hits: the results as data: rank, score, doc_id, doc_name, page_id, page_number.
        page_id: cleared (a new search clears the previous similarity map).
        similarity_map: a prompt to click a result.
        token: cleared.
        token_info: cleared.
    """
    k = int(k or 5)
    if access.mode() == "shared" and not engine.store.has_view(engine.resolve_view(spec or FULL)):
        access.require("save a new view")  # searching a view stores it for everyone
    comparison = engine.compare(query, k=k, view=spec or FULL, docs=list(docs) if docs else None,
                                rescore=DEFAULT_RESCORE if rescore is None or rescore == "" else rescore)
    spec = engine.resolve_view(spec)
    hits = [h.as_dict() for h in comparison.view]
    cleared = (None, figures.message_figure(MAP_PROMPT), gr.update(choices=[], value=None), "")
    if not hits:
        return [], "No pages indexed yet: add PDFs in the Library tab.", [], *cleared
    gallery = [(pages.thumbnail(h["page_id"]), _caption(h)) for h in hits]
    return gallery, comparison_markdown(comparison, spec, k) + "\n\n" + SCORE_NOTE, hits, *cleared


def select_result(hits, evt: gr.SelectData):
    """The page id of the clicked gallery item."""
    if not hits or evt.index is None:
        return None
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    return hits[index]["page_id"]


def explain(engine, pages: PageImages, query, page_id, spec, token):
    """Which patches of a result page matched one word of the query (for a view: mapped back through its groups).

    Args:
        query: the query text.
        page_id: the page (a hit's page_id).
        spec: "full" or the view spec searched.
        token: index of the query token (a word's first token, from the returned choices); empty for the
            word that matches this page best.

    Returns:
        similarity_map: the word's similarity to every patch, over the page (plotly).
        token: the words of the query as (word, token index) choices, and the one shown.
        token_info: the word and its best similarity, as Markdown.
    """
    if page_id is None or page_id == "":
        return figures.message_figure(MAP_PROMPT), gr.update(), ""
    ex = engine.explain(query, int(page_id), spec or FULL)
    if ex.maps.shape[1] == 0:
        return figures.message_figure("This page has no patches to draw."), gr.update(choices=[], value=None), ""
    tokens = ex.query.tokens or [str(i) for i in range(len(ex.query.vectors))]
    words = heatmap.query_words(tokens, ex.tokens)
    # A word's map: the best of its sub-word tokens on each patch (NaN stays NaN where pruned).
    maps = [np.fmax.reduce(ex.maps[members], axis=0) for _, members in words]
    peaks = [float(np.max(np.where(np.isfinite(m), m, -np.inf))) for m in maps]
    choices = [(word, members[0]) for word, members in words]
    chosen = int(token) if token is not None and token != "" else None
    index = next((w for w, (_, members) in enumerate(words) if chosen in members), None)
    if index is None:
        index = int(np.argmax(peaks))
    word = words[index][0]
    title = f"{ex.page.doc_name} · page {ex.page.page_number} · {ex.spec}"
    fig = figures.similarity_figure(pages.background(ex.page.id), ex.embedding.boxes, ex.embedding.cells,
                                    maps[index], word, title=title)
    pruned = int((~np.isfinite(maps[index])).sum())
    text = f"word **“{word}”**: best patch similarity {peaks[index]:.3f}"
    if len(words[index][1]) > 1:
        text += f" (best of its {len(words[index][1])} tokens)"
    if pruned:
        text += f" · {pruned} patches pruned in this view (grey)"
    return fig, gr.update(choices=choices, value=words[index][1][0]), text


def build(engine, pages: PageImages) -> SearchTab:
    """Lay out the Search tab and wire its events (call inside `with gr.Tab(...)`)."""
    strategies = engine.strategies()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            query = gr.Textbox(label="query", placeholder="e.g. quarterly revenue by region", elem_id="query")
            controls = view_controls(strategies, FULL, include_full=True, prefix="search", label="view")
            k = gr.Slider(1, 50, value=8, step=1, label="top-k")
            rescore = gr.Number(DEFAULT_RESCORE, precision=0, minimum=0, label="rescore (quantised views)",
                                info="re-score this many best candidates exactly with the float vectors; 0 = none",
                                elem_id="search-rescore")
            # allow_custom_value: API callers pass document ids or names the page has not listed yet;
            # the engine refuses unknown ones with one message.
            documents = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                    label="only these documents (empty: all)",
                                    elem_id="search-documents")
            search_btn = gr.Button("Search", variant="primary", elem_id="search-btn")
        with gr.Column(scale=2, min_width=420):
            gallery = gr.Gallery(label="results", columns=3, height=440, object_fit="contain", allow_preview=False,
                                 elem_id="results")
        with gr.Column(scale=2, min_width=360):
            comparison = gr.Markdown(elem_id="comparison", label="ranking")
    with gr.Row(equal_height=False, elem_id="search-map"):
        with gr.Column(scale=1, min_width=300):
            # The clicked page, for the API (/explain takes a page id); people click a result instead.
            page_id = gr.Number(label="page_id", precision=0, visible=False, elem_id="selected-page")
            token = gr.Dropdown([], label="word of the query", allow_custom_value=True, elem_id="token")
            token_info = gr.Markdown(elem_id="token-info", label="token_info")
        with gr.Column(scale=4):
            plot = gr.Plot(figures.message_figure(MAP_PROMPT), label="similarity map", elem_id="search-plot",
                           show_label=False)
    with gr.Accordion("results (JSON)", open=False):
        hits = gr.JSON(label="hits")

    run = bind(search, engine, pages)
    explain_outputs = [plot, token, token_info]
    for trigger in (search_btn.click, query.submit):
        trigger(run, [query, controls.spec, k, documents, rescore],
                [gallery, comparison, hits, page_id, *explain_outputs],
                api_name="search" if trigger == search_btn.click else "search_submit",
                api_visibility="undocumented",
                concurrency_limit=4, concurrency_id="search")
    show = bind(explain, engine, pages)
    selected = gallery.select(select_result, [hits], [page_id], api_name="select_result",
                              api_visibility="undocumented", queue=False)
    selected.then(show, [query, page_id, controls.spec, gr.State(None)], explain_outputs, api_name="explain_selected",
                  api_visibility="undocumented")
    selected.then(None, None, None, js=_SCROLL_TO_MAP, api_name="scroll_to_map", api_visibility="undocumented",
                  queue=False)
    token.input(show, [query, page_id, controls.spec, token], explain_outputs, api_name="explain",
                api_visibility="undocumented")
    page_id.submit(show, [query, page_id, controls.spec, gr.State(None)], explain_outputs,
                   api_name="explain_page", api_visibility="undocumented")
    controls.strategy.input(lambda name, precision: strategy_defaults(strategies, name, precision),
                            [controls.strategy, controls.precision],
                            [controls.keep, controls.factor, controls.k, controls.spec], api_name="search_strategy",
                            api_visibility="undocumented", queue=False)
    for slider in [*controls.sliders, controls.precision]:
        event = slider.input if slider is controls.precision else slider.release
        event(lambda s, keep, factor, kk, precision: spec_text(strategies, s, keep, factor, kk, precision),
              controls.inputs, [controls.spec],
              api_name=f"search_{str(slider.label).split(' ')[0]}", api_visibility="undocumented",
              queue=False)
    return SearchTab(query, controls, documents, gallery, hits)
