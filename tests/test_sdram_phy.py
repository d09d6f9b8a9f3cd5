# amaranth: UnusedElaboratable=no
"""The SDRAM pin interface's timing budget and clock planning (boards/sdram_phy.py);
its elaboration onto the ULX3S pins is in tests/test_top.py."""

import pytest

from seedchip.boards.sdram_phy import (ULX3S_DELAYS, SDRAMPHY, choose_phase, io_budget,
                                       plan_clocks)
from seedchip.boards.ulx3s import SDRAM_CHIP, SDRAM_PARTS
from seedchip.rtl.sdram import IS42S16160, M12L64322A, MT48LC16M16A2, worst_case


def test_board_chip_is_the_worst_of_its_parts():
    assert SDRAM_PARTS == (IS42S16160, MT48LC16M16A2)
    for attr in ("tRCD", "tRP", "tRAS", "tRC", "tRFC", "tWR", "tRRD", "tIS", "tIH", "tHZ"):
        assert getattr(SDRAM_CHIP, attr) == max(getattr(c, attr) for c in SDRAM_PARTS), attr
    assert SDRAM_CHIP.tOH == min(c.tOH for c in SDRAM_PARTS)
    assert SDRAM_CHIP.access_time(2) == 7.5 and SDRAM_CHIP.access_time(3) == 5.4
    assert SDRAM_CHIP.cas_latencies == ((2, 100e6), (3, 133e6))
    assert SDRAM_CHIP.init_refreshes == 8
    # at 100 MHz the worst case costs no cycle over either part
    for part in SDRAM_PARTS:
        assert SDRAM_CHIP.cycles(100e6) == part.cycles(100e6)
    with pytest.raises(ValueError, match=r"M12L64322A and IS42S16160 differ in data_width"):
        worst_case((IS42S16160, M12L64322A))


def test_budget_formulas():
    d = ULX3S_DELAYS
    b = io_budget(chip=SDRAM_CHIP, clk_mhz=100, cas_latency=3, phase=180, read_edge=4)
    # half a period each side of the command, less skews and the SDRAM's window
    assert b["command_setup_ns"] == pytest.approx(5 - d.skew - d.clock_skew - 1.5)
    assert b["command_hold_ns"] == pytest.approx(5 - d.skew - d.clock_skew - 0.8)
    # hold: fastest loop + tOH - (T - lag) - allowances
    loop_min = d.out[0] + 2 * d.trace[0] + d.inp[0]
    assert b["read_hold_ns"] == pytest.approx(loop_min + 2.5 - 5 - d.ff_hold - d.clock_skew)
    assert b["read_delay"] == 2


def test_phase_choice_at_100mhz():
    """180 degrees leaves no read hold margin at the fast corner; the chosen
    phase balances the read window and keeps the commands' margins."""
    at_180 = io_budget(chip=SDRAM_CHIP, clk_mhz=100, cas_latency=3, phase=180)
    assert at_180["read_hold_ns"] < 0
    best = choose_phase(chips=(SDRAM_CHIP,), clk_mhz=100, cas_latency=3, step=7.5)
    assert best["phase_deg"] == 225.0 and best["read_delay"] == 2
    b = best["budgets"]["ULX3S-SDRAM"]
    assert b["read_setup_ns"] == pytest.approx(b["read_hold_ns"], abs=0.3)
    assert min(v for k, v in b.items() if k.endswith("_ns")) == pytest.approx(best["worst_ns"])
    assert best["worst_ns"] > 1.0


def test_slow_clock_captures_earlier():
    # at 50 MHz the data window reaches the edge CL periods after the READ
    best = choose_phase(chips=(SDRAM_CHIP,), clk_mhz=50, cas_latency=3, step=7.5)
    assert best["read_delay"] == 1 and best["worst_ns"] > 2


def test_too_fast_has_no_margin():
    for f in (133.33, 143):
        assert choose_phase(chips=(IS42S16160,), clk_mhz=f, cas_latency=3)["worst_ns"] < 0


def test_plan_clocks():
    plan = plan_clocks(chip=SDRAM_CHIP, clk_mhz=50, sdram_mhz=100)
    assert (plan["cas_latency"], plan["phase_deg"], plan["read_delay"]) == (3, 225.0, 2)
    assert plan["sdram_mhz"] == pytest.approx(100)
    pll = plan["pll"]
    assert pll.f_out == 50 and pll.secondary_f_out == (100, 100)
    assert pll.secondary_phase == (0.0, 225.0)
    with pytest.raises(ValueError, match=r"sdram_mhz 140 is above what ULX3S-SDRAM allows "
                                         r"\(133 MHz\)"):
        plan_clocks(chip=SDRAM_CHIP, clk_mhz=50, sdram_mhz=140)


def test_needs_pin_timings():
    with pytest.raises(ValueError, match=r"M12L64322A has no tAC, tOH, tIS, tIH, tHZ recorded"):
        io_budget(chip=M12L64322A, clk_mhz=100, cas_latency=2, phase=180)
    with pytest.raises(ValueError, match=r"chips must name at least one SDRAMChip"):
        choose_phase(chips=(), clk_mhz=100, cas_latency=2)


def test_phy_validation():
    with pytest.raises(TypeError, match=r"chip must be an SDRAMChip, not None"):
        SDRAMPHY(chip=None)
    with pytest.raises(TypeError, match=r"clk_domain must be a non-empty string, not ''"):
        SDRAMPHY(chip=SDRAM_CHIP, clk_domain="")
