# amaranth: UnusedElaboratable=no
"""What a configuration needs of a board's FPGA, from the configuration alone.

:func:`estimate_resources` counts the DSP multipliers (``MULT18X18D``) and
block RAMs (``DP16KD``) of a board top, the whole chip
(:class:`~.chip_top.ChipTop`, ``top="chip"``) or the exerciser
(:class:`~.top.Top`, ``top="exerciser"``), without elaborating it, in
milliseconds; :func:`check_fit` refuses a configuration that cannot fit
before a build spends minutes in Yosys to find out.

Where the exerciser's counts come from (``README``, "Current figures": the
8x8 default build uses 68 DSPs and 98 EBRs, the gather build 71 and 174;
these functions give exactly those):

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

The chip (:func:`_chip`) has the matrix unit as above, and:

* GEMM ACC (:mod:`seedchip.rtl.chip_gemm_acc`): a second requantizer (4)
  after the add of C_in, and its per-channel multiplier/shift table, a
  :class:`~seedchip.rtl.bufmem.BufferRAM` of ``max_n`` x 37 bits (3 for
  ``max_n`` 256); its output FIFO (32 entries) stays LUT RAM.
* INTERACT: one multiplier per byte of a memory word (8 int8 MACs), a
  requantizer (4), ``n_vec * (n_vec - 1)`` (9 x 9 bits: 1); its vector
  buffer, two copies of ``InteractUnit.buf_depth`` 64-bit words (sized by
  ``max_vec`` and the gather engine's ``max_dim``), and its PARAMS pair table
  (``pair_depth`` x 37 bits) are block RAM Yosys infers (2 x 4 + 5 for
  ``max_vec`` 64, ``max_dim`` 64).
* GATHER: the engine as in the exerciser's build, plus what the exerciser let
  Yosys remove and the host now reaches: the per-lane requantizers (4 DSPs a
  lane of the drain, ``drain_lanes``), the descriptor's ``rows * pitch``; the unit in front of it
  (:mod:`seedchip.rtl.chip_gather`) multiplies ``n_tables * batch``,
  ``(batch - 1) * out_stride`` and ``rows * pitch`` (:data:`CHIP_GATHER_DSPS`).
  Block RAM: the cache's data (instantiated), its keys, the output FIFO and
  the gearbox FIFO (inferred).
* the control unit's extent check: ``a * b`` 16 x 32 bits and ``c * d``
  8 x 16 (:data:`CHIP_CONTROL_DSPS`); the host link's frame and response
  buffers (``rx_slots`` + 1 frames of ``MAX_PAYLOAD`` bytes, inferred).

The chip's inferred block RAMs are certain (the INTERACT buffer alone is
larger than the LUT RAM the design could spare), so for the chip the whole
estimate decides, not only its instantiated part. Checked against the chip's
real build (``tests/test_cli_build.py``).
"""

from __future__ import annotations

import dataclasses
import math

from amaranth.hdl import Shape, unsigned
from amaranth.utils import ceil_log2

from ..config import ChipConfig
from . import ConfigError, get_board

__all__ = ["ResourceEstimate", "DoesNotFit", "estimate_resources", "check_fit",
           "DSP_WIDTH", "REQUANT_DSPS", "TOPS", "CHIP_CONTROL_DSPS", "CHIP_GATHER_DSPS"]

#: The board tops estimated (``top=``), as :data:`seedchip.boards.build.TOPS`.
TOPS = ("chip", "exerciser")

