"""The final token's last-layer attention, read without eager attention anywhere.

Eager attention materialises every layer's (B, heads, L, L) weights, vision encoder included,
only so that one row of one layer can be read. Here every layer runs SDPA; the one hooked layer
gets its own attention implementation, `FINAL_ROW`, which runs SDPA too and, when a capture is
open in the calling context, computes that single row from the layer's own (already
rotary-embedded) queries and keys and the mask SDPA received:

    softmax(q_final . K^T * scaling + mask_row), averaged over heads.

That is exactly what eager attention computes for that row (same tensors, same scaling, same
mask), in float32, at the cost of one (heads x L) product.

Per-call state: the capture target lives in a `ContextVar`, so concurrent forward passes in
other threads (queries while pages encode) neither see nor overwrite it, and a pass without an
open capture (queries) computes nothing extra.

Usage:
    install_final_row(attention_module)          # once, after loading
    with final_row_capture(final_index) as out:  # per forward
        model(**inputs)
    out.get("attention")                         # (B, L) float32 on CPU, or None
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

FINAL_ROW = "vdr_final_row"

_TARGET: ContextVar[dict | None] = ContextVar("vdr_final_row_target", default=None)
_registered = False


def final_token_row(query, key, attention_mask, scaling: float, final, is_causal: bool = True):
    """The head-averaged attention row of each sequence's final token.

    Args:
        query: (B, H, L, D) queries after rotary embedding.
        key: (B, Hkv, L, D) keys after rotary embedding (Hkv divides H: grouped-query attention).
        attention_mask: what the layer's attention function received: None (no padding; causal
            if `is_causal`), a boolean (B, 1, L, L) mask (True = may attend) or an additive float
            mask.
        scaling: the layer's softmax scale.
        final: (B,) index of each sequence's final token.
        is_causal: the layer's `is_causal` (used only when the mask is None).

    Returns:
        (B, L) float32 row, averaged over heads.
    """
    import torch

    batch, heads, length, _ = query.shape
    rows = torch.arange(batch, device=query.device)
    final = final.to(query.device)
    q = query[rows, :, final, :].float()  # (B, H, D)
    k = key.float()
    groups = heads // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)  # as transformers' repeat_kv
    scores = torch.einsum("bhd,bhld->bhl", q, k) * scaling  # (B, H, L)
    if attention_mask is None:
        if is_causal:
            positions = torch.arange(k.shape[2], device=query.device)
            allowed = positions[None, :] <= final[:, None]  # (B, L)
            scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
    else:
        mask_row = attention_mask[rows, :, final, : k.shape[2]]  # (B, 1 or H, L)
        if mask_row.dtype == torch.bool:
            scores = scores.masked_fill(~mask_row, float("-inf"))
        else:
            scores = scores + mask_row.float()
    return torch.softmax(scores, dim=-1).mean(1)  # (B, L)


def _final_row_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """SDPA for the layer, plus the final-token row when a capture is open in this context."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    target = _TARGET.get()
    if target is not None:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        row = final_token_row(
            query, key, attention_mask, scale, target["final"], bool(getattr(module, "is_causal", True))
        )
        target["attention"] = row.cpu()
    return out


def register() -> None:
    """Make `FINAL_ROW` a known transformers attention implementation (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(FINAL_ROW, _final_row_attention)
    _registered = True


def install_final_row(attention_module: Any) -> bool:
    """Give one attention module the `FINAL_ROW` implementation; the rest of the model keeps its own.

    The module gets a private copy of its config (the other layers share the original), with
    only the attention implementation changed. Masks are still built by the model for its own
    implementation (SDPA), which is what `FINAL_ROW` passes on to SDPA.

    Returns:
        True if installed; False if the module has no config to switch (unknown module type).
    """
    config = getattr(attention_module, "config", None)
    if config is None or not hasattr(config, "_attn_implementation_internal"):
        return False
    register()
    own = copy.copy(config)
    # Set the stored value directly: the public setter also recurses into sub-configs.
    own._attn_implementation_internal = FINAL_ROW
    attention_module.config = own
    return True


@contextmanager
def final_row_capture(final) -> Iterator[dict]:
    """Open a capture for forward passes run in this context; yields the dict that receives it."""
    target: dict = {"final": final}
    token = _TARGET.set(target)
    try:
        yield target
    finally:
        _TARGET.reset(token)
