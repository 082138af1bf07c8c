"""Tiny random checkpoints of every supported ColPali family, built fully offline.

They have the real families' token geometry (ColPali's 32x32 grid, the ColQwen dynamic grids,
colSmol's / ColModernVBert's 8x8-token tiles plus global thumbnail) but only ~100-200k random
parameters, so tests and demos exercise the real `from_pretrained` path without a model hub.
Their vectors mean nothing. Seeded: the same family always gives the same weights.

Command line (the CLI wires `python -m vdr_app make-tiny-model DIR` to `main`):

    python -m vdr_app.checkpoints.tiny DIR --family colqwen2
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ModelLoadError

logger = logging.getLogger(__name__)

# Text the tiny tokenizers learn their merges from: a few retrieval-flavoured sentences.
_CORPUS = [
    "What is the revenue growth in region three?",
    "Quarterly report page figure chart table summary",
    "Describe the image. The document shows a bar chart of sales by year.",
    "Attention is all you need. Late interaction retrieval with multi-vector embeddings.",
    "User: Assistant: Query: invoice total amount due date",
]

SEED = 0


def _build_tokenizer(
    special_tokens: Sequence[str],
    vocab_size: int = 400,
    **named_tokens: str,
):
    """A byte-level BPE tokenizer trained in memory, with the given special tokens.

    Args:
        special_tokens: tokens added as atomic specials (first ids, in this order).
        vocab_size: BPE vocabulary size including specials.
        **named_tokens: pad_token / eos_token / bos_token / unk_token as token strings.

    Returns:
        a transformers `PreTrainedTokenizerFast`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=named_tokens.get("unk_token")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named_tokens)


def _save(model, processor, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def _tiny_llm(vocab_size: int, **overrides) -> dict:
    """Text-model sizes shared by the families: 2 layers, hidden 64, 4 heads (head_dim 16)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        **overrides,
    }


_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _build_qwen(out_dir: Path, version: str, max_pixels: int = 448 * 448) -> Path:
    """ColQwen2 / 2.5 / 3: 2x2-merged patches on a dynamic grid (max_pixels caps the tokens)."""
    import colpali_engine.models as cm
    import torch
    from transformers import Qwen2VLImageProcessor

    tok = _build_tokenizer(_QWEN_SPECIALS, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    patch = 16 if version == "3" else 14
    image_processor = Qwen2VLImageProcessor(
        min_pixels=(4 * patch) ** 2,
        max_pixels=max_pixels,
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
    )
    # mrope_section must sum to head_dim / 2 = 64 / 4 / 2 = 8.
    rope = dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 3, 3])
    text_config = _tiny_llm(
        len(tok),
        rope_parameters=rope,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    token_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    common = dict(patch_size=patch, spatial_merge_size=2, temporal_patch_size=2)
    if version == "2":
        from transformers import Qwen2VLConfig
        from transformers.models.qwen2_vl import Qwen2VLVideoProcessor

        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, **common)
        config = Qwen2VLConfig(text_config=text_config, vision_config=vision, **token_ids)
        model_cls, processor_cls, video_cls = cm.ColQwen2, cm.ColQwen2Processor, Qwen2VLVideoProcessor
    elif version == "2.5":
        from transformers import Qwen2_5_VLConfig
        from transformers.models.qwen2_vl import Qwen2VLVideoProcessor

        vision = dict(
            depth=2,
            hidden_size=32,
            out_hidden_size=64,
            intermediate_size=64,
            num_heads=2,
            window_size=112,
            fullatt_block_indexes=[1],
            **common,
        )
        config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision, **token_ids)
        model_cls, processor_cls, video_cls = cm.ColQwen2_5, cm.ColQwen2_5_Processor, Qwen2VLVideoProcessor
    else:
        from transformers import Qwen3VLConfig
        from transformers.models.qwen3_vl import Qwen3VLVideoProcessor

        text_config.update(head_dim=16)
        text_config["rope_parameters"] = {**rope, "mrope_interleaved": True}
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            num_position_embeddings=256,
            deepstack_visual_indexes=[0],
            **common,
        )
        config = Qwen3VLConfig(text_config=text_config, vision_config=vision, **token_ids)
        model_cls, processor_cls, video_cls = cm.ColQwen3, cm.ColQwen3Processor, Qwen3VLVideoProcessor
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, video_processor=video_cls())
    torch.manual_seed(SEED)
    return _save(model_cls(config), processor, out_dir)


def build_colqwen2(out_dir: Path) -> Path:
    """Tiny ColQwen2 (Qwen2-VL backbone)."""
    return _build_qwen(out_dir, "2")


def build_colqwen2_5(out_dir: Path) -> Path:
    """Tiny ColQwen2.5 (Qwen2.5-VL backbone, windowed vision attention)."""
    return _build_qwen(out_dir, "2.5")


def build_colqwen3(out_dir: Path) -> Path:
    """Tiny ColQwen3 (Qwen3-VL backbone, 16-px patches, deepstack; d=320)."""
    return _build_qwen(out_dir, "3")


_IDEFICS3_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|begin_of_text|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
]


def _idefics3_processor(processor_cls, bos: str, tile: int, patch: int, scale: int, longest_edge: int):
    """Tokenizer + Idefics3 image processor shared by colSmol and ColModernVBert."""
    from transformers import Idefics3ImageProcessor

    tok = _build_tokenizer(
        _IDEFICS3_SPECIALS,
        vocab_size=500,
        pad_token="<|endoftext|>",
        eos_token="<end_of_utterance>",
        bos_token=bos,
    )
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": longest_edge},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
    )
    return processor_cls(image_processor=image_processor, tokenizer=tok, image_seq_len=(tile // patch) ** 2 // scale**2)


def _siglip(image_size: int, patch: int, **extra) -> dict:
    """A one-layer SigLIP-style vision tower."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        **extra,
    )


