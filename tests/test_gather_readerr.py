# amaranth: UnusedElaboratable=no
"""ReadErrorCheck (rtl/gather_readerr.py): MEM_ERROR reports and discarded
bags, against a cycle-by-cycle Python model of random beats."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_readerr import ReadErrorCheck
from seedchip.sim.clocked import run_clocked


@pytest.mark.parametrize("seed", [1, 2])
def test_against_model(seed):
    dut = ReadErrorCheck(GatherParams(max_dim=16, lanes=4, index_width=12))
    rng = random.Random(seed)

    async def bench(ctx):
        fail, bag = False, 0
        for cyc in range(3000):
            v, err = rng.random() < 0.7, rng.random() < 0.05
            beat = {"bag_end": rng.random() < 0.3, "batch_end": rng.random() < 0.05,
                    "abort": rng.random() < 0.03, "index": rng.randrange(1 << 12)}
            ctx.set(dut.i_v, v)
            ctx.set(dut.i_err, err)
            ctx.set(dut.i, beat)
            report = v and err and not fail
            assert ctx.get(dut.err) == report, (seed, cyc)
            if report:
                assert (ctx.get(dut.err_bag), ctx.get(dut.err_val)) == (bag, beat["index"])
            assert ctx.get(dut.disc) == (fail or err or beat["abort"])
            if v:
                if beat["batch_end"]:
                    fail, bag = False, 0
                else:
                    fail = fail or err
                    bag += beat["bag_end"]
            await ctx.tick()

    run_clocked(dut, bench)


def test_params_type():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 12"):
        ReadErrorCheck(12)
