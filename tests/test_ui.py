"""The web app in process, driven through gradio_client as an API user would: a tiny colSmol
checkpoint (real from_pretrained path, colSmol's tiles + global thumbnail geometry), a temp data
folder, PDFs made in code (tests/documents.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from vdr_app.ui import _banner
from vdr_app.ui.common import spec_text, strategy_defaults

from .ui_support import BAD_PDF, OTHER_PDF, SHORT_PDF, THIRD_PDF, app_settings, running_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tmp_path_factory):
    """(client, engine, demo) of an app on a tiny colSmol checkpoint, model loaded."""
    settings = app_settings(tmp_path_factory.mktemp("ui-data"), str(tiny_checkpoint("colidefics3")))
    with running_app(settings) as (url, engine, demo):
        assert demo.model_status.state == "ready", demo.model_status.error
        yield Client(url, verbose=False), engine, demo


@pytest.fixture(scope="module")
def indexed(app, sample_docs):
    """The app with SHORT_PDF uploaded through the API; returns the upload's status text."""
    client = app[0]
    status, result, files = client.predict([handle_file(str(sample_docs / "pdfs" / SHORT_PDF))], api_name="/add_documents")
    assert files is None  # the upload box is cleared once the files are indexed
    return status, result


def _array(value) -> np.ndarray:
    """A plotly JSON array: a nested list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(x) for x in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.array(value, dtype=float)


def _store_state(engine):
    return [d.as_dict() for d in engine.list_documents()], engine.store.page_ids(), engine.store.view_specs()


def test_every_event_has_an_api_name(app):
    """gradio_client can reach every event by name; the documented ones (the API page, and the MCP
    tools when that server is on) are the agent API of vdr_app/ui/api.py, not the UI's handlers."""
    client, _, demo = app
    names = [dep.get("api_name") for dep in demo.config["dependencies"]]
    assert all(isinstance(n, str) and n for n in names), names
    documented = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(documented) == {"/add_pdf", "/search_pages", "/explain_match", "/get_page_image", "/list_documents",
                               "/remove_document", "/list_views"}
    for endpoint in ("add_documents", "delete_document", "explore", "search", "explain", "use_fallback", "lab_run"):
        assert endpoint in names  # still callable by name (undocumented), as the tests below do


def test_upload_indexes_every_page(app, indexed, sample_docs):
    client, engine, _ = app
    docs = engine.list_documents()
    assert [d.name for d in docs] == [SHORT_PDF]
    assert docs[0].n_pages == 2
    status, result = indexed
    assert f"**{SHORT_PDF}**: 2 pages indexed" in status
    assert result == dict(documents=[dict(file=SHORT_PDF, doc_id=docs[0].id, pages=2, added=True)], skipped=[],
                          pages_indexed=2)
    assert len(engine.pages(docs[0].id)) == 2
    # The same bytes again: skipped, and said why.
    _, again, _ = client.predict([handle_file(str(sample_docs / "pdfs" / SHORT_PDF))], api_name="/add_documents")
    assert again["pages_indexed"] == 0
    assert again["skipped"] == [dict(file=SHORT_PDF, reason=f"already in the library (document {docs[0].id})")]


def test_every_endpoint_is_described_with_named_outputs(app):
    """The API page: each documented endpoint has its own description (not "partial(...)") and
    outputs not named "value_12" (parameter descriptions: tests/test_mcp.py)."""
    client = app[0]
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name, info in endpoints.items():
        assert info["description"] and "partial" not in info["description"], name
        labels = [r["label"] for r in info["returns"]]
        assert not any(label.startswith("value_") for label in labels), (name, labels)


def test_explore_reports_what_each_strategy_keeps(app, indexed):
    """Pruning and merging report different counts, each matching its own rule, without re-encoding."""
    client, engine, _ = app
    page_id = engine.pages()[0].id
    encoded = engine.encoder.pages_encoded if hasattr(engine.encoder, "pages_encoded") else None
    embedding = engine.store.page_embedding(page_id)
    n, m, d = embedding.n_patches, len(embedding.extra), embedding.dim

    _, _, pruned = client.predict(page_id, "docpruner:k=0.5", api_name="/explore")
    _, text, merged = client.predict(page_id, "cluster:factor=9", api_name="/explore")

    threshold = pruned["info"]["threshold"]
    assert pruned["kind"] == "pruning" and merged["kind"] == "merging"
    assert pruned["patches_before"] == merged["patches_before"] == n == 320  # 2x2 tiles + thumbnail
    assert pruned["patches_after"] == int((embedding.attention > threshold).sum())
    assert merged["patches_after"] == n // 9
    assert pruned["patches_after"] != merged["patches_after"]
    for report in (pruned, merged):
        assert report["vectors_after"] == report["patches_after"] + m
        assert report["bytes_before"] == (n + m) * d * 2
        assert report["bytes_after"] == report["vectors_after"] * d * 2
        assert report["ratio"] == pytest.approx(report["bytes_after"] / report["bytes_before"], rel=1e-5)
    assert f"{n + m} → {merged['vectors_after']}" in text
    assert f"({n} → {merged['patches_after']} image patches" in text  # a visual model's vectors
    assert "global-thumbnail" in text  # colSmol's thumbnail tokens are said to be drawn apart
    if encoded is not None:
        assert engine.encoder.pages_encoded == encoded


