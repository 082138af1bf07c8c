#!/usr/bin/env python3
"""Encoder speed and memory per family, configuration and stage (offline, CPU by default).

With --size full each family is a random checkpoint with the published architecture
(`vdr_app.checkpoints.fullsize`: colSmol-256M, ColQwen2.5-3B, ColPali-3B) — real arithmetic and
memory, meaningless vectors; with --size tiny the ~200k-parameter test checkpoints (the app's
own overhead around a negligible model).

Pages: A4 pages (992 x 1403 px at the app's 120 dpi) rendered from the corpus PDFs
($VDR_CORPUS_DIR/pdfs), the first --pages found, the same pages for every configuration.

Configurations (--configs, comma-separated), all in one process per family so they see the same
pages and the same machine load:
    before       eager attention in every layer, the final-token row read by a forward hook,
                 float32, batch 4 (the default before this benchmark)
    after        the default now: SDPA everywhere, the last text layer computing the final-token
                 row itself, dtype and batch chosen for the device
    nocapture    as "after" but no attention captured (the floor for the capture cost)
    bf16         as "after" in bfloat16
    after-fp32   as "after" in float32 (on a CPU with native bfloat16, "after" is bfloat16; this
                 is then the float32 reference its embeddings are compared with)
    eager-b1     as "before" with batch 1
Each row: pages/s and s/page (wall, median of --repeats), CPU seconds per page (all threads;
steadier than wall time on a shared host), s/query (8 queries), peak RSS while encoding, and
the share of the page's CPU time per stage: preprocessing (processor), vision encoder,
language model, attention capture (the row computation; for "before" the hook), other forward
(embeddings, connector, projection), post-processing (splitting, normalising, geometry).

Usage (from the repository root):
    .venv/bin/python -m benchmarks.bench_encoders --size full --families colidefics3 --pages 4
    .venv/bin/python -m benchmarks.bench_encoders --size full --families colqwen2.5 --pages 1 \
        --configs after,nocapture --dtype-3b bfloat16
The host may be shared: `uptime` is printed before and after.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vdr_app.torchvision_compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

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

CONFIGS = {
    "before": dict(attn="eager", dtype="float32", batch=4, capture=True),
    "eager-b1": dict(attn="eager", dtype="float32", batch=1, capture=True),
    "after": dict(attn="auto", dtype="auto", batch=0, capture=True),
    "nocapture": dict(attn="auto", dtype="auto", batch=0, capture=False),
    "bf16": dict(attn="auto", dtype="bfloat16", batch=0, capture=True),
    "after-fp32": dict(attn="auto", dtype="float32", batch=0, capture=True),
    "after-b2": dict(attn="auto", dtype="auto", batch=2, capture=True),
}
STAGES = ["preprocess", "vision", "lm", "capture", "other_fwd", "postprocess"]


def a4_pages(n: int, corpus: Path) -> list:
    """The first n corpus pages that render at A4 size (within 2 %) at the app's default dpi."""
    from vdr_app.pdf import PdfLimits, iter_pages

    target = (992, 1403)
    out = []
    for pdf in sorted((corpus / "pdfs").glob("*.pdf")):
        try:
            for page in iter_pages(pdf.read_bytes(), pdf.name, PdfLimits()):
                w, h = page.image.size
                if abs(w - target[0]) <= 0.02 * target[0] and abs(h - target[1]) <= 0.02 * target[1]:
                    page.image.info["source"] = f"{pdf.name}#{page.page_number}"
                    out.append(page)
                if len(out) >= n:
                    return out
        except Exception:  # noqa: BLE001 - a corpus file that does not render is skipped
            continue
    if not out:
        raise SystemExit(f"no A4 page found under {corpus / 'pdfs'}")
    return out


class RssSampler:
    """Highest resident set size seen while active (sampled every 20 ms)."""

    def __init__(self):
        from vdr_app.models.resources import current_rss

        self._rss = current_rss
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


CLOCK = time.process_time  # CPU seconds of the whole process (all torch threads): steadier than
# wall time on a shared host, where other processes take cores away at random moments.


