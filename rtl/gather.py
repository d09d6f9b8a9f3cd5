"""EmbeddingBag gather engine: int8 table rows from memory, pooled per bag.

What it computes
================

PyTorch ``nn.EmbeddingBag`` forward with ``include_last_offset=True`` on int8
tables that live in a word-addressed memory behind a
:class:`~seedchip.rtl.memport.MemPortSignature` port. Wire formats are in
:mod:`seedchip.emb_protocol`; the bit-exact reference is
:class:`seedchip.sim.emb_golden.GatherModel`.

Tables
------
The host writes up to ``n_tables`` descriptors through the ``desc`` stream
(only while the engine is idle; one write every 4 cycles). Descriptor ``t``
says: row ``r`` of table ``t`` is ``dim`` int8 elements (1..``max_dim``)
starting at word ``base + r * pitch``, ``pitch = ceil(dim / word_lanes)``
words, ``word_lanes = data_width // 8``; element ``d`` of a row is byte
``d % word_lanes`` (little-endian) of word ``d // word_lanes``; the padding
bytes of a row's last word are ignored. ``multiplier``/``shift`` requantize the table's pooled values.
A descriptor is refused (``BAD_DESC``; the table becomes invalid) when
``table >= n_tables``, ``rows == 0``, ``dim == 0``, ``dim > max_dim`` or
``base + rows * pitch > 2**addr_width``. Every table starts invalid after reset.

A batch
-------
One ``cmd`` beat (pooling mode, bounds-check mode, per-sample weights on/off,
requantize on/off) starts a batch; it is accepted only while the engine is
idle (``busy`` low), holds no error, no descriptor write is pending
(``desc`` goes first) and the hot-row cache is not being emptied (up to
``cache_rows`` cycles after a descriptor write, ``cache_clear`` or an ``err``
response). Then:

* ``bags`` items ``{table, offset, last}``: item ``i`` carries ``offsets[i]``
  and the table of bag ``i``; the final item (``last`` = 1) carries
  ``offsets[B]`` (its table is ignored). Bag ``i`` is indices
  ``offsets[i] .. offsets[i+1] - 1`` of the batch's ``indices`` stream. A
  batch whose first item is its last has no bags.
* ``indices`` items ``{index, weight}``: the batch consumes exactly
  ``max(offsets)`` of them (``offsets[B]`` for a well-formed batch).

Pooling over the rows ``row_i`` of a bag of ``n`` looked-up rows, per element
``d`` (int8 rows, int32 results, no overflow possible since
``128 * 128 * max_bag < 2**31``):

* SUM: ``sum_i w_i * row_i[d]``, ``w_i`` the index's ``weight`` when the
  command's ``weighted`` is set, else 1;
* MEAN: ``s = sum_i row_i[d]``, result ``sign(s) * floor((2|s| + n) / (2n))``
  (exact; round to nearest, ties away from zero);
* MAX: ``max_i row_i[d]``;
* an empty bag (or one whose indices were all skipped) gives zeros in every
  mode; ``n`` counts only the rows really looked up.

With ``requant`` every pooled value ``x`` becomes
``requantize(x, multiplier, shift)`` of its table (gemmlowp, saturated to
int8; the shared :class:`~seedchip.rtl.requant.Requantizer`, bias 0, no ReLU);
otherwise the raw int32 comes out.

Output
------
``pooled`` carries, for every bag in bag order, ``ceil(dim / lanes)`` beats of
``lanes`` elements (elements ``k * lanes .. k * lanes + lanes - 1`` in beat
``k``; elements past ``dim`` are 0), as int32 (raw) or int8 in int32
(requantized). ``lanes`` is the datapath width, a multiple of the memory
word (by default one word: one beat per word of a row, so the output keeps
up with the reads; wider, it keeps up with the hot-row cache). ``last`` marks a bag's final beat, ``batch_last`` the final
beat of the batch's final bag.

Bounds checks (``cmd.bounds``, index >= the table's ``rows``)
--------------------------------------------------------------
* FATAL: error ``OUT_OF_RANGE`` (see below);
* CLAMP: row 0 is looked up instead; ``clamped`` counts it;
* SKIP: the index is left out (no read, not counted in ``n``); ``skipped``
  counts it.

The index on the wire is unsigned: -1 is all ones, out of range for every
table. In every mode the engine never issues a memory request outside the
table's extent ``base .. base + rows * pitch - 1``.

Errors
------
``error`` (:class:`~seedchip.emb_protocol.GatherError`) with ``error_bag``
(bag number within the batch) and ``error_index`` (meaning per code, see the
enum) hold the first error in stream order:

* bag-level errors of bag ``i`` come before its indices: ``BAD_TABLE``
  (table >= n_tables or invalid), then ``BAD_OFFSET`` (``offsets[i+1] <
  offsets[i]``), then ``BAG_TOO_LONG`` (``offsets[i+1] - offsets[i] > max_bag``);
  ``BAD_CMD`` and ``BAD_OFFSET`` for ``offsets[0] != 0`` are bag 0's and come
  first;
* ``OUT_OF_RANGE`` at the offending index in FATAL mode;
* ``MEM_ERROR``: a read answered with ``err``. It replaces an input error that
  was reported earlier in time (the read precedes it in stream order);
* ``BAD_DESC`` from a descriptor write.

Every error is fatal to its batch. The engine then issues no new reads, lets
the reads in flight return, emits the bags *before* the erroneous bag (they
are complete and correct) and nothing else, and consumes and discards the
rest of the batch's input: ``bags`` up to the item with ``last`` set and
``indices`` up to ``max(offsets)``; so the streams stay aligned for the next
batch and nothing hangs. ``busy`` falls when that is done. The error then
stays, and ``cmd`` is not accepted, until the host pulses ``clear`` (after
``busy`` fell): a queued batch cannot start before the host has seen the
error. With ``MEM_ERROR`` the counters may include lookups the engine issued
before the error reached its issue stage.

Hot-row cache (``cache_rows`` > 0)
----------------------------------
Recommendation traffic is skewed, so recently looked-up rows are kept on
chip: ``cache_rows`` lines of one row each (up to ``max_dim`` bytes, stored
``lanes`` bytes wide), direct-mapped, keyed by (table, row number looked
up); the line of a key is ``(row ^ table * 0x9E5) % cache_rows``. A hit
reads no memory and its row comes out of block RAM at one beat (``lanes``
bytes) per cycle, against one memory word per cycle for a miss: with
``lanes`` wider than the memory word, hits are faster than the pins.

The cache is transparent: results are the same with or without it. It is
emptied by every descriptor write (good or refused) and by ``cache_clear``
(a pulse; for exact hit counts, give it while the engine is idle; mid-batch
it is safe but the counts then depend on timing). Emptying sweeps the lines,
one per cycle (the valid bits live in block RAM with the keys); meanwhile
lookups neither hit nor allocate, and no batch starts. After a read answered
with ``err`` the engine neither hits nor allocates and keeps the cache
empty until ``clear``. ``cache_hits`` + ``cache_misses`` = ``lookups``
(clamped lookups use row 0's key). A miss allocates its line when its first
word is requested, so the key store always names the last row sent to a
line; a hit on a row whose fill is still in flight is served (it waits
behind the fill in the tag FIFO, see below). Lookups are checked in lookup
order, one per cycle, two stages before C (S1 reads the key, S2 decides and
allocates; the decision of the lookup just ahead is forwarded). :class:`~seedchip.sim.emb_golden.GatherModel`
simulates the cache exactly (``cache_rows``), hit counts included.

Status
------
``busy``: a batch is accepted and not finished (its last output beat not yet
taken, or its input not yet consumed). ``clamped``, ``skipped``, ``lookups``
(rows read, clamped ones included), ``cycles`` (cycles with ``busy`` high):
32-bit counters since reset, wrapping.

Design
======
::

    bags -> [A: offsets, table] -> jobs -> [B: indices, bounds, row*pitch+base]
         -> lookups -> [C: cache check; a miss: one word request per cycle] -> mem.req
                                      \\-> tag FIFO (inflight) --\\
    mem.resp ------------------------------- [G: gearbox | cache read] -> beats
         -> [D: accumulate] -> 4 accumulator banks -> [E: drain, mean divider]
         -> Requantizer x lanes -> output FIFO -> pooled

* A turns ``bags`` items into bag jobs, one per cycle, with the table's
  descriptor (block RAM) and the bag-level checks.
* B walks a job's indices, one per cycle: bounds check, then a two-stage
  ``base + row * pitch``. Bag metadata (``n``, table parameters, mode) goes
  to E through a FIFO.
* C holds one lookup (C0, loaded from the lookup FIFO while the cache's
  key store is read) and checks the cache: a hit pushes one tag and no
  request, in one cycle (the cache's line is allocated at issue, so the
  check depends only on the order of the lookups); a miss allocates the
  line and issues the lookup's ``pitch`` word reads back to back, one per
  cycle, pushing one tag per beat (at the beat's last word) into the tag
  FIFO and one entry per read into the word FIFO (``inflight`` entries
  each; the word FIFO bounds the reads in flight). Skipped indices, empty
  bags and aborted bags push a tag with no read.
* R, the gearbox, takes the responses in order with their word entries and
  packs ``lanes / word_lanes`` words into a beat (a row starts on a beat;
  the final beat of a row may be partial, its unused lanes are past
  ``dim``) into the beat FIFO, ahead of G.
* G takes tags in order, hence keeps hits and misses in lookup order: a
  miss's tag takes its beat from the beat FIFO and writes it into the row's
  cache line (the fill); a hit's tag is expanded into its row's beats read
  from the cache, one per cycle. Every fill to a line was issued before any
  hit that saw its key, so a hit always reads a completed fill.
* D multiplies a beat by the weight and read-modify-writes the bag's
  accumulator bank: read in D1 (transparent read port), the word registered
  in D2, added (or maxed) in D3, written in D4. Two beats to one word are
  kept three cycles apart, so rows of one beat accumulate at one every three
  cycles and rows of two beats at two every three, longer ones at one beat
  per cycle. With the cache a stage D0 first registers the cache's block RAM
  output.
* E drains a finished bank (one word per cycle, holding a credit for every
  beat so the fixed-latency pipeline never needs backpressure) while D fills
  the other: a bag's reads overlap the previous bag's drain. Mean is an
  8-stage restoring divider per lane: ``|s| <= 128 n`` makes the quotient
  at most 128.

Throughput: one word read per cycle when the memory takes one, and a bag
costs no idle cycle on the memory port unless it is empty, all-skipped, or
the drain falls behind (bags shorter than one row each, with backpressure).
G takes one beat per cycle, miss or hit: a row costs it ``ceil(dim / lanes)``
cycles, and the tag FIFO lets the memory work on later misses while G reads
hits out of the cache.
Batches do not overlap: between two batches the pipeline drains (about
memory latency + 30 cycles).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..checks import check_int
from ..emb_protocol import (BagLayout, BoundsMode, CmdLayout, COUNTER_WIDTH, GatherError,
                            OFFSET_WIDTH, PoolMode, desc_layout, index_layout,
                            pooled_layout)
from .bufmem import BufferRAM
from .gather_accum import AccumulatorBanks, beat_ctl_layout
from .gather_bags import BagParser, JobKind
from .gather_desc import DescriptorTable
from .gather_gearbox import Gearbox, word_entry_layout
from .gather_divider import MeanDivider, drain_ctl_layout
from .gather_output import PooledOutput
from .memport import MemPortSignature

__all__ = ["GatherEngine"]


#: accumulator banks (bags being accumulated or drained at once)
ACC_BANKS = 4


class GatherEngine(wiring.Component):
    """EmbeddingBag gather/pool engine (semantics: module docstring).

    Parameters (keyword-only)
    -------------------------
    data_width : int
        Memory word width, 8..64, a multiple of 8; ``lanes = data_width // 8``.
    addr_width : int
        Memory word address width, 1..40.
    n_tables : int
        Descriptors, 1..256.
    max_dim : int
        Largest row (bytes), 1..1024.
    max_bag : int
        Longest bag, 1..65535.
    inflight : int
        Tag FIFO depth = most reads in flight, 4..256.
    index_width : int
        Width of ``indices.payload.index`` and of a descriptor's ``rows``, 1..32.
    lanes : int or None
        Datapath width in int8 lanes (accumulate, drain, ``pooled`` beat), 1..8
        and a multiple of the memory word's bytes; default one memory word.
    cache_rows : int
        Hot-row cache lines, 0 (no cache, no cache hardware) or a power of 2,
        2..4096. Each line holds one row of up to ``max_dim`` bytes.

    Ports
    -----
    desc : In(stream(desc_layout(addr_width, index_width)))
    cmd : In(stream(CmdLayout))
    bags : In(stream(BagLayout))
    indices : In(stream(index_layout(index_width)))
    pooled : Out(stream(pooled_layout(lanes)))
    mem : Out(MemPortSignature(addr_width, data_width))
        Reads only (``we`` = 0).
    clear : In(1)
        Pulse: clear the error.
    busy : Out(1)
    error : Out(GatherError); error_bag, error_index : Out(32)
    clamped, skipped, lookups, cycles : Out(32)
    cache_clear : In(1)
        Pulse: invalidate the whole hot-row cache.
    cache_hits, cache_misses : Out(32)
        Lookups served from the cache / read from memory (0 without a cache).

    Latency: a bag's last beat is written to the output FIFO 13 cycles (14
    with the cache) + the requantizer's latency after its last response was
    taken.
    """

    def __init__(self, *, data_width=16, addr_width=25, n_tables=8, max_dim=128, max_bag=64,
                 inflight=32, index_width=32, lanes=None, cache_rows=0):
        check_int("data_width", data_width, 8, 64)
        if data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {data_width!r}")
        check_int("addr_width", addr_width, 1, 40)
        check_int("n_tables", n_tables, 1, 256)
        check_int("max_dim", max_dim, 1, 1024)
        check_int("max_bag", max_bag, 1, 65535)
        check_int("inflight", inflight, 4, 256)
        check_int("index_width", index_width, 1, 32)
        word_lanes = data_width // 8
        if lanes is None:
            lanes = word_lanes
        check_int("lanes", lanes, 1, 8)
        if lanes % word_lanes:
            raise ValueError(f"lanes must be a multiple of the memory word's {word_lanes} "
                             f"byte(s), not {lanes!r}")
        check_int("cache_rows", cache_rows, 0, 4096)
        if cache_rows == 1 or cache_rows & (cache_rows - 1):
            raise ValueError(f"cache_rows must be 0 or a power of 2 from 2, not {cache_rows!r}")
        self.data_width = data_width
        self.addr_width = addr_width
        self.n_tables = n_tables
        self.max_dim = max_dim
        self.max_bag = max_bag
        self.inflight = inflight
        self.index_width = index_width
        self.word_lanes = word_lanes
        self.lanes = lanes
        self.ratio = lanes // word_lanes
        self.cache_rows = cache_rows
        self.max_pitch = -(-max_dim // word_lanes)
        self.max_beats = -(-max_dim // lanes)
        self.desc_layout = desc_layout(addr_width=addr_width, index_width=index_width)
        self.index_layout = index_layout(index_width=index_width)
        self.pooled_layout = pooled_layout(lanes=self.lanes)
        super().__init__({
            "desc": In(stream.Signature(self.desc_layout)),
            "cmd": In(stream.Signature(CmdLayout)),
            "bags": In(stream.Signature(BagLayout)),
            "indices": In(stream.Signature(self.index_layout)),
            "pooled": Out(stream.Signature(self.pooled_layout)),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=data_width)),
            "clear": In(1),
            "busy": Out(1),
            "error": Out(GatherError),
            "error_bag": Out(COUNTER_WIDTH),
            "error_index": Out(COUNTER_WIDTH),
            "clamped": Out(COUNTER_WIDTH),
            "skipped": Out(COUNTER_WIDTH),
            "lookups": Out(COUNTER_WIDTH),
            "cycles": Out(COUNTER_WIDTH),
            "cache_clear": In(1),
            "cache_hits": Out(COUNTER_WIDTH),
            "cache_misses": Out(COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes                  # datapath lanes (bytes per beat)
        WL = self.word_lanes            # bytes per memory word
        R = self.ratio                  # memory words per beat
        dw = self.data_width
        aw, iw = self.addr_width, self.index_width
        max_pitch = self.max_pitch
        max_beats = self.max_beats
        pitch_shape = range(max_pitch + 1)
        beats_shape = range(max_beats + 1)
        kbits = ceil_log2(max_beats)
        cache = self.cache_rows > 0
        dim_shape = range(self.max_dim + 1)
        n_shape = range(self.max_bag + 1)
        tbits = max(1, ceil_log2(self.n_tables))

        # -- descriptor storage and writes (W1-W3) -------------------------------------------
        m.submodules.desc_table = dtab = DescriptorTable(
            addr_width=aw, index_width=iw, n_tables=self.n_tables, max_dim=self.max_dim,
            word_lanes=WL, lanes=L)
        tdesc = dtab.tdesc
        wiring.connect(m, wiring.flipped(self.desc), dtab.desc)
        tvalid = dtab.tvalid
        w_busy = dtab.w_busy
        w3_v = dtab.written

        busy = Signal()
        error_set = Signal()       # any error held
        m.d.comb += [self.busy.eq(busy), error_set.eq(self.error != GatherError.NONE),
                     dtab.busy.eq(busy)]

        # Error reports of this cycle (resolved at the end).
        desc_err = dtab.err
        desc_err_table = dtab.err_table
        b_err = Signal()
        b_err_code = Signal(GatherError)
        b_err_bag = Signal(COUNTER_WIDTH)
        b_err_val = Signal(COUNTER_WIDTH)
        d_err = Signal()
        d_err_bag = Signal(COUNTER_WIDTH)
        d_err_val = Signal(COUNTER_WIDTH)

        # The hot-row cache's valid bits live in its key store (block RAM); it is
        # emptied by a sweep over the lines, one per cycle, which holds the next
        # batch back (exact hit counts) and stops hits and allocation meanwhile.
        sweeping = Signal()

        # -- command ---------------------------------------------------------------------
        c_mode = Signal(PoolMode)
        c_bounds = Signal(BoundsMode)
        c_weighted = Signal()
        c_requant = Signal()
        c_bad = Signal()
        cmd_take = Signal()
        m.d.comb += [
            self.cmd.ready.eq(~busy & ~error_set & ~w_busy & ~self.desc.valid & ~sweeping),
            cmd_take.eq(self.cmd.valid & self.cmd.ready),
        ]
        with m.If(cmd_take):
            p = self.cmd.payload
            mode_raw = p.mode.as_value()
            bounds_raw = p.bounds.as_value()
            m.d.sync += [
                c_mode.eq(p.mode), c_bounds.eq(p.bounds),
                c_weighted.eq(p.weighted), c_requant.eq(p.requant),
                c_bad.eq((mode_raw == 3) | (bounds_raw == 3)
                         | (p.weighted & (p.mode != PoolMode.SUM))),
            ]

        # -- A: bags items -> jobs ----------------------------------------------------------
        m.submodules.bag_parser = bagp = BagParser(
            n_tables=self.n_tables, max_bag=self.max_bag, tdesc=tdesc)
        wiring.connect(m, wiring.flipped(self.bags), bagp.bags)
        m.d.comb += [bagp.start.eq(cmd_take), bagp.bad_cmd.eq(c_bad), bagp.tvalid.eq(tvalid),
                     dtab.rd_addr.eq(bagp.desc_addr), bagp.desc_data.eq(dtab.rd_data)]
        jobs = bagp.jobs
        job = jobs.payload

        # -- B: indices -> lookups ------------------------------------------------------------
        # The cache line of a key (computed in B2, ahead of the lookup FIFO).
        ibits = exact_log2(self.cache_rows) if cache else 0

        def line_of(rownum, table):
            # spread the tables over the lines so row r of every table does not collide
            return (rownum[:ibits] ^ (table * 0x9E5)[:ibits])[:ibits]

        lk_layout = data.StructLayout({
            "line": unsigned(ibits),
            "row": 1,             # 1: read pitch words (or a cache hit); 0: a tag with no read
            "addr": unsigned(aw),
            "pitch": pitch_shape,
            "beats": beats_shape,
            # the cache key (table, row number looked up)
            "table": unsigned(tbits if cache else 0),
            "rownum": unsigned(iw if cache else 0),
            "init": 1,            # first row of the bag: overwrite the accumulator
            "bag_end": 1,
            "batch_end": 1,
            "abort": 1,
            "is_max": 1,
            "weight": signed(8),
            "index": unsigned(iw),
        })
        meta_layout = data.StructLayout({
            "n": n_shape,
            "beats": beats_shape,
            "dim": dim_shape,
            "mean": 1,
            "requant": 1,
            "multiplier": signed(32),
            "shift": unsigned(5),
            "batch_last": 1,
            "abort": 1,
        })
        LK_DEPTH = 4
        m.submodules.lookups_fifo = lkf = SyncFIFO(width=lk_layout.size, depth=LK_DEPTH)
        META_DEPTH = 16
        m.submodules.meta_fifo = metaf = SyncFIFOBuffered(width=meta_layout.size, depth=META_DEPTH)
        meta_w = meta_layout(metaf.w_data)

        b_active = Signal()
        b_discard = Signal()
        b_end_sent = Signal()
        b_k = Signal(n_shape)
        b_n = Signal(n_shape)
        b_bag = Signal(COUNTER_WIDTH)
        b_consumed = Signal(OFFSET_WIDTH)
        lk_res = Signal(range(LK_DEPTH + 1))     # lookups in B1, B2 and the FIFO
        lk_ok = Signal()
        emit = Signal()                         # B0 sends a lookup into B1
        e_row = Signal()
        e_rownum = Signal(iw)
        e_init = Signal()
        e_bag_end = Signal()
        e_batch_end = Signal()
        e_abort = Signal()
        e_weight = Signal(signed(8))
        e_index = Signal(iw)
        meta_push = Signal()
        meta_n = Signal(n_shape)
        meta_abort = Signal()
        lk_pop = Signal()

        m.d.comb += lk_ok.eq((lk_res < LK_DEPTH) & metaf.w_rdy)
        m.d.sync += lk_res.eq(lk_res + emit - lk_pop)

        # The indices enter through a 2-entry FIFO (registered output: the
        # bounds check starts from a flop, not from the producer's logic).
        m.submodules.idx_fifo = idxf = SyncFIFOBuffered(width=self.index_layout.size, depth=2)
        m.d.comb += [idxf.w_data.eq(self.indices.payload), idxf.w_en.eq(self.indices.valid),
                     self.indices.ready.eq(idxf.w_rdy)]
        idx = self.index_layout(idxf.r_data)
        oor = Signal()
        m.d.comb += oor.eq(idx.index >= job.d.rows)
        with m.If(cmd_take):
            m.d.sync += [b_active.eq(1), b_discard.eq(0), b_end_sent.eq(0), b_k.eq(0),
                         b_n.eq(0), b_bag.eq(0), b_consumed.eq(0)]

        def abort_marker():
            m.d.comb += [emit.eq(1), e_row.eq(0), e_bag_end.eq(1), e_batch_end.eq(1),
                         e_abort.eq(1), meta_push.eq(1), meta_abort.eq(1)]
            m.d.sync += [b_discard.eq(1), b_end_sent.eq(1)]

        # One action per cycle, in priority order.
        with m.If(b_active & error_set & ~b_discard):
            # an error elsewhere (MEM_ERROR): stop issuing, end the batch for D and E
            with m.If(b_end_sent):
                m.d.sync += b_discard.eq(1)
            with m.Elif(lk_ok):
                abort_marker()
        with m.Elif(b_active & jobs.valid & (job.kind == JobKind.END)):
            with m.If(b_consumed >= job.value):
                m.d.comb += jobs.ready.eq(1)
                m.d.sync += b_active.eq(0)
            with m.Else():
                m.d.comb += idxf.r_en.eq(1)
                with m.If(idxf.r_rdy):
                    m.d.sync += b_consumed.eq(b_consumed + 1)
        with m.Elif(jobs.valid & b_discard):
            m.d.comb += jobs.ready.eq(1)
        with m.Elif(jobs.valid & (job.kind == JobKind.ERR)):
            with m.If(lk_ok):
                m.d.comb += [jobs.ready.eq(1), b_err.eq(1), b_err_code.eq(job.code),
                             b_err_bag.eq(b_bag), b_err_val.eq(job.value)]
                abort_marker()
        with m.Elif(jobs.valid & (job.kind == JobKind.BAG) & lk_ok):
            with m.If(job.len == 0):
                m.d.comb += [emit.eq(1), e_row.eq(0), e_bag_end.eq(1),
                             e_batch_end.eq(job.last_bag), meta_push.eq(1), meta_n.eq(0),
                             jobs.ready.eq(1)]
                m.d.sync += [b_bag.eq(b_bag + 1), b_end_sent.eq(b_end_sent | job.last_bag)]
            with m.Elif(idxf.r_rdy):
                m.d.comb += idxf.r_en.eq(1)
                m.d.sync += b_consumed.eq(b_consumed + 1)
                with m.If(oor & (c_bounds == BoundsMode.FATAL)):
                    m.d.comb += [b_err.eq(1), b_err_code.eq(GatherError.OUT_OF_RANGE),
                                 b_err_bag.eq(b_bag), b_err_val.eq(idx.index)]
                    abort_marker()
                with m.Else():
                    is_row = ~(oor & (c_bounds == BoundsMode.SKIP))
                    last_in_bag = b_k == job.len - 1
                    m.d.comb += [
                        emit.eq(1), e_row.eq(is_row), e_rownum.eq(Mux(oor, 0, idx.index)),
                        e_init.eq(b_n == 0), e_bag_end.eq(last_in_bag),
                        e_batch_end.eq(last_in_bag & job.last_bag),
                        e_weight.eq(Mux(c_weighted, idx.weight, 1)), e_index.eq(idx.index),
                    ]
                    m.d.sync += [
                        self.lookups.eq(self.lookups + is_row),
                        self.clamped.eq(self.clamped + (oor & (c_bounds == BoundsMode.CLAMP))),
                        self.skipped.eq(self.skipped + (oor & (c_bounds == BoundsMode.SKIP))),
                    ]
                    with m.If(last_in_bag):
                        m.d.comb += [meta_push.eq(1), meta_n.eq(b_n + is_row), jobs.ready.eq(1)]
                        m.d.sync += [b_k.eq(0), b_n.eq(0), b_bag.eq(b_bag + 1),
                                     b_end_sent.eq(b_end_sent | job.last_bag)]
                    with m.Else():
                        m.d.sync += [b_k.eq(b_k + 1), b_n.eq(b_n + is_row)]

        m.d.comb += [
            metaf.w_en.eq(meta_push),
            meta_w.n.eq(meta_n),
            meta_w.beats.eq(job.d.beats),
            meta_w.dim.eq(job.d.dim),
            meta_w.mean.eq(c_mode == PoolMode.MEAN),
            meta_w.requant.eq(c_requant),
            meta_w.multiplier.eq(job.d.multiplier),
            meta_w.shift.eq(job.d.shift),
            meta_w.batch_last.eq(e_batch_end),
            meta_w.abort.eq(meta_abort),
        ]

        # B1: row * pitch; B2: + base
        b1 = Signal(lk_layout)
        b1_v = Signal()
        b1_rownum = Signal(iw)
        b1_base = Signal(aw)
        b2 = Signal(lk_layout)
        b2_v = Signal()
        b2_off = Signal(aw)
        b2_base = Signal(aw)
        m.d.sync += [
            b1_v.eq(emit),
            b1.row.eq(e_row), b1.pitch.eq(job.d.pitch), b1.beats.eq(job.d.beats),
            b1.table.eq(job.table), b1.rownum.eq(e_rownum), b1.init.eq(e_init),
            b1.bag_end.eq(e_bag_end), b1.batch_end.eq(e_batch_end), b1.abort.eq(e_abort),
            b1.is_max.eq(c_mode == PoolMode.MAX), b1.weight.eq(e_weight),
            b1.index.eq(e_index),
            b1_rownum.eq(e_rownum), b1_base.eq(job.d.base),
            b2_v.eq(b1_v), b2.eq(b1), b2_off.eq((b1_rownum * b1.pitch)[:aw]), b2_base.eq(b1_base),
        ]
        if cache:
            m.d.sync += b2.line.eq(line_of(b1.rownum, b1.table))
        lk_w = lk_layout(lkf.w_data)
        m.d.comb += [
            lkf.w_en.eq(b2_v),
            lk_w.eq(b2),
            lk_w.addr.eq(b2_base + b2_off),
        ]

        # -- C: lookups -> word requests (or a cache hit) + tags ----------------------------------
        # C0 holds the lookup being issued. It is a register so that the cache
        # key, read from block RAM when the lookup is loaded, lines up with it.
        tag_layout = data.StructLayout({
            "has_resp": 1,        # a miss's beat k: wait for it from the gearbox
            "hit": 1,             # a cache hit: `beats` beats from cache line `line`
            "k": range(max_beats),
            "beats": beats_shape,
            "line": range(max(1, self.cache_rows)),
            "init": 1,
            "bag_end": 1,
            "batch_end": 1,
            "abort": 1,
            "is_max": 1,
            "weight": signed(8),
            "index": unsigned(iw),
        })
        m.submodules.tags = tagf = SyncFIFOBuffered(width=tag_layout.size, depth=self.inflight)
        tag_w = tag_layout(tagf.w_data)
        # one entry per word read (its place in its beat), for the gearbox;
        # its depth bounds the reads in flight
        word_layout = word_entry_layout(ratio=R)
        m.submodules.words = wordf = SyncFIFOBuffered(width=word_layout.size,
                                                      depth=self.inflight)
        word_w = word_layout(wordf.w_data)
        lk = lk_layout(lkf.r_data)
        c0 = Signal(lk_layout)
        c0_v = Signal()
        c0_line = Signal(range(max(1, self.cache_rows)))
        c_w = Signal(range(max_pitch))
        c_slot = Signal(range(R))
        c_k = Signal(range(max_beats))
        req = self.mem.req
        # Word requests leave through a small FIFO: C sees its (registered)
        # room, not the arbiter's combinational ready.
        m.submodules.req_fifo = reqf = SyncFIFOBuffered(width=aw, depth=4)
        slot_free = reqf.w_rdy
        c_go = Signal()
        c_done = Signal()
        c_load = Signal()
        c_last_word = Signal()
        c_emit = Signal()
        c_hit = Signal()
        c_read = Signal()
        c_flush = Signal()        # a read came back with err: stop hitting and allocating
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
        # C0 loads from the hit check (S2) with the cache, else from the FIFO.
        c_src_v = Signal()
        c_src = Signal(lk_layout)
        s1_v = Signal()               # the cache's hit-check stages hold a lookup
        s2_v = Signal()
        m.d.comb += c_load.eq(c_src_v & (~c0_v | c_done))
        with m.If(c_load):
            m.d.sync += [c0.eq(c_src), c0_v.eq(1)]
        with m.Elif(c_done):
            m.d.sync += c0_v.eq(0)
        if not cache:
            m.d.comb += [c_src_v.eq(lkf.r_rdy), c_src.eq(lk), lk_pop.eq(c_load),
                         lkf.r_en.eq(c_load)]
        with m.If(c_go):
            m.d.sync += [
                c_w.eq(Mux(c_last_word, 0, c_w + 1)),
                c_slot.eq(Mux(c_emit, 0, c_slot + 1)),
                c_k.eq(Mux(c_last_word, 0, Mux(c_emit, c_k + 1, c_k))),
            ]
        m.d.comb += [
            reqf.w_en.eq(c_go & c_read),
            reqf.w_data.eq(c0.addr + c_w),
            req.valid.eq(reqf.r_rdy),
            req.payload.addr.eq(reqf.r_data),
            req.payload.we.eq(0), req.payload.wdata.eq(0), req.payload.mask.eq(0),
            reqf.r_en.eq(req.ready),
        ]

        if cache:
            # Direct-mapped, keyed by (table, row). Every lookup passes the hit
            # check in lookup order, before C: S1 reads its line's key (block
            # RAM), S2 holds the key registered and decides, in its first
            # cycle, hit or miss; a miss allocates its line there (key written,
            # line valid), so the key store always names the last row sent to
            # that line. The fill itself happens in G, in tag order: a later
            # hit on that line is behind the fill in the tag FIFO, so it reads
            # the filled row even when the fill was still in flight at the
            # check. C0 gets the decision registered.
            # The one check S1's key read cannot see is that of the lookup just
            # ahead (in S2 when this one moves into S2): when both name the
            # same line its outcome is forwarded (that line then holds its key).
            # A line's valid bit is stored with its key (a register per line
            # made a 1024-way select and clear that limited the engine to
            # 45 MHz); emptying the cache sweeps every line (``sweeping``),
            # and a lookup whose key was read before a sweep ended neither
            # hits nor allocates.
            key_layout = data.StructLayout({"valid": 1, "key": unsigned(tbits + iw)})
            m.submodules.cache_keys = ckeys = Memory(shape=key_layout, depth=self.cache_rows,
                                                     init=[])
            ck_wr = ckeys.write_port()
            ck_rd = ckeys.read_port(transparent_for=(ck_wr,))
            sweep_line = Signal(ibits)

            def key_of(lkv):
                return Cat(lkv.rownum, lkv.table)

            s1 = Signal(lk_layout)
            s1_line = Signal(ibits)
            s1_stale = Signal()
            s2 = Signal(lk_layout)
            s2_line = Signal(ibits)
            s2_new = Signal()         # S2's first cycle: the check
            s2_stale = Signal()
            s2_kq = Signal(key_layout)
            s2_fwd = Signal()         # the lookup ahead had this line and kept its key there
            s2_fwd_eq = Signal()      # ... and the same key
            s2_hit_r = Signal()
            s2_on_r = Signal()
            s2_hit = Signal()
            s2_on = Signal()          # S2's lookup left its key in its line
            s1_adv = Signal()
            s1_load = Signal()
            s2_off = Signal()
            hit_now = Signal()
            m.d.comb += [
                c_src_v.eq(s2_v), c_src.eq(s2),
                s1_adv.eq(s1_v & (~s2_v | c_load)),
                s1_load.eq(lkf.r_rdy & (~s1_v | s1_adv)),
                lkf.r_en.eq(s1_load), lk_pop.eq(s1_load),
                ck_rd.addr.eq(lk.line), ck_rd.en.eq(s1_load),
                s2_off.eq(c_flush | sweeping | s2_stale),
                hit_now.eq(s2.row & ~s2_off & Mux(s2_fwd, s2_fwd_eq,
                                                  s2_kq.valid & (s2_kq.key == key_of(s2)))),
                s2_hit.eq(Mux(s2_new, hit_now, s2_hit_r)),
                s2_on.eq(Mux(s2_new, s2.row & ~s2_off, s2_on_r)),
            ]
            with m.If(s1_load):
                m.d.sync += [s1.eq(lk), s1_line.eq(lk.line),
                             s1_stale.eq(sweeping)]
            with m.Elif(sweeping):
                m.d.sync += s1_stale.eq(1)
            m.d.sync += [s1_v.eq(s1_load | (s1_v & ~s1_adv)),
                         s2_v.eq(s1_adv | (s2_v & ~c_load)),
                         s2_new.eq(s1_adv)]
            with m.If(s1_adv):
                m.d.sync += [
                    s2.eq(s1), s2_line.eq(s1_line), s2_kq.eq(ck_rd.data),
                    s2_stale.eq(s1_stale | sweeping),
                    s2_fwd.eq(s2_v & s2_on & (s1_line == s2_line)),
                    s2_fwd_eq.eq(key_of(s1) == key_of(s2)),
                ]
            with m.If(s2_new):
                m.d.sync += [s2_hit_r.eq(hit_now), s2_on_r.eq(s2.row & ~s2_off)]
            c0_hit = Signal()
            with m.If(c_load):
                m.d.sync += [c0_hit.eq(s2_hit), c0_line.eq(s2_line)]
            m.d.comb += c_hit.eq(c0_hit)
            alloc = s2_new & s2.row & ~s2_off & ~hit_now
            with m.If(sweeping):
                m.d.comb += [ck_wr.addr.eq(sweep_line), ck_wr.data.valid.eq(0), ck_wr.en.eq(1)]
            with m.Else():
                m.d.comb += [ck_wr.addr.eq(s2_line), ck_wr.data.valid.eq(1),
                             ck_wr.data.key.eq(key_of(s2)), ck_wr.en.eq(alloc)]
            with m.If(s2_new & s2.row):
                m.d.sync += [self.cache_hits.eq(self.cache_hits + hit_now),
                             self.cache_misses.eq(self.cache_misses + ~hit_now)]

        # -- R: responses -> beats (gearbox) ---------------------------------------------------------
        m.submodules.gearbox = gbx = Gearbox(data_width=dw, lanes=L,
                                             depth=max(4, self.inflight // R + 2))
        wiring.connect(m, wiring.flipped(self.mem.resp), gbx.resp)
        m.d.comb += [gbx.words.valid.eq(wordf.r_rdy), gbx.words.payload.eq(wordf.r_data),
                     wordf.r_en.eq(gbx.words.ready)]
        g_word_err = gbx.word_err

        # -- G: tags + beats -> D (cache fill and read) -----------------------------------------------
        # Tags are taken in order, so hits and misses keep lookup order.
        # ACC_BANKS accumulator banks, used in turn: D fills one while E
        # drains others. A bank is busy from its bag's first beat in G until
        # E has read it out (about a dozen cycles); with two, bags of one
        # short row were held to one per six cycles.
        NB = ACC_BANKS
        m.submodules.accum = acc = AccumulatorBanks(lanes=L, max_bag=self.max_bag,
                                                    max_beats=max_beats, index_width=iw,
                                                    banks=NB)
        accw = acc.acc_width

        full = Signal(NB)     # bank claimed by D's current/finished bag (set at its bag_end beat)
        done = Signal(NB)     # bank written completely
        disc = Signal(NB)     # bank's bag is discarded
        d_bank = Signal(range(NB))
        tag = tag_layout(tagf.r_data)
        gbeat = gbx.beats.payload
        bank_free = ~full.bit_select(d_bank, 1)
        g_go = Signal()
        g_k = Signal(range(max_beats))       # beat of a hit being read out
        g_hit_last = Signal()
        g_bag_end = Signal()
        g_hazard = Signal()
        beat = gbeat.data
        m.d.comb += [
            g_go.eq(tagf.r_rdy & bank_free & (~tag.has_resp | gbx.beats.valid) & ~g_hazard),
            gbx.beats.ready.eq(g_go & tag.has_resp),
            g_hit_last.eq(g_k == tag.beats - 1),
            tagf.r_en.eq(g_go & (~tag.hit | g_hit_last)),
            g_bag_end.eq(tag.bag_end & (~tag.hit | g_hit_last)),
        ]
        with m.If(g_go & tag.hit):
            m.d.sync += g_k.eq(Mux(g_hit_last, 0, g_k + 1))
        # D's read-modify-write sees the write of the beat three ahead
        # (transparent read port) but not those of the two just ahead: a beat
        # waits while one of the two beats issued before it goes to its
        # accumulator word (rows of one or two beats in a bag).
        g_k_cur = Mux(tag.hit, g_k, tag.k)
        hz = [Signal(1 + len(g_k_cur) + len(d_bank), name=f"g_hz{i}") for i in range(2)]  # v, k, bank
        hz_now = Cat(g_go & (tag.has_resp | tag.hit), g_k_cur, d_bank)
        m.d.sync += [hz[0].eq(hz_now), hz[1].eq(hz[0])]
        m.d.comb += g_hazard.eq(Cat(h[0] & (h[1:] == Cat(g_k_cur, d_bank)) for h in hz).any())
        if cache:
            flush_r = Signal()
            # C stops hitting and allocating from the cycle after the err
            # response (registered, off the response path); a line allocated
            # in that cycle is cleared with the rest
            m.d.comb += c_flush.eq(flush_r)
            with m.If(g_word_err):
                m.d.sync += flush_r.eq(1)
            with m.Elif(self.clear):
                m.d.sync += flush_r.eq(0)
            # a descriptor write or cache_clear empties the cache; an err
            # response does too (a failed fill left junk in its line), and
            # nothing is cached until the error is cleared
            with m.If(w3_v | self.cache_clear | g_word_err):
                m.d.sync += [sweeping.eq(1), sweep_line.eq(0)]
            with m.Elif(sweeping):
                m.d.sync += sweep_line.eq(sweep_line + 1)
                with m.If(sweep_line == self.cache_rows - 1):
                    m.d.sync += sweeping.eq(0)
            # The lines: BufferRAM (block RAMs with registered inputs and, on
            # ECP5, their output registers on: 32 of them spread over the die,
            # whose bare clock-to-out plus the route back took 12 ns).
            m.submodules.cache_data = cdata = BufferRAM(shape=unsigned(8 * L),
                                                        depth=self.cache_rows << kbits)
            m.d.comb += [
                cdata.w_addr.eq(Cat(tag.k, tag.line) if kbits else tag.line),
                cdata.w_data.eq(beat),
                cdata.w_en.eq(g_go & tag.has_resp),
                cdata.r_addr.eq(Cat(g_k, tag.line) if kbits else tag.line),
            ]

        d1_layout = beat_ctl_layout(max_beats=max_beats, index_width=iw)
        d1 = Signal(d1_layout)
        d1_v = Signal()
        d1_data = Signal(8 * L)
        d1_err = Signal()
        d1_bank = Signal.like(d_bank)
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
        d1_bytes = d1_data
        full_set = Signal(NB)
        full_clr = Signal(NB)
        done_set = Signal(NB)
        with m.If(g_go & g_bag_end):
            m.d.comb += full_set.eq(Const(1, NB) << d_bank)
            m.d.sync += d_bank.eq(d_bank + 1)

        mem_fail = Signal()
        d_bagcnt = Signal(COUNTER_WIDTH)
        with m.If(d1_v):
            with m.If(d1_err & ~mem_fail):
                m.d.comb += [d_err.eq(1), d_err_bag.eq(d_bagcnt), d_err_val.eq(d1.index)]
            with m.If(d1.batch_end):
                m.d.sync += [mem_fail.eq(0), d_bagcnt.eq(0)]
            with m.Else():
                with m.If(d1_err):
                    m.d.sync += mem_fail.eq(1)
                with m.If(d1.bag_end):
                    m.d.sync += d_bagcnt.eq(d_bagcnt + 1)

        # -- D: beats -> accumulator banks -----------------------------------------------------
        m.d.comb += [acc.i.eq(d1), acc.i_v.eq(d1_v), acc.i_data.eq(d1_bytes),
                     acc.i_bank.eq(d1_bank), acc.i_disc.eq(mem_fail | d1_err | d1.abort)]
        with m.If(acc.done_v):
            m.d.comb += done_set.eq(Const(1, NB) << acc.done_bank)
            for b in range(NB):
                with m.If(acc.done_bank == b):
                    m.d.sync += disc[b].eq(acc.done_disc)

        # -- E: drain a finished bank ------------------------------------------------------------
        # Every beat in the drain pipeline holds an output FIFO slot (a credit),
        # so the fixed-latency pipeline never stalls; full rate needs as many
        # slots as cycles from a drain read to the FIFO.
        m.submodules.output = outp = PooledOutput(lanes=L, max_bag=self.max_bag,
                                                  in_latency=1 + MeanDivider.LATENCY)
        wiring.connect(m, outp.pooled, wiring.flipped(self.pooled))
        out_depth = outp.depth
        meta = meta_layout(metaf.r_data)
        e_bank = Signal.like(d_bank)
        e_w = Signal(range(max_beats))
        e_base = Signal(range(max_beats * L + 1))
        out_pending = Signal(range(out_depth + 1))
        e_issue = Signal()
        e_ready = Signal()
        pooled_take = Signal()
        m.d.comb += [
            e_ready.eq(metaf.r_rdy & done.bit_select(e_bank, 1)),
            pooled_take.eq(self.pooled.valid & self.pooled.ready),
        ]
        e_last = e_w == meta.beats - 1
        with m.If(e_ready):
            with m.If(meta.abort | disc.bit_select(e_bank, 1)):
                m.d.comb += [metaf.r_en.eq(1), full_clr.eq(Const(1, NB) << e_bank)]
                m.d.sync += e_bank.eq(e_bank + 1)
            with m.Elif(out_pending < out_depth):
                m.d.comb += e_issue.eq(1)
                with m.If(e_last):
                    m.d.comb += [metaf.r_en.eq(1), full_clr.eq(Const(1, NB) << e_bank)]
                    m.d.sync += [e_bank.eq(e_bank + 1), e_w.eq(0), e_base.eq(0)]
                with m.Else():
                    m.d.sync += [e_w.eq(e_w + 1), e_base.eq(e_base + L)]
        m.d.sync += [
            full.eq((full | full_set) & ~full_clr),
            done.eq((done | done_set) & ~full_clr),
            out_pending.eq(out_pending + e_issue - pooled_take),
        ]
        m.d.comb += [acc.drain_k.eq(e_w), acc.drain_bank.eq(e_bank)]

        # E1: the word read, its bag's parameters
        ctl_layout = drain_ctl_layout(max_bag=self.max_bag)
        e1 = Signal(ctl_layout)
        e1_base = Signal.like(e_base)
        e1_dim = Signal(dim_shape)
        m.d.sync += [
            e1.v.eq(e_issue), e1.n.eq(meta.n), e1.mean.eq(meta.mean), e1.requant.eq(meta.requant),
            e1.multiplier.eq(meta.multiplier), e1.shift.eq(meta.shift), e1.last.eq(e_last),
            e1.batch_last.eq(e_last & meta.batch_last), e1_base.eq(e_base), e1_dim.eq(meta.dim),
        ]
        # E2..: the mean divider, then the final value (registered)
        m.submodules.divider = div = MeanDivider(lanes=L, max_bag=self.max_bag,
                                                 max_dim=self.max_dim, acc_width=accw)
        m.d.comb += [div.i_ctl.eq(e1), div.i_base.eq(e1_base), div.i_dim.eq(e1_dim),
                     div.i_acc.eq(acc.drain_data)]
        f_ctl, f_val = div.o_ctl, div.o_val
        m.d.comb += [outp.i_ctl.eq(f_ctl), outp.i_val.eq(f_val)]

        # -- busy, errors, counters ----------------------------------------------------------------
        empty = Signal()
        m.d.comb += empty.eq(
            bagp.idle & ~b_active & (lk_res == 0) & ~c0_v
            & (reqf.level == 0) & (tagf.level == 0) & (wordf.level == 0) & (gbx.level == 0)
            & ~g1_v & ~Cat(*d0_stages).any() & ~d1_v & ~acc.busy & (full == 0) & (done == 0) & ~s1_v & ~s2_v
            & (metaf.level == 0) & (out_pending == 0))
        with m.If(cmd_take):
            m.d.sync += busy.eq(1)
        with m.Elif(empty):
            m.d.sync += busy.eq(0)
        m.d.sync += self.cycles.eq(self.cycles + busy)

        with m.If(self.clear):
            m.d.sync += [self.error.eq(GatherError.NONE), self.error_bag.eq(0),
                         self.error_index.eq(0)]
        with m.If(d_err & (self.error != GatherError.MEM_ERROR)):
            m.d.sync += [self.error.eq(GatherError.MEM_ERROR), self.error_bag.eq(d_err_bag),
                         self.error_index.eq(d_err_val)]
        with m.Elif(b_err & ~error_set):
            m.d.sync += [self.error.eq(b_err_code), self.error_bag.eq(b_err_bag),
                         self.error_index.eq(b_err_val)]
        with m.Elif(desc_err & ~error_set):
            m.d.sync += [self.error.eq(GatherError.BAD_DESC), self.error_bag.eq(0),
                         self.error_index.eq(desc_err_table)]
        return m
