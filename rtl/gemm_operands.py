"""The GEMM controller's load phase: A, B and the parameters into their buffers."""

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from ..protocol import ParamLayout, a_word_layout, b_word_layout
from .ffcopy import ff_copy
from .gemm_walker import TileWalker, _bits

__all__ = ["OperandLoader"]


class OperandLoader(wiring.Component):
    """Takes the command's operands off their streams and writes them into
    the buffers: A at ``{k tile, m}``, B at ``{n tile, k}``, parameters at
    ``n`` (word orders as :class:`~seedchip.rtl.gemm.GemmUnit` documents).

    Ports
    -----
    a, b, params : In(stream)
        Ready (a register copy) from the cycle after ``start`` until the
        stream's last word; ``params`` only when ``cmd_params``.
    start : In(1)
        Start a load, with the decoded command ``cmd_m``, ``cmd_k``,
        ``cmd_n``, ``cmd_params`` (not yet registered).
    k_m2, n_m2, m_m2, k, one_kt, two_kt, n, one_nt, two_nt : In
        The registered command (valid from the cycle after ``start``).
    a_w_*, b_w_*, p_w_* : Out
        The buffers' write ports, registered (one cycle after the handshake).
    done : Out(1)
        Combinational: no stream is ready any more.

    Throughput: one word per stream per cycle.
    """

    def __init__(self, *, config):
        check_type("config", config, ChipConfig)
        self.config = config
        cfg = config
        mbits, kbits, nbits = _bits(cfg.max_m), _bits(cfg.max_k), _bits(cfg.max_n)
        ktbits, ntbits = _bits(cfg.k_tiles_max), _bits(cfg.n_tiles_max)
        super().__init__({
            "a": In(stream.Signature(a_word_layout(cfg))),
            "b": In(stream.Signature(b_word_layout(cfg))),
            "params": In(stream.Signature(ParamLayout)),
            "start": In(1),
            "cmd_m": In(16), "cmd_k": In(16), "cmd_n": In(16), "cmd_params": In(1),
            "m_m2": In(16), "k_m2": In(16), "n_m2": In(16),
            "k": In(16), "one_kt": In(1), "two_kt": In(1),
            "n": In(16), "one_nt": In(1), "two_nt": In(1),
            "a_w_en": Out(1), "a_w_addr": Out(mbits + ktbits), "a_w_data": Out(a_word_layout(cfg)),
            "b_w_en": Out(1), "b_w_addr": Out(kbits + ntbits), "b_w_data": Out(b_word_layout(cfg)),
            "p_w_en": Out(1), "p_w_addr": Out(nbits), "p_w_data": Out(ParamLayout),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        mbits, kbits, nbits = _bits(cfg.max_m), _bits(cfg.max_k), _bits(cfg.max_n)
        ktbits, ntbits = _bits(cfg.k_tiles_max), _bits(cfg.n_tiles_max)

        # Stream ready flags are registers (ready = "in load and not done"),
        # and each counter's last-element compare is a registered flag, so a
        # handshake decides the next ready in two logic levels.
        # (M - 2 etc. are compared in the counter's width: for M = 1 all
        # ones, above the only value a_m is compared at)
        a_m, a_rdy, a_m_last = Signal(mbits, name="a_m"), Signal(name="a_rdy"), Signal(name="a_m_last")
        m.submodules.a_kw = a_kw = TileWalker(step=R, idx_bits=ktbits, max_length=cfg.max_k)
        b_k, b_rdy, b_k_last = Signal(kbits, name="b_k"), Signal(name="b_rdy"), Signal(name="b_k_last")
        m.submodules.b_nw = b_nw = TileWalker(step=C, idx_bits=ntbits, max_length=cfg.max_n)
        p_n, p_rdy, p_n_last = Signal(nbits, name="p_n"), Signal(name="p_rdy"), Signal(name="p_n_last")
        m.d.comb += [
            a_kw.length.eq(self.k), a_kw.first_last.eq(self.one_kt), a_kw.first_le2.eq(self.two_kt),
            b_nw.length.eq(self.n), b_nw.first_last.eq(self.one_nt), b_nw.first_le2.eq(self.two_nt),
        ]

        with m.If(self.start):
            m.d.sync += [
                a_m.eq(0), a_rdy.eq(1), a_m_last.eq(self.cmd_m == 1),
                b_k.eq(0), b_rdy.eq(1), b_k_last.eq(self.cmd_k == 1),
                p_n.eq(0), p_rdy.eq(self.cmd_params), p_n_last.eq(self.cmd_n == 1),
            ]
            m.d.comb += [a_kw.load.eq(1), a_kw.load_length.eq(self.cmd_k),
                         b_nw.load.eq(1), b_nw.load_length.eq(self.cmd_n)]

        # Writes are registered once on their way to the buffers.
        a_take = self.a.valid & a_rdy
        b_take = self.b.valid & b_rdy
        p_take = self.params.valid & p_rdy
        # The ready outputs are separate copies of the ready registers (same
        # next state, unmergeable): the producer's enables (the exerciser's
        # wide LFSRs) and the counters here then hang off different flops;
        # as one they stretched the handshake to 10.6 ns on a bad placement.
        for rdy, take, last, first, port, nm in [
                (a_rdy, a_take, a_kw.last & a_m_last, 1, self.a, "a"),
                (b_rdy, b_take, b_nw.last & b_k_last, 1, self.b, "b"),
                (p_rdy, p_take, p_n_last, self.cmd_params, self.params, "params")]:
            nxt = Mux(self.start, first, rdy & ~(take & last))
            m.d.comb += port.ready.eq(ff_copy(m, nxt, name=f"{nm}_ready_q", platform=platform))
        m.d.sync += [
            self.a_w_en.eq(a_take), self.a_w_addr.eq(Cat(a_m, a_kw.idx)), self.a_w_data.eq(self.a.payload),
            self.b_w_en.eq(b_take), self.b_w_addr.eq(Cat(b_k, b_nw.idx)), self.b_w_data.eq(self.b.payload),
            self.p_w_en.eq(p_take), self.p_w_addr.eq(p_n), self.p_w_data.eq(self.params.payload),
        ]
        with m.If(a_take):
            m.d.comb += a_kw.advance.eq(1)
            with m.If(a_kw.last):
                m.d.sync += [a_m.eq(a_m + 1), a_m_last.eq(a_m == self.m_m2[:len(a_m)])]
                with m.If(a_m_last):
                    m.d.sync += a_rdy.eq(0)
        with m.If(b_take):
            m.d.comb += b_nw.advance.eq(1)
            with m.If(b_nw.last):
                m.d.sync += [b_k.eq(b_k + 1), b_k_last.eq(b_k == self.k_m2[:len(b_k)])]
                with m.If(b_k_last):
                    m.d.sync += b_rdy.eq(0)
        with m.If(p_take):
            m.d.sync += [p_n.eq(p_n + 1), p_n_last.eq(p_n == self.n_m2[:len(p_n)])]
            with m.If(p_n_last):
                m.d.sync += p_rdy.eq(0)

        m.d.comb += self.done.eq(~a_rdy & ~b_rdy & ~p_rdy)
        return m
