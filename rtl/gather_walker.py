"""The gather engine's index walker (stage B): jobs + ``indices`` -> lookups.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..checks import check_type
from ..emb_protocol import (BoundsMode, COUNTER_WIDTH, GatherError, OFFSET_WIDTH, PoolMode,
                            index_layout)
from ..gather_params import GatherParams
from .gather_bags import JobKind, job_layout

__all__ = ["IndexWalker", "lookup_flags", "lookup_layout", "meta_layout", "line_of"]


def lookup_flags(params):
    """The fields a lookup carries unchanged through C (its tags) and G (its
    beats) to D: how to pool its row into the bag, and its index for error reports."""
    return {
        "init": 1,            # first row of the bag: overwrite the accumulator
        "bag_end": 1,
        "batch_end": 1,
        "abort": 1,
        "is_max": 1,
        "weight": signed(8),
        "index": unsigned(params.index_width),
    }


def lookup_layout(params):
    """A lookup (B -> C): one row to read (or a cache hit), or a tag with no read."""
    cache = params.cache_rows > 0
    return data.StructLayout({
        "line": unsigned(exact_log2(params.cache_rows) if cache else 0),
        "row": 1,             # 1: read pitch words (or a cache hit); 0: a tag with no read
        "addr": unsigned(params.addr_width),
        "pitch": range(params.max_pitch + 1),
        "beats": range(params.max_beats + 1),
        # the cache key (table, row number looked up)
        "table": unsigned(max(1, ceil_log2(params.n_tables)) if cache else 0),
        "rownum": unsigned(params.index_width if cache else 0),
        **lookup_flags(params),
    })


def meta_layout(params):
    """A bag's parameters (B -> E): rows looked up, its table's, the command's."""
    return data.StructLayout({
        "n": range(params.max_bag + 1),
        "beats": range(params.max_beats + 1),
        "dim": range(params.max_dim + 1),
        "mean": 1,
        "requant": 1,
        "multiplier": signed(32),
        "shift": unsigned(5),
        "batch_last": 1,
        "abort": 1,
    })


def line_of(rownum, table, ibits):
    """The cache line of a key: spread the tables over the lines so row r of
    every table does not collide."""
    return (rownum[:ibits] ^ (table * 0x9E5)[:ibits])[:ibits]


