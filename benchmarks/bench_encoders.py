#!/usr/bin/env python3
"""Time the encoders of every family on their tiny random checkpoints (offline, CPU by default).

What it measures: the app's own per-page cost around the model (preprocessing, geometry,
attention capture, splitting into PageEmbedding) plus a tiny model's forward. It says nothing
about real checkpoint speed (real ColQwen2 has ~2B parameters, these ~200k).

For each family: build the tiny checkpoint in a temp folder, load it, warm up on one page, then
encode --pages A4 pages (827x1170 px, about 100 dpi) in batches of --batch-size, --repeats times;
the median seconds per page is printed, split into processor (image preprocessing + tokenising)
and the rest (forward + hook + numpy). Queries: 8 short queries, median seconds per query.

Usage (from the repository root):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_encoders.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_encoders.py --families colqwen2,colidefics3 --device cuda
The host is shared: the load average at the start of each family is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vdr_app.torchvision_compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

from PIL import Image, ImageDraw  # noqa: E402

from vdr_app.models import load_encoder  # noqa: E402
from vdr_app.models.tiny import BUILDERS, build_tiny_checkpoint  # noqa: E402
from vdr_app.types import PageImage  # noqa: E402

QUERIES = [
    "revenue growth by region",
    "bar chart of quarterly sales",
    "who signed the agreement",
    "maximum operating pressure",
    "table of contents",
    "invoice total amount due",
    "figure 3 accuracy",
    "membership fee",
]


def page(i: int) -> PageImage:
    image = Image.new("RGB", (827, 1170), "white")
    draw = ImageDraw.Draw(image)
    for line in range(30):
        draw.text((60, 60 + 35 * line), f"page {i} line {line}: some text to look at", fill="black")
    draw.rectangle([100 + 20 * i, 700, 500, 900], fill=(40, 90, 200))
    return PageImage(image, page_number=i + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(BUILDERS))
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    pages = [page(i) for i in range(args.pages)]
    print(f"torch threads {torch.get_num_threads()}, device {args.device}, {args.pages} A4 pages 827x1170")
    print(f"{'family':15} {'tokens/page':>11} {'s/page':>8} {'processor':>9} {'s/query':>8}  load avg")
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            folder = build_tiny_checkpoint(family, Path(tmp) / family)
            encoder = load_encoder(str(folder), device=args.device, batch_size=args.batch_size)
            encoder.encode_pages(pages[:1])
            encoder.encode_queries(QUERIES[:1])
            load = os.getloadavg()[0]
            per_page, per_query, processor = [], [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = encoder.encode_pages(pages)
                per_page.append((time.perf_counter() - start) / len(pages))
                start = time.perf_counter()
                for i in range(0, len(pages), args.batch_size):
                    encoder.processor.process_images([p.image for p in pages[i : i + args.batch_size]])
                processor.append((time.perf_counter() - start) / len(pages))
                start = time.perf_counter()
                encoder.encode_queries(QUERIES)
                per_query.append((time.perf_counter() - start) / len(QUERIES))
            print(
                f"{family:15} {out[0].n_patches:>11} {statistics.median(per_page):>8.3f} "
                f"{statistics.median(processor):>9.3f} {statistics.median(per_query):>8.4f}  {load:.1f}"
            )


if __name__ == "__main__":
    main()
