"""The matrix unit: operand buffers, GEMM controller, systolic array, post-processing."""

from amaranth.hdl import Module, Signal, Cat, Const, Mux, unsigned, signed
from amaranth.lib import data, wiring, stream
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import ChipConfig
from ..protocol import (GemmCmdLayout, ParamLayout, OutLayout, GemmError,
                        a_word_layout, b_word_layout)
from .systolic import SystolicArray
from .requant import Requantizer

__all__ = ["GemmUnit"]


def _bits(n):
    """Address bits for ``n`` entries (at least one, so Cat() widths stay sane)."""
    return max(1, ceil_log2(n))


class GemmUnit(wiring.Component):
    """C[M x N] = A[M x K] . B[K x N] (+ bias, requantization), tiled on a
    ``rows`` x ``cols`` weight-stationary array.

    Ports
    -----
    cmd : In(stream(GemmCmdLayout))
        Accepted only while idle. A shape outside ``1..max_*`` sets
        ``error = BAD_SHAPE`` and consumes nothing.
    a : In(stream(a_word_layout))
        ``M * ceil(K / rows)`` words: for each row m, for each K tile, ``rows``
        elements of A (lanes past K are ignored).
    b : In(stream(b_word_layout))
        ``K * ceil(N / cols)`` words: for each k, for each N tile, ``cols``
        elements of B (lanes past N are ignored).
    params : In(stream(ParamLayout))
        ``N`` entries when ``cmd.params``: bias, multiplier, shift per channel.
    c : Out(stream(OutLayout))
        ``M * N`` results in tile order (for each N tile, for each row, the
        tile's channels); ``last`` marks the final one.
    busy, error, cycles : Out
        ``cycles`` counts from the accepted command to its last result.

    Loop order: N tile outer, K tile inner, M streamed through the array, so
    each weight tile is loaded once and reused for all M rows. Weights are
    double buffered in the array and loaded while the previous tile computes;
    results accumulate in a double-buffered int32 row buffer, and a finished N
    tile drains through the requantizer while the next one computes. A K tile
    pass costs ``max(M, 4) + 1`` cycles; passes run back to back when
    ``M >= rows + cols + 4`` and the drain of a tile (``M * cols`` cycles)
    is shorter than the next tile's compute (``M * ceil(K / rows)``).
    """

    MIN_PASS = 4

    def __init__(self, *, config):
        if not isinstance(config, ChipConfig):
            raise TypeError(f"config must be a ChipConfig, not {config!r}")
        self.config = config
        super().__init__({
            "cmd": In(stream.Signature(GemmCmdLayout)),
            "a": In(stream.Signature(a_word_layout(config))),
            "b": In(stream.Signature(b_word_layout(config))),
            "params": In(stream.Signature(ParamLayout)),
            "c": Out(stream.Signature(OutLayout)),
            "busy": Out(1),
            "error": Out(GemmError),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        mbits, kbits, nbits = _bits(cfg.max_m), _bits(cfg.max_k), _bits(cfg.max_n)
        ktbits, ntbits = _bits(cfg.k_tiles_max), _bits(cfg.n_tiles_max)
        acc_row = data.ArrayLayout(signed(cfg.acc_width), C)

        m.submodules.array = array = SystolicArray(
            rows=R, cols=C, in_width=cfg.in_width, acc_width=cfg.acc_width)
        m.submodules.requant = rq = Requantizer(out_width=cfg.in_width)

        # Buffers. Addresses are {tile, index} bit concatenations so no address
        # needs a multiply: A at {kt, m}, B at {nt, k}, accumulators at {bank, m}.
        m.submodules.abuf = abuf = Memory(shape=a_word_layout(cfg),
                                          depth=cfg.k_tiles_max << mbits, init=[])
        m.submodules.bbuf = bbuf = Memory(shape=b_word_layout(cfg),
                                          depth=cfg.n_tiles_max << kbits, init=[])
        m.submodules.pbuf = pbuf = Memory(shape=ParamLayout, depth=cfg.max_n, init=[])
        m.submodules.accbuf = accbuf = Memory(shape=acc_row, depth=2 << mbits, init=[])
        a_wr, a_rd = abuf.write_port(), abuf.read_port()
        b_wr, b_rd = bbuf.write_port(), bbuf.read_port()
        p_wr, p_rd = pbuf.write_port(), pbuf.read_port()
        acc_wr = accbuf.write_port()
        acc_rd = accbuf.read_port()      # read-modify-write of partial sums
        drn_rd = accbuf.read_port()      # drain of finished tiles

        # Output FIFO; the drain only issues an element when it holds a credit
        # for it, so the fixed-latency requantizer never needs backpressure.
        fifo_depth = max(16, rq.latency + 6)
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=OutLayout.size, depth=fifo_depth)
        m.d.comb += [
            self.c.payload.eq(ofifo.r_data),
            self.c.valid.eq(ofifo.r_rdy),
            ofifo.r_en.eq(self.c.ready),
        ]

        # -- command ---------------------------------------------------------
        M = Signal(16)
        K = Signal(16)
        N = Signal(16)
        use_params = Signal()
        requant = Signal()
        relu = Signal()

        # Load counters.
        a_m, a_kt, a_koff, a_done = Signal(mbits), Signal(ktbits), Signal(16), Signal()
        b_k, b_nt, b_noff, b_done = Signal(kbits), Signal(ntbits), Signal(16), Signal()
        p_n, p_done = Signal(nbits), Signal()

        # Issue (activations into the array).
        is_nt, is_kt = Signal(ntbits), Signal(ktbits)
        is_nbase, is_kbase = Signal(16), Signal(16)
        is_m = Signal(16)
        is_par = Signal()
        is_active, is_done = Signal(), Signal()

        # Weight loader.
        ld_nt, ld_kt, ld_kbase, ld_nbase = Signal(ntbits), Signal(ktbits), Signal(16), Signal(16)
        ld_i = Signal(range(R))
        ld_par = Signal()
        ld_active, ld_done = Signal(), Signal()
        # Passes loaded but not yet fully issued (0..2, one per weight bank).
        ahead = Signal(range(3))
        # Cycles until a weight bank may be overwritten after its last activation.
        safe_time = C + 2
        bank_safe = [Signal(range(safe_time + 1), name=f"bank_safe{b}") for b in range(2)]
        # Accumulator bank claimed by an N tile, released when it has drained.
        acc_busy = Signal(2)
        drain_req = Signal(2)

        # Drain.
        dr_active = Signal()
        dr_bank = Signal()
        dr_m = Signal(16)
        dr_j = Signal(range(C))
        dr_nbase = Signal(16)
        # Channels in the draining tile (minus one) and whether it is the last
        # tile, kept in registers: they sit on the path to the read address.
        dr_left = Signal(16)               # N - dr_nbase
        nv_m1 = Signal(range(C))
        dr_final_tile = Signal()
        row_reg = Signal(acc_row)
        row_valid = Signal()
        rd_pending = Signal()
        outstanding = Signal(range(fifo_depth + 1))

        busy = Signal()
        m.d.comb += self.busy.eq(busy)

        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # ---------------------------------------------------------------- idle
        load_phase = Signal()
        run_phase = Signal()
        m.d.comb += busy.eq(load_phase | run_phase)
        m.d.comb += self.cmd.ready.eq(~busy)
        with m.If(self.cmd.valid & ~busy):
            p = self.cmd.payload
            bad = ((p.m == 0) | (p.m > cfg.max_m) | (p.k == 0) | (p.k > cfg.max_k) |
                   (p.n == 0) | (p.n > cfg.max_n))
            with m.If(bad):
                m.d.sync += self.error.eq(GemmError.BAD_SHAPE)
            with m.Else():
                m.d.sync += [
                    self.error.eq(GemmError.NONE),
                    self.cycles.eq(1),
                    M.eq(p.m), K.eq(p.k), N.eq(p.n),
                    use_params.eq(p.params), requant.eq(p.requant & p.params), relu.eq(p.relu),
                    load_phase.eq(1),
                    a_m.eq(0), a_kt.eq(0), a_koff.eq(0), a_done.eq(0),
                    b_k.eq(0), b_nt.eq(0), b_noff.eq(0), b_done.eq(0),
                    p_n.eq(0), p_done.eq(~p.params),
                ]

        # ---------------------------------------------------------------- load
        m.d.comb += [
            self.a.ready.eq(load_phase & ~a_done),
            a_wr.addr.eq(Cat(a_m, a_kt)),
            a_wr.data.eq(self.a.payload),
            a_wr.en.eq(self.a.valid & self.a.ready),
        ]
        with m.If(self.a.valid & self.a.ready):
            with m.If(a_koff + R >= K):
                m.d.sync += [a_koff.eq(0), a_kt.eq(0), a_m.eq(a_m + 1)]
                with m.If(a_m == M - 1):
                    m.d.sync += a_done.eq(1)
            with m.Else():
                m.d.sync += [a_koff.eq(a_koff + R), a_kt.eq(a_kt + 1)]

        m.d.comb += [
            self.b.ready.eq(load_phase & ~b_done),
            b_wr.addr.eq(Cat(b_k, b_nt)),
            b_wr.data.eq(self.b.payload),
            b_wr.en.eq(self.b.valid & self.b.ready),
        ]
        with m.If(self.b.valid & self.b.ready):
            with m.If(b_noff + C >= N):
                m.d.sync += [b_noff.eq(0), b_nt.eq(0), b_k.eq(b_k + 1)]
                with m.If(b_k == K - 1):
                    m.d.sync += b_done.eq(1)
            with m.Else():
                m.d.sync += [b_noff.eq(b_noff + C), b_nt.eq(b_nt + 1)]

        m.d.comb += [
            self.params.ready.eq(load_phase & ~p_done),
            p_wr.addr.eq(p_n),
            p_wr.data.eq(self.params.payload),
            p_wr.en.eq(self.params.valid & self.params.ready),
        ]
        with m.If(self.params.valid & self.params.ready):
            m.d.sync += p_n.eq(p_n + 1)
            with m.If(p_n == N - 1):
                m.d.sync += p_done.eq(1)

        with m.If(load_phase & a_done & b_done & p_done):
            m.d.sync += [
                load_phase.eq(0), run_phase.eq(1),
                is_nt.eq(0), is_kt.eq(0), is_nbase.eq(0), is_kbase.eq(0), is_m.eq(0),
                is_par.eq(0), is_active.eq(0), is_done.eq(0),
                ld_nt.eq(0), ld_kt.eq(0), ld_kbase.eq(0), ld_nbase.eq(0), ld_i.eq(0),
                ld_par.eq(0), ld_active.eq(0), ld_done.eq(0),
                ahead.eq(0),
                bank_safe[0].eq(0), bank_safe[1].eq(0),
                dr_active.eq(0), dr_bank.eq(0), dr_nbase.eq(0), dr_left.eq(N),
                nv_m1.eq(Mux(N >= C, C - 1, N - 1)), dr_final_tile.eq(N <= C),
                row_valid.eq(0), rd_pending.eq(0),
            ]

        # -------------------------------------------------------- weight loader
        # Reads one row of a B tile per cycle; the row lands in the array's
        # inactive weight bank one cycle later. Rows past K are zero, which is
        # all the K padding needs (A lanes past K then multiply zero).
        ld_k = Signal(16)
        m.d.comb += ld_k.eq(ld_kbase + ld_i)
        wr_pend = Signal()          # a weight row is in the read pipeline
        wr_row = Signal(range(R))
        wr_bank = Signal()
        wr_zero = Signal()
        wr_last = Signal()
        ld_start = (run_phase & ~ld_active & ~ld_done & ~wr_pend & (ahead < 2) &
                    (Mux(ld_par, bank_safe[1], bank_safe[0]) == 0))
        m.d.comb += [
            b_rd.addr.eq(Cat(ld_k[:kbits], ld_nt)),
            b_rd.en.eq(1),
        ]
        ld_go = Signal()
        m.d.comb += ld_go.eq(ld_active | ld_start)
        with m.If(ld_start):
            m.d.sync += ld_active.eq(1)
        m.d.sync += [
            wr_pend.eq(ld_go),
            wr_row.eq(ld_i),
            wr_bank.eq(ld_par),
            wr_zero.eq(ld_k >= K),
            wr_last.eq(ld_i == R - 1),
        ]
        with m.If(ld_go):
            with m.If(ld_i == R - 1):
                m.d.sync += [ld_i.eq(0), ld_active.eq(0), ld_par.eq(~ld_par)]
                with m.If(ld_kbase + R >= K):
                    m.d.sync += [ld_kbase.eq(0), ld_kt.eq(0), ld_nt.eq(ld_nt + 1),
                                 ld_nbase.eq(ld_nbase + C)]
                    with m.If(ld_nbase + C >= N):
                        m.d.sync += ld_done.eq(1)
                with m.Else():
                    m.d.sync += [ld_kbase.eq(ld_kbase + R), ld_kt.eq(ld_kt + 1)]
            with m.Else():
                m.d.sync += ld_i.eq(ld_i + 1)
        m.d.comb += [
            array.w_en.eq(wr_pend),
            array.w_row.eq(wr_row),
            array.w_bank.eq(wr_bank),
        ]
        for j in range(C):
            m.d.comb += array.w_data[j].eq(Mux(wr_zero, 0, b_rd.data[j]))
        loaded = Signal()
        m.d.comb += loaded.eq(wr_pend & wr_last)

        # ---------------------------------------------------------------- issue
        pass_len = Signal(16)
        m.d.comb += pass_len.eq(Mux(M < self.MIN_PASS, self.MIN_PASS, M))
        is_lastk = Signal()
        m.d.comb += is_lastk.eq(is_kbase + R >= K)
        bank_free = ~Mux(is_nt[0], acc_busy[1], acc_busy[0])
        is_start = (run_phase & ~is_active & ~is_done & (ahead != 0) &
                    ((is_kt != 0) | bank_free))
        issued = Signal()           # last cycle of a pass
        acc_claim = Signal(2)
        with m.If(is_start):
            m.d.sync += [is_active.eq(1), is_m.eq(0)]
            with m.If(is_kt == 0):
                m.d.comb += acc_claim.bit_select(is_nt[0], 1).eq(1)

        tag_layout = data.StructLayout({
            "valid": 1, "m": mbits, "first": 1, "bank": 1, "final": 1,
        })
        tag0 = Signal(tag_layout)
        act_bank = Signal()
        m.d.comb += [
            a_rd.addr.eq(Cat(is_m[:mbits], is_kt)),
            a_rd.en.eq(1),
        ]
        m.d.sync += [
            tag0.valid.eq(is_active & (is_m < M)),
            tag0.m.eq(is_m),
            tag0.first.eq(is_kt == 0),
            tag0.bank.eq(is_nt[0]),
            tag0.final.eq(is_lastk & (is_m == M - 1)),
            act_bank.eq(is_par),
        ]
        with m.If(is_active):
            m.d.sync += is_m.eq(is_m + 1)
            with m.If(is_m == pass_len - 1):
                m.d.comb += issued.eq(1)
                m.d.sync += [is_active.eq(0), is_par.eq(~is_par)]
                with m.If(is_lastk):
                    m.d.sync += [is_kt.eq(0), is_kbase.eq(0), is_nt.eq(is_nt + 1),
                                 is_nbase.eq(is_nbase + C)]
                    with m.If(is_nbase + C >= N):
                        m.d.sync += is_done.eq(1)
                with m.Else():
                    m.d.sync += [is_kt.eq(is_kt + 1), is_kbase.eq(is_kbase + R)]

        m.d.comb += [array.act.eq(a_rd.data), array.act_bank.eq(act_bank)]

        # Pass bookkeeping shared by loader and issuer.
        with m.If(loaded & ~issued):
            m.d.sync += ahead.eq(ahead + 1)
        with m.Elif(issued & ~loaded):
            m.d.sync += ahead.eq(ahead - 1)
        for bnk in range(2):
            with m.If(issued & (is_par == bnk)):
                m.d.sync += bank_safe[bnk].eq(safe_time)
            with m.Elif(bank_safe[bnk] != 0):
                m.d.sync += bank_safe[bnk].eq(bank_safe[bnk] - 1)

        # ----------------------------------------------------------- accumulate
        tags = [tag0]
        for d in range(array.latency):
            t = Signal(tag_layout, name=f"tag{d + 1}")
            m.d.sync += t.eq(tags[-1])
            tags.append(t)
        # The partial sum is read two cycles ahead and registered once: block RAM
        # clock-to-out followed by a 32-bit add would not fit one cycle.
        t_rd, t_wr = tags[-3], tags[-1]
        acc_old = Signal(acc_row)
        m.d.sync += acc_old.eq(acc_rd.data)
        m.d.comb += [
            acc_rd.addr.eq(Cat(t_rd.m, t_rd.bank)),
            acc_rd.en.eq(1),
            acc_wr.addr.eq(Cat(t_wr.m, t_wr.bank)),
            acc_wr.en.eq(t_wr.valid),
        ]
        for j in range(C):
            m.d.comb += acc_wr.data[j].eq(
                Mux(t_wr.first, 0, acc_old[j]) + array.psum[j])
        drain_set = Signal(2)
        with m.If(t_wr.valid & t_wr.final):
            m.d.comb += drain_set.bit_select(t_wr.bank, 1).eq(1)

        # ---------------------------------------------------------------- drain
        row_now = Signal(acc_row)
        m.d.comb += row_now.eq(Mux(rd_pending, drn_rd.data, row_reg))
        row_here = rd_pending | row_valid
        emit = Signal()
        m.d.comb += emit.eq(dr_active & row_here & (outstanding < fifo_depth))
        lane_last = dr_j == nv_m1
        row_last = dr_m == M - 1
        fetch = Signal()
        fetch_m = Signal(16)
        dr_start = run_phase & ~dr_active & Mux(dr_bank, drain_req[1], drain_req[0])
        drain_clr = Signal(2)

        with m.If(dr_start):
            m.d.comb += [fetch.eq(1), fetch_m.eq(0)]
            m.d.sync += [dr_active.eq(1), dr_m.eq(0), dr_j.eq(0)]
        with m.If(emit):
            with m.If(lane_last):
                m.d.sync += dr_j.eq(0)
                with m.If(row_last):
                    m.d.comb += drain_clr.bit_select(dr_bank, 1).eq(1)
                    next_left = dr_left - C
                    m.d.sync += [dr_active.eq(0), dr_bank.eq(~dr_bank),
                                 dr_nbase.eq(dr_nbase + C), dr_left.eq(next_left),
                                 nv_m1.eq(Mux(next_left >= C, C - 1, next_left - 1)),
                                 dr_final_tile.eq(next_left <= C)]
                with m.Else():
                    m.d.comb += [fetch.eq(1), fetch_m.eq(dr_m + 1)]
                    m.d.sync += dr_m.eq(dr_m + 1)
            with m.Else():
                m.d.sync += dr_j.eq(dr_j + 1)
        m.d.comb += [
            drn_rd.addr.eq(Cat(fetch_m[:mbits], dr_bank)),
            drn_rd.en.eq(1),
        ]
        m.d.sync += rd_pending.eq(fetch)
        with m.If(emit & lane_last):
            m.d.sync += row_valid.eq(0)
        with m.Elif(rd_pending):
            m.d.sync += [row_reg.eq(drn_rd.data), row_valid.eq(1)]

        m.d.sync += drain_req.eq((drain_req | drain_set) & ~drain_clr)
        m.d.sync += acc_busy.eq((acc_busy | acc_claim) & ~drain_clr)

        # Element -> parameter read (one cycle) -> requantizer.
        m.d.comb += [p_rd.addr.eq(dr_nbase + dr_j), p_rd.en.eq(1)]
        e_valid = Signal()
        e_acc = Signal(signed(32))
        e_last = Signal()
        m.d.sync += [
            e_valid.eq(emit),
            e_acc.eq(row_now[dr_j]),
            e_last.eq(dr_final_tile & row_last & lane_last),
        ]
        m.d.comb += [
            rq.i_valid.eq(e_valid),
            rq.i.acc.eq(e_acc),
            rq.i.bias.eq(Mux(use_params, p_rd.data.bias, 0)),
            rq.i.multiplier.eq(p_rd.data.multiplier),
            rq.i.shift.eq(p_rd.data.shift),
            rq.i.requant.eq(requant),
            rq.i.relu.eq(relu),
            rq.i.last.eq(e_last),
            ofifo.w_en.eq(rq.o_valid),
            ofifo.w_data.eq(rq.o),
        ]
        c_take = self.c.valid & self.c.ready
        with m.If(emit & ~c_take):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~emit & c_take):
            m.d.sync += outstanding.eq(outstanding - 1)

        with m.If(c_take & self.c.payload.last):
            m.d.sync += run_phase.eq(0)

        return m
