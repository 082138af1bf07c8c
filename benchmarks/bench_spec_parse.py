"""Milliseconds to answer hostile view specs (the parser must refuse them before any big arithmetic).

    python -m benchmarks.bench_spec_parse [--repeats 200]

Prints, per spec, the median and worst time of `parse_spec` and the message it answers with;
`Fraction("1e30000000")` (what the parser once did) is skipped: it took 27 s here.
"""

from __future__ import annotations

import argparse
import statistics
import time

from vdr_app.errors import VdrError
from vdr_app.reduce import parse_spec

CASES = {
    "docpruner:k=1e30000000": "docpruner:k=1e30000000",
    "10 KB digit string (k)": "docpruner:k=" + "9" * 10_000,
    "10 KB digit string (seed)": "random:seed=" + "9" * 10_000,
    "10 KB decimal (keep)": "attention:keep=0." + "3" * 10_000,
    "valid: cluster:factor=9": "cluster:factor=9",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    for label, text in CASES.items():
        times = []
        answer = ""
        for _ in range(args.repeats):
            start = time.perf_counter()
            try:
                answer = f"ok: {parse_spec(text)}"
            except VdrError as error:
                answer = f"{type(error).__name__}: {error}"
            times.append((time.perf_counter() - start) * 1000)
        print(f"{label:28} median {statistics.median(times):7.3f} ms  max {max(times):7.3f} ms  -> {answer}")


if __name__ == "__main__":
    main()
