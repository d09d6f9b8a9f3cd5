"""firmware/program.py: the builder, its automatic waits, records and the allocator."""

import struct

import numpy as np
import pytest

from seedchip import isa
from seedchip.firmware.program import (Allocator, Program, Table, desc_records, param_records,
                                       table_image, u32_array)
from seedchip.isa import Limits, Unit

GEMM, GATHER, COPY = (1 << u.value for u in Unit)


def test_round_trip_and_disassembly():
    p = Program(base=64)
    p.gemm(a_addr=0x100, b_addr=0x200, c_addr=0x300, p_addr=0x400, m=2, k=3, n=4, requant=True)
    p.copy(src=0x300, dst=0x800, rows=2, row_bytes=4)
    p.interact(src=0x800, dst=0x900, batch=1, n_vec=2, dim=4, multiplier=1 << 30, shift=1)
    p.nop(wait=isa.WAIT_ALL)
    p.finish()
    raw = p.to_bytes()
    assert len(raw) == 5 * 32 and len(p) == 5
    q = Program.from_bytes(raw, base=64)
    assert q.to_bytes() == raw and str(q) == str(p)
    lines = str(p).splitlines()
    assert lines[0].startswith("0x00000040: GEMM a_addr=0x100")
    assert lines[1] == ("0x00000060: COPY src=0x300 dst=0x800 src_stride=8 dst_stride=8 rows=2 "
                        "row_bytes=4 wait=GEMM")
    assert lines[-1] == "0x000000c0: FINISH wait=GEMM|GATHER|COPY"
    # strides default to the rows' bytes rounded up to ALIGN
    g = list(p)[0]
    assert (g.a_stride, g.b_stride, g.c_stride, g.params) == (8, 8, 8, True)


def test_from_bytes_keeps_odd_words():
    word = isa.encode(isa.Gemm(a_addr=0, b_addr=0, c_addr=0, m=1, k=1, n=1, a_stride=8,
                               b_stride=8, c_stride=8, wait=0b1000))
    raw = word + bytes([9]) + bytes(31)
    assert Program.from_bytes(raw).to_bytes() == raw


def test_auto_waits():
    p = Program()
    a = p.gemm(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, m=4, k=8, n=8, requant=False)
    # reads what the GEMM writes (RAW): waits; unrelated copy after it: no wait
    b = p.copy(src=0x3000 + 24, dst=0x5000, rows=1, row_bytes=8)
    c = p.copy(src=0x6000, dst=0x7000, rows=1, row_bytes=8)
    assert (a.wait, b.wait, c.wait) == (0, GEMM, 0)
    # a copy writing the GEMM's input while it may run (WAR) waits; a second
    # GEMM after the first needs no wait for the first (same unit)
    p2 = Program()
    p2.gemm(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, m=4, k=8, n=8)
    d = p2.gemm(a_addr=0x3000, b_addr=0x2000, c_addr=0x4000, m=4, k=8, n=8)
    e = p2.copy(src=0x6000, dst=0x2000 + 56, rows=1, row_bytes=8)
    f = p2.copy(src=0x6000, dst=0x2000 + 64, rows=1, row_bytes=8)   # past B: free
    assert (d.wait, e.wait, f.wait) == (0, GEMM, 0)
    # interleaved rows: a copy writing the gaps between the GEMM's C rows is free
    p3 = Program()
    p3.gemm(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, m=4, k=8, n=8, c_stride=16,
            requant=True, p_addr=0x100)
    g = p3.copy(src=0x6000, dst=0x3008, rows=4, row_bytes=8, dst_stride=16)
    h = p3.copy(src=0x6000, dst=0x3004 - 4, rows=1, row_bytes=1)
    assert (g.wait, h.wait) == (0, GEMM)
    # once a unit has been waited for, its earlier work no longer forces waits
    p4 = Program()
    p4.gemm(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, m=1, k=8, n=8)
    assert p4.copy(src=0x3000, dst=0x8000, rows=1, row_bytes=8).wait == GEMM
    assert p4.copy(src=0x3000, dst=0x8100, rows=1, row_bytes=8).wait == 0
    # an explicit wait overrides
    assert p4.copy(src=0x8000, dst=0x9000, rows=1, row_bytes=8, wait=[Unit.GATHER]).wait == GATHER


def test_gather_regions_from_tables():
    t = [Table(0x10000, 100, 16), Table(0x20000, 10, 8)]
    p = Program()
    p.gather(desc_addr=0x100, idx_addr=0x200, off_addr=0x300, out_addr=0x1000, batch=2,
             tables=t, n_indices=16, out_stride=64, out_tstride=16, w_addr=0x400)
    # writing a table row while the gather runs, its indices, its weights, its outputs
    assert p.copy(src=0, dst=0x10000 + 99 * 16, rows=1, row_bytes=8).wait == GATHER
    p2 = Program()
    p2.gather(desc_addr=0x100, idx_addr=0x200, off_addr=0x300, out_addr=0x1000, batch=2,
              tables=t, n_indices=16, out_stride=64, out_tstride=16, w_addr=0x400)
    assert p2.copy(src=0, dst=0x10000 + 100 * 16, rows=1, row_bytes=8).wait == 0
    assert p2.copy(src=0, dst=0x200 + 56, rows=1, row_bytes=8).wait == GATHER
    p3 = Program()
    p3.gather(desc_addr=0x100, idx_addr=0x200, off_addr=0x300, out_addr=0x1000, batch=2,
              tables=t, n_indices=16, out_stride=64, out_tstride=16, w_addr=0x400)
    # reads the table-1 output of sample 1 (int32: 8 * 4 bytes at 0x1000 + 64 + 16)
    assert p3.copy(src=0x1000 + 64 + 16 + 24, dst=0x9000, rows=1, row_bytes=8).wait == GATHER
    assert p3.copy(src=0x1000 + 64 + 48, dst=0x9000, rows=1, row_bytes=8).wait == 0


