# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_operands.py (OperandLoader) in the Amaranth
simulator: the buffer writes for each stream word, against the word orders of
the GEMM (A: for each row, for each K tile; B: for each k, for each N tile),
with random gaps on the streams."""

import numpy as np
import pytest

from seedchip.config import ChipConfig
from seedchip.rtl.gemm_operands import OperandLoader
from seedchip.rtl.gemm_walker import _bits
from seedchip.sim.clocked import run_clocked


def a_addrs(m, k, rows, mbits):
    return [(kt << mbits) | r for r in range(m) for kt in range(-(-k // rows))]


def b_addrs(k, n, cols, kbits):
    return [(nt << kbits) | kk for kk in range(k) for nt in range(-(-n // cols))]


@pytest.mark.parametrize("m,k,n,params", [(1, 1, 1, True), (3, 5, 9, False), (4, 12, 16, True),
                                          (7, 4, 5, True)])
def test_operand_writes(m, k, n, params):
    cfg = ChipConfig(rows=4, cols=4, max_m=8, max_k=12, max_n=16)
    mbits, kbits = _bits(cfg.max_m), _bits(cfg.max_k)
    seed = 1000 * m + 100 * k + n
    rng = np.random.default_rng(seed)
    want = {
        "a": a_addrs(m, k, cfg.rows, mbits),
        "b": b_addrs(k, n, cfg.cols, kbits),
        "p": list(range(n)) if params else [],
    }
    dut = OperandLoader(config=cfg)
    streams = {"a": dut.a, "b": dut.b, "p": dut.params}
    writes = {"a": (dut.a_w_en, dut.a_w_addr, dut.a_w_data),
              "b": (dut.b_w_en, dut.b_w_addr, dut.b_w_data),
              "p": (dut.p_w_en, dut.p_w_addr, dut.p_w_data)}

    async def tb(ctx):
        ctx.set(dut.cmd_m, m)
        ctx.set(dut.cmd_k, k)
        ctx.set(dut.cmd_n, n)
        ctx.set(dut.cmd_params, params)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        # the registered command, a cycle after the start
        for port, value in [(dut.m_m2, m - 2), (dut.k_m2, k - 2), (dut.n_m2, n - 2),
                            (dut.k, k), (dut.one_kt, k <= cfg.rows), (dut.two_kt, k <= 2 * cfg.rows),
                            (dut.n, n), (dut.one_nt, n <= cfg.cols), (dut.two_nt, n <= 2 * cfg.cols)]:
            ctx.set(port, value & 0xFFFF)
        sent = {s: 0 for s in streams}
        got = {s: [] for s in streams}
        for _ in range(10 * (m * k + k * n + n) + 50):
            for s, port in streams.items():
                # the payload is the word's number (bits enough for that)
                ctx.set(port.valid, rng.random() < 0.6)
                ctx.set(port.payload.as_value()[:16], sent[s])
            for s, (en, addr, data) in writes.items():
                if ctx.get(en):
                    got[s].append((ctx.get(addr), ctx.get(data.as_value()[:16])))
            done = ctx.get(dut.done)
            for s, port in streams.items():
                if ctx.get(port.valid) and ctx.get(port.ready):
                    sent[s] += 1
            await ctx.tick()
            if done and all(len(got[s]) == len(want[s]) for s in streams):
                break
        for s in streams:
            assert got[s] == [(a, i) for i, a in enumerate(want[s])], f"{s}, seed {seed}"
        # nothing more is taken once done
        for s, port in streams.items():
            ctx.set(port.valid, 1)
        for _ in range(4):
            for s, port in streams.items():
                assert not ctx.get(port.ready)
            await ctx.tick()

    run_clocked(dut, tb, period=1e-6)
