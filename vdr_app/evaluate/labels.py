"""Label files (JSON lines of query, file, page, kind), query files and PDF folders: parsed and
checked, every bad line named."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import InvalidLabelsError, NotFoundError

LABEL_KEYS = ("query", "file", "page", "kind")
MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class LabeledQuery:
    """One query with its relevant pages.

    Attributes:
        query: the query text.
        relevant: (file name, 1-based page) pairs, in file order.
        kind: the optional category ("text", "table", ...), or None.
        lines: the 1-based lines of the label file it came from.
    """

    query: str
    relevant: tuple[tuple[str, int], ...]
    kind: str | None = None
    lines: tuple[int, ...] = ()


def _raise_errors(errors: list[str]) -> None:
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
        raise InvalidLabelsError("; ".join(shown) + more)


def parse_labels(text: str, source: str = "labels") -> list[LabeledQuery]:
    """Parse a JSON-lines label file (no check that files and pages exist: see `check_labels`).

    Each non-blank line is an object with "query" (non-empty text), "file" (a PDF file name),
    "page" (1-based integer) and optionally "kind" (text). Lines repeating a query add relevant
    pages to it (their kinds must agree).

    Args:
        text: the file's content.
        source: the name used in error messages (the file name).

    Returns:
        The queries in order of first appearance.

    Raises:
        InvalidLabelsError: naming `source:line` and what is wrong, for every bad line (the first
            five are shown).
    """
    errors: list[str] = []
    merged: dict[str, dict] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(f"{where}: not valid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}: expected a JSON object like "
                          '{"query": "...", "file": "doc.pdf", "page": 1}, got ' + type(row).__name__)
            continue
        unknown = sorted(set(row) - set(LABEL_KEYS))
        if unknown:
            errors.append(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(LABEL_KEYS)})")
            continue
        missing = [key for key in ("query", "file", "page") if key not in row]
        if missing:
            errors.append(f"{where}: missing {', '.join(repr(m) for m in missing)}")
            continue
        query, file, page, kind = row["query"], row["file"], row["page"], row.get("kind")
        if not isinstance(query, str) or not query.strip():
            errors.append(f"{where}: 'query' must be non-empty text, got {query!r}")
            continue
        if not isinstance(file, str) or not file.strip():
            errors.append(f"{where}: 'file' must be a PDF file name, got {file!r}")
            continue
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            errors.append(f"{where}: 'page' must be a page number >= 1, got {page!r}")
            continue
        if kind is not None and (not isinstance(kind, str) or not kind.strip()):
            errors.append(f"{where}: 'kind' must be non-empty text when given, got {kind!r}")
            continue
        query, file = query.strip(), Path(file.strip()).name
        kind = kind.strip() if kind is not None else None
        entry = merged.setdefault(query, dict(relevant=[], kind=kind, lines=[]))
        if entry["kind"] != kind:
            errors.append(f"{where}: kind {kind!r} differs from {entry['kind']!r} given for the same query "
                          f"on line {entry['lines'][0]}")
            continue
        if (file, page) not in entry["relevant"]:
            entry["relevant"].append((file, page))
        entry["lines"].append(number)
    _raise_errors(errors)
    if not merged:
        raise InvalidLabelsError(f"{source}: no labelled queries (expected JSON lines like "
                                 '{"query": "...", "file": "doc.pdf", "page": 1})')
    return [LabeledQuery(q, tuple(e["relevant"]), e["kind"], tuple(e["lines"])) for q, e in merged.items()]


def check_labels(labels: Sequence[LabeledQuery], page_counts: dict[str, int], source: str = "labels") -> None:
    """Check that every labelled page exists.

    Args:
        labels: parsed labels.
        page_counts: file name -> number of pages, of the documents being evaluated.
        source: the name used in error messages.

    Raises:
        InvalidLabelsError: naming the line, the file (with close matches) or the page and the
            file's page count.
    """
    errors = []
    for label in labels:
        for i, (file, page) in enumerate(label.relevant):
            line = label.lines[min(i, len(label.lines) - 1)] if label.lines else "?"
            where = f"{source}:{line}"
            if file not in page_counts:
                close = difflib.get_close_matches(file, list(page_counts), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                errors.append(f"{where}: unknown file {file!r}, not among the {len(page_counts)} documents{hint}")
            elif not 1 <= page <= page_counts[file]:
                errors.append(f"{where}: page {page} is out of range: {file!r} has {page_counts[file]} pages")
    _raise_errors(errors)


def load_labels(path: str | Path, page_counts: dict[str, int] | None = None) -> list[LabeledQuery]:
    """Read, parse and (when `page_counts` is given) check a label file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such label file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidLabelsError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    labels = parse_labels(text, path.name)
    if page_counts is not None:
        check_labels(labels, page_counts, path.name)
    return labels


def parse_queries(text: str) -> list[str]:
    """Queries from text, one per line: blank lines skipped, surrounding spaces removed, duplicates dropped."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def load_queries(path: str | Path) -> list[str]:
    """Read a query file (UTF-8 text, one query per line)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such query file")
    queries = parse_queries(path.read_text(encoding="utf-8"))
    if not queries:
        raise InvalidLabelsError(f"{path}: no queries (expected one query per line)")
    return queries


def folder_pdfs(folder: str | Path) -> list[Path]:
    """The PDF files directly inside a folder, sorted by name (NotFoundError when none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"{folder}: no such folder")
    pdfs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".pdf")
    if not pdfs:
        raise NotFoundError(f"{folder}: no PDF files in this folder")
    return pdfs
