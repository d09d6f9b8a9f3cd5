"""The seedchip instruction set (v1), defined once.

The control unit views each fetched 256-bit word with :data:`InsnLayout`
(``insn.header.opcode``, ``GemmFlags(insn.header.flags)``,
``insn.operands.gemm.m``); the assembler (:mod:`seedchip.firmware.program`)
and the golden executor (:mod:`seedchip.sim.chip_golden`) encode and decode
plain Python instruction objects (:class:`Gemm`, :class:`Gather`, ...) with
:func:`encode`/:func:`decode`; :func:`validate` is the one statement of the
decode-time checks that the executor, the assembler and the RTL tests share.
No bit offset is written anywhere else: the packers walk the layouts.

Design (the README's "Instruction set" section): fixed 32-byte
little-endian instructions, byte addresses with ``ALIGN`` = 8, one
instruction per layer (VTA's fixed CISC words at layer granularity), wait
masks instead of VTA's dependency tokens. The details, decided here:

Encoding
  * Header (bits 0..31): ``opcode`` u8, ``flags`` u8, ``wait`` u4,
    ``reserved`` u12. Operands fill bits 32..255 (:data:`GEMM_OPERANDS` etc.).
    Every bit not named by a field is reserved: the per-opcode mask is
    :data:`RESERVED_MASK`; the control unit raises ILLEGAL when
    ``word & RESERVED_MASK[opcode] != 0``. The Python objects keep reserved
    bits in ``reserved`` (at their word positions) so that
    ``encode(decode(w)) == w`` for every word; an unknown opcode decodes to
    :class:`Illegal` holding the whole word.
  * ``wait`` bit 3 names no unit (three units): set, it is ILLEGAL (HEADER).
  * GATHER: the fields follow the spec's list except that the u16 fields come
    before ``n_tables`` (u8) so that every 16-bit field is 16-bit aligned;
    ``n_tables`` is 1..255 (u8; the engine's 256 is not encodable).
    ``w_addr`` is ignored (not checked) without WEIGHTED; ``p_addr`` of GEMM
    likewise without PARAMS.
  * INTERACT's ``shift`` is 5 bits followed by 3 reserved bits (a shift above
    31 is ILLEGAL), then ``p_addr``. INTERACT PARAMS requantizes each output
    pair p with param record p at ``p_addr`` (its multiplier and shift; the
    record's bias is ignored): a scale per pair, as GEMM's per channel.
  * Param record (16 B): bias i32, multiplier i32, shift u5 (the byte's upper
    3 bits and the 7 following bytes are ignored). Descriptor record (16 B):
    base u32, rows u32, dim u16, shift u5 (+3 ignored bits), pad u8 (ignored),
    multiplier i32. Records are data, so their ignored bits are not checked.
    Multipliers are not checked by the chip (the host refuses one outside 0
    or [2**30, 2**31), as for the matrix unit).
  * GEMM ACC accumulates into C: C_in, an m x n int32 little-endian matrix
    at ``c_addr`` with ``c_stride``, is read and the result is
    ``post(wrap32(A @ B + C_in))`` (post = bias, REQUANT, RELU as without
    ACC), written in place at ``c_addr``/``c_stride`` (int8 with REQUANT,
    else int32). Row i of the output only overlaps row i of C_in, which the
    unit reads before it writes that row: the in-place update is defined.
    With ACC, C's row bytes are ``4 * n`` for the C_STRIDE and C_ADDR checks
    whether or not REQUANT. A K too large for one GEMM runs as a chain:
    the first chunk plain int32, the next ones ACC, the last ACC with
    PARAMS/REQUANT/RELU.
  * Flag combinations that cannot run are ILLEGAL (FLAGS) at decode: GEMM
    REQUANT without PARAMS (ACC combines with every legal combination);
    GATHER with the reserved mode or bounds value 3, or WEIGHTED with a mode
    other than SUM (the engine's BAD_CMD is therefore never raised by a
    program).

Checks at decode (:func:`validate`); the first failing check wins, classes in
this order: ILLEGAL (opcode, header, flags, operand reserved bits) >
BAD_SHAPE > BAD_ALIGN > ADDR_RANGE; inside a class the operands in the order
of :data:`CHECKS`. ``Verdict.detail`` is the :class:`Operand` that failed.
Extents are computed exactly (no wrap: 50-bit arithmetic suffices). Strides
must be at least the row's bytes where the spec says so (GEMM A, B, C;
COPY dst; INTERACT vec_stride >= dim and out_stride >= pairs); a COPY
``src_stride`` may be anything (0 broadcasts one row) and INTERACT's
``in_stride`` too (samples may interleave). INTERACT's ``dim`` is bounded by
``max_dim``, the gather engine's, not the matrix unit's ``max_k``: its
vectors are DLRM's ``[x, e_1..e_F]``, pooled embeddings of at most
``max_dim`` bytes and a bottom-MLP output of the same width (the
interaction unit's vector buffer is sized for ``max_dim``).

GATHER checks what depends on data while it runs, in this order:
descriptors (per table t: rows >= 1, 1 <= dim <= max_dim, base aligned,
base + rows * pitch <= mem_bytes, else GATHER_ERROR BAD_DESC with
index = t; then the table's output extent, else ADDR_RANGE OUT_ADDR with
index = t); ``offsets[0] != 0`` (BAD_OFFSET); then per bag i in order
(i = t * B + b): ``offsets[i+1] < offsets[i]`` (BAD_OFFSET), longer than
max_bag (BAG_TOO_LONG), the index array up to ``offsets[i+1]`` inside memory
(ADDR_RANGE IDX_ADDR, bag i, index offsets[i+1]; then W_ADDR), then the
bag's lookups (OUT_OF_RANGE under FATAL...), exactly the engine's order
(:class:`seedchip.sim.emb_golden.GatherModel`). Pooled vectors are written
in bag order (overlapping outputs: the later bag wins); table row r is at
``base + r * table_pitch(dim)``.

Execution and errors
  * A unit is *free* when its previous instruction has finished, all of its
    memory writes included; instructions of one unit never overlap.
    NOP dispatches as soon as its ``wait`` units are drained (a barrier);
    FINISH waits for every unit whatever its ``wait`` says.
  * On an error the control unit stops dispatching, lets the units drain and
    reports the error of the earliest instruction in program order among
    those that failed: the same error the golden executor (which runs one
    instruction at a time) reports. ``retired`` = instructions before the
    failing one (all completed); on DONE it counts the FINISH too.
  * After an error, the bytes the failing instruction, or any later one, may
    write are undefined (the golden model writes the bags completed before a
    GATHER error). A program never writes outside memory: every access is
    checked before it is made.
  * COPY, GEMM and INTERACT whose read and write bytes overlap are
    undefined (the golden model reads everything first), except the in-place
    C of one GEMM ACC;
    :func:`seedchip.sim.chip_golden.check_hazards` reports them.
  * The start pc must be a multiple of 32 (else BAD_ALIGN PC) and every fetch
    must lie inside memory (else ADDR_RANGE PC): a program without FINISH runs
    through the zero words (NOPs) after it up to the end of memory.
  * MEM_ERROR (a memory answered ``err``) and GEMM_ERROR cannot happen to a
    program that passed :func:`validate`; they stay for the hardware's sake.
"""

