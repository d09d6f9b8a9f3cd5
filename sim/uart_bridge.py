"""The host's end of a simulated serial line, in gateware: words of bytes in
and out of a top level's ``rx``/``tx`` UART pins.

A simulation harness, not chip gateware: it plays the USB-serial bridge of
a board (an FT231X) so that the simulator's Python side handles words of up
to ``word_bytes`` bytes, not bits, nor single bytes (each signal access from
Python costs about as much as simulating several clock cycles). The top's
own UART is untouched and every byte still crosses its pins as 8N1 at the
top's bit rate.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..checks import check_int, check_pow2
from ..rtl.uart import UARTRx, UARTTx

__all__ = ["UARTBridge", "word_layout"]


def word_layout(word_bytes: int) -> data.StructLayout:
    """``data``: up to ``word_bytes`` bytes, the first in the low bits;
    ``count``: how many of them are meant."""
    return data.StructLayout({"data": 8 * word_bytes, "count": range(word_bytes + 1)})


class UARTBridge(wiring.Component):
    """``top`` (a component with ``rx``/``tx`` UART pins) behind a host-side
    UART pair with a FIFO of words each way.

    Ports
    -----
    h2d : In(stream.Signature(word_layout(word_bytes)))
        Bytes to send to the top's ``rx``, back to back (``depth`` words
        wait in a FIFO).
    h2d_level : Out(range(depth + 1))
        Words in that FIFO: ``depth - h2d_level`` can be given back to back.
    d2h : Out(stream.Signature(word_layout(word_bytes)))
        Bytes received from the top's ``tx``: a word when it is full, or
        when two byte times pass with no byte (the USB-serial chip's latency
        timer). They wait in a FIFO of ``depth`` words; when it is full the
        word is dropped, so the reader takes them at least every ``depth``
        byte times.
    d2h_level : Out(range(depth + 1))
        Words in that FIFO: that many can be taken back to back.
    h2d_idle : Out(1)
        Nothing left to send: the FIFO is empty and the last stop bit is out.
    top_busy : Out(1)
        Keep simulating even when the line is quiet: the top's ``running``
        output is high (a program runs), or its ``init_done`` low (its
        memory is still initializing: a link command that touches memory
        waits for it, with nothing on the line meanwhile); 0 for a top
        with neither.
    pins : the top's ``pins`` (SDRAM pins), when it has them.

    The FIFOs read combinationally (a simulation harness needs no block
    RAM), so their levels are exact in both directions.
    """

    def __init__(self, top, *, divisor, word_bytes=8, depth=16):
        if not hasattr(top, "rx") or not hasattr(top, "tx"):
            raise TypeError(f"top must be a component with rx and tx ports, not {top!r}")
        self.top = top
        self.divisor = check_int("divisor", divisor, 4, 1 << 20)
        self.word_bytes = check_pow2("word_bytes", word_bytes, 2, 64)
        self.depth = check_int("depth", depth, 2, 1 << 16)
        layout = word_layout(word_bytes)
        super().__init__({
            "h2d": In(stream.Signature(layout)),
            "h2d_level": Out(range(depth + 1)),
            "d2h": Out(stream.Signature(layout)),
            "d2h_level": Out(range(depth + 1)),
            "h2d_idle": Out(1),
            "top_busy": Out(1),
            # a top on the SDRAM model: its pins, for the model
            **({"pins": top.signature.members["pins"]} if "pins" in top.signature.members
               else {}),
        })

    def elaborate(self, platform):
        m = Module()
        wb = self.word_bytes
        lb = exact_log2(wb)
        layout = word_layout(wb)
        m.submodules.top = top = self.top
        m.submodules.host_tx = utx = UARTTx(divisor=self.divisor)
        m.submodules.host_rx = urx = UARTRx(divisor=self.divisor)
        m.submodules.h2d_fifo = h2d = SyncFIFO(width=layout.size, depth=self.depth)
        m.submodules.d2h_fifo = d2h = SyncFIFO(width=layout.size, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.h2d), h2d.w_stream)
        wiring.connect(m, d2h.r_stream, wiring.flipped(self.d2h))
        m.d.comb += [top.rx.eq(utx.tx), urx.rx.eq(top.tx),
                     self.h2d_level.eq(h2d.w_level), self.d2h_level.eq(d2h.r_level)]
        busy = []
        if hasattr(top, "running"):
            busy.append(top.running)
        if hasattr(top, "init_done"):
            busy.append(~top.init_done)
        if busy:
            m.d.comb += self.top_busy.eq(Cat(*busy).any())
        if hasattr(self, "pins"):
            wiring.connect(m, top.pins, wiring.flipped(self.pins))

        # words to bytes: take a word when the last one is out
        word = Signal(layout)
        idx = Signal(range(wb + 1))
        m.d.comb += [utx.data.valid.eq(idx != word.count),
                     utx.data.payload.eq(word.data.word_select(idx[:lb], 8)),
                     h2d.r_en.eq(idx == word.count),
                     self.h2d_idle.eq(~h2d.r_rdy & (idx == word.count) & utx.data.ready)]
        with m.If(utx.data.valid & utx.data.ready):
            m.d.sync += idx.eq(idx + 1)
        with m.If(h2d.r_en & h2d.r_rdy):
            m.d.sync += [word.eq(h2d.r_data), idx.eq(0)]

        # bytes to words: a full word, or what came before two quiet byte times
        acc = Signal(8 * wb)
        n = Signal(range(wb + 1))
        quiet = Signal(range(20 * self.divisor + 1))
        push = (n == wb) | ((n != 0) & (quiet == 0))
        m.d.comb += [urx.data.ready.eq(1), d2h.w_en.eq(push), d2h.w_data.eq(Cat(acc, n))]
        byte = urx.data.valid
        with m.If(push):
            m.d.sync += n.eq(byte)
            with m.If(byte):
                m.d.sync += [acc.word_select(0, 8).eq(urx.data.payload),
                             quiet.eq(20 * self.divisor)]
        with m.Elif(byte):
            m.d.sync += [acc.word_select(n[:lb], 8).eq(urx.data.payload), n.eq(n + 1),
                         quiet.eq(20 * self.divisor)]
        with m.Elif(n != 0):
            m.d.sync += quiet.eq(quiet - 1)
        return m
