# amaranth: UnusedElaboratable=no
"""UARTRx and UARTTx (rtl/uart.py) on their own, in Amaranth's simulator.

The other end of the line is a bit-level Python model running on its own
time base: the receiver is driven with edges placed in continuous time
(``ctx.delay``), at a phase unrelated to the clock and at a rate up to ±2 %
off, which a divisor of 16 makes representable. The transmitter's line is
recorded cycle by cycle and decoded by a model sampling mid-bit at ±2 %.
cocotbext-uart checks the same blocks again inside the host-link suite.
"""

import numpy as np
import pytest

from seedchip.rtl.uart import MAX_BAUD_ERROR, UARTRx, UARTTx, uart_divisor
from seedchip.sim.clocked import run_clocked

PERIOD = 1e-6          # one clock: the model's times are in clock periods
DIV = 16


def _bits(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


class RxBench:
    """UARTRx with ``data.ready`` high; what it delivers and its error pulses."""

    def __init__(self, divisor=DIV):
        self.dut = UARTRx(divisor=divisor)
        self.divisor = divisor
        self.got, self.framing, self.overrun = [], 0, 0
        self.ready = True

    async def collect(self, ctx):
        d = self.dut
        # an await per cycle, not `async for`: the simulator drops this process
        # mid-iteration at the end, which an async generator reports as an error
        while True:
            _clk, _rst, valid, ready, payload, fe, ov = await ctx.tick().sample(
                d.data.valid, d.data.ready, d.data.payload, d.framing_error, d.overrun)
            if valid and ready:
                self.got.append(payload)
            self.framing += fe
            self.overrun += ov

    def run(self, line, *, error=0.0, phase=0.37, tail_bits=12, ready=True):
        """Drive ``line``, a list of (level, length in bits), at a bit time
        ``error`` off the nominal one, starting ``phase`` clocks off the edge."""
        bit = self.divisor * (1 + error) * PERIOD

        async def drive(ctx):
            ctx.set(self.dut.data.ready, ready)
            await ctx.delay((4 + phase) * PERIOD)
            for level, length in line:
                ctx.set(self.dut.rx, level)
                await ctx.delay(length * bit)
            ctx.set(self.dut.rx, 1)
            await ctx.delay(tail_bits * bit)

        run_clocked(self.dut, drive, period=PERIOD, processes=[self.collect])
        return self


def _line(frames, idle_bits=0.0):
    """(level, bits) runs for frames of bits, ``idle_bits`` of idle after each."""
    out = []
    for bits in frames:
        out += [(b, 1) for b in bits]
        if idle_bits:
            out.append((1, idle_bits))
    return out


@pytest.mark.parametrize("error", [0.0, MAX_BAUD_ERROR, -MAX_BAUD_ERROR])
@pytest.mark.parametrize("phase", [0.05, 0.5, 0.95])
def test_rx_back_to_back_with_baud_error(error, phase):
    """Random bytes with no idle between them, from a sender ±2 % off."""
    seed = 100 + int(phase * 100)
    data = [int(x) for x in np.random.default_rng(seed).integers(0, 256, 40)]
    b = RxBench().run(_line([_bits(x) for x in data]), error=error, phase=phase)
    assert b.got == data, f"seed={seed}"
    assert b.framing == 0 and b.overrun == 0


def test_rx_bad_stop_bit_then_next_byte():
    """A 0 stop bit: one framing error, the byte dropped, the next one right."""
    frames = [_bits(0xA5), _bits(0x3C, stop=0), _bits(0x81), _bits(0x00, stop=0), _bits(0xFF)]
    b = RxBench().run(_line(frames, idle_bits=1))
    assert b.got == [0xA5, 0x81, 0xFF]
    assert b.framing == 2 and b.overrun == 0


def test_rx_glitch_is_no_start_bit():
    """The docstring's promise: a low pulse shorter than half a bit on an idle
    line is ignored; the byte after it is received."""
    line = [(1, 2), (0, 0.3), (1, 3), (0, 0.4), (1, 3)] + _line([_bits(0x5A)])
    b = RxBench().run(line)
    assert b.got == [0x5A]
    assert b.framing == 0


def test_rx_overrun():
    """Bytes arriving while the first still waits for ``ready``: dropped, counted."""
    b = RxBench().run(_line([_bits(1), _bits(2), _bits(3)]), ready=False)
    assert b.got == [] and b.overrun == 2 and b.framing == 0


def test_rx_smallest_divisor():
    """Four clocks per bit (what uart_divisor allows) at the exact rate."""
    data = list(range(0, 256, 17))
    b = RxBench(divisor=4).run(_line([_bits(x) for x in data]), phase=0.5)
    assert b.got == data and b.framing == 0


def _tx_trace(data, divisor=DIV, gaps=()):
    """Run UARTTx over ``data`` (a gap of ``gaps[i]`` idle cycles before
    offering byte i); the line level at every clock edge."""
    dut = UARTTx(divisor=divisor)
    trace = []
    gaps = list(gaps) + [0] * len(data)

    async def feed(ctx):
        for i, byte in enumerate(data):
            if gaps[i]:
                await ctx.tick().repeat(gaps[i])
            ctx.set(dut.data.payload, byte)
            ctx.set(dut.data.valid, 1)
            await ctx.tick().until(dut.data.ready)
            ctx.set(dut.data.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    async def record(ctx):
        while True:
            _clk, _rst, tx = await ctx.tick().sample(dut.tx)
            trace.append(tx)

    run_clocked(dut, feed, period=PERIOD, processes=[record])
    return trace


def _decode(trace, bit):
    """A receiver model on ``trace`` (levels per clock) with a bit of ``bit``
    clocks: (bytes, start cycles, framing errors)."""
    out, starts, bad = [], [], 0
    t = 1
    while t < len(trace):
        if trace[t - 1] == 1 and trace[t] == 0:
            samples = [trace[min(len(trace) - 1, int(t + (i + 0.5) * bit))] for i in range(10)]
            if samples[0] == 0:
                starts.append(t)
                if samples[9] == 1:
                    out.append(sum(s << i for i, s in enumerate(samples[1:9])))
                else:
                    bad += 1
            t = int(t + 9.5 * bit)
        else:
            t += 1
    return out, starts, bad


@pytest.mark.parametrize("error", [0.0, MAX_BAUD_ERROR, -MAX_BAUD_ERROR])
def test_tx_back_to_back(error):
    """Random bytes offered back to back leave back to back, 10 bits of
    exactly ``divisor`` clocks each, readable by a receiver ±2 % off."""
    data = [int(x) for x in np.random.default_rng(5).integers(0, 256, 40)]
    trace = _tx_trace(data)
    got, starts, bad = _decode(trace, DIV * (1 + error))
    assert got == data and bad == 0
    if error == 0.0:
        assert np.diff(starts).tolist() == [10 * DIV] * (len(data) - 1)
        levels = []
        for s in starts:
            levels += trace[s:s + 10 * DIV]
        assert levels == [b for x in data for b in _bits(x) for _ in range(DIV)]


def test_tx_idle_between_bytes():
    """With gaps between offers the line idles high, then starts cleanly."""
    data = [0x00, 0xFF, 0x55]
    trace = _tx_trace(data, gaps=[3, 50, 7])
    got, _, bad = _decode(trace, DIV)
    assert got == data and bad == 0
    assert trace[:3] == [1, 1, 1]


def test_uart_divisor():
    assert uart_divisor(100e6, 3_000_000) == 33                 # 1.0 % off
    assert uart_divisor(16e6, 1_000_000) == 16
    assert uart_divisor(4e6, 1_000_000) == 4
    with pytest.raises(ValueError, match=r"baud must be at most clk_freq / 4 = 25000000, "
                                         r"not 30000000"):
        uart_divisor(100e6, 30_000_000)
    with pytest.raises(ValueError, match=r"baud 150000 is 4\.76 % off at 1000000 Hz with "
                                         r"divisor 7 \(at most 2 %\)"):
        uart_divisor(1e6, 150_000)
    with pytest.raises(TypeError, match="baud must be a number, not '9600'"):
        uart_divisor(100e6, "9600")
    with pytest.raises(ValueError, match="baud must be a positive number, not 0"):
        uart_divisor(100e6, 0)
    with pytest.raises(ValueError, match="clk_freq must be a positive number of Hz, not -1"):
        uart_divisor(-1, 9600)
    for cls in (UARTRx, UARTTx):
        with pytest.raises(ValueError, match=r"divisor must be in range 4\.\.1048576, not 3"):
            cls(divisor=3)
