"""cocotb tests of the board's SDRAM self test
(:class:`seedchip.boards.sdram_bist.SDRAMSelfTest`: the controller with the
BIST on its port) against the pin-level SDRAM model.

Run through :mod:`seedchip.sim.runner` (``tests/test_sdram_bist.py`` does),
which passes a :class:`BistSimConfig` in ``SEEDCHIP_CONFIG``. The chip is the
board's, shrunk (fewer rows and columns, same banks and timings) so that the
BIST's whole-memory passes take a few hundred thousand cycles; the model's
timing checker and refresh/retention checks run throughout, and the model
sits behind ``read_delay`` input registers like the board's I/O cells.
"""

from __future__ import annotations

import dataclasses
import json
import os

import cocotb
from amaranth.hdl import Fragment

from seedchip.boards import sdram_bist
from seedchip.boards.sdram_bist import SDRAMSelfTest, bist_words
from seedchip.rtl.sdram import CHIPS
from seedchip.sim.sdram_model import SDRAMModel
from seedchip.sim.tb import TB

__all__ = ["BistSimConfig", "make_selftest", "TOPLEVEL"]

TOPLEVEL = "seedchip_sdram_selftest"


@dataclasses.dataclass(frozen=True)
class BistSimConfig:
    """One simulation build of :class:`SDRAMSelfTest`.

    ``rows``/``columns`` shrink the chip (its timings stay); ``words`` limits
    the BIST to the first addresses (None: the whole shrunk chip).
    """

    chip: str = "IS42S16160"
    rows: int = 256
    columns: int = 64
    period_ns: int = 10
    cas_latency: int = 3
    read_delay: int = 2
    init_delay_ns: float = 2_000.0
    words: int | None = None
    seed: int = 1

    def __post_init__(self):
        if self.chip not in CHIPS:
            raise ValueError(f"chip must be one of {', '.join(CHIPS)}, not {self.chip!r}")

    @property
    def clk_freq(self) -> float:
        return 1e9 / self.period_ns

    def sdram_chip(self):
        return dataclasses.replace(CHIPS[self.chip], rows=self.rows, columns=self.columns,
                                   init_delay=float(self.init_delay_ns))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BistSimConfig":
        return cls(**json.loads(text))


def make_selftest(*, config: BistSimConfig) -> SDRAMSelfTest:
    """Component factory for :mod:`seedchip.sim.runner`."""
    return SDRAMSelfTest(chip=config.sdram_chip(), clk_freq=config.clk_freq,
                         cas_latency=config.cas_latency, read_delay=config.read_delay,
                         words=config.words, seed=config.seed)


# The BIST lives in boards/, which the runner does not watch by itself.
make_selftest.rtl_sources = (sdram_bist.__file__,)


class BistTB:
    """Clock, reset and the SDRAM model around the self test."""

    def __init__(self, dut):
        self.config = BistSimConfig.from_json(os.environ["SEEDCHIP_CONFIG"])
        self.chip = chip = self.config.sdram_chip()
        self.dut = dut
        self.tb = TB(dut, period_ns=self.config.period_ns)
        self.log = self.tb.log
        # Retention window of 48 tREFI, 32 refreshes per window (as the
        # controller's own tests): a controller that stops refreshing loses
        # data within a pass.
        selftest = make_selftest(config=self.config)
        Fragment.get(selftest, None)    # only its parameters are needed here
        self.model = SDRAMModel(chip=chip, clk_period_ns=self.config.period_ns,
                                retention_ns=48 * chip.tREFI, refreshes_per_window=32,
                                refresh_postpone_max=selftest.controller.postpone_max,
                                seed=self.tb.seed)
        self.model.attach(dut, idle="junk", input_delay=self.config.read_delay)
        self.words = self.config.words or chip.words

    def value(self, name) -> int:
        return int(getattr(self.dut, name).value)

    async def start(self):
        await self.tb.reset()

    async def wait_for(self, what, cond, limit):
        """Wait until ``cond()``; fail after ``limit`` cycles."""
        for _ in range(int(limit)):
            if cond():
                return
            await self.tb.edge
        self.tb.fail(f"timed out after {int(limit)} cycles waiting for {what}")

    def pass_limit(self) -> int:
        # two sweeps of the memory, refresh and init overheads, with room
        return 3 * self.words + self.chip.cycles(self.config.clk_freq).init + 10_000

    def split(self, addr):
        """BIST (port) address -> (bank, row, col), the controller's mapping."""
        cb, bb = self.chip.col_bits, self.chip.bank_bits
        return ((addr >> cb) & ((1 << bb) - 1), addr >> (cb + bb), addr & ((1 << cb) - 1))

    def check_contents(self, pass_index):
        """Right after pass ``pass_index`` ended, the SDRAM holds its pattern
        everywhere, except where the next pass has already written (the
        BIST's requests run ahead of its checks: below its current address)."""
        def words(index):
            return bist_words(data_width=self.chip.data_width, seed=self.config.seed,
                              count=self.words, start=index * self.words)
        expect, following = words(pass_index), words(pass_index + 1)
        ahead = self.value("addr") if self.value("phase") == 0 else 0
        bad = [a for a, w in enumerate(expect)
               if self.model.peek(self.split(a)) not in ((w, following[a]) if a < ahead else (w,))]
        self.tb.check(not bad, f"{len(bad)} of {len(expect)} words differ from pass "
                               f"{pass_index}'s pattern, first at address {bad[:1]}")

    def finish(self):
        self.model.check()
        self.log.info("model: %s; commands %s", self.model.report(),
                      dict(self.model.command_counts))


