"""The gather engine's issuer (stage C): lookups -> word requests + tags.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..checks import check_type
from ..gather_params import GatherParams
from .gather_gearbox import word_entry_layout
from .gather_walker import lookup_flags, lookup_layout

__all__ = ["Issuer", "checked_layout", "tag_layout"]


def checked_layout(params):
    """A lookup with its hit check's outcome (S2 -> C): hit or miss, its line."""
    return data.StructLayout({
        "lk": lookup_layout(params),
        "hit": 1,
        "line": unsigned(exact_log2(params.cache_rows) if params.cache_rows else 0),
    })


def tag_layout(params):
    """A tag (C -> G): one beat of a miss, a whole hit, or a bag end with no data."""
    max_beats = params.max_beats
    return data.StructLayout({
        "has_resp": 1,        # a miss's beat k: wait for it from the gearbox
        "hit": 1,             # a cache hit: `beats` beats from cache line `line`
        "k": range(max_beats),
        "beats": range(max_beats + 1),
        "line": range(max(1, params.cache_rows)),
        **lookup_flags(params),
    })


class Issuer(wiring.Component):
    """C0 holds the lookup being issued (a register, so that the cache key,
    read from block RAM when the lookup is loaded, lines up with it). A hit
    pushes one tag and no request, in one cycle; a miss issues the lookup's
    ``pitch`` word reads back to back, one per cycle, pushing one tag per beat
    (at the beat's last word) into the tag FIFO and one entry per read into
    the word FIFO (``inflight`` entries each; the word FIFO bounds the reads
    in flight). A lookup with no row pushes one tag with no read.

    Word requests leave through a 4-entry FIFO: C sees its (registered) room,
    not the memory's combinational ready.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields).

    Ports
    -----
    lookups : In(stream(checked_layout(params)))
        Loaded into C0 when C0 is empty or issues its last word this cycle.
        Without the cache (``cache_rows`` 0) ``hit`` and ``line`` are ignored.
    req : Out(stream(unsigned(addr_width)))
        Word addresses to read.
    tags : Out(stream(tag_layout(params))); words : Out(stream(word_entry_layout(params)))
        From the tag and word FIFOs (registered outputs).
    idle : Out(1)
        C0 and the three FIFOs are empty.
    """

    #: request FIFO entries
    REQ_DEPTH = 4

    def __init__(self, params):
        self.params = check_type("params", params, GatherParams)
        self.lookup_layout = lookup_layout(params)
        self.tag_layout = tag_layout(params)
        super().__init__({
            "lookups": In(stream.Signature(checked_layout(params))),
            "req": Out(stream.Signature(unsigned(params.addr_width))),
            "tags": Out(stream.Signature(self.tag_layout)),
            "words": Out(stream.Signature(word_entry_layout(params))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        R = p.ratio
        tag_layout_, lk_layout = self.tag_layout, self.lookup_layout
        m.submodules.tags = tagf = SyncFIFOBuffered(width=tag_layout_.size, depth=p.inflight)
        tag_w = tag_layout_(tagf.w_data)
        # one entry per word read (its place in its beat), for the gearbox;
        # its depth bounds the reads in flight
        word_layout = word_entry_layout(p)
        m.submodules.words = wordf = SyncFIFOBuffered(width=word_layout.size, depth=p.inflight)
        word_w = word_layout(wordf.w_data)
        c0 = Signal(lk_layout)
        c0_v = Signal()
        c0_line = Signal(range(max(1, p.cache_rows)))
        c_w = Signal(range(p.max_pitch))
        c_slot = Signal(range(R))
        c_k = Signal(range(p.max_beats))
        m.submodules.req_fifo = reqf = SyncFIFOBuffered(width=p.addr_width,
                                                        depth=self.REQ_DEPTH)
        slot_free = reqf.w_rdy
        c_go = Signal()
        c_done = Signal()
        c_load = Signal()
        c_last_word = Signal()
        c_emit = Signal()
        c_hit = Signal()
        c_read = Signal()
        m.d.comb += [
            self.tags.valid.eq(tagf.r_rdy), self.tags.payload.eq(tagf.r_data),
            tagf.r_en.eq(self.tags.ready),
            self.words.valid.eq(wordf.r_rdy), self.words.payload.eq(wordf.r_data),
            wordf.r_en.eq(self.words.ready),
        ]
        m.d.comb += [
            c_read.eq(c0.row & ~c_hit),
            c_last_word.eq(~c_read | (c_w == c0.pitch - 1)),
            c_emit.eq((c_slot == R - 1) | c_last_word),
            c_go.eq(c0_v & tagf.w_rdy & (~c_read | (slot_free & wordf.w_rdy))),
            c_done.eq(c_go & c_last_word),
            # a miss pushes a tag per beat (at the beat's last word), a word
            # entry per read
            tagf.w_en.eq(c_go & (~c_read | c_emit)),
            wordf.w_en.eq(c_go & c_read),
            word_w.slot.eq(c_slot),
            word_w.emit.eq(c_emit),
            tag_w.has_resp.eq(c_read),
            tag_w.hit.eq(c_hit),
            tag_w.k.eq(c_k),
            tag_w.beats.eq(c0.beats),
            tag_w.line.eq(c0_line),
            tag_w.init.eq(c0.init),
            tag_w.bag_end.eq(c0.bag_end & c_last_word),
            tag_w.batch_end.eq(c0.batch_end & c_last_word),
            tag_w.abort.eq(c0.abort),
            tag_w.is_max.eq(c0.is_max),
            tag_w.weight.eq(c0.weight),
            tag_w.index.eq(c0.index),
        ]
        src = self.lookups.payload
        m.d.comb += [self.lookups.ready.eq(~c0_v | c_done),
                     c_load.eq(self.lookups.valid & self.lookups.ready)]
        with m.If(c_load):
            m.d.sync += [c0.eq(src.lk), c0_v.eq(1)]
        with m.Elif(c_done):
            m.d.sync += c0_v.eq(0)
        if p.cache_rows:
            # the hit check's decision, registered with the lookup
            c0_hit = Signal()
            with m.If(c_load):
                m.d.sync += [c0_hit.eq(src.hit), c0_line.eq(src.line)]
            m.d.comb += c_hit.eq(c0_hit)
        with m.If(c_go):
            m.d.sync += [
                c_w.eq(Mux(c_last_word, 0, c_w + 1)),
                c_slot.eq(Mux(c_emit, 0, c_slot + 1)),
                c_k.eq(Mux(c_last_word, 0, Mux(c_emit, c_k + 1, c_k))),
            ]
        m.d.comb += [
            reqf.w_en.eq(c_go & c_read),
            reqf.w_data.eq(c0.addr + c_w),
            self.req.valid.eq(reqf.r_rdy),
            self.req.payload.eq(reqf.r_data),
            reqf.r_en.eq(self.req.ready),
            self.idle.eq(~c0_v & (reqf.level == 0) & (tagf.level == 0) & (wordf.level == 0)),
        ]
        return m
