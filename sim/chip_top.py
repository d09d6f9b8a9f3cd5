"""The chip as it is simulated: :class:`~seedchip.rtl.chip.Chip` on an
on-chip RAM (``open_device("sim")``).

:class:`ChipSimConfig` is one simulation build (JSON for the runner's cache
and the serve process); :func:`serve_config` the build ``open_device("sim")``
runs; :func:`make_chip_top` the runner's component factory.
"""

from __future__ import annotations

import dataclasses
import json

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int, check_num, check_type
from ..config import ChipConfig
from ..rtl.chip import DATA_WIDTH, WORD_BYTES, Chip
from ..rtl.chip_sdram import ChipOnSDRAM
from ..rtl.onchip_ram import OnChipRAM
from ..rtl.sdram_chips import CHIPS

__all__ = ["ChipSimConfig", "ChipSimTop", "make_chip_top", "serve_config", "SERVE_MEM_BYTES",
           "ChipSDRAMSimConfig", "make_chip_sdram_top", "sdram_serve_config", "sdram_chip"]

#: chip memory of ``open_device("sim")`` unless it is given ``mem_bytes``:
#: enough for a 256 x 256 x 256 GEMM with int32 results (64 + 64 + 256 KiB)
SERVE_MEM_BYTES = 1 << 20
#: largest simulated on-chip memory
MAX_SIM_MEM_BYTES = 1 << 26


class _Clocked:
    """The clock and the UART rate of a simulation build (``clk_period_ns``, ``divisor``)."""

    @property
    def clock_periods(self) -> dict:
        """The model's clock ports and their periods (ns): ``clk``, and
        ``sdram_clk`` when the SDRAM controller has a clock of its own."""
        extra = getattr(self, "sdram_period_ns", None)
        return {"clk": self.clk_period_ns, **({"sdram_clk": extra} if extra else {})}

    @property
    def clk_freq(self) -> float:
        return 1e9 / self.clk_period_ns

    @property
    def baud(self) -> float:
        return self.clk_freq / self.divisor


@dataclasses.dataclass(frozen=True)
class ChipSimConfig(_Clocked):
    """One simulation build of the chip: its :class:`ChipConfig`, ``mem_bytes``
    of on-chip RAM, ``divisor`` clocks per UART bit at a ``clk_period_ns``
    clock, the link's ``rx_slots`` and ``timeout_bytes``."""

    chip: ChipConfig = dataclasses.field(default_factory=ChipConfig)
    mem_bytes: int = SERVE_MEM_BYTES
    divisor: int = 4
    clk_period_ns: int = 10
    rx_slots: int = 4
    timeout_bytes: int = 1000

    def __post_init__(self):
        check_type("chip", self.chip, ChipConfig)
        check_int("mem_bytes", self.mem_bytes, 4096, MAX_SIM_MEM_BYTES)
        if self.mem_bytes % WORD_BYTES:
            raise ValueError(f"mem_bytes must be a multiple of {WORD_BYTES}, "
                             f"not {self.mem_bytes!r}")
        check_int("divisor", self.divisor, 4, 1 << 16)


    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["chip"] = self.chip.to_dict()
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ChipSimConfig":
        d = json.loads(text)
        d["chip"] = ChipConfig.from_dict(d["chip"])
        return cls(**d)


def serve_config(*, mem_bytes: int = SERVE_MEM_BYTES, chip: ChipConfig | None = None
                 ) -> ChipSimConfig:
    """The build ``open_device("sim")`` runs: the default chip (or ``chip``)
    on ``mem_bytes`` of RAM, 4 clocks per bit (the receiver's minimum, so a
    byte costs the fewest simulated cycles)."""
    return ChipSimConfig(chip=chip or ChipConfig(), mem_bytes=mem_bytes)


class ChipSimTop(wiring.Component):
    """The chip on an :class:`OnChipRAM` of ``mem_bytes``. Ports: ``rx``/``tx``
    (the UART pins), ``running`` (a program runs)."""

    def __init__(self, config: ChipSimConfig):
        self.config = config
        self.chip = Chip(config=config.chip, mem_bytes=config.mem_bytes,
                         clk_freq=config.clk_freq, baud=config.baud,
                         rx_slots=config.rx_slots, timeout_bytes=config.timeout_bytes)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "running": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.chip = chip = self.chip
        m.submodules.ram = ram = OnChipRAM(depth=cfg.mem_bytes // WORD_BYTES,
                                           data_width=DATA_WIDTH, addr_width=chip.addr_width)
        wiring.connect(m, chip.mem, ram.port)
        m.d.comb += [chip.rx.eq(self.rx), self.tx.eq(chip.tx), self.running.eq(chip.running)]
        return m


