"""cocotb tests of :class:`seedchip.rtl.gather.GatherEngine` against
:class:`seedchip.sim.emb_golden.GatherModel`, on two memory backends.

Run through :mod:`seedchip.sim.runner` (``tests/test_gather.py`` does), which
passes a :class:`GatherSimConfig` in ``SEEDCHIP_CONFIG``. The simulated top
(:class:`GatherSimTop`) is the engine plus either

* ``onchip``: :class:`~seedchip.rtl.onchip_ram.OnChipRAM` behind a
  :class:`~seedchip.rtl.arbiter.MemArbiter` whose second port (``load``) lets
  the testbench write the tables, or
* ``sdram``: :class:`~seedchip.rtl.sdram.SDRAMController` (built by
  :func:`seedchip.sim.sdram_tb.make_controller`) driving the pin-level
  :class:`~seedchip.sim.sdram_model.SDRAMModel`, whose storage the testbench
  fills directly. The model's timing checker must stay silent.

Checks in every test (:class:`GatherTB`):

* an **address monitor** on the engine's ``mem.req``: every request is a
  read inside the extent of the table the golden model says it belongs to
  (fails at once otherwise), is the very address the golden model expects
  next, and ``mem.req`` keeps the stream rules;
* "nothing lost": exactly one output per bag the golden model emits, in
  order, ``ceil(dim / lanes)`` beats with ``last`` on the final one and
  ``batch_last`` on the batch's final bag, bit-exact, padding lanes 0;
* every input item the batch must consume is consumed, and no more;
* ``error``/``error_bag``/``error_index`` and the ``clamped``/``skipped``/
  ``lookups`` counters equal the golden model's after every batch; ``busy``
  falls;
* a **status monitor** (:class:`StatusMonitor`): every cycle ``cycles``
  grows by exactly ``busy``; ``busy`` is high the cycle after a command is
  taken and whenever an output beat is offered.

:func:`bench_gather` is the throughput measurement behind
:mod:`seedchip.sim.gather_bench` (no idle, no backpressure).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, SimTimeoutError, with_timeout

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from seedchip.emb_protocol import (BagLayout, BoundsMode, CmdLayout, GatherError, PoolMode,
                                   desc_layout, index_layout, pooled_layout)
from seedchip.gather_params import GatherParams
from seedchip.rtl.arbiter import MemArbiter
from seedchip.rtl.gather import GatherEngine
from seedchip.rtl.memport import MemPortSignature, req_layout, resp_layout
from seedchip.rtl.onchip_ram import OnChipRAM
from seedchip.rtl.sdram import CHIPS, SDRAMPinSignature
from seedchip.sim.emb_golden import (Cmd, GatherModel, TableDesc, cache_line, layout_tables,
                                     make_bag_items)
from seedchip.sim.sdram_model import SDRAMModel
from seedchip.sim.sdram_tb import SDRAMSimConfig, make_controller
from seedchip.sim.tb import TB, LayoutCodec

__all__ = ["SIM_PARAMS", "GatherSimConfig", "GatherSimTop", "make_top", "load_gather_config", "GatherTB",
           "AddressMonitor", "StatusMonitor", "TOPLEVEL", "random_tables", "random_batch", "random_cmd",
           "zipf_indices"]

TOPLEVEL = "seedchip_gather"

_EMB_PROTOCOL = Path(__file__).resolve().parent.parent / "emb_protocol.py"


# -- configuration -----------------------------------------------------------------

#: The engine a simulation runs unless told otherwise: 32-bit words, one word
#: per beat, no cache.
SIM_PARAMS = GatherParams(data_width=32, lanes=4, cache_rows=0, n_tables=4, max_dim=72,
                          max_bag=20, inflight=32)


@dataclasses.dataclass(frozen=True)
class GatherSimConfig:
    """One simulation build: the engine (``params``) and the memory backend.

    ``params`` come bound to the backend's memory (:meth:`GatherParams.with_memory`,
    on construction): ``onchip``: ``ram_depth`` words of block RAM
    ``params.data_width`` wide, addresses one bit wider than the RAM needs (so
    a table may run past the RAM and get ``err``). ``sdram``: the chip's width
    and addresses (one bit more than the chip),
    ``period_ns``/``cas_latency``/``init_delay_ns`` as
    :class:`~seedchip.sim.sdram_tb.SDRAMSimConfig`.
    """

    backend: str = "onchip"
    ram_depth: int = 4096
    chip: str = "IS42S16160"
    period_ns: int = 7
    cas_latency: int | None = 3
    #: registers between the SDRAM's DQ and the controller (the board's I/O
    #: registers; the controller's ``read_delay``)
    read_delay: int = 0
    init_delay_ns: float | None = 5_000.0
    params: GatherParams = SIM_PARAMS

    def __post_init__(self):
        if self.backend not in ("onchip", "sdram"):
            raise ValueError(f"backend must be 'onchip' or 'sdram', not {self.backend!r}")
        if not isinstance(self.params, GatherParams):
            raise TypeError(f"params must be a GatherParams, not {self.params!r}")
        if self.backend == "sdram":
            chip = CHIPS[self.chip]
            width, addr_width = chip.data_width, chip.addr_width + 1
        else:
            width = self.params.data_width
            addr_width = max(1, ceil_log2(self.ram_depth)) + 1
        # frozen: the bound parameters replace the given ones once, here
        object.__setattr__(self, "params",
                           self.params.with_memory(data_width=width, addr_width=addr_width))

    @property
    def sdram(self) -> SDRAMSimConfig:
        return SDRAMSimConfig(chip=self.chip, period_ns=self.period_ns,
                              cas_latency=self.cas_latency, read_delay=self.read_delay,
                              init_delay_ns=self.init_delay_ns)

    @property
    def width(self) -> int:
        """The memory's word width (``params.data_width``)."""
        return self.params.data_width

    @property
    def addr_width(self) -> int:
        """The memory's word address width (``params.addr_width``)."""
        return self.params.addr_width

    @property
    def mem_words(self) -> int:
        return CHIPS[self.chip].words if self.backend == "sdram" else self.ram_depth

    @property
    def clk_period_ns(self) -> int:
        return self.period_ns if self.backend == "sdram" else 10

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        # The runner regenerates Verilog when rtl/ or this module changes; the
        # wire formats live in emb_protocol.py, so its digest joins the key.
        d["emb_protocol_sha"] = hashlib.sha256(_EMB_PROTOCOL.read_bytes()).hexdigest()[:12]
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GatherSimConfig":
        d = json.loads(text)
        d.pop("emb_protocol_sha", None)
        return cls(**{**d, "params": GatherParams.from_dict(d["params"])})


