"""One contract for every search-index backend (vdr_app.index), checked against a reference loop.

Backends: `memory` (in-process MaxSimIndex, updated in place) and `qdrant` in qdrant-client's
local mode (the same client calls a server receives, executed in-process with numpy). With
VDR_TEST_QDRANT_URL set, the whole suite also runs against that real Qdrant server or cluster.

No Qdrant server can be installed on the project's machines (no Debian or PyPI package ships the
server binary), so here the `qdrant-server` cases skip with that reason; local mode does not
cover the network protocol, shard routing, replication or failover.

Reference: for every stored page, MaxSim = sum over query tokens of the max dot product over the
page's vectors, in float64, on the vectors at the backend's stored precision (bfloat16 for the
memory index, the store's float16 for Qdrant). Each hit must carry its page's reference score,
and the k hit scores must equal the k best reference scores, rank by rank: the same ranking up
to exact ties.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import numpy as np
import pytest
from PIL import Image

from vdr_app import reduce as reduce_lib
from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import IndexUnavailableError, NotFoundError
from vdr_app.index import MemoryIndex
from vdr_app.index.qdrant import QdrantIndex
from vdr_app.index.maxsim import _round_bits
from vdr_app.store import FULL_VIEW, Store
from vdr_app.types import PageEmbedding, PageImage, QueryEmbedding

from .fakes import GridEncoder

SERVER_URL = os.environ.get("VDR_TEST_QDRANT_URL")
BACKENDS = ["memory", "memory-two-stage", "memory-two-stage-codes", "qdrant-local", "qdrant-local-two-stage",
            "qdrant-server"]
VIEW = "random:keep=0.5,seed=0"
DIM = 16
TOL = 2e-5


def _index(kind: str, store: Store, tmp_path):
    if kind == "memory":
        return MemoryIndex(store)
    if kind == "memory-two-stage":
        # Candidate depth above the stores' page counts: every page is re-scored, so two-stage
        # answers must equal the reference exactly (recall at smaller depths: test_two_stage.py).
        return MemoryIndex(store, search_mode="two-stage", depth=500, code_depth=0, vectors_dir=tmp_path)
    if kind == "memory-two-stage-codes":  # the int2 middle stage kept in step with every change
        return MemoryIndex(store, search_mode="two-stage", depth=500, code_depth=2000, vectors_dir=tmp_path)
    if kind == "qdrant-local":
        return QdrantIndex(store, path=tmp_path / f"qdrant-{uuid.uuid4().hex[:6]}")
    if kind == "qdrant-local-two-stage":  # prefetch on the summary vector -> MAX_SIM, depth above the page count
        return QdrantIndex(store, path=tmp_path / f"qdrant-{uuid.uuid4().hex[:6]}", two_stage=True, depth=500)
    if not SERVER_URL:
        pytest.skip("no Qdrant server here (none can be installed on these machines); set VDR_TEST_QDRANT_URL")
    # A throwaway store path gives fresh collection names on the shared server.
    return QdrantIndex(store, url=SERVER_URL, api_key=os.environ.get("VDR_TEST_QDRANT_API_KEY"))


def _stored_precision(kind: str, vectors: np.ndarray) -> np.ndarray:
    """The page's vectors as the backend holds them (the store gives float16)."""
    x = np.asarray(vectors, dtype=np.float32)
    if kind.startswith("memory"):  # MaxSimIndex's default bfloat16 (and the two-stage vector file's)
        return (_round_bits(x, "bfloat16").astype(np.uint32) << 16).view(np.float32)
    return x


def reference(kind: str, store: Store, spec: str, query: np.ndarray, doc_ids=None) -> dict[int, float]:
    """page id -> MaxSim score, by a plain loop over the stored pages."""
    docs = dict(store.page_docs())
    out = {}
    for pid, vecs in zip(*store.load_vectors(spec)):
        if doc_ids is not None and docs[pid] not in doc_ids:
            continue
        v = _stored_precision(kind, vecs).astype(np.float64)
        if len(v):
            out[pid] = float((np.asarray(query, np.float64) @ v.T).max(axis=1).sum())
    return out


