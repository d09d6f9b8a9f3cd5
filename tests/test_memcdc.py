# amaranth: UnusedElaboratable=no
"""MemPortCDC in Amaranth's simulator: a client in ``sync`` on an OnChipRAM in
``sdram``, the two clocks unrelated (faster and slower each way, periods that
drift against each other). Random reads, byte-masked writes and
out-of-range requests with random idle cycles, responses taken with random
backpressure; a Python dict predicts every read. Checked: one response per
request, in order, with the right data or err, and none extra."""

import numpy as np
import pytest
from amaranth.hdl import DomainRenamer, Module
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from seedchip.rtl.memcdc import MemPortCDC, UnitPortCDC
from seedchip.rtl.onchip_ram import OnChipRAM
from seedchip.sim.clocked import stream_sink, stream_source

DEPTH, DW = 64, 64


def traffic(rng, n, addr_width):
    """``n`` requests and the responses a correct memory gives, in order."""
    ref, reqs, expect = {}, [], []
    nbytes = DW // 8
    for _ in range(n):
        r = rng.random()
        addr = int(rng.integers(DEPTH, 1 << addr_width)) if r < 0.08 else int(rng.integers(0, 8)) \
            if r < 0.5 else int(rng.integers(0, DEPTH))
        we = int(rng.random() < 0.45)
        wdata = int.from_bytes(rng.bytes(nbytes), "little")
        mask = int(rng.integers(0, 1 << nbytes)) if rng.random() < 0.5 else (1 << nbytes) - 1
        reqs.append({"addr": addr, "we": we, "wdata": wdata, "mask": mask})
        if addr >= DEPTH:
            expect.append((1, None))
        elif we:
            bits = sum(0xFF << (8 * i) for i in range(nbytes) if (mask >> i) & 1)
            ref[addr] = (ref.get(addr, 0) & ~bits) | (wdata & bits)
            expect.append((0, None))
        else:
            expect.append((0, ref.get(addr, 0)))
    return reqs, expect


def run(*, seed, up_ns, down_ns, n=300, p_idle=0.3, p_ready=0.7, depth=16):
    ram = OnChipRAM(depth=DEPTH, data_width=DW)
    cdc = MemPortCDC(addr_width=ram.addr_width, data_width=DW, depth=depth)
    m = Module()
    m.submodules.cdc = cdc
    m.submodules.ram = DomainRenamer("sdram")(ram)
    wiring.connect(m, cdc.down, ram.port)
    rng = np.random.default_rng(seed)
    reqs, expect = traffic(rng, n, ram.addr_width)
    got = []
    sim = Simulator(m)
    sim.add_clock(up_ns * 1e-9, domain="sync")
    sim.add_clock(down_ns * 1e-9, domain="sdram")
    sim.add_testbench(stream_source(cdc.up.req, reqs, np.random.default_rng([seed, 1]), p_idle))
    sink = stream_sink(cdc.up.resp, got, np.random.default_rng([seed, 2]), p_ready,
                       conv=lambda p: (p.err, p.rdata), count=n)
    extra = []

    async def sink_then_idle(ctx):
        await sink(ctx)
        # after the last expected response, nothing more comes
        ctx.set(cdc.up.resp.ready, 1)
        for _ in range(40):
            _, _, valid = await ctx.tick().sample(cdc.up.resp.valid)
            extra.append(valid)
    sim.add_testbench(sink_then_idle)
    sim.run_until(n * 40 * max(up_ns, down_ns) * 1e-9)
    assert not any(extra), f"seed {seed}: a response after the last"
    assert len(got) == n, f"seed {seed}: {len(got)} responses for {n} requests"
    for i, ((err, rdata), (e_err, e_rdata), r) in enumerate(zip(got, expect, reqs)):
        assert err == e_err, f"seed {seed}: response {i} ({r}): err {err}, expected {e_err}"
        if e_rdata is not None:
            assert rdata == e_rdata, \
                f"seed {seed}: response {i} (read {r['addr']:#x}): {rdata:#x}, expected {e_rdata:#x}"


@pytest.mark.parametrize("up_ns,down_ns", [(22.2, 11.1), (10, 7.3), (7.3, 10), (10, 31.7)])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_traffic(seed, up_ns, down_ns):
    run(seed=seed, up_ns=up_ns, down_ns=down_ns)


