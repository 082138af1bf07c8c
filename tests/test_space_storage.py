"""A Hugging Face Space keeps its library when its persistent storage (/data) is there, and says the
library is temporary when it is not. /data is a stand-in folder here (config.SPACE_PERSISTENT_DIR)."""

from __future__ import annotations

import os

import pytest

import app as app_module
from vdr_app import config
from vdr_app.config import Settings


@pytest.fixture
def space_data(tmp_path, monkeypatch):
    """A writable stand-in for the Space's /data; HF_HOME unset for the test, restored after."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setattr(config, "SPACE_PERSISTENT_DIR", folder)
    monkeypatch.setenv("HF_HOME", "restored-after-the-test")
    monkeypatch.delenv("HF_HOME")
    return folder


def test_on_a_space_with_persistent_storage_data_and_model_cache_default_to_it(space_data):
    settings = Settings.from_env({"SPACE_ID": "someone/vdr"})
    assert settings.data_dir == space_data / "vdr" and settings.store_file.parent == space_data / "vdr"
    assert settings.hf_home == space_data / "huggingface"
    assert not settings.temporary_library


def test_explicit_folders_win_over_the_space_defaults(space_data, tmp_path):
    settings = Settings.from_env({"SPACE_ID": "someone/vdr", "HF_HOME": "/elsewhere/hf",
                                  "VDR_DATA_DIR": str(space_data / "mine")})
    assert settings.data_dir == space_data / "mine" and settings.hf_home is None
    assert not settings.temporary_library
    outside = Settings.from_env({"SPACE_ID": "someone/vdr", "VDR_DATA_DIR": str(tmp_path / "ephemeral")})
    assert outside.temporary_library  # a folder off the persistent disk is lost at restart too


def test_without_persistent_storage_the_library_is_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "SPACE_PERSISTENT_DIR", tmp_path / "absent")
    settings = Settings.from_env({"SPACE_ID": "someone/vdr"})
    assert settings.data_dir == Settings().data_dir and settings.hf_home is None
    assert settings.temporary_library
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    monkeypatch.setattr(config, "SPACE_PERSISTENT_DIR", read_only)
    try:
        if not os.access(read_only, os.W_OK):  # root can write anywhere: that case is then not testable
            assert Settings.from_env({"SPACE_ID": "someone/vdr"}).temporary_library
    finally:
        read_only.chmod(0o755)


def test_off_a_space_nothing_changes(space_data):
    settings = Settings.from_env({})
    assert settings.data_dir == Settings().data_dir and settings.hf_home is None
    assert not settings.temporary_library


def test_a_space_restart_keeps_the_library(space_data, tiny_checkpoint, pdf_factory):
    """Space-like run: SPACE_ID set, writable stand-in /data. Add a PDF through the app, stop, start
    a new app (new settings, new engine), and the document and its vectors are still there."""
    env = {"SPACE_ID": "someone/vdr", "VDR_MODEL": str(tiny_checkpoint("colidefics3")), "VDR_DPI": "30"}
    pdf = pdf_factory([[(72, 72, "persistent page one")], [(72, 72, "page two")]], name="kept.pdf")

    demo, settings = app_module.create_app(Settings.from_env(env))
    assert os.environ["HF_HOME"] == str(space_data / "huggingface")  # set before the model is loaded
    engine = demo.model_status.engine
    assert demo.model_status.wait(120) == "ready", demo.model_status.error
    engine.add_files([pdf])
    before = [(d.name, d.n_pages) for d in engine.list_documents()]
    hits_before = [(h.doc_name, h.page_number) for h in engine.search("persistent page one", k=2)]
    engine.store.close()

    demo, settings = app_module.create_app(Settings.from_env(env))  # the restart
    engine = demo.model_status.engine
    assert demo.model_status.wait(120) == "ready"
    assert settings.store_file.is_file() and settings.store_file.is_relative_to(space_data)
    assert [(d.name, d.n_pages) for d in engine.list_documents()] == before == [("kept.pdf", 2)]
    assert [(h.doc_name, h.page_number) for h in engine.search("persistent page one", k=2)] == hits_before
    engine.store.close()


def test_the_page_says_once_that_the_library_is_temporary(tmp_path):
    from vdr_app.engine import Engine
    from vdr_app.ui import build_demo

    from .fakes import GridEncoder

    def notes(**kw):
        settings = Settings(data_dir=tmp_path / "d", **kw)
        demo = build_demo(Engine(settings, encoder=GridEncoder()), load_model=False)
        return [block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "storage-note"]

    shown = notes(temporary_library=True)
    assert len(shown) == 1 and "temporary" in shown[0] and "persistent storage" in shown[0]
    assert notes(temporary_library=False) == []
