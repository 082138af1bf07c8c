"""ViDoRe benchmarks as labelled libraries (`eval --benchmark`), on tiny datasets of the same schema
built in code and loaded from a local folder (no hub).

Invariants protected here:
- v1 (QA layout): pages told apart by image_filename, None queries dropped, a repeated query keeps
  its last row's page (vidore-benchmark's rule);
- v2/v3 (BEIR layout): a query's relevant pages are its qrels with score > 0, several per query;
- each page becomes a one-page PDF that renders back to that very image;
- `eval --benchmark` indexes the pages and reports every view against those labels; a store with
  other documents is refused, changing nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")  # requirements.txt installs it; skip only a bare checkout

from vdr_app.benchmark_data import BenchmarkError, load_benchmark, page_file  # noqa: E402
from vdr_app.errors import InvalidLabelsError  # noqa: E402

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def page_image(i: int) -> Image.Image:
    """A 200 x 260 page of one colour with a darker band at a height that depends on i."""
    image = Image.new("RGB", (200, 260), COLOURS[i])
    image.paste((0, 0, 0), (20, 20 + 50 * i, 180, 40 + 50 * i))
    return image


def qa_dataset():
    # Rows: page 0 asked "red"; page 1 a distractor (no query); page 2 asked twice (two rows);
    # page 3 asked "red" again: the repeated query keeps its last row's page, 3.
    rows = [
        ("what is red", 0, "pages/p0.png"), (None, 1, "pages/p1.png"), ("what is blue", 2, "pages/p2.png"),
        ("where is the band", 2, "pages/p2.png"), ("what is red", 3, "pages/p3.png"),
    ]
    features = datasets.Features({"query": datasets.Value("string"), "image": datasets.Image(),
                                  "image_filename": datasets.Value("string"), "answer": datasets.Value("string")})
    return datasets.Dataset.from_dict(
        {"query": [r[0] for r in rows], "image": [page_image(r[1]) for r in rows],
         "image_filename": [r[2] for r in rows], "answer": ["x"] * len(rows)},
        features=features,
    )


@pytest.fixture
def qa_folder(tmp_path):
    folder = tmp_path / "docvqa_tiny"
    datasets.DatasetDict({"test": qa_dataset()}).save_to_disk(str(folder))
    return folder


@pytest.fixture
def beir_folder(tmp_path):
    folder = tmp_path / "beir_tiny"
    corpus = datasets.Dataset.from_dict(
        {"corpus-id": [10, 11, 12, 13], "image": [page_image(i) for i in range(4)]},
        features=datasets.Features({"corpus-id": datasets.Value("int64"), "image": datasets.Image()}),
    )
    queries = datasets.Dataset.from_dict({"query-id": [1, 2, 3], "query": ["red page", "two pages", "nothing"]})
    # query 2 has two relevant pages; a score-0 judgement and one on a missing page are not relevance.
    qrels = datasets.Dataset.from_dict({"query-id": [1, 2, 2, 2, 3], "corpus-id": [10, 11, 13, 12, 99],
                                        "score": [1, 2, 1, 0, 1]})
    for name, part in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
        datasets.DatasetDict({"test": part}).save_to_disk(str(folder / name))
    return folder


def test_qa_layout_pages_and_labels(qa_folder):
    bench = load_benchmark(str(qa_folder))
    assert bench.layout == "qa"
    assert [name for name, _ in bench.pages] == ["pages_p0.pdf", "pages_p1.pdf", "pages_p2.pdf", "pages_p3.pdf"]
    labels = {q.query: q.relevant for q in bench.labels}
    assert labels == {"what is red": (("pages_p3.pdf", 1),), "what is blue": (("pages_p2.pdf", 1),),
                      "where is the band": (("pages_p2.pdf", 1),)}
    # The first 3 pages: "what is red" was last asked on page 3, so it goes; only those images are read.
    capped = load_benchmark(str(qa_folder), max_pages=3)
    assert [name for name, _ in capped.pages] == ["pages_p0.pdf", "pages_p1.pdf", "pages_p2.pdf"]
    assert {q.query for q in capped.labels} == {"what is blue", "where is the band"}
    for (_, image), i in zip(capped.pages, range(3)):
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(page_image(i)))


def test_beir_layout_pages_and_labels(beir_folder):
    bench = load_benchmark(str(beir_folder))
    assert bench.layout == "beir"
    assert [name for name, _ in bench.pages] == ["10.pdf", "11.pdf", "12.pdf", "13.pdf"]
    labels = {q.query: q.relevant for q in bench.labels}
    assert labels == {"red page": (("10.pdf", 1),), "two pages": (("11.pdf", 1), ("13.pdf", 1))}


def test_each_page_pdf_renders_back_to_its_image(beir_folder):
    from vdr_app.pdf import PdfLimits, render_pdf

    bench = load_benchmark(str(beir_folder))
    for i, (name, image) in enumerate(bench.pages):
        (page,) = render_pdf(bench.pdf(i, 72), name, PdfLimits(dpi=72))
        assert page.image.size == image.size
        diff = np.abs(np.asarray(page.image.convert("RGB"), np.int16) - np.asarray(image.convert("RGB"), np.int16))
        assert diff.mean() < 6, (name, diff.mean())  # JPEG inside the PDF: close, not exact


def test_max_pages_keeps_the_queries_those_pages_answer(beir_folder):
    bench = load_benchmark(str(beir_folder), max_pages=2)  # pages 10 and 11
    assert {q.query: q.relevant for q in bench.labels} == {"red page": (("10.pdf", 1),),
                                                           "two pages": (("11.pdf", 1),)}
    # Page 12 alone answers no query (its only judgement scores 0).
    corpus = datasets.load_from_disk(str(beir_folder / "corpus"))["test"].select([2])
    only_12 = beir_folder.parent / "only_12"
    for name in ("queries", "qrels"):
        datasets.load_from_disk(str(beir_folder / name)).save_to_disk(str(only_12 / name))
    datasets.DatasetDict({"test": corpus}).save_to_disk(str(only_12 / "corpus"))
    with pytest.raises(InvalidLabelsError, match="no query"):
        load_benchmark(str(only_12))


def test_bad_sources_are_one_clear_error(tmp_path, qa_folder):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BenchmarkError, match="save_to_disk"):
        load_benchmark(str(tmp_path / "empty_dir"))
    with pytest.raises(BenchmarkError, match="no split 'dev'"):
        load_benchmark(str(qa_folder), split="dev")
    no_filename = tmp_path / "no_filename"
    datasets.DatasetDict({"test": qa_dataset().remove_columns("image_filename")}).save_to_disk(str(no_filename))
    with pytest.raises(BenchmarkError, match="image_filename"):
        load_benchmark(str(no_filename))


def test_page_file_names():
    assert page_file("images/p 1.png") == "images_p_1.pdf"
    assert page_file(42) == "42.pdf"


def test_eval_benchmark_end_to_end(tmp_path, beir_folder, capsys):
    from vdr_app.cli import main
    from vdr_app.checkpoints.tiny import build_checkpoint

    model = build_checkpoint("colqwen2", tmp_path / "model", "tiny", None)
    store = tmp_path / "bench.sqlite"
    out = tmp_path / "eval.json"
    common = ["--store", str(store), "--model", str(model)]
    assert main(["eval", *common, "--benchmark", str(beir_folder), "--views", "pool1d:factor=2",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "beir layout): 4 pages (4 newly indexed), 2 labelled queries" in printed
    assert "pool1d:factor=2" in printed
    figures = json.loads(out.read_text())
    assert figures["pages"] == 4 and figures["labelled_queries"] == 2
    full = figures["views"][0]
    assert full["view"] == "full" and 0 <= full["metrics"]["ndcg@5"] <= 1
    # With 4 pages and top-10 retrieval every relevant page is retrieved: recall@5 is 1 for both queries.
    assert full["metrics"]["recall@5"] == pytest.approx(1.0)
    # A second run reuses the indexed pages; a store with another document is refused, unchanged.
    assert main(["eval", *common, "--benchmark", str(beir_folder), "--views", "pool1d:factor=2"]) == 0
    assert "(0 newly indexed)" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    page_image(0).save(other / "x.pdf", "PDF", resolution=72.0)
    assert main(["add", *common, str(other / "x.pdf")]) == 0
    before = store.stat().st_size
    assert main(["eval", *common, "--benchmark", str(beir_folder)]) == 1
    assert "store of its own" in capsys.readouterr().err
    assert store.stat().st_size == before


# -- the Lab's benchmark choice ---------------------------------------------------------------------


def _library_state(engine):
    return [d.as_dict() for d in engine.list_documents()], engine.store.page_ids(), engine.store.view_specs()


@pytest.fixture
def lab_engine(tmp_path, tiny_checkpoint, monkeypatch):
    """A visitor's library with one document of its own, on a tiny model; temporary folders land
    in tmp_path/tmp so a test sees whether the benchmark's library was removed."""
    from vdr_app.config import Settings
    from vdr_app.engine import Engine

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    engine = Engine(Settings(data_dir=tmp_path / "library", model=str(tiny_checkpoint("colqwen2")), model_given=True))
    own = tmp_path / "own.pdf"
    page_image(3).save(own, "PDF", resolution=72.0)
    engine.add_files([own])
    return engine


