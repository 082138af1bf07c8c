"""`index status`, `index sync` and `search --doc` from the command line, on the Qdrant backend in
qdrant-client's local mode (no Qdrant server can be installed on the project's machines), over a
store first built with the default memory backend."""

import json

from .test_cli import PDFS, cli, tiny_model  # noqa: F401 - the module-scoped fixture


def test_move_a_memory_store_to_qdrant_and_keep_it_in_step(tmp_path, tiny_model, sample_docs, monkeypatch):  # noqa: F811
    store = tmp_path / "store.sqlite"
    common = ["--store", store, "--model", tiny_model]
    pdfs = [sample_docs / "pdfs" / name for name in PDFS]
    cli("add", *pdfs, *common)
    memory_hits = json.loads(cli("search", "annual report", "-k", "3", "--json", *common).stdout)

    monkeypatch.setenv("VDR_QDRANT_PATH", str(tmp_path / "qdrant"))
    qdrant = [*common, "--index", "qdrant"]
    status = json.loads(cli("index", "status", "--json", *qdrant).stdout)
    assert status["backend"] == "qdrant" and not status["in_step"]
    assert sorted(status["pending"]) == sorted(f"{n} (document {i})" for i, n in enumerate(PDFS, start=1))
    warned = cli("search", "annual report", *qdrant, check=False)
    assert "out of step" in warned.stderr and "index sync" in warned.stderr

    assert "3 page(s) indexed" in cli("index", "sync", *qdrant).stdout
    assert "already in step" in cli("index", "sync", *qdrant).stdout  # idempotent
    status = json.loads(cli("index", "status", "--json", *qdrant).stdout)
    assert status["in_step"] and status["views"][0]["index_pages"] == 3

    hits = json.loads(cli("search", "annual report", "-k", "3", "--json", *qdrant).stdout)
    # Same pages; scores within the memory index's bfloat16 rounding of the store's float16 vectors.
    assert {h["page_id"] for h in hits} == {h["page_id"] for h in memory_hits}
    by_id = {h["page_id"]: h["score"] for h in memory_hits}
    assert all(abs(h["score"] - by_id[h["page_id"]]) <= 0.02 * abs(by_id[h["page_id"]]) + 1e-3 for h in hits)

    only = json.loads(cli("search", "annual report", "-k", "3", "--json", "--doc", PDFS[1], *qdrant).stdout)
    assert len(only) == 2 and {h["doc_name"] for h in only} == {PDFS[1]}
    missing = cli("search", "annual report", "--doc", "nope.pdf", *qdrant, check=False)
    assert missing.returncode == 1 and "no document 'nope.pdf'" in missing.stderr

    cli("delete", PDFS[0], *qdrant)
    status = json.loads(cli("index", "status", "--json", *qdrant).stdout)
    assert status["in_step"] and status["views"][0]["index_pages"] == 2

    down = cli("search", "annual report", *common, "--index", "qdrant", "--qdrant-url", "http://127.0.0.1:9",
               check=False)
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "http://127.0.0.1:9" in down.stderr
    assert json.loads(cli("list", "--json", *common).stdout)[0]["name"] == PDFS[1]  # nothing lost
