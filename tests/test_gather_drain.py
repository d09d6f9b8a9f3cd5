# amaranth: UnusedElaboratable=no
"""DrainControl (rtl/gather_drain.py): banks drained in bag order, aborted and
discarded bags dropped, credits never overdrawn, against a Python model under
random claims, completions, meta gaps and output backpressure."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_drain import DrainControl
from seedchip.sim.clocked import run_clocked, stream_source


@pytest.mark.parametrize("lanes,out_depth,seed", [(4, 3, 1), (1, 8, 2), (8, 20, 3)])
def test_against_model(lanes, out_depth, seed):
    max_dim, NB = 20, 4
    max_beats = -(-max_dim // lanes)
    dut = DrainControl(GatherParams(data_width=8, max_dim=max_dim, lanes=lanes, max_bag=9),
                       banks=NB, out_depth=out_depth)
    rng = random.Random(seed)
    bags = [{"n": rng.randrange(10), "beats": rng.randrange(1, max_beats + 1),
             "dim": rng.randrange(1, max_dim + 1), "abort": rng.random() < 0.1,
             "disc": rng.random() < 0.1, "batch_last": rng.random() < 0.2,
             "multiplier": rng.randrange(-2**31, 2**31), "shift": rng.randrange(32)}
            for _ in range(80)]
    want = [(i % NB, k, b["n"], k == b["beats"] - 1, b["batch_last"] and k == b["beats"] - 1,
             k * lanes, b["dim"])
            for i, b in enumerate(bags) if not (b["abort"] or b["disc"])
            for k in range(b["beats"])]
    got = []

    async def banks(ctx):
        # G's side: claim the banks in turn when free; D's side: done a few cycles later
        pending = []
        i = cyc = 0
        while i < len(bags) or pending:
            claim = i < len(bags) and not (ctx.get(dut.full) >> (i % NB) & 1) \
                and rng.random() < 0.5
            ctx.set(dut.claim, claim)
            ctx.set(dut.claim_bank, i % NB)
            due = [p for p in pending if p[0] <= cyc]
            ctx.set(dut.done_v, bool(due))
            if due:
                pending.remove(due[0])
                ctx.set(dut.done_bank, due[0][1] % NB)
                ctx.set(dut.done_disc, bags[due[0][1]]["disc"])
            if claim:
                pending.append((cyc + rng.randrange(1, 6), i))
                i += 1
            await ctx.tick()
            cyc += 1
        ctx.set(dut.claim, 0)
        ctx.set(dut.done_v, 0)

    meta = stream_source(dut.meta, [{k: b[k] for k in ("n", "beats", "dim", "abort",
                                                        "batch_last", "multiplier", "shift")}
                                    for b in bags], rng, 0.2)

    async def drain(ctx):
        r = random.Random(seed + 100)
        credits = 0
        while len(got) < len(want):
            taken = credits > 0 and r.random() < 0.5
            ctx.set(dut.taken, taken)
            addr = (ctx.get(dut.drain_bank), ctx.get(dut.drain_k))
            await ctx.tick()
            credits -= taken
            c = ctx.get(dut.o_ctl)
            if c.v:
                credits += 1
                assert credits <= out_depth
                got.append((*addr, c.n, c.last, c.batch_last, ctx.get(dut.o_base),
                            ctx.get(dut.o_dim)))

    run_clocked(dut, banks, meta, drain)
    assert got == [tuple(int(x) for x in w) for w in want]


def test_validation():
    params = GatherParams(max_dim=20, lanes=4, max_bag=9)
    with pytest.raises(ValueError, match=r"banks must be in range 2\.\.16, not 1"):
        DrainControl(params, banks=1, out_depth=4)
    with pytest.raises(ValueError, match=r"out_depth must be in range 1\.\.1024, not 0"):
        DrainControl(params, banks=4, out_depth=0)
    with pytest.raises(TypeError, match="params must be a GatherParams, not None"):
        DrainControl(None, banks=4, out_depth=4)