def test_explore_words_follow_the_encoder():
    """A text-layout page is summarised in text cells and [CLS] attention, a visual one in image
    patches and final-token attention."""
    from types import SimpleNamespace

    from vdr_app.ui.explore import attention_label, summary

    def exploration(info):
        embedding = SimpleNamespace(n_patches=4, extra=np.zeros((1, 8)), cells=np.zeros((4, 3), int),
                                    attention=np.full(4, 0.25), info=info)
        reduction = SimpleNamespace(vectors=np.zeros((2, 8)), groups=np.array([0, 0, 1, -1]), info={})
        page = SimpleNamespace(id=1, doc_name="a.pdf", page_number=1, info={})
        return SimpleNamespace(embedding=embedding, reduction=reduction, page=page, spec="docpruner:k=0",
                               kind="pruning", full_vectors=5, view_vectors=3, full_bytes=80, view_bytes=48,
                               quant=None, quant_cosine=None)

    text_page, visual_page = exploration({"text_source": "text layer"}), exploration({})
    assert "(4 → 2 text cells" in summary(text_page)[0] and "[CLS]" in attention_label(text_page)
    assert "(4 → 2 image patches" in summary(visual_page)[0]
    assert attention_label(visual_page) == "final-token attention to each patch"


def test_explore_figure_places_every_patch(app, indexed):
    """The plot carries the page image and one heatmap grid per region and layer (tiles: 16x16,
    thumbnail: 8x8), with pruned cells exactly where the reduction pruned."""
    import json

    client, engine, _ = app
    page_id = engine.pages()[0].id
    plot, _, report = client.predict(page_id, "docpruner:k=0.5", api_name="/explore")
    figure = json.loads(plot["plot"])
    images = [t for t in figure["data"] if t["type"] == "image"]
    heatmaps = [t for t in figure["data"] if t["type"] == "heatmap"]
    assert len(images) == 6  # attention, centrality and kept/pruned over the page; three small thumbnail panels
    shapes = sorted({_array(t["z"]).shape for t in heatmaps})
    assert shapes == [(8, 8), (16, 16)]
    pruned_layers = [t for t in heatmaps if t.get("name") == "pruned"]
    drawn = sum(int(np.isfinite(_array(t["z"])).sum()) for t in pruned_layers)
    assert drawn == report["pruned"] == report["patches_before"] - report["patches_after"]


def test_search_ranks_pages_like_the_engine(app, indexed):
    client, engine, _ = app
    gallery, comparison, hits, *_ = client.predict("canvas drawing", "full", 5, [], None, api_name="/search")
    expected = engine.search("canvas drawing", k=5)
    assert [h["page_id"] for h in hits] == [h.page_id for h in expected]
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    assert len(gallery) == len(hits) == 2
    assert "full index" in comparison and "Score = MaxSim" in comparison
    for item, hit in zip(gallery, hits):  # "document · p. N · score"
        assert item["caption"].endswith(f" · p. {hit['page_number']} · {hit['score']:.2f}")
        assert item["caption"].startswith(Path(SHORT_PDF).stem[:10])
        assert f"| {hit['rank']} | {hit['doc_name']} | {hit['page_number']} |" in comparison


def test_search_over_a_view_compares_with_the_full_index(app, indexed):
    client, engine, _ = app
    _, comparison, hits, *_ = client.predict("canvas drawing", "cluster:factor=9", 5, [], None, api_name="/search")
    reference = engine.compare("canvas drawing", k=5, view="cluster:factor=9")
    assert [h["page_id"] for h in hits] == [h.page_id for h in reference.view]
    assert f"overlap of the top {len(reference.full)} = **{reference.overlap:.0%}**" in comparison
    assert "| view rank | page | score | full rank | moved |" in comparison


