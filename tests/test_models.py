"""Encoders of every supported family, through tiny random checkpoints loaded by from_pretrained.

The tiny models' vectors mean nothing, but their token geometry is the real families': the
coloured-block test checks that each patch's box is where its pixels came from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vdr_app.errors import ModelLoadError
from vdr_app.models import available_encoders, detect_family, load_encoder, register_encoder
from vdr_app.models.layout import grid_layout, idefics3_layout, tiled_layout
from vdr_app.models.registry import FAMILIES
from vdr_app.checkpoints.tiny import BUILDERS, build_tiny_checkpoint, main
from vdr_app.types import PageImage, derive_cells

FAMILY_NAMES = list(BUILDERS)
# The block sits off every tile boundary and is not symmetric under transposition.
BLOCK = (0.55, 0.10, 0.80, 0.30)  # x0, y0, x1, y1 in page fractions


def a4(colour="white") -> Image.Image:
    return Image.new("RGB", (827, 1170), colour)


def page_with_block(block=BLOCK) -> Image.Image:
    image = a4()
    w, h = image.size
    ImageDraw.Draw(image).rectangle([block[0] * w, block[1] * h, block[2] * w, block[3] * h], fill=(220, 0, 0))
    return image


# Different sizes give different token counts (ColQwen) or tile counts (colSmol), so a batch
# of them is padded.
MIXED_PAGES = [(827, 1170), (1600, 400), (300, 200)]


def mixed_pages() -> list[PageImage]:
    rng = np.random.default_rng(0)
    out = []
    for i, (w, h) in enumerate(MIXED_PAGES):
        pixels = rng.integers(0, 255, size=(h // 10, w // 10, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((w, h), Image.NEAREST)
        out.append(PageImage(image, page_number=i + 1))
    return out


@pytest.fixture(scope="module")
def encoders(tiny_checkpoint):
    """family -> loaded encoder, each loaded once for this module."""
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = load_encoder(str(tiny_checkpoint(family)), device="cpu", batch_size=2)
        return cache[family]

    return get


# ---------------------------------------------------------------- layout (pure numpy)


def coverage(boxes: np.ndarray, n: int = 97) -> np.ndarray:
    """How many boxes cover each of n x n sample points (off every grid line: n is prime)."""
    centres = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(centres, centres)
    hits = np.zeros((n, n), dtype=int)
    for x0, y0, x1, y1 in boxes:
        hits += (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return hits


def test_grid_layout_is_row_major():
    layout = grid_layout(2, 3)
    np.testing.assert_allclose(
        layout.boxes[:4],
        [[0, 0, 1 / 3, 0.5], [1 / 3, 0, 2 / 3, 0.5], [2 / 3, 0, 1, 0.5], [0, 0.5, 1 / 3, 1]],
        atol=1e-7,
    )
    assert layout.cells[:, 1:].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert (coverage(layout.boxes) == 1).all()
    np.testing.assert_array_equal(derive_cells(layout.boxes), layout.cells)


def test_tiled_layout_goes_tile_by_tile():
    # 2x3 tiles of 2x2 tokens: token 4 is the first token of the second tile (top row, middle).
    layout = tiled_layout(2, 3, 2)
    assert len(layout) == 24
    assert layout.cells[:8, 1:].tolist() == [
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],  # tile (0, 0)
        [0, 2],
        [0, 3],
        [1, 2],
        [1, 3],  # tile (0, 1)
    ]
    assert layout.cells[12].tolist() == [0, 2, 0]  # first token of tile (1, 0)
    assert layout.boxes[4].tolist() == pytest.approx([2 / 6, 0, 3 / 6, 1 / 4])
    assert (coverage(layout.boxes) == 1).all()
    np.testing.assert_array_equal(derive_cells(layout.boxes), layout.cells)


def test_idefics3_layout_puts_global_thumbnail_last():
    layout = idefics3_layout(2, 2, 8)
    assert len(layout) == 5 * 64
    assert (layout.cells[:256, 0] == 0).all() and (layout.cells[256:, 0] == 1).all()
    assert layout.boxes[256].tolist() == pytest.approx([0, 0, 1 / 8, 1 / 8])
    for region in (0, 1):
        assert (coverage(layout.boxes[layout.cells[:, 0] == region]) == 1).all()
    unsplit = idefics3_layout(0, 0, 8)
    assert len(unsplit) == 64 and (unsplit.cells[:, 0] == 0).all()
    assert unsplit.info["tiles"] == [0, 0]


# ---------------------------------------------------------------- every family


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_encode_pages_shapes_and_invariants(encoders, family):
    encoder = encoders(family)
    assert encoder.family == family and encoder.kind == "visual"
    from vdr_app.models.colvision import dtype_for

    assert encoder.model.dtype == dtype_for("cpu")  # float32 unless the CPU has native bfloat16
    assert encoder.capture == "final-row"  # SDPA everywhere, the final-token row computed in one layer
    calls = []
    pages = mixed_pages()
    out = encoder.encode_pages(pages, progress=lambda f, m: calls.append(f))
    assert calls == pytest.approx([2 / 3, 1.0])  # batch_size=2: two batches
    assert len(out) == len(pages)
    for emb in out:
        n = emb.n_patches
        assert n > 0 and emb.patches.shape == (n, encoder.dim) and emb.patches.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb.patches, axis=1), 1, atol=1e-5)
        assert emb.boxes.shape == (n, 4) and emb.cells.shape == (n, 3)
        assert emb.boxes.min() >= 0 and emb.boxes.max() <= 1
        assert (emb.boxes[:, 2:] > emb.boxes[:, :2]).all()
        for region in np.unique(emb.cells[:, 0]):
            # Each region's boxes tile the whole page exactly once.
            assert (coverage(emb.boxes[emb.cells[:, 0] == region]) == 1).all(), region
        assert emb.attention.shape == (n,) and (emb.attention >= 0).all()
        assert emb.attention.sum() <= 1 + 1e-4  # one softmax row, shared with the extra tokens
        assert emb.extra.shape[0] > 0 and emb.extra.shape[1] == encoder.dim
        np.testing.assert_allclose(np.linalg.norm(emb.extra, axis=1), 1, atol=1e-5)
        assert emb.model_id == encoder.model_id
        assert emb.info["family"] == family


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_batched_pages_match_one_at_a_time(encoders, family):
    """Padding in a mixed-size batch changes nothing: the fast path equals the simple loop."""
    encoder = encoders(family)
    pages = mixed_pages()
    batched = encoder.encode_pages(pages)
    single = [encoder.encode_pages([p])[0] for p in pages]
    for b, s in zip(batched, single, strict=True):
        np.testing.assert_array_equal(b.boxes, s.boxes)
        np.testing.assert_allclose(b.patches, s.patches, atol=2e-4)
        np.testing.assert_allclose(b.extra, s.extra, atol=2e-4)
        # Same final token picked under left (Qwen, Idefics3) and right (PaliGemma) padding.
        np.testing.assert_allclose(b.attention, s.attention, atol=2e-5)


@pytest.fixture(scope="module")
def eager_encoders(tiny_checkpoint):
    """family -> the same checkpoint with eager attention in every layer (the reference)."""
    cache = {}

    def get(family):
        if family not in cache:
            folder = str(tiny_checkpoint(family))
            adapter = load_encoder(folder, device="cpu", batch_size=2).__class__
            cache[family] = adapter.load(folder, model_id=folder, device="cpu", batch_size=2, attn_implementation="eager")
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_captured_attention_equals_eager(encoders, eager_encoders, family):
    """The default (SDPA + the final-token row computed from q/k) gives what eager attention gives."""
    fast, eager = encoders(family), eager_encoders(family)
    assert fast.capture == "final-row" and eager.capture == "hook"
    assert fast.model.config._attn_implementation == "sdpa"
    assert eager.model.config._attn_implementation == "eager"
    pages = mixed_pages()  # padded batches of different page sizes
    ours, reference = fast.encode_pages(pages), eager.encode_pages(pages)
    for a, b in zip(ours, reference, strict=True):
        assert a.attention.shape == b.attention.shape
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-6, rtol=1e-4)
        np.testing.assert_allclose(a.patches, b.patches, atol=1e-4)
        np.testing.assert_allclose(a.extra, b.extra, atol=1e-4)
    texts = ["revenue growth?", "bar chart of sales by year in region three"]  # padded and not
    for a, b in zip(fast.encode_queries(texts), eager.encode_queries(texts), strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-4)


# Centrality tolerance: the captured values are rounded to float16 (the stored precision,
# relative step 2^-11); the rest is eager-vs-SDPA drift of the tiny random models' hidden states.
CENTRALITY_RTOL = {"colqwen3": 1e-2}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_captured_centrality_equals_eager_attention_loop(encoders, eager_encoders, family):
    """Every decoder layer's in-degree of each patch, from the SDPA pass, equals a plain loop over
    the eager model's own attention weights: sum over image rows i of mean over heads A[h, i, j]."""
    import torch

    fast, eager = encoders(family), eager_encoders(family)
    layers = eager.decoder_attention_modules()
    assert fast.centrality_layers == len(layers) >= 2 and eager.centrality_layers == 0
    pages = mixed_pages()  # padded batches of different page sizes
    ours = fast.encode_pages(pages)
    weights: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, i=i: weights.__setitem__(i, out[1]))
             for i, m in enumerate(layers)]
    try:
        batch = eager.processor.process_images([p.image.convert("RGB") for p in pages])
        image = eager.processor.get_image_mask(batch).numpy()
        with torch.inference_mode():
            eager.model(**eager._to_device(eager.model_inputs(batch)))
    finally:
        for hook in hooks:
            hook.remove()
    for b, emb in enumerate(ours):
        rows = np.flatnonzero(image[b])
        reference = np.zeros((len(layers), len(rows)))
        for layer in range(len(layers)):
            a = weights[layer][b].double().numpy()  # (H, L, L)
            for jj, j in enumerate(rows):
                reference[layer, jj] = a[:, rows, j].mean(0).sum()  # over heads, then image rows i
        assert emb.centrality.shape == reference.shape
        np.testing.assert_allclose(emb.centrality, reference, rtol=CENTRALITY_RTOL.get(family, 2e-3),
                                   atol=1e-3 * reference.max())


