"""The whole chip: host link, control unit, the execution units and the
memory arbiter, around one chip memory.

::

    rx/tx --> HostLink --regs--> ControlUnit --gemm--> MatrixSlot: GemmFront | InteractUnit
                 |                   |        --gather-> GatherFront (GatherEngine inside)
                 |                   |        --copy---> CopyUnit
                 v                   v                       |
                mem                fetch                   mem ports (one arbiter per unit)
                 \\__________________|_______________________/
                                     v
                              MemArbiter --> mem (OnChipRAM or the SDRAM behind a width adapter)

Every operand and result lives in the chip memory, 64-bit words
(:data:`WORD_BYTES` = :data:`seedchip.isa.ALIGN`): the host writes data and
programs there over the link, the control unit fetches the program from it,
the units move their operands with their own DMA clients. The memory
backend is outside this component (``mem`` port): :class:`~seedchip.rtl.onchip_ram.OnChipRAM`
in simulation, the SDRAM controller on a board.

Each unit sits behind an :class:`AbortFilter`: CTRL_RESET (``abort``) lets
the control unit forget a unit's instruction at once, while the unit finishes
it (its memory traffic included) and the filter swallows its ``done``, so a
unit never reports an old instruction as a new one's end.

On a board whose SDRAM controller has a clock of its own, the GATHER unit
runs at that clock too (``gather_domain``): the engine's pace is the
SDRAM's, and the unit alone closes timing far above the whole chip. Its
port to the control unit crosses in a :class:`~seedchip.rtl.memcdc.UnitPortCDC`
(behind its AbortFilter, in ``sync``), and its memory traffic leaves the
chip on a port of its own, ``gather_mem``, which the board's top merges
with ``mem`` in the controller's domain
(:class:`~seedchip.rtl.chip_sdram.ChipOnSDRAM`).
"""

from __future__ import annotations

from amaranth.hdl import DomainRenamer, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int, check_type
from ..config import ChipConfig
from ..gather_params import GatherParams
from ..isa import ChipState, Limits, Opcode, Unit
from .arbiter import MemArbiter
from .chip_copy import CopyUnit
from .chip_gather import GatherFront
from .chip_gemm import GemmFront
from .chip_interact import InteractUnit
from .control import GEMM_UNIT_CMD, UNIT_CMD, ControlUnit, UnitPortSignature
from .hostlink import HostLink, LinkParams
from .memcdc import UnitPortCDC
from .memport import MemPortSignature, req_layout
from .skid import RegisterSlice, SkidBuffer
from ..link_protocol import N_UNIT_REGS

__all__ = ["WORD_BYTES", "DATA_WIDTH", "chip_addr_width", "AbortFilter", "MatrixSlot", "Chip"]

#: The chip memory's word: 8 bytes, the ISA's alignment.
WORD_BYTES = 8
DATA_WIDTH = 8 * WORD_BYTES
#: Largest chip memory: the ISA's 32-bit byte addresses.
MAX_MEM_BYTES = 1 << 32