#: operand width of one ECP5 DSP multiplier (MULT18X18D)
DSP_WIDTH = 18
#: MULT18X18D blocks of one :class:`~seedchip.rtl.requant.Requantizer` (a 32x32
#: product as four 17x17 partial products)
REQUANT_DSPS = 4
#: the gather engine's cache line hash multiplies the table number by this
_LINE_HASH = 0x9E5
#: MULT18X18D blocks of the control unit's extent check
#: (rtl/control_check.py: ``a * b``, 16 x 32 bits, two; ``c * d``, 8 x 16, one;
#: ``n_vec * (n_vec - 1)``, 9 x 9, one)
CHIP_CONTROL_DSPS = 2 + 1 + 1
#: MULT18X18D blocks of the GATHER unit's own arithmetic in front of the engine
#: (rtl/chip_gather.py: ``n_tables * batch`` 8 x 16 bits, one;
#: ``(batch - 1) * out_stride`` 17 x 17, one; a table's ``rows * pitch``,
#: 32 x 20 bits of which the pitch's three low bits are 0: 32 x 17, two)
CHIP_GATHER_DSPS = 1 + 1 + 2
#: (depth, width) of one DP16KD: true dual port, and 512 x 36 in pseudo dual
#: port mode (one write, one read port), which Yosys uses for inferred memories
_EBR_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: Entries of the deepest memory Yosys (0.70, synth_ecp5) still maps to LUT
#: RAM (TRELLIS_DPR16X4, 16 entries each) rather than block RAM in these
#: designs: 31 and 32 entries stay LUT RAM whatever the width, 33 go to
#: block RAM (the chip's build: 65 x 31 LUT RAM, 65 x 33 block RAM)
LUTRAM_MAX_DEPTH = 32


class DoesNotFit(ConfigError):
    """The configuration needs more DSP blocks or block RAM than the board has."""


@dataclasses.dataclass(frozen=True)
class ResourceEstimate:
    """DSP multipliers and block RAMs the board top needs.

    ``ebr`` includes ``ebr_inferred``, the block RAMs Yosys infers (modelled);
    the rest are instantiated and counted exactly. ``parts`` names what uses
    them: ``{"array": (dsp, ebr), ...}``. ``top`` is the board top estimated.
    """
    dsp: int
    ebr: int
    ebr_inferred: int
    parts: dict
    top: str = "chip"

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


def estimate_resources(config: ChipConfig, board, *, top="chip") -> ResourceEstimate:
    """DSP blocks and block RAMs the board top ``top`` (:data:`TOPS`) of
    ``config`` needs on ``board``."""
    from ..protocol import ParamLayout, a_word_layout, b_word_layout
    if not isinstance(config, ChipConfig):
        raise TypeError(f"config must be a ChipConfig, not {config!r}")
    if top not in TOPS:
        raise ValueError(f"top must be one of {', '.join(TOPS)}, not {top!r}")
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
    if top == "chip":
        inferred = _chip(config, board, parts)
    elif config.gather is not None:
        dsp, ebr, inferred = _gather(config, board)
        parts["gather"] = (dsp, ebr)
    dsp = sum(d for d, _ in parts.values())
    ebr = sum(e for _, e in parts.values())
    return ResourceEstimate(dsp=dsp, ebr=ebr, ebr_inferred=inferred, parts=parts, top=top)


