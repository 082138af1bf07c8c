"""SQLite store: exact float16 round trip, model binding, transactions, deletes, views, migrations."""

import sqlite3

import numpy as np
import pytest
from PIL import Image

from vdr_app.errors import ModelMismatchError, NotFoundError, StoreError
from vdr_app.store import SCHEMA_VERSION, Store
from vdr_app.types import PageEmbedding, PageImage, Reduction


def _page(seed: int, n: int = 12, m: int = 3, d: int = 8, attention: bool = True):
    rng = np.random.default_rng(seed)
    patches = rng.standard_normal((n, d)).astype(np.float32)
    patches /= np.linalg.norm(patches, axis=1, keepdims=True)
    side = int(np.ceil(np.sqrt(n)))
    boxes = np.array([[c / side, r / side, (c + 1) / side, (r + 1) / side] for r in range(side) for c in range(side)][:n])
    emb = PageEmbedding(
        patches=patches,
        boxes=boxes,
        attention=rng.random(n) if attention else None,
        extra=rng.standard_normal((m, d)),
        model_id="m",
    )
    image = PageImage(Image.new("RGB", (60, 80), (seed * 20 % 255, 100, 100)), page_number=seed + 1)
    return image, emb


def _add(store, sha="a" * 64, n_pages=2, model="m", views=None):
    pages = [_page(i) for i in range(n_pages)]
    return store.add_document("doc.pdf", sha, 1234, model, pages, views)