from __future__ import annotations

import dataclasses
import typing

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum

from .checks import check_int
from .emb_protocol import BoundsMode, GatherError, PoolMode
from .gather_params import GatherParams
from .protocol import GemmError

__all__ = [
    "INSN_BYTES", "INSN_BITS", "ALIGN", "PC_ALIGN", "PARAM_BYTES", "DESC_BYTES",
    "MAX_TABLES", "MAX_VEC", "ADDR_LIMIT",
    "Opcode", "Unit", "WAIT_ALL", "ChipState", "ChipError", "Operand",
    "HeaderLayout", "GemmFlags", "GatherFlags", "InteractFlags", "GEMM_OPERANDS", "GATHER_OPERANDS",
    "COPY_OPERANDS", "INTERACT_OPERANDS", "InsnLayout", "ParamRecord", "DescRecord",
    "StatusLayout", "RESERVED_MASK", "RESERVED_REGION_MASK",
    "Limits", "Nop", "Gemm", "Gather", "Copy", "Interact", "Finish", "Illegal",
    "Insn", "encode", "decode", "validate", "Verdict", "CHECKS", "Status",
    "unit_of", "wait_mask", "table_pitch", "round_up", "pairs", "out_bytes", "c_row_bytes",
    "pack_record", "unpack_record", "regions", "merge_intervals", "intervals_overlap",
    "format_insn", "GemmError", "GatherError",
]

#: Bytes (bits) per instruction.
INSN_BYTES = 32
INSN_BITS = 8 * INSN_BYTES
#: Every base address and stride in an instruction is a multiple of this.
ALIGN = 8
#: Instructions are at multiples of this.
PC_ALIGN = INSN_BYTES
#: One GEMM param record / one GATHER table descriptor record.
PARAM_BYTES = 16
DESC_BYTES = 16
#: Largest ``n_tables`` a GATHER encodes (u8 field).
MAX_TABLES = 255
#: Default limit of INTERACT's ``n_vec``.
MAX_VEC = 64
#: Byte addresses are 32 bits: memory is at most this large.
ADDR_LIMIT = 1 << 32


class Opcode(enum.Enum, shape=8):
    NOP = 0
    GEMM = 1
    GATHER = 2
    COPY = 3
    INTERACT = 4
    FINISH = 15


class Unit(enum.Enum, shape=2):
    """Execution units; the value is the unit's bit in a ``wait`` mask."""
    #: the matrix unit (GEMM and INTERACT)
    GEMM = 0
    #: the gather engine (GATHER)
    GATHER = 1
    #: the row DMA (COPY)
    COPY = 2


#: A ``wait`` mask naming every unit.
WAIT_ALL = (1 << len(Unit)) - 1


class ChipState(enum.Enum, shape=2):
    IDLE = 0
    RUNNING = 1
    DONE = 2
    ERROR = 3


class ChipError(enum.Enum, shape=4):
    """Sticky error code of the control unit (until CLEAR)."""
    NONE = 0
    #: unknown opcode, reserved bit set, or an impossible flag combination
    #: (detail: OPCODE/HEADER/FLAGS/OPERANDS)
    ILLEGAL = 1
    #: a size out of the unit's range or a stride below the row's bytes
    #: (detail: the :class:`Operand`)
    BAD_SHAPE = 2
    #: an address or stride not a multiple of ALIGN, or a pc not a multiple
    #: of 32 (detail: the :class:`Operand`)
    BAD_ALIGN = 3
    #: an operand's bytes not all inside memory (detail: the :class:`Operand`;
    #: GATHER's data-dependent extents also give bag and index)
    ADDR_RANGE = 4
    #: the matrix unit stopped (detail: :class:`~seedchip.protocol.GemmError`)
    GEMM_ERROR = 5
    #: the gather engine stopped (detail:
    #: :class:`~seedchip.emb_protocol.GatherError`, with its bag and index)
    GATHER_ERROR = 6
    #: a memory response carried ``err`` (detail: unit, index: byte address)
    MEM_ERROR = 7


