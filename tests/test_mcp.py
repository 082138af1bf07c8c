"""The app as an MCP server, driven by the `mcp` client package as an agent would: the tools it
lists (names, descriptions, parameter schemas), adding a PDF, searching, explaining a hit,
deleting; and the same endpoints through gradio_client.

The app runs in-process on a tiny colSmol checkpoint with VDR_MCP on. Set VDR_MCP_TRANSCRIPT to a
file path to keep the session's transcript (tool list with descriptions, calls and results).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from vdr_app import heatmap
from vdr_app.config import Settings
from vdr_app.errors import ConfigError

from .ui_support import BAD_PDF, OTHER_PDF, SHORT_PDF, app_settings, running_app

TOOLS = {"add_pdf", "search_pages", "explain_match", "get_page_image", "list_documents", "remove_document",
         "list_views"}
QUERY = "canvas drawing"


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tmp_path_factory):
    """(url, engine, demo) of an app with the MCP server on."""
    settings = app_settings(tmp_path_factory.mktemp("mcp-data"), str(tiny_checkpoint("colidefics3")), mcp=True)
    with running_app(settings) as (url, engine, demo):
        assert demo.model_status.state == "ready", demo.model_status.error
        yield url, engine, demo


class Transcript:
    """What the agent saw, in order; written to VDR_MCP_TRANSCRIPT when that is set."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def save(self) -> None:
        target = os.environ.get("VDR_MCP_TRANSCRIPT")
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def _mcp(url: str, steps, transport: str = "http"):
    """Run `steps(session)` in one MCP session over streamable HTTP (or SSE, the older transport
    some clients still use); returns what it returns."""

    async def main():
        base = url.rstrip("/") + "/gradio_api/mcp/"
        connect = streamable_http_client(base) if transport == "http" else sse_client(base + "sse")
        async with connect as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await steps(session)

    return asyncio.run(main())


async def _call(session, name: str, arguments: dict, transcript: Transcript | None = None):
    """(is_error, JSON result or error text) of one tool call."""
    result = await session.call_tool(name, arguments)
    assert len(result.content) == 1 and result.content[0].type == "text", result.content
    text = result.content[0].text
    if transcript is not None:
        shown = {k: (v[:48] + f"... ({len(v)} chars)" if isinstance(v, str) and len(v) > 80 else v)
                 for k, v in arguments.items()}
        transcript.add(f"> call {name} {json.dumps(shown)}", f"< {'ERROR ' if result.isError else ''}{text}", "")
    return result.isError, (text if result.isError else json.loads(text))


def _data_uri(path: Path) -> str:
    return "data:application/pdf;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def test_vdr_mcp_is_read_once_with_the_other_settings():
    assert Settings().mcp is False and Settings.from_env({}).mcp is False
    assert Settings.from_env({"VDR_MCP": "1"}).mcp is True and Settings.from_env({"VDR_MCP": "off"}).mcp is False
    # Unset, Gradio's own switch decides (as launch would); VDR_MCP wins over it.
    assert Settings.from_env({"GRADIO_MCP_SERVER": "True"}).mcp is True
    assert Settings.from_env({"GRADIO_MCP_SERVER": "true", "VDR_MCP": "0"}).mcp is False
    with pytest.raises(ConfigError, match="VDR_MCP='maybe' is not valid"):
        Settings.from_env({"VDR_MCP": "maybe"})
    # Gradio's login is a page: an MCP client could list the tools but call none of them.
    with pytest.raises(ConfigError, match="does not work with VDR_MODE=shared"):
        Settings.from_env({"VDR_MCP": "1", "VDR_MODE": "shared", "VDR_AUTH": "ada:secret"})
    with pytest.raises(ConfigError, match="does not work with VDR_MODE=shared"):
        Settings.from_env({"GRADIO_MCP_SERVER": "true", "VDR_MODE": "shared", "VDR_AUTH": "ada:secret"})


def test_tools_are_named_for_what_they_do_with_typed_described_parameters(app):
    url, _, _ = app
    tools = _mcp(url, lambda session: session.list_tools()).tools
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == TOOLS  # no UI handlers (on_run, _use_fallback, explore figures, ...)
    assert {tool.name for tool in _mcp(url, lambda session: session.list_tools(), transport="sse").tools} == TOOLS
    for tool in tools:
        assert len(tool.description) > 40 and "Returns" in tool.description, tool.name
        schema = tool.inputSchema
        for node in _walk(schema):  # no dangling references, no dropdown that accepts nothing
            assert not (isinstance(node, dict) and ("$ref" in node or node.get("enum") == [])), (tool.name, node)
        for name, parameter in schema.get("properties", {}).items():
            assert parameter.get("type") and parameter.get("description"), (tool.name, name, parameter)
    search = by_name["search_pages"].inputSchema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["type"] == "string" and search["properties"]["k"]["type"] == "integer"
    assert search["properties"]["documents"]["type"] == "array"
    assert search["properties"]["documents"]["items"] == {"type": "string"}
    assert by_name["remove_document"].inputSchema["properties"]["document"]["type"] == "string"
    assert by_name["explain_match"].inputSchema["properties"]["page_id"]["type"] == "integer"
    assert by_name["get_page_image"].inputSchema["properties"]["page_id"]["type"] == "integer"
    pdf = by_name["add_pdf"].inputSchema["properties"]["pdf"]
    assert pdf["type"] == "string" and "data URI" in pdf["description"]


