"""Characters and their boxes from a PDF page's text layer (pypdfium2).

Boxes are 0-1 page coordinates, top-left origin, in the orientation the page is displayed and
rendered.

Why pypdfium2 and not poppler for the text layer: it runs in-process on the bytes already in
`PageImage.pdf_bytes` (no temp file, no subprocess per page, no XML to parse), gives a box for
every character (poppler's `pdftotext -bbox` gives words only), and keeps the content-stream
order, which is the reading order for most PDFs (multi-column papers included) where sorting by
position is not. Rendering stays with poppler (vdr_app/pdf.py): boxes are mapped onto the
rendered image by choosing the page box (media box, which pdf2image renders, or crop box) whose
displayed aspect matches the image, so both renderers line up.
"""

from __future__ import annotations

import ctypes
import unicodedata

import numpy as np

from .page_text import TEXT_LAYER, PageText, TextBuilder


class PdfDocuments:
    """Opens each PDF once while its pages stream through an encoder.

    Pages of one PDF share the same `pdf_bytes` object (vdr_app.pdf does not copy it), so the
    object's identity is the key; a reference is kept so the id cannot be reused while cached.
    """

    def __init__(self, capacity: int = 2) -> None:
        self._capacity = capacity
        self._open: list[tuple[bytes, object]] = []

    def get(self, data: bytes):
        """The `pypdfium2.PdfDocument` for these bytes (raises pypdfium2's error if unreadable)."""
        import pypdfium2 as pdfium

        for held, document in self._open:
            if held is data:
                return document
        document = pdfium.PdfDocument(data)
        self._open.append((data, document))
        if len(self._open) > self._capacity:
            self._open.pop(0)[1].close()
        return document

    def close(self) -> None:
        """Close every open document (pdfium frees its memory now, not at garbage collection)."""
        while self._open:
            self._open.pop()[1].close()


def _display_transform(page, image_size: tuple[int, int] | None) -> tuple[np.ndarray, tuple[float, float]]:
    """The affine map from PDF user space to 0-1 displayed-page coordinates.

    Args:
        page: a pypdfium2 PdfPage.
        image_size: (width, height) of the rendered image, to pick the page box it shows.

    Returns:
        (A, size): A float64 (2, 3) so that [u, v] = A @ [x, y, 1]; size the displayed
        (width, height) in points.
    """
    media = tuple(page.get_mediabox())
    crop = tuple(page.get_cropbox())
    # poppler intersects the crop box with the media box; pdf2image renders the media box.
    crop = (max(crop[0], media[0]), max(crop[1], media[1]), min(crop[2], media[2]), min(crop[3], media[3]))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        crop = media
    rotation = page.get_rotation() % 360

    def shown_aspect(box):
        w, h = box[2] - box[0], box[3] - box[1]
        return (h / w) if rotation in (90, 270) else (w / h)

    box = media
    if image_size and crop != media:
        target = image_size[0] / max(image_size[1], 1)
        if abs(np.log(shown_aspect(crop) / target)) < abs(np.log(shown_aspect(media) / target)) - 1e-3:
            box = crop
    left, bottom, right, top = box
    w, h = right - left, top - bottom
    # Unrotated: u = (x - left) / w, v = (top - y) / h. /Rotate turns the displayed page clockwise.
    base = np.array([[1 / w, 0, -left / w], [0, -1 / h, top / h], [0, 0, 1]], dtype=np.float64)
    turn = {
        0: [[1, 0, 0], [0, 1, 0]],
        90: [[0, -1, 1], [1, 0, 0]],  # (u, v) -> (1 - v, u)
        180: [[-1, 0, 1], [0, -1, 1]],  # (u, v) -> (1 - u, 1 - v)
        270: [[0, 1, 0], [-1, 0, 1]],  # (u, v) -> (v, 1 - u)
    }[rotation]
    size = (h, w) if rotation in (90, 270) else (w, h)
    return np.asarray(turn, dtype=np.float64) @ base, size


def _to_display(transform: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(k, 4) (left, bottom, right, top) in user space -> (k, 4) (x0, y0, x1, y1) in displayed-page
    coordinates (0-1 on the page, outside that range for text beyond its edges)."""
    corners_a = np.stack([boxes[:, 0], boxes[:, 1], np.ones(len(boxes))])  # (3, k)
    corners_b = np.stack([boxes[:, 2], boxes[:, 3], np.ones(len(boxes))])
    a, b = transform @ corners_a, transform @ corners_b  # (2, k) each
    lo, hi = np.minimum(a, b), np.maximum(a, b)  # (2, k) each
    out = np.stack([lo[0], lo[1], hi[0], hi[1]], axis=1)
    return out.astype(np.float32)


def read_text_layer(document, page_number: int, image_size: tuple[int, int] | None = None) -> PageText:
    """Characters and boxes from one page's text layer.

    Args:
        document: a `pypdfium2.PdfDocument`.
        page_number: 1-based.
        image_size: (width, height) of the page as rendered, to align boxes with it.

    Returns:
        PageText with source "text-layer", or "none" when the layer holds no visible characters.
        Characters are NFKC-normalised (ligatures like "ﬁ" become "fi", full-width forms ASCII)
        so the tokenizer sees ordinary words; all parts of one character share its box.
    """
    import pypdfium2.raw as pdfium_c

    page = document[page_number - 1]
    textpage = page.get_textpage()
    try:
        transform, _ = _display_transform(page, image_size)
        raw = textpage.raw
        n = pdfium_c.FPDFText_CountChars(raw)
        codes = [pdfium_c.FPDFText_GetUnicode(raw, i) for i in range(n)]
        boxes = np.zeros((n, 4), dtype=np.float64)  # (left, bottom, right, top) in user space
        left, right, bottom, top = (ctypes.c_double() for _ in range(4))
        refs = (ctypes.byref(left), ctypes.byref(right), ctypes.byref(bottom), ctypes.byref(top))
        has_box = np.zeros(n, dtype=bool)
        for i, code in enumerate(codes):
            if code > 32 and pdfium_c.FPDFText_GetCharBox(raw, i, *refs):
                boxes[i] = (left.value, bottom.value, right.value, top.value)
                has_box[i] = True
    finally:
        textpage.close()
        page.close()
    shown = _to_display(transform, boxes)
    # Text outside the rendered page box is not visible (clipped away): it is left out.
    centre_x, centre_y = (shown[:, 0] + shown[:, 2]) / 2, (shown[:, 1] + shown[:, 3]) / 2
    has_box &= (centre_x >= 0) & (centre_x <= 1) & (centre_y >= 0) & (centre_y <= 1)
    shown = np.clip(shown, 0.0, 1.0)
    builder = TextBuilder()
    for i, code in enumerate(codes):
        ch = _char(code)
        if ch in ("\n", "\r"):
            builder.separator("\n")
        elif not ch or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            builder.separator(" ")
        elif has_box[i]:
            builder.add(unicodedata.normalize("NFKC", ch), tuple(shown[i].tolist()))
        else:
            builder.separator(" ")
    return builder.build(TEXT_LAYER)


def _char(code: int) -> str:
    try:
        return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else ""
    except ValueError:
        return ""
