"""Quantisers for view vectors (pure numpy): int8 with a symmetric per-vector scale, and binary.

A quantised view (`cluster:factor=9@int8`, `full@binary`) is its reduction computed first, then
every searchable vector (reduced vectors and extra tokens alike) quantised; groups are unchanged.

int8 (symmetric, one scale per vector):

    scale_i = max_j |x_ij| / 127            codes_ij = round(x_ij / scale_i)   in [-127, 127]
    dequantised x'_ij = scale_i * codes_ij
    error: |x_ij - x'_ij| <= scale_i / 2 = max_j |x_ij| / 254 for every value (rounding to the
    nearest code); an all-zero vector gets scale 0 and codes 0 (exact).
    bytes per vector: d (codes) + 4 (float32 scale).

binary (one sign bit per value, packed 8 per byte, most significant bit first as np.packbits):

    bit_ij = 1 if x_ij > 0 else 0           dequantised x'_ij = +1 / -1
    error: the direction only; sign(x'_ij) = sign(x_ij) for every non-zero value (zero maps to
    -1), so cos(x, x') = ||x||_1 / (sqrt(d) ||x||_2), between 1/sqrt(d) and 1.
    bytes per vector: ceil(d / 8).

Scoring (vdr_app.search_quantised): an int8 view quantises the query tokens the same way and
scores the dequantised query against the dequantised vectors (exact int32 products through
torch._int_mm; without it, the float32 query against the dequantised vectors); a binary view
binarises the query tokens the same way and scores every pair by the cosine of the two ±1
vectors, (d - 2 * Hamming distance) / d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTISERS = ("int8", "binary")
FLOAT16 = "float16"  # how unquantised vectors are stored (see vdr_app.store)
INT8_MAX = 127


def bytes_per_vector(dim: int, quant: str | None = None) -> int:
    """Stored bytes of one d-dimensional vector: float16 2d; int8 d + 4 (its scale); binary ceil(d/8)."""
    if quant is None or quant == FLOAT16:
        return 2 * dim
    if quant == "int8":
        return dim + 4
    if quant == "binary":
        return (dim + 7) // 8
    raise ValueError(f"unknown quantiser {quant!r}; quantisers: {', '.join(QUANTISERS)}")


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must have shape (n, d), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("vectors hold NaN or infinite values")
    return x


def quantise_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-vector int8.

    Args:
        x: float (n, d), finite.

    Returns:
        (codes int8 (n, d) in [-127, 127], scales float32 (n,)).
    """
    x = _as_matrix(x)
    peak = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)  # (n,)
    scales = (peak / np.float32(INT8_MAX)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(x / safe[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scales


def dequantise_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 (n, d): scales[i] * codes[i]."""
    return np.asarray(codes, dtype=np.float32) * np.asarray(scales, dtype=np.float32)[:, None]


def quantise_binary(x: np.ndarray) -> np.ndarray:
    """Sign bits (1 for x > 0), packed 8 per byte: uint8 (n, ceil(d/8)); padding bits are 0."""
    x = _as_matrix(x)
    return np.packbits(x > 0, axis=1)


def dequantise_binary(packed: np.ndarray, dim: int) -> np.ndarray:
    """float32 (n, dim) of +1 / -1 from packed sign bits."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=dim)
    return bits.astype(np.float32) * 2 - 1


@dataclass(frozen=True)
class QuantisedVectors:
    """One page's searchable vectors, quantised.

    Attributes:
        kind: "int8" or "binary".
        dim: d of the vectors before quantisation.
        codes: int8 (n, d) for int8; uint8 (n, ceil(d/8)) packed sign bits for binary.
        scales: float32 (n,) for int8, None for binary.
    """

    kind: str
    dim: int
    codes: np.ndarray
    scales: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        """The real bytes held: codes plus scales."""
        return int(self.codes.nbytes + (0 if self.scales is None else self.scales.nbytes))

    def dequantise(self) -> np.ndarray:
        """float32 (n, d): what the codes stand for (±1 for binary)."""
        if self.kind == "int8":
            return dequantise_int8(self.codes, self.scales)
        return dequantise_binary(self.codes, self.dim)


def quantise(x: np.ndarray, kind: str) -> QuantisedVectors:
    """Quantise float (n, d) vectors with `kind` ("int8" or "binary")."""
    x = _as_matrix(x)
    if kind == "int8":
        codes, scales = quantise_int8(x)
        return QuantisedVectors("int8", x.shape[1], codes, scales)
    if kind == "binary":
        return QuantisedVectors("binary", x.shape[1], quantise_binary(x))
    raise ValueError(f"unknown quantiser {kind!r}; quantisers: {', '.join(QUANTISERS)}")


def cosine_error(x: np.ndarray, quantised: QuantisedVectors) -> np.ndarray:
    """float32 (n,): cosine between each float vector and its dequantised one (1 = no loss).

    A zero vector (either side) counts as 1 when both are zero, else 0.
    """
    x = _as_matrix(x).astype(np.float64)
    y = quantised.dequantise().astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"vectors {x.shape} and codes for {y.shape} differ")
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    both = (nx > 0) & (ny > 0)
    cos = np.where(both, (x * y).sum(axis=1) / np.where(both, nx * ny, 1.0), np.where((nx == 0) & (ny == 0), 1.0, 0.0))
    return cos.astype(np.float32)


__all__ = [
    "QUANTISERS",
    "QuantisedVectors",
    "bytes_per_vector",
    "cosine_error",
    "dequantise_binary",
    "dequantise_int8",
    "quantise",
    "quantise_binary",
    "quantise_int8",
]
