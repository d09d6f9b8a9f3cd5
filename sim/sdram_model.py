"""Pin-level SDR SDRAM model with a JEDEC timing checker, for cocotb.

:class:`SDRAMModel` is plain Python: :meth:`SDRAMModel.edge` takes the pin
values sampled at one rising clock edge and returns what the chip drives on
``dq_i`` for the next edge. Unit tests call it directly (or through
:meth:`SDRAMModel.issue`); :meth:`SDRAMModel.attach` connects it to a cocotb
DUT's ``pins__*`` ports and runs it every cycle.

What is modelled
----------------
* Commands: NOP/DESELECT, ACTIVE, READ, WRITE (with auto precharge via A10),
  PRECHARGE (one bank, or all with A10), AUTO REFRESH, SELF REFRESH,
  LOAD MODE REGISTER, BURST TERMINATE; CKE (an edge whose previous CKE was low
  registers nothing: power down / clock suspend / self refresh).
* Mode register: burst length 1, 2, 4, 8, full page; sequential or
  interleaved; CAS latency 2/3 (checked against the chip and the clock); write
  burst mode (programmed or single location).
* Bursts interrupted by READ/WRITE/BURST TERMINATE/PRECHARGE as the JEDEC SDR
  rules say; concurrent auto precharge.
* DQM: write mask with latency 0, read output enable with latency 2.
* Storage: sparse, ``{(bank, row): {col: word}}``. Never-written words read as
  a fixed junk pattern derived from the address.

What is checked (each violation is recorded as a :class:`Violation`; a
rule can be switched off with ``disable=``)
--------------------------------------------------------------------------------
``tRCD tRP tRAS tRC tRRD tWR tRFC tMRD tXSR``
    minimum delays, compared in nanoseconds (``tMRD`` in clocks, ``tWR`` at
    least ``tWR_ck`` clocks). Auto precharge is checked against ``tRAS`` too.
``tRAS_max``
    a row open longer than ``tRAS_max_ns`` (the chip's ``tRAS_max`` if it has
    one, else 100 us, the figure of the supported datasheets); checked when
    the row is closed and, for rows still open, by :meth:`SDRAMModel.check`.
``init``
    a command before the power-up wait, or ACTIVE/READ/WRITE before the init
    sequence (PRECHARGE ALL, ``chip.init_refreshes`` AUTO REFRESH and a LOAD
    MODE REGISTER) has completed.
``state``
    READ/WRITE to an idle bank, ACTIVE to an active bank, REFRESH or LMR with a
    bank open, a command to a bank whose auto precharge is pending, ...
``mode``
    reserved/unsupported mode register values, a CAS latency the chip does not
    allow at this clock, full-page burst with auto precharge.
``bus``
    write data not driven (``dq_oe`` low on an unmasked write beat); the
    controller driving DQ while the chip drives read data, or in the cycle
    right after (bus turnaround).
``retention``
    a row not refreshed (AUTO REFRESH round robin, ACTIVE or PRECHARGE of the
    row, self refresh) within the retention window; its stored words are
    corrupted (bits flipped) so that a test reading them fails too.
``tREFI``
    controller refresh policy: refreshes distributed at ``chip.tREFI`` on
    average, with at most ``refresh_postpone_max`` postponed (counted from the
    end of the init sequence). SDR datasheets would also allow burst refresh;
    seedchip's controller promises distributed refresh, so the model holds it
    to that.

Retention: AUTO REFRESH number ``k`` refreshes ``rows_per_refresh``
consecutive row addresses (in every bank), round robin. By default the window
is 64 ms and a window takes ``64 ms / tREFI`` refreshes (8192 or 4096). Tests
shrink the window with ``retention_ns`` or ``retention_scale``; the number of
refreshes per window shrinks with it (each refresh then covers more rows), so
a controller that refreshes at ``tREFI`` keeps every row alive in a shrunk
window too. ``refreshes_per_window`` sets that count explicitly (a controller
allowed to postpone refreshes needs a window longer than
``refreshes_per_window`` x ``tREFI``).

Fault injection (tests of the tests): :meth:`SDRAMModel.flip_bit`,
``read_latency_extra`` (read data ``n`` cycles late), ``disable``.
"""

from __future__ import annotations

import collections
import dataclasses
import math

__all__ = [
    "RULES", "COMMANDS", "Violation", "SDRAMViolationError", "Pins", "SDRAMModel",
    "RETENTION_NS", "mode_word",
]

RETENTION_NS = 64e6

RULES = ("tRCD", "tRP", "tRAS", "tRAS_max", "tRC", "tRRD", "tWR", "tRFC", "tMRD", "tXSR",
         "init", "state", "mode", "bus", "retention", "tREFI")

#: ``(ras_n, cas_n, we_n)`` with ``cs_n`` low -> command name.
COMMANDS = {
    (1, 1, 1): "NOP",
    (0, 1, 1): "ACTIVE",
    (1, 0, 1): "READ",
    (1, 0, 0): "WRITE",
    (1, 1, 0): "BURST_TERMINATE",
    (0, 1, 0): "PRECHARGE",
    (0, 0, 1): "REFRESH",
    (0, 0, 0): "LOAD_MODE",
}
_ENCODE = {name: bits for bits, name in COMMANDS.items()}
_ENCODE["DESELECT"] = None

