"""SDR SDRAM parts: geometry and timings, apart from the controller (as
LiteDRAM keeps ``modules.py``). :class:`SDRAMChip` describes one part in
nanoseconds, :meth:`SDRAMChip.cycles` rounds it to :class:`SDRAMTimings` at a
clock, ``CHIPS`` holds the presets and :func:`worst_case` merges parts that
share a board footprint.
"""

from __future__ import annotations

import dataclasses
import math

from amaranth.utils import exact_log2

from ..checks import check_int, check_num, check_pow2

__all__ = [
    "SDRAMChip", "SDRAMTimings", "IS42S16160", "MT48LC16M16A2", "M12L64322A", "CHIPS",
    "worst_case",
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
