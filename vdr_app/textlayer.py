"""A page's words and where they sit: from the PDF text layer, or from OCR when there is none.

The result is a `PageText`: the page's text in reading order plus one box per character (0-1
page coordinates, top-left origin, in the orientation the page is displayed and rendered). Per
character rather than per word because CJK text has no spaces (a whole line would be one "word")
and because a tokenizer's offsets point at characters: a word-piece token's box is the union of
its characters' boxes.

Why pypdfium2 and not poppler for the text layer: it runs in-process on the bytes already in
`PageImage.pdf_bytes` (no temp file, no subprocess per page, no XML to parse), gives a box for
every character (poppler's `pdftotext -bbox` gives words only), and keeps the content-stream
order, which is the reading order for most PDFs (multi-column papers included) where sorting by
position is not. Rendering stays with poppler (vdr_app/pdf.py): boxes are mapped onto the
rendered image by choosing the page box (media box, which pdf2image renders, or crop box) whose
displayed aspect matches the image, so both renderers line up.

Pages whose text layer is missing or nearly empty (scans, screenshots on slides) are read by OCR
(`vdr_app.ocr`) from the rendered image; a page where neither yields text is marked
`source="none"`.
"""

from __future__ import annotations

import ctypes
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .types import PageImage

log = logging.getLogger(__name__)

# Fewer letters/digits than this on the text layer and the page is treated as a scan or a
# picture: OCR is tried and wins if it reads more. Slides with a one-word title over a screenshot
# of code are the common case; 20 keeps real short pages (a cover with a title) on the text layer
# unless OCR finds more.
MIN_TEXT_LAYER_CHARS = 20

# OCR reading fewer letters/digits than this found noise (a drawn box read as "口"), not text.
MIN_OCR_CHARS = 2

TEXT_LAYER, OCR, NO_TEXT = "text-layer", "ocr", "none"


@dataclass
class Word:
    """One whitespace-delimited run of characters and its box.

    Attributes:
        text: the characters.
        box: float32 (4,) (x0, y0, x1, y1) in 0-1 page coordinates.
        start: offset of the first character in `PageText.text`.
    """

    text: str
    box: np.ndarray
    start: int


@dataclass
class PageText:
    """A page's text in reading order with a box per character.

    Attributes:
        text: words separated by " ", lines by "\\n".
        char_boxes: float32 (len(text), 4) (x0, y0, x1, y1) in 0-1 page coordinates, NaN rows
            for the separators inserted between words and lines.
        source: "text-layer", "ocr" or "none".
        info: facts worth recording (e.g. OCR seconds, why OCR was skipped).
    """

    text: str = ""
    char_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    source: str = NO_TEXT
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.char_boxes = np.asarray(self.char_boxes, dtype=np.float32).reshape(-1, 4)
        if self.char_boxes.shape[0] != len(self.text):
            raise ValueError(f"char_boxes has {self.char_boxes.shape[0]} rows for {len(self.text)} characters")

    @property
    def n_alnum(self) -> int:
        """Letters and digits on the page: how much real text there is."""
        return sum(ch.isalnum() for ch in self.text)

    def words(self) -> list[Word]:
        """Whitespace-delimited words with the union of their characters' boxes, in reading order."""
        out: list[Word] = []
        start = None
        for i, ch in enumerate(self.text + " "):
            if ch.isspace():
                if start is not None:
                    boxes = self.char_boxes[start:i]
                    out.append(Word(self.text[start:i], _union(boxes), start))
                    start = None
            elif start is None:
                start = i
        return out


def _union(boxes: np.ndarray) -> np.ndarray:
    """float32 (4,) union of (k, 4) boxes, ignoring NaN rows (NaN if all are)."""
    valid = boxes[~np.isnan(boxes).any(axis=1)]
    if len(valid) == 0:
        return np.full(4, np.nan, np.float32)
    return np.array(
        [valid[:, 0].min(), valid[:, 1].min(), valid[:, 2].max(), valid[:, 3].max()], dtype=np.float32
    )


class TextBuilder:
    """Accumulates characters and boxes into a `PageText`, collapsing runs of whitespace."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._boxes: list[tuple[float, float, float, float]] = []
        self._pending: str | None = None  # separator to emit before the next visible character

    def separator(self, kind: str) -> None:
        """Note a word (" ") or line ("\\n") break; a line break wins over a space."""
        if self._chars and self._pending != "\n":
            self._pending = kind

    def add(self, text: str, box: tuple[float, float, float, float]) -> None:
        """Append visible characters that share one box (a ligature expands to several)."""
        if self._pending is not None:
            self._chars.append(self._pending)
            self._boxes.append((np.nan,) * 4)
            self._pending = None
        for ch in text:
            self._chars.append(ch)
            self._boxes.append(box)

    def build(self, source: str, info: dict | None = None) -> PageText:
        return PageText(
            "".join(self._chars),
            np.array(self._boxes, dtype=np.float32).reshape(-1, 4),
            source if self._chars else NO_TEXT,
            dict(info or {}),
        )


# -- text layer (pypdfium2) ---------------------------------------------------------------------


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


# -- choosing the source --------------------------------------------------------------------------


def read_page_text(
    page: PageImage,
    documents: PdfDocuments | None = None,
    ocr: bool = True,
    min_text_layer_chars: int = MIN_TEXT_LAYER_CHARS,
    on_ocr: Callable[[], None] | None = None,
) -> PageText:
    """The best text available for a page: its text layer, else OCR of its image, else none.

    Args:
        page: the page; `pdf_bytes` None means a plain image (OCR only).
        documents: cache of opened PDFs, shared across the pages of one encode call.
        ocr: whether OCR may run (it is the slow part: seconds per page on a CPU).
        min_text_layer_chars: a text layer with fewer letters/digits counts as missing; OCR
            runs and its result is used if it read more.
        on_ocr: called just before OCR starts (so progress can say so: it takes seconds).

    Returns:
        PageText whose `source` says where the text came from ("none" if nowhere); `info`
        records why OCR ran or was skipped and how long it took.
    """
    layer = PageText()
    info: dict = {}
    if page.pdf_bytes is not None:
        own = documents is None
        documents = documents or PdfDocuments()
        try:
            layer = read_text_layer(documents.get(page.pdf_bytes), page.page_number, page.image.size)
        except Exception as error:  # a PDF poppler rendered but pdfium cannot read: fall back to OCR
            log.warning("page %d: text layer unreadable (%s); trying OCR", page.page_number, error)
            info["text_layer_error"] = str(error)
        finally:
            if own:
                documents.close()
        if layer.n_alnum >= min_text_layer_chars:
            return layer
    if not ocr:
        info["ocr"] = "off"
        return layer if layer.text else PageText(source=NO_TEXT, info=info)
    from . import ocr as ocr_module

    if on_ocr is not None:
        on_ocr()
    try:
        scanned = ocr_module.ocr_image(page.image)
    except Exception as error:  # OCR failing must not lose the page: it is marked instead
        log.warning("page %d: OCR failed (%s)", page.page_number, error)
        info["ocr_error"] = str(error)
        scanned = PageText(source=NO_TEXT)
    if scanned.n_alnum < MIN_OCR_CHARS:  # a lone glyph read off a box, bullet or logo
        scanned = PageText(source=NO_TEXT, info=scanned.info)
    if scanned.n_alnum > layer.n_alnum:
        scanned.info.update(info)
        return scanned
    layer.info.update(info)
    layer.info["ocr_seconds"] = scanned.info.get("ocr_seconds")
    return layer if layer.text else PageText(source=NO_TEXT, info=layer.info)