def _benchmark_folders_left(tmp_path):
    return sorted(p.name for p in (tmp_path / "tmp").glob("vdr-benchmark-*"))


def test_lab_evaluates_a_benchmark_through_its_handler_and_leaves_the_library_alone(tmp_path, lab_engine,
                                                                                   beir_folder):
    import gradio as gr
    from gradio_client import Client

    from vdr_app.ui.lab import build_lab_tab

    before = _library_state(lab_engine)
    with gr.Blocks() as demo:
        build_lab_tab(lab_engine)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        client = Client(url, verbose=False)
        figure, table, export, summary = client.predict(str(beir_folder), 3, ["pool1d:factor=2"], False, 0, False,
                                                        api_name="/lab_benchmark")
    finally:
        demo.close()
    data = json.loads(Path(export).read_text(encoding="utf-8"))
    # Pages 10, 11, 12 kept: "red page" -> 10, "two pages" -> 11 (13 is past the cap).
    assert data["pages"] == 3 and data["documents"] == 3 and data["labelled_queries"] == 2
    assert [row[0] for row in table["data"]] == ["full", "pool1d:factor=2"]
    assert data["views"][0]["metrics"]["recall@5"] == pytest.approx(1.0)  # 3 pages, top 10: every page found
    assert f"Benchmark `{beir_folder}`" in summary and "first 3 pages" in summary
    assert "2 labelled from the benchmark" in summary and figure is not None
    # The benchmark was indexed apart: the visitor's library is as it was, the temporary one is gone.
    assert _library_state(lab_engine) == before
    assert _benchmark_folders_left(tmp_path) == []


