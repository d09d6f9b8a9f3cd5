"""The GEMM controller's accumulator: partial sums read, added and written back."""

from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from .bufmem import BufferRAM
from .ffcopy import ff_copy
from .gemm_issue import tag_layout
from .gemm_walker import _bits

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """Follows each issued row (its ``tag``) through the array and adds the
    array's output row to the row's partial sums (zero on a tile's first K
    pass), read from and written back to the accumulator RAM (both copies
    take the same write port).

    Ports
    -----
    tag : In(tag_layout(config))
        The issuer's tag, registered in the issue cycle.
    psum : In
        The array's output; its row for a tag appears ``RD + array_latency``
        cycles after the tag (the array's input is ``RD`` after it).
    rd_addr : Out, rd_data : In
        The accumulator RAM's read port (``{bank, row}``), ``BufferRAM.LATENCY``.
    w_en, w_addr, w_data : Out
        The write port of both accumulator copies, from registers:
        ``RD + array_latency + 2`` cycles after the tag.
    done : Out(2)
        Combinational, with the write of a tile's last element: per bank.
    """

    def __init__(self, *, config, array_latency):
        check_type("config", config, ChipConfig)
        if not isinstance(array_latency, int) or isinstance(array_latency, bool) or array_latency < 1:
            raise ValueError(f"array_latency must be a positive integer, not {array_latency!r}")
        self.config = config
        self.array_latency = array_latency
        acc_row = data.ArrayLayout(signed(config.acc_width), config.cols)
        abits = _bits(config.max_m) + 1
        super().__init__({
            "tag": In(tag_layout(config)),
            "psum": In(acc_row),
            "rd_addr": Out(abits),
            "rd_data": In(acc_row),
            "w_en": Out(1),
            "w_addr": Out(abits),
            "w_data": Out(acc_row),
            "done": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        C = cfg.cols
        RD = BufferRAM.LATENCY
        acc_row = data.ArrayLayout(signed(cfg.acc_width), C)

        # tags[d] is d cycles after tag0; the array's psum for tags[RD] (its
        # input) appears with tags[RD + latency]. The old partial sum
        # is read RD + 1 cycles ahead and registered; the new one is
        # registered on its way into both accumulator copies.
        # The array's psum is registered once more before the accumulator add:
        # from the bottom of the columns (spread along a DSP row) into the
        # adder and on to both accumulator RAMs was one route too many.
        t_sum_at = RD + self.array_latency + 1
        tags = [self.tag]
        for d in range(t_sum_at + 1):
            t = Signal(tag_layout(cfg), name=f"tag{d + 1}")
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
            m.d.sync += acc_old[j].eq(Mux(first_j, 0, self.rd_data[j]))
        m.d.comb += [
            self.rd_addr.eq(Cat(t_rd.m, t_rd.bank)),
            self.w_addr.eq(Cat(t_wr.m, t_wr.bank)),
            self.w_en.eq(t_wr.valid),
            self.w_data.eq(acc_new),
        ]
        for j in range(C):
            psum_r = Signal.like(self.psum[j], name=f"psum_r{j}")
            m.d.sync += [psum_r.eq(self.psum[j]),
                         acc_new[j].eq(acc_old[j] + psum_r)]
        with m.If(t_wr.valid & t_wr.final):
            m.d.comb += self.done.bit_select(t_wr.bank, 1).eq(1)
        return m
