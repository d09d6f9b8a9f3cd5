"""Board top level of the whole chip: :class:`~seedchip.rtl.chip_sdram.ChipOnSDRAM`
(host link, control unit, execution units, SDRAM controller) on the ULX3S,
talking to the host over the board's USB-serial bridge.

What ``seedchip build`` (and ``make bitstream``) builds by default; the
matrix-unit exerciser with the SDRAM self test (:class:`~.top.Top`) is
``--top exerciser``.
"""

from amaranth.hdl import (Cat, ClockDomain, Const, Elaboratable, Instance, Module, ResetSignal,
                          Signal)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer, FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_type
from ..config import ChipConfig
from ..gather_params import GatherParams
from ..rtl.hostlink import LinkParams
from ..rtl.sdram import SDRAMChip
from .pll import PLL
from .sdram_phy import SDRAMPHY, plan_clocks
from .top import PLL_TOLERANCE

__all__ = ["ChipTop", "Stretch", "LINK_BAUD", "LED_HOLD_S"]

#: The host link's baud on the board: the FT231X's fastest standard rate
#: (at 100 MHz 33 clocks a bit, 1 % off; LinkParams refuses more than 2 %).
LINK_BAUD = 3_000_000
#: How long an activity LED stays on after its line was last active (s):
#: a 3 Mbaud frame lasts microseconds, this makes it visible.
LED_HOLD_S = 0.05
#: The chip's memory word (rtl/chip.py DATA_WIDTH), for the gather engine's
#: geometry without importing the chip before it is elaborated.
_CHIP_DATA_WIDTH = 64


class Stretch(wiring.Component):
    """``o`` is high while ``i`` is, and ``cycles`` cycles more (an LED
    that shows a short pulse). ``o`` is registered: one cycle behind ``i``."""

    i: In(1)
    o: Out(1)

    def __init__(self, *, cycles):
        self.cycles = check_int("cycles", cycles, 1, 1 << 32)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        left = Signal(range(self.cycles + 1))
        with m.If(self.i):
            m.d.sync += left.eq(self.cycles)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.sync += self.o.eq(self.i | (left != 0))
        return m


