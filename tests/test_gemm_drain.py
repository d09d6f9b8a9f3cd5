# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_drain.py (GemmDrain) in the Amaranth simulator: the
elements it emits, against the tile order of the GEMM (for each N tile of
``cols`` channels, for each row, the tile's channels), with random
backpressure on the credit return."""

import numpy as np
import pytest

from seedchip.config import ChipConfig
from seedchip.rtl.bufmem import BufferRAM
from seedchip.rtl.gemm_drain import GemmDrain
from seedchip.sim.clocked import run_clocked

RD = BufferRAM.LATENCY
FIFO_DEPTH = 5


def expected(acc, m, n, cols):
    """(channel, acc, last) for each element: acc[tile][row][lane]."""
    out = []
    n_tiles = -(-n // cols)
    for t in range(n_tiles):
        for r in range(m):
            for j in range(min(cols, n - t * cols)):
                out.append((t * cols + j, int(acc[t][r][j]), t == n_tiles - 1 and r == m - 1
                            and j == min(cols, n - t * cols) - 1))
    return out


@pytest.mark.parametrize("m,n", [(1, 1), (1, 5), (3, 4), (6, 9), (5, 13)])
@pytest.mark.parametrize("take_p", [1.0, 0.3])
def test_drain_order(m, n, take_p):
    cfg = ChipConfig(rows=3, cols=4, max_m=8, max_k=8, max_n=16)
    C = cfg.cols
    seed = 100 * m + n
    rng = np.random.default_rng(seed)
    n_tiles = -(-n // C)
    acc = rng.integers(-(1 << 31), 1 << 31, (n_tiles, m, C), dtype=np.int64)
    want = expected(acc, m, n, C)
    dut = GemmDrain(config=cfg, fifo_depth=FIFO_DEPTH)
    mbits = len(dut.rd_addr) - 1

    async def tb(ctx):
        ctx.set(dut.n, n)
        ctx.set(dut.n_m1, n - 1)
        ctx.set(dut.one_nt, n <= C)
        ctx.set(dut.m_m2, (m - 2) & 0xFFFF)
        ctx.set(dut.m_is_1, m == 1)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        ctx.set(dut.run, 1)
        mem = {}                        # the drain copy: {bank, row} -> row
        addr_hist = [0] * RD
        p_hist = [0] * RD
        got, received, taken = [], 0, 0
        tile, req = 0, 0
        for cycle in range(40 * (m + 2) * n + 200):
            # a tile is complete: its rows land in its bank, then the request
            if tile < n_tiles and not (req >> (tile % 2)) & 1 and cycle % 7 == 0:
                for r in range(m):
                    mem[(tile % 2) << mbits | r] = acc[tile][r]
                req |= 1 << (tile % 2)
                tile += 1
            ctx.set(dut.req, req)
            # the RAM: the row at the address of RD cycles ago
            row = mem.get(addr_hist[-RD], [0] * C)
            ctx.set(dut.rd_data, [int(x) for x in row])
            take = received > taken and rng.random() < take_p
            ctx.set(dut.c_take, take)
            elem = ctx.get(dut.elem)
            if elem.valid:
                got.append((p_hist[-RD], elem.acc, bool(elem.last)))
                received += 1
            assert received - taken <= FIFO_DEPTH, f"seed {seed}: credits overrun"
            clr = ctx.get(dut.clr)
            req &= ~clr
            if clr:
                # a bank is only rewritten once it has drained
                for r in range(m):
                    mem.pop(((clr >> 1) & 1) << mbits | r, None)
            addr_hist.append(ctx.get(dut.rd_addr))
            p_hist.append(ctx.get(dut.p_addr))
            taken += take
            await ctx.tick()
            if len(got) == len(want) and received == taken:
                break
        assert got == want, f"seed {seed}"

    run_clocked(dut, tb, period=1e-6)


def test_rejects_bad_arguments():
    cfg = ChipConfig(rows=3, cols=4, max_m=8, max_k=8, max_n=16)
    with pytest.raises(ValueError, match=r"^fifo_depth must be a positive integer, not 0$"):
        GemmDrain(config=cfg, fifo_depth=0)
