"""SDR SDRAM: chip descriptions, the pin signature and the controller.

Pin-level conventions (shared with the cocotb model in ``sim/sdram_model.py``)
--------------------------------------------------------------------------------
* All pins are driven from registers in the controller's ``sync`` domain. The
  SDRAM samples ``cke``, ``cs_n``, ``ras_n``, ``cas_n``, ``we_n``, ``ba``,
  ``a``, ``dqm``, ``dq_o`` (and ``dq_oe``) on the rising clock edge; the edge at
  which a command is sampled is its *command edge*.
* A WRITE carries its data word: ``dq_o`` with ``dq_oe = 1`` and ``dqm`` (1 =
  byte *not* written) at the WRITE's command edge (burst length 1).
* A READ's data is sampled by the SDRAM's user ``cas_latency`` edges after the
  READ's command edge; the controller registers ``dq_i`` at command edge +
  ``cas_latency + read_delay`` (``read_delay`` = 0 in simulation, where the
  pins connect directly; on a board it covers the I/O registers). ``dqm`` is
  held 0 around reads.
* ``dq_oe`` is the tristate enable of the board's DQ buffers; ``dq_i`` is the
  pad input. Simulation needs no tristate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator

from amaranth.hdl import Module, Signal, Cat, Const, Mux
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib.fifo import SyncFIFO
from amaranth.utils import exact_log2

from ..checks import check_int, check_num, check_pow2
from .memport import MemPortSignature

__all__ = [
    "SDRAMChip", "SDRAMTimings", "IS42S16160", "MT48LC16M16A2", "M12L64322A", "CHIPS",
    "worst_case",
    "SDRAMCommand", "SDRAMPinSignature", "SDRAMController",
]


@dataclasses.dataclass(frozen=True)
class SDRAMTimings:
    """A chip's timings in clock cycles at one frequency (see :meth:`SDRAMChip.cycles`).

    Every field is a minimum except ``tREFI`` (the average refresh interval, a
    maximum) and ``init`` (the power-up wait with stable clock, a minimum).
    """
    clk_freq: float
    tRCD: int
    tRP: int
    tRAS: int
    tRC: int
    tRFC: int
    tWR: int
    tRRD: int
    tMRD: int
    tREFI: int
    init: int


@dataclasses.dataclass(frozen=True)
class SDRAMChip:
    """Geometry and timings of one SDR SDRAM chip (or of chips in parallel).

    Times are in nanoseconds; ``tMRD`` and ``tWR_ck`` are in clock cycles
    (datasheets give them so). ``cas_latencies`` maps each supported CAS
    latency to the highest clock frequency (Hz) at which that latency is
    allowed. ``tREFI`` is the refresh period over the number of refresh
    commands per period (64 ms / 8192 = 7812.5 ns); ``init_delay`` is the
    power-up wait before the first PRECHARGE ALL; ``init_refreshes`` the number
    of AUTO REFRESH commands of the init sequence.
    """

    name: str
    data_width: int
    banks: int
    rows: int
    columns: int
    tRCD: float
    tRP: float
    tRAS: float
    tRC: float
    tRFC: float
    tWR: float
    tRRD: float
    tMRD: int
    tREFI: float
    init_delay: float
    cas_latencies: tuple  # ((cas_latency, max_clk_freq_hz), ...)
    tWR_ck: int = 1
    init_refreshes: int = 2
    #: longest a row may stay open (JEDEC SDR parts: 100 us or 120 us). Bounds
    #: how many refreshes the controller may postpone, since only a refresh
    #: (PRECHARGE ALL first) closes rows that traffic leaves open.
    tRAS_max: float = 100_000
    #: Pin timings (ns), for a board's I/O timing budget (the controller itself
    #: works in whole cycles and does not read them); None when not recorded.
    #: ``tAC`` maps CAS latency -> access time from CLK (max), ``tOH`` is the
    #: output data hold after CLK (min), ``tHZ`` the output turn-off after CLK
    #: (max), ``tIS``/``tIH`` the input (command, address, data, DQM) setup and
    #: hold around CLK (min).
    tAC: tuple | None = None    # ((cas_latency, ns), ...)
    tOH: float | None = None
    tHZ: float | None = None
    tIS: float | None = None
    tIH: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string, not {self.name!r}")
        check_int("data_width", self.data_width, 8, 64)
        if self.data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {self.data_width!r}")
        check_pow2("banks", self.banks, 2, 8)
        check_pow2("rows", self.rows, 256, 1 << 14)
        # A10 is the auto-precharge bit: columns must fit in A0..A9.
        check_pow2("columns", self.columns, 64, 1024)
        for name in ("tRCD", "tRP", "tRAS", "tRFC", "tWR", "tRRD"):
            check_num(name, getattr(self, name), 0, 1000, " ns")
        check_num("tRC", self.tRC, 0, 1000, " ns")
        if self.tRC < self.tRAS:
            raise ValueError(f"tRC must be at least tRAS ({self.tRAS!r} ns), not {self.tRC!r}")
        check_int("tMRD", self.tMRD, 1, 16)
        check_int("tWR_ck", self.tWR_ck, 1, 8)
        check_num("tREFI", self.tREFI, 1000, 100_000, " ns")
        check_num("tRAS_max", self.tRAS_max, 3 * self.tREFI, 1_000_000, " ns")
        check_num("init_delay", self.init_delay, 0, 10_000_000, " ns")
        check_int("init_refreshes", self.init_refreshes, 2, 16)
        if (not isinstance(self.cas_latencies, tuple) or not self.cas_latencies or
                not all(isinstance(e, tuple) and len(e) == 2 for e in self.cas_latencies)):
            raise TypeError(f"cas_latencies must be a non-empty tuple of (cas_latency, "
                            f"max_clk_freq) pairs, not {self.cas_latencies!r}")
        for cl, fmax in self.cas_latencies:
            check_int("cas_latency", cl, 1, 3)
            check_num("max_clk_freq", fmax, 1e6, 400e6, " Hz")
        if self.tAC is not None:
            if (not isinstance(self.tAC, tuple) or
                    not all(isinstance(e, tuple) and len(e) == 2 for e in self.tAC)):
                raise TypeError(f"tAC must be a tuple of (cas_latency, ns) pairs, not {self.tAC!r}")
            for cl, ns in self.tAC:
                check_int("cas_latency", cl, 1, 3)
                check_num("tAC", ns, 0, 20, " ns")
        for name in ("tOH", "tHZ", "tIS", "tIH"):
            if getattr(self, name) is not None:
                check_num(name, getattr(self, name), 0, 20, " ns")

    # -- geometry ------------------------------------------------------------

    @property
    def bank_bits(self):
        return exact_log2(self.banks)

    @property
    def row_bits(self):
        return exact_log2(self.rows)

    @property
    def col_bits(self):
        return exact_log2(self.columns)

    @property
    def a_width(self):
        """Width of the ``A`` address pins: row bits, and at least A10 (auto
        precharge / precharge all) plus the mode register."""
        return max(self.row_bits, 11)

    @property
    def words(self):
        """Capacity in ``data_width`` words."""
        return self.banks * self.rows * self.columns

    @property
    def addr_width(self):
        """Width of a word address that reaches the whole chip."""
        return self.bank_bits + self.row_bits + self.col_bits

    @property
    def size_bytes(self):
        return self.words * self.data_width // 8

    # -- timings -------------------------------------------------------------

    def access_time(self, cas_latency):
        """``tAC`` (ns) at ``cas_latency``, or None if not recorded."""
        for cl, ns in self.tAC or ():
            if cl == cas_latency:
                return ns
        return None

    def max_freq(self, cas_latency):
        """Highest clock frequency (Hz) allowed at ``cas_latency``, or None."""
        for cl, fmax in self.cas_latencies:
            if cl == cas_latency:
                return fmax
        return None

    def cycles(self, clk_freq):
        """All timings in whole clock cycles at ``clk_freq`` (Hz), rounded up
        (``tREFI`` rounded down: it is a maximum)."""
        check_num("clk_freq", clk_freq, 1e6, 400e6, " Hz")
        period = 1e9 / clk_freq

        def ceil(ns):
            # A float product like 15 ns * 100 MHz = 1.5000000000000002 must not
            # become an extra cycle when it is exact; 1e-6 cycle is far below
            # any datasheet's resolution.
            return max(0, math.ceil(ns / period - 1e-6))

        return SDRAMTimings(
            clk_freq=clk_freq,
            tRCD=max(1, ceil(self.tRCD)),
            tRP=max(1, ceil(self.tRP)),
            tRAS=max(1, ceil(self.tRAS)),
            tRC=max(1, ceil(self.tRC)),
            tRFC=max(1, ceil(self.tRFC)),
            tWR=max(self.tWR_ck, ceil(self.tWR)),
            tRRD=max(1, ceil(self.tRRD)),
            tMRD=self.tMRD,
            tREFI=math.floor(self.tREFI / period + 1e-6),
            init=ceil(self.init_delay),
        )


# Timings as recalled from the datasheets (no datasheet text copied; check
# your board's part against its own datasheet). The ULX3S carries either an
# ISSI IS42S16160 (-7) or a Micron MT48LC16M16A2 (-6A or -75): both presets
# below take, for each timing, the worst of the parts/revisions they stand for,
# so one bitstream runs on every board revision.
#
# * ISSI IS42S16160 (revisions B/G/J, -7 grade, 143 MHz at CL3, 100 MHz at
#   CL2). The -7 minima (J revision: tRCD = tRP = 15 ns, tRAS 42, tRC 60,
#   tRRD 14, write recovery 2 clocks) are below the preset everywhere; the
#   preset's tRCD/tRP of 18 ns and tRC/tRFC of 63/70 ns cover the older
#   revisions (at 100 MHz: one cycle more on tRC and tRFC than the J revision
#   needs, none on tRCD/tRP). ISSI asks for 8 AUTO REFRESH
#   commands at init and 100 us of wait. Pins: tAC 5.4 ns at CL3 and 6 ns at
#   CL2 (older revisions; J: 5.4), tOH 2.5 ns (J: 2.7), tHZ 6 ns, input setup
#   1.5 ns and hold 0.8 ns.
IS42S16160 = SDRAMChip(
    name="IS42S16160", data_width=16, banks=4, rows=8192, columns=512,
    tRCD=18, tRP=18, tRAS=42, tRC=63, tRFC=70, tWR=14, tRRD=14, tMRD=2,
    tWR_ck=2, tREFI=64e6 / 8192, init_delay=100_000, init_refreshes=8,
    cas_latencies=((2, 100e6), (3, 143e6)),
    tAC=((2, 6.0), (3, 5.4)), tOH=2.5, tHZ=6.0, tIS=1.5, tIH=0.8,
)

# * Micron MT48LC16M16A2, -6A (167 MHz at CL3) and -75 (133 MHz at CL3) grades,
#   both 100 MHz at CL2: the -75 figures are the larger ones (tRCD = tRP =
#   20 ns, tRAS 44, tRC 66, tRFC 66, tRRD 15, tWR 1 clock + 7.5 ns), and the
#   -75 caps CL3 at 133 MHz. Pins: tAC 5.4 ns at CL3, 7.5 ns at CL2 (-6A),
#   tOH 3 ns, tHZ 7.5 ns, setup 1.5 ns, hold 0.8 ns.
MT48LC16M16A2 = SDRAMChip(
    name="MT48LC16M16A2", data_width=16, banks=4, rows=8192, columns=512,
    tRCD=20, tRP=20, tRAS=44, tRC=66, tRFC=66, tWR=15, tRRD=15, tMRD=2,
    tWR_ck=2, tREFI=64e6 / 8192, init_delay=100_000, init_refreshes=2,
    cas_latencies=((2, 100e6), (3, 133e6)),
    tAC=((2, 7.5), (3, 5.4)), tOH=3.0, tHZ=7.5, tIS=1.5, tIH=0.8,
)

# * ESMT M12L64322A (Colorlight 5A-75B / i5; 512K x 32 x 4 banks, -7 grade:
#   143 MHz at CL3, 100 MHz at CL2), 4K refreshes per 64 ms, 200 us init wait,
#   tRDL (write recovery) 2 clocks.
M12L64322A = SDRAMChip(
    name="M12L64322A", data_width=32, banks=4, rows=2048, columns=256,
    tRCD=20, tRP=20, tRAS=42, tRC=63, tRFC=63, tWR=14, tRRD=14, tMRD=2,
    tWR_ck=2, tREFI=64e6 / 4096, init_delay=200_000, init_refreshes=2,
    cas_latencies=((2, 100e6), (3, 143e6)),
)

CHIPS = {c.name: c for c in (IS42S16160, MT48LC16M16A2, M12L64322A)}


def worst_case(chips, *, name=None) -> SDRAMChip:
    """One chip description that is safe for every chip in ``chips`` (same
    geometry): the larger of each minimum timing, the smaller of each maximum,
    the CAS latencies all of them support at the lowest of their clock limits.
    For a board that ships with one of several parts."""
    chips = tuple(chips)
    if not chips or not all(isinstance(c, SDRAMChip) for c in chips):
        raise TypeError(f"chips must be a non-empty sequence of SDRAMChip, not {chips!r}")
    first = chips[0]
    for c in chips[1:]:
        for attr in ("data_width", "banks", "rows", "columns"):
            if getattr(c, attr) != getattr(first, attr):
                raise ValueError(f"{c.name} and {first.name} differ in {attr}")

    def known(attr):
        return [getattr(c, attr) for c in chips if getattr(c, attr) is not None]

    def worst(attr, pick):
        values = known(attr)
        return pick(values) if len(values) == len(chips) else None

    cls = sorted(set.intersection(*(set(cl for cl, _ in c.cas_latencies) for c in chips)))
    if not cls:
        raise ValueError(f"{', '.join(c.name for c in chips)} share no CAS latency")
    t_ac = None
    if all(c.tAC is not None for c in chips):
        t_ac = tuple((cl, max(c.access_time(cl) for c in chips)) for cl in cls)
    return dataclasses.replace(
        first,
        name=name or "|".join(c.name for c in chips),
        **{a: max(getattr(c, a) for c in chips)
           for a in ("tRCD", "tRP", "tRAS", "tRC", "tRFC", "tWR", "tRRD", "tMRD", "tWR_ck",
                     "init_delay", "init_refreshes")},
        tREFI=min(c.tREFI for c in chips),
        tRAS_max=min(c.tRAS_max for c in chips),
        cas_latencies=tuple((cl, min(c.max_freq(cl) for c in chips)) for cl in cls),
        tAC=t_ac,
        tOH=worst("tOH", min),
        tHZ=worst("tHZ", max),
        tIS=worst("tIS", max),
        tIH=worst("tIH", max),
    )


class SDRAMCommand(enum.Enum, shape=4):
    """``Cat(we_n, cas_n, ras_n, cs_n)`` of each command (bit 3 = ``cs_n``)."""
    DESELECT = 0b1111
    NOP = 0b0111
    ACTIVE = 0b0011
    READ = 0b0101
    WRITE = 0b0100
    BURST_TERMINATE = 0b0110
    PRECHARGE = 0b0010      # A10 = 1: all banks
    AUTO_REFRESH = 0b0001
    LOAD_MODE = 0b0000


def mode_register(*, cas_latency, burst_length=1):
    """Mode register value: sequential burst of ``burst_length``, ``cas_latency``,
    standard operation, programmed write burst."""
    bl = {1: 0, 2: 1, 4: 2, 8: 3}[burst_length]
    return (cas_latency << 4) | bl


class SDRAMPinSignature(wiring.Signature):
    """Controller side of the SDRAM pins (DQ split into ``dq_o``/``dq_oe``/``dq_i``).

    Members: ``cke, cs_n, ras_n, cas_n, we_n`` (1), ``ba`` (bank bits), ``a``
    (:attr:`SDRAMChip.a_width`), ``dqm`` (``data_width // 8``, 1 = masked),
    ``dq_o`` (``data_width``), ``dq_oe`` (1) out; ``dq_i`` (``data_width``) in.
    The SDRAM clock is the board's business (a phase-shifted copy of ``sync``).
    """

    def __init__(self, *, chip):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        self.chip = chip
        super().__init__({
            "cke": Out(1, init=0),
            "cs_n": Out(1, init=1),
            "ras_n": Out(1, init=1),
            "cas_n": Out(1, init=1),
            "we_n": Out(1, init=1),
            "ba": Out(chip.bank_bits),
            "a": Out(chip.a_width),
            "dqm": Out(chip.data_width // 8, init=(1 << (chip.data_width // 8)) - 1),
            "dq_o": Out(chip.data_width),
            "dq_oe": Out(1),
            "dq_i": In(chip.data_width),
        })

    def __eq__(self, other):
        return isinstance(other, SDRAMPinSignature) and self.chip == other.chip

    def __repr__(self):
        return f"SDRAMPinSignature(chip={self.chip.name})"


def _or(values):
    values = list(values)
    return functools.reduce(operator.or_, values) if values else Const(0)


class SDRAMController(wiring.Component):
    """SDR SDRAM controller: open-row policy, bank lookahead, in-order responses.

    Parameters (keyword-only)
    -------------------------
    chip : SDRAMChip
    clk_freq : float
        ``sync`` clock frequency in Hz (timings are rounded up to cycles at it).
    cas_latency : int or None
        One of ``chip.cas_latencies`` allowed at ``clk_freq``; None picks the
        lowest allowed.
    read_delay : int
        Extra cycles of registers on the read data path (I/O registers on a
        board, 0 in simulation): ``dq_i`` is registered ``cas_latency +
        read_delay`` edges after the READ's command edge.
    postpone_max : int
        Refreshes that may be owed (postponed) while requests are waiting,
        0..8. An idle controller refreshes as soon as one is due; when
        ``postpone_max + 1`` are owed, traffic stops until all are done.
    queue_depth : int
        Requests held for lookahead (2..8).
    resp_depth : int
        Response FIFO depth; column commands are issued only against free
        space in it, so read data is never dropped under ``resp`` backpressure.
        At least ``cas_latency + read_delay + 4`` for full rate.
    addr_width : int or None
        Word address width of ``port``; None means ``chip.addr_width + 1``, so
        that out-of-range addresses are representable (and get ``err``).

    Ports
    -----
    port : In(MemPortSignature(addr_width=addr_width, data_width=chip.data_width))
        One word per request. Word address mapping (``cb``, ``bb``, ``rb`` =
        column, bank, row bits)::

            addr[0 : cb]                column
            addr[cb : cb + bb]          bank
            addr[cb + bb : cb+bb+rb]    row
            addr[cb + bb + rb :] != 0   -> err response, no SDRAM command

        so a page (512 words = 1 KiB on the ULX3S) is contiguous and the next
        page lives in the next bank: sequential streams switch banks at page
        ends (the next bank's row opens while the current one still streams)
        and random rows spread evenly over the banks.
    pins : Out(SDRAMPinSignature(chip=chip))
        Registered outputs. See the module docstring for the sampling rules.
    init_done : Out(1)
        The init sequence is over (requests are accepted before, and wait).
    refreshes, row_hits, row_misses, activates : Out(32)
        Wrapping event counters: AUTO REFRESH commands after init; read/write
        commands whose row was already open (``row_hits``) or was opened for
        this very request (``row_misses``); ACTIVATE commands.

    Latency and throughput
    ----------------------
    A read that hits an open row in an idle controller responds
    ``cas_latency + read_delay + 5`` cycles after its request handshake (input
    register, queue, command register, CAS latency, capture register, response
    FIFO). Page hits run at one READ or WRITE per cycle; switching from reads to
    writes costs ``cas_latency + 1`` bus-turnaround cycles. Row commands
    (PRECHARGE, ACTIVATE) for the oldest queued request of each bank take
    priority over column commands, so the next bank's row opens while the
    current bank still transfers. Column commands stay in request order, so
    responses need no reordering. A refresh costs about ``tRP + tRFC`` cycles
    every ``tREFI``.
    """

    def __init__(self, *, chip, clk_freq, cas_latency=None, read_delay=0, postpone_max=None,
                 queue_depth=8, resp_depth=16, addr_width=None):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        check_num("clk_freq", clk_freq, 1e6, 400e6, " Hz")
        allowed = sorted(cl for cl, fmax in chip.cas_latencies if clk_freq <= fmax)
        if not allowed:
            raise ValueError(f"clk_freq must be at most {max(f for _, f in chip.cas_latencies):g} Hz "
                             f"for {chip.name}, not {clk_freq!r}")
        if cas_latency is None:
            cas_latency = allowed[0]
        elif not isinstance(cas_latency, int) or isinstance(cas_latency, bool):
            raise TypeError(f"cas_latency must be an integer, not {cas_latency!r}")
        elif cas_latency not in allowed:
            raise ValueError(f"cas_latency must be one of {', '.join(map(str, allowed))} for "
                             f"{chip.name} at {clk_freq / 1e6:g} MHz, not {cas_latency!r}")
        check_int("read_delay", read_delay, 0, 4)
        # Rows left open by traffic close only at a refresh; with postpone_max
        # refreshes owed, two refreshes can be (postpone_max + 1) tREFI apart,
        # plus the time to drain the queue: keep a whole tREFI of margin
        # against tRAS(max).
        postpone_hi = min(8, int(chip.tRAS_max // chip.tREFI) - 2)
        if postpone_max is None:
            postpone_max = postpone_hi
        check_int("postpone_max", postpone_max, 0, postpone_hi)
        check_int("queue_depth", queue_depth, 2, 8)
        check_int("resp_depth", resp_depth, 2, 256)
        if addr_width is None:
            addr_width = chip.addr_width + 1
        check_int("addr_width", addr_width, chip.addr_width, 40)

        self.chip = chip
        self.clk_freq = clk_freq
        self.cas_latency = cas_latency
        self.read_delay = read_delay
        self.postpone_max = postpone_max
        self.queue_depth = queue_depth
        self.resp_depth = resp_depth
        self.addr_width = addr_width
        self.timings = chip.cycles(clk_freq)
        super().__init__({
            "port": In(MemPortSignature(addr_width=addr_width, data_width=chip.data_width)),
            "pins": Out(SDRAMPinSignature(chip=chip)),
            "init_done": Out(1),
            "refreshes": Out(32),
            "row_hits": Out(32),
            "row_misses": Out(32),
            "activates": Out(32),
        })

    @property
    def mode_register(self):
        return mode_register(cas_latency=self.cas_latency)

    def elaborate(self, platform):
        m = Module()

        chip, t = self.chip, self.timings
        N = self.queue_depth
        nb, bb, rb, cb = chip.banks, chip.bank_bits, chip.row_bits, chip.col_bits
        dw, mw, aw = chip.data_width, chip.data_width // 8, chip.a_width
        CL, RD = self.cas_latency, self.read_delay
        pins, port = self.pins, self.port

        # Minimum distances between command edges. Every readiness flag below
        # is a register, so a timer allows its next command 2 edges after its
        # trigger at the earliest. The queue's row-hit and need flags follow
        # ACTIVATE/PRECHARGE up to 2 cycles late (that keeps the row comparators
        # off the command path); tRAS >= 3 covers that after an ACTIVATE.
        # tRAS is also stretched to tRC - tRP so that ACT->PRE->ACT meets tRC
        # without a tRC timer.
        d_rcd = t.tRCD
        d_ras = max(3, t.tRAS, t.tRC - t.tRP)
        d_rp = t.tRP
        d_wr = t.tWR
        d_rrd = t.tRRD
        d_rfc = max(1, t.tRFC)
        d_mrd = max(1, t.tMRD)
        # READ at R: the SDRAM drives DQ for edge R + CL. WRITE at W: the FPGA
        # drives DQ from edge W - 1 on. One idle cycle in between.
        d_rd_wr = CL + 2

        def timer(name, dist, load):
            """Registered ``ok`` flag: low from the edge after ``load`` until
            ``dist`` edges after it (at least 2)."""
            ctr = Signal(range(max(dist, 2)), name=f"{name}_ctr")
            ok = Signal(init=1, name=f"{name}_ok")
            soon = Signal(name=f"{name}_soon")   # ok next cycle unless loaded now
            m.d.comb += soon.eq(ctr <= 1)
            with m.If(load):
                m.d.sync += ctr.eq(max(dist, 2) - 1)
            with m.Elif(ctr != 0):
                m.d.sync += ctr.eq(ctr - 1)
            m.d.sync += ok.eq(~load & soon)
            return ok, soon

        # -- command decision signals (defined here, driven below) ------------
        run = Signal()                  # registered: RUN and no refresh wanted
        head_ready = Signal()           # registered: head may take its column slot
        go = Signal(nb)                 # registered: bank b may take its row command
        pop = Signal()                  # column slot used: READ, WRITE or err
        sel = Signal(nb)                # row command to bank b (one-hot)
        pre_all = Signal()              # sequencer: PRECHARGE ALL
        head_rd = Signal()
        head_wr = Signal()

        # -- per-bank state ---------------------------------------------------
        bank_open = Signal(nb)
        open_row = [Signal(rb, name=f"open_row{b}") for b in range(nb)]
        need_r = Signal(nb)             # the oldest request to bank b wants PRE/ACT
        need_row = [Signal(rb, name=f"need_row{b}") for b in range(nb)]

        act_now = Signal(nb)
        pre_now = Signal(nb)
        row_a = Signal(rb)              # row of the row command
        m.d.comb += [
            row_a.eq(_or(Mux(sel[b], need_row[b], 0) for b in range(nb))),
            act_now.eq(sel & ~bank_open),
            pre_now.eq(Mux(pre_all, (1 << nb) - 1, sel & bank_open)),
        ]

        # -- request queue (shift register, entry 0 = oldest) -----------------
        # Only what the scheduler looks at shifts; column, write data and mask
        # wait in a LUT-RAM FIFO in the same order.
        entry_layout = data.StructLayout({
            "valid": 1,
            "err": 1,
            "we": 1,
            "hit": 1,       # its row is open in its bank (follows ACT/PRE a cycle late)
            "first": 1,     # no older queued request to the same bank
            "opened": 1,    # an ACTIVATE was issued for this request
            "bank_oh": nb,  # one-hot bank; 0 for err requests
            "row": rb,
        })
        side_layout = data.StructLayout({"col": cb, "wdata": dw, "mask": mw})
        q = [Signal(entry_layout, name=f"q{i}") for i in range(N)]

        def needs(e):
            """The entry wants a PRE or ACT: valid, not err, first of its bank,
            row not open. A function of the stored flags rather than a flag of
            its own: storing it put the row compare and the bank order in
            series in front of every queue register (a 100 MHz critical path)."""
            return e.valid & e.bank_oh.any() & e.first & ~e.hit
        head = q[0]
        full = q[N - 1].valid
        side = m.submodules.side = SyncFIFO(width=side_layout.size, depth=N + 1)
        head_side = side_layout(side.r_data)

        # Input register: decodes the address; takes a request whenever the
        # queue is not full (ignoring this cycle's pop keeps req.ready off the
        # scheduler; one bubble when the queue runs full).
        inp = Signal(entry_layout)
        ins = Signal()
        accept = Signal()
        m.d.comb += [
            ins.eq(inp.valid & ~full),
            port.req.ready.eq(~inp.valid | ~full),
            accept.eq(port.req.valid & port.req.ready),
            side.w_en.eq(accept),
            side.w_data.eq(Cat(port.req.payload.addr[:cb], port.req.payload.wdata,
                               port.req.payload.mask)),
            side.r_en.eq(pop),
        ]
        with m.If(ins):
            m.d.sync += inp.valid.eq(0)
        # The input register's row-hit flag is compared on the way in and then
        # kept current like a queue entry's (the last row command applied):
        # comparing at insertion put a 13-bit compare in front of the queue
        # update and cost a 100 MHz clock.
        inp_hit = Signal()              # inp.hit, the last cycle's row command applied
        m.d.sync += inp.hit.eq(inp_hit)
        with m.If(accept):
            addr = port.req.payload.addr
            err = Signal()
            if self.addr_width > chip.addr_width:
                m.d.comb += err.eq(addr[chip.addr_width:].any())
            bank_oh = Signal(nb)
            row = addr[cb + bb:cb + bb + rb]
            m.d.comb += bank_oh.eq(Mux(err, 0, Const(1, nb) << addr[cb:cb + bb]))
            m.d.sync += [
                inp.valid.eq(1),
                inp.err.eq(err),
                inp.we.eq(port.req.payload.we),
                inp.bank_oh.eq(bank_oh),
                inp.row.eq(row),
                inp.hit.eq(_or(bank_oh[b] & bank_open[b] & (open_row[b] == row)
                               for b in range(nb))),
            ]

        # The row command on the pins now, applied to the hit flags next edge.
        upd_act = Signal(nb)
        upd_pre = Signal(nb)
        upd_row = Signal(rb)

        # Requests that stay in the queue after this cycle, per position.
        # Every entry is worked out twice, for "no pop" (nothing leaves) and
        # for "pop" (the head leaves, so it no longer counts as an older
        # request of its bank): ``pop`` then only picks one at the end. It is
        # the latest signal of the cycle (it follows the scheduler), and
        # letting it into the bank-order logic cost a 100 MHz clock.
        hits = []
        for j in range(N):
            e = q[j]
            hit = Signal(name=f"hit_upd{j}")
            with m.If((e.bank_oh & upd_act).any()):
                m.d.comb += hit.eq(e.row == upd_row)
            with m.Elif((e.bank_oh & upd_pre).any()):
                m.d.comb += hit.eq(0)
            with m.Else():
                m.d.comb += hit.eq(e.hit)
            hits.append(hit)

        def updated(j, head_stays, name):
            """Entry ``j`` as it stays in the queue: the row command of the
            last cycle applied, bank order recomputed."""
            e, hit = q[j], hits[j]
            older = _or(Mux(q[k].valid, q[k].bank_oh, 0) for k in range(j)
                        if k > 0 or head_stays)
            first = ~(older & e.bank_oh).any()
            u = Signal(entry_layout, name=name)
            m.d.comb += [
                u.eq(e),
                u.hit.eq(hit),
                u.first.eq(first),
                u.opened.eq(e.opened | (needs(e) & (e.bank_oh & upd_act).any())),
            ]
            return u

        upd_nopop = [updated(j, True, f"upd{j}") for j in range(N)]
        upd_pop = [None] + [updated(j, False, f"upd{j}_pop") for j in range(1, N)]

        with m.If((inp.bank_oh & upd_act).any()):
            m.d.comb += inp_hit.eq(inp.row == upd_row)
        with m.Elif((inp.bank_oh & upd_pre).any()):
            m.d.comb += inp_hit.eq(0)
        with m.Else():
            m.d.comb += inp_hit.eq(inp.hit)
        new_hit = inp_hit

        def inserted(head_stays, name):
            older = _or(Mux(q[k].valid, q[k].bank_oh, 0) for k in range(N)
                        if k > 0 or head_stays)
            first = ~(older & inp.bank_oh).any()
            u = Signal(entry_layout, name=name)
            m.d.comb += [
                u.eq(inp),
                u.hit.eq(new_hit),
                u.first.eq(first),
                u.opened.eq(0),
            ]
            return u

        new_nopop = inserted(True, "new")
        new_pop = inserted(False, "new_pop")

        # Shift on pop, insert behind the last request that stays.
        empty = Const.cast(entry_layout.const({}))
        for i in range(N):
            n_nopop = Signal(entry_layout, name=f"next{i}")
            n_pop = Signal(entry_layout, name=f"next{i}_pop")
            land_nopop = ~q[i].valid & (q[i - 1].valid if i else 1)
            land_pop = q[i].valid & (~q[i + 1].valid if i + 1 < N else 1)
            m.d.comb += [
                n_nopop.eq(Mux(ins & land_nopop, new_nopop, upd_nopop[i])),
                n_pop.eq(Mux(ins & land_pop, new_pop, upd_pop[i + 1] if i + 1 < N else empty)),
            ]
            m.d.sync += q[i].eq(Mux(pop, n_pop, n_nopop))

        # -- per-bank timers ------------------------------------------------------
        col_soon = Signal(nb)
        pre_ok = Signal(nb)
        ras_soon_, wr_soon_, rp_soon_ = [], [], []
        for b in range(nb):
            _, rcd_soon = timer(f"rcd{b}", d_rcd, act_now[b])
            ras_ok, ras_soon = timer(f"ras{b}", d_ras, act_now[b])
            wr_ok, wr_soon = timer(f"wr{b}", d_wr, head_wr & head.bank_oh[b])
            _, rp_soon = timer(f"rp{b}", d_rp, pre_now[b])
            ras_soon_.append(ras_soon)
            wr_soon_.append(wr_soon)
            rp_soon_.append(rp_soon)
            m.d.comb += [
                col_soon[b].eq(rcd_soon),
                pre_ok[b].eq(ras_ok & wr_ok),
            ]
        _, rrd_soon = timer("rrd", d_rrd, act_now.any())
        _, rdwr_soon = timer("rdwr", d_rd_wr, head_rd)

        # Bank state follows the row command at once. A closed bank's open_row
        # tracks need_row (the row an ACTIVATE would open, a register) and
        # freezes when the bank opens: the same value as loading it on the
        # ACTIVATE, without the scheduler's decision on the enable of 13 flops
        # per bank (that path cost a 100 MHz clock). open_row is only looked at
        # while its bank is open.
        for b in range(nb):
            with m.If(~bank_open[b]):
                m.d.sync += open_row[b].eq(need_row[b])
            with m.If(act_now[b]):
                m.d.sync += bank_open[b].eq(1)
            with m.If(pre_now[b]):
                m.d.sync += bank_open[b].eq(0)
        m.d.sync += [
            upd_act.eq(act_now),
            upd_pre.eq(pre_now),
            upd_row.eq(row_a),
        ]

        # -- scheduler -------------------------------------------------------------
        # Row commands first (oldest request's bank first, then by bank
        # number): one PRE/ACT slot now hides tRP/tRCD behind the current
        # transfers. Column commands stay in request order.
        head_bank_go = (go & head.bank_oh).any()
        prio = Signal(nb)
        for b in range(nb):
            lower = _or(go[k] for k in range(b))
            m.d.comb += prio[b].eq(go[b] & (head.bank_oh[b] | (~head_bank_go & ~lower)))
        m.d.comb += [
            sel.eq(prio),
            pop.eq(run & head_ready & ~go.any()),
            head_rd.eq(pop & ~head.err & ~head.we),
            head_wr.eq(pop & ~head.err & head.we),
        ]

        # go, next cycle: the oldest request of the bank wants a command and the
        # bank's timers will allow it (each term is the next value of a timer's
        # ok flag). Only the oldest request of a bank can have ``need`` set, so
        # ORs find it; need_r/need_row register the same queue state as go, so
        # go and the row it opens always agree.
        need_q = Signal(nb)
        go_next = Signal(nb)
        run_next = Signal()
        open_next = (bank_open | act_now) & ~pre_now
        for b in range(nb):
            m.d.comb += [
                need_q[b].eq(_or(needs(q[i]) & q[i].bank_oh[b] for i in range(N))),
                go_next[b].eq(run_next & need_q[b] & Mux(
                    open_next[b],
                    ~act_now[b] & ras_soon_[b] & ~(head_wr & head.bank_oh[b]) & wr_soon_[b],
                    ~pre_now[b] & rp_soon_[b] & ~act_now.any() & rrd_soon)),
            ]
        m.d.sync += [
            need_r.eq(need_q),
            go.eq(go_next),
        ]
        for b in range(nb):
            m.d.sync += need_row[b].eq(_or(Mux(needs(q[i]) & q[i].bank_oh[b], q[i].row, 0)
                                           for i in range(N)))

        # head_ready, next cycle, for whichever request will be the head: its
        # bank's tRCD timer needs no "ACT now" term, because a bank being
        # activated now was closed, so no request of it has ``hit`` set yet.
        def ready_of(e, hit, rd_now, credit_next):
            bank_soon = (e.bank_oh & col_soon).any()
            return e.valid & credit_next & (
                e.err | (hit & bank_soon & (~e.we | (~rd_now & rdwr_soon))))

        credits = Signal(range(self.resp_depth + 1), init=self.resp_depth)
        # Ignores this cycle's response pop: a credit comes back a cycle late.
        credit_pop = credits >= 2
        credit_nopop = credits >= 1
        rdy_nopop = Signal()
        rdy_pop = Signal()
        m.d.comb += [
            rdy_nopop.eq(Mux(q[0].valid, ready_of(q[0], hits[0], 0, credit_nopop),
                             ins & ready_of(inp, new_hit, 0, credit_nopop))),
            rdy_pop.eq(Mux(q[1].valid, ready_of(q[1], hits[1], ~head.err & ~head.we,
                                                credit_pop),
                           ins & ready_of(inp, new_hit, ~head.err & ~head.we, credit_pop))),
        ]
        m.d.sync += head_ready.eq(Mux(pop, rdy_pop, rdy_nopop))

        # -- command output ------------------------------------------------------------
        cmd = Signal(4)
        a = Signal(aw)
        ba = Signal(bb)
        dqm = Signal(mw)
        sel_act = Signal()
        m.d.comb += [
            sel_act.eq((sel & ~bank_open).any()),
            cmd.eq(SDRAMCommand.NOP),
            a.eq(Mux(go.any(), row_a, head_side.col)),
            ba.eq(Mux(go.any(), _or(Mux(sel[b], b, 0) for b in range(nb)),
                      _or(Mux(head.bank_oh[b], b, 0) for b in range(nb)))),
            dqm.eq(0),
        ]
        with m.If(go.any()):
            m.d.comb += cmd.eq(Mux(sel_act, SDRAMCommand.ACTIVE.value,
                                   SDRAMCommand.PRECHARGE.value))
            with m.If(~sel_act):
                m.d.comb += a[10].eq(0)     # PRECHARGE of one bank
        with m.Elif(head_rd):
            m.d.comb += cmd.eq(SDRAMCommand.READ)
        with m.Elif(head_wr):
            m.d.comb += [cmd.eq(SDRAMCommand.WRITE), dqm.eq(~head_side.mask)]
        m.d.sync += [
            Cat(pins.we_n, pins.cas_n, pins.ras_n, pins.cs_n).eq(cmd),
            pins.a.eq(a),
            pins.ba.eq(ba),
            pins.dqm.eq(dqm),
            pins.dq_o.eq(head_side.wdata),
            pins.dq_oe.eq(head_wr),
            pins.cke.eq(1),
        ]

        # -- refresh bookkeeping ---------------------------------------------------------
        refi = Signal(range(t.tREFI), init=t.tREFI - 1)
        refi_tick = Signal()
        owed = Signal(range(self.postpone_max + 3))
        ref_issue = Signal()
        with m.If(self.init_done):
            with m.If(refi == 0):
                m.d.sync += refi.eq(t.tREFI - 1)
            with m.Else():
                m.d.sync += refi.eq(refi - 1)
            # Registered: keeps the wide zero test away from the scheduler.
            m.d.sync += refi_tick.eq(refi == 0)
        m.d.sync += owed.eq(owed + refi_tick - ref_issue)
        idle = ~head.valid & ~inp.valid
        ref_want = Signal()
        m.d.sync += ref_want.eq((owed != 0) & (idle | (owed > self.postpone_max)))

        # -- init and refresh sequencer ----------------------------------------------------
        init_wait = Signal(range(max(t.init, 1) + 1), init=max(t.init, 1))
        init_wait_done = Signal()
        with m.If(init_wait != 0):
            m.d.sync += init_wait.eq(init_wait - 1)
        m.d.sync += init_wait_done.eq(init_wait == 0)

        seq_timer = Signal(range(max(d_rp, d_rfc, d_mrd) + 1))
        with m.If(seq_timer != 0):
            m.d.sync += seq_timer.eq(seq_timer - 1)
        init_refs = Signal(range(chip.init_refreshes + 1))
        all_pre_ok = pre_ok.all()
        all_mask = (1 << mw) - 1

        with m.FSM(name="seq"):
            with m.State("INIT-WAIT"):
                m.d.comb += dqm.eq(all_mask)
                with m.If(init_wait_done):
                    m.next = "INIT-PRECHARGE"
            with m.State("INIT-PRECHARGE"):
                m.d.comb += [
                    dqm.eq(all_mask),
                    cmd.eq(SDRAMCommand.PRECHARGE),
                    a[10].eq(1),
                    pre_all.eq(1),
                ]
                m.d.sync += seq_timer.eq(d_rp - 1)
                m.next = "INIT-REFRESH"
            with m.State("INIT-REFRESH"):
                m.d.comb += dqm.eq(all_mask)
                with m.If(seq_timer == 0):
                    m.d.comb += cmd.eq(SDRAMCommand.AUTO_REFRESH)
                    m.d.sync += [
                        seq_timer.eq(d_rfc - 1),
                        init_refs.eq(init_refs + 1),
                    ]
                    with m.If(init_refs == chip.init_refreshes - 1):
                        m.next = "INIT-MODE"
            with m.State("INIT-MODE"):
                m.d.comb += dqm.eq(all_mask)
                with m.If(seq_timer == 0):
                    m.d.comb += [
                        cmd.eq(SDRAMCommand.LOAD_MODE),
                        a.eq(self.mode_register),
                        ba.eq(0),
                    ]
                    m.d.sync += seq_timer.eq(d_mrd - 1)
                    m.next = "INIT-MRD"
            with m.State("INIT-MRD"):
                with m.If(seq_timer == 0):
                    m.d.sync += self.init_done.eq(1)
                    m.d.comb += run_next.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += run_next.eq(~ref_want)
                with m.If(ref_want):
                    m.next = "REFRESH-PRECHARGE"
            with m.State("REFRESH-PRECHARGE"):
                # ``run`` is still high in the first cycle here: wait for any
                # command issued then (the timers see it).
                with m.If(all_pre_ok & ~run):
                    m.d.comb += [
                        cmd.eq(SDRAMCommand.PRECHARGE),
                        a[10].eq(1),
                        pre_all.eq(1),
                    ]
                    m.d.sync += seq_timer.eq(d_rp - 1)
                    m.next = "REFRESH"
            with m.State("REFRESH"):
                with m.If(seq_timer == 0):
                    m.d.comb += [
                        cmd.eq(SDRAMCommand.AUTO_REFRESH),
                        ref_issue.eq(1),
                    ]
                    m.d.sync += [
                        seq_timer.eq(d_rfc - 1),
                        self.refreshes.eq(self.refreshes + 1),
                    ]
                    m.next = "REFRESH-WAIT"
            with m.State("REFRESH-WAIT"):
                with m.If(seq_timer == 0):
                    with m.If(owed != 0):
                        m.next = "REFRESH"
                    with m.Else():
                        m.d.comb += run_next.eq(1)
                        m.next = "RUN"
        m.d.sync += run.eq(run_next)

        # -- read data capture and responses -------------------------------------------------
        # A token per column slot (READ, WRITE or err) rides a delay line as
        # long as the read data path, so responses leave in command order.
        # LUT RAM, read asynchronously: a cycle less latency than a buffered FIFO.
        resp_fifo = m.submodules.resp_fifo = SyncFIFO(width=dw + 1, depth=self.resp_depth)
        tok_layout = data.StructLayout({"valid": 1, "err": 1})
        n_tok = CL + RD + 2
        tok = [Signal(tok_layout, name=f"tok{k}") for k in range(n_tok)]
        m.d.sync += [tok[0].valid.eq(pop), tok[0].err.eq(head.err)]
        for k in range(1, n_tok):
            m.d.sync += tok[k].eq(tok[k - 1])
        dq_r = Signal(dw)
        m.d.sync += dq_r.eq(pins.dq_i)
        m.d.comb += [
            resp_fifo.w_en.eq(tok[-1].valid),
            resp_fifo.w_data.eq(Cat(Mux(tok[-1].err, 0, dq_r), tok[-1].err)),
            port.resp.valid.eq(resp_fifo.r_rdy),
            port.resp.payload.rdata.eq(resp_fifo.r_data[:dw]),
            port.resp.payload.err.eq(resp_fifo.r_data[dw]),
            resp_fifo.r_en.eq(port.resp.ready),
        ]
        resp_pop = port.resp.valid & port.resp.ready
        m.d.sync += credits.eq(credits - pop + resp_pop)

        # -- statistics ------------------------------------------------------------------------
        with m.If(pop & ~head.err):
            with m.If(head.opened):
                m.d.sync += self.row_misses.eq(self.row_misses + 1)
            with m.Else():
                m.d.sync += self.row_hits.eq(self.row_hits + 1)
        with m.If(act_now.any()):
            m.d.sync += self.activates.eq(self.activates + 1)

        return m
