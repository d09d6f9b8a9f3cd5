"""The control unit's registers and cycle counters behind the host link's
register port (part of :class:`~seedchip.rtl.control.ControlUnit`).

The register map is :mod:`seedchip.link_protocol` (``Reg``, ``Block.UNIT``:
``UNIT_CYCLES``, ``unit_counter``); the STATUS word is
:data:`seedchip.isa.StatusLayout`'s first word.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import isa
from ..link_protocol import (CTRL_RESET, CTRL_START, N_UNITS, REG_ADDR_BITS, REG_WIDTH,
                             UNIT_CYCLES, Reg, UnitCounter, unit_counter)
from .memport import MemPortSignature

__all__ = ["ControlRegs"]


class ControlRegs(wiring.Component):
    """Register file of the control unit.

    Ports
    -----
    port : In(MemPortSignature(REG_ADDR_BITS, 32))
        One response per request, the cycle after it is taken; always ready
        while the response is taken, except in the cycle after a CTRL write.
        ``err``: CTRL read, a read-only register written, an unknown register,
        CTRL_START while a program runs.
    start, reset : Out(1)
        CTRL_START (not while ``status.busy``) / CTRL_RESET written, the cycle
        after the write (RESET wins). Registered for Fmax: the port's decode
        does not reach the dispatch and the counters; the next request waits
        for that cycle, so it sees their effect as if immediate.
    prog_addr : Out(32)
    status : In(isa.StatusLayout)
    unit_busy, mem_stall : In(N_UNITS)
        Per unit: holds an instruction / waits for memory (counted while busy only).

    Counters (32 bits, wrapping) count while ``status.busy``; ``start`` and
    ``reset`` clear them.
    """

    port: In(MemPortSignature(addr_width=REG_ADDR_BITS, data_width=REG_WIDTH))
    start: Out(1)
    reset: Out(1)
    prog_addr: Out(32)
    status: In(isa.StatusLayout)
    unit_busy: In(N_UNITS)
    mem_stall: In(N_UNITS)

    def _counters(self, m):
        """``{register index: counter}``."""
        running = self.status.busy
        cycles = Signal(32)
        regs = {UNIT_CYCLES: cycles}
        incs = [(cycles, running)]
        for u in range(N_UNITS):
            busy = self.unit_busy[u]
            for c, cond in ((UnitCounter.BUSY, busy),
                            (UnitCounter.MEM_STALL, busy & self.mem_stall[u]),
                            (UnitCounter.IDLE, ~busy)):
                sig = Signal(32, name=f"unit{u}_{c.name.lower()}")
                regs[unit_counter(u, c)] = sig
                incs.append((sig, running & cond))
        with m.If(self.start | self.reset):
            m.d.sync += [sig.eq(0) for sig, _ in incs]
        with m.Else():
            m.d.sync += [sig.eq(sig + inc) for sig, inc in incs]
        return regs

    def elaborate(self, platform):
        m = Module()
        req, resp = self.port.req, self.port.resp
        p = req.payload
        scratch = Signal(32)
        prog_addr = Signal(32)
        m.d.comb += self.prog_addr.eq(prog_addr)
        st = self.status
        word0 = Signal(isa.StatusLayout.size)
        m.d.comb += word0.eq(st.as_value())
        readonly = {Reg.STATUS: word0[:32], Reg.PC: st.pc, Reg.RETIRED: st.retired,
                    Reg.ERR_BAG: st.bag, Reg.ERR_INDEX: st.index, **self._counters(m)}

        ctrl_written = Signal()
        m.d.comb += req.ready.eq((~resp.valid | resp.ready) & ~ctrl_written)
        with m.If(resp.ready):
            m.d.sync += resp.valid.eq(0)
        go = req.valid & req.ready
        rdata, err = Signal(32), Signal()
        m.d.sync += [ctrl_written.eq(0), self.reset.eq(0), self.start.eq(0)]
        with m.Switch(p.addr):
            with m.Case(Reg.CTRL):
                start = p.we & (p.wdata & CTRL_START).any()
                reset = p.we & (p.wdata & CTRL_RESET).any()
                m.d.comb += err.eq(~p.we | (start & ~reset & st.busy))
                m.d.sync += [ctrl_written.eq(go & p.we), self.reset.eq(go & reset),
                             self.start.eq(go & start & ~reset & ~st.busy)]
            with m.Case(Reg.PROG_ADDR):
                m.d.comb += rdata.eq(prog_addr)
                with m.If(go & p.we):
                    m.d.sync += prog_addr.eq(p.wdata)
            with m.Case(Reg.SCRATCH):
                m.d.comb += rdata.eq(scratch)
                with m.If(go & p.we):
                    m.d.sync += scratch.eq(p.wdata)
            for index, sig in readonly.items():
                with m.Case(index):
                    m.d.comb += [rdata.eq(sig), err.eq(p.we)]
            with m.Default():
                m.d.comb += err.eq(1)
        with m.If(go):
            m.d.sync += [resp.valid.eq(1), resp.payload.rdata.eq(rdata),
                         resp.payload.err.eq(err)]
        return m
