"""The web app: `build_demo(engine)` -> gr.Blocks. The only package that imports gradio.

Tabs: Library (upload, list, delete), Explore (one page under one view), Search (rank, compare
with the full index, per-token similarity maps), and Lab (evaluation of views); a page viewer (zoom) drawn over
them, opened from a Search result or Explore. The engine is captured in the handlers' closures; nothing heavy lives
in gr.State.

    from vdr_app.engine import Engine
    from vdr_app.ui import build_demo, launch_options
    demo = build_demo(Engine(settings))
    demo.launch(**launch_options(settings))
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from ..config import Settings
from . import access, api, explore, library, search, viewer
from .lab import build_lab_tab
from .common import ASSETS, PageImages, bind, user_errors
from .model_status import FAILED, LOADING, ModelStatus

log = logging.getLogger(__name__)

TITLE = "vdr_app · visual document retrieval"


def _header() -> str:
    logo = ASSETS / "logo.svg"
    svg = logo.read_text(encoding="utf-8") if logo.is_file() else ""
    return (
        f'<div id="vdr-header">{svg}<div><h1>Visual document retrieval</h1>'
        "<p>Upload PDFs, see what pruning or merging a multi-vector index does to each page, and search "
        "with the full or a reduced index. Memory saved and ranking kept, side by side.</p></div></div>"
    )


def _banner(status: ModelStatus, operator: bool = True):
    """Banner text, fallback and retry button visibility, and whether the timer keeps polling.

    Args:
        operator: whether whoever sees the page may act on a failed model (not a public demo's
            visitors: they get neither the operator's instructions nor the buttons that switch
            the model for everyone).
    """
    return (
        access.redact(status.markdown(for_operator=operator)),
        gr.update(visible=operator and status.state == FAILED and bool(status.fallback),
                  value=f"Continue with {status.fallback} (text-layout retriever, not visual)"),
        gr.Timer(active=status.state == LOADING),
        gr.update(visible=operator and status.state == FAILED),
    )


def _use_fallback(status: ModelStatus):
    """Switch to the fallback encoder (a text-layout retriever) and load it in the background.

    Returns:
        model_status: the banner text (Markdown).
    """
    access.require("switch the model for everyone", everyone=True)
    status.use_fallback()
    return status.markdown()


def _retry_model(status: ModelStatus):
    """Try loading the configured model again (a failed load is otherwise remembered).

    Returns:
        model_status: the banner text (Markdown).
    """
    access.require("retry loading the model for everyone", everyone=True)
    status.retry()
    return status.markdown()


def _leave_page() -> None:
    """A public-demo page closed or reloaded: the page's binding goes; the browser's library stays
    until it idles out, so a reload finds it again (vdr_app.sessions)."""
    current = access.current_access()
    if current is not None and current.libraries is not None and access.has_session():
        current.libraries.leave(access.session_hash())


def _resume_library(browser_key: str) -> str:
    """A public-demo page opened: bind it to the library of its browser (the key the browser kept
    from an earlier page, if that library is still there, else a new one); returns the key for the
    browser to keep."""
    current = access.current_access()
    return current.libraries.resume(access.session_hash(), browser_key)


_MODE_NOTES = {
    "shared": "Signed in as a user of this shared app: documents and views are shared by everyone signed in.",
    "public-demo": "Public demo: your documents are private to this browser, kept across page reloads and removed "
                   "{minutes} after your last action.",
}


def _mode_note(settings: Settings) -> str:
    minutes = settings.session_minutes
    span = f"{minutes / 60:g} hours" if minutes >= 120 else f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return _MODE_NOTES[settings.mode].format(minutes=span)


_TEMPORARY_NOTE = ("This Space has no persistent storage: the library is **temporary**, lost when the Space "
                   "restarts. (Owner: enable persistent storage in the Space's settings.)")


def _session_objects(engine, settings: Settings):
    """(access, engine, pages) for the tabs: in public-demo mode the engine and page cache are
    proxies resolving to the calling session's library (vdr_app.sessions)."""
    pages = PageImages(engine)
    if settings.mode != "public-demo":
        return access.Access(settings.mode), engine, pages
    from ..engine import LibraryQuota
    from ..sessions import SessionLibraries, proxy

    libraries = SessionLibraries(
        engine, Path(settings.data_dir) / "sessions", sample_store=settings.sample_store,
        ttl_s=settings.session_minutes * 60, max_libraries=settings.max_sessions,
        extras=lambda session_engine: {"pages": PageImages(session_engine)},
        quota=LibraryQuota(settings.session_max_pages, int(settings.session_max_mb * 1024 * 1024)),
    )
    session_engine = proxy(lambda: access.current_library().engine if access.has_session() else engine)
    session_pages = proxy(lambda: access.current_library().extras["pages"] if access.has_session() else pages)
    return access.Access(settings.mode, libraries), session_engine, session_pages


