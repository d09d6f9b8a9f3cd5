"""The one validated configuration of a seedchip instance.

Gateware, firmware, golden models, tests and the board builds all read a
:class:`ChipConfig`; it dumps itself as JSON next to every build.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .checks import check_int
from .gather_params import GatherParams

__all__ = ["ChipConfig", "GatherParams", "DEFAULT_CONFIG", "SMALL_CONFIG", "GATHER_CONFIG",
           "CHIP_CONFIG",
           "PRESETS", "OVERRIDE_FIELDS", "GATHER_OVERRIDES", "LEGACY_GATHER_KEYS",
           "upgrade_dict", "config_dict_from_arg", "config_from_args"]


@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """Parameters of the matrix unit, the gather engine and the chip clocks.

    ``rows`` is the reduction (K) dimension of the systolic array and ``cols``
    the output-channel (N) dimension: one weight tile is ``rows`` x ``cols``.
    ``max_m``/``max_k``/``max_n`` size the on-chip operand and accumulator
    buffers; any GEMM with ``1 <= M <= max_m`` (etc.) runs, tiled and padded
    by the controller.

    ``sdram_mhz`` is the clock of the board's SDR SDRAM controller (its own
    clock domain, a second PLL output next to ``clk_mhz``); on the board the
    gather engine (``gather``) runs in that domain, on the SDRAM controller.
    """

    rows: int = 8
    cols: int = 8
    in_width: int = 8
    acc_width: int = 32
    max_m: int = 256
    max_k: int = 256
    max_n: int = 256
    clk_mhz: float = 125.0
    sdram_mhz: float = 100.0
    #: The EmbeddingBag gather engine (:class:`~seedchip.rtl.gather.GatherEngine`)
    #: beside the SDRAM controller in the board build, by its parameters; None
    #: (the default) leaves it out: with it the `sdram` domain does not reach
    #: 100 MHz; :data:`GATHER_CONFIG` is the build with it, at the clocks it
    #: meets. The board top binds the memory geometry (``data_width``,
    #: ``addr_width``) to its SDRAM chip (:meth:`GatherParams.with_memory`).
    gather: GatherParams | None = None

    def __post_init__(self):
        check_int("rows", self.rows, 1, 64)
        check_int("cols", self.cols, 1, 64)
        check_int("in_width", self.in_width, 2, 12)
        check_int("max_m", self.max_m, 1, 1 << 16)
        check_int("max_k", self.max_k, 1, 1 << 16)
        check_int("max_n", self.max_n, 1, 1 << 16)
        # The accumulator must hold max_k products of two most-negative inputs
        # without wrapping, and the requantizer is defined on int32.
        need = 2 * self.in_width + max(1, math.ceil(math.log2(self.max_k))) + 1
        if need > 32:
            raise ValueError(
                f"max_k must be at most {1 << (31 - 2 * self.in_width)} for in_width "
                f"{self.in_width} so that int32 accumulation cannot overflow, not {self.max_k!r}")
        check_int("acc_width", self.acc_width, need, 32)
        if not isinstance(self.clk_mhz, (int, float)) or isinstance(self.clk_mhz, bool):
            raise TypeError(f"clk_mhz must be a number, not {self.clk_mhz!r}")
        if not 10.0 <= self.clk_mhz <= 400.0:
            raise ValueError(f"clk_mhz must be in range 10..400, not {self.clk_mhz!r}")
        if not isinstance(self.sdram_mhz, (int, float)) or isinstance(self.sdram_mhz, bool):
            raise TypeError(f"sdram_mhz must be a number, not {self.sdram_mhz!r}")
        # The range of SDR SDRAM parts; the controller checks its chip's own
        # limit (e.g. 143 MHz for the ULX3S part) when the board top is built.
        if not 25.0 <= self.sdram_mhz <= 200.0:
            raise ValueError(f"sdram_mhz must be in range 25..200, not {self.sdram_mhz!r}")
        if self.gather is not None and not isinstance(self.gather, GatherParams):
            raise TypeError(f"gather must be a GatherParams or None, not {self.gather!r}")
        # Buffer sizes, in words; checked so a typo cannot ask for megabytes of
        # block RAM.
        if self.max_m * self.k_tiles_max > 1 << 17:
            raise ValueError(f"max_m * ceil(max_k / rows) must be at most {1 << 17}")
        if self.max_k * self.n_tiles_max > 1 << 17:
            raise ValueError(f"max_k * ceil(max_n / cols) must be at most {1 << 17}")

    # -- derived figures ---------------------------------------------------
    @property
    def macs(self) -> int:
        return self.rows * self.cols

    @property
    def k_tiles_max(self) -> int:
        return -(-self.max_k // self.rows)

    @property
    def n_tiles_max(self) -> int:
        return -(-self.max_n // self.cols)

    @property
    def sdram_own_domain(self) -> bool:
        """The chip top runs the SDRAM controller (and the GATHER unit) in a
        clock domain of their own: ``sdram_mhz`` differs from ``clk_mhz``."""
        return abs(self.sdram_mhz - self.clk_mhz) > 1e-6

    def peak_gops(self, fmax_mhz: float) -> float:
        """Peak int8 throughput: two operations (multiply, add) per MAC per cycle."""
        return 2 * self.macs * fmax_mhz / 1000.0

    def ideal_cycles(self, m: int, k: int, n: int) -> int:
        return -(-(m * k * n) // self.macs)

    # -- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ChipConfig":
        """From a dict of any subset of the fields; ``gather`` is None or a
        dict of any subset of :class:`GatherParams`' fields. A file written
        before ``gather`` was one object loads too (:func:`upgrade_dict`)."""
        d = upgrade_dict(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(fields))}")
        gather = d.get("gather")
        if isinstance(gather, dict):
            try:
                gather = GatherParams.from_dict(gather)
            except (TypeError, ValueError) as e:
                raise type(e)(f"gather engine: {e}") from None
            d = {**d, "gather": gather}
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ChipConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **kw) -> "ChipConfig":
        return dataclasses.replace(self, **kw)


DEFAULT_CONFIG = ChipConfig()
#: A small array with small buffers: fast simulation and a quick synthesis
#: check in CI (with a small gather engine: one memory word wide, no cache).
SMALL_CONFIG = ChipConfig(rows=4, cols=4, max_m=32, max_k=32, max_n=32, clk_mhz=100.0,
                          gather=GatherParams(lanes=2, cache_rows=0, n_tables=2, max_dim=32,
                                              max_bag=16, inflight=16))
#: The recommender build for the ULX3S-85F: the matrix unit and the gather
#: engine in one bitstream (``make bitstream-gather``, ``--config gather``).
#: Its clocks are the ones that design closes with nextpnr (README, "The
#: gather engine"): the engine runs in the SDRAM controller's domain, and with
#: twice the logic and 174 of the 208 block RAMs in use, that domain does not
#: reach the 100 MHz the controller alone does.
GATHER_CONFIG = ChipConfig(gather=GatherParams(), clk_mhz=100.0, sdram_mhz=80.0)

#: The whole chip on the board (``seedchip build``'s default, ``make
#: bitstream``: :class:`~seedchip.boards.chip_top.ChipTop`): the default
#: array at the clock the chip is specified for, 100 MHz (the simulations and
#: benchmarks run it there; the board build runs it at the clock its
#: placement meets today, ``boards.build.CHIP_BOARD_MHZ``, with its SDRAM
#: controller and GATHER unit in a domain of their own at
#: ``CHIP_BOARD_SDRAM_MHZ``), in one domain with its SDRAM controller
#: (``sdram_mhz`` equal to ``clk_mhz``; the chip top gives the controller a
#: domain of its own only when they differ). ``max_m``
#: is 128, not 256: with 256 the chip needed 214 block RAMs of the ULX3S-85F's 208 while
#: INTERACT's vector buffer was sized for ``max_k`` (32). Sized for the gather
#: engine's ``max_dim`` it takes 8, and with the PARAMS pair table's 5 the
#: estimate for M 256 is 195 (Yosys: the matrix unit's buffers 98, the gather
#: cache 64 and its keys, output and gearbox FIFOs 14, INTERACT 13, the
#: link's buffers 3, the GEMM ACC channel table 3): it fits by count, but the
#: 128 chip does not meet timing yet and block RAM pressure spreads the
#: placement, so M stays 128 until a build says otherwise.
#: M = 128 halves the A buffer (32 -> 16) and costs only more, smaller M
#: tiles (the firmware tiles any M).
#: The gather engine's drain is 2 lanes wide (``drain_lanes``): the 16-bit
#: SDRAM delivers 2 bytes a cycle, and the 8 requantizers of a full-width
#: drain took 32 of the chip's 130 DSPs, spread over the die (8 take 8).
CHIP_CONFIG = DEFAULT_CONFIG.replace(clk_mhz=100.0, sdram_mhz=100.0, max_m=128,
                                     gather=GatherParams(drain_lanes=2))

#: ``--config NAME``: the named configurations.
PRESETS = {"default": DEFAULT_CONFIG, "small": SMALL_CONFIG, "gather": GATHER_CONFIG,
           "chip": CHIP_CONFIG}


#: The flat keys a configuration file held before the gather engine's
#: parameters became one object (``"gather": true`` beside them), and the
#: :class:`GatherParams` field each one is now.
LEGACY_GATHER_KEYS = {"gather_lanes": "lanes", "gather_cache_rows": "cache_rows",
                      "gather_tables": "n_tables", "gather_max_dim": "max_dim",
                      "gather_max_bag": "max_bag", "gather_inflight": "inflight"}


def upgrade_dict(d: dict) -> dict:
    """``d`` (configuration fields) with an old file's gather engine in
    today's form: ``"gather": true`` and the flat ``gather_*`` keys
    (:data:`LEGACY_GATHER_KEYS`) become the ``gather`` object; with
    ``"gather": false`` (or no ``gather``) the engine is off and those keys
    are dropped, as the old code ignored them. Old keys beside a ``gather``
    object are refused (``ValueError`` naming the key), and so is a
    ``gather`` that is no object, null or bool (``TypeError``)."""
    legacy = {new: d[old] for old, new in LEGACY_GATHER_KEYS.items() if old in d}
    gather = d.get("gather")
    if gather is not None and not isinstance(gather, (bool, dict, GatherParams)):
        raise TypeError(f"gather must be an object of the gather engine's parameters or "
                        f"null, not {gather!r}")
    if not legacy and not isinstance(gather, bool):
        return d
    if legacy and not (gather is None or isinstance(gather, bool)):
        old = next(k for k in LEGACY_GATHER_KEYS if k in d)
        raise ValueError(f"{old} is a key of the old configuration format; beside a "
                         f"\"gather\" object, give it as \"gather\": "
                         f"{{\"{LEGACY_GATHER_KEYS[old]}\": ...}}")
    d = {k: v for k, v in d.items() if k not in LEGACY_GATHER_KEYS}
    d["gather"] = legacy if gather is True else None
    return d


def config_dict_from_arg(arg: str) -> dict:
    """The fields ``--config ARG`` gives: a preset's (:data:`PRESETS`) or those
    of a JSON file (any subset of the fields; an old file's gather keys
    upgraded, :func:`upgrade_dict`). Raises ``ValueError`` naming the presets
    if ``ARG`` is neither, ``OSError``/``ValueError`` if the file cannot be
    read or parsed."""
    if arg in PRESETS:
        return PRESETS[arg].to_dict()
    path = Path(arg)
    if not path.exists():
        raise ValueError(f"{arg!r} is neither a configuration file nor a preset "
                         f"({', '.join(PRESETS)})")
    d = json.loads(path.read_text())
    if not isinstance(d, dict):
        raise ValueError(f"{arg}: a configuration file holds a JSON object")
    return upgrade_dict(d)


#: The fields the command lines override one by one (``--rows`` etc.).
OVERRIDE_FIELDS = ("rows", "cols", "max_m", "max_k", "max_n", "clk_mhz", "sdram_mhz")
#: The gather engine's parameters the command lines override (``--gather-lanes``
#: and ``--gather-cache-rows``: argument name -> :class:`GatherParams` field).
GATHER_OVERRIDES = {"gather_lanes": "lanes", "gather_cache_rows": "cache_rows"}


def config_from_args(args, default: ChipConfig | None = None) -> ChipConfig:
    """The configuration a command line asks for: ``default`` (None:
    :data:`DEFAULT_CONFIG`), or ``--config``
    (a preset or a file, see :func:`config_dict_from_arg`), then ``--gather``
    (the configuration's engine, or the default :class:`GatherParams` if it
    has none) / ``--no-gather``, and the :data:`OVERRIDE_FIELDS` and
    :data:`GATHER_OVERRIDES` that are set (``None``: not given). Raises
    ``OSError``/``ValueError``/``TypeError``; ``ValueError`` for a gather
    override on a configuration without the engine."""
    d = (DEFAULT_CONFIG if default is None else default).to_dict()
    if getattr(args, "config", None):
        d.update(config_dict_from_arg(args.config))
    if getattr(args, "gather", False) and d.get("gather") is None:
        d["gather"] = GatherParams().to_dict()
    if getattr(args, "no_gather", False):
        d["gather"] = None
    for key in OVERRIDE_FIELDS:
        v = getattr(args, key, None)
        if v is not None:
            d[key] = v
    for key, name in GATHER_OVERRIDES.items():
        v = getattr(args, key, None)
        if v is None:
            continue
        if d.get("gather") is None:
            raise ValueError(f"--{key.replace('_', '-')} sets a gather engine parameter, but "
                             f"this configuration has no gather engine (add --gather)")
        d["gather"] = {**d["gather"], name: v}
    return ChipConfig.from_dict(d)

