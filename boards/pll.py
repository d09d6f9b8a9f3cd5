"""ECP5 EHXPLLL: divider search and a clock-domain generator.

The search is done in Python (no tool call at elaboration time); its results
were cross-checked against Project Trellis' ``ecppll`` (``yowasp-ecppll``),
see ``tests/test_pll.py``.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["PLLParams", "pll_params", "PLL",
           "F_IN_RANGE", "F_OUT_RANGE", "F_VCO_RANGE", "F_PFD_RANGE", "DIV_RANGE"]

# ECP5 family data sheet (FPGA-DS-02012), "sysCLOCK PLL Timing", in MHz.
F_IN_RANGE = (8.0, 400.0)
F_OUT_RANGE = (3.125, 400.0)
F_VCO_RANGE = (400.0, 800.0)
F_PFD_RANGE = (3.125, 400.0)
#: CLKI_DIV, CLKFB_DIV and CLKOP_DIV are 7-bit fields holding N-1.
DIV_RANGE = (1, 128)


@dataclasses.dataclass(frozen=True)
class PLLParams:
    """One EHXPLLL configuration with CLKOP as feedback.

    ``f_out = f_in / clki_div * clkfb_div`` and ``f_vco = f_out * clkop_div``.
    """
    f_in: float
    f_requested: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

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

    def to_dict(self) -> dict:
        return {
            "f_in_mhz": self.f_in, "f_requested_mhz": self.f_requested,
            "f_out_mhz": self.f_out, "f_vco_mhz": self.f_vco, "f_pfd_mhz": self.f_pfd,
            "clki_div": self.clki_div, "clkfb_div": self.clkfb_div,
            "clkop_div": self.clkop_div, "clkop_cphase": self.clkop_cphase,
        }


def _check_freq(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


def pll_params(f_out_mhz, *, f_in_mhz=25.0, tolerance=None) -> PLLParams:
    """Closest EHXPLLL configuration producing ``f_out_mhz`` from ``f_in_mhz``.

    Ties between equally close solutions go to the highest PFD frequency
    (smallest CLKI_DIV: least jitter multiplication), then to the VCO closest
    to the middle of its range, then to the smallest CLKOP_DIV.

    ``tolerance``, if given, is the largest acceptable relative error
    (e.g. ``0.01``); a ValueError is raised when the closest is further off.
    """
    _check_freq("f_out_mhz", f_out_mhz)
    _check_freq("f_in_mhz", f_in_mhz)
    if not F_IN_RANGE[0] <= f_in_mhz <= F_IN_RANGE[1]:
        raise ValueError(f"PLL input frequency {f_in_mhz} MHz is out of range "
                         f"{F_IN_RANGE[0]}..{F_IN_RANGE[1]} MHz")
    if not F_OUT_RANGE[0] <= f_out_mhz <= F_OUT_RANGE[1]:
        raise ValueError(f"PLL output frequency {f_out_mhz} MHz is not achievable: the ECP5 "
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
        # Only the two feedback dividers bracketing the target can be closest.
        n = int(f_out_mhz // f_pfd)
        for clkfb_div in {n, n + 1}:
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
                key = (round(abs(f_out - f_out_mhz), 9), clki_div,
                       round(abs(f_vco - vco_mid), 9), clkop_div)
                if best is None or key < best[0]:
                    best = (key, PLLParams(f_in=float(f_in_mhz), f_requested=float(f_out_mhz),
                                           clki_div=clki_div, clkfb_div=clkfb_div,
                                           clkop_div=clkop_div))
    if best is None:
        raise ValueError(f"PLL output frequency {f_out_mhz} MHz is not achievable from "
                         f"{f_in_mhz} MHz within the ECP5 PLL limits")
    params = best[1]
    if tolerance is not None and abs(params.error) > tolerance * f_out_mhz:
        raise ValueError(f"PLL output frequency {f_out_mhz} MHz is not achievable within "
                         f"{tolerance:.2%} from {f_in_mhz} MHz: the closest is "
                         f"{params.f_out:.4f} MHz")
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

    A PLL has no simulation model: elaborate it for an ECP5 platform only.
    """

    def __init__(self, *, f_out_mhz, f_in_mhz=25.0, domain="sync", tolerance=0.01, reset="gsr"):
        if not isinstance(domain, str) or not domain:
            raise TypeError(f"domain must be a non-empty string, not {domain!r}")
        if reset not in ("gsr", "sync"):
            raise ValueError(f"reset must be 'gsr' or 'sync', not {reset!r}")
        self._reset = reset
        self._params = pll_params(f_out_mhz, f_in_mhz=f_in_mhz, tolerance=tolerance)
        self._domain = domain
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

    def elaborate(self, platform):
        p = self._params
        m = Module()

        clkop = Signal()
        m.d.comb += ClockSignal(self._domain).eq(clkop)

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
