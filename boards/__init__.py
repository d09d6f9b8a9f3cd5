"""Boards the matrix unit builds for, by name (``seedchip build --board NAME``)."""

import dataclasses

from . import ulx3s

__all__ = ["Board", "BOARDS", "DEFAULT_BOARD", "ConfigError", "get_board"]


class ConfigError(ValueError):
    """A configuration a board cannot build (it does not fit, a clock the PLL
    cannot make): found before elaboration."""


@dataclasses.dataclass(frozen=True)
class Board:
    """A board name, its Amaranth platform and what its FPGA offers.

    Resource counts are the device's totals as nextpnr counts them (LUT4 =
    ``TRELLIS_COMB``, FF = ``TRELLIS_FF``, DSP = ``MULT18X18D``, EBR =
    ``DP16KD``); a build report prefers the figures nextpnr itself prints.
    """
    name: str
    platform: type
    device: str
    package: str
    speed: str
    lut4: int
    ff: int
    dsp: int
    ebr: int
    #: the board oscillator feeding the PLL
    clk_in: str = "clk25"
    clk_in_mhz: float = 25.0
    #: ``openFPGALoader`` arguments selecting the board's cable
    openfpgaloader_args: tuple = ("-b", "ulx3s")
    #: the board's SDRAM (an ``SDRAMChip``; timings safe for every part fitted)
    sdram_chip: object = None

    @property
    def resources(self) -> dict:
        return {"LUT4": self.lut4, "FF": self.ff, "DSP": self.dsp, "EBR": self.ebr}


def _ulx3s(name, platform, lut4, dsp, ebr):
    return Board(name=name, platform=platform, device=platform.device,
                 package=platform.package, speed=platform.speed,
                 lut4=lut4, ff=lut4, dsp=dsp, ebr=ebr, sdram_chip=ulx3s.SDRAM_CHIP)


# ECP5 family data sheet, table 1.1 (LUT4 and FF: two of each per slice).
BOARDS = {b.name: b for b in [
    _ulx3s("ulx3s-12f", ulx3s.ULX3S_12F_Platform, lut4=12_096, dsp=28, ebr=32),
    _ulx3s("ulx3s-25f", ulx3s.ULX3S_25F_Platform, lut4=24_288, dsp=28, ebr=56),
    _ulx3s("ulx3s-45f", ulx3s.ULX3S_45F_Platform, lut4=43_848, dsp=72, ebr=108),
    _ulx3s("ulx3s-85f", ulx3s.ULX3S_85F_Platform, lut4=83_640, dsp=156, ebr=208),
]}

DEFAULT_BOARD = "ulx3s-85f"


def get_board(name) -> Board:
    if isinstance(name, Board):
        return name
    if not isinstance(name, str):
        raise TypeError(f"board must be a board name, not {name!r}")
    try:
        return BOARDS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None