def build_demo(engine, *, load_model: bool = True) -> gr.Blocks:
    """Build the app around an engine.

    Args:
        engine: a `vdr_app.engine.Engine`.
        load_model: start loading the encoder in a background thread now (the page is usable
            meanwhile; a failure is shown on the page with what to do).

    Returns:
        the Blocks, with its queue configured; launch it with `launch_options(settings)`.
    """
    status = ModelStatus(engine)
    if load_model:
        status.start()
    settings = engine.settings
    app_access, engine, pages = _session_objects(engine, settings)
    cache_s = int(settings.cache_minutes * 60)
    with access.building(app_access), gr.Blocks(title=TITLE, delete_cache=(cache_s, cache_s), fill_width=True) as demo:
        gr.HTML(_header())
        if settings.mode in _MODE_NOTES:
            gr.Markdown(_mode_note(settings), elem_id="mode-note")
        if settings.temporary_library and settings.mode != "public-demo":  # a visitor's library is temporary anyway
            gr.Markdown(_TEMPORARY_NOTE, elem_id="storage-note")
        with gr.Column(elem_id="model-banner"):
            banner = gr.Markdown(status.markdown(for_operator=settings.mode != "public-demo"), elem_id="model-status",
                                 label="model_status")
            # Below the text, on the left: error toasts appear top right and must not cover them.
            with gr.Row(elem_id="model-actions"):
                retry = gr.Button("Retry loading the model", visible=False, size="sm", scale=0, min_width=200,
                                  elem_id="retry-model")
                fallback = gr.Button(visible=False, variant="secondary", size="sm", scale=0, min_width=260,
                                     elem_id="use-fallback")
        timer = gr.Timer(1.5, active=status.state == LOADING)
        with gr.Tabs():
            with gr.Tab("Library", id="library"):
                lib = library.build(engine, pages, engine.settings.max_upload_mb)
            with gr.Tab("Explore", id="explore"):
                exp = explore.build(engine, pages)
            with gr.Tab("Search", id="search"):
                srch = search.build(engine, pages)
            with gr.Tab("Lab", id="lab"):
                build_lab_tab(engine)
        page_viewer = viewer.build()  # drawn over the whole app when a page is opened
        api.register(engine, pages)  # the documented API: gradio_client endpoints and MCP tools
        srch.gallery.select(bind(viewer.open_result, engine), [srch.hits], [page_viewer], api_name="view_result",
                            api_visibility="undocumented", queue=False)
        exp.view_page.click(bind(viewer.open_page, engine), [exp.page], [page_viewer], api_name="view_page",
                            api_visibility="undocumented", queue=False)

        operator = settings.mode != "public-demo"
        banner_outputs = [banner, fallback, timer, retry]
        timer.tick(user_errors(lambda: _banner(status, operator)), None, banner_outputs, api_name="model_status",
                   api_visibility="undocumented", queue=False)
        buttons = lambda: _banner(status, operator)[1:]  # noqa: E731
        fallback.click(bind(_use_fallback, status), None, [banner], api_name="use_fallback",
                       api_visibility="undocumented").then(
            buttons, None, banner_outputs[1:], api_name="banner_after_fallback", api_visibility="undocumented")
        retry.click(bind(_retry_model, status), None, [banner], api_name="retry_model",
                    api_visibility="undocumented").then(
            buttons, None, banner_outputs[1:], api_name="banner_after_retry", api_visibility="undocumented")

        documents = bind(explore.document_choices, engine)
        search_documents = bind(search.document_filter_choices, engine)
        for name, event in (("upload", lib.upload_event), ("delete", lib.delete_event)):
            event.then(documents, [exp.document], [exp.document], api_name=f"documents_after_{name}",
                       api_visibility="undocumented")
            event.then(search_documents, [srch.documents], [srch.documents],
                       api_name=f"search_documents_after_{name}", api_visibility="undocumented")
        on_load = demo.load
        if app_access.libraries is not None:  # first bind the page to its browser's library
            browser_key = gr.BrowserState("", storage_key="vdr-library")
            on_load = demo.load(user_errors(_resume_library), [browser_key], [browser_key], api_name="resume_library",
                                api_visibility="private", queue=False).then
            demo.unload(user_errors(_leave_page))
        on_load(lib.refresh, None, lib.outputs, api_name="refresh_library", api_visibility="undocumented").then(
            documents, [exp.document], [exp.document], api_name="refresh_documents", api_visibility="undocumented"
        ).then(user_errors(lambda: _banner(status, operator)), None, banner_outputs, api_name="refresh_status",
               api_visibility="undocumented"
        ).then(search_documents, [srch.documents], [srch.documents], api_name="refresh_search_documents",
               api_visibility="undocumented")
    demo.queue(default_concurrency_limit=4)
    demo.model_status = status  # for tests and app.py: wait for / inspect the background load
    demo.access = app_access  # for tests: the mode and, in public-demo mode, the session libraries
    return demo


def launch_options(settings: Settings) -> dict:
    """Keyword arguments for `demo.launch`: address, upload limit, styling and the page script
    (Gradio 6 takes css, js and theme at launch)."""
    css = ASSETS / "style.css"
    options = dict(
        server_name=settings.host,
        server_port=settings.port,
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),  # bytes; the engine checks the same limit
        state_session_capacity=settings.state_capacity,  # Gradio's default keeps 10,000 sessions' state
        auth=list(settings.auth) if settings.mode == "shared" else None,
        theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
        footer_links=["api", "gradio", "settings"],
        mcp_server=api.mcp_server(settings),
    )
    if settings.mode == "shared":  # wrong passwords lock (user, address) out for a growing while
        from starlette.middleware import Middleware

        from .throttle import LoginThrottle, LoginThrottleMiddleware

        options["app_kwargs"] = {"middleware": [Middleware(LoginThrottleMiddleware, throttle=LoginThrottle())]}
    if css.is_file():
        options["css_paths"] = [str(css)]
    script = ASSETS / "highlight.js"
    if script.is_file():  # Explore: outline the merged group under the mouse
        options["js"] = script.read_text(encoding="utf-8")
    favicon = ASSETS / "logo.svg"
    if favicon.is_file():
        options["favicon_path"] = str(favicon)
    return options


__all__ = ["build_demo", "launch_options", "ModelStatus"]
