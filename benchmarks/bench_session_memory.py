#!/usr/bin/env python3
"""Memory of the web app over 2,000 API requests, each without a session (so each a new one).

Runs the app twice, in a fresh process each: with Gradio's default state capacity (10,000
sessions, what the app had before `VDR_STATE_CAPACITY`) and with the app's setting (200 by
default). Each run indexes one small PDF with a tiny colSmol checkpoint, then sends --requests
searches over plain HTTP (`/gradio_api/call/search`, no session hash: what an API script or a
crawler does) and prints the process RSS before and after.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.bench_session_memory [--requests 2000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(capacity: int, requests: int) -> None:
    import dataclasses

    import httpx

    from vdr_app.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from reportlab.pdfgen import canvas

    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.checkpoints.tiny import build_tiny_checkpoint
    from vdr_app.ui import build_demo, launch_options

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_checkpoint("colidefics3", Path(tmp) / "tiny")
        settings = Settings(model=str(model), data_dir=Path(tmp) / "data", dpi=40, host="127.0.0.1",
                            state_capacity=capacity)
        engine = Engine(settings)
        buffer = io.BytesIO()
        c = canvas.Canvas(buffer)
        for page in range(3):
            c.drawString(72, 700, f"page {page} quarterly revenue by region")
            c.showPage()
        c.save()
        engine.add_pdf(buffer.getvalue(), "doc.pdf")
        demo = build_demo(engine)
        options = launch_options(settings)
        options.pop("server_port")
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)

        def search(i: int) -> bool:
            with httpx.Client(timeout=60) as http:
                event = http.post(f"{url}gradio_api/call/search",
                                  json={"data": [f"revenue {i}", "full", 3, [], None]}).json()["event_id"]
                text = http.get(f"{url}gradio_api/call/search/{event}").text
            return "event: complete" in text

        for i in range(20):  # warm up: first-call allocations are not per-session memory
            search(i)
        before = rss_mb()
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as ex:
            ok = sum(ex.map(search, range(requests)))
        seconds = time.perf_counter() - start
        after = rss_mb()
        demo.close()
        print(json.dumps(dict(capacity=capacity, requests=requests, ok=ok, before_mb=round(before, 1),
                              after_mb=round(after, 1), seconds=round(seconds, 1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--capacities", default="10000,200")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.requests)
        return
    print(f"load average {os.getloadavg()}")
    for capacity in map(int, args.capacities.split(",")):
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_session_memory", "--child", str(capacity),
                               "--requests", str(args.requests)], capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(f"capacity {capacity}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(line)
        print(f"state capacity {r['capacity']:>6}: {r['ok']}/{r['requests']} searches ok in {r['seconds']} s; "
              f"RSS {r['before_mb']} MB -> {r['after_mb']} MB (+{r['after_mb'] - r['before_mb']:.1f} MB)")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
