"""The board's memory system as the simulations run it.

This joins the two layers that stand side by side above ``rtl/``: a board's
clock plan (``boards/``: the SDRAM clock the PLL makes for a configuration,
the CAS latency and read capture delay its top picks) and the simulation
configurations (``sim/``), so that neither imports the other. ``seedchip
bench`` and ``seedchip embedding-bag`` simulate the board through these.
"""

from __future__ import annotations

import dataclasses

from .config import GATHER_CONFIG, ChipConfig
from .sim.gather_tb import GatherSimConfig
from .sim.sdram_tb import SDRAMSimConfig

__all__ = ["board_sdram_sim", "board_gather_sim", "cli_gather_sim", "board_chip_sdram_sim"]


def board_sdram_sim(config: ChipConfig, board="ulx3s-85f"):
    """``(SDRAMSimConfig, plan)``: the board's SDRAM set up as its top does
    for ``config``'s clocks (``plan``: :func:`~seedchip.boards.sdram_phy.plan_clocks`,
    with the CAS latency and read capture delay it picks), simulated on the
    IS42S16160 preset (the board's timings in cycles are those of its
    worst-case part, which that preset matches). The simulation's period is
    a whole number of ns, rounded down, so every SDRAM timing takes at least
    the cycles it takes on the board."""
    from .boards import get_board
    from .boards.sdram_phy import plan_clocks

    board = get_board(board)
    plan = plan_clocks(chip=board.sdram_chip, clk_mhz=config.clk_mhz, sdram_mhz=config.sdram_mhz,
                       clk_in_mhz=board.clk_in_mhz)
    sim = SDRAMSimConfig(chip="IS42S16160", period_ns=int(1000 / plan["sdram_mhz"]),
                         cas_latency=plan["cas_latency"], read_delay=plan["read_delay"])
    return sim, plan


def board_gather_sim(config: ChipConfig = GATHER_CONFIG, board="ulx3s-85f") -> GatherSimConfig:
    """The board's engine (``config.gather``) on the board's SDRAM at the
    board's SDRAM clock (``config.sdram_mhz``), as the ULX3S build runs it
    (default: the gather build, ``--config gather``), with the CAS latency
    and read capture delay the top picks for that clock (:func:`board_sdram_sim`).
    Raises ``ValueError`` if ``config`` has no gather engine."""
    if config.gather is None:
        raise ValueError("the configuration has no gather engine (gather is None)")
    sdram, _ = board_sdram_sim(config, board)
    return GatherSimConfig(backend="sdram", chip=sdram.chip, period_ns=sdram.period_ns,
                           cas_latency=sdram.cas_latency, read_delay=sdram.read_delay,
                           params=config.gather)


def cli_gather_sim() -> GatherSimConfig:
    """The simulation ``seedchip embedding-bag`` runs (one cached Verilator
    build): the gather build's engine and SDRAM timing, with room for rows up
    to 256 bytes and bags up to 256."""
    sim = board_gather_sim()
    return dataclasses.replace(sim, params=sim.params.replace(max_dim=256, max_bag=256))


def board_chip_sdram_sim(config: ChipConfig | None = None):
    """The whole chip as ``make bitstream`` builds it (the board build's
    ``chip`` configuration, ``boards.build.TOP_CONFIGS["chip"]``, or
    ``config``) on the pin-level SDRAM model, at its clocks: a
    :class:`~seedchip.sim.chip_top.ChipSDRAMSimConfig` whose chip clock is
    ``clk_mhz`` and, when ``sdram_mhz`` differs, whose SDRAM controller has
    its own at ``sdram_mhz``, as the board top has them (periods to the
    picosecond, the simulation's resolution)."""
    from .boards.build import TOP_CONFIGS
    from .sim.chip_top import ChipSDRAMSimConfig

    config = TOP_CONFIGS["chip"] if config is None else config
    return ChipSDRAMSimConfig(chip=config, clk_period_ns=round(1000 / config.clk_mhz, 3),
                              sdram_period_ns=round(1000 / config.sdram_mhz, 3)
                              if config.sdram_own_domain else None)