def test_full_rate_and_stalls():
    """No idle cycles, heavy response backpressure, the smallest FIFOs."""
    run(seed=3, up_ns=10, down_ns=9.1, p_idle=0.0, p_ready=0.2, depth=4)
    run(seed=4, up_ns=10, down_ns=9.1, p_idle=0.0, p_ready=1.0)


@pytest.mark.parametrize("kwargs,message", [
    ({"depth": 2}, "depth must be"),
    ({"up_domain": "sdram"}, "up_domain and down_domain must differ"),
])
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MemPortCDC(addr_width=8, data_width=64, **kwargs)


def run_unit_port(*, seed, up_ns, down_ns, n=40):
    """UnitPortCDC between a command source and done sink in ``sync`` and a
    unit in ``sdram`` that takes each command with random delay, raises
    ``mem_stall`` for a while, and reports a done made from the command."""
    layout = data.StructLayout({"x": 16, "y": 8})
    cdc = UnitPortCDC(layout)
    rng = np.random.default_rng(seed)
    cmds = [{"x": int(rng.integers(0, 1 << 16)), "y": int(rng.integers(0, 256))} for _ in range(n)]
    got, stalls, taken = [], [], []
    sim = Simulator(cdc)
    sim.add_clock(up_ns * 1e-9, domain="sync")
    sim.add_clock(down_ns * 1e-9, domain="sdram")
    sim.add_testbench(stream_source(cdc.up.cmd, cmds, np.random.default_rng([seed, 1]), 0.5))
    sim.add_testbench(stream_sink(cdc.up.done, got, np.random.default_rng([seed, 2]), 0.6,
                                  conv=lambda p: (p.bag, p.index, p.detail), count=n))
    urng = np.random.default_rng([seed, 3])

    async def unit(ctx):
        down = cdc.down
        while True:
            ctx.set(down.cmd.ready, urng.random() < 0.5)
            _, _, valid, ready, cmd = await ctx.tick("sdram").sample(
                down.cmd.valid, down.cmd.ready, down.cmd.payload)
            if not (valid and ready):
                continue
            ctx.set(down.cmd.ready, 0)
            taken.append((cmd.x, cmd.y))
            ctx.set(down.mem_stall, 1)
            await ctx.tick("sdram").repeat(int(urng.integers(8, 20)))
            ctx.set(down.mem_stall, 0)
            ctx.set(down.done.valid, 1)
            ctx.set(down.done.payload, {"error": 0, "detail": cmd.y, "bag": cmd.x,
                                        "index": cmd.x * 3})
            await ctx.tick("sdram").until(down.done.ready)
            ctx.set(down.done.valid, 0)

    async def watch(ctx):
        while True:
            _, _, stall, abort = await ctx.tick().sample(cdc.up.mem_stall, cdc.down.abort)
            stalls.append(stall)
            assert not abort

    sim.add_process(unit)
    sim.add_process(watch)
    sim.run_until(n * 80 * max(up_ns, down_ns) * 1e-9)
    assert taken == [(c["x"], c["y"]) for c in cmds], f"seed {seed}: commands lost or reordered"
    assert got == [(c["x"], c["x"] * 3, c["y"]) for c in cmds], f"seed {seed}: dones"
    # the stall level crossed: high for a part of the run, low at its end
    assert 0 < sum(stalls) < len(stalls) and not any(stalls[-10:]), f"seed {seed}: mem_stall"


@pytest.mark.parametrize("up_ns,down_ns", [(22.2, 11.1), (10, 31.7)])
def test_unit_port_cdc(up_ns, down_ns):
    """Commands and dones cross in order and intact, ``mem_stall`` crosses,
    ``abort`` stays low, the chip's clock faster or slower than the unit's."""
    for seed in range(3):
        run_unit_port(seed=seed, up_ns=up_ns, down_ns=down_ns)


def test_unit_port_cdc_same_domain():
    with pytest.raises(ValueError, match="up_domain and down_domain must differ"):
        UnitPortCDC(data.StructLayout({"x": 4}), up_domain="sync", down_domain="sync")
