"""EmbeddingBag on the simulated RTL: the host side of ``seedchip embedding-bag``.

:func:`run_embedding_bag` runs one batch of bags over one table on the gather
engine + SDR SDRAM controller + pin-level SDRAM model of ``config`` (the
command line's: :func:`seedchip.boardsim.cli_gather_sim`, the engine and SDRAM
timing the gather benchmark measures, the board's IS42S16160 at a 12 ns
period, CL3; :func:`describe_setup` says it), through
the same testbench as the tests (:class:`~seedchip.sim.gather_tb.GatherTB`):
every read is checked by the address monitor, the outputs, error registers
and counters against the golden model, and the SDRAM model's timing checker
stays silent. It returns the pooled bags as the engine produced them, the
engine's error status in words, and the cycle count.

Offsets follow ``torch.nn.EmbeddingBag``: ``B`` offsets, bag ``i`` covering
``indices[offsets[i]:offsets[i+1]]`` and the last bag running to the end of
``indices`` (``include_last_offset=False``, PyTorch's default), or ``B + 1``
offsets with ``include_last_offset=True``. The engine itself takes the
``B + 1`` form (see :mod:`seedchip.rtl.gather`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..emb_protocol import BoundsMode, GatherError, PoolMode

__all__ = ["EmbeddingBagResult", "run_embedding_bag", "describe_error", "check_inputs",
           "check_fits", "out_of_range", "to_wire", "describe_setup", "TABLE_BASE"]

#: Word address of the table in the simulated memory.
TABLE_BASE = 1 << 12


def describe_setup(c) -> str:
    """What :func:`run_embedding_bag` simulates on ``c`` (a
    :class:`~seedchip.sim.gather_tb.GatherSimConfig`), in words (for banners)."""
    p = c.params
    cache = f"{p.cache_rows}-line hot-row cache" if p.cache_rows else "no cache"
    if c.backend != "sdram":
        return f"gather engine ({cache}) + {c.ram_depth}-word on-chip RAM"
    return (f"gather engine ({p.lanes}-byte datapath, {cache}) + SDRAM controller + "
            f"{c.chip} model at a {c.period_ns} ns clock ({1000 / c.period_ns:.1f} MHz), "
            f"CL{c.cas_latency}")


@dataclasses.dataclass
class EmbeddingBagResult:
    pooled: np.ndarray          # [bags that came out, dim] int64
    error: GatherError
    error_bag: int
    error_index: int            # for OUT_OF_RANGE / MEM_ERROR: the index as given
    error_position: int | None  # ... and its position in ``indices``
    cycles: int                 # command accepted .. last output beat taken
    lookups: int
    clamped: int
    skipped: int

    @property
    def lookups_per_cycle(self) -> float:
        return self.lookups / self.cycles if self.cycles else 0.0


def describe_error(error: GatherError, bag: int, index: int) -> str:
    """The engine's error status in words."""
    return {
        GatherError.NONE: "no error",
        GatherError.BAD_DESC: f"table descriptor {index} rejected (rows, dim or extent out of range)",
        GatherError.BAD_CMD: "command rejected (per-sample weights need mode sum)",
        GatherError.BAD_TABLE: f"bag {bag} names table {index}, which has no valid descriptor",
        GatherError.BAD_OFFSET: f"offsets go backwards or do not start at 0 (bag {bag}, offset {index})",
        GatherError.BAG_TOO_LONG: f"bag {bag} has {index} indices, more than the engine's maximum",
        GatherError.OUT_OF_RANGE: f"bag {bag}: index {index} is outside the table",
        GatherError.MEM_ERROR: f"memory error while reading bag {bag}",
    }.get(error, f"{error.name} (bag {bag}, index {index})")


