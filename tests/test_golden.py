"""sim/golden.py against an independent, slow, pure-Python reading of gemmlowp.

The reference below is written from the definitions, not from golden.py:

* ``SaturatingRoundingDoublingHighMul(a, b)``: if both are INT32_MIN the result
  saturates to INT32_MAX; otherwise ``(a*b + nudge) / 2**31`` with C++
  truncating division, ``nudge = 2**30`` if ``a*b >= 0`` else ``1 - 2**30``.
* ``RoundingDivideByPOT(x, e)``: ``x / 2**e`` rounded to nearest, ties away
  from zero.

Exact rationals (``fractions.Fraction``) do the rounding so that no shift or
mask trick is shared with the code under test.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from seedchip.sim import golden

I32_MIN = -(2 ** 31)
I32_MAX = 2 ** 31 - 1


# -- independent reference ------------------------------------------------------

def trunc_div(num: int, den: int) -> int:
    """C++ integer division: the quotient rounded toward zero."""
    q = Fraction(num, den)
    return math.floor(q) if q >= 0 else math.ceil(q)


def ref_srdhm(a: int, b: int) -> int:
    if a == I32_MIN and b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = 2 ** 30 if ab >= 0 else 1 - 2 ** 30
    return trunc_div(ab + nudge, 2 ** 31)


def ref_rdbpot(x: int, e: int) -> int:
    q = Fraction(x, 2 ** e)
    mag = math.floor(abs(q) + Fraction(1, 2))
    return mag if q >= 0 else -mag


def ref_wrap32(x: int) -> int:
    return (x + 2 ** 31) % 2 ** 32 - 2 ** 31


def ref_requant(x: int, mult: int, shift: int, relu: bool) -> int:
    z = ref_rdbpot(ref_srdhm(ref_wrap32(x), mult), shift)
    if relu:
        z = max(z, 0)
    return min(max(z, -128), 127)


def ref_gemm(a, b, bias=None, mult=None, shift=None, relu=False):
    m, k = len(a), len(a[0])
    n = len(b[0])
    out = [[0] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            acc = ref_wrap32(sum(int(a[i][t]) * int(b[t][j]) for t in range(k)))
            x = ref_wrap32(acc + (int(bias[j]) if bias is not None else 0))
            if mult is None:
                out[i][j] = max(x, 0) if relu else x
            else:
                out[i][j] = ref_requant(x, int(mult[j]), int(shift[j]), relu)
    return out


# -- hand-derived values ----------------------------------------------------------

# (a, b, SRDHM) worked out by hand from the definition.
SRDHM_CASES = [
    (0, 0, 0),
    (1 << 30, 1 << 30, 1 << 29),          # 0.5 * 0.5 = 0.25 exactly
    (1, 1 << 30, 1),                      # 0.5 -> 1: the +2**30 nudge rounds the tie up
    (-1, 1 << 30, 0),                     # -0.5 -> 0: negative ties round toward +inf
    (3, 1 << 30, 2),                      # 1.5 -> 2
    (-3, 1 << 30, -1),                    # -1.5 -> -1
    (5, 1 << 30, 3),                      # 2.5 -> 3
    (-5, 1 << 30, -2),                    # -2.5 -> -2
    (100, 1 << 30, 50),
    (-100, 1 << 30, -50),
    (I32_MIN, I32_MIN, I32_MAX),          # the one saturating case
    (I32_MIN, I32_MAX, -I32_MAX),         # -2**31 * (2**31-1) / 2**31 = -(2**31-1)
    (I32_MAX, I32_MAX, I32_MAX - 1),      # (2**31-1)**2 / 2**31 = 2**31 - 2 + 2**-31
    (I32_MIN, 1 << 30, -(1 << 30)),       # -2**61 / 2**31 exactly
    (I32_MIN, -(1 << 30), 1 << 30),
    (I32_MIN, 1, -1),                     # -2**31 / 2**31 = -1 exactly
    (I32_MIN, -1, 1),
    (I32_MAX, 1, 1),                      # 0.99999... -> 1
    (-I32_MAX, 1, -1),                    # -0.99999... -> -1
    (12345, 0, 0),
    (I32_MAX, I32_MIN, -I32_MAX),
    (7, -(1 << 30), -3),                  # -3.5 -> -3
    (-7, -(1 << 30), 4),                  # 3.5 -> 4
]

# (x, exponent, RoundingDivideByPOT) worked out by hand: ties away from zero.
RDBPOT_CASES = [
    (0, 0, 0), (5, 0, 5), (-5, 0, -5), (I32_MIN, 0, I32_MIN), (I32_MAX, 0, I32_MAX),
    (4, 1, 2), (-4, 1, -2),
    (5, 1, 3), (-5, 1, -3),               # 2.5 -> 3, -2.5 -> -3
    (3, 1, 2), (-3, 1, -2),               # 1.5 -> 2, -1.5 -> -2
    (1, 1, 1), (-1, 1, -1),               # 0.5 -> 1, -0.5 -> -1
    (7, 2, 2), (-7, 2, -2),               # 1.75
    (6, 2, 2), (-6, 2, -2),               # 1.5 tie
    (5, 2, 1), (-5, 2, -1),               # 1.25
    (2, 2, 1), (-2, 2, -1),               # 0.5 tie
    (1, 2, 0), (-1, 2, 0),                # 0.25
    (1 << 30, 31, 1), (-(1 << 30), 31, -1),        # +-0.5 at the largest shift
    ((1 << 30) - 1, 31, 0), (-(1 << 30) + 1, 31, 0),
    (I32_MAX, 31, 1), (I32_MIN, 31, -1),
    (I32_MIN, 30, -2), (I32_MAX, 30, 2),
    (1000, 3, 125), (1004, 3, 126), (1003, 3, 125),  # 125.5 -> 126, 125.375 -> 125
    (-1004, 3, -126), (-1003, 3, -125),
]


@pytest.mark.parametrize("a,b,expected", SRDHM_CASES)
def test_srdhm_hand(a, b, expected):
    assert ref_srdhm(a, b) == expected
    assert int(golden.srdhm(a, b)) == expected


@pytest.mark.parametrize("x,e,expected", RDBPOT_CASES)
def test_rdbpot_hand(x, e, expected):
    assert ref_rdbpot(x, e) == expected
    assert int(golden.rounding_divide_by_pot(x, e)) == expected


def test_requantize_hand():
    # (x, multiplier, shift, relu, expected)
    cases = [
        (100, 1 << 30, 0, False, 50),
        (100, 1 << 30, 1, False, 25),
        (-100, 1 << 30, 3, False, -6),       # -50 / 8 = -6.25
        (-100, 1 << 30, 2, False, -13),      # -50 / 4 = -12.5 -> -13
        (100, 1 << 30, 2, False, 13),        # 12.5 -> 13
        (1000, 1 << 30, 0, False, 127),      # saturate high
        (-1000, 1 << 30, 0, False, -128),    # saturate low
        (-1000, 1 << 30, 0, True, 0),        # ReLU before saturation
        (256, 1 << 30, 0, True, 127),
        (I32_MIN, I32_MIN, 31, False, 1),    # saturated SRDHM, then 0.99999... -> 1
        (I32_MIN, I32_MIN, 0, False, 127),
        (12345, 0, 5, False, 0),             # multiplier 0
        (2 ** 31 + 5, 1 << 30, 0, False, -128),  # wraps to INT32_MIN + 5 first
        (-256, I32_MIN, 0, False, 127),      # negative multiplier: -x
        (128, I32_MIN, 0, False, -128),
        (-3, 1 << 30, 0, False, -1),         # SRDHM(-3, 0.5) = -1.5 -> -1
        (-3, 1 << 30, 0, True, 0),
    ]
    for x, mult, shift, relu, expected in cases:
        assert ref_requant(x, mult, shift, relu) == expected, (x, mult, shift, relu)
        got = golden.requantize(np.array([x]), mult, shift, relu=relu)
        assert int(got[0]) == expected, (x, mult, shift, relu)


# -- randomised comparisons ---------------------------------------------------------

EDGES = [0, 1, -1, 2, -2, 3, -3, I32_MIN, I32_MIN + 1, I32_MAX, I32_MAX - 1,
         1 << 30, -(1 << 30), (1 << 30) - 1, (1 << 30) + 1, 1 << 16, -(1 << 16)]


def _int32s(rng, n):
    return [int(v) for v in rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True)]


def test_srdhm_random():
    rng = np.random.default_rng(1)
    a = EDGES + _int32s(rng, 3000)
    b = EDGES + _int32s(rng, 3000)
    pairs = [(x, y) for x in EDGES for y in EDGES] + list(zip(a, b[::-1]))
    aa = np.array([p[0] for p in pairs], dtype=np.int64)
    bb = np.array([p[1] for p in pairs], dtype=np.int64)
    got = golden.srdhm(aa, bb)
    for (x, y), g in zip(pairs, got):
        assert int(g) == ref_srdhm(x, y), (x, y)


def test_rdbpot_random():
    rng = np.random.default_rng(2)
    xs = EDGES + _int32s(rng, 300)
    for e in range(32):
        # the values sitting exactly on a tie, and one either side, for this shift
        ties = []
        if e:
            for q in (-3, -1, 0, 1, 2, 7):
                t = q * (1 << e) + (1 << (e - 1))
                if I32_MIN <= t - 1 and t + 1 <= I32_MAX:
                    ties += [t - 1, t, t + 1, -t]
        vals = xs + ties
        got = golden.rounding_divide_by_pot(np.array(vals, dtype=np.int64), e)
        for x, g in zip(vals, got):
            assert int(g) == ref_rdbpot(x, e), (x, e)


def test_requantize_random():
    rng = np.random.default_rng(3)
    n = 4000
    x = np.array(_int32s(rng, n), dtype=np.int64)
    x[: n // 2] >>= rng.integers(0, 31, size=n // 2)     # many magnitudes
    mult = np.array(_int32s(rng, n), dtype=np.int64)
    mult[::3] = rng.integers(1 << 30, I32_MAX, size=len(mult[::3]), endpoint=True)
    mult[::17] = 0
    shift = rng.integers(0, 31, size=n, endpoint=True)
    for relu in (False, True):
        got = golden.requantize(x, mult, shift, relu=relu)
        for i in range(n):
            assert int(got[i]) == ref_requant(int(x[i]), int(mult[i]), int(shift[i]), relu)


@pytest.mark.parametrize("mode", ["raw", "bias", "requant", "requant_relu", "raw_relu"])
def test_gemm_random(mode):
    rng = np.random.default_rng(["raw", "bias", "requant", "requant_relu", "raw_relu"].index(mode))
    for _ in range(6):
        m, k, n = (int(v) for v in rng.integers(1, 12, size=3))
        a = rng.integers(-128, 127, size=(m, k), endpoint=True)
        b = rng.integers(-128, 127, size=(k, n), endpoint=True)
        bias = mult = shift = None
        relu = mode.endswith("relu")
        if mode != "raw" and mode != "raw_relu":
            bias = rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True)
            bias[::2] //= 1 << 16
        if mode.startswith("requant"):
            mult = rng.integers(1 << 30, I32_MAX, size=n, endpoint=True)
            shift = rng.integers(0, 20, size=n, endpoint=True)
        got = golden.gemm(a, b, bias, mult, shift, relu=relu)
        exp = ref_gemm(a.tolist(), b.tolist(), bias, mult, shift, relu)
        assert got.tolist() == exp


def test_gemm_accumulator_extremes():
    # K = 256 products of -128 * -128 = 2**22: fits int32 with no wrap.
    k = 256
    a = np.full((2, k), -128)
    b = np.full((k, 3), -128)
    assert golden.gemm(a, b).tolist() == [[k * 16384] * 3] * 2
    b = np.full((k, 3), 127)
    assert golden.gemm(a, b).tolist() == [[-k * 128 * 127] * 3] * 2


def test_bias_wraps():
    a = np.array([[100]])
    b = np.array([[100]])
    # 10000 + (INT32_MAX - 5000) overflows and wraps to the negative side.
    out = golden.gemm(a, b, bias=np.array([I32_MAX - 5000]))
    assert int(out[0, 0]) == ref_wrap32(10000 + I32_MAX - 5000) == I32_MIN + 4999
    out = golden.gemm(-a, b, bias=np.array([I32_MIN + 5]))
    assert int(out[0, 0]) == I32_MAX - 9994
    # ReLU applies after the wrap: a wrapped-negative value clamps to 0.
    out = golden.gemm(a, b, bias=np.array([I32_MAX - 5000]), relu=True)
    assert int(out[0, 0]) == 0


def test_tile_order_hand():
    c = np.arange(10).reshape(2, 5)      # [[0 1 2 3 4], [5 6 7 8 9]]
    # cols=2: tile 0 = channels 0,1 for row 0 then row 1; tile 1 = 2,3; tile 2 = 4.
    assert golden.tile_order(c, 2).tolist() == [0, 1, 5, 6, 2, 3, 7, 8, 4, 9]
    assert golden.tile_order(c, 8).tolist() == list(range(10))
    assert golden.tile_order(c, 1).tolist() == [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]


@pytest.mark.parametrize("m,n,cols", [(1, 1, 4), (3, 7, 4), (5, 8, 8), (2, 17, 8), (4, 3, 16)])
def test_tile_order_roundtrip(m, n, cols):
    c = np.arange(m * n).reshape(m, n)
    flat = golden.tile_order(c, cols)
    assert sorted(flat.tolist()) == list(range(m * n))
    assert (golden.from_tile_order(flat, m, n, cols) == c).all()


def test_check_requant_params():
    golden.check_requant_params([0, 1 << 30, I32_MAX], [0, 5, 31])
    with pytest.raises(ValueError, match="multiplier must be 0 or in range"):
        golden.check_requant_params([(1 << 30) - 1], [0])
    with pytest.raises(ValueError, match="multiplier must be 0 or in range"):
        golden.check_requant_params([-5], [0])
    with pytest.raises(ValueError, match="shift must be in range 0..31"):
        golden.check_requant_params([1 << 30], [32])
