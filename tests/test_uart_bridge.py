# amaranth: UnusedElaboratable=no
"""UARTBridge (sim/uart_bridge.py), the host's end of the simulated serial
line, in Amaranth's simulator around a top that echoes its rx pin on tx."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from seedchip.sim.clocked import run_clocked
from seedchip.sim.uart_bridge import UARTBridge

DIV = 4
WB = 4


class Echo(wiring.Component):
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        return m


def test_words_cross_the_pins_both_ways():
    """Words of 1..WB bytes in; the same bytes out, packed into full words
    while they stream and flushed after two quiet byte times."""
    seed = 3
    rng = np.random.default_rng(seed)
    chunks = [[int(x) for x in rng.integers(0, 256, int(rng.integers(1, WB + 1)))]
              for _ in range(12)]
    sent = [b for c in chunks for b in c]
    dut = UARTBridge(Echo(), divisor=DIV, word_bytes=WB, depth=4)
    words, idle_seen = [], []

    async def send(ctx):
        for i, chunk in enumerate(chunks):
            if i == 8:          # a pause: what came before is flushed as it is
                ctx.set(dut.h2d.valid, 0)
                await ctx.tick().until(dut.h2d_idle)
                await ctx.tick().repeat(40 * DIV)
            ctx.set(dut.h2d.payload, {"data": int.from_bytes(bytes(chunk), "little"),
                                      "count": len(chunk)})
            ctx.set(dut.h2d.valid, 1)
            await ctx.tick().until(dut.h2d.ready)
        ctx.set(dut.h2d.valid, 0)

    async def receive(ctx):
        while sum(n for n, _ in words) < len(sent):
            ctx.set(dut.d2h.ready, 1)
            _, _, valid, payload = await ctx.tick().sample(dut.d2h.valid, dut.d2h.payload)
            ctx.set(dut.d2h.ready, 0)
            if valid:
                words.append((payload.count, payload.data))
            await ctx.tick().repeat(int(rng.integers(1, 40)))
        idle_seen.append(ctx.get(dut.h2d_idle))

    run_clocked(dut, send, receive, period=1e-8)
    got = [b for n, d in words for b in d.to_bytes(WB, "little")[:n]]
    assert got == sent, f"seed={seed}"
    counts = [n for n, _ in words]
    assert counts.count(WB) >= len(sent) // WB - 2     # streaming bytes fill whole words
    assert any(n < WB for n in counts)                 # the pause flushed a partial one
    assert idle_seen == [1]


def test_checked():
    with pytest.raises(TypeError, match="top must be a component with rx and tx ports"):
        UARTBridge(object(), divisor=4)
    with pytest.raises(ValueError, match=r"divisor must be in range 4\.\.1048576, not 2"):
        UARTBridge(Echo(), divisor=2)
    with pytest.raises(ValueError, match="word_bytes must be a power of two"):
        UARTBridge(Echo(), divisor=4, word_bytes=3)
