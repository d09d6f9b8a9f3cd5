"""Block-RAM memory backend with the SDRAM controller's port."""

from amaranth.hdl import Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2

from ..checks import check_int
from .memport import MemPortSignature, resp_layout

__all__ = ["OnChipRAM"]


class OnChipRAM(wiring.Component):
    """``depth`` words of block RAM behind a :class:`MemPortSignature` port.

    Parameters (keyword-only)
    -------------------------
    depth : int
        Words of ``data_width`` bits.
    data_width : int
        A multiple of 8; writes are byte-masked.
    addr_width : int or None
        Width of ``port.req.payload.addr``; None means one bit more than
        ``depth`` needs, so that out-of-range addresses are representable.
    resp_depth : int
        Response FIFO depth (at least 3 for one request per cycle).

    Ports
    -----
    port : In(MemPortSignature(addr_width=addr_width, data_width=data_width))
        A request with ``addr >= depth`` gets an ``err`` response and neither
        reads nor writes. Every request gets one response, in order.

    Latency and throughput
    ----------------------
    One request per cycle; the response is valid 2 cycles after the request
    handshake (synchronous read, then the response FIFO). ``req.ready`` only
    counts free response slots, so a stalled ``resp`` never loses a read and
    ``req.ready`` does not depend on ``resp.ready`` combinationally.
    """

    def __init__(self, *, depth, data_width=32, addr_width=None, resp_depth=4):
        check_int("depth", depth, 1, 1 << 24)
        check_int("data_width", data_width, 8, 256)
        if data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {data_width!r}")
        need = max(1, ceil_log2(depth))
        if addr_width is None:
            addr_width = need + 1
        check_int("addr_width", addr_width, need, 40)
        check_int("resp_depth", resp_depth, 1, 64)
        self.depth = depth
        self.data_width = data_width
        self.addr_width = addr_width
        self.resp_depth = resp_depth
        super().__init__({
            "port": In(MemPortSignature(addr_width=addr_width, data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        req, resp = self.port.req, self.port.resp
        dw = self.data_width

        m.submodules.mem = mem = Memory(shape=dw, depth=self.depth, init=[])
        wr = mem.write_port(granularity=8)
        rd = mem.read_port(domain="sync")

        fifo = m.submodules.resp_fifo = SyncFIFO(width=dw + 1, depth=self.resp_depth)
        w_resp = resp_layout(dw)(fifo.w_data)

        # Credits: free response slots not yet promised to a request in flight.
        credits = Signal(range(self.resp_depth + 1), init=self.resp_depth)
        accept = Signal()
        err = Signal()
        m.d.comb += [
            req.ready.eq(credits != 0),
            accept.eq(req.valid & req.ready),
            err.eq(req.payload.addr >= self.depth),
            rd.addr.eq(req.payload.addr),
            rd.en.eq(accept & ~req.payload.we & ~err),
            wr.addr.eq(req.payload.addr),
            wr.data.eq(req.payload.wdata),
            wr.en.eq(Mux(accept & req.payload.we & ~err, req.payload.mask, 0)),
        ]

        # The read data arrives one cycle after the request; the request's
        # err flag travels beside it.
        tok_valid = Signal()
        tok_err = Signal()
        m.d.sync += [tok_valid.eq(accept), tok_err.eq(err)]
        m.d.comb += [
            fifo.w_en.eq(tok_valid),
            w_resp.rdata.eq(Mux(tok_err, 0, rd.data)),
            w_resp.err.eq(tok_err),
            resp.valid.eq(fifo.r_rdy),
            resp.payload.eq(fifo.r_data),
            fifo.r_en.eq(resp.ready),
        ]
        m.d.sync += credits.eq(credits - accept + (resp.valid & resp.ready))
        return m
