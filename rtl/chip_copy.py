"""The chip's COPY unit: strided rows from ``src`` to ``dst`` through a
:class:`~seedchip.rtl.dma.RowReader` and a :class:`~seedchip.rtl.dma.RowWriter`.

::

    ctl.cmd --> [RowReader] --beats--> [RowWriter] --> ctl.done
                  mem[0]                 mem[1]
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from ..isa import ChipError, Unit
from .control import COPY_UNIT_CMD, UnitPortSignature
from .control_fetch import check_mem_bytes
from .dma import RowReader, RowWriter
from .memport import MemPortSignature

__all__ = ["DATA_WIDTH", "CopyUnit"]

#: The chip memory's word: 64 bits = :data:`seedchip.isa.ALIGN` bytes.
DATA_WIDTH = 64


class CopyUnit(wiring.Component):
    """Executes COPY (:class:`seedchip.isa.Copy`, the semantics of
    ``ChipModel._exec_copy``): ``rows`` rows of ``row_bytes`` bytes from
    ``src + r * src_stride`` to ``dst + r * dst_stride`` (``src_stride`` 0
    broadcasts one row). Overlapping source and destination are undefined.

    Ports
    -----
    ctl : In(UnitPortSignature(COPY_UNIT_CMD))
        ``cmd`` taken while idle; one ``done`` per command once its last write
        is acknowledged: error NONE, or MEM_ERROR (detail ``Unit.COPY``) when a
        read or a write came back with ``err``; index: the byte address of the
        first read word with ``err``, 0 for a write error (:class:`RowWriter`
        does not say which). The copy still runs to its end, so it never
        hangs. ``mem_stall``: busy and no write accepted this cycle (the unit
        computes nothing; every such cycle waits on memory). ``abort`` is
        ignored.
    mem : Out(MemPortSignature(addr_width, 64)).array(N_PORTS)
        ``mem[0]`` the reader (reads only), ``mem[1]`` the writer (writes only).

    Throughput: one 8-byte word per cycle (a row of ``row_bytes`` bytes is
    ``ceil(row_bytes / 8)`` words; rows follow each other without a gap).
    Fixed overhead about 7 cycles plus twice the memory's latency: with a
    one-cycle memory that is always ready, 64 words take 73 cycles from
    ``cmd`` to ``done``.
    """

    N_PORTS = 2
    #: responses the reader may have outstanding (covers the memory's latency)
    READ_DEPTH = 16

    #: The ``mem`` ports whose client holds ``resp.ready`` at 1 (its own
    #: credited FIFO has room for every response it asked for): the
    #: chip's arbiter passes their responses through a register, not a
    #: FIFO (:class:`~seedchip.rtl.arbiter.MemArbiter`'s ``sinks``).
    resp_sinks = (0, 1)   # its RowReader and RowWriter

    def __init__(self, *, addr_width, mem_bytes):
        check_int("addr_width", addr_width, 1, 40)
        self.addr_width = addr_width
        self.mem_bytes = check_mem_bytes(mem_bytes, addr_width, DATA_WIDTH)
        super().__init__({
            "ctl": In(UnitPortSignature(COPY_UNIT_CMD)),
            "mem": Out(MemPortSignature(addr_width=addr_width,
                                        data_width=DATA_WIDTH)).array(self.N_PORTS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = rd = RowReader(addr_width=self.addr_width, data_width=DATA_WIDTH,
                                             beat_bytes=8, depth=self.READ_DEPTH)
        m.submodules.writer = wr = RowWriter(addr_width=self.addr_width, data_width=DATA_WIDTH,
                                             beat_bytes=8)
        wiring.connect(m, rd.mem, wiring.flipped(self.mem[0]))
        wiring.connect(m, wr.mem, wiring.flipped(self.mem[1]))
        cmd, done = self.ctl.cmd, self.ctl.done

        busy = Signal()                 # a command was taken, its done not yet given
        rd_pend = Signal()              # the reader's command not yet taken
        wr_pend = Signal()
        rd_err = Signal()               # a beat of this command carried a read error

        m.d.comb += [
            rd.beats.ready.eq(wr.beats.ready),
            wr.beats.valid.eq(rd.beats.valid),
            wr.beats.payload.data.eq(rd.beats.payload.data),
            rd.cmd.valid.eq(rd_pend),
            wr.cmd.valid.eq(wr_pend),
            cmd.ready.eq(~busy),
            self.ctl.mem_stall.eq(busy & ~done.valid & ~(wr.mem.req.valid & wr.mem.req.ready)),
        ]
        ops = cmd.payload.operands
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += [
                busy.eq(1), rd_pend.eq(1), wr_pend.eq(1), rd_err.eq(0),
                rd.cmd.payload.base.eq(ops.src), rd.cmd.payload.stride.eq(ops.src_stride),
                rd.cmd.payload.rows.eq(ops.rows), rd.cmd.payload.row_bytes.eq(ops.row_bytes),
                wr.cmd.payload.base.eq(ops.dst), wr.cmd.payload.stride.eq(ops.dst_stride),
                wr.cmd.payload.rows.eq(ops.rows), wr.cmd.payload.row_bytes.eq(ops.row_bytes),
            ]
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += rd_pend.eq(0)
        with m.If(wr.cmd.valid & wr.cmd.ready):
            m.d.sync += wr_pend.eq(0)
        # the byte address of the word the reader gives, for MEM_ERROR's index
        rd_addr = Signal(32)
        rd_row = Signal(32)
        err_index = Signal(32)
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += [rd_addr.eq(ops.src), rd_row.eq(ops.src)]
        with m.If(rd.beats.valid & rd.beats.ready):
            with m.If(rd.beats.payload.row_last):
                m.d.sync += [rd_addr.eq(rd_row + rd.cmd.payload.stride),
                             rd_row.eq(rd_row + rd.cmd.payload.stride)]
            with m.Else():
                m.d.sync += rd_addr.eq(rd_addr + 8)
            with m.If(rd.beats.payload.err & ~rd_err):
                m.d.sync += [rd_err.eq(1), err_index.eq(rd_addr)]

        # both DMAs raise busy the cycle after they take their command
        with m.If(busy & ~rd_pend & ~wr_pend & ~rd.busy & ~wr.busy & ~done.valid):
            m.d.sync += [
                done.valid.eq(1),
                done.payload.error.eq(ChipError.NONE),
                done.payload.detail.eq(0), done.payload.bag.eq(0), done.payload.index.eq(0),
            ]
            with m.If(rd_err | wr.err):
                m.d.sync += [done.payload.error.eq(ChipError.MEM_ERROR),
                             done.payload.detail.eq(Unit.COPY.value),
                             done.payload.index.eq(Mux(rd_err, err_index, 0))]
        with m.If(done.valid & done.ready):
            m.d.sync += [done.valid.eq(0), busy.eq(0)]
        return m
