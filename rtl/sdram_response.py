"""The SDRAM controller's read data capture and response FIFO."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from .memport import resp_layout

__all__ = ["SDRAMResponder"]


class SDRAMResponder(wiring.Component):
    """A token per column slot (READ, WRITE or err) rides a delay line as long
    as the read data path, so responses leave in command order; read data is
    registered from the pins and queued with the token's ``err`` in a
    ``depth``-entry FIFO (LUT RAM, read asynchronously: a cycle less latency
    than a buffered FIFO).

    Parameters (keyword-only): ``data_width``, ``delay`` (``cas_latency +
    read_delay``), ``depth`` (response FIFO entries).

    Ports
    -----
    slot : In(1)
        A column slot is used now; ``slot_err``: it is an err request.
    dq_i : In(data_width)
        The DQ pads.
    resp : Out(stream.Signature(resp_layout(data_width)))
        One response per slot, ``delay + 3`` cycles after it at the earliest.
    credit_pop, credit_nopop : Out(1)
        Space for a slot next cycle if one is / is not used now. A response
        popped now is counted a cycle late.
    """

    def __init__(self, *, data_width, delay, depth):
        check_int("data_width", data_width, 8, 64)
        check_int("delay", delay, 1, 16)
        check_int("depth", depth, 2, 256)
        self.data_width = data_width
        self.delay = delay
        self.depth = depth
        super().__init__({
            "slot": In(1),
            "slot_err": In(1),
            "dq_i": In(data_width),
            "resp": Out(stream.Signature(resp_layout(data_width))),
            "credit_pop": Out(1),
            "credit_nopop": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dw = self.data_width
        fifo = m.submodules.resp_fifo = SyncFIFO(width=dw + 1, depth=self.depth)
        tok_layout = data.StructLayout({"valid": 1, "err": 1})
        n_tok = self.delay + 2
        tok = [Signal(tok_layout, name=f"tok{k}") for k in range(n_tok)]
        m.d.sync += [tok[0].valid.eq(self.slot), tok[0].err.eq(self.slot_err)]
        for k in range(1, n_tok):
            m.d.sync += tok[k].eq(tok[k - 1])
        dq_r = Signal(dw)
        m.d.sync += dq_r.eq(self.dq_i)
        m.d.comb += [
            fifo.w_en.eq(tok[-1].valid),
            fifo.w_data.eq(Cat(Mux(tok[-1].err, 0, dq_r), tok[-1].err)),
            self.resp.valid.eq(fifo.r_rdy),
            self.resp.payload.rdata.eq(fifo.r_data[:dw]),
            self.resp.payload.err.eq(fifo.r_data[dw]),
            fifo.r_en.eq(self.resp.ready),
        ]

        credits = Signal(range(self.depth + 1), init=self.depth)
        resp_pop = self.resp.valid & self.resp.ready
        m.d.sync += credits.eq(credits - self.slot + resp_pop)
        m.d.comb += [
            self.credit_pop.eq(credits >= 2),
            self.credit_nopop.eq(credits >= 1),
        ]
        return m
