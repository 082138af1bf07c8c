"""Each image patch's in-degree centrality in every decoder layer, read inside the SDPA forward.

Structural Anchor Pruning (SAP; Liu et al., arXiv 2601.20107) ranks a page's patches by how much
attention the other patches pay them in the middle layers of the backbone:

    c_j(layer) = sum over image tokens i of mean over heads of A_layer[h, i, j]

(the paper's SAP-Mean). The weights A are what eager attention computes; here every layer keeps
SDPA and gets its own attention implementation, `CENTRALITY`, which runs the layer's original
implementation (SDPA, or the last layer's `FINAL_ROW`) and, when a capture is open in the calling
context, also computes softmax(q_i . K^T * scaling + mask_i) for the image rows i only, in
float32 and in chunks of rows, and sums them into one in-degree per key. The cost is one
(heads x n_image x L) product per layer, small against the layer's own projections and MLP.

Every layer is captured, not only a window: the strategy picks the window when it reduces
(`vdr_app.reduce.sap`), so a different window, like a different ratio, is a re-cut of stored
values and never a re-encode.

Per-call state lives in a `ContextVar` (as in final_row.py): a query encoded on another thread
while pages encode computes nothing extra and disturbs nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

CENTRALITY = "vdr_centrality"
# Image rows per softmax block: bounds the transient (heads x rows x L) float32 scores.
_ROW_CHUNK = 512
# Up to this many score elements (B x H x L x L) the whole batch is one product (short sequences,
# e.g. MiniLM's 256-token windows, where a Python loop per row block would cost more than the
# arithmetic); longer ones go block by block.
_BATCHED_ELEMENTS = 1 << 24

_TARGET: ContextVar[dict | None] = ContextVar("vdr_centrality_target", default=None)
_registered = False


def in_degree(query, key, attention_mask, scaling: float, rows, is_causal: bool = True):
    """Head-averaged attention received by every key from the query rows marked in `rows`.

    Args:
        query: (B, H, L, D) queries after rotary embedding.
        key: (B, Hkv, L, D) keys after rotary embedding (Hkv divides H).
        attention_mask: what the layer's attention function received: None (no padding; causal
            if `is_causal`), a boolean (B, 1|H, L, L) mask (True = may attend) or an additive one.
        scaling: the layer's softmax scale.
        rows: bool (B, L), the query positions whose attention counts (the image tokens).
        is_causal: the layer's `is_causal` (used only when the mask is None).

    Returns:
        (B, L) float32: for each key j, sum over marked rows i of mean_h softmax(...)[h, i, j].
    """
    import torch

    batch, heads, length, _ = query.shape
    k = key.float()
    groups = heads // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)  # as transformers' repeat_kv
    k_len = k.shape[2]
    rows = rows.to(query.device)
    positions = torch.arange(k_len, device=query.device)
    if batch * heads * length * k_len <= _BATCHED_ELEMENTS:
        scores = torch.einsum("bhqd,bhkd->bhqk", query.float(), k) * scaling  # (B, H, L, L)
        if attention_mask is None:
            if is_causal:
                allowed = positions[None, :] <= torch.arange(length, device=query.device)[:, None]
                scores = scores.masked_fill(~allowed, float("-inf"))
        elif attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask[..., :k_len], float("-inf"))
        else:
            scores = scores + attention_mask[..., :k_len].float()
        weights = torch.softmax(scores, dim=-1).mean(1)  # (B, L, L)
        # Rows not counted are zeroed, not skipped: a fully masked padding row is NaN otherwise.
        return torch.where(rows[:, :, None], weights, 0.0).sum(1)
    out = torch.zeros(batch, k_len, dtype=torch.float32, device=query.device)
    for b in range(batch):
        index = torch.nonzero(rows[b], as_tuple=False).flatten()
        for start in range(0, index.numel(), _ROW_CHUNK):
            sel = index[start : start + _ROW_CHUNK]
            scores = torch.einsum("hcd,hld->hcl", query[b][:, sel].float(), k[b]) * scaling  # (H, c, L)
            if attention_mask is None:
                if is_causal:
                    allowed = positions[None, :] <= sel[:, None]  # (c, L)
                    scores = scores.masked_fill(~allowed[None], float("-inf"))
            else:
                mask = attention_mask[b][:, sel, :k_len]  # (1 or H, c, L)
                if mask.dtype == torch.bool:
                    scores = scores.masked_fill(~mask, float("-inf"))
                else:
                    scores = scores + mask.float()
            out[b] += torch.softmax(scores, dim=-1).mean(0).sum(0)
    return out


def _centrality_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """The layer's own attention implementation, plus its in-degrees when a capture is open."""
    out = module._vdr_inner_attention(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    target = _TARGET.get()
    if target is not None:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        degrees = in_degree(
            query, key, attention_mask, scale, target["rows"], bool(getattr(module, "is_causal", True))
        )
        target["layers"][module._vdr_layer] = degrees.cpu()
    return out


def register() -> None:
    """Make `CENTRALITY` a known transformers attention implementation (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(CENTRALITY, _centrality_attention)
    _registered = True


def install_centrality(attention_modules: Sequence[Any]) -> bool:
    """Give every decoder layer's attention module the `CENTRALITY` implementation around its own.

    Call after `install_final_row`, so the last layer keeps computing its final-token row. Each
    module gets a private copy of its config with only the implementation changed.

    Returns:
        True if every module was switched; False (nothing switched) if one has no switchable
        config or runs an implementation this cannot wrap (eager: it has its own weights).
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    configs = [getattr(m, "config", None) for m in attention_modules]
    if not attention_modules or any(c is None or not hasattr(c, "_attn_implementation_internal") for c in configs):
        return False
    names = [c._attn_implementation for c in configs]
    if any(name in (None, "eager") or name not in ALL_ATTENTION_FUNCTIONS for name in names):
        return False
    register()
    for index, (module, config, name) in enumerate(zip(attention_modules, configs, names)):
        module._vdr_inner_attention = ALL_ATTENTION_FUNCTIONS[name]
        module._vdr_layer = index
        own = copy.copy(config)
        own._attn_implementation_internal = CENTRALITY  # not the setter: it recurses into sub-configs
        module.config = own
    return True


@contextmanager
def centrality_capture(rows) -> Iterator[dict]:
    """Open a capture for forward passes in this context.

    Args:
        rows: bool (B, L) tensor, the image-token positions (queries and keys of the centrality).

    Yields:
        a dict whose "layers" maps layer index -> (B, L) float32 in-degrees, filled by the pass.
    """
    target: dict = {"rows": rows, "layers": {}}
    token = _TARGET.set(target)
    try:
        yield target
    finally:
        _TARGET.reset(token)


def stack_layers(layers: dict, n_layers: int):
    """(n_layers, B, L) float32 numpy from a capture's per-layer dict; None if any layer is missing."""
    import numpy as np

    if len(layers) != n_layers or sorted(layers) != list(range(n_layers)):
        return None
    return np.stack([layers[i].numpy() for i in range(n_layers)]).astype(np.float32)
