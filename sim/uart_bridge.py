"""The host's end of a simulated serial line, in gateware: byte streams in
and out of a top level's ``rx``/``tx`` UART pins.

A simulation harness, not chip gateware: it plays the USB-serial bridge of
a board (an FT231X) so that the simulator's Python side handles bytes, not
bits. The top's own UART is untouched and every byte still crosses its pins
as 8N1 at the top's bit rate.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from ..rtl.uart import UARTRx, UARTTx

__all__ = ["UARTBridge"]


class UARTBridge(wiring.Component):
    """``top`` (a component with ``rx``/``tx`` UART pins) behind a host-side
    UART pair with a FIFO each way.

    Ports
    -----
    h2d : In(stream.Signature(8))
        Bytes to send to the top's ``rx`` (``depth`` wait in a FIFO).
    h2d_level : Out(range(depth + 1))
        Bytes in that FIFO: ``depth - h2d_level`` can be given back to back.
    d2h : Out(stream.Signature(8))
        Bytes received from the top's ``tx``. They wait in a FIFO of
        ``depth``; when it is full the host-side receiver drops bytes, so the
        reader takes them at least every ``depth`` byte times.
    d2h_level : Out(range(depth + 1))
        Bytes in that FIFO: that many can be taken back to back.
    h2d_idle : Out(1)
        Nothing left to send: the FIFO is empty and the last stop bit is out.

    The FIFOs read combinationally (a simulation harness needs no block
    RAM), so their levels are exact in both directions.
    """

    def __init__(self, top, *, divisor, depth=64):
        if not hasattr(top, "rx") or not hasattr(top, "tx"):
            raise TypeError(f"top must be a component with rx and tx ports, not {top!r}")
        self.top = top
        self.divisor = check_int("divisor", divisor, 4, 1 << 20)
        self.depth = check_int("depth", depth, 2, 1 << 16)
        super().__init__({
            "h2d": In(stream.Signature(8)),
            "h2d_level": Out(range(depth + 1)),
            "d2h": Out(stream.Signature(8)),
            "d2h_level": Out(range(depth + 1)),
            "h2d_idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.host_tx = utx = UARTTx(divisor=self.divisor)
        m.submodules.host_rx = urx = UARTRx(divisor=self.divisor)
        m.submodules.h2d_fifo = h2d = SyncFIFO(width=8, depth=self.depth)
        m.submodules.d2h_fifo = d2h = SyncFIFO(width=8, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.h2d), h2d.w_stream)
        wiring.connect(m, h2d.r_stream, utx.data)
        wiring.connect(m, urx.data, d2h.w_stream)
        wiring.connect(m, d2h.r_stream, wiring.flipped(self.d2h))
        m.d.comb += [top.rx.eq(utx.tx), urx.rx.eq(top.tx),
                     self.h2d_level.eq(h2d.w_level), self.d2h_level.eq(d2h.r_level),
                     self.h2d_idle.eq((h2d.r_level == 0) & utx.data.ready)]
        return m
