"""SDR SDRAM controller (chip descriptions live in :mod:`.sdram_chips`, re-exported here).

Pin-level conventions (shared with the cocotb model in ``sim/sdram_model.py``)
--------------------------------------------------------------------------------
* All pins are driven from registers in the controller's ``sync`` domain. The
  SDRAM samples ``cke``, ``cs_n``, ``ras_n``, ``cas_n``, ``we_n``, ``ba``,
  ``a``, ``dqm``, ``dq_o`` (and ``dq_oe``) on the rising clock edge; the edge at
  which a command is sampled is its *command edge*.
* A WRITE carries its data word: ``dq_o`` with ``dq_oe = 1`` and ``dqm`` (1 =
  byte *not* written) at the WRITE's command edge (burst length 1).
* A READ's data is sampled by the SDRAM's user ``cas_latency`` edges after the
  READ's command edge; the controller registers ``dq_i`` at command edge +
  ``cas_latency + read_delay`` (``read_delay`` = 0 in simulation, where the
  pins connect directly; on a board it covers the I/O registers). ``dqm`` is
  held 0 around reads.
* ``dq_oe`` is the tristate enable of the board's DQ buffers; ``dq_i`` is the
  pad input. Simulation needs no tristate.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_num
from .memport import MemPortSignature
from .sdram_chips import (SDRAMChip, SDRAMTimings, IS42S16160, MT48LC16M16A2, M12L64322A,
                          CHIPS, worst_case)
from .sdram_common import SDRAMCommand, SDRAMPinSignature, mode_register, or_all
from .sdram_queue import SDRAMQueue
from .sdram_response import SDRAMResponder
from .sdram_sequencer import SDRAMSequencer
from .sdram_timers import SDRAMBankTimers, SDRAMDistances

__all__ = [
    "SDRAMChip", "SDRAMTimings", "IS42S16160", "MT48LC16M16A2", "M12L64322A", "CHIPS",
    "worst_case",
    "SDRAMCommand", "SDRAMPinSignature", "SDRAMController",
]


class SDRAMController(wiring.Component):
    """SDR SDRAM controller: open-row policy, bank lookahead, in-order responses.

    Parameters (keyword-only)
    -------------------------
    chip : SDRAMChip
    clk_freq : float
        ``sync`` clock frequency in Hz (timings are rounded up to cycles at it).
    cas_latency : int or None
        One of ``chip.cas_latencies`` allowed at ``clk_freq``; None picks the
        lowest allowed.
    read_delay : int
        Extra cycles of registers on the read data path (I/O registers on a
        board, 0 in simulation): ``dq_i`` is registered ``cas_latency +
        read_delay`` edges after the READ's command edge.
    postpone_max : int
        Refreshes that may be owed (postponed) while requests are waiting,
        0..8. An idle controller refreshes as soon as one is due; when
        ``postpone_max + 1`` are owed, traffic stops until all are done.
    queue_depth : int
        Requests held for lookahead (2..8).
    resp_depth : int
        Response FIFO depth; column commands are issued only against free
        space in it, so read data is never dropped under ``resp`` backpressure.
        At least ``cas_latency + read_delay + 4`` for full rate.
    addr_width : int or None
        Word address width of ``port``; None means ``chip.addr_width + 1``, so
        that out-of-range addresses are representable (and get ``err``).

    Ports
    -----
    port : In(MemPortSignature(addr_width=addr_width, data_width=chip.data_width))
        One word per request. Word address mapping (``cb``, ``bb``, ``rb`` =
        column, bank, row bits)::

            addr[0 : cb]                column
            addr[cb : cb + bb]          bank
            addr[cb + bb : cb+bb+rb]    row
            addr[cb + bb + rb :] != 0   -> err response, no SDRAM command

        so a page (512 words = 1 KiB on the ULX3S) is contiguous and the next
        page lives in the next bank: sequential streams switch banks at page
        ends (the next bank's row opens while the current one still streams)
        and random rows spread evenly over the banks.
    pins : Out(SDRAMPinSignature(chip=chip))
        Registered outputs. See the module docstring for the sampling rules.
    init_done : Out(1)
        The init sequence is over (requests are accepted before, and wait).
    refreshes, row_hits, row_misses, activates : Out(32)
        Wrapping event counters: AUTO REFRESH commands after init; read/write
        commands whose row was already open (``row_hits``) or was opened for
        this very request (``row_misses``); ACTIVATE commands.

    Latency and throughput
    ----------------------
    A read that hits an open row in an idle controller responds
    ``cas_latency + read_delay + 5`` cycles after its request handshake (input
    register, queue, command register, CAS latency, capture register, response
    FIFO). Page hits run at one READ or WRITE per cycle; switching from reads to
    writes costs ``cas_latency + 1`` bus-turnaround cycles. Row commands
    (PRECHARGE, ACTIVATE) for the oldest queued request of each bank take
    priority over column commands, so the next bank's row opens while the
    current bank still transfers. Column commands stay in request order, so
    responses need no reordering. A refresh costs about ``tRP + tRFC`` cycles
    every ``tREFI``.
    """

    def __init__(self, *, chip, clk_freq, cas_latency=None, read_delay=0, postpone_max=None,
                 queue_depth=8, resp_depth=16, addr_width=None):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        check_num("clk_freq", clk_freq, 1e6, 400e6, " Hz")
        allowed = sorted(cl for cl, fmax in chip.cas_latencies if clk_freq <= fmax)
        if not allowed:
            raise ValueError(f"clk_freq must be at most {max(f for _, f in chip.cas_latencies):g} Hz "
                             f"for {chip.name}, not {clk_freq!r}")
        if cas_latency is None:
            cas_latency = allowed[0]
        elif not isinstance(cas_latency, int) or isinstance(cas_latency, bool):
            raise TypeError(f"cas_latency must be an integer, not {cas_latency!r}")
        elif cas_latency not in allowed:
            raise ValueError(f"cas_latency must be one of {', '.join(map(str, allowed))} for "
                             f"{chip.name} at {clk_freq / 1e6:g} MHz, not {cas_latency!r}")
        check_int("read_delay", read_delay, 0, 4)
        # Rows left open by traffic close only at a refresh; with postpone_max
        # refreshes owed, two refreshes can be (postpone_max + 1) tREFI apart,
        # plus the time to drain the queue: keep a whole tREFI of margin
        # against tRAS(max).
        postpone_hi = min(8, int(chip.tRAS_max // chip.tREFI) - 2)
        if postpone_max is None:
            postpone_max = postpone_hi
        check_int("postpone_max", postpone_max, 0, postpone_hi)
        check_int("queue_depth", queue_depth, 2, 8)
        check_int("resp_depth", resp_depth, 2, 256)
        if addr_width is None:
            addr_width = chip.addr_width + 1
        check_int("addr_width", addr_width, chip.addr_width, 40)

        self.chip = chip
        self.clk_freq = clk_freq
        self.cas_latency = cas_latency
        self.read_delay = read_delay
        self.postpone_max = postpone_max
        self.queue_depth = queue_depth
        self.resp_depth = resp_depth
        self.addr_width = addr_width
        self.timings = chip.cycles(clk_freq)
        super().__init__({
            "port": In(MemPortSignature(addr_width=addr_width, data_width=chip.data_width)),
            "pins": Out(SDRAMPinSignature(chip=chip)),
            "init_done": Out(1),
            "refreshes": Out(32),
            "row_hits": Out(32),
            "row_misses": Out(32),
            "activates": Out(32),
        })

    @property
    def mode_register(self):
        return mode_register(cas_latency=self.cas_latency)

    def elaborate(self, platform):
        m = Module()
        chip = self.chip
        nb, mw = chip.banks, chip.data_width // 8
        pins, port = self.pins, self.port
        dist = SDRAMDistances.of(self.timings, cas_latency=self.cas_latency)

        m.submodules.queue = queue = SDRAMQueue(chip=chip, depth=self.queue_depth,
                                                addr_width=self.addr_width)
        m.submodules.timers = timers = SDRAMBankTimers(banks=nb, dist=dist)
        m.submodules.seq = seq = SDRAMSequencer(timings=self.timings, dist=dist,
                                                init_refreshes=chip.init_refreshes,
                                                postpone_max=self.postpone_max)
        m.submodules.resp = resp = SDRAMResponder(data_width=chip.data_width,
                                                  delay=self.cas_latency + self.read_delay,
                                                  depth=self.resp_depth)

        head, head_side, bank_open = queue.head, queue.head_side, queue.bank_open
        go = Signal(nb)         # registered: bank b may take its row command
        pop = Signal()          # column slot used: READ, WRITE or err
        sel = Signal(nb)        # row command to bank b (one-hot)
        head_rd = Signal()
        head_wr = Signal()
        act_now = Signal(nb)
        pre_now = Signal(nb)
        row_a = Signal(chip.row_bits)   # row of the row command
        m.d.comb += [
            row_a.eq(or_all(Mux(sel[b], queue.need_row[b], 0) for b in range(nb))),
            act_now.eq(sel & ~bank_open),
            pre_now.eq(Mux(seq.pre_all, (1 << nb) - 1, sel & bank_open)),
        ]

        m.d.comb += [
            queue.req.valid.eq(port.req.valid),
            queue.req.payload.eq(port.req.payload),
            port.req.ready.eq(queue.req.ready),
            queue.pop.eq(pop),
            queue.act.eq(act_now),
            queue.pre.eq(pre_now),
            queue.row.eq(row_a),
            queue.col_soon.eq(timers.col_soon),
            queue.rdwr_soon.eq(timers.rdwr_soon),
            queue.credit_pop.eq(resp.credit_pop),
            queue.credit_nopop.eq(resp.credit_nopop),
            timers.act.eq(act_now),
            timers.pre.eq(pre_now),
            timers.wr.eq(Mux(head_wr, head.bank_oh, 0)),
            timers.rd.eq(head_rd),
            seq.idle.eq(queue.idle),
            seq.pre_ok.eq(timers.pre_ok.all()),
            resp.slot.eq(pop),
            resp.slot_err.eq(head.err),
            resp.dq_i.eq(pins.dq_i),
            port.resp.valid.eq(resp.resp.valid),
            port.resp.payload.eq(resp.resp.payload),
            resp.resp.ready.eq(port.resp.ready),
            self.init_done.eq(seq.init_done),
            self.refreshes.eq(seq.refreshes),
        ]

        # -- scheduler -------------------------------------------------------------
        # Row commands first (oldest request's bank first, then by bank
        # number): one PRE/ACT slot now hides tRP/tRCD behind the current
        # transfers. Column commands stay in request order.
        head_bank_go = (go & head.bank_oh).any()
        for b in range(nb):
            lower = or_all(go[k] for k in range(b))
            m.d.comb += sel[b].eq(go[b] & (head.bank_oh[b] | (~head_bank_go & ~lower)))
        m.d.comb += [
            pop.eq(seq.run & queue.head_ready & ~go.any()),
            head_rd.eq(pop & ~head.err & ~head.we),
            head_wr.eq(pop & ~head.err & head.we),
        ]

        # go, next cycle: the oldest request of the bank wants a command and the
        # bank's timers will allow it (each term is the next value of a timer's
        # ok flag).
        go_next = Signal(nb)
        open_next = (bank_open | act_now) & ~pre_now
        for b in range(nb):
            m.d.comb += go_next[b].eq(seq.run_next & queue.need[b] & Mux(
                open_next[b],
                ~act_now[b] & timers.ras_soon[b] & ~(head_wr & head.bank_oh[b])
                & timers.wr_soon[b],
                ~pre_now[b] & timers.rp_soon[b] & ~act_now.any() & timers.rrd_soon))
        m.d.sync += go.eq(go_next)

        # -- command output ------------------------------------------------------------
        cmd = Signal(4)
        a = Signal(chip.a_width)
        ba = Signal(chip.bank_bits)
        dqm = Signal(mw)
        sel_act = Signal()
        m.d.comb += [
            sel_act.eq((sel & ~bank_open).any()),
            cmd.eq(SDRAMCommand.NOP),
            a.eq(Mux(go.any(), row_a, head_side.col)),
            ba.eq(Mux(go.any(), or_all(Mux(sel[b], b, 0) for b in range(nb)),
                      or_all(Mux(head.bank_oh[b], b, 0) for b in range(nb)))),
            dqm.eq(0),
        ]
        with m.If(go.any()):
            m.d.comb += cmd.eq(Mux(sel_act, SDRAMCommand.ACTIVE.value,
                                   SDRAMCommand.PRECHARGE.value))
            with m.If(~sel_act):
                m.d.comb += a[10].eq(0)     # PRECHARGE of one bank
        with m.Elif(head_rd):
            m.d.comb += cmd.eq(SDRAMCommand.READ)
        with m.Elif(head_wr):
            m.d.comb += [cmd.eq(SDRAMCommand.WRITE), dqm.eq(~head_side.mask)]
        # The sequencer's commands (init, refresh) take the bus while the
        # scheduler is stopped.
        with m.If(seq.cmd_en):
            m.d.comb += cmd.eq(seq.cmd.as_value())
        with m.If(seq.a10):
            m.d.comb += a[10].eq(1)
        with m.If(seq.load_mode):
            m.d.comb += [a.eq(self.mode_register), ba.eq(0)]
        with m.If(seq.dqm_all):
            m.d.comb += dqm.eq((1 << mw) - 1)
        m.d.sync += [
            Cat(pins.we_n, pins.cas_n, pins.ras_n, pins.cs_n).eq(cmd),
            pins.a.eq(a),
            pins.ba.eq(ba),
            pins.dqm.eq(dqm),
            pins.dq_o.eq(head_side.wdata),
            pins.dq_oe.eq(head_wr),
            pins.cke.eq(1),
        ]

        # -- statistics ------------------------------------------------------------------------
        with m.If(pop & ~head.err):
            with m.If(head.opened):
                m.d.sync += self.row_misses.eq(self.row_misses + 1)
            with m.Else():
                m.d.sync += self.row_hits.eq(self.row_hits + 1)
        with m.If(act_now.any()):
            m.d.sync += self.activates.eq(self.activates + 1)

        return m
