"""Deployment modes: local (default, 127.0.0.1), shared (login; destructive actions for signed-in
users only) and public-demo (a temporary library per browser session), through the real app."""

from __future__ import annotations

from contextlib import contextmanager

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.store import Store

from .fakes import GridEncoder


@contextmanager
def _app(settings: Settings, store: Store | None = None):
    from vdr_app.ui import build_demo, launch_options

    engine = Engine(settings, encoder=GridEncoder(), store=store)
    demo = build_demo(engine, load_model=False)
    options = launch_options(settings)
    options.pop("server_port")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    try:
        yield url, engine, demo
    finally:
        demo.close()
        if demo.access.libraries is not None:
            demo.access.libraries.close_all()


def _settings(tmp_path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "data", dpi=30, host="127.0.0.1", **kw)


@pytest.fixture
def pdfs(pdf_factory):
    return {name: pdf_factory([[(72, 72, f"{name} text")]], name=f"{name}.pdf",
                              blocks={0: [(60 * i, 80, 100, 100, (1, 0, 0))]})
            for i, name in enumerate(["alice", "bob", "sample"])}


def _docs(client: Client) -> set[str]:
    _, _, hits, *_ = client.predict("text", "full", 50, [], None, api_name="/search")
    return {h["doc_name"] for h in hits}


def test_public_demo_sessions_cannot_see_or_delete_each_others_documents(tmp_path, pdfs):
    sample_path = tmp_path / "sample.sqlite"
    sample = Engine(_settings(tmp_path, store_path=sample_path), encoder=GridEncoder())
    sample.add_files([pdfs["sample"]])
    sample_doc = sample.list_documents()[0].id
    sample.store.close()
    sample_bytes = sample_path.read_bytes()

    settings = _settings(tmp_path, mode="public-demo", sample_store=sample_path, max_sessions=5)
    with _app(settings, store=Store(":memory:")) as (url, engine, demo):
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        alice.predict([handle_file(str(pdfs["alice"]))], api_name="/add_documents")
        bob.predict([handle_file(str(pdfs["bob"]))], api_name="/add_documents")
        assert _docs(alice) == {"alice.pdf", "sample.pdf"}
        assert _docs(bob) == {"bob.pdf", "sample.pdf"}
        libraries = demo.access.libraries
        assert len(libraries) == 2
        bob_library = libraries.get(bob.session_hash)
        bob_doc = next(d.id for d in bob_library.engine.list_documents() if d.name == "bob.pdf")

        # Alice deletes "bob.pdf" by id and by name: it is not in her library, Bob's is untouched.
        with pytest.raises(AppError):
            alice.predict("bob.pdf", api_name="/delete_document")
        assert _docs(bob) == {"bob.pdf", "sample.pdf"}
        # Alice deletes the sample from her library: only her copy goes.
        alice.predict(sample_doc, api_name="/delete_document")
        assert _docs(alice) == {"alice.pdf"}
        assert _docs(bob) == {"bob.pdf", "sample.pdf"} and bob_doc in [d.id for d in bob_library.engine.list_documents()]
        assert engine.list_documents() == []  # nothing reached the app's own store

        # A session that ends takes its library (folder and all) with it.
        folder = libraries.get(alice.session_hash).folder
        assert libraries.end(alice.session_hash) and not folder.exists()
        assert len(libraries) == 1
    assert sample_path.read_bytes() == sample_bytes  # the shared sample was only read


def test_public_demo_libraries_expire_and_are_bounded(tmp_path):
    from vdr_app.sessions import SessionLibraries

    base = Engine(_settings(tmp_path), encoder=GridEncoder(), store=Store(":memory:"))
    libraries = SessionLibraries(base, tmp_path / "sessions", ttl_s=3600, max_libraries=2)
    first = libraries.get("a").folder
    libraries.get("b")
    libraries.get("c")  # a third session: the least recently used ("a") goes
    assert len(libraries) == 2 and not first.exists()
    libraries.ttl_s = 0
    assert libraries.expire() == 2 and len(libraries) == 0
    assert list((tmp_path / "sessions").iterdir()) == []


