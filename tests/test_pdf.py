"""PDF -> page images: rendering, limits, and one clear error per kind of bad file."""

import pytest

from vdr_app.errors import (
    EmptyPdfError,
    EncryptedPdfError,
    MalformedPdfError,
    NotAPdfError,
    PdfTooLargeError,
)
from vdr_app.pdf import PdfLimits, inspect_pdf, page_dpi, render_pdf

BAD_FILES = {
    "encrypted-user-password.pdf": (EncryptedPdfError, "encrypted"),
    "malformed-broken-xref.pdf": (MalformedPdfError, "damaged"),
    "zero-pages-no-page-tree.pdf": (EmptyPdfError, "no pages"),
}


def test_renders_every_page_at_the_requested_dpi(pdf_factory):
    path = pdf_factory([[(72, 72, "first page")], [(72, 72, "second page")]])
    pages = render_pdf(path.read_bytes(), "two.pdf", PdfLimits(dpi=72))
    assert [p.page_number for p in pages] == [1, 2]
    assert pages[0].size == (595, 842)  # A4 in points = pixels at 72 dpi
    assert pages[0].image.mode == "RGB"
    assert pages[0].pdf_bytes == path.read_bytes()


SAMPLE_BAD_FILES = {  # made in code: tests/documents.py
    "encrypted.pdf": (EncryptedPdfError, "encrypted"),
    "broken-xref.pdf": (MalformedPdfError, "damaged"),
    "no-pages.pdf": (EmptyPdfError, "no pages"),
    "not-a-pdf.pdf": (NotAPdfError, "not a PDF"),
}


def _assert_its_own_clear_error(folder, name, expected):
    error_type, words = expected[name]
    with pytest.raises(error_type, match=words) as info:
        render_pdf((folder / "bad" / name).read_bytes(), name)
    assert name in str(info.value)


@pytest.mark.parametrize("name", sorted(SAMPLE_BAD_FILES))
def test_each_kind_of_bad_file_gets_its_own_clear_error(sample_docs, name):
    _assert_its_own_clear_error(sample_docs, name, SAMPLE_BAD_FILES)


def test_sample_documents_render_with_their_page_counts(sample_docs):
    counts = {p.name: len(render_pdf(p.read_bytes(), p.name, PdfLimits(dpi=30))) for p in (sample_docs / "pdfs").iterdir()}
    assert counts == {"report.pdf": 2, "newsletter.pdf": 1, "scan.pdf": 3}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_corpus_file_gets_its_own_clear_error(corpus_dir, name):
    _assert_its_own_clear_error(corpus_dir, name, BAD_FILES)


@pytest.mark.parametrize("data", [b"", b"hello, I am a text file", b"\x89PNG\r\n\x1a\n" + b"0" * 100])
def test_not_a_pdf(data):
    with pytest.raises(NotAPdfError, match="not a PDF"):
        render_pdf(data, "notes.txt")


def test_limits_on_bytes_and_pages(pdf_factory):
    data = pdf_factory([[(72, 72, f"page {i}")] for i in range(3)]).read_bytes()
    with pytest.raises(PdfTooLargeError, match="3 pages exceeds the limit of 2"):
        inspect_pdf(data, "long.pdf", PdfLimits(max_pages=2))
    with pytest.raises(PdfTooLargeError, match="upload limit"):
        inspect_pdf(data, "big.pdf", PdfLimits(max_bytes=100))


def test_huge_pages_are_rendered_within_the_pixel_limit(pdf_factory):
    # A 100 × 100 inch poster at 120 dpi would be 144 megapixels.
    data = pdf_factory([[(72, 72, "poster")]], size=(7200, 7200)).read_bytes()
    limits = PdfLimits(dpi=120, max_pixels=1_000_000)
    assert page_dpi((7200, 7200), limits) == 10
    (page,) = render_pdf(data, "poster.pdf", limits)
    assert page.size[0] * page.size[1] <= 1_000_000


def test_real_corpus_pdf_renders(corpus_dir):
    data = (corpus_dir / "pdfs" / "chevron-eastern-mediterranean-page.pdf").read_bytes()
    (page,) = render_pdf(data, "chevron.pdf", PdfLimits(dpi=50))
    assert min(page.size) > 100
