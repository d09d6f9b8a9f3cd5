"""The gather engine's gearbox (stage R): memory words -> datapath beats.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_type
from ..gather_params import GatherParams
from .memport import resp_layout

__all__ = ["Gearbox", "word_entry_layout", "beat_layout"]


def word_entry_layout(params):
    """One entry per word read: its place in its beat, and whether it ends the beat."""
    return data.StructLayout({"slot": range(params.ratio), "emit": 1})


def beat_layout(params):
    """A packed beat and whether one of its words came back with ``err``."""
    return data.StructLayout({"data": unsigned(8 * params.lanes), "err": 1})


class Gearbox(wiring.Component):
    """Packs responses, in order, ``lanes // (data_width // 8)`` words to a
    beat, into a beat FIFO of ``depth`` entries.

    A row starts on a beat, so word ``w`` is slot ``w % ratio`` of beat
    ``w // ratio``; since lanes is a multiple of the word every beat holds
    whole words; the final beat of a row may be partial, its unused lanes
    are past ``dim``. The gearbox runs ahead of G, so G spends one cycle per
    beat of a miss, not per word, and reads hits out of the cache while the
    memory works on later misses.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); ``depth``: beat FIFO entries, 1..1024.

    Ports
    -----
    resp : In(stream(resp_layout(data_width)))
        Taken (one per cycle) when its word entry is there and, for a beat's
        last word, the beat FIFO has room.
    words : In(stream(word_entry_layout(params)))
        One entry per response, in order (taken with it).
    beats : Out(stream(beat_layout(params)))
        From the FIFO (registered output).
    word_err : Out(1)
        A response with ``err`` is taken this cycle.
    level : Out(range(depth + 1))
        Beats in the FIFO.
    """

    def __init__(self, params, *, depth):
        self.params = check_type("params", params, GatherParams)
        self.depth = check_int("depth", depth, 1, 1024)
        super().__init__({
            "resp": In(stream.Signature(resp_layout(params.data_width))),
            "words": In(stream.Signature(word_entry_layout(params))),
            "beats": Out(stream.Signature(beat_layout(params))),
            "word_err": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L, R, dw = p.lanes, p.ratio, p.data_width
        resp = self.resp
        word = self.words.payload
        layout = beat_layout(p)
        m.submodules.beats = beatf = SyncFIFOBuffered(width=layout.size, depth=self.depth)
        beat_w = layout(beatf.w_data)
        r_go = Signal()
        m.d.comb += [
            resp.ready.eq(self.words.valid & (~word.emit | beatf.w_rdy)),
            r_go.eq(resp.ready & resp.valid),
            self.words.ready.eq(r_go),
            beatf.w_en.eq(r_go & word.emit),
            self.beats.valid.eq(beatf.r_rdy),
            self.beats.payload.eq(beatf.r_data),
            beatf.r_en.eq(self.beats.ready),
            self.level.eq(beatf.level),
        ]
        gb = Signal(8 * L)         # words of the beat being packed
        gb_err = Signal()
        rdata = resp.payload.rdata
        if R == 1:
            m.d.comb += beat_w.data.eq(rdata)
        else:
            m.d.comb += beat_w.data.eq(Cat(*[Mux(word.slot == s, rdata, gb[s * dw:(s + 1) * dw])
                                             for s in range(R)]))
            with m.If(r_go & ~word.emit):
                for s in range(R):
                    with m.If(word.slot == s):
                        m.d.sync += gb[s * dw:(s + 1) * dw].eq(rdata)
        m.d.comb += beat_w.err.eq(gb_err | resp.payload.err)
        with m.If(r_go):
            m.d.sync += gb_err.eq(Mux(word.emit, 0, gb_err | resp.payload.err))
        m.d.comb += self.word_err.eq(r_go & resp.payload.err)
        return m
