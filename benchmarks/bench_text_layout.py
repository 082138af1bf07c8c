"""Index the whole corpus with the text-layout encoder, from a fresh store, through the engine.

Prints: model load time, pages/s overall, seconds spent on the scans (PDFs without a text layer,
read by OCR), peak RSS, store size, where each page's text came from, and the self-retrieval
rank-1 rate: for every text-layer page, a 6-word phrase from the middle of its text that no other
page contains is searched with `Engine.search`; a hit is that page ranked first.

    python -m benchmarks.bench_text_layout [--corpus DIR] [--dpi 120] [--threads N] [--no-ocr]

The corpus defaults to $VDR_CORPUS_DIR or ../shared/corpus next to the repository. Timings on a
shared machine are noisy: run it alone for figures worth quoting.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path

from vdr_app.evaluate import distinctive_phrase

REPO = Path(__file__).resolve().parents[1]


def default_corpus() -> Path:
    env = os.environ.get("VDR_CORPUS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "corpus"


def self_retrieval(engine, pdfs: list[Path]) -> tuple[int, int, list[str]]:
    """(hits, queries, misses) of phrase queries from text-layer pages, through Engine.search."""
    from vdr_app.models.text_layout.text_layer import PdfDocuments, read_text_layer

    documents = PdfDocuments()
    texts: dict[tuple[str, int], list[str]] = {}
    for path in pdfs:
        document = documents.get(path.read_bytes())
        for number in range(1, len(document) + 1):
            texts[(path.name, number)] = [w.text for w in read_text_layer(document, number).words()]
    rows = {(r.doc_name, r.page_number): r for r in engine.pages()}
    flat = {key: " ".join(words).lower() for key, words in texts.items()}
    hits, total, misses = 0, 0, []
    for key, words in texts.items():
        if rows[key].info.get("text_source") != "text-layer":
            continue
        phrase = distinctive_phrase(words, [text for other, text in flat.items() if other != key])
        if phrase is None:
            continue
        total += 1
        top = engine.search(phrase, k=1)
        if top and (top[0].doc_name, top[0].page_number) == key:
            hits += 1
        else:
            misses.append(f"{key[0]}#{key[1]}: {phrase!r}")
    return hits, total, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--dpi", type=int, default=120)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-ocr", action="store_true", help="mark pages without a text layer as no_text")
    parser.add_argument("--no-eval", action="store_true", help="skip the self-retrieval queries")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.models.text_layout import load

    if args.threads:
        torch.set_num_threads(args.threads)
    pdfs = sorted((args.corpus / "pdfs").glob("*.pdf"))
    if not pdfs:
        raise SystemExit(f"no PDFs under {args.corpus / 'pdfs'}")
    start = time.perf_counter()
    encoder = load(device="cpu", ocr=not args.no_ocr)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="vdr_bench_") as tmp:
        settings = Settings(data_dir=Path(tmp), store_path=Path(tmp) / "store.sqlite", dpi=args.dpi)
        engine = Engine(settings, encoder=encoder)
        per_doc: dict[str, float] = {}
        start = time.perf_counter()
        for path in pdfs:
            t = time.perf_counter()
            engine.add_pdf(path.read_bytes(), path.name)
            per_doc[path.name] = time.perf_counter() - t
        index_s = time.perf_counter() - start
        rows = engine.pages()
        sources = Counter(r.info.get("text_source") for r in rows)
        ocr_docs = {r.doc_name for r in rows if r.info.get("text_source") == "ocr"}
        scans = {
            name for name in ocr_docs
            if all(r.info.get("text_source") != "text-layer" for r in rows if r.doc_name == name)
        }
        ocr_s = sum(r.info.get("ocr_seconds") or 0.0 for r in rows)
        patches = [r.info.get("n_tokens", 0) for r in rows]
        engine.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store_path = settings.store_file
        store_bytes = store_path.stat().st_size
        conn = sqlite3.connect(store_path)
        try:
            tables = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        except sqlite3.DatabaseError:
            tables = {}
        conn.close()
        n_vectors = sum(engine.store.page_embedding(r.id).n_patches for r in rows)
        eval_line = "skipped"
        if not args.no_eval:
            t = time.perf_counter()
            hits, total, misses = self_retrieval(engine, pdfs)
            seconds = time.perf_counter() - t
            eval_line = f"{hits}/{total} = {hits / max(total, 1):.1%} rank-1 ({seconds:.1f} s for {total} searches)"
            for miss in misses[:20]:
                print("  miss:", miss)
        engine.store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(rows)
    print(f"corpus: {len(pdfs)} PDFs, {n} pages at {args.dpi} dpi; torch threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"model load: {load_s:.1f} s")
    print(f"indexed in {index_s:.1f} s = {n / index_s:.2f} pages/s (render + text/OCR + MiniLM + store)")
    print(f"scans ({len(scans)} PDFs, {sum(r.doc_name in scans for r in rows)} pages): "
          f"{sum(per_doc[s] for s in scans):.1f} s; OCR itself on all {sources.get('ocr', 0)} OCR pages: {ocr_s:.1f} s")
    print(f"text-layer PDFs: {sum(v for k, v in per_doc.items() if k not in scans):.1f} s")
    print(f"text sources: {dict(sources)}; no_text pages: {sum(bool(r.info.get('no_text')) for r in rows)}")
    print(f"tokens: {sum(patches)} total; stored vectors: {n_vectors} ({n_vectors / n:.0f} per page, d={encoder.dim})")
    print(f"store: {store_bytes / 2**20:.1f} MiB on disk; by table (MiB): "
          + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in sorted(tables.items(), key=lambda kv: -kv[1])[:4]))
    print(f"peak RSS: {peak_mb:.0f} MiB")
    print(f"self-retrieval: {eval_line}")
    slow = sorted(per_doc.items(), key=lambda kv: -kv[1])[:5]
    print("slowest PDFs: " + ", ".join(f"{k} {v:.1f} s" for k, v in slow))


if __name__ == "__main__":
    main()
