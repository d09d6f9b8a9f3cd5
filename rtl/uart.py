"""UART 8N1 receiver and transmitter with byte streams."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int

__all__ = ["uart_divisor", "UARTRx", "UARTTx"]

#: largest baud-rate error the receiver is meant for (its mid-bit sampling
#: tolerates about 4 % between two ends; half of it is left for the other end)
MAX_BAUD_ERROR = 0.02


def uart_divisor(clk_freq, baud) -> int:
    """Clocks per bit for ``baud`` at ``clk_freq`` Hz: the nearest integer.

    Raises ``TypeError`` for a value that is no number, ``ValueError`` naming
    ``baud`` when the rate this gives is off by
    more than 2 %, or when it is under 4 clocks per bit (the receiver's
    minimum).
    """
    for name, value in (("clk_freq", clk_freq), ("baud", baud)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, not {value!r}")
    if clk_freq <= 0:
        raise ValueError(f"clk_freq must be a positive number of Hz, not {clk_freq!r}")
    if baud <= 0:
        raise ValueError(f"baud must be a positive number, not {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"baud must be at most clk_freq / 4 = {clk_freq / 4:.0f}, not {baud!r}")
    error = abs(clk_freq / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud {baud!r} is {100 * error:.2f} % off at {clk_freq:.0f} Hz with "
                         f"divisor {divisor} (at most {100 * MAX_BAUD_ERROR:.0f} %)")
    return divisor


class UARTRx(wiring.Component):
    """UART 8N1 receiver, mid-bit sampling.

    Ports
    -----
    rx : In(1)
        The line (idle high), asynchronous: two flip-flops synchronize it.
    data : Out(stream.Signature(8))
        One beat per byte with a good stop bit. The line cannot wait: a byte
        that completes while the previous one still waits for ``ready`` is
        dropped and ``overrun`` pulses.
    framing_error, overrun : Out(1)
        One-cycle pulses: a byte with a bad stop bit (dropped), a byte lost.

    A start bit is confirmed half a bit after the falling edge (a glitch
    shorter than that is ignored); each data bit is sampled in its middle.
    The byte is delivered in the middle of the stop bit, so the receiver is
    ready for the next start bit half a bit early: it tolerates a sender
    up to about 4 % off the nominal rate.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, *, divisor):
        self.divisor = check_int("divisor", divisor, 4, 1 << 20)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]

        timer = Signal(range(div))
        bit = Signal(range(8))
        shift = Signal(8)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"          # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), shift.eq(Cat(shift[1:], line)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    with m.If(self.data.valid & ~self.data.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                # a bad stop bit: wait for the line to go idle before hunting
                # for the next start bit
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART 8N1 transmitter.

    Ports
    -----
    data : In(stream.Signature(8))
        Taken when the previous byte's stop bit has been sent; bytes given
        back to back leave back to back (10 bit times each).
    tx : Out(1)
        The line, idle high, driven from a register.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, *, divisor):
        self.divisor = check_int("divisor", divisor, 4, 1 << 20)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        bits = Signal(range(11))            # bits still to send, stop bit included
        shift = Signal(9, init=0x1FF)       # data bits then the stop bit, LSB first
        # the next byte is taken in the last cycle of the stop bit, so that
        # bytes offered back to back leave with no idle cycle between them
        m.d.comb += self.data.ready.eq((bits == 0) | ((bits == 1) & (timer == 0)))
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [self.tx.eq(0), shift.eq(Cat(self.data.payload, 1)),
                         bits.eq(10), timer.eq(div - 1)]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(Cat(shift[1:], 1)),
                             bits.eq(bits - 1), timer.eq(div - 1)]
        return m
