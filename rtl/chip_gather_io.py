"""The GATHER unit's memory-side helpers (:mod:`seedchip.rtl.chip_gather`).

:class:`WordReader` reads consecutive 64-bit words from a start address up to
a limit that may grow while it runs (the offsets, index and weight arrays:
the index array is read only as far as the offsets seen so far need it).
:class:`IndexFeeder` turns the u32 index array (and the int8 weights) into the
engine's ``indices`` stream. :class:`PooledWriter` writes the engine's pooled bags to their output rows,
one word per cycle, bag after bag.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from ..emb_protocol import index_layout, pooled_layout
from .memport import MemPortSignature, resp_layout

__all__ = ["DATA_WIDTH", "WordReader", "IndexFeeder", "PooledWriter"]

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


class IndexFeeder(wiring.Component):
    """The engine's ``indices`` from the index array (u32, index ``k`` in half
    ``k % 2`` of word ``k // 2``) and, with ``weighted``, the weight array
    (int8, byte ``k % 8`` of word ``k // 8``); weight arrays are read only
    when ``weighted``. Both start on a word (the ISA's alignment).

    Ports
    -----
    start : In(1)
        Pulse while ``run`` is low and ``busy`` low: index 0 comes next.
    idx_base, w_base : In(addr_width)
        Word addresses of the arrays.
    weighted : In(1)
    limit : In(32)
        Indices that may be read and given since ``start`` (may grow).
    run : In(1)
        As :class:`WordReader`'s (low: discard what arrives).
    idx_mem, w_mem : Out(MemPortSignature(addr_width, 64))
    indices : Out(stream(index_layout(32)))
    given : Out(1)
        Every index up to ``limit`` was given.
    busy, err : Out(1)
        Of the two readers.
    stall : Out(1)
        An index may be given but its word (or weight) has not arrived.

    Throughput: one index per cycle.
    """

    def __init__(self, *, addr_width):
        self.addr_width = check_int("addr_width", addr_width, 1, 40)
        port = MemPortSignature(addr_width=addr_width, data_width=DATA_WIDTH)
        super().__init__({
            "start": In(1), "idx_base": In(addr_width), "w_base": In(addr_width),
            "weighted": In(1), "limit": In(32), "run": In(1),
            "idx_mem": Out(port), "w_mem": Out(port),
            "indices": Out(stream.Signature(index_layout(index_width=32))),
            "given": Out(1), "busy": Out(1), "err": Out(1), "stall": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # deeper for the indices: two per word, one taken per cycle
        m.submodules.idx_rd = ird = WordReader(addr_width=self.addr_width, depth=8)
        m.submodules.w_rd = wrd = WordReader(addr_width=self.addr_width)
        wiring.connect(m, ird.mem, wiring.flipped(self.idx_mem))
        wiring.connect(m, wrd.mem, wiring.flipped(self.w_mem))
        pos = Signal(32)
        iwd, wwd, idx, weighted = ird.words, wrd.words, self.indices, self.weighted
        have = iwd.valid & (~weighted | wwd.valid)
        m.d.comb += [
            ird.limit.eq((self.limit + 1) >> 1),
            wrd.limit.eq(Mux(weighted, (self.limit + 7) >> 3, 0)),
            ird.run.eq(self.run), wrd.run.eq(self.run),
            ird.start.eq(self.start), wrd.start.eq(self.start),
            ird.base.eq(self.idx_base), wrd.base.eq(self.w_base),
            self.given.eq(pos == self.limit),
            idx.valid.eq(self.run & ~self.given & have),
            idx.payload.index.eq(Mux(pos[0], iwd.payload.data[32:], iwd.payload.data[:32])),
            idx.payload.weight.eq(wwd.payload.data.word_select(pos[:3], 8)),
            iwd.ready.eq(idx.valid & idx.ready & pos[0]),
            wwd.ready.eq(idx.valid & idx.ready & weighted & (pos[:3] == 7)),
            self.busy.eq(ird.busy | wrd.busy), self.err.eq(ird.err | wrd.err),
            self.stall.eq(self.run & ~self.given & ~have),
        ]
        with m.If(self.start):
            m.d.sync += pos.eq(0)
        with m.Elif(idx.valid & idx.ready):
            m.d.sync += pos.eq(pos + 1)
        return m


class PooledWriter(wiring.Component):
    """Writes pooled bags (``lanes`` = 8 int32 per beat) as rows of ``dim``
    int8 (``requant``) or int32 (little-endian) elements: bag ``i`` of a
    command (table ``t``, sample ``b``) at byte
    ``out_addr + b * out_stride + t * out_tstride``.

    A row DMA of its own rather than a :class:`~seedchip.rtl.dma.RowWriter`
    command per bag: the RowWriter takes a command only once the previous
    one's writes are acknowledged, which held bags of one short row to one
    per 4 cycles; here the words of consecutive bags follow back to back.

    Ports
    -----
    start : In(1)
        Pulse while idle: a new command (``out_addr``, ``out_stride``,
        ``out_tstride``, ``batch``, ``requant`` sampled); bag numbering restarts.
    out_addr : In(32); out_stride, out_tstride, batch : In(16); requant : In(1)
    dim_addr : Out(8); dim_data : In(16)
        The dim of table ``dim_addr`` (an asynchronous read of the unit's copy).
    dim_next_addr : Out(8); dim_next_data : In(16)
        The same for the next table (a second read port): both are registered
        here, so a word's mask and its bag's end come from flops, not from the
        table read (the ``pooled.ready`` path).
    pooled : In(stream(pooled_layout(8)))
    mem : Out(MemPortSignature(addr_width, 64))
        Writes only (byte masks on a row's last word); at most ``depth``
        outstanding.
    busy : Out(1)
        A write is not yet acknowledged.
    err : Out(1)
        A write was answered with ``err`` since ``start``.

    Throughput: one memory word per cycle, across bags too (a bag of int32
    is ``ceil(dim / 2)`` words, of int8 ``ceil(dim / 8)``).
    """

    def __init__(self, *, addr_width, depth=8):
        self.addr_width = check_int("addr_width", addr_width, 1, 40)
        self.depth = check_int("depth", depth, 1, 256)
        super().__init__({
            "start": In(1), "out_addr": In(32), "out_stride": In(16), "out_tstride": In(16),
            "batch": In(16), "requant": In(1),
            "dim_addr": Out(8), "dim_data": In(16),
            "dim_next_addr": Out(8), "dim_next_data": In(16),
            "pooled": In(stream.Signature(pooled_layout(lanes=8))),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=DATA_WIDTH)),
            "busy": Out(1), "err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        D = self.depth
        requant = Signal()
        stride = Signal(16)
        tstride = Signal(16)
        batch = Signal(16)
        tbase = Signal(32)           # out_addr + t * out_tstride (bytes)
        bstart = Signal(32)          # tbase + b * out_stride: the bag's row (bytes)
        addr = Signal(32)            # the bag's next word (bytes)
        sample = Signal(16)
        table = Signal(8)
        first = Signal(init=1)       # the next word is its bag's first
        word = Signal(2)             # int32: word of the pooled beat
        outstanding = Signal(range(D + 1))
        req, resp, pooled = self.mem.req, self.mem.resp, self.pooled
        req_go = Signal()

        # The elements left before a word, registered with what the word logic
        # asks of them (<= 2, == 1, the int8 mask): at a bag's first word the
        # table's dim (``cur``: this table's; ``nxt``: the next one's, which
        # holds the new table's the cycle after ``table`` steps), else ``rem``.
        def keep8_of(n):
            """int8: the bytes of a bag with ``n`` elements left in its next word."""
            k = Signal(8)
            with m.Switch(n):
                for i in range(1, 8):
                    with m.Case(i):
                        m.d.comb += k.eq((1 << i) - 1)
                with m.Default():
                    m.d.comb += k.eq(0xFF)
            return k

        def left_regs(prefix, n_name):
            return {"n": Signal(16, name=n_name), "le2": Signal(name=f"{prefix}_le2"),
                    "is1": Signal(name=f"{prefix}_is1"), "keep8": Signal(8, name=f"{prefix}_keep8")}

        def load(r, n):
            return [r["n"].eq(n), r["le2"].eq(n <= 2), r["is1"].eq(n == 1),
                    r["keep8"].eq(keep8_of(n))]

        cur, nxt = left_regs("cur", "cur_dim"), left_regs("nxt", "nxt_dim")
        rem = left_regs("rem", "rem")
        m.d.sync += load(cur, self.dim_data) + load(nxt, self.dim_next_data)
        stepped = Signal()           # ``table`` stepped last cycle: the next table's dim
        warm = Signal()              # not the cycle after start: the dim registers are valid
        m.d.comb += [self.dim_addr.eq(table), self.dim_next_addr.eq(table + 1),
                     self.busy.eq(outstanding != 0)]
        m.d.sync += [stepped.eq(0), warm.eq(1)]
        with m.If(self.start):
            m.d.sync += [requant.eq(self.requant), stride.eq(self.out_stride),
                         tstride.eq(self.out_tstride), batch.eq(self.batch),
                         tbase.eq(self.out_addr), bstart.eq(self.out_addr),
                         addr.eq(self.out_addr), warm.eq(0),
                         sample.eq(0), table.eq(0), first.eq(1), self.err.eq(0)]
        with m.If(resp.valid & resp.payload.err):
            m.d.sync += self.err.eq(1)

        left = {k: Mux(first, Mux(stepped, nxt[k], cur[k]), rem[k]) for k in cur}
        lanes = pooled.payload.data
        int8s = Cat(lanes[i][:8] for i in range(8))
        pair = Signal(64)
        with m.Switch(word):
            for j in range(4):
                with m.Case(j):
                    m.d.comb += pair.eq(Cat(lanes[2 * j], lanes[2 * j + 1]))
        beat_end = requant | (word == 3) | left["le2"]
        m.d.comb += [
            req.valid.eq(pooled.valid & (outstanding != D) & warm),
            req.payload.addr.eq(addr >> 3),
            req.payload.we.eq(1),
            req.payload.wdata.eq(Mux(requant, int8s, pair)),
            req.payload.mask.eq(Mux(requant, left["keep8"], Mux(left["is1"], 0x0F, 0xFF))),
            req_go.eq(req.valid & req.ready),
            resp.ready.eq(1),
            pooled.ready.eq(req_go & beat_end),
        ]
        m.d.sync += outstanding.eq(outstanding + req_go - resp.valid)
        rem_next = Signal(16)
        m.d.comb += rem_next.eq(left["n"] - Mux(requant, 8, 2))
        with m.If(req_go):
            m.d.sync += [word.eq(Mux(beat_end, 0, word + 1)), *load(rem, rem_next),
                         first.eq(0), addr.eq(addr + 8)]
            with m.If(beat_end & pooled.payload.last):
                m.d.sync += first.eq(1)
                with m.If(sample == batch - 1):
                    m.d.sync += [stepped.eq(1),
                                 sample.eq(0), table.eq(table + 1), tbase.eq(tbase + tstride),
                                 bstart.eq(tbase + tstride), addr.eq(tbase + tstride)]
                with m.Else():
                    m.d.sync += [sample.eq(sample + 1), bstart.eq(bstart + stride),
                                 addr.eq(bstart + stride)]
        return m
