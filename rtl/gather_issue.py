"""The gather engine's issuer (stage C): lookups -> word requests + tags.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..checks import check_int
from .gather_gearbox import word_entry_layout
from .gather_walker import _check_cache_rows, lookup_layout

__all__ = ["Issuer", "checked_layout", "tag_layout"]


def checked_layout(*, lookup, cache_rows):
    """A lookup with its hit check's outcome (S2 -> C): hit or miss, its line."""
    return data.StructLayout({
        "lk": lookup,
        "hit": 1,
        "line": unsigned(exact_log2(cache_rows) if cache_rows else 0),
    })


def tag_layout(*, max_dim, lanes, cache_rows, index_width):
    """A tag (C -> G): one beat of a miss, a whole hit, or a bag end with no data."""
    max_beats = -(-max_dim // lanes)
    return data.StructLayout({
        "has_resp": 1,        # a miss's beat k: wait for it from the gearbox
        "hit": 1,             # a cache hit: `beats` beats from cache line `line`
        "k": range(max_beats),
        "beats": range(max_beats + 1),
        "line": range(max(1, cache_rows)),
        "init": 1,
        "bag_end": 1,
        "batch_end": 1,
        "abort": 1,
        "is_max": 1,
        "weight": signed(8),
        "index": unsigned(index_width),
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

    Ports
    -----
    lookups : In(stream(checked_layout(...)))
        Loaded into C0 when C0 is empty or issues its last word this cycle.
        Without the cache (``cache_rows`` 0) ``hit`` and ``line`` are ignored.
    req : Out(stream(unsigned(addr_width)))
        Word addresses to read.
    tags : Out(stream(tag_layout(...))); words : Out(stream(word_entry_layout(ratio)))
        From the tag and word FIFOs (registered outputs).
    idle : Out(1)
        C0 and the three FIFOs are empty.
    """

    #: request FIFO entries
    REQ_DEPTH = 4

    def __init__(self, *, addr_width, index_width, n_tables, max_dim, word_lanes, lanes,
                 cache_rows, inflight):
        check_int("addr_width", addr_width, 1, 40)
        check_int("index_width", index_width, 1, 32)
        check_int("n_tables", n_tables, 1, 256)
        check_int("max_dim", max_dim, 1, 1024)
        check_int("word_lanes", word_lanes, 1, 8)
        check_int("lanes", lanes, 1, 8)
        if lanes % word_lanes:
            raise ValueError(f"lanes must be a multiple of word_lanes ({word_lanes}), "
                             f"not {lanes!r}")
        _check_cache_rows(cache_rows)
        check_int("inflight", inflight, 4, 256)
        self.addr_width = addr_width
        self.ratio = lanes // word_lanes
        self.max_pitch = -(-max_dim // word_lanes)
        self.max_beats = -(-max_dim // lanes)
        self.cache_rows = cache_rows
        self.inflight = inflight
        self.lookup_layout = lookup_layout(
            addr_width=addr_width, index_width=index_width, n_tables=n_tables,
            max_dim=max_dim, word_lanes=word_lanes, lanes=lanes, cache_rows=cache_rows)
        self.tag_layout = tag_layout(max_dim=max_dim, lanes=lanes, cache_rows=cache_rows,
                                     index_width=index_width)
        super().__init__({
            "lookups": In(stream.Signature(checked_layout(lookup=self.lookup_layout,
                                                          cache_rows=cache_rows))),
            "req": Out(stream.Signature(unsigned(addr_width))),
            "tags": Out(stream.Signature(self.tag_layout)),
            "words": Out(stream.Signature(word_entry_layout(ratio=self.ratio))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R = self.ratio
        tag_layout_, lk_layout = self.tag_layout, self.lookup_layout
        m.submodules.tags = tagf = SyncFIFOBuffered(width=tag_layout_.size, depth=self.inflight)
        tag_w = tag_layout_(tagf.w_data)
        # one entry per word read (its place in its beat), for the gearbox;
        # its depth bounds the reads in flight
        word_layout = word_entry_layout(ratio=R)
        m.submodules.words = wordf = SyncFIFOBuffered(width=word_layout.size,
                                                      depth=self.inflight)
        word_w = word_layout(wordf.w_data)
        c0 = Signal(lk_layout)
        c0_v = Signal()
        c0_line = Signal(range(max(1, self.cache_rows)))
        c_w = Signal(range(self.max_pitch))
        c_slot = Signal(range(R))
        c_k = Signal(range(self.max_beats))
        m.submodules.req_fifo = reqf = SyncFIFOBuffered(width=self.addr_width,
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
        if self.cache_rows:
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
