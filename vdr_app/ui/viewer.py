"""Page viewer: one page at the store's full resolution in a dialog over the app, with zoom.

Opened from a Search result (click its thumbnail) or from Explore ("View page"). The image is
the JPEG the store keeps (the rendering resolution, e.g. 120 dpi), sent as it is, so small print
is readable when zoomed. Zoom, pan and close run in the browser (assets/viewer.js): no round trip
per zoom step, and closing works while the server is busy.
"""

from __future__ import annotations

import base64
import html

import gradio as gr

from .common import ASSETS

CLOSED = ""  # the component's value when no page is shown


def build() -> gr.HTML:
    """The viewer component (empty until a page is opened); place it anywhere: it draws over the app."""
    script = ASSETS / "viewer.js"
    return gr.HTML(CLOSED, elem_id="page-viewer", padding=False, container=False,
                   js_on_load=script.read_text(encoding="utf-8") if script.is_file() else None)


def page_html(engine, page_id, title: str | None = None) -> str:
    """The viewer's markup for one page: title bar, zoom buttons, the full-resolution image."""
    row = engine.page(int(page_id))
    title = title or f"{row.doc_name} · p. {row.page_number}"
    source = "data:image/jpeg;base64," + base64.b64encode(engine.page_jpeg(row.id)).decode("ascii")
    text = html.escape(title)
    return f"""
<div class="vdr-viewer" role="dialog" aria-modal="true" aria-label="{text}" data-page-id="{row.id}">
  <div class="vdr-viewer-backdrop" data-action="close"></div>
  <div class="vdr-viewer-box">
    <div class="vdr-viewer-bar">
      <strong class="vdr-viewer-title">{text}</strong>
      <span class="vdr-viewer-size">{row.width} × {row.height} px</span>
      <span class="vdr-viewer-tools">
        <button type="button" data-action="out" title="Zoom out (−)" aria-label="zoom out">−</button>
        <span class="vdr-viewer-zoom" aria-live="polite">fit</span>
        <button type="button" data-action="in" title="Zoom in (+)" aria-label="zoom in">+</button>
        <button type="button" data-action="fit" title="Whole page (0)">Fit</button>
        <button type="button" data-action="actual" title="One image pixel per screen pixel (1)">100 %</button>
        <button type="button" data-action="close" class="vdr-viewer-close" title="Close (Esc)">✕ Close</button>
      </span>
    </div>
    <div class="vdr-viewer-pane">
      <img src="{source}" alt="{text}" width="{row.width}" height="{row.height}" draggable="false">
    </div>
    <div class="vdr-viewer-hint">Drag or scroll to move · Ctrl + wheel, + and − to zoom · click the page to switch
      between whole page and 100 % · Esc closes</div>
  </div>
</div>"""


def open_result(engine, hits, evt: gr.SelectData) -> str:
    """The clicked Search result, large: titled "document · p. N · score"."""
    if not hits or evt.index is None:
        return CLOSED
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    hit = hits[index]
    return page_html(engine, hit["page_id"], f"{hit['doc_name']} · p. {hit['page_number']} · score {hit['score']:.2f}")


def open_page(engine, page_id) -> str:
    """A page (Explore's current one), large."""
    if page_id is None or page_id == "":
        raise gr.Error("pick a document and a page first", title="No page")
    return page_html(engine, page_id)
