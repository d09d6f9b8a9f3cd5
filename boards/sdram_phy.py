"""SDR SDRAM pins on an ECP5 board: I/O registers, the SDRAM clock, and the
timing budget that picks its phase.

Clocking
--------
Every SDRAM pin the FPGA drives (command, address, DQM, DQ and the DQ output
enable) leaves from a register in the I/O cell (``OFS1P3DX``, Amaranth's
:class:`~amaranth.lib.io.FFBuffer`), clocked by the controller's clock
(``domain``), and read data is captured by a register in the I/O cell
(``IFS1P3DX``). So no pin sees fabric routing, and every output pin has the
same clock-to-pad path.

The SDRAM clock pin is an ``ODDRX1F`` fed with constant data ``(1, 0)``,
clocked by ``clk_domain``: a copy of the controller's clock from a second PLL
output at the same frequency, delayed by ``phase`` degrees. Going through the
same kind of I/O cell as the other pins, the clock's clock-to-pad delay tracks
theirs, so only their difference (skew) enters the command budget.

Why a phase-shifted clock rather than the simpler ``ODDRX1F`` with inverted
data on the controller's own clock (180 degrees): with the SDRAM clock lagging
by a fraction ``phi`` of the period ``T``, the SDRAM samples a command
``phi*T`` after it leaves the FPGA, so

* command/address/write-data setup at the SDRAM is ``phi*T - skew - tIS`` and
  hold ``(1 - phi)*T - skew - tIH`` (tIS = 1.5 ns, tIH = 0.8 ns): anything
  from about 0.3 to 0.8 of a period works at 100 MHz;
* read data for CAS latency CL is valid at the SDRAM from ``tAC`` after its
  clock edge CL-1 until ``tOH`` after edge CL, and reaches the FPGA's input
  register after the I/O loop (clock-to-pad, two board traces, input buffer:
  about 3 to 6.5 ns). Captured at the FPGA edge ``CL + 1`` periods after the
  READ left, the hold margin is ``loop_min + tOH - (1 - phi)*T`` less the
  clock and register allowances: at phi = 1/2 and 100 MHz that is
  ``2.8 + 2.5 - 5 - 0.5``, -0.2 ns at the fast corner of the estimates. A
  later SDRAM clock moves the data window later relative to the capture edge.

:func:`io_budget` writes these margins out with the estimates of
:data:`ULX3S_DELAYS` (clock-to-pad 2.0-4.5 ns, input buffer 0.6-1.5 ns,
trace 0.1-0.4 ns, pin skew 0.5 ns, PLL output skew 0.3 ns) and the chip's
pin timings, and :func:`choose_phase` picks the PLL phase step (7.5 degrees
at 100 MHz) and capture edge that maximize the smallest margin. For the ULX3S
(worst case of IS42S16160 -7 and MT48LC16M16A2 -6A/-75: tAC 5.4 ns at CL3,
7.5 ns at CL2, tOH 2.5 ns, tHZ 7.5 ns) at 100 MHz the board top takes CL3
(at CL2 the -6A part's 7.5 ns access time leaves no margin at any phase) and
225 degrees: command setup/hold 3.95/2.15 ns, read setup/hold 1.05/1.05 ns,
read-to-write bus turnaround 3.35 ns; the capture edge is ``CL + 1`` periods
after the READ leaves, so the controller's ``read_delay`` is 2 (one output
register, one input register). At 180 degrees the same budget gives read hold
-0.2 ns. Above about 124 MHz no phase leaves a positive margin with these
estimates. nextpnr does not time I/O, so these are data-sheet estimates, not
a sign-off; the board's :class:`~seedchip.boards.sdram_bist.SDRAMBist` is the
check on hardware.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In

from ..rtl.sdram import SDRAMChip, SDRAMPinSignature
from .pll import pll_params

__all__ = ["BoardDelays", "ULX3S_DELAYS", "io_budget", "choose_phase", "plan_clocks", "SDRAMPHY"]


@dataclasses.dataclass(frozen=True)
class BoardDelays:
    """I/O delay estimates (ns) for :func:`io_budget`; ``(min, max)`` pairs.

    ``out``: I/O-cell output register (or ODDR) clock to pad, LVCMOS33 at the
    ULX3S's 4 mA / fast slew into one SDRAM input. ``inp``: pad to the
    I/O-cell input register. ``trace``: FPGA to SDRAM, one way. ``skew``:
    between two output pins (drive, load, trace mismatch). ``clock_skew``:
    between the two PLL outputs' clock networks. ``ff_setup``/``ff_hold``:
    the input register's own window.
    """
    out: tuple = (2.0, 4.5)
    inp: tuple = (0.6, 1.5)
    trace: tuple = (0.1, 0.4)
    skew: float = 0.5
    clock_skew: float = 0.3
    ff_setup: float = 0.2
    ff_hold: float = 0.2


#: The ULX3S: SDRAM a few centimetres from the FPGA, LVCMOS33, 4 mA, fast slew.
ULX3S_DELAYS = BoardDelays()


def io_budget(*, chip, clk_mhz, cas_latency, phase, read_edge=None,
              delays=ULX3S_DELAYS) -> dict:
    """Timing margins (ns, positive = met) of the SDRAM interface.

    ``phase`` is the SDRAM clock's delay behind the controller's clock, in
    degrees. ``read_edge`` is the FPGA clock edge capturing read data, in
    periods after the READ leaves the FPGA; None picks the one (``CL``,
    ``CL+1`` or ``CL+2``) with the largest smallest margin. ``read_delay`` is
    the controller setting that matches it.
    """
    if not isinstance(chip, SDRAMChip):
        raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
    t_ac = chip.access_time(cas_latency)
    missing = [n for n, v in (("tAC", t_ac), ("tOH", chip.tOH), ("tIS", chip.tIS),
                              ("tIH", chip.tIH), ("tHZ", chip.tHZ)) if v is None]
    if missing:
        raise ValueError(f"{chip.name} has no {', '.join(missing)} recorded "
                         f"(needed for the I/O timing budget)")
    d = delays
    T = 1000.0 / clk_mhz
    lag = phase / 360.0 * T
    cl = cas_latency
    budget = {
        "chip": chip.name, "clk_mhz": clk_mhz, "cas_latency": cl, "phase_deg": phase,
        # A command leaves at 0 and changes again at T; the SDRAM samples at `lag`.
        "command_setup_ns": lag - d.skew - d.clock_skew - chip.tIS,
        "command_hold_ns": T - lag - d.skew - d.clock_skew - chip.tIH,
    }

    def edge(j, which):
        # SDRAM clock edge j (the READ is sampled at edge 0): earliest/latest.
        return lag + j * T + (d.out[which] + d.trace[which])

    best = None
    for k in ((cl, cl + 1, cl + 2) if read_edge is None else (read_edge,)):
        setup = k * T - (edge(cl - 1, 1) + t_ac + d.trace[1] + d.inp[1] + d.ff_setup
                         + d.clock_skew)
        hold = (edge(cl, 0) + chip.tOH + d.trace[0] + d.inp[0] - d.ff_hold
                - d.clock_skew) - k * T
        if best is None or min(setup, hold) > min(best[1], best[2]):
            best = (k, setup, hold)
    k, setup, hold = best
    budget.update({
        "read_edge": k,
        # one output register before the pins, one input register after
        "read_delay": k - cl + 1,
        "read_setup_ns": setup,
        "read_hold_ns": hold,
        # READ -> WRITE: the controller leaves CL + 2 cycles; the SDRAM lets go
        # of DQ by tHZ after edge CL, the FPGA drives it from the WRITE's launch.
        "turnaround_ns": (cl + 2) * T + d.out[0] - (edge(cl, 1) + chip.tHZ),
    })
    budget["worst_ns"] = min(budget["command_setup_ns"], budget["command_hold_ns"],
                             setup, hold, budget["turnaround_ns"])
    return budget


def choose_phase(*, chips, clk_mhz, cas_latency, step=7.5, delays=ULX3S_DELAYS) -> dict:
    """The SDRAM clock phase (a multiple of ``step`` degrees, the PLL's
    resolution) and read capture edge with the largest smallest margin over
    every chip in ``chips`` (the parts a board may carry).

    Returns ``{"phase_deg", "read_edge", "read_delay", "worst_ns", "budgets"}``,
    ``budgets`` mapping each chip's name to its :func:`io_budget`.
    """
    chips = tuple(chips)
    if not chips:
        raise ValueError("chips must name at least one SDRAMChip")
    best = None
    for i in range(int(round(360 / step))):
        phase = i * step
        for k in (cas_latency, cas_latency + 1, cas_latency + 2):
            budgets = {c.name: io_budget(chip=c, clk_mhz=clk_mhz, cas_latency=cas_latency,
                                         phase=phase, read_edge=k, delays=delays)
                       for c in chips}
            worst = min(b["worst_ns"] for b in budgets.values())
            if best is None or worst > best["worst_ns"] + 1e-9:
                best = {"phase_deg": phase, "read_edge": k,
                        "read_delay": k - cas_latency + 1, "worst_ns": worst,
                        "budgets": budgets}
    return best


def plan_clocks(*, chip, clk_mhz, sdram_mhz=None, clk_in_mhz=25.0, tolerance=0.01,
                delays=ULX3S_DELAYS) -> dict:
    """The PLL configuration and SDRAM interface settings of a board top with
    a core clock (CLKOP), the SDRAM controller clock (CLKOS) and the SDRAM
    clock pin's clock (CLKOS2, phase-shifted).

    ``sdram_mhz=None``: the controller runs on the core clock (one domain, as
    the chip top has it); the PLL then has CLKOP and the SDRAM clock pin's
    clock (CLKOS) only, and every SDRAM figure is taken at ``clk_mhz``.

    Returns the :func:`choose_phase` result of the CAS latency (among those
    ``chip`` allows at the achieved SDRAM clock) with the largest estimated
    margin, plus ``"cas_latency"``, ``"sdram_mhz"`` (achieved) and
    ``"pll"`` (:class:`~.pll.PLLParams`). Raises ValueError for a frequency
    the PLL or the chip cannot do.
    """
    shared = sdram_mhz is None

    def outputs(clkout):
        return (clkout,) if shared else (sdram_mhz, clkout)

    pll = pll_params(clk_mhz, f_in_mhz=clk_in_mhz, tolerance=tolerance,
                     secondary=outputs(clk_mhz if shared else sdram_mhz))
    f_sdram = pll.f_out if shared else pll.secondary_f_out[0]
    allowed = [cl for cl, fmax in chip.cas_latencies if f_sdram * 1e6 <= fmax]
    if not allowed:
        what = (f"clk_mhz {clk_mhz:g} (the SDRAM controller runs on the core clock)" if shared
                else f"sdram_mhz {sdram_mhz:g}")
        raise ValueError(f"{what} is above what {chip.name} allows "
                         f"({max(f for _, f in chip.cas_latencies) / 1e6:g} MHz)")
    best = None
    for cl in allowed:
        b = choose_phase(chips=(chip,), clk_mhz=f_sdram, cas_latency=cl,
                         step=pll.phase_step(len(pll.secondary) - 1), delays=delays)
        # ties go to the lower CAS latency
        if best is None or b["worst_ns"] > best["worst_ns"] + 1e-9:
            best = {**b, "cas_latency": cl}
    best["sdram_mhz"] = f_sdram
    f_clkout = clk_mhz if shared else sdram_mhz
    best["pll"] = pll_params(clk_mhz, f_in_mhz=clk_in_mhz, tolerance=tolerance,
                             secondary=outputs((f_clkout, best["phase_deg"])))
    return best


class SDRAMPHY(wiring.Component):
    """The controller's SDRAM pins onto a platform ``sdram`` resource.

    Parameters (keyword-only)
    -------------------------
    chip : SDRAMChip
    domain : str
        The controller's clock domain: every pin register is clocked by it.
    clk_domain : str
        The domain whose clock the SDRAM clock pin copies (the controller's
        clock delayed by the phase of :func:`choose_phase`).
    resource, number
        The platform resource (``SDRAMResource`` of amaranth-boards).

    Ports
    -----
    pins : In(SDRAMPinSignature(chip=chip))
        Driven by the controller. Outputs reach the pads one cycle later
        (I/O-cell registers), ``dq_i`` is the I/O-cell input register: the
        controller's ``read_delay`` covers both (see :func:`io_budget`).
    """

    def __init__(self, *, chip, domain="sync", clk_domain="sync", resource="sdram", number=0):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        for name, value in (("domain", domain), ("clk_domain", clk_domain),
                            ("resource", resource)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name} must be a non-empty string, not {value!r}")
        self.chip = chip
        self.domain = domain
        self.clk_domain = clk_domain
        self.resource = resource
        self.number = number
        super().__init__({"pins": In(SDRAMPinSignature(chip=chip))})

    def elaborate(self, platform):
        m = Module()
        pins, chip, dom = self.pins, self.chip, self.domain
        res = platform.request(self.resource, self.number, dir="-")
        for name, want in (("a", chip.a_width), ("ba", chip.bank_bits),
                           ("dq", chip.data_width), ("dqm", chip.data_width // 8)):
            got = len(getattr(res, name))
            if got < want:
                raise ValueError(f"{chip.name} needs {want} {name} pins, the board's "
                                 f"{self.resource} resource has {got}")

        m.submodules.clk = clk = io.DDRBuffer("o", res.clk, o_domain=self.clk_domain)
        m.d.comb += [clk.o[0].eq(1), clk.o[1].eq(0)]

        # cs, we, ras, cas are active-low pins (PinsN): the buffers invert.
        for name, port, value in (
                ("cke", res.clk_en, pins.cke), ("cs", res.cs, ~pins.cs_n),
                ("we", res.we, ~pins.we_n), ("ras", res.ras, ~pins.ras_n),
                ("cas", res.cas, ~pins.cas_n), ("ba", res.ba, pins.ba),
                ("a", res.a, pins.a), ("dqm", res.dqm, pins.dqm)):
            buf = m.submodules[f"{name}_buf"] = io.FFBuffer("o", port, o_domain=dom)
            m.d.comb += buf.o.eq(value)

        dq = m.submodules.dq_buf = io.FFBuffer("io", res.dq, i_domain=dom, o_domain=dom)
        m.d.comb += [
            dq.o.eq(pins.dq_o),
            dq.oe.eq(pins.dq_oe),
            pins.dq_i.eq(dq.i),
        ]
        return m
