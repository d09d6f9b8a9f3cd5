# amaranth: UnusedElaboratable=no
"""DrainControl (rtl/gather_drain.py): banks drained in bag order, aborted and
discarded bags dropped, credits never overdrawn, against a Python model under
random claims, completions, meta gaps and output backpressure."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_drain import DrainControl, DrainSerializer
from seedchip.sim.clocked import run_clocked, stream_source


@pytest.mark.parametrize("lanes,drain_lanes,out_depth,seed",
                         [(4, None, 3, 1), (1, None, 8, 2), (8, None, 20, 3), (8, 2, 20, 4),
                          (4, 1, 3, 5)])
def test_against_model(lanes, drain_lanes, out_depth, seed):
    """... and with a narrow drain (``drain_lanes``), a word issued every
    ``lanes // drain_lanes`` cycles at most."""
    max_dim, NB = 20, 4
    max_beats = -(-max_dim // lanes)
    params = GatherParams(data_width=8, max_dim=max_dim, lanes=lanes, max_bag=9,
                          drain_lanes=drain_lanes)
    dut = DrainControl(params, banks=NB, out_depth=out_depth)
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
        cyc, last_issue = 0, -params.drain_every
        while len(got) < len(want):
            taken = credits > 0 and r.random() < 0.5
            ctx.set(dut.taken, taken)
            addr = (ctx.get(dut.drain_bank), ctx.get(dut.drain_k))
            await ctx.tick()
            cyc += 1
            credits -= taken
            c = ctx.get(dut.o_ctl)
            if c.v:
                assert cyc - last_issue >= params.drain_every
                last_issue = cyc
                credits += 1
                assert credits <= out_depth
                got.append((*addr, c.n, c.last, c.batch_last, ctx.get(dut.o_base),
                            ctx.get(dut.o_dim)))

    run_clocked(dut, banks, meta, drain)
    assert got == [tuple(int(x) for x in w) for w in want]


@pytest.mark.parametrize("lanes,drain_lanes", [(8, 2), (8, 1), (3, 1)])
def test_serializer(lanes, drain_lanes):
    """DrainSerializer: a word every ``P = lanes // drain_lanes`` cycles or
    later -> its ``P`` parts on the next ``P`` cycles, first elements first,
    each with its first element's number, ``last``/``batch_last`` on the
    last part only, the bag's other fields on every part."""
    params = GatherParams(data_width=8, lanes=lanes, max_dim=40, max_bag=9,
                          drain_lanes=drain_lanes)
    R, P = params.drain_width, params.drain_every
    dut = DrainSerializer(params, acc_width=20)
    rng = random.Random(lanes * 10 + R)
    words = [({"v": 1, "n": rng.randrange(10), "mean": rng.randrange(2),
               "requant": rng.randrange(2), "multiplier": rng.randrange(-2**31, 2**31),
               "shift": rng.randrange(32), "last": rng.randrange(2),
               "batch_last": rng.randrange(2)},
              rng.randrange(0, 30), rng.randrange(1, 41),
              [rng.randrange(-2**19, 2**19) for _ in range(lanes)]) for _ in range(60)]
    want = [(ctl["n"], ctl["multiplier"], k == P - 1 and ctl["last"],
             k == P - 1 and ctl["batch_last"], base + k * R, dim, acc[k * R:(k + 1) * R])
            for ctl, base, dim, acc in words for k in range(P)]
    got = []

    def sample(ctx):
        c = ctx.get(dut.o_ctl)
        if c.v:
            got.append((c.n, c.multiplier, c.last, c.batch_last, ctx.get(dut.o_base),
                        ctx.get(dut.o_dim), [ctx.get(dut.o_acc[l]) for l in range(R)]))

    async def bench(ctx):
        i = 0
        for _ in range(len(words) * P * 3 + 10):
            give = i < len(words) and rng.random() < 0.6
            if give:
                ctl, base, dim, acc = words[i]
                ctx.set(dut.i_ctl, ctl)
                ctx.set(dut.i_base, base)
                ctx.set(dut.i_dim, dim)
                ctx.set(dut.i_acc, acc)
                i += 1
            else:
                ctx.set(dut.i_ctl.v, 0)
            await ctx.tick()
            sample(ctx)
            if give:     # the next word P cycles later at the earliest (DrainControl)
                ctx.set(dut.i_ctl.v, 0)
                for _ in range(P - 1):
                    await ctx.tick()
                    sample(ctx)

    run_clocked(dut, bench)
    assert got == [tuple(int(x) if not isinstance(x, list) else x for x in w) for w in want]


def test_validation():
    params = GatherParams(max_dim=20, lanes=4, max_bag=9)
    with pytest.raises(ValueError, match=r"banks must be in range 2\.\.16, not 1"):
        DrainControl(params, banks=1, out_depth=4)
    with pytest.raises(ValueError, match=r"out_depth must be in range 1\.\.1024, not 0"):
        DrainControl(params, banks=4, out_depth=0)
    with pytest.raises(TypeError, match="params must be a GatherParams, not None"):
        DrainControl(None, banks=4, out_depth=4)
