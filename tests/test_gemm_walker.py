# amaranth: UnusedElaboratable=no
"""Unit tests of rtl/gemm_walker.py (TileWalker) in the Amaranth simulator,
against the tiling arithmetic: tiles of ``step`` over ``0..length-1``."""

import importlib
import numpy as np
import pytest

from seedchip.rtl.gemm_walker import TileWalker
from seedchip.sim.clocked import run_clocked


def tiles(length, step):
    """(idx, base, last) of each tile, from the plain loop the walker unrolls."""
    n = -(-length // step)
    return [(t, t * step, t == n - 1) for t in range(n)]


def run(dut, body):
    run_clocked(dut, body, period=1e-6)


def state(ctx, dut):
    return (ctx.get(dut.idx), ctx.get(dut.base), bool(ctx.get(dut.last)))


@pytest.mark.parametrize("step,max_length", [(1, 7), (3, 37), (8, 256), (5, 19)])
def test_walks_the_tiles(step, max_length):
    """Loaded with a fresh length (the decode), then restarted from the
    registered flags (the run phase): both walk every tile and wrap; advance
    pulses come with random gaps (the walker only moves on advance)."""
    seed = 11 * step + max_length
    rng = np.random.default_rng(seed)
    lengths = sorted({1, step, step + 1, 2 * step, 2 * step + 1, max_length,
                      *rng.integers(1, max_length + 1, 4).tolist()} & set(range(1, max_length + 1)))
    n_tiles = -(-max_length // step)
    dut = TileWalker(step=step, idx_bits=max(1, (n_tiles - 1).bit_length()), max_length=max_length)

    async def tb(ctx):
        for length in lengths:
            expect = tiles(length, step)
            # decode: the length is not registered yet
            ctx.set(dut.load, 1)
            ctx.set(dut.load_length, length)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.load_length, 0)
            # the registered command arrives a cycle later
            ctx.set(dut.length, length)
            ctx.set(dut.first_last, length <= step)
            ctx.set(dut.first_le2, length <= 2 * step)
            for start in ("load", "restart"):
                if start == "restart":
                    # walk half way, then restart
                    for _ in range(len(expect) // 2):
                        ctx.set(dut.advance, 1)
                        await ctx.tick()
                    ctx.set(dut.advance, 0)
                    ctx.set(dut.restart, 1)
                    await ctx.tick()
                    ctx.set(dut.restart, 0)
                # two rounds: the wrap after the last tile restarts the walk
                for want in expect + expect:
                    for _ in range(int(rng.integers(0, 3))):
                        await ctx.tick()    # no advance: holds
                    assert state(ctx, dut) == want, (f"seed {seed}", length, start)
                    ctx.set(dut.advance, 1)
                    await ctx.tick()
                    ctx.set(dut.advance, 0)
                assert state(ctx, dut) == expect[0]

    run(dut, tb)


def test_advance_wins_over_reset():
    """Same cycle: advance takes effect (the controller's statement order)."""
    dut = TileWalker(step=2, idx_bits=3, max_length=10)

    async def tb(ctx):
        ctx.set(dut.length, 10)
        ctx.set(dut.first_last, 0)
        ctx.set(dut.first_le2, 0)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.advance, 1)
        await ctx.tick()
        assert state(ctx, dut) == (1, 2, False)
        ctx.set(dut.restart, 0)
        ctx.set(dut.load, 1)
        ctx.set(dut.load_length, 10)
        await ctx.tick()
        assert state(ctx, dut) == (2, 4, False)

    run(dut, tb)


@pytest.mark.parametrize("name,kwargs", [
    ("step", dict(step=0, idx_bits=1, max_length=4)),
    ("idx_bits", dict(step=1, idx_bits=True, max_length=4)),
    ("max_length", dict(step=1, idx_bits=1, max_length="4")),
])
def test_rejects_bad_arguments(name, kwargs):
    with pytest.raises(ValueError, match=rf"^{name} must be a positive integer, not "):
        TileWalker(**kwargs)


@pytest.mark.parametrize("stage", [
    "gemm.GemmUnit", "gemm_command.CommandStage", "gemm_issue.ActivationIssuer",
    "gemm_loader.WeightLoader", "gemm_operands.OperandLoader",
    "gemm_accum.Accumulator:array_latency=3", "gemm_drain.GemmDrain:fifo_depth=4"])
def test_stages_take_a_chip_config(stage):
    """Every GEMM stage refuses anything but a ChipConfig, naming it."""
    stage, _, arg = stage.partition(":")
    module, name = stage.split(".")
    cls = getattr(importlib.import_module(f"seedchip.rtl.{module}"), name)
    kwargs = {arg.split("=")[0]: int(arg.split("=")[1])} if arg else {}
    with pytest.raises(TypeError, match=r"^config must be a ChipConfig, not \{\}$"):
        cls(config={}, **kwargs)