def test_round_trip_is_exact_to_float16(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    image, emb = _page(0)
    result = store.add_document("doc.pdf", "a" * 64, 10, "m", [(image, emb)])
    (page_id,) = store.page_ids()
    back = Store(tmp_path / "s.sqlite").page_embedding(page_id)
    np.testing.assert_array_equal(back.patches, emb.patches.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(back.extra, emb.extra.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(back.boxes, emb.boxes, atol=1 / 65535)
    np.testing.assert_array_equal(back.cells, emb.cells)
    np.testing.assert_array_equal(back.attention, emb.attention)
    assert result.added and result.n_pages == 1
    assert store.page_image(page_id).size == (60, 80)
    ids, vectors = store.load_vectors()
    assert ids == [page_id] and vectors[0].shape == (12 + 3, 8) and vectors[0].dtype == np.float16


def test_duplicate_add_is_a_noop():
    store = Store()
    first = _add(store)
    second = _add(store)
    assert first.added and not second.added and second.doc_id == first.doc_id
    assert len(store.list_documents()) == 1 and len(store.page_ids()) == 2


def test_refuses_to_mix_models():
    store = Store()
    _add(store, model="model-a")
    with pytest.raises(ModelMismatchError, match="model-a"):
        _add(store, sha="b" * 64, model="model-b")
    assert len(store.list_documents()) == 1


def test_delete_removes_everything_of_a_document():
    store = Store()
    doc_a = _add(store).doc_id
    _add(store, sha="b" * 64)
    store.add_view("v", {pid: Reduction(np.zeros((1, 8)), np.zeros(12), np.zeros((3, 8))) for pid in store.page_ids()})
    store.delete_document(doc_a)
    counts = {t: store.db[t].count for t in ("documents", "pages", "embeddings", "view_pages")}
    assert counts == {"documents": 1, "pages": 2, "embeddings": 2, "view_pages": 2}
    with pytest.raises(NotFoundError):
        store.delete_document(doc_a)


def test_failed_add_leaves_no_trace(monkeypatch):
    store = Store()
    calls = []
    original = Store._insert_page

    def crash_on_second_page(self, doc_id, page, emb):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(self, doc_id, page, emb)

    monkeypatch.setattr(Store, "_insert_page", crash_on_second_page)
    with pytest.raises(RuntimeError):
        _add(store)
    assert store.db["documents"].count == 0 and store.db["pages"].count == 0 and store.model_id is None


def test_views_round_trip_and_need_every_page():
    store = Store()
    _add(store)
    ids = store.page_ids()
    reductions = {
        pid: Reduction(np.eye(8)[:2], np.array([0, 1, -1] * 4), np.ones((3, 8)), {"threshold": 0.5}) for pid in ids
    }
    with pytest.raises(ValueError, match="missing"):
        store.add_view("cluster:factor=9", {ids[0]: reductions[ids[0]]})
    store.add_view("cluster:factor=9", reductions)
    back = store.view_reduction("cluster:factor=9", ids[0])
    np.testing.assert_array_equal(back.vectors, np.eye(8)[:2])
    np.testing.assert_array_equal(back.groups, reductions[ids[0]].groups)
    assert back.info == {"threshold": 0.5}
    _, vectors = store.load_vectors("cluster:factor=9")
    assert [v.shape for v in vectors] == [(5, 8), (5, 8)]  # 2 reduced + 3 extra
    assert list(store.vector_counts("cluster:factor=9")) == [5, 5]
    with pytest.raises(ValueError, match="stored views"):
        _add(store, sha="c" * 64)  # a new document must come with its reductions for every view
    store.delete_view("cluster:factor=9")
    assert store.view_specs() == [] and store.db["view_pages"].count == 0


def test_schema_is_versioned_and_newer_stores_are_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    assert Store(path).schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a vdr_app store .not an SQLite database.; it was left unchanged"):
        Store(path)


def test_resolve_document_by_id_name_and_hash():
    store = Store()
    doc = _add(store, sha="abcdef0123" + "0" * 54).doc_id
    assert store.resolve_document(str(doc)) == doc
    assert store.resolve_document("doc.pdf") == doc
    assert store.resolve_document("abcdef0123") == doc
    with pytest.raises(NotFoundError, match="no document"):
        store.resolve_document("missing.pdf")


def test_explicit_cells_that_boxes_cannot_give_are_kept():
    store = Store()
    image, emb = _page(0, n=4)
    # Two regions of identical box size (e.g. a one-tile colSmol page and its thumbnail) can only be
    # told apart by explicit cells.
    emb = PageEmbedding(patches=emb.patches, boxes=np.tile([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5]], (2, 1)),
                        cells=[[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1]], model_id="m")
    store.add_document("doc.pdf", "a" * 64, 10, "m", [(image, emb)])
    back = store.page_embedding(store.page_ids()[0])
    np.testing.assert_array_equal(back.cells, emb.cells)


def test_page_rows_by_id_follow_the_order_asked_for():
    store = Store()
    _add(store, n_pages=3)
    ids = store.page_ids()
    everything = {r.id: r for r in store.page_rows()}
    asked = [ids[2], ids[0], ids[2]]
    assert store.page_rows(asked) == [everything[i] for i in asked]


def _with_centrality(seed: int, layers: int = 4):
    image, emb = _page(seed)
    rng = np.random.default_rng(100 + seed)
    emb.centrality = rng.random((layers, emb.n_patches)).astype(np.float16).astype(np.float32)
    return image, emb


def test_centrality_round_trips_and_old_pages_have_none(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.add_document("new.pdf", "a" * 64, 10, "m", [_with_centrality(0)])
    store.add_document("old.pdf", "b" * 64, 10, "m", [_page(1)])
    new_id, old_id = store.page_ids()
    back = Store(tmp_path / "s.sqlite").page_embedding(new_id)
    np.testing.assert_array_equal(back.centrality, _with_centrality(0)[1].centrality)  # float16 values: exact
    assert store.page_embedding(old_id).centrality is None
    assert store.pages_without_centrality() == 1 and store.pages_without_centrality(1) == 0
    store.delete_document(1)
    assert store.db["centrality"].count == 0


def test_a_version_2_store_is_upgraded_in_place_and_keeps_its_pages(tmp_path):
    """A store written before centrality (schema 2) opens, gains the table, and its pages say
    they have none (so `sap` asks for a re-encode) while everything else reads as before."""
    from vdr_app.store import MIGRATIONS

    path = tmp_path / "v2.sqlite"
    import sqlite_utils

    db = sqlite_utils.Database(path)
    for step in MIGRATIONS[:2]:
        step(db)
    db.execute("PRAGMA user_version = 2")
    db.conn.commit()
    db.conn.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION == 3
    _add(store)
    assert store.pages_without_centrality() == 2
    assert all(store.page_embedding(i).centrality is None for i in store.page_ids())


def test_replace_embeddings_swaps_pages_and_views_in_one_transaction(monkeypatch):
    store = Store()
    pages = [_page(i) for i in range(2)]
    store.add_document("doc.pdf", "a" * 64, 10, "m", pages)
    ids = store.page_ids()
    red = lambda e: Reduction(e.patches[:2], np.r_[0, 1, -np.ones(e.n_patches - 2)], e.extra)  # noqa: E731
    store.add_view("random:keep=0.5", {i: red(store.page_embedding(i)) for i in ids})
    new = [_with_centrality(i)[1] for i in (5, 6)]
    assert store.replace_embeddings(1, "m", new, lambda spec: [red(e) for e in new]) == ids
    for page_id, emb in zip(ids, new):
        back = store.page_embedding(page_id)
        np.testing.assert_array_equal(back.patches, emb.patches.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(back.centrality, emb.centrality)
        np.testing.assert_array_equal(store.view_reduction("random:keep=0.5", page_id).vectors,
                                      emb.patches[:2].astype(np.float16).astype(np.float32))
    # A failure halfway (the second page's view) leaves the first page as it was.
    before = store.page_embedding(ids[0]).patches.copy()
    again = [_page(i)[1] for i in (7, 8)]

    def failing(spec):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.replace_embeddings(1, "m", again, failing)
    np.testing.assert_array_equal(store.page_embedding(ids[0]).patches, before)
    assert store.pages_without_centrality() == 0
    with pytest.raises(ValueError, match="2 pages"):
        store.replace_embeddings(1, "m", again[:1], lambda spec: [])
    with pytest.raises(ModelMismatchError):
        store.replace_embeddings(1, "other", again, lambda spec: [red(e) for e in again])
