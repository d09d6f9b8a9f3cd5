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
from seedchip.sim.unit_tb import PROG, check_against_model, model_run, operands_raw, run_unit

MEM_BYTES = 2048
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
