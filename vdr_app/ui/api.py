"""The app's API for programs and agents: the documented gradio_client endpoints, which are also
the MCP tools when the MCP server is on (`VDR_MCP=1` or `GRADIO_MCP_SERVER=true`; docs/mcp.md).

Gradio turns every public endpoint into an MCP tool, named after its function, described by its
docstring (the first paragraph; one line per parameter under "Args:") and typed by its hints. So
the endpoints here are plain functions over the engine, with typed parameters (a document is its
id or file name, as text), returning compact JSON text (a dict would reach an MCP client as a
Python repr). The UI's own handlers (figures, galleries, dropdown updates) stay callable under
their names but undocumented, so they are neither on the API page nor MCP tools.

Page images are linked, not inlined: each result carries the URL of the stored page (a JPEG at
the rendering resolution) that this app serves from Gradio's file route, so an agent fetches only
the pages it wants to look at. The copies are Gradio cache files, deleted with the others after
`VDR_CACHE_MINUTES`.
"""

import json
import shutil
import tempfile
import threading
import urllib.parse
from pathlib import Path

import gradio as gr
import numpy as np
from gradio import route_utils

from .. import heatmap
from . import access
from .common import FULL, bind, progress_adapter

# Most pages one search returns (each result copies its page's JPEG into the cache for its link).
MAX_RESULTS = 50


def _json(data) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _round(value: float) -> float:
    return round(float(value), 4)


class PageLinks:
    """URLs of stored page images that this app serves.

    A page's JPEG is copied into Gradio's cache through `owner` (a component of the app: the
    copy is its temp file, so Gradio's `delete_cache` removes it like any other output) and
    linked through Gradio's `/gradio_api/file=` route, which serves cache files only. The URL's
    origin is the one the caller reached (forwarded host and protocol included, as on a Space).
    """

    def __init__(self, owner: gr.components.Component):
        self._owner = owner
        self._staging = tempfile.TemporaryDirectory(prefix="vdr-page-links-")
        self._lock = threading.Lock()

    def file(self, engine, page_id: int) -> str:
        """The cached copy of the page's JPEG (a path Gradio serves)."""
        row = engine.page(int(page_id))
        name = f"{Path(row.doc_name).stem[:60]}-p{row.page_number}.jpg"
        with self._lock:  # same page twice at once: one staging file, same bytes
            staging = Path(self._staging.name) / name
            staging.write_bytes(engine.page_jpeg(row.id))
            return self._owner.move_resource_to_block_cache(str(staging))

    def url(self, engine, page_id: int, request) -> str:
        return f"{_root_url(request)}/gradio_api/file={urllib.parse.quote(str(self.file(engine, page_id)))}"


def _root_url(request) -> str:
    """The app's public origin for this call (the URL an API or MCP client reached)."""
    http = getattr(request, "request", request)  # gr.Request wraps the Starlette request
    if http is None:
        return ""
    return route_utils.get_root_url(request=http, route_path=route_utils.get_api_call_path(http),
                                    root_path=http.scope.get("root_path") or None)


def _document(row) -> dict:
    return dict(doc_id=row.id, name=row.name, pages=row.n_pages, added=row.added_at,
                vector_bytes=row.vector_bytes, pdf_bytes=row.n_bytes)


# -- the endpoints (first argument(s) bound by `register`) ------------------------------------------


def search_pages(engine, links: PageLinks, query: str, k: int = 5, view: str = "full",
                 documents: list[str] = (), request: gr.Request = None) -> str:
    """Find the PDF pages that best answer a query (visual retrieval: the page images are matched,
    not extracted text).

    Scores are MaxSim: each query token's best similarity with the page, summed, so compare them
    within one query only. Use explain_match on a result to see which words matched where.

    Args:
        query: the question or keywords, in plain words.
        k: how many pages to return (1 to 50).
        view: "full" (the exact index) or a reduced view such as "cluster:factor=9" or "full@binary" (see list_views).
        documents: only search these documents (ids or file names from list_documents); empty for all.

    Returns:
        JSON {query, view, results: [{rank, document, doc_id, page, page_id, score, image_url}]}.
    """
    if not isinstance(k, (int, float)) or not 1 <= int(k) <= MAX_RESULTS:
        raise gr.Error(f"k must be a whole number from 1 to {MAX_RESULTS}, got {k!r}", title="Bad k")
    spec = engine.resolve_view(view or FULL)
    if access.mode() == "shared" and not engine.store.has_view(spec):
        access.require("save a new view")  # searching a view stores it for everyone
    hits = engine.search(query, k=int(k), view=spec, docs=list(documents) if documents else None)
    results = [dict(rank=h.rank, document=h.doc_name, doc_id=h.doc_id, page=h.page_number, page_id=h.page_id,
                    score=_round(h.score), image_url=links.url(engine, h.page_id, request)) for h in hits]
    return _json(dict(query=query, view=spec, results=results))