def assert_matches(hits, ref: dict[int, float], k: int) -> None:
    got = [(h.page_id, h.score) if hasattr(h, "page_id") else h for h in hits]
    best = sorted(ref.values(), reverse=True)[:k]
    assert len(got) == len(best), (len(got), len(best))
    for rank, ((pid, score), want) in enumerate(zip(got, best), start=1):
        assert pid in ref, f"rank {rank}: page {pid} is not a stored page of this selection"
        assert abs(score - ref[pid]) <= TOL * max(1.0, abs(ref[pid])), (rank, pid, score, ref[pid])
        assert abs(score - want) <= TOL * max(1.0, abs(want)), f"rank {rank}: {score} but the {rank}th best is {want}"


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _random_page(rng, n: int) -> PageEmbedding:
    side = int(np.ceil(np.sqrt(n)))
    rows, cols = np.divmod(np.arange(n), side)
    boxes = np.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], 1)
    return PageEmbedding(patches=_unit(rng.standard_normal((n, DIM))), boxes=boxes,
                         extra=_unit(rng.standard_normal((2, DIM))), model_id="ragged")


def add_random_document(store: Store, rng, name: str, n_pages: int) -> int:
    """Store a document of ragged random pages (5-120 vectors each) with every stored view."""
    pages = [(PageImage(Image.new("RGB", (8, 8)), i + 1), _random_page(rng, int(rng.integers(5, 120))))
             for i in range(n_pages)]
    views = {spec: [reduce_lib.reduce_page(e, spec) for _, e in pages] for spec in store.view_specs()}
    sha = hashlib.sha256(name.encode() + rng.bytes(8)).hexdigest()
    return store.add_document(name, sha, 1, "ragged", pages, views).doc_id


@pytest.fixture(params=BACKENDS)
def kind(request):
    return request.param


@pytest.fixture
def ragged(kind, tmp_path):
    """An engine over 6 documents of ragged random pages, with one stored view."""
    rng = np.random.default_rng(7)
    store = Store(tmp_path / "ragged.sqlite")
    store.add_view(VIEW, {})
    for d in range(6):
        add_random_document(store, rng, f"doc{d}.pdf", int(rng.integers(3, 12)))
    engine = Engine(Settings(data_dir=tmp_path), encoder=GridEncoder("ragged", DIM), store=store,
                    index=_index(kind, store, tmp_path))
    engine.sync_index()
    yield engine, rng
    engine.index.close()


def _query(rng, q: int = 12) -> QueryEmbedding:
    return QueryEmbedding(vectors=_unit(rng.standard_normal((q, DIM))), tokens=[str(i) for i in range(q)], text="x")


@pytest.mark.parametrize("spec", [FULL_VIEW, VIEW])
def test_rankings_and_scores_equal_the_reference_on_ragged_pages(kind, ragged, spec):
    engine, rng = ragged
    for _ in range(4):
        query = _query(rng)
        assert_matches(engine.search_embedding(query, k=10, view=spec),
                       reference(kind, engine.store, spec, query.vectors), 10)


def test_every_page_is_reachable_and_k_larger_than_the_store(kind, ragged):
    engine, rng = ragged
    query = _query(rng)
    n = len(engine.store.page_ids())
    hits = engine.search_embedding(query, k=n + 5)
    assert sorted(h.page_id for h in hits) == sorted(engine.store.page_ids())
    assert_matches(hits, reference(kind, engine.store, FULL_VIEW, query.vectors), n + 5)


def test_filter_by_document(kind, ragged):
    engine, rng = ragged
    docs = engine.list_documents()
    chosen = [docs[1].name, str(docs[4].id)]  # by name and by id
    wanted = {docs[1].id, docs[4].id}
    for spec in (FULL_VIEW, VIEW):
        query = _query(rng)
        hits = engine.search_embedding(query, k=7, view=spec, docs=chosen)
        assert {h.doc_id for h in hits} <= wanted
        assert_matches(hits, reference(kind, engine.store, spec, query.vectors, wanted), 7)
    with pytest.raises(NotFoundError, match="no-such.pdf"):
        engine.search_embedding(_query(rng), k=3, docs=["no-such.pdf"])


def test_add_and_delete_update_the_index_in_place(kind, ragged):
    engine, rng = ragged
    query = _query(rng)
    engine.search_embedding(query, k=3, view=VIEW)  # both views held before the writes
    doc_id = add_random_document(engine.store, rng, "new.pdf", 5)
    engine.index.add_document(doc_id)
    for spec in (FULL_VIEW, VIEW):
        ref = reference(kind, engine.store, spec, query.vectors)
        assert_matches(engine.search_embedding(query, k=60, view=spec), ref, 60)
        only_new = engine.search_embedding(query, k=10, view=spec, docs=["new.pdf"])
        assert len(only_new) == 5 and {h.doc_id for h in only_new} == {doc_id}
    assert engine.index_status().in_step
    engine.delete_document(doc_id)
    for spec in (FULL_VIEW, VIEW):
        hits = engine.search_embedding(query, k=60, view=spec)
        assert doc_id not in {h.doc_id for h in hits}
        assert_matches(hits, reference(kind, engine.store, spec, query.vectors), 60)
    status = engine.index_status()
    assert status.in_step, status.problem()
    if status.views[0].index_pages is not None:
        assert status.views[0].index_pages == len(engine.store.page_ids())


