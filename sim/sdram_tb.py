"""cocotb tests of :class:`seedchip.rtl.sdram.SDRAMController` against the
pin-level model (:mod:`seedchip.sim.sdram_model`) and a reference of the
memory contents.

Run through :mod:`seedchip.sim.runner` (``tests/test_sdram.py`` does), which
passes an :class:`SDRAMSimConfig` in ``SEEDCHIP_CONFIG``. Every request goes
through a :class:`~seedchip.sim.tb.StreamSource` with random idle cycles, every
response through a :class:`~seedchip.sim.tb.StreamSink` with random
backpressure. The checks, in every test:

* every accepted request gets exactly one response, in order ("nothing lost",
  nothing extra);
* reads return the last write to the address in request order, masks
  honoured (bytes never written are not compared); ``err`` exactly for
  addresses outside the chip;
* the model's storage holds exactly what was written, where the documented
  address mapping puts it (nothing else was written);
* the model's timing checker stays silent.

The fault-injection tests (``test_fault_*``) turn a fault on and pass only if
the checks above catch it.

:func:`bench_sdram` is the throughput measurement behind
:mod:`seedchip.sim.sdram_bench` (no idle, no backpressure).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path

import cocotb

from seedchip.rtl.memport import req_layout, resp_layout
from seedchip.rtl.sdram import CHIPS, SDRAMController
from seedchip.sim.sdram_model import SDRAMModel
from seedchip.sim.tb import TB, LayoutCodec

__all__ = ["SDRAMSimConfig", "make_controller", "load_sdram_config", "SDRAMTB",
           "TOPLEVEL"]

TOPLEVEL = "seedchip_sdram"


# -- configuration ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SDRAMSimConfig:
    """What one simulation build of the controller is made of.

    ``init_delay_ns`` replaces the datasheet's power-up wait (100-200 us) to
    keep simulations short; None keeps the datasheet value. The clock period
    is an integer number of nanoseconds (the cocotb clock's unit).
    ``read_delay`` > 0 puts as many registers between the model's DQ and the
    controller's ``dq_i`` (a board's I/O registers).
    """

    chip: str = "IS42S16160"
    period_ns: int = 10
    cas_latency: int | None = None
    init_delay_ns: float | None = 5_000.0
    #: None: the controller's default, the most tRAS(max) allows
    postpone_max: int | None = None
    read_delay: int = 0

    def __post_init__(self):
        if self.chip not in CHIPS:
            raise ValueError(f"chip must be one of {', '.join(CHIPS)}, not {self.chip!r}")
        if not isinstance(self.period_ns, int) or self.period_ns < 2:
            raise ValueError(f"period_ns must be an integer >= 2, not {self.period_ns!r}")

    @property
    def clk_freq(self) -> float:
        return 1e9 / self.period_ns

    def sdram_chip(self):
        chip = CHIPS[self.chip]
        if self.init_delay_ns is not None:
            chip = dataclasses.replace(chip, init_delay=float(self.init_delay_ns))
        return chip

    @property
    def effective_postpone_max(self) -> int:
        """The postponement bound the controller really uses."""
        return make_controller(config=self).postpone_max

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SDRAMSimConfig":
        return cls(**json.loads(text))


def make_controller(*, config: SDRAMSimConfig) -> SDRAMController:
    """Component factory for :mod:`seedchip.sim.runner`."""
    return SDRAMController(chip=config.sdram_chip(), clk_freq=config.clk_freq,
                           cas_latency=config.cas_latency, read_delay=config.read_delay,
                           postpone_max=config.postpone_max)


def load_sdram_config() -> SDRAMSimConfig:
    text = os.environ.get("SEEDCHIP_CONFIG")
    if not text:
        raise RuntimeError("SEEDCHIP_CONFIG is not set: run this module through seedchip.sim.runner")
    return SDRAMSimConfig.from_json(text)


# -- the testbench ----------------------------------------------------------------------

@dataclasses.dataclass
class _Expect:
    index: int
    addr: int
    we: bool
    value: int          # expected read data (known bits only)
    known: int          # bit mask of the bits that are known
    err: bool


class SDRAMTB:
    """Controller + SDRAM model + reference memory.

    ``read(addr)`` / ``write(addr, data, mask)`` queue requests (the
    expectation of each response is computed at once: responses come in
    request order); ``drain()`` waits for every response; ``finish()`` runs
    the end-of-test checks and raises with a readable report.
    Mismatches are collected in ``errors`` (so that the fault-injection tests
    can assert them) and reported by ``finish()``.
    """

    def __init__(self, dut, *, config: SDRAMSimConfig | None = None, idle: float = 0.3,
                 backpressure: float = 0.3, seed: int | None = None, **model_kw):
        self.config = config or load_sdram_config()
        self.chip = chip = self.config.sdram_chip()
        self.tb = TB(dut, seed=seed, period_ns=self.config.period_ns)
        self.dut, self.rng, self.log = dut, self.tb.rng, self.tb.log
        self.dw = chip.data_width
        self.nbytes = self.dw // 8
        self.aw = len(dut.port__req__payload) - 1 - self.dw - self.nbytes
        self.cb, self.bb, self.rb = chip.col_bits, chip.bank_bits, chip.row_bits
        # Retention window of 48 tREFI with 32 refreshes per window: a
        # controller refreshing every tREFI, postponing up to 8, keeps every
        # row; one that stops refreshing loses data within a test.
        kw = dict(retention_ns=48 * chip.tREFI, refreshes_per_window=32,
                  refresh_postpone_max=self.config.effective_postpone_max, seed=self.tb.seed)
        kw.update(model_kw)
        self.model = SDRAMModel(chip=chip, clk_period_ns=self.config.period_ns, **kw)
        # the board's input registers, which the controller's read_delay covers
        self.model.attach(dut, idle="junk", input_delay=self.config.read_delay)
        self.req_codec = LayoutCodec(req_layout(self.aw, self.dw))
        self.resp_codec = LayoutCodec(resp_layout(self.dw))
        self.idle, self.backpressure = idle, backpressure
        self.ref: dict[int, tuple[int, int]] = {}     # addr -> (value, known bits)
        self.pending: collections.deque[_Expect] = collections.deque()
        self.sent = 0
        self.checked = 0
        self.errors: list[str] = []
        self.words_mask = (1 << self.dw) - 1
        #: a fault-injection test: mismatches are expected (logged as info)
        self.faults_injected = bool(model_kw.get("read_latency_extra"))
        self._monitor = None
        self._new_streams()

    def _new_streams(self):
        self.req = self.tb.source("port__req", idle=self.idle)
        self.resp = self.tb.sink("port__resp", backpressure=self.backpressure)
        self._resp_base = 0
        if self._monitor is not None:
            self._monitor.cancel()
        self._monitor = cocotb.start_soon(self._check_responses())

    async def start(self):
        await self.tb.reset()

    # -- addresses -------------------------------------------------------------------
    def addr(self, bank: int, row: int, col: int) -> int:
        """Port word address of (bank, row, col): the controller's documented
        mapping ``{row, bank, col}``."""
        return (row << (self.cb + self.bb)) | (bank << self.cb) | col

    def loc(self, addr: int) -> tuple[int, int, int]:
        col = addr & ((1 << self.cb) - 1)
        bank = (addr >> self.cb) & ((1 << self.bb) - 1)
        row = addr >> (self.cb + self.bb)
        return bank, row, col

    def in_range(self, addr: int) -> bool:
        return 0 <= addr < self.chip.words

    def sweep_rows(self, extra: int = 2) -> list[int]:
        """A handful of rows: both ends, the middle, a few random ones."""
        rows = {0, 1, self.chip.rows // 2, self.chip.rows - 2, self.chip.rows - 1}
        rows |= {int(r) for r in self.rng.integers(0, self.chip.rows, extra)}
        return sorted(rows)

    def random_addr(self, rows=None, *, out_of_range: float = 0.0) -> int:
        if out_of_range and self.rng.random() < out_of_range:
            return int(self.rng.integers(self.chip.words, 1 << self.aw))
        rows = rows or self.sweep_rows(0)
        row = int(rows[self.rng.integers(len(rows))])
        bank = int(self.rng.integers(self.chip.banks))
        c = int(self.rng.integers(4))
        # columns: both ends of the page more often than their share
        col = (0, self.chip.columns - 1, int(self.rng.integers(self.chip.columns)),
               int(self.rng.integers(self.chip.columns)))[c]
        return self.addr(bank, row, col)

    # -- requests ----------------------------------------------------------------------
    def _byte_bits(self, mask: int) -> int:
        return sum(0xFF << (8 * i) for i in range(self.nbytes) if (mask >> i) & 1)

    def write(self, addr: int, data: int, mask: int | None = None):
        mask = (1 << self.nbytes) - 1 if mask is None else mask
        err = not self.in_range(addr)
        if not err:
            bits = self._byte_bits(mask)
            old, known = self.ref.get(addr, (0, 0))
            self.ref[addr] = ((old & ~bits) | (data & bits), known | bits)
        self._send(_Expect(self.sent, addr, True, 0, 0, err),
                   {"addr": addr, "we": 1, "wdata": data, "mask": mask})

    def read(self, addr: int):
        err = not self.in_range(addr)
        value, known = (0, 0) if err else self.ref.get(addr, (0, 0))
        self._send(_Expect(self.sent, addr, False, value, known, err),
                   {"addr": addr, "we": 0,
                    # junk in the unused fields: the controller must ignore it
                    "wdata": int(self.rng.integers(1 << self.dw)),
                    "mask": int(self.rng.integers(1 << self.nbytes))})

    def random_request(self, rows=None, *, p_write=0.5, out_of_range=0.0):
        addr = self.random_addr(rows, out_of_range=out_of_range)
        if self.rng.random() < p_write:
            mask = int(self.rng.integers(1 << self.nbytes))
            if self.rng.random() < 0.5:
                mask = (1 << self.nbytes) - 1
            self.write(addr, int(self.rng.integers(1 << self.dw)), mask)
        else:
            self.read(addr)

    def _send(self, exp: _Expect, payload: dict):
        self.pending.append(exp)
        self.sent += 1
        self.req.send_nowait(self.req_codec.pack(payload))

    # -- responses ---------------------------------------------------------------------
    def _error(self, msg: str):
        self.errors.append(msg)
        if len(self.errors) <= 10:
            if self.faults_injected:
                self.log.info("(expected: fault injected) %s", msg)
            else:
                self.log.error("%s", msg)

    async def _check_responses(self):
        resp = self.resp
        while True:
            await resp.wait_for(self._resp_base + 1)
            beat = self.resp_codec.unpack(resp.beats[self._resp_base])
            self._resp_base += 1
            cyc = resp.accept_cycles[self._resp_base - 1]
            if not self.pending:
                self._error(f"cycle {cyc}: response {beat} with no request outstanding")
                continue
            exp = self.pending.popleft()
            self.checked += 1
            what = (f"request #{exp.index} ({'write' if exp.we else 'read'} addr {exp.addr:#x} "
                    f"= bank/row/col {self.loc(exp.addr)}), response at cycle {cyc}")
            if bool(beat["err"]) != exp.err:
                self._error(f"{what}: err={beat['err']}, expected {int(exp.err)}")
            elif not exp.we and not exp.err:
                got = beat["rdata"]
                diff = (got ^ exp.value) & exp.known
                if diff:
                    self._error(f"{what}: read {got:#0{self.dw // 4 + 2}x}, expected "
                                f"{exp.value:#0{self.dw // 4 + 2}x} (known bits "
                                f"{exp.known:#x}); differs in bits {diff:#x}")

    async def drain(self, *, stall_cycles: int | None = None):
        """Wait until every request got its response. Fails (records an error)
        if no response arrives for ``stall_cycles`` (default: 3 refresh
        intervals plus the init wait) while some are outstanding."""
        t = self.chip.cycles(self.config.clk_freq)
        limit = stall_cycles or 3 * t.tREFI + t.init + 2000
        last, quiet = self.checked, 0
        while self.pending:
            await self.tb.edge
            if self.checked != last:
                last, quiet = self.checked, 0
                continue
            quiet += 1
            if quiet > limit:
                self._error(f"{len(self.pending)} of {self.sent} request(s) never got a response "
                            f"(first: #{self.pending[0].index} addr {self.pending[0].addr:#x}; "
                            f"{self.req.pending} not even accepted)")
                self.pending.clear()
                return

    async def run(self, n: int, **kw):
        for _ in range(n):
            self.random_request(**kw)
        await self.drain()

    # -- end-of-test checks --------------------------------------------------------------
    def storage_errors(self) -> list[str]:
        """The model's storage against the reference: every known byte where
        the mapping says, and nothing written anywhere else."""
        errs = []
        contents = self.model.contents()
        for addr, (value, known) in self.ref.items():
            stored = contents.get(self.loc(addr))
            if stored is None:
                if known:
                    errs.append(f"addr {addr:#x} {self.loc(addr)}: never written in the SDRAM")
            elif (stored ^ value) & known:
                errs.append(f"addr {addr:#x} {self.loc(addr)}: SDRAM holds {stored:#x}, "
                            f"expected {value:#x} (known bits {known:#x})")
        for (bank, row, col) in contents:
            if self.addr(bank, row, col) not in self.ref:
                errs.append(f"bank {bank} row {row:#x} col {col:#x} written, but no request "
                            f"wrote port address {self.addr(bank, row, col):#x}")
        return errs

    async def finish(self, *, extra_cycles: int = 64, storage: bool = True):
        await self.drain()
        n = self.checked
        await self.tb.cycles(extra_cycles)
        if self.checked != n or len(self.resp.beats) != self._resp_base:
            self._error("response(s) after the last request was answered")
        errs = list(self.errors)
        if storage:
            errs += self.storage_errors()
        model_report = ""
        try:
            self.model.check()
        except AssertionError as e:
            model_report = str(e)
        if errs or model_report:
            lines = [f"seed={self.tb.seed}; {self.checked}/{self.sent} responses checked"]
            lines += [f"{len(errs)} data/protocol error(s):"] + errs[:20] if errs else []
            if model_report:
                lines.append(model_report)
            raise AssertionError("\n".join(lines))
        self.log.info("%d requests, %d responses checked; model: %s; commands %s; "
                      "smallest timing margins (ns) %s",
                      self.sent, self.checked, self.model.report(),
                      dict(self.model.command_counts),
                      {r: round(v, 1) for r, v in sorted(self.model.min_slack.items())})

    # -- reset -----------------------------------------------------------------------------
    async def reset_now(self, cycles: int = 4):
        """Assert the controller's reset now, whatever is in flight. Requests
        without a response are forfeited; the addresses of such writes become
        unknown in the reference."""
        for task in (self.req._task, self.resp._task, self._monitor):
            task.cancel()
        self._monitor = None
        self.dut.port__req__valid.value = 0
        self.dut.port__resp__ready.value = 0
        for exp in self.pending:
            if exp.we and not exp.err:
                self.ref[exp.addr] = (0, 0)
        self.pending.clear()
        self.model.controller_reset()
        await self.tb.reset(cycles)
        self._new_streams()

    async def wait_init(self):
        while not self.dut.init_done.value:
            await self.tb.edge


def _rng_rows(t: SDRAMTB):
    return t.sweep_rows(3)


# -- tests --------------------------------------------------------------------------------

@cocotb.test()
async def test_random(dut):
    """Random reads/writes, random masks, a handful of rows per bank + extremes."""
    t = SDRAMTB(dut)
    await t.start()
    rows = _rng_rows(t)
    await t.run(1500, rows=rows)
    t.tb.set_traffic(idle=0.0, backpressure=0.0)
    await t.run(1000, rows=rows)
    t.tb.set_traffic(idle=0.7, backpressure=0.7)
    await t.run(300, rows=rows)
    # responses nearly stalled: reads must wait for room, never be dropped
    t.tb.set_traffic(idle=0.0, backpressure=0.95)
    await t.run(300, rows=rows)
    await t.finish()


@cocotb.test()
async def test_row_thrash(dut):
    """Same bank, a different row every access (row miss every time)."""
    t = SDRAMTB(dut, idle=0.1, backpressure=0.1)
    await t.start()
    rows = _rng_rows(t)
    for bank in range(t.chip.banks):
        for i in range(120):
            row = rows[i % len(rows)]
            a = t.addr(bank, row, int(t.rng.integers(t.chip.columns)))
            if i % 3 == 2:
                t.read(a)
            else:
                t.write(a, int(t.rng.integers(1 << t.dw)))
    await t.drain()
    # ping-pong two rows of one bank with reads of what was just written
    for i in range(200):
        a = t.addr(1, rows[i % 2], i % 7)
        t.write(a, i)
        t.read(a)
    await t.drain()
    # a row open long past tRAS, a WRITE, then a miss in the same bank: the
    # PRECHARGE waits for write recovery (tWR) alone
    t.tb.set_traffic(idle=0.0, backpressure=0.0)
    for i in range(60):
        bank = i % t.chip.banks
        r0, r1 = rows[i % len(rows)], rows[(i + 1) % len(rows)]
        for c in range(8):
            t.read(t.addr(bank, r0, c))
        t.write(t.addr(bank, r0, 8 + i % 8), int(t.rng.integers(1 << t.dw)),
                int(t.rng.integers(1 << t.nbytes)))
        t.read(t.addr(bank, r1, i))
        if i % 4 == 0:
            await t.drain()
    await t.finish()


@cocotb.test()
async def test_page_hits(dut):
    """Long streams within pages: writes, then reads, then read/write mixed."""
    t = SDRAMTB(dut, idle=0.0, backpressure=0.0)
    await t.start()
    cols = t.chip.columns
    base = t.addr(2, 5, 0)
    for i in range(2 * cols):
        t.write(base + i, (i * 0x01010101 + 0x5A) & t.words_mask)
    for i in range(2 * cols):
        t.read(base + i)
    await t.drain()
    t.tb.set_traffic(idle=0.2, backpressure=0.2)
    for i in range(2 * cols):
        if i % 2:
            t.read(base + i - 1)
        else:
            t.write(base + i, int(t.rng.integers(1 << t.dw)), int(t.rng.integers(1 << t.nbytes)))
    await t.finish()


@cocotb.test()
async def test_strides(dut):
    """Strides of one page (next bank, same row) and of one page per bank
    (next row, same bank), each direction, crossing the top of memory."""
    t = SDRAMTB(dut, idle=0.2, backpressure=0.2)
    await t.start()
    page = t.chip.columns
    for stride in (page, page * t.chip.banks, page * t.chip.banks + 1, -page):
        start = int(t.rng.integers(t.chip.words))
        addrs = [(start + i * stride) % t.chip.words for i in range(64)]
        for a in addrs:
            t.write(a, int(t.rng.integers(1 << t.dw)))
        for a in addrs[::-1]:
            t.read(a)
        await t.drain()
    top = t.chip.words - 1
    for a in (0, top, 1, top - 1, top - page, page - 1):
        t.write(a, a & t.words_mask)
        t.read(a)
    await t.finish()


@cocotb.test()
async def test_write_read_same_address(dut):
    """Write then read of the same word at minimum spacing, masks included;
    read-write-read; two writes then a read."""
    t = SDRAMTB(dut, idle=0.0, backpressure=0.0)
    await t.start()
    rows = _rng_rows(t)
    full = (1 << t.nbytes) - 1
    for i in range(300):
        a = t.random_addr(rows)
        kind = i % 4
        if kind == 0:
            t.write(a, int(t.rng.integers(1 << t.dw)))
            t.read(a)
        elif kind == 1:
            t.read(a)
            t.write(a, int(t.rng.integers(1 << t.dw)), int(t.rng.integers(1, full + 1)))
            t.read(a)
        elif kind == 2:
            t.write(a, int(t.rng.integers(1 << t.dw)))
            t.write(a, int(t.rng.integers(1 << t.dw)), int(t.rng.integers(full + 1)))
            t.read(a)
        else:
            t.write(a, int(t.rng.integers(1 << t.dw)), 0)     # mask 0: writes nothing
            t.read(a)
    await t.drain()
    t.tb.set_traffic(idle=0.3, backpressure=0.5)
    for i in range(300):
        a = t.random_addr(rows)
        t.write(a, i)
        t.read(a)
    await t.finish()


@cocotb.test()
async def test_long_idle(dut):
    """Idle gaps longer than the refresh interval; data must survive two
    retention windows of the model (48 tREFI each) with refresh alone."""
    t = SDRAMTB(dut)
    await t.start()
    rows = _rng_rows(t)
    tim = t.chip.cycles(t.config.clk_freq)
    await t.run(200, rows=rows)
    for gap in (tim.tREFI + 17, 3 * tim.tREFI, 2 * tim.tREFI + 1):
        await t.tb.cycles(int(gap))
        await t.run(50, rows=rows)
    refs0 = t.model.command_counts["REFRESH"]
    window = t.model.retention_ns / t.config.period_ns
    await t.tb.cycles(int(2.2 * window))
    got = t.model.command_counts["REFRESH"] - refs0
    need = int(2.2 * window) // tim.tREFI
    t.tb.check(got >= need - 1, f"{got} refreshes in {int(2.2 * window)} idle cycles, "
                                f"expected at least {need - 1}")
    for a in list(t.ref):
        t.read(a)
    await t.finish()


@cocotb.test()
async def test_saturated(dut):
    """Requests never stop for 25 refresh intervals: refreshes are postponed
    (at most ``postpone_max``) but never skipped. First 12 intervals of
    traffic to bank 0 only while rows sit open in the other banks (tRAS max),
    then page-hit streams and random rows alternating."""
    t = SDRAMTB(dut, idle=0.0, backpressure=0.0)
    await t.start()
    await t.wait_init()
    rows = _rng_rows(t)
    tim = t.chip.cycles(t.config.clk_freq)
    refs0 = t.model.command_counts["REFRESH"]
    t0 = t.tb.cycle()
    for bank in range(1, t.chip.banks):
        t.read(t.addr(bank, rows[bank % len(rows)], 0))
    end = t0 + 12 * tim.tREFI
    while t.tb.cycle() < end:
        if t.req.pending < 32:
            for i in range(64):
                row = rows[int(t.rng.integers(len(rows)))] if i % 16 == 0 else rows[0]
                a = t.addr(0, row, int(t.rng.integers(t.chip.columns)))
                if t.rng.random() < 0.5:
                    t.write(a, int(t.rng.integers(1 << t.dw)))
                else:
                    t.read(a)
        await t.tb.edge
    end = t0 + 25 * tim.tREFI
    base = 0
    while t.tb.cycle() < end:
        if t.req.pending < 32:
            if (t.tb.cycle() // 2000) % 2:
                for _ in range(64):
                    t.random_request(rows)
            else:
                for i in range(64):
                    a = (base + i) % t.chip.words
                    if i % 4 == 3:
                        t.read(a - 1)
                    else:
                        t.write(a, int(t.rng.integers(1 << t.dw)))
                base += 64
        await t.tb.edge
    await t.drain()
    got = t.model.command_counts["REFRESH"] - refs0
    t.tb.check(got >= 25 - t.config.effective_postpone_max - 1,
               f"only {got} refreshes in 25 refresh intervals of saturated traffic")
    await t.finish()


@cocotb.test()
async def test_reset_mid_burst(dut):
    """Reset while reads and writes are on the pins; the controller re-inits
    and serves everything after the reset (data written before survives)."""
    t = SDRAMTB(dut, idle=0.1, backpressure=0.1)
    await t.start()
    rows = _rng_rows(t)
    await t.run(100, rows=rows)
    for _ in range(3):
        for _ in range(200):
            t.random_request(rows)
        # until a read burst is in flight on the pins, some way into the traffic
        n = t.checked + int(t.rng.integers(20, 120))
        while (t.checked < n or not t.model.rbursts) and t.pending:
            await t.tb.edge
        t.log.info("reset at cycle %d with %d request(s) outstanding", t.tb.cycle(), len(t.pending))
        await t.reset_now(int(t.rng.integers(1, 6)))
        await t.run(300, rows=rows)
    await t.finish()


@cocotb.test()
async def test_out_of_range(dut):
    """Addresses outside the chip get err and touch nothing: no command on
    the pins, the SDRAM's contents unchanged; mixed with valid requests, the
    order holds."""
    t = SDRAMTB(dut)
    await t.start()
    rows = _rng_rows(t)
    await t.run(200, rows=rows)
    await t.tb.cycles(50)
    before = dict(t.model.contents())
    counts = dict(t.model.command_counts)
    top = 1 << t.aw
    for a in (t.chip.words, top - 1, t.chip.words + 1,
              *(int(x) for x in t.rng.integers(t.chip.words, top, 100))):
        if t.rng.random() < 0.5:
            t.write(a, int(t.rng.integers(1 << t.dw)))
        else:
            t.read(a)
    await t.drain()
    await t.tb.cycles(20)
    t.tb.check(t.model.contents() == before, "an out-of-range request changed the SDRAM")
    for cmd in ("ACTIVE", "READ", "WRITE"):
        t.tb.check(t.model.command_counts.get(cmd, 0) == counts.get(cmd, 0),
                   f"out-of-range requests issued {cmd} command(s)")
    await t.run(600, rows=rows, out_of_range=0.2)
    await t.finish()


@cocotb.test()
async def test_fault_flipped_bit(dut):
    """Fault injection: a bit flipped in the SDRAM must make the read check fail."""
    t = SDRAMTB(dut)
    await t.start()
    rows = _rng_rows(t)
    await t.run(100, rows=rows)
    a = t.addr(3, rows[-1], 7)
    t.write(a, 0x1234 & t.words_mask)
    await t.drain()
    t.tb.check(t.model.peek(t.loc(a)) == 0x1234 & t.words_mask,
               f"word not where the documented mapping puts it: {t.loc(a)}")
    bit = int(t.rng.integers(t.dw))
    t.faults_injected = True
    t.model.flip_bit(t.loc(a), bit)
    t.read(a)
    await t.drain()
    t.tb.check(len(t.errors) == 1 and f"differs in bits {1 << bit:#x}" in t.errors[0],
               f"the flipped bit {bit} was not reported exactly once: {t.errors}")
    t.tb.check(any("SDRAM holds" in e for e in t.storage_errors()),
               "the storage comparison missed the flipped bit")
    t.model.check()


@cocotb.test()
async def test_fault_late_read(dut):
    """Fault injection: read data one cycle late must make the read check fail."""
    t = SDRAMTB(dut, read_latency_extra=1, idle=0.0, backpressure=0.0)
    await t.start()
    rows = _rng_rows(t)
    addrs = [t.random_addr(rows) for _ in range(20)]
    for i, a in enumerate(addrs):
        t.write(a, (0x9000 + i * 0x111) & t.words_mask)
    await t.drain()
    for a in addrs:
        t.read(a)
        await t.drain()     # one isolated read at a time: the bus is junk around it
    bad = sum("differs in bits" in e for e in t.errors)
    t.tb.check(bad >= len(set(addrs)) - 1,
               f"only {bad} of {len(addrs)} late reads were reported: {t.errors[:3]}")


# -- throughput ------------------------------------------------------------------------------

class _Counters:
    """The controller's event counters, read between phases of a test."""
    NAMES = ("row_hits", "row_misses", "activates", "refreshes")

    def __init__(self, dut):
        self.dut = dut
        self.base = self.read()

    def read(self) -> dict[str, int]:
        return {n: int(getattr(self.dut, n).value) for n in self.NAMES}

    def delta(self) -> dict[str, int]:
        now = self.read()
        d = {n: now[n] - self.base[n] for n in self.NAMES}
        self.base = now
        return d


