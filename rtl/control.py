"""The control unit: fetches a program from chip memory, checks each
instruction as :func:`seedchip.isa.validate` does, dispatches it in order to
its unit, and reports status and cycle counters on the host link's register
port.

::

    regs --> ControlRegs --start/reset--> Dispatch --cmd--> gemm, gather, copy units
                 ^  status, busy             ^   <--done--
                 |                           |
    mem <--> InsnFetch --> InsnCheck --------+

Execution rules (the module docstring of :mod:`seedchip.isa`): an
instruction dispatches when its unit is free and every unit of its ``wait``
mask has drained (FINISH: all units; NOP with a mask: a barrier). A unit is
busy from the cycle its command is offered until its ``done``. On an error
(a failed check, a bad pc, an error a unit reports) nothing more is
dispatched, the units drain, and the error of the earliest instruction in
program order is reported: every instruction carries its sequence number
(= the instructions before it = ``retired``), the errors are folded one per
two cycles keeping the smallest.

The unit seam (:class:`UnitPortSignature`, one per unit): ``cmd`` (the
unit's command: :data:`GEMM_UNIT_CMD`, :data:`GATHER_UNIT_CMD`,
:data:`COPY_UNIT_CMD`), ``done`` (one item per command, when the unit has
finished it, memory writes included; :data:`UnitDoneLayout`, always taken),
``mem_stall`` (for the counters) and ``abort`` (CTRL_RESET: drop everything).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import isa
from ..checks import check_int, check_pow2, check_type
from ..isa import ChipError, ChipState, Limits, Opcode, Unit
from ..link_protocol import N_UNITS, REG_ADDR_BITS, REG_WIDTH
from .control_check import InsnCheck
from .control_fetch import FetchedLayout, InsnFetch, check_mem_bytes
from .control_regs import ControlRegs
from .memport import MemPortSignature

__all__ = ["GEMM_UNIT_CMD", "GATHER_UNIT_CMD", "COPY_UNIT_CMD", "UNIT_CMD", "UnitDoneLayout",
           "UnitPortSignature", "Dispatch", "ControlUnit"]

#: The matrix unit's command: GEMM or INTERACT (``opcode``), its flags and operands.
GEMM_UNIT_CMD = data.StructLayout({
    "opcode": Opcode,
    "flags": isa.GemmFlags,             # INTERACT: isa.InteractFlags (PARAMS is bit 0 in both)
    "operands": data.UnionLayout({"gemm": isa.GEMM_OPERANDS, "interact": isa.INTERACT_OPERANDS}),
})
GATHER_UNIT_CMD = data.StructLayout({"flags": isa.GatherFlags, "operands": isa.GATHER_OPERANDS})
COPY_UNIT_CMD = data.StructLayout({"operands": isa.COPY_OPERANDS})
UNIT_CMD = {Unit.GEMM: GEMM_UNIT_CMD, Unit.GATHER: GATHER_UNIT_CMD, Unit.COPY: COPY_UNIT_CMD}

#: What a unit reports when it has finished a command: NONE, or GEMM_ERROR
#: (detail: GemmError), GATHER_ERROR (detail: GatherError, bag, index),
#: ADDR_RANGE (detail: Operand; GATHER's data-dependent extents, bag, index),
#: MEM_ERROR (detail: the unit, index: the byte address).
UnitDoneLayout = data.StructLayout({
    "error": ChipError, "detail": unsigned(8), "bag": unsigned(32), "index": unsigned(32),
})


class UnitPortSignature(wiring.Signature):
    """The control unit's side of one unit (see the module docstring)."""

    def __init__(self, cmd_layout):
        self.cmd_layout = cmd_layout
        super().__init__({
            "cmd": Out(stream.Signature(cmd_layout)),
            "done": In(stream.Signature(UnitDoneLayout)),
            "mem_stall": In(1),
            "abort": Out(1),
        })

    def __eq__(self, other):
        return isinstance(other, UnitPortSignature) and self.cmd_layout == other.cmd_layout

    def __repr__(self):
        return f"UnitPortSignature({self.cmd_layout!r})"


_UNIT_OF = {Opcode.GEMM: Unit.GEMM, Opcode.INTERACT: Unit.GEMM, Opcode.GATHER: Unit.GATHER,
            Opcode.COPY: Unit.COPY}
#: error record: a candidate of one source, or the one kept
_ErrRecord = data.StructLayout({
    "valid": unsigned(1), "seq": unsigned(32), "pc": unsigned(32), "error": ChipError,
    "detail": unsigned(8), "bag": unsigned(32), "index": unsigned(32),
})


