"""On-chip buffer RAM built for Fmax: banked, every bank's output registered."""

from amaranth.hdl import Module, Signal, Shape
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["BufferRAM"]


class BufferRAM(wiring.Component):
    """One write port, one read port, read latency :attr:`LATENCY` = 2.

    A plain deep memory maps to several block RAMs whose outputs Yosys may join
    with a multiplexer; on ECP5 a DP16KD's clock-to-out (about 5.8 ns without
    its output register, which Yosys does not use) plus a route to that
    multiplexer already misses 8 ns. Here the memory is split into banks of
    ``bank_depth`` words, each bank's output goes into its own register (whose
    only load is the bank multiplexer), and only then
    the bank is selected. The bank depth is chosen per width so the RAM count
    stays what a plain memory would use (usually a single bank). Every input is
    used straight from the caller's registers.

    Ports
    -----
    w_en, w_addr, w_data : In
        Write ``w_data`` at ``w_addr`` at the clock edge.
    r_addr : In
    r_data : Out
        The word at ``r_addr`` of two cycles earlier (the multiplexer output:
        register it before heavy use).
    """

    LATENCY = 2

    #: (depth, width) aspect ratios of one 18 Kbit block RAM (ECP5 DP16KD).
    EBR_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))

    def __init__(self, *, shape, depth, bank_depth=None):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        width = Shape.cast(shape).width
        if bank_depth is None:
            # The fewest block RAMs, and among equals the deepest banks (fewest
            # banks to select between): usually one bank, as Yosys would map it.
            def cost(mode):
                d, w = mode
                return (-(-depth // d) * -(-width // w), -d)
            bank_depth = min(self.EBR_MODES, key=cost)[0]
        if not isinstance(bank_depth, int) or bank_depth < 1 or bank_depth & (bank_depth - 1):
            raise ValueError(f"bank_depth must be a power of two, not {bank_depth!r}")
        self.shape = shape
        self.depth = depth
        self.bank_depth = min(bank_depth, 1 << ceil_log2(depth))
        self.n_banks = -(-depth // self.bank_depth)
        abits = max(1, ceil_log2(depth))
        super().__init__({
            "w_en": In(1),
            "w_addr": In(abits),
            "w_data": In(shape),
            "r_addr": In(abits),
            "r_data": Out(shape),
        })

    def elaborate(self, platform):
        m = Module()
        lo = max(0, ceil_log2(self.bank_depth))
        outs = []
        for b in range(self.n_banks):
            depth = min(self.bank_depth, self.depth - b * self.bank_depth)
            mem = Memory(shape=self.shape, depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wr = mem.write_port()
            rd = mem.read_port()
            sel_w = (self.w_addr[lo:] == b) if self.n_banks > 1 else 1
            m.d.comb += [
                wr.addr.eq(self.w_addr[:lo]),
                wr.data.eq(self.w_data),
                wr.en.eq(self.w_en & sel_w),
                rd.addr.eq(self.r_addr[:lo]),
                rd.en.eq(1),
            ]
            out = Signal(self.shape, name=f"bank{b}_q")
            m.d.sync += out.eq(rd.data)
            outs.append(out)
        if self.n_banks == 1:
            m.d.comb += self.r_data.eq(outs[0])
        else:
            sel1 = Signal(range(self.n_banks))
            sel2 = Signal(range(self.n_banks))
            m.d.sync += [sel1.eq(self.r_addr[lo:]), sel2.eq(sel1)]
            with m.Switch(sel2):
                for b, out in enumerate(outs):
                    with m.Case(b):
                        m.d.comb += self.r_data.eq(out)
        return m
