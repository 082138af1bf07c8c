"""PDF bytes -> page images (pdf2image over poppler), with limits and one clear error per bad file.

Every problem a user can cause raises a `PdfError` subclass whose message names the file:
not a PDF, encrypted, malformed, zero pages, too large (bytes, pages). Pages are rendered at
`dpi`, lowered per page where needed so that no image exceeds `max_pixels` (a tall infographic or
a poster cannot become a decompression bomb).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pdf2image import convert_from_path
from pdf2image.exceptions import PDFInfoNotInstalledError

from .errors import (
    EmptyPdfError,
    EncryptedPdfError,
    MalformedPdfError,
    NotAPdfError,
    PdfError,
    PdfTooLargeError,
)
from .types import PageImage, Progress

log = logging.getLogger(__name__)

POINTS_PER_INCH = 72.0
_PAGE_SIZE = re.compile(r"^Page\s+(\d+)\s+size:\s+([\d.]+)\s+x\s+([\d.]+)\s+pts", re.MULTILINE)
# poppler's words when it had to rebuild a damaged cross-reference table.
_DAMAGE_MARKERS = ("try to reconstruct", "Internal Error", "xref num", "Couldn't read xref", "May not be a PDF")


@dataclass(frozen=True)
class PdfLimits:
    """Limits applied to every PDF.

    Attributes:
        dpi: rendering resolution.
        max_pages: longest PDF accepted.
        max_bytes: largest file accepted.
        max_pixels: largest rendered page (width × height); the dpi is lowered for bigger pages.
    """

    dpi: int = 120
    max_pages: int = 200
    max_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class PdfInfo:
    """What poppler says about a PDF before rendering: page sizes in points."""

    page_sizes: tuple[tuple[float, float], ...]

    @property
    def n_pages(self) -> int:
        return len(self.page_sizes)


def _require_poppler() -> None:
    if shutil.which("pdfinfo") is None or shutil.which("pdftoppm") is None:
        raise PdfError(
            "poppler is not installed (pdfinfo/pdftoppm not found): "
            "install it with `apt-get install poppler-utils` (Debian/Ubuntu) or `brew install poppler`"
        )


def check_pdf_bytes(data: bytes, name: str, limits: PdfLimits) -> None:
    """Refuse what is obviously not a PDF or too big, before running poppler."""
    if len(data) > limits.max_bytes:
        raise PdfTooLargeError(
            f"{name}: {len(data) / 1e6:.1f} MB exceeds the upload limit of {limits.max_bytes / 1e6:.1f} MB"
        )
    if not data:
        raise NotAPdfError(f"{name}: the file is empty, not a PDF")
    # The header may follow a little junk; readers look in the first 1 KiB.
    if b"%PDF-" not in data[:1024]:
        raise NotAPdfError(f"{name}: not a PDF file (no %PDF header)")


def read_info(path: Path, name: str) -> PdfInfo:
    """Run pdfinfo and classify failures into encrypted / malformed / empty."""
    _require_poppler()
    proc = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", "-1", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    err = proc.stderr
    if "Incorrect password" in err or ("encrypted" in err.lower() and proc.returncode != 0):
        raise EncryptedPdfError(f"{name}: the PDF is encrypted (password-protected); remove the password and upload it again")
    sizes = tuple((float(w), float(h)) for _, w, h in _PAGE_SIZE.findall(proc.stdout))
    if any(marker in err for marker in _DAMAGE_MARKERS):
        if not sizes:
            raise MalformedPdfError(f"{name}: the PDF is damaged (broken cross-reference table) and cannot be read")
        log.warning("%s: poppler repaired a damaged PDF: %s", name, err.strip().splitlines()[0])
    if not sizes:
        if proc.returncode not in (0, 99) and "page range" not in err:
            raise MalformedPdfError(f"{name}: the PDF cannot be read ({err.strip().splitlines()[-1] if err.strip() else 'pdfinfo failed'})")
        raise EmptyPdfError(f"{name}: the PDF has no pages")
    return PdfInfo(page_sizes=sizes)


def page_dpi(size_pts: tuple[float, float], limits: PdfLimits) -> int:
    """The dpi to render one page at: `limits.dpi`, lowered so the image fits `max_pixels`."""
    w_in, h_in = size_pts[0] / POINTS_PER_INCH, size_pts[1] / POINTS_PER_INCH
    area = max(w_in * h_in, 1e-6)
    fit = math.floor(math.sqrt(limits.max_pixels / area))
    return max(1, min(limits.dpi, fit))


def _inspect_at(path: Path, data: bytes, name: str, limits: PdfLimits) -> PdfInfo:
    check_pdf_bytes(data, name, limits)
    path.write_bytes(data)
    info = read_info(path, name)
    if info.n_pages > limits.max_pages:
        raise PdfTooLargeError(f"{name}: {info.n_pages} pages exceeds the limit of {limits.max_pages} pages per PDF")
    return info


def inspect_pdf(data: bytes, name: str = "document.pdf", limits: PdfLimits = PdfLimits()) -> PdfInfo:
    """Check a PDF without rendering it: raises the PdfError that rendering would raise up front."""
    with tempfile.TemporaryDirectory(prefix="vdr_pdf_") as tmp:
        return _inspect_at(Path(tmp) / "input.pdf", data, name, limits)


def iter_pages(
    data: bytes,
    name: str = "document.pdf",
    limits: PdfLimits = PdfLimits(),
    progress: Progress | None = None,
) -> Iterator[PageImage]:
    """Render a PDF's pages one at a time.

    Validation (header, size, encryption, damage, page count) happens before the first page is
    yielded, so a bad file fails before any work is done.

    Args:
        data: the PDF file's bytes.
        name: file name used in messages.
        limits: dpi and limits.
        progress: called with (fraction, message) after each page.

    Yields:
        PageImage per page, RGB, `pdf_bytes` set to `data`.
    """
    with tempfile.TemporaryDirectory(prefix="vdr_pdf_") as tmp:
        path = Path(tmp) / "input.pdf"
        info = _inspect_at(path, data, name, limits)
        for number, size in enumerate(info.page_sizes, start=1):
            try:
                images = convert_from_path(path, dpi=page_dpi(size, limits), first_page=number, last_page=number)
            except PDFInfoNotInstalledError as error:  # pragma: no cover - checked above
                raise PdfError(str(error)) from error
            except Exception as error:
                raise MalformedPdfError(f"{name}: page {number} cannot be rendered ({error})") from error
            if not images:
                raise MalformedPdfError(f"{name}: page {number} cannot be rendered")
            if progress:
                progress(number / info.n_pages, f"{name}: rendered page {number}/{info.n_pages}")
            yield PageImage(image=images[0].convert("RGB"), page_number=number, pdf_bytes=data)


def render_pdf(
    data: bytes,
    name: str = "document.pdf",
    limits: PdfLimits = PdfLimits(),
    progress: Progress | None = None,
) -> list[PageImage]:
    """Render every page of a PDF (see `iter_pages`)."""
    return list(iter_pages(data, name, limits, progress))