def _chip(config, board, parts) -> int:
    """Add the chip's parts beside the matrix unit to ``parts``; return the
    block RAMs of them Yosys infers."""
    from ..gather_params import GatherParams
    from ..isa import Limits
    from ..link_protocol import MAX_PAYLOAD
    from ..rtl.chip import DATA_WIDTH, chip_addr_width
    from ..rtl.chip_interact import LANES, PAIR_BITS, InteractUnit
    from ..rtl.hostlink import LinkParams
    mem_bytes = board.sdram_chip.size_bytes
    aw = chip_addr_width(mem_bytes)
    limits = Limits.from_config(config)
    # INTERACT: LANES MACs, a requantizer, n_vec * (n_vec - 1); its vector
    # buffer (sized by max_vec and max_dim) and its PARAMS pair table
    unit = InteractUnit(addr_width=aw, mem_bytes=mem_bytes, limits=limits)
    interact_ebr = (2 * _inferred_ebrs(DATA_WIDTH, unit.buf_depth)
                    + _inferred_ebrs(PAIR_BITS, unit.pair_depth))
    parts["interact"] = (LANES + REQUANT_DSPS + 1, interact_ebr)
    # GEMM ACC: the requantizer after the add, the multiplier/shift table
    from ..rtl.chip_gemm_acc import ScaleLayout
    parts["gemm_acc"] = (REQUANT_DSPS, _buffer_ram_ebrs(ScaleLayout, config.max_n))
    # GATHER: the engine on the chip's memory words, and the unit in front
    try:
        eng = (config.gather or GatherParams()).with_memory(data_width=DATA_WIDTH,
                                                            addr_width=aw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"gather engine: {e}") from None
    dsp, ebr, gather_inferred = _engine(eng)
    # what the exerciser's engine let Yosys remove: the lanes' requantizers
    # and the descriptor's rows * pitch
    dsp += eng.drain_width * REQUANT_DSPS + _mul_dsps(eng.index_width, eng.max_pitch.bit_length())
    parts["gather"] = (dsp + CHIP_GATHER_DSPS, ebr)
    parts["control"] = (CHIP_CONTROL_DSPS, 0)
    # the link's frame buffer (rx_slots frames) and response buffer, bytes wide
    link = LinkParams()
    link_ebr = _inferred_ebrs(8, link.rx_slots * MAX_PAYLOAD) + _inferred_ebrs(8, MAX_PAYLOAD)
    parts["link"] = (0, link_ebr)
    return interact_ebr + gather_inferred + link_ebr


def _gather(config, board):
    """(DSP, EBR, of which inferred) of the gather engine as the exerciser builds it."""
    from .sdram_bist import gather_on_sdram
    # The engine's memory port is the SDRAM controller's, as the board top binds it.
    try:
        eng = gather_on_sdram(config.gather, board.sdram_chip)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"gather engine: {e}") from None
    dsp, ebr, inferred = _engine(eng)
    return dsp, ebr, inferred


def _engine(eng):
    """(DSP, EBR, of which inferred) of a gather engine of parameters ``eng``
    (bound to its memory), without what only a host reaches (see the module
    docstring)."""
    from ..emb_protocol import pooled_layout
    from ..rtl.requant import Requantizer
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
    # the gearbox's beat FIFO (rtl/gather.py, rtl/gather_gearbox.py): block RAM
    # when it is deeper than LUT RAM is worth (on the chip's 64-bit words)
    entries = max(4, eng.inflight // eng.ratio + 2) - 1
    if entries > LUTRAM_MAX_DEPTH:
        inferred += _inferred_ebrs(8 * L + 1, entries)
    return dsp, ebr + inferred, inferred


def check_fit(config: ChipConfig, board, *, top="chip") -> list:
    """Raise :class:`DoesNotFit` if ``config`` cannot fit ``board`` as the
    board top ``top`` (:data:`TOPS`); return warnings (strings) where only the
    modelled part of the estimate runs over (the exerciser's gather engine:
    for the chip every part counts, see the module docstring)."""
    board = get_board(board)
    est = estimate_resources(config, board, top=top)
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
    need = est.ebr if top == "chip" else est.ebr_instantiated
    if need > board.ebr:
        raise DoesNotFit(
            f"the buffers need {need} block RAMs ({_describe_ebr(config, est)}); "
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
    if est.top == "chip":
        from ..gather_params import GatherParams
        text += (f", gather engine with a cache of {(config.gather or GatherParams()).cache_rows} "
                 f"lines: {est.parts['gather'][1]}, INTERACT vector buffer and pair table: "
                 f"{est.parts['interact'][1]}, GEMM ACC table: {est.parts['gemm_acc'][1]}, "
                 f"host link: {est.parts['link'][1]}")
    elif "gather" in est.parts:
        text += (f", gather cache of {config.gather.cache_rows} lines: "
                 f"{est.parts['gather'][1] - est.ebr_inferred}")
    return text