def _unit_mask(op):
    """The ``1 << unit`` of the opcode ``op`` (a Value), 0 for none."""
    mask = 0
    for o, u in _UNIT_OF.items():
        mask = mask | Mux(op == o, 1 << u.value, 0)
    return mask


def _any(bits):
    """The OR of ``bits`` (0 for none)."""
    out = 0
    for b in bits:
        out = out | b
    return out


def _fill(rec, **fields):
    """Assignments that make ``rec`` (an _ErrRecord) a valid candidate of ``fields``."""
    return [rec.valid.eq(1)] + [getattr(rec, k).eq(v) for k, v in fields.items()]


def _unit_payload(m, cmd, u, insn):
    """The unit's command from the instruction word."""
    payload = cmd.payload
    if u == Unit.GEMM:
        return [payload.opcode.eq(insn.header.opcode), payload.flags.eq(insn.header.flags),
                payload.operands.eq(insn.operands.raw)]
    if u == Unit.GATHER:
        return [payload.flags.eq(insn.header.flags), payload.operands.eq(insn.operands.raw)]
    return [payload.operands.eq(insn.operands.raw)]


class Dispatch(wiring.Component):
    """In-order dispatch, unit tracking, error ordering and the program's status.

    Ports
    -----
    start : In(1); start_pc : In(32); reset : In(1)
        From the registers (``start`` only while not running).
    fetch_start : Out(1); fetch_pc : Out(32); fetch_abort : Out(1)
        To fetch and check (``fetch_abort``: drop what is prefetched);
        registered, a cycle after the start, reset, error or FINISH.
    insn : In(stream(FetchedLayout))
        Checked instructions in program order.
    gemm, gather, copy : Out(UnitPortSignature(...))
    unit_busy : Out(N_UNITS)
    status : Out(isa.StatusLayout)
        While running: pc of the last instruction dispatched, retired =
        instructions dispatched (NOPs included); stopped:
        :class:`seedchip.isa.Status`.
    """

    def __init__(self):
        super().__init__({
            "start": In(1), "start_pc": In(32), "reset": In(1),
            "fetch_start": Out(1), "fetch_pc": Out(32), "fetch_abort": Out(1),
            "insn": In(stream.Signature(FetchedLayout)),
            **{u.name.lower(): Out(UnitPortSignature(UNIT_CMD[u])) for u in Unit},
            "unit_busy": Out(N_UNITS),
            "status": Out(isa.StatusLayout),
        })

    def _units(self, m, slots, go, it, seq):
        """Per unit: the command register, busy, the sequence number and pc of
        its instruction, and its error candidate; returns when each is set."""
        fills = []
        for u in Unit:
            port = getattr(self, u.name.lower())
            busy = self.unit_busy[u.value]
            useq = Signal(32, name=f"{u.name.lower()}_seq")
            upc = Signal(32, name=f"{u.name.lower()}_pc")
            m.d.comb += [port.done.ready.eq(1), port.abort.eq(self.reset)]
            with m.If(port.cmd.valid & port.cmd.ready):
                m.d.sync += port.cmd.valid.eq(0)
            fills.append(port.done.valid & busy & (port.done.payload.error != ChipError.NONE))
            with m.If(port.done.valid & busy):
                m.d.sync += busy.eq(0)
                with m.If(fills[-1]):
                    d = port.done.payload
                    m.d.sync += _fill(slots[u.value], seq=useq, pc=upc, error=d.error,
                                      detail=d.detail, bag=d.bag, index=d.index)
            # for Fmax the wide registers follow the instruction in hand while the
            # unit is free (their enable is one flip-flop, not the dispatch
            # decision); they hold from the dispatch on, while the unit is busy
            with m.If(~busy):
                m.d.sync += [useq.eq(seq), upc.eq(it.pc), *_unit_payload(m, port.cmd, u, it.insn)]
            with m.If(go[u.value]):
                m.d.sync += [busy.eq(1), port.cmd.valid.eq(1)]
            with m.If(self.reset):
                m.d.sync += [busy.eq(0), port.cmd.valid.eq(0)]
        return fills

    def _fold(self, m, slots, best):
        """Pending candidates into ``best`` (the smallest seq), one every two
        cycles: for Fmax the 32-bit comparisons with ``best`` and the choice of
        the slot (the first pending) are registered in the cycle before ``best``
        may change (a slot is set once per run, so it holds still between its
        comparison and its fold; only a reset clears it, which ``slot.valid``
        sees)."""
        phase = Signal()
        m.d.sync += phase.eq(~phase)
        for n, slot in enumerate(slots):
            lt, pick = Signal(name=f"err_{n}_lt"), Signal(name=f"err_{n}_pick")
            first = ~_any([s.valid for s in slots[:n]]) if n else 1
            m.d.sync += [lt.eq(~best.valid | (slot.seq < best.seq)),
                         pick.eq(slot.valid & first)]
            with m.If(phase & pick & slot.valid):
                m.d.sync += slot.valid.eq(0)
                with m.If(lt):
                    m.d.sync += best.eq(slot)

    def elaborate(self, platform):
        m = Module()
        st = self.status
        it = self.insn.payload
        op = it.insn.header.opcode
        state = Signal(ChipState)
        seq, pc = Signal(32), Signal(32)
        slots = [Signal(_ErrRecord, name=f"err_{n}") for n in range(N_UNITS + 1)]
        best = Signal(_ErrRecord)
        pending = _any([s.valid for s in slots])
        # best.valid | pending as a flip-flop of its own (for Fmax): it rises
        # with a slot's fill and holds (a fold keeps best or the slot valid)
        # until a reset or a start
        stop = Signal()
        # for Fmax: state == RUNNING as a flip-flop of its own (set with ``state``)
        running = Signal()

        # for Fmax the instruction's decode is registered: it is the decode of
        # the item offered once that item has been offered for a cycle (an item
        # holds until taken; an abort drops it for longer than a cycle)
        need, unit_bit = Signal(N_UNITS), Signal(N_UNITS)
        ok, finish, decoded = Signal(), Signal(), Signal()
        mask = _unit_mask(op)
        m.d.sync += [unit_bit.eq(mask),
                     need.eq(Mux(op == Opcode.FINISH, isa.WAIT_ALL,
                                 it.insn.header.wait[:N_UNITS] | mask)),
                     ok.eq(it.error == ChipError.NONE), finish.eq(op == Opcode.FINISH),
                     decoded.eq(self.insn.valid & ~self.insn.ready)]
        free = (self.unit_busy & need) == 0
        take = running & ~stop & self.insn.valid & decoded & (~ok | free)
        go = Signal(N_UNITS)
        # for Fmax the fetch's start and abort are registered: the register
        # port's decode and the dispatch decision stop here, not in the fetch's
        # pc (the fetch starts a cycle later; the cycle it runs on after an
        # abort is harmless: nothing takes what it hands on, responses of what
        # it requested are dropped)
        start_fetch, abort_fetch = Signal(), Signal()
        m.d.comb += [self.insn.ready.eq(take), go.eq(Mux(take & ok, unit_bit, 0)),
                     abort_fetch.eq(self.reset | (running & stop))]
        m.d.sync += [self.fetch_start.eq(start_fetch), self.fetch_abort.eq(abort_fetch),
                     self.fetch_pc.eq(self.start_pc)]
        fills = self._units(m, slots, go, it, seq)
        self._fold(m, slots, best)
        m.d.sync += stop.eq(stop | _any(fills) | (take & ~ok))

        with m.If(take):
            m.d.sync += [pc.eq(it.pc), seq.eq(seq + 1)]
            with m.If(~ok):
                m.d.sync += _fill(slots[N_UNITS], seq=seq, pc=it.pc, error=it.error,
                                  detail=it.detail, bag=0,
                                  index=Mux(it.error == ChipError.MEM_ERROR, it.pc, 0))
            with m.Elif(finish):
                m.d.sync += [state.eq(ChipState.DONE), running.eq(0)]
                m.d.comb += abort_fetch.eq(1)
        # the units have drained and the earliest error is folded: ERROR. For
        # Fmax the condition is registered; nothing it depends on can change in
        # that cycle (no unit busy: no done; an error kept: no take; no slot
        # pending: no fold) except a reset, which ``running`` sees.
        drained = Signal()
        m.d.sync += drained.eq(running & ~pending & best.valid & (self.unit_busy == 0))
        with m.If(running & drained):
            m.d.sync += [state.eq(ChipState.ERROR), running.eq(0), seq.eq(best.seq),
                         pc.eq(best.pc)]
        with m.If(self.reset):
            m.d.sync += [state.eq(ChipState.IDLE), running.eq(0), seq.eq(0), pc.eq(0),
                         best.valid.eq(0), *[s.valid.eq(0) for s in slots], stop.eq(0)]
        with m.Elif(self.start & ~running):
            m.d.sync += [state.eq(ChipState.RUNNING), running.eq(1), seq.eq(0),
                         pc.eq(self.start_pc), best.valid.eq(0), stop.eq(0)]
            m.d.comb += start_fetch.eq(1)

        error = state == ChipState.ERROR
        m.d.comb += [st.busy.eq(running), st.state.eq(state), st.pc.eq(pc), st.retired.eq(seq),
                     st.done.eq((state == ChipState.DONE) | error),
                     st.error.eq(Mux(error, best.error, ChipError.NONE)),
                     st.detail.eq(Mux(error, best.detail, 0)),
                     st.bag.eq(Mux(error, best.bag, 0)), st.index.eq(Mux(error, best.index, 0))]
        return m


