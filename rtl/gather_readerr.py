"""The gather engine's D-stage read-error check: ``MEM_ERROR`` and discarded bags.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..emb_protocol import COUNTER_WIDTH
from ..gather_params import GatherParams
from .gather_accum import beat_ctl_layout

__all__ = ["ReadErrorCheck"]


class ReadErrorCheck(wiring.Component):
    """Watches the beats entering D (D1): the first beat of a batch whose
    read came back with ``err`` reports ``MEM_ERROR`` with its bag (counted
    from the batch's start) and index; its bag and every later bag of the
    batch are discarded (their banks are not drained).

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields).

    Ports
    -----
    i : In(beat_ctl_layout(params)); i_v, i_err : In(1)
        The beat in D1 and whether its read came back with ``err``.
    disc : Out(1)
        The beat's bag is discarded (a read error in the batch so far, or an
        aborted bag).
    err : Out(1); err_bag, err_val : Out(32)
        ``MEM_ERROR`` this cycle: its bag and index.
    """

    def __init__(self, params):
        check_type("params", params, GatherParams)
        super().__init__({
            "i": In(beat_ctl_layout(params)),
            "i_v": In(1),
            "i_err": In(1),
            "disc": Out(1),
            "err": Out(1),
            "err_bag": Out(COUNTER_WIDTH),
            "err_val": Out(COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        d1, d1_v, d1_err = self.i, self.i_v, self.i_err
        mem_fail = Signal()
        d_bagcnt = Signal(COUNTER_WIDTH)
        with m.If(d1_v):
            with m.If(d1_err & ~mem_fail):
                m.d.comb += [self.err.eq(1), self.err_bag.eq(d_bagcnt), self.err_val.eq(d1.index)]
            with m.If(d1.batch_end):
                m.d.sync += [mem_fail.eq(0), d_bagcnt.eq(0)]
            with m.Else():
                with m.If(d1_err):
                    m.d.sync += mem_fail.eq(1)
                with m.If(d1.bag_end):
                    m.d.sync += d_bagcnt.eq(d_bagcnt + 1)
        m.d.comb += self.disc.eq(mem_fail | d1_err | d1.abort)
        return m