class Operand(enum.Enum, shape=8):
    """What ``detail`` names for ILLEGAL, BAD_SHAPE, BAD_ALIGN and ADDR_RANGE."""
    OPCODE = 0
    HEADER = 1
    FLAGS = 2
    OPERANDS = 3
    PC = 4
    A_ADDR = 8
    B_ADDR = 9
    C_ADDR = 10
    P_ADDR = 11
    M = 12
    K = 13
    N = 14
    A_STRIDE = 15
    B_STRIDE = 16
    C_STRIDE = 17
    DESC_ADDR = 24
    IDX_ADDR = 25
    OFF_ADDR = 26
    W_ADDR = 27
    OUT_ADDR = 28
    BATCH = 29
    N_TABLES = 30
    OUT_STRIDE = 31
    OUT_TSTRIDE = 32
    SRC = 40
    DST = 41
    SRC_STRIDE = 42
    DST_STRIDE = 43
    ROWS = 44
    ROW_BYTES = 45
    DIM = 48
    IN_STRIDE = 49
    VEC_STRIDE = 50
    N_VEC = 51


# -- layouts -------------------------------------------------------------------

HeaderLayout = data.StructLayout({
    "opcode": Opcode,
    #: per opcode: :data:`GemmFlags`, :data:`GatherFlags`, :data:`InteractFlags`;
    #: all reserved otherwise
    "flags": unsigned(8),
    #: units (bit = :class:`Unit`) that must drain before this instruction dispatches
    "wait": unsigned(4),
    "reserved": unsigned(12),
})

GemmFlags = data.StructLayout({
    #: read N param records at p_addr (bias, multiplier, shift)
    "params": unsigned(1),
    #: int8 output through multiplier/shift (needs params); else int32
    "requant": unsigned(1),
    "relu": unsigned(1),
    #: read C (m x n int32 at c_addr/c_stride) and add it before post-processing;
    #: the result overwrites it in place
    "acc": unsigned(1),
    "reserved": unsigned(4),
})

InteractFlags = data.StructLayout({
    #: requantize pair p with param record p at p_addr (its multiplier and
    #: shift; the bias is ignored), not with the instruction's multiplier/shift
    "params": unsigned(1),
    "reserved": unsigned(7),
})

#: ``emb_protocol.CmdLayout``'s meaning, plus reserved bits.
GatherFlags = data.StructLayout({
    "mode": PoolMode,
    "bounds": BoundsMode,
    "weighted": unsigned(1),
    "requant": unsigned(1),
    "reserved": unsigned(2),
})

GEMM_OPERANDS = data.StructLayout({
    "a_addr": unsigned(32), "b_addr": unsigned(32), "c_addr": unsigned(32), "p_addr": unsigned(32),
    "m": unsigned(16), "k": unsigned(16), "n": unsigned(16),
    "a_stride": unsigned(16), "b_stride": unsigned(16), "c_stride": unsigned(16),
})

GATHER_OPERANDS = data.StructLayout({
    "desc_addr": unsigned(32), "idx_addr": unsigned(32), "off_addr": unsigned(32),
    "w_addr": unsigned(32), "out_addr": unsigned(32),
    "batch": unsigned(16), "out_stride": unsigned(16), "out_tstride": unsigned(16),
    "n_tables": unsigned(8),
    "reserved": unsigned(8),
})

COPY_OPERANDS = data.StructLayout({
    "src": unsigned(32), "dst": unsigned(32),
    "src_stride": unsigned(32), "dst_stride": unsigned(32),
    "rows": unsigned(16), "row_bytes": unsigned(16),
    "reserved": unsigned(64),
})

INTERACT_OPERANDS = data.StructLayout({
    "src": unsigned(32), "dst": unsigned(32), "multiplier": signed(32),
    "batch": unsigned(16), "dim": unsigned(16), "in_stride": unsigned(16),
    "vec_stride": unsigned(16), "out_stride": unsigned(16),
    "n_vec": unsigned(8), "shift": unsigned(5),
    "reserved": unsigned(3),
    #: with PARAMS: ``pairs(n_vec)`` param records, one per output pair
    "p_addr": unsigned(32),
})

_EMPTY_OPERANDS = data.StructLayout({"reserved": unsigned(INSN_BITS - HeaderLayout.size)})

#: The whole instruction word as the control unit views it.
InsnLayout = data.StructLayout({
    "header": HeaderLayout,
    "operands": data.UnionLayout({
        "gemm": GEMM_OPERANDS, "gather": GATHER_OPERANDS, "copy": COPY_OPERANDS,
        "interact": INTERACT_OPERANDS, "raw": unsigned(INSN_BITS - HeaderLayout.size),
    }),
})

ParamRecord = data.StructLayout({
    "bias": signed(32), "multiplier": signed(32), "shift": unsigned(5),
    "ignored": unsigned(8 * PARAM_BYTES - 69),
})