class StageTimer:
    """Adds CPU time per stage during encode_pages through hooks and wrappers (no code change)."""

    def __init__(self, encoder):
        import vdr_app.models.final_row as capture

        self.encoder = encoder
        self.times = dict.fromkeys([*STAGES, "forward", "total"], 0.0)
        self._handles = []
        self._capture = capture
        self._row = capture.final_token_row
        self._process = encoder.processor.process_images
        self._starts = {}

        def timed(name, fn):
            def run(*a, **k):
                t = CLOCK()
                try:
                    return fn(*a, **k)
                finally:
                    self.times[name] += CLOCK() - t

            return run

        capture.final_token_row = timed("capture", self._row)
        encoder.processor.process_images = timed("preprocess", self._process)
        modules = {"forward": encoder.model, **encoder.stage_modules()}
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        if encoder.capture == "hook":  # the eager path's capture: the hook's own work
            self._handles.append(encoder.attention_module().register_forward_hook(self._post("capture_mark")))

    def _pre(self, name):
        def hook(module, args):
            self._starts[name] = CLOCK()

        return hook

    def _post(self, name):
        def hook(module, args, output):
            if name == "capture_mark":
                return
            self.times[name] += CLOCK() - self._starts.pop(name)

        return hook

    def close(self):
        for h in self._handles:
            h.remove()
        self._capture.final_token_row = self._row
        self.encoder.processor.process_images = self._process

    def shares(self) -> dict:
        t = self.times
        other_fwd = t["forward"] - t["vision"] - t["lm"]
        post = t["total"] - t["preprocess"] - t["forward"]
        lm = t["lm"] - t["capture"]
        parts = {
            "preprocess": t["preprocess"],
            "vision": t["vision"],
            "lm": lm,
            "capture": t["capture"],
            "other_fwd": other_fwd,
            "postprocess": post,
        }
        total = t["total"] or 1.0
        return {k: v / total for k, v in parts.items()}


def cosines(a: list, b: list) -> list[float]:
    """Cosine of each patch vector of a with the same vector of b (same pages, same geometry)."""
    import numpy as np

    out = []
    for x, y in zip(a, b, strict=True):
        num = (x.patches * y.patches).sum(1)
        den = np.linalg.norm(x.patches, axis=1) * np.linalg.norm(y.patches, axis=1)
        out.extend((num / np.maximum(den, 1e-12)).tolist())
    return out


