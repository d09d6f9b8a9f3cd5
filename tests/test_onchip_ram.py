# amaranth: UnusedElaboratable=no
"""OnChipRAM in Amaranth's simulator against a Python dict.

Random reads, byte-masked writes and out-of-range requests, with random idle
cycles on ``req`` and random backpressure on ``resp`` (long stalls included):
every request must get exactly one response, in order, with the right data.
"""

import numpy as np
import pytest

from seedchip.rtl.onchip_ram import OnChipRAM
from seedchip.sim.clocked import run_clocked


def make_requests(rng, *, depth, addr_width, data_width, n):
    """``n`` requests plus the responses a correct memory gives, in order."""
    nbytes = data_width // 8
    ref = {}
    reqs, expect = [], []
    # A small hot set so that reads often hit written words.
    hot = rng.integers(0, depth, 16)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.06:
            # The edges: first and last word, first and last invalid address.
            addr = int(rng.choice([0, depth - 1, depth, (1 << addr_width) - 1]))
        elif kind < 0.12:
            addr = int(rng.integers(depth, 1 << addr_width))    # out of range
        elif kind < 0.6:
            addr = int(hot[rng.integers(0, len(hot))])
        else:
            addr = int(rng.integers(0, depth))
        we = bool(rng.random() < 0.45)
        wdata = int.from_bytes(rng.bytes(nbytes), "little")
        mask = int(rng.integers(0, 1 << nbytes)) if rng.random() < 0.5 else (1 << nbytes) - 1
        reqs.append({"addr": addr, "we": int(we), "wdata": wdata, "mask": mask})
        if addr >= depth:
            expect.append({"err": 1, "rdata": None})
        elif we:
            old = ref.get(addr, 0)
            bits = sum(0xFF << (8 * i) for i in range(nbytes) if (mask >> i) & 1)
            ref[addr] = (old & ~bits) | (wdata & bits)
            expect.append({"err": 0, "rdata": None})
        else:
            expect.append({"err": 0, "rdata": ref.get(addr, 0)})
    return reqs, expect


def run_random(*, depth, data_width, seed, n=600, req_idle=0.3, resp_stall=0.3):
    rng = np.random.default_rng(seed)
    dut = OnChipRAM(depth=depth, data_width=data_width)
    reqs, expect = make_requests(rng, depth=depth, addr_width=dut.addr_width,
                                 data_width=data_width, n=n)
    got = []
    done = {"cycles": 0}

    async def driver(ctx):
        for r in reqs:
            while rng.random() < req_idle:
                ctx.set(dut.port.req.valid, 0)
                await ctx.tick()
            ctx.set(dut.port.req.valid, 1)
            ctx.set(dut.port.req.payload, r)
            await ctx.tick().until(dut.port.req.ready)
        ctx.set(dut.port.req.valid, 0)

    async def monitor(ctx):
        cycles = 0
        stall_run = 0
        while len(got) < len(reqs):
            # Bursts of stalls, sometimes long enough to fill every buffer.
            if stall_run == 0 and rng.random() < resp_stall:
                stall_run = int(rng.choice([1, 2, 5, 20]))
            ready = stall_run == 0
            stall_run = max(0, stall_run - 1)
            ctx.set(dut.port.resp.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.port.resp.valid,
                                                           dut.port.resp.payload)
            cycles += 1
            assert cycles < 50 * len(reqs), f"seed {seed}: stuck after {len(got)} responses"
            if valid and ready:
                got.append({"err": payload.err, "rdata": payload.rdata})
        # No response without a request.
        ctx.set(dut.port.resp.ready, 1)
        for _ in range(20):
            _, _, valid = await ctx.tick().sample(dut.port.resp.valid)
            assert not valid, f"seed {seed}: extra response after {len(reqs)} requests"
        done["cycles"] = cycles

    run_clocked(dut, driver, monitor)

    assert len(got) == len(expect), f"seed {seed}: {len(got)} responses for {len(expect)} requests"
    for i, (g, e, r) in enumerate(zip(got, expect, reqs)):
        assert g["err"] == e["err"], \
            f"seed {seed}: response {i} (addr {r['addr']:#x}, we {r['we']}): err {g['err']}, expected {e['err']}"
        if e["rdata"] is not None:
            assert g["rdata"] == e["rdata"], \
                f"seed {seed}: response {i} (read {r['addr']:#x}): {g['rdata']:#x}, expected {e['rdata']:#x}"
    return done["cycles"]


@pytest.mark.parametrize("depth,data_width,seed", [
    (1000, 32, 1),      # depth not a power of two: err from 1000 up
    (256, 16, 2),
    (64, 8, 3),
    (512, 64, 4),
])
def test_random_with_backpressure(depth, data_width, seed):
    run_random(depth=depth, data_width=data_width, seed=seed)


@pytest.mark.parametrize("seed", [11, 12])
def test_heavy_stalls(seed):
    run_random(depth=128, data_width=32, seed=seed, n=300, req_idle=0.0, resp_stall=0.8)


def test_one_request_per_cycle():
    """With no idle cycles and no backpressure, n requests take n + latency cycles."""
    n = 200
    cycles = run_random(depth=256, data_width=32, seed=5, n=n, req_idle=0.0, resp_stall=0.0)
    assert cycles <= n + 4, f"seed 5: {n} requests took {cycles} cycles"


def test_errors_are_checked():
    with pytest.raises(ValueError, match=r"^depth must be in range 1\.\.16777216, not 0$"):
        OnChipRAM(depth=0)
    with pytest.raises(TypeError, match=r"^depth must be an integer, not '4'$"):
        OnChipRAM(depth="4")
    with pytest.raises(ValueError, match=r"^data_width must be a multiple of 8, not 12$"):
        OnChipRAM(depth=16, data_width=12)
    with pytest.raises(ValueError, match=r"^addr_width must be in range 10\.\.40, not 9$"):
        OnChipRAM(depth=1000, addr_width=9)
    with pytest.raises(ValueError, match=r"^resp_depth must be in range 1\.\.64, not 0$"):
        OnChipRAM(depth=16, resp_depth=0)


def test_port_signature():
    from seedchip.rtl.memport import MemPortSignature
    dut = OnChipRAM(depth=1024, data_width=16)
    assert dut.addr_width == 11
    assert dut.signature.members["port"].signature.flip() == \
        MemPortSignature(addr_width=11, data_width=16)
