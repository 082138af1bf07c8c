"""Smoke test of an installed vdr_app on the offline encoder `text-layout-minilm`.

Run on purpose, not part of the test suite: scripts/slim_image_smoke.sh runs it inside a minimal
Debian root built like the Docker image (python:3.11-slim + poppler-utils, no libGL), as the
non-root user, offline. It also runs on any install with the app's requirements:

    HF_HUB_OFFLINE=1 python scripts/slim_smoke.py --pdfs DIR [--real-scan SCAN.pdf] [--data-dir DIR]

DIR holds scan.pdf and report.pdf from tests/documents.py (`write_sample_documents(folder)` writes
them to folder/pdfs). It indexes the scan (image-only pages: OCR must read its words, printed here)
and the text PDF, searches, deletes a document, runs the command line on the same store, and
exits 1 if anything failed (each check prints PASS or FAIL).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

APP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(APP))

FAILURES: list[str] = []


def check(ok: bool, what: str) -> bool:
    print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    if not ok:
        FAILURES.append(what)
    return ok


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def show(label: str, text: str, limit: int = 0) -> None:
    words = text.split()
    shown = " ".join(words[:limit] if limit else words) + (f" … (+{len(words) - limit} words)" if limit and len(words) > limit else "")
    print(textwrap.fill(shown, width=110, initial_indent=f"    {label}: ", subsequent_indent="      "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", type=Path, required=True, help="folder with scan.pdf and report.pdf")
    parser.add_argument("--real-scan", type=Path, help="a real scanned PDF (e.g. the Slerexe fax letter)")
    parser.add_argument("--real-query", default="facsimile transmission", help="a query the real scan must win")
    parser.add_argument("--data-dir", type=Path, help="store folder (default: VDR_DATA_DIR)")
    args = parser.parse_args()
    timings: list[tuple[str, float]] = []

    def timed(name, fn, *a, **kw):
        start = time.perf_counter()
        result = fn(*a, **kw)
        timings.append((name, time.perf_counter() - start))
        return result

    print("== environment")
    print(f"  python {sys.version.split()[0]} at {sys.executable}; uid {os.getuid()}; HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')}")
    check(os.getuid() != 0, "runs as a non-root user")

    def imports():
        from importlib.metadata import version

        import cv2
        import onnxruntime
        import rapidocr
        import torch

        from vdr_app.torchvision_compat import ensure_torchvision

        tv = ensure_torchvision()
        import torchvision

        print(f"  torch {torch.__version__} (cuda build: {torch.version.cuda}); torchvision {torchvision.__version__} ({tv}); "
              f"opencv {cv2.__version__}; onnxruntime {onnxruntime.__version__}; rapidocr {version('rapidocr')}")
        return torch

    torch = timed("import torch, torchvision, cv2, onnxruntime, rapidocr", imports)
    check(torch.__version__.startswith("2.13.0"), f"torch 2.13.0 ({torch.__version__})")
    try:
        timed("import the web app (gradio, vdr_app.ui)", __import__, "vdr_app.ui")
        check(True, "the web app's modules import (gradio)")
    except Exception as error:
        check(False, f"the web app's modules import: {type(error).__name__}: {error}")

    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.models.text_layout import ocr as ocr_module

    settings = dataclasses.replace(Settings.from_env(), model="text-layout-minilm")
    if args.data_dir:
        settings = dataclasses.replace(settings, data_dir=args.data_dir)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    engine = Engine(settings)
    print(f"  store {settings.store_file}")

    print("== encoder and OCR")
    encoder = timed("load text-layout-minilm", lambda: engine.encoder)
    reason = timed("load the OCR engine (RapidOCR)", encoder.check_ocr)
    check(reason is None, f"OCR engine loads ({reason or 'ok'})")

    # Record what OCR reads during indexing (the reader looks ocr_image up on the module each call).
    read_by_ocr: list = []
    original = ocr_module.ocr_image

    def recording(image):
        page = original(image)
        read_by_ocr.append(page)
        return page

    ocr_module.ocr_image = recording

    def add(path: Path):
        before = len(read_by_ocr)
        result = timed(f"index {path.name}", engine.add_files, [path], progress=lambda f, m: None)[0]
        pages = engine.pages(result.doc_id)
        print(f"  {path.name}: doc {result.doc_id}, {result.n_pages} pages, added={result.added}")
        for row in pages:
            info = row.info
            print(f"    page {row.page_number}: text_source={info.get('text_source')} no_text={info.get('no_text')} "
                  f"tokens={info.get('n_tokens')} ocr_seconds={info.get('ocr_seconds')}"
                  + (f" ocr_unavailable={info['ocr_unavailable']}" if info.get("ocr_unavailable") else "")
                  + (f" ocr_error={info['ocr_error']}" if info.get("ocr_error") else ""))
        missing, why = engine.pages_without_text(result.doc_id)
        check(not missing, f"{path.name}: every page has text (without: {missing}{'; ' + why if why else ''})")
        return result, pages, read_by_ocr[before:]

    print("== index the scan (image-only pages: OCR)")
    from tests.documents import SCAN_PAGES

    scan, scan_pages, scan_ocr = add(args.pdfs / "scan.pdf")
    check(len(scan_ocr) == len(SCAN_PAGES), f"OCR ran on each of the {len(SCAN_PAGES)} scanned pages ({len(scan_ocr)} runs)")
    check(all(r.info.get("text_source") == "ocr" for r in scan_pages), "every scanned page's text came from OCR")
    for number, (expected_lines, page) in enumerate(zip(SCAN_PAGES, scan_ocr), 1):
        show(f"page {number} OCR words", " ".join(w.text for w in page.words()))
        expected = words_of(" ".join(expected_lines))
        found = set(words_of(page.text))
        lost = [w for w in expected if w not in found]
        check(len(lost) <= len(expected) // 10, f"scan page {number}: OCR found {len(expected) - len(lost)}/{len(expected)} "
              f"expected words{' (missed: ' + ', '.join(lost) + ')' if lost else ''}")

    print("== index the text PDF (text layer)")
    report, report_pages, report_ocr = add(args.pdfs / "report.pdf")
    check(not report_ocr, "no OCR on pages with a text layer")
    check(all(r.info.get("text_source") == "text-layer" for r in report_pages), "every report page read from its text layer")

    real = None
    if args.real_scan:
        print(f"== index a real scan: {args.real_scan.name}")
        real, real_pages, real_ocr = add(args.real_scan)
        check(bool(real_ocr) and all(r.info.get("text_source") == "ocr" for r in real_pages), "its pages were read by OCR")
        for page in real_ocr:
            show("OCR words", " ".join(w.text for w in page.words()), limit=120)
            check(len(page.words()) >= 50, f"OCR read {len(page.words())} words on the page (at least 50)")

    print("== search")
    queries = [
        ("invoice for steel pipes", "scan.pdf", 1),
        ("fire drills and helmets on site", "scan.pdf", 2),
        ("customs penalty fine for the importer", "scan.pdf", 3),
        ("revenue by region", "report.pdf", 1),
        ("employees per office", "report.pdf", 2),
    ]
    if real:
        queries.append((args.real_query, args.real_scan.name, 1))
    for query, doc, page in queries:
        hits = timed(f"search {query!r}", engine.search, query, k=3)
        print(f"  {query!r}")
        for hit in hits:
            print(f"    {hit.rank}. {hit.doc_name} p{hit.page_number}  score {hit.score:.3f}")
        top = hits[0] if hits else None
        check(top is not None and (top.doc_name, top.page_number) == (doc, page), f"top hit is {doc} p{page}")

    print("== delete report.pdf")
    timed("delete a document", engine.delete_document, "report.pdf")
    names = [d.name for d in engine.list_documents()]
    print(f"  documents left: {names}")
    check("report.pdf" not in names and "scan.pdf" in names, "report.pdf is gone, scan.pdf stays")
    hits = engine.search("revenue by region", k=5)
    check(all(h.doc_name != "report.pdf" for h in hits), "no hit from the deleted document")
    stats = engine.stats()
    print(f"  stats: { {k: v for k, v in stats.items() if not isinstance(v, (list, dict))} }")

    print("== the command line on the same store")
    base = [sys.executable, "-m", "vdr_app", "--model", "text-layout-minilm", "--store", str(settings.store_file)]
    for argv in (["list"], ["search", "steel pipes invoice", "-k", "2"]):
        start = time.perf_counter()
        done = subprocess.run(base + argv, cwd=APP, capture_output=True, text=True)
        timings.append((f"CLI {' '.join(argv)}", time.perf_counter() - start))
        print(textwrap.indent((done.stdout + done.stderr).rstrip(), "    "))
        check(done.returncode == 0, f"python -m vdr_app {' '.join(argv)} exits 0 (got {done.returncode})")

    print("== timings (seconds)")
    for name, seconds in timings:
        print(f"  {seconds:7.2f}  {name}")
    if FAILURES:
        print(f"SMOKE FAILED: {len(FAILURES)} check(s):")
        for what in FAILURES:
            print(f"  - {what}")
        return 1
    print("SMOKE PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