def test_validation_at_add_time():
    p = Program(limits=Limits(max_m=8), mem_bytes=1 << 12)
    with pytest.raises(ValueError, match=r"GEMM at 0x0: BAD_SHAPE \(M\)"):
        p.gemm(a_addr=0, b_addr=0, c_addr=0, m=9, k=1, n=1)
    with pytest.raises(ValueError, match=r"COPY at 0x0: ADDR_RANGE \(DST\)"):
        p.copy(src=0, dst=4096, rows=1, row_bytes=1)
    with pytest.raises(ValueError, match="m must be in range"):
        Program().gemm(a_addr=0, b_addr=0, c_addr=0, m=1 << 16, k=1, n=1)
    with pytest.raises(ValueError, match="give both"):
        Program(limits=Limits())
    with pytest.raises(ValueError, match="base must be a multiple of 32"):
        Program(base=8)
    assert len(p) == 0


def test_records():
    raw = param_records([1, -2], [1 << 30, (1 << 31) - 1], [0, 31])
    assert raw == struct.pack("<iiB7xiiB7x", 1, 1 << 30, 0, -2, (1 << 31) - 1, 31)
    assert param_records([5]) == struct.pack("<iiB7x", 5, 0, 0)
    with pytest.raises(ValueError, match=r"channel 0 multiplier must be 0 or in range"):
        param_records([0], [5], [0])
    with pytest.raises(ValueError, match=r"channel 1 shift must be in range 0\.\.31, not 32"):
        param_records([0, 0], 1 << 30, [0, 32])
    t = [Table(0x100, 3, 17, multiplier=(1 << 30) + 1, shift=4), Table(0x200, 1, 8)]
    assert desc_records(t) == (struct.pack("<IIHBxi", 0x100, 3, 17, 4, (1 << 30) + 1)
                               + struct.pack("<IIHBxi", 0x200, 1, 8, 0, 1 << 30))
    assert t[0].pitch == 24 and t[0].nbytes == 72
    with pytest.raises(ValueError, match="base must be a multiple of 8"):
        Table(0x101, 1, 1)
    img = table_image(np.array([[1, -1, 2], [3, 4, -128]]))
    assert img == bytes([1, 255, 2, 0, 0, 0, 0, 0, 3, 4, 128, 0, 0, 0, 0, 0])
    assert u32_array([1, 2**32 - 1]) == struct.pack("<II", 1, 2**32 - 1)


def test_allocator():
    al = Allocator(256, base=4)
    assert al.alloc("a", 13) == 8
    assert al.alloc("b", 1, align=32) == 32
    assert al.alloc("c", 0) == 40
    assert al["a"] == 8 and al.used == 40
    with pytest.raises(ValueError, match="already allocated"):
        al.alloc("a", 1)
    with pytest.raises(ValueError, match="does not fit: 216 bytes left of 256"):
        al.alloc("d", 217)
    assert al.alloc("d", 216) == 40
    with pytest.raises(ValueError, match="align must be a multiple of 8"):
        al.alloc("e", 0, align=4)
    text = str(al)
    assert "0x00000008..0x00000015         13 B  a" in text
    assert text.endswith("256 of 256 bytes used")


def test_gemm_acc():
    """``acc``: C's stride defaults to 4 * n (C_in is int32) and C_in's reads
    count for the waits: a COPY still writing bytes of C that an int8 ACC only
    reads makes it wait; a COPY after it writing those bytes waits too (WAR)."""
    p = Program(limits=Limits(), mem_bytes=1 << 16)
    p.copy(src=0x6000, dst=0x3000 + 8, rows=1, row_bytes=8)
    g = p.gemm(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, p_addr=0x4000, m=2, k=8, n=4,
               requant=True, acc=True)
    assert (g.acc, g.c_stride, g.wait) == (True, 16, COPY)
    c = p.copy(src=0x6000, dst=0x3000 + 24, rows=1, row_bytes=8)
    assert c.wait == GEMM
    # without ACC the int8 rows are 4 bytes: neither copy touches them
    q = Program()
    q.copy(src=0x6000, dst=0x3000 + 8, rows=1, row_bytes=8)
    h = q.gemm(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, p_addr=0x4000, m=2, k=8, n=4,
               requant=True, c_stride=16)
    assert (h.acc, h.wait) == (False, 0)
    assert q.copy(src=0x6000, dst=0x3000 + 24, rows=1, row_bytes=8).wait == 0
    assert "+acc" in str(p).splitlines()[1]
    assert Program.from_bytes(p.to_bytes()).to_bytes() == p.to_bytes()
