# amaranth: UnusedElaboratable=no
"""MeanDivider (rtl/gather_divider.py): a drained word's final values, against
a Python model, at one word per cycle and fixed latency."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_divider import MeanDivider
from seedchip.sim.clocked import run_clocked


def _model(ctl, base, dim, acc, lanes):
    out = []
    for l in range(lanes):
        s, n = acc[l], ctl["n"]
        if n == 0 or base + l >= dim:
            out.append(0)
        elif ctl["mean"]:
            q = (2 * abs(s) + n) // (2 * n)
            out.append(-q if s < 0 else q)
        else:
            out.append(s)
    return out


@pytest.mark.parametrize("lanes,max_bag", [(1, 64), (4, 255), (8, 1000)])
def test_against_model(lanes, max_bag):
    max_dim = 40
    accw = min(32, (128 * 128 * max_bag).bit_length() + 1)
    dut = MeanDivider(GatherParams(data_width=8, lanes=lanes, max_bag=max_bag, max_dim=max_dim),
                      acc_width=accw)
    rng = random.Random(lanes * 7919 + max_bag)

    def word():
        n = rng.choice([0, 1, max_bag, rng.randrange(1, max_bag + 1)])
        mean = rng.random() < 0.5
        lim = 128 * n if mean else 128 * 128 * max_bag
        edge = [lim, -lim, 0, -(128 * n), 127 * n]
        acc = [rng.choice(edge + [rng.randrange(-lim, lim + 1)] * 3) for _ in range(lanes)]
        if mean:
            acc = [max(-128 * n, min(127 * n, a)) for a in acc]
        ctl = {"v": rng.random() < 0.8, "n": n, "mean": mean, "requant": rng.random() < 0.5,
               "multiplier": rng.randrange(-2**31, 2**31), "shift": rng.randrange(32),
               "last": rng.random() < 0.3, "batch_last": rng.random() < 0.1}
        return ctl, rng.randrange(0, max_dim, lanes), rng.randrange(1, max_dim + 1), acc

    async def bench(ctx):
        sent = []
        for cycle in range(400 + MeanDivider.LATENCY - 1):
            if cycle < 400:
                ctl, base, dim, acc = word()
                ctx.set(dut.i_ctl, ctl)
                ctx.set(dut.i_base, base)
                ctx.set(dut.i_dim, dim)
                ctx.set(dut.i_acc, acc)
                sent.append((ctl, _model(ctl, base, dim, acc, lanes)))
            await ctx.tick()
            if cycle + 1 >= MeanDivider.LATENCY:
                ctl, want = sent[cycle + 1 - MeanDivider.LATENCY]
                got = ctx.get(dut.o_ctl)
                for f, v in ctl.items():
                    assert getattr(got, f) == v, (cycle, f)
                assert [ctx.get(dut.o_val[l]) for l in range(lanes)] == want, (cycle, ctl)

    run_clocked(dut, bench)


def test_parameter_validation():
    with pytest.raises(ValueError, match=r"acc_width must be in range 2\.\.32, not 33"):
        MeanDivider(GatherParams(lanes=2, max_bag=8, max_dim=16), acc_width=33)
    with pytest.raises(TypeError, match="params must be a GatherParams, not None"):
        MeanDivider(None, acc_width=20)
