"""A top level to test the host link on: HostLink + on-chip RAM + a toy register file.

Not the chip: the register file implements the register map's control,
status and unit-counter registers in the simplest way, so that every
command has something to act on. The chip top replaces it with the real
control unit behind the same ``regs`` port.
"""

import dataclasses
import hashlib
import json
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int
from ..link_protocol import (CTRL_RESET, CTRL_START, REG_ADDR_BITS, REG_WIDTH, STATUS_BUSY,
                             STATUS_DONE, Block, Reg)
from ..rtl.hostlink import HostLink, LinkParams
from ..rtl.memport import MemPortSignature
from ..rtl.onchip_ram import OnChipRAM

__all__ = ["LinkSimConfig", "RegFile", "LinkTestTop", "make_link_top", "TOPLEVEL",
           "RUN_CYCLES", "serve_config", "SERVE_MEM_BYTES"]

TOPLEVEL = "seedchip_link_top"
_LINK_PROTOCOL = Path(__file__).resolve().parent.parent / "link_protocol.py"
#: cycles a toy "program" runs after CTRL_START (STATUS busy, then done)
RUN_CYCLES = 200
#: on-chip RAM of ``open_device("sim")`` unless it is given ``mem_bytes``
SERVE_MEM_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class LinkSimConfig:
    """One simulation build of :class:`LinkTestTop`.

    ``divisor`` clocks per bit at a 10 ns clock; ``ram_depth`` words of
    ``data_width`` bits (addresses one bit wider, so out-of-range requests
    are representable).
    """

    data_width: int = 32
    ram_depth: int = 1024
    divisor: int = 8
    rx_slots: int = 4
    timeout_bytes: int = 64
    clk_period_ns: int = 10

    @property
    def baud(self) -> float:
        return 1e9 / (self.clk_period_ns * self.divisor)

    @property
    def mem_addr_width(self) -> int:
        return max(1, ceil_log2(self.ram_depth)) + 1

    @property
    def mem_bytes(self) -> int:
        return self.ram_depth * self.data_width // 8

    def link_params(self) -> LinkParams:
        return LinkParams(clk_freq=1e9 / self.clk_period_ns, baud=self.baud,
                          mem_addr_width=self.mem_addr_width, mem_data_width=self.data_width,
                          mem_words=self.ram_depth, rx_slots=self.rx_slots,
                          timeout_bytes=self.timeout_bytes, n_unit_counters=2)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        # the runner regenerates the Verilog when rtl/ or this module change;
        # the register map and opcodes live in link_protocol.py
        d["link_protocol_sha"] = hashlib.sha256(_LINK_PROTOCOL.read_bytes()).hexdigest()[:12]
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LinkSimConfig":
        d = json.loads(text)
        d.pop("link_protocol_sha", None)
        return cls(**d)


def serve_config(*, mem_bytes: int = SERVE_MEM_BYTES) -> LinkSimConfig:
    """The build ``open_device("sim")`` runs: ``mem_bytes`` of RAM in 32-bit
    words; 4 clocks per bit, the receiver's minimum (the tests use 8 and more
    to exercise its tolerance), so a byte costs the fewest simulated cycles;
    a partial frame dropped after 1000 byte times, as on a board."""
    check_int("mem_bytes", mem_bytes, 4, 1 << 24)
    if mem_bytes % 4:
        raise ValueError(f"mem_bytes must be a multiple of 4 (32-bit words), not {mem_bytes!r}")
    return LinkSimConfig(ram_depth=mem_bytes // 4, divisor=4, timeout_bytes=1000)


class RegFile(wiring.Component):
    """Toy control/status registers behind the link's register port.

    CTRL: CTRL_START starts a fake program (STATUS busy for RUN_CYCLES, then
    done; unit counter 1 counts starts), CTRL_RESET clears STATUS and the
    unit counters. STATUS, PROG_ADDR (read/write), SCRATCH (read/write).
    Unit counters: 0 = cycles since reset, 1 = starts (read-only). Anything
    else, or a write to a read-only register: ``err``. One cycle latency.
    """

    port: In(MemPortSignature(addr_width=REG_ADDR_BITS, data_width=REG_WIDTH))

    def elaborate(self, platform):
        m = Module()
        req, resp = self.port.req, self.port.resp
        prog_addr = Signal(32)
        scratch = Signal(32)
        busy = Signal()
        done = Signal()
        run = Signal(range(RUN_CYCLES + 1))
        cycles = Signal(32)
        starts = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(busy):
            m.d.sync += run.eq(run - 1)
            with m.If(run == 1):
                m.d.sync += [busy.eq(0), done.eq(1)]

        m.d.comb += req.ready.eq(~resp.valid | resp.ready)
        with m.If(resp.ready):
            m.d.sync += resp.valid.eq(0)
        with m.If(req.valid & req.ready):
            p = req.payload
            rdata = Signal(32)
            err = Signal()
            with m.Switch(p.addr):
                with m.Case(Reg.CTRL):
                    m.d.comb += err.eq(~p.we)
                    with m.If(p.we & (p.wdata & CTRL_START).any()):
                        m.d.sync += [busy.eq(1), done.eq(0), run.eq(RUN_CYCLES),
                                     starts.eq(starts + 1)]
                    with m.If(p.we & (p.wdata & CTRL_RESET).any()):
                        m.d.sync += [busy.eq(0), done.eq(0), cycles.eq(0), starts.eq(0)]
                with m.Case(Reg.STATUS):
                    m.d.comb += [err.eq(p.we),
                                 rdata.eq((busy * STATUS_BUSY) | (done * STATUS_DONE))]
                with m.Case(Reg.PROG_ADDR):
                    m.d.comb += rdata.eq(prog_addr)
                    with m.If(p.we):
                        m.d.sync += prog_addr.eq(p.wdata)
                with m.Case(Reg.SCRATCH):
                    m.d.comb += rdata.eq(scratch)
                    with m.If(p.we):
                        m.d.sync += scratch.eq(p.wdata)
                with m.Case(Block.UNIT.base):
                    m.d.comb += [err.eq(p.we), rdata.eq(cycles)]
                with m.Case(Block.UNIT.base + 1):
                    m.d.comb += [err.eq(p.we), rdata.eq(starts)]
                with m.Default():
                    m.d.comb += err.eq(1)
            m.d.sync += [resp.valid.eq(1), resp.payload.rdata.eq(rdata),
                         resp.payload.err.eq(err)]
        return m


class LinkTestTop(wiring.Component):
    """HostLink + OnChipRAM + RegFile. Ports: ``rx``/``tx`` (the UART pins),
    ``counters`` (the link's, for the testbench to cross-check)."""

    def __init__(self, config: LinkSimConfig):
        self.config = config
        self.link = HostLink(config.link_params())
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "counters": Out(self.link.counters.shape()),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.link = link = self.link
        m.submodules.ram = ram = OnChipRAM(depth=cfg.ram_depth, data_width=cfg.data_width,
                                           addr_width=cfg.mem_addr_width)
        m.submodules.regs = regs = RegFile()
        wiring.connect(m, link.mem, ram.port)
        wiring.connect(m, link.regs, regs.port)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx), self.counters.eq(link.counters)]
        return m


def make_link_top(*, config: LinkSimConfig) -> LinkTestTop:
    """Component factory for :mod:`seedchip.sim.runner`."""
    return LinkTestTop(config)
