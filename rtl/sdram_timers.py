"""Command distances of the SDRAM controller and its per-bank timers."""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from .sdram_chips import SDRAMTimings

__all__ = ["SDRAMDistances", "SDRAMBankTimers"]


@dataclasses.dataclass(frozen=True)
class SDRAMDistances:
    """Minimum distances (in command edges) the controller keeps between commands.

    Every readiness flag of the controller is a register, so a timer allows its
    next command 2 edges after its trigger at the earliest. The queue's row-hit
    and need flags follow ACTIVATE/PRECHARGE up to 2 cycles late (that keeps the
    row comparators off the command path); ``ras`` >= 3 covers that after an
    ACTIVATE. ``ras`` is also stretched to tRC - tRP so that ACT->PRE->ACT meets
    tRC without a tRC timer. ``rd_wr``: a READ at R has the SDRAM drive DQ for
    edge R + CL; a WRITE at W has the FPGA drive DQ from edge W - 1 on; one idle
    cycle in between.
    """
    rcd: int
    ras: int
    rp: int
    wr: int
    rrd: int
    rfc: int
    mrd: int
    rd_wr: int

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_int(f.name, getattr(self, f.name), 1, 1 << 20)

    @classmethod
    def of(cls, timings, *, cas_latency):
        if not isinstance(timings, SDRAMTimings):
            raise TypeError(f"timings must be an SDRAMTimings, not {timings!r}")
        check_int("cas_latency", cas_latency, 1, 3)
        t = timings
        return cls(
            rcd=t.tRCD,
            ras=max(3, t.tRAS, t.tRC - t.tRP),
            rp=t.tRP,
            wr=t.tWR,
            rrd=t.tRRD,
            rfc=max(1, t.tRFC),
            mrd=max(1, t.tMRD),
            rd_wr=cas_latency + 2,
        )


def _timer(m, name, dist, load):
    """Registered ``ok`` flag: low from the edge after ``load`` until ``dist``
    edges after it (at least 2). Returns ``(ok, soon)``; ``soon`` is ``ok``
    of the next cycle unless loaded now."""
    ctr = Signal(range(max(dist, 2)), name=f"{name}_ctr")
    ok = Signal(init=1, name=f"{name}_ok")
    soon = Signal(name=f"{name}_soon")
    m.d.comb += soon.eq(ctr <= 1)
    with m.If(load):
        m.d.sync += ctr.eq(max(dist, 2) - 1)
    with m.Elif(ctr != 0):
        m.d.sync += ctr.eq(ctr - 1)
    m.d.sync += ok.eq(~load & soon)
    return ok, soon


class SDRAMBankTimers(wiring.Component):
    """The controller's command timers: tRCD, tRAS, tWR, tRP per bank, tRRD and
    the read-to-write turnaround for the chip.

    Ports
    -----
    act, pre : In(banks)
        ACTIVATE / PRECHARGE issued to bank b this cycle.
    wr : In(banks)
        WRITE issued to bank b this cycle.
    rd : In(1)
        READ issued this cycle (any bank).
    col_soon : Out(banks)
        Bank b may take a READ/WRITE next cycle (tRCD), unless activated now.
    pre_ok : Out(banks)
        Registered: bank b may be precharged now (tRAS and tWR over).
    ras_soon, wr_soon, rp_soon : Out(banks)
        tRAS, tWR, tRP of bank b over next cycle unless triggered now.
    rrd_soon, rdwr_soon : Out(1)
        tRRD and READ->WRITE turnaround over next cycle unless triggered now.

    Latency: every ``*_soon`` output is combinational from the timer counters
    (registers); inputs act from the next edge on.
    """

    def __init__(self, *, banks, dist):
        check_int("banks", banks, 1, 8)
        if not isinstance(dist, SDRAMDistances):
            raise TypeError(f"dist must be an SDRAMDistances, not {dist!r}")
        self.banks = banks
        self.dist = dist
        super().__init__({
            "act": In(banks),
            "pre": In(banks),
            "wr": In(banks),
            "rd": In(1),
            "col_soon": Out(banks),
            "pre_ok": Out(banks),
            "ras_soon": Out(banks),
            "wr_soon": Out(banks),
            "rp_soon": Out(banks),
            "rrd_soon": Out(1),
            "rdwr_soon": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.dist
        for b in range(self.banks):
            _, rcd_soon = _timer(m, f"rcd{b}", d.rcd, self.act[b])
            ras_ok, ras_soon = _timer(m, f"ras{b}", d.ras, self.act[b])
            wr_ok, wr_soon = _timer(m, f"wr{b}", d.wr, self.wr[b])
            _, rp_soon = _timer(m, f"rp{b}", d.rp, self.pre[b])
            m.d.comb += [
                self.col_soon[b].eq(rcd_soon),
                self.pre_ok[b].eq(ras_ok & wr_ok),
                self.ras_soon[b].eq(ras_soon),
                self.wr_soon[b].eq(wr_soon),
                self.rp_soon[b].eq(rp_soon),
            ]
        _, rrd_soon = _timer(m, "rrd", d.rrd, self.act.any())
        _, rdwr_soon = _timer(m, "rdwr", d.rd_wr, self.rd)
        m.d.comb += [
            self.rrd_soon.eq(rrd_soon),
            self.rdwr_soon.eq(rdwr_soon),
        ]
        return m
