"""Which model an engine uses: the store's own when none is asked for, a different one refused
before loading, a failed load remembered until retried; and the phases progress names."""

from __future__ import annotations


import pytest

from vdr_app import models
from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import ModelLoadError, ModelMismatchError, PdfError
from vdr_app.store import Store

from .fakes import GridEncoder


def _store_with(tmp_path, pdf_factory, model_id="fake-grid"):
    """A store holding one document encoded by a fake encoder recorded as `model_id`."""
    path = tmp_path / "vdr.sqlite"
    engine = Engine(Settings(data_dir=tmp_path, model=model_id), encoder=GridEncoder(model_id), store=Store(path))
    engine.add_files([pdf_factory([[(50, 60, "hello world")]])])
    engine.store.close()
    return path


class CountingLoader:
    """Stands in for models.load_encoder: counts calls, fails or returns a fake encoder."""

    def __init__(self, fail: bool = False):
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, name, device="auto", batch_size=0, dtype="auto"):
        self.calls.append(name)
        if self.fail:
            raise ModelLoadError(f"checkpoint {name!r} is not in the local cache")
        return GridEncoder(name)


def test_no_model_given_uses_the_store_model(tmp_path, pdf_factory, monkeypatch):
    path = _store_with(tmp_path, pdf_factory, "text-layout-minilm")
    loader = CountingLoader()
    monkeypatch.setattr(models, "load_encoder", loader)
    settings = Settings.from_env({"VDR_STORE": str(path), "VDR_DATA_DIR": str(tmp_path)})
    assert settings.model == "vidore/colSmol-256M" and not settings.model_given
    engine = Engine(settings)
    assert engine.settings.model == "text-layout-minilm"
    assert [h.page_number for h in engine.search("hello", k=1)] == [1]
    assert loader.calls == ["text-layout-minilm"]  # the default checkpoint was never tried


def test_a_different_explicit_model_is_refused_before_loading(tmp_path, pdf_factory, monkeypatch):
    path = _store_with(tmp_path, pdf_factory, "text-layout-minilm")
    loader = CountingLoader()
    monkeypatch.setattr(models, "load_encoder", loader)
    settings = Settings.from_env({"VDR_STORE": str(path), "VDR_MODEL": "vidore/colSmol-256M"})
    engine = Engine(settings)
    assert engine.settings.model == "vidore/colSmol-256M"
    with pytest.raises(ModelMismatchError, match="holds vectors of 'text-layout-minilm'") as caught:
        engine.search("hello")
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelMismatchError):
        engine.add_files([pdf_factory([[(50, 60, "another")]])])
    assert loader.calls == []
    assert len(engine.list_documents()) == 1


def test_a_failed_load_is_remembered_until_retry(tmp_path, monkeypatch):
    loader = CountingLoader(fail=True)
    monkeypatch.setattr(models, "load_encoder", loader)
    engine = Engine(Settings(data_dir=tmp_path, model="vidore/no-such-model"))
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="not in the local cache"):
            engine.encoder
    assert loader.calls == ["vidore/no-such-model"]
    assert "not in the local cache" in engine.model_error
    engine.retry_model()
    with pytest.raises(ModelLoadError):
        engine.encoder
    assert len(loader.calls) == 2
    loader.fail = False
    engine.set_model("other-model")  # switching forgets the failure too
    assert engine.encoder.model_id == "other-model" and engine.model_error == ""


def test_cli_search_without_model_uses_the_store_model(tmp_path, pdf_factory, monkeypatch, capsys):
    from vdr_app import cli

    path = _store_with(tmp_path, pdf_factory, "fake-grid")
    loader = CountingLoader()
    monkeypatch.setattr(models, "load_encoder", loader)
    monkeypatch.delenv("VDR_MODEL", raising=False)
    assert cli.main(["search", "hello", "--store", str(path)]) == 0
    assert "p.1" in capsys.readouterr().out
    assert loader.calls == ["fake-grid"]
    assert cli.main(["search", "hello", "--store", str(path), "--model", "vidore/colSmol-256M"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: this store holds vectors of 'fake-grid'") and err.count("\n") == 1
    assert loader.calls == ["fake-grid"]


def test_progress_names_every_phase(tmp_path, pdf_factory):
    engine = Engine(Settings(data_dir=tmp_path, model="fake-grid"), encoder=GridEncoder())
    engine.add_files([pdf_factory([[(50, 60, "one")]])])
    engine.add_view("cluster:factor=4")
    messages = []
    pdf = pdf_factory([[(50, 60, "a")], [(50, 60, "b")], [(50, 60, "c")]], name="three.pdf")
    engine.add_files([pdf], progress=lambda f, m: messages.append((f, m)))
    text = [m for _, m in messages]
    assert text[0] == "reading 1 file"
    assert "three.pdf: reading page 1/3" in text and "three.pdf: reading page 3/3" in text
    assert [m for m in text if "encoding" in m] == [f"three.pdf: encoding page {i}/3" for i in (1, 2, 3, 3)]
    assert "three.pdf: computing 1 view" in text
    assert text[-1] == "three.pdf: 3 pages indexed"
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_every_bad_file_is_named_and_nothing_is_added(tmp_path, pdf_factory, sample_docs):
    engine = Engine(Settings(data_dir=tmp_path, model="fake-grid"), encoder=GridEncoder())
    good = pdf_factory([[(50, 60, "fine")]])
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_text("just text")
    broken = sample_docs / "bad" / "broken-xref.pdf"
    with pytest.raises(PdfError) as caught:
        engine.add_files([good, not_pdf, broken])
    message = str(caught.value)
    assert message.startswith("2 of 3 files cannot be indexed; nothing was added")
    assert "notes.pdf" in message and "broken-xref.pdf" in message
    assert engine.list_documents() == []
