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
         -> Requantizer x drain_lanes -> output FIFO -> pooled

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
  at most 128. With ``drain_lanes`` below ``lanes`` the drain issues a word
  every ``lanes // drain_lanes`` cycles and a serializer hands the divider
  and the requantizers ``drain_lanes`` sums a cycle (4 DSPs a requantizer
  lane saved); the output gathers the parts back into a beat.

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

from amaranth.hdl import Const, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..emb_protocol import (BagLayout, CmdLayout, COUNTER_WIDTH, GatherError, TABLE_WIDTH,
                            desc_layout, index_layout, pooled_layout)
from ..gather_params import GatherParams
from .gather_accum import AccumulatorBanks
from .gather_bags import BagParser
from .gather_beats import BeatSequencer
from .gather_cachetags import CacheTags
from .gather_control import BatchControl
from .gather_desc import DescriptorTable
from .gather_divider import MeanDivider
from .gather_drain import DrainControl, DrainSerializer
from .gather_gearbox import Gearbox
from .gather_issue import Issuer
from .gather_output import PooledOutput
from .gather_readerr import ReadErrorCheck
from .gather_walker import IndexWalker
from .skid import RegisterSlice
from .memport import MemPortSignature

__all__ = ["GatherEngine"]


#: accumulator banks (bags being accumulated or drained at once)
ACC_BANKS = 4


