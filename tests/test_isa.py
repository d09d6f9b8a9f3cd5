"""isa.py: layouts, encode/decode, validation rules. Expected encodings are
built here with ``struct`` from the spec's field order, not from the layouts."""

import dataclasses
import struct

import numpy as np
import pytest

from seedchip import isa
from seedchip.config import DEFAULT_CONFIG, SMALL_CONFIG
from seedchip.emb_protocol import BoundsMode, PoolMode
from seedchip.isa import ChipError, Limits, Operand, Verdict

LIM = Limits(max_m=32, max_k=64, max_n=48, n_tables=4, max_dim=24, max_bag=8, max_vec=16)
MEM = 1 << 16


def test_layout_sizes():
    assert isa.InsnLayout.size == 256
    assert isa.HeaderLayout.size == 32
    for layout in (isa.GEMM_OPERANDS, isa.GATHER_OPERANDS, isa.COPY_OPERANDS,
                   isa.INTERACT_OPERANDS):
        assert layout.size == 224
    assert isa.ParamRecord.size == isa.DescRecord.size == 128
    assert isa.INSN_BYTES == 32 and isa.ALIGN == 8


# -- encodings from the spec, independently --------------------------------------------

def test_gemm_bytes():
    g = isa.Gemm(a_addr=0x1000, b_addr=0x2008, c_addr=0x30, p_addr=0xFFFFFFF8, m=3, k=70, n=9,
                 a_stride=72, b_stride=16, c_stride=40, params=True, requant=False, relu=True,
                 wait=0b101)
    want = struct.pack("<BBHIIIIHHHHHH", 1, 0b101, 0b101, 0x1000, 0x2008, 0x30, 0xFFFFFFF8,
                       3, 70, 9, 72, 16, 40)
    assert isa.encode(g) == want
    assert isa.decode(want) == g


def test_gather_bytes():
    g = isa.Gather(desc_addr=8, idx_addr=16, off_addr=24, w_addr=32, out_addr=40, batch=300,
                   out_stride=64, out_tstride=16, n_tables=3, mode=PoolMode.MAX,
                   bounds=BoundsMode.SKIP, weighted=False, requant=True, wait=2)
    flags = 2 | (2 << 2) | (0 << 4) | (1 << 5)
    want = struct.pack("<BBHIIIIIHHHBx", 2, flags, 2, 8, 16, 24, 32, 40, 300, 64, 16, 3)
    assert isa.encode(g) == want
    assert isa.decode(want) == g


def test_copy_and_interact_bytes():
    c = isa.Copy(src=8, dst=4096, src_stride=0, dst_stride=1 << 20, rows=7, row_bytes=1000)
    assert isa.encode(c) == struct.pack("<BBHIIIIHH8x", 3, 0, 0, 8, 4096, 0, 1 << 20, 7, 1000)
    x = isa.Interact(src=64, dst=128, multiplier=-5, shift=31, batch=4, dim=16, in_stride=64,
                     vec_stride=16, out_stride=8, n_vec=4, wait=1)
    want = struct.pack("<BBHIIiHHHHHBB4x", 4, 0, 1, 64, 128, -5, 4, 16, 64, 16, 8, 4, 31)
    assert isa.encode(x) == want
    assert isa.decode(want) == x
    assert isa.encode(isa.Finish()) == bytes([15]) + bytes(31)
    assert isa.encode(isa.Nop(wait=7)) == bytes([0, 0, 7]) + bytes(29)


def test_record_bytes():
    raw = isa.pack_record(isa.ParamRecord, bias=-7, multiplier=1 << 30, shift=31)
    assert raw == struct.pack("<iiB7x", -7, 1 << 30, 31)
    raw = isa.pack_record(isa.DescRecord, base=0x100, rows=5, dim=17, shift=3, multiplier=-1)
    assert raw == struct.pack("<IIHBxi", 0x100, 5, 17, 3, -1)
    assert isa.unpack_record(isa.DescRecord, raw)["multiplier"] == -1
    # ignored bits of the shift byte do not change the shift
    raw = struct.pack("<iiB7x", 1, 2, 0xE5)
    assert isa.unpack_record(isa.ParamRecord, raw)["shift"] == 5


# -- round trips -------------------------------------------------------------------------

