"""The gather engine's descriptor table: descriptor writes (W1-W3) and storage.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_type
from ..emb_protocol import TABLE_WIDTH, desc_layout
from ..gather_params import GatherParams

__all__ = ["DescriptorTable", "table_desc_layout"]


def _recip(divisor, max_x):
    """``(m, k)`` with ``(x * m) >> k == x // divisor`` for every ``0 <= x <= max_x``."""
    for k in range(1, 64):
        m = -(-(1 << k) // divisor)
        if all((x * m) >> k == x // divisor for x in range(max_x + 1)):
            return m, k
    raise ValueError(f"no reciprocal of {divisor} for x up to {max_x}")  # pragma: no cover


def table_desc_layout(params):
    """A stored descriptor: the write's fields plus ``pitch`` (words per row)
    and ``beats`` (datapath beats per row), computed once at the write."""
    return data.StructLayout({
        "base": unsigned(params.addr_width), "rows": unsigned(params.index_width),
        "pitch": range(params.max_pitch + 1), "beats": range(params.max_beats + 1),
        "dim": range(params.max_dim + 1), "multiplier": signed(32), "shift": unsigned(5),
    })


class DescriptorTable(wiring.Component):
    """Table descriptors: checked writes in, block-RAM reads out.

    A write taken from ``desc`` goes through three stages: W1 ``pitch`` and
    ``beats`` (a reciprocal multiply unless the divisor is a power of 2), W2
    ``rows * pitch`` (registered), W3 ``base +`` it, the extent check and the
    block RAM write. ``desc.ready`` is low while ``busy`` (the engine runs a batch) or a
    write is in W1..W3 (one write every 4 cycles).

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields).

    Ports
    -----
    desc : In(stream(desc_layout(addr_width, index_width)))
    busy : In(1)
        The engine runs a batch: no write is taken.
    w_busy : Out(1)
        A write is in W1..W3.
    written : Out(1)
        A write (good or refused) is in W3 (empties the hot-row cache).
    rd_addr : In(range(n_tables)); rd_data : Out(table_desc_layout(params))
        Synchronous read port (always enabled): data one cycle after the address.
    tvalid : Out(n_tables)
        Per table: its last write was good (all 0 after reset).
    err : Out(1); err_table : Out(TABLE_WIDTH)
        The write in W3 is refused (``BAD_DESC``) and its table number.
    """

    def __init__(self, params):
        self.params = check_type("params", params, GatherParams)
        self.tbits = max(1, ceil_log2(params.n_tables))
        self.tdesc = table_desc_layout(params)
        super().__init__({
            "desc": In(stream.Signature(desc_layout(addr_width=params.addr_width,
                                                    index_width=params.index_width))),
            "busy": In(1),
            "w_busy": Out(1),
            "written": Out(1),
            "rd_addr": In(self.tbits),
            "rd_data": Out(self.tdesc),
            "tvalid": Out(params.n_tables),
            "err": Out(1),
            "err_table": Out(TABLE_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        aw, iw = p.addr_width, p.index_width
        WL, L = p.word_lanes, p.lanes
        tdesc = self.tdesc
        pitch_shape = tdesc["pitch"].shape
        beats_shape = tdesc["beats"].shape
        pbits = max(1, ceil_log2(p.max_pitch))
        tbits = self.tbits
        desc_layout_ = self.desc.payload.shape()

        m.submodules.descmem = descmem = Memory(shape=tdesc, depth=p.n_tables, init=[])
        dwr = descmem.write_port()
        drd = descmem.read_port()
        m.d.comb += [drd.addr.eq(self.rd_addr), drd.en.eq(1), self.rd_data.eq(drd.data)]
        tvalid = self.tvalid

        # W1 pitch, W2 rows*pitch, W3 check and write
        w1 = Signal(desc_layout_)
        w1_v = Signal()
        w2 = Signal(desc_layout_)
        w2_v = Signal()
        w2_pitch = Signal(pitch_shape)
        w2_ok = Signal()
        w3 = Signal(desc_layout_)
        w3_v = Signal()
        w3_pitch = Signal(pitch_shape)
        w3_ok = Signal()
        w3_end = Signal(max(aw, iw + pbits + 1) + 2)
        w3_prod = Signal(len(w3_end))               # rows * pitch, registered
        w_busy = self.w_busy
        m.d.comb += [
            w_busy.eq(w1_v | w2_v | w3_v),
            self.desc.ready.eq(~self.busy & ~w_busy),
            self.written.eq(w3_v),
        ]
        desc_take = self.desc.valid & self.desc.ready
        m.d.sync += [w1_v.eq(desc_take), w2_v.eq(w1_v), w3_v.eq(w2_v)]
        with m.If(desc_take):
            m.d.sync += w1.eq(self.desc.payload)

        def ceil_div(x, n):
            if n & (n - 1) == 0:
                return (x + (n - 1)) >> (n.bit_length() - 1)
            rm, rk = _recip(n, p.max_dim + n - 1)
            return ((x + (n - 1)) * rm) >> rk
        w1_pitch = ceil_div(w1.dim, WL)
        w2_beats = Signal(beats_shape)
        w3_beats = Signal(beats_shape)
        m.d.sync += [
            w2.eq(w1),
            w2_pitch.eq(w1_pitch),
            w2_beats.eq(ceil_div(w1.dim, L)),
            w3_beats.eq(w2_beats),
            w2_ok.eq((w1.table < p.n_tables) & (w1.rows != 0) & (w1.dim != 0)
                     & (w1.dim <= p.max_dim)),
            w3.eq(w2),
            w3_pitch.eq(w2_pitch),
            w3_ok.eq(w2_ok),
            # only the multiply in W2 -> W3, the add in W3 with the check: the
            # multiply and the add in one cycle were the unit's critical path
            # (71 MHz out of context)
            w3_prod.eq(w2.rows * w2_pitch),
        ]
        m.d.comb += w3_end.eq(w3.base + w3_prod)
        w3_good = w3_ok & (w3_end <= (1 << aw))
        m.d.comb += [
            dwr.addr.eq(w3.table[:tbits]),
            dwr.data.base.eq(w3.base),
            dwr.data.rows.eq(w3.rows),
            dwr.data.pitch.eq(w3_pitch),
            dwr.data.beats.eq(w3_beats),
            dwr.data.dim.eq(w3.dim),
            dwr.data.multiplier.eq(w3.multiplier),
            dwr.data.shift.eq(w3.shift),
            dwr.en.eq(w3_v & w3_good),
        ]
        with m.If(w3_v):
            for t in range(p.n_tables):
                with m.If(w3.table == t):
                    m.d.sync += tvalid[t].eq(w3_good)
            with m.If(~w3_good):
                m.d.comb += [self.err.eq(1), self.err_table.eq(w3.table)]
        return m