async def _after_refresh(t: SDRAMTB):
    """Wait for the next AUTO REFRESH and its tRP + tRFC: rows are all closed
    then, and no other refresh is due for almost a tREFI (the queue was
    empty, so none was postponed)."""
    start = int(t.dut.refreshes.value)
    while int(t.dut.refreshes.value) == start:
        await t.tb.edge
    tim = t.chip.cycles(t.config.clk_freq)
    await t.tb.cycles(tim.tRP + tim.tRFC + 4)


@cocotb.test()
async def test_counters(dut):
    """``row_hits``, ``row_misses``, ``activates`` and ``refreshes`` against
    what the traffic must produce. Each phase starts right after a refresh
    (every row closed) and is short enough to end before the next one:

    * one bank, two rows alternating: every access opens its row (a miss,
      an ACTIVATE each);
    * one row of one bank: the first access opens it, the rest hit;
    * a row in every bank, round robin: one miss and ACTIVATE per bank;
    * out-of-range requests (``err``): no command, not counted.

    ``refreshes`` must equal the AUTO REFRESH commands the pin-level model saw
    after init, ``activates`` the ACTIVATE commands it saw.
    """
    t = SDRAMTB(dut, idle=0.0, backpressure=0.0)
    await t.start()
    await t.wait_init()
    ctr = _Counters(dut)
    rows = t.sweep_rows(0)
    r0, r1 = rows[1], rows[2]
    expect = []

    # row misses: each access of a bank goes to the other row
    await _after_refresh(t)
    ctr.delta()
    n = 24
    for i in range(n):
        a = t.addr(1, (r0, r1)[i % 2], i)
        t.write(a, i) if i % 3 else t.read(a)
    await t.drain()
    expect.append(("row thrash", ctr.delta(), {"row_hits": 0, "row_misses": n, "activates": n}))

    # row hits: one open row, consecutive columns, reads and writes
    await _after_refresh(t)
    ctr.delta()
    n = 64
    for i in range(n):
        a = t.addr(2, r1, i)
        t.write(a, i) if i % 2 else t.read(a)
    await t.drain()
    expect.append(("page hits", ctr.delta(), {"row_hits": n - 1, "row_misses": 1, "activates": 1}))

    # every bank, its own row, round robin: a miss per bank, then hits
    await _after_refresh(t)
    ctr.delta()
    per_bank = 12
    for i in range(per_bank):
        for bank in range(t.chip.banks):
            a = t.addr(bank, rows[bank % len(rows)], i)
            t.write(a, i) if (i + bank) % 2 else t.read(a)
    await t.drain()
    nb = t.chip.banks
    expect.append(("banks round robin", ctr.delta(),
                   {"row_hits": nb * (per_bank - 1), "row_misses": nb, "activates": nb}))

    # err requests: no SDRAM command, neither a hit nor a miss
    await _after_refresh(t)
    ctr.delta()
    for i in range(16):
        a = t.chip.words + i
        t.write(a, i) if i % 2 else t.read(a)
    await t.drain()
    expect.append(("out of range", ctr.delta(), {"row_hits": 0, "row_misses": 0, "activates": 0}))

    await t.finish()
    for what, got, want in expect:
        got = {k: got[k] for k in want}
        if got != want:
            t._error(f"{what}: counters {got}, expected {want}")
    # The model sees a command an edge after the counter counts it: look twice.
    for _ in range(2):
        seen = t.model.command_counts
        total = ctr.read()
        want = {"refreshes": seen["REFRESH"] - t.chip.init_refreshes,
                "activates": seen["ACTIVE"]}
        got = {k: total[k] for k in want}
        if got == want:
            break
        await t.tb.cycles(4)
    else:
        t._error(f"counters {got}, the model saw {want}")
    if t.errors:
        raise AssertionError("\n".join(t.errors))
    t.log.info("counters: %s", total)


