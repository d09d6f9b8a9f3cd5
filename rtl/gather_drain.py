"""The gather engine's drain control (stage E): finished banks -> the divider.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_type
from ..gather_params import GatherParams
from .gather_divider import drain_ctl_layout
from .gather_walker import meta_layout

__all__ = ["DrainControl"]


class DrainControl(wiring.Component):
    """Keeps the accumulator banks' state and drains a finished bank, one
    word per cycle, in bag order, while D fills the others.

    A bank is ``full`` from its bag's last beat in G (``claim``) until it is
    drained, ``done`` from its bag's last write in D. E takes the bag's
    parameters from ``meta``; an aborted or discarded bag is dropped in one
    cycle. Every word in the drain pipeline holds an output FIFO slot (a
    credit, ``out_depth`` of them, returned by ``taken``), so the fixed-latency
    pipeline never stalls; full rate needs as many slots as cycles from a
    drain read to the FIFO.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); ``banks``: accumulator banks, 2..16;
    ``out_depth``: output FIFO slots (credits), 1..1024.

    Ports
    -----
    claim : In(1); claim_bank : In(range(banks))
        A bag's last beat leaves G into ``claim_bank``.
    full : Out(banks)
    done_v : In(1); done_bank : In(range(banks)); done_disc : In(1)
        A bag's last write in D, and whether the bag is discarded.
    meta : In(stream(meta_layout(params)))
    taken : In(1)
        A ``pooled`` beat is taken (a credit returns).
    drain_k : Out(range(max_beats)); drain_bank : Out(range(banks))
        The accumulator word to read.
    o_ctl : Out(drain_ctl_layout(params)); o_base : Out(range(max_beats * lanes + 1));
    o_dim : Out(range(max_dim + 1))
        E1: the word read's bag parameters and its first element, registered
        (the word arrives from the banks in the same cycle).
    idle : Out(1)
        No bank in use, no credit held.
    """

    def __init__(self, params, *, banks, out_depth):
        self.params = check_type("params", params, GatherParams)
        self.banks = check_int("banks", banks, 2, 16)
        self.out_depth = check_int("out_depth", out_depth, 1, 1024)
        max_beats, max_dim = params.max_beats, params.max_dim
        super().__init__({
            "claim": In(1),
            "claim_bank": In(range(banks)),
            "full": Out(banks),
            "done_v": In(1),
            "done_bank": In(range(banks)),
            "done_disc": In(1),
            "meta": In(stream.Signature(meta_layout(params))),
            "taken": In(1),
            "drain_k": Out(range(max_beats)),
            "drain_bank": Out(range(banks)),
            "o_ctl": Out(drain_ctl_layout(params)),
            "o_base": Out(range(max_beats * params.lanes + 1)),
            "o_dim": Out(range(max_dim + 1)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, NB, out_depth = self.params.lanes, self.banks, self.out_depth
        max_beats = self.params.max_beats
        full = self.full
        done = Signal(NB)     # bank written completely
        disc = Signal(NB)     # bank's bag is discarded
        full_set = Signal(NB)
        full_clr = Signal(NB)
        done_set = Signal(NB)
        with m.If(self.claim):
            m.d.comb += full_set.eq(Const(1, NB) << self.claim_bank)
        with m.If(self.done_v):
            m.d.comb += done_set.eq(Const(1, NB) << self.done_bank)
            for b in range(NB):
                with m.If(self.done_bank == b):
                    m.d.sync += disc[b].eq(self.done_disc)

        meta = self.meta.payload
        e_bank = Signal(range(NB))
        e_w = Signal(range(max_beats))
        e_base = Signal(range(max_beats * L + 1))
        out_pending = Signal(range(out_depth + 1))
        e_issue = Signal()
        e_ready = Signal()
        m.d.comb += e_ready.eq(self.meta.valid & done.bit_select(e_bank, 1))
        e_last = e_w == meta.beats - 1
        with m.If(e_ready):
            with m.If(meta.abort | disc.bit_select(e_bank, 1)):
                m.d.comb += [self.meta.ready.eq(1), full_clr.eq(Const(1, NB) << e_bank)]
                m.d.sync += e_bank.eq(e_bank + 1)
            with m.Elif(out_pending < out_depth):
                m.d.comb += e_issue.eq(1)
                with m.If(e_last):
                    m.d.comb += [self.meta.ready.eq(1), full_clr.eq(Const(1, NB) << e_bank)]
                    m.d.sync += [e_bank.eq(e_bank + 1), e_w.eq(0), e_base.eq(0)]
                with m.Else():
                    m.d.sync += [e_w.eq(e_w + 1), e_base.eq(e_base + L)]
        m.d.sync += [
            full.eq((full | full_set) & ~full_clr),
            done.eq((done | done_set) & ~full_clr),
            out_pending.eq(out_pending + e_issue - self.taken),
        ]
        m.d.comb += [self.drain_k.eq(e_w), self.drain_bank.eq(e_bank)]

        # E1: the word read, its bag's parameters
        e1 = self.o_ctl
        m.d.sync += [
            e1.v.eq(e_issue), e1.n.eq(meta.n), e1.mean.eq(meta.mean), e1.requant.eq(meta.requant),
            e1.multiplier.eq(meta.multiplier), e1.shift.eq(meta.shift), e1.last.eq(e_last),
            e1.batch_last.eq(e_last & meta.batch_last), self.o_base.eq(e_base),
            self.o_dim.eq(meta.dim),
        ]
        m.d.comb += self.idle.eq((full == 0) & (done == 0) & (out_pending == 0))
        return m
