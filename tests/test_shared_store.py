"""One store, several writers, and the ways a store file can fail: each failure is one line.

"Another process" is a real subprocess where it matters (CLI-style add/delete/view add against a
running engine) and otherwise a second connection to the same file, which is what SQLite sees.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from vdr_app import cli
from vdr_app.config import Settings
from vdr_app.engine import Engine
from vdr_app.errors import EncodeError, PdfTooLargeError, StoreError
from vdr_app.store import Store
from vdr_app.store.sqlite_errors import ReadOnlyStoreError, StoreBusyError, StoreDamagedError, StoreFullError

from .fakes import GridEncoder

REPO = Path(__file__).resolve().parents[1]


def _engine(path: Path, encoder=None, store=None) -> Engine:
    return Engine(Settings(data_dir=path.parent, store_path=path, dpi=30), encoder=encoder or GridEncoder(), store=store)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))
                                   if not p.name.endswith("-shm"))).hexdigest()


@pytest.fixture
def pdfs(pdf_factory):
    return [pdf_factory([[(72, 72 + 40 * i, f"text {i}")] for i in range(n)], name=f"doc{n}.pdf",
                        blocks={0: [(50 * n, 100, 120, 120, (n % 2, 0, 1 - n % 2))]}) for n in (1, 2, 3)]


# -- other writers --------------------------------------------------------------------------------

_OTHER_PROCESS = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}]
    from tests.fakes import GridEncoder
    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from pathlib import Path
    store = Path({store!r})
    engine = Engine(Settings(data_dir=store.parent, store_path=store, dpi=30), encoder=GridEncoder())
    command, arg = sys.argv[1], sys.argv[2]
    if command == "add":
        print(engine.add_files([arg])[0].doc_id)
    elif command == "delete":
        print(engine.delete_document(arg))
    else:
        print(engine.add_view(arg))
""")


def _other_process(store: Path, command: str, arg: str) -> str:
    script = _OTHER_PROCESS.format(repo=str(REPO), store=str(store))
    done = subprocess.run([sys.executable, "-c", script, command, arg], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_running_engine_sees_adds_deletes_and_views_of_another_process(tmp_path, pdfs):
    path = tmp_path / "shared.sqlite"
    app = _engine(path)
    first = app.add_files(pdfs[:1])[0]
    assert {h.doc_id for h in app.search("text", k=50)} == {first.doc_id}  # index cached now

    added = int(_other_process(path, "add", str(pdfs[2])))
    hits = app.search("text", k=50)
    assert {h.doc_id for h in hits} == {first.doc_id, added} and len(hits) == 1 + 3

    spec = _other_process(path, "view", "random:keep=0.5,seed=0")
    assert {h.doc_id for h in app.search("text", k=50, view=spec)} == {first.doc_id, added}

    _other_process(path, "delete", str(first.doc_id))
    for view in ("full", spec):
        hits = app.search("text", k=50, view=view)  # once a KeyError in Store.page_rows
        assert {h.doc_id for h in hits} == {added} and [h.rank for h in hits] == [1, 2, 3]


def test_a_view_add_racing_a_document_add_includes_its_pages(tmp_path, pdfs):
    path = tmp_path / "race.sqlite"
    viewer, adder = _engine(path), _engine(path, store=Store(path))
    viewer.add_files(pdfs[:1])
    original = viewer.store.add_view

    def add_view_after_an_add(spec, reductions, **kw):  # the reductions were computed before the add
        adder.add_files(pdfs[1:2])
        return original(spec, reductions, **kw)

    viewer.store.add_view = add_view_after_an_add
    spec = viewer.add_view("cluster:factor=4")
    del viewer.store.add_view
    assert len(viewer.store.vector_counts(spec)) == len(viewer.store.page_ids()) == 3
    assert len(viewer.search("text", k=10, view=spec)) == 3


def test_a_document_add_racing_a_view_add_lands_in_the_new_view(tmp_path, pdfs):
    path = tmp_path / "race.sqlite"
    adder, viewer = _engine(path), _engine(path, store=Store(path))
    adder.add_files(pdfs[:1])
    original = adder.store.add_document

    def add_after_a_view(*args, **kw):  # the views were listed before the view add
        viewer.add_view("pool1d:factor=4")
        return original(*args, **kw)

    adder.store.add_document = add_after_a_view
    adder.add_files(pdfs[1:2])
    del adder.store.add_document
    assert len(adder.store.vector_counts("pool1d:factor=4")) == 3


def test_two_adds_at_once_both_land(tmp_path, pdfs):
    path = tmp_path / "two.sqlite"
    _engine(path).add_files(pdfs[:1])
    errors = []

    def add(pdf):
        try:
            _engine(path).add_files([pdf])
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=add, args=(p,)) for p in pdfs[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(Store(path).list_documents()) == 3


# -- failures as one line -------------------------------------------------------------------------


def test_a_write_waits_for_another_writer_then_says_locked(tmp_path, pdfs):
    path = tmp_path / "busy.sqlite"
    _engine(path).add_files(pdfs[:1])
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        engine = _engine(path, store=Store(path, busy_timeout=0.3))
        before = engine.store.list_documents()
        with pytest.raises(StoreBusyError, match="is locked: another process .* kept writing to it for 0.3 s"):
            engine.add_files(pdfs[1:2])
        assert engine.search("text", k=5)  # reads go on
    finally:
        holder.rollback()
        holder.close()
    assert engine.store.list_documents() == before
    engine.add_files(pdfs[1:2])  # and once the other writer is done, the write goes through


def test_disk_full_is_one_line_and_changes_nothing(tmp_path, pdfs):
    path = tmp_path / "full.sqlite"
    engine = _engine(path)
    engine.add_files(pdfs[:1])
    pages = engine.store.db.execute("PRAGMA page_count").fetchone()[0]
    engine.store.db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "disk is full"
    with pytest.raises(StoreFullError, match="is full: nothing was written"):
        engine.add_files(pdfs[2:])
    assert [d.name for d in engine.list_documents()] == ["doc1.pdf"]
    assert engine.search("text", k=5)


def test_read_only_store_reads_but_refuses_writes(tmp_path, pdfs, monkeypatch):
    path = tmp_path / "ro.sqlite"
    writer = _engine(path)
    writer.add_files(pdfs[:1])
    writer.store.close()
    digest = _file_digest(path)
    monkeypatch.setattr("vdr_app.store.core._writable", lambda p: False)  # as on a read-only file or disk
    engine = _engine(path, store=Store(path))
    assert engine.store.read_only
    assert [h.doc_name for h in engine.search("text", k=5)] == ["doc1.pdf"]
    assert engine.views()[0].vectors > 0
    with pytest.raises(ReadOnlyStoreError, match="read-only: searching and browsing work"):
        engine.add_files(pdfs[1:2])
    with pytest.raises(ReadOnlyStoreError):
        engine.delete_document("doc1.pdf")
    engine.store.close()
    assert _file_digest(path) == digest


def _damage_table(path: Path, table: str) -> None:
    store = Store(path)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = store.db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
    size = store.db.execute("PRAGMA page_size").fetchone()[0]
    store.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)


