"""The papers' benchmark as a labelled library: a ViDoRe dataset's pages, queries and relevance.

ViDoRe comes in two layouts (both read here through the `datasets` package, imported only when a
benchmark is asked for):

- **v1, question-answering** (`vidore/docvqa_test_subsampled`, ...): one split "test", a row per
  page image with `image`, `image_filename` and an optional `query` (None on distractor pages).
  As in vidore-benchmark's QA evaluator: pages are told apart by `image_filename`, queries are
  deduplicated (None dropped), and a query's relevant page is the page of its row (the last row
  when a query repeats).
- **v2/v3 and v1 `_beir`, BEIR** (`vidore/..._beir`, `vidore/vidore_v3_...`): three configs,
  `corpus` (`corpus-id`, `image`), `queries` (`query-id`, `query`) and `qrels` (`query-id`,
  `corpus-id`, `score`), split "test". A page is relevant when its score is above 0 (the metrics
  here are binary; graded v3 scores count as relevant).

A source is a hub id (`vidore/<dataset>`, needs network or the datasets cache) or a local folder:
a QA dataset saved with `save_to_disk` (a Dataset or a DatasetDict with the split), or a folder
holding `corpus/`, `queries/` and `qrels/`, each saved with `save_to_disk`.

Each page becomes a one-page image-only PDF (the engine indexes PDFs), named after its id, so the
labels are ordinary `LabeledQuery`s and `evaluate.evaluate` scores every view as for the corpus.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
import time
from pathlib import Path

from PIL import Image

from .errors import InvalidLabelsError, NotFoundError, VdrError
from .evaluate import LabeledQuery

BEIR_CONFIGS = ("corpus", "queries", "qrels")
# Column names: the hub's BEIR sets write "corpus-id"; some exports write "corpus_id".
CORPUS_ID = ("corpus-id", "corpus_id")
QUERY_ID = ("query-id", "query_id")
FIXED_DATE = time.gmtime(946684800)  # 2000-01-01, in the struct Pillow writes as a PDF date


class BenchmarkError(VdrError):
    """A benchmark dataset that cannot be loaded or does not have the ViDoRe layout."""


@dataclass
class Benchmark:
    """A benchmark ready to index and evaluate.

    Attributes:
        name: the source as given (hub id or folder).
        layout: "qa" (ViDoRe v1) or "beir" (v2/v3, v1 _beir).
        pages: (file name, image) of every page, in dataset order; file names end in ".pdf".
        labels: queries with their relevant pages as (file name, 1).
    """

    name: str
    layout: str
    pages: list[tuple[str, Image.Image]]
    labels: list[LabeledQuery]

    def pdf(self, index: int, dpi: int) -> bytes:
        """Page `index` as a one-page image-only PDF whose page renders back at `dpi` to the
        image's own size. The same page gives the same bytes (fixed dates), so a second run finds
        its pages already stored instead of indexing them again."""
        buffer = io.BytesIO()
        self.pages[index][1].convert("RGB").save(buffer, "PDF", resolution=float(dpi),
                                                 creationDate=FIXED_DATE, modDate=FIXED_DATE)
        return buffer.getvalue()


def load_benchmark(source: str, split: str = "test", max_pages: int | None = None) -> Benchmark:
    """Load a ViDoRe dataset (hub id or local folder) as pages and labelled queries.

    Args:
        source: "vidore/<dataset>" or a folder (see the module docstring).
        split: the split to read ("test" for every ViDoRe set).
        max_pages: keep only the first N pages (a quick look on a CPU); queries left without a
            relevant page are dropped. Figures are then not comparable with the papers'.

    Raises:
        BenchmarkError: `datasets` missing, the dataset unreachable or not in a ViDoRe layout.
        InvalidLabelsError: no query has a relevant page.
    """
    try:
        import datasets  # noqa: F401  (imported here: only this command needs it)
    except ImportError:
        raise BenchmarkError("the `datasets` package is needed for --benchmark: pip install datasets") from None
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise NotFoundError(f"{source}: a benchmark is a dataset folder (save_to_disk) or a hub id")
        parts = _local_parts(local, split)
    else:
        parts = _hub_parts(source, split)
    if isinstance(parts, dict):
        layout, pages, labels = "beir", *_from_beir(**parts)
    else:
        layout, pages, labels = "qa", *_from_qa(parts)
    if max_pages is not None:
        if max_pages < 1:
            raise BenchmarkError(f"max pages must be at least 1, got {max_pages}")
        pages = pages[:max_pages]
        kept = {name for name, _ in pages}
        labels = [LabeledQuery(q.query, tuple(r for r in q.relevant if r[0] in kept), q.kind)
                  for q in labels]
        labels = [q for q in labels if q.relevant]
    if not labels:
        raise InvalidLabelsError(f"{source}: no query with a relevant page among the {len(pages)} pages")
    return Benchmark(name=source, layout=layout, pages=pages, labels=labels)


def _local_parts(folder: Path, split: str):
    """A QA Dataset, or {"corpus": ..., "queries": ..., "qrels": ...} of Datasets, from disk."""
    from datasets import load_from_disk

    def one(path: Path):
        try:
            loaded = load_from_disk(str(path))
        except Exception as error:  # not a saved dataset: FileNotFoundError, a bad Arrow file...
            raise BenchmarkError(f"{path}: not a dataset saved with save_to_disk ({error})") from None
        return _split(loaded, split, path)

    if all((folder / name).is_dir() for name in BEIR_CONFIGS):
        return {name: one(folder / name) for name in BEIR_CONFIGS}
    return one(folder)


def _hub_parts(name: str, split: str):
    """The same as `_local_parts`, from the hub (or the local datasets cache)."""
    from datasets import get_dataset_config_names, load_dataset

    try:
        configs = set(get_dataset_config_names(name))
        if set(BEIR_CONFIGS) <= configs:
            return {config: load_dataset(name, config, split=split) for config in BEIR_CONFIGS}
        return load_dataset(name, split=split)
    except Exception as error:  # no network, unknown dataset, gated access...
        raise BenchmarkError(f"{name}: cannot load the dataset ({type(error).__name__}: {error})") from None


def _split(loaded, split: str, where):
    """A Dataset from a Dataset or a DatasetDict holding `split`."""
    if hasattr(loaded, "keys"):  # DatasetDict
        if split not in loaded:
            raise BenchmarkError(f"{where}: no split {split!r} (it has {', '.join(loaded.keys())})")
        return loaded[split]
    return loaded


def _column(dataset, names: tuple[str, ...], where: str) -> str:
    for name in names:
        if name in dataset.column_names:
            return name
    raise BenchmarkError(f"{where}: no column {' or '.join(repr(n) for n in names)} "
                         f"(it has {', '.join(dataset.column_names)})")


def page_file(page_id) -> str:
    """A file name for a page id ("images/p 1.png" -> "images_p_1.pdf")."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", str(page_id))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") + ".pdf"


