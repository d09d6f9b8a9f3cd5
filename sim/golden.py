"""Bit-exact NumPy golden models of the matrix unit.

Integer semantics only: every value is held in int64 and wrapped or saturated
exactly where the hardware wraps or saturates. No floats anywhere.

Requantization follows gemmlowp/TFLite (``MultiplyByQuantizedMultiplier`` with
a right shift)::

    x   = wrap32(acc + bias)
    y   = SaturatingRoundingDoublingHighMul(x, multiplier)
    z   = RoundingDivideByPOT(y, shift)
    out = saturate_int8(relu ? max(z, 0) : z)
"""

import numpy as np

from ..protocol import check_requant_params  # re-exported; defined once in protocol.py

__all__ = [
    "INT32_MIN", "INT32_MAX", "wrap", "saturate",
    "srdhm", "rounding_divide_by_pot", "requantize", "postprocess",
    "gemm_raw", "gemm", "tile_order", "from_tile_order", "check_requant_params",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap(x, bits=32):
    """Two's-complement wrap of int64 values to ``bits`` bits."""
    x = np.asarray(x, dtype=np.int64)
    m = np.int64(1) << bits
    h = np.int64(1) << (bits - 1)
    return ((x + h) & (m - 1)) - h


def saturate(x, bits=8):
    x = np.asarray(x, dtype=np.int64)
    return np.clip(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _trunc_div_pow2(x, n):
    """Integer division by 2**n rounding toward zero (C++ ``/``) on int64 (exact, n < 63)."""
    q = x >> n                         # floor
    r = x & ((np.int64(1) << n) - 1)   # x - floor*2**n, in [0, 2**n)
    return q + ((x < 0) & (r != 0))


def srdhm(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 operands.

    The product of two int32 values fits int64 exactly; the +nudge cannot
    overflow int64 either, so this is exact.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    hi = _trunc_div_pow2(ab + nudge, 31)
    return np.where(overflow, np.int64(INT32_MAX), hi)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: round half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def requantize(x, multiplier, shift, relu=False, out_bits=8):
    """Requantize int32 values ``x`` (already including the bias)."""
    y = srdhm(wrap(x), multiplier)
    z = rounding_divide_by_pot(y, shift)
    if relu:
        z = np.maximum(z, 0)
    return saturate(z, out_bits)


def postprocess(acc, bias=None, multiplier=None, shift=None, relu=False, out_bits=8):
    """What the unit's post-processing stage does to an [M, N] int32 accumulator.

    ``bias``/``multiplier``/``shift`` are per output channel (length N). Without
    ``multiplier`` the output is raw int32: ``wrap32(acc + bias)``, ReLU applied
    if asked.
    """
    x = wrap(np.asarray(acc, dtype=np.int64))
    if bias is not None:
        x = wrap(x + np.asarray(bias, dtype=np.int64)[None, :])
    if multiplier is None:
        return np.maximum(x, 0) if relu else x
    return requantize(x, np.asarray(multiplier, dtype=np.int64)[None, :],
                      np.asarray(shift, dtype=np.int64)[None, :], relu=relu, out_bits=out_bits)


def gemm_raw(a, b, acc_bits=32):
    """C = A @ B with int64 products, wrapped to the accumulator width."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return wrap(a @ b, acc_bits)


def gemm(a, b, bias=None, multiplier=None, shift=None, relu=False, out_bits=8, acc_bits=32):
    """The full unit: GEMM, bias, optional requantization and ReLU."""
    return postprocess(gemm_raw(a, b, acc_bits), bias, multiplier, shift, relu, out_bits)


def tile_order(c, cols):
    """Flatten [M, N] in the order the unit streams results: column tile, row, channel."""
    c = np.asarray(c)
    m, n = c.shape
    parts = [c[:, t:t + cols].reshape(-1) for t in range(0, n, cols)]
    return np.concatenate(parts) if parts else np.zeros(0, c.dtype)


def from_tile_order(flat, m, n, cols):
    """Inverse of :func:`tile_order`."""
    flat = np.asarray(flat)
    out = np.empty((m, n), dtype=flat.dtype)
    pos = 0
    for t in range(0, n, cols):
        w = min(cols, n - t)
        out[:, t:t + w] = flat[pos:pos + m * w].reshape(m, w)
        pos += m * w
    return out
