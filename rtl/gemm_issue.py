"""The GEMM controller's issuer: rows of A into the array, one pass per K tile."""

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from ..protocol import a_word_layout
from .bufmem import BufferRAM
from .gemm_walker import KN_PORTS, _bits, kn_walkers

__all__ = ["ActivationIssuer", "tag_layout"]


def tag_layout(config):
    """What the accumulator needs to know of each issued row."""
    return data.StructLayout({
        "valid": 1, "m": _bits(config.max_m), "first": 1, "bank": 1, "final": 1,
    })


class ActivationIssuer(wiring.Component):
    """Runs one pass per (N tile, K tile), K tile inner: ``pass_last + 1``
    cycles reading rows ``0..M-1`` of the K tile from the A buffer into the
    array (cycles past M issue nothing valid), on the weight bank the loader
    filled for it (banks alternate). A pass starts when one is loaded
    (``ahead_nz``) and, for a tile's first K pass, its accumulator bank
    (``n tile % 2``) has drained.

    Ports
    -----
    run, restart : In(1)
        ``run``: the run phase; ``restart``: back to the first pass.
    m, m_m1, pass_last_m1, k, one_kt, two_kt, n, one_nt, two_nt : In
        The registered command.
    ahead_nz : In(1)
        A weight tile is loaded and not yet issued.
    acc_busy : In(2)
        Accumulator bank claimed and not yet drained.
    a_addr : Out, a_data : In
        The A buffer's read port (``{k tile, m}``), ``BufferRAM.LATENCY``.
    act, act_bank : Out
        The array's activation input, registered: ``RD + 1`` cycles after
        the row's issue cycle.
    tag : Out(tag_layout(config))
        Registered in the issue cycle: row, first K pass, accumulator bank,
        last element of the tile.
    issued, par, acc_claim : Out
        Combinational ``issued``: the last cycle of a pass (with ``par``,
        its weight bank); ``acc_claim``: the bank a tile's first pass takes.
    """

    def __init__(self, *, config):
        check_type("config", config, ChipConfig)
        self.config = config
        cfg = config
        super().__init__({
            "run": In(1),
            "m": In(16), "m_m1": In(16), "pass_last_m1": In(16),
            **KN_PORTS,
            "ahead_nz": In(1),
            "acc_busy": In(2),
            "a_addr": Out(_bits(cfg.max_m) + _bits(cfg.k_tiles_max)),
            "a_data": In(a_word_layout(cfg)),
            "act": Out(a_word_layout(cfg)),
            "act_bank": Out(1),
            "tag": Out(tag_layout(cfg)),
            "issued": Out(1),
            "par": Out(1),
            "acc_claim": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        mbits = _bits(cfg.max_m)
        RD = BufferRAM.LATENCY

        is_kw, is_nw = kn_walkers(m, self, cfg, "is")
        is_m = Signal(16)
        is_m_last = Signal()            # is_m == pass_last
        is_par = self.par
        is_active, is_done = Signal(), Signal()
        with m.If(self.restart):
            m.d.sync += [is_m.eq(0), is_par.eq(0), is_active.eq(0), is_done.eq(0)]

        bank_free = ~Mux(is_nw.idx[0], self.acc_busy[1], self.acc_busy[0])
        is_start = (self.run & ~is_active & ~is_done & self.ahead_nz &
                    ((is_kw.idx != 0) | bank_free))
        issued = self.issued        # last cycle of a pass
        acc_claim = self.acc_claim
        with m.If(is_start):
            m.d.sync += [is_active.eq(1), is_m.eq(0), is_m_last.eq(0)]
            with m.If(is_kw.idx == 0):
                m.d.comb += acc_claim.bit_select(is_nw.idx[0], 1).eq(1)

        # tag0 is registered in the issue cycle (with the address), so
        # tags[RD - 1] is aligned with the buffer's output, which one more
        # register stage carries into the array: its input belongs to tags[RD].
        tag0 = self.tag
        bank_pipe = [Signal(name=f"act_bank{d}") for d in range(RD)]
        m.d.comb += self.a_addr.eq(Cat(is_m[:mbits], is_kw.idx))
        m.d.sync += [
            tag0.valid.eq(is_active & (is_m < self.m)),
            tag0.m.eq(is_m),
            tag0.first.eq(is_kw.idx == 0),
            tag0.bank.eq(is_nw.idx[0]),
            tag0.final.eq(is_kw.last & (is_m == self.m_m1)),
            bank_pipe[0].eq(is_par),
            self.act.eq(self.a_data),
            self.act_bank.eq(bank_pipe[-1]),
        ]
        for d in range(1, RD):
            m.d.sync += bank_pipe[d].eq(bank_pipe[d - 1])
        # is_m == pass_last, registered: the end of a pass advances the tile
        # walkers, and behind a 16-bit compare that took 7 logic levels.
        with m.If(is_active):
            m.d.sync += [is_m.eq(is_m + 1), is_m_last.eq(is_m == self.pass_last_m1)]
            with m.If(is_m_last):
                m.d.comb += issued.eq(1)
                m.d.sync += [is_active.eq(0), is_par.eq(~is_par)]
                m.d.comb += is_kw.advance.eq(1)
                with m.If(is_kw.last):
                    m.d.comb += is_nw.advance.eq(1)
                    with m.If(is_nw.last):
                        m.d.sync += is_done.eq(1)
        return m
