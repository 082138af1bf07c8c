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
A small model with short sequences (text-layout's MiniLM, where that second softmax cost as much
as the layer) asks for the `fused` capture instead: the layer's attention is computed eagerly,
once, and the in-degrees are read from its own weights.

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
        scores = _masked_scores(query, k, attention_mask, scaling, is_causal)  # (B, H, L, L)
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


def _masked_scores(query, key, attention_mask, scaling: float, is_causal: bool):
    """(B, H, L, K) float32 scores q . k * scaling with the layer's mask applied (-inf where barred)."""
    import torch

    scores = torch.matmul(query.float() * scaling, key.float().transpose(-1, -2))
    k_len = scores.shape[-1]
    if attention_mask is None:
        if is_causal:
            positions = torch.arange(k_len, device=query.device)
            allowed = positions[None, :] <= torch.arange(scores.shape[-2], device=query.device)[:, None]
            scores.masked_fill_(~allowed, float("-inf"))
    elif attention_mask.dtype == torch.bool:
        scores.masked_fill_(~attention_mask[..., :k_len], float("-inf"))
    else:
        scores.add_(attention_mask[..., :k_len].float())
    return scores


def _eager_with_in_degree(module, query, key, value, attention_mask, scale: float, target: dict):
    """Short sequences (MiniLM's windows): the layer's attention computed eagerly, once, and the
    in-degrees (and, when asked, the first row) read from those same weights. Recomputing the
    softmax beside SDPA doubled MiniLM's forward; this costs about half of one (docs/sap.md).

    The (B, H, L, K) matrix is touched in place: E = exp(s - max) is never normalised; each row's
    1 / sum is folded into the small things read from it (the row weights of the in-degree
    product, the (B, H, L, D) output, the first row)."""
    import torch

    e = _masked_scores(query, key, attention_mask, scale, bool(getattr(module, "is_causal", True)))
    top = e.amax(dim=-1, keepdim=True)
    e.sub_(top.masked_fill_(top == float("-inf"), 0.0)).exp_()  # (B, H, L, K), unnormalised softmax
    total = e.sum(dim=-1)  # (B, H, L); 0 for a fully masked row, whose weights and output stay 0
    inverse = torch.where(total > 0, total.reciprocal(), torch.zeros_like(total))
    batch, heads, length, k_len = e.shape
    rows = target["rows"].to(query.device)
    # sum over marked rows i of mean over heads of e / sum: one (B, 1, H*L) x (B, H*L, K) product
    row_weights = (inverse * rows[:, None, :].float() / heads).reshape(batch, 1, heads * length)
    degrees = torch.bmm(row_weights, e.view(batch, heads * length, k_len)).squeeze(1)
    target["layers"][module._vdr_layer] = degrees.cpu()
    if target.get("first_row_layer") == module._vdr_layer:
        target["first_row"] = (e[:, :, 0, :] * inverse[:, :, :1]).mean(1).cpu()
    out = torch.matmul(e, value.float()).mul_(inverse[..., None])  # (B, H, L, D)
    return out.to(value.dtype).transpose(1, 2).contiguous(), None


def _centrality_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """The layer's own attention implementation, plus its in-degrees when a capture is open."""
    target = _TARGET.get()
    if target is None or (target["only"] is not None and module._vdr_layer not in target["only"]):
        return module._vdr_inner_attention(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    batch, heads, length, _ = query.shape
    if (target.get("fused") and key.shape[1] == heads
            and batch * heads * length * key.shape[2] <= _BATCHED_ELEMENTS):
        return _eager_with_in_degree(module, query, key, value, attention_mask, scale, target)
    out = module._vdr_inner_attention(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    degrees = in_degree(query, key, attention_mask, scale, target["rows"], bool(getattr(module, "is_causal", True)))
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
def centrality_capture(rows, fused: bool = False, first_row_layer: int | None = None,
                       only: set[int] | None = None) -> Iterator[dict]:
    """Open a capture for forward passes in this context.

    Args:
        rows: bool (B, L) tensor, the image-token positions (queries and keys of the centrality).
        fused: compute each short layer's attention eagerly and read the in-degrees from its own
            weights (for a model with no other capture on its layers, e.g. MiniLM), instead of the
            layer's implementation plus a second softmax.
        first_row_layer: with `fused`, also keep that layer's head-averaged attention from token 0
            ([CLS]) as "first_row" (B, K).
        only: capture these layers only (None: every layer; benchmarks time the capture this way).

    Yields:
        a dict whose "layers" maps layer index -> (B, L) float32 in-degrees, filled by the pass.
    """
    target: dict = {"rows": rows, "layers": {}, "fused": fused, "first_row_layer": first_row_layer, "only": only}
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
