"""The requantizer alone, in Amaranth's simulator, against sim/golden.py.

The GEMM testbenches check it end to end; here thousands of edge values go
through it directly, one per cycle, which the GEMM path cannot do as cheaply.
"""

import numpy as np
import pytest

from seedchip.rtl.requant import Requantizer, RequantInLayout
from seedchip.sim import golden
from seedchip.sim.clocked import run_clocked

I32_MIN, I32_MAX = golden.INT32_MIN, golden.INT32_MAX
EDGE_X = [0, 1, -1, 2, -2, I32_MAX, I32_MIN, I32_MIN + 1, I32_MAX - 1,
          1 << 30, -(1 << 30), (1 << 30) + 1, 12345, -12345]
EDGE_M = [0, 1, -1, 1 << 30, (1 << 30) + 1, I32_MAX, I32_MIN, I32_MIN + 1, 1518500250]


def vectors(seed):
    rng = np.random.default_rng(seed)
    v = []
    for x in EDGE_X:
        for mult in EDGE_M:
            for shift in (0, 1, 7, 31):
                v.append((x, 0, mult, shift))
    # Rounding ties for RoundingDivideByPOT: y = q * 2**s + 2**(s-1) (and its
    # negative) with the doubling-high-mul made the identity by x * 2**31 / m.
    # multiplier 2**30 maps x to round(x / 2), so feed x = 2 * y.
    for s in range(1, 31):
        for q in (0, 1, 5, -1, -6):
            y = q * (1 << s) + (1 << (s - 1))
            for sign in (1, -1):
                x = 2 * sign * y
                if I32_MIN <= x <= I32_MAX:
                    v.append((x, 0, 1 << 30, s))
    # Rounding across the saturation and sign boundaries: multiplier 2**30
    # maps x to round(x / 2), shift s divides by 2**s more, so these land on
    # and around 127/128, -128/-129 and -1/0 with and without rounding up.
    for s in (1, 2, 5):
        for y in (126, 127, 128, -127, -128, -129, -1, 0):
            base = y * (1 << (s + 1))
            for d in range(-(1 << (s + 1)), (1 << (s + 1)) + 1):
                v.append((base + d, 0, 1 << 30, s))
    # Saturation both ways after requantization, and bias wrap-around.
    v += [(1 << 20, 0, I32_MAX, 0), (-(1 << 20), 0, I32_MAX, 0),
          (I32_MAX, 1, 1 << 30, 0), (I32_MIN, -1, 1 << 30, 0)]
    n = 3000
    x = rng.integers(I32_MIN, I32_MAX + 1, n)
    x[: n // 2] >>= rng.integers(0, 31, n // 2)          # many small magnitudes too
    bias = rng.integers(I32_MIN, I32_MAX + 1, n)
    bias[: n // 3] = 0
    mult = rng.integers(1 << 30, I32_MAX + 1, n)
    mult[: n // 10] = rng.integers(I32_MIN, I32_MAX + 1, n // 10)
    shift = rng.integers(0, 32, n)
    v += list(zip(x.tolist(), bias.tolist(), mult.tolist(), shift.tolist()))
    return v


@pytest.mark.parametrize("requant,relu", [(1, 0), (1, 1), (0, 0), (0, 1)])
def test_requantizer_matches_golden(requant, relu):
    seed = 7 + 2 * requant + relu
    vec = vectors(seed)
    dut = Requantizer(out_width=8)
    got = []

    async def feed(ctx):
        for i, (x, bias, mult, shift) in enumerate(vec):
            ctx.set(dut.i_valid, 1)
            ctx.set(dut.i, RequantInLayout.const({
                "acc": x, "bias": bias, "multiplier": mult, "shift": shift,
                "requant": requant, "relu": relu, "last": int(i == len(vec) - 1)}))
            await ctx.tick()
        ctx.set(dut.i_valid, 0)
        for _ in range(dut.latency + 2):
            await ctx.tick()

    async def collect(ctx):
        async for _, _, valid, o in ctx.tick().sample(dut.o_valid, dut.o):
            if valid:
                got.append((o.data, o.last))

    run_clocked(dut, feed, processes=[collect])

    x, bias, mult, shift = (np.array(c, dtype=np.int64) for c in zip(*vec))
    xb = golden.wrap(x + bias)
    if requant:
        expect = golden.requantize(xb, mult, shift, relu=bool(relu))
    else:
        expect = np.maximum(xb, 0) if relu else xb
    data = np.array([g[0] for g in got], dtype=np.int64)
    assert len(data) == len(vec), f"seed {seed}: {len(data)} outputs for {len(vec)} inputs"
    bad = np.nonzero(data != expect)[0]
    assert bad.size == 0, (f"seed {seed}: {bad.size} mismatches, first at {bad[0]}: "
                           f"input {vec[bad[0]]} -> {data[bad[0]]}, golden {expect[bad[0]]}")
    assert [g[1] for g in got] == [0] * (len(vec) - 1) + [1]


def test_latency_is_declared():
    dut = Requantizer()
    seen = []

    async def tb(ctx):
        ctx.set(dut.i_valid, 1)
        ctx.set(dut.i, RequantInLayout.const({"acc": 5, "requant": 0}))
        await ctx.tick()
        ctx.set(dut.i_valid, 0)
        for cycle in range(1, 30):
            if ctx.get(dut.o_valid):
                seen.append(cycle)
            await ctx.tick()

    run_clocked(dut, tb)
    assert seen == [dut.latency]
