# amaranth: UnusedElaboratable=no
import re

import pytest

from seedchip.boards import BOARDS, get_board
from seedchip.boards.top import Exerciser, Top
from seedchip.config import SMALL_CONFIG
from seedchip.sim.clocked import run_clocked


def test_exerciser_runs_commands():
    dut = Exerciser(config=SMALL_CONFIG, display_bits=6)
    seen = {}

    async def testbench(ctx):
        checksums = set()
        for _ in range(6000):
            await ctx.tick()
            checksums.add(ctx.get(dut.checksum))
        seen["commands"] = ctx.get(dut.commands)
        seen["checksums"] = len(checksums)
        seen["leds"] = ctx.get(dut.leds)

    run_clocked(dut, testbench)
    assert seen["commands"] >= 3
    assert seen["checksums"] > 1000
    assert not seen["leds"] & 0x40, "the unit reported an error for a generated command"


def test_exerciser_validation():
    with pytest.raises(TypeError, match=r"config must be a ChipConfig, not 3"):
        Exerciser(config=3)
    with pytest.raises(TypeError, match=r"config must be a ChipConfig, not None"):
        Top(config=None)


def test_top_clock():
    top = Top(config=SMALL_CONFIG)
    assert top.clk_mhz == pytest.approx(100.0)
    assert Top(config=SMALL_CONFIG.replace(clk_mhz=133.0)).clk_mhz == pytest.approx(133.333, abs=1e-3)
    with pytest.raises(ValueError, match=r"PLL output frequency 48\.0 MHz is not achievable within"):
        Top(config=SMALL_CONFIG.replace(clk_mhz=48.0))


def test_top_elaborates_for_ulx3s():
    board = get_board("ulx3s-85f")
    plan = board.platform().prepare(Top(config=SMALL_CONFIG), name="top")
    il = plan.files["top.il"]
    assert "EHXPLLL" in il and il.count("MULT18X18D") >= SMALL_CONFIG.macs
    assert "SGSR" in il
    lpf = plan.files["top.lpf"]
    assert 'SITE "G2"' in lpf                  # clk25
    for pin in "B2 C2 C1 D2 D1 E2 E1 H3".split():
        assert f'SITE "{pin}"' in lpf          # the eight LEDs
    assert "FREQUENCY NET" in lpf and "100000000" in lpf


def _cells(il, kind):
    return len(re.findall(rf"^\s*cell \\{kind} ", il, flags=re.M))


def test_top_uses_the_sdram_pins():
    """The SDRAM resource of the board, every pin through an I/O-cell register
    (DQ both ways, with its output enable), the clock pin through an ODDRX1F,
    three PLL outputs with a frequency constraint each."""
    board = get_board("ulx3s-85f")
    top = Top(config=SMALL_CONFIG)
    plan = board.platform().prepare(top, name="top")
    il, lpf = plan.files["top.il"], plan.files["top.lpf"]
    sdram_pins = ("F19 F20 P20 T20 T19 R20 U19 E20 P19 N20 "          # clk cke cs we cas ras dqm ba
                  "M20 M19 L20 L19 K20 K19 K18 J20 J19 H20 N19 G20 G19 "   # a
                  "J16 L18 M18 N18 P18 T18 T17 U20 E19 D20 D19 C20 E18 F18 J18 J17")  # dq
    for pin in sdram_pins.split():
        assert f'SITE "{pin}"' in lpf, pin
    assert 'LOCATE COMP "sdram_0__clk__io" SITE "F19"' in lpf
    assert _cells(il, "ODDRX1F") == 1
    assert _cells(il, "IFS1P3DX") == 16                    # DQ in
    assert _cells(il, "BB") == 16
    # a data and an output-enable register per output pin (8 LEDs, cke cs we
    # ras cas, 2 ba, 13 a, 2 dqm, 16 DQ), and the clock pin's output enable
    assert _cells(il, "OFS1P3DX") == 2 * (8 + 5 + 2 + 13 + 2 + 16) + 1
    for name in ("clkop", "clkos", "clkos2"):
        assert f'FREQUENCY NET "pll.{name}" 100000000.0 HZ;' in lpf
    p = top.pll_params
    assert "CLKOS_ENABLE" in il and "CLKOS2_ENABLE" in il
    assert re.search(rf"parameter \\CLKOS2_CPHASE {p.secondary_cphase[1]}\b", il)
    assert re.search(rf"parameter \\CLKOS2_FPHASE {p.secondary_fphase[1]}\b", il)


def test_top_sdram_clocking():
    top = Top(config=SMALL_CONFIG)
    assert top.sdram_mhz == pytest.approx(SMALL_CONFIG.sdram_mhz) == pytest.approx(100.0)
    assert top.clock_domains == {"sync": pytest.approx(100.0), "sdram": pytest.approx(100.0)}
    # 100 MHz on the ULX3S: CL3 (the Micron part's CL2 access time is 7.5 ns),
    # the SDRAM clock 225 degrees behind, read data two registers late.
    assert (top.sdram_cas_latency, top.sdram_read_delay) == (3, 2)
    assert top.sdram_budget["phase_deg"] == 225.0
    assert top.pll_params.secondary_phase[1] == 225.0
    assert top.sdram_budget["worst_ns"] > 0.5
    for budget in top.sdram_budget["budgets"].values():
        assert min(v for k, v in budget.items() if k.endswith("_ns")) > 0.5
    assert top.pll_params.secondary_f_out == (pytest.approx(100.0), pytest.approx(100.0))
    # the matrix unit keeps its own clock
    other = Top(config=SMALL_CONFIG.replace(clk_mhz=62.5))
    assert (other.clk_mhz, other.sdram_mhz) == (pytest.approx(62.5), pytest.approx(100.0))


def test_top_sdram_frequency_checked():
    with pytest.raises(ValueError, match=r"sdram_mhz 150 is above what ULX3S-SDRAM allows "
                                         r"\(133 MHz\)"):
        Top(config=SMALL_CONFIG.replace(sdram_mhz=150.0))
    with pytest.raises(TypeError, match=r"sdram_chip must be an SDRAMChip, not 'x'"):
        Top(config=SMALL_CONFIG, sdram_chip="x")


def test_board_registry():
    assert set(BOARDS) == {"ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f"}
    b = get_board("ULX3S-85F")
    assert (b.device, b.package, b.speed, b.dsp, b.ebr) == ("LFE5U-85F", "BG381", "6", 156, 208)
    with pytest.raises(ValueError, match=r"unknown board 'ulx3s-99f'; known boards: ulx3s-12f"):
        get_board("ulx3s-99f")
