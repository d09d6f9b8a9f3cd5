# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_accum.py (Accumulator) in the Amaranth simulator:
the rows it writes back, against a plain sum over the K passes of each tile
(the first pass starts from zero), with passes spaced as the issuer spaces
them (at least MIN_PASS cycles) and random gaps between them."""

import numpy as np
import pytest

from seedchip.config import ChipConfig
from seedchip.rtl.bufmem import BufferRAM
from seedchip.rtl.gemm import GemmUnit
from seedchip.rtl.gemm_accum import Accumulator
from seedchip.rtl.gemm_walker import _bits
from seedchip.sim.clocked import run_clocked

RD = BufferRAM.LATENCY


def wrap32(x):
    return (int(x) + (1 << 31)) % (1 << 32) - (1 << 31)


@pytest.mark.parametrize("m,kts,nts", [(1, 1, 1), (3, 2, 3), (8, 3, 2), (6, 1, 4)])
@pytest.mark.parametrize("latency", [1, 6])
def test_accumulates(m, kts, nts, latency):
    cfg = ChipConfig(rows=4, cols=3, max_m=8, max_k=16, max_n=16)
    C, mbits = cfg.cols, _bits(cfg.max_m)
    seed = 1000 * m + 100 * kts + 10 * nts + latency
    rng = np.random.default_rng(seed)
    psums = rng.integers(-(1 << 31), 1 << 31, (nts, kts, m, C))
    # the schedule: tag (row, first, bank, final) per cycle, psum RD + latency later
    tags, psum_at, cycle = {}, {}, 4
    for nt in range(nts):
        for kt in range(kts):
            for r in range(m):
                tags[cycle + r] = (r, kt == 0, nt % 2, kt == kts - 1 and r == m - 1)
                psum_at[cycle + r + RD + latency] = [int(x) for x in psums[nt, kt, r]]
            cycle += max(m, GemmUnit.MIN_PASS) + int(rng.integers(0, 4))
    # what must be written: each row's running sum, and the tile's end per bank
    want, done_want, acc = [], [], {}
    for nt in range(nts):
        for kt in range(kts):
            for r in range(m):
                addr = (nt % 2) << mbits | r
                prev = [0] * C if kt == 0 else acc[addr]
                acc[addr] = [wrap32(p + s) for p, s in zip(prev, psums[nt, kt, r])]
                want.append((addr, acc[addr]))
        done_want.append(1 << (nt % 2))
    dut = Accumulator(config=cfg, array_latency=latency)

    async def tb(ctx):
        mem, addr_hist = {}, [0] * RD
        got, done = [], []
        for c in range(cycle + RD + latency + 10):
            t = tags.get(c)
            ctx.set(dut.tag, {"valid": t is not None, "m": t[0] if t else 0,
                              "first": t[1] if t else 0, "bank": t[2] if t else 0,
                              "final": t[3] if t else 0})
            ctx.set(dut.psum, psum_at.get(c, [0] * C))
            # the RAM: the row at the address of RD cycles ago (never garbage
            # for a first pass: the accumulator must ignore it)
            ctx.set(dut.rd_data, mem.get(addr_hist[-RD], [12345] * C))
            if ctx.get(dut.w_en):
                addr, row = ctx.get(dut.w_addr), [int(x) for x in ctx.get(dut.w_data)]
                got.append((addr, row))
                mem[addr] = row
            if ctx.get(dut.done):
                done.append(ctx.get(dut.done))
            addr_hist.append(ctx.get(dut.rd_addr))
            await ctx.tick()
        assert got == want, f"seed {seed}"
        assert done == done_want

    run_clocked(dut, tb, period=1e-6)


def test_rejects_bad_arguments():
    cfg = ChipConfig(rows=4, cols=3, max_m=8, max_k=16, max_n=16)
    with pytest.raises(ValueError, match=r"^array_latency must be a positive integer, not 0$"):
        Accumulator(config=cfg, array_latency=0)