def _random_insn(rng, cls):
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name == "reserved":
            continue
        if f.name == "wait":
            kw["wait"] = int(rng.integers(0, 16))
        elif f.type == "bool":
            kw[f.name] = bool(rng.integers(2))
        elif f.name == "mode":
            kw[f.name] = isa._enum_or_int(PoolMode, int(rng.integers(0, 4)))
        elif f.name == "bounds":
            kw[f.name] = isa._enum_or_int(BoundsMode, int(rng.integers(0, 4)))
        elif f.name == "multiplier":
            kw[f.name] = int(rng.integers(-(1 << 31), 1 << 31))
        elif f.name == "shift":
            kw[f.name] = int(rng.integers(0, 32))
        elif f.name in ("n_tables", "n_vec"):
            kw[f.name] = int(rng.integers(0, 256))
        elif f.name.endswith("addr") or f.name in ("src", "dst", "src_stride", "dst_stride"):
            kw[f.name] = int(rng.integers(0, 1 << 32))
        else:
            kw[f.name] = int(rng.integers(0, 1 << 16))
    mask = isa.RESERVED_MASK[cls.opcode]
    kw["reserved"] = int.from_bytes(rng.bytes(32), "little") & mask if rng.integers(2) else 0
    return cls(**kw)


@pytest.mark.parametrize("cls", [isa.Nop, isa.Gemm, isa.Gather, isa.Copy, isa.Interact,
                                 isa.Finish], ids=lambda c: c.__name__)
def test_round_trip_random_fields(cls):
    rng = np.random.default_rng(sum(map(ord, cls.__name__)))
    for _ in range(200):
        insn = _random_insn(rng, cls)
        raw = isa.encode(insn)
        assert len(raw) == 32
        assert isa.decode(raw) == insn
        assert isa.decode(int.from_bytes(raw, "little")) == insn


def test_any_word_round_trips():
    rng = np.random.default_rng(3)
    for _ in range(500):
        raw = bytearray(rng.bytes(32))
        if rng.integers(2):
            raw[0] = int(rng.choice([0, 1, 2, 3, 4, 15]))
        insn = isa.decode(bytes(raw))
        assert isa.encode(insn) == bytes(raw)
        assert isinstance(insn, isa.Illegal) == (raw[0] not in (0, 1, 2, 3, 4, 15))


def test_encode_names_a_field_that_does_not_fit():
    good = dict(a_addr=0, b_addr=0, c_addr=0, m=1, k=1, n=1, a_stride=8, b_stride=8, c_stride=8)
    with pytest.raises(ValueError, match=r"^m must be in range 0\.\.65535, not 65536$"):
        isa.encode(isa.Gemm(**{**good, "m": 65536}))
    with pytest.raises(ValueError, match="a_addr"):
        isa.encode(isa.Gemm(**{**good, "a_addr": -8}))
    with pytest.raises(ValueError, match="shift"):
        isa.encode(isa.Interact(src=0, dst=0, multiplier=0, shift=32, batch=1, dim=1, n_vec=2,
                                in_stride=0, vec_stride=8, out_stride=8))
    with pytest.raises(ValueError, match="reserved"):
        isa.encode(isa.Gemm(**good, reserved=1))          # bit 0 is the opcode
    with pytest.raises(ValueError, match="32 bytes"):
        isa.decode(bytes(31))


# -- validation -----------------------------------------------------------------------------

def gemm(**kw):
    base = dict(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, p_addr=0x4000, m=4, k=16, n=8,
                a_stride=16, b_stride=8, c_stride=8, params=True, requant=True)
    return isa.Gemm(**{**base, **kw})


def v(insn, mem=MEM):
    return isa.validate(insn, LIM, mem)


def test_valid_instructions():
    assert v(gemm()) == Verdict(ChipError.NONE, None)
    assert v(isa.Nop(wait=isa.WAIT_ALL)).ok and v(isa.Finish(wait=3)).ok


