"""Plumbing every cocotb suite shares.

``sim``: the simulators a run asks for (``SIM=verilator``, ``SIM=icarus`` or
``SIM=verilator,icarus``; default Verilator), one parametrization each; a
simulator that is not installed skips with the reason.
"""

import pytest

from seedchip.sim import runner


@pytest.fixture(params=runner.simulators_from_env())
def sim(request):
    return runner.require_simulator(request.param)
