"""Library tab: upload PDFs (progress over pages), list and delete documents, store totals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..errors import VdrError
from ..memory import format_bytes
from . import access
from .common import PageImages, bind, progress_adapter

DOC_HEADERS = ["id", "name", "pages", "added", "memory (full index)", "PDF size"]
VIEW_HEADERS = ["view", "precision", "pages", "vectors", "memory", "vectors / page", "bytes ratio to full"]


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


def add_documents(engine, pages: PageImages, files, progress=gr.Progress()):
    """Index PDFs. Every file is checked before any is encoded: if one cannot be read, nothing is
    added and every bad file is named. The same bytes twice are skipped (already in the library).

    Args:
        files: the PDF files.

    Returns:
        status: what happened, per file (Markdown).
        result: the same as data: documents [{file, doc_id, pages, added}], skipped [{file, reason}],
            pages_indexed (pages newly encoded).
        files: the upload box, cleared once the files are indexed.
    """
    access.require("add documents")
    paths = _paths(files)
    if not paths:
        raise gr.Error("choose one or more PDF files first", title="Nothing to index")
    progress(0.0, desc=f"reading {len(paths)} file{'s' if len(paths) != 1 else ''}")
    bad = [(path, str(error)) for path, _, error in engine.check_files(paths) if error is not None]
    if bad:
        skipped = [dict(file=path.name, reason=error) for path, error in bad]
        lines = [f"**Nothing was indexed:** {len(bad)} of {len(paths)} files cannot be read. "
                 "Remove them from the box and click **Index PDFs** again."]
        lines += [f"- **{path.name}**: {error}" for path, error in bad]
        gr.Warning(f"{len(bad)} file{'s' if len(bad) != 1 else ''} cannot be read: nothing was indexed", title="Bad file")
        return "\n".join(lines), dict(documents=[], skipped=skipped, pages_indexed=0), gr.update()
    results = engine.add_files(paths, progress=progress_adapter(progress))
    pages.clear()
    lines, documents, skipped = [], [], []
    for path, result in zip(paths, results):
        name = Path(path).name
        documents.append(dict(file=name, doc_id=result.doc_id, pages=result.n_pages, added=result.added))
        if result.added:
            pages_word = "page" if result.n_pages == 1 else "pages"
            lines.append(f"- **{name}**: {result.n_pages} {pages_word} indexed (document {result.doc_id})")
            blank, reason = engine.pages_without_text(result.doc_id)
            if blank:
                lines.append(f"  - no text found on page(s) {', '.join(map(str, blank))}" + (f": {reason}" if reason else ""))
        else:
            skipped.append(dict(file=name, reason=f"already in the library (document {result.doc_id})"))
            lines.append(f"- **{name}**: already in the library (document {result.doc_id}), skipped")
    data = dict(documents=documents, skipped=skipped,
                pages_indexed=sum(d["pages"] for d in documents if d["added"]))
    return "\n".join(lines), data, None


def reencode_documents(engine, pages: PageImages, files, progress=gr.Progress()):
    """Encode PDFs that are already in the library again, each swapped in one transaction (pages
    keep their ids). For pages indexed before the per-layer centrality `sap` ranks by was captured.

    Args:
        files: the PDF files, as they were added.

    Returns:
        status: what happened, per file (Markdown).
        result: the same as data: documents [{file, doc_id, pages}], skipped [{file, reason}].
        files: the upload box, cleared when every file was re-encoded.
    """
    access.require("re-encode documents")
    paths = _paths(files)
    if not paths:
        raise gr.Error("choose the PDF files to re-encode first (as they were added)", title="Nothing to re-encode")
    lines, documents, skipped = [], [], []
    checked = engine.check_files(paths)
    for i, (path, data, error) in enumerate(checked):
        if error is None:
            try:
                doc_id, n_pages = engine.reencode_pdf(data, path.name, progress=progress_adapter(
                    lambda fraction, desc, i=i: progress((i + fraction) / len(checked), desc=desc)))
            except VdrError as failure:
                error = failure
            else:
                documents.append(dict(file=path.name, doc_id=doc_id, pages=n_pages))
                lines.append(f"- **{path.name}**: {n_pages} pages re-encoded (document {doc_id})")
                continue
        skipped.append(dict(file=path.name, reason=str(error)))
        lines.append(f"- **{path.name}**: not re-encoded: {error}")
    pages.clear()
    return "\n".join(lines), dict(documents=documents, skipped=skipped), None if not skipped else gr.update()


def confirm_delete(engine, doc):
    """The confirmation row for deleting a document, naming it (shown before anything is deleted)."""
    if doc is None or str(doc).strip() == "":
        raise gr.Error("pick a document to delete", title="Nothing selected")
    row = next((d for d in engine.list_documents() if str(d.id) == str(doc) or d.name == str(doc)), None)
    if row is None:
        raise gr.Error(f"no document {doc!r} in the library", title="Not found")
    text = (f"Delete **{row.name}** ({row.n_pages} pages, {format_bytes(row.vector_bytes)} of vectors, and its "
            "pages in every view)? This cannot be undone.")
    return gr.update(visible=True), text


def delete_document(engine, pages: PageImages, doc):
    """Delete a document (id or file name) and everything derived from it.

    Args:
        doc: the document's id or file name.

    Returns:
        status: what was deleted (Markdown).
        result: the same as data: deleted {doc_id, name, pages}.
        files: the upload box, cleared (so a deleted file is not re-added by the next click).
        confirm: the confirmation row, hidden.
    """
    access.require("delete documents")
    if doc is None or str(doc).strip() == "":
        raise gr.Error("pick a document to delete", title="Nothing selected")
    before = {d.id: d for d in engine.list_documents()}
    doc_id = engine.delete_document(doc)
    pages.clear()
    row = before.get(doc_id)
    name, n_pages = (row.name, row.n_pages) if row else (str(doc), 0)
    data = dict(deleted=dict(doc_id=doc_id, name=name, pages=n_pages))
    counted = f"{n_pages} page" + ("" if n_pages == 1 else "s")
    return f"Deleted **{name}** (document {doc_id}, {counted}).", data, None, gr.update(visible=False)


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
    free = stats.get("reclaimable_bytes", 0)
    # Free pages left by deleted views or documents in a store made before incremental vacuum.
    reclaimable = f" ({format_bytes(free)} reclaimable: `python -m vdr_app compact`)" if free else ""
    return (
        f"**{docs} · {pages} · {vectors:,} vectors** · "
        f"full index {memory} · store file {format_bytes(stats['file_bytes'])}{reclaimable} · "
        f"model `{access.shown_model(stats['model']) or '—'}`"
    )


def views_table(stats: dict) -> list[list]:
    return [
        [v["view"], v.get("precision", "float16"), v["pages"], v["vectors"], format_bytes(v["bytes"]),
         v["per_page_mean"], "—" if v["ratio_to_full"] is None else f"{v['ratio_to_full']:.4f}"]
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
            with gr.Row():
                index_btn = gr.Button("Index PDFs", variant="primary", elem_id="index-btn", scale=3)
                reencode_btn = gr.Button("Re-encode", elem_id="reencode-btn", scale=1, min_width=120)
            status = gr.Markdown("_Progress and results of indexing appear here._", elem_id="library-status",
                                 label="status")
        with gr.Column(scale=1):
            totals = gr.Markdown(elem_id="library-totals")
            doc_choice = gr.Dropdown([], label="document", allow_custom_value=True, elem_id="delete-doc")
            delete_btn = gr.Button("Delete document…", variant="stop", elem_id="delete-btn")
            with gr.Group(visible=False, elem_id="delete-confirm") as confirm:
                confirm_text = gr.Markdown(elem_id="delete-confirm-text")
                with gr.Row():
                    confirm_btn = gr.Button("Delete it", variant="stop", size="sm", elem_id="delete-confirm-btn")
                    cancel_btn = gr.Button("Cancel", size="sm", elem_id="delete-cancel-btn")
    documents = gr.Dataframe(headers=DOC_HEADERS, label="documents", interactive=False, elem_id="documents",
                             wrap=True)
    with gr.Accordion("Memory by view", open=True):
        views = gr.Dataframe(headers=VIEW_HEADERS, label="stored views", interactive=False)
        with gr.Row():
            view_choice = gr.Dropdown([], label="stored view", allow_custom_value=True, elem_id="delete-view")
            delete_view_btn = gr.Button("Delete view", elem_id="delete-view-btn")
    with gr.Accordion("last result (JSON)", open=False):
        result = gr.JSON(label="result", elem_id="library-result")

    outputs = [documents, totals, views, doc_choice, view_choice]
    # Clear the old result first, so the progress bar is drawn over an empty box from the click on.
    upload_event = index_btn.click(
        lambda: "", None, [status], queue=False, api_name="clear_status", api_visibility="undocumented",
    ).then(
        bind(add_documents, engine, pages), [files], [status, result, files], api_name="add_documents",
        api_visibility="undocumented",
        concurrency_limit=1, concurrency_id="encode", show_progress="full",
        show_progress_on=[status],  # once, in the status box (not over the upload box too)
    ).success(bind(refresh, engine), None, outputs, api_name="library", api_visibility="undocumented")
    reencode_btn.click(
        bind(reencode_documents, engine, pages), [files], [status, result, files], api_name="reencode_documents",
        api_visibility="undocumented", concurrency_limit=1, concurrency_id="encode", show_progress="full", show_progress_on=[status],
    ).success(bind(refresh, engine), None, outputs, api_name="library_after_reencode", api_visibility="undocumented")
    delete_btn.click(bind(confirm_delete, engine), [doc_choice], [confirm, confirm_text], queue=False,
                     api_name="confirm_delete", api_visibility="undocumented")
    cancel_btn.click(lambda: gr.update(visible=False), None, [confirm], queue=False, api_name="cancel_delete",
                     api_visibility="undocumented")
    delete_event = confirm_btn.click(
        bind(delete_document, engine, pages), [doc_choice], [status, result, files, confirm],
        api_name="delete_document", api_visibility="undocumented",
    ).success(bind(refresh, engine), None, outputs, api_name="library_after_delete", api_visibility="undocumented")
    delete_view_btn.click(bind(delete_view, engine), [view_choice], [status], api_name="delete_view",
                          api_visibility="undocumented").success(
        bind(refresh, engine), None, outputs, api_name="library_after_view_delete", api_visibility="undocumented"
    )
    return LibraryTab(upload_event, delete_event, bind(refresh, engine), outputs)