_BL_CODES = {0: 1, 1: 2, 2: 4, 3: 8}
_FULL_PAGE = 7
_INF = float("inf")
_EPS = 1e-6


def mode_word(*, cas_latency: int, burst_length: int | str = 1, interleaved: bool = False,
              single_write: bool = False) -> int:
    """Mode register value (A pins of LOAD MODE REGISTER); ``burst_length`` is
    1, 2, 4, 8 or ``"page"``."""
    if burst_length == "page":
        bl = _FULL_PAGE
    else:
        codes = {v: k for k, v in _BL_CODES.items()}
        if burst_length not in codes:
            raise ValueError(f"burst_length must be 1, 2, 4, 8 or 'page', not {burst_length!r}")
        bl = codes[burst_length]
    return bl | (int(interleaved) << 3) | (cas_latency << 4) | (int(single_write) << 9)


@dataclasses.dataclass(frozen=True)
class Violation:
    edge: int           # index of the rising edge (0 = first edge the model saw)
    time_ns: float
    rule: str
    details: str

    def __str__(self):
        return f"{self.time_ns:12.1f} ns (edge {self.edge}): {self.rule}: {self.details}"


class SDRAMViolationError(AssertionError):
    """Raised by :meth:`SDRAMModel.check`; the message is the report."""


@dataclasses.dataclass
class Pins:
    """Pin values sampled at one rising edge (controller -> chip)."""
    cke: int = 1
    cs_n: int = 1
    ras_n: int = 1
    cas_n: int = 1
    we_n: int = 1
    ba: int = 0
    a: int = 0
    dqm: int = 0
    dq_o: int = 0
    dq_oe: int = 0

    @property
    def command(self) -> str:
        if self.cs_n:
            return "DESELECT"
        return COMMANDS[(self.ras_n, self.cas_n, self.we_n)]


class _Bank:
    __slots__ = ("row", "t_act", "t_pre", "ap", "last_wdata")

    def __init__(self):
        self.row = None          # open row, None when idle
        self.t_act = None        # edge of the last ACTIVE
        self.t_pre = None        # edge at which the last precharge began
        self.ap = None           # edge at which a pending auto precharge begins
        self.last_wdata = None   # edge of the last (unmasked) write data beat


class _Burst:
    __slots__ = ("bank", "row", "col", "start", "end", "ap", "cmd_edge")

    def __init__(self, bank, row, col, start, end, ap, cmd_edge):
        self.bank, self.row, self.col = bank, row, col
        self.start, self.end = start, end    # data edges [start, end)
        self.ap = ap
        self.cmd_edge = cmd_edge