class ChipTop(Elaboratable):
    """ULX3S top level: the whole chip, its memory the board's 32 MB SDRAM,
    its host link the USB-serial port (FT231X).

    Clocks: 25 MHz oscillator -> one EHXPLLL. When ``config.sdram_mhz``
    equals ``config.clk_mhz``, one domain and two outputs:

    * CLKOP at ``config.clk_mhz``: the ``sync`` domain, running all of
      :class:`~seedchip.rtl.chip_sdram.ChipOnSDRAM`: the chip, the width
      adapter and the SDRAM controller, which drives the board's SDRAM pins
      through I/O-cell registers (:class:`~.sdram_phy.SDRAMPHY`). The CAS
      latency, SDRAM clock phase and read capture edge are those with the
      largest estimated I/O margin at the controller's clock
      (:attr:`sdram_budget`, :func:`~.sdram_phy.plan_clocks`).
    * CLKOS: the same frequency delayed by that phase; it only clocks the
      ``ODDRX1F`` that drives the SDRAM clock pin (domain ``sdram_clkout``).

    When they differ, two domains and three outputs: CLKOP ``sync`` at
    ``clk_mhz`` runs the chip; CLKOS ``sdram`` at ``sdram_mhz`` runs the
    width adapter, the SDRAM controller and the I/O registers, the chip's
    memory port crossing to it through a :class:`~seedchip.rtl.memcdc.MemPortCDC`;
    CLKOS2 is ``sdram_mhz`` delayed by the phase, for the clock pin. The
    SDRAM then runs as fast as its controller and pins allow whatever clock
    the whole chip meets (its bandwidth is the memory-bound units' pace).

    Reset: the global set/reset network holds every flop at its init value
    until the PLL locks (:class:`~.pll.PLL`), and each domain's reset
    follows the lock through an :class:`~amaranth.lib.cdc.AsyncFFSynchronizer`
    (released on that domain's clock edge) and a global clock network
    (``DCCA``: a reset routed as a plain net to every flop limited the SDRAM
    controller's domain to 96 MHz in :class:`~.top.Top`).

    Host link: the platform's ``uart`` resource, the FT231X: ``rx`` (FPGA pin
    M1) and ``tx`` (L4) at :data:`LINK_BAUD` (the chip's
    :class:`~seedchip.rtl.hostlink.LinkParams` computes the divisor from the
    PLL's actual clock, and refuses a clock that gives more than 2 % baud
    error). The resource's ``rts``/``dtr`` lines (the FT231X's outputs, FPGA
    pins M3/N1) and ``uart_tx_enable`` are not used: their pins stay inputs.
    Neither UART pin has an I/O register: ``rx`` is synchronized in the
    link, and ``tx`` leaves the UART's own register (init 1, idle) through a
    plain buffer, so the line stays idle while the PLL locks (an I/O-cell
    register would hold 0 there, a break to the host).

    LEDs (``led`` resources 0-7, D0-D7 on the ULX3S silkscreen), each from
    an I/O-cell register:

    ======  ===========================================================
    0       host link: a byte is arriving (the FPGA's rx line is low),
            held for :data:`LED_HOLD_S` so a frame is visible
    1       host link: a byte is leaving (tx low), held likewise
    2       the control unit is running a program
    3       the last program ended (DONE)
    4       the last program stopped with an error (ERROR)
    5       the SDRAM controller finished the SDRAM's power-up sequence
    6       heartbeat: toggles every ``2**25`` cycles (0.34 s at 100 MHz):
            the clock runs
    7       off
    ======  ===========================================================

    Parameters (keyword-only): ``config`` (a :class:`ChipConfig`: the array,
    buffers, ``gather`` and ``clk_mhz``); ``clk_in``/``clk_in_mhz`` the
    board oscillator; ``sdram_chip`` (default: the board's, timings safe for
    every part ULX3S boards carry); ``sdram_resource``, ``uart_resource``;
    ``baud``. A clock the PLL cannot make, that the SDRAM does not allow
    (above 133 MHz for the ULX3S parts) or that gives no usable baud raises
    ``ValueError`` here, before elaboration.
    """

    def __init__(self, *, config, clk_in="clk25", clk_in_mhz=25.0, sdram_chip=None,
                 sdram_resource="sdram", uart_resource="uart", baud=LINK_BAUD):
        from .ulx3s import SDRAM_CHIP
        self.config = check_type("config", config, ChipConfig)
        self.clk_in = clk_in
        self.clk_in_mhz = clk_in_mhz
        self.sdram_chip = SDRAM_CHIP if sdram_chip is None else sdram_chip
        check_type("sdram_chip", self.sdram_chip, SDRAMChip)
        self.sdram_resource = sdram_resource
        self.uart_resource = uart_resource
        self.baud = baud
        # Computed now so an impossible clock fails before elaboration: the
        # PLL (the core clock and the SDRAM clock pin's copy of it), and the
        # CAS latency, phase and read edge with the largest I/O margin.
        #: the SDRAM controller in a clock domain of its own (``sdram``)
        self.split = config.sdram_own_domain
        plan = plan_clocks(chip=self.sdram_chip, clk_mhz=config.clk_mhz,
                           sdram_mhz=config.sdram_mhz if self.split else None,
                           clk_in_mhz=clk_in_mhz, tolerance=PLL_TOLERANCE)
        self.pll_params = plan.pop("pll")
        self.sdram_budget = plan
        # The baud the UART divisor gives at the clock the PLL makes.
        LinkParams(clk_freq=self.clk_mhz * 1e6, baud=baud)
        #: The build report's remarks on this top (strings).
        self.notes = []
        if self.split:
            self.clock_hints = self.SPLIT_CLOCK_HINTS
        # The chip's gather engine, bound to the chip memory as rtl/chip.py
        # binds it (64-bit words, the SDRAM's size): for the build report.
        from ..rtl.chip import chip_addr_width
        self.gather = (config.gather or GatherParams()).with_memory(
            data_width=_CHIP_DATA_WIDTH, addr_width=chip_addr_width(self.sdram_chip.size_bytes))

    @property
    def clk_mhz(self) -> float:
        """The ``sync`` frequency the PLL actually produces."""
        return self.pll_params.f_out

    @property
    def sdram_mhz(self) -> float:
        """The SDRAM controller's clock as the PLL makes it (the ``sync``
        clock unless the controller has a domain of its own)."""
        return self.pll_params.secondary_f_out[0] if self.split else self.clk_mhz

    @property
    def sdram_cas_latency(self) -> int:
        return self.sdram_budget["cas_latency"]

    @property
    def sdram_read_delay(self) -> int:
        return self.sdram_budget["read_delay"]

    @property
    def gather_domain(self) -> str:
        """The domain the gather engine runs in (the build report's ``gather``
        section): the SDRAM controller's (:class:`~seedchip.rtl.chip.Chip`'s
        ``gather_domain``, the chip's own when there is one domain)."""
        return self.sdram_domain

    @property
    def sdram_domain(self) -> str:
        """The SDRAM controller's domain (the build report's ``sdram`` section)."""
        return "sdram" if self.split else "sync"

    @property
    def clock_domains(self) -> dict:
        """Clock domain -> frequency (MHz) of every domain with logic to time."""
        return {"sync": self.clk_mhz, **({"sdram": self.sdram_mhz} if self.split else {})}

    #: Clock domain -> name prefixes of the cells it clocks (the submodules
    #: below), which tell the build report's clocks apart at equal
    #: frequencies; ``sdram_clkout`` only clocks the SDRAM clock pin: named,
    #: not required. ``sdram_phy.`` is left out of ``sync``'s: its clock
    #: pin's ODDR is ``sdram_clkout``'s. A top whose SDRAM controller has a
    #: domain of its own has :data:`SPLIT_CLOCK_HINTS` instead.
    clock_hints = {"sync": ("chip.", "rx_led.", "tx_led.", "rx_seen.", "led_buf", "reset_sync."),
                   "sdram_clkout": ("sdram_phy.clk.",)}
    SPLIT_CLOCK_HINTS = {
        "sync": ("chip.chip.", "chip.init_sync.", "rx_led.", "tx_led.", "rx_seen.", "led_buf",
                 "reset_sync."),
        "sdram": ("chip.adapter.", "chip.controller.", "chip.mem_front.", "chip.chip.gather.",
                  "sdram_reset_sync.", "sdram_phy."),
        "sdram_clkout": ("sdram_phy.clk.",)}

    def elaborate(self, platform):
        from ..rtl.chip_sdram import ChipOnSDRAM

        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.sdram_clkout = ClockDomain("sdram_clkout", reset_less=True)
        clk_io = platform.request(self.clk_in, 0, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
        cfg, phase = self.config, self.sdram_budget["phase_deg"]
        secondary = ({"sdram": cfg.sdram_mhz, "sdram_clkout": (cfg.sdram_mhz, phase)}
                     if self.split else {"sdram_clkout": (cfg.clk_mhz, phase)})
        m.submodules.pll = pll = PLL(
            f_out_mhz=cfg.clk_mhz, f_in_mhz=self.clk_in_mhz, tolerance=PLL_TOLERANCE,
            secondary=secondary)
        m.d.comb += pll.clk_in.eq(clk_buf.i)
        for dom in ("sync", "sdram") if self.split else ("sync",):
            if dom != "sync":
                m.domains += ClockDomain(dom)
            rst = Signal(init=1, name=f"{dom}_rst_q")
            prefix = "reset" if dom == "sync" else f"{dom}_reset"
            m.submodules[f"{prefix}_sync"] = AsyncFFSynchronizer(~pll.locked, rst, o_domain=dom)
            m.submodules[f"{prefix}_buf"] = Instance("DCCA", i_CLKI=rst, i_CE=Const(1),
                                                     o_CLKO=ResetSignal(dom))

        m.submodules.chip = chip = ChipOnSDRAM(
            config=cfg, sdram=self.sdram_chip, clk_freq=self.clk_mhz * 1e6,
            baud=self.baud, cas_latency=self.sdram_cas_latency,
            read_delay=self.sdram_read_delay,
            sdram_clk_freq=self.sdram_mhz * 1e6 if self.split else None)
        m.submodules.sdram_phy = phy = SDRAMPHY(chip=self.sdram_chip, domain=self.sdram_domain,
                                                clk_domain="sdram_clkout",
                                                resource=self.sdram_resource)
        wiring.connect(m, chip.pins, phy.pins)

        uart = platform.request(self.uart_resource, 0, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [chip.rx.eq(rx_buf.i), tx_buf.o.eq(chip.tx)]

        # -- LEDs -------------------------------------------------------------
        hold = max(1, round(LED_HOLD_S * self.clk_mhz * 1e6))
        m.submodules.rx_seen = rx_seen = FFSynchronizer(chip.link_rx, Signal())
        m.submodules.rx_led = rx_led = Stretch(cycles=hold)
        m.submodules.tx_led = tx_led = Stretch(cycles=hold)
        m.d.comb += [rx_led.i.eq(rx_seen.o), tx_led.i.eq(chip.link_tx)]
        beat = Signal(26)
        m.d.sync += beat.eq(beat + 1)
        leds = Cat(rx_led.o, tx_led.o, chip.running, chip.done, chip.error, chip.init_done,
                   beat[-1], Const(0))
        for i in range(8):
            led = platform.request("led", i, dir="-")
            # Output flops in the I/O cells: the pads never see fabric logic.
            m.submodules[f"led_buf{i}"] = buf = io.FFBuffer("o", led, o_domain="sync")
            m.d.comb += buf.o.eq(leds[i])
        return m