def run_family(
    family: str,
    size: str,
    configs: list[str],
    n_pages: int,
    repeats: int,
    device: str,
    dtype_3b: str,
    warmup: int,
    checkpoint: str | None = None,
):
    """One family, every configuration, in this process; prints one JSON line per configuration."""
    import torch

    from vdr_app.models.colvision import ColVisionEncoder  # noqa: F401
    from vdr_app.models.registry import _import, family_from_config, read_checkpoint_config
    from vdr_app.models.resources import process_peak_rss

    corpus = Path(os.environ.get("VDR_CORPUS_DIR", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    pages = a4_pages(n_pages, corpus)
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{family}-", dir="/tmp"))
    try:
        t = time.perf_counter()
        if checkpoint:
            folder = Path(checkpoint)
        elif size == "full":
            from vdr_app.checkpoints.fullsize import build_full_checkpoint

            save_dtype = "float32" if family == "colidefics3" else "bfloat16"
            folder = build_full_checkpoint(family, tmp / family, dtype=save_dtype)
        else:
            from vdr_app.checkpoints.tiny import build_tiny_checkpoint

            folder = build_tiny_checkpoint(family, tmp / family)
        build_s = time.perf_counter() - t
        adapter = _import(family_from_config(read_checkpoint_config(str(folder))).adapter)

        def load(name):
            cfg = dict(CONFIGS[name])
            if size == "full" and family != "colidefics3" and dtype_3b:
                cfg["dtype"] = dtype_3b
            gc.collect()
            t = time.perf_counter()
            encoder = adapter.load(
                str(folder), model_id=family, device=device, batch_size=min(cfg["batch"], len(pages)) or 0,
                dtype=cfg["dtype"], attn_implementation=cfg["attn"],
            )
            encoder.bench_load_s = time.perf_counter() - t
            if not cfg["capture"]:
                original = encoder._encode_page_batch

                def no_capture(images, _enc=encoder):
                    forward = _enc._forward
                    _enc._forward = lambda inputs, capture_attention: forward(inputs, False)
                    try:
                        return original(images)
                    finally:
                        _enc._forward = forward

                encoder._encode_page_batch = no_capture
            encoder.bench_capture = cfg["capture"]
            if warmup:
                encoder.encode_pages(pages[:1])
            return encoder

        # Small models: every configuration loaded at once and timed in alternating order
        # (A B C, C B A, ...) so that load changes on a shared host hit them alike. Large ones:
        # one configuration loaded at a time.
        together = size == "tiny" or family == "colidefics3"
        encoders = {name: load(name) for name in configs} if together else {}
        results = {name: {"wall": [], "cpu": [], "shares": [], "peak": 0} for name in configs}
        outputs = {}
        order = list(configs)
        for r in range(repeats):
            for name in order if r % 2 == 0 else order[::-1]:
                encoder = encoders.get(name) or load(name)
                timer = StageTimer(encoder)
                with RssSampler() as rss:
                    t, c = time.perf_counter(), CLOCK()
                    out = encoder.encode_pages(pages)
                    wall, cpu = time.perf_counter() - t, CLOCK() - c
                timer.times["total"] = cpu
                timer.close()
                res = results[name]
                res["wall"].append(wall / len(pages))
                res["cpu"].append(cpu / len(pages))
                res["shares"].append(timer.shares())
                res["peak"] = max(res["peak"], rss.peak)
                res["load_s"] = encoder.bench_load_s
                res["attn"] = encoder.capture if encoder.bench_capture else "sdpa (no capture)"
                res["dtype"] = str(encoder.model.dtype).replace("torch.", "")
                res["batch"] = encoder.batch_size
                if r == 0:
                    t = time.perf_counter()
                    encoder.encode_queries(QUERIES)
                    res["s_per_query"] = (time.perf_counter() - t) / len(QUERIES)
                outputs[name] = out
                # Progress as it happens: a full-size pass can take minutes on a loaded host.
                print(f"PASS {family} {name} repeat {r}: wall {wall / len(pages):.1f} s/page, "
                      f"cpu {cpu / len(pages):.1f} s/page, peak RSS {rss.peak / 1024**3:.2f} GiB", flush=True)
                if not together:
                    del encoder, timer  # the timer holds the encoder: both go, or the weights stay
                    gc.collect()
        reference = next((outputs[n] for n in configs if results[n]["dtype"] == "float32" and n != "before"), None)
        for name in configs:
            res = results[name]
            spp, cpp = statistics.median(res["wall"]), statistics.median(res["cpu"])
            row = {
                "family": family,
                "config": name,
                "attn": res["attn"],
                "dtype": res["dtype"],
                "batch": res["batch"],
                "pages": len(pages),
                "repeats": repeats,
                "vectors": outputs[name][0].n_patches,
                "s_per_page": round(spp, 2),
                "cpu_s_per_page": round(cpp, 2),
                "pages_per_s": round(1 / spp, 4),
                "s_per_query": round(res["s_per_query"], 3),
                "load_s": round(res["load_s"], 1),
                "build_s": round(build_s, 1),
                "peak_rss_gib": round(res["peak"] / 1024**3, 2),
                "process_peak_rss_gib": round(process_peak_rss() / 1024**3, 2),
                "shares": {k: round(statistics.median(s[k] for s in res["shares"]), 3) for k in STAGES},
                "threads": torch.get_num_threads(),
                "load": round(os.getloadavg()[0], 2),
            }
            if res["dtype"] == "bfloat16" and reference is not None:
                import numpy as np

                cos = np.array(cosines(reference, outputs[name]))
                row["cosine_vs_fp32"] = {
                    "min": round(float(cos.min()), 4),
                    "p01": round(float(np.quantile(cos, 0.01)), 4),
                    "median": round(float(np.median(cos)), 4),
                }
            print("ROW " + json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


AGREEMENT_QUERIES = QUERIES + [
    "safety instructions",
    "contact address and phone number",
    "signature and date",
    "technical specifications",
    "summary of results",
    "price list",
    "map of the area",
    "list of participants",
]


def all_pages(n: int, corpus: Path) -> list:
    """The first n corpus pages (any size), a few per document."""
    from vdr_app.pdf import PdfLimits, iter_pages

    out = []
    for pdf in sorted((corpus / "pdfs").glob("*.pdf")):
        try:
            for i, page in enumerate(iter_pages(pdf.read_bytes(), pdf.name, PdfLimits())):
                if i >= 2:
                    break
                out.append(page)
                if len(out) >= n:
                    return out
        except Exception:  # noqa: BLE001
            continue
    return out


def agreement(n_pages: int, edge: int, checkpoint: str | None) -> None:
    """bfloat16 vs float32 on the full-size colSmol: cosine per vector and top-10 agreement.

    Pages are resized by the processor to `edge` px on their longest side (edge=512: one tile,
    64 vectors, 1/13 of a full page's cost) so that many pages fit in the time; the question
    (how far bfloat16 drifts through 12 vision + 30 text layers) does not depend on the tile count.
    """
    import numpy as np

    from vdr_app.models.colidefics3 import ColIdefics3Encoder
    from vdr_app.index.maxsim import MaxSimIndex

    corpus = Path(os.environ.get("VDR_CORPUS_DIR", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    pages = all_pages(n_pages, corpus)
    tmp = Path(tempfile.mkdtemp(prefix="agree-", dir="/tmp"))
    try:
        if checkpoint:
            folder = Path(checkpoint)
        else:
            from vdr_app.checkpoints.fullsize import build_full_checkpoint

            folder = build_full_checkpoint("colidefics3", tmp / "colsmol", dtype="float32")
        results = {}
        for dtype in ("float32", "bfloat16"):
            enc = ColIdefics3Encoder.load(str(folder), model_id="colsmol", device="cpu", batch_size=1, dtype=dtype)
            enc.processor.image_processor.size = {"longest_edge": edge}
            c = CLOCK()
            emb = enc.encode_pages(pages)
            cpu = (CLOCK() - c) / len(pages)
            queries = enc.encode_queries(AGREEMENT_QUERIES)
            results[dtype] = (emb, queries, cpu)
            del enc
            gc.collect()
        (e32, q32, c32), (e16, q16, c16) = results["float32"], results["bfloat16"]
        cos = np.array(cosines(e32, e16))
        qcos = np.concatenate([(a.vectors * b.vectors).sum(1) for a, b in zip(q32, q16, strict=True)])
        att = [float(np.abs(a.attention - b.attention).max()) for a, b in zip(e32, e16, strict=True)]
        i32 = MaxSimIndex([np.vstack([p.patches, p.extra]) for p in e32])
        i16 = MaxSimIndex([np.vstack([p.patches, p.extra]) for p in e16])
        k = 10
        overlaps, same_first = [], 0
        for a, b in zip(q32, q16, strict=True):
            top32, _ = i32.top_k(a.vectors, k)
            top16, _ = i16.top_k(b.vectors, k)
            overlaps.append(len(set(top32.tolist()) & set(top16.tolist())) / k)
            same_first += int(top32[0] == top16[0])
        row = {
            "pages": len(pages),
            "queries": len(q32),
            "edge_px": edge,
            "vectors_per_page": e32[0].n_patches,
            "page_cosine": {"min": round(float(cos.min()), 4), "p01": round(float(np.quantile(cos, 0.01)), 4),
                            "median": round(float(np.median(cos)), 4)},
            "query_cosine_min": round(float(qcos.min()), 4),
            "attention_max_abs_diff": round(max(att), 5),
            "top10_overlap_mean": round(float(np.mean(overlaps)), 3),
            "top10_overlap_min": round(float(np.min(overlaps)), 3),
            "same_top1": f"{same_first}/{len(q32)}",
            "cpu_s_per_page": {"float32": round(c32, 1), "bfloat16": round(c16, 1)},
        }
        print("AGREEMENT " + json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'family':12} {'config':10} {'attention':18} {'dtype':8} {'b':>2} {'vec':>5} {'pages/s':>8} "
        f"{'s/page':>7} {'cpu-s/p':>7} {'s/query':>7} {'RSS GiB':>7}  " + " ".join(f"{s[:8]:>8}" for s in STAGES)
    )
    print(head)
    for r in rows:
        print(
            f"{r['family']:12} {r['config']:10} {r['attn']:18} {r['dtype']:8} {r['batch']:>2} {r['vectors']:>5} "
            f"{r['pages_per_s']:>8.4f} {r['s_per_page']:>7.2f} {r['cpu_s_per_page']:>7.1f} {r['s_per_query']:>7.3f} "
            f"{r['peak_rss_gib']:>7.2f}  "
            + " ".join(f"{r['shares'][s]:>8.1%}" for s in STAGES)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--families", default="colidefics3")
    parser.add_argument("--configs", default="before,after,nocapture")
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype-3b", default="", help="dtype of every configuration on the 3B models (memory)")
    parser.add_argument("--checkpoint", help="an existing checkpoint folder of the (one) family, kept afterwards")
    parser.add_argument("--warmup", type=int, default=0, help="encode one page before timing (0: no)")
    parser.add_argument("--agreement", type=int, default=0, metavar="N",
                        help="instead: bfloat16 vs float32 on full-size colSmol over N corpus pages")
    parser.add_argument("--agreement-edge", type=int, default=512)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    configs = args.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"unknown config {c!r}; choose from {', '.join(CONFIGS)}")
    if args.agreement:
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        agreement(args.agreement, args.agreement_edge, args.checkpoint)
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        return
    if args.child:
        run_family(args.child, args.size, configs, args.pages, args.repeats, args.device, args.dtype_3b, args.warmup, args.checkpoint)
        return
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    for family in args.families.split(","):
        # One process per family: peak RSS and memory freed between families are per family.
        cmd = [sys.executable, "-m", "benchmarks.bench_encoders", "--child", family, *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        for line in proc.stdout.splitlines():
            if line.startswith("PASS "):
                print(line, flush=True)
            if line.startswith("ROW "):
                rows.append(json.loads(line[4:]))
                print(line, flush=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print_table(rows)


if __name__ == "__main__":
    main()
