# amaranth: UnusedElaboratable=no
"""BeatSequencer (rtl/gather_beats.py): tags + gearbox beats -> D1 beats in tag
order, cache fills and hit read-outs, banks in turn and the accumulator hazard
spacing, against a Python model under random tag/beat gaps and full banks."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_beats import BeatSequencer
from seedchip.sim.clocked import run_clocked, stream_source


@pytest.mark.parametrize("cache_rows,seed", [(0, 1), (4, 2), (2, 3)])
def test_against_model(cache_rows, seed):
    lanes, max_dim, NB = 2, 8, 4
    dut = BeatSequencer(GatherParams(max_dim=max_dim, lanes=lanes, cache_rows=cache_rows,
                                     index_width=8), banks=NB)
    rng = random.Random(seed)
    tags, beats, want = [], [], []
    lines, bank = {}, 0
    for _ in range(120):
        nb = rng.randrange(1, 5)
        line = rng.randrange(max(1, cache_rows))
        bag_end = rng.random() < 0.4
        idx = rng.randrange(256)
        if cache_rows and line in lines and rng.random() < 0.6:
            nb = len(lines[line])
            tags.append({"hit": 1, "beats": nb, "line": line, "bag_end": bag_end, "index": idx})
            for k in range(nb):
                want.append((k, lines[line][k], bank, int(bag_end and k == nb - 1), 1, idx))
        else:
            data = [rng.randrange(1 << (8 * lanes)) for _ in range(nb)]
            lines[line] = data
            for k in range(nb):
                tags.append({"has_resp": 1, "k": k, "line": line, "index": idx,
                             "bag_end": bag_end and k == nb - 1})
                beats.append({"data": data[k], "err": 0})
                want.append((k, data[k], bank, int(bag_end and k == nb - 1), 0, idx))
        bank = (bank + bag_end) % NB
    got, seen = [], {}

    async def banks(ctx):
        r = random.Random(seed + 7)
        while True:
            ctx.set(dut.full, r.randrange(1 << NB) if r.random() < 0.1 else 0)
            await ctx.tick()

    async def sink(ctx):
        cyc = 0
        while len(got) < len(want):
            _, _, v, o, data, b = await ctx.tick().sample(dut.o_v, dut.o, dut.o_data, dut.o_bank)
            cyc += 1
            if v:
                got.append((o.k, data, b, o.bag_end, o.hit, o.index))
                # two beats to one accumulator word are at least three cycles apart
                assert cyc - seen.get((o.k, b), -9) >= 3
                seen[(o.k, b)] = cyc

    run_clocked(dut, stream_source(dut.tags, tags, rng, 0.2),
                stream_source(dut.beats, beats, rng, 0.3), sink, processes=[banks])
    assert got == want


def test_validation():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 'p'"):
        BeatSequencer("p", banks=4)
    with pytest.raises(ValueError, match=r"banks must be in range 2\.\.16, not 1"):
        BeatSequencer(GatherParams(), banks=1)
