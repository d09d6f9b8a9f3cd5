# amaranth: UnusedElaboratable=no
"""rtl/chip_copy.py (CopyUnit) in the Amaranth simulator against
:class:`~seedchip.sim.chip_golden.ChipModel`: random seeded copies (broadcast
rows, odd row lengths, strides) and directed ones, several back to back on one
instance, random memory latency and ``req.ready``, random cycles before each
command; the whole memory and every ``done`` are compared. A read or write
error gives MEM_ERROR without hanging and the next command is right."""

import numpy as np
import pytest

from seedchip import isa
from seedchip.isa import ChipError, Unit
from seedchip.rtl.chip_copy import CopyUnit
from seedchip.sim.chip_golden import ChipModel
from seedchip.sim.clocked import run_clocked
from seedchip.sim.memmodel import MemModel

MEM_BYTES = 2048
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


def set_copy(ctx, payload, insn):
    ctx.set(payload.operands.as_value(), operands_raw(insn) & ((1 << isa.COPY_OPERANDS.size) - 1))


def random_copy(rng, mem_bytes):
    rows = int(rng.integers(1, 6))
    row_bytes = int(rng.choice([1, 7, 8, 9, 16, int(rng.integers(1, 40))]))
    pitch = isa.round_up(row_bytes)
    src_stride = 0 if rng.random() < 0.2 else pitch + 8 * int(rng.integers(0, 3))
    dst_stride = pitch + 8 * int(rng.integers(0, 3))
    half = (mem_bytes - PROG) // 2
    # source in one half, destination in the other: never overlapping
    lo, hi = (PROG, PROG + half), (PROG + half, mem_bytes)
    if rng.random() < 0.5:
        lo, hi = hi, lo
    src_room = lo[1] - lo[0] - (rows - 1) * src_stride - row_bytes
    dst_room = hi[1] - hi[0] - (rows - 1) * dst_stride - row_bytes
    src = lo[0] + 8 * int(rng.integers(0, src_room // 8))
    dst = hi[0] + 8 * int(rng.integers(0, dst_room // 8))
    return isa.Copy(src=src, dst=dst, src_stride=src_stride, dst_stride=dst_stride, rows=rows,
                    row_bytes=row_bytes)


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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copy_random(seed):
    rng = np.random.default_rng(seed)
    mem = rng.integers(0, 256, MEM_BYTES, dtype=np.uint8)
    mem[:PROG] = 0
    dut = CopyUnit(addr_width=10, mem_bytes=MEM_BYTES)
    insns = [random_copy(rng, MEM_BYTES) for _ in range(12)]
    print("seed", seed, *insns, sep="\n")
    check_against_model(dut, mem, insns, rng, set_cmd=set_copy,
                        ready_p=float(rng.choice([0.3, 0.7, 1.0])))


def test_copy_directed_and_throughput():
    rng = np.random.default_rng(10)
    mem = rng.integers(0, 256, MEM_BYTES, dtype=np.uint8)
    mem[:PROG] = 0
    dut = CopyUnit(addr_width=8, mem_bytes=MEM_BYTES)
    insns = [
        isa.Copy(src=64, dst=1024, src_stride=0, dst_stride=24, rows=5, row_bytes=17),  # broadcast
        isa.Copy(src=64, dst=1024, src_stride=8, dst_stride=8, rows=1, row_bytes=1),
        isa.Copy(src=1024, dst=64, src_stride=8, dst_stride=8, rows=60, row_bytes=8),
        isa.Copy(src=MEM_BYTES - 512, dst=64, src_stride=0, dst_stride=512, rows=2, row_bytes=512),
        isa.Copy(src=64, dst=1024, src_stride=512, dst_stride=512, rows=1, row_bytes=512),
    ]
    got = check_against_model(dut, mem, insns, rng, set_cmd=set_copy, ready_p=1.0,
                              max_latency=1)
    # 64 words with the memory always ready and one cycle of latency: one word per cycle
    # (9 cycles of fixed overhead: cmd, DMA start, read latency, beat registers, done)
    assert got[-1][1] <= 64 + 9, got


def test_copy_mem_error():
    rng = np.random.default_rng(20)
    mem = rng.integers(0, 256, MEM_BYTES, dtype=np.uint8)
    mem[:PROG] = 0
    dut = CopyUnit(addr_width=8, mem_bytes=MEM_BYTES)
    bad = range(100, 101)          # word 100 = bytes 800..807 answer err
    rd_err = isa.Copy(src=784, dst=1600, src_stride=16, dst_stride=16, rows=4, row_bytes=16)
    wr_err = isa.Copy(src=1600, dst=784, src_stride=16, dst_stride=16, rows=4, row_bytes=16)
    good = isa.Copy(src=64, dst=1200, src_stride=16, dst_stride=24, rows=9, row_bytes=20)
    good2 = isa.Copy(src=256, dst=1800, src_stride=0, dst_stride=16, rows=3, row_bytes=13)
    got = run_unit(dut, mem, [rd_err, good, wr_err, good2], rng, set_cmd=set_copy,
                   err_words=bad)
    # index: the first read word with err (row 1 of rd_err); 0 for a write error
    assert [g[0] for g in got] == [(ChipError.MEM_ERROR, Unit.COPY.value, 0, 800),
                                   (ChipError.NONE, 0, 0, 0),
                                   (ChipError.MEM_ERROR, Unit.COPY.value, 0, 0),
                                   (ChipError.NONE, 0, 0, 0)]
    # nothing wrote the good copies' regions after them: running them again changes nothing
    for insn in (good, good2):
        want, _ = model_run(mem, insn)
        assert np.array_equal(mem, want), insn


def test_copy_args():
    with pytest.raises(TypeError, match="addr_width must be an integer"):
        CopyUnit(addr_width="8", mem_bytes=2048)
    with pytest.raises(ValueError, match="mem_bytes must be at most 2048"):
        CopyUnit(addr_width=8, mem_bytes=4096)
