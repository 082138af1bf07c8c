"""OCR of a page image with RapidOCR (PP-OCRv4 ONNX models shipped inside the rapidocr-onnxruntime
wheel: works offline, no download on first use).

Only pages without a usable text layer come here (see vdr_app.textlayer). Output is a `PageText`
with a box per character: RapidOCR gives a quadrilateral per text line and, with
`return_word_box=True`, one box per recognised character (from the CTC columns). When those do
not line up with the text, characters share the line box evenly.

PP-OCRv4's recogniser often drops the spaces of Latin text ("THESLEREXECOMPANYLIMITED"), which
would turn English scans into word-piece soup; spaces are put back where the gap between two
characters is clearly wider than the line's usual character pitch.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from PIL import Image

from .textlayer import OCR, PageText, TextBuilder

log = logging.getLogger(__name__)

# A gap this many times the line's median character pitch is a word break.
SPACE_GAP_FACTOR = 1.45
# Only space-free runs at least this long are split: short runs ("Berks.") are real words.
MIN_RUN_TO_SPLIT = 8

_ENGINE = None
_LOCK = threading.Lock()


def _engine():
    """One RapidOCR instance per process (loading its three ONNX sessions takes ~0.4 s)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            from rapidocr_onnxruntime import RapidOCR

            # The angle classifier only flips upside-down lines; pages here are upright, and
            # skipping it saves ~10% of the OCR time.
            _ENGINE = RapidOCR(use_cls=False)
        return _ENGINE


def ocr_image(image: Image.Image) -> PageText:
    """Read the text of a page image.

    Args:
        image: the page, any PIL mode.

    Returns:
        PageText with source "ocr" (or "none" if nothing was read), lines in RapidOCR's
        top-to-bottom, left-to-right order; info["ocr_seconds"] is the time taken.
    """
    rgb = np.asarray(image.convert("RGB"))  # (h, w, 3)
    height, width = rgb.shape[:2]
    start = time.perf_counter()
    result, _ = _engine()(rgb, return_word_box=True)
    seconds = round(time.perf_counter() - start, 3)
    builder = TextBuilder()
    for line in result or []:
        quad, text = np.asarray(line[0], dtype=np.float64), str(line[1])
        # With return_word_box: [quad, text, score, char quads, char strings, char scores].
        char_quads = line[3] if len(line) > 4 and len(line[4]) == len(text) else None
        boxes = _char_boxes(quad, text, char_quads)  # (len(text), 4) pixels
        text, boxes = restore_spaces(text, boxes)
        scale = np.array([width, height, width, height], dtype=np.float64)
        boxes = np.clip(boxes / scale, 0.0, 1.0)
        builder.separator("\n")
        for ch, box in zip(text, boxes):
            if ch.isspace():
                builder.separator(" ")
            else:
                builder.add(ch, tuple(box.tolist()))
    page = builder.build(OCR, {"ocr_seconds": seconds})
    log.debug("OCR read %d characters in %.2f s", len(page.text), seconds)
    return page


def _char_boxes(quad: np.ndarray, text: str, char_quads) -> np.ndarray:
    """float64 (len(text), 4) pixel boxes, one per character of a recognised line.

    Args:
        quad: (4, 2) the line's corners.
        text: the recognised line.
        char_quads: RapidOCR's per-character quadrilaterals (one per character, spaces included,
            when they line up), or None.
    """
    if char_quads is not None and len(char_quads) == len(text) and len(text) > 0:
        pts = np.asarray(char_quads, dtype=np.float64).reshape(len(text), -1, 2)
        return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    edges = np.linspace(x0, x1, len(text) + 1)
    return np.stack([edges[:-1], np.full(len(text), y0), edges[1:], np.full(len(text), y1)], axis=1)


def restore_spaces(text: str, boxes: np.ndarray) -> tuple[str, np.ndarray]:
    """Insert the spaces the recogniser dropped inside long space-free runs.

    Args:
        text: one recognised line.
        boxes: (len(text), 4) its characters' boxes, left to right.

    Returns:
        (text, boxes) with a space (NaN box) wherever the distance between two neighbouring
        characters' centres exceeds SPACE_GAP_FACTOR times the run's median pitch.
    """
    if len(text) < MIN_RUN_TO_SPLIT:
        return text, boxes
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    out_chars: list[str] = []
    out_boxes: list[np.ndarray] = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and not text[j].isspace():
            j += 1
        breaks: set[int] = set()
        if j - i >= MIN_RUN_TO_SPLIT and all(ch.isascii() for ch in text[i:j]):
            pitch = np.diff(centres[i:j])
            typical = float(np.median(pitch))
            if typical > 0:
                breaks = {i + 1 + k for k in np.flatnonzero(pitch > SPACE_GAP_FACTOR * typical).tolist()}
        for k in range(i, j):
            if k in breaks:
                out_chars.append(" ")
                out_boxes.append(np.full(4, np.nan))
            out_chars.append(text[k])
            out_boxes.append(boxes[k])
        if j < len(text):
            out_chars.append(text[j])
            out_boxes.append(boxes[j])
        i = j + 1
    return "".join(out_chars), np.array(out_boxes, dtype=np.float64).reshape(-1, 4)
