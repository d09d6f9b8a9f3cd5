# amaranth: UnusedElaboratable=no
"""Gearbox (rtl/gather_gearbox.py): memory words packed into beats, against
a Python model, under random response gaps and beat backpressure."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_gearbox import Gearbox
from seedchip.sim.clocked import run_clocked, stream_sink, stream_source


@pytest.mark.parametrize("data_width,lanes", [(8, 1), (16, 4), (8, 8), (24, 6)])
def test_against_model(data_width, lanes):
    wl = data_width // 8
    ratio = lanes // wl
    dut = Gearbox(GatherParams(data_width=data_width, lanes=lanes), depth=4)
    rng = random.Random(data_width * 10 + lanes)
    # rows of `pitch` words: one word entry per word; a beat ends at slot
    # ratio - 1 or at the row's last word
    entries, resps, want = [], [], []
    for _ in range(60):
        pitch = rng.randrange(1, 3 * ratio + 2)
        beat, err = 0, 0
        for w in range(pitch):
            slot = w % ratio
            emit = slot == ratio - 1 or w == pitch - 1
            d, e = rng.randrange(1 << data_width), int(rng.random() < 0.05)
            entries.append({"slot": slot, "emit": emit})
            resps.append({"rdata": d, "err": e})
            beat |= d << (slot * data_width)
            err |= e
            if emit:
                # lanes past the row's last word: whatever the packing register held
                want.append((beat, err, (slot + 1) * data_width))
                beat, err = 0, 0
    got = []
    run_clocked(dut, stream_source(dut.words, entries, rng),
                stream_source(dut.resp, resps, rng, 0.3),
                stream_sink(dut.beats, got, random.Random(lanes), 0.6, lambda p: (p.data, p.err),
                            count=len(want)))
    assert len(got) == len(want)
    for (gd, ge), (wd, we, bits) in zip(got, want):
        assert gd & ((1 << bits) - 1) == wd and ge == we


def test_word_err_and_validation():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 16"):
        Gearbox(16, depth=4)
    with pytest.raises(ValueError, match=r"depth must be in range 1\.\.1024, not 0"):
        Gearbox(GatherParams(), depth=0)
    dut = Gearbox(GatherParams(data_width=8, lanes=1), depth=4)

    async def bench(ctx):
        ctx.set(dut.words.valid, 1)
        ctx.set(dut.words.payload, {"slot": 0, "emit": 1})
        ctx.set(dut.resp.valid, 1)
        ctx.set(dut.resp.payload, {"rdata": 5, "err": 1})
        assert ctx.get(dut.resp.ready) and ctx.get(dut.word_err)
        await ctx.tick()
        ctx.set(dut.resp.valid, 0)
        assert not ctx.get(dut.word_err)

    run_clocked(dut, bench)
