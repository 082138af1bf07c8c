"""Library tab: upload PDFs (progress over pages), list and delete documents, store totals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..memory import format_bytes
from . import access
from .common import PageImages, bind, progress_adapter

DOC_HEADERS = ["id", "name", "pages", "added", "memory (full index)", "PDF size"]
VIEW_HEADERS = ["view", "pages", "vectors", "memory", "vectors / page", "ratio to full"]


@dataclass
class LibraryTab:
    """What build_demo wires across tabs: the events that change the documents, and the
    refresh handler with its outputs (run on page load too)."""

    upload_event: object
    delete_event: object
    refresh: object
    outputs: list


def _paths(files) -> list[str]:
    """Gradio gives a path string, a list of them, or file objects with .name."""
    if files is None:
        return []
    items = files if isinstance(files, (list, tuple)) else [files]
    return [str(f if isinstance(f, (str, Path)) else getattr(f, "path", None) or f.name) for f in items]


def add_documents(engine, pages: PageImages, files, progress=gr.Progress()) -> str:
    """Index the uploaded PDFs (all checked before any is encoded; the same bytes twice: no-op)."""
    access.require("add documents")
    paths = _paths(files)
    if not paths:
        raise gr.Error("choose one or more PDF files first", title="Nothing to index")
    results = engine.add_files(paths, progress=progress_adapter(progress))
    pages.clear()
    lines = []
    for path, result in zip(paths, results):
        state = "indexed" if result.added else "already in the library"
        lines.append(f"- **{Path(path).name}**: {result.n_pages} pages {state} (document {result.doc_id})")
        blank, reason = engine.pages_without_text(result.doc_id)
        if blank:
            lines.append(f"  - no text found on page(s) {', '.join(map(str, blank))}" + (f": {reason}" if reason else ""))
    return "\n".join(lines)


def delete_document(engine, pages: PageImages, doc) -> str:
    """Delete a document (id or file name) and everything derived from it."""
    access.require("delete documents")
    if doc is None or str(doc).strip() == "":
        raise gr.Error("pick a document to delete", title="Nothing selected")
    doc_id = engine.delete_document(doc)
    pages.clear()
    return f"Deleted document {doc_id}."


def delete_view(engine, spec) -> str:
    """Delete a stored view (the full index stays); searching it again recomputes it."""
    access.require("delete views")
    if spec is None or str(spec).strip() == "":
        raise gr.Error("pick a stored view to delete", title="Nothing selected")
    return f"Deleted view `{engine.delete_view(spec)}`."


def documents_table(engine) -> list[list]:
    """One row per document: id, name, pages, added, full-index memory, PDF size."""
    return [
        [d.id, d.name, d.n_pages, d.added_at.replace("T", " ").replace("+00:00", " UTC"),
         format_bytes(d.vector_bytes), format_bytes(d.n_bytes)]
        for d in engine.list_documents()
    ]


def totals_markdown(stats: dict) -> str:
    full = next((v for v in stats["views"] if v["view"] == "full"), None)
    memory = format_bytes(full["bytes"]) if full else "0 B"
    vectors = full["vectors"] if full else 0
    docs = f"{stats['documents']} document" + ("" if stats["documents"] == 1 else "s")
    pages = f"{stats['pages']} page" + ("" if stats["pages"] == 1 else "s")
    return (
        f"**{docs} · {pages} · {vectors:,} vectors** · "
        f"full index {memory} · store file {format_bytes(stats['file_bytes'])} · "
        f"model `{access.shown_model(stats['model']) or '—'}`"
    )


def views_table(stats: dict) -> list[list]:
    return [
        [v["view"], v["pages"], v["vectors"], format_bytes(v["bytes"]), v["per_page_mean"],
         "—" if v["ratio_to_full"] is None else f"{v['ratio_to_full']:.3f}"]
        for v in stats["views"]
    ]


def refresh(engine):
    """Table, totals, memory per view and delete choices, from the store."""
    stats = engine.stats()
    docs = documents_table(engine)
    choices = [(f"{row[1]} (id {row[0]})", row[0]) for row in docs]
    stored_views = [v["view"] for v in stats["views"] if v["view"] != "full"]
    return (
        docs,
        totals_markdown(stats),
        views_table(stats),
        gr.update(choices=choices, value=choices[0][1] if choices else None),
        gr.update(choices=stored_views, value=stored_views[0] if stored_views else None),
    )


def build(engine, pages: PageImages, max_upload_mb: float) -> LibraryTab:
    """Lay out the Library tab and wire its events (call inside `with gr.Tab(...)`)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            files = gr.File(file_count="multiple", file_types=[".pdf"], type="filepath",
                            label=f"PDF files (up to {max_upload_mb:g} MB each)", elem_id="upload")
            index_btn = gr.Button("Index PDFs", variant="primary", elem_id="index-btn")
            status = gr.Markdown(elem_id="library-status")
        with gr.Column(scale=1):
            totals = gr.Markdown(elem_id="library-totals")
            doc_choice = gr.Dropdown([], label="document", allow_custom_value=True, elem_id="delete-doc")
            delete_btn = gr.Button("Delete document", variant="stop", elem_id="delete-btn")
    documents = gr.Dataframe(headers=DOC_HEADERS, label="documents", interactive=False, elem_id="documents",
                             wrap=True)
    with gr.Accordion("Memory by view", open=True):
        views = gr.Dataframe(headers=VIEW_HEADERS, label="stored views", interactive=False)
        with gr.Row():
            view_choice = gr.Dropdown([], label="stored view", allow_custom_value=True, elem_id="delete-view")
            delete_view_btn = gr.Button("Delete view", elem_id="delete-view-btn")

    outputs = [documents, totals, views, doc_choice, view_choice]
    upload_event = index_btn.click(
        bind(add_documents, engine, pages), [files], [status], api_name="add_documents",
        concurrency_limit=1, concurrency_id="encode",
    ).success(bind(refresh, engine), None, outputs, api_name="library", api_visibility="undocumented")
    delete_event = delete_btn.click(
        bind(delete_document, engine, pages), [doc_choice], [status], api_name="delete_document",
    ).success(bind(refresh, engine), None, outputs, api_name="library_after_delete", api_visibility="undocumented")
    delete_view_btn.click(bind(delete_view, engine), [view_choice], [status], api_name="delete_view").success(
        bind(refresh, engine), None, outputs, api_name="library_after_view_delete", api_visibility="undocumented"
    )
    return LibraryTab(upload_event, delete_event, bind(refresh, engine), outputs)

