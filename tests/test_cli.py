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
