# amaranth: UnusedElaboratable=no
"""The memory BIST (boards/sdram_bist.py): its pattern against a plain
recurrence, the BIST on on-chip RAM in the Amaranth simulator (clean, stuck
bit, random stalls), and the board's self test (controller + BIST) against the
pin-level SDRAM model under cocotb (clean, flipped bit)."""


import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In

from seedchip.boards.sdram_bist import SDRAMBist, SDRAMSelfTest, bist_words
from seedchip.rtl.lfsr import lfsr_init
from seedchip.rtl.memport import MemPortSignature
from seedchip.rtl.onchip_ram import OnChipRAM
from seedchip.rtl.sdram import IS42S16160
from seedchip.sim import runner
from seedchip.sim.sdram_bist_tb import TOPLEVEL, BistSimConfig, make_selftest
from seedchip.sim.clocked import run_clocked


# -- the pattern -----------------------------------------------------------------

@pytest.mark.parametrize("width", [8, 16, 32, 40])
def test_pattern_is_the_recurrence(width):
    init = lfsr_init(data_width=width, seed=7)
    size = max(width, 31)
    bits = [(init >> i) & 1 for i in range(size)]
    while len(bits) < 50 * width:
        bits.append(bits[-28] ^ bits[-31])
    expect = [sum(b << i for i, b in enumerate(bits[k * width:(k + 1) * width]))
              for k in range(50)]
    assert bist_words(data_width=width, seed=7, count=50) == expect
    assert bist_words(data_width=width, seed=7, count=20, start=30) == expect[30:]
    assert bist_words(data_width=width, seed=8, count=50) != expect


