# amaranth: UnusedElaboratable=no
"""The chip's board top: clocks planned before elaboration, and the design
elaborated for the ULX3S (RTLIL and constraints, no place and route)."""

import re

import pytest

from seedchip.boards import get_board
from seedchip.boards.chip_top import LED_HOLD_S, ChipTop, Stretch
from seedchip.config import CHIP_CONFIG, SMALL_CONFIG
from seedchip.sim.clocked import run_clocked

#: The small configuration at the chip's clock (a quick elaboration); the
#: chip's gather engine is as wide as its 64-bit memory words.
CONFIG = SMALL_CONFIG.replace(clk_mhz=100.0, sdram_mhz=100.0,
                              gather=SMALL_CONFIG.gather.replace(lanes=8))


def test_chip_top_clocking():
    """One domain at clk_mhz for the chip and its SDRAM controller; the
    SDRAM clock pin's copy of it is the PLL's only other output."""
    top = ChipTop(config=CHIP_CONFIG)
    assert top.clk_mhz == pytest.approx(100.0) == pytest.approx(top.sdram_mhz)
    assert top.clock_domains == {"sync": pytest.approx(100.0)}
    assert set(top.clock_hints) == {"sync", "sdram_clkout"}
    assert top.sdram_domain == top.gather_domain == "sync"
    # as the exerciser's SDRAM domain at 100 MHz: CL3, 225 degrees, read_delay 2
    assert (top.sdram_cas_latency, top.sdram_read_delay) == (3, 2)
    assert top.sdram_budget["phase_deg"] == 225.0 and top.sdram_budget["worst_ns"] > 0.5
    p = top.pll_params
    assert len(p.secondary) == 1
    assert p.secondary_f_out == (pytest.approx(100.0),) and p.secondary_phase == (225.0,)
    assert top.notes == []
    # the chip's gather engine on its 64-bit memory of the SDRAM's size
    assert (top.gather.data_width, top.gather.addr_width) == (64, 23)


def test_chip_top_sdram_domain():
    """sdram_mhz apart from clk_mhz: the SDRAM controller in a domain of its
    own, ``sdram``, on the PLL's second output, the gather engine with it;
    the clock pin's copy of it on the third; its CAS latency and phase
    planned at its own clock."""
    top = ChipTop(config=CONFIG.replace(clk_mhz=45.0, sdram_mhz=90.0))
    assert top.split and top.sdram_domain == "sdram" and top.gather_domain == "sdram"
    assert top.clk_mhz == pytest.approx(45.0) and top.sdram_mhz == pytest.approx(90.0)
    assert top.clock_domains == {"sync": pytest.approx(45.0), "sdram": pytest.approx(90.0)}
    assert set(top.clock_hints) == {"sync", "sdram", "sdram_clkout"}
    p = top.pll_params
    assert p.secondary_f_out == (pytest.approx(90.0), pytest.approx(90.0))
    assert p.secondary_phase[1] == top.sdram_budget["phase_deg"]
    assert top.sdram_budget["sdram_mhz"] == pytest.approx(90.0)
    assert top.notes == []
    # one domain at equal clocks
    assert not ChipTop(config=CONFIG).split
    with pytest.raises(ValueError, match=r"^sdram_mhz 135 is above what ULX3S-SDRAM allows"):
        ChipTop(config=CONFIG.replace(clk_mhz=45.0, sdram_mhz=135.0))


def test_chip_top_two_clock_domains():
    """The split top elaborated: three PLL outputs constrained, a reset per
    domain on its own global buffer, the memory port's clock crossing, the
    GATHER unit's command crossing and the arbiter in the SDRAM's domain."""
    top = ChipTop(config=CONFIG.replace(clk_mhz=45.0, sdram_mhz=90.0))
    plan = get_board("ulx3s-85f").platform().prepare(top, name="top")
    il, lpf = plan.files["top.il"], plan.files["top.lpf"]
    freqs = re.findall(r'^FREQUENCY NET "([^"]+)" (\S+) HZ;', lpf, flags=re.M)
    assert sorted(freqs) == [("pll.clkop", "45000000.0"), ("pll.clkos", "90000000.0"),
                             ("pll.clkos2", "90000000.0")]
    assert _cells(il, "EHXPLLL") == 1 and _cells(il, "DCCA") == 2
    assert "mem_cdc" in il and "init_sync" in il
    assert "gather_cdc" in il and "mem_front" in il
    assert _cells(il, "IFS1P3DX") == 16 and _cells(il, "ODDRX1F") == 1


