"""On-chip buffer RAM built for Fmax: banked, every bank's output registered.

On ECP5 the banks are DP16KD block RAMs instantiated directly with their
output register on (``REGMODE_B = "OUTREG"``): Yosys' block RAM inference
never uses it, and without it a DP16KD's clock-to-out is about 5.6 ns, which
plus one route already fills most of an 8 ns cycle. Elsewhere (simulation,
other FPGAs) a plain :class:`~amaranth.lib.memory.Memory` followed by a
register has the same two-cycle behaviour.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Shape, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .vendor import is_ecp5

__all__ = ["BufferRAM"]


class BufferRAM(wiring.Component):
    """One write port, one read port, read latency :attr:`LATENCY` = 3.

    Built so no path touching a block RAM carries logic or a long route:

    * every input (write enable/address/data, read address) is registered
      first; on ECP5 each group of :attr:`GROUP` block RAMs gets its own copy
      of the address and enable registers, placed next to them, so the one
      long route from the caller is register to register (a deep buffer is
      many RAMs side by side: 256 x 256 int8 is 32 DP16KDs, spread over the
      die);
    * the RAM output is registered: the DP16KD output register on ECP5
      (``REGMODE_B = "OUTREG"``; Yosys' inference never uses it, and without
      it clock-to-out is about 5.6 ns), a fabric register elsewhere;
    * deeper than one RAM's depth, the memory is split into banks of
      ``bank_depth`` words whose registered outputs are selected by a
      pipelined bank number (rarely used: the bank depth is chosen per width
      so that the RAM count stays what a plain memory would use).

    Writes land one cycle after they are presented, and reads see memory one
    cycle after they are presented, so read-after-write order is as for a
    plain memory: a read presented in the same cycle as a write to its address
    returns the old word, a read presented later the new one.

    Ports
    -----
    w_en, w_addr, w_data : In
        Write ``w_data`` at ``w_addr``.
    r_addr : In
    r_data : Out
        The word at ``r_addr`` of :attr:`LATENCY` cycles earlier (a registered
        output unless there are several banks: then a multiplexer of them).
    """

    LATENCY = 3

    #: block RAMs per copy of the registered address/enable inputs (ECP5)
    GROUP = 4

    #: (depth, width) aspect ratios of one 18 Kbit block RAM (ECP5 DP16KD in
    #: true dual port mode; 512 x 36 needs the pseudo dual port PDPW16KD).
    EBR_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))

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
        ecp5 = is_ecp5(platform)
        outs = []
        for b in range(self.n_banks):
            depth = min(self.bank_depth, self.depth - b * self.bank_depth)
            sel_w = (self.w_addr[lo:] == b) if self.n_banks > 1 else 1
            w_en = Signal(name=f"bank{b}_we")
            m.d.comb += w_en.eq(self.w_en & sel_w)
            out = Signal(self.shape, name=f"bank{b}_q")
            if ecp5:
                self._dp16kd_bank(m, f"bank{b}", w_en, self.w_addr[:lo], self.w_data,
                                  self.r_addr[:lo], out)
            else:
                mem = Memory(shape=self.shape, depth=depth, init=[])
                m.submodules[f"bank{b}"] = mem
                wr = mem.write_port()
                rd = mem.read_port()
                # input registers (on ECP5: one copy per group of block RAMs)
                m.d.sync += [
                    wr.addr.eq(self.w_addr[:lo]),
                    wr.data.eq(self.w_data),
                    wr.en.eq(w_en),
                    rd.addr.eq(self.r_addr[:lo]),
                ]
                m.d.comb += rd.en.eq(1)
                m.d.sync += out.eq(rd.data)
            outs.append(out)
        if self.n_banks == 1:
            m.d.comb += self.r_data.eq(outs[0])
        else:
            sel = [Signal(range(self.n_banks), name=f"sel{i}") for i in range(self.LATENCY)]
            m.d.sync += sel[0].eq(self.r_addr[lo:])
            for i in range(1, self.LATENCY):
                m.d.sync += sel[i].eq(sel[i - 1])
            with m.Switch(sel[-1]):
                for b, out in enumerate(outs):
                    with m.Case(b):
                        m.d.comb += self.r_data.eq(out)
        return m

    def _dp16kd_bank(self, m, name, w_en, w_addr, w_data, r_addr, r_data):
        """One bank as DP16KDs side by side: port A writes, port B reads through
        its output register. Address bits sit at the top of the 14-bit ADx bus
        (the low bits select within an 18-bit word, as byte enables on writes
        in x18 mode); data are LSB-aligned on DI/DO, as Yosys' own mapping of
        ``$__DP16KD_`` does."""
        width = Shape.cast(self.shape).width
        # The widest aspect ratio deep enough for the bank.
        depth_mode, w_mode = next(md for md in reversed(self.EBR_MODES)
                                  if md[0] >= self.bank_depth)
        shift = 14 - ceil_log2(depth_mode)
        abits = len(w_addr)
        wd, rq = Value.cast(w_data), Value.cast(r_data)
        n_slices = -(-width // w_mode)
        groups = {}
        for s, lo in enumerate(range(0, width, w_mode)):
            hi = min(width, lo + w_mode)
            g = s // self.GROUP
            if g not in groups:
                # This group's copy of the control inputs. FD1S3AX instances,
                # not Amaranth registers: Yosys would merge identical
                # registers back into one with a die-wide fanout.
                def ff(d, what, g=g):
                    q = Signal(len(d), name=f"{name}_g{g}_{what}")
                    for i in range(len(d)):
                        m.submodules[f"{name}_g{g}_{what}_ff{i}"] = Instance(
                            "FD1S3AX", p_GSR="ENABLED",
                            i_CK=ClockSignal("sync"), i_D=d[i], o_Q=q[i])
                    return q
                groups[g] = (ff(w_en, "we"), ff(w_addr, "wa"), ff(r_addr, "ra"))
            g_we, g_wa, g_ra = groups[g]
            g_wd = Signal(hi - lo, name=f"{name}_s{s}_wd")
            m.d.sync += g_wd.eq(wd[lo:hi])
            ports = {}
            for i in range(14):
                a = i - shift
                if 0 <= a < abits:
                    ports[f"i_ADA{i}"] = g_wa[a]
                    ports[f"i_ADB{i}"] = g_ra[a]
                else:
                    # x18 writes: ADA0/ADA1 are the byte enables.
                    ports[f"i_ADA{i}"] = Const(int(w_mode == 18 and i < 2))
                    ports[f"i_ADB{i}"] = Const(0)
            for i in range(18):
                ports[f"i_DIA{i}"] = g_wd[i] if i < hi - lo else Const(0)
                ports[f"i_DIB{i}"] = Const(0)
            for i in range(hi - lo):
                ports[f"o_DOB{i}"] = rq[lo + i]
            for pin in ("CSA0", "CSA1", "CSA2", "CSB0", "CSB1", "CSB2", "RSTA", "RSTB", "WEB"):
                ports[f"i_{pin}"] = Const(0)
            m.submodules[f"{name}_ebr{s}"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=w_mode, p_DATA_WIDTH_B=w_mode,
                p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
                p_GSR="AUTO",
                i_CLKA=ClockSignal("sync"), i_CLKB=ClockSignal("sync"),
                i_CEA=Const(1), i_OCEA=Const(1), i_WEA=g_we,
                i_CEB=Const(1), i_OCEB=Const(1),
                **ports,
            )
