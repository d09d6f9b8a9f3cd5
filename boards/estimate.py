# amaranth: UnusedElaboratable=no
"""What a configuration needs of a board's FPGA, from the configuration alone.

:func:`estimate_resources` counts the DSP multipliers (``MULT18X18D``) and
block RAMs (``DP16KD``) of the board top (:class:`~.top.Top`) without
elaborating it, in milliseconds; :func:`check_fit` refuses a configuration
that cannot fit before a build spends minutes in Yosys to find out.

Where the counts come from (``README``, "Current figures": the 8x8 default
build uses 68 DSPs and 98 EBRs, the gather build 71 and 174; these functions
give exactly those):

* DSP: Yosys maps every multiply of two signals at least 2 bits wide onto
  MULT18X18D blocks, one per 18x18 slice of it. The systolic array has one per
  MAC (``rows * cols``); the matrix unit's requantizer splits its 32x32 product
  into four 17x17 ones. The gather engine adds ``row * pitch`` (two slices:
  the product is as wide as the SDRAM word address), the cache's line hash
  ``table * 0x9E5`` and, when ``gather.lanes`` is not a power of two, a
  reciprocal multiply for ``ceil(dim / lanes)`` (a modelled case: no build
  has used it). Not counted, because the board's exerciser
  (:mod:`.gather_exerciser`) lets Yosys remove them: the per-lane
  requantizers (four DSPs each; it never asks for requantized output) and the
  descriptor's ``rows * pitch`` (its one table has 2**16 rows: one bit). A
  host-driven engine will need them.
* EBR: every :class:`~seedchip.rtl.bufmem.BufferRAM` instantiates its DP16KDs
  itself (A, B and parameter buffers, two accumulator copies, the gather
  cache's data): that count is exact. Yosys also infers block RAM for the gather
  engine's cache keys and output FIFO; for those the count is its cheapest
  mapping, a model of Yosys' choice (:attr:`ResourceEstimate.ebr_inferred`),
  so running over the board by that part alone is only a warning.
"""

from __future__ import annotations

import dataclasses
import math

from amaranth.hdl import Shape, unsigned
from amaranth.utils import ceil_log2

from ..config import ChipConfig
from . import ConfigError, get_board

__all__ = ["ResourceEstimate", "DoesNotFit", "estimate_resources", "check_fit",
           "DSP_WIDTH", "REQUANT_DSPS"]

#: operand width of one ECP5 DSP multiplier (MULT18X18D)
DSP_WIDTH = 18
#: MULT18X18D blocks of one :class:`~seedchip.rtl.requant.Requantizer` (a 32x32
#: product as four 17x17 partial products)
REQUANT_DSPS = 4
#: the gather engine's cache line hash multiplies the table number by this
_LINE_HASH = 0x9E5
#: (depth, width) of one DP16KD: true dual port, and 512 x 36 in pseudo dual
#: port mode (one write, one read port), which Yosys uses for inferred memories
_EBR_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


class DoesNotFit(ConfigError):
    """The configuration needs more DSP blocks or block RAM than the board has."""


@dataclasses.dataclass(frozen=True)
class ResourceEstimate:
    """DSP multipliers and block RAMs the board top needs.

    ``ebr`` includes ``ebr_inferred``, the block RAMs Yosys infers (modelled);
    the rest are instantiated and counted exactly. ``parts`` names what uses
    them: ``{"array": (dsp, ebr), ...}``.
    """
    dsp: int
    ebr: int
    ebr_inferred: int
    parts: dict

    @property
    def ebr_instantiated(self) -> int:
        return self.ebr - self.ebr_inferred


