"""The command line end to end: a tiny checkpoint written by the documented command, two PDFs made in code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PDFS = ["newsletter.pdf", "report.pdf"]  # made in code: the sample_docs fixture


def cli(*args, check=True):
    env = dict(os.environ, HF_HUB_OFFLINE="1", VDR_DPI="60")
    proc = subprocess.run(
        [sys.executable, "-m", "vdr_app", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "model"
    out = cli("make-tiny-model", folder, "--family", "colqwen2")
    assert "wrote a tiny random colqwen2 checkpoint" in out.stdout
    return folder


def test_cli_round_trip_on_pdfs(tmp_path, tiny_model, sample_docs):
    store = tmp_path / "store.sqlite"
    common = ["--store", store, "--model", tiny_model]
    pdfs = [sample_docs / "pdfs" / name for name in PDFS]

    added = cli("add", *pdfs, *common).stdout
    assert "added (document 1, 1 pages)" in added and "added (document 2, 2 pages)" in added
    assert "already indexed" in cli("add", pdfs[0], *common).stdout

    hits = json.loads(cli("search", "sustainability report", "-k", "3", "--json", *common).stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {h["doc_name"] for h in hits} == set(PDFS)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    cli("view", "add", "cluster:factor=9", *common)
    views = {v["view"]: v for v in json.loads(cli("views", "--json", *common).stdout)}
    assert views["cluster:factor=9,features=profile"]["ratio_to_full"] < 0.2
    reduced = json.loads(cli("search", "sustainability", "--view", "cluster:factor=9", "--json", *common).stdout)
    assert len(reduced) == 3

    stats = json.loads(cli("stats", "--json", *common).stdout)
    assert (stats["documents"], stats["pages"]) == (2, 3)
    assert stats["model"].endswith("model")

    listing = json.loads(cli("list", "--json", *common).stdout)
    assert [d["name"] for d in listing] == PDFS and all(d["vector_bytes"] > 0 for d in listing)

    cli("delete", PDFS[0], *common)
    stats = json.loads(cli("stats", "--json", *common).stdout)
    assert (stats["documents"], stats["pages"]) == (1, 2)
    assert {v["pages"] for v in stats["views"]} == {2}  # the view followed the delete


def test_cli_errors_are_one_line_and_change_nothing(tmp_path, tiny_model, sample_docs):
    store = tmp_path / "store.sqlite"
    common = ["--store", store, "--model", tiny_model]
    cli("add", sample_docs / "pdfs" / PDFS[0], *common)
    before = store.read_bytes()
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_text("just text")
    cases = [
        (["add", sample_docs / "bad" / "encrypted.pdf"], "encrypted"),
        (["add", sample_docs / "pdfs" / PDFS[1], not_pdf], "not a PDF"),
        (["add", tmp_path / "missing.pdf"], "no such file"),
        (["search", "   "], "query is empty"),
        (["search", "x", "--view", "nonsense:keep=0.5"], "unknown reduction strategy"),
        (["view", "add", "cluster:factor=0.5"], "factor must be"),
        (["delete", "nope.pdf"], "no document"),
    ]
    for args, message in cases:
        proc = cli(*args, *common, check=False)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message.lower() in lines[0].lower(), (args, lines)
    assert store.read_bytes() == before


def test_unloadable_model_says_what_to_do(tmp_path, sample_docs):
    proc = cli("add", sample_docs / "pdfs" / PDFS[0], "--store", tmp_path / "s.sqlite",
               "--model", "vidore/colSmol-256M", check=False)
    assert proc.returncode == 1
    assert "text-layout-minilm" in proc.stderr and "make-tiny-model" in proc.stderr
    assert not (tmp_path / "s.sqlite").exists() or json.loads(
        cli("stats", "--json", "--store", tmp_path / "s.sqlite").stdout
    )["documents"] == 0


def test_shared_options_work_before_and_after_the_command(tmp_path, tiny_model, sample_docs):
    store = tmp_path / "store.sqlite"
    cli("--model", tiny_model, "--store", store, "add", sample_docs / "pdfs" / PDFS[0])
    before = json.loads(cli("--store", store, "stats", "--json").stdout)
    after = json.loads(cli("stats", "--json", "--store", store).stdout)
    assert before == after and before["pages"] == 1


def test_reencode_gives_old_pages_what_sap_needs(tmp_path, tiny_model, sample_docs):
    """Pages stored before centrality was captured: `sap` says to re-encode, `reencode` does it
    in place (same document and page ids), and from then on any `sap` ratio is a re-cut."""
    import sqlite3

    store = tmp_path / "store.sqlite"
    common = ["--store", store, "--model", tiny_model]
    pdf = sample_docs / "pdfs" / PDFS[1]
    cli("add", pdf, *common)
    cli("view", "add", "random:keep=0.5", *common)
    with sqlite3.connect(store) as conn:  # what a store written before schema 3 holds
        conn.execute("DELETE FROM centrality")
        page_ids = [r[0] for r in conn.execute("SELECT id FROM pages ORDER BY id")]
    proc = cli("view", "add", "sap:keep=0.1", *common, check=False)
    assert proc.returncode == 1 and "re-encode" in proc.stderr.lower() and len(proc.stderr.strip().splitlines()) == 1
    assert [v["view"] for v in json.loads(cli("views", "--json", *common).stdout)] == ["full", "random:keep=0.5,seed=0"]
    missing = cli("reencode", sample_docs / "pdfs" / PDFS[0], *common, check=False)
    assert missing.returncode == 1 and "add it instead" in missing.stderr

    assert "re-encoded (document 1, 2 pages)" in cli("reencode", pdf, *common).stdout
    cli("view", "add", "sap:keep=0.1", *common)
    cli("view", "add", "sap:factor=4,layers=0-0", *common)
    with sqlite3.connect(store) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM pages ORDER BY id")] == page_ids
        assert conn.execute("SELECT COUNT(*) FROM centrality").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM view_pages WHERE spec = 'random:keep=0.5,seed=0'").fetchone()[0] == 2
    hits = json.loads(cli("search", "report", "--view", "sap:keep=0.1", "--json", *common).stdout)
    assert len(hits) == 2


def test_sap_window_calibrates_a_store_and_eval_scores_sap_held_out(tmp_path, tiny_model, sample_docs):
    """`sap-window` prints the score-retention table, records the chosen window (not on a dry run or
    bad labels), `layers=auto` then cuts at it while the view cut before keeps its band, and
    `eval --sap-window cv` scores sap with windows chosen on the other fold's queries."""
    store = tmp_path / "store.sqlite"
    common = ["--store", store, "--model", tiny_model]
    cli("add", *[sample_docs / "pdfs" / name for name in PDFS], *common)
    assert "added view sap:keep=0.5,layers=0-1" in cli("view", "add", "sap:keep=0.5", *common).stdout  # the band
    words = ["report", "newsletter", "sustainability", "energy", "summary", "figures"]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(  # newsletter.pdf has 1 page, report.pdf 2
        json.dumps({"query": f"{words[i % 6]} {words[(i + 2) % 6]} {i}", "file": PDFS[i % 2],
                    "page": 1 + (i // 2) % 2 if i % 2 else 1}) for i in range(12)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "report", "file": "missing.pdf", "page": 1}\n')
    before = store.read_bytes()
    proc = cli("sap-window", "--labels", bad, *common, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "missing.pdf" in lines[0], proc.stderr
    dry = cli("sap-window", "--labels", labels, "--dry-run", *common).stdout
    assert "layer 0 " in dry and "layer 1 " in dry and "middle band 0-1" in dry and "random (5 seeds)" in dry
    assert "12 (query, relevant page) pairs" in dry and "dry run: nothing recorded" in dry
    assert store.read_bytes() == before

    recorded = json.loads(cli("sap-window", "--labels", labels, "--json", *common).stdout)
    assert recorded["recorded"] and recorded["calibrated"] and recorded["pairs"] == 12
    assert recorded["layers"] in {"0-0", "0-1", "1-1"} and set(recorded["osr"]) == {"0-0", "0-1", "1-1"}
    best = max(sum(v) for v in recorded["osr"].values())
    assert sum(recorded["osr"][recorded["layers"]]) == pytest.approx(best)
    added = cli("view", "add", "sap:keep=0.25", *common).stdout
    assert f"added view sap:keep=0.25,layers={recorded['layers']}" in added
    assert "sap:keep=0.5,layers=0-1" in {v["view"] for v in json.loads(cli("views", "--json", *common).stdout)}

    out = tmp_path / "eval.json"
    text = cli("eval", "--labels", labels, "--views", "sap:keep=0.25", "random:keep=0.25", "--sap-window", "cv",
               "--json", out, *common).stdout
    assert "sap window, fold 1 of 2 (6 queries)" in text and "sap window, fold 2 of 2 (6 queries)" in text
    data = json.loads(out.read_text())
    assert data["sap_window"]["folds"] == 2 and len(data["sap_window"]["windows"]) == 2
    held = [v for v in data["views"] if v["held_out"]]
    assert len(held) == 1 and held[0]["view"] == "sap:keep=0.25,layers=auto" and len(held[0]["held_out"]) == 2
    assert held[0]["retention"]["ndcg@5"] is not None and len(held[0]["per_query"]) == 12
    queries = tmp_path / "queries.txt"
    queries.write_text("report\nenergy\n")
    no_labels = cli("eval", "--queries", queries, "--views", "sap:keep=0.25", "--sap-window", "cv", *common,
                    check=False)
    assert no_labels.returncode == 1 and "--labels" in no_labels.stderr
    both = cli("eval", "--labels", labels, "--views", "sap:keep=0.25", "--sap-window", "cv", "--two-stage", *common,
               check=False)
    assert both.returncode == 1 and "do not combine" in both.stderr
