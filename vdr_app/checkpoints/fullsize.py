"""Full-size random checkpoints: the exact architecture of published ColPali-family models, offline.

`make-tiny-model DIR --size full` writes a randomly initialised checkpoint whose config.json,
processor settings and special-token ids are the published ones, so it loads through the same
`from_pretrained` path as the real checkpoint, runs the same amount of arithmetic per page and
gives the same number of vectors per page. Its vectors mean nothing. It exists to measure speed
and memory where the real weights cannot be downloaded.

The numbers below are facts copied from the published files (sources in each entry's comment).
Where a published config leaves a field out, transformers fills it with the class default when
the real checkpoint is loaded; the full-size checkpoint is built from the same dict through the
same config class, so it gets the same defaults.

The tokenizer is a small byte-level BPE trained offline, re-numbered so that every special token
the model or processor looks up sits at its published id, inside the published vocabulary size.
Its text tokenisation differs from the real one (queries get a few more tokens), which changes
nothing on the page side.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ published numbers

# vidore/colSmol-256M is a LoRA adapter on vidore/ColSmolVLM-Instruct-256M-base, itself
# HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3) with ColIdefics3's 128-d projection.
# text/vision numbers and token ids: HuggingFaceTB/SmolVLM-256M-Instruct config.json (as reproduced
# in https://huggingface.co/Mattimax/DATA-AI_Smol256M-Instruct/blob/main/config.json, "_name_or_path":
# "HuggingFaceTB/SmolVLM-256M-Instruct"; vision tower google/siglip-base-patch16-512 per its model card).
# image_seq_len 64: https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct/blob/5f4a498/processor_config.json
# and vidore/ColSmolVLM-256M-Base processor_config.json. Tiles: "64 visual tokens to encode image
# patches of size 512x512" (model card); size.longest_edge 2048 = 4 x 512, max_image_size 512 as in
# https://huggingface.co/HuggingFaceTB/SmolVLM2-256M-Video-Instruct/blob/main/preprocessor_config.json
# and the Idefics3/SmolVLM image-processor default {"longest_edge": 4 * 512}.
COLSMOL_256M: dict[str, Any] = {
    "reference": "vidore/colSmol-256M",
    "base": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "top": {"image_token_id": 49190, "scale_factor": 4, "tie_word_embeddings": False},
    "text": {
        "model_type": "llama",
        "vocab_size": 49280,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000.0,
        "hidden_act": "silu",
        "pad_token_id": 2,
        "bos_token_id": 1,
        "eos_token_id": 49279,
    },
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 512,
        "patch_size": 16,
    },
    "processor": {"longest_edge": 2048, "tile": 512, "image_seq_len": 64},
    # Ids the model (image_token_id) and the processor (by string) use. <image> is the published
    # id; the others are placed where the SmolVLM tokenizer has them as far as published
    # (bos 1, pad 2, eos 49279), the tile markers just after the 49152-token base vocabulary.
    "specials": {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
        "<global-img>": 49152,
        **{f"<row_{i}_col_{j}>": 49152 + 6 * (i - 1) + j for i in range(1, 7) for j in range(1, 7)},
        "<fake_token_around_image>": 49189,
        "<image>": 49190,
        "<end_of_utterance>": 49279,
    },
}

# vidore/colqwen2.5-v0.2: LoRA on vidore/colqwen2.5-base, Qwen/Qwen2.5-VL-3B-Instruct with a 128-d
# projection. Qwen/Qwen2.5-VL-3B-Instruct config.json (as reproduced in
# https://huggingface.co/zyoNoob/Qwen2.5-VL-3B-Instruct-AWQ/blob/main/config.json and
# https://huggingface.co/dahwinsingularity/vllm2/blame/main/config.json): the published
# vision_config gives hidden_size 1280, out_hidden_size 2048, spatial_patch_size 14,
# tokens_per_second 2; depth 32, intermediate_size 3420, num_heads 16, window_size 112,
# fullatt_block_indexes [7, 15, 23, 31] are Qwen2_5_VLVisionConfig defaults that the real load uses too.
# Pixels: colpali-engine's ColQwen2_5_Processor caps a page at max_num_visual_tokens = 768
# merged tokens (max_pixels = 768 * 28 * 28), the resolution colqwen2.5 was trained at.
COLQWEN25_3B: dict[str, Any] = {
    "reference": "vidore/colqwen2.5-v0.2",
    "base": "Qwen/Qwen2.5-VL-3B-Instruct",
    "top": {
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "tie_word_embeddings": True,
    },
    "text": {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
        "sliding_window": 32768,
        "use_sliding_window": False,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    "vision": {
        "hidden_size": 1280,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "tokens_per_second": 2,
        "in_channels": 3,
    },
    "processor": {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2, "max_visual_tokens": 768},
    "specials": {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|vision_pad|>": 151654,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
    },
}

# vidore/colpali-v1.3: LoRA on vidore/colpaligemma-3b-pt-448-base (google/paligemma-3b-pt-448).
# https://huggingface.co/vidore/colpaligemma-3b-pt-448-base/blob/12c59eb/config.json (same numbers
# as google/paligemma-3b-pt-448's config.json in its transformers load log). Unlisted Gemma fields
# (head_dim 256, rope_theta 10000, ...) are GemmaConfig defaults, as in the real load.
COLPALI_3B: dict[str, Any] = {
    "reference": "vidore/colpali-v1.3",
    "base": "google/paligemma-3b-pt-448",
    "top": {"image_token_id": 257152, "projection_dim": 2048, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0},
    "text": {
        "model_type": "gemma",
        "vocab_size": 257216,
        "hidden_size": 2048,
        "intermediate_size": 16384,
        "num_hidden_layers": 18,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "num_image_tokens": 1024,
    },
    "vision": {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "image_size": 448,
        "intermediate_size": 4304,
        "num_attention_heads": 16,
        "num_hidden_layers": 27,
        "num_image_tokens": 1024,
        "patch_size": 14,
        "projection_dim": 2048,
        "projector_hidden_act": "gelu_fast",
        "vision_use_head": False,
    },
    "processor": {"image_size": 448, "image_seq_length": 1024},
    # PaliGemma's tokenizer: <pad> 0, <eos> 1, <bos> 2, <unk> 3, 1024 <locNNNN> from 256000,
    # 128 <segNNN> after them, <image> 257152.
    "specials": {
        "<pad>": 0,
        "<eos>": 1,
        "<bos>": 2,
        "<unk>": 3,
        **{f"<loc{i:04d}>": 256000 + i for i in range(1024)},
        **{f"<seg{i:03d}>": 257024 + i for i in range(128)},
        "<image>": 257152,
    },
}

PUBLISHED: dict[str, dict[str, Any]] = {
    "colidefics3": COLSMOL_256M,
    "colqwen2.5": COLQWEN25_3B,
    "colpali": COLPALI_3B,
}

# Vectors (image tokens) per A4 page rendered at the app's default 120 dpi (992 x 1403 px):
# colSmol: longest side to 2048 -> 1448 x 2048 -> 3 x 4 tiles of 512 px + 1 global, 64 each;
# ColQwen2.5: smart_resize within 768 x 28 x 28 px -> 644 x 896 px -> 23 x 32 merged patches;
# ColPali: always 32 x 32.
A4_PAGE_PX = (992, 1403)
A4_VECTORS = {"colidefics3": 13 * 64, "colqwen2.5": 23 * 32, "colpali": 32 * 32}

_CORPUS = [
    "What is the revenue growth in region three?",
    "Quarterly report page figure chart table summary",
    "Describe the image. The document shows a bar chart of sales by year.",
    "Attention is all you need. Late interaction retrieval with multi-vector embeddings.",
    "invoice total amount due date membership fee maximum operating pressure",
]


def full_families() -> list[str]:
    """Families with a full-size builder."""
    return list(PUBLISHED)


# ------------------------------------------------------------------ tokenizer


def placed_tokenizer(specials: dict[str, int], vocab_size: int, **named_tokens: str):
    """A small byte-level BPE whose special tokens sit at the given (published) ids.

    The learned tokens take the lowest free ids; every id up to the largest special is filled
    (with unused placeholders) so the vocabulary is contiguous.

    Args:
        specials: token -> id; all ids must be < vocab_size.
        vocab_size: the model's embedding rows.
        **named_tokens: pad_token / eos_token / bos_token / unk_token as token strings.

    Returns:
        a transformers `PreTrainedTokenizerFast`.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if max(specials.values()) >= vocab_size:
        raise ValueError("a special token id is outside the vocabulary")
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    learner.train_from_iterator(_CORPUS * 20, trainer)
    learned = sorted(learner.get_vocab().items(), key=lambda item: item[1])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(learner.to_str())["model"]["merges"]]

    taken = set(specials.values())
    free = (i for i in itertools.count() if i not in taken)
    vocab = {token: next(free) for token, _ in learned}
    vocab.update(specials)
    used = set(vocab.values())
    for i in range(max(used) + 1):
        if i not in used:
            vocab[f"<|unused_{i}|>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=named_tokens.get("unk_token")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named_tokens)


# ------------------------------------------------------------------ configs


def _rope(text: dict) -> dict:
    """transformers 5 keeps rope settings in `rope_parameters`."""
    text = dict(text)
    rope = {"rope_type": "default", "rope_theta": text.pop("rope_theta")}
    if "mrope_section" in text:
        rope["mrope_section"] = text.pop("mrope_section")
    return {**text, "rope_parameters": rope}


def full_config(family: str):
    """The transformers config of a family's published full-size model (no weights built).

    Raises:
        ModelLoadError: no full-size numbers for this family.
    """
    spec = _spec(family)
    if family == "colidefics3":
        from transformers import Idefics3Config

        return Idefics3Config(text_config=_rope(spec["text"]), vision_config=dict(spec["vision"]), **spec["top"])
    if family == "colqwen2.5":
        from transformers import Qwen2_5_VLConfig

        top = spec["top"]
        text = _rope(spec["text"])
        text["tie_word_embeddings"] = top["tie_word_embeddings"]
        return Qwen2_5_VLConfig(text_config=text, vision_config=dict(spec["vision"]), **top)
    from transformers import PaliGemmaConfig

    return PaliGemmaConfig(text_config=dict(spec["text"]), vision_config=dict(spec["vision"]), **spec["top"])


def _spec(family: str) -> dict[str, Any]:
    if family not in PUBLISHED:
        raise ModelLoadError(
            f"no full-size builder for family {family!r}; choose one of: {', '.join(PUBLISHED)}"
        )
    return PUBLISHED[family]


def full_processor(family: str):
    """The colpali-engine processor with the published image settings and a placed tokenizer."""
    import colpali_engine.models as cm

    spec = _spec(family)
    specials = spec["specials"]
    vocab = spec["text"]["vocab_size"]
    proc = spec["processor"]
    if family == "colidefics3":
        from transformers import Idefics3ImageProcessor

        tok = placed_tokenizer(
            specials, vocab, pad_token="<|im_end|>", eos_token="<end_of_utterance>", bos_token="<|im_start|>"
        )
        image_processor = Idefics3ImageProcessor(
            size={"longest_edge": proc["longest_edge"]},
            max_image_size={"longest_edge": proc["tile"]},
            do_image_splitting=True,
        )
        return cm.ColIdefics3Processor(
            image_processor=image_processor, tokenizer=tok, image_seq_len=proc["image_seq_len"]
        )
    if family == "colqwen2.5":
        from transformers import Qwen2VLImageProcessor
        from transformers.models.qwen2_vl import Qwen2VLVideoProcessor

        tok = placed_tokenizer(specials, vocab, pad_token="<|endoftext|>", eos_token="<|im_end|>")
        side = proc["patch_size"] * proc["merge_size"]
        image_processor = Qwen2VLImageProcessor(
            min_pixels=4 * side * side,
            max_pixels=proc["max_visual_tokens"] * side * side,
            patch_size=proc["patch_size"],
            merge_size=proc["merge_size"],
            temporal_patch_size=proc["temporal_patch_size"],
        )
        return cm.ColQwen2_5_Processor(
            image_processor=image_processor, tokenizer=tok, video_processor=Qwen2VLVideoProcessor()
        )
    from transformers import SiglipImageProcessor

    tok = placed_tokenizer(
        specials, vocab, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    image_processor = SiglipImageProcessor(
        size={"height": proc["image_size"], "width": proc["image_size"]},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        resample=3,
    )
    image_processor.image_seq_length = proc["image_seq_length"]
    return cm.ColPaliProcessor(image_processor=image_processor, tokenizer=tok)


MODEL_CLASSES = {"colidefics3": "ColIdefics3", "colqwen2.5": "ColQwen2_5", "colpali": "ColPali"}


def build_full_checkpoint(family: str, out_dir: str | Path, dtype: str = "bfloat16", seed: int = 0) -> Path:
    """Write a random full-size checkpoint of `family` to `out_dir` (weights in `dtype`).

    Weights are created directly in `dtype` (a 3B model is ~6 GB in bfloat16, ~12 GB in float32).

    Raises:
        ModelLoadError: unknown family or dtype.
    """
    import colpali_engine.models as cm
    import torch

    spec = _spec(family)
    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use bfloat16, float16 or float32")
    out = Path(out_dir)
    processor = full_processor(family)
    config = full_config(family)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        model = getattr(cm, MODEL_CLASSES[family])(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    logger.info("wrote full-size %s (%s, %.0fM parameters, %s) to %s", family, spec["reference"], n / 1e6, dtype, out)
    del model
    return out


def published_numbers(family: str) -> dict[str, Any]:
    """A deep copy of the published numbers of a family (for tests and the benchmark)."""
    return copy.deepcopy(_spec(family))
