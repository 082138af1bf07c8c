"""Engine mechanics with a deterministic fake encoder: ingest, duplicates, views, deletes, atomicity."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import InvalidQueryError, ModelMismatchError, PdfError
from vdr_app.store import Store

from .fakes import GridEncoder

REPO = Path(__file__).resolve().parents[1]


def _engine(tmp_path, encoder=None, **settings):
    settings = Settings(data_dir=tmp_path, dpi=30, **settings)
    return Engine(settings, encoder=encoder or GridEncoder())


def _store_bytes(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.parent.glob(path.name + "*")):
        if not p.name.endswith("-shm"):  # the shared-memory index is not content
            digest.update(p.name.encode() + p.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def two_pdfs(pdf_factory):
    a = pdf_factory([[(72, 72, "alpha")], [(72, 300, "beta")]], blocks={0: [(100, 100, 200, 200, (1, 0, 0))]})
    b = pdf_factory([[(72, 72, "gamma")]], blocks={0: [(300, 500, 150, 150, (0, 0, 1))]})
    return a, b


def test_add_search_delete(tmp_path, two_pdfs):
    engine = _engine(tmp_path)
    results = engine.add_files(two_pdfs)
    assert [r.added for r in results] == [True, True] and [r.n_pages for r in results] == [2, 1]
    again = engine.add_files(two_pdfs[:1])
    assert not again[0].added and engine.encoder.pages_encoded == 3  # a duplicate is not re-encoded
    hits = engine.search("alpha beta", k=10)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    engine.delete_document(results[0].doc_id)
    assert {h.doc_id for h in engine.search("alpha", k=10)} == {results[1].doc_id}


def test_search_scores_equal_a_simple_loop_over_stored_vectors(tmp_path, two_pdfs):
    engine = _engine(tmp_path)
    engine.add_files(two_pdfs)
    query = engine.encode_query("red square")
    hits = engine.search_embedding(query, k=3)
    ids, vectors = engine.store.load_vectors()
    expected = {pid: float((query.vectors @ v.astype(np.float32).T).max(axis=1).sum()) for pid, v in zip(ids, vectors)}
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.page_id], abs=2e-2)
    assert [h.page_id for h in hits] == sorted(expected, key=lambda p: -expected[p])


@pytest.mark.parametrize("query", ["", "   ", "x" * 5000])
def test_bad_queries_are_refused(tmp_path, two_pdfs, query):
    engine = _engine(tmp_path)
    engine.add_files(two_pdfs[:1])
    with pytest.raises(InvalidQueryError):
        engine.search(query)


def test_bad_file_among_good_ones_changes_nothing(tmp_path, two_pdfs, sample_docs):
    engine = _engine(tmp_path)
    engine.add_files(two_pdfs[:1])
    before = _store_bytes(Path(engine.store.path))
    for bad in sorted((sample_docs / "bad").iterdir()):
        with pytest.raises(PdfError):
            engine.add_files([two_pdfs[1], bad])
    assert _store_bytes(Path(engine.store.path)) == before
    assert len(engine.list_documents()) == 1


def test_encoder_crash_leaves_no_document(tmp_path, two_pdfs):
    engine = _engine(tmp_path, encoder=GridEncoder(fail_on_page=1))
    with pytest.raises(RuntimeError, match="simulated"):
        engine.add_files(two_pdfs[:1])
    assert engine.list_documents() == [] and engine.store.page_ids() == []


def test_store_refuses_another_model(tmp_path, two_pdfs):
    _engine(tmp_path).add_files(two_pdfs[:1])
    other = _engine(tmp_path, encoder=GridEncoder(model_id="another-model"))
    with pytest.raises(ModelMismatchError, match="fake-grid"):
        other.add_files(two_pdfs[1:])
    with pytest.raises(ModelMismatchError):
        other.search("alpha")


def test_views_follow_adds_deletes_and_restarts(tmp_path, two_pdfs):
    engine = _engine(tmp_path)
    first = engine.add_files(two_pdfs[:1])[0]
    spec = engine.add_view("random:keep=0.5,seed=0")
    assert spec in engine.store.view_specs()
    second = engine.add_files(two_pdfs[1:])[0]
    assert len(engine.store.vector_counts(spec)) == 3  # the new document's page was reduced too
    engine.delete_document(first.doc_id)
    restarted = Engine(engine.settings, encoder=GridEncoder())
    counts = restarted.store.vector_counts(spec)
    assert len(counts) == 1 and counts[0] < restarted.store.vector_counts("full")[0]
    hits = restarted.search("gamma", k=5, view=spec)
    assert [h.doc_id for h in hits] == [second.doc_id]
    memory = {v.view: v for v in restarted.views()}
    assert memory[spec].ratio_to_full < 1.0 and memory["full"].ratio_to_full == 1.0


def test_identity_view_is_the_full_index(tmp_path, two_pdfs):
    engine = _engine(tmp_path)
    engine.add_files(two_pdfs)
    assert engine.canonical_view("identity") == "full"
    full = engine.search("alpha red", k=3)
    same = engine.search("alpha red", k=3, view="identity")
    assert [(h.page_id, h.score) for h in full] == [(h.page_id, h.score) for h in same]


def test_explore_reduces_on_the_fly_without_storing(tmp_path, two_pdfs):
    engine = _engine(tmp_path)
    engine.add_files(two_pdfs[:1])
    page_id = engine.store.page_ids()[0]
    half = engine.explore(page_id, "random:keep=0.5,seed=0")
    quarter = engine.explore(page_id, "random:keep=0.25,seed=0")
    assert half.full_vectors == 64 + 2
    assert quarter.view_vectors < half.view_vectors < half.full_vectors
    assert engine.store.view_specs() == []


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    from pathlib import Path
    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.store import Store
    from fakes import GridEncoder

    original = Store._insert_page
    def slow_insert(self, *args):
        page_id = original(self, *args)
        print("inserted", flush=True)
        time.sleep(30)  # the parent kills us here, mid-transaction
        return page_id
    Store._insert_page = slow_insert
    engine = Engine(Settings(data_dir=Path({data!r}), dpi=30), encoder=GridEncoder())
    engine.add_files([{pdf!r}])
    """
)


def test_add_killed_halfway_leaves_an_intact_store_without_the_document(tmp_path, two_pdfs):
    engine = _engine(tmp_path)
    engine.add_files(two_pdfs[1:])
    engine.store.close()
    script = KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), data=str(tmp_path), pdf=str(two_pdfs[0]))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "inserted"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = Store(tmp_path / "vdr.sqlite")
    assert store.integrity_ok()
    assert [d.name for d in store.list_documents()] == [two_pdfs[1].name]
    assert store.db["pages"].count == 1 and store.db["embeddings"].count == 1 and store.db["layouts"].count == 1
