#!/usr/bin/env python3
"""Memory and disk of public-demo visitor libraries (vdr_app.sessions).

Builds a sample store (a --pages-page PDF, tiny colSmol checkpoint), then opens --visitors
libraries the way the app does, each searching once (every --writer-every-th visitor also adds a
one-page PDF), and prints the process RSS before and after, the session folders and their bytes,
and what is left on disk after `close_all` (the app stopping).

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.bench_visitors [--visitors 50] [--pages 3]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.bench_session_memory import rss_mb  # noqa: E402  (one reading of RSS for both benchmarks)


def pdf(pages: int, text: str) -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    c = canvas.Canvas(buffer)
    for page in range(pages):
        c.drawString(72, 700, f"{text} page {page} quarterly revenue by region")
        c.showPage()
    c.save()
    return buffer.getvalue()


def folder_bytes(root: Path) -> tuple[int, int]:
    folders = [p for p in root.glob("session-*") if p.is_dir()]
    return len(folders), sum(f.stat().st_size for p in folders for f in p.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=50)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--writer-every", type=int, default=10)
    args = parser.parse_args()

    from vdr_app.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.checkpoints.tiny import build_tiny_checkpoint
    from vdr_app.sessions import SessionLibraries
    from vdr_app.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_checkpoint("colidefics3", tmp / "tiny")
        settings = Settings(model=str(model), data_dir=tmp / "data", dpi=60)
        sample = Engine(settings)
        sample.add_pdf(pdf(args.pages, "sample"), "sample.pdf")
        sample.store.close()
        base = Engine(settings, encoder=sample.encoder, store=Store(":memory:"))
        base.encode_query("warm up")
        libraries = SessionLibraries(base, tmp / "sessions", sample_store=settings.store_file,
                                     max_libraries=args.visitors)
        libraries.get("warm-up").engine.search("revenue", k=3)
        libraries.end("warm-up")
        before = rss_mb()
        for i in range(args.visitors):
            engine = libraries.get(f"visitor-{i}").engine
            engine.search("revenue", k=3)
            if args.writer_every and i % args.writer_every == 0:
                engine.add_pdf(pdf(1, f"visitor {i}"), f"visitor-{i}.pdf")
        after = rss_mb()
        n, size = folder_bytes(tmp / "sessions")
        print(f"{args.visitors} visitors on a {args.pages}-page sample "
              f"({args.visitors // args.writer_every if args.writer_every else 0} of them uploaded a page)")
        print(f"RSS before {before:.0f} MB, after {after:.0f} MB: +{after - before:.0f} MB "
              f"({(after - before) / args.visitors:.2f} MB per visitor)")
        print(f"session folders: {n}, {size / 1e6:.1f} MB")
        libraries.close_all()
        n, size = folder_bytes(tmp / "sessions")
        print(f"after close_all (the app stopping): {n} folders, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
