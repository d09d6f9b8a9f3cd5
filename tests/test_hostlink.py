# amaranth: UnusedElaboratable=no
"""The host link (rtl/hostlink.py and its parts) through its UART pins.

cocotb tests in sim/link_tb.py on LinkTestTop (HostLink + on-chip RAM + a
toy register file), memory words of 32 and 16 bits, under Verilator.
"""

import pytest

from seedchip.rtl.hostlink import HostLink, LinkParams
from seedchip.sim import runner
from seedchip.sim.link_top import TOPLEVEL, LinkSimConfig, make_link_top

CONFIGS = {
    "w32": LinkSimConfig(data_width=32, ram_depth=1024),
    "w16": LinkSimConfig(data_width=16, ram_depth=1536),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_link(sim, name):
    result = runner.run_cocotb(make_link_top, TOPLEVEL, "seedchip.sim.link_tb", CONFIGS[name],
                               sim=sim, tag=name)
    runner.check_cocotb(result)
    names = {c.name.rpartition(".")[2] for c in result.cases}
    assert names == set(runner.cocotb_tests("seedchip.sim.link_tb"))


def test_params_checked():
    with pytest.raises(ValueError, match="baud"):
        LinkParams(clk_freq=1e6, baud=150_000)   # divisor 7: 4.8 % off
    with pytest.raises(ValueError, match="mem_data_width"):
        LinkParams(mem_data_width=24)
    with pytest.raises(ValueError, match="rx_slots"):
        LinkParams(rx_slots=3)
    with pytest.raises(ValueError, match="mem_words"):
        LinkParams(mem_addr_width=8, mem_words=257)
    with pytest.raises(TypeError, match="LinkParams"):
        HostLink({"baud": 1})


def test_goodput(sim, tmp_path):
    """Bulk WRITE and READ at the board's clock and baud (100 MHz, 3 Mbaud),
    4 frames in flight: at least 85 % of the line rate each way, in
    simulated time (deterministic; the figure is in `make bench`)."""
    from seedchip.sim.link_bench import run_link_bench

    r = run_link_bench(tmp_path / "link.json", sim=sim)
    assert r["divisor"] == 33 and r["window"] == 4
    for what in ("write", "read"):
        assert r[what]["of_line_rate"] >= 0.85, r
