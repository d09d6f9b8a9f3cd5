"""The gather engine's accumulator banks (stages D1-D4).

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int, check_type
from ..gather_params import GatherParams
from .gather_walker import lookup_flags

__all__ = ["AccumulatorBanks", "acc_width", "beat_ctl_layout"]


def beat_ctl_layout(params):
    """What travels with a beat from G through D."""
    return data.StructLayout({
        "has_data": 1, "hit": 1, "k": range(params.max_beats), **lookup_flags(params),
    })


def acc_width(max_bag):
    """Accumulator bits: as wide as a bag's sum needs (|w * x| <= 2**14)."""
    return min(32, (128 * 128 * max_bag).bit_length() + 1)


class AccumulatorBanks(wiring.Component):
    """``banks`` accumulator banks of ``max_beats`` words of ``lanes`` sums;
    a beat read-modify-writes its bank's word ``k``.

    D1 (the inputs) multiplies the bytes by the weight in fabric adders over
    D1..D2 and reads the word (transparent read port); D3 registers the word
    (a bag's first beat, ``init``, takes the identity instead: 0, or -2**15
    for MAX) and adds (or takes the max); D4 writes it back. The caller keeps
    two beats to one word at least three cycles apart, so the read has every
    earlier write.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); ``banks``: accumulator banks, 2..16.

    Ports
    -----
    i : In(beat_ctl_layout(params)); i_v : In(1);
    i_data : In(8 * lanes); i_bank : In(range(banks)); i_disc : In(1)
        A beat in D1 (``i_v``; ``i.has_data`` 0: a bag end with no data) and
        whether its bag is discarded.
    drain_k : In(range(max_beats)); drain_bank : In(range(banks));
    drain_data : Out(ArrayLayout(signed(acc_width), lanes))
        Synchronous read port for the drain: data one cycle after the address.
    done_v : Out(1); done_bank : Out(range(banks)); done_disc : Out(1)
        A bag's last beat is in D4 (its bank is complete after this cycle),
        and whether the bag is discarded.
    busy : Out(1)
        A beat is in D2..D4.
    """

    def __init__(self, params, *, banks):
        self.params = check_type("params", params, GatherParams)
        self.banks = check_int("banks", banks, 2, 16)
        self.acc_width = acc_width(params.max_bag)
        self.acc_row = data.ArrayLayout(signed(self.acc_width), params.lanes)
        super().__init__({
            "i": In(beat_ctl_layout(params)),
            "i_v": In(1),
            "i_data": In(8 * params.lanes),
            "i_bank": In(range(banks)),
            "i_disc": In(1),
            "drain_k": In(range(params.max_beats)),
            "drain_bank": In(range(banks)),
            "drain_data": Out(self.acc_row),
            "done_v": Out(1),
            "done_bank": Out(range(banks)),
            "done_disc": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.params.lanes
        NB = self.banks
        max_beats = self.params.max_beats
        kbits = ceil_log2(max_beats)
        acc_row = self.acc_row
        d1_layout = self.i.shape()
        d1, d1_v, d1_bytes, d1_bank = self.i, self.i_v, self.i_data, self.i_bank

        def acc_addr(k, bank):
            return Cat(k, bank) if max_beats > 1 else bank

        m.submodules.accmem = accmem = Memory(shape=acc_row, depth=NB << max(1, kbits), init=[])
        acc_wr = accmem.write_port()
        acc_rd = accmem.read_port(transparent_for=(acc_wr,))
        drn_rd = accmem.read_port()
        m.d.comb += [drn_rd.addr.eq(acc_addr(self.drain_k, self.drain_bank)), drn_rd.en.eq(1),
                     self.drain_data.eq(drn_rd.data)]

        # D1 -> D2: weight x bytes, accumulator read
        d2 = Signal(d1_layout)
        d2_v = Signal()
        d2_bank = Signal.like(d1_bank)
        d2_disc = Signal()
        # weight x byte in fabric adders over D1..D2 (two partial sums, then
        # their sum), not a DSP block: the DSPs sit in rows away from the
        # engine and the routing to one and back took 9 ns
        d2_plo = Signal(data.ArrayLayout(signed(16), L))
        d2_phi = Signal(data.ArrayLayout(signed(16), L))
        m.d.sync += [d2_v.eq(d1_v), d2.eq(d1), d2_bank.eq(d1_bank), d2_disc.eq(self.i_disc)]
        for l in range(L):
            b = d1_bytes[8 * l:8 * l + 8].as_signed()
            w = d1.weight
            lo = sum(Mux(w[i], b, 0) << i for i in range(4))
            hi = sum(Mux(w[i], b, 0) << i for i in range(4, 7)) - (Mux(w[7], b, 0) << 7)
            m.d.sync += [d2_plo[l].eq(lo), d2_phi[l].eq(hi)]
        m.d.comb += [acc_rd.addr.eq(Cat(d1.k, d1_bank) if max_beats > 1 else d1_bank),
                     acc_rd.en.eq(1)]
        # D2 -> D3: the accumulator word registered (LUT RAM read, then flops;
        # a bag's first beat takes the identity instead: 0, or -2**15 for MAX,
        # below any int8 row value), D3 adds (or takes the max: MAX values
        # stay within 16 bits) and D4 writes the result back. G keeps two
        # beats to one word at least three cycles apart, so the read
        # (transparent) has every earlier write.
        d3 = Signal(d1_layout)
        d3_v = Signal()
        d3_bank = Signal.like(d1_bank)
        d3_disc = Signal()
        d3_x = Signal(data.ArrayLayout(signed(16), L))
        d3_a = Signal(acc_row)
        d3_res = Signal(acc_row)
        m.d.sync += [d3_v.eq(d2_v), d3.eq(d2), d3_bank.eq(d2_bank), d3_disc.eq(d2_disc)]
        for l in range(L):
            m.d.sync += d3_x[l].eq(d2_plo[l] + d2_phi[l])
            m.d.sync += d3_a[l].eq(Mux(d2.init, Mux(d2.is_max, -(1 << 15), 0), acc_rd.data[l]))
            a = d3_a[l]
            x = d3_x[l]
            m.d.comb += d3_res[l].eq(Mux(d3.is_max, Mux(x > a[:16].as_signed(), x, a), a + x))
        d4 = Signal(d1_layout)
        d4_v = Signal()
        d4_bank = Signal.like(d1_bank)
        d4_disc = Signal()
        d4_res = Signal(acc_row)
        m.d.sync += [d4_v.eq(d3_v), d4.eq(d3), d4_bank.eq(d3_bank), d4_disc.eq(d3_disc),
                     d4_res.eq(d3_res)]
        m.d.comb += [
            acc_wr.data.eq(d4_res),
            acc_wr.addr.eq(acc_addr(d4.k, d4_bank)),
            acc_wr.en.eq(d4_v & d4.has_data),
            self.done_v.eq(d4_v & d4.bag_end),
            self.done_bank.eq(d4_bank),
            self.done_disc.eq(d4_disc),
            self.busy.eq(d2_v | d3_v | d4_v),
        ]
        return m
