"""The gather engine's bag parser (stage A): ``bags`` items -> bag jobs.

Part of :class:`~seedchip.rtl.gather.GatherEngine` (semantics in
:mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_type
from ..emb_protocol import BagLayout, COUNTER_WIDTH, GatherError, OFFSET_WIDTH, TABLE_WIDTH
from ..gather_params import GatherParams
from .gather_desc import table_desc_layout

__all__ = ["BagParser", "BagParse", "JobKind", "job_layout"]


class JobKind(enum.Enum, shape=2):
    """What a job (A -> B) asks of B."""
    BAG = 0        #: a bag: walk its indices
    ERR = 1        #: a bag-level error: report it, abort the batch
    END = 2        #: the batch's bags are done: consume indices up to max(offsets)


class BagParse(enum.Enum, shape=2):
    """A's state: where it is in the batch's ``bags`` items."""
    IDLE = 0       #: no batch
    FIRST = 1      #: the first item (offsets[0]) is next
    BAGS = 2       #: the next bag's closing item is next
    END = 3        #: the last item was taken: push the END job


def job_layout(params):
    """A job (A -> B): a bag with its table's descriptor, an error, or the batch's end."""
    return data.StructLayout({
        "kind": JobKind,
        "len": range(params.max_bag + 1),
        "last_bag": 1,
        "code": GatherError,
        "value": unsigned(COUNTER_WIDTH),
        "table": unsigned(max(1, ceil_log2(params.n_tables))),
        "d": table_desc_layout(params),
    })


class BagParser(wiring.Component):
    """Turns a batch's ``bags`` items into jobs, one per cycle, with the bag's
    table descriptor and the bag-level checks (``BAD_CMD`` and ``BAD_OFFSET``
    for ``offsets[0] != 0`` at the first item; then per bag ``BAD_TABLE``,
    ``BAD_OFFSET``, ``BAG_TOO_LONG``), and a final ``END`` job carrying
    ``max(offsets)``.

    An item is taken in A0 (the descriptor's block RAM is addressed with the
    previous item's table), the job is formed in A1 from the RAM's data and
    written into a 4-entry job FIFO (registered output); A0 takes an item only
    when the FIFO will have room for it.

    ``params``: the engine's :class:`~seedchip.gather_params.GatherParams` (checked there;
    ``lanes``, ``max_beats`` etc. below are its fields).

    Ports
    -----
    start : In(1)
        A batch's command is taken: parse from the first item.
    bad_cmd : In(1)
        The command is malformed (``BAD_CMD``), from the cycle after ``start``.
    bags : In(stream(BagLayout))
    tvalid : In(n_tables)
        The tables' valid bits.
    desc_addr : Out(range(n_tables)); desc_data : In(table_desc_layout(params))
        The descriptor table's synchronous read port.
    jobs : Out(stream(job_layout(params)))
    idle : Out(1)
        No batch being parsed, no job in A1 or in the FIFO.
    """

    #: job FIFO entries
    JOB_DEPTH = 4

    def __init__(self, params):
        self.params = check_type("params", params, GatherParams)
        self.tbits = max(1, ceil_log2(params.n_tables))
        self.job_layout = job_layout(params)
        super().__init__({
            "start": In(1),
            "bad_cmd": In(1),
            "bags": In(stream.Signature(BagLayout)),
            "tvalid": In(params.n_tables),
            "desc_addr": Out(self.tbits),
            "desc_data": In(self.job_layout["d"].shape),
            "jobs": Out(stream.Signature(self.job_layout)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tbits = self.tbits
        JOB_DEPTH = self.JOB_DEPTH
        m.submodules.jobs = jobs = SyncFIFOBuffered(width=self.job_layout.size, depth=JOB_DEPTH)
        job_w = self.job_layout(jobs.w_data)
        m.d.comb += [self.jobs.valid.eq(jobs.r_rdy), self.jobs.payload.eq(jobs.r_data),
                     jobs.r_en.eq(self.jobs.ready)]

        a_state = Signal(BagParse)
        prev_table = Signal(TABLE_WIDTH)
        prev_offset = Signal(OFFSET_WIDTH)
        max_off = Signal(OFFSET_WIDTH)
        # A1: the job being formed (descriptor data arrives from the block RAM)
        a1_v = Signal()
        a1_kind = Signal(JobKind)
        a1_code = Signal(GatherError)
        a1_value = Signal(COUNTER_WIDTH)
        a1_table = Signal(TABLE_WIDTH)
        a1_len = Signal(OFFSET_WIDTH + 1)
        a1_neg = Signal()
        a1_last = Signal()
        a1_tvalid = Signal()

        a_room = Signal()
        m.d.comb += [
            a_room.eq(jobs.level + a1_v < JOB_DEPTH),
            self.desc_addr.eq(prev_table[:tbits]),
        ]
        item = self.bags.payload
        a_pop = Signal()
        m.d.comb += [
            a_pop.eq(((a_state == BagParse.FIRST) | (a_state == BagParse.BAGS)) & a_room
                     & self.bags.valid),
            self.bags.ready.eq(a_pop),
        ]
        m.d.sync += a1_v.eq(0)
        with m.If(self.start):
            m.d.sync += a_state.eq(BagParse.FIRST)
        with m.If(a_pop):
            m.d.sync += [
                prev_table.eq(item.table),
                prev_offset.eq(item.offset),
                a1_last.eq(item.last),
                a1_table.eq(prev_table),
                a1_tvalid.eq(self.tvalid.bit_select(prev_table[:tbits], 1)
                             & (prev_table < self.params.n_tables)),
                a1_len.eq(item.offset - prev_offset),
                a1_neg.eq(item.offset < prev_offset),
            ]
            with m.If(item.last):
                m.d.sync += a_state.eq(BagParse.END)
            with m.Else():
                m.d.sync += a_state.eq(BagParse.BAGS)
            with m.If(a_state == BagParse.FIRST):
                m.d.sync += max_off.eq(item.offset)
                with m.If(self.bad_cmd):
                    m.d.sync += [a1_v.eq(1), a1_kind.eq(JobKind.ERR),
                                 a1_code.eq(GatherError.BAD_CMD), a1_value.eq(0)]
                with m.Elif(item.offset != 0):
                    m.d.sync += [a1_v.eq(1), a1_kind.eq(JobKind.ERR),
                                 a1_code.eq(GatherError.BAD_OFFSET), a1_value.eq(item.offset)]
            with m.Else():
                with m.If(item.offset > max_off):
                    m.d.sync += max_off.eq(item.offset)
                m.d.sync += [a1_v.eq(1), a1_kind.eq(JobKind.BAG), a1_value.eq(item.offset)]
        with m.If((a_state == BagParse.END) & a_room):
            m.d.sync += [a1_v.eq(1), a1_kind.eq(JobKind.END), a1_value.eq(max_off),
                         a_state.eq(BagParse.IDLE)]

        # A1 -> job FIFO (always has room, see a_room)
        m.d.comb += [
            jobs.w_en.eq(a1_v),
            job_w.kind.eq(a1_kind),
            job_w.code.eq(a1_code),
            job_w.value.eq(a1_value),
            job_w.len.eq(a1_len),
            job_w.last_bag.eq(a1_last),
            job_w.table.eq(a1_table[:tbits]),
            job_w.d.eq(self.desc_data),
        ]
        with m.If(a1_kind == JobKind.BAG):
            with m.If(~a1_tvalid):
                m.d.comb += [job_w.kind.eq(JobKind.ERR), job_w.code.eq(GatherError.BAD_TABLE),
                             job_w.value.eq(a1_table)]
            with m.Elif(a1_neg):
                m.d.comb += [job_w.kind.eq(JobKind.ERR), job_w.code.eq(GatherError.BAD_OFFSET)]
            with m.Elif(a1_len > self.params.max_bag):
                m.d.comb += [job_w.kind.eq(JobKind.ERR), job_w.code.eq(GatherError.BAG_TOO_LONG),
                             job_w.value.eq(a1_len)]

        m.d.comb += self.idle.eq((a_state == BagParse.IDLE) & ~a1_v & (jobs.level == 0))
        return m
