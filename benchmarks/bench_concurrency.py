#!/usr/bin/env python3
"""Searches during an upload: 50 searches from 10 threads while a 20-page PDF is being encoded.

For each encoder (a tiny random ColQwen2 checkpoint and text-layout-minilm): index a 2-page PDF,
time 50 searches alone (10 threads x 5), then start adding a 20-page PDF and, once it is inside
the encoder, run the same 50 searches. Prints failures, p50/p95/max latency of both runs, how many
searches finished while the upload was still encoding, and the upload's own time.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.bench_concurrency [--encoders colqwen2,text-layout-minilm]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vdr_app.torchvision_compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

from vdr_app.config import Settings  # noqa: E402
from vdr_app.engine import Engine  # noqa: E402

WORDS = "revenue region quarterly costs invoice pressure membership figure accuracy table contents agreement".split()


def pdf(n_pages: int, seed: int) -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=(595, 842))
    for page in range(n_pages):
        c.setFont("Helvetica", 11)
        for line in range(40):
            words = " ".join(WORDS[(seed + page * 7 + line + k) % len(WORDS)] for k in range(8))
            c.drawString(50, 800 - 19 * line, f"{page + 1}.{line} {words}")
        c.rect(100 + 10 * page, 200, 200, 120, fill=1)
        c.showPage()
    c.save()
    return buffer.getvalue()


def searches(engine: Engine, threads: int, per_thread: int):
    latencies, failures = [], []
    lock = threading.Lock()

    def worker(t: int):
        for i in range(per_thread):
            start = time.perf_counter()
            try:
                hits = engine.search(f"{WORDS[(t + i) % len(WORDS)]} {WORDS[(t * 3 + i) % len(WORDS)]}", k=5)
                assert hits, "no hits"
            except Exception as error:  # noqa: BLE001 - counted and reported
                with lock:
                    failures.append(f"{type(error).__name__}: {error}")
                continue
            with lock:
                latencies.append((time.perf_counter() - start, time.perf_counter()))

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, range(threads)))
    return latencies, failures


def figures(latencies) -> str:
    ms = sorted(l * 1000 for l, _ in latencies)
    if not ms:
        return "no successful search"
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms"


def run(model: str, args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if model in ("colqwen2", "colqwen2.5", "colidefics3", "colpali"):
            from vdr_app.checkpoints.tiny import build_tiny_checkpoint

            model = str(build_tiny_checkpoint(model, Path(tmp) / "tiny"))
        settings = Settings(model=model, data_dir=Path(tmp) / "data", dpi=args.dpi, device="cpu")
        engine = Engine(settings)
        engine.add_pdf(pdf(2, 1), "seed.pdf")
        engine.search("warm up", k=5)
        alone, alone_failed = searches(engine, args.threads, args.per_thread)

        inside = threading.Event()
        upload: dict = {}

        def progress(fraction, message):
            if fraction >= 0.1:
                inside.set()

        def add():
            start = time.perf_counter()
            try:
                upload["result"] = engine.add_pdf(pdf(args.pages, 2), "upload.pdf", progress)
            except Exception as error:  # noqa: BLE001
                upload["error"] = f"{type(error).__name__}: {error}"
            upload["seconds"] = time.perf_counter() - start
            upload["end"] = time.perf_counter()

        thread = threading.Thread(target=add)
        thread.start()
        inside.wait(600)
        during, during_failed = searches(engine, args.threads, args.per_thread)
        thread.join()
        overlapped = sum(1 for _, end in during if end < upload["end"])
        print(f"{Path(engine.encoder.model_id).name:22} alone : {len(alone_failed)} failed / {len(alone) + len(alone_failed)}"
              f"  {figures(alone)}")
        print(f"{'':22} during: {len(during_failed)} failed / {len(during) + len(during_failed)}  {figures(during)}"
              f"  ({overlapped} finished while the upload ran)")
        print(f"{'':22} upload: {args.pages} pages, {'failed: ' + upload['error'] if 'error' in upload else 'ok'}"
              f" in {upload['seconds']:.1f} s; pages now {len(engine.store.page_ids())}")
        for message in sorted(set(alone_failed + during_failed))[:5]:
            print(f"{'':22} failure: {message}")
        engine.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="colqwen2,text-layout-minilm")
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--per-thread", type=int, default=5)
    parser.add_argument("--dpi", type=int, default=72)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    for model in args.encoders.split(","):
        run(model, args)


if __name__ == "__main__":
    main()
