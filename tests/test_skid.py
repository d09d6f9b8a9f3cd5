# amaranth: UnusedElaboratable=no
"""rtl/skid.py (SkidBuffer) in the Amaranth simulator: random items with
random idle cycles in, random backpressure out; every item out in order and the stream rules on
``o`` (``valid`` holds, ``payload`` holds while stalled); ``i.ready``
independent of ``o.ready`` within a cycle, and no added latency on an
empty buffer."""

import numpy as np
import pytest
from amaranth.lib import data

from seedchip.rtl.skid import RegisterSlice, SkidBuffer
from seedchip.sim.clocked import run_clocked, stream_sink, stream_source

LAYOUT = data.StructLayout({"addr": 12, "we": 1})


@pytest.mark.parametrize("cls", [SkidBuffer, RegisterSlice])
@pytest.mark.parametrize("seed,p_idle,p_ready", [(1, 0.0, 1.0), (2, 0.0, 0.5), (3, 0.3, 0.3),
                                                 (4, 0.5, 0.9)])
def test_in_order(cls, seed, p_idle, p_ready):
    rng = np.random.default_rng(seed)
    items = [{"addr": int(a), "we": int(w)}
             for a, w in zip(rng.integers(0, 1 << 12, 300), rng.integers(0, 2, 300))]
    dut = cls(shape=LAYOUT)
    out = []

    async def rules(ctx):
        # o's stream rules, every cycle
        prev = None
        async for _, _, ov, orr, op in ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload):
            if prev is not None and prev[0] and not prev[1]:
                assert ov, f"seed {seed}: o.valid dropped while stalled"
                assert op == prev[2], f"seed {seed}: o.payload changed while stalled"
            prev = (ov, orr, op)

    run_clocked(dut, stream_source(dut.i, items, rng, p_idle),
                stream_sink(dut.o, out, rng, p_ready,
                            conv=lambda p: {"addr": p.addr, "we": p.we}, count=len(items)),
                processes=[rules])
    assert out == items, f"seed {seed}: items out of order or lost"


def test_ready_is_registered():
    """``i.ready`` does not follow ``o.ready`` within a cycle; with the skid
    register empty an item passes straight through."""
    dut = SkidBuffer(shape=8)

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.i.ready) and ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 5
        await ctx.tick()                    # 5 taken into the skid register
        ctx.set(dut.i.payload, 6)
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        assert not ctx.get(dut.i.ready), "i.ready followed o.ready combinationally"
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 5
        await ctx.tick()                    # 5 leaves; 6 passes straight through now
        assert ctx.get(dut.i.ready) and ctx.get(dut.o.payload) == 6

    run_clocked(dut, tb)


def test_register_slice_is_registered():
    """Neither direction passes through within a cycle; one cycle of
    latency, one item per cycle while ``o`` is ready, and an item offered
    while ``o`` stalls waits in the second register."""
    dut = RegisterSlice(shape=8)

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        assert ctx.get(dut.i.ready) and not ctx.get(dut.o.valid), "o.valid followed i.valid"
        await ctx.tick()                    # 5 into the output register
        ctx.set(dut.i.payload, 6)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 5
        await ctx.tick()                    # 5 leaves, 6 in: one per cycle
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 6 and ctx.get(dut.i.ready)
        ctx.set(dut.i.payload, 7)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()                    # 6 stalls, 7 into the second register
        ctx.set(dut.i.payload, 8)
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        assert not ctx.get(dut.i.ready), "i.ready followed o.ready combinationally"
        assert ctx.get(dut.o.payload) == 6
        await ctx.tick()                    # 6 leaves, 7 out; 8 not taken yet
        assert ctx.get(dut.o.payload) == 7 and ctx.get(dut.i.ready)
        await ctx.tick()                    # 7 leaves, 8 out
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 8
        await ctx.tick()
        assert not ctx.get(dut.o.valid)

    run_clocked(dut, tb)