def test_an_agent_adds_a_pdf_searches_and_explains_a_hit(app, sample_docs):
    url, engine, _ = app
    transcript = Transcript()

    async def steps(session):
        tools = (await session.list_tools()).tools
        transcript.add(f"MCP server {url}gradio_api/mcp/ : {len(tools)} tools", "")
        for tool in sorted(tools, key=lambda t: t.name):
            transcript.add(f"## {tool.name}", tool.description, "parameters: " + json.dumps(tool.inputSchema), "")
        pdf = sample_docs / "pdfs" / SHORT_PDF
        added = await _call(session, "add_pdf", {"pdf": _data_uri(pdf), "name": SHORT_PDF}, transcript)
        again = await _call(session, "add_pdf", {"pdf": _data_uri(pdf), "name": "copy.pdf"}, transcript)
        listed = await _call(session, "list_documents", {}, transcript)
        found = await _call(session, "search_pages", {"query": QUERY, "k": 3}, transcript)
        top = found[1]["results"][0]
        explained = await _call(session, "explain_match", {"query": QUERY, "page_id": top["page_id"]}, transcript)
        views = await _call(session, "list_views", {}, transcript)
        image = await session.call_tool("get_page_image", {"page_id": top["page_id"]})
        transcript.add(f"> call get_page_image {json.dumps({'page_id': top['page_id']})}",
                       "< " + " + ".join(f"{c.type} ({c.mimeType}, {len(c.data)} base64 chars)" if c.type == "image"
                                         else f"{c.type}: {c.text}" for c in image.content), "")
        return added, again, listed, found, explained, views, image

    added, again, listed, found, explained, views, image = _mcp(url, steps)
    transcript.save()
    assert not any(error for error, _ in (added, again, listed, found, explained, views))

    [doc] = engine.list_documents()
    assert added[1] == dict(doc_id=doc.id, name=SHORT_PDF, pages=2, added=True, pages_without_text=[])
    assert again[1] == dict(added[1], added=False)  # same bytes: not added twice, still under its first name
    assert [(d["doc_id"], d["name"], d["pages"]) for d in listed[1]["documents"]] == [(doc.id, SHORT_PDF, 2)]

    # The ranking is the engine's; each result links the stored page image, served by the app.
    results = found[1]["results"]
    reference = engine.search(QUERY, k=3)
    assert [(r["page_id"], r["score"]) for r in results] == [(h.page_id, round(h.score, 4)) for h in reference]
    assert all(r["document"] == SHORT_PDF and r["doc_id"] == doc.id for r in results)
    for result in results:
        response = httpx.get(result["image_url"], timeout=30)
        assert response.status_code == 200 and response.content == engine.page_jpeg(result["page_id"])

    # Each word's best similarity and where: a direct loop over the page's patches (full view).
    page_id = results[0]["page_id"]
    query = engine.encode_query(QUERY)
    patches = engine.store.page_embedding(page_id)
    similarity = query.vectors @ patches.patches.T
    expected = []
    for word, members in heatmap.query_words(query.tokens, heatmap.content_tokens(query.tokens)):
        best = np.unravel_index(np.argmax(similarity[members]), similarity[members].shape)[1]
        box = [round(float(v), 4) for v in patches.boxes[best]]
        expected.append((word, round(float(similarity[members].max()), 4), box))
    got = explained[1]
    assert (got["page_id"], got["page"], got["document"]) == (page_id, results[0]["page"], SHORT_PDF)
    assert got["view"] == "full"
    assert [(w["word"], w["box"]) for w in got["words"]] == [(word, box) for word, _, box in expected]
    assert [w["similarity"] for w in got["words"]] == pytest.approx([s for _, s, _ in expected], abs=2e-4)
    assert got["image_url"] == results[0]["image_url"]
    assert [v["view"] for v in views[1]["views"]] == ["full"] and views[1]["views"][0]["pages"] == 2
    assert any(s["name"] == "docpruner" for s in views[1]["strategies"])

    # The page itself, inline: what the app stores for that page, at its size.
    assert not image.isError and [c.type for c in image.content] == ["image", "text"]
    picture = Image.open(io.BytesIO(base64.b64decode(image.content[0].data)))
    row = engine.page(page_id)
    assert picture.size == (row.width, row.height) and image.content[0].mimeType == "image/jpeg"
    stored = np.asarray(Image.open(io.BytesIO(engine.page_jpeg(page_id))).convert("L"), dtype=float)
    assert np.abs(np.asarray(picture.convert("L"), dtype=float) - stored).mean() < 3  # re-encoded JPEG
    assert image.content[1].text.startswith("Image URL: http")