@cocotb.test()
async def test_bist_passes(dut):
    """Two whole-memory passes: no errors, the pass counter advances, the
    SDRAM holds the second pass's pattern, and the model saw no timing error."""
    t = BistTB(dut)
    await t.start()
    await t.wait_for("init", lambda: t.value("init_done"), t.chip.cycles(t.config.clk_freq).init
                     + 1000)
    await t.wait_for("the first pass", lambda: t.value("passes") >= 1, t.pass_limit())
    t.tb.check(t.value("errors") == 0, f"{t.value('errors')} error(s) in the first pass, first at "
                                       f"address {t.value('error_addr'):#x}, bits "
                                       f"{t.value('error_xor'):#x}")
    await t.wait_for("the write half of pass 2", lambda: t.value("phase") == 1, t.pass_limit())
    await t.wait_for("the second pass", lambda: t.value("passes") >= 2, t.pass_limit())
    t.tb.check(t.value("errors") == 0 and not t.value("error"),
               f"{t.value('errors')} error(s), first at address {t.value('error_addr'):#x}")
    cycles = t.value("pass_cycles")
    t.log.info("pass of %d words written and read in %d cycles: %.1f%% of one word per cycle",
               t.words, cycles, 100 * 2 * t.words / cycles)
    t.tb.check(2 * t.words <= cycles < 3 * t.words, f"a pass took {cycles} cycles")
    t.check_contents(1)
    t.tb.check(t.value("refreshes") > 0, "no refresh during two passes")
    t.finish()


@cocotb.test()
async def test_bist_flipped_bit(dut):
    """Fault injection: a bit flipped in the SDRAM between the write and the
    read of its word is reported once, with its address and bit; the next
    pass rewrites the word and finds nothing more (the error stays sticky)."""
    t = BistTB(dut)
    await t.start()
    # Well into the read half of the first pass: every write of the pass has
    # reached the SDRAM (the controller keeps request order).
    await t.wait_for("the read half of pass 1",
                     lambda: t.value("phase") == 1 and t.value("addr") >= 64, t.pass_limit())
    addr = t.words - 5
    bit = int(t.tb.rng.integers(t.chip.data_width))
    t.model.flip_bit(t.split(addr), bit)
    t.log.info("flipped bit %d at address %#x %s", bit, addr, t.split(addr))
    await t.wait_for("the first pass", lambda: t.value("passes") >= 1, t.pass_limit())
    t.tb.check(t.value("error") and t.value("errors") == 1,
               f"the flipped bit was reported {t.value('errors')} time(s)")
    t.tb.check(t.value("error_addr") == addr and t.value("error_xor") == 1 << bit,
               f"error reported at {t.value('error_addr'):#x} bits {t.value('error_xor'):#x}, "
               f"expected {addr:#x} bits {1 << bit:#x}")
    await t.wait_for("the second pass", lambda: t.value("passes") >= 2, t.pass_limit())
    t.tb.check(t.value("errors") == 1 and t.value("error"),
               f"{t.value('errors')} error(s) after a clean second pass (expected the sticky 1)")
    t.finish()
