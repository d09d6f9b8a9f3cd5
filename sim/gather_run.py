"""EmbeddingBag on the simulated RTL: the host side of ``seedchip embedding-bag``.

:func:`run_embedding_bag` runs one batch of bags over one table on the gather
engine + SDR SDRAM controller + pin-level SDRAM model (IS42S16160 at 7 ns,
CL3, the configuration :mod:`seedchip.sim.gather_bench` measures), through
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

__all__ = ["EmbeddingBagResult", "run_embedding_bag", "describe_error"]


def _cli_config():
    """The simulation build the CLI uses (one cached Verilator build): the
    benchmark's, with room for rows up to 256 bytes and bags up to 256."""
    from .gather_bench import DEFAULT_CONFIG  # noqa: PLC0415
    return dataclasses.replace(DEFAULT_CONFIG, max_dim=256, max_bag=256)


@dataclasses.dataclass
class EmbeddingBagResult:
    pooled: np.ndarray          # [bags that came out, dim] int64
    error: GatherError
    error_bag: int
    error_index: int
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


def _normalize(table, indices, offsets, weights, include_last_offset, index_width):
    table = np.asarray(table)
    if table.ndim != 2 or 0 in table.shape:
        raise ValueError(f"table must be a non-empty 2-D [rows, dim] array, not shape {table.shape}")
    if table.dtype != np.int8:
        raise ValueError(f"table must be int8, not {table.dtype}")
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be a 1-D integer array, not {indices.dtype} {indices.shape}")
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer) or len(offsets) == 0:
        raise ValueError("offsets must be a non-empty 1-D integer array")
    offsets = [int(o) for o in offsets]
    if not include_last_offset:
        offsets.append(len(indices))
    if len(offsets) < 2:
        raise ValueError("include_last_offset needs at least 2 offsets (one bag)")
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != indices.shape or weights.dtype != np.int8:
            raise ValueError(f"weights must be int8 with the shape of indices {indices.shape}, "
                             f"not {weights.dtype} {weights.shape}")
    mask = (1 << index_width) - 1
    # The wire carries indices unsigned: -1 arrives as all ones (out of range).
    wire = [(int(i) & mask, int(weights[k]) if weights is not None else 1)
            for k, i in enumerate(indices)]
    return table, wire, offsets


def run_embedding_bag(table, indices, offsets, *, mode: str = "sum", weights=None,
                      bounds: str = "fatal", include_last_offset: bool = False,
                      sim: str | None = None) -> EmbeddingBagResult:
    """Run the bags on the simulated RTL; see the module docstring."""
    from . import runner  # noqa: PLC0415
    from .gather_tb import TOPLEVEL, make_top  # noqa: PLC0415

    config = _cli_config()
    try:
        pool = PoolMode[mode.upper()]
    except KeyError:
        raise ValueError(f"mode must be sum, mean or max, not {mode!r}") from None
    try:
        bmode = BoundsMode[bounds.upper()]
    except KeyError:
        raise ValueError(f"bounds must be fatal, clamp or skip, not {bounds!r}") from None
    table, wire, offsets = _normalize(table, indices, offsets, weights, include_last_offset,
                                      config.index_width)
    if table.shape[1] > config.max_dim:
        raise ValueError(f"table dim {table.shape[1]} is larger than the engine's max_dim "
                         f"{config.max_dim}")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(src, table=table, wire=np.array(wire, dtype=np.int64).reshape(-1, 2),
                 offsets=np.array(offsets, dtype=np.int64),
                 cmd=np.array([int(pool.value), int(bmode.value), int(weights is not None)]))
        result = runner.run_cocotb(make_top, TOPLEVEL, "seedchip.sim.gather_run", config, sim=sim,
                                   testcase="gather_bags", tag="cli",
                                   extra_env={"SEEDCHIP_EMB_IN": str(src),
                                              "SEEDCHIP_EMB_OUT": str(dst)})
        if not result.passed:
            raise RuntimeError("the simulated engine disagreed with the golden model:\n"
                               + result.summary())
        out = json.loads(dst.read_text())
    pooled = np.array(out["pooled"], dtype=np.int64).reshape(-1, table.shape[1])
    return EmbeddingBagResult(pooled=pooled, error=GatherError(out["error"]),
                              error_bag=out["error_bag"], error_index=out["error_index"],
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
        image, descs = layout_tables([table], g.config.width, base=1 << 12,
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
