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