def test_every_reserved_bit_is_illegal():
    valid = {isa.Opcode.NOP: isa.Nop(), isa.Opcode.FINISH: isa.Finish(), isa.Opcode.GEMM: gemm(),
             isa.Opcode.GATHER: isa.Gather(desc_addr=0, idx_addr=0, off_addr=0, out_addr=0,
                                           batch=1, n_tables=1, out_stride=0, out_tstride=0),
             isa.Opcode.COPY: isa.Copy(src=0, dst=8, src_stride=8, dst_stride=8, rows=1,
                                       row_bytes=8),
             isa.Opcode.INTERACT: isa.Interact(src=0, dst=64, multiplier=0, shift=0, batch=1,
                                               dim=8, n_vec=2, in_stride=0, vec_stride=8,
                                               out_stride=8)}
    for op, insn in valid.items():
        assert v(insn).ok, op
        word = int.from_bytes(isa.encode(insn), "little")
        mask = isa.RESERVED_MASK[op]
        # the spec: header bits 20..31 reserved; flags bits 8..15 where not named
        assert mask & 0xFFF00000 == 0xFFF00000
        for bit in range(256):
            if not mask >> bit & 1:
                continue
            got = v(isa.decode(word | 1 << bit))
            where = (Operand.HEADER if bit >= 16 and bit < 32 else
                     Operand.FLAGS if 8 <= bit < 16 else Operand.OPERANDS)
            assert got == Verdict(ChipError.ILLEGAL, where), (op, bit)
        # wait bit 3 names no unit
        assert v(isa.decode(word | 1 << 19)) == Verdict(ChipError.ILLEGAL, Operand.HEADER)
    # the reserved operand bits are exactly those the spec leaves free
    assert isa.RESERVED_MASK[isa.Opcode.GEMM] >> 32 == 0
    assert isa.RESERVED_MASK[isa.Opcode.COPY] >> 32 == ((1 << 64) - 1) << 160
    assert isa.RESERVED_MASK[isa.Opcode.GATHER] >> 32 == 0xFF << 216
    assert isa.RESERVED_MASK[isa.Opcode.INTERACT] >> 32 == 0b111 << 189      # then p_addr


def test_illegal_opcode_and_flags():
    assert v(isa.decode(bytes([5]) + bytes(31))) == Verdict(ChipError.ILLEGAL, Operand.OPCODE)
    assert v(isa.decode(bytes([0xFF]) + bytes(31))).detail == Operand.OPCODE
    assert v(gemm(params=False, requant=True)) == Verdict(ChipError.ILLEGAL, Operand.FLAGS)
    # without PARAMS p_addr is unused and unchecked
    assert v(gemm(params=False, requant=False, p_addr=3, c_stride=32)).ok
    g = dict(desc_addr=0, idx_addr=0, off_addr=0, out_addr=0, batch=1, n_tables=1,
             out_stride=0, out_tstride=0)
    assert v(isa.Gather(**g, mode=3)).detail == Operand.FLAGS
    assert v(isa.Gather(**g, bounds=3)).detail == Operand.FLAGS
    assert v(isa.Gather(**g, mode=PoolMode.MEAN, weighted=True, w_addr=0)).detail == Operand.FLAGS
    assert v(isa.Gather(**g, mode=PoolMode.SUM, weighted=True, w_addr=0)).ok


def test_gemm_shapes():
    for field, lo, hi in (("m", 1, LIM.max_m), ("k", 1, LIM.max_k), ("n", 1, LIM.max_n)):
        big = dict(a_stride=512, b_stride=512, c_stride=512)
        assert v(gemm(**big, **{field: lo})).ok
        assert v(gemm(**big, **{field: hi})).ok
        assert v(gemm(**big, **{field: 0})) == Verdict(ChipError.BAD_SHAPE, Operand[field.upper()])
        assert v(gemm(**big, **{field: hi + 1})) == Verdict(ChipError.BAD_SHAPE,
                                                             Operand[field.upper()])
    assert v(gemm(k=17, a_stride=16)) == Verdict(ChipError.BAD_SHAPE, Operand.A_STRIDE)
    assert v(gemm(n=9, b_stride=8, c_stride=16)) == Verdict(ChipError.BAD_SHAPE, Operand.B_STRIDE)
    # int32 output needs 4 bytes per element
    assert v(gemm(requant=False, c_stride=8)) == Verdict(ChipError.BAD_SHAPE, Operand.C_STRIDE)
    assert v(gemm(requant=False, c_stride=32)).ok


def test_gemm_alignment_and_order():
    for field, operand in (("a_addr", Operand.A_ADDR), ("b_addr", Operand.B_ADDR),
                           ("c_addr", Operand.C_ADDR), ("p_addr", Operand.P_ADDR),
                           ("a_stride", Operand.A_STRIDE), ("b_stride", Operand.B_STRIDE),
                           ("c_stride", Operand.C_STRIDE)):
        value = getattr(gemm(), field) + 4
        assert v(gemm(**{field: value})) == Verdict(ChipError.BAD_ALIGN, operand), field
    # several failures: shape > align > range, and operands in order
    assert v(gemm(m=0, a_addr=4, c_addr=MEM)).error == ChipError.BAD_SHAPE
    assert v(gemm(a_addr=MEM, c_addr=4)) == Verdict(ChipError.BAD_ALIGN, Operand.C_ADDR)
    assert v(gemm(b_addr=4, a_addr=12)) == Verdict(ChipError.BAD_ALIGN, Operand.A_ADDR)
    assert v(gemm(c_addr=MEM, b_addr=MEM)) == Verdict(ChipError.ADDR_RANGE, Operand.B_ADDR)