def _from_qa(dataset) -> tuple[list, list[LabeledQuery]]:
    _column(dataset, ("image",), "QA dataset")
    query_col = _column(dataset, ("query",), "QA dataset")
    file_col = _column(dataset, ("image_filename",), "QA dataset")
    pages: dict[str, Image.Image] = {}
    relevant: dict[str, str] = {}
    for row in dataset:
        name = page_file(row[file_col])
        pages.setdefault(name, row["image"])
        query = row[query_col]
        if query is not None and str(query).strip():
            relevant[str(query).strip()] = name  # the last row of a repeated query wins, as in vidore-benchmark
    labels = [LabeledQuery(query, ((name, 1),)) for query, name in relevant.items()]
    return list(pages.items()), labels


def _from_beir(corpus, queries, qrels) -> tuple[list, list[LabeledQuery]]:
    corpus_id = _column(corpus, CORPUS_ID, "corpus")
    _column(corpus, ("image",), "corpus")
    query_id = _column(queries, QUERY_ID, "queries")
    query_col = _column(queries, ("query",), "queries")
    qrel_query, qrel_corpus = _column(qrels, QUERY_ID, "qrels"), _column(qrels, CORPUS_ID, "qrels")
    score_col = _column(qrels, ("score",), "qrels")
    pages = [(page_file(row[corpus_id]), row["image"]) for row in corpus]
    names = {str(row[corpus_id]): page_file(row[corpus_id]) for row in corpus.select_columns([corpus_id])}
    relevant: dict[str, list[str]] = {}
    for row in qrels:
        if float(row[score_col]) > 0 and str(row[qrel_corpus]) in names:
            relevant.setdefault(str(row[qrel_query]), []).append(names[str(row[qrel_corpus])])
    labels: dict[str, list[str]] = {}
    for row in queries:
        text = str(row[query_col] or "").strip()
        for name in relevant.get(str(row[query_id]), ()):
            if text and name not in labels.setdefault(text, []):
                labels[text].append(name)  # a query text asked twice: the union of its pages
    return pages, [LabeledQuery(q, tuple((n, 1) for n in names_)) for q, names_ in labels.items() if names_]