def test_chip_top_refuses_before_elaboration():
    with pytest.raises(ValueError, match=r"^clk_mhz 150 \(the SDRAM controller runs on the "
                                         r"core clock\) is above what ULX3S-SDRAM allows "
                                         r"\(133 MHz\)$"):
        ChipTop(config=CONFIG.replace(clk_mhz=150.0, sdram_mhz=150.0))
    # 12.5 MHz: 4 clocks a bit at 3 Mbaud, 4 % off
    with pytest.raises(ValueError, match=r"baud"):
        ChipTop(config=CONFIG.replace(clk_mhz=12.5))
    with pytest.raises(ValueError, match=r"PLL output frequency 48\.0 MHz is not achievable"):
        ChipTop(config=CONFIG.replace(clk_mhz=48.0))
    with pytest.raises(TypeError, match=r"config must be a ChipConfig, not None"):
        ChipTop(config=None)
    with pytest.raises(TypeError, match=r"sdram_chip must be a SDRAMChip, not 'x'"):
        ChipTop(config=CONFIG, sdram_chip="x")


@pytest.fixture(scope="module")
def plan():
    top = ChipTop(config=CONFIG)
    return top, get_board("ulx3s-85f").platform().prepare(top, name="top")


def _cells(il, kind):
    return len(re.findall(rf"^\s*cell \\{kind} ", il, flags=re.M))


def test_chip_top_pins(plan):
    """UART (FT231X: rx M1, tx L4; its RTS/DTR lines M3/N1 unused), every
    SDRAM pin, the eight LEDs, the 25 MHz oscillator."""
    _, plan = plan
    lpf = plan.files["top.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf
    assert 'LOCATE COMP "uart_0__tx__io" SITE "L4"' in lpf
    for pin in ("M3", "N1", "L3"):                      # rts, dtr, uart_tx_enable
        assert f'SITE "{pin}"' not in lpf
    sdram_pins = ("F19 F20 P20 T20 T19 R20 U19 E20 P19 N20 "
                  "M20 M19 L20 L19 K20 K19 K18 J20 J19 H20 N19 G20 G19 "
                  "J16 L18 M18 N18 P18 T18 T17 U20 E19 D20 D19 C20 E18 F18 J18 J17")
    for pin in sdram_pins.split():
        assert f'SITE "{pin}"' in lpf, pin
    for pin in "B2 C2 C1 D2 D1 E2 E1 H3".split():
        assert f'SITE "{pin}"' in lpf, pin
    assert 'SITE "G2"' in lpf


def test_chip_top_one_clock_domain(plan):
    """The PLL's two outputs, both constrained: the core clock and the SDRAM
    clock pin's phase-shifted copy; the reset from the lock on a global
    buffer; the SDRAM pins through I/O-cell registers."""
    top, plan = plan
    il, lpf = plan.files["top.il"], plan.files["top.lpf"]
    freqs = re.findall(r'^FREQUENCY NET "([^"]+)" (\S+) HZ;', lpf, flags=re.M)
    assert sorted(freqs) == [("pll.clkop", "100000000.0"), ("pll.clkos", "100000000.0")]
    assert _cells(il, "EHXPLLL") == 1 and "CLKOS2_ENABLE" not in il
    assert re.search(rf"parameter \\CLKOS_CPHASE {top.pll_params.secondary_cphase[0]}\b", il)
    assert _cells(il, "ODDRX1F") == 1 and _cells(il, "DCCA") == 1
    assert _cells(il, "IFS1P3DX") == 16 and _cells(il, "BB") == 16
    # data and output-enable registers of 8 LEDs and the SDRAM's outputs, and
    # the clock pin's output enable (as the exerciser's top)
    assert _cells(il, "OFS1P3DX") == 2 * (8 + 5 + 2 + 13 + 2 + 16) + 1
    # the matrix unit's multipliers are in (the DSP floorplan finds them by name)
    assert _cells(il, "MULT18X18D") >= CONFIG.macs


def test_stretch():
    dut = Stretch(cycles=5)
    seen = []

    async def testbench(ctx):
        for i in [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0] + [0] * 8:
            ctx.set(dut.i, i)
            await ctx.tick()
            seen.append(ctx.get(dut.o))

    run_clocked(dut, testbench)
    # on the cycle after a pulse, for 1 + 5 cycles; a longer pulse holds it
    assert seen == [1] * 6 + [0] * 3 + [1] * 7 + [0] * 4
    with pytest.raises(ValueError, match=r"cycles must be in range 1\.\."):
        Stretch(cycles=0)
    assert 0.01 < LED_HOLD_S < 0.2
