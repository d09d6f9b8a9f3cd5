# amaranth: UnusedElaboratable=no
"""BatchControl (rtl/gather_control.py): command, busy and the error register,
against a cycle-by-cycle Python model under random inputs."""

import random

import pytest

from seedchip.emb_protocol import GatherError
from seedchip.rtl.gather_control import BatchControl
from seedchip.sim.clocked import run_clocked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_against_model(seed):
    dut = BatchControl(table_width=8)
    rng = random.Random(seed)
    codes = [GatherError.BAD_TABLE, GatherError.BAD_OFFSET, GatherError.OUT_OF_RANGE]

    async def bench(ctx):
        st = dict(busy=0, error=GatherError.NONE, bag=0, index=0, cycles=0, cmd=None)
        for cyc in range(3000):
            cmd_v = rng.random() < 0.3
            cmd = {"mode": rng.randrange(4), "bounds": rng.randrange(4),
                   "weighted": rng.random() < 0.3, "requant": rng.random() < 0.5}
            ins = dict(hold=rng.random() < 0.2, empty=rng.random() < 0.1,
                       clear=rng.random() < 0.05, desc_err=rng.random() < 0.02,
                       in_err=rng.random() < 0.02, mem_err=rng.random() < 0.02)
            vals = dict(desc_err_table=rng.randrange(256), in_err_code=rng.choice(codes),
                        in_err_bag=rng.randrange(1 << 32), in_err_val=rng.randrange(1 << 32),
                        mem_err_bag=rng.randrange(1 << 32), mem_err_val=rng.randrange(1 << 32))
            ctx.set(dut.cmd.valid, cmd_v)
            p = dut.cmd.payload     # (3, reserved, is no member of the enums)
            ctx.set(p.mode.as_value(), cmd["mode"])
            ctx.set(p.bounds.as_value(), cmd["bounds"])
            ctx.set(p.weighted, cmd["weighted"])
            ctx.set(p.requant, cmd["requant"])
            for k, v in {**ins, **vals}.items():
                ctx.set(getattr(dut, k), v)
            err_set = st["error"] != GatherError.NONE
            ready = not st["busy"] and not err_set and not ins["hold"]
            assert ctx.get(dut.cmd.ready) == ready, (seed, cyc)
            assert ctx.get(dut.start) == (ready and cmd_v)
            assert ctx.get(dut.busy) == st["busy"]
            assert ctx.get(dut.error_set) == err_set, (cyc, st, ctx.get(dut.error))
            assert (ctx.get(dut.error), ctx.get(dut.error_bag), ctx.get(dut.error_index)) == \
                (st["error"], st["bag"], st["index"]), (seed, cyc)
            assert ctx.get(dut.cycles) == st["cycles"]
            if st["cmd"] is not None:
                c = st["cmd"]
                assert ctx.get(dut.mode.as_value()) == c["mode"]
                assert ctx.get(dut.bounds.as_value()) == c["bounds"]
                assert ctx.get(dut.weighted) == c["weighted"] and ctx.get(dut.requant) == c["requant"]
                bad = c["mode"] == 3 or c["bounds"] == 3 or (c["weighted"] and c["mode"] != 0)
                assert ctx.get(dut.bad) == bad
            # the model's next state
            st["cycles"] = (st["cycles"] + st["busy"]) % (1 << 32)
            if ready and cmd_v:
                st["cmd"], st["busy"] = cmd, 1
            elif ins["empty"]:
                st["busy"] = 0
            held = st["error"]
            if ins["clear"]:
                st["error"], st["bag"], st["index"] = GatherError.NONE, 0, 0
            if ins["mem_err"] and held != GatherError.MEM_ERROR:
                st["error"], st["bag"], st["index"] = (GatherError.MEM_ERROR,
                                                       vals["mem_err_bag"], vals["mem_err_val"])
            elif ins["in_err"] and not err_set:
                st["error"], st["bag"], st["index"] = (vals["in_err_code"], vals["in_err_bag"],
                                                       vals["in_err_val"])
            elif ins["desc_err"] and not err_set:
                st["error"], st["bag"], st["index"] = (GatherError.BAD_DESC, 0,
                                                       vals["desc_err_table"])
            await ctx.tick()

    run_clocked(dut, bench)


def test_validation():
    with pytest.raises(TypeError, match="table_width must be an integer, not '8'"):
        BatchControl(table_width="8")
    with pytest.raises(ValueError, match="table_width must be in range 1..32, not 0"):
        BatchControl(table_width=0)
