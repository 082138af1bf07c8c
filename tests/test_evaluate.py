"""Evaluation: metrics on hand-computed cases, label validation, fidelity, the CLI sweep, the Lab tab."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from vdr_app import evaluate as ev
from vdr_app.cli import main
from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import InvalidLabelsError, VdrError

from .fakes import GridEncoder

# -- metrics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ranked, expected",
    [
        (["a", "x", "y", "z", "w"], 1.0),  # relevant at rank 1
        (["x", "y", "a", "z", "w"], 0.5),  # rank 3: 1 / log2(4)
        (["x", "y", "z", "w", "v", "a"], 0.0),  # rank 6: outside the top 5
        (["x", "y"], 0.0),  # absent
    ],
)
def test_ndcg_at_5_with_one_relevant_page(ranked, expected):
    assert ev.ndcg_at_k(ranked, {"a"}, 5) == pytest.approx(expected)


def test_ndcg_with_two_relevant_pages_divides_by_the_ideal_ranking():
    dcg = 1 + 1 / math.log2(4)  # relevant at ranks 1 and 3
    ideal = 1 + 1 / math.log2(3)  # relevant at ranks 1 and 2
    assert ev.ndcg_at_k(["a", "x", "b"], {"a", "b"}, 5) == pytest.approx(dcg / ideal)


def test_recall_and_mrr_on_hand_computed_cases():
    ranked = ["x", "y", "a", "z", "w", "b"]
    assert ev.recall_at_k(ranked, {"a"}, 1) == 0.0
    assert ev.recall_at_k(ranked, {"a"}, 5) == 1.0
    assert ev.recall_at_k(ranked, {"a", "b"}, 5) == 0.5
    assert ev.mrr_at_k(ranked, {"a"}, 10) == pytest.approx(1 / 3)
    assert ev.mrr_at_k(ranked, {"b"}, 5) == 0.0  # rank 6 is past the cut-off
    assert ev.mrr_at_k(ranked, {"q"}, 10) == 0.0
    assert ev.first_relevant_rank(ranked, {"b", "a"}) == 3
    assert ev.label_metrics(ranked, {"a"}) == {
        "ndcg@5": pytest.approx(0.5), "recall@1": 0.0, "recall@5": 1.0, "mrr@10": pytest.approx(1 / 3)
    }


def test_fidelity_of_identical_rankings_is_one():
    ranking = list(range(10))
    assert ev.fidelity_metrics(ranking, ranking) == {
        "overlap@5": 1.0, "overlap@10": 1.0, "kendall_tau@10": 1.0, "top1_agreement": 1.0
    }


def test_kendall_tau_on_hand_computed_cases():
    ranking = list(range(10))
    swapped = [1, 0] + ranking[2:]  # one discordant pair of 45
    assert ev.kendall_tau_at_k(ranking, swapped) == pytest.approx(1 - 2 / 45)
    assert ev.kendall_tau_at_k(ranking, ranking[::-1]) == pytest.approx(-1.0)
    disjoint = list(range(10, 20))
    assert ev.kendall_tau_at_k(ranking, disjoint) < 0
    assert ev.overlap_at_k(ranking, disjoint, 10) == 0.0
    replaced = ranking[:9] + [99]  # the last page replaced: overlap 9/10, order intact
    assert ev.overlap_at_k(ranking, replaced, 10) == pytest.approx(0.9)
    assert 0.9 < ev.kendall_tau_at_k(ranking, replaced) < 1.0


# -- label files ------------------------------------------------------------------------------------

COUNTS = {"report.pdf": 3, "slides.pdf": 12}


def _labels(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows)


def test_labels_parse_merge_repeated_queries_and_keep_kinds():
    text = _labels(
        {"query": "revenue", "file": "report.pdf", "page": 2, "kind": "table"},
        "",
        {"query": "revenue", "file": "slides.pdf", "page": 7, "kind": "table"},
        {"query": "team photo", "file": "slides.pdf", "page": 1},
    )
    labels = ev.parse_labels(text, "l.jsonl")
    ev.check_labels(labels, COUNTS, "l.jsonl")
    assert [(q.query, q.relevant, q.kind, q.lines) for q in labels] == [
        ("revenue", (("report.pdf", 2), ("slides.pdf", 7)), "table", (1, 3)),
        ("team photo", (("slides.pdf", 1),), None, (4,)),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"query": "x", "file": "report.pdf", "page": 1', "l.jsonl:2: not valid JSON"),
        ('["x", "report.pdf", 1]', "l.jsonl:2: expected a JSON object"),
        ('{"query": "x", "file": "report.pdf"}', "l.jsonl:2: missing 'page'"),
        ('{"query": "x", "file": "report.pdf", "pgae": 1}', "l.jsonl:2: unknown key 'pgae'"),
        ('{"query": "  ", "file": "report.pdf", "page": 1}', "l.jsonl:2: 'query' must be non-empty"),
        ('{"query": "x", "file": "report.pdf", "page": 0}', "l.jsonl:2: 'page' must be a page number >= 1, got 0"),
        ('{"query": "x", "file": "report.pdf", "page": true}', "l.jsonl:2: 'page' must be a page number"),
        ('{"query": "x", "file": "report.pdf", "page": "2"}', "l.jsonl:2: 'page' must be a page number"),
    ],
)
def test_malformed_label_lines_name_the_line(line, message):
    text = _labels({"query": "ok", "file": "report.pdf", "page": 1}, line)
    with pytest.raises(InvalidLabelsError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        ev.parse_labels(text, "l.jsonl")


def test_unknown_file_and_page_out_of_range_name_the_line_and_the_facts():
    text = _labels(
        {"query": "a", "file": "report.pdf", "page": 1},
        {"query": "b", "file": "reprot.pdf", "page": 1},
        {"query": "c", "file": "slides.pdf", "page": 13},
    )
    labels = ev.parse_labels(text, "l.jsonl")
    with pytest.raises(InvalidLabelsError) as info:
        ev.check_labels(labels, COUNTS, "l.jsonl")
    message = str(info.value)
    assert "l.jsonl:2: unknown file 'reprot.pdf'" in message and "did you mean 'report.pdf'" in message
    assert "l.jsonl:3: page 13 is out of range: 'slides.pdf' has 12 pages" in message
    assert isinstance(info.value, VdrError)


def test_conflicting_kinds_for_one_query_and_empty_files_are_refused(tmp_path):
    text = _labels({"query": "a", "file": "report.pdf", "page": 1, "kind": "text"},
                   {"query": "a", "file": "report.pdf", "page": 2, "kind": "table"})
    with pytest.raises(InvalidLabelsError, match="l.jsonl:2: kind 'table' differs"):
        ev.parse_labels(text, "l.jsonl")
    with pytest.raises(InvalidLabelsError, match="no labelled queries"):
        ev.parse_labels("\n\n", "l.jsonl")
    (tmp_path / "q.txt").write_text("\n  \n")
    with pytest.raises(InvalidLabelsError, match="no queries"):
        ev.load_queries(tmp_path / "q.txt")


def test_the_committed_corpus_labels_are_valid(corpus_dir):
    """eval/corpus_labels.jsonl names real files and pages of the shared corpus."""
    from vdr_app.pdf import inspect_pdf

    path = Path(__file__).resolve().parents[1] / "eval" / "corpus_labels.jsonl"
    labels = ev.parse_labels(path.read_text(encoding="utf-8"), path.name)
    files = {f for q in labels for f, _ in q.relevant}
    counts = {f: inspect_pdf((corpus_dir / "pdfs" / f).read_bytes(), f).n_pages
              for f in files if (corpus_dir / "pdfs" / f).is_file()}
    ev.check_labels(labels, counts, path.name)
    assert len(labels) >= 60 and len(files) >= 30
    assert {"text", "table", "figure", "non-english"} <= {q.kind for q in labels}


# -- the sweep grid ---------------------------------------------------------------------------------


def test_sweep_covers_every_family_at_the_documented_ratios():
    from vdr_app.reduce import parse_spec

    specs = ev.sweep_specs()
    assert len(specs) == len(set(specs)) and all(Engine.canonical_view(s) == s for s in specs)
    by_family: dict[str, list] = {}
    for spec in specs:
        if parse_spec(spec).quant is None:
            by_family.setdefault(ev.view_family(spec), []).append(parse_spec(spec))
    for family in ("random", "attention", "pool1d", "pool2d", "cluster"):
        keeps = sorted(round(1 / s.nominal_keep) for s in by_family[family])
        assert keeps == [2, 4, 9, 25, 49], family
    assert sorted(float(s.params["k"]) for s in by_family["docpruner"]) == [-0.5, -0.25, 0, 0.5, 1]
    assert len(by_family["prune_then_merge"]) == 4
    quantised = [s for s in specs if parse_spec(s).quant]
    assert {"full@int8", "full@binary", "cluster:factor=9,features=profile@binary"} <= set(quantised)
    assert len(quantised) == 4 * len(ev.SWEEP_QUANTISED)
    assert {"full@int4", "full@int2", "cluster:factor=9,features=profile@int2"} <= set(quantised)
    # every quantised variant is the quantised twin of a float view of the sweep (or of full)
    assert all(str(parse_spec(s).base) in specs or s.startswith("full@") for s in quantised)


# -- evaluate through the engine (fake encoder) -----------------------------------------------------


@pytest.fixture
def fake_engine(tmp_path, pdf_factory):
    engine = Engine(Settings(data_dir=tmp_path, dpi=30), encoder=GridEncoder())
    a = pdf_factory([[(72, 72, "alpha")], [(72, 300, "beta")]], name="a.pdf",
                    blocks={0: [(100, 100, 200, 200, (1, 0, 0))]})
    b = pdf_factory([[(72, 72, "gamma")], [(72, 72, "delta")]], name="b.pdf",
                    blocks={1: [(300, 500, 150, 150, (0, 0, 1))]})
    engine.add_files([a, b])
    return engine


def test_the_full_index_and_an_identity_view_have_fidelity_one(fake_engine):
    labels = ev.parse_labels(_labels({"query": "alpha beta", "file": "a.pdf", "page": 2, "kind": "text"},
                                     {"query": "gamma", "file": "b.pdf", "page": 1, "kind": "table"}))
    result = ev.evaluate(fake_engine, ["random:keep=1", "pool1d:factor=4", "full"], labels,
                         queries=["delta", "alpha beta"])
    assert [v.view for v in result.views] == ["full", "random:keep=1,seed=0", "pool1d:factor=4"]
    assert result.queries == ["alpha beta", "gamma", "delta"] and result.labelled == 2
    for view in result.views[:2]:
        assert view.fidelity == {f: 1.0 for f in ev.FIDELITY}
        assert all(r == 1.0 for r in view.retention.values() if r is not None)
        assert view.metrics == result.full.metrics
        assert view.retention_ci["ndcg@5"] == [pytest.approx(1.0), pytest.approx(1.0)]
    pooled = result.views[2]
    assert pooled.memory_ratio < 0.5 and pooled.memory["bytes"] < result.full.memory["bytes"]
    # Every figure equals what the per-query ranks give, recomputed by hand from the rankings.
    for view in result.views:
        ranks = [row["rank"] for row in view.per_query[:2]]
        assert view.metrics["mrr@10"] == pytest.approx(sum(1 / r for r in ranks if r) / 2)
        assert set(view.by_kind) == {"text", "table"} and view.by_kind["text"]["queries"] == 1
    table = result.table()
    assert "pool1d:factor=4" in table and "ret@nDCG5" in table
    assert "text (1)" in result.kind_table()


def test_quantised_views_are_scored_on_their_codes_and_deep_rescoring_is_a_marked_variant(fake_engine):
    """The old Lab re-scored every quantised view 100 deep: on a small library that is the float
    view's ranking, whatever the codes. By default a quantised view is its codes (rescore 0); a
    rescoring depth adds a variant row with the share of the library it re-scores, marked and left
    off the frontier above 5 %."""
    labels = ev.parse_labels(_labels({"query": "alpha beta", "file": "a.pdf", "page": 2},
                                     {"query": "gamma", "file": "b.pdf", "page": 1}))
    plain = ev.evaluate(fake_engine, ["full@binary", "pool1d:factor=4"], labels)
    assert [(v.view, v.rescore, v.rescore_share) for v in plain.views] == [
        ("full", None, None), ("full@binary", 0, 0.0), ("pool1d:factor=4", None, None)]
    assert plain.view("full@binary").off_frontier is None and plain.view("full@binary").label == "full@binary"
    # the codes' own ranking: what the engine gives without rescoring
    binary = plain.view("full@binary")
    for row in binary.per_query:
        emb = fake_engine.encode_query(row["query"])
        assert row["top"] == [h.page_id for h in fake_engine.search_embedding(emb, ev.DEPTH, "full@binary", rescore=0)]
    both = ev.evaluate(fake_engine, ["full@binary"], labels, rescore=[0, 100])
    codes, deep = both.views[1], both.views[2]
    assert (codes.rescore, deep.rescore) == (0, 100) and deep.label == "full@binary rescore=100"
    assert deep.rescore_share == 1.0 and "100% of the library" in deep.off_frontier  # 4 pages, 100 deep
    assert deep.fidelity["overlap@10"] == 1.0  # the float view's ranking: the codes no longer matter
    rows = both.as_dict()["views"]
    assert rows[2]["off_frontier"] and rows[2]["rescore_share"] == 1.0 and rows[1]["off_frontier"] is None
    assert all(r["label"] != deep.label for r in ev.frontier_rows(rows, "fidelity.overlap@10"))
    assert "rescored" in both.table() and "100%*" in both.table()


def test_two_stage_rows_search_each_float_view_through_a_first_stage_beside_its_exhaustive_row(
        fake_engine, tmp_path, monkeypatch):
    """`two_stage=True` adds "<view> two-stage" after every float view (quantised views have none),
    searched by a two-stage memory index (first stage, exact MaxSim of the candidates); on 4 pages
    every page is a candidate, so it ranks exactly as the exhaustive row. Off the frontier: it
    stores the same bytes. Its vector files are gone afterwards."""
    import vdr_app.index.memory as memory

    calls = []
    real = memory.two_stage_top_k
    monkeypatch.setattr(memory, "two_stage_top_k", lambda *a, **kw: calls.append(a[4]) or real(*a, **kw))
    labels = ev.parse_labels(_labels({"query": "alpha beta", "file": "a.pdf", "page": 2},
                                     {"query": "gamma", "file": "b.pdf", "page": 1}))
    result = ev.evaluate(fake_engine, ["pool1d:factor=4", "full@binary"], labels, two_stage=True)
    assert [v.label for v in result.views] == ["full", "full two-stage", "pool1d:factor=4",
                                               "pool1d:factor=4 two-stage", "full@binary"]
    assert len(calls) == 2 * 2 and calls[0] == fake_engine.settings.two_stage_depth  # 2 views x 2 queries
    for plain, staged in ((result.views[0], result.views[1]), (result.views[2], result.views[3])):
        assert [r["top"] for r in staged.per_query] == [r["top"] for r in plain.per_query]
        assert staged.metrics == plain.metrics and staged.memory == plain.memory
        assert staged.search == "two-stage" and "same bytes" in staged.off_frontier and plain.off_frontier is None
    rows = result.as_dict()["views"]
    assert all(r["search"] != "two-stage" for r in ev.frontier_rows(rows, "retention.ndcg@5"))
    assert not list(tmp_path.rglob("vdr-two-stage-*")) and "two-stage" in result.table()


def test_labels_naming_unstored_documents_fail_before_anything_is_searched(fake_engine):
    labels = ev.parse_labels(_labels({"query": "x", "file": "c.pdf", "page": 1}))
    with pytest.raises(InvalidLabelsError, match="unknown file 'c.pdf'"):
        ev.evaluate(fake_engine, ["pool1d:factor=4"], labels)
    assert fake_engine.store.view_specs() == []


# -- the CLI on real PDFs with a tiny checkpoint ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from vdr_app.checkpoints.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint("colqwen2", tmp_path_factory.mktemp("tiny") / "colqwen2")


def test_eval_cli_end_to_end_on_pdfs_with_a_tiny_model(tmp_path, sample_docs, tiny_model, capsys):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for name in ("newsletter.pdf", "report.pdf"):  # 1 + 2 pages, made in code
        shutil.copy(sample_docs / "pdfs" / name, folder / name)
    labels = tmp_path / "labels.jsonl"
    labels.write_text(_labels(
        {"query": "volunteers cleaned the river banks", "file": "newsletter.pdf", "page": 1, "kind": "text"},
        {"query": "table of employees per office", "file": "report.pdf", "page": 2, "kind": "figure"},
    ))
    queries = tmp_path / "queries.txt"
    queries.write_text("which office has the largest budget?\n")
    store, out_json, out_html = tmp_path / "s.sqlite", tmp_path / "out" / "e.json", tmp_path / "out" / "e.html"
    args = ["eval", str(folder), "--labels", str(labels), "--queries", str(queries), "--store", str(store),
            "--model", str(tiny_model), "--views", "cluster:factor=4", "docpruner:k=0",
            "--json", str(out_json), "--html", str(out_html)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 PDFs (2 newly indexed" in out and "cluster:factor=4" in out and "docpruner:k=0" in out
    data = json.loads(out_json.read_text())
    assert [v["view"] for v in data["views"]] == ["full", "cluster:factor=4,features=profile", "docpruner:k=0"]
    assert data["pages"] == 3 and data["queries"] == 3 and data["labelled_queries"] == 2
    full, cluster, pruned = data["views"]
    assert full["memory_ratio"] == 1.0 and full["retention"]["ndcg@5"] == pytest.approx(1.0)
    assert full["fidelity"]["overlap@10"] == 1.0
    assert 0 < cluster["memory_ratio"] < 0.5 and 0 < pruned["memory_ratio"] < 1
    for view in data["views"]:
        assert all(0 <= view["metrics"][m] <= 1 for m in ev.METRICS)
        assert len(view["per_query"]) == 3 and set(view["by_kind"]) == {"text", "figure"}
    assert "plotly" in out_html.read_text()[:5000].lower()

    # Again on the same store: nothing is re-encoded, the stored views are reused.
    assert main(args[:-4]) == 0
    assert "(0 newly indexed, 2 already in the store)" in capsys.readouterr().out


def test_eval_cli_reports_a_bad_label_line_and_changes_nothing(tmp_path, sample_docs, capsys):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    shutil.copy(sample_docs / "pdfs" / "newsletter.pdf", folder)
    labels = tmp_path / "labels.jsonl"
    labels.write_text(_labels({"query": "river", "file": "newsletter.pdf", "page": 2}))
    store = tmp_path / "s.sqlite"
    assert main(["eval", str(folder), "--labels", str(labels), "--store", str(store), "--sweep"]) == 1
    err = capsys.readouterr().err
    assert "labels.jsonl:1: page 2 is out of range" in err and "has 1 pages" in err
    assert not store.exists() or Engine(Settings(store_path=store)).list_documents() == []


# -- the Lab tab through gradio_client --------------------------------------------------------------


def _lab_demo(engine):
    import gradio as gr

    try:
        from vdr_app.ui import build_demo  # the app's own UI when it exists

        return build_demo(engine)
    except ImportError:
        from vdr_app.ui.lab import build_lab_tab

        with gr.Blocks() as demo:
            with gr.Tab("Lab"):
                build_lab_tab(engine)
        return demo


def test_lab_tab_runs_through_gradio_client(fake_engine, tmp_path):
    from gradio_client import Client, handle_file

    labels = tmp_path / "labels.jsonl"
    labels.write_text(_labels({"query": "alpha beta", "file": "a.pdf", "page": 2, "kind": "text"},
                              {"query": "gamma", "file": "b.pdf", "page": 1, "kind": "table"}))
    demo = _lab_demo(fake_engine)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        client = Client(url, verbose=False)
        # UI handlers: callable by name, not documented (the documented API is vdr_app/ui/api.py's)
        assert {"lab_run", "lab_views"} <= {dep.get("api_name") for dep in demo.config["dependencies"]}
        choices = client.predict(api_name="/lab_views")
        assert "cluster:factor=9,features=profile" in json.dumps(choices)
        figure, table, export, summary = client.predict(
            ["pool1d:factor=4", "random:keep=0.5"], False, "delta\nalpha beta", handle_file(str(labels)), False, 0, False,
            api_name="/lab_run",
        )
        data = json.loads(open(export, encoding="utf-8").read())
        assert [v["view"] for v in data["views"]] == ["full", "pool1d:factor=4", "random:keep=0.5,seed=0"]
        assert data["labelled_queries"] == 2 and data["queries"] == 3
        assert [row[0] for row in table["data"]] == ["full", "pool1d:factor=4", "random:keep=0.5,seed=0"]
        assert "2 views" in summary and "nDCG@5" in summary
        assert "2 labelled from the file" in summary and "1 typed in the box" in summary
        assert figure is not None
        # Views computed for a run are removed afterwards unless the user keeps them.
        assert fake_engine.store.view_specs() == [] and "removed again" in summary
        _, _, _, summary = client.predict(["pool1d:factor=4"], False, "delta", None, True, 0, False, api_name="/lab_run")
        assert fake_engine.store.view_specs() == ["pool1d:factor=4"] and "kept in the store" in summary
        fake_engine.delete_view("pool1d:factor=4")

        # Without labels the tab still works (fidelity only); a bad spec is a readable error.
        _, table, _, summary = client.predict(["pool1d:factor=4"], False, "delta", None, False, 0, False, api_name="/lab_run")
        assert "No labels" in summary and table["data"][0][0] == "full"
        with pytest.raises(Exception, match="unknown reduction strategy 'nope'"):
            client.predict(["nope:keep=0.5"], False, "delta", None, False, 0, False, api_name="/lab_run")
    finally:
        demo.close()


def test_lab_scores_quantised_views_on_their_codes_and_shows_a_deep_rescoring_variant_off_the_frontier(
        fake_engine, tmp_path):
    from vdr_app.ui.lab import run_lab

    figure, table, path, summary = run_lab(fake_engine, ["full@binary"], False, "delta\nalpha", None,
                                           out_dir=tmp_path)
    assert table["rescore"].tolist()[1] == 0 and "off the frontier" not in summary
    figure, table, path, summary = run_lab(fake_engine, ["full@binary"], False, "delta\nalpha", None,
                                           out_dir=tmp_path, rescore=100)
    assert table["view"].tolist() == ["full", "full@binary", "full@binary rescore=100"]
    assert table["rescored share"].tolist()[2] == "100% (off the frontier)"
    assert "left off the frontier" in summary
    front = next(t for t in figure.data if t.name == "Pareto frontier")
    assert all("rescore=100" not in text for text in front.hovertext)
    with pytest.raises(VdrError, match="rescore"):
        run_lab(fake_engine, ["full@binary"], False, "delta", None, out_dir=tmp_path, rescore=-3)


def test_lab_two_stage_switch_adds_a_row_per_float_view_and_says_whether_it_moved(fake_engine, tmp_path):
    from vdr_app.ui.lab import run_lab

    figure, table, path, summary = run_lab(fake_engine, ["pool1d:factor=4", "full@binary"], False, "delta\nalpha",
                                           None, out_dir=tmp_path, two_stage=True)
    assert table["view"].tolist() == ["full", "full two-stage", "pool1d:factor=4", "pool1d:factor=4 two-stage",
                                      "full@binary"]
    assert "2 two-stage rows" in summary and "every one ranks exactly as exhaustive search" in summary
    assert "**2 views**" in summary  # the variants are not counted as views
    front = next(t for t in figure.data if t.name == "Pareto frontier")
    assert all("two-stage" not in text for text in front.hovertext)
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    assert [v["search"] for v in saved["views"]][:2] == ["exhaustive", "two-stage"]


def test_bootstrap_interval_brackets_the_retention_and_collapses_for_identical_scores():
    rng = np.random.default_rng(1)
    full = rng.random(50)
    view = full * rng.uniform(0.6, 1.0, 50)
    low, high = ev.bootstrap_retention(view, full)
    assert low < view.mean() / full.mean() < high and high - low < 0.2
    assert ev.bootstrap_retention(full, full) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert ev.bootstrap_retention([], []) is None and ev.bootstrap_retention([0.0], [0.0]) is None


def test_retention_figure_draws_one_line_per_family_with_intervals():
    from vdr_app.figures import retention_figure

    rows = [
        dict(view="full", family="full", memory_ratio=1.0, retention={"ndcg@5": 1.0}),
        dict(view="cluster:factor=9", family="cluster", memory_ratio=0.11, retention={"ndcg@5": 0.96},
             retention_ci={"ndcg@5": [0.93, 0.99]}),
        dict(view="cluster:factor=2", family="cluster", memory_ratio=0.5, retention={"ndcg@5": 0.99},
             retention_ci={"ndcg@5": [0.98, 1.0]}),
        dict(view="random:keep=0.5", family="random", memory_ratio=0.5, retention={"ndcg@5": 0.97}),
        dict(view="attention:keep=0.5", family="attention", skipped="no attention"),
    ]
    figure = retention_figure(rows)
    traces = {t.name: t for t in figure.data}
    assert set(traces) == {"full index", "cluster", "random", "Pareto frontier"}
    assert list(traces["cluster"].x) == [0.11, 0.5]  # sorted by memory
    assert list(traces["cluster"].error_y.arrayminus) == pytest.approx([0.03, 0.01])
    assert traces["random"].error_y.array is None
    # cluster:factor=9 beats everything smaller; cluster:factor=2 beats random at the same memory
    assert list(traces["Pareto frontier"].x) == [0.11, 0.5, 1.0]


def test_retention_figure_plots_bytes_and_marks_the_frontier_across_both_axes():
    from vdr_app.figures import retention_figure

    def row(view, family, nbytes, value, quant=None, rescore=None, share=None):
        return dict(view=view, label=view if not rescore else f"{view} rescore={rescore}", family=family,
                    quant=quant, rescore=rescore, memory={"bytes": nbytes}, memory_ratio=nbytes / 1000,
                    retention={"ndcg@5": value}, rescore_share=share,
                    off_frontier="rescoring re-scores 36% of the library" if share and share > 0.05 else None)

    rows = [
        row("full", "full", 1000, 1.0),
        row("full@int8", "full", 520, 0.999, "int8", 0),
        row("full@binary", "full", 62, 0.80, "binary", 0),
        row("full@binary", "full", 62, 0.98, "binary", 100, 0.36),
        row("full@binary", "full", 62, 0.935, "binary", 12, 0.04),
        row("cluster:factor=9", "cluster", 111, 0.94),
        row("cluster:factor=9@int4", "cluster", 30, 0.91, "int4", 0),
        row("cluster:factor=9@binary", "cluster", 7, 0.70, "binary", 0),
        row("cluster:factor=9@int8", "cluster", 58, 0.93, "int8", 0),
    ]
    figure = retention_figure(rows)
    traces = {t.name: t for t in figure.data}
    assert {"full index", "full @int8 no rescoring", "full @binary no rescoring",
            "full @binary rescore 100 (36% of pages, off the frontier)", "full @binary rescore 12 (4% of pages)",
            "cluster", "cluster @binary no rescoring", "cluster @int8 no rescoring",
            "cluster @int4 no rescoring"} <= set(traces)
    assert traces["cluster @int8 no rescoring"].marker.symbol == "square"
    assert traces["cluster @int4 no rescoring"].marker.symbol == "triangle-up"
    assert traces["cluster @binary no rescoring"].line.dash == "dot"
    deep = traces["full @binary rescore 100 (36% of pages, off the frontier)"]
    assert deep.marker.symbol == "diamond-open" and deep.opacity < 1
    front = traces["Pareto frontier"]
    # the deep rescoring variant (62 B, 0.98) would dominate everything from 62 B to 111 B: it is
    # left off; the shallow one (4 % of the pages, 0.935) stands, above full@binary's codes (0.80)
    assert list(front.x) == [7, 30, 58, 62, 111, 520, 1000]
    assert list(front.y) == [0.70, 0.91, 0.93, 0.935, 0.94, 0.999, 1.0]
    assert figure.layout.xaxis.type == "log" and "bytes" in figure.layout.xaxis.title.text


def test_stacked_frontier_picks_the_best_row_within_each_byte_budget_and_ignores_deep_rescoring():
    def row(label, ratio, value, off=None, skipped=None):
        return dict(label=label, view=label, memory_ratio=ratio, retention={"ndcg@5": value}, off_frontier=off,
                    skipped=skipped)

    rows = [row("full", 1.0, 1.0), row("a@binary", 0.004, 0.90), row("b@int2", 0.009, 0.95),
            row("c@int4", 0.009, 0.95), row("d", 0.11, 0.94), row("a@binary rescore=100", 0.004, 1.0, off="36%"),
            row("e", 0.003, 0.99, skipped="no attention")]
    got = ev.stacked_frontier(rows, budgets=(0.001, 0.005, 0.01, 0.2, 1.0))
    assert [(b, r and r["label"]) for b, r in got] == [
        (0.001, None), (0.005, "a@binary"), (0.01, "b@int2"), (0.2, "b@int2"), (1.0, "full")]


def test_pareto_front():
    assert ev.pareto_front([(1, 0.5), (2, 0.4), (2, 0.9), (3, 0.9), (0.5, float("nan")), (4, 1.0)]) == [0, 2, 5]
    assert ev.pareto_front([]) == []