def build_colidefics3(out_dir: Path, tile: int = 256, patch: int = 16, scale: int = 2, longest_edge: int = 512) -> Path:
    """Tiny colSmol: Idefics3 tiling with 8x8 tokens per tile and a global thumbnail last.

    The real colSmol uses 512-px tiles of 16-px patches with pixel-shuffle 4; 256-px tiles with
    pixel-shuffle 2 give the same 8x8 tokens per tile (the same geometry) at a quarter of the
    vision cost. An A4 page becomes 2x2 tiles + 1 global = 320 image tokens. With
    longest_edge <= tile no page is split and only the global 8x8 tokens exist.
    """
    import torch
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from transformers import Idefics3Config

    processor = _idefics3_processor(ColIdefics3Processor, "<|im_start|>", tile, patch, scale, longest_edge)
    tok = processor.tokenizer
    config = Idefics3Config(
        vision_config=_siglip(tile, patch),
        text_config=_tiny_llm(
            len(tok),
            model_type="llama",
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        ),
        scale_factor=scale,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(SEED)
    return _save(ColIdefics3(config), processor, out_dir)


def build_colmodernvbert(
    out_dir: Path, tile: int = 256, patch: int = 16, scale: int = 2, longest_edge: int = 512
) -> Path:
    """Tiny ColModernVBert: colSmol's tiling, a bidirectional ModernBERT text encoder."""
    import torch
    from colpali_engine.models import ColModernVBert, ColModernVBertProcessor
    from transformers import ModernVBertConfig

    processor = _idefics3_processor(ColModernVBertProcessor, "<|begin_of_text|>", tile, patch, scale, longest_edge)
    tok = processor.tokenizer
    config = ModernVBertConfig(
        text_config=dict(
            model_type="modernbert",
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            cls_token_id=tok.bos_token_id,
            sep_token_id=tok.eos_token_id,
            # ModernBERT alternates local and global layers; keep the last (hooked) one global.
            layer_types=["sliding_attention", "full_attention"],
        ),
        vision_config=_siglip(tile, patch, model_type="siglip_vision_model"),
        pixel_shuffle_factor=scale,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(SEED)
    return _save(ColModernVBert(config), processor, out_dir)


def build_colpali(out_dir: Path, image_size: int = 448, patch: int = 14) -> Path:
    """Tiny ColPali: PaliGemma geometry, 448-px square input of 14-px patches = 32x32 tokens."""
    import torch
    from colpali_engine.models import ColPali, ColPaliProcessor
    from transformers import PaliGemmaConfig, SiglipImageProcessor

    tok = _build_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )
    image_processor = SiglipImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image_processor.image_seq_length = (image_size // patch) ** 2
    # PaliGemmaProcessor adds 1024 <locXXXX> + 128 <segXXX> tokens: size the vocab after it.
    processor = ColPaliProcessor(image_processor=image_processor, tokenizer=tok)
    config = PaliGemmaConfig(
        vision_config=_siglip(image_size, patch, model_type="siglip_vision_model", projection_dim=64),
        text_config=_tiny_llm(
            len(tok),
            model_type="gemma",
            head_dim=16,
            num_key_value_heads=1,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        projection_dim=64,
    )
    torch.manual_seed(SEED)
    return _save(ColPali(config), processor, out_dir)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "colpali": build_colpali,
    "colqwen2": build_colqwen2,
    "colqwen2.5": build_colqwen2_5,
    "colidefics3": build_colidefics3,
    "colmodernvbert": build_colmodernvbert,
    "colqwen3": build_colqwen3,
}


# Other spellings people use for the same families.
ALIASES = {"colqwen2_5": "colqwen2.5", "colsmol": "colidefics3"}


def build_tiny_checkpoint(family: str, out_dir: str | Path) -> Path:
    """Write a tiny random checkpoint of `family` to `out_dir` with `save_pretrained`.

    `load_encoder(str(out_dir))` then loads it through the ordinary `from_pretrained` path.

    Args:
        family: one of `BUILDERS` (e.g. "colqwen2", "colidefics3") or an `ALIASES` spelling.
        out_dir: folder to create or overwrite.

    Returns:
        the folder.

    Raises:
        ModelLoadError: for an unknown family.
    """
    family = ALIASES.get(family.strip().lower(), family.strip().lower())
    if family not in BUILDERS:
        raise ModelLoadError(f"no tiny builder for family {family!r}; choose one of: {', '.join(BUILDERS)}")
    from ..torchvision_compat import ensure_torchvision

    ensure_torchvision()
    out = Path(out_dir)
    BUILDERS[family](out)
    logger.info("wrote tiny %s checkpoint to %s", family, out)
    return out


def build_checkpoint(family: str, out_dir: str | Path, size: str = "tiny", dtype: str | None = None) -> Path:
    """Write a random checkpoint: `size` "tiny" (tests, demos) or "full" (the published architecture).

    Args:
        family: a family name or alias.
        out_dir: folder to create or overwrite.
        size: "tiny" or "full" (colidefics3, colqwen2.5, colpali; see `fullsize.py`).
        dtype: weight dtype of a full-size checkpoint ("bfloat16" by default, "float32",
            "float16"); tiny checkpoints are float32.

    Raises:
        ModelLoadError: unknown family or size, or no full-size builder for the family.
    """
    size = (size or "tiny").strip().lower()
    if size == "tiny":
        return build_tiny_checkpoint(family, out_dir)
    if size != "full":
        raise ModelLoadError(f"unknown size {size!r}; use tiny or full")
    from ..torchvision_compat import ensure_torchvision
    from .fullsize import build_full_checkpoint

    ensure_torchvision()
    name = ALIASES.get(family.strip().lower(), family.strip().lower())
    return build_full_checkpoint(name, out_dir, dtype=dtype or "bfloat16")


def main(argv: Sequence[str] | None = None) -> int:
    """Command: write a tiny (or full-size) random checkpoint to DIR and print its path."""
    parser = argparse.ArgumentParser(
        prog="make-tiny-model",
        description="Write a random ColPali-family checkpoint (offline; for tests, demos and benchmarks). "
        "Its embeddings are meaningless; use it as VDR_MODEL=DIR.",
    )
    parser.add_argument("dir", type=Path, help="folder to write the checkpoint into")
    parser.add_argument(
        "--family",
        default="colidefics3",
        choices=sorted([*BUILDERS, *ALIASES]),
        help="model family (default: colidefics3, the colSmol geometry of the default model)",
    )
    parser.add_argument(
        "--size",
        default="tiny",
        choices=["tiny", "full"],
        help="tiny (~200k parameters) or full: the published architecture of colSmol-256M, "
        "ColQwen2.5-v0.2 or ColPali-v1.3 (random weights; 0.9-7.5 GB on disk)",
    )
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float32", "float16"],
                        help="weight dtype of a full-size checkpoint (default bfloat16)")
    args = parser.parse_args(argv)
    try:
        path = build_checkpoint(args.family, args.dir, args.size, args.dtype)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
