"""Command line: the same engine as the web app, from a terminal.

    python -m vdr_app add FILE...                 index PDFs (same bytes twice: no-op)
    python -m vdr_app search QUERY [-k N] [--view SPEC] [--rescore N] [--doc NAME]... [--json]
    python -m vdr_app list [--json]               documents with pages and memory
    python -m vdr_app delete DOC                  by id, file name or sha256 prefix
    python -m vdr_app stats [--json]              totals and memory of every view
    python -m vdr_app views [--json]              stored views with their memory
    python -m vdr_app view add SPEC | view delete SPEC
    python -m vdr_app check                       schema and SQLite integrity check, naming any damaged table
    python -m vdr_app backup DEST [--force]       copy the store (safe while the app runs), verified
    python -m vdr_app compact                     give the free pages of the store back to the disk
    python -m vdr_app index status [--json] | index sync   the search index against the store
    python -m vdr_app make-tiny-model DIR [--family F] [--size full]   a random offline checkpoint
    python -m vdr_app eval [FOLDER] --labels FILE | --queries FILE [--views SPEC...] [--sweep]
                           [--json PATH] [--html PATH]   retention and fidelity of views
    python -m vdr_app eval --benchmark vidore/DATASET [--max-pages N] [--views SPEC...]
                                                  the same on a ViDoRe benchmark (docs/benchmark.md)
    python -m vdr_app sap-window --labels FILE [--keep K...] [--dry-run] [--json]
                                                  choose and record sap's layer window (docs/sap.md)

Every command accepts --store PATH, --model NAME_OR_PATH, --device, --index memory|qdrant and
--qdrant-url URL (they override VDR_STORE, VDR_MODEL, VDR_DEVICE, VDR_INDEX and VDR_QDRANT_URL).
Errors print one line on stderr and exit 1, having changed nothing (-v adds the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import time
import traceback
from pathlib import Path

from .config import Settings
from .errors import VdrError
from .memory import format_bytes
from .quantise import MAX_RESCORE

EXIT_ERROR = 1
MAX_K = 100_000


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _whole(low: int, high: int):
    """An argparse type: a whole number in [low, high], its digits counted before conversion."""

    def parse(text: str) -> int:
        value = text.strip()
        if not re.fullmatch(r"[+-]?\d{1,12}", value) or not low <= int(value) <= high:
            shown = value if len(value) <= 20 else value[:17] + "..."
            raise argparse.ArgumentTypeError(f"must be a whole number from {low:,} to {high:,}, got {shown!r}")
        return int(value)

    parse.__name__ = "whole number"
    return parse


def _add_common(parser: argparse.ArgumentParser, default=None) -> argparse.ArgumentParser:
    parser.add_argument("--store", type=Path, default=default, help="SQLite store file (default: $VDR_DATA_DIR/vdr.sqlite)")
    parser.add_argument("--model", default=default, help="checkpoint (hub id or folder) or encoder name (default: $VDR_MODEL, else the store's own model)")
    parser.add_argument("--device", default=default, help="auto, cpu, cuda, mps (default: $VDR_DEVICE or auto)")
    parser.add_argument("--index", default=default, choices=("memory", "qdrant"),
                        help="search index: memory or qdrant (default: $VDR_INDEX or memory)")
    parser.add_argument("--qdrant-url", default=default, metavar="URL",
                        help="Qdrant server or cluster for --index qdrant (default: $VDR_QDRANT_URL; "
                        "unset: local mode in $VDR_QDRANT_PATH)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default or False, help="log progress details")
    return parser


def _common() -> argparse.ArgumentParser:
    """The shared options, accepted after the command too. SUPPRESS keeps a subcommand from
    overwriting a value given before it (`python -m vdr_app --model M add ...`)."""
    return _add_common(_Parser(add_help=False), default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="python -m vdr_app",
        description="Visual document retrieval with multi-vector models, and what shrinking them does.",
    )
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", parents=[common], help="index PDF files")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE", help="PDF files (all or none are added)")

    reencode = sub.add_parser(
        "reencode", parents=[common], help="encode stored PDFs again (e.g. to give old pages what `sap` needs)",
        description="Encode stored PDF files again with the store's model and swap their embeddings and view rows "
        "in one transaction per file (pages keep their ids). Pages stored before per-layer centrality was captured "
        "need this once before a `sap` view can be cut.",
    )
    reencode.add_argument("files", nargs="+", type=Path, metavar="FILE", help="the PDF as it was added")

    search = sub.add_parser("search", parents=[common], help="rank pages for a query")
    search.add_argument("query", help="what to look for, in words")
    search.add_argument("-k", type=_whole(1, MAX_K), default=5, help="results to show (default 5)")
    search.add_argument("--view", default="full",
                        help="view spec, e.g. cluster:factor=9, full@int8, full@int4, cluster:factor=9@binary "
                             "(default: full)")
    search.add_argument("--rescore", type=_whole(0, MAX_RESCORE), default=None, metavar="N",
                        help="quantised views: re-score the best N candidates exactly with the float vectors "
                             "(0 = none; default 100)")
    search.add_argument("--doc", action="append", metavar="NAME",
                        help="only pages of this document (id, file name or sha256 prefix; repeatable)")
    search.add_argument("--json", action="store_true", help="print JSON")

    lst = sub.add_parser("list", parents=[common], help="list documents")
    lst.add_argument("--json", action="store_true", help="print JSON")

    delete = sub.add_parser("delete", parents=[common], help="delete a document")
    delete.add_argument("doc", metavar="DOC", help="document id, file name or sha256 prefix")

    stats = sub.add_parser("stats", parents=[common], help="store totals and memory per view")
    stats.add_argument("--json", action="store_true", help="print JSON")

    views = sub.add_parser("views", parents=[common], help="list stored views with their memory")
    views.add_argument("--json", action="store_true", help="print JSON")

    view = sub.add_parser("view", parents=[common], help="add or delete a view")
    view_sub = view.add_subparsers(dest="view_command", required=True, metavar="ACTION")
    view_sub.add_parser("add", parents=[common], help="compute and store a view").add_argument(
        "spec", help="view spec, e.g. cluster:factor=9")
    view_sub.add_parser("delete", parents=[common], help="delete a stored view").add_argument(
        "spec", help="view spec of a stored view")

    index = sub.add_parser("index", parents=[common], help="the search index against the store: status, sync")
    index_sub = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    index_sub.add_parser("status", parents=[common], help="pages and vectors per view, store vs index; pending").add_argument(
        "--json", action="store_true", help="print JSON")
    index_sub.add_parser("sync", parents=[common],
                         help="bring the index in step with the store (idempotent; builds a fresh Qdrant collection)")

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
    ev.add_argument("--benchmark", metavar="DATASET",
                    help="index and evaluate a ViDoRe v1/v2/v3 dataset instead of FOLDER/--labels: a hub id "
                    "(vidore/docvqa_test_subsampled, vidore/..._beir) or a folder saved with save_to_disk; "
                    "use a store of its own (needs the datasets package)")
    ev.add_argument("--split", default="test", help="--benchmark: the dataset split (default test)")
    ev.add_argument("--max-pages", type=int, metavar="N",
                    help="--benchmark: only the first N pages and the queries they answer (not comparable "
                    "with published figures)")
    ev.add_argument("--views", nargs="+", action="extend", default=[], metavar="SPEC",
                    help="view specs, e.g. cluster:factor=9 docpruner:k=-0.25 (default: the stored views)")
    ev.add_argument("--sweep", action="store_true",
                    help="add the default grid: random/attention/pool1d/pool2d/cluster at factor 2,4,9,25,49, "
                    "docpruner k=-0.5..1, prune_then_merge")
    ev.add_argument("--rescore", type=_whole(0, MAX_RESCORE), nargs="+", default=None, metavar="N",
                    help="quantised views: rescoring depth(s); several give one row per depth (default 0: the "
                    "codes' own scores; a depth above 5%% of the pages is marked and left off the frontier)")
    ev.add_argument("--two-stage", action="store_true",
                    help="also search every float view in two stages (first stage + exact MaxSim of its "
                    "candidates, VDR_FIRST_STAGE / VDR_TWO_STAGE_CODE_DEPTH / VDR_TWO_STAGE_DEPTH): a row "
                    "'<view> two-stage' beside each")
    ev.add_argument("--sap-window", choices=["cv"], default=None,
                    help="cv: score each sap view whose layers are auto held out: the labelled queries in 2 "
                    "folds, each scored with the window chosen on the other (docs/sap.md)")
    ev.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON")
    ev.add_argument("--html", type=Path, metavar="PATH", help="write the retention-vs-memory figure as HTML")

    window = sub.add_parser(
        "sap-window", parents=[common], help="choose sap's layer window on labelled queries and record it",
        description="For every contiguous window of decoder layers, how much of each labelled query's score on "
        "its relevant page survives sap pruning at each keep share (the paper's Oracle Score Retention); the "
        "window with the highest mean is recorded in the store for its model, and `layers=auto` means it from "
        "then on. Stored sap views keep the window they were cut with (docs/sap.md).",
    )
    window.add_argument("--labels", type=Path, required=True, metavar="FILE",
                        help='JSON lines {"query": ..., "file": "x.pdf", "page": 1} naming stored documents')
    window.add_argument("--keep", type=float, nargs="+", default=None, metavar="K",
                        help="keep shares the retention is averaged over (default 0.25 0.11 0.04)")
    window.add_argument("--dry-run", action="store_true", help="print the table and the choice, record nothing")
    window.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("check", parents=[common],
                   help="check the store's schema and look for damage (SQLite integrity check)")
    backup = sub.add_parser("backup", parents=[common], help="copy the store to a new file (online: the app may run)")
    backup.add_argument("destination", type=Path, metavar="DEST", help="new file (or folder) to write")
    backup.add_argument("--force", action="store_true",
                        help="write the copy even if it fails SQLite's integrity check (a damaged store)")

    sub.add_parser("compact", parents=[common],
                   help="give the store's free pages back to the disk (SQLite VACUUM; deletes then do it themselves)")

    tiny = sub.add_parser("make-tiny-model", help="write a tiny random checkpoint (no download) to a folder")
    tiny.add_argument("directory", type=Path, help="folder to write the checkpoint to")
    tiny.add_argument("--family", default="colqwen2", help="colpali, colqwen2, colqwen2_5, colidefics3")
    tiny.add_argument("--size", default="tiny", choices=["tiny", "full"],
                      help="full: the published architecture of colSmol-256M, ColQwen2.5-v0.2 or ColPali-v1.3 "
                      "(random weights, 0.9-7.5 GB)")
    tiny.add_argument("--dtype", default=None, choices=["bfloat16", "float32", "float16"],
                      help="weight dtype of a full-size checkpoint (default bfloat16)")
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
    if getattr(args, "index", None):
        overrides["index"] = args.index
    if getattr(args, "qdrant_url", None):
        overrides["qdrant_url"] = args.qdrant_url
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
    lines = [f"{'view':36} {'precision':>9} {'vectors':>10} {'per page min/mean/max':>24} {'bytes':>11} {'ratio':>7}"]
    for v in views:
        per_page = f"{v.per_page_min}/{v.per_page_mean:.1f}/{v.per_page_max}"
        ratio = f"{v.ratio_to_full:.4f}" if v.ratio_to_full == v.ratio_to_full else "-"
        lines.append(f"{v.view:36} {v.precision:>9} {v.vectors:>10} {per_page:>24} {format_bytes(v.bytes):>11} "
                     f"{ratio:>7}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.command == "make-tiny-model":
        from .checkpoints.tiny import build_checkpoint

        path = build_checkpoint(args.family, args.directory, args.size, args.dtype)
        print(f"wrote a {args.size} random {args.family} checkpoint to {path}")
        print(f"try: python -m vdr_app --help; python -m vdr_app add FILE.pdf --model {path}")
        return 0

    if args.command in ("check", "backup", "compact"):
        return _run_store_command(args)

    from .engine import Engine

    engine = Engine(_settings(args))
    command = args.command
    if command in ("add", "search", "delete", "view") and engine.settings.index != "memory":
        # The memory index is loaded from the store, so only an external index can be out of step.
        try:
            problem = engine.index_status().problem()
        except VdrError:
            problem = None  # unreachable: the command itself says so in one line (or leaves the add pending)
        if problem:
            print(f"warning: {problem}", file=sys.stderr)
    if command == "add":
        with _Bar("indexing") as bar:
            results = engine.add_files(args.files, progress=bar)
        for path, result in zip(args.files, results):
            state = "added" if result.added else "already indexed"
            print(f"{path.name}: {state} (document {result.doc_id}, {result.n_pages} pages)")
            if result.index_error:
                print(f"  stored, but pending in the search index: {result.index_error}")
            blank, reason = engine.pages_without_text(result.doc_id)
            if blank:
                print(f"  no text found on page(s) {', '.join(map(str, blank))}: they are kept but cannot match a query")
                if reason:
                    print(f"  {reason}")
            unread = [p for p in engine.pages(result.doc_id) if p.info.get("ocr_unread_script")]
            if unread:  # OCR found lines in a script it has no model for (docs/ocr.md)
                print(f"  page(s) {', '.join(str(p.page_number) for p in unread)} partly unread by OCR: "
                      f"{unread[0].info['ocr_unread_script']}")
        if engine.model_loaded and engine.encoder.kind != "visual":
            print(f"note: {engine.encoder.describe()} ranks pages by their text and its position, not by how they look")
    elif command == "search":
        hits = engine.search(args.query, k=args.k, view=args.view, docs=args.doc, rescore=args.rescore)
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
    elif command == "reencode":
        for path, data, error in engine.check_files(args.files):
            if error is not None:
                raise error
            with _Bar("re-encoding") as bar:
                doc_id, n_pages = engine.reencode_pdf(data, path.name, progress=bar)
            print(f"{path.name}: re-encoded (document {doc_id}, {n_pages} pages)")
    elif command == "delete":
        doc_id = engine.delete_document(args.doc)
        print(f"deleted document {doc_id}")
    elif command == "stats":
        stats = engine.stats()
        if args.json:
            _print_json(stats)
        else:
            free = (f", {format_bytes(stats['reclaimable_bytes'])} reclaimable with `compact`"
                    if stats["reclaimable_bytes"] else "")
            print(f"store   {stats['store']}  ({format_bytes(stats['file_bytes'])} on disk{free}, "
                  f"schema v{stats['schema_version']})")
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
    elif command == "sap-window":
        _run_sap_window(engine, args)
    elif command == "index":
        return _run_index(engine, args)
    return 0


def _run_index(engine, args: argparse.Namespace) -> int:
    if args.index_command == "sync":
        with _Bar("sync") as bar:
            report = engine.sync_index(progress=bar)
        print(f"{engine.index.backend} index ({engine.index.location}): {report}")
        return 0
    status = engine.index_status()
    if args.json:
        _print_json(status.as_dict())
        return 0
    print(f"backend {status.backend}  ({status.location})")
    print(f"model   {status.model or '-'}")
    print(f"{'view':36} {'store pages':>11} {'index pages':>11} {'store vectors':>13} {'index vectors':>13}")
    for v in status.views:
        held = "-" if v.index_pages is None else str(v.index_pages)
        held_v = "-" if v.index_vectors is None else str(v.index_vectors)
        print(f"{v.spec:36} {v.store_pages:>11} {held:>11} {v.store_vectors:>13} {held_v:>13}")
    for v in status.views:
        if v.first_stage:
            print(f"first stage of {v.spec}: {v.first_stage}")
    if any(v.index_pages is None for v in status.views):
        print("(-: not loaded in this process; the memory index loads a view from the store on its first search)")
    print(status.problem() or "in step with the store")
    return 0


def _run_store_command(args: argparse.Namespace) -> int:
    """`check`, `backup` and `compact` open the store alone (no model): they must work on any store."""
    from .store import SCHEMA_VERSION, Store

    path = _settings(args).store_file
    if not path.is_file():
        print(f"error: no store at {path}", file=sys.stderr)
        return EXIT_ERROR
    store = Store(path)
    try:
        if args.command == "compact":
            started = time.perf_counter()
            before, after = store.compact()
            print(f"compacted {path}: {format_bytes(before)} -> {format_bytes(after)} "
                  f"({format_bytes(max(0, before - after))} given back) in {time.perf_counter() - started:.1f} s")
            return 0
        if args.command == "backup":
            print(f"backed up {path} to {store.backup(args.destination, force=args.force)}")
            return 0
        damaged = store.check()
        if not damaged:
            print(f"{path}: ok (every table and column of schema v{SCHEMA_VERSION} present; SQLite integrity check "
                  "passed for every table)")
            return 0
        for table, problems in damaged.items():
            print(f"damaged: {table}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        print(f"{path} is damaged in {', '.join(damaged)}: restore a backup, or re-add the documents to a new store",
              file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()


def _run_eval(engine, args: argparse.Namespace) -> None:
    from .errors import InvalidQueryError, InvalidSpecError
    from .evaluate import (evaluate, folder_pdfs, load_labels, load_queries, stored_page_counts, sweep_specs,
                           write_html, write_json)
    from .pdf import inspect_pdf

    documents = None
    if args.benchmark:
        labels, documents = _index_benchmark(engine, args)
        queries = load_queries(args.queries) if args.queries else []
    elif not args.labels and not args.queries:
        raise InvalidQueryError("nothing to evaluate: give --labels FILE (JSON lines) and/or --queries FILE")
    elif args.folder:
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
        if args.sap_window == "cv":
            from .evaluate.sap_window import evaluate_sap_cv

            if not labels:
                raise InvalidQueryError("--sap-window cv chooses windows on labelled queries: give --labels FILE")
            if args.two_stage:
                raise InvalidSpecError("--sap-window cv and --two-stage do not combine: run them as two evaluations")
            evaluation = evaluate_sap_cv(engine, views, labels, queries, documents, progress=bar,
                                         skip_unavailable=args.sweep, rescore=args.rescore)
        else:
            evaluation = evaluate(engine, views, labels, queries, documents, progress=bar,
                                  skip_unavailable=args.sweep, rescore=args.rescore, two_stage=args.two_stage)
    print(f"model {evaluation.model}  {evaluation.documents} documents, {evaluation.pages} pages  "
          f"{len(evaluation.queries)} queries ({evaluation.labelled} labelled)")
    if evaluation.sap_window:
        cv = evaluation.sap_window
        for k, (n, choice) in enumerate(zip(cv["fold_queries"], cv["windows"])):
            print(f"sap window, fold {k + 1} of {cv['folds']} ({n} queries): layers {choice['layers']} of "
                  f"{choice['n_layers']}, chosen on the other {evaluation.labelled - n} queries' {choice['pairs']} "
                  f"pairs" + ("" if choice["calibrated"] else f" ({choice['reason']})"))
    print(evaluation.table())
    if evaluation.kinds:
        print()
        print(evaluation.kind_table())
    if args.json:
        print(f"wrote {write_json(evaluation, args.json)}")
    if args.html:
        print(f"wrote {write_html(evaluation, args.html)}")


def _run_sap_window(engine, args: argparse.Namespace) -> None:
    from .evaluate import load_labels, stored_page_counts
    from .evaluate.sap_window import calibrate, labelled_pairs, osr_lines
    from .reduce.sap_window import DEFAULT_KEEPS, random_retention

    labels = load_labels(args.labels, stored_page_counts(engine))
    keeps = args.keep or DEFAULT_KEEPS
    pairs = [pair for group in labelled_pairs(engine, labels) for pair in group]
    choice, renames = calibrate(engine, labels, keeps, record=not args.dry_run, pairs=pairs)
    recorded = renames is not None
    random = random_retention(pairs, choice.keeps)
    if args.json:
        _print_json(dict(choice.as_dict(), random=[round(float(v), 6) for v in random], recorded=recorded,
                         renamed_views=renames or {}, model=engine.store.model_id))
        return
    print(f"model {engine.store.model_id}  {choice.n_layers} layers  {len(labels)} labelled queries, "
          f"{choice.pairs} (query, relevant page) pairs" + (f", {choice.skipped} left out" if choice.skipped else ""))
    print("score retention (share of each relevant page's MaxSim score kept by sap at that window):")
    print("\n".join(osr_lines(choice, random)))
    print(choice.reason)
    if recorded:
        print(f"recorded in {engine.store.path}: `layers=auto` of sap views for this model now means layers "
              f"{choice.layers} (views already stored keep the window they were cut with)")
        for old, new in renames.items():
            print(f"renamed view {old} -> {new} (cut with the middle band)")
    elif args.dry_run:
        print("dry run: nothing recorded")
    else:
        print("nothing recorded")


def _index_benchmark(engine, args: argparse.Namespace):
    """Load a ViDoRe dataset and index its pages (one image-only PDF each) into the store.

    Returns:
        (labels, file name -> stored document id) for `evaluate`.
    """
    from .benchmark_data import index_benchmark, load_benchmark
    from .errors import InvalidLabelsError

    if args.folder or args.labels:
        raise InvalidLabelsError("--benchmark brings its own pages and labels: give no FOLDER or --labels with it")
    benchmark = load_benchmark(args.benchmark, args.split, args.max_pages)
    with _Bar("indexing") as bar:
        documents, added = index_benchmark(engine, benchmark, progress=bar)
    print(f"{args.benchmark} ({benchmark.layout} layout): {len(benchmark.pages)} pages ({added} newly indexed), "
          f"{len(benchmark.labels)} labelled queries")
    return benchmark.labels, documents


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    verbose = getattr(args, "verbose", False)
    try:
        return run(args)
    except VdrError as error:
        if verbose:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `... | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; the store is unchanged by the unfinished step", file=sys.stderr)
        return 130
    except Exception as error:  # a bug or an unforeseen failure: still one line, the traceback with -v
        if verbose:
            traceback.print_exc()
        text = str(error).splitlines()[0][:300] if str(error) else ""
        print(f"error: unexpected {type(error).__name__}{': ' + text if text else ''} "
              "(run again with -v for the traceback)", file=sys.stderr)
        return EXIT_ERROR
