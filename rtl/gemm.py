"""The matrix unit: operand buffers, GEMM controller, systolic array, post-processing."""

from amaranth.hdl import Module, Signal, Mux, signed
from amaranth.lib import data, wiring, stream
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_type
from ..config import ChipConfig
from ..protocol import (GemmCmdLayout, ParamLayout, OutLayout, GemmError,
                        a_word_layout, b_word_layout)
from .systolic import SystolicArray
from .requant import Requantizer
from .bufmem import BufferRAM
from .gemm_walker import _bits
from .gemm_command import CommandStage, MIN_PASS
from .gemm_loader import WeightLoader
from .gemm_operands import OperandLoader
from .gemm_issue import ActivationIssuer
from .gemm_accum import Accumulator
from .gemm_drain import GemmDrain

__all__ = ["GemmUnit"]


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

    MIN_PASS = MIN_PASS

    def __init__(self, *, config):
        check_type("config", config, ChipConfig)
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
        mbits, kbits = _bits(cfg.max_m), _bits(cfg.max_k)
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
        m.submodules.command = cmd = CommandStage(config=cfg)
        wiring.connect(m, wiring.flipped(self.cmd), cmd.cmd)
        m.d.comb += [self.busy.eq(cmd.busy), self.error.eq(cmd.error), self.cycles.eq(cmd.cycles)]
        d, p, run_phase, load_fin = cmd.dec, cmd.p, cmd.run, cmd.load_fin

        # Passes loaded but not yet fully issued (0..2, one per weight bank).
        ahead = Signal(range(3))
        # Cycles until a weight bank may be overwritten after its last activation.
        safe_time = C + 2
        bank_safe = [Signal(range(safe_time + 1), name=f"bank_safe{b}") for b in range(2)]
        # Accumulator bank claimed by an N tile, released when it has drained.
        acc_busy = Signal(2)
        drain_req = Signal(2)

        # ---------------------------------------------------------------- load
        m.submodules.operands = ops = OperandLoader(config=cfg)
        wiring.connect(m, wiring.flipped(self.a), ops.a)
        wiring.connect(m, wiring.flipped(self.b), ops.b)
        wiring.connect(m, wiring.flipped(self.params), ops.params)
        m.d.comb += [
            ops.start.eq(cmd.start),
            ops.cmd_m.eq(p.m), ops.cmd_k.eq(p.k), ops.cmd_n.eq(p.n), ops.cmd_params.eq(p.params),
            ops.m_m2.eq(d.m_m2), ops.k_m2.eq(d.k_m2), ops.n_m2.eq(d.n_m2),
            ops.k.eq(d.k), ops.one_kt.eq(d.one_kt), ops.two_kt.eq(d.two_kt),
            ops.n.eq(d.n), ops.one_nt.eq(d.one_nt), ops.two_nt.eq(d.two_nt),
            abuf.w_en.eq(ops.a_w_en), abuf.w_addr.eq(ops.a_w_addr), abuf.w_data.eq(ops.a_w_data),
            bbuf.w_en.eq(ops.b_w_en), bbuf.w_addr.eq(ops.b_w_addr), bbuf.w_data.eq(ops.b_w_data),
            pbuf.w_en.eq(ops.p_w_en), pbuf.w_addr.eq(ops.p_w_addr), pbuf.w_data.eq(ops.p_w_data),
        ]

        m.d.comb += cmd.load_done.eq(ops.done)
        with m.If(load_fin):
            m.d.sync += ahead.eq(0)

        # -------------------------------------------------------- weight loader
        m.submodules.loader = ldr = WeightLoader(config=cfg)
        m.d.comb += [
            ldr.run.eq(run_phase), ldr.restart.eq(load_fin),
            ldr.k.eq(d.k), ldr.one_kt.eq(d.one_kt), ldr.two_kt.eq(d.two_kt),
            ldr.n.eq(d.n), ldr.one_nt.eq(d.one_nt), ldr.two_nt.eq(d.two_nt),
            ldr.ahead_lt2.eq(ahead < 2),
            ldr.bank_safe0.eq(bank_safe[0]), ldr.bank_safe1.eq(bank_safe[1]),
            bbuf.r_addr.eq(ldr.b_addr), ldr.b_data.eq(bbuf.r_data),
            array.w_en.eq(ldr.w_en), array.w_row.eq(ldr.w_row), array.w_bank.eq(ldr.w_bank),
            array.w_data.eq(ldr.w_data),
        ]
        loaded = ldr.loaded

        # ---------------------------------------------------------------- issue
        m.submodules.issuer = iss = ActivationIssuer(config=cfg)
        m.d.comb += [
            iss.run.eq(run_phase), iss.restart.eq(load_fin),
            iss.m.eq(d.m), iss.m_m1.eq(d.m_m1), iss.pass_last_m1.eq(d.pass_last_m1),
            iss.k.eq(d.k), iss.one_kt.eq(d.one_kt), iss.two_kt.eq(d.two_kt),
            iss.n.eq(d.n), iss.one_nt.eq(d.one_nt), iss.two_nt.eq(d.two_nt),
            iss.ahead_nz.eq(ahead != 0), iss.acc_busy.eq(acc_busy),
            abuf.r_addr.eq(iss.a_addr), iss.a_data.eq(abuf.r_data),
            array.act.eq(iss.act), array.act_bank.eq(iss.act_bank),
        ]
        issued, is_par, acc_claim = iss.issued, iss.par, iss.acc_claim

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
        m.submodules.accum = acc = Accumulator(config=cfg, array_latency=array.latency)
        m.d.comb += [
            acc.tag.eq(iss.tag), acc.psum.eq(array.psum),
            accbuf.r_addr.eq(acc.rd_addr), acc.rd_data.eq(accbuf.r_data),
        ]
        for buf in (accbuf, drnbuf):
            m.d.comb += [buf.w_addr.eq(acc.w_addr), buf.w_en.eq(acc.w_en), buf.w_data.eq(acc.w_data)]
        drain_set = acc.done

        # ---------------------------------------------------------------- drain
        m.submodules.drain = drain = GemmDrain(config=cfg, fifo_depth=fifo_depth)
        drain_clr = drain.clr
        m.d.comb += [
            drain.run.eq(run_phase), drain.restart.eq(load_fin),
            drain.n.eq(d.n), drain.n_m1.eq(d.n_m1), drain.one_nt.eq(d.one_nt),
            drain.m_m2.eq(d.m_m2), drain.m_is_1.eq(d.m_is_1),
            drain.req.eq(drain_req),
            drnbuf.r_addr.eq(drain.rd_addr), drain.rd_data.eq(drnbuf.r_data),
        ]

        m.d.sync += [
            drain_req.eq((drain_req | drain_set) & ~drain_clr),
            acc_busy.eq((acc_busy | acc_claim) & ~drain_clr),
        ]

        # Element -> parameter read (one cycle) -> requantizer.
        m.d.comb += pbuf.r_addr.eq(drain.p_addr)
        e_valid, e_acc, e_last = drain.elem.valid, drain.elem.acc, drain.elem.last
        p_rd = pbuf.r_data
        m.d.comb += [
            rq.i_valid.eq(e_valid),
            rq.i.acc.eq(e_acc),
            rq.i.bias.eq(Mux(d.use_params, p_rd.bias, 0)),
            rq.i.multiplier.eq(p_rd.multiplier),
            rq.i.shift.eq(p_rd.shift),
            rq.i.requant.eq(d.requant),
            rq.i.relu.eq(d.relu),
            rq.i.last.eq(e_last),
            ofifo.w_en.eq(rq.o_valid),
            ofifo.w_data.eq(rq.o),
        ]
        c_take = self.c.valid & self.c.ready
        m.d.comb += drain.c_take.eq(c_take)

        m.d.comb += cmd.end.eq(c_take & self.c.payload.last)

        return m