class GatherEngine(wiring.Component):
    """EmbeddingBag gather/pool engine (semantics: module docstring).

    Parameters
    ----------
    params : GatherParams
        The engine's settings and its memory's geometry
        (:class:`~seedchip.gather_params.GatherParams`, checked there):
        ``lanes``, ``cache_rows``, ``n_tables``, ``max_dim``, ``max_bag``,
        ``inflight``, ``index_width``, ``data_width``, ``addr_width``.

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

    #: read through to :attr:`params` (``engine.lanes`` is ``engine.params.lanes``)
    PARAM_NAMES = frozenset({"data_width", "addr_width", "n_tables", "max_dim", "max_bag",
                             "inflight", "index_width", "lanes", "cache_rows", "word_lanes",
                             "ratio", "max_pitch", "max_beats"})

    def __getattr__(self, name):
        if name in GatherEngine.PARAM_NAMES and "params" in self.__dict__:
            return getattr(self.params, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __init__(self, params: GatherParams):
        self.params = check_type("params", params, GatherParams)
        self.desc_layout = desc_layout(addr_width=params.addr_width,
                                       index_width=params.index_width)
        self.index_layout = index_layout(index_width=params.index_width)
        self.pooled_layout = pooled_layout(lanes=params.lanes)
        super().__init__({
            "desc": In(stream.Signature(self.desc_layout)),
            "cmd": In(stream.Signature(CmdLayout)),
            "bags": In(stream.Signature(BagLayout)),
            "indices": In(stream.Signature(self.index_layout)),
            "pooled": Out(stream.Signature(self.pooled_layout)),
            "mem": Out(MemPortSignature(addr_width=params.addr_width,
                                         data_width=params.data_width)),
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
        p = self.params
        cache = p.cache_rows > 0

        # -- command, busy, errors, cycles ------------------------------------------------------
        m.submodules.control = ctl = BatchControl(table_width=TABLE_WIDTH)
        wiring.connect(m, wiring.flipped(self.cmd), ctl.cmd)
        m.d.comb += [self.busy.eq(ctl.busy), self.error.eq(ctl.error),
                     self.error_bag.eq(ctl.error_bag), self.error_index.eq(ctl.error_index),
                     self.cycles.eq(ctl.cycles), ctl.clear.eq(self.clear)]

        # -- descriptor storage and writes (W1-W3) ---------------------------------------------
        m.submodules.desc_table = dtab = DescriptorTable(p)
        wiring.connect(m, wiring.flipped(self.desc), dtab.desc)
        m.d.comb += [dtab.busy.eq(ctl.busy), ctl.desc_err.eq(dtab.err),
                     ctl.desc_err_table.eq(dtab.err_table)]

        # -- A: bags items -> jobs ----------------------------------------------------------------
        m.submodules.bag_parser = bagp = BagParser(p)
        wiring.connect(m, wiring.flipped(self.bags), bagp.bags)
        m.d.comb += [bagp.start.eq(ctl.start), bagp.bad_cmd.eq(ctl.bad),
                     bagp.tvalid.eq(dtab.tvalid),
                     dtab.rd_addr.eq(bagp.desc_addr), bagp.desc_data.eq(dtab.rd_data)]

        # -- B: jobs + indices -> lookups, bag parameters ------------------------------------------
        m.submodules.walker = walk = IndexWalker(p)
        # the walker's one-step decision (bounds check, bag end) sets jobs.ready, and
        # its bounds check compares each index with the job's row count: a register
        # slice ends both at flops (a skid buffer's output mux in front of that
        # compare's carry chain was the gather engine's critical path in the chip)
        m.submodules.jobs_skid = jskid = RegisterSlice(shape=bagp.jobs.payload.shape())
        wiring.connect(m, bagp.jobs, jskid.i)
        wiring.connect(m, jskid.o, walk.jobs)
        wiring.connect(m, wiring.flipped(self.indices), walk.indices)
        m.d.comb += [
            walk.start.eq(ctl.start), walk.mode.eq(ctl.mode), walk.bounds.eq(ctl.bounds),
            walk.weighted.eq(ctl.weighted), walk.requant.eq(ctl.requant),
            walk.error_set.eq(ctl.error_set),
            ctl.in_err.eq(walk.err), ctl.in_err_code.eq(walk.err_code),
            ctl.in_err_bag.eq(walk.err_bag), ctl.in_err_val.eq(walk.err_val),
            self.lookups.eq(walk.lookups_count), self.clamped.eq(walk.clamped),
            self.skipped.eq(walk.skipped),
        ]

        # -- S1, S2: hot-row cache hit check; C: lookups -> word requests + tags --------------------
        m.submodules.issuer = iss = Issuer(p)
        if cache:
            m.submodules.cache_tags = ctags = CacheTags(p)
            wiring.connect(m, walk.lookups, ctags.lookups)
            wiring.connect(m, ctags.checked, iss.lookups)
            m.d.comb += [ctags.invalidate.eq(dtab.written | self.cache_clear),
                         ctags.clear.eq(self.clear),
                         self.cache_hits.eq(ctags.hits), self.cache_misses.eq(ctags.misses)]
            sweeping, tags_idle = ctags.sweeping, ctags.idle
        else:
            m.d.comb += [iss.lookups.valid.eq(walk.lookups.valid),
                         iss.lookups.payload.lk.eq(walk.lookups.payload),
                         walk.lookups.ready.eq(iss.lookups.ready)]
            sweeping, tags_idle = Const(0), Const(1)
        m.d.comb += ctl.hold.eq(dtab.w_busy | self.desc.valid | sweeping)
        req = self.mem.req
        m.d.comb += [req.valid.eq(iss.req.valid), req.payload.addr.eq(iss.req.payload),
                     req.payload.we.eq(0), req.payload.wdata.eq(0), req.payload.mask.eq(0),
                     iss.req.ready.eq(req.ready)]

        # -- R: responses -> beats (gearbox) ---------------------------------------------------------
        m.submodules.gearbox = gbx = Gearbox(p, depth=max(4, p.inflight // p.ratio + 2))
        wiring.connect(m, wiring.flipped(self.mem.resp), gbx.resp)
        wiring.connect(m, iss.words, gbx.words)
        if cache:
            m.d.comb += ctags.word_err.eq(gbx.word_err)

        # -- G: tags + beats -> D (cache fill and read) -----------------------------------------------
        # ACC_BANKS accumulator banks, used in turn: D fills one while E
        # drains others. A bank is busy from its bag's first beat in G until
        # E has read it out (about a dozen cycles); with two, bags of one
        # short row were held to one per six cycles.
        NB = ACC_BANKS
        m.submodules.beats = seq = BeatSequencer(p, banks=NB)
        wiring.connect(m, iss.tags, seq.tags)
        wiring.connect(m, gbx.beats, seq.beats)

        # -- D: beats -> accumulator banks -----------------------------------------------------
        m.submodules.read_errors = rerr = ReadErrorCheck(p)
        m.submodules.accum = acc = AccumulatorBanks(p, banks=NB)
        m.d.comb += [
            rerr.i.eq(seq.o), rerr.i_v.eq(seq.o_v), rerr.i_err.eq(seq.o_err),
            ctl.mem_err.eq(rerr.err), ctl.mem_err_bag.eq(rerr.err_bag),
            ctl.mem_err_val.eq(rerr.err_val),
            acc.i.eq(seq.o), acc.i_v.eq(seq.o_v), acc.i_data.eq(seq.o_data),
            acc.i_bank.eq(seq.o_bank), acc.i_disc.eq(rerr.disc),
        ]

        # -- E: drain a finished bank; the mean divider; the output --------------------------------
        # a drain narrower than a word: its parts, one a cycle (DrainSerializer)
        narrow = p.drain_every > 1
        ser_latency = DrainSerializer.LATENCY if narrow else 0
        m.submodules.output = outp = PooledOutput(
            p, in_latency=1 + ser_latency + MeanDivider.LATENCY)
        wiring.connect(m, outp.pooled, wiring.flipped(self.pooled))
        m.submodules.drain = drn = DrainControl(p, banks=NB, out_depth=outp.depth)
        wiring.connect(m, walk.meta, drn.meta)
        m.d.comb += [
            drn.claim.eq(seq.claim), drn.claim_bank.eq(seq.bank), seq.full.eq(drn.full),
            drn.done_v.eq(acc.done_v), drn.done_bank.eq(acc.done_bank),
            drn.done_disc.eq(acc.done_disc),
            drn.taken.eq(self.pooled.valid & self.pooled.ready),
            acc.drain_k.eq(drn.drain_k), acc.drain_bank.eq(drn.drain_bank),
        ]
        m.submodules.divider = div = MeanDivider(p, acc_width=acc.acc_width)
        w_ctl, w_base, w_dim, w_acc = drn.o_ctl, drn.o_base, drn.o_dim, acc.drain_data
        if narrow:
            m.submodules.serializer = ser = DrainSerializer(p, acc_width=acc.acc_width)
            m.d.comb += [ser.i_ctl.eq(w_ctl), ser.i_base.eq(w_base), ser.i_dim.eq(w_dim),
                         ser.i_acc.eq(w_acc)]
            w_ctl, w_base, w_dim, w_acc = ser.o_ctl, ser.o_base, ser.o_dim, ser.o_acc
        m.d.comb += [div.i_ctl.eq(w_ctl), div.i_base.eq(w_base), div.i_dim.eq(w_dim),
                     div.i_acc.eq(w_acc),
                     outp.i_ctl.eq(div.o_ctl), outp.i_val.eq(div.o_val)]

        # -- idle: nothing of a batch left anywhere -------------------------------------------------
        m.d.comb += ctl.empty.eq(
            bagp.idle & walk.idle & iss.idle & tags_idle & (gbx.level == 0) & seq.idle
            & ~acc.busy & drn.idle)
        return m