DescRecord = data.StructLayout({
    "base": unsigned(32), "rows": unsigned(32), "dim": unsigned(16),
    "shift": unsigned(5), "ignored": unsigned(3), "pad": unsigned(8),
    "multiplier": signed(32),
})

#: What the host reads: word 0 is the STATUS register (``busy``: a program
#: runs or drains, ``done``: it stopped, DONE or ERROR; ``link_protocol``'s
#: STATUS_BUSY/STATUS_DONE are these bits), then the registers PC, RETIRED,
#: ERR_BAG and ERR_INDEX (``link_protocol.Reg``).
StatusLayout = data.StructLayout({
    "busy": unsigned(1), "done": unsigned(1), "state": ChipState, "error": ChipError,
    "detail": unsigned(8), "reserved": unsigned(16),
    "pc": unsigned(32), "retired": unsigned(32), "bag": unsigned(32), "index": unsigned(32),
})

for _name, _layout, _bits in (("InsnLayout", InsnLayout, INSN_BITS),
                              ("ParamRecord", ParamRecord, 8 * PARAM_BYTES),
                              ("DescRecord", DescRecord, 8 * DESC_BYTES)):
    if _layout.size != _bits:       # pragma: no cover - a layout edit gone wrong
        raise RuntimeError(f"{_name} is {_layout.size} bits, not {_bits}")


def _flat(layout, base=0, prefix=""):
    """``[(name, offset, width, signed)]`` of a StructLayout's leaves."""
    out = []
    for name, field in layout:
        if isinstance(field.shape, data.StructLayout):
            out += _flat(field.shape, base + field.offset, f"{prefix}{name}.")
        else:
            s = Shape.cast(field.shape)
            out.append((prefix + name, base + field.offset, s.width, s.signed))
    return out


_FLAGS = {"GEMM": GemmFlags, "GATHER": GatherFlags, "INTERACT": InteractFlags}
_OPERANDS = {"GEMM": GEMM_OPERANDS, "GATHER": GATHER_OPERANDS, "COPY": COPY_OPERANDS,
             "INTERACT": INTERACT_OPERANDS}
_H = {name: (off, w) for name, off, w, _ in _flat(HeaderLayout)}
_FLAGS_OFF = _H["flags"][0]
_OPS_OFF = InsnLayout["operands"].offset


def _word_fields(op: Opcode):
    """The named fields of ``op``'s word: ``(name, offset, width, signed, region)``,
    ``name`` None for reserved bits; region = the Operand an ILLEGAL names."""
    out = [(None if n == "reserved" else n, off, w, False, Operand.HEADER)
           for n, off, w, _ in _flat(HeaderLayout) if n != "flags"]
    flags = _FLAGS.get(op.name, data.StructLayout({"reserved": unsigned(8)}))
    out += [(None if n == "reserved" else n, _FLAGS_OFF + off, w, s, Operand.FLAGS)
            for n, off, w, s in _flat(flags)]
    ops = _OPERANDS.get(op.name, _EMPTY_OPERANDS)
    out += [(None if n == "reserved" else n, _OPS_OFF + off, w, s, Operand.OPERANDS)
            for n, off, w, s in _flat(ops)]
    return out


_FIELDS = {op: _word_fields(op) for op in Opcode}
#: Per opcode: the bits of the word that must be 0.
RESERVED_MASK = {op: sum(((1 << w) - 1) << off for n, off, w, _, _ in _FIELDS[op] if n is None)
                 for op in Opcode}
#: Per opcode and region (HEADER, FLAGS, OPERANDS): the reserved bits an
#: ILLEGAL of that region names (the union is :data:`RESERVED_MASK`).
RESERVED_REGION_MASK = {op: {r: sum(((1 << w) - 1) << off for n, off, w, _, rg in _FIELDS[op]
                                    if n is None and rg == r)
                             for r in (Operand.HEADER, Operand.FLAGS, Operand.OPERANDS)}
                        for op in Opcode}


# -- limits --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Limits:
    """The unit limits the checks depend on. At decode: GEMM's M/K/N by
    ``max_m``/``max_k``/``max_n``, GATHER's ``n_tables`` by ``n_tables``,
    INTERACT's ``n_vec`` by ``max_vec`` and its ``dim`` by ``max_dim`` (the
    gather engine's row limit, not ``max_k``: INTERACT's vectors are pooled
    embeddings and a vector as wide as them). While GATHER runs: its
    descriptors' ``dim`` by ``max_dim``, its bags by ``max_bag``."""
    max_m: int = 256
    max_k: int = 256
    max_n: int = 256
    n_tables: int = 8
    max_dim: int = 64
    max_bag: int = 32
    max_vec: int = MAX_VEC

    def __post_init__(self):
        for f in ("max_m", "max_k", "max_n"):
            check_int(f, getattr(self, f), 1, 1 << 16)
        check_int("n_tables", self.n_tables, 1, 256)
        check_int("max_dim", self.max_dim, 1, 1 << 16)
        check_int("max_bag", self.max_bag, 1, 65535)
        check_int("max_vec", self.max_vec, 2, 255)

    @classmethod
    def from_config(cls, config, *, max_vec: int = MAX_VEC) -> "Limits":
        """From a :class:`~seedchip.config.ChipConfig`: its GEMM buffer sizes and
        its gather engine's limits (``config.gather``, a
        :class:`~seedchip.gather_params.GatherParams`; without an engine, the
        default engine's)."""
        g = config.gather if config.gather is not None else GatherParams()
        return cls(max_m=config.max_m, max_k=config.max_k, max_n=config.max_n,
                   n_tables=g.n_tables, max_dim=g.max_dim, max_bag=g.max_bag, max_vec=max_vec)