def explain_match(engine, links: PageLinks, query: str, page_id: int, view: str = "full",
                  request: gr.Request = None) -> str:
    """Explain why a page matched a query: for each word of the query, how well it matched and
    where on the page. A word's box is its best-matching patch as [x0, y0, x1, y1] in 0-1 page
    coordinates (origin top left); a word the view pruned everywhere has none.

    Args:
        query: the query that was searched.
        page_id: the page_id of a search_pages result.
        view: the view that was searched ("full" by default).

    Returns:
        JSON {document, page, page_id, view, image_url, words: [{word, similarity, box}]}.
    """
    explanation = engine.explain(query, int(page_id), view or FULL)
    tokens = explanation.query.tokens or [str(i) for i in range(len(explanation.query.vectors))]
    boxes = explanation.embedding.boxes
    words = []
    for word, members in heatmap.query_words(tokens, explanation.tokens):
        # A word's map: the best of its sub-word tokens on each patch; NaN where the view pruned it.
        word_map = np.fmax.reduce(explanation.maps[members], axis=0)
        if word_map.size == 0 or not np.isfinite(word_map).any():
            words.append(dict(word=word, similarity=None, box=None))
            continue
        best = int(np.nanargmax(word_map))
        words.append(dict(word=word, similarity=_round(word_map[best]), box=[_round(v) for v in boxes[best]]))
    page = explanation.page
    return _json(dict(document=page.doc_name, page=page.page_number, page_id=page.id, view=explanation.spec,
                      image_url=links.url(engine, page.id, request), words=words))


def get_page_image(engine, links: PageLinks, page_id: int) -> str:
    """Show one page as an image, to read or look at a search result (the stored page, at the resolution it was
    rendered at).

    Args:
        page_id: the page_id of a search_pages result.

    Returns:
        the page image (JPEG), and its URL.
    """
    if page_id is None or float(page_id) != int(page_id):
        raise gr.Error(f"page_id must be a whole number, got {page_id!r}", title="Bad page_id")
    return links.file(engine, int(page_id))


def list_documents(engine) -> str:
    """List the PDFs in the library: id, file name, page count, when added, and sizes.

    Returns:
        JSON {documents: [{doc_id, name, pages, added, vector_bytes, pdf_bytes}]}.
    """
    return _json(dict(documents=[_document(d) for d in engine.list_documents()]))


def remove_document(engine, pages, document: str) -> str:
    """Delete a PDF from the library, with its pages and their vectors in every view. This cannot be undone.

    Args:
        document: the document's id or file name (from list_documents).

    Returns:
        JSON {deleted: {doc_id, name, pages}}.
    """
    access.require("delete documents")
    if document is None or not str(document).strip():
        raise gr.Error("name the document to delete (its id or file name)", title="Nothing selected")
    before = {d.id: d for d in engine.list_documents()}
    doc_id = engine.delete_document(str(document).strip())
    pages.clear()  # the UI's page-image cache: SQLite reuses page ids after a delete
    row = before.get(doc_id)
    return _json(dict(deleted=dict(doc_id=doc_id, name=row.name if row else str(document),
                                   pages=row.n_pages if row else 0)))