def _mul_dsps(a_width: int, b_width: int) -> int:
    """MULT18X18D blocks of an ``a_width`` x ``b_width`` multiply (Yosys' mul2dsp)."""
    if a_width < 2 or b_width < 2:
        return 0                                # a few LUTs
    return -(-a_width // DSP_WIDTH) * -(-b_width // DSP_WIDTH)


def _buffer_ram_ebrs(shape, depth: int) -> int:
    """DP16KDs of one :class:`~seedchip.rtl.bufmem.BufferRAM` (its own choice of banks)."""
    from ..rtl.bufmem import BufferRAM
    ram = BufferRAM(shape=shape, depth=depth)
    width = Shape.cast(shape).width
    _, w_mode = next(md for md in reversed(BufferRAM.EBR_MODES) if md[0] >= ram.bank_depth)
    return ram.n_banks * -(-width // w_mode)


def _inferred_ebrs(width: int, depth: int) -> int:
    """DP16KDs of a memory Yosys maps to block RAM: its cheapest shape."""
    return min(-(-depth // d) * -(-width // w) for d, w in _EBR_MODES)


def estimate_resources(config: ChipConfig, board) -> ResourceEstimate:
    """DSP blocks and block RAMs the board top of ``config`` needs on ``board``."""
    from ..protocol import ParamLayout, a_word_layout, b_word_layout
    if not isinstance(config, ChipConfig):
        raise TypeError(f"config must be a ChipConfig, not {config!r}")
    board = get_board(board)
    parts = {}
    mbits = max(1, ceil_log2(config.max_m))
    kbits = max(1, ceil_log2(config.max_k))
    # rtl/gemm.py: A at {k tile, m}, B at {n tile, k}, accumulators at {bank, m}
    acc_row = unsigned(config.acc_width * config.cols)
    parts["array"] = (config.macs * _mul_dsps(config.in_width, config.in_width), 0)
    parts["requantizer"] = (REQUANT_DSPS, 0)
    parts["buffers"] = (0, _buffer_ram_ebrs(a_word_layout(config), config.k_tiles_max << mbits)
                        + _buffer_ram_ebrs(b_word_layout(config), config.n_tiles_max << kbits)
                        + _buffer_ram_ebrs(ParamLayout, config.max_n)
                        + 2 * _buffer_ram_ebrs(acc_row, 2 << mbits))
    inferred = 0
    if config.gather is not None:
        dsp, ebr, inferred = _gather(config, board)
        parts["gather"] = (dsp, ebr)
    dsp = sum(d for d, _ in parts.values())
    ebr = sum(e for _, e in parts.values())
    return ResourceEstimate(dsp=dsp, ebr=ebr, ebr_inferred=inferred, parts=parts)


def _gather(config, board):
    """(DSP, EBR, of which inferred) of the gather engine as the board top builds it."""
    from ..emb_protocol import pooled_layout
    from ..rtl.requant import Requantizer
    from .sdram_bist import gather_on_sdram
    # The engine's memory port is the SDRAM controller's, as the board top binds it.
    try:
        eng = gather_on_sdram(config.gather, board.sdram_chip)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"gather engine: {e}") from None
    aw, iw, L = eng.addr_width, eng.index_width, eng.lanes
    tbits = max(1, ceil_log2(eng.n_tables))
    pitch_bits = eng.max_pitch.bit_length()
    # row * pitch, truncated to a word address
    dsp = _mul_dsps(min(iw, aw), pitch_bits)
    if eng.cache_rows:
        dsp += _mul_dsps(tbits, _LINE_HASH.bit_length())
    if L & (L - 1):
        # ceil(dim / lanes) as a multiply by a reciprocal
        dsp += _mul_dsps(Shape.cast(range(eng.max_dim + L)).width, DSP_WIDTH)
    ebr = inferred = 0
    if eng.cache_rows:
        kbits = ceil_log2(eng.max_beats)
        ebr += _buffer_ram_ebrs(unsigned(8 * L), eng.cache_rows << kbits)
        inferred += _inferred_ebrs(1 + tbits + iw, eng.cache_rows)     # cache keys
    # output FIFO (SyncFIFOBuffered: depth - 1 entries in memory), rtl/gather.py
    rq_latency = Requantizer(out_width=8).latency
    inferred += _inferred_ebrs(pooled_layout(lanes=L).size, 1 + 1 + 8 + 1 + rq_latency + 8 - 1)
    return dsp, ebr + inferred, inferred


def check_fit(config: ChipConfig, board) -> list:
    """Raise :class:`DoesNotFit` if ``config`` cannot fit ``board``; return
    warnings (strings) where only the modelled part of the estimate runs over."""
    board = get_board(board)
    est = estimate_resources(config, board)
    if est.dsp > board.dsp:
        other = est.dsp - est.parts["array"][0]
        budget = max(0, board.dsp - other)
        side = math.isqrt(budget)
        hint = (f"use at most {budget} MACs (e.g. --rows {side} --cols {side})" if side
                else "no array fits beside the rest of the design")
        raise DoesNotFit(
            f"rows x cols = {config.macs} multipliers need {est.dsp} DSP blocks "
            f"({other} more for the rest of the design); {board.name} has {board.dsp}: "
            f"{hint}; --force to try anyway")
    if est.ebr_instantiated > board.ebr:
        raise DoesNotFit(
            f"the buffers need {est.ebr_instantiated} block RAMs ({_describe_ebr(config, est)}); "
            f"{board.name} has {board.ebr}: make --max-m/--max-k/--max-n"
            f"{' or --gather-cache-rows' if 'gather' in est.parts else ''} smaller; "
            f"--force to try anyway")
    warnings = []
    if est.ebr > board.ebr:
        warnings.append(f"estimated {est.ebr} block RAMs ({est.ebr_inferred} of them as Yosys "
                        f"usually maps the gather engine's memories); {board.name} has "
                        f"{board.ebr}: the build may not fit")
    return warnings


def _describe_ebr(config, est):
    text = (f"matrix unit, M/K/N up to {config.max_m}/{config.max_k}/{config.max_n} on "
            f"{config.rows}x{config.cols}: {est.parts['buffers'][1]}")
    if "gather" in est.parts:
        text += (f", gather cache of {config.gather.cache_rows} lines: "
                 f"{est.parts['gather'][1] - est.ebr_inferred}")
    return text
