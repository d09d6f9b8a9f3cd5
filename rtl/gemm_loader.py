"""The GEMM controller's weight loader: B tiles from the buffer into the array."""

from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from ..protocol import b_word_layout
from .bufmem import BufferRAM
from .gemm_walker import KN_PORTS, _bits, kn_walkers

__all__ = ["WeightLoader"]


class WeightLoader(wiring.Component):
    """Reads one row of a B tile per cycle (registered address), registers
    it, and writes it into the array's inactive weight bank the cycle after.
    Rows past K are zero, which is all the K padding needs (A lanes past K
    then multiply zero). Tiles go K tile inner, N tile outer; banks alternate.

    Ports
    -----
    run, restart : In(1)
        ``run``: the run phase; ``restart``: back to the first tile (the
        cycle before the run phase starts).
    k, one_kt, two_kt, n, one_nt, two_nt : In
        The registered command: ``K`` and ``K <= rows``, ``K <= 2 * rows``;
        the same for N and ``cols``.
    ahead_lt2 : In(1)
        Fewer than two passes loaded and not fully issued.
    bank_safe0, bank_safe1 : In
        Cycles until weight bank 0 / 1 may be overwritten (0: now).
    b_addr : Out, b_data : In
        The B buffer's read port (``{n tile, k}``), ``BufferRAM.LATENCY``.
    w_en, w_row, w_bank, w_data : Out
        The array's weight write port, registered.
    loaded : Out(1)
        Registered: the last row of a tile was written.

    A tile takes ``rows`` cycles once started; the start waits for the read
    pipeline to empty, so tiles are ``rows + RD + 3`` cycles apart at best.
    """

    def __init__(self, *, config):
        check_type("config", config, ChipConfig)
        self.config = config
        cfg = config
        safe_time = cfg.cols + 2
        super().__init__({
            "run": In(1),
            **KN_PORTS,
            "ahead_lt2": In(1),
            "bank_safe0": In(range(safe_time + 1)),
            "bank_safe1": In(range(safe_time + 1)),
            "b_addr": Out(_bits(cfg.n_tiles_max) + _bits(cfg.max_k)),
            "b_data": In(b_word_layout(cfg)),
            "w_en": Out(1),
            "w_row": Out(range(cfg.rows)),
            "w_bank": Out(1),
            "w_data": Out(data.ArrayLayout(signed(cfg.in_width), cfg.cols)),
            "loaded": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        kbits = _bits(cfg.max_k)
        RD = BufferRAM.LATENCY

        ld_kw, ld_nw = kn_walkers(m, self, cfg, "ld")

        ld_k = Signal(16)               # ld_kw.base + ld_i, kept as a register
        ld_i = Signal(range(R))
        # ld_i == R - 1 and the next tile's first ld_k, both registers: behind
        # the loader's go signal the compare, the multiplexer and the adder
        # were 6 logic levels into the read address.
        ld_i_last = Signal()
        ld_k_next = Signal(16)
        ld_par = Signal()
        ld_active, ld_done = Signal(), Signal()
        with m.If(self.restart):
            m.d.sync += [ld_k.eq(0), ld_i.eq(0), ld_i_last.eq(R == 1),
                         ld_par.eq(0), ld_active.eq(0), ld_done.eq(0)]

        # The read pipeline: (pend, row, bank, zero, last) for each of the RD
        # cycles a row spends in the buffer.
        rd_layout = data.StructLayout({"pend": 1, "row": range(R), "bank": 1, "zero": 1, "last": 1})
        rd_pipe = [Signal(rd_layout, name=f"ld_rd{d}") for d in range(RD)]
        w_last = Signal()
        # The start condition is evaluated a cycle ahead into a register: it
        # feeds the read address counter, and as logic in front of it the
        # compares and the pipeline OR took 6 levels. None of its terms can
        # turn false in between: only the loader itself ends them (the bank it
        # loads next is never the one being issued while ahead < 2).
        ld_can = Signal()
        ld_start = Signal()
        m.d.comb += ld_start.eq(ld_can)
        m.d.sync += ld_can.eq(self.run & ~ld_active & ~ld_start & ~ld_done & ~self.w_en &
                              self.ahead_lt2 & ~Cat(*[st.pend for st in rd_pipe]).any() &
                              (Mux(ld_par, self.bank_safe1, self.bank_safe0) == 0))
        ld_go = Signal()
        m.d.comb += [
            ld_go.eq(ld_active | ld_start),
            self.b_addr.eq(Cat(ld_k[:kbits], ld_nw.idx)),
        ]
        with m.If(ld_start):
            m.d.sync += ld_active.eq(1)
        m.d.sync += [
            rd_pipe[0].pend.eq(ld_go), rd_pipe[0].row.eq(ld_i), rd_pipe[0].bank.eq(ld_par),
            rd_pipe[0].zero.eq(ld_k >= self.k), rd_pipe[0].last.eq(ld_i_last),
        ]
        for d in range(1, RD):
            m.d.sync += rd_pipe[d].eq(rd_pipe[d - 1])
        rd_out = rd_pipe[-1]
        m.d.sync += [
            self.w_en.eq(rd_out.pend), self.w_row.eq(rd_out.row), self.w_bank.eq(rd_out.bank),
            w_last.eq(rd_out.pend & rd_out.last),
        ]
        for j in range(C):
            m.d.sync += self.w_data[j].eq(Mux(rd_out.zero, 0, self.b_data[j]))
        with m.If(ld_go):
            with m.If(ld_i_last):
                m.d.sync += [ld_i.eq(0), ld_i_last.eq(R == 1),
                             ld_active.eq(0), ld_par.eq(~ld_par)]
                m.d.comb += ld_kw.advance.eq(1)
                m.d.sync += ld_k.eq(ld_k_next)
                with m.If(ld_kw.last):
                    m.d.comb += ld_nw.advance.eq(1)
                    with m.If(ld_nw.last):
                        m.d.sync += ld_done.eq(1)
            with m.Else():
                m.d.sync += [ld_i.eq(ld_i + 1), ld_i_last.eq(ld_i == R - 2), ld_k.eq(ld_k + 1)]
        # One cycle behind ld_kw, which only moves at the end of a tile; the
        # next use is a whole tile later (a tile starts from ld_can, which
        # waits for the read pipeline to empty first).
        m.d.sync += ld_k_next.eq(Mux(ld_kw.last, 0, ld_kw.base + R))
        m.d.comb += self.loaded.eq(w_last)
        return m
