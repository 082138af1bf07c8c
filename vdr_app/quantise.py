"""Quantisers for view vectors (pure numpy): int8 with a symmetric per-vector scale, rotated 4- and
2-bit codes, and binary.

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

int4 / int2 (rotated low-bit codes, the scheme of TurboQuant as shipped in Qdrant 1.18: a random
orthogonal rotation, a fixed scalar codebook for Gaussian coordinates, one length-correcting scale
per vector; L = 2^b levels):

    y_i = x_i R                     R: the seeded random orthogonal d x d matrix `rotation(d)`
                                    (QR of a Gaussian matrix, seed ROTATION_SEED): it spreads every
                                    vector's energy evenly, so each y_ij is ~ N(0, sigma_i^2),
                                    sigma_i = ||x_i|| / sqrt(d)
    u_ij = clip(floor(y_ij / (STEP[b] * sigma_i) + L/2), 0, L - 1)   the uniform grid at the
                                    Gaussian-optimal step (Max 1960: 0.3352 sigma for 16 levels,
                                    0.9957 sigma for 4)
    level(u) = 2u - (L - 1)         odd integers: int4 -15..15, int2 -3 -1 1 3 (LEVELS)
    scale_i = ||x_i||^2 / (y_i . level(u_i))       RaBitQ's unbiased inner-product estimator
                                    (Qdrant's "length renormalisation"): scale_i * (q R . level(u_i))
                                    estimates q . x_i, exactly for q = x_i
    dequantised x'_i = scale_i * level(u_i) R^T
    codes: b-bit u packed 8/b per byte in planes: with w bytes per vector, byte j holds dimension
    j + k*w in bits [k*b, (k+1)*b) (k = 0 .. 8/b - 1); the dimension is padded to w * 8/b
    (padded u 0, never scored: the query is zero there).
    bytes per vector: ceil(d / (8/b)) (codes) + 4 (float32 scale). An all-zero vector: scale 0.
    The rotation is the same for every vector and query of a dimension, so R R^T = I keeps dot
    products: a query is rotated once and scored against the codes without rotating them back.
    Why a uniform grid, not TurboQuant's Lloyd-Max centroids: its levels are 2u - (L - 1), so
    unpacking is a shift, a mask and 2u - (L - 1) on whole byte planes (SIMD numpy calls), where
    Lloyd-Max levels need a table gather per byte (measured ~3x the int8 product itself);
    on Gaussian coordinates its mean squared error is 1 % (int2) and 22 % (int4) above
    Lloyd-Max's (0.1190 vs 0.1175, 0.0116 vs 0.0095 of sigma^2).

Scoring (vdr_app.index.maxsim_quantised): an int8 view quantises the query tokens the same way and
scores the dequantised query against the dequantised vectors (exact int32 products through
torch._int_mm; without it, the float32 query against the dequantised vectors); a binary view
binarises the query tokens the same way and scores every pair by the cosine of the two ±1
vectors, (d - 2 * Hamming distance) / d; an int4 / int2 view rotates the query tokens, quantises them
to int8 as above and scores them against the codes' int8 levels (the same exact int32 product).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

QUANTISERS = ("int8", "int4", "int2", "binary")
ROTATED = {"int4": 4, "int2": 2}  # rotated low-bit quantisers -> bits per value
FLOAT16 = "float16"  # how unquantised vectors are stored (see vdr_app.store)
MAX_RESCORE = 100_000  # deepest exact rescoring of a quantised view (engine and CLI both bound by it)
INT8_MAX = 127
ROTATION_SEED = 20260519  # fixed: stored codes and later queries must share the rotation
# The step of the mean-squared-error-optimal uniform quantiser of N(0, 1) with 2^b levels (Max 1960),
# in units of the coordinates' standard deviation.
STEP = {4: 0.3352, 2: 0.9957}
# The integer level of each index u: 2u - (2^b - 1) (int4: -15, -13, ..., 15; int2: -3, -1, 1, 3).
LEVELS = {bits: (2 * np.arange(1 << bits) - ((1 << bits) - 1)).astype(np.int8) for bits in STEP}


def bytes_per_vector(dim: int, quant: str | None = None) -> int:
    """Stored bytes of one d-dimensional vector: float16 2d; int8 d + 4 (its scale); int4
    ceil(d/2) + 4; int2 ceil(d/4) + 4; binary ceil(d/8)."""
    if quant is None or quant == FLOAT16:
        return 2 * dim
    if quant == "int8":
        return dim + 4
    if quant in ROTATED:
        return packed_width(dim, quant) + 4
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


@lru_cache(maxsize=8)
def rotation(dim: int) -> np.ndarray:
    """The seeded random orthogonal matrix float64 (d, d) of the int4 / int2 codes (read-only).

    Q of the QR decomposition of a standard Gaussian matrix drawn with ROTATION_SEED, its columns'
    signs fixed by R's diagonal (so Q is Haar-distributed, Mezzadri 2007)."""
    gauss = np.random.default_rng([ROTATION_SEED, int(dim)]).standard_normal((dim, dim))
    q, r = np.linalg.qr(gauss)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    q.setflags(write=False)
    return q