class IndexWalker(wiring.Component):
    """Walks a job's indices, one per cycle (B0): bounds check, the
    ``lookups``/``clamped``/``skipped`` counters; then ``row * pitch`` (B1)
    and ``+ base`` (B2, with the cache line of the key) into a 4-entry lookup
    FIFO. A bag's parameters go to E through a 16-entry FIFO. The indices
    enter through a 2-entry FIFO (registered output: the bounds check starts
    from a flop, not from the producer's logic).

    An error elsewhere (``error_set``) ends the batch for D and E: one abort
    marker (a lookup with ``abort`` and a meta entry), then the rest of the
    batch's jobs and indices are consumed and dropped.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields).

    Ports
    -----
    start : In(1)
        A batch's command is taken.
    mode : In(PoolMode); bounds : In(BoundsMode); weighted, requant : In(1)
        The batch's command (registered, valid from the cycle after ``start``).
    error_set : In(1)
        An error is held.
    jobs : In(stream(job_layout(params)))
    indices : In(stream(index_layout(index_width)))
    lookups : Out(stream(lookup_layout(params)))
        From the lookup FIFO (4 entries, unbuffered); 3 cycles after the index at the earliest.
    meta : Out(stream(meta_layout(params)))
        From the meta FIFO (16 entries, registered output).
    err : Out(1); err_code : Out(GatherError); err_bag, err_val : Out(32)
        A bag-level error (from a job) or ``OUT_OF_RANGE`` this cycle.
    lookups_count, clamped, skipped : Out(32)
        Counters since reset.
    idle : Out(1)
        No batch, no lookup in B1, B2 or the FIFO, the meta FIFO empty.
    """

    #: lookup FIFO entries (B1 and B2 count against them)
    LK_DEPTH = 4
    #: meta FIFO entries
    META_DEPTH = 16

    def __init__(self, params):
        self.params = check_type("params", params, GatherParams)
        self.index_layout = index_layout(index_width=params.index_width)
        self.lookup_layout = lookup_layout(params)
        self.meta_layout = meta_layout(params)
        super().__init__({
            "start": In(1),
            "mode": In(PoolMode),
            "bounds": In(BoundsMode),
            "weighted": In(1),
            "requant": In(1),
            "error_set": In(1),
            "jobs": In(stream.Signature(job_layout(params))),
            "indices": In(stream.Signature(self.index_layout)),
            "lookups": Out(stream.Signature(self.lookup_layout)),
            "meta": Out(stream.Signature(self.meta_layout)),
            "err": Out(1),
            "err_code": Out(GatherError),
            "err_bag": Out(COUNTER_WIDTH),
            "err_val": Out(COUNTER_WIDTH),
            "lookups_count": Out(COUNTER_WIDTH),
            "clamped": Out(COUNTER_WIDTH),
            "skipped": Out(COUNTER_WIDTH),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        aw, iw = p.addr_width, p.index_width
        n_shape = range(p.max_bag + 1)
        cache = p.cache_rows > 0
        ibits = exact_log2(p.cache_rows) if cache else 0
        lk_layout, meta_layout_ = self.lookup_layout, self.meta_layout
        jobs, job = self.jobs, self.jobs.payload
        LK_DEPTH, META_DEPTH = self.LK_DEPTH, self.META_DEPTH
        m.submodules.lookups_fifo = lkf = SyncFIFO(width=lk_layout.size, depth=LK_DEPTH)
        m.submodules.meta_fifo = metaf = SyncFIFOBuffered(width=meta_layout_.size,
                                                           depth=META_DEPTH)
        meta_w = meta_layout_(metaf.w_data)
        m.d.comb += [self.lookups.valid.eq(lkf.r_rdy), self.lookups.payload.eq(lkf.r_data),
                     lkf.r_en.eq(self.lookups.ready),
                     self.meta.valid.eq(metaf.r_rdy), self.meta.payload.eq(metaf.r_data),
                     metaf.r_en.eq(self.meta.ready)]

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
        c_bounds, c_weighted = self.bounds, self.weighted

        m.d.comb += [lk_pop.eq(self.lookups.ready & self.lookups.valid),
                     lk_ok.eq((lk_res < LK_DEPTH) & metaf.w_rdy)]
        m.d.sync += lk_res.eq(lk_res + emit - lk_pop)

        m.submodules.idx_fifo = idxf = SyncFIFOBuffered(width=self.index_layout.size, depth=2)
        m.d.comb += [idxf.w_data.eq(self.indices.payload), idxf.w_en.eq(self.indices.valid),
                     self.indices.ready.eq(idxf.w_rdy)]
        idx = self.index_layout(idxf.r_data)
        oor = Signal()
        m.d.comb += oor.eq(idx.index >= job.d.rows)
        with m.If(self.start):
            m.d.sync += [b_active.eq(1), b_discard.eq(0), b_end_sent.eq(0), b_k.eq(0),
                         b_n.eq(0), b_bag.eq(0), b_consumed.eq(0)]

        def abort_marker():
            m.d.comb += [emit.eq(1), e_row.eq(0), e_bag_end.eq(1), e_batch_end.eq(1),
                         e_abort.eq(1), meta_push.eq(1), meta_abort.eq(1)]
            m.d.sync += [b_discard.eq(1), b_end_sent.eq(1)]

        # One action per cycle, in priority order.
        with m.If(b_active & self.error_set & ~b_discard):
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
                m.d.comb += [jobs.ready.eq(1), self.err.eq(1), self.err_code.eq(job.code),
                             self.err_bag.eq(b_bag), self.err_val.eq(job.value)]
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
                    m.d.comb += [self.err.eq(1), self.err_code.eq(GatherError.OUT_OF_RANGE),
                                 self.err_bag.eq(b_bag), self.err_val.eq(idx.index)]
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
                        self.lookups_count.eq(self.lookups_count + is_row),
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
            meta_w.mean.eq(self.mode == PoolMode.MEAN),
            meta_w.requant.eq(self.requant),
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
            b1.is_max.eq(self.mode == PoolMode.MAX), b1.weight.eq(e_weight),
            b1.index.eq(e_index),
            b1_rownum.eq(e_rownum), b1_base.eq(job.d.base),
            b2_v.eq(b1_v), b2.eq(b1), b2_off.eq((b1_rownum * b1.pitch)[:aw]), b2_base.eq(b1_base),
        ]
        if cache:
            m.d.sync += b2.line.eq(line_of(b1.rownum, b1.table, ibits))
        lk_w = lk_layout(lkf.w_data)
        m.d.comb += [
            lkf.w_en.eq(b2_v),
            lk_w.eq(b2),
            lk_w.addr.eq(b2_base + b2_off),
        ]
        m.d.comb += self.idle.eq(~b_active & (lk_res == 0) & (metaf.level == 0))
        return m
