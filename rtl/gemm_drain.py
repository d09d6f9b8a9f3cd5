"""The GEMM controller's drain: finished accumulator tiles out, one element a cycle."""

from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from .bufmem import BufferRAM
from .gemm_walker import _bits

__all__ = ["GemmDrain", "ELEM_LAYOUT"]

#: One accumulator on its way to the requantizer.
ELEM_LAYOUT = data.StructLayout({"valid": 1, "acc": signed(32), "last": 1})


class GemmDrain(wiring.Component):
    """Reads the rows of a finished N tile from the drain copy of the
    accumulators and emits their channels one per cycle, holding a credit
    for every element in flight to the output FIFO (``fifo_depth``) so the
    fixed-latency requantizer behind it never needs backpressure.

    Ports
    -----
    run, restart : In(1)
        ``run``: the run phase; ``restart``: back to N tile 0, bank 0 (the
        cycle before the run phase starts).
    n, n_m1, one_nt, m_m2, m_is_1 : In
        The registered command: ``N``, ``N - 1``, ``N <= cols``, ``M - 2``,
        ``M == 1``.
    req : In(2)
        Per accumulator bank: its tile is complete (the last row was written
        a cycle ago). The drain takes the banks in turn, 0 first.
    clr : Out(2)
        Combinational, one cycle: the bank's tile has left.
    rd_addr : Out, rd_data : In
        The drain buffer's read port (``{bank, row}``), ``BufferRAM.LATENCY``.
    p_addr : Out(16)
        Registered: the channel of the element being emitted (the parameter
        buffer's read address).
    elem : Out(ELEM_LAYOUT)
        ``BufferRAM.LATENCY`` cycles after the emit (aligned with the
        parameter read); ``last`` marks the final element of the command.
    c_take : In(1)
        An element left the output FIFO (returns a credit).

    Throughput: one element per cycle within a tile, while credits last.
    """

    def __init__(self, *, config, fifo_depth):
        check_type("config", config, ChipConfig)
        if not isinstance(fifo_depth, int) or isinstance(fifo_depth, bool) or fifo_depth < 1:
            raise ValueError(f"fifo_depth must be a positive integer, not {fifo_depth!r}")
        self.config = config
        self.fifo_depth = fifo_depth
        acc_row = data.ArrayLayout(signed(config.acc_width), config.cols)
        super().__init__({
            "run": In(1),
            "restart": In(1),
            "n": In(16), "n_m1": In(16), "one_nt": In(1),
            "m_m2": In(16), "m_is_1": In(1),
            "req": In(2),
            "clr": Out(2),
            "rd_addr": Out(_bits(config.max_m) + 1),
            "rd_data": In(acc_row),
            "p_addr": Out(16),
            "elem": Out(ELEM_LAYOUT),
            "c_take": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        C = cfg.cols
        mbits = _bits(cfg.max_m)
        RD = BufferRAM.LATENCY
        fifo_depth = self.fifo_depth
        acc_row = data.ArrayLayout(signed(cfg.acc_width), C)

        dr_active = Signal()
        dr_bank = Signal()
        dr_j = Signal(range(C))
        dr_nbase = Signal(16)
        dr_left = Signal(16)            # N - dr_nbase
        nv_m1 = Signal(range(C))        # channels in the draining tile, minus one
        dr_final_tile = Signal()
        # row the drain read port is pointed at (0..M: as narrow as M allows,
        # its increment sits behind the drain's handshake logic)
        ra = Signal(cfg.max_m.bit_length())
        ra_in = Signal()                # ra < M
        ra_is_last = Signal()           # ra == M - 1
        rd_ok = Signal()                # rd_data is row ra
        row_reg = Signal(acc_row)
        row_valid = Signal()
        row_next = Signal(acc_row)      # the prefetched row (see below)
        next_valid = Signal()
        next_last = Signal()            # row_next holds row M - 1
        p_idx = self.p_addr             # channel of the element being emitted
        outstanding = Signal(range(fifo_depth + 1))

        with m.If(self.restart):
            m.d.sync += [
                dr_active.eq(0), dr_bank.eq(0), dr_nbase.eq(0), dr_left.eq(self.n),
                nv_m1.eq(Mux(self.one_nt, self.n_m1, C - 1)), dr_final_tile.eq(self.one_nt),
                ra.eq(0), ra_in.eq(1), ra_is_last.eq(self.m_is_1), row_valid.eq(0),
                next_valid.eq(0), p_idx.eq(0),
            ]

        # The drain read port always points at the next row (register ra); its
        # data is usable once ra has been stable for a cycle (rd_ok). A row is
        # prefetched into row_next as soon as that is free (fetch), moves into
        # row_reg when the row before it has left (adv), and its channels leave
        # one per cycle from there. Two row registers so that neither enable
        # waits on the other side: as one register loaded "when the last
        # channel leaves and the next row is ready" the enable of 257 flops and
        # of the read address was 5 logic levels, 7.4-10.8 ns at 125 MHz.
        m.d.comb += self.rd_addr.eq(Cat(ra[:mbits], dr_bank))
        emit = Signal()
        # Both flags are registers, not compares: emit fans out to the row
        # register's enables and the element pipeline, and must be shallow.
        room = Signal(init=1)           # outstanding < fifo_depth
        lane_last = Signal()            # dr_j == nv_m1
        m.d.comb += emit.eq(dr_active & row_valid & room)
        row_last = Signal()             # row_reg holds row M - 1
        ra_moved = Signal()
        rd_wait = Signal(range(RD + 1))
        m.d.comb += rd_ok.eq(rd_wait == 0)
        with m.If(ra_moved):
            m.d.sync += rd_wait.eq(RD)
        with m.Elif(~rd_ok):
            m.d.sync += rd_wait.eq(rd_wait - 1)
        fetch = Signal()
        adv = Signal()
        m.d.comb += [
            fetch.eq(dr_active & ra_in & rd_ok & ~next_valid),
            # row_valid implies dr_active, so emit & lane_last is this
            adv.eq(next_valid & (~row_valid | (room & lane_last))),
        ]
        drain_clr = self.clr

        with m.If(self.run & ~dr_active & Mux(dr_bank, self.req[1], self.req[0])):
            # The tile's last row was written a cycle ago; restart the read
            # wait so row 0 is read after that write.
            m.d.comb += ra_moved.eq(1)
            m.d.sync += dr_active.eq(1)
        with m.If(fetch):
            m.d.comb += ra_moved.eq(1)
            m.d.sync += [row_next.eq(self.rd_data), next_valid.eq(1), ra.eq(ra + 1),
                         # registered compares: ra == M - 1 is known a row ahead
                         # (M - 2 cut to ra's width: for M = 1 all ones, above
                         # any row ra is compared at)
                         ra_in.eq(~ra_is_last), next_last.eq(ra_is_last),
                         ra_is_last.eq(ra == self.m_m2[:len(ra)])]
        with m.If(adv):
            m.d.sync += [row_reg.eq(row_next), next_valid.eq(0), row_valid.eq(1), dr_j.eq(0),
                         lane_last.eq(nv_m1 == 0), row_last.eq(next_last)]
        with m.Elif(emit & lane_last):
            m.d.sync += row_valid.eq(0)
        with m.If(emit):
            with m.If(lane_last):
                with m.If(row_last):
                    next_left = dr_left - C
                    m.d.comb += [drain_clr.bit_select(dr_bank, 1).eq(1), ra_moved.eq(1)]
                    m.d.sync += [dr_active.eq(0), dr_bank.eq(~dr_bank),
                                 dr_nbase.eq(dr_nbase + C), dr_left.eq(next_left),
                                 # compares against constants, not behind the subtraction
                                 nv_m1.eq(Mux(dr_left >= 2 * C, C - 1, dr_left - (C + 1))),
                                 dr_final_tile.eq(dr_left <= 2 * C),
                                 p_idx.eq(dr_nbase + C), ra.eq(0), ra_in.eq(1),
                                 ra_is_last.eq(self.m_is_1)]
                with m.Else():
                    m.d.sync += p_idx.eq(dr_nbase)
            with m.Else():
                m.d.sync += [dr_j.eq(dr_j + 1), lane_last.eq(dr_j + 1 == nv_m1),
                             p_idx.eq(p_idx + 1)]

        # Element -> (parameter read, outside) -> requantizer.
        e_pipe = [Signal(ELEM_LAYOUT, name=f"elem{d}") for d in range(RD)]
        m.d.sync += [
            e_pipe[0].valid.eq(emit),
            e_pipe[0].acc.eq(row_reg[dr_j]),
            e_pipe[0].last.eq(dr_final_tile & row_last & lane_last),
        ]
        for d in range(1, RD):
            m.d.sync += e_pipe[d].eq(e_pipe[d - 1])
        m.d.comb += self.elem.eq(e_pipe[-1])

        c_take = self.c_take
        with m.If(emit & ~c_take):
            m.d.sync += [outstanding.eq(outstanding + 1), room.eq(outstanding + 1 < fifo_depth)]
        with m.Elif(~emit & c_take):
            m.d.sync += [outstanding.eq(outstanding - 1), room.eq(1)]
        return m