def test_lab_benchmark_shows_progress_through_indexing_and_evaluation(tmp_path, lab_engine, qa_folder):
    from vdr_app.ui.lab import run_lab_benchmark

    seen = []
    _, table, _, _ = run_lab_benchmark(lab_engine, str(qa_folder), None, ["pool1d:factor=2"], False,
                                       progress=lambda f, m: seen.append((f, m)), out_dir=tmp_path / "out")
    assert table["view"].tolist() == ["full", "pool1d:factor=2"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    messages = [m for _, m in seen]
    assert messages[0] == f"loading {qa_folder}"
    assert [m for m in messages if m.startswith("indexing page")] == [f"indexing page {i}/4" for i in range(1, 5)]
    assert any(f > 0.6 for f, _ in seen)  # the evaluation's own steps follow the indexing


def test_lab_benchmark_bad_input_is_one_line_and_changes_nothing(tmp_path, lab_engine, beir_folder, qa_folder):
    import dataclasses

    from vdr_app.errors import VdrError
    from vdr_app.ui.lab import run_lab_benchmark

    before = _library_state(lab_engine)
    (tmp_path / "not_a_dataset").mkdir()
    cases = [
        (str(tmp_path / "not_a_dataset"), 3, ["pool1d:factor=2"], "save_to_disk"),
        ("", 3, ["pool1d:factor=2"], "name a benchmark"),
        ("vidore/no_such_set", 3, ["pool1d:factor=2"], "cannot load the dataset"),  # tests run with the hub offline
        (str(beir_folder), 0, ["pool1d:factor=2"], "at least 1"),
        (str(beir_folder), 3, ["nope:keep=0.5"], "unknown reduction strategy 'nope'"),  # before any loading
        (str(beir_folder), 3, [], "pick at least one view"),
    ]
    for source, pages, views, message in cases:
        with pytest.raises(VdrError, match=message) as raised:
            run_lab_benchmark(lab_engine, source, pages, views, False, out_dir=tmp_path / "out")
        assert "\n" not in str(raised.value)
    # A public Space: hub ids only (no server folders), and at most a visitor's page allowance per run.
    lab_engine.settings = dataclasses.replace(lab_engine.settings, mode="public-demo", session_max_pages=2)
    with pytest.raises(VdrError, match="folders on the server are read in local mode only"):
        run_lab_benchmark(lab_engine, str(qa_folder), 2, ["pool1d:factor=2"], False)
    for pages in (3, None):
        with pytest.raises(VdrError, match="at most 2 benchmark pages per run"):
            run_lab_benchmark(lab_engine, "vidore/docvqa_test_subsampled", pages, ["pool1d:factor=2"], False)
    assert _library_state(lab_engine) == before
    assert _benchmark_folders_left(tmp_path) == []


def test_on_a_public_demo_a_visitor_runs_a_hub_benchmark_without_touching_their_library(
        tmp_path, lab_engine, qa_folder, monkeypatch):
    """The Space case: the visitor still reads the shared sample library (copy on write); a
    benchmark run (the hub stood in for by the saved dataset) neither gives them a private copy nor
    counts against their page allowance (here 1 page)."""
    import dataclasses

    from vdr_app import benchmark_data
    from vdr_app.engine import Engine, LibraryQuota
    from vdr_app.sessions import SessionLibraries
    from vdr_app.ui.lab import run_lab_benchmark

    asked = []

    def hub(name, split):
        asked.append((name, split))
        return datasets.load_from_disk(str(qa_folder))[split]

    monkeypatch.setattr(benchmark_data, "_hub_parts", hub)
    sample = lab_engine.settings.store_file
    lab_engine.store.close()
    settings = dataclasses.replace(lab_engine.settings, mode="public-demo", session_max_pages=5,
                                   data_dir=tmp_path / "space")
    base = Engine(settings)
    libraries = SessionLibraries(base, tmp_path / "sessions", sample_store=sample, quota=LibraryQuota(1, 10**7))
    library = libraries.get("visitor")
    before = _library_state(library.engine)
    _, table, export, summary = run_lab_benchmark(library.engine, "vidore/docvqa_tiny", 3, ["pool1d:factor=2"],
                                                  False, out_dir=tmp_path / "out")
    assert asked == [("vidore/docvqa_tiny", "test")]
    assert json.loads(Path(export).read_text(encoding="utf-8"))["pages"] == 3
    assert "Benchmark `vidore/docvqa_tiny`" in summary and table["view"].tolist() == ["full", "pool1d:factor=2"]
    assert library.shared and _library_state(library.engine) == before  # still the sample, unchanged
    assert not list((tmp_path / "sessions").glob("session-*")) and _benchmark_folders_left(tmp_path) == []
    with pytest.raises(BenchmarkError, match="at most 5 benchmark pages"):
        run_lab_benchmark(library.engine, "vidore/docvqa_tiny", 6, ["pool1d:factor=2"], False)
    libraries.close_all()
