# amaranth: UnusedElaboratable=no
"""DescriptorTable (rtl/gather_desc.py): checked descriptor writes and reads,
against a Python model of the table."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_desc import DescriptorTable
from seedchip.sim.clocked import run_clocked


def _model_check(d, *, n_tables, max_dim, aw, wl):
    """The write's good bit and its stored pitch (None when refused)."""
    pitch = -(-d["dim"] // wl)
    good = (d["table"] < n_tables and d["rows"] != 0 and d["dim"] != 0
            and d["dim"] <= max_dim and d["base"] + d["rows"] * pitch <= 1 << aw)
    return good, pitch


@pytest.mark.parametrize("wl,lanes", [(1, 1), (2, 4), (3, 3), (4, 8)])
def test_writes_against_model(wl, lanes):
    n_tables, max_dim, aw, iw = 5, 100, 12, 10
    dut = DescriptorTable(GatherParams(addr_width=aw, index_width=iw, n_tables=n_tables,
                                       max_dim=max_dim, data_width=8 * wl, lanes=lanes))
    rng = random.Random(wl * 10 + lanes)
    table, valid = {}, [0] * n_tables

    async def bench(ctx):
        assert ctx.get(dut.tvalid) == 0
        for _ in range(120):
            d = {"table": rng.randrange(n_tables + 2), "base": rng.randrange(1 << aw),
                 "rows": rng.choice([0, 1, rng.randrange(1 << iw)]),
                 "dim": rng.choice([0, 1, max_dim, max_dim + 1, rng.randrange(1, max_dim)]),
                 "multiplier": rng.randrange(-2**31, 2**31), "shift": rng.randrange(32)}
            if rng.random() < 0.5:
                d["base"] = rng.randrange(64)
            ctx.set(dut.busy, 1)
            ctx.set(dut.desc.valid, 1)
            ctx.set(dut.desc.payload, d)
            assert ctx.get(dut.desc.ready) == 0          # no write while busy
            await ctx.tick()
            ctx.set(dut.busy, 0)
            assert ctx.get(dut.desc.ready) == 1
            await ctx.tick()
            ctx.set(dut.desc.valid, 0)
            good, pitch = _model_check(d, n_tables=n_tables, max_dim=max_dim, aw=aw, wl=wl)
            # W1, W2: busy, not yet written; one write every 4 cycles
            for _ in range(2):
                assert ctx.get(dut.w_busy) and not ctx.get(dut.desc.ready)
                assert not ctx.get(dut.written)
                await ctx.tick()
            assert ctx.get(dut.written) and ctx.get(dut.w_busy)
            assert ctx.get(dut.err) == (not good)
            if not good:
                assert ctx.get(dut.err_table) == d["table"]
            await ctx.tick()
            assert not ctx.get(dut.w_busy) and not ctx.get(dut.err)
            if d["table"] < n_tables:
                valid[d["table"]] = int(good)
                if good:
                    table[d["table"]] = dict(d, pitch=pitch, beats=-(-d["dim"] // lanes))
            assert ctx.get(dut.tvalid) == sum(v << t for t, v in enumerate(valid))
            # read every good table back (synchronous read port)
            for t, want in table.items():
                if not valid[t]:
                    continue
                ctx.set(dut.rd_addr, t)
                await ctx.tick()
                got = ctx.get(dut.rd_data)
                for f in ("base", "rows", "pitch", "beats", "dim", "multiplier", "shift"):
                    assert getattr(got, f) == want[f], (t, f)

    run_clocked(dut, bench)


def test_params_type():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 4"):
        DescriptorTable(4)
