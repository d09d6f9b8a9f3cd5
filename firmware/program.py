"""Assembler and program builder for the seedchip ISA (:mod:`seedchip.isa`).

:class:`Program` collects instructions (``p.gemm(...)``, ``p.gather(...)``,
``p.copy(...)``, ``p.interact(...)``, ``p.nop(...)``, ``p.finish()``) and
turns them into the bytes the control unit fetches (:meth:`Program.to_bytes`);
``str(p)`` disassembles, :meth:`Program.from_bytes` reads a program back.

Wait masks are computed from the bytes each instruction reads and writes
unless a call passes ``wait=`` explicitly: an instruction waits for another
unit when an instruction of that unit that may still be running (dispatched
since that unit was last drained by a wait) writes bytes this one reads or
writes, or reads bytes this one writes. Instructions of one unit never
overlap, so they need no wait among themselves. GATHER's reads depend on
its data: the builder takes the tables (:class:`Table`) and the number of
indices the program provides (``n_indices``) and assumes every row of every
table may be read.

Memory layout helpers: :class:`Allocator` (an aligned bump allocator with
names that prints a memory map), :func:`param_records`,
:func:`desc_records`, :func:`table_image`, :func:`u32_array`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seedchip import isa
from seedchip.checks import check_int
from seedchip.emb_protocol import BoundsMode, PoolMode
from seedchip.isa import ALIGN, Unit
from seedchip.protocol import check_requant_params

__all__ = ["Program", "Table", "Allocator", "param_records", "desc_records",
           "table_image", "u32_array"]


# -- data records --------------------------------------------------------------

def param_records(bias, multiplier=None, shift=None) -> bytes:
    """N GEMM param records (:data:`~seedchip.isa.ParamRecord`): one per output
    channel. ``multiplier``/``shift`` may be None (bias only, no requant)."""
    bias = np.asarray(bias, dtype=np.int64).reshape(-1)
    n = bias.size
    mult = np.zeros(n, np.int64) if multiplier is None else \
        np.broadcast_to(np.asarray(multiplier, dtype=np.int64), (n,))
    sh = np.zeros(n, np.int64) if shift is None else \
        np.broadcast_to(np.asarray(shift, dtype=np.int64), (n,))
    out = []
    for c in range(n):
        check_requant_params(mult[c], sh[c], name=f"channel {c}")
        out.append(isa.pack_record(isa.ParamRecord, bias=int(bias[c]),
                                   multiplier=int(mult[c]), shift=int(sh[c])))
    return b"".join(out)


@dataclasses.dataclass(frozen=True)
class Table:
    """An int8 embedding table in chip memory: row r at ``base + r * pitch``,
    ``pitch = table_pitch(dim)``; ``multiplier``/``shift`` requantize its
    pooled vectors (GATHER with ``requant``)."""
    base: int
    rows: int
    dim: int
    multiplier: int = 1 << 30
    shift: int = 0

    def __post_init__(self):
        check_int("base", self.base, 0, isa.ADDR_LIMIT - 1)
        if self.base % ALIGN:
            raise ValueError(f"base must be a multiple of {ALIGN}, not {self.base!r}")
        check_int("rows", self.rows, 1, (1 << 32) - 1)
        check_int("dim", self.dim, 1, (1 << 16) - 1)
        check_requant_params(self.multiplier, self.shift, name="table")

    @property
    def pitch(self) -> int:
        return isa.table_pitch(self.dim)

    @property
    def nbytes(self) -> int:
        return self.rows * self.pitch


def desc_records(tables) -> bytes:
    """One GATHER descriptor record (:data:`~seedchip.isa.DescRecord`) per table."""
    return b"".join(isa.pack_record(isa.DescRecord, base=t.base, rows=t.rows, dim=t.dim,
                                    shift=t.shift, multiplier=t.multiplier) for t in tables)


def table_image(weight) -> bytes:
    """The bytes of an int8 ``[rows, dim]`` table, each row padded to the pitch with 0."""
    w = np.asarray(weight, dtype=np.int64)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"weight must be a non-empty [rows, dim] array, not shape {w.shape}")
    if w.min() < -128 or w.max() > 127:
        raise ValueError("weight must hold int8 values (-128..127)")
    img = np.zeros((w.shape[0], isa.table_pitch(w.shape[1])), dtype=np.int8)
    img[:, :w.shape[1]] = w
    return img.tobytes()


def u32_array(values) -> bytes:
    """Little-endian u32 values (GATHER indices and offsets)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 1 << 32):
        raise ValueError("values must be in range 0..2**32-1")
    return v.astype("<u4").tobytes()


# -- memory allocation -----------------------------------------------------------

