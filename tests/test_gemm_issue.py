# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_issue.py (ActivationIssuer) in the Amaranth
simulator: the rows it issues, against the pass loop of the GEMM (N tile
outer, K tile inner, rows 0..M-1 in a pass of max(M, MIN_PASS) cycles), with
weight tiles and accumulator banks arriving at random times."""

import numpy as np
import pytest

from seedchip.config import ChipConfig
from seedchip.rtl.bufmem import BufferRAM
from seedchip.rtl.gemm import GemmUnit
from seedchip.rtl.gemm_issue import ActivationIssuer
from seedchip.rtl.gemm_walker import _bits
from seedchip.sim.clocked import run_clocked

RD = BufferRAM.LATENCY


def expected(m, k, n, rows, cols):
    """(row, first, bank, final, par) of each valid row, and the pass count."""
    out, par, passes = [], 0, 0
    kts = -(-k // rows)
    for nt in range(-(-n // cols)):
        for kt in range(kts):
            for r in range(m):
                out.append((r, kt == 0, nt % 2, kt == kts - 1 and r == m - 1, par, (kt, r)))
            par ^= 1
            passes += 1
    return out, passes


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 9), (8, 12, 16), (6, 4, 5), (7, 9, 4)])
def test_issue_order(m, k, n):
    cfg = ChipConfig(rows=4, cols=4, max_m=8, max_k=12, max_n=16)
    mbits = _bits(cfg.max_m)
    seed = 100 * m + 10 * k + n
    rng = np.random.default_rng(seed)
    want, passes = expected(m, k, n, cfg.rows, cfg.cols)
    pass_last = max(m, GemmUnit.MIN_PASS) - 1
    dut = ActivationIssuer(config=cfg)

    async def tb(ctx):
        for port, value in [(dut.m, m), (dut.m_m1, m - 1), (dut.pass_last_m1, pass_last - 1),
                            (dut.k, k), (dut.one_kt, k <= cfg.rows), (dut.two_kt, k <= 2 * cfg.rows),
                            (dut.n, n), (dut.one_nt, n <= cfg.cols), (dut.two_nt, n <= 2 * cfg.cols)]:
            ctx.set(port, value)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        ctx.set(dut.run, 1)
        addr_hist = [0] * (RD + 1)
        tags, acts, issued = {}, {}, []
        busy, release = 0, {}           # accumulator banks; bank -> cycle it drains
        loaded = 0
        for cycle in range(60 * passes * (pass_last + 4)):
            # weight tiles arrive now and then (at most two ahead)
            if loaded - len(issued) < 2 and rng.random() < 0.3:
                loaded += 1
            for bank, at in list(release.items()):
                if cycle >= at:
                    busy &= ~(1 << bank)
                    del release[bank]
            ctx.set(dut.ahead_nz, loaded > len(issued))
            ctx.set(dut.acc_busy, busy)
            # the A buffer: the word at the address of RD cycles ago is its address
            ctx.set(dut.a_data.as_value()[:16], addr_hist[-RD])
            tag = ctx.get(dut.tag)
            if tag.valid:
                tags[cycle] = (tag.m, bool(tag.first), tag.bank, bool(tag.final))
                if tag.final:
                    release[tag.bank] = cycle + int(rng.integers(1, 30))
            acts[cycle] = (ctx.get(dut.act.as_value()[:16]), ctx.get(dut.act_bank))
            claim = ctx.get(dut.acc_claim)
            assert not (claim & busy), f"seed {seed}: claimed a busy bank"
            busy |= claim
            if ctx.get(dut.issued):
                issued.append(ctx.get(dut.par))
            addr_hist.append(ctx.get(dut.a_addr))
            await ctx.tick()
            if len(issued) == passes and len(tags) == len(want) and \
                    max(tags) + RD < cycle:
                break
        got = [(*tags[c], acts[c + RD][1], acts[c + RD][0]) for c in sorted(tags)]
        assert got == [(r, f, b, fi, par, (kt << mbits) | rr)
                       for (r, f, b, fi, par, (kt, rr)) in want], f"seed {seed}"
        assert issued == [p % 2 for p in range(passes)]

    run_clocked(dut, tb, period=1e-6)