def test_view_add_and_delete(kind, ragged):
    engine, rng = ragged
    spec = engine.add_view("pool1d:factor=4")
    query = _query(rng)
    assert_matches(engine.search_embedding(query, k=10, view=spec), reference(kind, engine.store, spec, query.vectors), 10)
    assert spec in [v.spec for v in engine.index_status().views]
    engine.delete_view(spec)
    status = engine.index_status()
    assert spec not in [v.spec for v in status.views] and status.in_step, status.problem()
    if isinstance(engine.index, QdrantIndex):
        assert engine.index.collection(spec) not in engine.index._existing()
    else:
        assert spec not in engine.index.loaded_views


def test_a_failing_index_write_keeps_the_store_and_sync_repairs_it(kind, ragged, monkeypatch, pdf_factory):
    engine, rng = ragged
    query = _query(rng)
    engine.search_embedding(query, k=3, view=VIEW)
    pages_before = len(engine.store.page_ids())

    def down(*args, **kwargs):
        raise IndexUnavailableError(f"the index at {engine.index.location} is down (simulated)")

    monkeypatch.setattr(engine.index, "add_document", down)
    pdf = pdf_factory([[(72, 72, "late")], [(72, 300, "arrival")]], name="late.pdf")
    result = engine.add_files([pdf])[0]
    assert result.added and "simulated" in result.index_error
    assert len(engine.store.page_ids()) == pages_before + 2 and engine.store.integrity_ok()
    status = engine.index_status()
    assert [p for p in status.pending if p.startswith("late.pdf")], status
    assert "index sync" in status.problem() and "late.pdf" in engine.index_problem()
    monkeypatch.undo()
    report = engine.sync_index()
    assert report.added_pages >= 2
    assert engine.index_status().in_step and not engine.sync_index().changed  # idempotent
    for spec in (FULL_VIEW, VIEW):
        assert_matches(engine.search_embedding(query, k=60, view=spec),
                       reference(kind, engine.store, spec, query.vectors), 60)


def test_sync_notices_writes_made_by_another_process(kind, ragged, tmp_path):
    """A second store connection stands for another process writing the same file."""
    engine, rng = ragged
    query = _query(rng)
    engine.search_embedding(query, k=3)
    engine.search_embedding(query, k=3, view=VIEW)
    other = Store(engine.store.path)
    gone = engine.list_documents()[0].id
    other.delete_document(gone)
    new = add_random_document(other, rng, "from-elsewhere.pdf", 4)
    assert not engine.index_status().in_step
    report = engine.sync_index()
    assert report.added_pages and report.removed_pages
    assert engine.index_status().in_step
    for spec in (FULL_VIEW, VIEW):
        hits = engine.search_embedding(query, k=100, view=spec)
        assert new in {h.doc_id for h in hits} and gone not in {h.doc_id for h in hits}
        assert_matches(hits, reference(kind, engine.store, spec, query.vectors), 100)
    other.close()


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory, corpus_dir):
    """Real corpus pages (rendered from the team's PDFs) encoded by the deterministic grid encoder."""
    folder = tmp_path_factory.mktemp("corpus-store")
    engine = Engine(Settings(data_dir=folder, dpi=40), encoder=GridEncoder(dim=DIM))
    names = ["dragon-dispatch-newsletter.pdf", "aviation-maintenance-handbook-page.pdf",
             "html5-canvas-cheat-sheet.pdf", "arabic-text-page-ar.pdf"]
    engine.add_files([corpus_dir / "pdfs" / n for n in names])
    engine.add_view(VIEW)
    engine.store.close()
    return folder / "vdr.sqlite"


@pytest.mark.parametrize("spec", [FULL_VIEW, VIEW])
def test_rankings_equal_the_reference_on_real_corpus_pages(kind, corpus_store, tmp_path, spec):
    store = Store(corpus_store)
    engine = Engine(Settings(data_dir=tmp_path), encoder=GridEncoder(dim=DIM), store=store,
                    index=_index(kind, store, tmp_path))
    engine.sync_index()
    for text in ("maintenance handbook", "canvas drawing arc", "dragon newsletter"):
        query = engine.encode_query(text)
        assert_matches(engine.search_embedding(query, k=8, view=spec), reference(kind, store, spec, query.vectors), 8)
    engine.index.close()
    store.close()


