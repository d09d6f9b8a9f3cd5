"""The gather engine's mean divider: pooled sums -> MEAN / SUM / MAX values.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_type
from ..gather_params import GatherParams

__all__ = ["MeanDivider", "drain_ctl_layout"]


def drain_ctl_layout(params):
    """What travels beside a drained word: its bag's parameters and flags."""
    return data.StructLayout({
        "v": 1, "n": range(params.max_bag + 1), "mean": 1, "requant": 1, "multiplier": signed(32),
        "shift": unsigned(5), "last": 1, "batch_last": 1,
    })


class MeanDivider(wiring.Component):
    """Per lane: 0 past ``dim`` or for an empty bag, else the MEAN of the sum
    (``ctl.mean``) or the raw value (SUM, MAX).

    MEAN is ``sign(s) * floor((2|s| + n) / (2n))``, an 8-stage restoring
    divider: ``|s| <= 128 n`` makes the quotient at most 128 (8 bits).

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); ``acc_width``: accumulator bits
    (``AccumulatorBanks.acc_width``), 2..32. It is ``params.drain_width`` lanes wide
    (``width`` below): a word, or a part of one (:class:`~.gather_drain.DrainSerializer`).

    Ports
    -----
    i_ctl : In(drain_ctl_layout(params)); i_base : In(range(max_beats * lanes + 1));
    i_dim : In(range(max_dim + 1)); i_acc : In(ArrayLayout(signed(acc_width), width))
        A drained word or part (``i_ctl.v``): its bag parameters, its first element's
        number and the row length, every cycle.
    o_ctl : Out(drain_ctl_layout(params)); o_val : Out(ArrayLayout(signed(32), width))
        The word's final values, ``LATENCY`` cycles later (no backpressure).
    """

    #: cycles from ``i_*`` to ``o_*`` (dv0, 8 divider stages, the final value)
    LATENCY = 10

    def __init__(self, params, *, acc_width):
        self.params = check_type("params", params, GatherParams)
        self.acc_width = check_int("acc_width", acc_width, 2, 32)
        L, W = params.lanes, params.drain_width
        ctl = drain_ctl_layout(params)
        super().__init__({
            "i_ctl": In(ctl),
            "i_base": In(range(params.max_beats * L + 1)),
            "i_dim": In(range(params.max_dim + 1)),
            "i_acc": In(data.ArrayLayout(signed(acc_width), W)),
            "o_ctl": Out(ctl),
            "o_val": Out(data.ArrayLayout(signed(32), W)),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.params.drain_width
        ctl_layout = self.i_ctl.shape()
        e1, e1_base, e1_dim = self.i_ctl, self.i_base, self.i_dim
        # Mean divider: q = floor(N / D), N = 2|s| + n, D = 2n, q <= 128 (8 bits).
        nw = (257 * self.params.max_bag).bit_length()
        lane_layout = data.StructLayout({
            "s": signed(32), "zero": 1, "neg": 1, "r": unsigned(nw), "q": unsigned(8),
        })
        stage_ctl = Signal(ctl_layout, name="dv0_ctl")
        stage_d = Signal(unsigned(nw), name="dv0_d")
        stage = [Signal(lane_layout, name=f"dv0_lane{l}") for l in range(L)]
        m.d.sync += [stage_ctl.eq(e1), stage_d.eq(e1.n << 1)]
        for l in range(L):
            s = self.i_acc[l]
            mag = Mux(s < 0, -s, s)
            m.d.sync += [
                stage[l].s.eq(s),
                stage[l].zero.eq((e1.n == 0) | (e1_base + l >= e1_dim)),
                stage[l].neg.eq(s < 0),
                stage[l].r.eq((mag << 1) + e1.n),
                stage[l].q.eq(0),
            ]
        for k in reversed(range(8)):
            nctl = Signal(ctl_layout, name=f"dv{8 - k}_ctl")
            nd = Signal(unsigned(nw), name=f"dv{8 - k}_d")
            nst = [Signal(lane_layout, name=f"dv{8 - k}_lane{l}") for l in range(L)]
            m.d.sync += [nctl.eq(stage_ctl), nd.eq(stage_d)]
            for l in range(L):
                trial = Signal(signed(nw + 9), name=f"dv{8 - k}_trial{l}")
                m.d.comb += trial.eq(stage[l].r - (stage_d << k))
                m.d.sync += [nst[l].s.eq(stage[l].s), nst[l].zero.eq(stage[l].zero),
                             nst[l].neg.eq(stage[l].neg)]
                with m.If(trial >= 0):
                    m.d.sync += [nst[l].r.eq(trial), nst[l].q.eq(stage[l].q | (1 << k))]
                with m.Else():
                    m.d.sync += [nst[l].r.eq(stage[l].r), nst[l].q.eq(stage[l].q)]
            stage_ctl, stage_d, stage = nctl, nd, nst
        # Final value, registered (the requantizers take it)
        f_ctl, f_val = self.o_ctl, self.o_val
        m.d.sync += f_ctl.eq(stage_ctl)
        for l in range(L):
            st = stage[l]
            q = Cat(st.q, Const(0, 1)).as_signed()
            m.d.sync += f_val[l].eq(Mux(st.zero, 0,
                                        Mux(stage_ctl.mean, Mux(st.neg, -q, q), st.s)))
        return m
