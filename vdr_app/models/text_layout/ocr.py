"""OCR of a page image with RapidOCR 3 (PP-OCR ONNX models shipped inside the `rapidocr` wheel:
works offline, no download on first use; headless OpenCV, so no libGL is needed), and Tesseract
for the scripts that bundled model cannot read.

The bundled model reads Chinese, Japanese and Latin-script text. On a Cyrillic or Arabic page it
finds the lines but reads them as blanks, or drops them (docs/ocr.md has the measurements). Such a
page is told by what RapidOCR returned: no line at all, or at least `UNREAD_LINE_SHARE` of its
lines without a letter or digit. It is then read again by Tesseract with the installed script
packs (`tesseract.py`), and the reading with more letters and digits is kept. Where Tesseract or
its packs are missing, the page says so (info["ocr_unread_script"]) instead of silently holding
less text.

Only pages without a usable text layer come here (see reader.py). Output is a `PageText` with a
box per character: RapidOCR gives a quadrilateral per recognised word (`return_word_box=True`);
a word's box is shared evenly between its characters. Lines without word boxes share the line's
box evenly instead.

If the OCR engine cannot be loaded (package missing, a broken install), `unavailable_reason()`
says why; the reason is recorded on the page and shown, never turned into a silent "no text".
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from PIL import Image

from . import tesseract
from .page_text import OCR, PageText, TextBuilder

log = logging.getLogger(__name__)

# Share of RapidOCR's lines without a letter or digit from which a page counts as written in a
# script the bundled model cannot read. Measured at 120 dpi: 31 % and 36 % on the two pages of the
# Russian scan, at most 4 % on every Latin and Chinese scan of the corpus.
UNREAD_LINE_SHARE = 0.15

_ENGINE = None
_FAILURE: str | None = None
_LOCK = threading.Lock()


class OcrUnavailable(RuntimeError):
    """The OCR engine cannot be loaded; the message says why."""


def _engine():
    """One RapidOCR instance per process (loading its ONNX sessions takes a few seconds); a failed
    load is remembered so that every later page does not pay for it again."""
    global _ENGINE, _FAILURE
    with _LOCK:
        if _ENGINE is None and _FAILURE is None:
            try:
                from rapidocr import RapidOCR

                logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # one INFO line per model file
                # The angle classifier only flips upside-down lines; pages here are upright, and
                # skipping it saves ~10% of the OCR time.
                _ENGINE = RapidOCR(params={"Global.use_cls": False, "Global.log_level": "warning"})
            except Exception as error:  # ImportError, a missing shared library, a broken model file
                _FAILURE = f"{type(error).__name__}: {error}"
                log.warning("OCR unavailable: %s", _FAILURE)
        if _ENGINE is None:
            raise OcrUnavailable(_FAILURE)
        return _ENGINE


def unavailable_reason() -> str | None:
    """None when the OCR engine loads; otherwise one line saying why it cannot."""
    try:
        _engine()
    except OcrUnavailable as error:
        return str(error)
    return None


def ocr_image(image: Image.Image) -> PageText:
    """Read the text of a page image.

    Args:
        image: the page, any PIL mode.

    Returns:
        PageText with source "ocr" (or "none" if nothing was read), lines top to bottom;
        info: "ocr_seconds" (both readings), "ocr_engine" (the reading kept), and where RapidOCR
        left lines unread, "ocr_unread_lines" and, if Tesseract could not step in,
        "ocr_unread_script" saying what to install.

    Raises:
        OcrUnavailable: the OCR engine cannot be loaded.
    """
    start = time.perf_counter()
    page = read_with_rapidocr(image)
    unread = page.info.pop("rapidocr_unread_lines")
    found_lines = page.info.pop("rapidocr_lines")
    if unread >= UNREAD_LINE_SHARE:
        page.info["ocr_unread_lines"] = round(unread, 3)
        if tesseract.unavailable_reason() is None:
            try:
                other = tesseract.read(image)
            except Exception as error:  # Tesseract failing must not lose RapidOCR's reading
                log.warning("Tesseract failed (%s); keeping RapidOCR's reading", error)
                page.info["ocr_tesseract_error"] = str(error)
                other = PageText()
            if other.n_alnum > page.n_alnum:
                other.info["ocr_unread_lines"] = page.info["ocr_unread_lines"]
                page = other
        elif found_lines:  # lines were found but not read: text in a script nothing here reads
            page.info["ocr_unread_script"] = (
                f"{unread:.0%} of the text lines found could not be read: the page is probably in a "
                f"script the bundled OCR model does not read ({tesseract.unavailable_reason()})")
    seconds = round(time.perf_counter() - start, 3)
    page.info["ocr_seconds"] = seconds
    log.debug("OCR read %d characters in %.2f s", len(page.text), seconds)
    return page


def read_with_rapidocr(image: Image.Image) -> PageText:
    """RapidOCR's reading alone; info["rapidocr_lines"] counts the lines it found and
    info["rapidocr_unread_lines"] is their `unread_line_share`.

    Raises:
        OcrUnavailable: the OCR engine cannot be loaded.
    """
    rgb = np.asarray(image.convert("RGB"))  # (h, w, 3)
    result = _engine()(rgb, return_word_box=True)
    texts = tuple(result.txts or ())
    page = page_text_from_lines(texts, result.boxes, result.word_results or (), image.size)
    page.info.update(ocr_engine="rapidocr", rapidocr_lines=len(texts), rapidocr_unread_lines=unread_line_share(texts))
    return page


def unread_line_share(texts) -> float:
    """Share of RapidOCR's lines holding no letter or digit (1.0 when it found no line at all)."""
    if not texts:
        return 1.0
    return sum(not any(ch.isalnum() for ch in text) for text in texts) / len(texts)