def list_views(engine) -> str:
    """List the index views: the full index and the stored reduced ones, with their vectors and
    memory, and the reduction strategies a new view can use (name, kinds, about, example). A view
    spec is "strategy:param=value" (see the examples), optionally followed by a precision: "@int8",
    "@int4", "@int2" or "@binary".

    Returns:
        JSON {model, views: [{view, pages, vectors, bytes, ratio_to_full}], strategies: [{name, kinds, about, example}]}
    """
    stats = engine.stats()
    views = [dict(view=v["view"], pages=v["pages"], vectors=v["vectors"], bytes=v["bytes"],
                  ratio_to_full=v["ratio_to_full"]) for v in stats["views"]]
    strategies = [dict(name=s["name"], kinds=s["kinds"], about=s["doc"], example=s["example"])
                  for s in engine.strategies() if s["name"] != "identity"]
    return _json(dict(model=access.shown_model(stats["model"]) or None, views=views, strategies=strategies))


def add_pdf(engine, pages, pdf: str | None, name: str = "", progress=gr.Progress()) -> str:
    """Add a PDF to the library: every page is rendered and encoded, then searchable with search_pages.

    The same file twice is not added again (added is false, with the existing doc_id). A file that
    is not a readable PDF (broken, encrypted, empty, too large, too many pages) is refused with
    the reason and changes nothing.

    Args:
        pdf: the PDF, as an http(s) URL or a data URI ("data:application/pdf;base64,...").
        name: the file name to list it under, e.g. "report.pdf" (default: the name the file arrived with).

    Returns:
        JSON {doc_id, name, pages, added, pages_without_text}.
    """
    access.require("add documents")
    if not pdf:
        raise gr.Error("give the PDF as an http(s) URL or a data: URI", title="No file")
    path = Path(pdf)
    with tempfile.TemporaryDirectory(prefix="vdr-add-pdf-") as folder:
        if name and name.strip():  # the store names a document after its file
            path = Path(folder) / _file_name(name)
            shutil.copyfile(pdf, path)
        [result] = engine.add_files([path], progress=progress_adapter(progress))
    pages.clear()
    blank, _ = engine.pages_without_text(result.doc_id) if result.added else ([], None)
    stored = next((d.name for d in engine.list_documents() if d.id == result.doc_id), path.name)  # first name kept
    return _json(dict(doc_id=result.doc_id, name=stored, pages=result.n_pages, added=result.added,
                      pages_without_text=blank))


def _file_name(name: str) -> str:
    """A caller's document name as a safe file name ending in .pdf."""
    stem = Path(name.strip().replace("\\", "/")).name[:120] or "document.pdf"
    return stem if stem.lower().endswith(".pdf") else stem + ".pdf"


def register(engine, pages) -> None:
    """Add the documented endpoints (= MCP tools) to the Blocks being built; call inside it.

    `pages` is the UI's page-image cache, cleared when documents change (as the Library does).
    """
    # Hidden components: add_pdf needs a real File input (Gradio checks and stores the upload;
    # MCP turns a URL or data URI into one), get_page_image a real Image output, and page links
    # a component to own their files.
    with gr.Column(visible=False, elem_id="agent-api"):
        pdf = gr.File(file_count="single", file_types=[".pdf"], type="filepath", label="pdf")
        name = gr.Textbox("", label="name")
        added = gr.Textbox(label="result")
        page_id = gr.Number(label="page_id", precision=0)
        page_image = gr.Image(type="filepath", format="jpeg", label="page")
    links = PageLinks(added)
    # No trigger: an endpoint only. One encoding at a time, shared with the Library's uploads.
    gr.on([], bind(add_pdf, engine, pages), [pdf, name], [added], api_name="add_pdf", concurrency_limit=1,
          concurrency_id="encode")
    gr.api(bind(search_pages, engine, links), api_name="search_pages", concurrency_limit=4,
           concurrency_id="search")
    gr.api(bind(explain_match, engine, links), api_name="explain_match", concurrency_limit=4,
           concurrency_id="search")
    # An image output: MCP clients get the picture itself (and its URL), not a link only.
    gr.on([], bind(get_page_image, engine, links), [page_id], [page_image], api_name="get_page_image",
          concurrency_limit=4, concurrency_id="search")
    gr.api(bind(list_documents, engine), api_name="list_documents")
    gr.api(bind(remove_document, engine, pages), api_name="remove_document")
    gr.api(bind(list_views, engine), api_name="list_views")


def mcp_server(settings) -> bool:
    """`launch(mcp_server=...)`: `Settings.mcp` (VDR_MCP, or Gradio's GRADIO_MCP_SERVER when that is unset)."""
    return bool(settings.mcp)
