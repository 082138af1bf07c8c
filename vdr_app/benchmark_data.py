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
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    source = str(source or "").strip()
    if not source:
        raise BenchmarkError("name a benchmark: a hub id such as vidore/docvqa_test_subsampled, or a dataset folder")
    if max_pages is not None and max_pages < 1:
        raise BenchmarkError(f"max pages must be at least 1, got {max_pages}")
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise NotFoundError(f"{source}: a benchmark is a dataset folder (save_to_disk) or a hub id")
        parts = _local_parts(local, split)
    else:
        parts = _hub_parts(source, split)
    if isinstance(parts, dict):
        layout, pages, labels = "beir", *_from_beir(**parts, max_pages=max_pages)
    else:
        layout, pages, labels = "qa", *_from_qa(parts, max_pages=max_pages)
    if max_pages is not None:
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
        text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""  # one line, however long
        raise BenchmarkError(f"{name}: cannot load the dataset ({type(error).__name__}"
                             f"{': ' + text if text else ''})") from None


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


def _from_qa(dataset, max_pages: int | None = None) -> tuple[list, list[LabeledQuery]]:
    """Pages (the first `max_pages` told apart by file name) and every query's page.

    The labels come from the text columns alone; only the kept pages' images are decoded (a
    capped run on a Space does not hold the whole dataset's images in memory).
    """
    _column(dataset, ("image",), "QA dataset")
    query_col = _column(dataset, ("query",), "QA dataset")
    file_col = _column(dataset, ("image_filename",), "QA dataset")
    first_row: dict[str, int] = {}
    relevant: dict[str, str] = {}
    for i, row in enumerate(dataset.select_columns([query_col, file_col])):
        name = page_file(row[file_col])
        first_row.setdefault(name, i)
        query = row[query_col]
        if query is not None and str(query).strip():
            relevant[str(query).strip()] = name  # the last row of a repeated query wins, as in vidore-benchmark
    kept = list(first_row.items())[:max_pages]
    pages = [(name, dataset[i]["image"]) for name, i in kept]
    labels = [LabeledQuery(query, ((name, 1),)) for query, name in relevant.items()]
    return pages, labels


def _from_beir(corpus, queries, qrels, max_pages: int | None = None) -> tuple[list, list[LabeledQuery]]:
    corpus_id = _column(corpus, CORPUS_ID, "corpus")
    _column(corpus, ("image",), "corpus")
    query_id = _column(queries, QUERY_ID, "queries")
    query_col = _column(queries, ("query",), "queries")
    qrel_query, qrel_corpus = _column(qrels, QUERY_ID, "qrels"), _column(qrels, CORPUS_ID, "qrels")
    score_col = _column(qrels, ("score",), "qrels")
    kept = corpus if max_pages is None else corpus.select(range(min(max_pages, len(corpus))))
    pages = [(page_file(row[corpus_id]), row["image"]) for row in kept]  # only the kept images are decoded
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


def index_benchmark(engine, benchmark: Benchmark,
                    progress: Callable[[float, str], None] | None = None) -> tuple[dict[str, int], int]:
    """Index every page of `benchmark` into the engine's store, one image-only PDF each.

    Every stored page is searched, so a store holding anything else would change every figure:
    such a store is refused before anything is encoded. Pages already stored (a second run on the
    same store) are not encoded again.

    Returns:
        (page file name -> stored document id, number of pages newly indexed).

    Raises:
        BenchmarkError: the store holds documents that are not pages of this benchmark.
    """
    names = {name for name, _ in benchmark.pages}
    others = [doc.name for doc in engine.list_documents() if doc.name not in names]
    if others:
        raise BenchmarkError(f"the store holds {len(others)} documents that are not in {benchmark.name} "
                             f"(e.g. {others[0]!r}): give the benchmark a store of its own (--store PATH)")
    documents: dict[str, int] = {}
    added = 0
    total = len(benchmark.pages)
    for i, (name, _) in enumerate(benchmark.pages):
        if progress is not None:
            progress(i / total, f"indexing page {i + 1}/{total}")
        result = engine.add_pdf(benchmark.pdf(i, engine.limits.dpi), name)
        documents[name] = result.doc_id
        added += result.added
    return documents, added


@contextmanager
def temporary_library(engine) -> Iterator:
    """An engine over a new, empty store in a temporary folder, with `engine`'s model (loaded once,
    shared): a benchmark evaluated in the web app never enters the visitor's own library. The
    folder is removed on exit, whatever happened."""
    from .store import Store

    folder = Path(tempfile.mkdtemp(prefix="vdr-benchmark-"))
    store = None
    try:
        store = Store(folder / "benchmark.sqlite")
        yield engine.sharing_model(store)
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(folder, ignore_errors=True)
