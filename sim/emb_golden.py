"""Bit-exact NumPy golden model of the EmbeddingBag gather engine.

Two references:

* :class:`GatherModel` models the engine as the RTL sees it: descriptors with
  valid bits, a word-addressed memory image, the wire formats of
  :mod:`seedchip.emb_protocol`, every bad-input policy, the sticky error and
  its ``error_bag``/``error_index``, the ``clamped``/``skipped``/``lookups``
  counters, which bags come out, how many input items a batch consumes, and
  the exact sequence of memory words the engine reads (for the address
  monitor of the testbench); with ``cache_rows`` it simulates the engine's
  direct-mapped hot-row cache exactly (allocate at issue, emptied by
  descriptor writes, ``cache_clear`` and memory errors), so hits read no
  memory and ``cache_hits``/``cache_misses`` are exact.
* :func:`embedding_bag_ref` is PyTorch's ``nn.EmbeddingBag`` forward
  (``include_last_offset=True``) on a plain ``[rows, dim]`` weight matrix,
  written independently (Python integers and :class:`fractions.Fraction`,
  no memory layout), with the engine's integer rounding for ``mean``.

Integer semantics only (see :mod:`seedchip.rtl.gather` for the definition);
the requantization is :func:`seedchip.sim.golden.requantize`, the golden of
the shared :class:`~seedchip.rtl.requant.Requantizer`.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from seedchip.emb_protocol import (BoundsMode, GatherError, PoolMode, OFFSET_WIDTH,
                                   TABLE_WIDTH, DIM_WIDTH)
from seedchip.gather_params import GatherParams
from seedchip.sim import golden

__all__ = [
    "TableDesc", "Cmd", "BatchResult", "GatherModel",
    "row_pitch", "pack_row", "unpack_row", "layout_tables", "mean_round",
    "pool_rows", "make_bag_items", "embedding_bag_ref", "cache_line",
]


# -- descriptors -----------------------------------------------------------------

def cache_line(table: int, row: int, cache_rows: int) -> int:
    """The hot-row cache line of ``(table, row)`` (direct-mapped), as the engine
    computes it: the row's low bits XOR ``table * 0x9E5``."""
    return (row ^ (table * 0x9E5)) & (cache_rows - 1)


