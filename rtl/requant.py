"""Post-processing: bias add and gemmlowp/TFLite requantization, pipelined."""

from amaranth.hdl import Module, Signal, signed, unsigned, Mux, Cat, Const
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .mac import Mul

__all__ = ["Requantizer", "RequantInLayout", "RequantOutLayout"]


RequantInLayout = data.StructLayout({
    "acc": signed(32),
    "bias": signed(32),
    "multiplier": signed(32),
    "shift": unsigned(5),
    #: 1: requantize and saturate; 0: raw ``wrap32(acc + bias)``
    "requant": unsigned(1),
    "relu": unsigned(1),
    #: carried through unchanged (stream framing)
    "last": unsigned(1),
})

RequantOutLayout = data.StructLayout({
    "data": signed(32),
    "last": unsigned(1),
})


class Requantizer(wiring.Component):
    """One element per cycle of::

        x = wrap32(acc + bias)
        raw:      out = relu ? max(x, 0) : x
        requant:  out = sat_int(relu ? max(z, 0) : z),
                  z   = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, multiplier), shift)

    bit-exact with gemmlowp for every int32 ``multiplier`` (the
    INT32_MIN * INT32_MIN case saturates to INT32_MAX) and ``shift`` 0..31.

    Ports
    -----
    i_valid, i : In
        An element; no backpressure.
    o_valid, o : Out
        The result :attr:`latency` cycles later.

    The 32x32 product is split into four 17x17 signed partial products, each
    one DSP with its own registers (:class:`Mul`), and the 64-bit sums are
    spread over separate stages so no path carries more than one wide adder.

    The raw value is not carried beside the datapath: in raw mode the
    datapath runs with ``multiplier`` 2**30 and ``shift`` 0, which gives
    ``y = round(x / 2)`` (half away from zero), and the last adder restores
    ``x = 2 * y - (x & 1)`` from the one bit carried. That saves a 32-bit
    delay line of 12 stages per requantizer (there are ten in the chip).
    """

    def __init__(self, *, out_width=8):
        if not isinstance(out_width, int) or isinstance(out_width, bool):
            raise TypeError(f"out_width must be a positive integer, not {out_width!r}")
        if not 2 <= out_width <= 32:
            raise ValueError(f"out_width must be in range 2..32, not {out_width!r}")
        self.out_width = out_width
        self.latency = 13 + Mul.LATENCY
        super().__init__({
            "i_valid": In(1),
            "i": In(RequantInLayout),
            "o_valid": Out(1),
            "o": Out(RequantOutLayout),
        })

    def elaborate(self, platform):
        m = Module()

        # Control rides along a delay line beside the datapath; of the raw
        # value only its lowest bit (see the class docstring).
        ctrl_layout = data.StructLayout({
            "valid": 1, "requant": 1, "relu": 1, "last": 1, "shift": 5,
            "lsb": 1, "ovf": 1,
        })

        def stage(prev, name):
            s = Signal(ctrl_layout, name=name)
            m.d.sync += s.eq(prev)
            return s

        # S1: register the inputs.
        s1 = Signal(RequantInLayout)
        v1 = Signal()
        m.d.sync += [s1.eq(self.i), v1.eq(self.i_valid)]

        # S2: x = acc + bias (wraps); raw mode: multiplier 2**30, shift 0.
        c2 = Signal(ctrl_layout)
        x2 = Signal(signed(32))
        mult2 = Signal(signed(32))
        x_sum = (s1.acc + s1.bias)[:32].as_signed()
        m.d.sync += [
            c2.valid.eq(v1), c2.requant.eq(s1.requant), c2.relu.eq(s1.relu),
            c2.last.eq(s1.last), c2.shift.eq(Mux(s1.requant, s1.shift, 0)),
            c2.lsb.eq(x_sum[0]),
            x2.eq(x_sum),
            mult2.eq(Mux(s1.requant, s1.multiplier, 1 << 30)),
        ]

        # S3-S4 (inside the DSPs): four partial products.
        # x = xh * 2**16 + xl, mult = mh * 2**16 + ml; xl, ml unsigned 16-bit.
        muls = {}
        for name, a, b in [
            ("ll", Cat(x2[:16], Const(0, 1)).as_signed(), Cat(mult2[:16], Const(0, 1)).as_signed()),
            ("lh", Cat(x2[:16], Const(0, 1)).as_signed(), mult2[16:].as_signed()),
            ("hl", x2[16:].as_signed(), Cat(mult2[:16], Const(0, 1)).as_signed()),
            ("hh", x2[16:].as_signed(), mult2[16:].as_signed()),
        ]:
            mul = Mul(a_width=17, b_width=17)
            m.submodules[f"mul_{name}"] = mul
            m.d.comb += [mul.a.eq(a), mul.b.eq(b)]
            # Each product is registered in the fabric as it leaves its DSP:
            # the DSP output route plus the 35-bit middle adder came to
            # 7.4 ns. This stage is why the latency is 13 + Mul.LATENCY.
            p_r = Signal.like(mul.p, name=f"p_{name}")
            m.d.sync += p_r.eq(mul.p)
            muls[name] = p_r
        c = c2
        for n in range(Mul.LATENCY + 1):
            c = stage(c, f"c_mul{n}")
            if n == 0:
                # The overflow flag for the saturating case, from the
                # registered sum (behind the adder it was a second carry chain).
                m.d.sync += c.ovf.eq((x2 == -(1 << 31)) & (mult2 == -(1 << 31)))

        # S5: middle sum.
        c5 = stage(c, "c5")
        mid = Signal(signed(35))
        ll5 = Signal(unsigned(32))
        hh5 = Signal(signed(32))
        m.d.sync += [mid.eq(muls["lh"] + muls["hl"]), ll5.eq(muls["ll"]), hh5.eq(muls["hh"])]

        # S6: low part of the product.
        c6 = stage(c5, "c6")
        low6 = Signal(signed(52))
        hh6 = Signal(signed(32))
        m.d.sync += [low6.eq((mid << 16) + ll5), hh6.eq(hh5)]

        # S7: the 64-bit product.
        c7 = stage(c6, "c7")
        prod = Signal(signed(64))
        m.d.sync += prod.eq((hh6 << 32) + low6)

        # S8: + nudge (1 << 30 for a non-negative product, 1 - (1 << 30) otherwise).
        c8 = stage(c7, "c8")
        nudged = Signal(signed(65))
        m.d.sync += nudged.eq(prod + Mux(prod[63], 1 - (1 << 30), 1 << 30))

        # S9: divide by 2**31 truncating toward zero = floor + (negative and
        # inexact); the OR-reduction of the 31 dropped bits gets its own stage.
        c9 = stage(c8, "c9")
        floor9 = Signal(signed(34))
        adj9 = Signal()
        m.d.sync += [floor9.eq(nudged[31:].as_signed()),
                     adj9.eq(nudged[64] & (nudged[:31] != 0))]

        # S10: the high word; the single overflow case saturates. The mask and
        # half of S11 are decoded here from the shift, a stage early, so S11's
        # shift bits only drive the shifter.
        c10 = stage(c9, "c10")
        y = Signal(signed(32))
        mask = Signal(unsigned(32))
        half = Signal(unsigned(32))
        m.d.sync += [
            y.eq(Mux(c9.ovf, (1 << 31) - 1, (floor9 + adj9)[:32].as_signed())),
            mask.eq(Cat(*[c9.shift > i for i in range(32)])),
            half.eq(Cat(*[c9.shift == i + 1 for i in range(32)])),
        ]

        # S11-S12: RoundingDivideByPOT, round half away from zero. For shift >= 1
        # "remainder > (mask >> 1) + negative" is "remainder >= half + negative"
        # with half = 2**(shift-1). The arithmetic shift is split over both
        # stages (by 8 * shift[3:5], then by shift[0:3]): as one 32-bit barrel
        # shifter behind the high-fanout shift bits it took 5 logic levels and
        # 7.7 ns of routing.
        c11 = stage(c10, "c11")
        coarse = Signal(signed(32))
        remainder = Signal(unsigned(32))
        half11 = Signal(unsigned(32))
        neg = Signal()
        m.d.sync += [
            coarse.eq(y >> Cat(Const(0, 3), c10.shift[3:5])),
            remainder.eq(y.as_unsigned() & mask),
            half11.eq(half),
            neg.eq(y[31]),
        ]

        # S12: the fine shift, and the rounding decision (one comparator).
        c12 = stage(c11, "c12")
        shifted12 = Signal(signed(32))
        rnd = Signal()
        m.d.sync += [
            shifted12.eq(coarse >> c11.shift[:3]),
            rnd.eq((c11.shift != 0) & Mux(neg, remainder > half11, remainder >= half11)),
        ]

        # S13: round (one adder), and the saturation flags of the rounded
        # value decided from the unrounded one and the rounding bit, so that
        # S14 is only multiplexers (as one stage, the high-bit trees behind
        # the adder took 6 logic levels).
        c13 = stage(c12, "c13")
        ow = self.out_width
        lo, hi = -(1 << (ow - 1)), (1 << (ow - 1)) - 1
        z = Signal(signed(33))
        z_neg, too_big, too_small = Signal(), Signal(), Signal()
        s = shifted12
        s_neg, s_high = s[31], s[ow - 1:]
        m.d.sync += [
            # raw mode: s = round(x / 2) and rnd = 0 (shift 0); x = 2 * s - lsb
            z.eq(Mux(c12.requant, s + rnd, (s << 1) - c12.lsb)),
            # z < 0: s < 0, unless s == -1 rounds up to 0
            z_neg.eq(s_neg & ~((s == -1) & rnd)),
            # z > hi: s > hi (non-negative with a high bit set), or s == hi rounded up
            too_big.eq((~s_neg & (s_high != 0)) | ((s == hi) & rnd)),
            # z < lo: s < lo (negative, not all high bits set), unless s == lo - 1 rounds up
            too_small.eq(s_neg & ~s_high.all() & ~((s == lo - 1) & rnd)),
        ]

        # S14: ReLU and saturation from the flags, or the raw value.
        sat = Mux(c13.relu & z_neg, 0,
                  Mux(too_big, hi, Mux(too_small, lo, z[:ow].as_signed())))
        raw = Mux(c13.relu & z[31], 0, z[:32])
        m.d.sync += [
            self.o_valid.eq(c13.valid),
            self.o.last.eq(c13.last),
            self.o.data.eq(Mux(c13.requant, sat, raw)),
        ]
        return m