@pytest.mark.parametrize("batched", [True, False], ids=["one-product", "row-blocks"])
@pytest.mark.parametrize("mask_kind", ["none-causal", "none-bidirectional", "bool", "float"])
def test_in_degree_matches_a_plain_loop(mask_kind, batched, monkeypatch):
    import torch

    from vdr_app.models import centrality
    from vdr_app.models.centrality import in_degree

    if not batched:  # the path long sequences take, in blocks of 3 rows
        monkeypatch.setattr(centrality, "_BATCHED_ELEMENTS", 0)
        monkeypatch.setattr(centrality, "_ROW_CHUNK", 3)

    g = torch.Generator().manual_seed(1)
    batch, heads, kv_heads, length, dim = 2, 4, 2, 9, 5
    query = torch.randn(batch, heads, length, dim, generator=g)
    key = torch.randn(batch, kv_heads, length, dim, generator=g)
    rows = torch.zeros(batch, length, dtype=torch.bool)
    rows[0, 1:6] = True
    rows[1, 3:8] = True
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    mask = None
    if mask_kind == "bool":
        mask = causal[None, None].expand(batch, 1, length, length)
    elif mask_kind == "float":
        mask = torch.zeros(batch, 1, length, length).masked_fill(~causal[None, None], -1e9)
    is_causal = mask_kind != "none-bidirectional"
    ours = in_degree(query, key, mask, 0.4, rows, is_causal).numpy()
    q, k = query.double().numpy(), key.double().numpy()
    expected = np.zeros((batch, length))
    for b in range(batch):
        for h in range(heads):
            for i in np.flatnonzero(rows[b].numpy()):
                scores = np.array([q[b, h, i] @ k[b, h // 2, j] * 0.4 for j in range(length)])
                allowed = np.arange(length) <= i if is_causal else np.ones(length, bool)
                e = np.where(allowed, np.exp(scores - scores.max()), 0)
                expected[b] += e / e.sum() / heads
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    np.testing.assert_allclose(ours.sum(1), rows.sum(1).numpy(), atol=1e-5)  # each row gives 1


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", ["colidefics3", "colqwen2.5", "colpali"])
def test_16_bit_dtypes_stay_within_tolerance_of_float32(encoders, tiny_checkpoint, family, dtype):
    """The 16-bit dtypes "auto" picks: bfloat16 (a CPU with native bfloat16, a GPU of compute
    capability >= 8) and float16 (a T4, MPS): same geometry, vectors within the stated tolerance
    of float32 (README: cosine >= 0.998 per vector; 0.9988 was the minimum on the full-size models
    in bfloat16), the same final-row capture, and MaxSim scores within 1 %."""
    import torch

    from vdr_app.index.maxsim import MaxSimIndex

    fp32 = encoders(family)
    bf16 = load_encoder(str(tiny_checkpoint(family)), device="cpu", batch_size=2, dtype=dtype)
    assert bf16.model.dtype == getattr(torch, dtype) and bf16.capture == "final-row"
    pages = mixed_pages()
    ours, reference = bf16.encode_pages(pages), fp32.encode_pages(pages)
    for a, b in zip(ours, reference, strict=True):
        assert a.patches.dtype == np.float32  # stored as float32 whatever the model ran in
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert (a.patches * b.patches).sum(1).min() >= 0.998
        np.testing.assert_allclose(a.attention, b.attention, atol=5e-3)
    texts = ["revenue growth?", "bar chart of sales by year in region three", "signature and date"]
    index32 = MaxSimIndex([np.vstack([p.patches, p.extra]) for p in reference])
    index16 = MaxSimIndex([np.vstack([p.patches, p.extra]) for p in ours])
    for q32, q16 in zip(fp32.encode_queries(texts), bf16.encode_queries(texts), strict=True):
        assert (q32.vectors * q16.vectors).sum(1).min() >= 0.998
        # Scores, not the top page: random tiny models leave near-ties that 0.3 % of drift can swap.
        np.testing.assert_allclose(index16.scores(q16.vectors), index32.scores(q32.vectors), rtol=1e-2)


@pytest.mark.parametrize("family", ["colidefics3", "colpali"])
def test_captured_attention_equals_eager_output_attentions(encoders, eager_encoders, family):
    """The captured row equals the eager backbone's own output_attentions (last layer)."""
    import torch

    encoder, eager = encoders(family), eager_encoders(family)
    pages = mixed_pages()[:2]
    ours = encoder.encode_pages(pages)
    batch = encoder.processor.process_images([p.image for p in pages])
    inputs = {k: v for k, v in encoder.model_inputs(batch).items() if k != "logits_to_keep"}
    with torch.inference_mode():
        out = eager.model.model(**inputs, output_attentions=True, return_dict=True)
    last = out.attentions[-1].float().mean(1)  # (B, L, L)
    mask = encoder.processor.get_image_mask(batch)
    final = batch["attention_mask"].shape[1] - 1 - batch["attention_mask"].flip(1).argmax(1)
    for b, emb in enumerate(ours):
        np.testing.assert_allclose(emb.attention, last[b, final[b]][mask[b]].numpy(), atol=1e-6)


def _reference_row(query, key, mask, scaling, final, causal):
    """final_token_row as a plain loop over batch and heads (numpy, float64)."""
    q, k = query.double().numpy(), key.double().numpy()
    batch, heads, length, _ = q.shape
    groups = heads // k.shape[1]
    out = np.zeros((batch, length))
    for b in range(batch):
        f = int(final[b])
        for h in range(heads):
            scores = np.array([q[b, h, f] @ k[b, h // groups, j] * scaling for j in range(length)])
            if mask is None:
                allowed = np.arange(length) <= f if causal else np.ones(length, bool)
                scores = np.where(allowed, scores, -np.inf)
            elif mask.dtype == torch_bool():
                scores = np.where(mask[b, 0, f].numpy(), scores, -np.inf)
            else:
                scores = scores + mask[b, 0, f].double().numpy()
            e = np.exp(scores - scores.max())
            out[b] += e / e.sum() / heads
    return out


def torch_bool():
    import torch

    return torch.bool


@pytest.mark.parametrize("mask_kind", ["none-causal", "none-bidirectional", "bool", "float"])
def test_final_token_row_matches_a_plain_loop(mask_kind):
    import torch

    from vdr_app.models.final_row import final_token_row

    g = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, length, dim = 3, 4, 2, 7, 5  # grouped-query attention: 2 heads per kv head
    query = torch.randn(batch, heads, length, dim, generator=g)
    key = torch.randn(batch, kv_heads, length, dim, generator=g)
    final = torch.tensor([6, 4, 2])
    valid = torch.arange(length)[None, :] <= final[:, None]  # right padding after `final`
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    mask = None
    if mask_kind == "bool":
        mask = (causal[None] & valid[:, None, :])[:, None]  # (B, 1, L, L)
    elif mask_kind == "float":
        mask = torch.zeros(batch, 1, length, length).masked_fill(~(causal[None] & valid[:, None, :])[:, None], -1e9)
    is_causal = mask_kind != "none-bidirectional"
    ours = final_token_row(query, key, mask, 0.3, final, is_causal).numpy()
    np.testing.assert_allclose(ours, _reference_row(query, key, mask, 0.3, final, is_causal), atol=1e-6)
    np.testing.assert_allclose(ours.sum(1), 1, atol=1e-6)
    if mask_kind != "none-bidirectional":
        assert (ours[1, 5:] == 0).all()  # nothing after the final token


def test_capture_belongs_to_the_call_not_the_model(encoders):
    """Forward passes in other threads (queries, other uploads) neither see nor spoil a capture."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = encoders("colidefics3")
    pages = mixed_pages()
    alone = [encoder.encode_pages([p])[0].attention for p in pages]

    def work(i):
        if i % 2:
            return encoder.encode_queries(["revenue growth by region"]) and None
        return encoder.encode_pages([pages[(i // 2) % 3]])[0].attention

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(12)))
    for i, attention in enumerate(results):
        if i % 2 == 0:
            np.testing.assert_allclose(attention, alone[(i // 2) % 3], atol=1e-6)


def _overlap(boxes: np.ndarray, rect) -> np.ndarray:
    """Fraction of each box's area inside rect."""
    ix = np.clip(np.minimum(boxes[:, 2], rect[2]) - np.maximum(boxes[:, 0], rect[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], rect[3]) - np.maximum(boxes[:, 1], rect[1]), 0, None)
    return ix * iy / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def block_is_localised(boxes: np.ndarray, change: np.ndarray, block=BLOCK) -> bool:
    """Every patch whose box lies inside the block changed more than every patch away from it.

    Patches touching the block's one-cell margin are ignored (resampling blurs the edge).
    """
    w, h = (boxes[:, 2] - boxes[:, 0]).max(), (boxes[:, 3] - boxes[:, 1]).max()
    margin = (block[0] - w, block[1] - h, block[2] + w, block[3] + h)
    inside = change[_overlap(boxes, block) > 0.99]
    away = change[_overlap(boxes, margin) == 0]
    return len(inside) > 0 and len(away) > 0 and inside.min() > away.max()


def _wrong_layouts(boxes: np.ndarray, info: dict, region: int):
    """Plausible geometry mistakes that the block test must catch."""
    yield "transposed", boxes[:, [1, 0, 3, 2]]
    if region == 0 and "tiles" in info:
        rows, cols = info["grid"]
        yield "row-major over the tiled grid", grid_layout(rows, cols).boxes


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_coloured_block_lands_on_its_patches(encoders, family):
    encoder = encoders(family)
    blank, marked = encoder.encode_pages([PageImage(a4()), PageImage(page_with_block())])
    change = np.linalg.norm(marked.patches - blank.patches, axis=1)  # (n,)
    for region in np.unique(blank.cells[:, 0]):
        sel = blank.cells[:, 0] == region
        assert block_is_localised(blank.boxes[sel], change[sel]), (family, region)
        for name, wrong in _wrong_layouts(blank.boxes[sel], blank.info, region):
            assert not block_is_localised(wrong, change[sel]), (family, region, name)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_encode_queries_tokens_align_with_vectors(encoders, family):
    encoder = encoders(family)
    texts = ["revenue growth?", "bar chart of sales by year in region three"]
    together = encoder.encode_queries(texts)
    assert [q.text for q in together] == texts
    for q, text in zip(together, texts, strict=True):
        assert q.vectors.shape == (len(q.tokens), encoder.dim)
        np.testing.assert_allclose(np.linalg.norm(q.vectors, axis=1), 1, atol=1e-5)
        assert text in "".join(q.tokens)
        alone = encoder.encode_queries([text])[0]  # no padding when alone
        assert alone.tokens == q.tokens
        np.testing.assert_allclose(alone.vectors, q.vectors, atol=2e-4)
    assert encoder.encode_queries([]) == [] and encoder.encode_pages([]) == []


# ---------------------------------------------------------------- colSmol details


def test_colsmol_page_that_fits_one_tile_has_only_the_global_image(tmp_path):
    from vdr_app.checkpoints.tiny import build_colidefics3

    # longest_edge == tile side: no page is ever split.
    folder = build_colidefics3(tmp_path / "unsplit", longest_edge=256)
    encoder = load_encoder(str(folder), device="cpu")
    blank, marked = encoder.encode_pages([PageImage(a4()), PageImage(page_with_block())])
    assert blank.n_patches == 64 and (blank.cells[:, 0] == 0).all()
    assert blank.info["tiles"] == [0, 0] and blank.info["grid"] == [8, 8]
    change = np.linalg.norm(marked.patches - blank.patches, axis=1)
    assert block_is_localised(blank.boxes, change)


def test_colsmol_tiles_follow_the_image_processor(encoders):
    """A wide strip is cut into 1x2 tiles, an A4 page into 2x2 (tiny colSmol: 256-px tiles)."""
    encoder = encoders("colidefics3")
    strip, page = encoder.encode_pages([PageImage(Image.new("RGB", (1600, 400), "white")), PageImage(a4())])
    assert strip.info["tiles"] == [1, 2] and strip.n_patches == (2 + 1) * 64
    assert page.info["tiles"] == [2, 2] and page.n_patches == (4 + 1) * 64


# ---------------------------------------------------------------- registry


def test_family_comes_from_config_not_name(tiny_checkpoint, tmp_path):
    misleading = tmp_path / "colpali-not-really"
    shutil.copytree(tiny_checkpoint("colqwen2"), misleading)
    assert detect_family(str(misleading)) == "colqwen2"
    assert load_encoder(str(misleading), device="cpu").family == "colqwen2"


def test_peft_adapter_is_followed_to_its_base(tiny_checkpoint, tmp_path):
    import torch
    from colpali_engine.models import ColQwen2, ColQwen2Processor
    from peft import LoraConfig, get_peft_model

    base = tiny_checkpoint("colqwen2")
    torch.manual_seed(1)
    model = get_peft_model(
        ColQwen2.from_pretrained(base, dtype=torch.float32),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    adapter = tmp_path / "my-adapter"
    model.save_pretrained(adapter)
    ColQwen2Processor.from_pretrained(base).save_pretrained(adapter)
    assert not (adapter / "config.json").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]

    assert detect_family(str(adapter)) == "colqwen2"
    tuned = load_encoder(str(adapter), device="cpu")
    assert any("lora" in name for name, _ in tuned.model.named_parameters())
    plain = load_encoder(str(base), device="cpu")
    page = [PageImage(a4())]
    assert not np.allclose(tuned.encode_pages(page)[0].patches, plain.encode_pages(page)[0].patches)


def test_uncached_hub_id_offline_says_what_to_do(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        load_encoder("vdr-app-tests/no-such-model", device="cpu")
    message = str(info.value)
    assert "'vdr-app-tests/no-such-model' is not in the local Hugging Face cache" in message
    assert "hf download vdr-app-tests/no-such-model" in message
    for hint in ("VDR_MODEL", "make-tiny-model", "text-layout-minilm"):
        assert hint in message


def test_cached_hub_checkpoint_loads_offline(tiny_checkpoint, tmp_path, monkeypatch):
    """A hub id already in the Hugging Face cache loads with the hub unreachable."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--vdr-app-tests--tiny-smol"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_checkpoint("colidefics3"), repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    encoder = load_encoder("vdr-app-tests/tiny-smol", device="cpu")
    assert encoder.family == "colidefics3" and encoder.model_id == "vdr-app-tests/tiny-smol"


def test_unknown_model_type_lists_supported_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError) as info:
        load_encoder(str(tmp_path), device="cpu")
    assert "'bert'" in str(info.value)
    for family in FAMILIES:
        assert family.name in str(info.value)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"model_type": "qwen2_vl", "architectures": ["BiQwen2"]}, "single-vector"),
        ({"model_type": "colpali", "architectures": ["ColPaliForRetrieval"]}, "native"),
        ({}, "not a supported ColPali family"),
    ],
)
def test_unsupported_configs_are_refused(tmp_path, config, expected):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=expected):
        detect_family(str(tmp_path))


@pytest.mark.parametrize("name", ["/no/such/folder", "", "   "])
def test_bad_names_are_refused(name):
    with pytest.raises(ModelLoadError):
        load_encoder(name, device="cpu")


def test_named_encoders_are_registered_lazily():
    calls = []

    def loader(device, batch_size):
        calls.append((device, batch_size))
        return "an encoder"

    register_encoder("test-fake-encoder", loader)
    assert load_encoder("test-fake-encoder", device="cpu", batch_size=7) == "an encoder"
    assert calls == [("cpu", 7)]
    names = available_encoders()
    assert "text-layout-minilm" in names and "colidefics3" in names and "colpali" in names
    with pytest.raises(ValueError):
        register_encoder("broken", "no-colon-here")


def test_importing_models_imports_no_torch():
    code = (
        "import sys, vdr_app.models; "
        "heavy = [m for m in ('torch', 'transformers', 'colpali_engine') if m in sys.modules]; "
        "sys.exit(len(heavy))"
    )
    repo = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0


def test_devices():
    import torch

    from vdr_app.models.colvision import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cuda", "mps", "cpu")
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------- tiny builder command


def test_tiny_main_writes_a_loadable_checkpoint(tmp_path, capsys):
    assert main([str(tmp_path / "t"), "--family", "colqwen2_5"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "t")
    assert detect_family(str(tmp_path / "t")) == "colqwen2.5"
    with pytest.raises(ModelLoadError, match="no tiny builder"):
        build_tiny_checkpoint("colbert", tmp_path / "x")


def test_tiny_builds_are_deterministic(tmp_path):
    first = build_tiny_checkpoint("colqwen2", tmp_path / "a")
    second = build_tiny_checkpoint("colqwen2", tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_tiny_main_full_size_refuses_a_family_without_published_numbers(tmp_path, capsys):
    assert main([str(tmp_path / "f"), "--family", "colmodernvbert", "--size", "full"]) == 2
    assert "no full-size builder" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


# ---------------------------------------------------------------- full-size architectures (no weights)

# The published numbers, restated from the source files cited in vdr_app/checkpoints/fullsize.py.
PUBLISHED_TEXT = {
    # family: (vocab, hidden, intermediate, layers, heads, kv heads, head_dim)
    "colidefics3": (49280, 576, 1536, 30, 9, 3, 64),
    "colqwen2.5": (151936, 2048, 11008, 36, 16, 2, 128),
    "colpali": (257216, 2048, 16384, 18, 8, 1, 256),
}
PUBLISHED_VISION = {
    # family: (hidden, intermediate, layers, heads, patch)
    "colidefics3": (768, 3072, 12, 12, 16),
    "colqwen2.5": (1280, 3420, 32, 16, 14),
    "colpali": (1152, 4304, 27, 16, 14),
}
# Parameters of the published models (ColIdefics3 drops SmolVLM's 28M-parameter lm_head).
PUBLISHED_PARAMETERS = {"colidefics3": 228e6, "colqwen2.5": 3.75e9, "colpali": 2.92e9}
IMAGE_TOKEN_ID = {"colidefics3": 49190, "colqwen2.5": 151655, "colpali": 257152}


@pytest.mark.parametrize("family", ["colidefics3", "colqwen2.5", "colpali"])
def test_full_size_config_is_the_published_one(family):
    from vdr_app.checkpoints.fullsize import full_config
    from vdr_app.models.resources import parameter_count

    config = full_config(family)
    text = config.text_config
    vocab, hidden, inter, layers, heads, kv, head_dim = PUBLISHED_TEXT[family]
    assert (text.vocab_size, text.hidden_size, text.intermediate_size) == (vocab, hidden, inter)
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (layers, heads, kv)
    assert getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads == head_dim
    vision = config.vision_config
    v_hidden, v_inter, v_layers, v_heads, patch = PUBLISHED_VISION[family]
    depth = getattr(vision, "depth", None) or vision.num_hidden_layers
    v_heads_got = getattr(vision, "num_heads", None) or vision.num_attention_heads
    assert (vision.hidden_size, vision.intermediate_size, depth, v_heads_got, vision.patch_size) == (
        v_hidden, v_inter, v_layers, v_heads, patch,
    )
    assert config.image_token_id == IMAGE_TOKEN_ID[family]
    n = parameter_count(config)  # meta device: no memory
    assert abs(n - PUBLISHED_PARAMETERS[family]) / PUBLISHED_PARAMETERS[family] < 0.01, n


def _a4_vectors_expected(family: str) -> int:
    """Image tokens of an A4 page at 120 dpi (992 x 1403 px), from each model's published rules."""
    import math

    w, h = 992, 1403
    if family == "colidefics3":  # longest side to 2048, then whole 512-px tiles, + 1 global tile
        scale = 2048 / max(w, h)
        tiles = math.ceil(round(w * scale) / 512) * math.ceil(round(h * scale) / 512)
        return (tiles + 1) * 64
    if family == "colqwen2.5":  # Qwen2-VL smart_resize within 768 merged 28-px patches
        budget = 768 * 28 * 28
        beta = math.sqrt(h * w / budget)
        hh = max(28, math.floor(h / beta / 28) * 28)
        ww = max(28, math.floor(w / beta / 28) * 28)
        return (hh // 28) * (ww // 28)
    return (448 // 14) ** 2  # ColPali: 448 px square, 14-px patches


@pytest.mark.parametrize("family", ["colidefics3", "colqwen2.5", "colpali"])
def test_full_size_geometry_equals_the_real_models(family):
    import torch

    from vdr_app.checkpoints.fullsize import A4_VECTORS, full_config, full_processor

    processor = full_processor(family)
    config = full_config(family)
    batch = processor.process_images([Image.new("RGB", (992, 1403), "white")])
    n = int(processor.get_image_mask(batch).sum())
    assert n == _a4_vectors_expected(family) == A4_VECTORS[family]
    ids = batch["input_ids"]
    assert int(ids.max()) < config.text_config.vocab_size  # every token has an embedding row
    assert int((ids == config.image_token_id).sum()) == n
    queries = processor.process_queries(["revenue by region"])
    assert int(queries["input_ids"].max()) < config.text_config.vocab_size
    assert torch.is_tensor(ids)


# ---------------------------------------------------------------- device policy


def test_dtype_follows_native_bf16_support():
    import torch

    from vdr_app.models.resources import choose_dtype

    assert choose_dtype("cpu", flags={"avx2", "avx512f"}) == torch.float32
    assert choose_dtype("cpu", flags={"avx512f", "avx512_bf16"}) == torch.bfloat16
    assert choose_dtype("cpu", flags={"amx_bf16"}) == torch.bfloat16
    assert choose_dtype("mps") == torch.float16
    # CUDA: bfloat16 only where the GPU has bfloat16 units (Ampere and newer), float16 on a T4.
    assert choose_dtype("cuda", capability=(7, 5)) == torch.float16
    assert choose_dtype("cuda", capability=(8, 0)) == torch.bfloat16
    assert choose_dtype("cuda:1", capability=(9, 0)) == torch.bfloat16
    assert choose_dtype("cuda", "float32", capability=(9, 0)) == torch.float32
    assert choose_dtype("cpu", "float32", flags={"amx_bf16"}) == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        choose_dtype("cpu", "int3")


def test_batch_size_is_chosen_per_device_unless_given():
    from vdr_app.models.resources import choose_batch_size

    assert choose_batch_size("cpu", 0) == 1 and choose_batch_size("cpu", None) == 1
    assert choose_batch_size("cpu", 3) == 3


def test_a_model_that_cannot_fit_is_refused_before_loading(tiny_checkpoint, monkeypatch):
    import colpali_engine.models as cm

    from vdr_app.models import resources

    folder = str(tiny_checkpoint("colqwen2"))
    monkeypatch.setattr(resources, "available_memory", lambda device: 1024**2)  # 1 MiB free

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights were read before the memory check")

    monkeypatch.setattr(cm.ColQwen2, "from_pretrained", must_not_load)
    with pytest.raises(ModelLoadError, match=r"needs about .* GiB .* only 0.0 GiB is available"):
        load_encoder(folder, device="cpu")


def test_memory_check_arithmetic():
    import torch

    from vdr_app.models.resources import GIB, check_fits, memory_needed

    three_b = 3_000_000_000
    assert memory_needed(three_b, torch.bfloat16) < memory_needed(three_b, torch.float32)
    assert memory_needed(three_b, torch.float32) > 3e9 * 4  # weights alone are 11.2 GiB
    check_fits("m", three_b, torch.bfloat16, "cpu", available=16 * GIB)  # fits a 16 GB Space in bf16
    with pytest.raises(ModelLoadError, match="3.00B parameters"):
        check_fits("m", three_b, torch.float32, "cpu", available=12 * GIB)


def test_fused_eager_capture_equals_eager_attention_and_the_in_degree_loop():
    """The fused path (text-layout's capture): the layer output equals eager attention's, the
    in-degrees equal `in_degree`'s, the first row equals eager weights' row 0; a fully masked row
    gives zeros, never NaN."""
    import torch
    from types import SimpleNamespace

    from vdr_app.models.centrality import _eager_with_in_degree, in_degree

    torch.manual_seed(0)
    b, h, length, d = 3, 4, 9, 8
    q, k, v = torch.randn(b, h, length, d), torch.randn(b, h, length, d), torch.randn(b, h, length, d)
    keys = torch.ones(b, 1, length, length, dtype=torch.bool)
    keys[1, :, :, 6:] = False  # padding keys
    keys[2, :, 4, :] = False  # a fully masked row
    rows = torch.ones(b, length, dtype=torch.bool)
    rows[:, 0] = False
    rows[2, 4] = False
    module = SimpleNamespace(is_causal=False, _vdr_layer=2)
    target = {"rows": rows, "layers": {}, "first_row_layer": 2}
    out, _ = _eager_with_in_degree(module, q, k, v, keys, 0.3, target)
    scores = (q @ k.transpose(-1, -2) * 0.3).masked_fill(~keys, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1))
    torch.testing.assert_close(out, (weights @ v).transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(target["first_row"], weights[:, :, 0, :].mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(target["layers"][2], in_degree(q, k, keys, 0.3, rows, is_causal=False),
                               rtol=1e-5, atol=1e-6)
    assert not torch.isnan(out).any() and (out[2, 4] == 0).all()
