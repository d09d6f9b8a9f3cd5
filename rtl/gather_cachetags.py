"""The gather engine's hot-row cache hit check (stages S1, S2) and key store.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..checks import check_type
from ..emb_protocol import COUNTER_WIDTH
from ..gather_params import GatherParams
from .gather_issue import checked_layout
from .gather_walker import lookup_layout

__all__ = ["CacheTags"]


class CacheTags(wiring.Component):
    """Direct-mapped, keyed by (table, row). Every lookup passes the hit
    check in lookup order, before C: S1 reads its line's key (block RAM), S2
    holds the key registered and decides, in its first cycle, hit or miss; a
    miss allocates its line there (key written, line valid), so the key store
    always names the last row sent to that line. The fill itself happens in
    G, in tag order: a later hit on that line is behind the fill in the tag
    FIFO, so it reads the filled row even when the fill was still in flight
    at the check. C0 gets the decision registered.

    The one check S1's key read cannot see is that of the lookup just ahead
    (in S2 when this one moves into S2): when both name the same line its
    outcome is forwarded (that line then holds its key).

    A line's valid bit is stored with its key (a register per line made a
    1024-way select and clear that limited the engine to 45 MHz); emptying
    the cache sweeps every line (``sweeping``, one line per cycle), and a
    lookup whose key was read before a sweep ended neither hits nor
    allocates. A read answered with ``err`` empties the cache too, and
    nothing hits or allocates until ``clear``.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields); it must have a cache (``cache_rows`` >
    0).

    Ports
    -----
    lookups : In(stream(lookup_layout(params)))
        Into S1 (the key read) when S1 is empty or moves on.
    checked : Out(stream(checked_layout(params)))
        S2: the lookup with its decision (``hit``) and its ``line``.
    invalidate : In(1)
        Pulse: empty the cache (a descriptor write, ``cache_clear``).
    word_err : In(1)
        A response with ``err`` is taken: empty the cache, stop hitting and
        allocating from the next cycle until ``clear``.
    clear : In(1)
    sweeping : Out(1)
        The lines are being emptied.
    hits, misses : Out(32)
        Counters of checked lookups with a row (since reset).
    idle : Out(1)
        No lookup in S1 or S2.
    """

    def __init__(self, params):
        self.params = check_type("params", params, GatherParams)
        if not params.cache_rows:
            raise ValueError("CacheTags needs a cache: params.cache_rows must be a power of 2 "
                             "from 2, not 0")
        self.key_width = max(1, ceil_log2(params.n_tables)) + params.index_width
        self.lookup_layout = lookup_layout(params)
        super().__init__({
            "lookups": In(stream.Signature(self.lookup_layout)),
            "checked": Out(stream.Signature(checked_layout(params))),
            "invalidate": In(1),
            "word_err": In(1),
            "clear": In(1),
            "sweeping": Out(1),
            "hits": Out(COUNTER_WIDTH),
            "misses": Out(COUNTER_WIDTH),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ibits = exact_log2(self.params.cache_rows)
        lk_layout = self.lookup_layout
        lk = self.lookups.payload
        sweeping = self.sweeping
        key_layout = data.StructLayout({"valid": 1, "key": unsigned(self.key_width)})
        m.submodules.cache_keys = ckeys = Memory(shape=key_layout, depth=self.params.cache_rows,
                                                 init=[])
        ck_wr = ckeys.write_port()
        ck_rd = ckeys.read_port(transparent_for=(ck_wr,))
        sweep_line = Signal(ibits)

        def key_of(lkv):
            return Cat(lkv.rownum, lkv.table)

        s1_v = Signal()
        s2_v = Signal()
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
        c_load = Signal()
        c_flush = Signal()        # a read came back with err: stop hitting and allocating
        m.d.comb += [
            self.checked.valid.eq(s2_v), self.checked.payload.lk.eq(s2),
            self.checked.payload.hit.eq(s2_hit), self.checked.payload.line.eq(s2_line),
            c_load.eq(self.checked.valid & self.checked.ready),
            s1_adv.eq(s1_v & (~s2_v | c_load)),
            s1_load.eq(self.lookups.valid & (~s1_v | s1_adv)),
            self.lookups.ready.eq(s1_load),
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
        alloc = s2_new & s2.row & ~s2_off & ~hit_now
        with m.If(sweeping):
            m.d.comb += [ck_wr.addr.eq(sweep_line), ck_wr.data.valid.eq(0), ck_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [ck_wr.addr.eq(s2_line), ck_wr.data.valid.eq(1),
                         ck_wr.data.key.eq(key_of(s2)), ck_wr.en.eq(alloc)]
        with m.If(s2_new & s2.row):
            m.d.sync += [self.hits.eq(self.hits + hit_now),
                         self.misses.eq(self.misses + ~hit_now)]

        flush_r = Signal()
        # C stops hitting and allocating from the cycle after the err
        # response (registered, off the response path); a line allocated
        # in that cycle is cleared with the rest
        m.d.comb += c_flush.eq(flush_r)
        with m.If(self.word_err):
            m.d.sync += flush_r.eq(1)
        with m.Elif(self.clear):
            m.d.sync += flush_r.eq(0)
        # a descriptor write or cache_clear empties the cache; an err
        # response does too (a failed fill left junk in its line), and
        # nothing is cached until the error is cleared
        with m.If(self.invalidate | self.word_err):
            m.d.sync += [sweeping.eq(1), sweep_line.eq(0)]
        with m.Elif(sweeping):
            m.d.sync += sweep_line.eq(sweep_line + 1)
            with m.If(sweep_line == self.params.cache_rows - 1):
                m.d.sync += sweeping.eq(0)
        m.d.comb += self.idle.eq(~s1_v & ~s2_v)
        return m
