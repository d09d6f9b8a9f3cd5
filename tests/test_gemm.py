"""cocotb tests of the GEMM unit (sim/gemm_tb.py), per array shape and simulator.

``SIM=verilator`` (the default) or ``SIM=icarus`` (or ``SIM=verilator,icarus``)
picks the simulators (``tests/conftest.py``); a missing one is skipped with
the reason. ``SEED=<n>`` / ``SEED=random`` changes the base seed,
``WAVES=1`` dumps waveforms into ``build/sim/.../runs/<test>/``.
"""


import numpy as np
import pytest

from seedchip.config import DEFAULT_CONFIG, SMALL_CONFIG, ChipConfig
from seedchip.rtl.gemm import GemmUnit
from seedchip.sim import golden, runner

# The default, a small square array and a non-square one (rows != cols).
CONFIGS = {"small4x4": SMALL_CONFIG, "default": DEFAULT_CONFIG,
           "rect16x8": ChipConfig(rows=16, cols=8)}

#: every cocotb test of the testbench
TESTCASES = runner.cocotb_tests("seedchip.sim.gemm_tb")



@pytest.mark.parametrize("testcase", TESTCASES)
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_gemm_cocotb(sim, config_name, testcase):
    result = runner.run_cocotb(GemmUnit, "seedchip_gemm", "seedchip.sim.gemm_tb",
                               CONFIGS[config_name], sim=sim, testcase=testcase,
                               tag=testcase)
    runner.check_cocotb(result)
    assert [c.name for c in result.cases] == [testcase]


def test_gemm_rtl_runner(sim):
    """The CLI/bench runner: several GEMMs in one simulator session."""
    from seedchip.sim.gemm_run import run_gemm_batch, run_gemm_rtl

    cfg = SMALL_CONFIG
    rng = np.random.default_rng(7)
    a1, b1 = rng.integers(-128, 128, (5, 9)), rng.integers(-128, 128, (9, 6))
    a2, b2 = rng.integers(-128, 128, (3, 4)), rng.integers(-128, 128, (4, 4))
    bias = rng.integers(-5000, 5000, 4)
    mult = np.full(4, 1 << 30)
    shift = np.array([0, 3, 7, 9])
    results = run_gemm_batch(cfg, [
        dict(A=a1, B=b1),
        dict(A=a2, B=b2, bias=bias, multiplier=mult, shift=shift, relu=True),
        dict(A=a2, B=b2, bias=bias),
    ], sim=sim)
    assert len(results) == 3
    (c1, cyc1), (c2, cyc2), (c3, _) = results
    assert (c1 == golden.gemm(a1, b1)).all()
    assert (c2 == golden.gemm(a2, b2, bias, mult, shift, relu=True)).all()
    assert (c3 == golden.gemm(a2, b2, bias)).all()
    assert cyc1 > 0 and cyc2 > 0
    c, cycles = run_gemm_rtl(cfg, a2, b2, sim=sim)
    assert (c == golden.gemm(a2, b2)).all() and cycles > 0
