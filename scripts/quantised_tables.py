"""Markdown tables of reduction × precision from an `eval --json` file (docs/quantisation.md).

    python scripts/quantised_tables.py /tmp/eval.json

Prints three tables:
1. every quantised base view (a reduction evaluated at float16 and quantised) at each precision:
   bytes, share of the full index, nDCG@5, recall@1, nDCG@5 retention with its 95 % interval,
   overlap@10 and top-1 agreement with the full index; rescoring variants as rows of their own,
   with the share of the library they re-score (marked * above 5 %: off the frontier);
2. the stacked frontier: for each byte budget, the best strategy × precision that fits
   (`vdr_app.evaluate.stacked_frontier`, rescoring variants above 5 % excluded);
3. the Pareto frontier (bytes vs nDCG@5 retention), in order of bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdr_app.evaluate import STACKED_BUDGETS, frontier_rows, stacked_frontier  # noqa: E402
from vdr_app.memory import format_bytes  # noqa: E402

PRECISIONS = (None, "int8", "int4", "int2", "binary")
Y = "retention.ndcg@5"


def _base(view: str) -> str:
    return view.split("@")[0]


def _retention(row: dict) -> str:
    value = (row.get("retention") or {}).get("ndcg@5")
    ci = (row.get("retention_ci") or {}).get("ndcg@5")
    if value is None:
        return "-"
    return f"{value:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def _name(row: dict) -> str:
    name = f"`{row['view']}`" + ("" if row.get("quant") else " (float16)")
    if row.get("rescore"):
        share = row.get("rescore_share")
        name += f", rescore {row['rescore']}" + (
            "" if share is None else f" ({share:.0%} of pages{'*' if row.get('off_frontier') else ''})")
    return name


def _line(row: dict) -> str:
    m, f = row.get("metrics") or {}, row.get("fidelity") or {}
    return (f"| {_name(row)} | {format_bytes(row['memory']['bytes'])} | {row['memory_ratio']:.2%} | "
            f"{m.get('ndcg@5', float('nan')):.3f} | {m.get('recall@1', float('nan')):.3f} | {_retention(row)} | "
            f"{f.get('overlap@10', float('nan')):.2f} | {f.get('top1_agreement', float('nan')):.2f} |")


def views_table(views: list[dict]) -> str:
    rows = [v for v in views if not v.get("skipped")]
    bases = list(dict.fromkeys(_base(v["view"]) for v in rows if v.get("quant")))
    out = ["| view | bytes | memory | nDCG@5 | recall@1 | nDCG@5 retention [95% CI] | overlap@10 | top-1 agreement |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    full = next(v for v in rows if v["view"] == "full")
    out.append(_line(full))
    for base in bases:
        group = [v for v in rows if _base(v["view"]) == base and v["view"] != "full"]
        group.sort(key=lambda v: (PRECISIONS.index(v.get("quant")), v.get("rescore") or 0))
        out += [_line(v) for v in group]
    return "\n".join(out)


def stacked_table(views: list[dict]) -> str:
    out = ["| budget (share of float16 full) | best view | bytes | memory | nDCG@5 retention [95% CI] |",
           "|---:|---|---:|---:|---:|"]
    for budget, row in stacked_frontier(views, STACKED_BUDGETS, Y):
        if row is None:
            out.append(f"| ≤ {budget:.2%} | (nothing fits) | | | |")
        else:
            out.append(f"| ≤ {budget:.2%} | {_name(row)} | {format_bytes(row['memory']['bytes'])} | "
                       f"{row['memory_ratio']:.2%} | {_retention(row)} |")
    return "\n".join(out)


def frontier_text(views: list[dict]) -> str:
    return " → ".join(f"{_name(r)} ({format_bytes(r['memory']['bytes'])}, {r['retention']['ndcg@5']:.1%})"
                      for r in frontier_rows(views, Y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="the file `python -m vdr_app eval ... --json` wrote")
    args = parser.parse_args()
    data = json.loads(args.json.read_text(encoding="utf-8"))
    views = data["views"]
    print(f"model {data['model']}, {data['pages']} pages, {data['labelled_queries']} labelled queries\n")
    print(views_table(views), "\n")
    print(stacked_table(views), "\n")
    print("Pareto frontier:", frontier_text(views))


if __name__ == "__main__":
    main()
