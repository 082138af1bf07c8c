"""Command line: the same engine as the web app, from a terminal.

    python -m vdr_app add FILE...                 index PDFs (same bytes twice: no-op)
    python -m vdr_app search QUERY [-k N] [--view SPEC] [--json]
    python -m vdr_app list [--json]               documents with pages and memory
    python -m vdr_app delete DOC                  by id, file name or sha256 prefix
    python -m vdr_app stats [--json]              totals and memory of every view
    python -m vdr_app views [--json]              stored views with their memory
    python -m vdr_app view add SPEC | view delete SPEC
    python -m vdr_app make-tiny-model DIR [--family F]   a tiny offline checkpoint to try things
    python -m vdr_app eval [FOLDER] --labels FILE | --queries FILE [--views SPEC...] [--sweep]
                           [--json PATH] [--html PATH]   retention and fidelity of views

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


def _add_common(parser: argparse.ArgumentParser, default=None) -> argparse.ArgumentParser:
    parser.add_argument("--store", type=Path, default=default, help="SQLite store file (default: $VDR_DATA_DIR/vdr.sqlite)")
    parser.add_argument("--model", default=default, help="checkpoint (hub id or folder) or encoder name (default: $VDR_MODEL, else the store's own model)")
    parser.add_argument("--device", default=default, help="auto, cpu, cuda, mps (default: $VDR_DEVICE or auto)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default or False, help="log progress details")
    return parser


def _common() -> argparse.ArgumentParser:
    """The shared options, accepted after the command too. SUPPRESS keeps a subcommand from
    overwriting a value given before it (`python -m vdr_app --model M add ...`)."""
    return _add_common(argparse.ArgumentParser(add_help=False), default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="python -m vdr_app",
        description="Visual document retrieval with multi-vector models, and what shrinking them does.",
    )
    _add_common(parser)
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

    ev = sub.add_parser(
        "eval", parents=[common], help="measure what each view keeps: retention (with labels) and fidelity",
        description="Index FOLDER's PDFs (reusing --store), then compare the full index with each view: "
        "nDCG@5, recall@1/5, MRR@10 and their retention (view / full) for labelled queries; overlap@5/10 "
        "and Kendall tau@10 against the full index's ranking for every query (no labels needed).",
    )
    ev.add_argument("folder", nargs="?", type=Path, metavar="FOLDER",
                    help="folder of PDFs to index first (default: evaluate what the store holds)")
    ev.add_argument("--labels", type=Path, metavar="FILE",
                    help='JSON lines {"query": ..., "file": "x.pdf", "page": 1, "kind": ...} (kind optional)')
    ev.add_argument("--queries", type=Path, metavar="FILE", help="queries without labels, one per line (fidelity only)")
    ev.add_argument("--views", nargs="+", action="extend", default=[], metavar="SPEC",
                    help="view specs, e.g. cluster:factor=9 docpruner:k=-0.25 (default: the stored views)")
    ev.add_argument("--sweep", action="store_true",
                    help="add the default grid: random/attention/pool1d/pool2d/cluster at factor 2,4,9,25,49, "
                    "docpruner k=-0.5..1, prune_then_merge")
    ev.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON")
    ev.add_argument("--html", type=Path, metavar="PATH", help="write the retention-vs-memory figure as HTML")

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
        overrides["model_given"] = True
    if getattr(args, "device", None):
        overrides["device"] = args.device
    return dataclasses.replace(settings, **overrides)


class _Bar:
    """A tqdm bar on stderr driven by progress(fraction, message) callbacks.

    Created on the first callback (so an early error prints alone) and only on a terminal
    (tqdm's disable=None), so piped output stays clean.
    """

    def __init__(self, description: str):
        self._description = description
        self._bar = None

    def __call__(self, fraction: float, message: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=1000, desc=self._description, file=sys.stderr, leave=False, disable=None,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self._bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
        self._bar.set_postfix_str(message[-60:], refresh=True)

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _memory_table(views) -> str:
    lines = [f"{'view':36} {'vectors':>10} {'per page min/mean/max':>24} {'bytes':>11} {'ratio':>7}"]
    for v in views:
        per_page = f"{v.per_page_min}/{v.per_page_mean:.1f}/{v.per_page_max}"
        ratio = f"{v.ratio_to_full:.3f}" if v.ratio_to_full == v.ratio_to_full else "-"
        lines.append(f"{v.view:36} {v.vectors:>10} {per_page:>24} {format_bytes(v.bytes):>11} {ratio:>7}")
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
        with _Bar("indexing") as bar:
            results = engine.add_files(args.files, progress=bar)
        for path, result in zip(args.files, results):
            state = "added" if result.added else "already indexed"
            print(f"{path.name}: {state} (document {result.doc_id}, {result.n_pages} pages)")
            blank = [p.page_number for p in engine.pages(result.doc_id) if p.info.get("no_text")]
            if blank:
                print(f"  no text found on page(s) {', '.join(map(str, blank))}: they are kept but cannot match a query")
        if engine.model_loaded and engine.encoder.kind != "visual":
            print(f"note: {engine.encoder.describe()} ranks pages by their text and its position, not by how they look")
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
            with _Bar("view") as bar:
                spec = engine.add_view(args.spec, progress=bar)
            print(f"added view {spec}")
            print(_memory_table([v for v in engine.views() if v.view in ("full", spec)]))
        else:
            print(f"deleted view {engine.delete_view(args.spec)}")
    elif command == "eval":
        _run_eval(engine, args)
    return 0


def _run_eval(engine, args: argparse.Namespace) -> None:
    from .errors import InvalidQueryError, InvalidSpecError
    from .evaluate import (evaluate, folder_pdfs, load_labels, load_queries, stored_page_counts, sweep_specs,
                           write_html, write_json)
    from .pdf import inspect_pdf

    if not args.labels and not args.queries:
        raise InvalidQueryError("nothing to evaluate: give --labels FILE (JSON lines) and/or --queries FILE")
    documents = None
    if args.folder:
        pdfs = folder_pdfs(args.folder)
        # Check the labels against the folder before anything is encoded.
        counts = {p.name: inspect_pdf(p.read_bytes(), p.name, engine.limits).n_pages for p in pdfs}
        labels = load_labels(args.labels, counts) if args.labels else []
        queries = load_queries(args.queries) if args.queries else []
        with _Bar("indexing") as bar:
            results = engine.add_files(pdfs, progress=bar)
        documents = {p.name: r.doc_id for p, r in zip(pdfs, results)}
        added = sum(r.added for r in results)
        print(f"{args.folder}: {len(pdfs)} PDFs ({added} newly indexed, {len(pdfs) - added} already in the store)")
    else:
        labels = load_labels(args.labels, stored_page_counts(engine)) if args.labels else []
        queries = load_queries(args.queries) if args.queries else []
    views = list(args.views) + (sweep_specs() if args.sweep else [])
    if not views:
        views = engine.store.view_specs()
    if not views:
        raise InvalidSpecError("no views to evaluate: give --views SPEC [SPEC ...] or --sweep")
    with _Bar("evaluating") as bar:
        evaluation = evaluate(engine, views, labels, queries, documents, progress=bar, skip_unavailable=args.sweep)
    print(f"model {evaluation.model}  {evaluation.documents} documents, {evaluation.pages} pages  "
          f"{len(evaluation.queries)} queries ({evaluation.labelled} labelled)")
    print(evaluation.table())
    if evaluation.kinds:
        print()
        print(evaluation.kind_table())
    if args.json:
        print(f"wrote {write_json(evaluation, args.json)}")
    if args.html:
        print(f"wrote {write_html(evaluation, args.html)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except VdrError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `... | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; the store is unchanged by the unfinished step", file=sys.stderr)
        return 130