def test_shared_mode_needs_a_login_for_the_app_and_its_api(tmp_path, pdfs):
    settings = _settings(tmp_path, mode="shared", auth=(("ada", "secret"),))
    with _app(settings) as (url, engine, demo):
        engine.add_files([pdfs["alice"]])
        doc = engine.list_documents()[0].id
        # Without a login, the API is refused before any handler runs.
        response = httpx.post(f"{url}gradio_api/call/delete_document", json={"data": [doc]}, timeout=30)
        assert response.status_code in (401, 403)
        with pytest.raises(Exception):
            Client(url, verbose=False)
        assert [d.id for d in engine.list_documents()] == [doc]
        # Signed in, the same call deletes.
        client = Client(url, auth=("ada", "secret"), verbose=False)
        assert client.predict(doc, api_name="/delete_document")[1]["deleted"]["doc_id"] == doc
        assert engine.list_documents() == []


def test_shared_mode_handlers_refuse_destructive_actions_without_a_user(tmp_path, pdfs):
    """The handlers check again (e.g. for a front door other than Gradio's login)."""
    from types import SimpleNamespace

    from vdr_app.ui import access, library
    from vdr_app.ui.common import PageImages, user_errors
    import gradio as gr

    engine = Engine(_settings(tmp_path), encoder=GridEncoder())
    engine.add_files([pdfs["alice"]])
    shared = access.Access("shared")
    with access.building(shared):
        delete = user_errors(lambda doc: library.delete_document(engine, PageImages(engine), doc))
    anonymous, signed_in = SimpleNamespace(username=None), SimpleNamespace(username="ada")
    with pytest.raises(gr.Error, match="sign in to delete documents"):
        delete("alice.pdf", anonymous)
    assert len(engine.list_documents()) == 1
    assert delete("alice.pdf", signed_in)[0].startswith("Deleted **alice.pdf**")


def test_local_is_the_default_and_listens_on_loopback(tmp_path):
    assert Settings.from_env({}).mode == "local"
    assert Settings.from_env({}).host == "127.0.0.1"  # also in a container: the Dockerfile sets VDR_HOST
    assert Settings.from_env({"VDR_HOST": "0.0.0.0"}).host == "0.0.0.0"
    assert Settings.from_env({"SPACE_ID": "user/space"}).host == "0.0.0.0"
    env = {"VDR_MODE": "shared", "VDR_AUTH": "ada:secret,bob:pw"}
    assert Settings.from_env(env).auth == (("ada", "secret"), ("bob", "pw"))
    with pytest.raises(ValueError, match="VDR_MODE=shared needs logins"):
        Settings.from_env({"VDR_MODE": "shared"})
    with pytest.raises(ValueError, match="VDR_MODE='open' is not valid: must be one of local, shared, public-demo"):
        Settings.from_env({"VDR_MODE": "open"})
    with pytest.raises(ValueError, match="VDR_AUTH must be user:password pairs"):
        Settings.from_env({"VDR_MODE": "shared", "VDR_AUTH": "ada"})


def test_visitors_outside_local_mode_see_no_server_paths(tmp_path):
    from types import SimpleNamespace

    from vdr_app.ui import access
    from vdr_app.ui.common import user_errors
    from vdr_app.errors import StoreError
    import gradio as gr

    message = f"the store {tmp_path}/data/vdr.sqlite is locked: try again"

    def fail():
        raise StoreError(message)

    for mode, shown in (("public-demo", "the store vdr.sqlite is locked: try again"), ("local", message)):
        with access.building(access.Access(mode)):
            handler = user_errors(fail)
        with pytest.raises(gr.Error) as info:
            handler(SimpleNamespace(username=None, session_hash="s"))
        assert info.value.message == shown
    with access.scope(access.Access("public-demo"), None):
        assert access.shown_model("/home/me/checkpoints/tiny") == "tiny"
        assert access.redact("could not load '/srv/models/x': no config") == "could not load 'x': no config"
