"""Amaranth's own simulator for the unit tests of small components: one
clock, one or more testbenches, run to the end."""

from amaranth.sim import Simulator

__all__ = ["run_clocked"]


def run_clocked(dut, *testbenches, period=1e-8, processes=(), vcd=None):
    """Simulate ``dut`` with a clock of ``period`` seconds on its ``sync``
    domain until every testbench (``async def tb(ctx)``) has returned;
    ``processes`` are added as processes (they may run forever); ``vcd``
    writes a waveform file."""
    sim = Simulator(dut)
    sim.add_clock(period)
    for tb in testbenches:
        sim.add_testbench(tb)
    for p in processes:
        sim.add_process(p)
    if vcd is None:
        sim.run()
    else:
        with sim.write_vcd(vcd):
            sim.run()
    return sim