class SDRAMModel:
    """One SDR SDRAM chip (or chips in parallel) as described by an
    :class:`~seedchip.rtl.sdram.SDRAMChip`, clocked at ``clk_period_ns``.

    Keyword arguments:

    ``retention_ns`` / ``retention_scale`` / ``refreshes_per_window``
        the retention model (see the module docstring).
    ``read_latency_extra``
        fault injection: read data comes this many cycles late.
    ``disable``
        rule names (see :data:`RULES`) not to check.
    ``refresh_postpone_max``
        refreshes the controller may postpone before ``tREFI`` is flagged.
    ``seed``
        for the junk of unwritten words and the retention bit flips.
    ``tRAS_max_ns``
        longest a row may stay open (default: ``chip.tRAS_max`` or 100 us).
    """

    def __init__(self, *, chip, clk_period_ns: float, retention_ns: float | None = None,
                 retention_scale: float = 1.0, refreshes_per_window: int | None = None,
                 read_latency_extra: int = 0, disable=(), refresh_postpone_max: int = 8,
                 seed: int = 0, max_violations: int = 1000, trace_len: int = 32,
                 tRAS_max_ns: float | None = None):
        if not isinstance(clk_period_ns, (int, float)) or clk_period_ns <= 0:
            raise ValueError(f"clk_period_ns must be a positive number, not {clk_period_ns!r}")
        if not isinstance(read_latency_extra, int) or read_latency_extra < 0:
            raise ValueError(f"read_latency_extra must be a non-negative integer, "
                             f"not {read_latency_extra!r}")
        unknown = set(disable) - set(RULES)
        if unknown:
            raise ValueError(f"unknown rule(s) {sorted(unknown)}; known: {', '.join(RULES)}")
        if retention_scale <= 0:
            raise ValueError(f"retention_scale must be positive, not {retention_scale!r}")
        self.chip = chip
        self.tck = float(clk_period_ns)
        self.clk_freq = 1e9 / self.tck
        self.width = chip.data_width
        self.nbytes = chip.data_width // 8
        self.word_mask = (1 << self.width) - 1
        self.read_latency_extra = read_latency_extra
        self.disabled = set(disable)
        self.refresh_postpone_max = refresh_postpone_max
        self.seed = seed & 0xFFFF_FFFF
        self.max_violations = max_violations

        # retention
        self.retention_ns = (RETENTION_NS * retention_scale if retention_ns is None
                             else float(retention_ns))
        if refreshes_per_window is None:
            refreshes_per_window = max(1, math.floor(self.retention_ns / chip.tREFI + _EPS))
        self.refreshes_per_window = refreshes_per_window
        self.rows_per_refresh = max(1, -(-chip.rows // refreshes_per_window))
        self._retention_edges = self.retention_ns / self.tck
        # edge of the last refresh/restore of each row, per bank (power-up = edge 0)
        self._row_refreshed = [[0] * chip.rows for _ in range(chip.banks)]
        self._refresh_ptr = 0

        # timings (ns) and clocks
        self.tWR_ns = max(chip.tWR, chip.tWR_ck * self.tck)
        self.tWR_cycles = max(chip.tWR_ck, math.ceil(chip.tWR / self.tck - _EPS))
        self.tXSR_ns = max(chip.tRFC, chip.tRC)
        self.tRAS_max_ns = float(tRAS_max_ns if tRAS_max_ns is not None
                                 else getattr(chip, "tRAS_max", 100_000.0))
        # byte mask (1 = byte masked) -> bit mask
        self._dqm_to_bits = [sum(0xFF << (8 * i) for i in range(self.nbytes) if (m >> i) & 1)
                             for m in range(1 << self.nbytes)]

        self.reset_state()
        self.violations: list[Violation] = []
        self.violation_counts = collections.Counter()
        self.command_counts = collections.Counter()
        #: rule -> smallest margin (ns) seen between a command and its limit:
        #: how hard the traffic pushed each timing (coverage, not a check)
        self.min_slack: dict[str, float] = {}
        self.trace = collections.deque(maxlen=trace_len)
        self.t0_ns = 0.0

    # -- state -------------------------------------------------------------------
    def reset_state(self):
        """Power-up state (storage and violation records are kept)."""
        chip = self.chip
        self.k = -1                          # index of the current edge
        self.banks = [_Bank() for _ in range(chip.banks)]
        self._rows: dict = getattr(self, "_rows", {})
        self.cke_prev = 1
        self.self_refresh = False
        self.t_sr_exit = None
        self.t_last_act = None               # (edge, bank) of the last ACTIVE
        self.t_ref = None
        self.t_lmr = None
        self.mode = None                     # dict after LOAD MODE REGISTER
        self.init_prea = False
        self.init_refs = 0
        self.initialized = False
        self.t_init_done = None
        self.refreshes_done = 0              # since init done, for tREFI
        self._trefi_flagged = -1
        self.wburst: _Burst | None = None
        self.rbursts: list[_Burst] = []
        self._dqm_hist = collections.deque([0, 0], maxlen=2)   # dqm at edges k-1, k
        self._drove = collections.deque([False, False], maxlen=2)

    # -- reporting ---------------------------------------------------------------
    def now_ns(self, edge=None) -> float:
        return self.t0_ns + (self.k if edge is None else edge) * self.tck

    def _violate(self, rule, details):
        if rule in self.disabled:
            return
        self.violation_counts[rule] += 1
        if len(self.violations) < self.max_violations:
            self.violations.append(Violation(self.k, self.now_ns(), rule, details))

    def violations_of(self, rule) -> list[Violation]:
        return [v for v in self.violations if v.rule == rule]

    def clear_violations(self):
        self.violations.clear()
        self.violation_counts.clear()

    def report(self, limit: int = 20) -> str:
        if not self.violation_counts:
            return f"{self.chip.name}: no SDRAM protocol violations"
        total = sum(self.violation_counts.values())
        counts = ", ".join(f"{r} x{n}" for r, n in sorted(self.violation_counts.items()))
        lines = [f"{self.chip.name}: {total} SDRAM protocol violation(s): {counts}"]
        lines += [f"  {v}" for v in self.violations[:limit]]
        if total > limit:
            lines.append(f"  ... {total - min(limit, len(self.violations))} more")
        return "\n".join(lines)

    def check(self, *, end_of_test: bool = True):
        """Raise :class:`SDRAMViolationError` with the report if anything was
        flagged. With ``end_of_test``, rows holding data that are past the
        retention window now count too."""
        if end_of_test:
            self._scan_retention()
            for b in range(self.chip.banks):
                self._check_tras_max(b, max(self.k, 0))
        if self.violation_counts:
            raise SDRAMViolationError(self.report())

    # -- storage -----------------------------------------------------------------
    def split(self, addr) -> tuple[int, int, int]:
        """Chip address (``(bank * rows + row) * columns + col``) or a
        ``(bank, row, col)`` tuple -> ``(bank, row, col)``."""
        if isinstance(addr, tuple):
            bank, row, col = addr
        else:
            col = addr % self.chip.columns
            row = (addr // self.chip.columns) % self.chip.rows
            bank = addr // (self.chip.columns * self.chip.rows)
        if not (0 <= bank < self.chip.banks and 0 <= row < self.chip.rows
                and 0 <= col < self.chip.columns):
            raise ValueError(f"address {addr!r} is outside the chip")
        return bank, row, col

    def _junk(self, bank, row, col) -> int:
        x = (((bank * self.chip.rows + row) * self.chip.columns + col) * 0x9E3779B1
             ^ self.seed * 0x85EBCA77) & 0xFFFF_FFFF_FFFF_FFFF
        x ^= x >> 29
        x = (x * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
        x ^= x >> 32
        return x & self.word_mask

    def _read(self, bank, row, col) -> int:
        r = self._rows.get((bank, row))
        if r is not None and col in r:
            return r[col]
        return self._junk(bank, row, col)

    def peek(self, addr) -> int | None:
        """The stored word, or None if never written."""
        bank, row, col = self.split(addr)
        return self._rows.get((bank, row), {}).get(col)

    def word(self, addr) -> int:
        """The word a READ of ``addr`` returns: the stored one, or the junk of
        a never-written word."""
        return self._read(*self.split(addr))

    def poke(self, addr, value: int):
        bank, row, col = self.split(addr)
        self._rows.setdefault((bank, row), {})[col] = value & self.word_mask

    def contents(self) -> dict:
        """Snapshot ``{(bank, row, col): word}`` of every written word."""
        return {(b, r, c): v for (b, r), cols in self._rows.items() for c, v in cols.items()}

    def flip_bit(self, addr, bit: int):
        """Fault injection: flip one stored bit (an unwritten word becomes written)."""
        if not 0 <= bit < self.width:
            raise ValueError(f"bit must be in range 0..{self.width - 1}, not {bit!r}")
        bank, row, col = self.split(addr)
        self.poke((bank, row, col), self._read(bank, row, col) ^ (1 << bit))

    # -- retention -------------------------------------------------------------------
    def _restore_row(self, bank, row, edge):
        last = self._row_refreshed[bank][row]
        if (edge - last) > self._retention_edges + _EPS:
            self._decay(bank, row, last, edge)
        self._row_refreshed[bank][row] = edge

    def _decay(self, bank, row, last, edge):
        stored = self._rows.get((bank, row))
        self._violate("retention",
                      f"bank {bank} row {row:#x} not refreshed for "
                      f"{(edge - last) * self.tck / 1e3:.1f} us (window "
                      f"{self.retention_ns / 1e3:.1f} us)"
                      + (f"; {len(stored)} stored word(s) corrupted" if stored else ""))
        if stored:
            for col in stored:
                h = self._junk(bank, row, col) ^ 0x5A5A_5A5A_5A5A_5A5A
                stored[col] ^= (h & self.word_mask) | 1

    def _scan_retention(self):
        edge = max(self.k, 0)
        if self.self_refresh:
            return
        for (bank, row) in list(self._rows):
            last = self._row_refreshed[bank][row]
            if (edge - last) > self._retention_edges + _EPS:
                if self.banks[bank].row == row:
                    continue    # open: being held by the sense amplifiers
                self._restore_row(bank, row, edge)

    def _refresh_rows(self):
        n = self.rows_per_refresh
        for i in range(n):
            row = (self._refresh_ptr + i) % self.chip.rows
            for b in range(self.chip.banks):
                self._restore_row(b, row, self.k)
        self._refresh_ptr = (self._refresh_ptr + n) % self.chip.rows

    # -- timing helpers -------------------------------------------------------------
    def _need(self, rule, since, ns, what):
        if since is None:
            return
        elapsed = (self.k - since) * self.tck
        slack = elapsed - ns
        if slack < self.min_slack.get(rule, _INF):
            self.min_slack[rule] = slack
        if elapsed < ns - _EPS:
            self._violate(rule, f"{what}: {elapsed:.1f} ns after, {rule} is {ns:.1f} ns")

    def _need_cycles(self, rule, since, cycles, what):
        if since is None:
            return
        slack = (self.k - since - cycles) * self.tck
        if slack < self.min_slack.get(rule, _INF):
            self.min_slack[rule] = slack
        if self.k - since < cycles:
            self._violate(rule, f"{what}: {self.k - since} clock(s) after, {rule} is "
                                f"{cycles} clock(s)")

    def _update_banks(self):
        """Start pending auto precharges whose time has come."""
        for b, bank in enumerate(self.banks):
            if bank.ap is not None and bank.ap <= self.k:
                self._precharge_bank(b, bank.ap)
                bank.ap = None

    def _precharge_bank(self, b, edge):
        bank = self.banks[b]
        if bank.row is not None:
            self._check_tras_max(b, edge)
            self._restore_row(b, bank.row, edge)
        bank.row = None
        bank.t_pre = edge

    def _check_tras_max(self, b, edge):
        bank = self.banks[b]
        if bank.row is None or bank.t_act is None:
            return
        open_ns = (edge - bank.t_act) * self.tck
        if open_ns > self.tRAS_max_ns + _EPS:
            self._violate("tRAS_max", f"bank {b} row {bank.row:#x} open for "
                                      f"{open_ns / 1e3:.1f} us, tRAS(max) is "
                                      f"{self.tRAS_max_ns / 1e3:.1f} us")

    def _check_idle_all(self, what):
        """All banks idle and precharged (REFRESH, LMR)."""
        for b, bank in enumerate(self.banks):
            if bank.row is not None:
                self._violate("state", f"{what} with bank {b} open (row {bank.row:#x})")
            elif bank.ap is not None:
                self._violate("state", f"{what} while bank {b} has an auto precharge pending")
            else:
                self._need("tRP", bank.t_pre, self.chip.tRP, f"{what} after precharge of bank {b}")

    def _check_common(self, what):
        """Delays after REFRESH, LMR and self-refresh exit that apply to every command."""
        self._need("tRFC", self.t_ref, self.chip.tRFC, f"{what} after AUTO REFRESH")
        self._need_cycles("tMRD", self.t_lmr, self.chip.tMRD, f"{what} after LOAD MODE")
        self._need("tXSR", self.t_sr_exit, self.tXSR_ns, f"{what} after self refresh exit")

    # -- bursts ----------------------------------------------------------------------
    def _col_seq(self, burst, i):
        """Column of beat ``i`` of ``burst`` (sequential/interleaved wrap)."""
        bl = self.mode["bl"]
        if bl is None:
            return (burst.col + i) % self.chip.columns
        if bl == 1:
            return burst.col
        base = burst.col & ~(bl - 1)
        off = burst.col & (bl - 1)
        if self.mode["interleaved"]:
            return base | (off ^ i)
        return base | ((off + i) & (bl - 1))

    def _cut_reads(self, at, bank=None, interrupt=False):
        """Read data for edges >= ``at`` is not driven (bursts of ``bank`` only,
        or all). ``interrupt``: a READ/WRITE cut it (concurrent auto precharge
        begins now)."""
        for rb in self.rbursts:
            if bank is not None and rb.bank != bank:
                continue
            if rb.end > at:
                rb.end = max(rb.start, at)
                if rb.ap and interrupt:
                    bk = self.banks[rb.bank]
                    if bk.ap is not None and bk.ap > self.k:
                        bk.ap = self.k
                        self._need("tRAS", bk.t_act, self.chip.tRAS,
                                   f"auto precharge of bank {rb.bank} (READ interrupted)")

    def _cut_write(self, interrupt=False):
        wb = self.wburst
        if wb is None:
            return
        if wb.end > self.k:
            wb.end = self.k
            if wb.ap and interrupt:
                bk = self.banks[wb.bank]
                if bk.ap is not None and bk.ap > self.k:
                    bk.ap = self.k - 1 + self.tWR_cycles
                    self._check_ap_tras(wb.bank, bk.ap, "WRITE interrupted")
        self.wburst = None

    def _check_ap_tras(self, b, ap_edge, what):
        bank = self.banks[b]
        if bank.t_act is not None and (ap_edge - bank.t_act) * self.tck < self.chip.tRAS - _EPS:
            self._violate("tRAS", f"auto precharge of bank {b} ({what}) would begin "
                                  f"{(ap_edge - bank.t_act) * self.tck:.1f} ns after ACTIVE, "
                                  f"tRAS is {self.chip.tRAS:.1f} ns")

    # -- the clock edge ------------------------------------------------------------------
    def edge(self, pins: Pins):
        """Process one rising edge with the sampled ``pins``.

        Returns ``(value, driven)``: the word the chip drives on DQ for the
        *next* edge and a bit mask of the bytes it drives (0 = high impedance).
        """
        self.k += 1
        k = self.k
        cke_prev, self.cke_prev = self.cke_prev, pins.cke
        if not cke_prev:
            # Internal clock stopped: nothing is registered, bursts freeze.
            if self.self_refresh and pins.cke:
                self.self_refresh = False
                self.t_sr_exit = k
                for rows in self._row_refreshed:
                    for r in range(len(rows)):
                        rows[r] = k
            self._shift_frozen()
            return self._output()

        self._update_banks()
        cmd = pins.command
        self._dqm_hist.append(pins.dqm)
        if self._drove[1] or self._drove[0]:
            if pins.dq_oe:
                which = "while the chip drives read data" if self._drove[1] else \
                    "in the cycle after the chip drove read data (no bus turnaround)"
                self._violate("bus", f"controller drives DQ {which}")

        if cmd not in ("NOP", "DESELECT"):
            self.command_counts[cmd] += 1
            self.trace.append((k, cmd, pins.ba, pins.a))
            if not self.initialized and k * self.tck < self.chip.init_delay - _EPS:
                self._violate("init", f"{cmd} {k * self.tck / 1e3:.1f} us after power-up, "
                                      f"before the {self.chip.init_delay / 1e3:.1f} us wait")
            getattr(self, "_cmd_" + cmd)(pins)

        self._write_beat(pins)
        self._check_trefi()
        return self._output()

    def _shift_frozen(self):
        # A suspended clock delays every in-flight burst by one edge.
        for rb in self.rbursts:
            rb.start += 1
            rb.end += 1
        if self.wburst is not None:
            self.wburst.start += 1
            self.wburst.end += 1
        for bank in self.banks:
            if bank.ap is not None:
                bank.ap += 1

    def _output(self):
        nxt = self.k + 1
        self.rbursts = [rb for rb in self.rbursts if rb.end > nxt]
        for rb in self.rbursts:
            if rb.start <= nxt < rb.end:
                col = self._col_seq(rb, nxt - rb.start)
                value = self._read(rb.bank, rb.row, col)
                # DQM registered at edge k-1 gates the output for edge k+1.
                driven = self._dqm_to_bits[self._dqm_hist[0]] ^ self.word_mask
                self._drove.append(bool(driven))
                return value & driven, driven
        self._drove.append(False)
        return 0, 0

    def _write_beat(self, pins):
        wb = self.wburst
        if wb is None or not (wb.start <= self.k < wb.end):
            return
        col = self._col_seq(wb, self.k - wb.start)
        keep = self._dqm_to_bits[pins.dqm]
        if keep != self.word_mask:
            if not pins.dq_oe:
                self._violate("bus", f"write data for bank {wb.bank} row {wb.row:#x} col "
                                     f"{col:#x} not driven (dq_oe low)")
            old = self._read(wb.bank, wb.row, col)
            new = (old & keep) | (pins.dq_o & ~keep & self.word_mask)
            self._rows.setdefault((wb.bank, wb.row), {})[col] = new
            self.banks[wb.bank].last_wdata = self.k
        if self.k + 1 >= wb.end:
            self.wburst = None

    # -- commands ------------------------------------------------------------------------
    def _bank_row(self, pins):
        return pins.ba % self.chip.banks, pins.a % self.chip.rows

    def _check_ready(self, cmd):
        if not self.initialized:
            self._violate("init", f"{cmd} before the init sequence completed "
                                  f"(PRECHARGE ALL {'done' if self.init_prea else 'missing'}, "
                                  f"{self.init_refs}/{self.chip.init_refreshes} AUTO REFRESH, "
                                  f"mode register {'set' if self.mode else 'not set'})")

    def _cmd_ACTIVE(self, pins):
        b, row = self._bank_row(pins)
        bank = self.banks[b]
        what = f"ACTIVE bank {b} row {row:#x}"
        self._check_ready("ACTIVE")
        if bank.row is not None:
            self._violate("state", f"{what}: bank already open (row {bank.row:#x})")
        elif bank.ap is not None:
            self._violate("state", f"{what}: auto precharge of the bank still pending")
        self._need("tRP", bank.t_pre, self.chip.tRP, f"{what} after precharge")
        self._need("tRC", bank.t_act, self.chip.tRC, f"{what} after ACTIVE of the same bank")
        if self.t_last_act is not None and self.t_last_act[1] != b:
            self._need("tRRD", self.t_last_act[0], self.chip.tRRD,
                       f"{what} after ACTIVE of bank {self.t_last_act[1]}")
        self._check_common(what)
        self._restore_row(b, row, self.k)
        bank.row = row
        bank.ap = None
        bank.t_act = self.k
        bank.last_wdata = None
        self.t_last_act = (self.k, b)

    def _rw_common(self, pins, cmd):
        b = pins.ba % self.chip.banks
        col = pins.a & (self.chip.columns - 1)
        ap = bool((pins.a >> 10) & 1)
        bank = self.banks[b]
        what = f"{cmd} bank {b} col {col:#x}"
        self._check_ready(cmd)
        ok = True
        if bank.ap is not None:
            self._violate("state", f"{what}: auto precharge of the bank pending")
            ok = False
        elif bank.row is None:
            self._violate("state", f"{what}: bank is idle (no ACTIVE)")
            ok = False
        else:
            self._need("tRCD", bank.t_act, self.chip.tRCD, f"{what} after ACTIVE")
        self._check_common(what)
        if self.mode is None:
            ok = False
        elif ap and self.mode["bl"] is None:
            self._violate("mode", f"{what} with auto precharge in full-page burst mode")
            ap = False
        return b, col, ap, ok

    def _cmd_READ(self, pins):
        b, col, ap, ok = self._rw_common(pins, "READ")
        lat = (self.mode["cl"] if self.mode else 2) + self.read_latency_extra
        self._cut_write(interrupt=True)
        self._cut_reads(self.k + lat, interrupt=True)
        if not ok:
            return
        bl = self.mode["bl"]
        start = self.k + lat
        rb = _Burst(b, self.banks[b].row, col, start, _INF if bl is None else start + bl,
                    ap, self.k)
        self.rbursts.append(rb)
        if ap:
            bank = self.banks[b]
            bank.ap = self.k + bl
            self._check_ap_tras(b, bank.ap, "READ")

    def _cmd_WRITE(self, pins):
        b, col, ap, ok = self._rw_common(pins, "WRITE")
        self._cut_write(interrupt=True)
        # The WRITE ends read output from its own edge on (DQM must have
        # masked what came before).
        self._cut_reads(self.k, interrupt=True)
        if not ok:
            return
        bl = 1 if self.mode["single_write"] else self.mode["bl"]
        end = _INF if bl is None else self.k + bl
        self.wburst = _Burst(b, self.banks[b].row, col, self.k, end, ap, self.k)
        if ap:
            bank = self.banks[b]
            bank.ap = self.k + bl - 1 + self.tWR_cycles
            self._check_ap_tras(b, bank.ap, "WRITE")

    def _cmd_BURST_TERMINATE(self, pins):
        lat = (self.mode["cl"] if self.mode else 2) + self.read_latency_extra
        for rb in self.rbursts:
            if rb.ap and rb.end > self.k + lat:
                self._violate("state", f"BURST TERMINATE of a READ with auto precharge "
                                       f"(bank {rb.bank})")
        if self.wburst is not None and self.wburst.ap:
            self._violate("state", f"BURST TERMINATE of a WRITE with auto precharge "
                                   f"(bank {self.wburst.bank})")
        self._cut_reads(self.k + lat)
        self._cut_write()

    def _cmd_PRECHARGE(self, pins):
        every = bool((pins.a >> 10) & 1)
        targets = range(self.chip.banks) if every else [pins.ba % self.chip.banks]
        name = "PRECHARGE ALL" if every else f"PRECHARGE bank {pins.ba % self.chip.banks}"
        self._check_common(name)
        lat = (self.mode["cl"] if self.mode else 2) + self.read_latency_extra
        for b in targets:
            bank = self.banks[b]
            if bank.ap is not None:
                self._violate("state", f"{name}: auto precharge of bank {b} pending")
                continue
            if bank.row is None:
                continue
            self._need("tRAS", bank.t_act, self.chip.tRAS, f"{name} after ACTIVE of bank {b}")
            self._need("tWR", bank.last_wdata, self.tWR_ns,
                       f"{name} after the last write data to bank {b}")
            self._cut_reads(self.k + lat, bank=b)
            if self.wburst is not None and self.wburst.bank == b:
                self._cut_write()
            self._precharge_bank(b, self.k)
        if every and not self.initialized:
            self.init_prea = True
            self.init_refs = 0

    def _cmd_REFRESH(self, pins):
        what = "SELF REFRESH" if not pins.cke else "AUTO REFRESH"
        self._check_idle_all(what)
        self._check_common(what)
        if not self.initialized and not self.init_prea:
            self._violate("init", f"{what} before the init sequence's PRECHARGE ALL")
        self._refresh_rows()
        self.t_ref = self.k
        if not pins.cke:
            self.self_refresh = True
        if not self.initialized:
            self.init_refs += 1
            self._maybe_initialized()
        else:
            self.refreshes_done += 1

    def _cmd_LOAD_MODE(self, pins):
        self._check_idle_all("LOAD MODE")
        self._check_common("LOAD MODE")
        a = pins.a
        bl_code = a & 7
        interleaved = bool((a >> 3) & 1)
        cl = (a >> 4) & 7
        op = (a >> 7) & 3
        single = bool((a >> 9) & 1)
        bad = []
        if bl_code in _BL_CODES:
            bl = _BL_CODES[bl_code]
        elif bl_code == _FULL_PAGE and not interleaved:
            bl = None
        else:
            bad.append(f"burst length code {bl_code}{' (interleaved)' if interleaved else ''}")
            bl = 1
        fmax = self.chip.max_freq(cl)
        if fmax is None:
            bad.append(f"CAS latency {cl} not supported by {self.chip.name}")
        elif self.clk_freq > fmax * (1 + 1e-9):
            bad.append(f"CAS latency {cl} allowed up to {fmax / 1e6:.0f} MHz, clock is "
                       f"{self.clk_freq / 1e6:.1f} MHz")
        if op:
            bad.append(f"operating mode {op} (reserved)")
        if a >> 10:
            bad.append(f"reserved bits A10+ = {a >> 10:#x}")
        if not self.initialized and not self.init_prea:
            self._violate("init", "LOAD MODE before the init sequence's PRECHARGE ALL")
        if bad:
            self._violate("mode", f"LOAD MODE {a:#x}: " + "; ".join(bad))
        self.mode = {"bl": bl, "interleaved": interleaved, "cl": cl if cl in (1, 2, 3) else 2,
                     "single_write": single, "word": a}
        self.t_lmr = self.k
        if not self.initialized:
            self._maybe_initialized()
        elif self.t_init_done is None:
            self.t_init_done = self.k       # re-init after controller_reset()
            self.refreshes_done = 0

    def controller_reset(self):
        """The controller (not the chip) was reset: its refresh schedule
        restarts, so the ``tREFI`` accounting restarts at its next LOAD MODE
        REGISTER (its init sequence). Retention is physical and unaffected."""
        self.t_init_done = None
        self.refreshes_done = 0
        self._trefi_flagged = -1

    def _maybe_initialized(self):
        if self.init_prea and self.init_refs >= self.chip.init_refreshes and self.mode:
            self.initialized = True
            self.t_init_done = self.k
            self.refreshes_done = 0

    # -- refresh policy (tREFI) -------------------------------------------------------------
    def _check_trefi(self):
        if self.t_init_done is None or "tREFI" in self.disabled:
            return
        due = int((self.k - self.t_init_done) * self.tck / self.chip.tREFI + _EPS)
        # Refreshes pulled in ahead of time count for at most postpone_max.
        if self.refreshes_done > due + self.refresh_postpone_max:
            self.refreshes_done = due + self.refresh_postpone_max
        behind = due - self.refreshes_done
        if behind > self.refresh_postpone_max + 1 and due != self._trefi_flagged:
            if self._trefi_flagged < 0 or due > self._trefi_flagged:
                self._violate("tREFI", f"{behind} refreshes behind after "
                                       f"{(self.k - self.t_init_done) * self.tck / 1e3:.1f} us "
                                       f"(at most {self.refresh_postpone_max} may be postponed)")
            self._trefi_flagged = due

    # -- convenience for pure-Python tests --------------------------------------------------
    def issue(self, cmd: str = "NOP", *, ba: int = 0, a: int = 0, dqm: int = 0,
              dq=None, cke: int = 1):
        """One edge carrying ``cmd``; ``dq`` (an int) drives write data.
        Returns :meth:`edge`'s result."""
        if cmd == "DESELECT":
            pins = Pins(cke=cke, cs_n=1, ba=ba, a=a, dqm=dqm)
        else:
            ras_n, cas_n, we_n = _ENCODE[cmd]
            pins = Pins(cke=cke, cs_n=0, ras_n=ras_n, cas_n=cas_n, we_n=we_n, ba=ba, a=a,
                        dqm=dqm)
        if dq is not None:
            pins.dq_o, pins.dq_oe = dq, 1
        return self.edge(pins)

    def idle(self, n: int = 1, **kw):
        """``n`` NOP edges; returns the list of :meth:`edge` results."""
        return [self.issue("NOP", **kw) for _ in range(n)]

    # -- cocotb -------------------------------------------------------------------------------
    def attach(self, dut, *, clk=None, prefix: str = "pins__", idle: str = "x",
               input_delay: int = 0):
        """Run the model on ``dut``'s SDRAM pins (``<prefix>cke`` ...,
        ``<prefix>dq_i``) every rising edge of ``clk`` (default ``dut.clk``).

        ``input_delay`` puts that many registers between the chip's DQ and
        ``dq_i``, as a board's input registers do (the controller's
        ``read_delay``); the bus checks still see the chip's own timing.

        ``idle`` is what the chip drives on undriven DQ bytes: ``"x"`` (0 on a
        two-state simulator such as Verilator) or ``"junk"`` (a pseudo-random
        pattern, so that a controller sampling at the wrong edge reads garbage
        even on a two-state simulator). Returns the cocotb task.
        """
        import cocotb  # noqa: PLC0415
        from cocotb.triggers import ReadOnly, RisingEdge  # noqa: PLC0415
        from cocotb.types import LogicArray  # noqa: PLC0415
        from cocotb.simtime import get_sim_time  # noqa: PLC0415

        if idle not in ("x", "junk"):
            raise ValueError(f"idle must be 'x' or 'junk', not {idle!r}")
        clk = dut.clk if clk is None else clk
        h = {n: getattr(dut, prefix + n) for n in
             ("cke", "cs_n", "ras_n", "cas_n", "we_n", "ba", "a", "dqm", "dq_o", "dq_oe")}
        dq_i = getattr(dut, prefix + "dq_i")
        width, nbytes = self.width, self.nbytes
        full = self.word_mask

        def val(handle, default=0):
            v = handle.value      # Logic for 1-bit ports, LogicArray otherwise
            return int(v) if v.is_resolvable else default

        def drive(value, driven, k):
            if driven == full:
                dq_i.value = value
                return
            if idle == "junk":
                j = self._junk(k & 3, k % self.chip.rows, 0) ^ (k * 0x2545F491)
                dq_i.value = (value & driven) | (j & ~driven & full)
                return
            if driven == 0:
                dq_i.value = LogicArray("X" * width)
                return
            bits = "".join(
                format((value >> (8 * i)) & 0xFF, "08b") if (driven >> (8 * i)) & 0xFF
                else "XXXXXXXX" for i in reversed(range(nbytes)))
            dq_i.value = LogicArray(bits)

        delay_line = collections.deque([(0, 0, 0)] * input_delay)

        async def run():
            edge = RisingEdge(clk)
            first = True
            last_driven = None
            while True:
                await ReadOnly()
                p = Pins(cke=val(h["cke"]), cs_n=val(h["cs_n"], 1), ras_n=val(h["ras_n"], 1),
                         cas_n=val(h["cas_n"], 1), we_n=val(h["we_n"], 1))
                if not p.cs_n:
                    p.ba = val(h["ba"])
                    p.a = val(h["a"])
                if (self.wburst is not None or self.rbursts or self._drove[0] or self._drove[1]
                        or (not p.cs_n and p.ras_n and not p.cas_n)):
                    p.dqm = val(h["dqm"])
                    p.dq_oe = val(h["dq_oe"])
                    p.dq_o = val(h["dq_o"])
                await edge
                if first:
                    self.t0_ns = get_sim_time("ns")
                    first = False
                value, driven = self.edge(p)
                k = self.k
                if input_delay:
                    delay_line.append((value, driven, k))
                    value, driven, k = delay_line.popleft()
                if driven or last_driven or idle == "junk":
                    drive(value, driven, k)
                last_driven = driven

        dq_i.value = LogicArray("X" * width) if idle == "x" else 0
        return cocotb.start_soon(run())
