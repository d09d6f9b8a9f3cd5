# amaranth: UnusedElaboratable=no
"""MemArbiter in Amaranth's simulator, in front of OnChipRAM.

Three clients issue random reads, byte-masked writes and out-of-range
requests with random idle cycles, and take their responses with random
backpressure. Each client owns a disjoint address range, so a Python dict per
client predicts every read. Checked: exactly one response per request, in
order per port, with the right data or err; round-robin fairness (a port
requesting with a free credit sees at most n_ports - 1 grants to others before
its own); a port stalling its responses does not stop the others.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from seedchip.rtl.arbiter import MemArbiter, MemOrderFIFO
from seedchip.rtl.memport import MemPortSignature
from seedchip.rtl.onchip_ram import OnChipRAM
from seedchip.sim.clocked import run_clocked

N_PORTS = 3


class Bench:
    """The arbiter wired to an OnChipRAM, and the expected traffic."""

    def __init__(self, *, depth=96, data_width=32, max_outstanding=4, n_ports=N_PORTS, sinks=()):
        self.ram = OnChipRAM(depth=depth, data_width=data_width)
        self.arb = MemArbiter(n_ports=n_ports, addr_width=self.ram.addr_width,
                              data_width=data_width, max_outstanding=max_outstanding,
                              sinks=sinks)
        self.depth = depth
        self.data_width = data_width
        self.n_ports = n_ports

    def top(self):
        m = Module()
        m.submodules.arb = self.arb
        m.submodules.ram = self.ram
        wiring.connect(m, self.arb.mem, self.ram.port)
        return m


def make_requests(rng, *, port, n_ports, depth, addr_width, data_width, n):
    """Requests of ``port`` (owning one slice of the memory) and the
    responses a correct system gives, in order."""
    nbytes = data_width // 8
    span = depth // n_ports
    lo, hi = port * span, (port + 1) * span
    hot = rng.integers(lo, hi, 6)
    ref = {}
    reqs, expect = [], []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.08:
            addr = int(rng.integers(depth, 1 << addr_width))    # out of range
        elif kind < 0.6:
            addr = int(hot[rng.integers(0, len(hot))])
        else:
            addr = int(rng.integers(lo, hi))
        we = int(rng.random() < 0.45)
        wdata = int.from_bytes(rng.bytes(nbytes), "little")
        mask = int(rng.integers(0, 1 << nbytes)) if rng.random() < 0.5 else (1 << nbytes) - 1
        reqs.append({"addr": addr, "we": we, "wdata": wdata, "mask": mask})
        if addr >= depth:
            expect.append({"err": 1, "rdata": None})
        elif we:
            bits = sum(0xFF << (8 * i) for i in range(nbytes) if (mask >> i) & 1)
            ref[addr] = (ref.get(addr, 0) & ~bits) | (wdata & bits)
            expect.append({"err": 0, "rdata": None})
        else:
            expect.append({"err": 0, "rdata": ref.get(addr, 0)})
    return reqs, expect


def stall_pattern(rng, resp_stall):
    """Response backpressure: runs of stalls, sometimes long enough to use up
    every credit of the port."""
    run = 0
    while True:
        if run == 0 and rng.random() < resp_stall:
            run = int(rng.choice([1, 2, 5, 30]))
        yield run == 0
        run = max(0, run - 1)


def run_traffic(*, seed, n=250, req_idle=(0.3, 0.3, 0.3), resp_stall=(0.3, 0.3, 0.3),
                max_outstanding=4, depth=96, data_width=32, stall_port0_until=0, sinks=()):
    bench = Bench(depth=depth, data_width=data_width, max_outstanding=max_outstanding,
                  sinks=sinks)
    arb, n_ports = bench.arb, bench.n_ports
    rng = np.random.default_rng(seed)
    traffic = [make_requests(rng, port=p, n_ports=n_ports, depth=depth,
                             addr_width=bench.ram.addr_width, data_width=data_width, n=n)
               for p in range(n_ports)]
    got = [[] for _ in range(n_ports)]
    stats = {"cycles": 0, "max_wait": [0] * n_ports, "done_at": [None] * n_ports,
             "grants": [0] * n_ports, "grants_during_stall": [0] * n_ports}

    def driver(p):
        port = arb.ports[p]
        reqs = traffic[p][0]
        prng = np.random.default_rng([seed, p, 1])

        async def tb(ctx):
            for r in reqs:
                while prng.random() < req_idle[p]:
                    ctx.set(port.req.valid, 0)
                    await ctx.tick()
                ctx.set(port.req.valid, 1)
                ctx.set(port.req.payload, r)
                await ctx.tick().until(port.req.ready)
            ctx.set(port.req.valid, 0)
        return tb

    def monitor(p):
        port = arb.ports[p]
        expect = traffic[p][1]
        prng = np.random.default_rng([seed, p, 2])
        stalls = stall_pattern(prng, resp_stall[p])

        async def tb(ctx):
            cycles = 0
            while len(got[p]) < len(expect):
                ready = next(stalls) and not (p == 0 and cycles < stall_port0_until)
                ctx.set(port.resp.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.resp.valid, port.resp.payload)
                cycles += 1
                assert cycles < 100 * len(expect), \
                    f"seed {seed}: port {p} stuck after {len(got[p])} of {len(expect)} responses"
                if valid and ready:
                    got[p].append({"err": payload.err, "rdata": payload.rdata})
            stats["done_at"][p] = cycles
            # No response without a request.
            ctx.set(port.resp.ready, 1)
            for _ in range(30):
                _, _, valid = await ctx.tick().sample(port.resp.valid)
                assert not valid, f"seed {seed}: port {p}: extra response after {len(expect)}"
        return tb

    async def fairness(ctx):
        # Per port: grants to the others while it requests with a credit.
        signals = []
        for port in arb.ports:
            signals += [port.req.valid, port.req.ready, port.resp.valid, port.resp.ready]
        outstanding = [0] * n_ports
        wait = [0] * n_ports
        while True:
            _, _, *v = await ctx.tick().sample(*signals)
            stats["cycles"] += 1
            req_valid, req_ready = v[0::4], v[1::4]
            resp_fire = [a and b for a, b in zip(v[2::4], v[3::4])]
            grants = [p for p in range(n_ports) if req_valid[p] and req_ready[p]]
            assert len(grants) <= 1, f"seed {seed}: cycle {stats['cycles']}: grants {grants}"
            for p in range(n_ports):
                assert not req_ready[p] or req_valid[p], \
                    f"seed {seed}: cycle {stats['cycles']}: ready without valid on port {p}"
                eligible = req_valid[p] and (outstanding[p] < max_outstanding or p in sinks)
                if not eligible or p in grants:
                    wait[p] = 0
                elif grants:
                    wait[p] += 1
                    stats["max_wait"][p] = max(stats["max_wait"][p], wait[p])
                    assert wait[p] <= n_ports - 1, \
                        f"seed {seed}: cycle {stats['cycles']}: port {p} passed over {wait[p]} times"
            for p in grants:
                stats["grants"][p] += 1
                if stats["cycles"] < stall_port0_until:
                    stats["grants_during_stall"][p] += 1
            for p in range(n_ports):
                outstanding[p] += (p in grants) - resp_fire[p]
                assert 0 <= outstanding[p] <= max_outstanding, \
                    f"seed {seed}: port {p}: {outstanding[p]} outstanding"

    sim = Simulator(bench.top())
    sim.add_clock(1e-8)
    for p in range(n_ports):
        sim.add_testbench(driver(p))
        sim.add_testbench(monitor(p))
    sim.add_testbench(fairness, background=True)
    sim.run()

    for p in range(n_ports):
        reqs, expect = traffic[p]
        assert len(got[p]) == len(expect), \
            f"seed {seed}: port {p}: {len(got[p])} responses for {len(expect)} requests"
        for i, (g, e, r) in enumerate(zip(got[p], expect, reqs)):
            assert g["err"] == e["err"], \
                f"seed {seed}: port {p} response {i} (addr {r['addr']:#x}, we {r['we']}): " \
                f"err {g['err']}, expected {e['err']}"
            if e["rdata"] is not None:
                assert g["rdata"] == e["rdata"], \
                    f"seed {seed}: port {p} response {i} (read {r['addr']:#x}): " \
                    f"{g['rdata']:#x}, expected {e['rdata']:#x}"
    return stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sinks(seed):
    """Ports 0 and 2 as sinks (resp.ready held at 1), port 1 with a FIFO and
    backpressure: every response right and in order (run_traffic), round
    robin kept, at most max_outstanding in flight per port (the order
    FIFO's bound, without credits). Port 0 requests back to back."""
    run_traffic(seed=seed, req_idle=(0.0, 0.3, 0.2), resp_stall=(0.0, 0.4, 0.0), sinks=(0, 2))


def test_sinks_have_no_fifo():
    arb = MemArbiter(n_ports=3, addr_width=8, data_width=32, sinks=(1,))
    fifos = arb.resp_fifos
    for f in fifos:
        if f is not None:
            f._MustUse__silence = True     # made here, never elaborated
    assert [f is None for f in fifos] == [False, True, False]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_traffic(seed):
    stats = run_traffic(seed=seed)
    # Every port was passed over at some point (the fairness check was live).
    assert max(stats["max_wait"]) >= 1, f"seed {seed}: {stats}"


@pytest.mark.parametrize("seed", [4, 5])
def test_heavy_backpressure(seed):
    run_traffic(seed=seed, n=150, req_idle=(0.0, 0.1, 0.0), resp_stall=(0.8, 0.5, 0.2),
                max_outstanding=3)


def test_uneven_load():
    # One busy port, two mostly idle: nobody starves, the idle ports still
    # get their turn immediately.
    run_traffic(seed=6, n=150, req_idle=(0.0, 0.8, 0.9), resp_stall=(0.0, 0.3, 0.3))


def test_stalled_port_does_not_block_others():
    # Port 0 takes no response for 400 cycles: it runs out of credits, while
    # the others keep going at full rate through the shared response path.
    stall = 400
    stats = run_traffic(seed=7, n=200, req_idle=(0.0, 0.0, 0.0), resp_stall=(0.0, 0.0, 0.0),
                        max_outstanding=4, stall_port0_until=stall)
    g = stats["grants_during_stall"]
    assert g[0] == 4, f"seed 7: port 0 granted {g[0]} times while stalled (credits 4)"
    assert g[1] >= 150 and g[2] >= 150, f"seed 7: grants during port 0's stall: {g}"


def test_throughput():
    # No idle, no backpressure: one request per cycle in total.
    n = 200
    stats = run_traffic(seed=8, n=n, req_idle=(0.0,) * 3, resp_stall=(0.0,) * 3,
                        max_outstanding=8)
    assert max(stats["done_at"]) <= N_PORTS * n + 20, f"seed 8: {stats['done_at']} cycles"


def test_single_port():
    # n_ports=1 degenerates to a pass-through with a register stage.
    ram = OnChipRAM(depth=16, data_width=8)
    arb = MemArbiter(n_ports=1, addr_width=ram.addr_width, data_width=8, max_outstanding=1)
    m = Module()
    m.submodules += [arb, ram]
    wiring.connect(m, arb.mem, ram.port)
    got = []

    async def tb(ctx):
        port = arb.ports[0]
        ctx.set(port.resp.ready, 1)
        for addr, we, data in [(3, 1, 0x5A), (3, 0, 0), (20, 0, 0), (3, 1, 0xA5), (3, 0, 0)]:
            ctx.set(port.req.valid, 1)
            ctx.set(port.req.payload, {"addr": addr, "we": we, "wdata": data, "mask": 1})
            await ctx.tick().until(port.req.ready)
            ctx.set(port.req.valid, 0)
            payload, = await ctx.tick().sample(port.resp.payload).until(port.resp.valid)
            got.append((payload.err, payload.rdata if not we else None))

    run_clocked(m, tb)
    assert got == [(0, None), (0, 0x5A), (1, 0), (0, None), (0, 0xA5)]


# -- construction --------------------------------------------------------------

def test_signature():
    arb = MemArbiter(n_ports=3, addr_width=12, data_width=16, max_outstanding=5)
    sig = MemPortSignature(addr_width=12, data_width=16)
    assert arb.signature.members["ports"].dimensions == (3,)
    assert arb.signature.members["ports"].signature == sig.flip()
    assert arb.signature.members["mem"].signature == sig
    assert len(arb.ports) == 3


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(n_ports=0), ValueError, r"n_ports must be in range 1\.\.16, not 0"),
    (dict(n_ports=17), ValueError, r"n_ports must be in range 1\.\.16, not 17"),
    (dict(n_ports=2.0), TypeError, r"n_ports must be an integer, not 2\.0"),
    (dict(n_ports=True), TypeError, r"n_ports must be an integer, not True"),
    (dict(addr_width=0), ValueError, r"addr_width must be in range 1\.\.40, not 0"),
    (dict(addr_width="8"), TypeError, r"addr_width must be an integer, not '8'"),
    (dict(data_width=4), ValueError, r"data_width must be in range 8\.\.256, not 4"),
    (dict(data_width=12), ValueError, r"data_width must be a multiple of 8, not 12"),
    (dict(max_outstanding=0), ValueError, r"max_outstanding must be in range 1\.\.64, not 0"),
    (dict(max_outstanding=65), ValueError, r"max_outstanding must be in range 1\.\.64, not 65"),
    (dict(max_outstanding=None), TypeError, r"max_outstanding must be an integer, not None"),
    (dict(sinks=(3,)), ValueError, r"sinks must be in range 0\.\.2, not 3"),
    (dict(sinks=("1",)), TypeError, r"sinks must be an integer, not '1'"),
])
def test_validation(kwargs, exc, message):
    args = dict(n_ports=3, addr_width=8, data_width=32, max_outstanding=4) | kwargs
    with pytest.raises(exc, match=message):
        MemArbiter(**args)


