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
    return [pdf_factory([[(72, 72 + 40 * i, f"text {i} of {n}")] for i in range(n)], name=f"doc{n}.pdf") for n in (1, 2)]


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
