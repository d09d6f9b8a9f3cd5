# amaranth: UnusedElaboratable=no
"""rtl/memwidth.py (WidthAdapter) in the Amaranth simulator: random wide
reads and byte-masked writes over a narrow memory model with random
latency and ready, random backpressure on the wide responses; every
response and the memory's bytes checked against a byte array."""

import numpy as np
import pytest

from seedchip.rtl.memwidth import WidthAdapter
from seedchip.sim.clocked import run_clocked
from seedchip.sim.memmodel import MemModel


@pytest.mark.parametrize("wide,narrow,seed", [(64, 16, 1), (64, 32, 2), (32, 8, 3), (64, 8, 4)])
def test_width_adapter(wide, narrow, seed):
    rng = np.random.default_rng(seed)
    ww, nwb = wide // 8, narrow // 8
    words = 64
    mem = rng.integers(0, 256, words * ww, dtype=np.uint8)
    ref = mem.copy()
    dut = WidthAdapter(addr_width=7, wide_width=wide, narrow_width=narrow)
    reqs = []
    for _ in range(300):
        addr = int(rng.integers(0, words + 4))             # some past the end: err
        we = int(rng.random() < 0.5)
        reqs.append((addr, we, int.from_bytes(rng.bytes(ww), "little") if we else 0,
                     int(rng.integers(0, 1 << ww)) if we else 0))
    want = []
    for addr, we, wdata, mask in reqs:
        if addr >= words:
            want.append((0 if we else None, 1))
            continue
        lo = addr * ww
        if we:
            for b in range(ww):
                if mask >> b & 1:
                    ref[lo + b] = wdata >> (8 * b) & 0xFF
            want.append((None, 0))
        else:
            want.append((int.from_bytes(bytes(ref[lo:lo + ww]), "little"), 0))
    got = []

    async def tb(ctx):
        model = MemModel(dut.narrow, mem, nwb, rng, ready_p=0.6, max_latency=5,
                         resp_stall_ok=True)
        queue = list(reqs)
        for _ in range(20000):
            # the wide side's ready first: the narrow response's ready follows it
            ctx.set(dut.wide.resp.ready, int(rng.random() < 0.6))
            model.step(ctx)
            ctx.set(dut.wide.req.valid, int(bool(queue) and rng.random() < 0.8))
            if queue:
                addr, we, wdata, mask = queue[0]
                p = dut.wide.req.payload
                ctx.set(p.addr, addr)
                ctx.set(p.we, we)
                ctx.set(p.wdata, wdata)
                ctx.set(p.mask, mask)
                if ctx.get(dut.wide.req.valid) and ctx.get(dut.wide.req.ready):
                    queue.pop(0)
            if ctx.get(dut.wide.resp.valid) and ctx.get(dut.wide.resp.ready):
                got.append((ctx.get(dut.wide.resp.payload.rdata),
                            ctx.get(dut.wide.resp.payload.err)))
            await ctx.tick()
            if len(got) == len(reqs):
                break
        assert model.idle, (len(model.pending), model.reads + model.writes, len(got))

    run_clocked(dut, tb)
    assert len(got) == len(want)
    for i, ((rdata, err), (wd, we_)) in enumerate(zip(got, want)):
        assert err == we_, f"response {i}: err {err}, want {we_}"
        if wd is not None and not err:
            assert rdata == wd, f"response {i}: {rdata:#x}, want {wd:#x}"
    assert np.array_equal(mem, ref)
