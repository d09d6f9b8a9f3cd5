"""Board top level: the matrix unit exercised by on-chip pattern generators.

Nothing of the unit may be optimized away, or the build report would flatter
it. So every input bit comes from an LFSR register (Yosys cannot prove
anything about it), every output bit is folded into a checksum, and the
checksum drives the LEDs.
"""

from amaranth.hdl import (Cat, ClockDomain, Const, DomainRenamer, Elaboratable, Instance, Module,
                          Mux, ResetSignal, Signal)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer
from amaranth.lib.wiring import Out

from ..config import ChipConfig
from ..gather_params import GatherParams
from ..protocol import GemmCmdLayout, GemmError
from ..rtl.gemm import GemmUnit
from ..rtl.lfsr import Lfsr
from ..rtl.sdram import SDRAMChip
from .pll import PLL
from .sdram_bist import SDRAMSelfTest, gather_on_sdram
from .sdram_phy import SDRAMPHY, plan_clocks

#: largest accepted relative error between config.clk_mhz and the PLL output
PLL_TOLERANCE = 0.01

__all__ = ["Exerciser", "Top"]


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
    """ULX3S top level: the matrix unit and the SDRAM self test.

    25 MHz oscillator -> one EHXPLLL with three outputs:

    * CLKOP at ``config.clk_mhz``: the ``sync`` domain, running an
      :class:`Exerciser`. Reset-less: GSR holds every flop at its init value
      until the PLL locks (see :class:`.pll.PLL`).
    * CLKOS at ``config.sdram_mhz``: the ``sdram`` domain, running the SDRAM
      controller with an :class:`~.sdram_bist.SDRAMBist` over the whole chip
      and, with ``config.gather`` (off by default), the EmbeddingBag gather engine driven by a
      :class:`~.gather_exerciser.GatherExerciser` (both on the controller
      through an arbiter: :class:`~.sdram_bist.SDRAMSelfTest`), on the board's SDRAM pins through
      I/O-cell registers (:class:`~.sdram_phy.SDRAMPHY`). Its reset follows
      the PLL lock through an :class:`~amaranth.lib.cdc.AsyncFFSynchronizer`
      (released on an sdram clock edge) and a global network (``DCCA``).
    * CLKOS2: the same frequency delayed by the phase
      :func:`~.sdram_phy.choose_phase` picks; it only clocks the ``ODDRX1F``
      that drives the SDRAM clock pin (domain ``sdram_clkout``).

    No signal crosses between ``sync`` and ``sdram``: each drives its own
    LEDs, through output registers of its own clock.

    LEDs (``led`` resources 0-7, D0-D7 on the ULX3S silkscreen):

    ======  ===========================================================
    0-3     matrix unit: output checksum, folded (changes about every
            ``2**display_bits`` cycles: the unit is running)
    4       matrix unit: an error was reported (sticky)
    5       gather engine: its output checksum, folded and sampled about
            6 times a second (flickers while bags flow); without the
            engine (``config.gather`` off, the default), the BIST phase: on while the
            read-and-check pass runs
    6       SDRAM BIST: toggles at the end of every full write+check pass
    7       SDRAM BIST: a word read back wrong (sticky)
    ======  ===========================================================

    ``sdram_chip`` (default: the board's, safe for every part ULX3S boards
    carry) sets the controller timings and the I/O budget. The CAS latency
    and the SDRAM clock phase are the ones with the largest estimated I/O
    margin at ``config.sdram_mhz`` (:attr:`sdram_budget`). ``gather`` (default:
    ``config.gather``; False: none) is the gather engine's
    :class:`~seedchip.gather_params.GatherParams`; :attr:`gather` holds them
    bound to the SDRAM controller's port (:func:`~.sdram_bist.gather_on_sdram`).
    """

    def __init__(self, *, config, clk_in="clk25", clk_in_mhz=25.0, display_bits=26,
                 sdram_chip=None, sdram_resource="sdram", gather=None):
        from .ulx3s import SDRAM_CHIP
        if not isinstance(config, ChipConfig):
            raise TypeError(f"config must be a ChipConfig, not {config!r}")
        self.config = config
        self.clk_in = clk_in
        self.clk_in_mhz = clk_in_mhz
        self.display_bits = display_bits
        self.sdram_chip = SDRAM_CHIP if sdram_chip is None else sdram_chip
        if not isinstance(self.sdram_chip, SDRAMChip):
            raise TypeError(f"sdram_chip must be an SDRAMChip, not {self.sdram_chip!r}")
        self.sdram_resource = sdram_resource
        # The gather engine beside the SDRAM self test: the configuration's
        # (``config.gather``) unless given here; False for the self test
        # alone. ``self.gather`` is the engine built: these parameters on the
        # SDRAM controller's port.
        if gather is None:
            gather = config.gather
        elif gather is False:
            gather = None
        if gather is not None and not isinstance(gather, GatherParams):
            raise TypeError(f"gather must be None, False or a GatherParams, not {gather!r}")
        self.gather = None if gather is None else gather_on_sdram(gather, self.sdram_chip)
        # Computed now so an impossible frequency fails before elaboration:
        # the PLL, and the CAS latency, SDRAM clock phase and read capture
        # edge with the largest estimated I/O margin.
        plan = plan_clocks(chip=self.sdram_chip, clk_mhz=config.clk_mhz,
                           sdram_mhz=config.sdram_mhz, clk_in_mhz=clk_in_mhz,
                           tolerance=PLL_TOLERANCE)
        self.pll_params = plan.pop("pll")
        self.sdram_budget = plan

    @property
    def clk_mhz(self) -> float:
        """The ``sync`` frequency the PLL actually produces."""
        return self.pll_params.f_out

    @property
    def sdram_mhz(self) -> float:
        """The ``sdram`` frequency the PLL actually produces."""
        return self.pll_params.secondary_f_out[0]

    @property
    def sdram_cas_latency(self) -> int:
        return self.sdram_budget["cas_latency"]

    @property
    def sdram_read_delay(self) -> int:
        return self.sdram_budget["read_delay"]

    @property
    def clock_domains(self) -> dict:
        """Clock domain -> frequency (MHz) of every domain with logic to time."""
        return {"sync": self.clk_mhz, "sdram": self.sdram_mhz}

    #: Clock domain -> name prefixes of the cells it clocks (the submodules
    #: below), which tell the build report's clocks apart at equal frequencies
    #: (``sdram_clkout`` only clocks the SDRAM clock pin: named, not required).
    clock_hints = {"sync": ("exerciser.",), "sdram": ("sdram.",),
                   "sdram_clkout": ("sdram_phy.clk.",)}

    def elaborate(self, platform):
        m = Module()
        # Reset-less: the PLL holds every flop at its init value through the
        # global set/reset network until lock (no routed reset net).
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.domains.sdram = ClockDomain("sdram")
        m.domains.sdram_clkout = ClockDomain("sdram_clkout", reset_less=True)
        clk_io = platform.request(self.clk_in, 0, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
        m.submodules.pll = pll = PLL(
            f_out_mhz=self.config.clk_mhz, f_in_mhz=self.clk_in_mhz, tolerance=PLL_TOLERANCE,
            secondary={"sdram": self.config.sdram_mhz,
                       "sdram_clkout": (self.config.sdram_mhz, self.sdram_budget["phase_deg"])})
        m.d.comb += pll.clk_in.eq(clk_buf.i)
        # The sdram domain's reset: asserted while the PLL is unlocked,
        # released on an sdram clock edge, and distributed on a global clock
        # network (DCCA): routed as a plain net to every flop of the
        # controller it took 8.7 ns and limited the domain to 96 MHz.
        sdram_rst = Signal(init=1)
        m.submodules.sdram_reset = AsyncFFSynchronizer(~pll.locked, sdram_rst, o_domain="sdram")
        m.submodules.sdram_reset_buf = Instance("DCCA", i_CLKI=sdram_rst, i_CE=Const(1),
                                                o_CLKO=ResetSignal("sdram"))

        m.submodules.exerciser = ex = Exerciser(config=self.config,
                                                display_bits=self.display_bits)

        selftest = SDRAMSelfTest(chip=self.sdram_chip, clk_freq=self.sdram_mhz * 1e6,
                                 cas_latency=self.sdram_cas_latency,
                                 read_delay=self.sdram_read_delay,
                                 gather=self.gather)
        m.submodules.sdram = DomainRenamer("sdram")(selftest)
        m.submodules.sdram_phy = phy = SDRAMPHY(chip=self.sdram_chip, domain="sdram",
                                                clk_domain="sdram_clkout",
                                                resource=self.sdram_resource)
        wiring.connect(m, selftest.pins, phy.pins)

        # Every checksum bit still reaches a pin (4 LEDs for 6 bits: XOR), so
        # none of the unit can be optimized away.
        ex_leds = Cat(ex.leds[0:4] ^ ex.leds[4:6], ex.leds[6])
        # LED 5: the gather engine's checksum, folded to one bit and sampled
        # every 2**24 sdram cycles (about 6 Hz): it flickers while bags flow.
        gather_led = Signal()
        if self.gather is not None:
            sample = Signal(24)
            m.d.sdram += sample.eq(sample + 1)
            with m.If(sample == 0):
                m.d.sdram += gather_led.eq(selftest.gather_checksum.xor() ^
                                           selftest.gather_bags.xor())
        else:
            gather_led = selftest.phase
        bist_leds = Cat(gather_led, selftest.passes[0], selftest.error)
        for i in range(8):
            led = platform.request("led", i, dir="-")
            # Output flops in the I/O cells: the pads never see fabric logic,
            # and each LED is registered in the domain that drives it.
            if i < len(ex_leds):
                buf = io.FFBuffer("o", led, o_domain="sync")
                m.d.comb += buf.o.eq(ex_leds[i])
            else:
                buf = io.FFBuffer("o", led, o_domain="sdram")
                m.d.comb += buf.o.eq(bist_leds[i - len(ex_leds)])
            m.submodules[f"led_buf{i}"] = buf
        return m