def row_pitch(dim: int, data_width: int) -> int:
    """Words per row: ``ceil(dim / (data_width // 8))``."""
    lanes = data_width // 8
    return -(-dim // lanes)


@dataclasses.dataclass
class TableDesc:
    """One descriptor write (the ``desc`` stream's fields)."""

    table: int
    base: int
    rows: int
    dim: int
    multiplier: int = 1 << 30
    shift: int = 0

    def pitch(self, data_width: int) -> int:
        return row_pitch(self.dim, data_width)

    def extent(self, data_width: int) -> tuple[int, int]:
        """``(first word, one past the last word)`` of the table."""
        return self.base, self.base + self.rows * self.pitch(data_width)

    def to_wire(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Cmd:
    """One batch command (``CmdLayout``); ``mode``/``bounds`` may be raw ints
    (reserved values included)."""

    mode: PoolMode | int = PoolMode.SUM
    bounds: BoundsMode | int = BoundsMode.FATAL
    weighted: bool = False
    requant: bool = False

    def to_wire(self) -> dict:
        return {"mode": int(getattr(self.mode, "value", self.mode)),
                "bounds": int(getattr(self.bounds, "value", self.bounds)),
                "weighted": int(self.weighted), "requant": int(self.requant)}

    def describe(self) -> str:
        mode = self.mode.name if isinstance(self.mode, PoolMode) else f"mode={self.mode}"
        bounds = self.bounds.name if isinstance(self.bounds, BoundsMode) else f"bounds={self.bounds}"
        flags = [f for f, on in (("weighted", self.weighted), ("requant", self.requant)) if on]
        return "/".join([mode, bounds, *flags])


# -- memory layout -------------------------------------------------------------

def pack_row(row, data_width: int) -> list[int]:
    """The words of one int8 row, little-endian bytes, padding bytes 0."""
    lanes = data_width // 8
    b = (np.asarray(row, dtype=np.int64) & 0xFF).tolist()
    b += [0] * (-len(b) % lanes)
    return [sum(v << (8 * i) for i, v in enumerate(b[w:w + lanes]))
            for w in range(0, len(b), lanes)]


def unpack_row(words, dim: int, data_width: int) -> np.ndarray:
    """Inverse of :func:`pack_row` (padding bytes ignored): int8 values as int64."""
    lanes = data_width // 8
    out = [(int(w) >> (8 * i)) & 0xFF for w in words for i in range(lanes)][:dim]
    a = np.asarray(out, dtype=np.int64)
    return np.where(a >= 128, a - 256, a)


def layout_tables(tables, data_width: int, *, base: int = 0, gap: int = 0, bases=None,
                  depth: int | None = None, rng=None, multipliers=None, shifts=None,
                  sparse: bool = False):
    """Lay int8 tables (``[rows, dim]`` arrays) out in a word memory image.

    Tables follow each other from ``base`` with ``gap`` words between them,
    or start at the given ``bases``. Returns ``(image, descs)``: ``image`` a
    list of ``depth`` words (default: just enough), or with ``sparse`` a dict
    ``{address: word}`` of the tables' words only; ``descs`` a
    :class:`TableDesc` per table (table ids 0, 1, ...). With ``rng``,
    padding bytes and unused words hold random junk (the engine must ignore
    them), else 0.
    """
    descs, placed = [], []
    addr = base
    for t, tab in enumerate(tables):
        tab = np.asarray(tab, dtype=np.int64)
        if tab.ndim != 2 or tab.shape[0] < 1 or tab.shape[1] < 1:
            raise ValueError(f"table {t} must be a non-empty [rows, dim] array, not {tab.shape}")
        start = bases[t] if bases is not None else addr
        d = TableDesc(table=t, base=start, rows=tab.shape[0], dim=tab.shape[1],
                      multiplier=int(multipliers[t]) if multipliers is not None else 1 << 30,
                      shift=int(shifts[t]) if shifts is not None else 0)
        descs.append(d)
        placed.append((d, tab))
        addr = d.extent(data_width)[1] + gap
    end = max([d.extent(data_width)[1] for d in descs] + [0])
    mask = (1 << data_width) - 1
    if sparse:
        image = {}
    else:
        depth = end if depth is None else depth
        if end > depth:
            raise ValueError(f"tables need {end} words, more than depth {depth}")
        if rng is not None:
            image = [int(v) for v in rng.integers(0, mask, size=depth, endpoint=True,
                                                  dtype=np.uint64)]
        else:
            image = [0] * depth
    lanes = data_width // 8
    for d, tab in placed:
        p = d.pitch(data_width)
        pad = d.dim % lanes
        keep = (1 << (8 * pad)) - 1
        for r in range(d.rows):
            words = pack_row(tab[r], data_width)
            if pad and rng is not None:
                # junk in the padding bytes of the last word
                words[-1] |= int(rng.integers(0, mask, endpoint=True, dtype=np.uint64)) & ~keep & mask
            a = d.base + r * p
            if sparse:
                image.update(zip(range(a, a + p), words))
            else:
                image[a:a + p] = words
    return image, descs


# -- pooling -------------------------------------------------------------------

def mean_round(s, n: int):
    """``sign(s) * floor((2|s| + n) / (2n))``: round to nearest, ties away from 0."""
    s = np.asarray(s, dtype=np.int64)
    q = (2 * np.abs(s) + n) // (2 * n)
    return np.where(s < 0, -q, q)


def pool_rows(rows, weights, mode: PoolMode, dim: int) -> np.ndarray:
    """Pool a bag's rows (``[n, dim]`` int8) as the engine does (int64 result)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, dim)
    n = rows.shape[0]
    if n == 0:
        return np.zeros(dim, dtype=np.int64)
    if mode == PoolMode.MAX:
        return rows.max(axis=0)
    w = np.asarray(weights, dtype=np.int64).reshape(n, 1)
    s = (rows * w).sum(axis=0)
    if mode == PoolMode.MEAN:
        return mean_round(s, n)
    return s


# -- the engine model ----------------------------------------------------------

@dataclasses.dataclass
class BatchResult:
    """What one batch does."""

    #: pooled (and, with ``requant``, requantized) values of every bag that
    #: comes out, in bag order: bags ``0 .. len(outputs) - 1``
    outputs: list
    #: ``dim`` of each output bag's table
    dims: list
    error: GatherError = GatherError.NONE
    error_bag: int = 0
    error_index: int = 0
    #: this batch's counts (with MEM_ERROR: up to the first input error; the
    #: engine may have counted further, see :mod:`seedchip.rtl.gather`)
    clamped: int = 0
    skipped: int = 0
    lookups: int = 0
    #: every word the engine reads, in order, as ``(address, table)``; with a
    #: fatal error the engine reads a prefix of this list (all of it up to
    #: the error). Cache hits read nothing.
    requests: list = dataclasses.field(default_factory=list)
    #: with MEM_ERROR and a cache: ``requests[:strict]`` are exact; later reads
    #: depend on when the err response reached the cache (the engine stops
    #: hitting then), so only their extents can be checked
    strict: int | None = None
    #: lookups served by the cache / read from memory (this batch)
    cache_hits: int = 0
    cache_misses: int = 0
    #: input items the batch consumes
    bag_items: int = 0
    indices: int = 0
    bags: int = 0
    #: ``(bag, pool of row numbers looked up)`` for debugging
    looked_up: list = dataclasses.field(default_factory=list)


class GatherModel:
    """The gather engine of ``params`` (a :class:`~seedchip.gather_params.GatherParams`;
    ``inflight`` does not change what the engine computes), one batch at a time.

    ``memory`` is the word image the engine reads: a list, or a dict
    ``{address: word}`` with ``mem_words`` the memory size. A request at an
    address ``>= mem_words`` (default ``len(memory)``) gets ``err``, as
    :class:`~seedchip.rtl.onchip_ram.OnChipRAM` and the SDRAM controller
    answer outside their memory.
    """

    def __init__(self, params: GatherParams, memory=None, *, mem_words: int | None = None):
        if not isinstance(params, GatherParams):
            raise TypeError(f"params must be a GatherParams, not {params!r}")
        self.p = params
        self.memory = memory if memory is not None else []
        if mem_words is None:
            if isinstance(self.memory, dict):
                raise ValueError("a dict memory needs mem_words")
            mem_words = len(self.memory)
        self.mem_words = mem_words
        self.descs: dict[int, TableDesc] = {}
        self.error = GatherError.NONE
        self.error_bag = 0
        self.error_index = 0
        self.clamped = 0
        self.skipped = 0
        self.lookups = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache: dict[int, tuple[int, int]] = {}      # line -> (table, row)

    def cache_clear(self):
        """``cache_clear``, a descriptor write or a memory error: every line invalid."""
        self.cache.clear()

    def _cache_lookup(self, table: int, row: int) -> bool:
        """True on a hit; a miss allocates the line (at issue, as the engine)."""
        if not self.p.cache_rows:
            return False
        line = cache_line(table, row, self.p.cache_rows)
        if self.cache.get(line) == (table, row):
            return True
        self.cache[line] = (table, row)
        return False

    # -- host operations --------------------------------------------------------
    def desc_ok(self, d: TableDesc) -> bool:
        p = self.p
        return (0 <= d.table < p.n_tables and d.rows >= 1 and 1 <= d.dim <= p.max_dim
                and d.base + d.rows * d.pitch(p.data_width) <= 1 << p.addr_width)

    def write_desc(self, d: TableDesc) -> bool:
        """A descriptor write; False (and BAD_DESC, table invalid) if refused."""
        p = self.p
        self.cache_clear()
        for name, v, w in (("table", d.table, TABLE_WIDTH), ("base", d.base, p.addr_width),
                           ("rows", d.rows, p.index_width), ("dim", d.dim, DIM_WIDTH)):
            if not 0 <= v < 1 << w:
                raise ValueError(f"descriptor {name} {v} does not fit {w} bits")
        if self.desc_ok(d):
            self.descs[d.table] = dataclasses.replace(d)
            return True
        self.descs.pop(d.table, None)
        self._set_error(GatherError.BAD_DESC, 0, d.table)
        return False

    def clear(self):
        self.error = GatherError.NONE
        self.error_bag = 0
        self.error_index = 0

    def _set_error(self, code, bag, index):
        if self.error == GatherError.NONE:
            self.error, self.error_bag, self.error_index = code, bag, index

    def read_row(self, d: TableDesc, r: int):
        """(int8 row, first word address with err or None)."""
        p = d.pitch(self.p.data_width)
        words, bad = [], None
        for w in range(p):
            a = d.base + r * p + w
            if a >= self.mem_words:
                if bad is None:
                    bad = a
                words.append(0)
            else:
                words.append(self.memory[a])
        return unpack_row(words, d.dim, self.p.data_width), bad

    # -- one batch -----------------------------------------------------------------
    def run_batch(self, cmd: Cmd, bag_items, indices) -> BatchResult:
        """Run a batch: ``bag_items`` a list of ``(table, offset, last)``
        ending with the only item whose ``last`` is set, ``indices`` a list of
        ``(index, weight)`` (at least as many as the batch consumes).

        Updates the sticky error and the counters, returns a :class:`BatchResult`.
        """
        if self.error != GatherError.NONE:
            raise RuntimeError(f"the engine holds error {self.error.name}: it takes no "
                               f"command until cleared")
        p = self.p
        items = [(int(t), int(o), int(bool(l))) for t, o, l in bag_items]
        if not items or items[-1][2] != 1 or any(l for _, _, l in items[:-1]):
            raise ValueError("bag_items must end with the only item whose last is set")
        for t, o, _ in items:
            if not (0 <= t < 1 << TABLE_WIDTH and 0 <= o < 1 << OFFSET_WIDTH):
                raise ValueError(f"bag item ({t}, {o}) does not fit the wire format")
        offsets = [o for _, o, _ in items]
        n_bags = len(items) - 1
        res = BatchResult(outputs=[], dims=[], bag_items=len(items),
                          indices=max(offsets), bags=n_bags)
        if len(indices) < res.indices:
            raise ValueError(f"the batch consumes {res.indices} indices, only {len(indices)} given")
        mode = cmd.mode if isinstance(cmd.mode, PoolMode) else _enum_or_int(PoolMode, cmd.mode)
        bounds = cmd.bounds if isinstance(cmd.bounds, BoundsMode) else _enum_or_int(BoundsMode, cmd.bounds)

        # Walk the batch in stream order; the first input error stops it.
        input_err = None          # (code, bag, value)
        mem_err = None            # (bag, index)
        done_bags = []            # (desc, pooled values) of bags completed before any error
        if (not isinstance(mode, PoolMode) or not isinstance(bounds, BoundsMode)
                or (cmd.weighted and mode != PoolMode.SUM)):
            input_err = (GatherError.BAD_CMD, 0, 0)
        elif offsets[0] != 0:
            input_err = (GatherError.BAD_OFFSET, 0, offsets[0])
        counts = {"clamped": 0, "skipped": 0, "lookups": 0, "cache_hits": 0, "cache_misses": 0}
        for b in range(n_bags if input_err is None else 0):
            table, lo = items[b][0], items[b][1]
            hi = items[b + 1][1]
            d = self.descs.get(table)
            if table >= p.n_tables or d is None:
                input_err = (GatherError.BAD_TABLE, b, table)
                break
            if hi < lo:
                input_err = (GatherError.BAD_OFFSET, b, hi)
                break
            if hi - lo > p.max_bag:
                input_err = (GatherError.BAG_TOO_LONG, b, hi - lo)
                break
            pitch = d.pitch(p.data_width)
            rows, weights, looked = [], [], []
            for pos in range(lo, hi):
                idx, wt = int(indices[pos][0]), int(indices[pos][1])
                if not 0 <= idx < 1 << p.index_width:
                    raise ValueError(f"index {idx} does not fit {p.index_width} bits")
                if idx >= d.rows:
                    if bounds == BoundsMode.FATAL:
                        input_err = (GatherError.OUT_OF_RANGE, b, idx)
                        break
                    if bounds == BoundsMode.SKIP:
                        counts["skipped"] += 1
                        continue
                    counts["clamped"] += 1
                    r = 0
                else:
                    r = idx
                counts["lookups"] += 1
                looked.append(r)
                if self._cache_lookup(table, r):
                    counts["cache_hits"] += 1
                else:
                    counts["cache_misses"] += int(p.cache_rows > 0)   # 0 without a cache
                    for w in range(pitch):
                        res.requests.append((d.base + r * pitch + w, table))
                row, bad = self.read_row(d, r)
                if bad is not None and mem_err is None:
                    mem_err = (b, idx)
                    if p.cache_rows:
                        res.strict = len(res.requests)
                rows.append(row)
                weights.append(wt if cmd.weighted else 1)
            if input_err is not None:
                break
            res.looked_up.append((b, looked))
            pooled = pool_rows(np.array(rows, dtype=np.int64).reshape(-1, d.dim), weights,
                               mode, d.dim)
            if cmd.requant:
                pooled = golden.requantize(pooled, d.multiplier, d.shift)
            done_bags.append((d, pooled))

        if mem_err is not None:
            res.error, res.error_bag, res.error_index = GatherError.MEM_ERROR, *mem_err
        elif input_err is not None:
            res.error, res.error_bag, res.error_index = input_err
        n_out = len(done_bags)
        if res.error != GatherError.NONE:
            n_out = min(n_out, res.error_bag)
        res.outputs = [v for _, v in done_bags[:n_out]]
        res.dims = [d.dim for d, _ in done_bags[:n_out]]
        res.clamped, res.skipped, res.lookups = counts["clamped"], counts["skipped"], counts["lookups"]
        self.clamped += res.clamped
        self.skipped += res.skipped
        self.lookups += res.lookups
        res.cache_hits, res.cache_misses = counts["cache_hits"], counts["cache_misses"]
        self.cache_hits += res.cache_hits
        self.cache_misses += res.cache_misses
        if res.error == GatherError.MEM_ERROR:
            self.cache_clear()
        if res.error != GatherError.NONE:
            self._set_error(res.error, res.error_bag, res.error_index)
        return res


def _enum_or_int(enum_cls, v):
    try:
        return enum_cls(int(v))
    except ValueError:
        return int(v)


# -- input helpers -------------------------------------------------------------------

def make_bag_items(tables, offsets) -> list[tuple[int, int, int]]:
    """``bags`` stream items from per-bag tables and ``offsets`` (length B + 1)."""
    if len(offsets) != len(tables) + 1:
        raise ValueError("offsets must have one entry more than tables")
    items = [(int(t), int(o), 0) for t, o in zip(tables, offsets[:-1])]
    items.append((0, int(offsets[-1]), 1))
    return items


# -- PyTorch semantics -------------------------------------------------------------

def embedding_bag_ref(weight, indices, offsets, mode: str = "sum",
                      per_sample_weights=None) -> np.ndarray:
    """``torch.nn.functional.embedding_bag(indices, weight, offsets, mode=mode,
    per_sample_weights=..., include_last_offset=True)`` on int8 ``weight``,
    except that ``mean`` rounds the exact quotient to the nearest integer,
    ties away from zero. Empty bags are zeros. Returns ``[B, dim]`` int64.
    """
    weight = [[int(v) for v in r] for r in np.asarray(weight)]
    dim = len(weight[0])
    indices = [int(i) for i in indices]
    offsets = [int(o) for o in offsets]
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode must be 'sum', 'mean' or 'max', not {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise ValueError("per_sample_weights only with mode='sum' (as in PyTorch)")
    out = []
    for b in range(len(offsets) - 1):
        bag = list(range(offsets[b], offsets[b + 1]))
        if not bag:
            out.append([0] * dim)
            continue
        vals = []
        for d in range(dim):
            col = [weight[indices[k]][d] * (1 if per_sample_weights is None
                                            else int(per_sample_weights[k])) for k in bag]
            if mode == "max":
                vals.append(max(col))
            elif mode == "sum":
                vals.append(sum(col))
            else:
                q = Fraction(sum(col), len(bag))
                mag = abs(q)
                r = int(mag) + (1 if mag - int(mag) >= Fraction(1, 2) else 0)
                vals.append(r if q >= 0 else -r)
        out.append(vals)
    return np.array(out, dtype=np.int64).reshape(len(offsets) - 1, dim)