def test_gemm_extents_exact():
    # A: rows 0..3 at stride 16, 16 bytes each: ends at a_addr + 64
    assert v(gemm(a_addr=MEM - 64)).ok
    assert v(gemm(a_addr=MEM - 56)) == Verdict(ChipError.ADDR_RANGE, Operand.A_ADDR)
    # one byte more in the last row (k = 17 with a_stride 24)
    assert v(gemm(a_addr=MEM - 72, k=17, a_stride=24, m=3), mem=MEM - 72 + 48 + 17).ok
    assert v(gemm(a_addr=MEM - 72, k=17, a_stride=24, m=3), mem=MEM - 72 + 48 + 16) == \
        Verdict(ChipError.ADDR_RANGE, Operand.A_ADDR)
    # C with int32 output: n * 4 bytes in the last row
    ok = gemm(requant=False, c_stride=32, c_addr=0x3000)
    end = 0x3000 + 3 * 32 + 32
    assert isa.validate(ok, LIM, max(end, 0x4000 + 8 * 16)).ok
    assert isa.validate(ok, LIM, 0x4000 + 8 * 16 - 8) == Verdict(ChipError.ADDR_RANGE,
                                                                 Operand.P_ADDR)
    assert isa.validate(gemm(requant=False, c_stride=32, c_addr=MEM - 128), LIM, MEM).ok
    assert isa.validate(gemm(requant=False, c_stride=32, c_addr=MEM - 120), LIM, MEM) == \
        Verdict(ChipError.ADDR_RANGE, Operand.C_ADDR)


def test_gather_rules():
    g = dict(desc_addr=0x100, idx_addr=0x200, off_addr=0x300, w_addr=0x400, out_addr=0x500,
             batch=4, n_tables=4, out_stride=64, out_tstride=16)
    assert v(isa.Gather(**g)).ok
    assert v(isa.Gather(**{**g, "batch": 0})) == Verdict(ChipError.BAD_SHAPE, Operand.BATCH)
    assert v(isa.Gather(**{**g, "n_tables": 0})).detail == Operand.N_TABLES
    assert v(isa.Gather(**{**g, "n_tables": LIM.n_tables + 1})).detail == Operand.N_TABLES
    assert v(isa.Gather(**{**g, "w_addr": 3})).ok                      # unweighted: unused
    assert v(isa.Gather(**{**g, "w_addr": 3}, weighted=True)) == \
        Verdict(ChipError.BAD_ALIGN, Operand.W_ADDR)
    for f, op in (("desc_addr", Operand.DESC_ADDR), ("idx_addr", Operand.IDX_ADDR),
                  ("off_addr", Operand.OFF_ADDR), ("out_addr", Operand.OUT_ADDR),
                  ("out_stride", Operand.OUT_STRIDE), ("out_tstride", Operand.OUT_TSTRIDE)):
        assert v(isa.Gather(**{**g, f: g[f] + 1})) == Verdict(ChipError.BAD_ALIGN, op)
    # descriptor records: 4 * 16 bytes; offsets: (4 * 4 + 1) * 4 = 68 bytes
    assert v(isa.Gather(**{**g, "desc_addr": MEM - 64})).ok
    assert v(isa.Gather(**{**g, "desc_addr": MEM - 56})).detail == Operand.DESC_ADDR
    assert v(isa.Gather(**{**g, "off_addr": MEM - 72})).ok
    assert v(isa.Gather(**{**g, "off_addr": MEM - 64})) == Verdict(ChipError.ADDR_RANGE,
                                                                   Operand.OFF_ADDR)


