"""Shared fixtures. Runs before any test module imports transformers or colpali_engine."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from vdr_app.torchvision_compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

REPO = Path(__file__).resolve().parents[1]

# The tests hold encoders to exact float32 references (eager attention, one page at a time), and
# CI machines differ in CPU flags: with "auto" a CPU with native bfloat16 would run the models in
# bfloat16. float32 everywhere makes the suite the same on every machine; the bfloat16 path has
# its own tests, which ask for it by name. The variable reaches subprocesses (CLI, app); the
# fixture below covers encoders loaded in-process with dtype "auto".
os.environ.setdefault("VDR_DTYPE", "float32")


@pytest.fixture(autouse=True, scope="session")
def _no_native_bfloat16():
    from vdr_app.models import resources

    real = resources.cpu_flags
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resources, "cpu_flags", lambda: real() - {"avx512_bf16", "amx_bf16"})
        yield


def _corpus_dir() -> Path:
    env = os.environ.get("VDR_CORPUS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The team's real-document corpus (pdfs/ and bad/), outside the repo: for the tests that are
    about real documents (labels, OCR of real scans, retrieval on real pages).

    Where it is absent (a fresh clone) those tests are skipped with the reason; with
    VDR_REQUIRE_CORPUS=1 (CI sets it) its absence is a failure, so CI always runs them.
    """
    path = _corpus_dir()
    if not (path / "pdfs").is_dir():
        message = (f"real-document corpus not found at {path} (it is not redistributed with the repo; "
                   "set VDR_CORPUS_DIR to a folder holding pdfs/ and bad/)")
        if os.environ.get("VDR_REQUIRE_CORPUS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sample_docs(tmp_path_factory) -> Path:
    """PDFs made in code, laid out like the corpus (pdfs/ and bad/): see tests/documents.py."""
    from tests.documents import write_sample_documents

    return write_sample_documents(tmp_path_factory.mktemp("sample-docs"))


def make_pdf(path: Path, pages: list[list[tuple[float, float, str]]], size=(595, 842), blocks=None) -> Path:
    """Draw a PDF: for each page, (x, y, text) lines in points from the top-left; optional filled
    rectangles per page as (x, y, w, h, (r, g, b)) in points from the top-left."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=size)
    for index, lines in enumerate(pages):
        for x, y, text in lines:
            c.setFont("Helvetica", 14)
            c.drawString(x, size[1] - y, text)
        for x, y, w, h, rgb in (blocks or {}).get(index, []):
            c.setFillColorRGB(*rgb)
            c.rect(x, size[1] - y - h, w, h, stroke=0, fill=1)
            c.setFillColorRGB(0, 0, 0)
        c.showPage()
    c.save()
    return path


@pytest.fixture
def pdf_factory(tmp_path):
    """make(name, pages, **kw) -> Path of a PDF drawn with reportlab in tmp_path."""
    counter = iter(range(10_000))

    def make(pages, name=None, **kw):
        return make_pdf(tmp_path / (name or f"doc{next(counter)}.pdf"), pages, **kw)

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(family) -> folder of a tiny random checkpoint of that family.

    Built once per test session with `vdr_app.checkpoints.tiny` (offline, ~0.1 s each; ColPali ~3 s)
    and loaded by tests through the real `from_pretrained` path.
    """
    from vdr_app.checkpoints.tiny import build_tiny_checkpoint

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_checkpoint(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get