def test_an_unreachable_qdrant_fails_in_one_line_naming_the_url(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    add_random_document(store, np.random.default_rng(0), "a.pdf", 2)
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    engine = Engine(Settings(data_dir=tmp_path), encoder=GridEncoder("ragged", DIM), store=store,
                    index=QdrantIndex(store, url=url, timeout=2))
    with pytest.raises(IndexUnavailableError) as error:
        engine.search_embedding(_query(np.random.default_rng(1)), k=3)
    message = str(error.value)
    assert url in message and "\n" not in message and "intact" in message
    assert url in engine.index_problem()
    assert len(store.page_ids()) == 2 and store.integrity_ok()


# -- quantised views (issue 14) ---------------------------------------------------------------------

QUANTISED = ["full@int8", "cluster:factor=4,features=profile@binary", f"{VIEW}@binary", "full@int4", f"{VIEW}@int2"]


def float_view_reference(store: Store, spec: str, query: np.ndarray, doc_ids=None) -> dict[int, float]:
    """page id -> exact MaxSim over the view's float vectors rebuilt from the stored full embeddings."""
    base = reduce_lib.parse_spec(spec).base
    docs = dict(store.page_docs())
    out = {}
    for pid in store.page_ids():
        if doc_ids is not None and docs[pid] not in doc_ids:
            continue
        v = reduce_lib.reduce_page(store.page_embedding(pid), base).all_vectors().astype(np.float64)
        out[pid] = float((np.asarray(query, np.float64) @ v.T).max(axis=1).sum())
    return out


@pytest.mark.parametrize("spec", QUANTISED)
def test_quantised_views_rescored_in_full_give_the_float_views_scores(kind, ragged, spec):
    """Every backend: with rescoring deeper than the store, a quantised view ranks and scores pages
    exactly as its float view. (Qdrant's local mode ignores quantisation and always searches the
    float originals exactly; the memory index scores the codes, then re-scores the candidates.)"""
    engine, rng = ragged
    canonical = engine.add_view(spec)
    n_pages = len(engine.store.page_ids())
    doc_ids = [d.id for d in engine.list_documents()][:3]
    for _ in range(2):
        query = _query(rng)
        ref = float_view_reference(engine.store, canonical, query.vectors)
        assert_matches(engine.search_embedding(query, k=10, view=canonical, rescore=n_pages), ref, 10)
        names = [d.name for d in engine.list_documents() if d.id in doc_ids]
        assert_matches(engine.search_embedding(query, k=5, view=canonical, rescore=n_pages, docs=names),
                       float_view_reference(engine.store, canonical, query.vectors, set(doc_ids)), 5)


def test_qdrant_gets_its_own_quantisation_for_quantised_views(ragged, monkeypatch):
    """Quantised specs create collections with Qdrant's int8 / binary quantisation and float32
    originals on disk. (Local mode accepts and then drops the config, so the request is checked.)"""
    engine, rng = ragged
    if not isinstance(engine.index, QdrantIndex):
        pytest.skip("Qdrant only")
    from qdrant_client import models

    created, searched = {}, []
    client = engine.index.client
    real_create, real_query = client.create_collection, client.query_points

    def create(name, **kw):
        created[name] = kw
        return real_create(name, **kw)

    def query(name, **kw):
        searched.append(kw.get("search_params"))
        return real_query(name, **kw)

    monkeypatch.setattr(client, "create_collection", create)
    monkeypatch.setattr(client, "query_points", query)
    for spec, want in (("full@int8", models.ScalarQuantization), ("full@binary", models.BinaryQuantization),
                       ("full@int4", models.TurboQuantization), ("full@int2", models.TurboQuantization),
                       ("pool1d:factor=2", type(None))):
        canonical = engine.add_view(spec)
        kw = created[engine.index.collection(canonical)]
        assert isinstance(kw["quantization_config"], want)
        if want is models.TurboQuantization:
            bits = models.TurboQuantBitSize.BITS4 if spec.endswith("int4") else models.TurboQuantBitSize.BITS2
            assert kw["quantization_config"].turbo.bits == bits
        params = kw["vectors_config"]["page"]
        assert params.on_disk == (want is not type(None))
        assert params.datatype == (models.Datatype.FLOAT32 if want is not type(None) else models.Datatype.FLOAT16)
    engine.search_embedding(_query(rng), k=5, view="full@binary", rescore=50)
    engine.search_embedding(_query(rng), k=5, view="full@binary", rescore=0)
    engine.search_embedding(_query(rng), k=5, view="pool1d:factor=2")
    assert searched[0].quantization.rescore is True and searched[0].quantization.oversampling == 10.0
    assert searched[1].quantization.rescore is False
    assert searched[2] is None