def test_bad_input_is_one_message_and_changes_nothing(app, sample_docs):
    url, engine, _ = app
    before = [d.as_dict() for d in engine.list_documents()], engine.store.page_ids()

    async def steps(session):
        return [
            await _call(session, "add_pdf", {"pdf": _data_uri(sample_docs / "bad" / BAD_PDF)}),
            await _call(session, "add_pdf", {"pdf": "data:application/pdf;base64," + base64.b64encode(b"hi").decode()}),
            await _call(session, "add_pdf", {"pdf": "/etc/passwd"}),  # a server path: not a URL
            await _call(session, "add_pdf", {"pdf": "http://127.0.0.1:9/a.pdf"}),  # Gradio fetches public URLs only
            await _call(session, "search_pages", {"query": "   "}),
            await _call(session, "search_pages", {"query": QUERY, "k": 0}),
            await _call(session, "search_pages", {"query": QUERY, "documents": ["no-such.pdf"]}),
            await _call(session, "search_pages", {"query": QUERY, "view": "nonsense:keep=2"}),
            await _call(session, "explain_match", {"query": QUERY, "page_id": 999999}),
            await _call(session, "remove_document", {"document": "no-such.pdf"}),
            await _call(session, "get_page_image", {"page_id": 999999}),
        ]

    outcomes = _mcp(url, steps)
    for index, (is_error, text) in enumerate(outcomes):
        assert is_error, text
        assert isinstance(text, str) and text.strip() and "Traceback" not in text
        if index != 3:  # Gradio refuses a private URL itself, with its generic message
            assert "upstream Gradio app" not in text, text
    assert "damaged" in outcomes[0][1] and "not a PDF" in outcomes[1][1] and "query is empty" in outcomes[4][1]
    assert "no-such.pdf" in outcomes[6][1] and "no-such.pdf" in outcomes[9][1] and "999999" in outcomes[10][1]
    assert ([d.as_dict() for d in engine.list_documents()], engine.store.page_ids()) == before


def test_remove_by_name_through_mcp_and_the_same_api_through_gradio_client(app, sample_docs):
    url, engine, _ = app
    client = Client(url, verbose=False)
    documented = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(documented) == {f"/{name}" for name in TOOLS}  # the API page shows the agent API only
    added = json.loads(client.predict(handle_file(str(sample_docs / "pdfs" / OTHER_PDF)), api_name="/add_pdf"))
    assert added["added"] and added["pages"] == 1
    hits = json.loads(client.predict(QUERY, 10, "full", [OTHER_PDF], api_name="/search_pages"))["results"]
    assert hits and {h["doc_id"] for h in hits} == {added["doc_id"]}
    row = engine.page(hits[0]["page_id"])
    assert Image.open(client.predict(row.id, api_name="/get_page_image")).size == (row.width, row.height)
    kept = [d.id for d in engine.list_documents() if d.id != added["doc_id"]]

    async def steps(session):
        return await _call(session, "remove_document", {"document": OTHER_PDF})

    is_error, deleted = _mcp(url, steps)
    assert not is_error and deleted == dict(deleted=dict(doc_id=added["doc_id"], name=OTHER_PDF, pages=1))
    assert [d.id for d in engine.list_documents()] == kept


def test_public_demo_agents_work_in_a_library_of_their_own(tiny_checkpoint, tmp_path, sample_docs):
    """In public-demo mode the MCP server's calls share one session library (Gradio's MCP server
    calls the app as one client): what an agent adds is not in a visitor's library, nor in the
    app's own store."""
    settings = app_settings(tmp_path, str(tiny_checkpoint("colidefics3")), mcp=True, mode="public-demo")
    with running_app(settings) as (url, engine, demo):
        async def steps(session):
            added = await _call(session, "add_pdf", {"pdf": _data_uri(sample_docs / "pdfs" / SHORT_PDF),
                                                     "name": SHORT_PDF})
            listed = await _call(session, "list_documents", {})
            return added, listed

        (add_error, added), (_, listed) = _mcp(url, steps)
        assert not add_error and added["added"]
        assert [d["name"] for d in listed["documents"]] == [SHORT_PDF]
        visitor = Client(url, verbose=False)
        assert json.loads(visitor.predict(api_name="/list_documents")) == {"documents": []}
        assert engine.list_documents() == []
