"""Command line: the same engine as the web app, from a terminal.

    python -m vdr_app add FILE...                 index PDFs (same bytes twice: no-op)
    python -m vdr_app search QUERY [-k N] [--view SPEC] [--json]
    python -m vdr_app list [--json]               documents with pages and memory
    python -m vdr_app delete DOC                  by id, file name or sha256 prefix
    python -m vdr_app stats [--json]              totals and memory of every view
    python -m vdr_app views [--json]              stored views with their memory
    python -m vdr_app view add SPEC | view delete SPEC
    python -m vdr_app make-tiny-model DIR [--family F]   a tiny offline checkpoint to try things

Every command accepts --store PATH, --model NAME_OR_PATH and --device (they override VDR_STORE,
VDR_MODEL and VDR_DEVICE). Errors print one line on stderr and exit 1, having changed nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from .config import Settings
from .errors import VdrError
from .memory import format_bytes

EXIT_ERROR = 1


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--store", type=Path, help="SQLite store file (default: $VDR_DATA_DIR/vdr.sqlite)")
    parent.add_argument("--model", help="checkpoint (hub id or folder) or encoder name (default: $VDR_MODEL)")
    parent.add_argument("--device", help="auto, cpu, cuda, mps (default: $VDR_DEVICE or auto)")
    parent.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return parent


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="python -m vdr_app",
        description="Visual document retrieval with multi-vector models, and what shrinking them does.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", parents=[common], help="index PDF files")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE")

    search = sub.add_parser("search", parents=[common], help="rank pages for a query")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="results to show (default 5)")
    search.add_argument("--view", default="full", help="view spec, e.g. cluster:factor=9 (default: full)")
    search.add_argument("--json", action="store_true", help="print JSON")

    lst = sub.add_parser("list", parents=[common], help="list documents")
    lst.add_argument("--json", action="store_true")

    delete = sub.add_parser("delete", parents=[common], help="delete a document")
    delete.add_argument("doc", metavar="DOC", help="document id, file name or sha256 prefix")

    stats = sub.add_parser("stats", parents=[common], help="store totals and memory per view")
    stats.add_argument("--json", action="store_true")

    views = sub.add_parser("views", parents=[common], help="list stored views with their memory")
    views.add_argument("--json", action="store_true")

    view = sub.add_parser("view", parents=[common], help="add or delete a view")
    view_sub = view.add_subparsers(dest="view_command", required=True, metavar="ACTION")
    view_sub.add_parser("add", parents=[common], help="compute and store a view").add_argument("spec")
    view_sub.add_parser("delete", parents=[common], help="delete a stored view").add_argument("spec")

    tiny = sub.add_parser("make-tiny-model", help="write a tiny random checkpoint (no download) to a folder")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--family", default="colqwen2", help="colpali, colqwen2, colqwen2_5, colidefics3")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {}
    if getattr(args, "store", None):
        overrides["store_path"] = args.store
    if getattr(args, "model", None):
        overrides["model"] = args.model
    if getattr(args, "device", None):
        overrides["device"] = args.device
    return dataclasses.replace(settings, **overrides)


class _Bar:
    """A tqdm bar on stderr driven by progress(fraction, message) callbacks."""

    def __init__(self, description: str):
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=description, unit="‰", file=sys.stderr, leave=False,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self._bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
        self._bar.set_postfix_str(message[-60:], refresh=True)

    def close(self) -> None:
        self._bar.close()


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _memory_table(views) -> str:
    lines = [f"{'view':32} {'vectors':>10} {'per page min/mean/max':>24} {'bytes':>11} {'ratio':>7}"]
    for v in views:
        per_page = f"{v.per_page_min}/{v.per_page_mean:.1f}/{v.per_page_max}"
        ratio = f"{v.ratio_to_full:.3f}" if v.ratio_to_full == v.ratio_to_full else "-"
        lines.append(f"{v.view:32} {v.vectors:>10} {per_page:>24} {format_bytes(v.bytes):>11} {ratio:>7}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.command == "make-tiny-model":
        from .models.tiny import build_tiny_checkpoint

        path = build_tiny_checkpoint(args.family, args.directory)
        print(f"wrote a tiny random {args.family} checkpoint to {path}")
        print(f"try: python -m vdr_app --help; python -m vdr_app add FILE.pdf --model {path}")
        return 0

    from .engine import Engine

    engine = Engine(_settings(args))
    command = args.command
    if command == "add":
        bar = _Bar("indexing")
        try:
            results = engine.add_files(args.files, progress=bar)
        finally:
            bar.close()
        for path, result in zip(args.files, results):
            state = "added" if result.added else "already indexed"
            print(f"{path.name}: {state} (document {result.doc_id}, {result.n_pages} pages)")
    elif command == "search":
        hits = engine.search(args.query, k=args.k, view=args.view)
        if args.json:
            _print_json([h.as_dict() for h in hits])
        elif not hits:
            print("no pages indexed yet: add PDFs first (python -m vdr_app add FILE.pdf)")
        else:
            for h in hits:
                print(f"{h.rank:>3}. {h.score:9.4f}  {h.doc_name}  p.{h.page_number}  (doc {h.doc_id})")
    elif command == "list":
        docs = engine.list_documents()
        if args.json:
            _print_json([d.as_dict() for d in docs])
        else:
            for d in docs:
                print(f"{d.id:>4}  {d.name}  {d.n_pages} pages  {format_bytes(d.vector_bytes)}  {d.added_at}")
            print(f"{len(docs)} documents")
    elif command == "delete":
        doc_id = engine.delete_document(args.doc)
        print(f"deleted document {doc_id}")
    elif command == "stats":
        stats = engine.stats()
        if args.json:
            _print_json(stats)
        else:
            print(f"store   {stats['store']}  ({format_bytes(stats['file_bytes'])} on disk, schema v{stats['schema_version']})")
            print(f"model   {stats['model'] or '-'}  (d={stats['dim'] or '-'})")
            print(f"content {stats['documents']} documents, {stats['pages']} pages")
            print(_memory_table(engine.views()))
    elif command == "views":
        views = engine.views()
        if args.json:
            _print_json([v.as_dict() for v in views])
        else:
            print(_memory_table(views))
    elif command == "view":
        if args.view_command == "add":
            bar = _Bar("view")
            try:
                spec = engine.add_view(args.spec, progress=bar)
            finally:
                bar.close()
            print(f"added view {spec}")
            print(_memory_table([v for v in engine.views() if v.view in ("full", spec)]))
        else:
            print(f"deleted view {engine.delete_view(args.spec)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except VdrError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; the store is unchanged by the unfinished step", file=sys.stderr)
        return 130