class GatherSimTop(wiring.Component):
    """The engine with its memory, for simulation.

    Ports: the engine's streams and status (same names), ``mon_*`` copies of
    the engine's memory port handshake (for the address monitor), and either
    ``load`` (a second memory port, ``onchip``) or ``pins``/``init_done``
    (``sdram``).
    """

    def __init__(self, config: GatherSimConfig):
        self.config = config
        self.engine = GatherEngine(config.params)
        e = self.engine
        aw, dw = config.addr_width, config.width
        members = {
            "desc": In(stream.Signature(e.desc_layout)),
            "cmd": In(stream.Signature(CmdLayout)),
            "bags": In(stream.Signature(BagLayout)),
            "indices": In(stream.Signature(e.index_layout)),
            "pooled": Out(stream.Signature(e.pooled_layout)),
            "clear": In(1),
            "busy": Out(1),
            "error": Out(GatherError),
            "error_bag": Out(32),
            "error_index": Out(32),
            "clamped": Out(32),
            "skipped": Out(32),
            "lookups": Out(32),
            "cycles": Out(32),
            "cache_clear": In(1),
            "cache_hits": Out(32),
            "cache_misses": Out(32),
            "mon_req_valid": Out(1),
            "mon_req_ready": Out(1),
            "mon_req": Out(req_layout(aw, dw)),
            "mon_resp_valid": Out(1),
            "mon_resp_ready": Out(1),
            "mon_resp_err": Out(1),
        }
        if config.backend == "onchip":
            members["load"] = In(MemPortSignature(addr_width=aw, data_width=dw))
        else:
            members["pins"] = Out(SDRAMPinSignature(chip=config.sdram.sdram_chip()))
            members["init_done"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.engine = e = self.engine
        for name in ("desc", "cmd", "bags", "indices"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(e, name))
        wiring.connect(m, e.pooled, wiring.flipped(self.pooled))
        m.d.comb += [e.clear.eq(self.clear), e.cache_clear.eq(self.cache_clear)]
        for name in ("busy", "error", "error_bag", "error_index", "clamped", "skipped",
                     "lookups", "cycles", "cache_hits", "cache_misses"):
            m.d.comb += getattr(self, name).eq(getattr(e, name))
        m.d.comb += [
            self.mon_req_valid.eq(e.mem.req.valid),
            self.mon_req_ready.eq(e.mem.req.ready),
            self.mon_req.eq(e.mem.req.payload),
            self.mon_resp_valid.eq(e.mem.resp.valid),
            self.mon_resp_ready.eq(e.mem.resp.ready),
            self.mon_resp_err.eq(e.mem.resp.payload.err),
        ]
        if cfg.backend == "onchip":
            m.submodules.arb = arb = MemArbiter(n_ports=2, addr_width=cfg.addr_width,
                                                data_width=cfg.width, max_outstanding=64)
            m.submodules.ram = ram = OnChipRAM(depth=cfg.ram_depth, data_width=cfg.width,
                                               addr_width=cfg.addr_width)
            wiring.connect(m, arb.ports[0], e.mem)
            wiring.connect(m, arb.ports[1], wiring.flipped(self.load))
            wiring.connect(m, arb.mem, ram.port)
        else:
            m.submodules.sdram = ctl = make_controller(config=cfg.sdram)
            wiring.connect(m, ctl.port, e.mem)
            wiring.connect(m, ctl.pins, wiring.flipped(self.pins))
            m.d.comb += self.init_done.eq(ctl.init_done)
        return m


def make_top(*, config: GatherSimConfig) -> GatherSimTop:
    """Component factory for :mod:`seedchip.sim.runner`."""
    return GatherSimTop(config)


def load_gather_config() -> GatherSimConfig:
    text = os.environ.get("SEEDCHIP_CONFIG")
    if not text:
        raise RuntimeError("SEEDCHIP_CONFIG is not set: run this module through seedchip.sim.runner")
    return GatherSimConfig.from_json(text)


# -- the testbench --------------------------------------------------------------------

@dataclasses.dataclass
class _Expected:
    addr: int
    lo: int
    hi: int
    table: int
    batch: int


class AddressMonitor:
    """Watches the engine's ``mem.req`` (``mon_*`` ports).

    Every request must be a read inside the extent ``[lo, hi)`` of the table
    the golden model says it reads (checked first, so an out-of-extent request
    is reported as such), at the very address expected next; ``valid`` and
    the payload must hold while ``ready`` is low. A violation fails the test
    at once (and is kept in ``errors``). Also counts the words read and the
    cycles of the first and last request.
    """

    def __init__(self, gtb: "GatherTB"):
        self.gtb = gtb
        self.tb = gtb.tb
        dut = gtb.dut
        self.valid, self.ready, self.payload = dut.mon_req_valid, dut.mon_req_ready, dut.mon_req
        self.codec = LayoutCodec(req_layout(gtb.config.addr_width, gtb.config.width))
        self.expected: collections.deque[_Expected] = collections.deque()
        #: (batch, extents): once the batch's exact reads are used up, any read
        #: inside one of these extents is accepted (MEM_ERROR with a cache)
        self.loose = None
        self.errors: list[str] = []
        self.words = 0
        self.first_cycle = None
        self.last_cycle = None
        self._task = cocotb.start_soon(self._run())

    def expect(self, requests, descs: dict, batch: int, strict: int | None = None):
        dw = self.gtb.config.width
        for addr, table in requests[:strict]:
            lo, hi = descs[table].extent(dw)
            self.expected.append(_Expected(addr, lo, hi, table, batch))
        if strict is not None:
            self.loose = (batch, sorted(d.extent(dw) for d in descs.values()))

    def end_batch(self, batch: int, *, prefix: bool):
        """The batch is over: its requests must all have been seen (or, with
        ``prefix``, a fatal error cut them short: drop the rest)."""
        left = [e for e in self.expected if e.batch == batch]
        if left and not prefix:
            self._fail(f"batch {batch}: {len(left)} expected read(s) never issued, first "
                       f"{left[0].addr:#x} (table {left[0].table})")
        self.expected = collections.deque(e for e in self.expected if e.batch != batch)
        if self.loose is not None and self.loose[0] == batch:
            self.loose = None

    def _fail(self, msg):
        self.errors.append(msg)
        self.tb.fail(f"address monitor: {msg}")

    async def _run(self):
        stalled = None
        while True:
            await self.tb.edge
            await ReadOnly()
            if self.tb.in_reset:
                stalled = None
                continue
            v = bool(self.valid.value)
            if stalled is not None:
                now = self.payload.value.to_unsigned()
                if not v or now != stalled:
                    self._fail(f"mem.req broke the stream rules in cycle {self.tb.cycle()} "
                               f"(valid={int(v)}, payload {stalled:#x} -> {now:#x})")
                stalled = None
            if not v:
                continue
            bits = self.payload.value.to_unsigned()
            if not self.ready.value:
                stalled = bits
                continue
            req = self.codec.unpack(bits)
            cyc = self.tb.cycle()
            if req["we"]:
                self._fail(f"cycle {cyc}: write request to {req['addr']:#x}")
            a = req["addr"]
            if not self.expected and self.loose is not None:
                if not any(lo <= a < hi for lo, hi in self.loose[1]):
                    self._fail(f"cycle {cyc}: read of {a:#x} after a memory error outside "
                               f"every table of the batch")
                self.words += 1
                self.last_cycle = cyc
                continue
            if not self.expected:
                self._fail(f"cycle {cyc}: read of {req['addr']:#x} when none is expected")
            e = self.expected.popleft()
            if not e.lo <= a < e.hi:
                self._fail(f"cycle {cyc}: read of {a:#x} outside table {e.table}'s extent "
                           f"[{e.lo:#x}, {e.hi:#x})")
            if a != e.addr:
                self._fail(f"cycle {cyc}: read of {a:#x}, expected {e.addr:#x} (table {e.table})")
            self.words += 1
            if self.first_cycle is None:
                self.first_cycle = cyc
            self.last_cycle = cyc


class StatusMonitor:
    """Watches ``busy`` and the ``cycles`` counter every cycle.

    ``cycles`` counts the cycles with ``busy`` high, so from one cycle to the
    next it grows by exactly the earlier cycle's ``busy`` (mod 2**32);
    ``busy`` is high in the cycle after a command is taken and in every cycle
    an output beat is offered (a batch is not finished before its last beat
    is taken). A violation fails the test at once (and is kept in ``errors``).
    """

    def __init__(self, gtb: "GatherTB"):
        self.tb = gtb.tb
        d = gtb.dut
        self.busy, self.cycles = d.busy, d.cycles
        self.cmd_valid, self.cmd_ready, self.out_valid = d.cmd__valid, d.cmd__ready, d.pooled__valid
        self.errors: list[str] = []
        #: cycles with busy high seen since reset
        self.busy_cycles = 0
        self._task = cocotb.start_soon(self._run())

    def _fail(self, msg):
        self.errors.append(msg)
        self.tb.fail(f"status monitor: {msg}")

    async def _run(self):
        prev = None
        while True:
            await self.tb.edge
            await ReadOnly()
            if self.tb.in_reset:
                prev = None
                continue
            busy = int(self.busy.value)
            cyc = self.cycles.value.to_unsigned()
            took = bool(self.cmd_valid.value) and bool(self.cmd_ready.value)
            now = self.tb.cycle()
            if prev is not None:
                p_busy, p_cyc, p_took = prev
                if cyc != (p_cyc + p_busy) & 0xFFFF_FFFF:
                    self._fail(f"cycle {now}: cycles = {cyc}, expected {p_cyc} + busy {p_busy}")
                if p_took and not busy:
                    self._fail(f"cycle {now}: busy low the cycle after a command was taken")
            if self.out_valid.value and not busy:
                self._fail(f"cycle {now}: an output beat is offered with busy low")
            self.busy_cycles += busy
            prev = (busy, cyc, took)


@dataclasses.dataclass
class _Batch:
    no: int
    cmd: Cmd
    result: object          # emb_golden.BatchResult
    label: str


class GatherTB:
    """Engine + memory + golden model; see the module docstring for the checks.

    ``submit`` queues a batch (its expectations computed at once by the
    golden model, so batches may be queued back to back), ``settle`` waits
    until the engine has consumed everything and gone idle and then checks
    outputs, status and counters; ``run`` does both for one batch.
    """

    def __init__(self, dut, *, config: GatherSimConfig | None = None, idle: float = 0.2,
                 backpressure: float = 0.2, seed: int | None = None):
        self.config = cfg = config or load_gather_config()
        self.tb = TB(dut, seed=seed, period_ns=cfg.clk_period_ns)
        self.dut, self.rng, self.log = dut, self.tb.rng, self.tb.log
        self.p = cfg.params
        self.lanes = self.p.lanes
        self.desc = self.tb.source("desc", desc_layout(addr_width=cfg.addr_width,
                                                       index_width=self.p.index_width), idle=idle)
        self.cmd = self.tb.source("cmd", CmdLayout, idle=idle)
        self.bags = self.tb.source("bags", BagLayout, idle=idle)
        self.indices = self.tb.source("indices", index_layout(index_width=self.p.index_width),
                                      idle=idle)
        self.pooled = self.tb.sink("pooled", pooled_layout(lanes=self.lanes),
                                   backpressure=backpressure)
        self.model = GatherModel(self.p, {}, mem_words=cfg.mem_words)
        self.monitor = AddressMonitor(self)
        self.status_monitor = StatusMonitor(self)
        self.sdram = None
        if cfg.backend == "sdram":
            sc = cfg.sdram
            chip = sc.sdram_chip()
            self.chip = chip
            # as SDRAMTB: a retention window the controller keeps only by refreshing
            self.sdram = SDRAMModel(chip=chip, clk_period_ns=sc.period_ns,
                                    retention_ns=48 * chip.tREFI, refreshes_per_window=32,
                                    refresh_postpone_max=sc.effective_postpone_max,
                                    seed=self.tb.seed)
            self.sdram.attach(dut, idle="junk", input_delay=sc.read_delay)
        else:
            self.load_req = self.tb.source("load__req", req_layout(cfg.addr_width, cfg.width))
            # the load only writes: rdata is undefined (X under Icarus until the
            # RAM's first read)
            self.load_resp = self.tb.sink("load__resp", resp_layout(cfg.width),
                                          dont_care=("rdata",))
        self.batches: list[_Batch] = []
        self.pending: list[_Batch] = []
        self.beats_checked = 0
        self.dut.clear.value = 0
        self.dut.cache_clear.value = 0

    async def start(self):
        await self.tb.reset()

    # -- memory and descriptors ---------------------------------------------------------
    def sdram_loc(self, addr: int):
        """(bank, row, col) of a port address: the controller's ``{row, bank, col}``."""
        c = self.chip
        return ((addr >> c.col_bits) & (c.banks - 1), addr >> (c.col_bits + c.bank_bits),
                addr & (c.columns - 1))

    async def load(self, image):
        """Put words into the memory (a list from address 0, or a dict) and into
        the golden model's image. Only while the engine is idle."""
        items = image.items() if isinstance(image, dict) else enumerate(image)
        if self.sdram is not None:
            for a, v in items:
                self.sdram.poke(self.sdram_loc(a), v)
                self.model.memory[a] = v
            return
        n0 = len(self.load_resp)
        n = 0
        for a, v in items:
            self.load_req.send_nowait({"addr": a, "we": 1, "wdata": v,
                                       "mask": (1 << self.p.word_lanes) - 1})
            self.model.memory[a] = v
            n += 1
        await self.load_resp.wait_for(n0 + n)

    async def write_descs(self, descs):
        """Write descriptors; the engine's error must follow the golden model's."""
        for d in descs:
            self.model.write_desc(d)
            self.desc.send_nowait(d.to_wire())
        await self._wait(self.desc.wait_drained(), 1000 + 10 * len(descs), "descriptor writes")
        await self.tb.cycles(6)
        self.check_status("after descriptor writes")

    async def setup_tables(self, tables, **layout_kw):
        """Lay ``tables`` out (``layout_tables`` keywords), load them, write
        their descriptors. Returns the descriptors."""
        sparse = self.sdram is not None
        image, descs = layout_tables(tables, self.config.width, rng=self.rng, sparse=sparse,
                                     **layout_kw)
        await self.load(image)
        await self.write_descs(descs)
        return descs

    # -- batches ---------------------------------------------------------------------------
    def submit(self, cmd: Cmd, items, indices, label: str = ""):
        """Queue one batch (cmd, bag items, the indices it consumes)."""
        res = self.model.run_batch(cmd, items, indices)
        b = _Batch(len(self.batches), cmd, res, label or cmd.describe())
        self.batches.append(b)
        self.pending.append(b)
        self.monitor.expect(res.requests, dict(self.model.descs), b.no, res.strict)
        self.cmd.send_nowait(cmd.to_wire())
        for t, o, last in items:
            self.bags.send_nowait({"table": t, "offset": o, "last": last})
        for i, w in indices[:res.indices]:
            self.indices.send_nowait({"index": i, "weight": w})
        if res.error != GatherError.NONE:
            self.model.clear()      # the TB clears the engine once the batch is over
        return b

    async def run(self, cmd: Cmd, items, indices, label: str = ""):
        b = self.submit(cmd, items, indices, label)
        await self.settle()
        return b.result

    def budget(self) -> int:
        words = sum(len(b.result.requests) for b in self.pending)
        beats = sum(-(-d // self.lanes) for b in self.pending for d in b.result.dims)
        items = sum(b.result.bag_items + b.result.indices for b in self.pending)
        slow = max([s.idle for s in self.tb.sources.values()]
                   + [s.backpressure for s in self.tb.sinks.values()])
        per = 30 if self.sdram is not None else 4
        return int((5000 + per * words + 4 * (beats + items)) / (1.0 - slow) ** 2)

    async def _wait(self, coro, cycles, what):
        try:
            await with_timeout(coro, cycles * self.tb.period_ns, "ns")
        except SimTimeoutError:
            self.tb.fail(f"timeout after {cycles} cycles waiting for {what}: {self.state()}")

    def state(self) -> str:
        d = self.dut
        return (f"busy={int(d.busy.value)} error={GatherError(int(d.error.value)).name} "
                f"queued cmd={self.cmd.pending} bags={self.bags.pending} "
                f"indices={self.indices.pending}; pooled beats={len(self.pooled)}; "
                f"reads={self.monitor.words}, {len(self.monitor.expected)} expected")

    async def _idle(self):
        for s in (self.cmd, self.bags, self.indices):
            await s.wait_drained()
        await self.tb.edge
        while self.dut.busy.value:
            await self.tb.edge

    async def settle(self):
        """Wait until every queued batch has run (clearing errors between
        batches), then check everything."""
        budget = self.budget()
        await self._wait(self._idle(), budget, "the queued batches")
        await self.tb.cycles(2)
        batches, self.pending = self.pending, []
        err = [b for b in batches if b.result.error != GatherError.NONE]
        if err and err[0] is not batches[-1]:
            raise ValueError("a batch with an error must be the last one queued before settle()")
        self.check_outputs(batches)
        for b in batches:
            self.monitor.end_batch(b.no, prefix=b.result.error != GatherError.NONE)
        last = batches[-1].result
        if last.error == GatherError.MEM_ERROR:
            # the engine may have issued (and counted) lookups past the error
            for k in ("clamped", "skipped", "lookups", "cache_hits", "cache_misses"):
                setattr(self.model, k, int(getattr(self.dut, k).value))
        self.check_status(f"after batch {batches[-1].no} ({batches[-1].label})",
                          expect=(last.error, last.error_bag, last.error_index))
        if last.error != GatherError.NONE:
            await self.clear()

    async def clear(self):
        self.dut.clear.value = 1
        await self.tb.edge
        self.dut.clear.value = 0
        await self.tb.edge
        self.tb.check(int(self.dut.error.value) == 0, "error not cleared by clear")

    def check_status(self, what, expect=None):
        d = self.dut
        got = (GatherError(int(d.error.value)), int(d.error_bag.value), int(d.error_index.value))
        exp = expect or (self.model.error, self.model.error_bag, self.model.error_index)
        self.tb.check(got == tuple(exp), f"{what}: error/error_bag/error_index = "
                      f"{got[0].name}/{got[1]}/{got[2]}, expected {exp[0].name}/{exp[1]}/{exp[2]}")
        for k in ("clamped", "skipped", "lookups", "cache_hits", "cache_misses"):
            self.tb.check(int(getattr(d, k).value) == getattr(self.model, k) & 0xFFFF_FFFF,
                          f"{what}: {k} = {int(getattr(d, k).value)}, expected "
                          f"{getattr(self.model, k)}")
        if self.p.cache_rows:
            hm = int(d.cache_hits.value) + int(d.cache_misses.value)
            self.tb.check(hm == int(d.lookups.value), f"{what}: cache hits + misses = {hm}, "
                          f"lookups = {int(d.lookups.value)}")

    def check_outputs(self, batches):
        beats = self.pooled.decoded(self.beats_checked)
        pos = 0
        for b in batches:
            res = b.result
            for k, (vals, dim) in enumerate(zip(res.outputs, res.dims)):
                n = -(-dim // self.lanes)
                what = f"batch {b.no} ({b.label}) bag {k} (dim {dim})"
                if pos + n > len(beats):
                    self.tb.fail(f"{what}: missing output ({len(beats) - pos} beat(s) left, "
                                 f"{n} expected); {self.state()}")
                got = beats[pos:pos + n]
                pos += n
                flat = [v for bt in got for v in bt["data"]]
                lasts = [bt["last"] for bt in got]
                if lasts[-1] != 1 or any(lasts[:-1]):
                    self.tb.fail(f"{what}: 'last' on beats {[j for j, x in enumerate(lasts) if x]},"
                                 f" expected on beat {n - 1} only")
                bl_exp = [0] * n
                if k == len(res.outputs) - 1 and res.error == GatherError.NONE:
                    bl_exp[-1] = 1
                bls = [bt["batch_last"] for bt in got]
                if bls != bl_exp:
                    self.tb.fail(f"{what}: batch_last {bls}, expected {bl_exp}")
                exp = [int(v) for v in vals] + [0] * (n * self.lanes - dim)
                if flat != exp:
                    bad = [j for j in range(len(exp)) if flat[j] != exp[j]]
                    self.tb.fail(f"{what}: {len(bad)} element(s) wrong, first at {bad[0]}: "
                                 f"got {flat[bad[0]]}, expected {exp[bad[0]]}; got {flat[:16]} "
                                 f"expected {exp[:16]} (cmd {b.cmd.describe()})")
        if pos != len(beats):
            self.tb.fail(f"{len(beats) - pos} extra output beat(s) after batch {batches[-1].no}: "
                         f"{beats[pos:pos + 3]}")
        self.beats_checked += pos

    async def finish(self):
        await self.tb.cycles(20)
        self.tb.check(len(self.pooled) == self.beats_checked,
                      f"{len(self.pooled) - self.beats_checked} output beat(s) after the end")
        self.tb.check(not self.monitor.errors, f"address monitor: {self.monitor.errors[:3]}")
        self.tb.check(not self.monitor.expected, "expected reads never issued")
        self.tb.check(not self.status_monitor.errors,
                      f"status monitor: {self.status_monitor.errors[:3]}")
        if self.sdram is not None:
            self.sdram.check()
            self.log.info("SDRAM model: %s; commands %s", self.sdram.report(),
                          dict(self.sdram.command_counts))
        self.log.info("%d batches, %d output beats, %d reads checked; counters: lookups=%d "
                      "clamped=%d skipped=%d cycles=%d", len(self.batches), self.beats_checked,
                      self.monitor.words, self.model.lookups, self.model.clamped,
                      self.model.skipped, int(self.dut.cycles.value))

    def random_traffic(self, choices=((0.0, 0.0), (0.2, 0.2), (0.5, 0.3), (0.1, 0.8),
                                      (0.7, 0.1))):
        idle, bp = choices[int(self.rng.integers(len(choices)))]
        self.tb.set_traffic(idle=idle, backpressure=bp)


# -- input generators -------------------------------------------------------------------

def random_tables(rng, params: GatherParams, n: int, *, dims=None, max_rows: int = 40):
    """``n`` int8 tables with random row counts; dims from ``dims`` (default:
    1, max_dim, a word's worth plus one, and random ones)."""
    lanes = params.lanes
    pool = dims or [1, params.max_dim, lanes + 1, max(1, params.max_dim - 1),
                    int(rng.integers(1, params.max_dim + 1))]
    out = []
    for t in range(n):
        dim = int(pool[t % len(pool)])
        rows = int(rng.integers(1, max_rows + 1))
        tab = rng.integers(-128, 128, (rows, dim))
        if rng.random() < 0.3:
            tab[rng.integers(rows)] = rng.choice([-128, 127])
        out.append(tab)
    return out


def random_batch(rng, descs, n_bags: int, max_bag: int, *, empty: float = 0.15,
                 full: float = 0.1, dup: float = 0.2, oor: float = 0.0, tables=None):
    """(bag items, indices) of a random batch over ``descs``: bags of 0..max_bag
    indices (some empty, some exactly max_bag), duplicates, and with ``oor``
    out-of-range indices of every form."""
    tables = list(range(len(descs))) if tables is None else tables
    items, idx = [], []
    for _ in range(n_bags):
        t = int(tables[int(rng.integers(len(tables)))])
        d = descs[t]
        r = rng.random()
        n = 0 if r < empty else max_bag if r < empty + full else int(rng.integers(1, max_bag + 1))
        items.append((t, len(idx), 0))
        bag = []
        for _ in range(n):
            if bag and rng.random() < dup:
                i = bag[int(rng.integers(len(bag)))]
            elif rng.random() < oor:
                i = int(rng.choice([(1 << 32) - 1, d.rows, d.rows + 1, 1 << 31,
                                    int(rng.integers(d.rows, 1 << 32))]))
            else:
                i = int(rng.integers(d.rows))
            bag.append(i)
            idx.append((i, int(rng.integers(-128, 128))))
    items.append((int(rng.integers(256)), len(idx), 1))     # junk table on the last item
    return items, idx


def zipf_indices(rng, rows: int, n: int, *, s: float = 1.05, perm=None) -> list[int]:
    """``n`` row numbers, Zipf(``s``) bounded to ``rows`` ranks (rank k has
    probability proportional to ``k**-s``), rank k mapped to row ``perm[k]``
    (a random permutation by default)."""
    p = np.arange(1, rows + 1, dtype=np.float64) ** -s
    p /= p.sum()
    perm = rng.permutation(rows) if perm is None else perm
    return [int(perm[k]) for k in rng.choice(rows, size=n, p=p)]


def random_cmd(rng, *, bounds=None) -> Cmd:
    mode = [PoolMode.SUM, PoolMode.MEAN, PoolMode.MAX][int(rng.integers(3))]
    weighted = mode == PoolMode.SUM and bool(rng.integers(2))
    return Cmd(mode=mode, bounds=bounds if bounds is not None else BoundsMode.FATAL,
               weighted=weighted, requant=bool(rng.random() < 0.35))


def _requant_params(rng, n):
    return (rng.integers(1 << 30, (1 << 31) - 1, n).tolist(),
            rng.integers(0, 12, n).tolist())


# -- tests -------------------------------------------------------------------------------

async def _setup(dut, *, idle=0.2, backpressure=0.2, n_tables=None, tables=None, **kw):
    g = GatherTB(dut, idle=idle, backpressure=backpressure)
    await g.start()
    n = n_tables or g.p.n_tables
    tables = tables if tables is not None else random_tables(g.rng, g.p, n)
    mult, shift = _requant_params(g.rng, len(tables))
    descs = await g.setup_tables(tables, multipliers=mult, shifts=shift, **kw)
    return g, tables, descs


def _layout_kw(g: GatherTB) -> dict:
    if g.sdram is None:
        return dict(base=int(g.rng.integers(0, 8)), gap=int(g.rng.integers(0, 4)))
    # straddle a page (next bank) and a row boundary of the SDRAM
    c = g.chip
    row_words = c.columns * c.banks
    return dict(base=int(g.rng.integers(1, 50)) * row_words - 37, gap=c.columns - 5)


@cocotb.test()
async def test_random(dut):
    """Random tables (dims 1, max, odd), random batches in every pooling mode,
    weights, requantization, bag sizes 0/1/max, duplicates, random idle and
    backpressure; batches queued back to back."""
    g = GatherTB(dut)
    await g.start()
    tables = random_tables(g.rng, g.p, g.p.n_tables)
    mult, shift = _requant_params(g.rng, len(tables))
    descs = await g.setup_tables(tables, multipliers=mult, shifts=shift, **_layout_kw(g))
    for rnd in range(4):
        g.random_traffic()
        for _ in range(3):
            items, idx = random_batch(g.rng, descs, int(g.rng.integers(1, 12)), g.p.max_bag)
            g.submit(random_cmd(g.rng), items, idx)
        await g.settle()
    await g.finish()


@cocotb.test()
async def test_patterns(dut):
    """Every lookup to one row; one-row tables; a batch with no bags; all bags
    empty; max_bag bags; single-index bags; the same row over and over in
    MAX/MEAN/weighted SUM; one-word rows (dim 1) at full rate."""
    g = GatherTB(dut, idle=0.1, backpressure=0.1)
    await g.start()
    rng = g.rng
    p = g.p
    tables = [rng.integers(-128, 128, (1, p.max_dim)),          # one row, widest
              rng.integers(-128, 128, (1, 1)),                  # one row, one byte
              rng.integers(-128, 128, (30, 1)),                 # one-byte rows
              rng.integers(-128, 128, (25, p.lanes * 3 + 1))][:p.n_tables]
    tables[0][0, :4] = [-128, 127, -128, 127][:min(4, p.max_dim)]
    descs = await g.setup_tables(tables, **_layout_kw(g))
    mb = p.max_bag
    for cmd in (Cmd(), Cmd(mode=PoolMode.MEAN), Cmd(mode=PoolMode.MAX),
                Cmd(weighted=True), Cmd(mode=PoolMode.MEAN, requant=True)):
        # every lookup to row 0 of the one-row tables; max_bag and 1-index bags
        items = make_bag_items([0, 1, 0, 1], [0, mb, 2 * mb, 2 * mb + 1, 2 * mb + 2])
        idx = [(0, int(w)) for w in rng.integers(-128, 128, 2 * mb + 2)]
        idx[:mb] = [(0, -128)] * mb
        g.submit(cmd, items, idx)
        # one row of a table, repeated; then dim-1 rows back to back
        items = make_bag_items([3, 2, 2], [0, mb, mb + 1, 2 * mb + 1])
        row = int(rng.integers(descs[3].rows))
        idx = [(row, 127)] * mb + [(int(i), 1) for i in rng.integers(0, descs[2].rows, mb + 1)]
        g.submit(cmd, items, idx)
    g.submit(Cmd(), [(0, 0, 1)], [], label="no bags")
    g.submit(Cmd(mode=PoolMode.MAX), make_bag_items([0, 1, 2, 3], [0, 0, 0, 0, 0]), [],
             label="all bags empty")
    await g.settle()
    await g.finish()


@cocotb.test()
async def test_bounds(dut):
    """Every out-of-range form (all ones = -1, rows, rows+1, 2**31, random
    huge) in every bounds mode: CLAMP and SKIP count and go on, FATAL stops
    the batch (earlier bags out, the rest drained) until cleared."""
    g, tables, descs = await _setup(dut)
    rng = g.rng
    forms = lambda d: [(1 << 32) - 1, d.rows, d.rows + 1, 1 << 31,  # noqa: E731
                       int(rng.integers(d.rows + 2, 1 << 32))]
    for bounds in (BoundsMode.CLAMP, BoundsMode.SKIP, BoundsMode.FATAL):
        for form in range(5):
            g.random_traffic()
            items, idx = random_batch(rng, descs, 6, g.p.max_bag, empty=0.0, full=0.2)
            # an out-of-range index in bag 3 (at a random place in it)
            t = items[3][0]
            lo, hi = items[3][1], items[4][1]
            pos = int(rng.integers(lo, hi))
            idx[pos] = (forms(descs[t])[form], idx[pos][1])
            for mode in (PoolMode.MEAN, PoolMode.SUM):
                res = await g.run(Cmd(mode=mode, bounds=bounds), items, idx,
                                  label=f"{bounds.name} form {form} {mode.name}")
                if bounds == BoundsMode.FATAL:
                    assert res.error == GatherError.OUT_OF_RANGE and res.error_bag == 3
        # a bag of nothing but out-of-range indices
        t = 0
        items = make_bag_items([t, t], [0, 3, 4])
        idx = [(f, 1) for f in forms(descs[t])[:3]] + [(0, 1)]
        await g.run(Cmd(mode=PoolMode.MEAN, bounds=bounds), items, idx)
    await g.finish()


@cocotb.test()
async def test_bad_input(dut):
    """Unknown table (>= n_tables and never written), offsets[0] != 0,
    offsets going backwards, a bag longer than max_bag, reserved command
    fields, weights with MEAN: the batch stops with the right error, no hang,
    the streams stay aligned (a good batch follows each). Bad descriptors."""
    g = GatherTB(dut)
    await g.start()
    rng = g.rng
    p = g.p
    tables = random_tables(rng, p, p.n_tables - 1)      # the last table id stays unwritten
    descs = await g.setup_tables(tables, **_layout_kw(g))
    unwritten = p.n_tables - 1
    mb = p.max_bag

    async def good():
        items, idx = random_batch(rng, descs, 4, mb)
        await g.run(random_cmd(rng), items, idx, label="good")

    idx = [(int(i), 1) for i in rng.integers(0, min(d.rows for d in descs), 4 * mb + 8)]
    cases = [
        ("table >= n_tables", Cmd(), make_bag_items([0, 255, 1], [0, 2, 4, 5])),
        ("table never written", Cmd(), make_bag_items([0, 1, unwritten], [0, 1, 3, 4])),
        ("offsets[0] != 0", Cmd(), make_bag_items([0, 1], [3, 4, 6])),
        ("offsets backwards", Cmd(), make_bag_items([0, 1, 0, 1], [0, 4, 2, 6, 7])),
        ("offsets backwards at the end", Cmd(), make_bag_items([0, 1], [0, 5, 3])),
        ("bag too long", Cmd(mode=PoolMode.MEAN), make_bag_items([0, 1, 0], [0, 1, 2, 3 + mb])),
        ("reserved mode", Cmd(mode=3), make_bag_items([0], [0, 2])),
        ("reserved bounds", Cmd(bounds=3), make_bag_items([0], [0, 2])),
        ("weights with MEAN", Cmd(mode=PoolMode.MEAN, weighted=True), make_bag_items([0], [0, 2])),
        ("weights with MAX", Cmd(mode=PoolMode.MAX, weighted=True), make_bag_items([0, 0], [0, 0, 0])),
    ]
    for label, cmd, items in cases:
        g.random_traffic()
        res = await g.run(cmd, items, idx, label=label)
        assert res.error != GatherError.NONE, label
        await good()
    # descriptors: refused ones set BAD_DESC and invalidate the table
    base = descs[-1].extent(g.config.width)[1]
    for d in (TableDesc(table=p.n_tables, base=base, rows=1, dim=1),
              TableDesc(table=1, base=base, rows=0, dim=1),
              TableDesc(table=1, base=base, rows=1, dim=0),
              TableDesc(table=1, base=base, rows=1, dim=p.max_dim + 1),
              TableDesc(table=1, base=(1 << g.config.addr_width) - 3, rows=2, dim=2 * p.lanes)):
        await g.write_descs([d])
        assert g.model.error == GatherError.BAD_DESC
        await g.clear()
        g.model.clear()
    # table 1 is now invalid: using it is BAD_TABLE
    await g.run(Cmd(), make_bag_items([0, 1], [0, 1, 2]), idx, label="invalidated table")
    await g.write_descs([descs[1]])
    await good()
    await g.finish()


@cocotb.test()
async def test_mem_error(dut):
    """A table that runs past the end of the memory: MEM_ERROR at the first
    lookup that gets ``err``, earlier bags out, no hang; then good batches."""
    g = GatherTB(dut)
    await g.start()
    rng = g.rng
    p = g.p
    tables = random_tables(rng, p, 2, dims=[p.lanes * 2 + 1])
    descs = await g.setup_tables(tables, **_layout_kw(g))
    pitch = descs[0].pitch(g.config.width)
    rows_in = 5
    bad = TableDesc(table=p.n_tables - 1, base=g.config.mem_words - rows_in * pitch,
                    rows=40, dim=descs[0].dim)
    words = {bad.base + k: int(v) for k, v in
             enumerate(rng.integers(0, 1 << g.config.width, rows_in * pitch))}
    await g.load(words)
    await g.write_descs([bad])
    t = bad.table
    for trial in range(3):
        g.random_traffic()
        items = make_bag_items([0, t, t, 1], [0, 2, 4, 9, 11])
        idx = [(0, 1), (1, 1), (0, 1), (rows_in - 1, 1),
               (1, 1), (rows_in + int(rng.integers(0, 30)), 1), (2, 1), (39, 1), (0, 1),
               (0, 1), (0, 1)]
        res = await g.run(Cmd(mode=PoolMode.MEAN), items, idx, label="mem error")
        assert res.error == GatherError.MEM_ERROR and res.error_bag == 2, res.error
        items, idx = random_batch(rng, descs, 5, p.max_bag, tables=[0, 1])
        await g.run(Cmd(), items, idx, label="good")
    await g.finish()


@cocotb.test()
async def test_output_stall(dut):
    """Long output stalls (the SDRAM keeps refreshing meanwhile): the engine
    fills up and waits, nothing is lost or reordered."""
    g, tables, descs = await _setup(dut, idle=0.0, backpressure=0.0)
    stall = 6000 if g.sdram is not None else 1500
    for rnd in range(3):
        for _ in range(2):
            items, idx = random_batch(g.rng, descs, 10, g.p.max_bag, empty=0.05)
            g.submit(random_cmd(g.rng), items, idx)
        g.pooled.backpressure = 0.99999
        await g.tb.cycles(stall)
        g.tb.check(g.dut.busy.value, "the engine finished during an output stall")
        g.pooled.backpressure = [0.0, 0.5, 0.97][rnd]
        await g.settle()
    await g.finish()


@cocotb.test()
async def test_one_bank(dut):
    """Every lookup to rows of one SDRAM bank (row misses every time), every
    lookup to one memory row; then the same on the on-chip RAM."""
    g = GatherTB(dut, idle=0.1, backpressure=0.1)
    await g.start()
    rng = g.rng
    p = g.p
    dim = min(p.max_dim, 8 * p.word_lanes)
    pitch = -(-dim // p.word_lanes)
    if g.sdram is not None:
        c = g.chip
        row_words = c.columns * c.banks
        # the table spans 8 SDRAM rows: lookups within bank 0 miss the open row
        rows = 8 * row_words // pitch
        tables = [rng.integers(-128, 128, (rows, dim)), rng.integers(-128, 128, (64, 5))]
        image, descs = layout_tables(tables, g.config.width, bases=[5 * row_words + 7,
                                                                    3 * c.columns],
                                     rng=rng, sparse=True)
        await g.load(image)
        await g.write_descs(descs)

        def bank(a):
            return g.sdram_loc(a)[0]
        same = [r for r in range(rows) if bank(descs[0].base + r * pitch) == 0
                and bank(descs[0].base + r * pitch + pitch - 1) == 0]
    else:
        rows = 200
        tables = [rng.integers(-128, 128, (rows, dim)), rng.integers(-128, 128, (64, 5))]
        descs = await g.setup_tables(tables, **_layout_kw(g))
        same = list(range(rows))
    for cmd in (Cmd(), Cmd(mode=PoolMode.MAX)):
        n = 12
        items = make_bag_items([0] * n, [k * p.max_bag // 2 for k in range(n + 1)])
        idx = [(int(same[int(i)]), 1) for i in rng.integers(0, len(same), n * p.max_bag // 2)]
        g.submit(cmd, items, idx, label="one bank")
        idx = [(7, 1)] * (n * p.max_bag // 2)
        g.submit(cmd, items, idx, label="one row")
        await g.settle()
    if g.sdram is not None:
        acts = g.sdram.command_counts["ACTIVE"]
        g.tb.check(acts > n * p.max_bag // 4, f"only {acts} ACTIVE commands: the one-bank "
                   f"lookups did not miss the open row")
    await g.finish()


@cocotb.test()
async def test_throughput(dut):
    """No idle, no backpressure: 64-byte rows (or the widest allowed) in bags
    of 8 read at nearly one word per cycle on the on-chip RAM (>= 90 %)."""
    g = GatherTB(dut, idle=0.0, backpressure=0.0)
    await g.start()
    rng = g.rng
    p = g.p
    dim = min(64, p.max_dim)
    tables = [rng.integers(-128, 128, (50, dim))]
    descs = await g.setup_tables(tables)
    bag = min(8, p.max_bag)
    n = 24
    items = make_bag_items([0] * n, [k * bag for k in range(n + 1)])
    idx = [(int(i), 1) for i in rng.integers(0, 50, n * bag)]
    w0 = g.monitor.words
    g.submit(Cmd(), items, idx)
    await g.settle()
    words = g.monitor.words - w0
    span = g.monitor.last_cycle - g.monitor.first_cycle + 1
    rate = words / span
    g.log.info("throughput: %d words in %d cycles = %.3f words/cycle", words, span, rate)
    if g.sdram is None:
        g.tb.check(rate >= 0.9, f"only {rate:.3f} words per cycle on the on-chip RAM")
    await g.finish()


@cocotb.test()
async def test_zipf(dut):
    """Zipf(1.05) lookups (bounded to the table, random rank order) over
    tables of a few hundred rows, every pooling mode, random idle and
    backpressure: bit-exact, the cache hit counts equal the golden model's
    exact simulation, and (with a cache) some lookups hit."""
    g = GatherTB(dut)
    await g.start()
    rng, p = g.rng, g.p
    rows = 300 if g.sdram is not None else 80     # 80 rows fit the on-chip RAM
    dims = [p.max_dim, p.lanes + 1, 3, max(1, p.max_dim - 5)][:p.n_tables]
    tables = [rng.integers(-128, 128, (rows, d)) for d in dims]
    descs = await g.setup_tables(tables, **_layout_kw(g))
    perms = [rng.permutation(rows) for _ in descs]
    h0 = int(g.dut.cache_hits.value)
    for rnd in range(3):
        g.random_traffic()
        for _ in range(3):
            n_bags = int(rng.integers(4, 12))
            lens = [int(x) for x in rng.integers(0, p.max_bag + 1, n_bags)]
            tabs = [int(t) for t in rng.integers(0, len(descs), n_bags)]
            offs = np.concatenate([[0], np.cumsum(lens)]).tolist()
            idx = []
            for t, n in zip(tabs, lens):
                idx += [(i, int(w)) for i, w in zip(zipf_indices(rng, rows, n, perm=perms[t]),
                                                     rng.integers(-128, 128, n))]
            g.submit(random_cmd(rng), make_bag_items(tabs, offs), idx, label="zipf")
        await g.settle()
    hits = int(g.dut.cache_hits.value) - h0
    g.log.info("zipf: %d cache hits, %d misses", hits, int(g.dut.cache_misses.value))
    if p.cache_rows:
        g.tb.check(hits > 0, "no cache hit on Zipf lookups")
    await g.finish()


@cocotb.test()
async def test_desc_rewrite(dut):
    """Stale cache content is never returned: between batches a table's rows
    are rewritten in memory together with its descriptor (same and new
    base), or rewritten in place followed by a ``cache_clear`` pulse; the
    next batch looks up the same (cached) rows and must see the new data."""
    g = GatherTB(dut, idle=0.1, backpressure=0.1)
    await g.start()
    rng, p = g.rng, g.p
    rows = 24
    tables = [rng.integers(-128, 128, (rows, d)) for d in (p.max_dim, p.lanes + 3)]
    descs = await g.setup_tables(tables, **_layout_kw(g))
    hot = [int(r) for r in rng.integers(0, rows, 6)]
    items = make_bag_items([0, 1, 0, 1], [0, 6, 12, 18, 24])
    idx = [(r, 1) for r in hot * 4]
    spare = descs[-1].extent(g.config.width)[1] + 16

    async def rewrite(t, base):
        tab = rng.integers(-128, 128, (rows, descs[t].dim))
        image, (d,) = layout_tables([tab], g.config.width, base=base, rng=rng, sparse=True)
        d.table = t
        await g.load(image)
        return d

    for trial in range(3):
        for mode in (Cmd(), Cmd(mode=PoolMode.MAX)):
            await g.run(mode, items, idx, label="warm")
            await g.run(mode, items, idx, label="cached")
        # same descriptor fields, new data: the descriptor write must empty the cache
        d0 = await rewrite(0, descs[0].base)
        await g.write_descs([d0])
        await g.run(Cmd(), items, idx, label="after descriptor rewrite")
        # the table moved
        d1 = await rewrite(1, spare if trial % 2 == 0 else descs[1].base)
        await g.write_descs([d1])
        descs[1] = d1
        await g.run(Cmd(mode=PoolMode.MAX), items, idx, label="after move")
        # new data in place, no descriptor write: only cache_clear makes it visible
        await g.run(Cmd(), items, idx, label="warm")
        await rewrite(0, descs[0].base)
        g.dut.cache_clear.value = 1
        await g.tb.edge
        g.dut.cache_clear.value = 0
        g.model.cache_clear()
        await g.run(Cmd(), items, idx, label="after cache_clear")
    await g.finish()


@cocotb.test()
async def test_cache_collide(dut):
    """Keys that share a hot-row cache line, looked up alternately and back to
    back, so a hit check that compared less than the whole key (table, row)
    would return the other key's row.

    Line of a key as the engine computes it (:func:`cache_line`:
    ``(row ^ table * 0x9E5) % cache_rows``). ``0x9E5`` is odd, so the same row
    of two tables lands on one line only when the table ids are equal modulo
    ``cache_rows``: that case needs ``n_tables > cache_rows`` (the
    ``onchip32c4`` build) and is the one a hit check ignoring the table id
    gets wrong. Also: different rows of different tables on one line, and
    rows of one table on one line. Every row differs from every other (its
    first element is unique), lookups run in bags of one and two, with a
    spacer lookup on another line between some (the key is then read from
    the key store, not forwarded from the lookup just ahead); then seeded
    random sequences over the colliding keys in every pooling mode. Outputs,
    and cache hits/misses, equal the golden model's exact cache simulation.
    """
    g = GatherTB(dut, idle=0.1, backpressure=0.1)
    await g.start()
    rng, p = g.rng, g.p
    lines = p.cache_rows
    if not lines:
        g.log.info("no cache in this build: the collisions run as plain lookups")
        lines = 2
    n_t = p.n_tables
    rows = min(24, max(2 * lines, 8))
    dims = [p.max_dim, p.lanes + 1, 3, max(2, p.max_dim - 5)]
    tables = [rng.integers(-128, 128, (rows, dims[t % len(dims)])) for t in range(n_t)]
    # a unique first element per (table, row): every collision is visible in SUM of one
    uniq = rng.permutation(256)[:n_t * rows].reshape(n_t, rows) - 128 if n_t * rows <= 256 else None
    for t, tab in enumerate(tables):
        tab[:, 0] = uniq[t] if uniq is not None else (np.arange(rows) * n_t + t) % 256 - 128
    await g.setup_tables(tables, **_layout_kw(g))

    def line(t, r):
        return cache_line(t, r, lines)

    keys = [(t, r) for t in range(n_t) for r in range(rows)]
    by_line = collections.defaultdict(list)
    for k in keys:
        by_line[line(*k)].append(k)
    # (a, b) pairs on one line: same row of two tables; other rows of two tables; one table
    same_row = [((t0, r), (t1, r)) for t0 in range(n_t) for t1 in range(t0 + 1, n_t)
                for r in range(rows) if line(t0, r) == line(t1, r)]
    cross = [(a, b) for ks in by_line.values() for a in ks for b in ks
             if a[0] < b[0] and a[1] != b[1]]
    within = [(a, b) for ks in by_line.values() for a in ks for b in ks
              if a[0] == b[0] and a[1] < b[1]]
    g.log.info("cache_collide: %d lines, %d tables x %d rows: %d same-row cross-table pairs, "
               "%d other cross-table pairs, %d same-table pairs", lines, n_t, rows,
               len(same_row), len(cross), len(within))
    if p.cache_rows and n_t > p.cache_rows:
        g.tb.check(len(same_row) > 0, "n_tables > cache_rows but no same-row collision found")

    def spacer(a):
        # a key on another line (its lookup goes between, so the next one reads the key store)
        others = [k for k in keys if line(*k) != line(*a)]
        return others[int(rng.integers(len(others)))]

    def pick(pairs, n):
        if len(pairs) <= n:
            return list(pairs)
        return [pairs[int(i)] for i in rng.choice(len(pairs), n, replace=False)]

    def directed(pairs):
        """Bags (table, [rows]) for each pair: a b a b (bags of one), a a b b
        (bags of two: hits then the other key), a x b x a (spacers)."""
        bags = []
        for a, b in pairs:
            bags += [(a[0], [a[1]]), (b[0], [b[1]]), (a[0], [a[1]]), (b[0], [b[1]])]
            bags += [(a[0], [a[1], a[1]]), (b[0], [b[1], b[1]]), (a[0], [a[1]])]
            for k in (a, b, a):
                x = spacer(k)
                bags += [(k[0], [k[1]]), (x[0], [x[1]])]
            bags += [(b[0], [b[1]])]
        return bags

    def submit(cmd, bags, label):
        items = make_bag_items([t for t, _ in bags],
                               np.concatenate([[0], np.cumsum([len(r) for _, r in bags])]).tolist())
        idx = [(r, int(rng.integers(-128, 128)) if cmd.weighted else 1)
               for _, rs in bags for r in rs]
        g.submit(cmd, items, idx, label=label)

    for label, pairs in (("same row, two tables", same_row), ("two tables", cross),
                         ("one table", within)):
        chosen = pick(pairs, 12)
        if not chosen:
            g.log.info("cache_collide: no %s pairs on one line in this build", label)
            continue
        bags = directed(chosen)
        # unweighted SUM of one row is the row itself: any wrong row shows
        for k in range(0, len(bags), 40):
            submit(Cmd(), bags[k:k + 40], f"collide: {label}")
        await g.settle()
    # seeded random: runs over the colliding keys (and a few others), every mode
    pool = [k for a, b in same_row + cross + within for k in (a, b)] or keys
    for rnd in range(4):
        g.random_traffic()
        for _ in range(3):
            bags = []
            for _ in range(int(rng.integers(4, 16))):
                a = pool[int(rng.integers(len(pool)))] if rng.random() < 0.85 else \
                    keys[int(rng.integers(len(keys)))]
                mates = by_line[line(*a)]
                n = int(rng.integers(1, min(4, p.max_bag) + 1))
                rs = [a[1]] * n
                bags.append((a[0], rs))
                b = mates[int(rng.integers(len(mates)))]
                bags.append((b[0], [b[1]] * int(rng.integers(1, 3))))
            submit(random_cmd(rng), [(t, rs[:p.max_bag]) for t, rs in bags], "collide: random")
        await g.settle()
    h, m = int(g.dut.cache_hits.value), int(g.dut.cache_misses.value)
    g.log.info("cache_collide: %d cache hits, %d misses", h, m)
    if p.cache_rows:
        g.tb.check(h > 0 and m > 0, f"cache hits {h}, misses {m}: the collisions did not "
                   f"exercise both outcomes")
    await g.finish()


# -- throughput measurement --------------------------------------------------------------

@cocotb.test()
async def bench_gather(dut):
    """Lookup rate, no idle, no backpressure.

    ``GATHER_BENCH`` (JSON): ``{"cases": [{"dim": .., "bag": .., "bags": ..,
    "rows": .., "dist": "uniform" | "zipf", "warm": ..}, ...]}``. Per case a
    fresh table (its descriptor write empties the cache), ``warm`` lookups
    of the same distribution to fill the cache (not timed), then the timed
    batch of ``bags`` bags. ``zipf`` is Zipf(1.05) bounded to the table's rows,
    ranks in a random order. Writes ``gather_bench.json`` into the run
    directory: per case the cycles from the command's acceptance to the last
    output beat taken, lookups, bags, words read, cache hits and misses,
    ``words_per_cycle`` (the fraction of the pin limit of one word per
    cycle) and ``lookups_per_cycle``.
    """
    spec = json.loads(os.environ.get("GATHER_BENCH", '{"cases": []}'))
    g = GatherTB(dut, idle=0.0, backpressure=0.0)
    await g.start()
    if g.sdram is not None:
        while not g.dut.init_done.value:
            await g.tb.edge
    rng = g.rng
    results = []
    base = 1 << 12
    for k, case in enumerate(spec["cases"]):
        dim, bag, n_bags = int(case["dim"]), int(case["bag"]), int(case["bags"])
        rows = int(case.get("rows", 4096))
        dist = case.get("dist", "uniform")
        warm = int(case.get("warm", 0))
        tab = rng.integers(-128, 128, (rows, dim))
        # each case's table after the previous one, back to the start when it
        # would run past the memory (the load rewrites it, the descriptor
        # write empties the cache)
        words = rows * -(-dim // (g.config.width // 8))
        if g.sdram is not None and base + words > g.chip.words:
            base = 1 << 12
        image, descs = layout_tables([tab], g.config.width, base=base, rng=rng,
                                     sparse=g.sdram is not None)
        descs[0].table = k % g.p.n_tables
        if g.sdram is None:
            image = {a: v for a, v in enumerate(image) if a >= base}
        await g.load(image)
        await g.write_descs(descs)
        base = descs[0].extent(g.config.width)[1] + 64
        perm = rng.permutation(rows)

        def draw(n):
            if dist == "zipf":
                return zipf_indices(rng, rows, n, perm=perm)
            return [int(i) for i in rng.integers(0, rows, n)]

        t = descs[0].table
        if warm:
            wb = -(-warm // bag)
            g.submit(Cmd(), make_bag_items([t] * wb, [b * bag for b in range(wb + 1)]),
                     [(i, 1) for i in draw(wb * bag)], label="warm-up")
            await g.settle()
        items = make_bag_items([t] * n_bags, [b * bag for b in range(n_bags + 1)])
        idx = [(i, 1) for i in draw(n_bags * bag)]
        c0 = len(g.cmd.accept_cycles)
        w0 = g.monitor.words
        b0 = len(g.pooled.accept_cycles)
        h0, m0 = int(g.dut.cache_hits.value), int(g.dut.cache_misses.value)
        res = g.submit(Cmd(), items, idx).result
        await g.settle()
        t0 = g.cmd.accept_cycles[c0]
        t1 = g.pooled.accept_cycles[-1]
        cycles = t1 - t0 + 1
        words = g.monitor.words - w0
        hits = int(g.dut.cache_hits.value) - h0
        misses = int(g.dut.cache_misses.value) - m0
        pitch = descs[0].pitch(g.config.width)
        results.append({
            "dim": dim, "bag": bag, "bags": n_bags, "rows": rows, "dist": dist, "warm": warm,
            "lookups": res.lookups, "words": words,
            "beats": len(g.pooled.accept_cycles) - b0, "cycles": int(cycles),
            "pitch": pitch, "words_per_cycle": round(words / cycles, 4),
            "lookups_per_cycle": round(res.lookups / cycles, 4),
            "pin_limit_lookups_per_cycle": round(1 / pitch, 4),
            "fraction_of_pin_limit": round(res.lookups * pitch / cycles, 4),
            "cache_hits": hits, "cache_misses": misses,
            "hit_rate": round(hits / max(1, hits + misses), 4),
        })
        line = (f"case {k + 1}/{len(spec['cases'])}: dim {dim:3d} bag {bag:2d} {dist:<7s}: "
                f"{res.lookups:6d} lookups in {cycles:6d} cycles = "
                f"{res.lookups / cycles:.4f} lookups/cycle "
                f"({100 * res.lookups * pitch / cycles:.1f} % of the pin limit), "
                f"hit rate {hits / max(1, hits + misses):.3f}")
        g.log.info("%s", line)
        if os.environ.get("GATHER_BENCH_PROGRESS"):
            with open(os.environ["GATHER_BENCH_PROGRESS"], "a") as f:
                f.write(line + "\n")
    out = {"backend": g.config.backend, "data_width": g.config.width,
           "chip": g.config.chip if g.sdram is not None else None,
           "lanes": g.p.lanes, "cache_rows": g.p.cache_rows,
           "clk_mhz": round(1000 / g.config.clk_period_ns, 3), "results": results}
    run_dir = Path(os.environ.get("SEEDCHIP_RUN_DIR", "."))
    (run_dir / "gather_bench.json").write_text(json.dumps(out, indent=2) + "\n")
    await g.finish()
