# amaranth: UnusedElaboratable=no
"""BagParser (rtl/gather_bags.py): ``bags`` items -> jobs, against a Python
model of the bag-level checks, under random input gaps and job backpressure."""

import random

import pytest
from amaranth.sim import Simulator

from seedchip.emb_protocol import GatherError
from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_bags import BagParser, JobKind


def _model(items, bad_cmd, tvalid, n_tables, max_bag):
    """(kind, code, value, len, last_bag, table) per job, as B must see them."""
    jobs = []
    first = items[0]
    if bad_cmd:
        jobs.append((JobKind.ERR, GatherError.BAD_CMD, 0))
    elif first["offset"] != 0:
        jobs.append((JobKind.ERR, GatherError.BAD_OFFSET, first["offset"]))
    prev = first
    for it in items[1:]:
        t, n = prev["table"], it["offset"] - prev["offset"]
        if t >= n_tables or not tvalid >> t & 1:
            jobs.append((JobKind.ERR, GatherError.BAD_TABLE, t))
        elif n < 0:
            jobs.append((JobKind.ERR, GatherError.BAD_OFFSET, it["offset"]))
        elif n > max_bag:
            jobs.append((JobKind.ERR, GatherError.BAG_TOO_LONG, n))
        else:
            jobs.append((JobKind.BAG, t, it["offset"], n, it["last"]))
        prev = it
    jobs.append((JobKind.END, max(it["offset"] for it in items)))
    return jobs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_against_model(seed):
    n_tables, max_bag = 5, 20
    dut = BagParser(GatherParams(n_tables=n_tables, max_bag=max_bag, addr_width=16,
                                 index_width=12, max_dim=64, data_width=16, lanes=2))
    rng = random.Random(seed)
    descs = [{"base": rng.randrange(1 << 16), "rows": rng.randrange(1, 1 << 12),
              "pitch": rng.randrange(33), "beats": rng.randrange(33), "dim": rng.randrange(65),
              "multiplier": rng.randrange(-2**31, 2**31), "shift": rng.randrange(32)}
             for _ in range(8)]
    batches = []
    for _ in range(12):
        n = rng.randrange(0, 6)
        offs = [0 if rng.random() < 0.8 else rng.randrange(5)]
        for _ in range(n):
            offs.append(offs[-1] + rng.choice([0, 1, 3, max_bag, max_bag + 1, -1]))
        offs = [max(o, 0) for o in offs]
        items = [{"table": rng.choice([0, 1, 2, 3, 4, 5, 7]) if rng.random() < 0.2
                  else rng.randrange(3), "offset": o, "last": i == len(offs) - 1}
                 for i, o in enumerate(offs)]
        batches.append((items, rng.random() < 0.1, rng.randrange(1 << n_tables) | 0b111))

    async def desc_ram(ctx):
        async for _, _, addr in ctx.tick().sample(dut.desc_addr):
            ctx.set(dut.desc_data, descs[addr])

    async def bench(ctx):
        rng_b = random.Random(seed + 100)
        for items, bad_cmd, tvalid in batches:
            want = _model(items, bad_cmd, tvalid, n_tables, max_bag)
            ctx.set(dut.tvalid, tvalid)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.bad_cmd, bad_cmd)
            got, i = [], 0
            while len(got) < len(want):
                if i < len(items) and rng_b.random() < 0.7:
                    ctx.set(dut.bags.valid, 1)
                    ctx.set(dut.bags.payload, items[i])
                else:
                    ctx.set(dut.bags.valid, 0)
                ctx.set(dut.jobs.ready, rng_b.random() < 0.6)
                _, _, bv, br, jv, jr, job = await ctx.tick().sample(
                    dut.bags.valid, dut.bags.ready, dut.jobs.valid, dut.jobs.ready,
                    dut.jobs.payload)
                i += bv and br
                if jv and jr:
                    if job.kind == JobKind.BAG:
                        got.append((job.kind, job.table, job.value, job.len, job.last_bag))
                        d = descs[job.table]
                        assert all(getattr(job.d, f) == v for f, v in d.items())
                    elif job.kind == JobKind.ERR:
                        got.append((job.kind, job.code, job.value))
                    else:
                        got.append((job.kind, job.value))
            ctx.set(dut.bags.valid, 0)
            ctx.set(dut.jobs.ready, 0)
            assert got == want, items
            assert i == len(items)
            await ctx.tick()
            assert ctx.get(dut.idle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(desc_ram)
    sim.add_testbench(bench)
    sim.run()


def test_params_type():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 3"):
        BagParser(3)
