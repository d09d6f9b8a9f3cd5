"""The host link: UART pins to the chip's memory port and register port.

::

    rx pin -> UARTRx -> FrameReceiver -> frame buffer (rx_slots x MAX_PAYLOAD B)
                                              |
                        CommandEngine <-------+--> mem (MemPortSignature)
                              |                --> regs (MemPortSignature, 16/32)
                              v
    tx pin <- UARTTx <- ResponseFramer <- response buffer (MAX_PAYLOAD B)

The wire format, commands and register map: :mod:`seedchip.link_protocol`.
"""

import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int, check_pow2
from ..link_protocol import MAX_PAYLOAD, REG_ADDR_BITS, REG_WIDTH, LinkCounter
from .link_engine import N_LINK, CommandEngine
from .link_rx import FrameReceiver
from .link_tx import ResponseFramer
from .memport import MemPortSignature
from .uart import UARTRx, UARTTx, uart_divisor

__all__ = ["LinkParams", "HostLink"]


@dataclasses.dataclass(frozen=True)
class LinkParams:
    """The host link's parameters, checked.

    ``clk_freq``/``baud`` give the UART divisor (``ValueError`` naming
    ``baud`` when the nearest integer divisor is more than 2 % off).
    ``mem_words`` words of ``mem_data_width`` bits behind a port with
    ``mem_addr_width`` address bits. ``rx_slots`` frames can wait in the
    receiver (the host's window). ``timeout_bytes`` byte times without a
    byte drop a partial frame: it must exceed any gap the host's USB-serial
    bridge leaves inside a frame, and stay well under the host's response
    timeout.
    """

    clk_freq: float = 100e6
    baud: float = 3_000_000
    mem_addr_width: int = 16
    mem_data_width: int = 32
    mem_words: int = 1 << 15
    rx_slots: int = 4
    timeout_bytes: int = 1000
    n_unit_counters: int = 0

    def __post_init__(self):
        uart_divisor(self.clk_freq, self.baud)
        check_int("mem_addr_width", self.mem_addr_width, 1, 32)
        check_pow2("mem_data_width", self.mem_data_width, 8, 64)
        check_int("mem_words", self.mem_words, 1, 1 << self.mem_addr_width)
        check_pow2("rx_slots", self.rx_slots, 1, 64)
        check_int("timeout_bytes", self.timeout_bytes, 2, 1 << 20)
        check_int("n_unit_counters", self.n_unit_counters, 0, 256)

    @property
    def divisor(self) -> int:
        return uart_divisor(self.clk_freq, self.baud)

    @property
    def mem_bytes(self) -> int:
        return self.mem_words * self.mem_data_width // 8

    @property
    def timeout_cycles(self) -> int:
        return self.timeout_bytes * 10 * self.divisor


class HostLink(wiring.Component):
    """UART host link (see the module docstring).

    Ports
    -----
    rx : In(1), tx : Out(1)
        The UART pins (8N1, idle high); ``rx`` is synchronized inside.
    mem : Out(MemPortSignature(mem_addr_width, mem_data_width))
    regs : Out(MemPortSignature(REG_ADDR_BITS, 32))
        The seam to the rest of the chip: one request at a time; ``err`` in
        the response means "no such register".
    counters : Out(ArrayLayout(32, len(LinkCounter)))
        The link counters (also readable over the link, block LINK).

    Memory: the frame buffer (``rx_slots`` x MAX_PAYLOAD bytes) and the
    response buffer (MAX_PAYLOAD bytes), block RAM with synchronous reads.
    """

    def __init__(self, params: LinkParams):
        if not isinstance(params, LinkParams):
            raise TypeError(f"params must be a LinkParams, not {params!r}")
        self.params = params
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "mem": Out(MemPortSignature(addr_width=params.mem_addr_width,
                                        data_width=params.mem_data_width)),
            "regs": Out(MemPortSignature(addr_width=REG_ADDR_BITS, data_width=REG_WIDTH)),
            "counters": Out(data.ArrayLayout(32, N_LINK)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.uart_rx = urx = UARTRx(divisor=p.divisor)
        m.submodules.uart_tx = utx = UARTTx(divisor=p.divisor)
        m.submodules.receiver = rcv = FrameReceiver(rx_slots=p.rx_slots,
                                                    timeout=p.timeout_cycles)
        m.submodules.engine = eng = CommandEngine(
            rx_slots=p.rx_slots, mem_addr_width=p.mem_addr_width,
            mem_data_width=p.mem_data_width, mem_bytes=p.mem_bytes,
            n_unit_counters=p.n_unit_counters)
        m.submodules.framer = frm = ResponseFramer()
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.data, rcv.data)
        wiring.connect(m, rcv.desc, eng.desc)
        wiring.connect(m, eng.resp, frm.resp)
        wiring.connect(m, frm.data, utx.data)
        wiring.connect(m, eng.mem, wiring.flipped(self.mem))
        wiring.connect(m, eng.regs, wiring.flipped(self.regs))
        m.d.comb += [rcv.release.eq(eng.release), eng.tx_busy.eq(frm.busy)]

        m.submodules.frame_buf = fbuf = Memory(shape=8, depth=p.rx_slots * MAX_PAYLOAD,
                                               init=[])
        fw = fbuf.write_port()
        fr = fbuf.read_port(domain="sync")
        m.d.comb += [fw.addr.eq(rcv.fb_addr), fw.data.eq(rcv.fb_data), fw.en.eq(rcv.fb_en),
                     fr.addr.eq(eng.fb_addr), eng.fb_data.eq(fr.data)]
        m.submodules.resp_buf = rbuf = Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        rw = rbuf.write_port()
        rr = rbuf.read_port(domain="sync")
        m.d.comb += [rw.addr.eq(eng.rb_addr), rw.data.eq(eng.rb_data), rw.en.eq(eng.rb_en),
                     rr.addr.eq(frm.buf_addr), frm.buf_data.eq(rr.data)]

        pulses = {
            LinkCounter.RX_FRAMES: rcv.frame_ok,
            LinkCounter.RX_BAD_CRC: rcv.bad_crc,
            LinkCounter.RX_TIMEOUT: rcv.timeout,
            LinkCounter.RX_BAD_LENGTH: rcv.bad_length,
            LinkCounter.RX_GARBAGE: rcv.garbage,
            LinkCounter.RX_FRAMING: urx.framing_error,
            LinkCounter.RX_OVERFLOW: rcv.overflow | urx.overrun,
            LinkCounter.TX_FRAMES: frm.sent,
            LinkCounter.CMD_ERRORS: eng.cmd_error,
        }
        for which, pulse in pulses.items():
            count = self.counters[int(which)]
            with m.If(eng.clear):
                m.d.sync += count.eq(0)
            with m.Elif(pulse):
                m.d.sync += count.eq(count + 1)
        m.d.comb += eng.counters.eq(self.counters)
        return m