def test_passes_differ():
    p0 = bist_words(data_width=16, seed=3, count=1000)
    p1 = bist_words(data_width=16, seed=3, count=1000, start=1000)
    assert len(set(p0)) > 900                         # independent words within a pass
    assert sum(a != b for a, b in zip(p0, p1)) > 990  # new data at (nearly) every address


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(addr_width=0, data_width=16), ValueError, r"addr_width must be in range 1\.\.40, not 0"),
    (dict(addr_width=8, data_width=12), ValueError, r"data_width must be a multiple of 8, not 12"),
    (dict(addr_width=8, data_width=16, words=257), ValueError,
     r"words must be in range 2\.\.256, not 257"),
    (dict(addr_width=8, data_width=16, words=1), ValueError, r"words must be in range 2\.\.256, not 1"),
    (dict(addr_width=8, data_width=16, seed="x"), TypeError, r"seed must be an integer, not 'x'"),
])
def test_validation(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        SDRAMBist(**kw)


def test_selftest_validation():
    with pytest.raises(TypeError, match=r"chip must be an SDRAMChip, not 'IS42S16160'"):
        SDRAMSelfTest(chip="IS42S16160", clk_freq=100e6)
    with pytest.raises(ValueError, match=r"words must be in range 2\.\.16777216, not 0"):
        SDRAMSelfTest(chip=IS42S16160, clk_freq=100e6, words=0)
    st = SDRAMSelfTest(chip=IS42S16160, clk_freq=100e6, cas_latency=3, read_delay=2)
    assert st.bist.words == IS42S16160.words == 1 << 24
    assert (st.controller.cas_latency, st.controller.read_delay) == (3, 2)
    Fragment.get(st, None)      # elaborates (and so uses) the controller and the BIST


# -- on-chip RAM, Amaranth simulator --------------------------------------------

class _StuckRAM(wiring.Component):
    """``OnChipRAM`` whose stored bit ``bit`` reads back as 1 at ``addrs``
    (all addresses if None): a cell stuck at 1."""

    def __init__(self, *, depth, data_width, bit, addrs=None):
        self.ram = OnChipRAM(depth=depth, data_width=data_width)
        self._bit, self._addrs = bit, addrs
        super().__init__({"port": In(MemPortSignature(addr_width=self.ram.addr_width,
                                                      data_width=data_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = self.ram
        port = self.port
        # The bit is forced on the way in: the cell stores 1 whatever is written.
        stuck = Signal()
        if self._addrs is None:
            m.d.comb += stuck.eq(1)
        for a in self._addrs or ():
            with m.If(port.req.payload.addr == a):
                m.d.comb += stuck.eq(1)
        m.d.comb += [
            ram.port.req.valid.eq(port.req.valid),
            ram.port.req.payload.eq(port.req.payload),
            ram.port.req.payload.wdata.eq(port.req.payload.wdata | (stuck << self._bit)),
            port.req.ready.eq(ram.port.req.ready),
            port.resp.valid.eq(ram.port.resp.valid),
            port.resp.payload.eq(ram.port.resp.payload),
            ram.port.resp.ready.eq(port.resp.ready),
        ]
        return m


class _Harness(wiring.Component):
    def __init__(self, backend, bist, stall=False):
        self.backend, self.bist, self.stall = backend, bist, stall
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.backend = self.backend
        m.submodules.bist = bist = self.bist
        if not self.stall:
            wiring.connect(m, bist.port, self.backend.port)
            return m
        # Random stalls on req.ready (an LFSR), and a check of the stream rules.
        lfsr = Signal(16, init=0xACE1)
        m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]))
        gate = Signal()
        m.d.comb += gate.eq(~(lfsr[0] & lfsr[3]) & ~(lfsr[5] & lfsr[9]))
        c, b = bist.port, self.backend.port
        m.d.comb += [
            b.req.payload.eq(c.req.payload),
            b.req.valid.eq(c.req.valid & gate),
            c.req.ready.eq(b.req.ready & gate),
            c.resp.valid.eq(b.resp.valid),
            c.resp.payload.eq(b.resp.payload),
            b.resp.ready.eq(c.resp.ready),
        ]
        return m


def _run(harness, cycles, *, watch=None, on_cycle=None):
    """Clock ``harness`` for ``cycles``; returns the BIST's outputs at the end."""
    bist = harness.bist
    out = {}

    async def tb(ctx):
        for i in range(cycles):
            if on_cycle is not None:
                on_cycle(ctx, i)
            await ctx.tick()
        for name in ("passes", "errors", "error", "error_addr", "error_xor", "pass_cycles",
                     "phase", "addr"):
            out[name] = ctx.get(getattr(bist, name))

    run_clocked(harness, tb)
    return out


def test_onchip_ram_passes():
    words = 256
    ram = OnChipRAM(depth=words, data_width=16)
    bist = SDRAMBist(addr_width=ram.addr_width, data_width=16, words=words, seed=5)
    out = _run(_Harness(ram, bist), 5 * 2 * words + 50)
    assert out["errors"] == 0 and not out["error"]
    assert out["passes"] >= 4
    # one request per cycle, the passes back to back
    assert out["pass_cycles"] == 2 * words


def test_writes_are_the_pattern():
    """Sequential addresses, pass after pass, with the reference model's words."""
    words = 128
    ram = OnChipRAM(depth=words, data_width=16)
    bist = SDRAMBist(addr_width=ram.addr_width, data_width=16, words=words, seed=9)
    writes, reads = [], []

    def on_cycle(ctx, i):
        req = bist.port.req
        if ctx.get(req.valid) and ctx.get(req.ready):
            (writes if ctx.get(req.payload.we) else reads).append(
                (ctx.get(req.payload.addr), ctx.get(req.payload.wdata)))

    _run(_Harness(ram, bist), 4 * 2 * words, on_cycle=on_cycle)
    assert [a for a, _ in writes[:2 * words]] == list(range(words)) * 2
    assert [a for a, _ in reads[:2 * words]] == list(range(words)) * 2
    assert [d for _, d in writes[:words]] == bist.words_of_pass(0)
    assert [d for _, d in writes[words:2 * words]] == bist.words_of_pass(1)


@pytest.mark.parametrize("addrs", [None, (37,)], ids=["every-address", "one-address"])
def test_onchip_ram_stuck_bit(addrs):
    words = 128
    backend = _StuckRAM(depth=words, data_width=16, bit=5, addrs=addrs)
    bist = SDRAMBist(addr_width=backend.ram.addr_width, data_width=16, words=words, seed=2)
    out = _run(_Harness(backend, bist), 3 * 2 * words + 50)
    assert out["error"] and out["errors"] > 0
    assert out["error_xor"] == 1 << 5
    p0 = bist.words_of_pass(0)
    # the first address whose pattern has bit 5 clear (for a single stuck
    # cell that may happen in a later pass, at that address)
    first = addrs[0] if addrs else next(a for a in range(words) if not (p0[a] >> 5) & 1)
    assert out["error_addr"] == first
    if addrs is None:
        # every word whose pattern bit 5 is 0, in every pass completed (and
        # some of the pass under way)
        expect = sum(not (w >> 5) & 1 for p in range(out["passes"])
                     for w in bist.words_of_pass(p))
        assert expect <= out["errors"] <= expect + words
    assert out["passes"] >= 2   # an error does not stop the test


class _ErrRAM(wiring.Component):
    """``OnChipRAM`` that answers reads of ``addrs`` (every read if None) with
    ``err`` set and the correct data: only the ``err`` flag is wrong."""

    def __init__(self, *, depth, data_width, addrs=None):
        self.ram = OnChipRAM(depth=depth, data_width=data_width)
        self._addrs = addrs
        super().__init__({"port": In(MemPortSignature(addr_width=self.ram.addr_width,
                                                      data_width=data_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = self.ram
        # One flag per request, in order: responses come in request order.
        m.submodules.flags = flags = SyncFIFO(width=1, depth=8)
        port = self.port
        bad = Signal()
        if self._addrs is None:
            m.d.comb += bad.eq(~port.req.payload.we)
        for a in self._addrs or ():
            with m.If((port.req.payload.addr == a) & ~port.req.payload.we):
                m.d.comb += bad.eq(1)
        m.d.comb += [
            ram.port.req.valid.eq(port.req.valid & flags.w_rdy),
            ram.port.req.payload.eq(port.req.payload),
            port.req.ready.eq(ram.port.req.ready & flags.w_rdy),
            flags.w_en.eq(port.req.valid & port.req.ready),
            flags.w_data.eq(bad),
            port.resp.valid.eq(ram.port.resp.valid),
            port.resp.payload.eq(ram.port.resp.payload),
            port.resp.payload.err.eq(ram.port.resp.payload.err | (flags.r_data & flags.r_rdy)),
            ram.port.resp.ready.eq(port.resp.ready),
            flags.r_en.eq(port.resp.valid & port.resp.ready),
        ]
        return m


@pytest.mark.parametrize("addrs", [None, (37,)], ids=["every-read", "one-address"])
def test_onchip_ram_err_responses(addrs):
    """Read responses with ``err`` (and the right data) count as errors: a
    memory that reports a failed access has failed the test."""
    words = 128
    backend = _ErrRAM(depth=words, data_width=16, addrs=addrs)
    bist = SDRAMBist(addr_width=backend.ram.addr_width, data_width=16, words=words, seed=2)
    out = _run(_Harness(backend, bist), 3 * 2 * words + 50)
    assert out["error"] and out["errors"] > 0
    assert out["error_addr"] == (addrs[0] if addrs else 0)
    assert out["error_xor"] == 0          # the data was right
    reads = out["passes"] * words + (out["addr"] if out["phase"] else 0)
    if addrs is None:
        # every read response is an error (the reads of the pass under way
        # may still be in flight)
        assert reads - 8 <= out["errors"] <= reads
    else:
        assert out["passes"] <= out["errors"] <= out["passes"] + 1
    assert out["passes"] >= 2   # an error does not stop the test


def test_onchip_ram_random_stalls():
    """``req.ready`` low at random: still one pass after another, no errors,
    and the BIST's request holds while it waits (stream rules)."""
    words = 64
    ram = OnChipRAM(depth=words, data_width=16)
    bist = SDRAMBist(addr_width=ram.addr_width, data_width=16, words=words, seed=4)
    harness = _Harness(ram, bist, stall=True)
    state = {"held": None, "violations": 0}

    def on_cycle(ctx, i):
        valid = ctx.get(bist.port.req.valid)
        payload = ctx.get(bist.port.req.payload.as_value())
        if state["held"] is not None and (not valid or payload != state["held"]):
            state["violations"] += 1
        stalled = valid and not ctx.get(bist.port.req.ready)
        state["held"] = payload if stalled else None

    out = _run(harness, 8 * 2 * words, on_cycle=on_cycle)
    assert state["violations"] == 0
    assert out["errors"] == 0 and out["passes"] >= 3
    assert out["pass_cycles"] > 2 * words      # the stalls cost cycles


def test_enable():
    words = 64
    ram = OnChipRAM(depth=words, data_width=16)
    bist = SDRAMBist(addr_width=ram.addr_width, data_width=16, words=words, seed=4)
    harness = _Harness(ram, bist)
    counts = []

    async def tb(ctx):
        ctx.set(bist.en, 0)
        for _ in range(50):
            await ctx.tick()
        counts.append(ctx.get(bist.addr))
        ctx.set(bist.en, 1)
        for _ in range(2 * words + 20):
            await ctx.tick()
        counts.append(ctx.get(bist.passes))

    run_clocked(harness, tb)
    assert counts == [0, 1]


# -- SDRAM controller + pin-level model, cocotb -----------------------------------


#: The ULX3S chip shrunk to 256 rows of 64 words (64 Ki words, 4 banks), at the
#: board's 100 MHz, CL3, two I/O registers on the read path.
BOARD_LIKE = BistSimConfig(chip="IS42S16160", rows=256, columns=64, period_ns=10,
                           cas_latency=3, read_delay=2)


@pytest.mark.parametrize("testcase", runner.cocotb_tests("seedchip.sim.sdram_bist_tb"))
def test_selftest_on_sdram_model(sim, testcase):
    result = runner.run_cocotb(make_selftest, TOPLEVEL, "seedchip.sim.sdram_bist_tb", BOARD_LIKE,
                               sim=sim, testcase=testcase, tag=testcase)
    runner.check_cocotb(result)
    assert [c.name for c in result.cases] == [testcase]
