"""Amaranth's own simulator for the unit tests of small components: one
clock, one or more testbenches, run to the end; and the stream source and
sink those testbenches share (random idle cycles and backpressure)."""

from amaranth.sim import Simulator

__all__ = ["run_clocked", "stream_source", "stream_sink"]


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


def stream_source(stream, items, rng, p_idle=0.0):
    """A testbench that sends ``items`` (payload values) into ``stream`` in
    order; before each item it idles (``valid`` low) one more cycle with
    probability ``p_idle``, drawn from ``rng``. ``valid`` is low at the end."""
    async def run(ctx):
        for item in items:
            while p_idle and rng.random() < p_idle:
                ctx.set(stream.valid, 0)
                await ctx.tick()
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload, item)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)
    return run


def stream_sink(stream, out, rng, p_ready=1.0, conv=lambda payload: payload, count=None):
    """A testbench that takes ``stream``'s items, ``ready`` high each cycle
    with probability ``p_ready`` (drawn from ``rng``), and appends
    ``conv(payload)`` to the list ``out``; it returns when ``out`` holds
    ``count`` items, or never with ``count`` None (add it as a process)."""
    async def run(ctx):
        while count is None or len(out) < count:
            ctx.set(stream.ready, rng.random() < p_ready)
            _, _, valid, ready, payload = await ctx.tick().sample(
                stream.valid, stream.ready, stream.payload)
            if valid and ready:
                out.append(conv(payload))
    return run
