"""The gather engine's output: requantizers, output FIFO and its register.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_type
from ..emb_protocol import pooled_layout
from ..gather_params import GatherParams
from .gather_divider import drain_ctl_layout
from .requant import Requantizer

__all__ = ["PooledOutput"]


class PooledOutput(wiring.Component):
    """Final values -> requantizer per lane (fixed latency) -> output FIFO ->
    a register -> ``pooled``.

    ``params.drain_width`` lanes wide: with fewer than ``lanes``, a beat
    arrives in ``drain_every`` parts on consecutive cycles (first elements
    first, ``last`` and ``batch_last`` on its last part), and the parts are
    gathered into the beat the FIFO takes.

    The FIFO has no backpressure towards the values: the producer holds a
    credit (an output FIFO slot) for every value in flight. ``depth``
    (slots) is ``in_latency`` (cycles from taking a credit to ``i_*``) + the
    requantizer's latency + 8, so a full-rate stream never runs out of
    credits while ``pooled`` is taken every cycle.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); ``in_latency``: cycles from taking a
    credit to ``i_*`` (a beat's first part), 0..64.

    Ports
    -----
    i_ctl : In(drain_ctl_layout(params)); i_val : In(ArrayLayout(signed(32), drain_width))
        A word (or part) of final values when ``i_ctl.v`` (requantized when
        ``i_ctl.requant``).
    pooled : Out(stream(pooled_layout(lanes)))
        ``rq_latency`` + 1 (the FIFO's write) + the FIFO's latency + 1 (the
        register) cycles after a beat's last part at the earliest.
    """

    def __init__(self, params, *, in_latency):
        self.params = check_type("params", params, GatherParams)
        check_int("in_latency", in_latency, 0, 64)
        self._rqs = [Requantizer(out_width=8) for _ in range(params.drain_width)]
        #: requantizer latency (cycles)
        self.rq_latency = self._rqs[0].latency
        #: output FIFO slots = credits
        self.depth = in_latency + params.drain_every - 1 + self.rq_latency + 8
        super().__init__({
            "i_ctl": In(drain_ctl_layout(params)),
            "i_val": In(data.ArrayLayout(signed(32), params.drain_width)),
            "pooled": Out(stream.Signature(pooled_layout(lanes=params.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        L, R, P = self.params.lanes, self.params.drain_width, self.params.drain_every
        rqs = self._rqs
        rq_latency = self.rq_latency
        f_ctl, f_val = self.i_ctl, self.i_val
        layout = self.pooled.payload.shape()
        for l in range(R):
            rq = rqs[l]
            m.submodules[f"requant{l}"] = rq
            m.d.comb += [
                rq.i_valid.eq(f_ctl.v),
                rq.i.acc.eq(f_val[l]),
                rq.i.bias.eq(0),
                rq.i.multiplier.eq(f_ctl.multiplier),
                rq.i.shift.eq(f_ctl.shift),
                rq.i.requant.eq(f_ctl.requant),
                rq.i.relu.eq(0),
                rq.i.last.eq(f_ctl.last),
            ]
        # batch_last rides beside the requantizer
        bl_line = Signal(rq_latency)
        m.d.sync += bl_line.eq(Cat(f_ctl.batch_last, bl_line[:-1]))

        m.submodules.out_fifo = ofifo = SyncFIFOBuffered(width=layout.size, depth=self.depth)
        o_w = layout(ofifo.w_data)
        # a beat's parts: the earlier ones held (shifted down as they come),
        # the last one straight from the requantizers
        beat_end = rqs[0].o_valid
        held = []
        if P > 1:
            held = [Signal(signed(32), name=f"part_l{l}") for l in range(L - R)]
            part = Signal(range(P))
            with m.If(rqs[0].o_valid):
                m.d.sync += part.eq(Mux(part == P - 1, 0, part + 1))
                m.d.sync += [held[l].eq(held[l + R]) for l in range(L - 2 * R)]
                m.d.sync += [held[L - 2 * R + l].eq(rqs[l].o.data) for l in range(R)]
            beat_end = rqs[0].o_valid & (part == P - 1)
        m.d.comb += [
            ofifo.w_en.eq(beat_end),
            o_w.last.eq(rqs[0].o.last),
            o_w.batch_last.eq(bl_line[-1]),
        ]
        # The FIFO's storage is a block RAM whose read port is its output
        # register, without the DP16KD's own output register: 5.8 ns clock
        # to out. A pipeline register behind it (full rate: it takes a beat
        # whenever it is empty or its beat leaves) keeps that off the
        # consumer's logic.
        out_v = Signal()
        out_d = Signal(layout.size)
        out_take = Signal()
        m.d.comb += [
            out_take.eq(~out_v | self.pooled.ready),
            ofifo.r_en.eq(out_take),
            self.pooled.valid.eq(out_v),
            self.pooled.payload.eq(out_d),
        ]
        with m.If(out_take):
            m.d.sync += [out_v.eq(ofifo.r_rdy), out_d.eq(ofifo.r_data)]
        for l in range(L - R):
            m.d.comb += o_w.data[l].eq(held[l])
        for l in range(R):
            m.d.comb += o_w.data[L - R + l].eq(rqs[l].o.data)
        return m
