"""OCR with Tesseract, for the scripts RapidOCR's bundled model cannot read.

rapidocr 3 ships one PP-OCRv6 recognition model in its wheel: Chinese, Japanese, English and the
Latin-script languages. Its per-script models (Cyrillic, Arabic, Korean...) are downloaded on first
use, which an offline machine cannot do; on a Cyrillic or Arabic scan the bundled model reads
nothing or blanks (see docs/ocr.md). Tesseract's language packs are Debian packages
(`tesseract-ocr-rus`, `tesseract-ocr-ara`, ...), installed with the system like poppler, so they
work offline in Docker and on Spaces (packages.txt).

Which packs are used: Tesseract's script detection (OSD) names the page's script, and the installed
packs of that script are used, plus `eng` for the Latin words such pages mix in. Where OSD cannot
tell (too few characters on the page, or a script without an installed pack) every installed pack
of `SCRIPT_PACKS` is used: slower (each pack's model runs) and a little noisier (a stamp read as
Arabic on the Russian scan), so the detection runs first. What is not installed is not read, and
`unavailable_reason()` says so.
"""

from __future__ import annotations

import functools
import logging
import unicodedata

import numpy as np
from PIL import Image

from .page_text import OCR, PageText, TextBuilder

log = logging.getLogger(__name__)

# Tesseract packs (Debian package tesseract-ocr-<code>) of the scripts the bundled PP-OCR model does
# not read, by the script name Tesseract's orientation and script detection (OSD) gives.
PACKS_OF_SCRIPT = {
    "Cyrillic": ("rus", "ukr", "bel", "bul", "mkd", "srp", "kaz"),
    "Arabic": ("ara", "fas", "urd"),
    "Hebrew": ("heb",),
    "Greek": ("ell",),
    "Hangul": ("kor",),
    "Korean": ("kor",),  # OSD's name for Hangul mixed with Han characters: most Korean print
    "Devanagari": ("hin",),
    "Bengali": ("ben",),
    "Tamil": ("tam",),
    "Thai": ("tha",),
}
SCRIPT_PACKS = tuple(dict.fromkeys(pack for packs in PACKS_OF_SCRIPT.values() for pack in packs))
# Tesseract misreads small print: pages come rendered at ~120 dpi (x-height ~5-6 px on the Russian
# scan), so the image is enlarged until its long side reaches this, at most by MAX_UPSCALE.
# Measured on the Russian scan: x2 reads 811 words where x1 reads 584, with far fewer errors.
TARGET_LONG_SIDE = 2800
MAX_UPSCALE = 2.5
# ...but large print enlarged becomes unreadable (a 40 px Hangul title read at x1, not at x2.1):
# the enlargement stops where the median glyph (connected ink component) reaches this height.
MAX_GLYPH_PX = 30
# Words Tesseract is less sure of than this (0-100) are noise: table rules read as "|" or "[".
MIN_WORD_CONFIDENCE = 30
# Tesseract's automatic layout (page segmentation mode 3) drops large print on a sparse page: on a
# drawn Hangul page of two 44 px lines it returned 4 of 8 words (none at x1). A page where it reads
# fewer words than this is read again as sparse text (mode 11, Tesseract's advice for sparse
# pages) and the reading with more letters and digits is kept; dense pages pay nothing more.
SPARSE_PAGE_WORDS = 50


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[tuple[str, ...], str | None]:
    """(packs of SCRIPT_PACKS installed, reason when none can be used)."""
    try:
        import pytesseract

        languages = set(pytesseract.get_languages(config=""))
    except Exception as error:  # package or binary missing
        return (), (f"Tesseract is not installed ({type(error).__name__}: {error}); "
                    "apt install tesseract-ocr tesseract-ocr-rus tesseract-ocr-ara (docs/ocr.md)")
    packs = tuple(p for p in SCRIPT_PACKS if p in languages)
    if not packs:
        return (), "no Tesseract pack for a non-Latin script is installed (e.g. apt install tesseract-ocr-rus)"
    return packs + (("eng",) if "eng" in languages else ()), None


def languages() -> tuple[str, ...]:
    """The installed packs Tesseract may use: those of SCRIPT_PACKS, then eng (empty when Tesseract
    or its packs are missing)."""
    return _installed()[0]


def unavailable_reason() -> str | None:
    """None when Tesseract and at least one script pack are installed; otherwise why not."""
    return _installed()[1]


def read(image: Image.Image) -> PageText:
    """Read a page image with Tesseract and the installed script packs.

    Args:
        image: the page, any PIL mode.

    Returns:
        PageText (source "ocr", or "none" if nothing was read) with a box per character: each
        word's box cut into equal slices, right to left for right-to-left words;
        info["ocr_engine"] names the packs used.

    Raises:
        RuntimeError: Tesseract or every script pack is missing (`unavailable_reason()`).
    """
    installed = languages()
    if not installed:
        raise RuntimeError(unavailable_reason())
    grey = image.convert("L")
    scale = upscale(grey)
    if scale > 1:
        grey = grey.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    script = detect_script(grey)
    packs = packs_for(script, installed)
    lang = "+".join(packs)
    data, text = read_words(grey, lang)
    page = page_text_from_words(data, scale, image.size, text)
    if len(page.text.split()) < SPARSE_PAGE_WORDS:
        data, text = read_words(grey, lang, "--psm 11")
        sparse = page_text_from_words(data, scale, image.size, text)
        if sparse.n_alnum > page.n_alnum:
            page = sparse
            page.info["ocr_layout"] = "sparse"
    page.info["ocr_engine"] = "tesseract:" + lang
    if script:
        page.info["ocr_script"] = script
    return page