def test_keyword_only():
    with pytest.raises(TypeError):
        MemArbiter(3, 8, 32, 4)


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(width=0), ValueError, r"width must be in range 1\.\.64, not 0"),
    (dict(depth=0), ValueError, r"depth must be in range 1\.\.64, not 0"),
    (dict(depth="4"), TypeError, r"depth must be an integer, not '4'"),
])
def test_order_fifo_validation(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        MemOrderFIFO(**(dict(width=2, depth=4) | kwargs))


@pytest.mark.parametrize("depth", [1, 3, 4])
def test_order_fifo(depth):
    # FIFO order, level, full/empty, no fall-through, simultaneous push/pop.
    fifo = MemOrderFIFO(width=4, depth=depth)
    rng = np.random.default_rng(depth)

    async def tb(ctx):
        model = []
        for cycle in range(400):
            push, pop = bool(rng.random() < 0.55), bool(rng.random() < 0.5)
            value = int(rng.integers(0, 16))
            ctx.set(fifo.w.valid, push)
            ctx.set(fifo.w.payload, value)
            ctx.set(fifo.r.ready, pop)
            assert ctx.get(fifo.level) == len(model), f"depth {depth} cycle {cycle}"
            assert ctx.get(fifo.w.ready) == (len(model) < depth)
            assert ctx.get(fifo.r.valid) == (len(model) > 0)
            if model:
                assert ctx.get(fifo.r.payload) == model[0], f"depth {depth} cycle {cycle}"
            popped = pop and model
            pushed = push and len(model) < depth
            await ctx.tick()
            if popped:
                model.pop(0)
            if pushed:
                model.append(value)

    run_clocked(fifo, tb)
