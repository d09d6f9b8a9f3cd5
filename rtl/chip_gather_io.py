"""The GATHER unit's memory-side helpers (:mod:`seedchip.rtl.chip_gather`).

:class:`WordReader` reads consecutive 64-bit words from a start address up to
a limit that may grow while it runs (the offsets, index and weight arrays:
the index array is read only as far as the offsets seen so far need it).
:class:`PooledWriter` writes the engine's pooled bags to their output rows
through a :class:`~seedchip.rtl.dma.RowWriter`, one DMA command per bag.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from ..emb_protocol import pooled_layout
from .dma import RowWriter
from .memport import MemPortSignature, resp_layout

__all__ = ["DATA_WIDTH", "WordReader", "PooledWriter"]

#: The chip memory word (bits); the unit's only supported width.
DATA_WIDTH = 64

#: One word of a :class:`WordReader`.
WordLayout = data.StructLayout({"data": unsigned(DATA_WIDTH), "err": unsigned(1)})


class WordReader(wiring.Component):
    """Reads words ``base, base + 1, ...`` while fewer than ``limit`` were asked.

    Ports
    -----
    start : In(1)
        Pulse while ``run`` is low and ``busy`` low: the next word is ``base``.
    base : In(addr_width)
    limit : In(32)
        Words that may be read since ``start`` (may grow, never shrink).
    run : In(1)
        Low: no new request, and every response is discarded as it arrives.
    mem : Out(MemPortSignature(addr_width, 64))
        Reads only; at most ``depth`` responses outstanding or buffered.
    words : Out(stream(WordLayout))
        The words in order (valid only while ``run``).
    busy : Out(1)
        A response is outstanding or buffered.
    err : Out(1)
        A response since ``start`` came with ``err`` (taken or discarded).

    Throughput: one word per cycle.
    """

    def __init__(self, *, addr_width, depth=4):
        self.addr_width = check_int("addr_width", addr_width, 1, 40)
        self.depth = check_int("depth", depth, 2, 64)
        super().__init__({
            "start": In(1), "base": In(addr_width), "limit": In(32), "run": In(1),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=DATA_WIDTH)),
            "words": Out(stream.Signature(WordLayout)),
            "busy": Out(1), "err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        D = self.depth
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=DATA_WIDTH + 1, depth=D)
        r = resp_layout(DATA_WIDTH)(fifo.r_data)
        count = Signal(32)
        addr = Signal(self.addr_width)
        credit = Signal(range(D + 1))
        req = self.mem.req
        req_go = Signal()
        pop = Signal()
        m.d.comb += [
            req.valid.eq(self.run & (count < self.limit) & (credit != D)),
            req.payload.addr.eq(addr),
            req.payload.we.eq(0),
            req_go.eq(req.valid & req.ready),
            fifo.w_en.eq(self.mem.resp.valid),
            fifo.w_data.eq(self.mem.resp.payload),
            self.mem.resp.ready.eq(1),
            self.words.valid.eq(fifo.r_rdy & self.run),
            self.words.payload.data.eq(r.rdata),
            self.words.payload.err.eq(r.err),
            pop.eq(fifo.r_rdy & (self.words.ready | ~self.run)),
            fifo.r_en.eq(pop),
            self.busy.eq(credit != 0),
        ]
        m.d.sync += credit.eq(credit + req_go - pop)
        with m.If(self.mem.resp.valid & self.mem.resp.payload.err):
            m.d.sync += self.err.eq(1)
        with m.If(self.start):
            m.d.sync += [count.eq(0), addr.eq(self.base), self.err.eq(0)]
        with m.Elif(req_go):
            m.d.sync += [count.eq(count + 1), addr.eq(addr + 1)]
        return m


class PooledWriter(wiring.Component):
    """Writes pooled bags (``lanes`` = 8 int32 per beat) as rows of ``dim``
    int8 (``requant``) or int32 (little-endian) elements: bag ``i`` of a
    command (table ``t``, sample ``b``) at byte
    ``out_addr + b * out_stride + t * out_tstride``.

    Ports
    -----
    start : In(1)
        Pulse while idle: a new command (``out_addr``, ``out_stride``,
        ``out_tstride``, ``batch``, ``requant`` sampled); bag numbering restarts.
    out_addr : In(32); out_stride, out_tstride, batch : In(16); requant : In(1)
    dim_addr : Out(8); dim_data : In(16)
        The dim of table ``dim_addr`` (an asynchronous read of the unit's copy).
    pooled : In(stream(pooled_layout(8)))
    mem : Out(MemPortSignature(addr_width, 64))
        The RowWriter's port (writes only).
    busy : Out(1)
        A bag is being written or a write is not yet acknowledged.
    err : Out(1)
        A write was answered with ``err`` since ``start``.

    Throughput: one memory word per cycle within a bag (a bag of int32 takes
    ``ceil(dim / 2)`` words, of int8 ``ceil(dim / 8)``); between bags the
    RowWriter drains its writes (about the memory's latency + 2 cycles).
    """

    def __init__(self, *, addr_width):
        self.addr_width = check_int("addr_width", addr_width, 1, 40)
        self.writer = RowWriter(addr_width=addr_width, data_width=DATA_WIDTH, beat_bytes=8)
        super().__init__({
            "start": In(1), "out_addr": In(32), "out_stride": In(16), "out_tstride": In(16),
            "batch": In(16), "requant": In(1),
            "dim_addr": Out(8), "dim_data": In(16),
            "pooled": In(stream.Signature(pooled_layout(lanes=8))),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=DATA_WIDTH)),
            "busy": Out(1), "err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.writer = wr = self.writer
        wiring.connect(m, wr.mem, wiring.flipped(self.mem))
        requant = Signal()
        stride = Signal(16)
        tstride = Signal(16)
        batch = Signal(16)
        tbase = Signal(33)           # out_addr + t * out_tstride
        addr = Signal(34)            # tbase + b * out_stride
        sample = Signal(16)
        table = Signal(8)
        writing = Signal()           # the bag's writer command was given
        word = Signal(2)             # int32: word of the pooled beat
        rem = Signal(16)             # int32: elements of the bag not yet written
        err = Signal()
        dim = self.dim_data

        m.d.comb += [self.dim_addr.eq(table), self.err.eq(err),
                     self.busy.eq(writing | wr.busy | wr.cmd.valid)]
        with m.If(self.start):
            m.d.sync += [requant.eq(self.requant), stride.eq(self.out_stride),
                         tstride.eq(self.out_tstride), batch.eq(self.batch),
                         tbase.eq(self.out_addr), addr.eq(self.out_addr),
                         sample.eq(0), table.eq(0), writing.eq(0), err.eq(0)]
        # (not wr.err: that one lasts until the writer's next command, in the next unit command)
        with m.If(self.mem.resp.valid & self.mem.resp.payload.err):
            m.d.sync += err.eq(1)

        # the bag's DMA command as soon as its first beat is there and the writer is idle
        m.d.comb += [
            wr.cmd.valid.eq(self.pooled.valid & ~writing),
            wr.cmd.payload.base.eq(addr),
            wr.cmd.payload.stride.eq(0),
            wr.cmd.payload.rows.eq(1),
            wr.cmd.payload.row_bytes.eq(Mux(requant, dim, dim << 2)),
        ]
        with m.If(wr.cmd.valid & wr.cmd.ready):
            m.d.sync += [writing.eq(1), word.eq(0), rem.eq(dim)]

        lanes = self.pooled.payload.data
        int8s = Cat(lanes[i][:8] for i in range(8))
        pair = Signal(64)
        with m.Switch(word):
            for j in range(4):
                with m.Case(j):
                    m.d.comb += pair.eq(Cat(lanes[2 * j], lanes[2 * j + 1]))
        beat_end = requant | (word == 3) | (rem <= 2)
        m.d.comb += [
            wr.beats.valid.eq(self.pooled.valid & writing),
            wr.beats.payload.data.eq(Mux(requant, int8s, pair)),
            self.pooled.ready.eq(writing & wr.beats.ready & beat_end),
        ]
        with m.If(wr.beats.valid & wr.beats.ready):
            m.d.sync += [word.eq(Mux(beat_end, 0, word + 1)), rem.eq(rem - 2)]
        with m.If(self.pooled.valid & self.pooled.ready & self.pooled.payload.last):
            m.d.sync += writing.eq(0)
            with m.If(sample == batch - 1):
                m.d.sync += [sample.eq(0), table.eq(table + 1),
                             tbase.eq(tbase + tstride), addr.eq(tbase + tstride)]
            with m.Else():
                m.d.sync += [sample.eq(sample + 1), addr.eq(addr + stride)]
        return m
