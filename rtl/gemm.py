"""The matrix unit: operand buffers, GEMM controller, systolic array, post-processing."""

from amaranth.hdl import Module, Signal, Cat, Const, Mux, unsigned, signed
from amaranth.lib import data, wiring, stream
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import ChipConfig
from ..protocol import (GemmCmdLayout, ParamLayout, OutLayout, GemmError,
                        a_word_layout, b_word_layout)
from .systolic import SystolicArray
from .requant import Requantizer
from .bufmem import BufferRAM
from .ffcopy import ff_copy

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

    MIN_PASS = 6

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
        #
        # Timing rule for the whole controller: every block RAM port is driven
        # straight from registers and every read result lands in a register
        # first. On ECP5 the route to or from a block RAM alone can take 5 ns,
        # so no logic may sit on either side of it at 125 MHz.
        m.submodules.abuf = abuf = BufferRAM(shape=a_word_layout(cfg),
                                             depth=cfg.k_tiles_max << mbits)
        m.submodules.bbuf = bbuf = BufferRAM(shape=b_word_layout(cfg),
                                             depth=cfg.n_tiles_max << kbits)
        m.submodules.pbuf = pbuf = BufferRAM(shape=ParamLayout, depth=cfg.max_n)
        # Two copies of the accumulators: one read port each (read-modify-write
        # of partial sums; drain of finished tiles), written together.
        m.submodules.accbuf = accbuf = BufferRAM(shape=acc_row, depth=2 << mbits)
        m.submodules.drnbuf = drnbuf = BufferRAM(shape=acc_row, depth=2 << mbits)
        RD = BufferRAM.LATENCY

        # Output FIFO; the drain only issues an element when it holds a credit
        # for it, so the fixed-latency requantizer never needs backpressure.
        # SyncFIFOBuffered keeps depth - 1 entries in a memory: a power of two
        # there makes its pointers wrap by themselves (a wrap compare feeding
        # the pointer's reset was 5 logic levels at 125 MHz).
        fifo_depth = 1 + (1 << ceil_log2(max(15, rq.latency + 5)))
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=OutLayout.size, depth=fifo_depth)
        m.d.comb += [
            self.c.payload.eq(ofifo.r_data),
            self.c.valid.eq(ofifo.r_rdy),
            ofifo.r_en.eq(self.c.ready),
        ]

        # -- command ---------------------------------------------------------
        M, K, N = Signal(16), Signal(16), Signal(16)
        M_m1, K_m1, N_m1 = Signal(16), Signal(16), Signal(16)
        M_m2 = Signal(16)               # M - 2: the drain's row compare, one row early
        m_is_1 = Signal()
        pass_last = Signal(16)          # max(M, MIN_PASS) - 1
        pass_last_m1 = Signal(16)       # pass_last - 1 (>= MIN_PASS - 2 > 0)
        one_kt, one_nt = Signal(), Signal()   # K <= rows, N <= cols
        two_kt, two_nt = Signal(), Signal()   # K <= 2 * rows, N <= 2 * cols
        K_m2, N_m2 = Signal(16), Signal(16)
        use_params, requant, relu = Signal(), Signal(), Signal()

        class Walker:
            """Steps ``base`` by ``step`` over 0..length-1, with the index of the
            tile and a registered ``last`` flag (``base + step >= length``), so
            no adder or comparator sits on an address path.

            ``last`` is kept a tile ahead (``le2``: the next tile is the last)
            from a down-counter ``rem = length - base`` compared against a
            constant: as ``base + 2 * step >= length`` an adder and a
            comparator sat in series behind the stream handshake."""

            def __init__(self, name, step, length, first_last, first_le2, idx_bits, max_length):
                # base and rem only as wide as the largest accepted length
                width = max_length.bit_length()
                self.idx = Signal(idx_bits, name=f"{name}_idx")
                self.base = Signal(width, name=f"{name}_base")
                self.rem = Signal(width, name=f"{name}_rem")
                self.last = Signal(name=f"{name}_last")
                self.le2 = Signal(name=f"{name}_le2")
                self.step, self.length = step, length
                self.first_last, self.first_le2 = first_last, first_le2

            def reset(self, length=None):
                """Back to tile 0; ``length`` (a value the flags are not yet
                registered for) only at the command decode."""
                if length is None:
                    return [self.idx.eq(0), self.base.eq(0), self.rem.eq(self.length),
                            self.last.eq(self.first_last), self.le2.eq(self.first_le2)]
                return [self.idx.eq(0), self.base.eq(0), self.rem.eq(length),
                        self.last.eq(length <= self.step), self.le2.eq(length <= 2 * self.step)]

            def advance(self):
                """Next tile, wrapping to 0 after the last one."""
                return [
                    self.idx.eq(Mux(self.last, 0, self.idx + 1)),
                    self.base.eq(Mux(self.last, 0, self.base + self.step)),
                    self.rem.eq(Mux(self.last, self.length, self.rem - self.step)),
                    self.last.eq(Mux(self.last, self.first_last, self.le2)),
                    self.le2.eq(Mux(self.last, self.first_le2, self.rem <= 3 * self.step)),
                ]

        # Load counters.
        # Stream ready flags are registers (ready = "in load and not done"),
        # and each counter's last-element compare is a registered flag, so a
        # handshake decides the next ready in two logic levels.
        # (M - 2 etc. are compared in the counter's width: for M = 1 all
        # ones, above the only value a_m is compared at)
        a_m, a_rdy, a_m_last = Signal(mbits, name="a_m"), Signal(name="a_rdy"), Signal(name="a_m_last")
        a_kw = Walker("a_k", R, K, one_kt, two_kt, ktbits, cfg.max_k)
        b_k, b_rdy, b_k_last = Signal(kbits, name="b_k"), Signal(name="b_rdy"), Signal(name="b_k_last")
        b_nw = Walker("b_n", C, N, one_nt, two_nt, ntbits, cfg.max_n)
        p_n, p_rdy, p_n_last = Signal(nbits, name="p_n"), Signal(name="p_rdy"), Signal(name="p_n_last")

        # Issue (activations into the array).
        is_kw = Walker("is_k", R, K, one_kt, two_kt, ktbits, cfg.max_k)
        is_nw = Walker("is_n", C, N, one_nt, two_nt, ntbits, cfg.max_n)
        is_m = Signal(16)
        is_m_last = Signal()            # is_m == pass_last
        is_par = Signal()
        is_active, is_done = Signal(), Signal()

        # Weight loader.
        ld_kw = Walker("ld_k", R, K, one_kt, two_kt, ktbits, cfg.max_k)
        ld_nw = Walker("ld_n", C, N, one_nt, two_nt, ntbits, cfg.max_n)
        ld_k = Signal(16)               # ld_kw.base + ld_i, kept as a register
        ld_i = Signal(range(R))
        # ld_i == R - 1 and the next tile's first ld_k, both registers: behind
        # the loader's go signal the compare, the multiplexer and the adder
        # were 6 logic levels into the read address.
        ld_i_last = Signal()
        ld_k_next = Signal(16)
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
        rd_ok = Signal()                # drnbuf.r_data is row ra
        row_reg = Signal(acc_row)
        row_valid = Signal()
        row_next = Signal(acc_row)      # the prefetched row (see the drain)
        next_valid = Signal()
        next_last = Signal()            # row_next holds row M - 1
        p_idx = Signal(16)              # channel of the element being emitted
        outstanding = Signal(range(fifo_depth + 1))

        busy = Signal()
        load_phase = Signal()
        run_phase = Signal()
        # The accepted command is registered before it is checked and decoded:
        # the shape compares and the decode (with its adders) then start from
        # registers, not from whatever logic drives the command stream.
        cmd_pend = Signal()             # the registered command is being checked
        cmd_go = Signal()               # ... and starts (or is refused)
        p = Signal(GemmCmdLayout)
        m.d.comb += [
            busy.eq(load_phase | run_phase | cmd_pend | cmd_go),
            self.busy.eq(busy),
            self.cmd.ready.eq(~busy),
        ]
        with m.If(load_phase | run_phase):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # ---------------------------------------------------------------- idle
        # p follows the payload whenever idle (only an accepted one is used):
        # its 51 enables then hang off the busy OR alone, not the handshake.
        with m.If(~busy):
            m.d.sync += p.eq(self.cmd.payload)
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [cmd_pend.eq(1), self.error.eq(GemmError.NONE)]
        # Then the shape check is registered too, so the start (which fans out
        # to every counter's reset) hangs off one register.
        bad = Signal()
        with m.If(cmd_pend):
            m.d.sync += [
                cmd_pend.eq(0), cmd_go.eq(1),
                bad.eq((p.m == 0) | (p.m > cfg.max_m) | (p.k == 0) | (p.k > cfg.max_k) |
                       (p.n == 0) | (p.n > cfg.max_n)),
            ]
        with m.If(cmd_go):
            m.d.sync += cmd_go.eq(0)
            with m.If(bad):
                m.d.sync += self.error.eq(GemmError.BAD_SHAPE)
            with m.Else():
                m.d.sync += [
                    # the accepting cycle, the check and this one
                    self.cycles.eq(3),
                    M.eq(p.m), K.eq(p.k), N.eq(p.n),
                    M_m1.eq(p.m - 1), K_m1.eq(p.k - 1), N_m1.eq(p.n - 1),
                    M_m2.eq(p.m - 2), m_is_1.eq(p.m == 1),
                    K_m2.eq(p.k - 2), N_m2.eq(p.n - 2),
                    two_kt.eq(p.k <= 2 * R), two_nt.eq(p.n <= 2 * C),
                    pass_last.eq(Mux(p.m < self.MIN_PASS, self.MIN_PASS - 1, p.m - 1)),
                    pass_last_m1.eq(Mux(p.m < self.MIN_PASS, self.MIN_PASS - 2, p.m - 2)),
                    one_kt.eq(p.k <= R), one_nt.eq(p.n <= C),
                    use_params.eq(p.params), requant.eq(p.requant & p.params), relu.eq(p.relu),
                    load_phase.eq(1),
                    a_m.eq(0), a_rdy.eq(1), a_m_last.eq(p.m == 1),
                    b_k.eq(0), b_rdy.eq(1), b_k_last.eq(p.k == 1),
                    p_n.eq(0), p_rdy.eq(p.params), p_n_last.eq(p.n == 1),
                    *a_kw.reset(p.k), *b_nw.reset(p.n),
                ]

        # ---------------------------------------------------------------- load
        # Writes are registered once on their way to the buffers.
        a_take = self.a.valid & a_rdy
        b_take = self.b.valid & b_rdy
        p_take = self.params.valid & p_rdy
        # The ready outputs are separate copies of the ready registers (same
        # next state, unmergeable): the producer's enables (the exerciser's
        # wide LFSRs) and the counters here then hang off different flops;
        # as one they stretched the handshake to 10.6 ns on a bad placement.
        start_ok = cmd_go & ~bad
        for rdy, take, last, first, port, nm in [
                (a_rdy, a_take, a_kw.last & a_m_last, 1, self.a, "a"),
                (b_rdy, b_take, b_nw.last & b_k_last, 1, self.b, "b"),
                (p_rdy, p_take, p_n_last, p.params, self.params, "params")]:
            nxt = Mux(start_ok, first, rdy & ~(take & last))
            m.d.comb += port.ready.eq(ff_copy(m, nxt, name=f"{nm}_ready_q", platform=platform))
        m.d.sync += [
            abuf.w_en.eq(a_take), abuf.w_addr.eq(Cat(a_m, a_kw.idx)), abuf.w_data.eq(self.a.payload),
            bbuf.w_en.eq(b_take), bbuf.w_addr.eq(Cat(b_k, b_nw.idx)), bbuf.w_data.eq(self.b.payload),
            pbuf.w_en.eq(p_take), pbuf.w_addr.eq(p_n), pbuf.w_data.eq(self.params.payload),
        ]
        with m.If(a_take):
            m.d.sync += a_kw.advance()
            with m.If(a_kw.last):
                m.d.sync += [a_m.eq(a_m + 1), a_m_last.eq(a_m == M_m2[:len(a_m)])]
                with m.If(a_m_last):
                    m.d.sync += a_rdy.eq(0)
        with m.If(b_take):
            m.d.sync += b_nw.advance()
            with m.If(b_nw.last):
                m.d.sync += [b_k.eq(b_k + 1), b_k_last.eq(b_k == K_m2[:len(b_k)])]
                with m.If(b_k_last):
                    m.d.sync += b_rdy.eq(0)
        with m.If(p_take):
            m.d.sync += [p_n.eq(p_n + 1), p_n_last.eq(p_n == N_m2[:len(p_n)])]
            with m.If(p_n_last):
                m.d.sync += p_rdy.eq(0)

        # The end of the load is registered (one cycle per command): the
        # start of the run phase resets every walker and the drain, and the
        # handshake logic in front of that fanout was 4 levels.
        load_fin = Signal()
        m.d.sync += load_fin.eq(load_phase & ~a_rdy & ~b_rdy & ~p_rdy & ~load_fin)
        with m.If(load_fin):
            m.d.sync += [
                load_phase.eq(0), run_phase.eq(1),
                *is_kw.reset(), *is_nw.reset(), *ld_kw.reset(), *ld_nw.reset(),
                is_m.eq(0), is_par.eq(0), is_active.eq(0), is_done.eq(0),
                ld_k.eq(0), ld_i.eq(0), ld_i_last.eq(R == 1),
                ld_par.eq(0), ld_active.eq(0), ld_done.eq(0),
                ahead.eq(0),
                dr_active.eq(0), dr_bank.eq(0), dr_nbase.eq(0), dr_left.eq(N),
                nv_m1.eq(Mux(one_nt, N_m1, C - 1)), dr_final_tile.eq(one_nt),
                ra.eq(0), ra_in.eq(1), ra_is_last.eq(m_is_1), row_valid.eq(0), next_valid.eq(0), p_idx.eq(0),
            ]

        # -------------------------------------------------------- weight loader
        # Reads one row of a B tile per cycle (registered address), registers
        # it, and writes it into the array's inactive weight bank the cycle
        # after. Rows past K are zero, which is all the K padding needs (A lanes
        # past K then multiply zero).
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
        m.d.sync += ld_can.eq(run_phase & ~ld_active & ~ld_start & ~ld_done & ~array.w_en &
                              (ahead < 2) & ~Cat(*[st.pend for st in rd_pipe]).any() &
                              (Mux(ld_par, bank_safe[1], bank_safe[0]) == 0))
        ld_go = Signal()
        m.d.comb += [
            ld_go.eq(ld_active | ld_start),
            bbuf.r_addr.eq(Cat(ld_k[:kbits], ld_nw.idx)),
        ]
        with m.If(ld_start):
            m.d.sync += ld_active.eq(1)
        m.d.sync += [
            rd_pipe[0].pend.eq(ld_go), rd_pipe[0].row.eq(ld_i), rd_pipe[0].bank.eq(ld_par),
            rd_pipe[0].zero.eq(ld_k >= K), rd_pipe[0].last.eq(ld_i_last),
        ]
        for d in range(1, RD):
            m.d.sync += rd_pipe[d].eq(rd_pipe[d - 1])
        rd_out = rd_pipe[-1]
        m.d.sync += [
            array.w_en.eq(rd_out.pend), array.w_row.eq(rd_out.row), array.w_bank.eq(rd_out.bank),
            w_last.eq(rd_out.pend & rd_out.last),
        ]
        for j in range(C):
            m.d.sync += array.w_data[j].eq(Mux(rd_out.zero, 0, bbuf.r_data[j]))
        with m.If(ld_go):
            with m.If(ld_i_last):
                m.d.sync += [ld_i.eq(0), ld_i_last.eq(R == 1),
                             ld_active.eq(0), ld_par.eq(~ld_par)]
                m.d.sync += ld_kw.advance()
                m.d.sync += ld_k.eq(ld_k_next)
                with m.If(ld_kw.last):
                    m.d.sync += ld_nw.advance()
                    with m.If(ld_nw.last):
                        m.d.sync += ld_done.eq(1)
            with m.Else():
                m.d.sync += [ld_i.eq(ld_i + 1), ld_i_last.eq(ld_i == R - 2), ld_k.eq(ld_k + 1)]
        # One cycle behind ld_kw, which only moves at the end of a tile; the
        # next use is a whole tile later (a tile starts from ld_can, which
        # waits for the read pipeline to empty first).
        m.d.sync += ld_k_next.eq(Mux(ld_kw.last, 0, ld_kw.base + R))
        loaded = w_last

        # ---------------------------------------------------------------- issue
        bank_free = ~Mux(is_nw.idx[0], acc_busy[1], acc_busy[0])
        is_start = (run_phase & ~is_active & ~is_done & (ahead != 0) &
                    ((is_kw.idx != 0) | bank_free))
        issued = Signal()           # last cycle of a pass
        acc_claim = Signal(2)
        with m.If(is_start):
            m.d.sync += [is_active.eq(1), is_m.eq(0), is_m_last.eq(0)]
            with m.If(is_kw.idx == 0):
                m.d.comb += acc_claim.bit_select(is_nw.idx[0], 1).eq(1)

        tag_layout = data.StructLayout({
            "valid": 1, "m": mbits, "first": 1, "bank": 1, "final": 1,
        })
        # tag0 is registered in the issue cycle (with the address), so
        # tags[RD - 1] is aligned with the buffer's output, which one more
        # register stage carries into the array: its input belongs to tags[RD].
        tag0 = Signal(tag_layout)
        bank_pipe = [Signal(name=f"act_bank{d}") for d in range(RD)]
        m.d.comb += abuf.r_addr.eq(Cat(is_m[:mbits], is_kw.idx))
        m.d.sync += [
            tag0.valid.eq(is_active & (is_m < M)),
            tag0.m.eq(is_m),
            tag0.first.eq(is_kw.idx == 0),
            tag0.bank.eq(is_nw.idx[0]),
            tag0.final.eq(is_kw.last & (is_m == M_m1)),
            bank_pipe[0].eq(is_par),
            array.act.eq(abuf.r_data),
            array.act_bank.eq(bank_pipe[-1]),
        ]
        for d in range(1, RD):
            m.d.sync += bank_pipe[d].eq(bank_pipe[d - 1])
        # is_m == pass_last, registered: the end of a pass advances the tile
        # walkers, and behind a 16-bit compare that took 7 logic levels.
        with m.If(is_active):
            m.d.sync += [is_m.eq(is_m + 1), is_m_last.eq(is_m == pass_last_m1)]
            with m.If(is_m_last):
                m.d.comb += issued.eq(1)
                m.d.sync += [is_active.eq(0), is_par.eq(~is_par)]
                m.d.sync += is_kw.advance()
                with m.If(is_kw.last):
                    m.d.sync += is_nw.advance()
                    with m.If(is_nw.last):
                        m.d.sync += is_done.eq(1)

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
        # tags[d] is d cycles after tag0; the array's psum for tags[RD] (its
        # input) appears with tags[RD + latency]. The old partial sum
        # is read RD + 1 cycles ahead and registered; the new one is
        # registered on its way into both accumulator copies.
        # The array's psum is registered once more before the accumulator add:
        # from the bottom of the columns (spread along a DSP row) into the
        # adder and on to both accumulator RAMs was one route too many.
        t_sum_at = RD + array.latency + 1
        tags = [tag0]
        for d in range(t_sum_at + 1):
            t = Signal(tag_layout, name=f"tag{d + 1}")
            m.d.sync += t.eq(tags[-1])
            tags.append(t)
        t_rd, t_wr = tags[t_sum_at - RD - 1], tags[t_sum_at + 1]
        acc_old = Signal(acc_row)
        acc_new = Signal(acc_row)
        # A tile's first pass starts from zero: acc_old is cleared as it is
        # registered (a clear, not a multiplexer in front of the adder), under
        # a per-column copy of the flag (it would fan out to 32 * cols flops).
        for j in range(C):
            first_j = ff_copy(m, tags[t_sum_at - 2].first, name=f"acc_first{j}", platform=platform)
            m.d.sync += acc_old[j].eq(Mux(first_j, 0, accbuf.r_data[j]))
        m.d.comb += accbuf.r_addr.eq(Cat(t_rd.m, t_rd.bank))
        for buf in (accbuf, drnbuf):
            m.d.comb += [
                buf.w_addr.eq(Cat(t_wr.m, t_wr.bank)),
                buf.w_en.eq(t_wr.valid),
                buf.w_data.eq(acc_new),
            ]
        for j in range(C):
            psum_r = Signal.like(array.psum[j], name=f"psum_r{j}")
            m.d.sync += [psum_r.eq(array.psum[j]),
                         acc_new[j].eq(acc_old[j] + psum_r)]
        drain_set = Signal(2)
        with m.If(t_wr.valid & t_wr.final):
            m.d.comb += drain_set.bit_select(t_wr.bank, 1).eq(1)

        # ---------------------------------------------------------------- drain
        # The drain read port always points at the next row (register ra); its
        # data is usable once ra has been stable for a cycle (rd_ok). A row is
        # prefetched into row_next as soon as that is free (fetch), moves into
        # row_reg when the row before it has left (adv), and its channels leave
        # one per cycle from there. Two row registers so that neither enable
        # waits on the other side: as one register loaded "when the last
        # channel leaves and the next row is ready" the enable of 257 flops and
        # of the read address was 5 logic levels, 7.4-10.8 ns at 125 MHz.
        m.d.comb += drnbuf.r_addr.eq(Cat(ra[:mbits], dr_bank))
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
        drain_clr = Signal(2)

        with m.If(run_phase & ~dr_active & Mux(dr_bank, drain_req[1], drain_req[0])):
            # The tile's last row was written a cycle ago; restart the read
            # wait so row 0 is read after that write.
            m.d.comb += ra_moved.eq(1)
            m.d.sync += dr_active.eq(1)
        with m.If(fetch):
            m.d.comb += ra_moved.eq(1)
            m.d.sync += [row_next.eq(drnbuf.r_data), next_valid.eq(1), ra.eq(ra + 1),
                         # registered compares: ra == M - 1 is known a row ahead
                         # (M - 2 cut to ra's width: for M = 1 all ones, above
                         # any row ra is compared at)
                         ra_in.eq(~ra_is_last), next_last.eq(ra_is_last),
                         ra_is_last.eq(ra == M_m2[:len(ra)])]
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
                                 ra_is_last.eq(m_is_1)]
                with m.Else():
                    m.d.sync += p_idx.eq(dr_nbase)
            with m.Else():
                m.d.sync += [dr_j.eq(dr_j + 1), lane_last.eq(dr_j + 1 == nv_m1),
                             p_idx.eq(p_idx + 1)]

        m.d.sync += [
            drain_req.eq((drain_req | drain_set) & ~drain_clr),
            acc_busy.eq((acc_busy | acc_claim) & ~drain_clr),
        ]

        # Element -> parameter read (one cycle) -> requantizer.
        m.d.comb += pbuf.r_addr.eq(p_idx)
        e_layout = data.StructLayout({"valid": 1, "acc": signed(32), "last": 1})
        e_pipe = [Signal(e_layout, name=f"elem{d}") for d in range(RD)]
        m.d.sync += [
            e_pipe[0].valid.eq(emit),
            e_pipe[0].acc.eq(row_reg[dr_j]),
            e_pipe[0].last.eq(dr_final_tile & row_last & lane_last),
        ]
        for d in range(1, RD):
            m.d.sync += e_pipe[d].eq(e_pipe[d - 1])
        e_valid, e_acc, e_last = e_pipe[-1].valid, e_pipe[-1].acc, e_pipe[-1].last
        p_rd = pbuf.r_data
        m.d.comb += [
            rq.i_valid.eq(e_valid),
            rq.i.acc.eq(e_acc),
            rq.i.bias.eq(Mux(use_params, p_rd.bias, 0)),
            rq.i.multiplier.eq(p_rd.multiplier),
            rq.i.shift.eq(p_rd.shift),
            rq.i.requant.eq(requant),
            rq.i.relu.eq(relu),
            rq.i.last.eq(e_last),
            ofifo.w_en.eq(rq.o_valid),
            ofifo.w_data.eq(rq.o),
        ]
        c_take = self.c.valid & self.c.ready
        with m.If(emit & ~c_take):
            m.d.sync += [outstanding.eq(outstanding + 1), room.eq(outstanding + 1 < fifo_depth)]
        with m.Elif(~emit & c_take):
            m.d.sync += [outstanding.eq(outstanding - 1), room.eq(1)]

        with m.If(c_take & self.c.payload.last):
            m.d.sync += run_phase.eq(0)

        return m