def chip_addr_width(mem_bytes: int) -> int:
    """Word-address bits of a chip memory of ``mem_bytes``: one more than the
    words need, so that an address past the end is representable (and
    answered ``err`` by the backend)."""
    return max(1, ceil_log2(mem_bytes // WORD_BYTES)) + 1


#: requests in flight through an arbiter: enough to cover the SDRAM's round
#: trip (a 64-bit word is 4 SDRAM beats, and the path through two arbiters,
#: the width adapter and the controller is about 30 cycles long)
MAX_OUTSTANDING = 16


def merge_ports(m, name, ports, *, addr_width, max_outstanding=MAX_OUTSTANDING, sliced=False,
                sinks=(), registered=()):
    """One memory port for ``ports`` (a list of client ports): the port itself,
    or a round-robin :class:`MemArbiter` in front of them (a submodule ``name``).
    ``sinks``: the indices of ports whose client holds ``resp.ready`` at 1
    (the arbiter's ``sinks``). The port returned is a sink too when it is an
    arbiter's ``mem`` (an arbiter holds ``mem.resp.ready`` at 1).

    ``sliced``: each port's requests reach the arbiter through a
    :class:`~seedchip.rtl.skid.RegisterSlice` (submodules ``name_slice<i>``),
    registered both ways: the arbiter's grant, which waits on every port's
    ``valid`` and on the backend's ``ready``, then starts and ends at flops
    near the arbiter, not in the client's request logic and ``ready`` logic
    (another arbiter's grant, a unit's state machine) across the die. It
    costs a cycle of request latency per arbiter. ``registered``: the
    indices of ports whose requests already come from registers (an
    arbiter's ``mem``): a :class:`~seedchip.rtl.skid.SkidBuffer` cuts their
    ``ready`` alone, without the cycle."""
    if len(ports) == 1:
        return ports[0]
    arb = MemArbiter(n_ports=len(ports), addr_width=addr_width, data_width=DATA_WIDTH,
                     max_outstanding=max_outstanding, sinks=sinks)
    m.submodules[name] = arb
    for i, p in enumerate(ports):
        if sliced:
            buf = SkidBuffer if i in registered else RegisterSlice
            m.submodules[f"{name}_slice{i}"] = sl = buf(shape=req_layout(addr_width, DATA_WIDTH))
            wiring.connect(m, p.req, sl.i)
            wiring.connect(m, sl.o, arb.ports[i].req)
            wiring.connect(m, arb.ports[i].resp, p.resp)
        else:
            wiring.connect(m, arb.ports[i], p)
    return arb.mem


class AbortFilter(wiring.Component):
    """Between the control unit (``up``) and a unit (``down``): passes commands
    and dones through; on ``up.abort`` the commands the unit holds are marked
    and their dones are swallowed when they come."""

    def __init__(self, cmd_layout):
        super().__init__({
            "up": In(UnitPortSignature(cmd_layout)),
            "down": Out(UnitPortSignature(cmd_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        up, down = self.up, self.down
        held = Signal(2)            # commands taken by the unit and not yet done
        squash = Signal(2)          # of those, aborted ones
        taken = down.cmd.valid & down.cmd.ready
        finished = down.done.valid & down.done.ready
        m.d.comb += [
            down.cmd.valid.eq(up.cmd.valid & ~up.abort),
            down.cmd.payload.eq(up.cmd.payload),
            up.cmd.ready.eq(down.cmd.ready & ~up.abort),
            up.done.payload.eq(down.done.payload),
            up.done.valid.eq(down.done.valid & (squash == 0)),
            down.done.ready.eq(Mux(squash == 0, up.done.ready, 1)),
            up.mem_stall.eq(down.mem_stall),
            down.abort.eq(0),
        ]
        m.d.sync += held.eq(held + taken - finished)
        with m.If(up.abort):
            m.d.sync += squash.eq(held + taken - finished)
        with m.Elif(finished & (squash != 0)):
            m.d.sync += squash.eq(squash - 1)
        return m


class MatrixSlot(wiring.Component):
    """The control unit's GEMM slot: GEMM to :class:`GemmFront`, INTERACT to
    :class:`InteractUnit` (one instruction at a time in the slot, so the two
    dones never meet)."""

    def __init__(self, gemm, interact):
        self.gemm, self.interact = gemm, interact
        super().__init__({"ctl": In(UnitPortSignature(GEMM_UNIT_CMD))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.gemm = g = self.gemm
        m.submodules.interact = x = self.interact
        cmd, done = self.ctl.cmd, self.ctl.done
        is_x = cmd.payload.opcode == Opcode.INTERACT
        m.d.comb += [
            g.ctl.cmd.payload.eq(cmd.payload), x.ctl.cmd.payload.eq(cmd.payload),
            g.ctl.cmd.valid.eq(cmd.valid & ~is_x), x.ctl.cmd.valid.eq(cmd.valid & is_x),
            cmd.ready.eq(Mux(is_x, x.ctl.cmd.ready, g.ctl.cmd.ready)),
            done.valid.eq(g.ctl.done.valid | x.ctl.done.valid),
            done.payload.eq(Mux(g.ctl.done.valid, g.ctl.done.payload, x.ctl.done.payload)),
            g.ctl.done.ready.eq(done.ready),
            x.ctl.done.ready.eq(done.ready & ~g.ctl.done.valid),
            self.ctl.mem_stall.eq(g.ctl.mem_stall | x.ctl.mem_stall),
        ]
        return m


class Chip(wiring.Component):
    """The chip (see the module docstring).

    Parameters (keyword-only)
    -------------------------
    config : ChipConfig
        The matrix unit's array and buffers; ``config.gather`` the gather
        engine's :class:`~seedchip.gather_params.GatherParams` (``None``:
        the default engine), whose memory geometry the chip sets.
    mem_bytes : int
        The chip memory's size (a multiple of 8, at most 4 GiB).
    clk_freq, baud : float
        The clock and the host link's baud (:class:`~seedchip.rtl.hostlink.LinkParams`).
    rx_slots, timeout_bytes : int
        The link's receive window and partial-frame timeout.
    gather_domain : str or None
        ``None``: every unit in ``sync``. A domain name (not ``sync``): the
        GATHER unit and its arbiter run in that domain (a board's SDRAM
        controller's, whose pace is the engine's), their memory traffic
        leaves on ``gather_mem`` instead of ``mem``, and the control unit's
        port to them crosses in a :class:`~seedchip.rtl.memcdc.UnitPortCDC`.

    Ports
    -----
    rx : In(1), tx : Out(1)
        The host link's UART pins.
    mem : Out(MemPortSignature(chip_addr_width(mem_bytes), 64))
        The chip memory.
    gather_mem : Out(MemPortSignature(chip_addr_width(mem_bytes), 64))
        Only with ``gather_domain``: the GATHER unit's port to the same
        memory, in that domain; it holds ``resp.ready`` at 1 (an arbiter's).
    running, done, error : Out(1)
        The program's state (for LEDs).
    link_rx, link_tx : Out(1)
        The UART lines are active (a byte is on them; for LEDs).
    """

    def __init__(self, *, config, mem_bytes, clk_freq=100e6, baud=3_000_000, rx_slots=4,
                 timeout_bytes=1000, gather_domain=None):
        self.config = check_type("config", config, ChipConfig)
        if gather_domain is not None and (not isinstance(gather_domain, str)
                                          or gather_domain in ("", "sync")):
            raise ValueError(f"gather_domain must be None or a clock domain's name other than "
                             f"'sync', not {gather_domain!r}")
        self.gather_domain = gather_domain
        check_int("mem_bytes", mem_bytes, 4096, MAX_MEM_BYTES)
        if mem_bytes % WORD_BYTES:
            raise ValueError(f"mem_bytes must be a multiple of {WORD_BYTES}, not {mem_bytes!r}")
        self.mem_bytes = mem_bytes
        self.addr_width = aw = chip_addr_width(mem_bytes)
        self.limits = Limits.from_config(config)
        self.link_params = LinkParams(clk_freq=clk_freq, baud=baud, mem_addr_width=aw,
                                      mem_data_width=DATA_WIDTH,
                                      mem_words=mem_bytes // WORD_BYTES, rx_slots=rx_slots,
                                      timeout_bytes=timeout_bytes,
                                      n_unit_counters=N_UNIT_REGS)
        self.gather_params = (config.gather or GatherParams()).with_memory(
            data_width=DATA_WIDTH, addr_width=aw)
        port = MemPortSignature(addr_width=aw, data_width=DATA_WIDTH)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "mem": Out(port),
            **({"gather_mem": Out(port)} if gather_domain else {}),
            "running": Out(1), "done": Out(1), "error": Out(1),
            "link_rx": Out(1), "link_tx": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        aw, mb = self.addr_width, self.mem_bytes
        m.submodules.link = link = HostLink(self.link_params)
        m.submodules.control = ctl = ControlUnit(addr_width=aw, data_width=DATA_WIDTH,
                                                 mem_bytes=mb, limits=self.limits)
        units = {
            Unit.GEMM: MatrixSlot(GemmFront(config=self.config, addr_width=aw, mem_bytes=mb),
                                  InteractUnit(addr_width=aw, mem_bytes=mb, limits=self.limits)),
            Unit.GATHER: GatherFront(params=self.gather_params, mem_bytes=mb),
            Unit.COPY: CopyUnit(addr_width=aw, mem_bytes=mb),
        }
        wiring.connect(m, link.regs, ctl.regs)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]

        # the ports whose client holds resp.ready at 1 (see MemArbiter's
        # sinks): the control unit's fetch, and every arbiter's mem
        clients = [link.mem, ctl.mem]
        sinks = [1] if 0 in ctl.resp_sinks else []
        registered = []
        for u, unit in units.items():
            name = u.name.lower()
            m.submodules[f"{name}_abort"] = filt = AbortFilter(UNIT_CMD[u])
            wiring.connect(m, getattr(ctl, name), filt.up)
            if u == Unit.GATHER and self.gather_domain:
                # the unit and its arbiter in their own domain, one module
                # `gather` (its submodules `unit`, `arbiter`, `arbiter_slice<i>`)
                dom = self.gather_domain
                m.submodules.gather_cdc = cdc = UnitPortCDC(UNIT_CMD[u], up_domain="sync",
                                                            down_domain=dom)
                wiring.connect(m, filt.down, cdc.up)
                wiring.connect(m, cdc.down, unit.ctl)
                slot = Module()
                slot.submodules.unit = unit
                port = merge_ports(slot, "arbiter", list(unit.mem), addr_width=aw, sliced=True,
                                   sinks=list(unit.resp_sinks))
                m.submodules[name] = DomainRenamer(dom)(slot)
                wiring.connect(m, port, wiring.flipped(self.gather_mem))
                continue
            m.submodules[name] = unit
            wiring.connect(m, filt.down, unit.ctl)
            if u == Unit.GEMM:
                ports = list(unit.gemm.mem) + list(unit.interact.mem)
                unit_sinks = (list(unit.gemm.resp_sinks)
                              + [len(unit.gemm.mem) + i for i in unit.interact.resp_sinks])
            else:
                ports = list(unit.mem)
                unit_sinks = list(unit.resp_sinks)
            # register slices between the unit's clients and its arbiter: the
            # clients' request logic and the arbiter's grant meet at flops
            # an arbiter's mem: its requests leave the staging register, its
            # resp.ready is 1
            merged = len(ports) > 1
            if merged:
                registered.append(len(clients))
            if merged or 0 in unit_sinks:
                sinks.append(len(clients))
            clients.append(merge_ports(m, f"{name}_arbiter", ports, addr_width=aw, sliced=True,
                                       sinks=unit_sinks))
        # and in front of the top arbiter: its grant (all five clients'
        # valids, the backend's ready) would otherwise run on into a unit
        # arbiter's grant, or the link's and the control unit's state machines
        wiring.connect(m, wiring.flipped(self.mem),
                       merge_ports(m, "arbiter", clients, addr_width=aw, sliced=True, sinks=sinks,
                                   registered=registered))

        st = ctl.reg_file.status
        m.d.comb += [self.running.eq(st.busy), self.done.eq(st.state == ChipState.DONE),
                     self.error.eq(st.state == ChipState.ERROR),
                     self.link_rx.eq(~self.rx), self.link_tx.eq(~link.tx)]
        return m
