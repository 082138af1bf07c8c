#!/usr/bin/env python3
"""What capturing SAP's per-layer centrality costs at encode time, per family (offline, CPU).

For each encoder the same pages are encoded twice in one process, alternating, --repeats times:
    capture   the default: every decoder layer also computes the in-degree of each image token
              (`vdr_app.models.centrality`)
    off       the same loaded model with the centrality capture closed (the final-row attention
              is still captured, so the difference is the centrality alone)
Each row: CPU seconds per page (all threads; steadier than wall time on a shared host; median
over repeats) for both, and the capture's share of the forward: (capture - off) / off.

Encoders: the tiny test checkpoints of every family (--size tiny; their forward is negligible, so
this is the capture's cost against almost nothing), the published architectures with random
weights (--size full, `vdr_app.checkpoints.fullsize`; colSmol-256M fits a laptop, the 3B ones need
~8-12 GB), and `text-layout-minilm` (--text-layout). For the 3B architectures the script also
prints the capture's FLOPs against the forward's (2 x parameters x tokens), which is what decides
it on a GPU.

Pages: the first --pages A4 pages of the corpus ($VDR_CORPUS_DIR, default ../shared/corpus).

--osr STORE --labels FILE: the paper's Oracle Score Retention diagnostic on a labelled corpus
stored with centrality, computed by the engine (`vdr_app.reduce.sap_window`, what `vdr_app
sap-window` records): for each window of layers, keep the top `keep` share of each relevant page's
patches by the window's mean centrality and report
    OSR = mean over (query, relevant page) of  sum_i max_{v kept} q_i.v / sum_i max_{v all} q_i.v
(how much of the page's own MaxSim score survives) for every single layer, the middle band, the
best windows and random pruning (5 seeds); then the held-out check: the window chosen on one half
of the queries, its OSR on the other half, beside the band's and random's there.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.bench_sap --size tiny --pages 4
    .venv/bin/python -m benchmarks.bench_sap --size full --families colidefics3 --pages 2
    .venv/bin/python -m benchmarks.bench_sap --text-layout --pages 8
    .venv/bin/python -m benchmarks.bench_sap --flops
    .venv/bin/python -m benchmarks.bench_sap --size none --osr /tmp/eval.sqlite \
        --labels eval/corpus_labels.jsonl --model text-layout-minilm --keep 0.11 0.04
The host may be shared: `uptime` is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vdr_app.torchvision_compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

from benchmarks.bench_encoders import a4_pages  # noqa: E402

TINY = ["colpali", "colqwen2", "colqwen2.5", "colidefics3"]
# (decoder layers, heads, head dim, image tokens, sequence length, parameters) of the published
# architectures at the sizes the README uses (ColPali 448 px; ColQwen2.5 and colSmol on an A4 page).
ARCHITECTURES = {
    "colpali-v1.3 (PaliGemma-3B)": (18, 8, 256, 1024, 1030, 2.92e9),
    "colqwen2.5-v0.2 (Qwen2.5-VL-3B)": (36, 16, 128, 768, 790, 3.75e9),
    "colSmol-256M (SmolVLM-256M)": (30, 9, 64, 1088, 1110, 2.56e8),
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_per_page(encode, pages, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.process_time()
        encode(pages)
        out.append((time.process_time() - start) / len(pages))
    return out


def measure(name: str, encoder, pages, repeats: int, switch) -> dict:
    """Alternate capture on / off on the same model and pages; `switch(encoder, on)` toggles it."""
    encoder.encode_pages(pages[:1])  # warm-up (lazy imports, allocator)
    on, off = [], []
    for _ in range(repeats):
        switch(encoder, True)
        on += cpu_per_page(encoder.encode_pages, pages, 1)
        switch(encoder, False)
        off += cpu_per_page(encoder.encode_pages, pages, 1)
    switch(encoder, True)
    a, b = min(on), min(off)  # best of N: what interference from other processes cannot inflate (timeit)
    return dict(encoder=name, capture_s=a, off_s=b, share=(a - b) / b)


def colvision_switch(layers: int):
    def switch(encoder, on: bool) -> None:
        encoder.centrality_layers = layers if on else 0  # 0: the capture is not opened

    return switch


def text_layout_switch(encoder, on: bool) -> None:
    encoder.capture_centrality = on  # off: the same forward with the last layer's [CLS] row only


def flops_table() -> None:
    print("\ncapture FLOPs against the forward's (2 x parameters x tokens), per page:")
    print(f"{'architecture':34} {'forward GFLOP':>14} {'capture GFLOP':>14} {'share':>7}")
    for name, (layers, heads, dim, n, length, params) in ARCHITECTURES.items():
        forward = 2 * params * length
        # per layer: q.K^T for the image rows (2·H·n·L·D), softmax and the sums (~5·H·n·L)
        capture = layers * (2 * heads * n * length * dim + 5 * heads * n * length)
        print(f"{name:34} {forward / 1e9:14.0f} {capture / 1e9:14.1f} {capture / forward:7.2%}")


def osr_table(store_path: str, labels_path: str, model: str, keeps: list[float]) -> None:
    """The engine's score-retention table (`vdr_app sap-window --dry-run` prints the same), then the
    held-out check: 2 folds of queries, the window chosen on one fold and its OSR read on the other."""
    import dataclasses

    import numpy as np

    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.evaluate import load_labels, stored_page_counts
    from vdr_app.evaluate.sap_window import folds_of, labelled_pairs, osr_lines
    from vdr_app.reduce.sap import middle_window
    from vdr_app.reduce.sap_window import choose_window, random_retention, window_retention

    settings = dataclasses.replace(Settings.from_env(), store_path=Path(store_path), model=model, model_given=True)
    engine = Engine(settings)
    labels = load_labels(labels_path, stored_page_counts(engine))
    groups = labelled_pairs(engine, labels)
    pairs = [p for g in groups for p in g]
    choice = choose_window(pairs, keeps)
    print(f"\nOracle Score Retention over {choice.pairs} labelled (query, page) pairs, {model}, "
          f"{choice.n_layers} layers:")
    print("\n".join(osr_lines(choice, random_retention(pairs, keeps))))
    print(choice.reason)
    fold = folds_of(len(groups))
    print("\nheld out (2 folds of queries, seed 0): the window chosen on one fold, its OSR on the other")
    print(f"{'fold':6} {'chosen':>7}" + "".join(f"{f'keep {k:g}':>11}" for k in keeps)
          + f"{'mean':>8} {'band':>8} {'random':>8}")
    band = middle_window(choice.n_layers)
    for k in range(2):
        train = [p for g, f in zip(groups, fold) if f != k for p in g]
        test = [p for g, f in zip(groups, fold) if f == k for p in g]
        chosen = choose_window(train, keeps)
        on_test = window_retention(test, keeps, [chosen.window, band])
        values = on_test[chosen.window]
        print(f"{k + 1:<6} {chosen.layers:>7}" + "".join(f"{v:11.1%}" for v in values)
              + f"{np.mean(values):8.1%} {np.mean(on_test[band]):8.1%} {np.mean(random_retention(test, keeps)):8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "full", "none"], default="tiny")
    parser.add_argument("--families", default=",".join(TINY))
    parser.add_argument("--text-layout", action="store_true", help="also text-layout-minilm")
    parser.add_argument("--flops", action="store_true", help="print the FLOP estimate for the published sizes")
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--osr", metavar="STORE", help="a store of the labelled corpus, encoded with centrality")
    parser.add_argument("--labels", default="eval/corpus_labels.jsonl")
    parser.add_argument("--model", default="text-layout-minilm", help="the store's encoder (for the queries)")
    parser.add_argument("--keep", type=float, nargs="+", default=[0.25, 0.11, 0.04])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    corpus = Path(os.environ.get("VDR_CORPUS_DIR", "../shared/corpus"))
    print("before:", uptime())
    rows = []
    if args.size != "none" or args.text_layout:
        pages = a4_pages(args.pages, corpus)
    if args.size != "none":
        from vdr_app.models.registry import load_encoder

        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            with tempfile.TemporaryDirectory() as folder:
                if args.size == "tiny":
                    from vdr_app.checkpoints.tiny import build_tiny_checkpoint

                    build_tiny_checkpoint(family, folder)
                else:
                    from vdr_app.checkpoints.fullsize import build_full_checkpoint

                    build_full_checkpoint(family, folder, dtype="float32")
                encoder = load_encoder(folder, device="cpu", batch_size=1, dtype="float32")
                layers = encoder.centrality_layers
                rows.append(measure(f"{family} ({args.size}, {layers} layers)", encoder, pages, args.repeats,
                                    colvision_switch(layers)))
                del encoder
    if args.text_layout:
        from vdr_app.models.text_layout.encoder import load

        encoder = load(device="cpu", batch_size=1, ocr=False)
        rows.append(measure(f"text-layout-minilm ({encoder.n_layers} layers)", encoder, pages, args.repeats,
                            text_layout_switch))
    if rows:
        print(f"\n{'encoder':40} {'capture s/page':>15} {'off s/page':>11} {'capture share':>14}")
        for r in rows:
            print(f"{r['encoder']:40} {r['capture_s']:15.3f} {r['off_s']:11.3f} {r['share']:14.1%}")
    if args.flops:
        flops_table()
    if args.osr:
        osr_table(args.osr, args.labels, args.model, args.keep)
    print("\nafter:", uptime())


if __name__ == "__main__":
    main()