def test_copy_rules():
    c = dict(src=0x100, dst=0x200, src_stride=16, dst_stride=16, rows=3, row_bytes=13)
    assert v(isa.Copy(**c)).ok
    assert v(isa.Copy(**{**c, "src_stride": 0})).ok                  # broadcast
    assert v(isa.Copy(**{**c, "rows": 0})) == Verdict(ChipError.BAD_SHAPE, Operand.ROWS)
    assert v(isa.Copy(**{**c, "row_bytes": 0})).detail == Operand.ROW_BYTES
    assert v(isa.Copy(**{**c, "row_bytes": 17})).detail == Operand.DST_STRIDE
    assert v(isa.Copy(**{**c, "src_stride": 12})) == Verdict(ChipError.BAD_ALIGN,
                                                             Operand.SRC_STRIDE)
    assert v(isa.Copy(**{**c, "dst": MEM - 45})).error == ChipError.BAD_ALIGN
    assert v(isa.Copy(**{**c, "dst": MEM - 48})).ok                   # 32 + 13 <= 48
    assert v(isa.Copy(**{**c, "dst": MEM - 40})) == Verdict(ChipError.ADDR_RANGE, Operand.DST)
    assert v(isa.Copy(**{**c, "src": MEM - 40})) == Verdict(ChipError.ADDR_RANGE, Operand.SRC)
    # extents are exact, never wrapped at 32 bits
    assert v(isa.Copy(**{**c, "dst_stride": (1 << 32) - 8}), mem=1 << 32).detail == Operand.DST


def test_interact_rules():
    x = dict(src=0x100, dst=0x1000, multiplier=1 << 30, shift=0, batch=2, dim=16, n_vec=4,
             in_stride=64, vec_stride=16, out_stride=8)
    assert v(isa.Interact(**x)).ok
    for n_vec, ok in ((1, False), (2, True), (LIM.max_vec, True), (LIM.max_vec + 1, False)):
        got = v(isa.Interact(**{**x, "n_vec": n_vec, "out_stride": 128}))
        assert got.ok == ok and (ok or got == Verdict(ChipError.BAD_SHAPE, Operand.N_VEC))
    assert v(isa.Interact(**{**x, "dim": 0})).detail == Operand.DIM
    # dim is bounded by the gather engine's max_dim (24 here), not by max_k (64)
    assert v(isa.Interact(**{**x, "dim": LIM.max_dim, "vec_stride": 512})).ok
    for dim in (LIM.max_dim + 1, LIM.max_k, LIM.max_k + 1):
        assert v(isa.Interact(**{**x, "dim": dim, "vec_stride": 512})) == \
            Verdict(ChipError.BAD_SHAPE, Operand.DIM)
    assert v(isa.Interact(**{**x, "dim": 17})).detail == Operand.VEC_STRIDE
    assert v(isa.Interact(**{**x, "n_vec": 5})).detail == Operand.OUT_STRIDE   # 10 pairs > 8
    assert v(isa.Interact(**{**x, "in_stride": 0})).ok
    assert v(isa.Interact(**{**x, "in_stride": 4})) == Verdict(ChipError.BAD_ALIGN,
                                                               Operand.IN_STRIDE)
    # src: sample 1 at +64, its vector 3 at +48, 16 bytes: ends at src + 128
    assert v(isa.Interact(**{**x, "src": MEM - 128})).ok
    assert v(isa.Interact(**{**x, "src": MEM - 120})) == Verdict(ChipError.ADDR_RANGE, Operand.SRC)
    # dst: 8 + 6 bytes
    assert v(isa.Interact(**{**x, "dst": MEM - 16})).ok
    assert v(isa.Interact(**{**x, "dst": MEM - 8})) == Verdict(ChipError.ADDR_RANGE, Operand.DST)


def test_limits():
    lim = Limits.from_config(SMALL_CONFIG)
    assert (lim.max_m, lim.max_k, lim.max_n, lim.n_tables, lim.max_dim, lim.max_bag) == \
        (32, 32, 32, 2, 32, 16)
    assert Limits.from_config(DEFAULT_CONFIG).max_vec == isa.MAX_VEC
    with pytest.raises(ValueError, match=r"^max_m must be in range 1\.\.65536, not 0$"):
        Limits(max_m=0)
    with pytest.raises(TypeError, match="max_bag must be an integer"):
        Limits(max_bag=1.5)


def test_units_and_waits():
    assert isa.unit_of(isa.Opcode.INTERACT) == isa.Unit.GEMM
    assert isa.unit_of(isa.Finish()) is None
    assert isa.wait_mask([isa.Unit.COPY, isa.Unit.GEMM]) == 0b101
    assert isa.wait_mask(3) == 3
    with pytest.raises(ValueError, match="wait"):
        isa.wait_mask(8)
    with pytest.raises(TypeError, match="wait must name units"):
        isa.wait_mask(["GEMM"])


