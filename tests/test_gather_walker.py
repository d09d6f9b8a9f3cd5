# amaranth: UnusedElaboratable=no
"""IndexWalker (rtl/gather_walker.py): jobs + indices -> lookups and bag
parameters, against a Python model (bounds modes, weights, empty bags,
counters), under random input gaps and backpressure; and an OUT_OF_RANGE abort."""

import random

import pytest
from amaranth.sim import Simulator

from seedchip.emb_protocol import BoundsMode, GatherError, PoolMode
from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_bags import JobKind
from seedchip.rtl.gather_walker import IndexWalker
from seedchip.sim.clocked import stream_sink

AW, IW = 12, 8


def _dut():
    return IndexWalker(GatherParams(addr_width=AW, index_width=IW, n_tables=4, max_dim=16,
                                    max_bag=6, data_width=16, lanes=4, cache_rows=0))


def _bench(dut, batches, rng, got_lk, got_meta):
    async def source(ctx):
        for cmd, jobs, indices in batches:
            await ctx.tick().until(dut.idle)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.mode, cmd["mode"])
            ctx.set(dut.bounds, cmd["bounds"])
            ctx.set(dut.weighted, cmd["weighted"])
            # jobs first, indices meanwhile: interleave by hand (one testbench)
            ji, ii = 0, 0
            while ji < len(jobs) or ii < len(indices):
                ctx.set(dut.jobs.valid, ji < len(jobs) and rng.random() < 0.8)
                if ji < len(jobs):
                    ctx.set(dut.jobs.payload, jobs[ji])
                ctx.set(dut.indices.valid, ii < len(indices) and rng.random() < 0.8)
                if ii < len(indices):
                    ctx.set(dut.indices.payload, indices[ii])
                _, _, jv, jr, iv, ir = await ctx.tick().sample(
                    dut.jobs.valid, dut.jobs.ready, dut.indices.valid, dut.indices.ready)
                ji += jv and jr
                ii += iv and ir
            ctx.set(dut.jobs.valid, 0)
            ctx.set(dut.indices.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_process(stream_sink(dut.lookups, got_lk, random.Random(1), 0.6,
                                lambda p: {k: int(getattr(p, k)) for k in (
                                    "row", "addr", "init", "bag_end", "batch_end", "abort",
                                    "weight", "index")}))
    sim.add_process(stream_sink(dut.meta, got_meta, random.Random(2), 0.6,
                                lambda p: (int(p.n), int(p.abort), int(p.batch_last))))
    return sim


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_against_model(seed):
    dut = _dut()
    rng = random.Random(seed)
    batches, want_lk, want_meta = [], [], []
    counts = [0, 0, 0]     # lookups, clamped, skipped
    for _ in range(4):
        cmd = {"mode": rng.choice([PoolMode.SUM, PoolMode.MAX]),
               "bounds": rng.choice([BoundsMode.CLAMP, BoundsMode.SKIP]),
               "weighted": rng.random() < 0.5}
        jobs, indices = [], []
        nbags = rng.randrange(1, 6)
        for b in range(nbags):
            d = {"base": rng.randrange(1 << AW), "rows": rng.randrange(1, 40),
                 "pitch": rng.randrange(1, 9), "beats": 2, "dim": 5, "multiplier": 1, "shift": 0}
            ln = rng.choice([0, 1, 2, 6, rng.randrange(7)])
            last = b == nbags - 1
            jobs.append({"kind": JobKind.BAG, "len": ln, "last_bag": last, "table": 0, "d": d})
            n = 0
            if ln == 0:
                want_lk.append({"row": 0, "bag_end": 1, "batch_end": int(last), "abort": 0})
            for i in range(ln):
                idx = rng.choice([0, d["rows"] - 1, d["rows"], 255, rng.randrange(40)])
                w = rng.randrange(-128, 128)
                indices.append({"index": idx, "weight": w})
                oor = idx >= d["rows"]
                row = not (oor and cmd["bounds"] == BoundsMode.SKIP)
                rownum = 0 if oor else idx
                lk = {"row": int(row), "init": int(n == 0), "bag_end": int(i == ln - 1),
                      "batch_end": int(i == ln - 1 and last), "abort": 0,
                      "weight": (w if cmd["weighted"] else 1) & 0xFF, "index": idx}
                if row:
                    lk["addr"] = (d["base"] + rownum * d["pitch"]) % (1 << AW)
                want_lk.append(lk)
                counts[0] += row
                counts[1] += oor and cmd["bounds"] == BoundsMode.CLAMP
                counts[2] += oor and cmd["bounds"] == BoundsMode.SKIP
                n += row
            want_meta.append((n, 0, int(last)))
        jobs.append({"kind": JobKind.END, "value": len(indices)})
        batches.append((cmd, jobs, indices))
    got_lk, got_meta = [], []
    sim = _bench(dut, batches, rng, got_lk, got_meta)

    async def check(ctx):
        while len(got_lk) < len(want_lk) or len(got_meta) < len(want_meta):
            await ctx.tick()
        await ctx.tick().until(dut.idle)
        assert (ctx.get(dut.lookups_count), ctx.get(dut.clamped), ctx.get(dut.skipped)) == \
            tuple(counts)
    sim.add_testbench(check)
    sim.run()
    assert len(want_lk) > 20 and len(got_lk) == len(want_lk) and got_meta == want_meta
    for g, w in zip(got_lk, want_lk):
        g["weight"] &= 0xFF
        assert {k: g[k] for k in w} == w, (seed, g, w)


def test_out_of_range_aborts():
    dut = _dut()
    d = {"base": 0, "rows": 4, "pitch": 1, "beats": 1, "dim": 2, "multiplier": 1, "shift": 0}
    jobs = [{"kind": JobKind.BAG, "len": 2, "last_bag": 0, "table": 0, "d": d},
            {"kind": JobKind.BAG, "len": 1, "last_bag": 1, "table": 0, "d": d},
            {"kind": JobKind.END, "value": 3}]
    indices = [{"index": 1, "weight": 1}, {"index": 9, "weight": 1}, {"index": 2, "weight": 1}]
    got_lk, got_meta = [], []
    errs = []
    cmd = {"mode": PoolMode.SUM, "bounds": BoundsMode.FATAL, "weighted": 0}
    sim = _bench(dut, [(cmd, jobs, indices)], random.Random(5), got_lk, got_meta)

    async def watch(ctx):
        async for _, _, e, code, bag, val in ctx.tick().sample(dut.err, dut.err_code,
                                                                dut.err_bag, dut.err_val):
            if e:
                errs.append((code, bag, val))

    async def stop(ctx):
        await ctx.tick().repeat(300)
    sim.add_process(watch)
    sim.add_testbench(stop)
    sim.run()
    assert errs == [(GatherError.OUT_OF_RANGE, 0, 9)]
    assert [(g["row"], g["abort"], g["batch_end"]) for g in got_lk] == [(1, 0, 0), (0, 1, 1)]
    assert got_meta == [(0, 1, 1)]


def test_params_type():
    with pytest.raises(TypeError, match="params must be a GatherParams, not None"):
        IndexWalker(None)
