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


class Echo(wiring.Component):
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        return m


def test_bytes_cross_the_pins_both_ways():
    seed = 3
    rng = np.random.default_rng(seed)
    data = [int(x) for x in rng.integers(0, 256, 24)]
    dut = UARTBridge(Echo(), divisor=4, depth=8)
    got, idle_seen = [], []

    async def send(ctx):
        for byte in data:
            ctx.set(dut.h2d.payload, byte)
            ctx.set(dut.h2d.valid, 1)
            await ctx.tick().until(dut.h2d.ready)
        ctx.set(dut.h2d.valid, 0)

    async def receive(ctx):
        # take a byte at most every 21 clocks: well under the line's 40
        while len(got) < len(data):
            ctx.set(dut.d2h.ready, 1)
            _, _, valid, payload = await ctx.tick().sample(dut.d2h.valid, dut.d2h.payload)
            ctx.set(dut.d2h.ready, 0)
            if valid:
                got.append(payload)
            await ctx.tick().repeat(int(rng.integers(1, 20)))
        idle_seen.append(ctx.get(dut.h2d_idle))

    run_clocked(dut, send, receive, period=1e-8)
    assert got == data, f"seed={seed}"
    assert idle_seen == [1]


def test_checked():
    with pytest.raises(TypeError, match="top must be a component with rx and tx ports"):
        UARTBridge(object(), divisor=4)
    with pytest.raises(ValueError, match=r"divisor must be in range 4\.\.1048576, not 2"):
        UARTBridge(Echo(), divisor=2)