def test_a_damaged_store_is_named_by_check_and_fails_in_one_line(tmp_path, pdfs, capsys):
    path = tmp_path / "damaged.sqlite"
    engine = _engine(path)
    engine.add_files(pdfs[:2])
    engine.store.close()
    _damage_table(path, "layouts")

    assert cli.main(["check", "--store", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("damaged: layouts: ") and "damaged in layouts" in err
    assert "pages" not in out and "embeddings" not in out

    engine = _engine(path)
    with pytest.raises(StoreDamagedError, match=r"is damaged .*python -m vdr_app check --store"):
        engine.explore(engine.store.page_ids()[0], "full")  # reads the layout of a page


def test_check_passes_a_sound_store(tmp_path, pdfs, capsys):
    path = tmp_path / "sound.sqlite"
    _engine(path).add_files(pdfs[:1])
    assert cli.main(["check", "--store", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_a_foreign_sqlite_file_is_never_converted(tmp_path):
    path = tmp_path / "customers.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.commit()
    conn.close()
    digest = _file_digest(path)
    with pytest.raises(StoreError, match="not a vdr_app store .it has the tables customers.; it was left unchanged"):
        Store(path)
    assert _file_digest(path) == digest
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_store_under_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    assert cli.main(["list", "--store", str(blocker / "sub" / "vdr.sqlite")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot put the store at {blocker / 'sub' / 'vdr.sqlite'}: {blocker} is a file, not a folder"


def test_backup_copies_a_store_in_use(tmp_path, pdfs, capsys):
    path = tmp_path / "live.sqlite"
    engine = _engine(path)
    engine.add_files(pdfs[:2])
    engine.add_view("random:keep=0.5,seed=0")
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM pages").fetchone()  # a reader holds a snapshot meanwhile
    try:
        assert cli.main(["backup", str(tmp_path / "copy.sqlite"), "--store", str(path)]) == 0
    finally:
        reader.rollback()
    assert "backed up" in capsys.readouterr().out
    copy = Store(tmp_path / "copy.sqlite")
    assert [d.as_dict() for d in copy.list_documents()] == [d.as_dict() for d in engine.list_documents()]
    assert copy.view_specs() == engine.store.view_specs() and copy.check() == {}
    assert cli.main(["backup", str(tmp_path / "copy.sqlite"), "--store", str(path)]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    huge = tmp_path / "huge.pdf"
    with open(huge, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB by size, nothing on disk
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(PdfTooLargeError, match="huge.pdf: 2147.5 MB exceeds the upload limit of 104.9 MB"):
        _engine(tmp_path / "s.sqlite").add_files([huge])


class _FailsOnSecondFile(GridEncoder):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode_pages(self, pages, progress=None):
        self.calls += 1
        if self.calls == 2:
            raise ValueError("absolute aspect ratio must be smaller than 200, got 4800.0")
        return super().encode_pages(pages, progress)


def test_multi_file_add_is_all_or_none_when_a_later_file_fails_in_the_encoder(tmp_path, pdfs):
    engine = _engine(tmp_path / "s.sqlite", encoder=_FailsOnSecondFile())
    with pytest.raises(EncodeError, match=r"doc2.pdf: the model cannot encode .*aspect ratio.*; nothing was added "
                                          r"\(doc1.pdf taken out again\)"):
        engine.add_files(pdfs[:2])
    assert engine.list_documents() == [] and engine.store.page_ids() == []
    assert engine.search("text", k=5) == []
