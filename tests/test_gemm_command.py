# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_command.py (CommandStage) in the Amaranth simulator:
accept, check, decode and the phases, against the command's arithmetic."""

import pytest
from amaranth.sim import Simulator

from seedchip.config import ChipConfig
from seedchip.protocol import GemmError
from seedchip.rtl.gemm_command import CommandStage, MIN_PASS

CFG = ChipConfig(rows=4, cols=3, max_m=20, max_k=12, max_n=9)


def decoded(m, k, n, params, requant, relu):
    """What every stage is told about the command."""
    R, C = CFG.rows, CFG.cols
    w = 0xFFFF
    return dict(m=m, k=k, n=n, m_m1=m - 1, k_m1=k - 1, n_m1=n - 1, m_m2=(m - 2) & w,
                k_m2=(k - 2) & w, n_m2=(n - 2) & w, m_is_1=int(m == 1),
                pass_last=max(m, MIN_PASS) - 1, pass_last_m1=max(m, MIN_PASS) - 2,
                one_kt=int(k <= R), one_nt=int(n <= C), two_kt=int(k <= 2 * R),
                two_nt=int(n <= 2 * C), use_params=int(params),
                requant=int(requant and params), relu=int(relu))


def run(body):
    dut = CommandStage(config=CFG)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    async def tb(ctx):
        await body(ctx, dut)

    sim.add_testbench(tb)
    sim.run()


def send(ctx, dut, **fields):
    ctx.set(dut.cmd.payload, {"m": 0, "k": 0, "n": 0, "params": 0, "requant": 0, "relu": 0,
                              **fields})
    ctx.set(dut.cmd.valid, 1)


@pytest.mark.parametrize("m,k,n,params,requant,relu,load_cycles,run_cycles", [
    (1, 1, 1, 0, 1, 0, 0, 1), (5, 12, 9, 1, 1, 1, 7, 20), (20, 5, 4, 1, 0, 0, 3, 2),
    (6, 4, 3, 0, 0, 1, 1, 9),
])
def test_command_phases(m, k, n, params, requant, relu, load_cycles, run_cycles):
    async def tb(ctx, dut):
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.cmd.ready) and not ctx.get(dut.busy)
        send(ctx, dut, m=m, k=k, n=n, params=params, requant=requant, relu=relu)
        await ctx.tick()                # accepted here (cycle 0)
        ctx.set(dut.cmd.valid, 0)
        assert not ctx.get(dut.cmd.ready) and ctx.get(dut.busy)
        assert not ctx.get(dut.start)
        await ctx.tick()                # checked
        assert ctx.get(dut.start)       # cycle 2: starts
        await ctx.tick()
        assert not ctx.get(dut.start)
        assert ctx.get(dut.error) == GemmError.NONE
        dec = ctx.get(dut.dec)
        assert {f: int(getattr(dec, f)) for f in decoded(m, k, n, params, requant, relu)} == \
            decoded(m, k, n, params, requant, relu)
        cycle = 3
        for _ in range(load_cycles):
            assert not ctx.get(dut.load_fin) and not ctx.get(dut.run)
            await ctx.tick()
            cycle += 1
        ctx.set(dut.load_done, 1)
        await ctx.tick()
        cycle += 1
        assert ctx.get(dut.load_fin) and not ctx.get(dut.run)
        await ctx.tick()
        cycle += 1
        assert not ctx.get(dut.load_fin) and ctx.get(dut.run)
        for _ in range(run_cycles):
            assert ctx.get(dut.run) and ctx.get(dut.busy)
            await ctx.tick()
            cycle += 1
        ctx.set(dut.end, 1)             # the last result leaves in this cycle
        await ctx.tick()
        ctx.set(dut.end, 0)
        ctx.set(dut.load_done, 0)
        assert not ctx.get(dut.run) and not ctx.get(dut.busy) and ctx.get(dut.cmd.ready)
        # cycles counts the accepting cycle through the last result
        assert ctx.get(dut.cycles) == cycle + 1
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.cycles) == cycle + 1

    run(tb)


@pytest.mark.parametrize("m,k,n", [(0, 1, 1), (21, 1, 1), (1, 0, 1), (1, 13, 1), (1, 1, 0),
                                   (1, 1, 10)])
def test_bad_shape_is_refused(m, k, n):
    async def tb(ctx, dut):
        send(ctx, dut, m=m, k=k, n=n, params=1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        for _ in range(6):
            assert not ctx.get(dut.start) and not ctx.get(dut.run)
            await ctx.tick()
        assert ctx.get(dut.error) == GemmError.BAD_SHAPE
        assert not ctx.get(dut.busy) and ctx.get(dut.cmd.ready)
        # the next (good) command clears the error when it is accepted
        send(ctx, dut, m=1, k=1, n=1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        assert ctx.get(dut.error) == GemmError.NONE

    run(tb)
