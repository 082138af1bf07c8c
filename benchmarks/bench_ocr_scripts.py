"""Words read by OCR per script: RapidOCR's bundled model alone against the app's OCR (RapidOCR, then
Tesseract with the installed script packs where RapidOCR leaves lines unread).

For every page: Latin, Cyrillic, Arabic and Hangul words (a word counts for a script when it
holds one of its letters), CJK characters (CJK has no spaces between words), which reading the app
kept, and the seconds each took. Pages: the image-only pages drawn by tests/test_ocr_scripts.py
(their words are known: the count to reach is printed), the corpus scans (PDFs without a text
layer), and corpus PDFs WITH a text layer read as if scanned (`TEXT_LAYER_AS_SCAN`: the page image
only, the layer dropped), whose layer's words are the answer: for those, the words of each script
in the layer and how many of them the OCR read (the same word, letters and digits compared, each
occurrence counted once). All rendered at the app's 120 dpi.

    python -m benchmarks.bench_ocr_scripts [--corpus DIR] [--only SUBSTRING ...] [--no-corpus]

Figures are in docs/ocr.md. Timings on a shared machine are noisy: say the load next to them.
"""

from __future__ import annotations

import argparse
import os
import time
import unicodedata
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANS = [
    "vehicle-inspection-card-scan-ru.pdf",
    "customs-penalty-decision-scan-zh.pdf",
    "rohrbuch-pipe-log-scan-de.pdf",
    "grumman-service-accessory-kit-1974-scan.pdf",
    "slerexe-fax-letter-scan.pdf",
    "linn-sequencer-brochure-scan.pdf",
]
# Text-layer PDFs in a script no scan of the corpus has, read from their image as if scanned.
TEXT_LAYER_AS_SCAN = [
    "korean-insurance-covid-issue-brief-ko.pdf",
]
SCRIPTS = ("LATIN", "CYRILLIC", "ARABIC", "HANGUL")


def default_corpus() -> Path:
    env = os.environ.get("VDR_CORPUS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "corpus"


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    return next((s for s in SCRIPTS + ("CJK",) if s in name), None)


def words_per_script(text: str) -> dict[str, int]:
    """{"latin": words, "cyrillic": words, "arabic": words, "hangul": words, "cjk": characters}."""
    counts = dict.fromkeys(("latin", "cyrillic", "arabic", "hangul", "cjk"), 0)
    for word in text.split():
        scripts = {_script(ch) for ch in word if ch.isalpha()}
        for script in SCRIPTS:
            counts[script.lower()] += script in scripts
        counts["cjk"] += sum(_script(ch) == "CJK" for ch in word)
    return counts


def _row(name: str, page, seconds: float) -> str:
    counts = words_per_script(page.text)
    cells = " ".join(f"{k} {v:4d}" for k, v in counts.items())
    return f"{name:44s} {page.info.get('ocr_engine', '-'):28s} {cells}  {seconds:6.1f} s"


def words_found(truth: str, read: str) -> dict[str, tuple[int, int]]:
    """{script: (words of `truth` in that script, how many of them `read` holds)}: words compared
    on their letters and digits (punctuation and spacing aside), each occurrence counted once."""
    def bag(text: str, script: str) -> Counter:
        words = ("".join(ch for ch in word if ch.isalnum()) for word in text.split())
        return Counter(w for w in words if w and any(_script(ch) == script for ch in w if ch.isalpha()))

    found = {}
    for script in SCRIPTS:
        want, got = bag(truth, script), bag(read, script)
        if want:
            found[script.lower()] = (sum(want.values()), sum((want & got).values()))
    return found


def measure(name: str, image, truth: str | None = None) -> None:
    from vdr_app.models.text_layout import ocr

    start = time.perf_counter()
    alone = ocr.read_with_rapidocr(image)
    print(_row(name + " rapidocr alone", alone, time.perf_counter() - start), flush=True)
    start = time.perf_counter()
    app = ocr.ocr_image(image)
    print(_row(name + " app", app, time.perf_counter() - start), flush=True)
    if truth is not None:
        for label, page in (("rapidocr alone", alone), ("app", app)):
            cells = "  ".join(f"{script} {found}/{total} ({found / total:.0%})"
                              for script, (total, found) in words_found(truth, page.text).items())
            print(f"{name + ' ' + label:44s} words of the text layer read: {cells}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--only", nargs="*", default=[], help="corpus files whose name holds one of these")
    parser.add_argument("--no-corpus", action="store_true", help="drawn pages only")
    args = parser.parse_args()

    from tests.test_ocr_scripts import PAGES, scan_page
    from vdr_app.models.text_layout import tesseract
    from vdr_app.models.text_layout.reader import read_page_text
    from vdr_app.pdf import PdfLimits, render_pdf

    print(f"tesseract packs: {'+'.join(tesseract.languages()) or tesseract.unavailable_reason()}; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for script, lines in PAGES.items():
        print(f"drawn {script}: {words_per_script(' '.join(lines))} to read")
        measure(f"drawn-{script}", scan_page(script).image)
    if args.no_corpus:
        return
    for name in SCANS:
        if args.only and not any(part in name for part in args.only):
            continue
        for page in render_pdf((args.corpus / "pdfs" / name).read_bytes(), name, PdfLimits(dpi=120)):
            measure(f"{name.removesuffix('.pdf')}#{page.page_number}", page.image)
    for name in TEXT_LAYER_AS_SCAN:
        if args.only and not any(part in name for part in args.only):
            continue
        for page in render_pdf((args.corpus / "pdfs" / name).read_bytes(), name, PdfLimits(dpi=120)):
            layer = read_page_text(page, ocr=False)
            assert layer.source != "ocr"
            print(f"{name}#{page.page_number} text layer: {words_per_script(layer.text)}")
            measure(f"{name.removesuffix('.pdf')}#{page.page_number} as scan", page.image, truth=layer.text)


if __name__ == "__main__":
    main()
