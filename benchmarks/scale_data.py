"""Deterministic page vectors with the structure of real pages, for benchmarks/bench_scale.py.

Uniform random pages are useless for judging a first stage: every page ties with every other, so
"recall against exhaustive" only measures noise. Here every generated page is built from real page
vectors:

1. **Pool**: the corpus's own pages (../shared/corpus/pdfs), encoded offline by the text-layout
   encoder (MiniLM token vectors placed on the page grid; no download), projected by PCA from 384
   to 128 dimensions (ColPali's) and re-normalised. Cached as an .npz. Without the corpus (a fresh
   clone) a synthetic pool stands in: 200 "pages" of vectors drawn around 24 topic centres each
   (clearly reported as `pool: synthetic`).
2. **Recombination**: page i takes 3 source pages of the pool with Dirichlet(1, 1, 1) weights;
   each of its P vectors is a row of one source (picked by weight), or, half of the time, a blend
   `a * row1 + (1 - a) * row2` of two rows of its sources (a ~ U(0.5, 1)): new vectors, same
   neighbourhoods.
3. **Noise**: each vector gets Gaussian noise of norm ~0.5 (cosine ~0.9 to what it came from):
   a random row, randomly signed, of a fixed bank of 262,144 Gaussian vectors (drawing fresh
   normals for 115M vectors would dominate the run on 2 cores); then it is re-normalised. So pages sharing sources are similar by degree, not identical.

Everything comes from `numpy.random.default_rng([seed, chunk])` per chunk of 4,096 pages: any
chunk can be regenerated alone, the file is the same on every run, and generation streams to a
memory-mapped file without holding the corpus in RAM.

Queries: target page t (drawn from rng([seed, 1 << 20])); 20 of its vectors plus noise of norm
~0.6, re-normalised. The target is the known answer (it holds a near copy of every token); the
other places of the exhaustive top 10 are pages sharing its sources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 128
CHUNK = 4096
SOURCES = 3
VECTOR_NOISE = 0.5
QUERY_NOISE = 0.6
Q_TOKENS = 20


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def encode_corpus_pool(corpus: Path, cache: Path, max_pages_per_pdf: int = 40) -> Path:
    """Encode the corpus PDFs with the offline text-layout encoder (text layer only) into `cache`."""
    from vdr_app.models.text_layout import load
    from vdr_app.pdf import iter_pages

    encoder = load(device="cpu", ocr=False)
    pages = []
    for pdf in sorted(Path(corpus).glob("*.pdf")):
        try:
            images = list(iter_pages(pdf.read_bytes(), pdf.name))[:max_pages_per_pdf]
            pages += [e.patches.astype(np.float32) for e in encoder.encode_pages(images) if not e.info.get("no_text")]
        except Exception as error:  # noqa: BLE001 - a broken PDF is left out of the pool
            print(f"pool: skipped {pdf.name}: {error}")
    np.savez(cache, vectors=np.concatenate(pages), lengths=np.array([len(p) for p in pages]))
    return cache


def load_pool(path: Path | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(vectors float32 (V, 128) unit rows, page offsets (n + 1,), description)."""
    if path is not None and Path(path).exists():
        data = np.load(path)
        x, lengths = data["vectors"].astype(np.float32), data["lengths"]
        keep = lengths >= 8  # pages with a few words only add duplicates
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        x = np.concatenate([x[offsets[i]:offsets[i + 1]] for i in np.flatnonzero(keep)])
        lengths = lengths[keep]
        if x.shape[1] != DIM:  # PCA to ColPali's 128 dimensions
            centred = x - x.mean(axis=0)
            _, _, vt = np.linalg.svd(centred[:: max(1, len(x) // 50_000)], full_matrices=False)
            x = centred @ vt[:DIM].T
        return _normalise(x).astype(np.float32), np.concatenate([[0], np.cumsum(lengths)]), \
            f"corpus: {len(lengths)} pages, {len(x)} vectors (text-layout encoder, PCA to {DIM})"
    rng = np.random.default_rng([seed, 7])
    topics = _normalise(rng.standard_normal((24, DIM)))
    pages = []
    for _ in range(200):
        mix = rng.choice(24, size=4, replace=False)
        n = int(rng.integers(100, 600))
        pages.append(_normalise(topics[rng.choice(mix, n)] + 0.7 * rng.standard_normal((n, DIM)) / np.sqrt(DIM)))
    return (np.concatenate(pages).astype(np.float32), np.concatenate([[0], np.cumsum([len(p) for p in pages])]),
            "synthetic: 200 pages around 24 topic centres (no corpus found)")


def generate_chunk(pool: np.ndarray, pool_offsets: np.ndarray, first_page: int, n_pages: int, vectors: int,
                   seed: int, only_pages: int | None = None) -> np.ndarray:
    """float32 (n_pages * vectors, 128): pages first_page .. first_page + n_pages - 1 (a whole chunk
    of CHUNK pages, or the last one; chunks are the unit of determinism). `only_pages`: the first
    that many pages of the chunk only (same values; a cheap sample)."""
    rng = np.random.default_rng([seed, first_page // CHUNK])
    n_pool = len(pool_offsets) - 1
    src = rng.integers(0, n_pool, size=(n_pages, SOURCES))
    weights = rng.dirichlet(np.ones(SOURCES), size=n_pages)
    # Which source each vector comes from (by the page's weights) and which row of it.
    cum = np.cumsum(weights, axis=1)
    u = rng.random((n_pages, vectors, 2))
    pick = (u[..., :1] > cum[:, None, :]).sum(axis=2).clip(max=SOURCES - 1)
    pick2 = (u[..., 1:] > cum[:, None, :]).sum(axis=2).clip(max=SOURCES - 1)
    page_src = np.take_along_axis(src, pick, axis=1)
    page_src2 = np.take_along_axis(src, pick2, axis=1)
    starts, lens = pool_offsets[:-1], np.diff(pool_offsets)
    row1 = starts[page_src] + (rng.random((n_pages, vectors)) * lens[page_src]).astype(np.int64)
    row2 = starts[page_src2] + (rng.random((n_pages, vectors)) * lens[page_src2]).astype(np.int64)
    blend = rng.random((n_pages, vectors)) < 0.5
    a = np.where(blend, rng.uniform(0.5, 1.0, (n_pages, vectors)), 1.0).astype(np.float32)[..., None]
    # Noise: rows of a fixed bank of Gaussian vectors, each signed and rolled at random (drawing
    # fresh normals for 115M vectors would dominate the run time on 2 cores).
    bank = _noise_bank()
    pick = rng.integers(0, len(bank), size=(n_pages, vectors))
    sign = np.where(rng.random((n_pages, vectors)) < 0.5, -1.0, 1.0).astype(np.float32)[..., None]
    # Every random draw is made above; the vectors are computed a block of pages at a time, so a
    # chunk of 4,096 pages x 1,030 vectors (2 GB of float32) never needs its temporaries at once.
    n_pages = n_pages if only_pages is None else min(n_pages, only_pages)
    out = np.empty((n_pages * vectors, DIM), np.float32)
    step = max(1, 262_144 // vectors)
    for s in range(0, n_pages, step):
        step = min(step, n_pages - s)
        e = slice(s, s + step)
        x = _normalise(a[e] * pool[row1[e]] + (1 - a[e]) * pool[row2[e]])
        x += (VECTOR_NOISE / np.sqrt(DIM)) * sign[e] * bank[pick[e]]
        out[s * vectors:(s + step) * vectors] = _normalise(x).reshape(-1, DIM)
    return out


_BANK: np.ndarray | None = None


def _noise_bank(rows: int = 1 << 18) -> np.ndarray:
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(12345).standard_normal((rows, DIM), dtype=np.float32)
    return _BANK


def make_queries(page_vectors, n_pages: int, vectors: int, n_queries: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(queries: float32 (20, 128) each, target page of each). `page_vectors(i)` -> float32 (P, d)."""
    rng = np.random.default_rng([seed, 1 << 20])
    targets = rng.choice(n_pages, size=n_queries, replace=False)
    queries = []
    for t in targets:
        rows = page_vectors(int(t))[rng.choice(vectors, size=min(Q_TOKENS, vectors), replace=False)]
        noisy = rows + (QUERY_NOISE / np.sqrt(DIM)) * rng.standard_normal(rows.shape)
        queries.append(_normalise(noisy).astype(np.float32))
    return queries, targets
