"""The gather engine's batch control: command, busy, error register, cycle counter.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from ..emb_protocol import BoundsMode, CmdLayout, COUNTER_WIDTH, GatherError, PoolMode

__all__ = ["BatchControl"]


class BatchControl(wiring.Component):
    """Takes a batch's command when the engine is idle and no error is held
    (nor ``hold``), holds it for the batch, and keeps ``busy`` until the
    pipeline is ``empty``; keeps the first error (a read error replaces an
    input error reported earlier in time) until ``clear``.

    Ports
    -----
    cmd : In(stream(CmdLayout))
    hold : In(1)
        Do not take a command (a descriptor write pending or in progress, the
        cache being emptied).
    start : Out(1)
        The command is taken this cycle.
    mode : Out(PoolMode); bounds : Out(BoundsMode); weighted, requant, bad : Out(1)
        The batch's command, from the cycle after ``start``; ``bad``: a
        reserved mode or bounds mode, or weights with a mode other than SUM.
    empty : In(1)
        Nothing of a batch left in the pipeline.
    busy, error_set : Out(1)
    clear : In(1)
    desc_err : In(1); desc_err_table : In(table_width)
    in_err : In(1); in_err_code : In(GatherError); in_err_bag, in_err_val : In(32)
    mem_err : In(1); mem_err_bag, mem_err_val : In(32)
        Error reports of this cycle: a refused descriptor, an input error, a read error.
    error : Out(GatherError); error_bag, error_index, cycles : Out(32)
    """

    def __init__(self, *, table_width):
        check_int("table_width", table_width, 1, 32)
        super().__init__({
            "cmd": In(stream.Signature(CmdLayout)),
            "hold": In(1),
            "start": Out(1),
            "mode": Out(PoolMode),
            "bounds": Out(BoundsMode),
            "weighted": Out(1),
            "requant": Out(1),
            "bad": Out(1),
            "empty": In(1),
            "busy": Out(1),
            "error_set": Out(1),
            "clear": In(1),
            "desc_err": In(1),
            "desc_err_table": In(table_width),
            "in_err": In(1),
            "in_err_code": In(GatherError),
            "in_err_bag": In(COUNTER_WIDTH),
            "in_err_val": In(COUNTER_WIDTH),
            "mem_err": In(1),
            "mem_err_bag": In(COUNTER_WIDTH),
            "mem_err_val": In(COUNTER_WIDTH),
            "error": Out(GatherError),
            "error_bag": Out(COUNTER_WIDTH),
            "error_index": Out(COUNTER_WIDTH),
            "cycles": Out(COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        busy, error_set = self.busy, self.error_set
        m.d.comb += [
            error_set.eq(self.error != GatherError.NONE),
            self.cmd.ready.eq(~busy & ~error_set & ~self.hold),
            self.start.eq(self.cmd.valid & self.cmd.ready),
        ]
        with m.If(self.start):
            p = self.cmd.payload
            m.d.sync += [
                self.mode.eq(p.mode), self.bounds.eq(p.bounds),
                self.weighted.eq(p.weighted), self.requant.eq(p.requant),
                # 3 is reserved in both enums
                self.bad.eq((p.mode.as_value() == 3) | (p.bounds.as_value() == 3)
                            | (p.weighted & (p.mode != PoolMode.SUM))),
            ]
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(self.empty):
            m.d.sync += busy.eq(0)
        m.d.sync += self.cycles.eq(self.cycles + busy)

        with m.If(self.clear):
            m.d.sync += [self.error.eq(GatherError.NONE), self.error_bag.eq(0),
                         self.error_index.eq(0)]
        with m.If(self.mem_err & (self.error != GatherError.MEM_ERROR)):
            m.d.sync += [self.error.eq(GatherError.MEM_ERROR), self.error_bag.eq(self.mem_err_bag),
                         self.error_index.eq(self.mem_err_val)]
        with m.Elif(self.in_err & ~error_set):
            m.d.sync += [self.error.eq(self.in_err_code), self.error_bag.eq(self.in_err_bag),
                         self.error_index.eq(self.in_err_val)]
        with m.Elif(self.desc_err & ~error_set):
            m.d.sync += [self.error.eq(GatherError.BAD_DESC), self.error_bag.eq(0),
                         self.error_index.eq(self.desc_err_table)]
        return m
