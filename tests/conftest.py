"""Plumbing every cocotb suite shares.

``sim``: the simulators a run asks for (``SIM=verilator``, ``SIM=icarus`` or
``SIM=verilator,icarus``; default Verilator), one parametrization each; a
simulator that is not installed skips with the reason. ``no_sim``: a test of
input the command line must refuse before it starts a simulated chip.
"""

import pytest

from seedchip.sim import runner


@pytest.fixture(params=runner.simulators_from_env())
def sim(request):
    return runner.require_simulator(request.param)


@pytest.fixture
def no_sim(monkeypatch):
    """Fail the test if a simulated chip is started (input the host must refuse first)."""
    from seedchip.firmware import sim as fw_sim

    def trap(*args, **kwargs):
        raise AssertionError("the simulator was started for input the host can refuse")
    monkeypatch.setattr(fw_sim, "SimChip", trap)