def page_text_from_lines(texts, line_quads, word_results, size: tuple[int, int]) -> PageText:
    """A PageText from RapidOCR's lines.

    Args:
        texts: the recognised lines, top to bottom.
        line_quads: (n_lines, 4, 2) pixel corners of each line.
        word_results: per line, (word, score, (4, 2) corners) triples; may be empty or not
            spell the line, in which case the line's box is shared by its characters.
        size: (width, height) of the image in pixels.
    """
    width, height = size
    scale = np.array([width, height, width, height], dtype=np.float64)
    builder = TextBuilder()
    for index, text in enumerate(texts):
        builder.separator("\n")
        words = word_results[index] if index < len(word_results) else ()
        if not _words_match_line(words, text):
            words = [(text, None, line_quads[index])]
        for word, _score, quad in words:
            builder.separator(" ")
            for ch, box in zip(word, _char_boxes(np.asarray(quad, dtype=np.float64), word)):
                if ch.isspace():
                    builder.separator(" ")
                else:
                    builder.add(ch, tuple(np.clip(box / scale, 0.0, 1.0).tolist()))
    return builder.build(OCR)


def _words_match_line(words, text: str) -> bool:
    """Whether RapidOCR's word boxes spell the line (they can be missing or split differently)."""
    return bool(words) and "".join(w[0] for w in words).replace(" ", "") == text.replace(" ", "")


def _char_boxes(quad: np.ndarray, text: str) -> np.ndarray:
    """float64 (len(text), 4) pixel boxes: the quad's bounding box cut into equal slices.

    Args:
        quad: (4, 2) corners of a word or line.
        text: its characters.
    """
    x0, y0 = quad.reshape(-1, 2).min(axis=0)
    x1, y1 = quad.reshape(-1, 2).max(axis=0)
    edges = np.linspace(x0, x1, len(text) + 1)
    return np.stack([edges[:-1], np.full(len(text), y0), edges[1:], np.full(len(text), y1)], axis=1)
