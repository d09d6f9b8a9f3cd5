"""The control unit's decode-time checks (part of :class:`~seedchip.rtl.control.ControlUnit`):
:func:`seedchip.isa.validate` in hardware, the same rules in the same order.

Classes in priority order: ILLEGAL (opcode, header incl. wait bit 3, flags
incl. the impossible combinations, operand reserved bits) > BAD_SHAPE >
BAD_ALIGN > ADDR_RANGE; inside a class the operands in ``isa.CHECKS``' order.

Pipelined for Fmax, one instruction at a time (the checks are not the
bottleneck: an instruction is a whole layer):

* cycle 1: the reserved-bit and flag checks (ILLEGAL); the ``rows - 1`` of
  the extents and the opcode's index, registered; ``pairs(n_vec)`` is a DSP
  multiply with its own registers (:class:`~.mac.Mul`), ready in cycle 3;
* cycle 3: the shape and alignment checks of the opcode, one bit each;
  cycle 4: each class priority-encoded (the first failing operand);
* cycles 3..14: the extents ``base + a * b + c * d + tail`` of up to four
  operands, one issued per cycle into an eight-stage pipeline (operands
  registered; the DSPs' input and output registers; ``a * b`` from its two
  16 x 16 halves and ``c * d + tail``; ``base + a * b``; the sum of the sums;
  its comparison with ``mem_bytes``; the first failure). For Fmax each stage
  is one carry chain or one DSP: a plain ``*`` would be a MULT18X18D
  without its registers (Yosys does not pack them), ~4 ns between two routes.
  Extents are exact (no wrap); a shape that failed never reaches them.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import isa
from ..checks import check_type
from ..emb_protocol import BoundsMode, PoolMode
from ..isa import ChipError, Limits, Opcode, Operand
from .control_fetch import FetchedLayout, check_mem_bytes
from .mac import Mul

__all__ = ["InsnCheck"]

#: One extent check: ``base + a * b + c * d + tail <= mem_bytes`` unless ``en`` is 0.
_RangeTerm = data.StructLayout({
    "en": unsigned(1), "operand": Operand, "base": unsigned(32),
    "a": unsigned(16), "b": unsigned(32), "c": unsigned(8), "d": unsigned(16),
    "tail": unsigned(18),
})
#: Values the later stages need, registered in the first (for Fmax: no
#: subtraction or opcode decode in front of the extent pipeline's operand mux).
_Pre = data.StructLayout({
    "m1": unsigned(16), "k1": unsigned(16), "rows1": unsigned(16),
    "batch1": unsigned(16), "nvec1": unsigned(8), "c_row": unsigned(18),
    "op_idx": unsigned(2), "op_unit": unsigned(1),
})
_N_RANGE = 4                 # most extents of one opcode (GEMM: A, B, C, P)
_RANGE_LATENCY = 5 + Mul.LATENCY   # issue -> verdict registered (_range_pipeline)
#: Every check is registered unconditionally from the item in hand (it holds
#: while busy), one step per cycle: cycle 1 the first registers (``pre``,
#: ``pairs``' DSP input), cycle 3 ``pairs``; the extents are issued from cycle
#: _ISSUE on, and every verdict is read in cycle _FINAL.
_ISSUE = 3
_FINAL = _ISSUE + _N_RANGE + _RANGE_LATENCY


def _first(checks):
    """``(fail, operand)``: whether any ``(operand, fail)`` fails, and the first that does."""
    fail = Const(0, 1)
    operand = Const(0, 8)
    for op, f in reversed(checks):
        operand = Mux(f, op.value, operand)
        fail = fail | f
    return fail, operand


def _gemm(i, pre, lim):
    g, fl = i.operands.gemm, isa.GemmFlags(i.header.flags)
    c_row = pre.c_row
    shape = [(Operand.M, (g.m == 0) | (g.m > lim.max_m)),
             (Operand.K, (g.k == 0) | (g.k > lim.max_k)),
             (Operand.N, (g.n == 0) | (g.n > lim.max_n)),
             (Operand.A_STRIDE, g.a_stride < g.k), (Operand.B_STRIDE, g.b_stride < g.n),
             (Operand.C_STRIDE, g.c_stride < c_row)]
    align = [(Operand.A_ADDR, 1, g.a_addr), (Operand.B_ADDR, 1, g.b_addr),
             (Operand.C_ADDR, 1, g.c_addr), (Operand.P_ADDR, fl.params, g.p_addr),
             (Operand.A_STRIDE, 1, g.a_stride), (Operand.B_STRIDE, 1, g.b_stride),
             (Operand.C_STRIDE, 1, g.c_stride)]
    rng = [(Operand.A_ADDR, 1, g.a_addr, pre.m1, g.a_stride, 0, 0, g.k),
           (Operand.B_ADDR, 1, g.b_addr, pre.k1, g.b_stride, 0, 0, g.n),
           (Operand.C_ADDR, 1, g.c_addr, pre.m1, g.c_stride, 0, 0, c_row),
           (Operand.P_ADDR, fl.params, g.p_addr, g.n, isa.PARAM_BYTES, 0, 0, 0)]
    return shape, align, rng


def _gather(i, pre, lim):
    g, fl = i.operands.gather, isa.GatherFlags(i.header.flags)
    max_t = min(lim.n_tables, isa.MAX_TABLES)
    shape = [(Operand.BATCH, g.batch == 0),
             (Operand.N_TABLES, (g.n_tables == 0) | (g.n_tables > max_t))]
    align = [(Operand.DESC_ADDR, 1, g.desc_addr), (Operand.IDX_ADDR, 1, g.idx_addr),
             (Operand.OFF_ADDR, 1, g.off_addr), (Operand.W_ADDR, fl.weighted, g.w_addr),
             (Operand.OUT_ADDR, 1, g.out_addr), (Operand.OUT_STRIDE, 1, g.out_stride),
             (Operand.OUT_TSTRIDE, 1, g.out_tstride)]
    # offsets: 4 * (n_tables * batch + 1) = batch * (4 * n_tables) + 4
    rng = [(Operand.DESC_ADDR, 1, g.desc_addr, g.n_tables, isa.DESC_BYTES, 0, 0, 0),
           (Operand.OFF_ADDR, 1, g.off_addr, g.batch, g.n_tables << 2, 0, 0, 4)]
    return shape, align, rng


def _copy(i, pre, lim):
    c = i.operands.copy
    shape = [(Operand.ROWS, c.rows == 0), (Operand.ROW_BYTES, c.row_bytes == 0),
             (Operand.DST_STRIDE, c.dst_stride < c.row_bytes)]
    align = [(Operand.SRC, 1, c.src), (Operand.DST, 1, c.dst),
             (Operand.SRC_STRIDE, 1, c.src_stride), (Operand.DST_STRIDE, 1, c.dst_stride)]
    rng = [(Operand.SRC, 1, c.src, pre.rows1, c.src_stride, 0, 0, c.row_bytes),
           (Operand.DST, 1, c.dst, pre.rows1, c.dst_stride, 0, 0, c.row_bytes)]
    return shape, align, rng


def _interact(i, pre, lim):
    x, fl = i.operands.interact, isa.InteractFlags(i.header.flags)
    shape = [(Operand.BATCH, x.batch == 0),
             (Operand.N_VEC, (x.n_vec < 2) | (x.n_vec > lim.max_vec)),
             (Operand.DIM, (x.dim == 0) | (x.dim > lim.max_dim)),
             (Operand.VEC_STRIDE, x.vec_stride < x.dim),
             (Operand.OUT_STRIDE, x.out_stride < pre.pairs)]
    align = [(Operand.SRC, 1, x.src), (Operand.DST, 1, x.dst),
             (Operand.P_ADDR, fl.params, x.p_addr), (Operand.IN_STRIDE, 1, x.in_stride),
             (Operand.VEC_STRIDE, 1, x.vec_stride), (Operand.OUT_STRIDE, 1, x.out_stride)]
    rng = [(Operand.SRC, 1, x.src, pre.batch1, x.in_stride, pre.nvec1, x.vec_stride, x.dim),
           (Operand.DST, 1, x.dst, pre.batch1, x.out_stride, 0, 0, pre.pairs),
           (Operand.P_ADDR, fl.params, x.p_addr, pre.pairs, isa.PARAM_BYTES, 0, 0, 0)]
    return shape, align, rng


_CHECKS = {Opcode.GEMM: _gemm, Opcode.GATHER: _gather, Opcode.COPY: _copy,
           Opcode.INTERACT: _interact}
_OP_IDX = {op: n for n, op in enumerate(_CHECKS)}


def _pre(m, i, pre):
    """Register ``pre`` (a :data:`_Pre`) from the instruction ``i``."""
    g, c, x = i.operands.gemm, i.operands.copy, i.operands.interact
    fl = isa.GemmFlags(i.header.flags)
    m.d.sync += [pre.m1.eq(g.m - 1),
                 pre.k1.eq(g.k - 1), pre.rows1.eq(c.rows - 1), pre.batch1.eq(x.batch - 1),
                 pre.nvec1.eq(x.n_vec - 1),
                 # C's row bytes: int8 with REQUANT, but ACC reads an int32 C_in
                 pre.c_row.eq(Mux(fl.requant & ~fl.acc, g.n, g.n << 2)),
                 pre.op_unit.eq(0), pre.op_idx.eq(0)]
    with m.Switch(i.header.opcode):
        for op, n in _OP_IDX.items():
            with m.Case(op):
                m.d.sync += [pre.op_unit.eq(1), pre.op_idx.eq(n)]


class InsnCheck(wiring.Component):
    """Decode-time checks of one instruction (see the module docstring).

    Ports
    -----
    inp : In(stream(FetchedLayout))
        An item that already carries an error passes through unchecked.
    out : Out(stream(FetchedLayout))
        The same item with ``error``/``detail`` (an :class:`~seedchip.isa.Operand`) set.
    abort : In(1)
        Drop the item in hand.

    Latency: 15 cycles from ``inp`` taken to ``out`` valid; one item at a time.
    """

    def __init__(self, *, limits, mem_bytes):
        self.limits = check_type("limits", limits, Limits)
        self.mem_bytes = check_mem_bytes(mem_bytes, 40, 8)
        super().__init__({
            "inp": In(stream.Signature(FetchedLayout)),
            "out": Out(stream.Signature(FetchedLayout)),
            "abort": In(1),
        })

    def _illegal(self, m, i):
        """``(fail, operand)`` of the opcode, header, flags and reserved-bit
        rules, each step registered (for Fmax; stable in cycle 5): the ORs of
        each opcode's reserved bits by 16-bit chunk (a 200-bit OR is four LUT
        levels), each opcode's region bits, the opcode's, then the first."""
        raw = i.as_value()
        wait_bad = Signal()
        m.d.sync += wait_bad.eq(i.header.wait[len(isa.Unit):].any())
        known_hdr_flg_opr = Signal(4)
        m.d.sync += known_hdr_flg_opr.eq(0)
        for op in Opcode:
            masks = isa.RESERVED_REGION_MASK[op]
            bad_flags = Const(0, 1)
            if op == Opcode.GEMM:
                fl = isa.GemmFlags(i.header.flags)
                bad_flags = Signal(name="bad_flags_gemm")
                m.d.sync += bad_flags.eq(fl.requant & ~fl.params)
            elif op == Opcode.GATHER:
                fl = isa.GatherFlags(i.header.flags)
                mode, bounds = fl.mode.as_value(), fl.bounds.as_value()
                bad_flags = Signal(name="bad_flags_gather")
                m.d.sync += bad_flags.eq((mode > max(x.value for x in PoolMode))
                                         | (bounds > max(x.value for x in BoundsMode))
                                         | (fl.weighted & (mode != PoolMode.SUM.value)))
            regions = []
            for region in (Operand.HEADER, Operand.FLAGS, Operand.OPERANDS):
                chunks = []
                for lo in range(0, len(raw), 16):
                    cm = masks[region] >> lo & 0xFFFF
                    if cm:
                        c = Signal(name=f"rsv_{op.name.lower()}_{region.name.lower()}_{lo}")
                        m.d.sync += c.eq((raw[lo:lo + 16] & cm) != 0)
                        chunks.append(c)
                regions.append(Cat(*chunks).any() if chunks else Const(0, 1))
            bits = Signal(3, name=f"ill_{op.name.lower()}")
            m.d.sync += bits.eq(Cat(regions[0] | wait_bad, regions[1] | bad_flags, regions[2]))
            with m.If(i.header.opcode == op):
                m.d.sync += known_hdr_flg_opr.eq(Cat(1, bits))
        known, hdr, flg, opr = known_hdr_flg_opr
        fail, operand = Signal(name="ill"), Signal(8, name="ill_op")
        m.d.sync += [x.eq(v) for x, v in zip(
            (fail, operand), _first([(Operand.OPCODE, ~known), (Operand.HEADER, hdr),
                                     (Operand.FLAGS, flg), (Operand.OPERANDS, opr)]))]
        return fail, operand

    def _classes(self, m, i, pre):
        """The first failing shape and alignment check (fail, operand) of the
        opcode: every opcode's checks into bits, every opcode's first failure,
        then the opcode's, each step registered (for Fmax; stable in cycle 6)."""
        firsts = {}
        for op, fn in _CHECKS.items():
            shape, align, _ = fn(i, pre, self.limits)
            name = op.name.lower()
            sb = Signal(len(shape), name=f"shape_{name}")
            ab = Signal(len(align), name=f"align_{name}")
            m.d.sync += [sb[j].eq(f) for j, (_, f) in enumerate(shape)]
            m.d.sync += [ab[j].eq(Const(en, 1) & (v[:3] != 0) if isinstance(en, int)
                                  else en & (v[:3] != 0))
                         for j, (_, en, v) in enumerate(align)]
            firsts[op] = []
            for cls, checks in (("shape", [(o, sb[j]) for j, (o, _) in enumerate(shape)]),
                                ("align", [(o, ab[j]) for j, (o, _, _) in enumerate(align)])):
                r = Signal(name=f"{cls}_{name}_fail"), Signal(8, name=f"{cls}_{name}_op")
                m.d.sync += [x.eq(v) for x, v in zip(r, _first(checks))]
                firsts[op].append(r)
        shape_r, align_r = (Signal(), Signal(8)), (Signal(), Signal(8))
        m.d.sync += [shape_r[0].eq(0), align_r[0].eq(0)]
        for op, (s, a) in firsts.items():
            with m.If(i.header.opcode == op):
                m.d.sync += [x.eq(v) for x, v in zip(shape_r + align_r, s + a)]
        return shape_r, align_r

    def _range_term(self, m, i, pre, k):
        """Extent check ``k`` of the opcode (``en`` 0 past its last)."""
        term = Signal(_RangeTerm)
        with m.Switch(Cat(k, pre.op_idx)):
            for op, fn in _CHECKS.items():
                for n, (o, en, base, a, b, c, d, tail) in enumerate(fn(i, pre, self.limits)[2]):
                    with m.Case(n + _N_RANGE * _OP_IDX[op]):
                        m.d.comb += [term.en.eq(pre.op_unit & en), term.operand.eq(o),
                                     term.base.eq(base), term.a.eq(a), term.b.eq(b),
                                     term.c.eq(c), term.d.eq(d), term.tail.eq(tail)]
        return term

    def _range_pipeline(self, m, term, issue, clear):
        """``base + a * b + c * d + tail > mem_bytes`` of the terms issued
        (:data:`_RANGE_LATENCY` stages); returns the first failing one (fail, operand).

        For Fmax every stage is one carry chain or one DSP: the multiplies are
        :class:`~.mac.Mul` (a MULT18X18D with its input and output registers on
        ECP5: Yosys leaves a plain ``*`` unregistered, ~4 ns of DSP between two
        routes), ``a * b`` as two 16 x 16 halves summed in the next stage."""
        r1 = Signal(_RangeTerm)
        m.d.sync += r1.eq(term)
        muls = {"lo": (r1.a, r1.b[:16]), "hi": (r1.a, r1.b[16:]), "cd": (r1.c, r1.d)}
        prods = {}
        for name, (x, y) in muls.items():
            mul = m.submodules[f"rng_mul_{name}"] = Mul(a_width=len(x) + 1, b_width=len(y) + 1)
            m.d.comb += [mul.a.eq(x), mul.b.eq(y)]            # zero-extended: unsigned
            prods[name] = mul.p.as_unsigned()[:len(x) + len(y)]
        lat = 1 + Mul.LATENCY                                 # issue -> products

        def delay(name, value, n, abort=False):
            """``value`` ``n`` cycles later (the valid bits dropped on ``abort``)."""
            for j in range(n):
                r = Signal.like(value, name=f"rng_{name}{j}")
                m.d.sync += r.eq(value)
                if abort:
                    with m.If(self.abort):
                        m.d.sync += r.eq(0)
                value = r
            return value

        ab, cdt = Signal(48), Signal(25)
        s1, end = Signal(49), Signal(50)
        gt = Signal()
        m.d.sync += [ab.eq(prods["lo"] + (prods["hi"] << 16)),
                     cdt.eq(prods["cd"] + delay("tail", r1.tail, lat - 1)),
                     s1.eq(delay("base", r1.base, lat) + ab),
                     end.eq(s1 + delay("cdt", cdt, 1)),
                     gt.eq(end > self.mem_bytes)]
        # ab (lat + 1), s1, end, gt: the verdict of a term issued at t is in gt at t + lat + 4
        v = delay("v", issue & term.en, lat + 4, abort=True)
        o = delay("op", r1.operand, lat + 3)
        fail, op = Signal(name="rng_fail"), Signal(8, name="rng_op")
        with m.If(clear):
            m.d.sync += fail.eq(0)
        with m.Elif(v & gt & ~fail):
            m.d.sync += [fail.eq(1), op.eq(o)]
        return fail, op

    def elaborate(self, platform):
        m = Module()
        inp, out = self.inp, self.out
        cur = Signal(FetchedLayout)
        i = cur.insn
        pre_r = Signal(_Pre)
        # n_vec * (n_vec - 1) / 2 of ``cur``: a DSP with its registers (valid from cycle 3 on)
        m.submodules.pairs_mul = pairs_mul = Mul(a_width=9, b_width=9)
        m.d.comb += [pairs_mul.a.eq(i.operands.interact.n_vec),
                     pairs_mul.b.eq(i.operands.interact.n_vec - 1)]
        pre = SimpleNamespace(pairs=pairs_mul.p.as_unsigned()[1:16],
                              **{name: pre_r[name] for name, _ in _Pre})
        busy = Signal()
        k = Signal(range(_FINAL + 2))       # cycles since the item was taken
        idx = Signal(range(_N_RANGE))       # extent terms issued
        done = Signal()                     # k == _FINAL (registered: it enables ``out``)
        take = inp.valid & inp.ready
        issue = busy & (k >= _ISSUE) & (k < _ISSUE + _N_RANGE)
        _pre(m, i, pre_r)
        ill = self._illegal(m, i)
        shape_r, align_r = self._classes(m, i, pre)
        term = self._range_term(m, i, pre, idx)
        rng_r = self._range_pipeline(m, term, issue, take)

        m.d.comb += inp.ready.eq(~busy & ~out.valid)
        m.d.sync += done.eq(busy & (k == _FINAL - 1))
        with m.If(out.valid & out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(take):
            m.d.sync += [cur.eq(inp.payload), k.eq(1), idx.eq(0), busy.eq(1)]
        with m.If(busy):
            m.d.sync += k.eq(k + 1)
        with m.If(issue):
            m.d.sync += idx.eq(idx + 1)
        with m.If(busy & done):
            m.d.sync += [busy.eq(0), out.valid.eq(1), out.payload.eq(cur)]
            with m.If(cur.error == ChipError.NONE):
                verdicts = [(*ill, ChipError.ILLEGAL), (*shape_r, ChipError.BAD_SHAPE),
                            (*align_r, ChipError.BAD_ALIGN), (*rng_r, ChipError.ADDR_RANGE)]
                for n, (fail, op, err) in enumerate(verdicts):
                    with (m.If if n == 0 else m.Elif)(fail):
                        m.d.sync += [out.payload.error.eq(err), out.payload.detail.eq(op)]
        with m.If(self.abort):
            m.d.sync += [out.valid.eq(0), busy.eq(0)]
        return m
