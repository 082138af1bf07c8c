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
