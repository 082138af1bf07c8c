"""The best text available for a page: its PDF text layer, else OCR of its image, else none.

Pages whose text layer is missing or nearly empty (scans, screenshots on slides) are read by OCR
from the rendered image; a page where neither yields text is marked `source="none"`, with the
reason in its info (OCR off, OCR unavailable, nothing read).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...types import PageImage
from . import ocr as ocr_module
from .page_text import NO_TEXT, PageText
from .text_layer import PdfDocuments, read_text_layer

log = logging.getLogger(__name__)

# Fewer letters/digits than this on the text layer and the page is treated as a scan or a
# picture: OCR is tried and wins if it reads more. Slides with a one-word title over a screenshot
# of code are the common case; 20 keeps real short pages (a cover with a title) on the text layer
# unless OCR finds more.
MIN_TEXT_LAYER_CHARS = 20

# OCR reading fewer letters/digits than this found noise (a drawn box read as "口"), not text.
MIN_OCR_CHARS = 2

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
    if on_ocr is not None:
        on_ocr()
    try:
        scanned = ocr_module.ocr_image(page.image)
    except ocr_module.OcrUnavailable as error:  # said once at load; recorded on every page it costs
        info["ocr_unavailable"] = str(error)
        scanned = PageText(source=NO_TEXT)
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