class ControlUnit(wiring.Component):
    """The control unit (see the module docstring).

    Parameters: ``addr_width``/``data_width`` of the memory port the program
    is fetched through (data_width 16, 32 or 64), ``mem_bytes`` the chip
    memory's size (what the checks take as its end), ``limits`` the units'
    :class:`~seedchip.isa.Limits`.

    Ports
    -----
    regs : In(MemPortSignature(REG_ADDR_BITS, 32))
        The register map of :mod:`seedchip.link_protocol`; never stalls on a
        unit or the memory.
    mem : Out(MemPortSignature(addr_width, data_width))
        Instruction fetch (reads only).
    gemm, gather, copy : Out(UnitPortSignature(GEMM_UNIT_CMD / ...))

    Per instruction: fetch (the memory's latency, one instruction prefetched
    while the previous one waits), 15 cycles of checks, a cycle of decode,
    then dispatch as soon as the units allow. Pipelined for 125 MHz on the
    ECP5-85F out of context (``python -m seedchip.boards.ooc``).
    """

    #: The ``mem`` ports whose client holds ``resp.ready`` at 1 (its own
    #: credited FIFO has room for every response it asked for): the
    #: chip's arbiter passes their responses through a register, not a
    #: FIFO (:class:`~seedchip.rtl.arbiter.MemArbiter`'s ``sinks``).
    resp_sinks = (0,)   # the instruction fetch

    def __init__(self, *, addr_width, data_width, mem_bytes, limits):
        check_int("addr_width", addr_width, 1, 40)
        check_pow2("data_width", data_width, 16, 64)
        self.addr_width, self.data_width = addr_width, data_width
        self.mem_bytes = check_mem_bytes(mem_bytes, addr_width, data_width)
        self.limits = check_type("limits", limits, Limits)
        self.fetch = InsnFetch(addr_width=addr_width, data_width=data_width,
                               mem_bytes=mem_bytes)
        self.check = InsnCheck(limits=limits, mem_bytes=mem_bytes)
        self.dispatch = Dispatch()
        self.reg_file = ControlRegs()
        super().__init__({
            "regs": In(MemPortSignature(addr_width=REG_ADDR_BITS, data_width=REG_WIDTH)),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=data_width)),
            **{u.name.lower(): Out(UnitPortSignature(UNIT_CMD[u])) for u in Unit},
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetch = fetch = self.fetch
        m.submodules.check = check = self.check
        m.submodules.dispatch = dispatch = self.dispatch
        m.submodules.regs = regs = self.reg_file
        wiring.connect(m, wiring.flipped(self.regs), regs.port)
        wiring.connect(m, fetch.mem, wiring.flipped(self.mem))
        wiring.connect(m, fetch.out, check.inp)
        wiring.connect(m, check.out, dispatch.insn)
        for u in Unit:
            name = u.name.lower()
            wiring.connect(m, getattr(dispatch, name), wiring.flipped(getattr(self, name)))
            m.d.comb += regs.mem_stall[u.value].eq(getattr(self, name).mem_stall)
        m.d.comb += [
            dispatch.start.eq(regs.start), dispatch.start_pc.eq(regs.prog_addr),
            dispatch.reset.eq(regs.reset),
            fetch.start.eq(dispatch.fetch_start), fetch.start_pc.eq(dispatch.fetch_pc),
            fetch.abort.eq(dispatch.fetch_abort), check.abort.eq(dispatch.fetch_abort),
            regs.status.eq(dispatch.status), regs.unit_busy.eq(dispatch.unit_busy),
        ]
        return m