def test_search_over_a_quantised_view_takes_the_rescoring_depth(app, indexed):
    client, engine, _ = app
    for rescore in (0, 100):
        _, comparison, hits, *_ = client.predict("canvas drawing", "full@binary", 5, [], rescore, api_name="/search")
        want = engine.search("canvas drawing", k=5, view="full@binary", rescore=rescore)
        assert [(h["page_id"], round(h["score"], 4)) for h in hits] == [(h.page_id, round(h.score, 4)) for h in want]
        assert "full@binary" in comparison
    # rescored: the float view's scores (the full index serves bfloat16, within its rounding of them)
    exact = engine.search("canvas drawing", k=5, view="full")
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in exact], rel=4e-3)
    with pytest.raises(Exception, match="rescore|less than minimum"):  # the box itself refuses it, or the engine
        client.predict("canvas drawing", "full@binary", 5, [], -1, api_name="/search")


def test_explore_shows_the_quantisation_error_of_a_quantised_view(app, indexed):
    client, engine, _ = app
    page_id = engine.pages()[0].id
    plot, summary, details = client.predict(page_id, "cluster:factor=4@binary", api_name="/explore")
    assert details["precision"] == "binary" and 0 < details["quant_cosine_mean"] < 1
    assert details["bytes_after"] == details["vectors_after"] * -(-engine.store.dim // 8)
    assert "binary error per patch" in json.dumps(plot) and "binary: cos with the float vectors" in summary
    _, _, details = client.predict(page_id, "cluster:factor=4", api_name="/explore")
    assert details["precision"] == "float16" and details["quant_cosine_mean"] is None


def test_explain_maps_a_token_back_through_the_view(app, indexed):
    """For a pruned view, the chosen token's map is NaN exactly on pruned patches and equals the
    full page's map on patches the view kept as they were."""
    import json

    client, engine, _ = app
    page_id = engine.pages()[0].id
    spec = "docpruner:k=0.5"
    plot, tokens, info = client.predict("canvas drawing", page_id, spec, None, api_name="/explain")
    assert tokens["choices"] and tokens["value"] in [c[1] for c in tokens["choices"]]
    token = tokens["choices"][-1][1]
    _, chosen, _ = client.predict("canvas drawing", page_id, spec, token, api_name="/explain")
    assert chosen["value"] == token

    explanation = engine.explain("canvas drawing", page_id, spec)
    groups = engine.explore(page_id, spec).reduction.groups
    full = engine.explain("canvas drawing", page_id, "full").maps
    assert np.isnan(explanation.maps[:, groups < 0]).all()
    np.testing.assert_allclose(explanation.maps[:, groups >= 0], full[:, groups >= 0], rtol=1e-5, atol=1e-6)
    assert "pruned in this view" in info
    assert json.loads(plot["plot"])["data"]


def test_bad_pdf_and_empty_query_give_messages_and_change_nothing(app, indexed, sample_docs, tmp_path):
    from gradio_client.exceptions import AppError

    client, engine, _ = app
    before = _store_state(engine)
    not_a_pdf = tmp_path / "notes.pdf"
    not_a_pdf.write_text("only text, not a PDF")
    status, result, _ = client.predict(
        [handle_file(str(sample_docs / "pdfs" / OTHER_PDF)), handle_file(str(sample_docs / "bad" / BAD_PDF)),
         handle_file(str(not_a_pdf))], api_name="/add_documents")
    assert status.startswith("**Nothing was indexed:** 2 of 3 files cannot be read")
    assert [s["file"] for s in result["skipped"]] == [BAD_PDF, "notes.pdf"] and result["documents"] == []
    assert f"- **{BAD_PDF}**" in status and "- **notes.pdf**" in status
    with pytest.raises(AppError, match="query is empty"):
        client.predict("   ", "full", 5, [], None, api_name="/search")
    assert _store_state(engine) == before


def test_searches_run_while_a_document_is_indexed(app, indexed, sample_docs):
    """Ten searches at once all succeed while an upload is inside the encoder (held there until
    they are done, so the overlap is certain)."""
    client, engine, _ = app
    encoder = engine.encoder
    original = encoder.encode_pages
    inside, release = threading.Event(), threading.Event()

    def held(pages, progress=None):
        inside.set()
        release.wait(120)
        return original(pages, progress)

    encoder.encode_pages = held
    upload = None
    try:
        upload = client.submit([handle_file(str(sample_docs / "pdfs" / THIRD_PDF))], api_name="/add_documents")
        assert inside.wait(60), "the upload never reached the encoder"
        jobs = [client.submit(f"canvas query {i}", "full", 3, [], None, api_name="/search") for i in range(10)]
        results = [job.result(timeout=120) for job in jobs]
        assert not release.is_set()
        for _, _, hits, *_ in results:
            assert [h["rank"] for h in hits] == [1, 2]
    finally:
        release.set()
        if upload is not None:
            upload.result(timeout=120)
        del encoder.encode_pages
    assert THIRD_PDF in [d.name for d in engine.list_documents()]


def test_fallback_is_refused_while_the_model_is_healthy(app):
    """/use_fallback would switch every visitor to the text-layout encoder: only after a failed load."""
    from gradio_client.exceptions import AppError

    client, engine, demo = app
    model = engine.settings.model
    with pytest.raises(AppError, match="only after the configured model could not be loaded"):
        client.predict(api_name="/use_fallback")
    assert engine.settings.model == model and demo.model_status.state == "ready"
    assert engine.encoder.kind == "visual"


def test_delete_removes_only_that_document(app, indexed, sample_docs):
    client, engine, _ = app
    client.predict([handle_file(str(sample_docs / "pdfs" / OTHER_PDF))], api_name="/add_documents")
    doc = next(d for d in engine.list_documents() if d.name == OTHER_PDF)
    pages = {p.id for p in engine.pages(doc.id)}
    status, result, files = client.predict(doc.id, api_name="/delete_document")
    assert status == f"Deleted **{OTHER_PDF}** (document {doc.id}, 1 page)."
    assert result == dict(deleted=dict(doc_id=doc.id, name=OTHER_PDF, pages=1)) and files is None
    assert OTHER_PDF not in [d.name for d in engine.list_documents()]
    assert SHORT_PDF in [d.name for d in engine.list_documents()]
    assert not pages & set(engine.store.page_ids())
    _, _, hits, *_ = client.predict("canvas drawing", "full", 50, [], None, api_name="/search")
    assert not pages & {h["page_id"] for h in hits}


def test_a_stored_view_can_be_deleted_from_the_library(app, indexed):
    client, engine, _ = app
    client.predict("canvas drawing", "pool2d:factor=4", 3, [], None, api_name="/search")  # stores the view
    assert "pool2d:factor=4" in engine.store.view_specs()
    status = client.predict("pool2d:factor=4", api_name="/delete_view")
    assert status == "Deleted view `pool2d:factor=4`."
    assert "pool2d:factor=4" not in engine.store.view_specs()
    assert engine.store.db["view_pages"].count == sum(len(engine.store.vector_counts(v)) for v in engine.store.view_specs())


def test_unloadable_model_keeps_the_app_up_and_offers_the_fallback(tmp_path, sample_docs):
    """A checkpoint that cannot load: the page says so with what to do, uploads fail with that
    message, and the text-layout fallback can be switched on."""
    from gradio_client.exceptions import AppError

    settings = app_settings(tmp_path / "data", str(tmp_path / "no-such-checkpoint"), max_upload_mb=0.001)
    with running_app(settings) as (url, engine, demo):
        assert demo.model_status.state == "failed"
        client = Client(url, verbose=False)
        banner = client.predict(api_name="/model_status")[0]
        assert "could not be loaded" in banner and "To fix" in banner and "Retry" in banner
        assert "text-layout-minilm" in banner and "not by how they look" in banner
        assert "huggingface-cli" not in banner
        assert _banner(demo.model_status)[3]["visible"] is True  # the retry button
        assert _banner(demo.model_status)[1]["visible"] is True  # the "continue with" button
        # A few KB against a 1 KB limit: gradio_client refuses before sending (the page does the same).
        with pytest.raises((AppError, ValueError), match="maximum file size"):
            client.predict([handle_file(str(sample_docs / "pdfs" / SHORT_PDF))], api_name="/add_documents")
        assert engine.list_documents() == []

        client.predict(api_name="/use_fallback")
        assert demo.model_status.wait(300) == "ready", demo.model_status.error
        banner = client.predict(api_name="/model_status")[0]
        assert "text-layout" in banner and "not the page image" in banner
        assert engine.encoder.kind == "text-layout"


def test_view_controls_build_specs():
    strategies = [
        dict(name="random", kinds=["pruning"], params=[dict(name="keep", type="ratio", default=0.5, default_factor=2.0),
                                                      dict(name="seed", type="int", default=0)]),
        dict(name="cluster", kinds=["merging"], params=[dict(name="keep", type="ratio", default=1 / 9,
                                                             default_factor=9.0)]),
        dict(name="docpruner", kinds=["pruning"], params=[dict(name="k", type="float", default=-0.25)]),
    ]
    assert spec_text(strategies, "random", 0.3, 9, 0.0) == "random:keep=0.3"
    assert spec_text(strategies, "cluster", 0.3, 4, 0.0) == "cluster:factor=4"
    assert spec_text(strategies, "docpruner", 0.3, 4, -0.5) == "docpruner:k=-0.5"
    assert spec_text(strategies, "full", 0.3, 4, -0.5) == "full"
    keep, factor, k, spec = strategy_defaults(strategies, "cluster")
    assert (keep["visible"], factor["visible"], k["visible"]) == (False, True, False)
    assert factor["value"] == 9 and spec == "cluster:factor=9"


def test_importing_app_is_cheap():
    """app.py imports neither gradio nor torch until main() runs (Spaces imports it to start)."""
    code = "import sys, app; print(sorted(m for m in ('gradio', 'torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_search_filters_by_document(app, indexed, sample_docs):
    """The Search tab's document filter is the /search API's fourth parameter (ids; empty: all)."""
    client, engine, _ = app
    if len(engine.list_documents()) < 2:
        client.predict([handle_file(str(sample_docs / "pdfs" / OTHER_PDF))], api_name="/add_documents")
    docs = engine.list_documents()
    chosen = docs[-1].id
    _, _, hits, *_ = client.predict("canvas drawing", "full", 10, [chosen], None, api_name="/search")
    expected = engine.search("canvas drawing", k=10, docs=[chosen])
    assert hits and {h["doc_id"] for h in hits} == {chosen}
    assert [h["page_id"] for h in hits] == [h.page_id for h in expected]
    _, _, everything, *_ = client.predict("canvas drawing", "full", 10, [], None, api_name="/search")
    assert {h["doc_id"] for h in everything} == {d.id for d in docs}


def test_viewer_shows_the_stored_page_at_full_resolution(app, indexed):
    """The page viewer sends the store's own JPEG (not a thumbnail), titled with document and page."""
    import io
    import re

    import gradio as gr
    from PIL import Image

    from vdr_app.ui import viewer

    engine = app[1]
    row = engine.pages()[-1]
    markup = viewer.open_page(engine, row.id)
    data = base64.b64decode(re.search(r'src="data:image/jpeg;base64,([^"]+)"', markup).group(1))
    assert data == engine.store.page_jpeg(row.id)
    assert Image.open(io.BytesIO(data)).size == (row.width, row.height)
    assert f"{row.doc_name} · p. {row.page_number}" in markup
    assert 'data-action="close"' in markup and 'data-action="in"' in markup
    with pytest.raises(gr.Error, match="pick a document and a page"):
        viewer.open_page(engine, None)


def test_reencode_button_gives_old_pages_their_centrality(app, indexed, sample_docs):
    """A library indexed before centrality was captured: `sap` refuses, Re-encode swaps the
    document's embeddings in place (same page ids), a file not in the library is named, not added."""
    client, engine, _ = app
    doc_id = next(d.id for d in engine.list_documents() if d.name == SHORT_PDF)
    documents, page_ids = [d.name for d in engine.list_documents()], engine.store.page_ids()
    page_ids_of_doc = [p.id for p in engine.pages(doc_id)]
    with engine.store._write():
        engine.store.db.execute("DELETE FROM centrality WHERE page_id IN (SELECT id FROM pages WHERE doc_id = ?)", [doc_id])
    assert engine.store.pages_without_centrality(doc_id) == 2
    with pytest.raises(Exception, match="(?i)re-encode"):
        client.predict(page_ids_of_doc[0], "sap:keep=0.1", api_name="/explore")
    status, result, files = client.predict(
        [handle_file(str(sample_docs / "pdfs" / SHORT_PDF)), handle_file(str(sample_docs / "pdfs" / OTHER_PDF))],
        api_name="/reencode_documents")
    assert result["documents"] == [dict(file=SHORT_PDF, doc_id=doc_id, pages=2)]
    assert [s["file"] for s in result["skipped"]] == [OTHER_PDF] and "add it instead" in status
    assert engine.store.page_ids() == page_ids and engine.store.pages_without_centrality(doc_id) == 0
    assert [d.name for d in engine.list_documents()] == documents  # nothing added
    _, _, details = client.predict(page_ids_of_doc[0], "sap:keep=0.1", api_name="/explore")
    assert details["info"]["layers"] and details["vectors_after"] < details["vectors_before"]
