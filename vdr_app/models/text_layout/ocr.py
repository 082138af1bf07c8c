"""OCR of a page image with RapidOCR 3 (PP-OCR ONNX models shipped inside the `rapidocr` wheel:
works offline, no download on first use; headless OpenCV, so no libGL is needed).

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

from .page_text import OCR, PageText, TextBuilder

log = logging.getLogger(__name__)

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
        PageText with source "ocr" (or "none" if nothing was read), lines in RapidOCR's
        top-to-bottom, left-to-right order; info["ocr_seconds"] is the time taken.

    Raises:
        OcrUnavailable: the OCR engine cannot be loaded.
    """
    rgb = np.asarray(image.convert("RGB"))  # (h, w, 3)
    engine = _engine()
    start = time.perf_counter()
    result = engine(rgb, return_word_box=True)
    seconds = round(time.perf_counter() - start, 3)
    page = page_text_from_lines(result.txts or (), result.boxes, result.word_results or (), image.size)
    page.info["ocr_seconds"] = seconds
    log.debug("OCR read %d characters in %.2f s", len(page.text), seconds)
    return page


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
