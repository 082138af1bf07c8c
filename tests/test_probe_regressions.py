"""The reliability probe's findings (issue 20), one small test each, so they stay fixed.

Every test runs in-process with the fake grid encoder (registered as an encoder name, so the CLI
can load it) and stores made in tmp_path: the suite takes seconds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.fakes import GridEncoder
from vdr_app import cli
from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import ConfigError
from vdr_app.models import registry
from vdr_app.store import Store

MODEL = "fake-grid"


@pytest.fixture(autouse=True)
def _grid_encoder(monkeypatch, tmp_path):
    monkeypatch.setitem(registry._NAMED, MODEL, lambda **kw: GridEncoder(MODEL))
    for name in [n for n in os.environ if n.startswith("VDR_") and n != "VDR_DTYPE"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VDR_DATA_DIR", str(tmp_path / "data"))


def _store(folder: Path, pdfs: list[Path]) -> Path:
    path = folder / "vdr.sqlite"
    engine = Engine(Settings(data_dir=folder, store_path=path, dpi=30, model=MODEL), encoder=GridEncoder(MODEL))
    engine.add_files(pdfs)
    engine.store.close()
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pdfs(pdf_factory):
    return [pdf_factory([[(72, 72 + 40 * i, f"text {i} of {n}")] for i in range(n)], name=f"doc{n}.pdf")
            for n in (1, 2)]


# -- 1. read-only mount -------------------------------------------------------------------------


def test_1_a_store_in_a_read_only_folder_reads_and_refuses_writes_in_one_line(tmp_path, pdfs, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _store(folder, pdfs)
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    path.chmod(stat.S_IRUSR)
    if os.access(folder, os.W_OK):
        # root ignores permissions: make the store see what it sees on a read-only mount (access(2)
        # says EROFS there even for root). SQLite itself could still write, so the check below that
        # no -shm/-wal appeared is what proves the store opened it immutable.
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK and str(p).startswith(
            str(folder)) else real(p, mode, **kw))
    try:
        store = ["--store", str(path), "--model", MODEL]
        for argv in (["list"], ["stats"], ["views"], ["check"], ["search", "text", "-k", "2"],
                     ["backup", str(tmp_path / "copy.sqlite")]):
            code, out, err = _run(capsys, *argv, *store)
            assert code == 0 and not err, (argv, err)
        assert "2 documents" in _run(capsys, "list", *store)[1]
        assert Store(tmp_path / "copy.sqlite").integrity_ok()
        for argv in (["delete", "doc1.pdf"], ["view", "add", "cluster:factor=4"]):
            code, out, err = _run(capsys, *argv, *store)
            assert code == 1 and err.count("\n") == 1 and "is read-only" in err, (argv, err)
        assert sorted(p.name for p in folder.iterdir()) == before  # no -shm, no -wal: opened immutable
    finally:
        folder.chmod(stat.S_IRWXU)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


# -- 2. settings that fail open -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["local", "public-demo", None])
def test_2_logins_outside_shared_mode_are_refused_not_ignored(mode):
    env = {"VDR_AUTH": "ada:secret"} | ({"VDR_MODE": mode} if mode else {})
    with pytest.raises(ConfigError, match="VDR_AUTH is set but VDR_MODE is .*set VDR_MODE=shared") as error:
        Settings.from_env(env)
    assert "\n" not in str(error.value) and "secret" not in str(error.value)
    assert Settings.from_env(env | {"VDR_MODE": "shared"}).auth == (("ada", "secret"),)


# -- 3. public-demo libraries -------------------------------------------------------------------


def _libraries(tmp_path, sample: Path | None = None, **kw):
    from vdr_app.sessions import SessionLibraries

    base = Engine(Settings(data_dir=tmp_path, dpi=30, model=MODEL), encoder=GridEncoder(MODEL), store=Store(":memory:"))
    return SessionLibraries(base, tmp_path / "sessions", sample_store=sample, **kw)


def _session_folders(tmp_path) -> list[Path]:
    return sorted((tmp_path / "sessions").glob("session-*"))


def test_3_visitor_folders_go_at_stop_and_leftovers_are_swept_at_start(tmp_path, pdfs):
    libraries = _libraries(tmp_path)
    for key in "abc":
        libraries.get(key).engine.add_files(pdfs[:1])
    assert len(_session_folders(tmp_path)) == 3
    # A second app on the same folder leaves the running one's libraries alone...
    assert _libraries(tmp_path).swept == 0 and len(_session_folders(tmp_path)) == 3
    # ...and a process that died (its folder locks released, nothing removed) is swept at the next start.
    for library in libraries._libraries.values():
        library.owner.close()
    assert _libraries(tmp_path).swept == 3 and _session_folders(tmp_path) == []
    # A normal stop removes every library.
    stopping = _libraries(tmp_path)
    stopping.get("d").engine.add_files(pdfs[:1])
    stopping.close_all()
    assert _session_folders(tmp_path) == []


def test_3_the_app_stopping_removes_visitor_folders(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from tests.fakes import GridEncoder; "
        "from vdr_app.config import Settings; from vdr_app.engine import Engine; from vdr_app.store import Store; "
        "from vdr_app.sessions import SessionLibraries; root = Path(sys.argv[1]); "
        "base = Engine(Settings(data_dir=root), encoder=GridEncoder(), store=Store(':memory:')); "
        "libraries = SessionLibraries(base, root / 'sessions'); [libraries.get(k) for k in 'abc']; "
        "print(len(list((root / 'sessions').glob('session-*'))))"
    )
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3" and _session_folders(tmp_path) == []


def test_3_a_visitor_library_is_capped_in_pages_and_bytes(tmp_path, pdfs):
    from vdr_app.engine import LibraryQuota
    from vdr_app.errors import PdfTooLargeError

    libraries = _libraries(tmp_path, quota=LibraryQuota(max_pages=2, max_bytes=10**9))
    engine = libraries.get("a").engine
    engine.add_files(pdfs[:1])
    with pytest.raises(PdfTooLargeError, match="bring your library to 3 pages, over the limit of 2 per visitor"):
        engine.add_files(pdfs[1:])
    assert [d.name for d in engine.list_documents()] == ["doc1.pdf"]
    small = _libraries(tmp_path / "b", quota=LibraryQuota(max_pages=100, max_bytes=pdfs[0].stat().st_size + 10))
    small.get("a").engine.add_files(pdfs[:1])
    with pytest.raises(PdfTooLargeError, match="MB of PDFs, over the limit"):
        small.get("a").engine.add_files(pdfs[1:])
    assert Settings.from_env({"VDR_SESSION_MAX_PAGES": "7", "VDR_SESSION_MAX_MB": "2.5"}).session_max_pages == 7
    with pytest.raises(ConfigError, match="VDR_SESSION_MAX_PAGES"):
        Settings.from_env({"VDR_SESSION_MAX_PAGES": "0"})


def test_3_visitors_share_the_sample_read_only_until_they_change_something(tmp_path, pdfs):
    sample = _store(tmp_path / "sample", pdfs[:1])
    digest = sample.read_bytes()
    libraries = _libraries(tmp_path, sample=sample)
    readers = [libraries.get(f"v{i}").engine for i in range(20)]
    for engine in readers:
        assert [h.doc_name for h in engine.search("text", k=3)] == ["doc1.pdf"]
    assert _session_folders(tmp_path) == []  # nobody has a copy: no disk, no second index per visitor
    assert len({id(e.store) for e in readers}) == 1
    writer = libraries.get("v0").engine
    writer.add_files(pdfs[1:])  # the first change makes a private copy
    assert sorted(d.name for d in writer.list_documents()) == ["doc1.pdf", "doc2.pdf"]
    assert [d.name for d in readers[1].list_documents()] == ["doc1.pdf"]
    assert len(_session_folders(tmp_path)) == 1 and sample.read_bytes() == digest
    libraries.end("v0")
    assert _session_folders(tmp_path) == [] and [d.name for d in readers[1].list_documents()] == ["doc1.pdf"]


# -- 4. backup of a damaged store ---------------------------------------------------------------


def _damage(path: Path, table: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)


def test_4_backup_of_a_damaged_store_fails_in_one_line_unless_forced(tmp_path, pdfs, capsys):
    path = _store(tmp_path, pdfs)
    _damage(path, "layouts")
    target = tmp_path / "copy.sqlite"
    code, out, err = _run(capsys, "backup", str(target), "--store", str(path))
    assert code == 1 and not out and err.count("\n") == 1 and "is damaged" in err and "--force" in err
    assert not target.exists() and not list(tmp_path.glob(".copy*"))
    code, out, err = _run(capsys, "backup", str(target), "--store", str(path), "--force")
    assert code == 0 and target.is_file() and "backed up" in out
    good = _store(tmp_path / "good", pdfs[:1])
    assert _run(capsys, "backup", str(tmp_path / "good.sqlite"), "--store", str(good))[0] == 0
    assert Store(tmp_path / "good.sqlite").integrity_ok()


# -- 5. check validates the schema --------------------------------------------------------------


def test_5_check_names_a_missing_table_or_column_and_use_fails_in_one_line(tmp_path, pdfs, capsys):
    import sqlite3

    path = _store(tmp_path, pdfs[:1])
    assert _run(capsys, "check", "--store", str(path))[0] == 0
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE view_pages")
    conn.commit()
    conn.close()
    code, out, err = _run(capsys, "check", "--store", str(path))
    assert code == 1 and "view_pages: table missing" in out and err.count("\n") == 1
    code, out, err = _run(capsys, "view", "add", "cluster:factor=4", "--store", str(path), "--model", MODEL)
    assert code == 1 and err.count("\n") == 1 and "missing part of its schema" in err

    other = _store(tmp_path / "b", pdfs[:1])
    conn = sqlite3.connect(other)
    conn.execute("ALTER TABLE views DROP COLUMN quant")
    conn.commit()
    conn.close()
    code, out, err = _run(capsys, "check", "--store", str(other))
    assert code == 1 and "views: column(s) missing: quant" in out


# -- 6. one line, not a traceback ---------------------------------------------------------------


class _RefusingEncoder(GridEncoder):
    def encode_pages(self, pages, progress=None):
        raise ValueError("absolute aspect ratio must be smaller than 200, got 4800.0")


def test_6_a_page_the_model_refuses_is_one_line_and_no_logged_traceback(tmp_path, pdfs, capsys, caplog, monkeypatch):
    import logging

    monkeypatch.setitem(registry._NAMED, "refusing", lambda **kw: _RefusingEncoder("refusing"))
    with caplog.at_level(logging.WARNING):
        code, out, err = _run(capsys, "add", str(pdfs[0]), "--store", str(tmp_path / "s.sqlite"), "--model", "refusing")
    assert code == 1 and err.count("\n") == 1 and "cannot encode this file's pages (absolute aspect ratio" in err
    assert not [r for r in caplog.records if r.exc_info], "a traceback is logged at WARNING (shown without -v)"


@pytest.mark.parametrize("argv", [["-k", "0"], ["-k", "9" * 400], ["--rescore", "9" * 400], ["--rescore", "-1"]])
def test_6_numbers_are_bounded_before_conversion(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as stop:
        cli.main(["search", "text", *argv, "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "must be a whole number from" in err
    assert len(err) < 200  # the 400 digits are not echoed


def test_6_rescore_given_in_code_is_bounded_too():
    from vdr_app.engine import MAX_RESCORE, check_rescore
    from vdr_app.errors import InvalidQueryError

    assert cli.MAX_RESCORE == MAX_RESCORE
    for bad in (10**400, "9" * 400, float("inf"), -1, 2.5):
        with pytest.raises(InvalidQueryError, match="rescore must be a whole number"):
            check_rescore(bad)
    assert check_rescore("12") == 12


def test_6_an_unexpected_failure_is_one_line_and_v_shows_the_traceback(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(cli, "run", broken)
    code, out, err = _run(capsys, "list")
    assert code == 1
    assert err == "error: unexpected RuntimeError: something nobody foresaw (run again with -v for the traceback)\n"
    code, out, err = _run(capsys, "list", "-v")
    assert code == 1 and "Traceback" in err and err.rstrip().endswith("for the traceback)")


def test_6_app_settings_are_checked_before_launch(tmp_path):
    import socket

    from vdr_app.config import check_before_launch

    good = Settings(data_dir=tmp_path / "data", port=0)
    check_before_launch(good)
    assert (tmp_path / "data").is_dir()
    cases = [
        (dict(host="256.1.1.1"), "VDR_HOST='256.1.1.1' is not an address"),
        (dict(data_dir=Path("/proc/vdr-no/data")), "VDR_DATA_DIR='/proc/vdr-no/data' cannot be created"),
        (dict(mode="public-demo", sample_store=tmp_path / "none.sqlite"), "VDR_SAMPLE_STORE=.* is not a readable file"),
    ]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        cases.append((dict(host="127.0.0.1", port=held.getsockname()[1]), "port .* is in use"))
        for change, message in cases:
            with pytest.raises(ConfigError, match=message) as error:
                check_before_launch(Settings(**(dict(data_dir=tmp_path / "data", port=0) | change)))
            assert "\n" not in str(error.value)


def test_6_a_public_demo_without_its_sample_store_does_not_start(tmp_path):
    from vdr_app.errors import StoreError

    with pytest.raises(StoreError, match="VDR_SAMPLE_STORE=.* does not exist"):
        _libraries(tmp_path, sample=tmp_path / "missing.sqlite")


# -- 7. login throttling in shared mode ---------------------------------------------------------


def test_7_failed_sign_ins_lock_the_user_and_address_out_for_a_growing_while():
    from vdr_app.ui.throttle import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(free_failures=3, first_lock_s=10, max_lock_s=60, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("ada", "1.2.3.4")
    assert throttle.wait_s("ada", "1.2.3.4") == 0
    throttle.failed("ada", "1.2.3.4")
    assert throttle.wait_s("ada", "1.2.3.4") == 10
    assert throttle.wait_s("ada", "5.6.7.8") == 0 and throttle.wait_s("bob", "1.2.3.4") == 0  # others unaffected
    now[0] = 11
    throttle.failed("ada", "1.2.3.4")
    assert throttle.wait_s("ada", "1.2.3.4") == 20  # doubled
    for _ in range(10):
        throttle.failed("ada", "1.2.3.4")
    assert throttle.wait_s("ada", "1.2.3.4") == 60  # capped
    throttle.succeeded("ada", "1.2.3.4")
    assert throttle.wait_s("ada", "1.2.3.4") == 0


def test_7_the_shared_app_refuses_the_right_password_after_a_burst_of_wrong_ones(tmp_path):
    import httpx

    from vdr_app.ui import build_demo, launch_options

    settings = Settings(data_dir=tmp_path / "data", dpi=30, host="127.0.0.1", mode="shared", auth=(("ada", "secret"),))
    demo = build_demo(Engine(settings, encoder=GridEncoder(), store=Store(":memory:")), load_model=False)
    options = launch_options(settings)
    options.pop("server_port")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    try:
        with httpx.Client(base_url=url) as http:
            codes = [http.post("login", data={"username": "ada", "password": f"wrong{i}"}).status_code
                     for i in range(40)]
            assert codes[:4] == [400] * 4 and set(codes[5:]) == {429}
            refused = http.post("login", data={"username": "ada", "password": "secret"})
            assert refused.status_code == 429 and "too many failed sign-ins" in refused.text
            assert http.post("login", data={"username": "bob", "password": "x"}).status_code == 400  # not locked
    finally:
        demo.close()


# -- 8. space given back ------------------------------------------------------------------------


def _engine(path: Path, dim: int = 16) -> Engine:
    return Engine(Settings(data_dir=path.parent, store_path=path, dpi=30, model=MODEL),
                  encoder=GridEncoder(MODEL, dim=dim))


def _sweep(engine: Engine, n: int = 6) -> None:
    for factor in range(2, 2 + n):  # what the Lab does: views computed, evaluated, removed again
        engine.delete_view(engine.add_view(f"pool1d:factor={factor}"))


def test_8_views_removed_by_the_lab_give_their_pages_back(tmp_path, pdfs):
    engine = _engine(tmp_path / "new.sqlite", dim=512)  # views of dozens of pages each
    engine.add_files(pdfs)
    engine.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    start = engine.store.file_bytes()
    page_size = engine.store.db.execute("PRAGMA page_size").fetchone()[0]
    engine.add_view("pool1d:factor=2")
    assert engine.store.db.execute("PRAGMA page_count").fetchone()[0] * page_size > start + 20 * page_size
    engine.delete_view("pool1d:factor=2")
    assert engine.store.reclaimable_bytes() == 0
    _sweep(engine)
    engine.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert engine.store.reclaimable_bytes() == 0
    assert engine.store.file_bytes() <= start * 1.05
    assert engine.stats()["reclaimable_bytes"] == 0


def test_8_an_older_store_is_compacted_and_the_library_says_what_is_reclaimable(tmp_path, pdfs, capsys):
    import sqlite3

    from vdr_app.ui.library import totals_markdown

    path = tmp_path / "old.sqlite"
    engine = _engine(path)
    engine.add_files(pdfs)
    engine.store.close()
    conn = sqlite3.connect(path)  # a store made before incremental vacuum
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")
    conn.close()
    engine = _engine(path)
    _sweep(engine)
    free = engine.store.reclaimable_bytes()
    assert free > 0 and "reclaimable: `python -m vdr_app compact`" in totals_markdown(engine.stats())
    assert "reclaimable with `compact`" in _run(capsys, "stats", "--store", str(path), "--model", MODEL)[1]
    before = engine.store.file_bytes()  # the file and its WAL
    engine.store.close()
    code, out, err = _run(capsys, "compact", "--store", str(path))
    assert code == 0 and "given back" in out, err
    assert Store(path).file_bytes() < before
    engine = _engine(path)
    assert engine.store.reclaimable_bytes() == 0 and [d.name for d in engine.list_documents()] == [p.name for p in pdfs]
    _sweep(engine, 2)  # compacted stores give space back by themselves from now on
    assert engine.store.reclaimable_bytes() == 0 and engine.store.check() == {}


def test_8_a_visitor_copy_of_the_sample_is_compact(tmp_path, pdfs):
    import sqlite3

    sample = _store(tmp_path / "sample", pdfs)
    conn = sqlite3.connect(sample)
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")
    conn.execute("CREATE TABLE padding (b BLOB)")
    conn.execute("INSERT INTO padding VALUES (zeroblob(2000000))")
    conn.commit()
    conn.execute("DROP TABLE padding")  # 2 MB of free pages in the sample
    conn.commit()
    conn.close()
    libraries = _libraries(tmp_path, sample=sample)
    engine = libraries.get("v").engine
    engine.delete_document("doc1.pdf")  # the first change copies the sample
    copy = libraries.get("v").folder / "vdr.sqlite"
    assert copy.stat().st_size < sample.stat().st_size - 1_500_000
    assert [d.name for d in engine.list_documents()] == ["doc2.pdf"]


def test_3_a_visitor_searching_a_new_view_gets_a_private_copy_not_an_error(tmp_path, pdfs):
    sample = _store(tmp_path / "sample", pdfs[:1])
    libraries = _libraries(tmp_path, sample=sample)
    reader, searcher = libraries.get("r").engine, libraries.get("s").engine
    assert searcher.ensure_view("full") == "full" and libraries.get("s").shared  # a read
    assert [h.doc_name for h in searcher.search("text", k=1, view="pool1d:factor=2")] == ["doc1.pdf"]
    assert not libraries.get("s").shared and libraries.get("r").shared
    assert searcher.store.view_specs() == ["pool1d:factor=2"] and reader.store.view_specs() == []