class Allocator:
    """Places named buffers in chip memory one after the other, each aligned
    (default ALIGN), from ``base`` up to ``size`` bytes; ``str()`` is the map."""

    def __init__(self, size: int, *, base: int = 0):
        check_int("size", size, 1, isa.ADDR_LIMIT)
        check_int("base", base, 0, size)
        self.size = size
        self.next = base
        self.regions: dict[str, tuple[int, int]] = {}

    def alloc(self, name: str, nbytes: int, *, align: int = ALIGN) -> int:
        """The address of a new buffer ``name`` of ``nbytes`` bytes."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, not {name!r}")
        if name in self.regions:
            raise ValueError(f"{name!r} is already allocated")
        check_int("nbytes", nbytes, 0, isa.ADDR_LIMIT)
        check_int("align", align, 1, isa.ADDR_LIMIT)
        if align % ALIGN:
            raise ValueError(f"align must be a multiple of {ALIGN}, not {align!r}")
        addr = isa.round_up(self.next, align)
        if addr + nbytes > self.size:
            raise ValueError(f"{name!r} ({nbytes} bytes) does not fit: {self.size - addr} "
                             f"bytes left of {self.size}")
        self.regions[name] = (addr, nbytes)
        self.next = addr + nbytes
        return addr

    def __getitem__(self, name) -> int:
        return self.regions[name][0]

    @property
    def used(self) -> int:
        return self.next

    def __str__(self):
        lines = [f"0x{a:08x}..0x{a + n:08x} {n:10d} B  {name}"
                 for name, (a, n) in sorted(self.regions.items(), key=lambda kv: kv[1])]
        lines.append(f"{self.next} of {self.size} bytes used")
        return "\n".join(lines)


# -- the program builder --------------------------------------------------------------

_EVERYTHING = [(0, isa.ADDR_LIMIT)]


class Program:
    """A program under construction: instructions at ``base``, ``base + 32``, ...

    With ``limits`` and ``mem_bytes`` every instruction is checked with
    :func:`seedchip.isa.validate` as it is added (ValueError naming the check).
    """

    def __init__(self, *, base: int = 0, limits: isa.Limits | None = None,
                 mem_bytes: int | None = None):
        check_int("base", base, 0, isa.ADDR_LIMIT - isa.INSN_BYTES)
        if base % isa.PC_ALIGN:
            raise ValueError(f"base must be a multiple of {isa.PC_ALIGN}, not {base!r}")
        if (limits is None) != (mem_bytes is None):
            raise ValueError("give both limits and mem_bytes, or neither")
        self.base = base
        self.limits = limits
        self.mem_bytes = mem_bytes
        self.insns: list = []
        # per unit: (reads, writes) of instructions that may still run
        self._pending = {u: [] for u in Unit}

    # -- plumbing ------------------------------------------------------------
    def _auto_wait(self, unit, reads, writes) -> int:
        mask = 0
        for u in Unit:
            if u == unit:
                continue
            for pr, pw in self._pending[u]:
                hit = isa.intervals_overlap
                if hit(pw, reads) or hit(pw, writes) or hit(pr, writes):
                    mask |= 1 << u.value
                    break
        return mask

    def _add(self, insn, reads, writes, wait):
        unit = isa.unit_of(insn)
        reads, writes = isa.merge_intervals(reads), isa.merge_intervals(writes)
        if wait is None:
            mask = self._auto_wait(unit, reads, writes)
        else:
            mask = isa.wait_mask(wait)
        insn = dataclasses.replace(insn, wait=mask)
        if self.limits is not None:
            v = isa.validate(insn, self.limits, self.mem_bytes)
            if not v.ok:
                raise ValueError(f"{insn.opcode.name} at 0x{self.pc:x}: {v.error.name} "
                                 f"({v.detail.name})")
        isa.encode(insn)          # every field fits its bits, or ValueError now
        for u in Unit:
            if mask >> u.value & 1 or u == unit:
                self._pending[u] = []
        if unit is not None:
            self._pending[unit].append((reads, writes))
        self.insns.append(insn)
        return insn

    @property
    def pc(self) -> int:
        """Where the next instruction goes."""
        return self.base + isa.INSN_BYTES * len(self.insns)

    # -- instructions --------------------------------------------------------------
    def gemm(self, *, a_addr, b_addr, c_addr, m, k, n, a_stride=None, b_stride=None,
             c_stride=None, p_addr=None, requant=False, relu=False, acc=False, wait=None):
        """``C = post(A @ B)``. With ``p_addr`` N param records are read (bias, and
        with ``requant`` multiplier/shift: int8 output; else int32). With ``acc``
        C = post(A @ B + C_in), C_in the int32 matrix at c_addr, updated in place
        (its reads count for the wait masks). Strides default to the row's bytes
        (C: 4 * n with ``acc``) rounded up to ALIGN."""
        es = 4 if acc else isa.out_bytes(requant)
        g = isa.Gemm(a_addr=a_addr, b_addr=b_addr, c_addr=c_addr,
                     p_addr=0 if p_addr is None else p_addr, m=m, k=k, n=n,
                     a_stride=isa.round_up(k) if a_stride is None else a_stride,
                     b_stride=isa.round_up(n) if b_stride is None else b_stride,
                     c_stride=isa.round_up(n * es) if c_stride is None else c_stride,
                     params=p_addr is not None, requant=requant, relu=relu, acc=acc)
        return self._add(g, *isa.regions(g), wait)

    def gather(self, *, desc_addr, idx_addr, off_addr, out_addr, batch, tables, n_indices,
               out_stride, out_tstride, w_addr=None, mode=PoolMode.SUM,
               bounds=BoundsMode.FATAL, requant=False, wait=None):
        """EmbeddingBags over ``tables`` (the :class:`Table` list whose
        :func:`desc_records` are at ``desc_addr``), ``n_indices`` indices at
        ``idx_addr`` (and int8 weights at ``w_addr``: WEIGHTED)."""
        tables = list(tables)
        check_int("n_indices", n_indices, 0, (1 << 32) - 1)
        g = isa.Gather(desc_addr=desc_addr, idx_addr=idx_addr, off_addr=off_addr,
                       w_addr=0 if w_addr is None else w_addr, out_addr=out_addr, batch=batch,
                       n_tables=len(tables), out_stride=out_stride, out_tstride=out_tstride,
                       mode=mode, bounds=bounds, weighted=w_addr is not None, requant=requant)
        reads, _ = isa.regions(g)
        reads += [(t.base, t.base + t.nbytes) for t in tables]
        reads.append((idx_addr, idx_addr + 4 * n_indices))
        if w_addr is not None:
            reads.append((w_addr, w_addr + n_indices))
        es = isa.out_bytes(requant)
        writes = [(out_addr + b * out_stride + t * out_tstride,
                   out_addr + b * out_stride + t * out_tstride + tab.dim * es)
                  for t, tab in enumerate(tables) for b in range(batch)]
        return self._add(g, reads, writes, wait)

    def copy(self, *, src, dst, rows, row_bytes, src_stride=None, dst_stride=None, wait=None):
        """``rows`` rows of ``row_bytes`` bytes; strides default to the row's
        bytes rounded up to ALIGN."""
        c = isa.Copy(src=src, dst=dst, rows=rows, row_bytes=row_bytes,
                     src_stride=isa.round_up(row_bytes) if src_stride is None else src_stride,
                     dst_stride=isa.round_up(row_bytes) if dst_stride is None else dst_stride)
        return self._add(c, *isa.regions(c), wait)

    def interact(self, *, src, dst, batch, n_vec, dim, multiplier=0, shift=0, p_addr=None,
                 vec_stride=None, in_stride=None, out_stride=None, wait=None):
        """The DLRM dot interaction; by default the ``n_vec`` vectors of a sample
        are consecutive (``vec_stride`` = dim rounded up), samples follow each
        other, and the outputs of a sample are ``out_stride`` apart (pairs
        rounded up). Every pair is requantized with ``multiplier``/``shift``,
        or, given ``p_addr``, pair p with param record p there (PARAMS:
        :func:`param_records` of the per-pair multipliers and shifts)."""
        check_requant_params(multiplier, shift, name="interaction")
        vs = isa.round_up(dim) if vec_stride is None else vec_stride
        x = isa.Interact(src=src, dst=dst, multiplier=multiplier, shift=shift, batch=batch,
                         p_addr=0 if p_addr is None else p_addr, params=p_addr is not None,
                         dim=dim, n_vec=n_vec, vec_stride=vs,
                         in_stride=vs * n_vec if in_stride is None else in_stride,
                         out_stride=isa.round_up(isa.pairs(n_vec)) if out_stride is None
                         else out_stride)
        return self._add(x, *isa.regions(x), wait)

    def nop(self, *, wait=0):
        """A barrier when ``wait`` names units (``isa.WAIT_ALL``: all)."""
        return self._add(isa.Nop(), [], [], wait)

    def finish(self):
        """End of program: waits for every unit."""
        return self._add(isa.Finish(), [], [], isa.WAIT_ALL)

    # -- output ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return b"".join(isa.encode(i) for i in self.insns)

    def __len__(self):
        return len(self.insns)

    def __iter__(self):
        return iter(self.insns)

    def __str__(self):
        return "\n".join(f"0x{self.base + isa.INSN_BYTES * n:08x}: {isa.format_insn(i)}"
                         for n, i in enumerate(self.insns))

    @classmethod
    def from_bytes(cls, raw, *, base: int = 0) -> "Program":
        """The program in ``raw`` (a multiple of 32 bytes), waits as encoded.
        Instructions added later wait as if every GATHER read would write
        all memory (its real extents are not in its fields)."""
        raw = bytes(raw)
        if len(raw) % isa.INSN_BYTES:
            raise ValueError(f"a program is a multiple of {isa.INSN_BYTES} bytes, not {len(raw)}")
        p = cls(base=base)
        for off in range(0, len(raw), isa.INSN_BYTES):
            insn = isa.decode(raw[off:off + isa.INSN_BYTES])
            if isinstance(insn, isa.Illegal):
                p.insns.append(insn)
                continue
            reads, writes = isa.regions(insn)
            if isinstance(insn, isa.Gather):
                reads, writes = _EVERYTHING, _EVERYTHING
            p._add(dataclasses.replace(insn, wait=0), reads, writes,
                   insn.wait if insn.wait <= isa.WAIT_ALL else 0)
            if insn.wait > isa.WAIT_ALL or insn.reserved:
                p.insns[-1] = insn                 # keep the word exactly as it was
        return p