def make_chip_top(*, config: ChipSimConfig) -> ChipSimTop:
    """Component factory for :mod:`seedchip.sim.runner`."""
    return ChipSimTop(config)


# -- the chip on the pin-level SDRAM model (open_device("sim-sdram")) ----------------

def sdram_chip(name: str):
    """The :class:`~seedchip.rtl.sdram_chips.SDRAMChip` called ``name``: a
    preset of :data:`~seedchip.rtl.sdram_chips.CHIPS` or the ULX3S's
    worst case of its parts (``"ULX3S-SDRAM"``)."""
    from ..boards.ulx3s import SDRAM_CHIP  # noqa: PLC0415

    chips = {**CHIPS, SDRAM_CHIP.name: SDRAM_CHIP}
    if name not in chips:
        raise ValueError(f"sdram must be one of {', '.join(sorted(chips))}, not {name!r}")
    return chips[name]


@dataclasses.dataclass(frozen=True)
class ChipSDRAMSimConfig(_Clocked):
    """One simulation build of the chip on SDRAM (:class:`~seedchip.rtl.chip_sdram.ChipOnSDRAM`):
    its :class:`ChipConfig`, the SDRAM part ``sdram`` (a name, see
    :func:`sdram_chip`; the whole part is the chip memory), the clock
    (``clk_period_ns``: the board's 100 MHz by default) and the UART as
    :class:`ChipSimConfig`. ``sdram_period_ns``: the SDRAM controller's
    own clock (the ``sdram`` domain, the model's ``sdram_clk``), as the
    board build has it when ``sdram_mhz`` differs from ``clk_mhz``; ``None``
    (the default): the controller on the chip's clock."""

    chip: ChipConfig = dataclasses.field(default_factory=ChipConfig)
    sdram: str = "ULX3S-SDRAM"
    divisor: int = 4
    clk_period_ns: int = 10
    rx_slots: int = 4
    timeout_bytes: int = 1000
    sdram_period_ns: float | None = None

    def __post_init__(self):
        check_type("chip", self.chip, ChipConfig)
        sdram_chip(self.sdram)
        check_int("divisor", self.divisor, 4, 1 << 16)
        if self.sdram_period_ns is not None:
            check_num("sdram_period_ns", self.sdram_period_ns, 2, 1000)

    @property
    def sdram_clk_freq(self) -> float | None:
        """The SDRAM controller's own clock (Hz), or ``None``."""
        return None if self.sdram_period_ns is None else 1e9 / self.sdram_period_ns

    @property
    def sdram_period(self) -> float:
        """The SDRAM controller's clock period (ns), its own or the chip's."""
        return self.sdram_period_ns or self.clk_period_ns


    @property
    def mem_bytes(self) -> int:
        return sdram_chip(self.sdram).size_bytes

    to_json = ChipSimConfig.to_json

    @classmethod
    def from_json(cls, text: str) -> "ChipSDRAMSimConfig":
        d = json.loads(text)
        d["chip"] = ChipConfig.from_dict(d["chip"])
        return cls(**d)


def sdram_serve_config(*, chip: ChipConfig | None = None, sdram: str = "ULX3S-SDRAM"
                       ) -> ChipSDRAMSimConfig:
    """The build ``open_device("sim-sdram")`` runs."""
    return ChipSDRAMSimConfig(chip=chip or ChipConfig(), sdram=sdram)


def make_chip_sdram_top(*, config: ChipSDRAMSimConfig) -> ChipOnSDRAM:
    """Component factory for :mod:`seedchip.sim.runner`: the chip on SDRAM,
    its ``pins`` for :class:`~seedchip.sim.sdram_model.SDRAMModel`."""
    return ChipOnSDRAM(config=config.chip, sdram=sdram_chip(config.sdram),
                       clk_freq=config.clk_freq, baud=config.baud, rx_slots=config.rx_slots,
                       timeout_bytes=config.timeout_bytes,
                       sdram_clk_freq=config.sdram_clk_freq)


make_chip_sdram_top.serve_config = sdram_serve_config
