# amaranth: UnusedElaboratable=no
"""AccumulatorBanks (rtl/gather_accum.py): weighted SUM and MAX accumulation
of beats into banks, against a Python model, read back through the drain port."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_accum import AccumulatorBanks
from seedchip.sim.clocked import run_clocked


def _bytes(vals):
    return sum((v & 0xFF) << (8 * i) for i, v in enumerate(vals))


@pytest.mark.parametrize("lanes,max_beats,gap", [(1, 1, 2), (4, 3, 0), (2, 5, 1), (8, 2, 2)])
def test_against_model(lanes, max_beats, gap):
    """``gap`` idle cycles after each beat; the caller's rule (two beats to one
    word at least three cycles apart) is kept by the order of the beats."""
    banks = 4
    params = GatherParams(data_width=8, lanes=lanes, max_bag=64, max_dim=max_beats * lanes,
                          index_width=16)
    assert params.max_beats == max_beats
    dut = AccumulatorBanks(params, banks=banks)
    rng = random.Random(lanes * 100 + max_beats * 10 + gap)

    async def bench(ctx):
        async def idle(n):
            ctx.set(dut.i_v, 0)
            for _ in range(n):
                await ctx.tick()

        for bag in range(40):
            bank = bag % banks
            beats = rng.randrange(1, max_beats + 1)
            rows = rng.randrange(1, 6)
            is_max = rng.random() < 0.3
            disc = rng.random() < 0.2
            want = [[None] * lanes for _ in range(beats)]
            seq = [(r, k) for r in range(rows) for k in range(beats)]
            for i, (r, k) in enumerate(seq):
                vals = [rng.randrange(-128, 128) for _ in range(lanes)]
                w = 1 if is_max else rng.choice([1, -128, 127, rng.randrange(-128, 128)])
                for l in range(lanes):
                    x = w * vals[l]
                    a = want[k][l]
                    want[k][l] = x if a is None else (max(a, x) if is_max else a + x)
                last = i == len(seq) - 1
                ctx.set(dut.i_v, 1)
                ctx.set(dut.i, {"has_data": 1, "k": k, "init": r == 0, "bag_end": last,
                                "is_max": is_max, "weight": w, "index": i})
                ctx.set(dut.i_data, _bytes(vals))
                ctx.set(dut.i_bank, bank)
                ctx.set(dut.i_disc, disc)
                await ctx.tick()
                # a word again within three cycles: wait
                nxt = seq[i + 1][1] if not last else None
                wait = gap if nxt is None or beats >= 3 else max(gap, 3 - beats)
                await idle(wait)
            ctx.set(dut.i_v, 0)
            # the bag end reaches D4 three cycles after D1
            seen = False
            for _ in range(4):
                if ctx.get(dut.done_v):
                    assert not seen
                    seen = True
                    assert ctx.get(dut.done_bank) == bank
                    assert ctx.get(dut.done_disc) == disc
                await ctx.tick()
            assert seen and not ctx.get(dut.busy)
            for k in range(beats):
                ctx.set(dut.drain_bank, bank)
                ctx.set(dut.drain_k, k)
                await ctx.tick()
                got = [ctx.get(dut.drain_data[l]) for l in range(lanes)]
                assert got == want[k], (bag, k)

    run_clocked(dut, bench)


def test_parameter_validation():
    with pytest.raises(ValueError, match=r"banks must be in range 2\.\.16, not 1"):
        AccumulatorBanks(GatherParams(lanes=2, max_bag=8, max_dim=8), banks=1)
    with pytest.raises(TypeError, match="params must be a GatherParams, not 'p'"):
        AccumulatorBanks("p", banks=4)
