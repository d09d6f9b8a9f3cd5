"""Board top level: the matrix unit exercised by on-chip pattern generators.

Nothing of the unit may be optimized away, or the build report would flatter
it. So every input bit comes from an LFSR register (Yosys cannot prove
anything about it), every output bit is folded into a checksum, and the
checksum drives the LEDs.
"""

import random

from amaranth.hdl import Cat, ClockDomain, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import ChipConfig
from ..protocol import GemmCmdLayout, GemmError
from ..rtl.gemm import GemmUnit
from .pll import PLL, pll_params

#: largest accepted relative error between config.clk_mhz and the PLL output
PLL_TOLERANCE = 0.01

__all__ = ["Lfsr", "Exerciser", "Top"]


class Lfsr(wiring.Component):
    """Pseudo-random word, advancing ``step`` bits when ``en`` is high.

    Ports
    -----
    en : In(1)
    value : Out(width)
        Registered; holds while ``en`` is low (so it can be a stream payload).

    The state is a window of ``max(width, 31)`` consecutive bits of the
    sequence ``b[n] = b[n-28] ^ b[n-31]`` (primitive x^31 + x^3 + 1, period
    2^31 - 1). With ``step <= 28`` every new bit is the XOR of two current
    bits: one LUT per new bit, whatever the width.
    """

    _TAPS = (28, 31)

    def __init__(self, *, width, step=8, seed=1):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise TypeError(f"width must be a positive integer, not {width!r}")
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= self._TAPS[0]:
            raise ValueError(f"step must be an integer in range 1..{self._TAPS[0]}, not {step!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, not {seed!r}")
        self._width = width
        self._step = step
        self._size = max(width, self._TAPS[1])
        # A seed whose last 31 bits are all zero would lock the sequence at 0.
        init = random.Random(seed).getrandbits(self._size)
        if init >> (self._size - self._TAPS[1]) == 0:
            init |= 1 << (self._size - 1)
        self._init = init
        super().__init__({"en": In(1), "value": Out(width)})

    def elaborate(self, platform):
        m = Module()
        size, step = self._size, self._step
        # state[0] is the oldest bit of the window, state[size-1] the newest.
        state = Signal(size, init=self._init)
        new = [state[size + i - self._TAPS[0]] ^ state[size + i - self._TAPS[1]]
               for i in range(step)]
        with m.If(self.en):
            m.d.sync += state.eq(Cat(state[step:], *new))
        m.d.comb += self.value.eq(state[:self._width])
        return m