# -- instruction objects ---------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class _Insn:
    #: units to drain first (bit = :class:`Unit`)
    wait: int = 0
    #: reserved bits, at their positions in the 256-bit word (must be 0 to run)
    reserved: int = 0

    def __str__(self):
        return format_insn(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Nop(_Insn):
    opcode: typing.ClassVar = Opcode.NOP


@dataclasses.dataclass(frozen=True, kw_only=True)
class Finish(_Insn):
    opcode: typing.ClassVar = Opcode.FINISH


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gemm(_Insn):
    """``C = post(A @ B)``: A is m x k int8 (row i at a_addr + i*a_stride), B
    k x n int8, C m x n int8 (requant) or int32 little-endian.

    With ``acc``: ``C = post(wrap32(A @ B + C_in))`` where C_in is the m x n
    int32 matrix read at c_addr/c_stride before it is overwritten in place
    (C's rows are checked as ``4 * n`` bytes then, whatever ``requant``)."""
    opcode: typing.ClassVar = Opcode.GEMM
    a_addr: int
    b_addr: int
    c_addr: int
    p_addr: int = 0
    m: int
    k: int
    n: int
    a_stride: int
    b_stride: int
    c_stride: int
    params: bool = False
    requant: bool = False
    relu: bool = False
    acc: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gather(_Insn):
    """EmbeddingBags of ``batch`` samples over ``n_tables`` tables (bag
    i = t * batch + b), pooled vector at out_addr + b*out_stride + t*out_tstride."""
    opcode: typing.ClassVar = Opcode.GATHER
    desc_addr: int
    idx_addr: int
    off_addr: int
    w_addr: int = 0
    out_addr: int
    batch: int
    n_tables: int
    out_stride: int
    out_tstride: int
    mode: PoolMode | int = PoolMode.SUM
    bounds: BoundsMode | int = BoundsMode.FATAL
    weighted: bool = False
    requant: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Copy(_Insn):
    """``rows`` rows of ``row_bytes`` bytes from src (src_stride) to dst (dst_stride)."""
    opcode: typing.ClassVar = Opcode.COPY
    src: int
    dst: int
    src_stride: int
    dst_stride: int
    rows: int
    row_bytes: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Interact(_Insn):
    """DLRM dot interaction (strict lower triangle) of ``n_vec`` vectors per sample.

    Pair p of a sample (``(1,0), (2,0), (2,1), (3,0), ...``) is requantized
    with ``multiplier``/``shift``, or with ``params``: with the multiplier
    and shift of param record p at ``p_addr`` (``pairs(n_vec)`` records of
    :data:`PARAM_BYTES`; their bias is ignored), a scale per pair. Without
    ``params`` ``p_addr`` is ignored, with it ``multiplier``/``shift``."""
    opcode: typing.ClassVar = Opcode.INTERACT
    src: int
    dst: int
    multiplier: int
    shift: int
    batch: int
    dim: int
    n_vec: int
    in_stride: int
    vec_stride: int
    out_stride: int
    p_addr: int = 0
    params: bool = False


@dataclasses.dataclass(frozen=True)
class Illegal:
    """A word whose opcode is none of :class:`Opcode`."""
    word: int
    wait: int = dataclasses.field(init=False, default=0)

    @property
    def opcode(self) -> int:
        return self.word & 0xFF

    def __str__(self):
        return format_insn(self)


Insn = Nop | Finish | Gemm | Gather | Copy | Interact | Illegal
_CLASSES = {c.opcode: c for c in (Nop, Finish, Gemm, Gather, Copy, Interact)}


def encode(insn) -> bytes:
    """The 32 bytes of ``insn``. ValueError names a field whose value does not fit."""
    if isinstance(insn, Illegal):
        check_int("word", insn.word, 0, (1 << INSN_BITS) - 1)
        return insn.word.to_bytes(INSN_BYTES, "little")
    op = insn.opcode
    check_int("reserved", insn.reserved, 0, (1 << INSN_BITS) - 1)
    if insn.reserved & ~RESERVED_MASK[op]:
        raise ValueError(f"reserved holds bits outside the reserved bits of {op.name}")
    word = insn.reserved
    for name, off, width, sgn, _ in _FIELDS[op]:
        if name is None:
            continue
        v = op.value if name == "opcode" else getattr(insn, name)
        v = int(getattr(v, "value", v))
        if sgn:
            check_int(name, v, -(1 << (width - 1)), (1 << (width - 1)) - 1)
        else:
            check_int(name, v, 0, (1 << width) - 1)
        word |= (v & ((1 << width) - 1)) << off
    return word.to_bytes(INSN_BYTES, "little")


def decode(raw) -> Insn:
    """The instruction object of a 32-byte word (``bytes`` or an ``int``)."""
    word = raw if isinstance(raw, int) else int.from_bytes(bytes(raw), "little")
    if isinstance(raw, int):
        check_int("word", raw, 0, (1 << INSN_BITS) - 1)
    elif len(bytes(raw)) != INSN_BYTES:
        raise ValueError(f"an instruction is {INSN_BYTES} bytes, not {len(bytes(raw))}")
    code = word & ((1 << _H["opcode"][1]) - 1)
    try:
        op = Opcode(code)
    except ValueError:
        return Illegal(word)
    kw = {"reserved": word & RESERVED_MASK[op]}
    for name, off, width, sgn, _ in _FIELDS[op]:
        if name is None or name == "opcode":
            continue
        v = (word >> off) & ((1 << width) - 1)
        if sgn and v >> (width - 1):
            v -= 1 << width
        kw[name] = v
    cls = _CLASSES[op]
    for f in dataclasses.fields(cls):
        if f.type in ("bool",) and f.name in kw:
            kw[f.name] = bool(kw[f.name])
    if op == Opcode.GATHER:
        kw["mode"] = _enum_or_int(PoolMode, kw["mode"])
        kw["bounds"] = _enum_or_int(BoundsMode, kw["bounds"])
    return cls(**kw)


def _enum_or_int(cls, v):
    try:
        return cls(v)
    except ValueError:
        return v


# -- records -----------------------------------------------------------------------

def pack_record(layout, **values) -> bytes:
    """The bytes of one record of ``layout`` (:data:`ParamRecord`,
    :data:`DescRecord`); fields not given are 0."""
    word = 0
    names = {n for n, *_ in _flat(layout)}
    for k in values:
        if k not in names:
            raise ValueError(f"{k!r} is not a field of the record")
    for name, off, width, sgn in _flat(layout):
        v = int(values.get(name, 0))
        if sgn:
            check_int(name, v, -(1 << (width - 1)), (1 << (width - 1)) - 1)
        else:
            check_int(name, v, 0, (1 << width) - 1)
        word |= (v & ((1 << width) - 1)) << off
    return word.to_bytes(layout.size // 8, "little")


def unpack_record(layout, raw) -> dict:
    """Inverse of :func:`pack_record`: a dict of ints."""
    word = int.from_bytes(bytes(raw), "little")
    out = {}
    for name, off, width, sgn in _flat(layout):
        v = (word >> off) & ((1 << width) - 1)
        out[name] = v - (1 << width) if sgn and v >> (width - 1) else v
    return out


# -- helpers -----------------------------------------------------------------------

def round_up(n: int, align: int = ALIGN) -> int:
    return -(-n // align) * align


def table_pitch(dim: int) -> int:
    """Bytes from one table row to the next: ``dim`` rounded up to ALIGN."""
    return round_up(dim, ALIGN)


def pairs(n_vec: int) -> int:
    """Interaction outputs per sample: ``n_vec * (n_vec - 1) / 2``."""
    return n_vec * (n_vec - 1) // 2


def out_bytes(requant) -> int:
    """Bytes per output element: 1 with REQUANT (int8), else 4 (int32)."""
    return 1 if requant else 4


def c_row_bytes(g: "Gemm") -> int:
    """The bytes of one row of a GEMM's C that the checks cover: ``4 * n`` with
    ACC (the int32 C_in is read), else ``n * out_bytes(requant)``."""
    return 4 * g.n if g.acc else g.n * out_bytes(g.requant)


def unit_of(insn_or_opcode) -> Unit | None:
    """The unit an instruction runs on (None: NOP, FINISH, illegal)."""
    op = getattr(insn_or_opcode, "opcode", insn_or_opcode)
    return {Opcode.GEMM: Unit.GEMM, Opcode.INTERACT: Unit.GEMM, Opcode.GATHER: Unit.GATHER,
            Opcode.COPY: Unit.COPY}.get(op)


def wait_mask(units) -> int:
    """A ``wait`` mask from an int (returned as is) or an iterable of :class:`Unit`."""
    if isinstance(units, int) and not isinstance(units, bool):
        return check_int("wait", units, 0, WAIT_ALL)
    mask = 0
    for u in units:
        if not isinstance(u, Unit):
            raise TypeError(f"wait must name units (Unit.GEMM, ...), not {u!r}")
        mask |= 1 << u.value
    return mask


def _extent(base, rows, stride, row_bytes):
    """One past the last byte of ``rows`` rows of ``row_bytes`` at ``stride``."""
    return base + (rows - 1) * stride + row_bytes


def _rows(base, rows, stride, row_bytes):
    return [(base + r * stride, base + r * stride + row_bytes) for r in range(rows)]


def regions(insn):
    """``(reads, writes)``: the byte intervals ``[lo, hi)`` a valid instruction
    touches, as far as its fields tell (GATHER: only its descriptor and offset
    arrays are known without the data; its other reads and its writes are
    not included)."""
    if isinstance(insn, Gemm):
        es = out_bytes(insn.requant)
        reads = (_rows(insn.a_addr, insn.m, insn.a_stride, insn.k)
                 + _rows(insn.b_addr, insn.k, insn.b_stride, insn.n))
        if insn.params:
            reads.append((insn.p_addr, insn.p_addr + insn.n * PARAM_BYTES))
        if insn.acc:
            reads += _rows(insn.c_addr, insn.m, insn.c_stride, 4 * insn.n)
        return reads, _rows(insn.c_addr, insn.m, insn.c_stride, insn.n * es)
    if isinstance(insn, Copy):
        return (_rows(insn.src, insn.rows, insn.src_stride, insn.row_bytes),
                _rows(insn.dst, insn.rows, insn.dst_stride, insn.row_bytes))
    if isinstance(insn, Interact):
        reads = [iv for b in range(insn.batch)
                 for iv in _rows(insn.src + b * insn.in_stride, insn.n_vec, insn.vec_stride,
                                 insn.dim)]
        if insn.params:
            reads.append((insn.p_addr, insn.p_addr + pairs(insn.n_vec) * PARAM_BYTES))
        return reads, _rows(insn.dst, insn.batch, insn.out_stride, pairs(insn.n_vec))
    if isinstance(insn, Gather):
        nbags = insn.n_tables * insn.batch
        return ([(insn.desc_addr, insn.desc_addr + insn.n_tables * DESC_BYTES),
                 (insn.off_addr, insn.off_addr + 4 * (nbags + 1))], [])
    return [], []


def merge_intervals(intervals) -> list:
    """Sorted, disjoint ``[lo, hi)`` intervals covering ``intervals`` (empty ones dropped)."""
    out = []
    for lo, hi in sorted((int(a), int(b)) for a, b in intervals if b > a):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [tuple(iv) for iv in out]


def intervals_overlap(a, b) -> bool:
    """Whether two lists from :func:`merge_intervals` share a byte."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][0] < b[j][1] and b[j][0] < a[i][1]:
            return True
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return False


# -- validation ---------------------------------------------------------------------

class Verdict(typing.NamedTuple):
    """What :func:`validate` says: the error and the :class:`Operand` it names."""
    error: ChipError
    detail: Operand | None = None

    @property
    def ok(self) -> bool:
        return self.error == ChipError.NONE


OK = Verdict(ChipError.NONE, None)


def _gemm_checks(i: Gemm, lim: Limits):
    cb = c_row_bytes(i)
    shape = [(Operand.M, 1 <= i.m <= lim.max_m), (Operand.K, 1 <= i.k <= lim.max_k),
             (Operand.N, 1 <= i.n <= lim.max_n), (Operand.A_STRIDE, i.a_stride >= i.k),
             (Operand.B_STRIDE, i.b_stride >= i.n), (Operand.C_STRIDE, i.c_stride >= cb)]
    align = [(Operand.A_ADDR, i.a_addr), (Operand.B_ADDR, i.b_addr), (Operand.C_ADDR, i.c_addr)]
    align += [(Operand.P_ADDR, i.p_addr)] if i.params else []
    align += [(Operand.A_STRIDE, i.a_stride), (Operand.B_STRIDE, i.b_stride),
              (Operand.C_STRIDE, i.c_stride)]
    rng = [(Operand.A_ADDR, _extent(i.a_addr, i.m, i.a_stride, i.k)),
           (Operand.B_ADDR, _extent(i.b_addr, i.k, i.b_stride, i.n)),
           (Operand.C_ADDR, _extent(i.c_addr, i.m, i.c_stride, cb))]
    rng += [(Operand.P_ADDR, i.p_addr + i.n * PARAM_BYTES)] if i.params else []
    return shape, align, rng


def _gather_checks(i: Gather, lim: Limits):
    shape = [(Operand.BATCH, i.batch >= 1),
             (Operand.N_TABLES, 1 <= i.n_tables <= min(lim.n_tables, MAX_TABLES))]
    align = [(Operand.DESC_ADDR, i.desc_addr), (Operand.IDX_ADDR, i.idx_addr),
             (Operand.OFF_ADDR, i.off_addr)]
    align += [(Operand.W_ADDR, i.w_addr)] if i.weighted else []
    align += [(Operand.OUT_ADDR, i.out_addr), (Operand.OUT_STRIDE, i.out_stride),
              (Operand.OUT_TSTRIDE, i.out_tstride)]
    rng = [(Operand.DESC_ADDR, i.desc_addr + i.n_tables * DESC_BYTES),
           (Operand.OFF_ADDR, i.off_addr + 4 * (i.n_tables * i.batch + 1))]
    return shape, align, rng


def _copy_checks(i: Copy, lim: Limits):
    shape = [(Operand.ROWS, i.rows >= 1), (Operand.ROW_BYTES, i.row_bytes >= 1),
             (Operand.DST_STRIDE, i.dst_stride >= i.row_bytes)]
    align = [(Operand.SRC, i.src), (Operand.DST, i.dst), (Operand.SRC_STRIDE, i.src_stride),
             (Operand.DST_STRIDE, i.dst_stride)]
    rng = [(Operand.SRC, _extent(i.src, i.rows, i.src_stride, i.row_bytes)),
           (Operand.DST, _extent(i.dst, i.rows, i.dst_stride, i.row_bytes))]
    return shape, align, rng


def _interact_checks(i: Interact, lim: Limits):
    shape = [(Operand.BATCH, i.batch >= 1), (Operand.N_VEC, 2 <= i.n_vec <= lim.max_vec),
             (Operand.DIM, 1 <= i.dim <= lim.max_dim), (Operand.VEC_STRIDE, i.vec_stride >= i.dim),
             (Operand.OUT_STRIDE, i.out_stride >= pairs(i.n_vec))]
    align = [(Operand.SRC, i.src), (Operand.DST, i.dst)]
    align += [(Operand.P_ADDR, i.p_addr)] if i.params else []
    align += [(Operand.IN_STRIDE, i.in_stride), (Operand.VEC_STRIDE, i.vec_stride),
              (Operand.OUT_STRIDE, i.out_stride)]
    rng = [(Operand.SRC, _extent(i.src + (i.batch - 1) * i.in_stride, i.n_vec, i.vec_stride,
                                 i.dim)),
           (Operand.DST, _extent(i.dst, i.batch, i.out_stride, pairs(i.n_vec)))]
    rng += [(Operand.P_ADDR, i.p_addr + pairs(i.n_vec) * PARAM_BYTES)] if i.params else []
    return shape, align, rng


#: Per opcode: ``(shape checks, align checks, range checks)`` in priority order:
#: ``[(Operand, ok)]``, ``[(Operand, value that must be a multiple of ALIGN)]``,
#: ``[(Operand, one past the operand's last byte, at most mem_bytes)]``.
CHECKS = {Opcode.GEMM: _gemm_checks, Opcode.GATHER: _gather_checks, Opcode.COPY: _copy_checks,
          Opcode.INTERACT: _interact_checks}


def _flags_ok(insn) -> bool:
    if isinstance(insn, Gemm):
        return insn.params or not insn.requant
    if isinstance(insn, Gather):
        return (isinstance(insn.mode, PoolMode) and isinstance(insn.bounds, BoundsMode)
                and (insn.mode == PoolMode.SUM or not insn.weighted))
    return True


def validate(insn, limits: Limits, mem_bytes: int) -> Verdict:
    """The error the control unit raises at decode for ``insn`` (a decoded
    instruction object), or ``Verdict(ChipError.NONE, None)``. See the module
    docstring for the order of the checks."""
    if isinstance(insn, Illegal):
        return Verdict(ChipError.ILLEGAL, Operand.OPCODE)
    op = insn.opcode
    if insn.wait & ~WAIT_ALL or insn.reserved & RESERVED_REGION_MASK[op][Operand.HEADER]:
        return Verdict(ChipError.ILLEGAL, Operand.HEADER)
    if insn.reserved & RESERVED_REGION_MASK[op][Operand.FLAGS] or not _flags_ok(insn):
        return Verdict(ChipError.ILLEGAL, Operand.FLAGS)
    if insn.reserved & RESERVED_REGION_MASK[op][Operand.OPERANDS]:
        return Verdict(ChipError.ILLEGAL, Operand.OPERANDS)
    if op not in CHECKS:
        return OK
    shape, align, rng = CHECKS[op](insn, limits)
    for operand, ok in shape:
        if not ok:
            return Verdict(ChipError.BAD_SHAPE, operand)
    for operand, v in align:
        if v % ALIGN:
            return Verdict(ChipError.BAD_ALIGN, operand)
    for operand, end in rng:
        if end > mem_bytes:
            return Verdict(ChipError.ADDR_RANGE, operand)
    return OK


# -- status ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Status:
    """What the host reads after a run (:data:`StatusLayout`)."""
    state: ChipState
    error: ChipError = ChipError.NONE
    #: ILLEGAL/BAD_SHAPE/BAD_ALIGN/ADDR_RANGE: the :class:`Operand`;
    #: GATHER_ERROR: the GatherError; GEMM_ERROR: the GemmError (as ints)
    detail: int = 0
    #: GATHER_ERROR and GATHER's ADDR_RANGE: the bag and the index (value)
    bag: int = 0
    index: int = 0
    #: the failing instruction (ERROR) or the FINISH (DONE)
    pc: int = 0
    retired: int = 0

    def __str__(self):
        s = f"{self.state.name} pc=0x{self.pc:x} retired={self.retired}"
        if self.error != ChipError.NONE:
            det = self.detail
            if self.error in (ChipError.ILLEGAL, ChipError.BAD_SHAPE, ChipError.BAD_ALIGN,
                              ChipError.ADDR_RANGE):
                det = _enum_or_int(Operand, det)
            elif self.error == ChipError.GATHER_ERROR:
                det = _enum_or_int(GatherError, det)
            elif self.error == ChipError.GEMM_ERROR:
                det = _enum_or_int(GemmError, det)
            s += f" {self.error.name} {getattr(det, 'name', det)} bag={self.bag} index={self.index}"
        return s


# -- disassembly ---------------------------------------------------------------------

def _units(mask: int) -> str:
    names = [u.name for u in Unit if mask >> u.value & 1]
    names += [f"bit{b}" for b in range(len(Unit), 4) if mask >> b & 1]
    return "|".join(names)


def format_insn(insn) -> str:
    """One line of assembly for ``insn`` (what ``str(insn)`` gives)."""
    if isinstance(insn, Illegal):
        return f"ILLEGAL 0x{insn.word:064x}"
    parts = [insn.opcode.name]
    for f in dataclasses.fields(insn):
        if f.name in ("wait", "reserved"):
            continue
        v = getattr(insn, f.name)
        if isinstance(v, bool):
            if v:
                parts.append(f"+{f.name}")
        elif isinstance(v, enum.Enum):
            parts.append(f"{f.name}={v.name}")
        elif f.name.endswith("addr") or f.name in ("src", "dst"):
            parts.append(f"{f.name}=0x{v:x}")
        else:
            parts.append(f"{f.name}={v}")
    if insn.wait:
        parts.append(f"wait={_units(insn.wait)}")
    if insn.reserved:
        parts.append(f"reserved=0x{insn.reserved:x}")
    return " ".join(parts)
