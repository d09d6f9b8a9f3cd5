# amaranth: UnusedElaboratable=no
"""CacheTags (rtl/gather_cachetags.py): the hot-row cache's hit check against
a direct-mapped Python model, under random input gaps and backpressure, with
invalidation sweeps between runs and a read error that stops hits."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_cachetags import CacheTags
from seedchip.sim.clocked import run_clocked, stream_sink, stream_source


def _params(cache_rows):
    return GatherParams(addr_width=12, index_width=8, n_tables=4, max_dim=16, data_width=16,
                        lanes=4, cache_rows=cache_rows)


@pytest.mark.parametrize("cache_rows,seed", [(2, 1), (4, 2), (16, 3)])
def test_against_model(cache_rows, seed):
    dut = CacheTags(_params(cache_rows))
    rng = random.Random(seed)
    runs = []
    for _ in range(4):
        run = []
        for _ in range(60):
            # a few hot rows, so lines are hit, missed and evicted
            run.append({"row": rng.random() < 0.9, "rownum": rng.choice([0, 1, 2, 3, 5, 200]),
                        "table": rng.randrange(2), "line": rng.randrange(cache_rows),
                        "index": rng.randrange(256)})
        runs.append(run)
    want, got = [], []
    hits = misses = 0
    for run in runs:
        lines = {}
        for lk in run:
            hit = False
            if lk["row"]:
                key = (lk["rownum"], lk["table"])
                hit = lines.get(lk["line"]) == key
                lines[lk["line"]] = key
                hits, misses = hits + hit, misses + (not hit)
            want.append((lk["index"], hit, lk["line"]))

    async def source(ctx):
        for run in runs:
            # empty the cache between runs, with nothing in flight
            while len(got) < sum(len(r) for r in runs[:runs.index(run)]):
                await ctx.tick()
            ctx.set(dut.invalidate, 1)
            await ctx.tick()
            ctx.set(dut.invalidate, 0)
            await ctx.tick().until(~dut.sweeping)
            await stream_source(dut.lookups, run, rng, 0.3)(ctx)

    async def sink(ctx):
        await stream_sink(dut.checked, got, random.Random(seed + 1), 0.6,
                          lambda p: (p.lk.index, p.hit, p.line), count=len(want))(ctx)
        await ctx.tick()
        assert (ctx.get(dut.hits), ctx.get(dut.misses)) == (hits, misses)

    run_clocked(dut, source, sink)
    assert got == [(i, int(h), l) for i, h, l in want]


def test_read_error_stops_hits():
    dut = CacheTags(_params(4))
    lk = {"row": 1, "rownum": 7, "table": 1, "line": 3}

    async def bench(ctx):
        ctx.set(dut.checked.ready, 1)
        seen = []
        for step in range(3):
            if step == 1:          # between the miss and the would-be hit: a read error
                ctx.set(dut.word_err, 1)
                await ctx.tick()
                ctx.set(dut.word_err, 0)
                await ctx.tick().until(~dut.sweeping)
            if step == 2:
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
            for _ in range(2):     # the same row twice: miss, then hit (when allowed)
                ctx.set(dut.lookups.valid, 1)
                ctx.set(dut.lookups.payload, lk)
                await ctx.tick().until(dut.lookups.ready)
                ctx.set(dut.lookups.valid, 0)
                *_, v, p = await ctx.tick().sample(dut.checked.valid, dut.checked.payload)
                while not v:
                    *_, v, p = await ctx.tick().sample(dut.checked.valid, dut.checked.payload)
                seen.append(p.hit)
        # after the error nothing hits until clear
        assert seen == [0, 1, 0, 0, 0, 1]

    run_clocked(dut, bench)


def test_validation():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 4"):
        CacheTags(4)
    with pytest.raises(ValueError, match="CacheTags needs a cache: params.cache_rows must be a "
                                         "power of 2 from 2, not 0"):
        CacheTags(_params(0))