def _bench_patterns(t: SDRAMTB, n_words: int):
    """(name, list of (we, addr)) for the benchmark."""
    rng, words = t.rng, t.chip.words
    bpw = t.nbytes
    pats = [("seq_read", [(0, a) for a in range(n_words)]),
            ("seq_write", [(1, a) for a in range(n_words)])]
    for nbytes in (32, 64):
        n = max(1, nbytes // bpw)
        starts = rng.integers(0, words // n, n_words // n) * n
        pats.append((f"rand_read_{nbytes}B", [(0, int(s) + i) for s in starts for i in range(n)]))
    n = max(1, 32 // bpw)
    starts = rng.integers(0, words // n, n_words // n) * n
    pats.append(("rand_write_32B", [(1, int(s) + i) for s in starts for i in range(n)]))
    starts = rng.integers(0, words // n, n_words // n) * n
    we = rng.integers(0, 2, len(starts))
    pats.append(("mixed_32B", [(int(w), int(s) + i) for s, w in zip(starts, we) for i in range(n)]))
    pats.append(("rand_read_word", [(0, int(a)) for a in rng.integers(0, words, n_words // 4)]))
    return pats


@cocotb.test()
async def bench_sdram(dut):
    """Throughput of access patterns, no idle, no backpressure, as a fraction
    of the pin peak (one word per clock); results to ``sdram_bench.json`` in the
    run directory."""
    n_words = int(os.environ.get("SDRAM_BENCH_WORDS", "4096"))
    t = SDRAMTB(dut, idle=0.0, backpressure=0.0)
    await t.start()
    await t.wait_init()
    results = []
    # latency of one read in an idle controller (row closed, then open)
    for label in ("read_latency_row_miss", "read_latency_row_hit"):
        await t.tb.cycles(20)
        t.read(t.addr(1, 3, 5))
        c0 = len(t.req.accept_cycles)
        r0 = len(t.resp.accept_cycles)
        await t.drain()
        lat = t.resp.accept_cycles[r0] - t.req.accept_cycles[c0]
        results.append({"pattern": label, "cycles": int(lat)})
    for name, reqs in _bench_patterns(t, n_words):
        await t.tb.cycles(20)
        a0, r0 = len(t.req.accept_cycles), len(t.resp.accept_cycles)
        refs0, acts0 = t.model.command_counts["REFRESH"], t.model.command_counts["ACTIVE"]
        for we, a in reqs:
            if we:
                t.write(a, int(t.rng.integers(1 << t.dw)))
            else:
                t.read(a)
        await t.drain()
        cycles = t.resp.accept_cycles[-1] - t.req.accept_cycles[a0] + 1
        words = len(reqs)
        results.append({
            "pattern": name, "words": words, "cycles": int(cycles),
            "efficiency": round(words / cycles, 4),
            "mbytes_per_s": round(words * t.nbytes * t.config.clk_freq / cycles / 1e6, 1),
            "activates": t.model.command_counts["ACTIVE"] - acts0,
            "refreshes": t.model.command_counts["REFRESH"] - refs0,
        })
        t.log.info("%-16s %6d words %7d cycles  %5.1f%% of peak", name, words, cycles,
                   100 * words / cycles)
    out = {"chip": t.chip.name, "data_width": t.dw, "clk_mhz": round(t.config.clk_freq / 1e6, 3),
           "cas_latency": t.model.mode["cl"] if t.model.mode else None,
           "peak_mbytes_per_s": round(t.nbytes * t.config.clk_freq / 1e6, 1),
           "results": results}
    run_dir = Path(os.environ.get("SEEDCHIP_RUN_DIR", "."))
    (run_dir / "sdram_bench.json").write_text(json.dumps(out, indent=2) + "\n")
    await t.finish(storage=False)
