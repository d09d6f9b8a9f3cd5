"""cocotb tests of the SDR SDRAM controller (sim/sdram_tb.py) against the
pin-level model, on the ULX3S chip (16-bit, 143 MHz, CL3) and the Colorlight
chip (32-bit, 100 MHz, CL2), plus the ULX3S chip at 100 MHz CL2 with no refresh
postponement and two input registers on the read path for a subset, under
Verilator (``SIM=icarus`` to change). About 1.5 min with cached builds, about
1 min more per configuration when the Verilog changed.

``SEED=<n>`` / ``SEED=random`` changes the base seed, ``WAVES=1`` dumps
waveforms into ``build/sim/seedchip_sdram-*/.../runs/<test>/``.
"""

import json

import pytest

from seedchip.sim import runner
from seedchip.sim.sdram_tb import TOPLEVEL, SDRAMSimConfig, make_controller

CONFIGS = {
    "is42s16160_143mhz_cl3": SDRAMSimConfig(chip="IS42S16160", period_ns=7, cas_latency=3),
    "m12l64322a_100mhz_cl2": SDRAMSimConfig(chip="M12L64322A", period_ns=10, cas_latency=2),
}
#: other timings, no refresh postponement, two input registers on the read
#: data path (a board's), on the tests that exercise them
EXTRA_CONFIGS = {
    "is42s16160_100mhz_cl2_postpone0_rd2": SDRAMSimConfig(
        chip="IS42S16160", period_ns=10, cas_latency=2, postpone_max=0, read_delay=2),
}
EXTRA_TESTCASES = ["test_random", "test_saturated", "test_long_idle", "test_reset_mid_burst",
                   "test_write_read_same_address", "test_fault_late_read",
                   "test_counters"]

#: every cocotb test of the testbench (``bench_*`` is the benchmark's)
TESTCASES = [t for t in runner.cocotb_tests("seedchip.sim.sdram_tb") if t.startswith("test_")]
assert set(EXTRA_TESTCASES) <= set(TESTCASES), "EXTRA_TESTCASES names a test the testbench lacks"



@pytest.mark.parametrize("config_name,testcase",
                         [(c, t) for c in CONFIGS for t in TESTCASES]
                         + [(c, t) for c in EXTRA_CONFIGS for t in EXTRA_TESTCASES])
def test_sdram_cocotb(sim, config_name, testcase):
    config = {**CONFIGS, **EXTRA_CONFIGS}[config_name]
    result = runner.run_cocotb(make_controller, TOPLEVEL, "seedchip.sim.sdram_tb",
                               config, sim=sim, testcase=testcase, tag=testcase)
    runner.check_cocotb(result)
    assert [c.name for c in result.cases] == [testcase]


def test_sdram_bench(sim):
    """The benchmark helper runs and its figures are sane (small run)."""
    from seedchip.sim.sdram_bench import run_sdram_bench

    rows = run_sdram_bench([CONFIGS["m12l64322a_100mhz_cl2"]], sim=sim, words=512)
    assert len(rows) == 1
    res = {r["pattern"]: r for r in rows[0]["results"]}
    assert {"seq_read", "seq_write", "rand_read_32B", "rand_read_64B", "rand_write_32B",
            "mixed_32B"} <= set(res)
    for name, r in res.items():
        if "efficiency" in r:
            assert 0.0 < r["efficiency"] <= 1.0, (name, r)
    json.dumps(rows)


def test_icarus_leaves_init():
    """Under Icarus whatever ``SIM`` says (``make test`` runs Verilator): the
    controller leaves initialization and serves a page of traffic. Yosys'
    Verilog starts its ``always @*`` blocks at time 0 only with Verilog-2005
    semantics; compiled as SystemVerilog (cocotb's -g2012) its combinational
    signals stayed X and init never finished (see ``runner.ICARUS_ARGS``)."""
    sim = runner.require_simulator("icarus")
    result = runner.run_cocotb(make_controller, TOPLEVEL, "seedchip.sim.sdram_tb",
                               CONFIGS["is42s16160_143mhz_cl3"], sim=sim,
                               testcase="test_page_hits", tag="icarus_leaves_init")
    runner.check_cocotb(result)
