"""One execution unit of the chip (rtl/chip_*.py) in the Amaranth simulator,
as the control unit drives it: commands on ``ctl.cmd`` after random idle
cycles, one :class:`~seedchip.sim.memmodel.MemModel` per memory port on one
shared byte array, the golden executor's result to compare with. Shared by
the unit tests (tests/test_chip_copy.py, test_chip_interact.py)."""

import numpy as np

from .. import isa
from ..isa import ChipError
from .chip_golden import ChipModel
from .clocked import run_clocked
from .memmodel import MemModel

__all__ = ["PROG", "operands_raw", "model_run", "run_unit", "check_against_model"]

#: the one-instruction programs of the model live in the first 64 bytes
PROG = 64


def operands_raw(insn):
    """The instruction's operand bits, as the control unit hands them over."""
    return int.from_bytes(isa.encode(insn), "little") >> isa.HeaderLayout.size


def model_run(mem, insn, limits=None):
    """ChipModel on a copy of ``mem`` with ``insn`` at pc 0 (+ FINISH): (mem, status);
    the program's bytes are put back as they were (the unit under test has no program,
    and must not write there either)."""
    model = ChipModel(len(mem), limits)
    model.mem[:] = mem
    model.write(0, isa.encode(insn) + isa.encode(isa.Finish()))
    status = model.run(0)
    model.mem[:PROG] = mem[:PROG]
    return model.mem, status


def run_unit(dut, mem, cmds, rng, *, set_cmd, err_words=range(0), ready_p=0.7, max_latency=4,
             max_cycles=20000):
    """Offer ``cmds`` one at a time on ``dut.ctl.cmd`` (``set_cmd(ctx, payload, cmd)``), each
    after 0..3 idle cycles, with one MemModel per port on the shared byte array ``mem``
    (``ready_p``: one for all ports, or a list, one per port); check
    that every response is back when ``done`` comes. Returns [(done payload fields, cycles)]."""
    out = []

    async def tb(ctx):
        ready = ready_p if isinstance(ready_p, (list, tuple)) else [ready_p] * len(dut.mem)
        models = [MemModel(p, mem, 8, rng, ready_p=r, max_latency=max_latency,
                           err_words=err_words) for p, r in zip(dut.mem, ready)]
        ctx.set(dut.ctl.done.ready, 1)
        cycle = 0
        for c in cmds:
            for _ in range(int(rng.integers(0, 4))):
                for mm in models:
                    mm.step(ctx)
                assert not ctx.get(dut.ctl.done.valid), "a done without a command"
                await ctx.tick()
                cycle += 1
            ctx.set(dut.ctl.cmd.valid, 1)
            set_cmd(ctx, dut.ctl.cmd.payload, c)
            start, taken = cycle, False
            while True:
                assert cycle < max_cycles, "the unit hangs"
                for mm in models:
                    mm.step(ctx)
                if not taken:
                    assert not ctx.get(dut.ctl.done.valid), "a done without a command"
                if not taken and ctx.get(dut.ctl.cmd.ready):
                    taken = True
                elif taken:
                    ctx.set(dut.ctl.cmd.valid, 0)
                    assert not ctx.get(dut.ctl.cmd.ready), "cmd ready while busy"
                if taken and ctx.get(dut.ctl.done.valid):
                    assert all(mm.idle for mm in models), "done before every response"
                    d = dut.ctl.done.payload
                    out.append(((ChipError(ctx.get(d.error)), ctx.get(d.detail), ctx.get(d.bag),
                                 ctx.get(d.index)), cycle - start))
                    await ctx.tick()
                    cycle += 1
                    ctx.set(dut.ctl.cmd.valid, 0)
                    break
                await ctx.tick()
                cycle += 1
        for _ in range(5):
            for mm in models:
                mm.step(ctx)
            assert not ctx.get(dut.ctl.done.valid), "a second done"
            await ctx.tick()

    run_clocked(dut, tb)
    return out


def check_against_model(dut, mem, insns, rng, limits=None, **kw):
    """Run ``insns`` back to back on ``dut`` and one after another on the model;
    compare every done with the model's status and the whole memory at the end."""
    ref = mem.copy()
    for insn in insns:
        ref, status = model_run(ref, insn, limits)
        assert status.state == isa.ChipState.DONE, status
    got = run_unit(dut, mem, insns, rng, **kw)
    assert [g[0] for g in got] == [(ChipError.NONE, 0, 0, 0)] * len(insns)
    assert np.array_equal(mem, ref), np.flatnonzero(mem != ref)[:20]
    return got
