"""Public demo on a Space: the sample store's model is the model (no operator banner, no model
switch for visitors), and a visitor's library survives a page reload (its key kept in the
browser) for as long as the page says."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

import app as app_module
from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import ConfigError
from vdr_app.sessions import SessionLibraries
from vdr_app.store import Store

from .fakes import GridEncoder
from .test_browser import CHROMIUM_ARGS, TIMEOUT_MS, _chromium, _wait_text


@pytest.fixture(scope="module")
def sample_store(tiny_checkpoint, tmp_path_factory):
    """A sample store built with the tiny colSmol checkpoint (its model id: the folder's path)."""
    from .conftest import make_pdf

    folder = tmp_path_factory.mktemp("sample")
    pdf = make_pdf(folder / "sample.pdf", [[(72, 72, "the sample document")]])
    engine = Engine(Settings(data_dir=folder, store_path=folder / "sample.sqlite", dpi=30,
                             model=str(tiny_checkpoint("colidefics3"))))
    engine.add_files([pdf])
    engine.store.close()
    return folder / "sample.sqlite"


def _demo_env(tmp_path, sample_store, **extra) -> dict:
    # A model the hub would be asked for if the sample's model were not used: offline, it cannot load.
    return {"VDR_MODE": "public-demo", "VDR_SAMPLE_STORE": str(sample_store), "VDR_DATA_DIR": str(tmp_path / "data"),
            "VDR_DPI": "30", "VDR_HOST": "127.0.0.1", "VDR_SESSION_MINUTES": "90", **extra}


def test_the_sample_stores_model_is_the_demos_model(tmp_path, sample_store, tiny_checkpoint):
    demo, settings = app_module.create_app(Settings.from_env(_demo_env(tmp_path, sample_store)))
    status = demo.model_status
    assert settings.model == str(Path(tiny_checkpoint("colidefics3")).resolve())
    assert status.wait(120) == "ready", status.error
    assert "could not be loaded" not in status.markdown(for_operator=False)
    mode_note = next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "mode-note")
    assert "90 minutes after your last action" in mode_note and "reload" in mode_note
    demo.access.libraries.close_all()


def test_a_vdr_model_other_than_the_samples_is_refused_at_start(tmp_path, sample_store):
    with pytest.raises(ConfigError, match="VDR_SAMPLE_STORE holds vectors of .* not of VDR_MODEL"):
        app_module.create_app(Settings.from_env(_demo_env(tmp_path, sample_store, VDR_MODEL="vidore/colSmol-256M")))


def test_visitors_get_no_operator_banner_and_cannot_switch_the_model(tmp_path):
    """A demo whose model failed: visitors see one line, no fix instructions, no buttons; the
    switch itself is refused to them."""
    from vdr_app.ui import _banner, _use_fallback, access
    from vdr_app.ui.common import user_errors
    from vdr_app.ui.model_status import FAILED, ModelStatus

    engine = Engine(Settings(data_dir=tmp_path, mode="public-demo", model="vidore/colSmol-256M"),
                    store=Store(":memory:"))
    status = ModelStatus(engine)
    status.state, status.error = FAILED, "vidore/colSmol-256M is not in the local cache. Download it first"
    text, fallback, _, retry = _banner(status, operator=False)
    assert "unavailable" in text and "VDR_MODEL" not in text and "hf download" not in text
    assert fallback["visible"] is False and retry["visible"] is False
    operator_text, operator_fallback, _, _ = _banner(status, operator=True)
    assert "VDR_MODEL" in operator_text and operator_fallback["visible"] is True  # local mode: unchanged
    with access.building(access.Access("public-demo")):
        switch = user_errors(lambda: _use_fallback(status))
    with pytest.raises(gr.Error, match="visitors of a public demo cannot switch the model"):
        switch(SimpleNamespace(username=None, session_hash="visitor"))
    assert engine.settings.model == "vidore/colSmol-256M"


def test_a_browser_key_binds_every_page_of_that_browser_to_one_library(tmp_path):
    base = Engine(Settings(data_dir=tmp_path), encoder=GridEncoder(), store=Store(":memory:"))
    libraries = SessionLibraries(base, tmp_path / "sessions", ttl_s=3600)
    key = libraries.resume("page-1", "")
    assert len(key) >= 32 and libraries.key_for("page-1") == key
    first = libraries.get(libraries.key_for("page-1"))
    libraries.leave("page-1")  # the reload closes the old page: the library stays
    assert libraries.resume("page-2", key) == key and libraries.get(libraries.key_for("page-2")) is first
    # An event the closed page started, still running after `leave`: same library, no stray one.
    assert libraries.get(libraries.key_for("page-1")) is first and len(libraries) == 1
    # A key the app did not issue (or whose library expired) is replaced, never adopted.
    assert libraries.resume("page-3", "chosen-by-the-visitor") not in (key, "chosen-by-the-visitor")
    libraries.ttl_s = 0
    libraries.expire()
    assert libraries.resume("page-4", key) != key
    assert libraries.key_for("page-1") == "page-1"  # its library expired: the binding went with it
    assert libraries.key_for("api-client") == "api-client"  # no page, no binding: keyed by its session
    libraries.close_all()


def test_a_reload_keeps_the_visitors_library_in_the_browser(tmp_path, sample_store, pdf_factory):
    """A first visitor as they see it (screenshots at 1400x900), an upload, a reload: the upload is
    still there; another browser sees only the sample."""
    from playwright.sync_api import sync_playwright

    from vdr_app.ui import launch_options

    pdf = pdf_factory([[(72, 72, "my own upload")]], name="mine.pdf")
    demo, settings = app_module.create_app(Settings.from_env(_demo_env(tmp_path, sample_store)))
    assert demo.model_status.wait(120) == "ready"
    options = launch_options(settings)
    options.pop("server_port")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    shots = Path(os.environ["VDR_ARTIFACTS_DIR"]) if os.environ.get("VDR_ARTIFACTS_DIR") else tmp_path
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
            visitor = browser.new_context(viewport={"width": 1400, "height": 900})
            tab = visitor.new_page()
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(url)
            _wait_text(tab, "#documents", "sample.pdf")
            _wait_text(tab, "#model-status", "ready")
            tab.screenshot(path=str(shots / "public-demo-first-visit.png"))
            assert "could not be loaded" not in tab.inner_text("body")
            assert not tab.locator("#use-fallback").is_visible() and not tab.locator("#retry-model").is_visible()

            tab.set_input_files("#upload input[type=file]", str(pdf))
            tab.click("#index-btn")
            _wait_text(tab, "#library-status", "mine.pdf: 1 page indexed")
            _wait_text(tab, "#documents", "mine.pdf")
            tab.reload()
            _wait_text(tab, "#documents", "sample.pdf")
            _wait_text(tab, "#documents", "mine.pdf")  # the reload found the same library
            tab.screenshot(path=str(shots / "public-demo-after-reload.png"))
            assert len(demo.access.libraries) == 1

            stranger = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            stranger.set_default_timeout(TIMEOUT_MS)
            stranger.goto(url)
            _wait_text(stranger, "#documents", "sample.pdf")
            assert "mine.pdf" not in stranger.inner_text("#documents")
            browser.close()
    finally:
        demo.close()
        demo.access.libraries.close_all()
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
