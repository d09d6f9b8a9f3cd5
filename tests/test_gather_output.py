# amaranth: UnusedElaboratable=no
"""PooledOutput (rtl/gather_output.py): requantized or raw words in, in order
and unchanged otherwise, out of ``pooled`` under random backpressure, with
the producer holding a credit per word (as the engine's drain does)."""

import random

import numpy as np
import pytest
from amaranth.hdl import Fragment

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_output import PooledOutput
from seedchip.sim.golden import requantize
from seedchip.sim.clocked import run_clocked, stream_sink


def _model(ctl, vals):
    if ctl["requant"]:
        out = requantize(np.array(vals, dtype=np.int64), ctl["multiplier"], ctl["shift"])
        return [int(v) for v in out]
    return list(vals)


@pytest.mark.parametrize("lanes,drain_lanes,ready_p",
                         [(1, None, 1.0), (2, None, 0.5), (4, None, 0.8), (4, 1, 0.7),
                          (8, 2, 0.6)])
def test_against_model(lanes, drain_lanes, ready_p):
    """A drain narrower than the beat (``drain_lanes``) hands each word in
    parts on consecutive cycles, flags on the last part: the beats come out
    whole."""
    params = GatherParams(data_width=8, lanes=lanes, max_bag=64, drain_lanes=drain_lanes)
    dut = PooledOutput(params, in_latency=11)
    R, P = params.drain_width, params.drain_every
    rng = random.Random(lanes * 17 + int(ready_p * 10) + P)
    n_words = 150
    words = []
    for i in range(n_words):
        requant = rng.random() < 0.5
        vals = [rng.choice([0, 127, -128, 2**31 - 1, -2**31, rng.randrange(-2**20, 2**20)])
                for _ in range(lanes)]
        ctl = {"v": 1, "n": 1, "mean": 0, "requant": requant,
               "multiplier": rng.randrange(1 << 30, 1 << 31), "shift": rng.randrange(0, 12),
               "last": rng.random() < 0.3, "batch_last": i == n_words - 1}
        words.append((ctl, vals))
    got = []
    rng_ready = random.Random(lanes)

    async def producer(ctx):
        pending = 0        # credits held: words sent and not yet taken from pooled
        i = k = 0          # word, its part
        while i < n_words:
            if k or (pending < dut.depth and rng.random() < 0.9):
                ctl, vals = words[i]
                final = k == P - 1
                ctx.set(dut.i_ctl, {**ctl, "last": ctl["last"] and final,
                                    "batch_last": ctl["batch_last"] and final})
                ctx.set(dut.i_val, vals[k * R:(k + 1) * R])
                pending += k == 0
                i, k = (i + 1, 0) if final else (i, k + 1)
            else:
                ctx.set(dut.i_ctl.v, 0)
            _, _, valid, ready = await ctx.tick().sample(dut.pooled.valid, dut.pooled.ready)
            pending -= valid and ready
        ctx.set(dut.i_ctl.v, 0)

    run_clocked(dut, producer, stream_sink(dut.pooled, got, rng_ready, ready_p, count=n_words))
    assert len(got) == n_words
    for (ctl, vals), p in zip(words, got):
        assert [p.data[l] for l in range(lanes)] == _model(ctl, vals), ctl
        assert p.last == ctl["last"] and p.batch_last == ctl["batch_last"]


def test_depth_and_validation():
    params = GatherParams(lanes=2, max_bag=8)
    dut = PooledOutput(params, in_latency=11)
    assert dut.depth == 11 + dut.rq_latency + 8
    narrow = PooledOutput(params.replace(drain_lanes=1), in_latency=11)
    assert narrow.depth == dut.depth + 1
    Fragment.get(dut, None)     # (its requantizers are created with it)
    Fragment.get(narrow, None)
    with pytest.raises(ValueError, match=r"in_latency must be in range 0\.\.64, not -1"):
        PooledOutput(params, in_latency=-1)
    with pytest.raises(TypeError, match="params must be a GatherParams, not 2"):
        PooledOutput(2, in_latency=11)