def upscale(grey: Image.Image) -> float:
    """How much to enlarge a page for Tesseract: to TARGET_LONG_SIDE (at most MAX_UPSCALE), less
    where its median glyph would exceed MAX_GLYPH_PX; never shrunk."""
    from scipy import ndimage

    scale = min(MAX_UPSCALE, TARGET_LONG_SIDE / max(grey.size))
    labels, count = ndimage.label(np.asarray(grey) < 128)
    if count:
        boxes = ndimage.find_objects(labels)
        heights = np.array([b[0].stop - b[0].start for b in boxes])
        widths = np.array([b[1].stop - b[1].start for b in boxes])
        glyphs = heights[(heights >= 3) & (widths <= 3 * heights) & (heights <= 0.2 * grey.height)]
        if glyphs.size:
            scale = min(scale, MAX_GLYPH_PX / float(np.median(glyphs)))
    return max(1.0, scale)


def detect_script(image: Image.Image) -> str | None:
    """The script Tesseract's OSD finds on the page ("Cyrillic", "Arabic", ...), None where it
    cannot tell (too few characters: OSD needs a few lines of text)."""
    import pytesseract

    try:
        return pytesseract.image_to_osd(image, output_type=pytesseract.Output.DICT).get("script") or None
    except pytesseract.TesseractError:
        return None


def packs_for(script: str | None, installed: tuple[str, ...]) -> tuple[str, ...]:
    """The installed packs to read a page of `script` with: that script's packs and eng, or every
    installed pack where the script is unknown or has none installed."""
    chosen = tuple(p for p in PACKS_OF_SCRIPT.get(script or "", ()) if p in installed)
    if not chosen:
        return installed
    return chosen + (("eng",) if "eng" in installed else ())


def page_text_from_words(data: dict, scale: float, size: tuple[int, int], text: str | None = None) -> PageText:
    """A PageText from Tesseract's `image_to_data` table.

    Args:
        data: columns block_num, par_num, line_num, left, top, width, height, conf, text (one row
            per word, in reading order; rows of other levels have conf -1).
        scale: how much the image Tesseract read was enlarged.
        size: (width, height) of the original image in pixels.
        text: Tesseract's plain-text output of the same run, which says where the spaces are: its
            word table cuts a Korean word into syllables (8 "words" for `코로나바이러스감염`) that
            the text writes joined. None: a space between every two words of a line.
    """
    width, height = size
    norm = np.array([width, height, width, height], dtype=np.float64) * scale
    builder = TextBuilder()
    line = None
    joined = _joined_to_previous(data["text"], text)
    for i, word in enumerate(data["text"]):
        word = (word or "").strip()
        if not word or float(data["conf"][i]) < MIN_WORD_CONFIDENCE:
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        if key != line:
            builder.separator("\n")
        elif not joined[i]:
            builder.separator(" ")
        line = key
        x0, y0 = float(data["left"][i]), float(data["top"][i])
        x1, y1 = x0 + float(data["width"][i]), y0 + float(data["height"][i])
        edges = np.linspace(x0, x1, len(word) + 1)
        boxes = np.stack([edges[:-1], np.full(len(word), y0), edges[1:], np.full(len(word), y1)], axis=1)
        if _right_to_left(word):
            boxes = boxes[::-1]  # the first character sits at the right end
        for ch, box in zip(word, boxes):
            builder.add(ch, tuple(np.clip(box / norm, 0.0, 1.0).tolist()))
    return builder.build(OCR)


def _joined_to_previous(words: list, text: str | None) -> list[bool]:
    """For each row of the word table: whether the plain text writes it right after the previous
    word, with no space (found by walking both in order; a word not found where expected, or no
    text at all, counts as spaced)."""
    joined = [False] * len(words)
    if not text:
        return joined
    position = 0
    for i, word in enumerate(words):
        word = (word or "").strip()
        if not word:
            continue
        found = text.find(word, position)
        if found < 0 or text[position:found].strip():  # not next in the text: leave the space
            continue
        joined[i] = found == position and position > 0
        position = found + len(word)
    return joined


def read_words(image: Image.Image, lang: str, config: str = "") -> tuple[dict, str]:
    """Tesseract's word table and plain text of one run (one recognition, two outputs): the table
    gives the boxes, the text the spacing between them (see `page_text_from_words`)."""
    from pathlib import Path

    from pytesseract import pytesseract as runner

    with runner.save(image) as (base, filename):
        runner.run_tesseract(filename, base, "txt", lang, config=f"-c tessedit_create_tsv=1 {config}".strip())
        table = Path(f"{base}.tsv").read_text(encoding="utf-8")
        text = Path(f"{base}.txt").read_text(encoding="utf-8")
    return runner.file_to_dict(table, "\t", -1), text


def _right_to_left(word: str) -> bool:
    """Whether most letters of a word are written right to left (Arabic, Hebrew)."""
    kinds = [unicodedata.bidirectional(ch) for ch in word if ch.isalpha()]
    return bool(kinds) and sum(k in ("R", "AL") for k in kinds) * 2 > len(kinds)