def test_status_and_disassembly_strings():
    st = isa.Status(isa.ChipState.ERROR, ChipError.ADDR_RANGE, Operand.IDX_ADDR.value, bag=3,
                    index=99, pc=0x40, retired=2)
    assert str(st) == "ERROR pc=0x40 retired=2 ADDR_RANGE IDX_ADDR bag=3 index=99"
    assert str(gemm(wait=0b110)) == ("GEMM a_addr=0x1000 b_addr=0x2000 c_addr=0x3000 "
                                     "p_addr=0x4000 m=4 k=16 n=8 a_stride=16 b_stride=8 "
                                     "c_stride=8 +params +requant wait=GATHER|COPY")


# -- GEMM ACC ---------------------------------------------------------------------------

def test_gemm_acc_bytes():
    """ACC is flag bit 3 (after params, requant, relu); flag bits 4..7 stay reserved."""
    g = isa.Gemm(a_addr=0x1000, b_addr=0x2008, c_addr=0x30, p_addr=0x40, m=3, k=70, n=9,
                 a_stride=72, b_stride=16, c_stride=40, params=True, requant=True, relu=False,
                 acc=True)
    want = struct.pack("<BBHIIIIHHHHHH", 1, 0b1011, 0, 0x1000, 0x2008, 0x30, 0x40,
                       3, 70, 9, 72, 16, 40)
    assert isa.encode(g) == want
    assert isa.decode(want) == g
    assert isa.decode(want[:1] + bytes([0b1000]) + want[2:]) == dataclasses.replace(
        g, params=False, requant=False)
    assert isa.GemmFlags["acc"].offset == 3
    flag_bits = (isa.RESERVED_MASK[isa.Opcode.GEMM] >> 8) & 0xFF
    assert flag_bits == 0xF0
    assert str(g).endswith("+params +requant +acc")


def test_gemm_acc_rules():
    """With ACC C's rows are 4 * n bytes (C_in is int32) whether or not
    REQUANT: the C_STRIDE shape check and the C_ADDR extent; no flag
    combination with ACC is illegal that is not illegal without it."""
    acc = dict(acc=True, c_stride=32)
    assert v(gemm(acc=True)) == Verdict(ChipError.BAD_SHAPE, Operand.C_STRIDE)     # int8 rows
    assert v(gemm(acc=True, c_stride=24)) == Verdict(ChipError.BAD_SHAPE, Operand.C_STRIDE)
    assert v(gemm(acc=True, requant=False, c_stride=24)).detail == Operand.C_STRIDE
    for params, requant, relu in ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0),
                                  (1, 1, 1)):
        assert v(gemm(**acc, params=bool(params), requant=bool(requant), relu=bool(relu))).ok
    assert v(gemm(**acc, params=False, requant=True)) == Verdict(ChipError.ILLEGAL,
                                                                 Operand.FLAGS)
    # extent: rows 0..3 at stride 32 (or 40) of 32 bytes
    assert v(gemm(**acc, c_addr=MEM - 128)).ok
    assert v(gemm(**acc, c_addr=MEM - 120)) == Verdict(ChipError.ADDR_RANGE, Operand.C_ADDR)
    assert v(gemm(acc=True, c_stride=40, c_addr=MEM - 152)).ok
    # without ACC the int8 rows would end 24 bytes earlier and fit
    assert v(gemm(c_stride=40, c_addr=MEM - 144)).ok
    assert v(gemm(acc=True, c_stride=40, c_addr=MEM - 144)) == Verdict(ChipError.ADDR_RANGE,
                                                                       Operand.C_ADDR)


def test_gemm_acc_regions():
    """ACC reads C (its int32 rows) and writes it: both in regions()."""
    g = gemm(acc=True, c_stride=40)
    reads, writes = isa.regions(g)
    c_rows = [(0x3000 + 40 * i, 0x3000 + 40 * i + 32) for i in range(4)]
    assert all(r in reads for r in c_rows)
    assert writes == [(0x3000 + 40 * i, 0x3000 + 40 * i + 8) for i in range(4)]
    plain = isa.regions(gemm(c_stride=40))[0]
    assert not any(r in plain for r in c_rows)
    assert isa.c_row_bytes(g) == 32 and isa.c_row_bytes(gemm()) == 8