@lru_cache(maxsize=8)
def _rotation32(dim: int) -> np.ndarray:
    r = np.ascontiguousarray(rotation(dim), dtype=np.float32)
    r.setflags(write=False)
    return r


ROTATE_ROWS = 32  # rows per product in `rotate` (see there)


def rotate(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """float32 (n, d): x @ rotation(d) (inverse: x @ rotation(d).T), in float32.

    In products of ROTATE_ROWS rows: OpenBLAS runs a product that small on the calling thread,
    while from ~64 rows on it wakes its own threads, which on a loaded 2-core host cost 10-100x
    (measured for 1,030 x 128: 91 ms in one product, 906 ms in 64-row ones, 8 ms in 32-row ones)."""
    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    out = np.empty((n, d), dtype=np.float32)
    if d:
        r = _rotation32(d).T if inverse else _rotation32(d)
        for start in range(0, n, ROTATE_ROWS):
            np.matmul(x[start : start + ROTATE_ROWS], r, out=out[start : start + ROTATE_ROWS])
    return out


def packed_width(dim: int, kind: str) -> int:
    """Bytes of one vector's packed int4 / int2 codes: ceil(d / (8 / bits))."""
    per_byte = 8 // ROTATED[kind]
    return -(-int(dim) // per_byte)


def _rotated_bits(kind: str) -> int:
    if kind not in ROTATED:
        raise ValueError(f"rotated quantisers are {', '.join(ROTATED)}, got {kind!r}")
    return ROTATED[kind]


def quantise_rotated(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Rotated int4 / int2 codes (see the module docstring).

    Args:
        x: float (n, d), finite.
        kind: "int4" or "int2".

    Returns:
        (packed codes uint8 (n, packed_width(d, kind)), scales float32 (n,)).
    """
    bits = _rotated_bits(kind)
    x = _as_matrix(x)
    n, d = x.shape
    top = (1 << bits) - 1
    y = rotate(x).astype(np.float64)  # (n, d)
    norms = np.linalg.norm(y, axis=1)
    step = np.where(norms > 0, norms / np.sqrt(max(d, 1)), 1.0) * STEP[bits]  # (n,)
    indices = np.clip(np.floor(y / step[:, None] + (top + 1) / 2), 0, top).astype(np.uint8)  # (n, d)
    dot = np.einsum("ij,ij->i", y, 2.0 * indices - top)  # y . level(u) > 0 for a non-zero vector: signs agree
    scales = np.where(norms > 0, norms**2 / np.where(dot > 0, dot, 1.0), 0.0).astype(np.float32)
    width = packed_width(d, kind)
    padded = np.zeros((n, width * (8 // bits)), dtype=np.uint8)
    padded[:, :d] = indices
    packed = np.zeros((n, width), dtype=np.uint8)
    for k in range(8 // bits):  # plane k: dimensions k*w .. (k+1)*w - 1 in bits k*b of each byte
        packed |= padded[:, k * width : (k + 1) * width] << np.uint8(k * bits)
    return packed, scales


def unpack_levels(packed: np.ndarray, kind: str, out: np.ndarray | None = None,
                  scratch: np.ndarray | None = None) -> np.ndarray:
    """int8 (n, padded d) levels 2u - (2^b - 1) of packed int4 / int2 codes (padding included).

    Each byte plane is shifted and masked contiguously into `scratch` (uint8 (n, w), reused by
    the search kernel), copied into its slice of the rows, then 2u - (2^b - 1) runs in place over
    the whole buffer (uint8 arithmetic wraps to the int8 value). Measured: numpy's shifts and
    masks are SIMD only on contiguous arrays (writing a plane straight into its strided slice
    cost ~3x), and uint8 left shifts are not vectorised (u + u is)."""
    bits = _rotated_bits(kind)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n, width = packed.shape
    per_byte, mask = 8 // bits, np.uint8((1 << bits) - 1)
    if out is None:
        out = np.empty((n, width * per_byte), dtype=np.int8)
    if scratch is None:
        scratch = np.empty((n, width), dtype=np.uint8)
    u = out.view(np.uint8)
    for k in range(per_byte):
        if k:
            np.right_shift(packed, np.uint8(k * bits), out=scratch)
        if k < per_byte - 1:
            np.bitwise_and(scratch if k else packed, mask, out=scratch)
        np.copyto(u[:, k * width : (k + 1) * width], scratch)
    np.add(u, u, out=u)
    np.subtract(u, mask, out=u)  # 2u - (2^b - 1) modulo 256 = its int8 value
    return out


def dequantise_rotated(packed: np.ndarray, scales: np.ndarray, dim: int, kind: str) -> np.ndarray:
    """float32 (n, dim): scales[i] * levels[i] R^T, back in the vectors' own coordinates."""
    levels = unpack_levels(packed, kind)[:, :dim].astype(np.float32) * np.asarray(scales, np.float32)[:, None]
    return rotate(levels, inverse=True)


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
        kind: "int8", "int4", "int2" or "binary".
        dim: d of the vectors before quantisation.
        codes: int8 (n, d) for int8; uint8 (n, packed_width(d, kind)) packed rotated codes for
            int4 / int2; uint8 (n, ceil(d/8)) packed sign bits for binary.
        scales: float32 (n,) for int8, int4 and int2, None for binary.
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
        if self.kind in ROTATED:
            return dequantise_rotated(self.codes, self.scales, self.dim, self.kind)
        return dequantise_binary(self.codes, self.dim)


def quantise(x: np.ndarray, kind: str) -> QuantisedVectors:
    """Quantise float (n, d) vectors with `kind` ("int8", "int4", "int2" or "binary")."""
    x = _as_matrix(x)
    if kind == "int8":
        codes, scales = quantise_int8(x)
        return QuantisedVectors("int8", x.shape[1], codes, scales)
    if kind in ROTATED:
        codes, scales = quantise_rotated(x, kind)
        return QuantisedVectors(kind, x.shape[1], codes, scales)
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
    "LEVELS",
    "QUANTISERS",
    "ROTATED",
    "ROTATION_SEED",
    "STEP",
    "QuantisedVectors",
    "bytes_per_vector",
    "cosine_error",
    "dequantise_binary",
    "dequantise_int8",
    "dequantise_rotated",
    "packed_width",
    "quantise",
    "quantise_binary",
    "quantise_int8",
    "quantise_rotated",
    "rotate",
    "rotation",
    "unpack_levels",
]