def _as_int_array(x, what):
    """``x`` as a 1-D array of Python-exact integers (int64, or object for
    uint64 values past int64); refuse floats, bools and other dtypes."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a 1-D integer array, not shape {x.shape}")
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{what} must be an integer array, not {x.dtype}")
    return x


def check_inputs(table, indices, offsets, *, weights=None, mode="sum",
                 include_last_offset=False, max_dim=None, max_bag=None):
    """Validate an EmbeddingBag batch the way ``torch.nn.EmbeddingBag`` does,
    plus the engine's limits; raise :class:`ValueError` saying what is wrong.

    Returns ``(table, indices, bounds)``: ``bounds`` the B + 1 offsets as
    Python ints. Indices are *not* checked against the table here: that is
    the bounds policy's job (:func:`out_of_range`).
    """
    table = np.asarray(table)
    if table.ndim != 2 or 0 in table.shape:
        raise ValueError(f"table must be a non-empty 2-D [rows, dim] array, not shape {table.shape}")
    if table.dtype != np.int8:
        raise ValueError(f"table must be int8, not {table.dtype}")
    rows, dim = table.shape
    if max_dim is not None and dim > max_dim:
        raise ValueError(f"table dim {dim} is larger than the engine's max_dim {max_dim}")
    indices = _as_int_array(indices, "indices")
    offsets = _as_int_array(offsets, "offsets")
    n = len(indices)
    if len(offsets) == 0:
        raise ValueError("offsets must not be empty (one offset per bag)")
    bounds = [int(o) for o in offsets]
    if include_last_offset:
        if len(bounds) < 2:
            raise ValueError("with include_last_offset, offsets needs at least 2 entries "
                             "(B + 1 for B bags)")
        if bounds[-1] != n:
            raise ValueError(f"with include_last_offset, the last offset must equal the "
                             f"number of indices ({n}), not {bounds[-1]}")
    else:
        bounds.append(n)
    if bounds[0] != 0:
        raise ValueError(f"offsets[0] must be 0 (the first bag starts at the first index), "
                         f"not {bounds[0]}")
    for i, o in enumerate(bounds):
        if o < 0:
            raise ValueError(f"offsets[{i}] = {o} is negative")
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        if hi < lo:
            raise ValueError(f"offsets must not decrease: offsets[{i}] = {lo}, "
                             f"offsets[{i + 1}] = {hi}")
        if hi > n:
            raise ValueError(f"offsets[{i + 1}] = {hi} is past the end of the {n} indices")
        if max_bag is not None and hi - lo > max_bag:
            raise ValueError(f"bag {i} has {hi - lo} indices; the engine takes at most "
                             f"{max_bag} per bag")
    if weights is not None:
        if mode != "sum":
            raise ValueError(f"per-sample weights need mode sum, not {mode}")
        weights = np.asarray(weights)
        if weights.shape != indices.shape or weights.dtype != np.int8:
            raise ValueError(f"weights must be int8 with the shape of indices {indices.shape}, "
                             f"not {weights.dtype} {weights.shape}")
    return table, indices, bounds


def check_fits(shape, config) -> None:
    """Refuse a ``[rows, dim]`` table that the simulated memory cannot hold
    from :data:`TABLE_BASE` (rows padded to whole memory words)."""
    rows, dim = shape
    word = config.width // 8
    need = rows * -(-dim // word)
    room = config.mem_words - TABLE_BASE
    if need > room:
        raise ValueError(
            f"table of {rows:,} rows x {dim} bytes needs {need * word:,} bytes of memory; the "
            f"simulated chip's {config.chip} holds {room * word:,} bytes for tables "
            f"(at most {room // -(-dim // word):,} rows of {dim} bytes)")


def out_of_range(indices, rows: int) -> np.ndarray:
    """Positions of the indices outside ``0 .. rows - 1`` (in any dtype)."""
    indices = np.asarray(indices)
    if indices.dtype == np.uint64:
        return np.flatnonzero(indices >= np.uint64(rows))
    idx = indices.astype(np.int64)
    return np.flatnonzero((idx < 0) | (idx >= rows))


def to_wire(indices, index_width: int) -> list[int]:
    """Indices as the engine's unsigned ``index_width``-bit field. An index
    that field cannot hold (negative, or 2**index_width and up: int64 is what
    PyTorch uses) becomes all ones, an index past any table the memory can
    hold, so the bounds policy treats it as out of range; never ``index mod
    2**index_width``, which would read another row."""
    top = (1 << index_width) - 1
    return [int(i) if 0 <= int(i) <= top else top for i in indices]


def run_embedding_bag(table, indices, offsets, *, mode: str = "sum", weights=None,
                      bounds: str = "fatal", include_last_offset: bool = False,
                      config, sim: str | None = None, progress=None) -> EmbeddingBagResult:
    """Run the bags on the simulated RTL; see the module docstring.

    Raises :class:`ValueError` for input the engine must not be given
    (:func:`check_inputs`, :func:`check_fits`), before simulating.
    ``progress`` (a callable taking a line) hears what is going on."""
    from . import runner  # noqa: PLC0415
    from .gather_tb import TOPLEVEL, make_top  # noqa: PLC0415

    try:
        pool = PoolMode[mode.upper()]
    except KeyError:
        raise ValueError(f"mode must be sum, mean or max, not {mode!r}") from None
    try:
        bmode = BoundsMode[bounds.upper()]
    except KeyError:
        raise ValueError(f"bounds must be fatal, clamp or skip, not {bounds!r}") from None
    table, indices, offsets = check_inputs(
        table, indices, offsets, weights=weights, mode=mode,
        include_last_offset=include_last_offset, max_dim=config.params.max_dim,
        max_bag=config.params.max_bag)
    check_fits(table.shape, config)
    wire_idx = to_wire(indices, config.params.index_width)
    wire = [(i, int(weights[k]) if weights is not None else 1) for k, i in enumerate(wire_idx)]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(src, table=table, wire=np.array(wire, dtype=np.int64).reshape(-1, 2),
                 offsets=np.array(offsets, dtype=np.int64),
                 cmd=np.array([int(pool.value), int(bmode.value), int(weights is not None)]))
        result = runner.run_cocotb(make_top, TOPLEVEL, "seedchip.sim.gather_run", config, sim=sim,
                                   testcase="gather_bags", tag="cli", progress=progress,
                                   what=f"simulating {len(offsets) - 1} bags under "
                                        f"{runner.simulator_name(sim)}",
                                   extra_env={"SEEDCHIP_EMB_IN": str(src),
                                              "SEEDCHIP_EMB_OUT": str(dst)})
        if not result.passed:
            raise RuntimeError("the simulated engine disagreed with the golden model:\n"
                               + result.summary())
        out = json.loads(dst.read_text())
    pooled = np.array(out["pooled"], dtype=np.int64).reshape(-1, table.shape[1])
    error, bag, index = GatherError(out["error"]), out["error_bag"], out["error_index"]
    position = None
    if error in (GatherError.OUT_OF_RANGE, GatherError.MEM_ERROR) and bag < len(offsets) - 1:
        # The engine reports the index as it arrived on the wire; say it as
        # the caller gave it (-1, not 4294967295).
        for k in range(offsets[bag], offsets[bag + 1]):
            if wire_idx[k] == index:
                position, index = k, int(indices[k])
                break
    return EmbeddingBagResult(pooled=pooled, error=error, error_bag=bag, error_index=index,
                              error_position=position,
                              cycles=out["cycles"], lookups=out["lookups"],
                              clamped=out["clamped"], skipped=out["skipped"])


# -- simulator side ----------------------------------------------------------------------
# Imported by cocotb inside the simulator (COCOTB_TEST_MODULES=seedchip.sim.gather_run).

try:
    import cocotb
except ImportError:  # pragma: no cover - the host API does not need cocotb
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def gather_bags(dut):
        """Run the batch in ``SEEDCHIP_EMB_IN``, write ``SEEDCHIP_EMB_OUT``."""
        from .emb_golden import Cmd, layout_tables, make_bag_items  # noqa: PLC0415
        from .gather_tb import GatherTB  # noqa: PLC0415

        with np.load(os.environ["SEEDCHIP_EMB_IN"]) as f:
            table, wire, offsets, cmdv = f["table"], f["wire"], f["offsets"], f["cmd"]
        g = GatherTB(dut, idle=0.0, backpressure=0.0, seed=0)
        await g.start()
        if g.sdram is not None:
            while not g.dut.init_done.value:
                await g.tb.edge
        image, descs = layout_tables([table], g.config.width, base=TABLE_BASE,
                                     sparse=g.sdram is not None)
        await g.load(image)
        await g.write_descs(descs)
        cmd = Cmd(mode=PoolMode(int(cmdv[0])), bounds=BoundsMode(int(cmdv[1])),
                  weighted=bool(cmdv[2]))
        items = make_bag_items([0] * (len(offsets) - 1), [int(o) for o in offsets])
        idx = [(int(i), int(w)) for i, w in wire]
        c0, b0 = len(g.cmd.accept_cycles), g.beats_checked
        batch = g.submit(cmd, items, idx)
        res = batch.result
        d = g.dut
        # read the status before settle() clears an error
        await g._wait(g._idle(), g.budget(), "the batch")
        status = (int(d.error.value), int(d.error_bag.value), int(d.error_index.value))
        counts = {k: int(getattr(d, k).value) for k in ("lookups", "clamped", "skipped")}
        await g.settle()
        beats = g.pooled.decoded(b0)
        flat = [v for bt in beats for v in bt["data"]]
        dim = table.shape[1]
        n = -(-dim // g.lanes)
        pooled = [flat[k * n * g.lanes:k * n * g.lanes + dim] for k in range(len(beats) // n)]
        t0 = g.cmd.accept_cycles[c0]
        t1 = g.pooled.accept_cycles[-1] if len(g.pooled.accept_cycles) > b0 else g.tb.cycle()
        Path(os.environ["SEEDCHIP_EMB_OUT"]).write_text(json.dumps({
            "pooled": pooled, "error": status[0], "error_bag": status[1],
            "error_index": status[2], "cycles": int(t1 - t0 + 1), **counts,
        }))
        g.log.info("%d bags, %d lookups: %s", len(pooled), res.lookups, cmd.describe())
        await g.finish()
