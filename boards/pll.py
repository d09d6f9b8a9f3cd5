"""ECP5 EHXPLLL: divider search and a clock-domain generator.

The search is done in Python (no tool call at elaboration time); its results
were cross-checked against Project Trellis' ``ecppll`` (``yowasp-ecppll``),
see ``tests/test_pll.py``.

Besides the primary output CLKOP (which is also the feedback), up to three
secondary outputs (CLKOS, CLKOS2, CLKOS3) divide the same VCO: the search then
picks the VCO that serves every output best (``ecppll`` fixes CLKOP first and
takes what is left for the others).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["PLLParams", "pll_params", "PLL", "SECONDARY_OUTPUTS",
           "F_IN_RANGE", "F_OUT_RANGE", "F_VCO_RANGE", "F_PFD_RANGE", "DIV_RANGE"]

# ECP5 family data sheet (FPGA-DS-02012), "sysCLOCK PLL Timing", in MHz.
F_IN_RANGE = (8.0, 400.0)
F_OUT_RANGE = (3.125, 400.0)
F_VCO_RANGE = (400.0, 800.0)
F_PFD_RANGE = (3.125, 400.0)
#: CLKI_DIV, CLKFB_DIV and CLKOP_DIV are 7-bit fields holding N-1.
DIV_RANGE = (1, 128)
#: The EHXPLLL outputs besides CLKOP, in the order secondary frequencies are given.
SECONDARY_OUTPUTS = ("CLKOS", "CLKOS2", "CLKOS3")


@dataclasses.dataclass(frozen=True)
class PLLParams:
    """One EHXPLLL configuration with CLKOP as feedback.

    ``f_out = f_in / clki_div * clkfb_div`` and ``f_vco = f_out * clkop_div``.
    ``secondary`` holds ``(f_requested, div, phase_requested)`` per secondary
    output (CLKOS, CLKOS2, CLKOS3 in order), each producing ``f_vco / div``
    delayed by ``phase`` degrees of its own period from CLKOP's rising edge.
    """
    f_in: float
    f_requested: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    secondary: tuple = ()

    @property
    def f_pfd(self) -> float:
        return self.f_in / self.clki_div

    @property
    def f_out(self) -> float:
        """Achieved output frequency, MHz."""
        return self.f_pfd * self.clkfb_div

    @property
    def f_vco(self) -> float:
        return self.f_out * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        # 0 degrees: the coarse phase counter set to DIV-1, as Lattice's tools
        # do. With CLKOP as the feedback path its phase is compensated anyway.
        return self.clkop_div - 1

    @property
    def error(self) -> float:
        return self.f_out - self.f_requested

    @property
    def secondary_f_out(self) -> tuple:
        """Achieved frequency (MHz) of each secondary output."""
        return tuple(self.f_vco / div for _, div, _ in self.secondary)

    def _phase_counts(self, div, phase):
        # The phase in VCO periods: whole ones (coarse) and eighths (fine),
        # rounded down, as ecppll does.
        count = phase / 360.0 * div
        coarse = int(count + 1e-9)
        fine = int((count - coarse) * 8 + 1e-9)
        return coarse, fine

    @property
    def secondary_cphase(self) -> tuple:
        """CPHASE of each secondary output: its phase in whole VCO periods on
        top of CLKOP's own count (0 degrees = aligned with CLKOP), as ``ecppll``
        sets it."""
        return tuple(self._phase_counts(div, ph)[0] + self.clkop_cphase
                     for _, div, ph in self.secondary)

    @property
    def secondary_fphase(self) -> tuple:
        """FPHASE of each secondary output (eighths of a VCO period)."""
        return tuple(self._phase_counts(div, ph)[1] for _, div, ph in self.secondary)

    @property
    def secondary_phase(self) -> tuple:
        """Achieved phase (degrees of the output's period) of each secondary output."""
        out = []
        for _, div, ph in self.secondary:
            coarse, fine = self._phase_counts(div, ph)
            out.append(360.0 * (coarse + fine / 8) / div)
        return tuple(out)

    def phase_step(self, index) -> float:
        """Phase resolution (degrees) of secondary output ``index``: an eighth
        of a VCO period."""
        return 360.0 / (self.secondary[index][1] * 8)

    def to_dict(self) -> dict:
        d = {
            "f_in_mhz": self.f_in, "f_requested_mhz": self.f_requested,
            "f_out_mhz": self.f_out, "f_vco_mhz": self.f_vco, "f_pfd_mhz": self.f_pfd,
            "clki_div": self.clki_div, "clkfb_div": self.clkfb_div,
            "clkop_div": self.clkop_div, "clkop_cphase": self.clkop_cphase,
        }
        if self.secondary:
            d["secondary"] = [
                {"output": out, "f_requested_mhz": f_req, "f_out_mhz": f_out, "div": div,
                 "phase_requested_deg": ph_req, "phase_deg": ph, "cphase": cphase,
                 "fphase": fphase}
                for out, (f_req, div, ph_req), f_out, ph, cphase, fphase in zip(
                    SECONDARY_OUTPUTS, self.secondary, self.secondary_f_out,
                    self.secondary_phase, self.secondary_cphase, self.secondary_fphase)]
        return d


def _check_freq(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


def _best_div(f_vco, f_want):
    """``(error, div)`` of the output divider putting ``f_vco / div`` closest
    to ``f_want`` within the output range, or None."""
    best = None
    n = max(DIV_RANGE[0], int(f_vco // f_want))
    for div in (n, n + 1):
        if not DIV_RANGE[0] <= div <= DIV_RANGE[1]:
            continue
        f = f_vco / div
        if not F_OUT_RANGE[0] <= f <= F_OUT_RANGE[1]:
            continue
        err = abs(f - f_want)
        if best is None or err < best[0]:
            best = (err, div)
    return best


def pll_params(f_out_mhz, *, f_in_mhz=25.0, tolerance=None, secondary=()) -> PLLParams:
    """Closest EHXPLLL configuration producing ``f_out_mhz`` from ``f_in_mhz``.

    ``secondary`` lists up to three more outputs (CLKOS, CLKOS2, CLKOS3), each
    a frequency or a ``(frequency, phase in degrees)`` pair; they divide the
    same VCO, and the configuration minimizes the sum of every output's
    frequency error. Phases are rounded down to an eighth of a VCO period
    (:meth:`PLLParams.phase_step`).

    Ties between equally close solutions go to the highest PFD frequency
    (smallest CLKI_DIV: least jitter multiplication), then to the VCO closest
    to the middle of its range, then to the smallest CLKOP_DIV.

    ``tolerance``, if given, is the largest acceptable relative error of each
    output (e.g. ``0.01``); a ValueError is raised when one is further off.
    """
    _check_freq("f_out_mhz", f_out_mhz)
    _check_freq("f_in_mhz", f_in_mhz)
    secondary = tuple(secondary)
    if len(secondary) > len(SECONDARY_OUTPUTS):
        raise ValueError(f"the ECP5 PLL has {len(SECONDARY_OUTPUTS)} secondary outputs, "
                         f"not {len(secondary)}")
    phases = []
    for i, f in enumerate(secondary):
        phase = 0.0
        if isinstance(f, tuple):
            if len(f) != 2:
                raise TypeError(f"a secondary output must be a frequency or a (frequency, phase) "
                                f"pair, not {f!r}")
            f, phase = f
        _check_freq("secondary output frequency", f)
        if not isinstance(phase, (int, float)) or isinstance(phase, bool):
            raise TypeError(f"secondary output phase must be a number, not {phase!r}")
        if not 0 <= phase < 360:
            raise ValueError(f"secondary output phase must be in range 0..360 degrees, "
                             f"not {phase!r}")
        phases.append(float(phase))
    secondary = tuple(f[0] if isinstance(f, tuple) else f for f in secondary)
    if not F_IN_RANGE[0] <= f_in_mhz <= F_IN_RANGE[1]:
        raise ValueError(f"PLL input frequency {f_in_mhz} MHz is out of range "
                         f"{F_IN_RANGE[0]}..{F_IN_RANGE[1]} MHz")
    for f in (f_out_mhz, *secondary):
        if not F_OUT_RANGE[0] <= f <= F_OUT_RANGE[1]:
            raise ValueError(f"PLL output frequency {f} MHz is not achievable: the ECP5 "
                             f"PLL produces {F_OUT_RANGE[0]}..{F_OUT_RANGE[1]} MHz "
                             f"(from {f_in_mhz} MHz)")
    vco_mid = sum(F_VCO_RANGE) / 2
    best = None
    for clki_div in range(DIV_RANGE[0], DIV_RANGE[1] + 1):
        f_pfd = f_in_mhz / clki_div
        if f_pfd < F_PFD_RANGE[0]:
            break
        if f_pfd > F_PFD_RANGE[1]:
            continue
        if secondary:
            # A primary a little off may buy an exact secondary: try them all.
            fb_divs = range(DIV_RANGE[0], DIV_RANGE[1] + 1)
        else:
            # Only the two feedback dividers bracketing the target can be closest.
            n = int(f_out_mhz // f_pfd)
            fb_divs = {n, n + 1}
        for clkfb_div in fb_divs:
            if not DIV_RANGE[0] <= clkfb_div <= DIV_RANGE[1]:
                continue
            f_out = f_pfd * clkfb_div
            if not F_OUT_RANGE[0] <= f_out <= F_OUT_RANGE[1]:
                continue
            for clkop_div in range(DIV_RANGE[0], DIV_RANGE[1] + 1):
                f_vco = f_out * clkop_div
                if f_vco > F_VCO_RANGE[1]:
                    break
                if f_vco < F_VCO_RANGE[0]:
                    continue
                error = abs(f_out - f_out_mhz)
                sec = []
                for f, phase in zip(secondary, phases):
                    found = _best_div(f_vco, f)
                    if found is None:
                        break
                    error += found[0]
                    sec.append((float(f), found[1], phase))
                else:
                    key = (round(error, 9), clki_div, round(abs(f_vco - vco_mid), 9), clkop_div)
                    if best is None or key < best[0]:
                        best = (key, PLLParams(f_in=float(f_in_mhz), f_requested=float(f_out_mhz),
                                               clki_div=clki_div, clkfb_div=clkfb_div,
                                               clkop_div=clkop_div, secondary=tuple(sec)))
    if best is None:
        raise ValueError(f"PLL output frequency {f_out_mhz} MHz is not achievable from "
                         f"{f_in_mhz} MHz within the ECP5 PLL limits")
    params = best[1]
    if tolerance is not None:
        also = (f" together with {', '.join(f'{f:g}' for f in secondary)} MHz"
                if secondary else "")
        if abs(params.error) > tolerance * f_out_mhz:
            raise ValueError(f"PLL output frequency {f_out_mhz} MHz is not achievable within "
                             f"{tolerance:.2%} from {f_in_mhz} MHz{also}: the closest is "
                             f"{params.f_out:.4f} MHz")
        for out, (f_req, _, _), f_got in zip(SECONDARY_OUTPUTS, params.secondary,
                                             params.secondary_f_out):
            if abs(f_got - f_req) > tolerance * f_req:
                raise ValueError(f"PLL output frequency {f_req:g} MHz ({out}) is not achievable "
                                 f"within {tolerance:.2%} from {f_in_mhz} MHz together with "
                                 f"{f_out_mhz:g} MHz on CLKOP: the closest is {f_got:.4f} MHz")
    return params


class PLL(wiring.Component):
    """EHXPLLL driving the clock of domain ``domain`` from ``clk_in``, and its reset.

    Ports
    -----
    clk_in : In(1)
        reference clock (``f_in_mhz``), straight from the input buffer.
    locked : Out(1)
        PLL lock, asynchronous.

    The parent defines the domain; this component drives its clock and holds
    it in reset until the PLL locks, released synchronously to the new clock.
    ``reset`` chooses how:

    ``"gsr"`` (default)
        through the ECP5 global set/reset network (``SGSR``), as Amaranth's
        own ECP5 clock domain does: the domain must be reset-less
        (``ClockDomain(reset_less=True)``) and every flop starts from its
        ``init`` value via GSR. No reset net is routed, so a reset fanning
        out to thousands of flops never becomes a critical path.
    ``"sync"``
        a :class:`~amaranth.lib.cdc.ResetSynchronizer` driving the domain's
        reset signal (a routed net to every flop with a reset).

    ``secondary`` maps more domain names to frequencies (MHz) or
    ``(frequency, phase in degrees)`` pairs, driven by CLKOS, CLKOS2 and CLKOS3
    in that order, from the same VCO; phase 0 is aligned with CLKOP (coarse
    phase as ``ecppll`` sets it). This component drives only their clocks:
    the parent resets them, typically with a
    :class:`~amaranth.lib.cdc.ResetSynchronizer` on ``~locked`` (with
    ``reset="gsr"`` the global reset is released in step with the primary
    clock only, which gives a second clock no clean release).

    A PLL has no simulation model: elaborate it for an ECP5 platform only.
    """

    def __init__(self, *, f_out_mhz, f_in_mhz=25.0, domain="sync", tolerance=0.01, reset="gsr",
                 secondary=None):
        if not isinstance(domain, str) or not domain:
            raise TypeError(f"domain must be a non-empty string, not {domain!r}")
        if reset not in ("gsr", "sync"):
            raise ValueError(f"reset must be 'gsr' or 'sync', not {reset!r}")
        secondary = dict(secondary or {})
        if len(secondary) > len(SECONDARY_OUTPUTS):
            raise ValueError(f"the ECP5 PLL has {len(SECONDARY_OUTPUTS)} secondary outputs, "
                             f"not {len(secondary)}")
        for name in secondary:
            if not isinstance(name, str) or not name:
                raise TypeError(f"secondary domain names must be non-empty strings, not {name!r}")
            if name == domain:
                raise ValueError(f"secondary domain {name!r} is the primary domain")
        self._reset = reset
        self._params = pll_params(f_out_mhz, f_in_mhz=f_in_mhz, tolerance=tolerance,
                                  secondary=tuple(secondary.values()))
        self._domain = domain
        self._secondary = tuple(secondary)
        super().__init__({
            "clk_in": In(1),
            "locked": Out(1),
        })

    @property
    def params(self) -> PLLParams:
        return self._params

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def reset(self) -> str:
        return self._reset

    @property
    def secondary(self) -> dict:
        """Secondary domain name -> (achieved frequency in MHz, achieved phase in degrees)."""
        return dict(zip(self._secondary, zip(self._params.secondary_f_out,
                                             self._params.secondary_phase)))

    def elaborate(self, platform):
        p = self._params
        m = Module()

        clkop = Signal()
        m.d.comb += ClockSignal(self._domain).eq(clkop)

        secondary = {}
        for output, name, (_, div, _), f_out, cphase, fphase in zip(
                SECONDARY_OUTPUTS, self._secondary, p.secondary, p.secondary_f_out,
                p.secondary_cphase, p.secondary_fphase):
            clk = Signal(name=f"{output.lower()}")
            m.d.comb += ClockSignal(name).eq(clk)
            secondary.update({
                f"a_FREQUENCY_PIN_{output}": f"{f_out:g}",
                f"p_{output}_ENABLE": "ENABLED",
                f"p_{output}_DIV": div,
                f"p_{output}_CPHASE": cphase,
                f"p_{output}_FPHASE": fphase,
                f"i_EN{output}": Const(0),
                f"o_{output}": clk,
            })
            if platform is not None:
                platform.add_clock_constraint(clk, f_out * 1e6)

        m.submodules.pll = Instance("EHXPLLL",
            # Loop-filter settings as Project Trellis' ecppll emits them.
            a_FREQUENCY_PIN_CLKI=f"{p.f_in:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p.f_out:g}",
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC",
            p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div,
            p_CLKFB_DIV=p.clkfb_div,
            p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_cphase,
            p_CLKOP_FPHASE=0,
            i_RST=Const(0),
            i_STDBY=Const(0),
            i_CLKI=self.clk_in,
            i_CLKFB=clkop,
            i_PHASESEL0=Const(0),
            i_PHASESEL1=Const(0),
            i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1),
            i_PHASELOADREG=Const(1),
            i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clkop,
            o_LOCK=self.locked,
            **secondary,
        )
        if self._reset == "sync":
            m.submodules.reset_sync = ResetSynchronizer(~self.locked, domain=self._domain)
        else:
            # Two flops outside GSR (they power up 0 = reset asserted) bring
            # the lock into the new clock domain; SGSR applies it to every
            # other flop, synchronously to that clock.
            lock0, lock1 = Signal(), Signal()
            m.submodules.lock_ff0 = Instance("FD1S3AX", p_GSR="DISABLED",
                i_CK=clkop, i_D=self.locked, o_Q=lock0)
            m.submodules.lock_ff1 = Instance("FD1S3AX", p_GSR="DISABLED",
                i_CK=clkop, i_D=lock0, o_Q=lock1)
            m.submodules.sgsr = Instance("SGSR", i_CLK=clkop, i_GSR=lock1)

        if platform is not None:
            platform.add_clock_constraint(clkop, p.f_out * 1e6)
        return m
