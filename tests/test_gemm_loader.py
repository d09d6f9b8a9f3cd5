# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_loader.py (WeightLoader) in the Amaranth simulator:
the weight rows it writes into the array, against the tile loop of the GEMM
(N tile outer, K tile inner, banks alternating; rows past K are zero)."""

import numpy as np
import pytest

from seedchip.config import ChipConfig
from seedchip.rtl.bufmem import BufferRAM
from seedchip.rtl.gemm_loader import WeightLoader
from seedchip.rtl.gemm_walker import _bits
from seedchip.sim.clocked import run_clocked

RD = BufferRAM.LATENCY


def expected(b, k, n, rows, cols):
    """(bank, row, weights) for each row written, and the tile count."""
    out, par = [], 0
    for nt in range(-(-n // cols)):
        for kt in range(-(-k // rows)):
            for i in range(rows):
                kk = kt * rows + i
                out.append((par, i, [int(x) for x in b[nt][kk]] if kk < k else [0] * cols))
            par ^= 1
    return out


@pytest.mark.parametrize("rows,cols", [(3, 4), (1, 2), (4, 4)])
@pytest.mark.parametrize("k,n", [(1, 1), (5, 3), (12, 9), (7, 16)])
def test_loader_order(rows, cols, k, n):
    cfg = ChipConfig(rows=rows, cols=cols, max_m=8, max_k=12, max_n=16)
    seed = 1000 * rows + 100 * cols + 10 * k + n
    rng = np.random.default_rng(seed)
    kbits = _bits(cfg.max_k)
    # the B buffer: for each N tile, for each k, cols weights (all max_k rows
    # filled, so a row past K shows up if the loader does not zero it)
    b = rng.integers(-128, 128, (cfg.n_tiles_max, 1 << kbits, cols))
    want = expected(b, k, n, rows, cols)
    n_tiles = len(want) // rows
    dut = WeightLoader(config=cfg)

    async def tb(ctx):
        ctx.set(dut.k, k)
        ctx.set(dut.one_kt, k <= rows)
        ctx.set(dut.two_kt, k <= 2 * rows)
        ctx.set(dut.n, n)
        ctx.set(dut.one_nt, n <= cols)
        ctx.set(dut.two_nt, n <= 2 * cols)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        ctx.set(dut.run, 1)
        addr_hist = [0] * RD
        got, loaded = [], 0
        ahead, issue_left, issue_par = 0, 0, 0
        safe = [0, 0]
        for _ in range(60 * n_tiles * (rows + 8)):
            # a stand-in issuer: each loaded tile is used for a few cycles,
            # then its bank stays unsafe for cols + 2 cycles
            issued = False
            if issue_left:
                issue_left -= 1
                if issue_left == 0:
                    issued = True
            elif ahead:
                issue_left = int(rng.integers(1, 8))
            ctx.set(dut.ahead_lt2, ahead < 2)
            ctx.set(dut.bank_safe0, safe[0])
            ctx.set(dut.bank_safe1, safe[1])
            a = addr_hist[-RD]
            ctx.set(dut.b_data, [int(x) for x in b[a >> kbits][a & ((1 << kbits) - 1)]]
                    if (a >> kbits) < cfg.n_tiles_max else [0] * cols)
            if ctx.get(dut.w_en):
                got.append((ctx.get(dut.w_bank), ctx.get(dut.w_row),
                            [int(x) for x in ctx.get(dut.w_data)]))
            is_loaded = ctx.get(dut.loaded)
            if is_loaded:
                loaded += 1
                assert got[-1][1] == rows - 1, f"seed {seed}"
                # a bank is never overwritten before it is safe
            ahead += is_loaded - issued
            for bank in (0, 1):
                safe[bank] = max(0, safe[bank] - 1)
            if issued:
                safe[issue_par] = cols + 2
                issue_par ^= 1
            addr_hist.append(ctx.get(dut.b_addr))
            await ctx.tick()
            if loaded == n_tiles and ahead == 0:
                break
        assert got == want, f"seed {seed}"
        assert loaded == n_tiles

    run_clocked(dut, tb, period=1e-6)
