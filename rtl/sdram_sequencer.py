"""The SDRAM controller's init and refresh sequencer."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from .sdram_chips import SDRAMTimings
from .sdram_common import SDRAMCommand
from .sdram_timers import SDRAMDistances

__all__ = ["SDRAMSequencer"]


class SDRAMSequencer(wiring.Component):
    """Power-up init (wait, PRECHARGE ALL, ``init_refreshes`` x AUTO REFRESH,
    LOAD MODE) and refresh (PRECHARGE ALL, AUTO REFRESH for every refresh owed)
    for the SDRAM controller, with the tREFI bookkeeping.

    Parameters (keyword-only): ``timings`` (:class:`SDRAMTimings`; ``tREFI``
    and ``init`` are read), ``dist`` (:class:`SDRAMDistances`; ``rp``, ``rfc``,
    ``mrd``), ``init_refreshes``, ``postpone_max`` (refreshes owed while
    traffic waits, see :class:`SDRAMController`).

    Ports
    -----
    idle : In(1)
        No request is waiting (a refresh goes out as soon as one is due).
    pre_ok : In(1)
        Every bank may be precharged (tRAS and tWR over).
    run_next, run : Out(1)
        The scheduler may issue commands next cycle / now (``run`` is
        ``run_next`` registered).
    cmd_en, cmd : Out(1), Out(SDRAMCommand)
        Override the scheduler's command with ``cmd`` this cycle.
    a10 : Out(1)
        Set A10 (PRECHARGE ALL).
    load_mode : Out(1)
        Put the mode register on A and 0 on BA.
    dqm_all : Out(1)
        Hold DQM high (init).
    pre_all : Out(1)
        A PRECHARGE ALL goes out this cycle.
    init_done : Out(1)
        Registered: init is over.
    refreshes : Out(32)
        AUTO REFRESH commands after init (wraps).
    """

    def __init__(self, *, timings, dist, init_refreshes, postpone_max):
        if not isinstance(timings, SDRAMTimings):
            raise TypeError(f"timings must be an SDRAMTimings, not {timings!r}")
        if not isinstance(dist, SDRAMDistances):
            raise TypeError(f"dist must be an SDRAMDistances, not {dist!r}")
        check_int("init_refreshes", init_refreshes, 1, 16)
        check_int("postpone_max", postpone_max, 0, 8)
        check_int("tREFI", timings.tREFI, 2, 1 << 24)
        self.timings = timings
        self.dist = dist
        self.init_refreshes = init_refreshes
        self.postpone_max = postpone_max
        super().__init__({
            "idle": In(1),
            "pre_ok": In(1),
            "run_next": Out(1),
            "run": Out(1),
            "cmd_en": Out(1),
            "cmd": Out(SDRAMCommand),
            "a10": Out(1),
            "load_mode": Out(1),
            "dqm_all": Out(1),
            "pre_all": Out(1),
            "init_done": Out(1),
            "refreshes": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        t, d = self.timings, self.dist

        # -- refresh bookkeeping ---------------------------------------------------------
        refi = Signal(range(t.tREFI), init=t.tREFI - 1)
        refi_tick = Signal()
        owed = Signal(range(self.postpone_max + 3))
        ref_issue = Signal()
        with m.If(self.init_done):
            with m.If(refi == 0):
                m.d.sync += refi.eq(t.tREFI - 1)
            with m.Else():
                m.d.sync += refi.eq(refi - 1)
            # Registered: keeps the wide zero test away from the scheduler.
            m.d.sync += refi_tick.eq(refi == 0)
        m.d.sync += owed.eq(owed + refi_tick - ref_issue)
        ref_want = Signal()
        m.d.sync += ref_want.eq((owed != 0) & (self.idle | (owed > self.postpone_max)))

        # -- sequencer ------------------------------------------------------------------------
        init_wait = Signal(range(max(t.init, 1) + 1), init=max(t.init, 1))
        init_wait_done = Signal()
        with m.If(init_wait != 0):
            m.d.sync += init_wait.eq(init_wait - 1)
        m.d.sync += init_wait_done.eq(init_wait == 0)

        seq_timer = Signal(range(max(d.rp, d.rfc, d.mrd) + 1))
        with m.If(seq_timer != 0):
            m.d.sync += seq_timer.eq(seq_timer - 1)
        init_refs = Signal(range(self.init_refreshes + 1))

        def command(cmd):
            m.d.comb += [self.cmd_en.eq(1), self.cmd.eq(cmd)]

        with m.FSM(name="seq"):
            with m.State("INIT-WAIT"):
                m.d.comb += self.dqm_all.eq(1)
                with m.If(init_wait_done):
                    m.next = "INIT-PRECHARGE"
            with m.State("INIT-PRECHARGE"):
                m.d.comb += [self.dqm_all.eq(1), self.a10.eq(1), self.pre_all.eq(1)]
                command(SDRAMCommand.PRECHARGE)
                m.d.sync += seq_timer.eq(d.rp - 1)
                m.next = "INIT-REFRESH"
            with m.State("INIT-REFRESH"):
                m.d.comb += self.dqm_all.eq(1)
                with m.If(seq_timer == 0):
                    command(SDRAMCommand.AUTO_REFRESH)
                    m.d.sync += [
                        seq_timer.eq(d.rfc - 1),
                        init_refs.eq(init_refs + 1),
                    ]
                    with m.If(init_refs == self.init_refreshes - 1):
                        m.next = "INIT-MODE"
            with m.State("INIT-MODE"):
                m.d.comb += self.dqm_all.eq(1)
                with m.If(seq_timer == 0):
                    command(SDRAMCommand.LOAD_MODE)
                    m.d.comb += self.load_mode.eq(1)
                    m.d.sync += seq_timer.eq(d.mrd - 1)
                    m.next = "INIT-MRD"
            with m.State("INIT-MRD"):
                with m.If(seq_timer == 0):
                    m.d.sync += self.init_done.eq(1)
                    m.d.comb += self.run_next.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.run_next.eq(~ref_want)
                with m.If(ref_want):
                    m.next = "REFRESH-PRECHARGE"
            with m.State("REFRESH-PRECHARGE"):
                # ``run`` is still high in the first cycle here: wait for any
                # command issued then (the timers see it).
                with m.If(self.pre_ok & ~self.run):
                    command(SDRAMCommand.PRECHARGE)
                    m.d.comb += [self.a10.eq(1), self.pre_all.eq(1)]
                    m.d.sync += seq_timer.eq(d.rp - 1)
                    m.next = "REFRESH"
            with m.State("REFRESH"):
                with m.If(seq_timer == 0):
                    command(SDRAMCommand.AUTO_REFRESH)
                    m.d.comb += ref_issue.eq(1)
                    m.d.sync += [
                        seq_timer.eq(d.rfc - 1),
                        self.refreshes.eq(self.refreshes + 1),
                    ]
                    m.next = "REFRESH-WAIT"
            with m.State("REFRESH-WAIT"):
                with m.If(seq_timer == 0):
                    with m.If(owed != 0):
                        m.next = "REFRESH"
                    with m.Else():
                        m.d.comb += self.run_next.eq(1)
                        m.next = "RUN"
        m.d.sync += self.run.eq(self.run_next)
        return m
