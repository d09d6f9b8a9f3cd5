"""The gather engine's drain control (stage E): finished banks -> the divider.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_type
from ..gather_params import GatherParams
from .gather_divider import drain_ctl_layout
from .gather_walker import meta_layout

__all__ = ["DrainControl", "DrainSerializer"]


class DrainControl(wiring.Component):
    """Keeps the accumulator banks' state and drains a finished bank, one
    word per cycle (one every ``params.drain_every`` cycles, for a drain
    narrower than a word: :class:`DrainSerializer`), in bag order, while D
    fills the others.

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
        every = self.params.drain_every
        m.d.comb += e_ready.eq(self.meta.valid & done.bit_select(e_bank, 1))
        e_gap = Const(0, 1)                     # cycles until a word may issue again
        if every > 1:
            e_gap = Signal(range(every))
            with m.If(e_issue):
                m.d.sync += e_gap.eq(every - 1)
            with m.Elif(e_gap != 0):
                m.d.sync += e_gap.eq(e_gap - 1)
        e_last = e_w == meta.beats - 1
        with m.If(e_ready):
            with m.If(meta.abort | disc.bit_select(e_bank, 1)):
                m.d.comb += [self.meta.ready.eq(1), full_clr.eq(Const(1, NB) << e_bank)]
                m.d.sync += e_bank.eq(e_bank + 1)
            with m.Elif((out_pending < out_depth) & (e_gap == 0)):
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


class DrainSerializer(wiring.Component):
    """A drained word of ``lanes`` sums -> ``drain_width`` of them a cycle,
    for ``drain_every`` cycles (its parts, first elements first), so that
    the mean divider and the requantizers behind it are ``drain_width``
    lanes wide. :class:`DrainControl` issues a word every ``drain_every``
    cycles at most, so a word never meets the previous one's parts.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams`;
    ``acc_width``: accumulator bits, 2..32.

    Ports
    -----
    i_ctl : In(drain_ctl_layout(params)); i_base : In(range(max_beats * lanes + 1));
    i_dim : In(range(max_dim + 1)); i_acc : In(ArrayLayout(signed(acc_width), lanes))
        A drained word (``i_ctl.v``), as :class:`DrainControl` and the banks give it.
    o_ctl, o_base, o_dim : the same layouts; o_acc : Out(ArrayLayout(signed(acc_width), drain_width))
        Part ``k`` of the word ``LATENCY + k`` cycles later: its first
        element's number in ``o_base``; ``last`` and ``batch_last`` on the
        word's last part only.
    """

    #: cycles from a word to its first part
    LATENCY = 1

    def __init__(self, params, *, acc_width):
        self.params = check_type("params", params, GatherParams)
        self.acc_width = check_int("acc_width", acc_width, 2, 32)
        L, R = params.lanes, params.drain_width
        ctl = drain_ctl_layout(params)
        base, dim = range(params.max_beats * L + 1), range(params.max_dim + 1)
        super().__init__({
            "i_ctl": In(ctl), "i_base": In(base), "i_dim": In(dim),
            "i_acc": In(data.ArrayLayout(signed(acc_width), L)),
            "o_ctl": Out(ctl), "o_base": Out(base), "o_dim": Out(dim),
            "o_acc": Out(data.ArrayLayout(signed(acc_width), R)),
        })

    def elaborate(self, platform):
        m = Module()
        L, R, P = self.params.lanes, self.params.drain_width, self.params.drain_every
        sh = Signal(data.ArrayLayout(signed(self.acc_width), L))     # the word, shifted by parts
        ctl = Signal(self.i_ctl.shape())
        left = Signal(range(P))                                       # parts after this one
        with m.If(self.i_ctl.v):
            m.d.sync += [sh.eq(self.i_acc), ctl.eq(self.i_ctl), left.eq(P - 1),
                         self.o_base.eq(self.i_base), self.o_dim.eq(self.i_dim)]
        with m.Elif(ctl.v):
            m.d.sync += [self.o_base.eq(self.o_base + R), left.eq(left - 1)]
            m.d.sync += [sh[l].eq(sh[l + R]) for l in range(L - R)]
            with m.If(left == 0):
                m.d.sync += ctl.v.eq(0)
        final = left == 0
        m.d.comb += [
            self.o_ctl.eq(ctl),
            self.o_ctl.last.eq(ctl.last & final),
            self.o_ctl.batch_last.eq(ctl.batch_last & final),
        ]
        m.d.comb += [self.o_acc[l].eq(sh[l]) for l in range(R)]
        return m