class Exerciser(wiring.Component):
    """The matrix unit between pattern generators and an output checksum.

    Ports
    -----
    leds : Out(8)
        ``[0:6]`` the output checksum, XOR-folded, refreshed about every
        ``2**display_bits`` cycles; ``[6]`` sticky "an error was reported";
        ``[7]`` heartbeat.
    checksum : Out(32)
        The running checksum (for simulation).
    commands : Out(32)
        Commands completed (last ``c`` element taken), for simulation.

    Commands cycle through four shapes: the largest the buffers hold, an LFSR
    random one, a small one that exercises K/N padding, and another random
    one; the ``params``/``requant``/``relu`` flags are random. ``a``, ``b``
    and ``params`` are always valid with LFSR payloads; ``c`` is taken with
    LFSR-driven backpressure (ready 3 cycles in 4 on average).
    """

    def __init__(self, *, config, display_bits=26, backpressure=True):
        if not isinstance(config, ChipConfig):
            raise TypeError(f"config must be a ChipConfig, not {config!r}")
        if not isinstance(display_bits, int) or isinstance(display_bits, bool) or display_bits < 1:
            raise TypeError(f"display_bits must be a positive integer, not {display_bits!r}")
        self._config = config
        self._display_bits = display_bits
        self._backpressure = bool(backpressure)
        super().__init__({
            "leds": Out(8),
            "checksum": Out(32),
            "commands": Out(32),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.gemm = gemm = GemmUnit(config=cfg)

        # -- operand and parameter streams: always valid, LFSR payloads ------
        for seed, (name, port) in enumerate((("a", gemm.a), ("b", gemm.b),
                                             ("params", gemm.params)), start=1):
            gen = Lfsr(width=len(port.payload.as_value()), seed=seed)
            m.submodules[f"lfsr_{name}"] = gen
            m.d.comb += [
                port.valid.eq(1),
                port.payload.eq(gen.value),
                gen.en.eq(port.ready),
            ]

        # -- commands -------------------------------------------------------
        m.submodules.lfsr_cmd = cmd_gen = Lfsr(width=3 * 16 + 3, seed=4)
        rnd = cmd_gen.value

        def random_dim(bits, limit):
            # 1 + (x mod 2^floor(log2(limit))): always within 1..limit.
            width = limit.bit_length() - 1
            if width == 0:
                return Const(1, 16)
            return 1 + bits[:width]

        def small(limit, want):
            return Const(min(limit, want), 16)

        shapes = [
            (Const(cfg.max_m, 16), Const(cfg.max_k, 16), Const(cfg.max_n, 16)),
            (random_dim(rnd[0:16], cfg.max_m), random_dim(rnd[16:32], cfg.max_k),
             random_dim(rnd[32:48], cfg.max_n)),
            (small(cfg.max_m, 7), small(cfg.max_k, cfg.rows + 1), small(cfg.max_n, cfg.cols + 3)),
            (random_dim(rnd[32:48], cfg.max_m), random_dim(rnd[0:16], cfg.max_k),
             random_dim(rnd[16:32], cfg.max_n)),
        ]
        # The command is registered (one idle cycle between commands) so the
        # shape arithmetic above never sits in front of the unit's own
        # command decode in one cycle.
        phase = Signal(2)
        cmd = Signal(GemmCmdLayout)
        cmd_valid = Signal()
        with m.If(gemm.cmd.ready):
            m.d.sync += cmd_valid.eq(0)
        with m.If(~cmd_valid):
            m.d.sync += [
                cmd_valid.eq(1),
                phase.eq(phase + 1),
                cmd.params.eq(rnd[48]),
                cmd.requant.eq(rnd[49]),
                cmd.relu.eq(rnd[50]),
            ]
            with m.Switch(phase):
                for i, (dm, dk, dn) in enumerate(shapes):
                    with m.Case(i):
                        m.d.sync += [cmd.m.eq(dm), cmd.k.eq(dk), cmd.n.eq(dn)]
        m.d.comb += [
            gemm.cmd.valid.eq(cmd_valid),
            gemm.cmd.payload.eq(cmd),
            cmd_gen.en.eq(~cmd_valid),
        ]

        # -- results --------------------------------------------------------
        if self._backpressure:
            m.submodules.lfsr_ready = ready_gen = Lfsr(width=2, step=1, seed=5)
            m.d.comb += [
                ready_gen.en.eq(1),
                gemm.c.ready.eq(~(ready_gen.value[0] & ready_gen.value[1])),
            ]
        else:
            m.d.comb += gemm.c.ready.eq(1)

        c_take = gemm.c.valid & gemm.c.ready
        last = c_take & gemm.c.payload.last
        chk = Signal(32)
        data = Mux(c_take, gemm.c.payload.data.as_unsigned(), 0)
        # The cycle count of a command is folded in once, with its last result;
        # busy and the error code every cycle.
        data ^= Mux(last, gemm.cycles, 0)
        misc = Cat(last, gemm.busy, gemm.error.as_value())
        m.d.sync += chk.eq(chk.rotate_left(1) ^ data ^ misc)
        m.d.comb += self.checksum.eq(chk)
        with m.If(last):
            m.d.sync += self.commands.eq(self.commands + 1)

        # -- LEDs -----------------------------------------------------------
        timer = Signal(self._display_bits)
        m.d.sync += timer.eq(timer + 1)
        shown = Signal(32)
        with m.If(timer == 0):
            m.d.sync += shown.eq(chk)
        folded = Const(0, 6)
        for i in range(0, 32, 6):
            folded ^= shown[i:i + 6]
        error_seen = Signal()
        with m.If(gemm.error != GemmError.NONE):
            m.d.sync += error_seen.eq(1)
        # Registered: the pads are driven straight from flops.
        m.d.sync += self.leds.eq(Cat(folded[:6], error_seen, timer[-1]))
        return m


class Top(Elaboratable):
    """ULX3S top level: 25 MHz oscillator -> EHXPLLL at ``config.clk_mhz``
    -> ``sync`` domain running an :class:`Exerciser`, whose LEDs drive the
    board's eight LEDs. The ``sync`` domain is reset-less; GSR holds every
    flop at its init value until the PLL locks (see :class:`.pll.PLL`)."""

    def __init__(self, *, config, clk_in="clk25", clk_in_mhz=25.0, display_bits=26):
        if not isinstance(config, ChipConfig):
            raise TypeError(f"config must be a ChipConfig, not {config!r}")
        self.config = config
        self.clk_in = clk_in
        self.clk_in_mhz = clk_in_mhz
        self.display_bits = display_bits
        # Computed now so an impossible frequency fails before elaboration.
        self.pll_params = pll_params(config.clk_mhz, f_in_mhz=clk_in_mhz,
                                     tolerance=PLL_TOLERANCE)

    @property
    def clk_mhz(self) -> float:
        """The ``sync`` frequency the PLL actually produces."""
        return self.pll_params.f_out

    def elaborate(self, platform):
        m = Module()
        # Reset-less: the PLL holds every flop at its init value through the
        # global set/reset network until lock (no routed reset net).
        m.domains.sync = ClockDomain("sync", reset_less=True)
        clk_io = platform.request(self.clk_in, 0, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
        m.submodules.pll = pll = PLL(f_out_mhz=self.config.clk_mhz, f_in_mhz=self.clk_in_mhz,
                                     tolerance=PLL_TOLERANCE)
        m.d.comb += pll.clk_in.eq(clk_buf.i)

        m.submodules.exerciser = ex = Exerciser(config=self.config,
                                                display_bits=self.display_bits)
        for i in range(8):
            led = platform.request("led", i, dir="-")
            # Output flops in the I/O cells: the pads never see fabric logic.
            buf = io.FFBuffer("o", led)
            m.submodules[f"led_buf{i}"] = buf
            m.d.comb += buf.o.eq(ex.leds[i])
        return m
