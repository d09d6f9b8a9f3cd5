"""The gather engine's stage G: tags + beats -> D (cache fill and read, hazards).

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int, check_type
from ..gather_params import GatherParams
from .bufmem import BufferRAM
from .gather_accum import beat_ctl_layout
from .gather_gearbox import beat_layout
from .gather_issue import tag_layout

__all__ = ["BeatSequencer"]


class BeatSequencer(wiring.Component):
    """Takes tags in order, so hits and misses keep lookup order: a miss's
    tag takes its beat from the gearbox and writes it into the row's cache
    line (the fill); a hit's tag is expanded into its row's beats read from
    the cache, one per cycle. Every fill to a line was issued before any hit
    that saw its key, so a hit always reads a completed fill.

    A beat goes to the bag's accumulator bank (``bank``, the banks used in
    turn); a bag's first beat waits until its bank is free (``full``).
    D's read-modify-write sees the write of the beat three ahead (transparent
    read port) but not those of the two just ahead: a beat waits while one of
    the two beats issued before it goes to its accumulator word (rows of one
    or two beats in a bag).

    G's beat is registered (D0); with the cache the beat then waits for the
    cache's block RAM read (``BufferRAM.LATENCY`` cycles after G) in D0
    stages and the cache's output is registered with it into D1. Without
    the cache D1 is D0.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); ``banks``: accumulator banks, 2..16.

    Ports
    -----
    tags : In(stream(tag_layout(params))); beats : In(stream(beat_layout(params)))
    full : In(banks)
        Banks claimed by a bag (set at its ``bag_end`` beat until drained).
    claim : Out(1); bank : Out(range(banks))
        A bag's last beat leaves G this cycle, into ``bank`` (the next bag
        takes the next bank).
    o : Out(beat_ctl_layout(params)); o_v, o_err : Out(1); o_data : Out(8 * lanes);
    o_bank : Out(range(banks))
        The beat in D1 (no backpressure), and whether its memory read came
        back with ``err``. Latency from G: 1 cycle, 1 + ``BufferRAM.LATENCY``
        with the cache.
    idle : Out(1)
        No beat in D0 or D1.
    """

    def __init__(self, params, *, banks):
        self.params = check_type("params", params, GatherParams)
        self.banks = check_int("banks", banks, 2, 16)
        super().__init__({
            "tags": In(stream.Signature(tag_layout(params))),
            "beats": In(stream.Signature(beat_layout(params))),
            "full": In(banks),
            "claim": Out(1),
            "bank": Out(range(banks)),
            "o": Out(beat_ctl_layout(params)),
            "o_v": Out(1),
            "o_data": Out(8 * params.lanes),
            "o_err": Out(1),
            "o_bank": Out(range(banks)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L, max_beats = p.lanes, p.max_beats
        cache = p.cache_rows > 0
        kbits = ceil_log2(max_beats)
        d_bank = self.bank
        tag = self.tags.payload
        gbeat = self.beats.payload
        bank_free = ~self.full.bit_select(d_bank, 1)
        g_go = Signal()
        g_k = Signal(range(max_beats))       # beat of a hit being read out
        g_hit_last = Signal()
        g_bag_end = Signal()
        g_hazard = Signal()
        beat = gbeat.data
        m.d.comb += [
            g_go.eq(self.tags.valid & bank_free & (~tag.has_resp | self.beats.valid)
                    & ~g_hazard),
            self.beats.ready.eq(g_go & tag.has_resp),
            g_hit_last.eq(g_k == tag.beats - 1),
            self.tags.ready.eq(g_go & (~tag.hit | g_hit_last)),
            g_bag_end.eq(tag.bag_end & (~tag.hit | g_hit_last)),
        ]
        with m.If(g_go & tag.hit):
            m.d.sync += g_k.eq(Mux(g_hit_last, 0, g_k + 1))
        g_k_cur = Mux(tag.hit, g_k, tag.k)
        hz = [Signal(1 + len(g_k_cur) + len(d_bank), name=f"g_hz{i}") for i in range(2)]  # v, k, bank
        hz_now = Cat(g_go & (tag.has_resp | tag.hit), g_k_cur, d_bank)
        m.d.sync += [hz[0].eq(hz_now), hz[1].eq(hz[0])]
        m.d.comb += g_hazard.eq(Cat(h[0] & (h[1:] == Cat(g_k_cur, d_bank)) for h in hz).any())
        m.d.comb += self.claim.eq(g_go & g_bag_end)
        with m.If(g_go & g_bag_end):
            m.d.sync += d_bank.eq(d_bank + 1)
        if cache:
            # The lines: BufferRAM (block RAMs with registered inputs and, on
            # ECP5, their output registers on: 32 of them spread over the die,
            # whose bare clock-to-out plus the route back took 12 ns).
            m.submodules.cache_data = cdata = BufferRAM(shape=unsigned(8 * L),
                                                        depth=p.cache_rows << kbits)
            m.d.comb += [
                cdata.w_addr.eq(Cat(tag.k, tag.line) if kbits else tag.line),
                cdata.w_data.eq(beat),
                cdata.w_en.eq(g_go & tag.has_resp),
                cdata.r_addr.eq(Cat(g_k, tag.line) if kbits else tag.line),
            ]

        d1_layout = self.o.shape()
        d1, d1_v, d1_data, d1_err, d1_bank = self.o, self.o_v, self.o_data, self.o_err, self.o_bank
        # With the cache a stage D0 comes first: the cache's block RAM output
        # is registered (with the miss data beside it) before the multiply.
        g1 = Signal(d1_layout, name="d0" if cache else None)
        g1_v = Signal(name="d0_v" if cache else None)
        g1_data = Signal(8 * L, name="d0_data" if cache else None)
        g1_err = Signal(name="d0_err" if cache else None)
        g1_bank = Signal.like(d_bank, name="d0_bank" if cache else None)
        # (captured every cycle: g1_v says whether it is a beat; g_go's fanout
        # stays small)
        m.d.sync += g1_v.eq(g_go)
        m.d.sync += [
            g1.has_data.eq(tag.has_resp | tag.hit), g1.hit.eq(tag.hit),
            g1.k.eq(Mux(tag.hit, g_k, tag.k)), g1.init.eq(tag.init),
            g1.bag_end.eq(g_bag_end), g1.batch_end.eq(tag.batch_end & g_bag_end),
            g1.abort.eq(tag.abort), g1.is_max.eq(tag.is_max), g1.weight.eq(tag.weight),
            g1.index.eq(tag.index),
            g1_data.eq(beat),
            g1_err.eq(tag.has_resp & gbeat.err),
            g1_bank.eq(d_bank),
        ]
        # With the cache, the beat waits for the cache's read (BufferRAM.LATENCY
        # cycles after G) in D0 stages.
        d0_stages = []
        if cache:
            gq, gq_v, gq_err, gq_bank, gq_data = g1, g1_v, g1_err, g1_bank, g1_data
            for i in range(BufferRAM.LATENCY - 1):
                nq = Signal(d1_layout, name=f"d0_{i + 1}")
                nq_v = Signal(name=f"d0_{i + 1}_v")
                nq_err = Signal(name=f"d0_{i + 1}_err")
                nq_bank = Signal.like(d_bank, name=f"d0_{i + 1}_bank")
                nq_data = Signal(8 * L, name=f"d0_{i + 1}_data")
                m.d.sync += [nq.eq(gq), nq_v.eq(gq_v), nq_err.eq(gq_err), nq_bank.eq(gq_bank),
                             nq_data.eq(gq_data)]
                d0_stages.append(nq_v)
                gq, gq_v, gq_err, gq_bank, gq_data = nq, nq_v, nq_err, nq_bank, nq_data
            m.d.sync += [d1_v.eq(gq_v), d1.eq(gq), d1_err.eq(gq_err), d1_bank.eq(gq_bank),
                         d1_data.eq(Mux(gq.hit, cdata.r_data, gq_data))]
        else:
            m.d.comb += [d1_v.eq(g1_v), d1.eq(g1), d1_err.eq(g1_err), d1_bank.eq(g1_bank),
                         d1_data.eq(g1_data)]
        m.d.comb += self.idle.eq(~g1_v & ~Cat(*d0_stages).any() & ~d1_v)
        return m
