"""The ACC path of the chip's GEMM unit (:class:`~seedchip.rtl.chip_gemm.GemmFront`):
a GEMM with the ACC flag computes ``post(wrap32(A @ B + C_in))`` in place.

::

    memory --> CinReader --(C_in element, channel)--+
                                                    +--> AccJoin --> ResultWriter
    GemmUnit (raw + bias, int32) --(result)---------+
    params handed to the GemmUnit --(multiplier, shift)--> AccJoin's table

With ACC the front runs the matrix unit without REQUANT and RELU (PARAMS
only adds the bias: ``wrap32(raw + bias + C_in)`` is golden's
``wrap32(wrap32(raw + C_in) + bias)``), so its results are int32 in tile
order (for each N tile, for each row, the tile's channels). :class:`CinReader`
reads C_in in that same order, one strided-row DMA command per N tile;
:class:`AccJoin` pairs each result with its addend, adds (registered: the
requantizer's first stage) and applies the per-channel multiplier/shift and
ReLU with a second :class:`~seedchip.rtl.requant.Requantizer`.

In place: an output element is written only after its own addend was
read (the write data depends on it), and the reader runs ahead only over
addends of later elements, whose bytes no earlier output overlaps (int32
output: tile t writes exactly the bytes it read; int8 output: tile t writes
bytes of C_in's tile t // 4 <= t of the same row, all read already).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int
from ..protocol import OutLayout
from .bufmem import BufferRAM
from .dma import RowReader
from .memport import MemPortSignature
from .requant import Requantizer

__all__ = ["CinLayout", "ScaleLayout", "CinReader", "AccJoin"]

_DATA_WIDTH = 64
_WB = _DATA_WIDTH // 8

#: One addend of C_in and the output channel it belongs to.
CinLayout = data.StructLayout({"data": signed(32), "ch": unsigned(16)})
#: What AccJoin keeps per output channel (from the param records).
ScaleLayout = data.StructLayout({"multiplier": signed(32), "shift": unsigned(5)})


class CinReader(wiring.Component):
    """Reads the M x N int32 matrix C_in (row i at ``c_addr + i * c_stride``)
    in the matrix unit's tile order: one :class:`~seedchip.rtl.dma.RowReader`
    command per N tile of ``cols`` channels (M rows of the tile's
    ``4 * width`` bytes), each 8-byte beat split into its int32 elements.
    With ``cols`` 1 an odd tile starts in a word's upper half: its rows are
    read from the word's start and the lower half skipped.

    Ports
    -----
    start : In(1)
        Load ``c_addr``, ``c_stride``, ``m``, ``n`` (same cycle); only while
        not ``busy``.
    mem : Out(MemPortSignature(addr_width, 64))
        Reads only.
    parts : Out(stream(CinLayout))
        ``m * n`` elements with their channel, in tile order.
    busy : Out(1)
        A tile not yet asked for, or the reader not done.
    err : Out(1)
        A beat whose word came back with ``err`` was taken.

    Throughput: two elements per word, at most one element per cycle; a tile
    starts after the previous one's last beat was taken (the DMA takes one
    command at a time), so a tile costs the memory's latency once.
    """

    def __init__(self, *, addr_width, cols, depth=16):
        check_int("addr_width", addr_width, 1, 40)
        check_int("cols", cols, 1, 64)
        self.addr_width, self.cols, self.depth = addr_width, cols, depth
        super().__init__({
            "start": In(1),
            "c_addr": In(32), "c_stride": In(16), "m": In(16), "n": In(16),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=_DATA_WIDTH)),
            "parts": Out(stream.Signature(CinLayout)),
            "busy": Out(1),
            "err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        m.submodules.reader = rd = RowReader(addr_width=self.addr_width, data_width=_DATA_WIDTH,
                                             beat_bytes=_WB, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.mem), rd.mem)

        # -- one DMA command per tile ------------------------------------------------------
        issue = Signal()                # a tile's command is offered
        stride, rows = Signal(16), Signal(16)
        base = Signal(32)               # byte address of the tile's row 0
        w_m1 = Signal(16)               # the tile's width - 1
        first = Signal()                # the tile starts in a word's upper half (cols 1)
        ch0 = Signal(16)                # the tile's first channel
        left = Signal(16)               # channels after the tile
        with m.If(self.start):
            m.d.sync += [issue.eq(1), stride.eq(self.c_stride), rows.eq(self.m),
                         base.eq(self.c_addr), first.eq(0), ch0.eq(0),
                         w_m1.eq(Mux(self.n > C, C - 1, self.n - 1)),
                         left.eq(Mux(self.n > C, self.n - C, 0))]
        m.d.comb += [
            rd.cmd.valid.eq(issue), rd.cmd.payload.base.eq(base),
            rd.cmd.payload.stride.eq(stride), rd.cmd.payload.rows.eq(rows),
            # the reader ignores the base's low bits: with ``first`` it reads from
            # the word's start, one element more
            rd.cmd.payload.row_bytes.eq((w_m1 + 1 + first) << 2),
        ]

        # -- beats -> elements (for the tile whose command was taken last) -------------------
        sp_w_m1, sp_first = Signal(16), Signal()
        part, ch = Signal(16), Signal(16)       # element of the row, its channel
        slot = Signal()                         # the element's half of the beat
        row_end = part == sp_w_m1
        beats, parts = rd.beats, self.parts
        m.d.comb += [
            parts.valid.eq(beats.valid),
            parts.payload.data.eq(beats.payload.data.word_select(slot, 32)),
            parts.payload.ch.eq(ch),
            beats.ready.eq(parts.ready & (row_end | slot)),
            self.err.eq(beats.valid & beats.ready & beats.payload.err),
            self.busy.eq(issue | rd.busy),
        ]
        with m.If(parts.valid & parts.ready):
            with m.If(row_end):
                m.d.sync += [part.eq(0), ch.eq(ch - sp_w_m1), slot.eq(sp_first)]
            with m.Else():
                m.d.sync += [part.eq(part + 1), ch.eq(ch + 1), slot.eq(~slot)]
        # The DMA takes a command only when its previous beats are all taken:
        # the splitter is then at a row's start.
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += [sp_w_m1.eq(w_m1), sp_first.eq(first), part.eq(0), ch.eq(ch0),
                         slot.eq(first)]
            with m.If(left == 0):
                m.d.sync += issue.eq(0)
            m.d.sync += [base.eq(base + 4 * C), ch0.eq(ch0 + C),
                         w_m1.eq(Mux(left > C, C - 1, left - 1)),
                         left.eq(Mux(left > C, left - C, 0))]
            if C == 1:
                m.d.sync += first.eq(~first)
        return m


class AccJoin(wiring.Component):
    """Joins each result of the matrix unit with its C_in addend and
    post-processes the sum: ``out = post(wrap32(res + cin))`` where post is
    REQUANT with the channel's multiplier/shift (int8, sign-extended) and/or
    ReLU, else the int32 sum.

    Ports
    -----
    requant, relu : In(1)
        Held while a command runs.
    p_we, p_scale : In
        Append the next channel's :data:`ScaleLayout` to the table (channel 0
        after ``start``); a channel's entry must be written before its result
        comes (true of params handed to the matrix unit: it needs them to
        give the result).
    start : In(1)
        Channel 0 is written next.
    res : In(stream(OutLayout))
        The matrix unit's int32 results.
    cin : In(stream(CinLayout))
        The addends with their channels, in the same order.
    out : Out(stream(OutLayout))
        The results, in the same order (``last`` passed through).
    busy : Out(1)
        An element in the pipeline or the output FIFO.
    starving : Out(1)
        A result waits for its addend.

    Latency: BufferRAM.LATENCY (the table read) + the requantizer's latency
    + 1 (the output FIFO) from the join to ``out``; one element per cycle (a credit per place
    in the output FIFO, so the requantizer never waits).
    """

    def __init__(self, *, max_n, out_width=8):
        check_int("max_n", max_n, 1, 1 << 16)
        self.max_n = max_n
        self.out_width = out_width
        super().__init__({
            "requant": In(1), "relu": In(1),
            "start": In(1),
            "p_we": In(1), "p_scale": In(ScaleLayout),
            "res": In(stream.Signature(OutLayout)),
            "cin": In(stream.Signature(CinLayout)),
            "out": Out(stream.Signature(OutLayout)),
            "busy": Out(1),
            "starving": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = BufferRAM(shape=ScaleLayout, depth=self.max_n)
        m.submodules.requant = rq = Requantizer(out_width=self.out_width)
        lat = BufferRAM.LATENCY + rq.latency
        depth = 1 + (1 << ceil_log2(lat + 5))
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=OutLayout.size, depth=depth)

        # -- the table, written in channel order -------------------------------------------
        w_ch = Signal(range(self.max_n + 1))
        m.d.comb += [table.w_en.eq(self.p_we), table.w_addr.eq(w_ch),
                     table.w_data.eq(self.p_scale)]
        with m.If(self.p_we):
            m.d.sync += w_ch.eq(w_ch + 1)
        with m.If(self.start):
            m.d.sync += w_ch.eq(0)

        # -- join, with a credit per place in the FIFO ----------------------------------------
        res, cin = self.res, self.cin
        credits = Signal(range(depth + 1), init=depth)
        out_go = self.out.valid & self.out.ready
        join = Signal()
        m.d.comb += [
            join.eq(res.valid & cin.valid & (credits != 0)),
            res.ready.eq(cin.valid & (credits != 0)),
            cin.ready.eq(res.valid & (credits != 0)),
            table.r_addr.eq(cin.payload.ch),
            self.starving.eq(res.valid & ~cin.valid),
        ]
        m.d.sync += credits.eq(credits - join + out_go)

        # the joined pair waits for its channel's table entry
        pair = data.StructLayout({"valid": 1, "res": signed(32), "cin": signed(32), "last": 1})
        d = Signal(pair)
        m.d.comb += [d.valid.eq(join), d.res.eq(res.payload.data), d.cin.eq(cin.payload.data),
                     d.last.eq(res.payload.last)]
        for n in range(BufferRAM.LATENCY):
            r = Signal(pair, name=f"pair{n}")
            m.d.sync += r.eq(d)
            d = r
        scale = table.r_data
        # The requantizer's first stage is the (registered) add: acc + "bias" = res + cin.
        m.d.comb += [
            rq.i_valid.eq(d.valid), rq.i.acc.eq(d.res), rq.i.bias.eq(d.cin),
            rq.i.multiplier.eq(scale.multiplier), rq.i.shift.eq(scale.shift),
            rq.i.requant.eq(self.requant), rq.i.relu.eq(self.relu), rq.i.last.eq(d.last),
        ]
        m.d.comb += [
            fifo.w_en.eq(rq.o_valid), fifo.w_data.eq(rq.o.as_value()),
            self.out.valid.eq(fifo.r_rdy), self.out.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.out.ready),
            self.busy.eq(credits != depth),
        ]
        return m
