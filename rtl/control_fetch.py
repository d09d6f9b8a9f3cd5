"""The control unit's instruction fetch (part of :class:`~seedchip.rtl.control.ControlUnit`).

Reads the 32-byte instructions at ``pc, pc + 32, ...`` over a memory port and
hands them on in order with their pc, one instruction ahead of the one the
consumer holds (the prefetch is one instruction: a program that writes its
own later instructions is a hazard anyway, :func:`seedchip.sim.chip_golden.check_hazards`).
A pc that is not a multiple of 32 or whose instruction does not lie inside
memory is not fetched: it is handed on with BAD_ALIGN/ADDR_RANGE (PC) and
fetching stops, as does a word answered with ``err`` (MEM_ERROR).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import isa
from ..checks import check_int, check_pow2
from ..isa import ChipError, Operand
from .memport import MemPortSignature

__all__ = ["FetchedLayout", "FETCH_UNIT", "InsnFetch", "check_mem_bytes"]

#: An instruction on its way to dispatch: the word, its pc, and the error it
#: already has (NONE, or the fetch's/the checker's verdict with its detail).
FetchedLayout = data.StructLayout({
    "insn": isa.InsnLayout,
    "pc": unsigned(32),
    "error": ChipError,
    "detail": unsigned(8),
})

#: MEM_ERROR's detail when the fetch got ``err`` (the units use their isa.Unit value).
FETCH_UNIT = len(isa.Unit)


def check_mem_bytes(mem_bytes, addr_width, data_width):
    """``mem_bytes`` as :class:`~seedchip.sim.chip_golden.ChipModel` takes it, and
    addressable with ``addr_width`` bits of ``data_width``-bit words."""
    check_int("mem_bytes", mem_bytes, isa.INSN_BYTES, isa.ADDR_LIMIT)
    if mem_bytes % isa.ALIGN:
        raise ValueError(f"mem_bytes must be a multiple of {isa.ALIGN}, not {mem_bytes!r}")
    if mem_bytes > (1 << addr_width) * (data_width // 8):
        raise ValueError(f"mem_bytes must be at most {(1 << addr_width) * (data_width // 8)} "
                         f"(addr_width {addr_width}, data_width {data_width}), not {mem_bytes!r}")
    return mem_bytes


class InsnFetch(wiring.Component):
    """Instruction fetch.

    Ports
    -----
    start : In(1); start_pc : In(32)
        Begin fetching at ``start_pc`` (while idle: after ``abort`` or a stop).
    abort : In(1)
        Drop the instruction in hand and stop; responses of requests already
        made are discarded as they come back (a later ``start`` is safe at once).
    mem : Out(MemPortSignature(addr_width, data_width))
        Reads only, ``32 / word bytes`` per instruction; responses always taken.
    out : Out(stream(FetchedLayout))
    busy : Out(1)

    Latency: the memory's, plus two cycles; one word per cycle while ``out`` is free.
    """

    def __init__(self, *, addr_width, data_width, mem_bytes):
        check_int("addr_width", addr_width, 1, 40)
        check_pow2("data_width", data_width, 16, 64)
        self.addr_width, self.data_width = addr_width, data_width
        self.mem_bytes = check_mem_bytes(mem_bytes, addr_width, data_width)
        super().__init__({
            "start": In(1), "start_pc": In(32), "abort": In(1),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=data_width)),
            "out": Out(stream.Signature(FetchedLayout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        wb = self.data_width // 8
        n_words = isa.INSN_BYTES // wb
        req, resp, out = self.mem.req, self.mem.resp, self.out

        running = Signal()
        pc = Signal(33)                           # 33 bits: pc + 32 never wraps
        issued = Signal(range(n_words + 1))
        got = Signal(range(n_words + 1))
        buf = Signal(isa.INSN_BITS)
        buf_err = Signal()
        checked = Signal()                        # this pc passed its align/range check
        # requests of this instruction (or an aborted one) not yet answered
        pending = Signal(range(2 * n_words + 1))
        drop = Signal(range(2 * n_words + 1))     # responses of aborted fetches to discard
        req_go = Signal()
        take = Signal()

        m.d.comb += [
            self.busy.eq(running | out.valid),
            req.valid.eq(running & checked & (issued != n_words)),
            req.payload.addr.eq((pc >> exact_log2(wb)) + issued),
            req.payload.we.eq(0),
            req_go.eq(req.valid & req.ready),
            resp.ready.eq(1),
            take.eq(resp.valid & (drop == 0)),
        ]
        m.d.sync += pending.eq(pending + req_go - resp.valid)
        with m.If(req_go):
            m.d.sync += issued.eq(issued + 1)
        with m.If(resp.valid & (drop != 0)):
            m.d.sync += drop.eq(drop - 1)
        with m.If(take):
            m.d.sync += [buf.eq(Cat(buf[8 * wb:], resp.payload.rdata)), got.eq(got + 1),
                         buf_err.eq(buf_err | resp.payload.err)]
        with m.If(out.valid & out.ready):
            m.d.sync += out.valid.eq(0)

        def emit(error, detail, stop):
            m.d.sync += [out.valid.eq(1), out.payload.pc.eq(pc), out.payload.error.eq(error),
                         out.payload.detail.eq(detail), out.payload.insn.eq(buf)]
            if stop:
                m.d.sync += running.eq(0)

        out_free = ~out.valid | out.ready
        # for Fmax the pc's checks are registered (their verdict enables the
        # whole of ``out``); they are of the current pc once it has held a cycle
        misaligned, beyond, pc_known = Signal(), Signal(), Signal()
        m.d.sync += [misaligned.eq(pc[:exact_log2(isa.PC_ALIGN)] != 0),
                     beyond.eq(pc > self.mem_bytes - isa.INSN_BYTES), pc_known.eq(1)]
        with m.If(running & ~checked & pc_known & out_free):
            with m.If(misaligned):
                emit(ChipError.BAD_ALIGN, Operand.PC, True)
            with m.Elif(beyond):
                emit(ChipError.ADDR_RANGE, Operand.PC, True)
            with m.Else():
                m.d.sync += checked.eq(1)
        # every word is in (``got`` counts the responses of earlier cycles)
        with m.If(running & checked & (got == n_words) & out_free):
            with m.If(buf_err):
                emit(ChipError.MEM_ERROR, FETCH_UNIT, True)
            with m.Else():
                emit(ChipError.NONE, 0, False)
            m.d.sync += [pc.eq(pc + isa.INSN_BYTES), pc_known.eq(0), checked.eq(0),
                         issued.eq(0), got.eq(0), buf_err.eq(0)]

        with m.If(self.abort):
            m.d.sync += [running.eq(0), out.valid.eq(0),
                         drop.eq(pending + req_go - resp.valid)]
        with m.Elif(self.start & ~running):
            m.d.sync += [running.eq(1), pc.eq(self.start_pc), pc_known.eq(0), checked.eq(0),
                         issued.eq(0), got.eq(0), buf_err.eq(0)]
        return m
