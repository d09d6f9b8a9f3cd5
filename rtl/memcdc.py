"""A memory port across two clock domains.

The chip's units run on one clock and the SDRAM controller on its own (the
board's SDR SDRAM is rated well above the clock the whole chip meets, and a
controller alone closes timing far higher than the chip): between them, the
requests and the responses each pass an :class:`~amaranth.lib.fifo.AsyncFIFOBuffered`
(Gray-coded pointers, two-flop synchronizers), and nothing else crosses.

A unit may run in the controller's domain too (the gather engine, whose
pace is the SDRAM's): :class:`UnitPortCDC` takes the control unit's port to
it across, its command and its done each through an
:class:`~amaranth.lib.fifo.AsyncFIFO`, its ``mem_stall`` level through an
:class:`~amaranth.lib.cdc.FFSynchronizer`.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import AsyncFIFO, AsyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from .control import UnitDoneLayout, UnitPortSignature
from .memport import MemPortSignature, req_layout, resp_layout

__all__ = ["MemPortCDC", "UnitPortCDC"]


class MemPortCDC(wiring.Component):
    """``up`` (a client's port, in ``up_domain``) to ``down`` (toward the
    backend, in ``down_domain``).

    Parameters (keyword-only)
    -------------------------
    addr_width, data_width : int
        As :class:`~seedchip.rtl.memport.MemPortSignature`.
    depth : int
        Entries of each FIFO, 4..256 (a power of two plus one for the output
        register: ``AsyncFIFOBuffered`` rounds it). Enough to cover the
        backend's round trip plus the synchronizers' few cycles, or the
        crossing limits the requests in flight.
    up_domain, down_domain : str
        The two clock domains.

    Ports
    -----
    up : In(MemPortSignature(...))
        Connect the client's port here (``wiring.connect(m, client.mem, cdc.up)``).
    down : Out(MemPortSignature(...))
        Connect it to the backend (``wiring.connect(m, cdc.down, ram.port)``).

    Every request taken on ``up`` reaches ``down`` in order, and every
    response of ``down`` reaches ``up`` in order; both directions keep the
    stream rules and pass ``ready`` back (a backend whose responses are not
    taken stalls, as it must allow). Throughput: one request and one response
    per cycle of the slower clock. Latency: about four cycles of the
    receiving domain each way (the pointer synchronizers and the output
    register).
    """

    def __init__(self, *, addr_width, data_width, depth=16, up_domain="sync",
                 down_domain="sdram"):
        check_int("depth", depth, 4, 256)
        if up_domain == down_domain:
            raise ValueError(f"up_domain and down_domain must differ, both are {up_domain!r}")
        self.addr_width, self.data_width, self.depth = addr_width, data_width, depth
        self.up_domain, self.down_domain = up_domain, down_domain
        sig = MemPortSignature(addr_width=addr_width, data_width=data_width)
        super().__init__({"up": In(sig), "down": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        req_w = req_layout(self.addr_width, self.data_width).size
        resp_w = resp_layout(self.data_width).size
        m.submodules.req_fifo = rq = AsyncFIFOBuffered(
            width=req_w, depth=self.depth, w_domain=self.up_domain, r_domain=self.down_domain)
        m.submodules.resp_fifo = rs = AsyncFIFOBuffered(
            width=resp_w, depth=self.depth, w_domain=self.down_domain, r_domain=self.up_domain)
        up, down = self.up, self.down
        m.d.comb += [
            rq.w_data.eq(up.req.payload), rq.w_en.eq(up.req.valid), up.req.ready.eq(rq.w_rdy),
            down.req.payload.eq(rq.r_data), down.req.valid.eq(rq.r_rdy), rq.r_en.eq(down.req.ready),
            rs.w_data.eq(down.resp.payload), rs.w_en.eq(down.resp.valid),
            down.resp.ready.eq(rs.w_rdy),
            up.resp.payload.eq(rs.r_data), up.resp.valid.eq(rs.r_rdy), rs.r_en.eq(up.resp.ready),
        ]
        return m


class UnitPortCDC(wiring.Component):
    """The control unit's port to one unit (``up``, in ``up_domain``) to the
    unit (``down``, in ``down_domain``).

    ``cmd`` and ``done`` each pass an :class:`~amaranth.lib.fifo.AsyncFIFO`
    of two entries (a unit holds one command at a time, and its done is
    always taken), ``mem_stall`` an :class:`~amaranth.lib.cdc.FFSynchronizer`
    (a level: the control unit counts the cycles of its own clock while it
    is high). ``abort`` does not cross: ``down.abort`` is 0. Put it behind the
    chip's :class:`~seedchip.rtl.chip.AbortFilter`, which never raises it and
    swallows an aborted command's done wherever that comes from.

    Latency: a command or a done takes about four cycles of the receiving
    domain (the pointer synchronizers and the FIFO's read register).
    """

    def __init__(self, cmd_layout, *, up_domain="sync", down_domain="sdram"):
        if up_domain == down_domain:
            raise ValueError(f"up_domain and down_domain must differ, both are {up_domain!r}")
        self.cmd_layout = cmd_layout
        self.up_domain, self.down_domain = up_domain, down_domain
        super().__init__({"up": In(UnitPortSignature(cmd_layout)),
                          "down": Out(UnitPortSignature(cmd_layout))})

    def elaborate(self, platform):
        m = Module()
        up, down = self.up, self.down
        m.submodules.cmd_fifo = cf = AsyncFIFO(
            width=self.cmd_layout.size, depth=2, w_domain=self.up_domain,
            r_domain=self.down_domain)
        m.submodules.done_fifo = df = AsyncFIFO(
            width=UnitDoneLayout.size, depth=2, w_domain=self.down_domain,
            r_domain=self.up_domain)
        m.submodules.stall_sync = FFSynchronizer(down.mem_stall, up.mem_stall,
                                                 o_domain=self.up_domain)
        m.d.comb += [
            cf.w_data.eq(up.cmd.payload), cf.w_en.eq(up.cmd.valid), up.cmd.ready.eq(cf.w_rdy),
            down.cmd.payload.eq(cf.r_data), down.cmd.valid.eq(cf.r_rdy),
            cf.r_en.eq(down.cmd.ready),
            df.w_data.eq(down.done.payload), df.w_en.eq(down.done.valid),
            down.done.ready.eq(df.w_rdy),
            up.done.payload.eq(df.r_data), up.done.valid.eq(df.r_rdy), df.r_en.eq(up.done.ready),
            down.abort.eq(0),
        ]
        return m
