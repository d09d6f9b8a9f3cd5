"""Bit-exact golden executor of the seedchip ISA (:mod:`seedchip.isa`).

:class:`ChipModel` holds a byte memory (NumPy ``uint8``) and runs a program
one instruction at a time: fetch, :func:`seedchip.isa.validate`, execute.
GEMM is :func:`seedchip.sim.golden.gemm`, GATHER runs the gather engine's
model (:class:`seedchip.sim.emb_golden.GatherModel`) on the instruction's
bags, INTERACT is the matrix unit's dot products with
:func:`seedchip.sim.golden.requantize`. Every access is checked before it is
made: nothing is ever written outside memory.

The model runs instructions in program order; the chip overlaps them on its
three units as their ``wait`` masks allow. :func:`check_hazards` replays the
dispatch rule over the trace of a run (the bytes each instruction really
read and wrote) and reports every pair of instructions that may run at the
same time and touch the same bytes with at least one write, so a missing
wait bit shows up here instead of as a race on silicon.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seedchip import isa
from seedchip.emb_protocol import GatherError
from seedchip.gather_params import GatherParams
from seedchip.isa import ChipError, ChipState, Limits, Operand, Status, Unit
from seedchip.sim import emb_golden, golden

__all__ = ["ChipModel", "TraceEntry", "Hazard", "check_hazards", "merge", "overlaps"]


@dataclasses.dataclass
class TraceEntry:
    """One executed instruction: where, its unit and wait mask, and the byte
    intervals ``[lo, hi)`` it read and wrote."""
    pc: int
    insn: object
    unit: Unit | None
    wait: int
    reads: list
    writes: list


class _Fault(Exception):
    def __init__(self, error, detail=0, bag=0, index=0):
        super().__init__(error)
        self.error, self.bag, self.index = error, bag, index
        self.detail = int(getattr(detail, "value", detail))


class _Words:
    """The byte memory seen as ALIGN-byte little-endian words (the gather
    engine model's memory)."""

    def __init__(self, mem):
        self.mem = mem

    def __getitem__(self, a):
        return int.from_bytes(self.mem[a * isa.ALIGN:(a + 1) * isa.ALIGN].tobytes(), "little")


class ChipModel:
    """The chip as a program sees it: ``mem_bytes`` bytes of memory and the
    units' ``limits`` (:class:`seedchip.isa.Limits`)."""

    def __init__(self, mem_bytes: int, limits: Limits | None = None):
        if not isinstance(mem_bytes, int) or isinstance(mem_bytes, bool):
            raise TypeError(f"mem_bytes must be an integer, not {mem_bytes!r}")
        if not isa.INSN_BYTES <= mem_bytes <= isa.ADDR_LIMIT or mem_bytes % isa.ALIGN:
            raise ValueError(f"mem_bytes must be a multiple of {isa.ALIGN} in range "
                             f"{isa.INSN_BYTES}..{isa.ADDR_LIMIT}, not {mem_bytes!r}")
        self.mem_bytes = mem_bytes
        self.limits = limits if limits is not None else Limits()
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a Limits, not {limits!r}")
        self.mem = np.zeros(mem_bytes, dtype=np.uint8)
        self.trace: list[TraceEntry] = []
        self.status = Status(ChipState.IDLE)

    # -- host access ---------------------------------------------------------------
    def _span(self, addr, n):
        if not (isinstance(addr, int) and isinstance(n, int) and addr >= 0 and n >= 0
                and addr + n <= self.mem_bytes):
            raise ValueError(f"[{addr!r}, +{n!r}) is not inside memory (0..{self.mem_bytes})")

    def write(self, addr: int, value):
        """Write bytes, or a NumPy array (its little-endian bytes), at ``addr``."""
        if isinstance(value, np.ndarray):
            value = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
        value = bytes(value)
        self._span(addr, len(value))
        self.mem[addr:addr + len(value)] = np.frombuffer(value, dtype=np.uint8)

    def read(self, addr: int, n: int) -> bytes:
        self._span(addr, n)
        return self.mem[addr:addr + n].tobytes()

    def read_matrix(self, addr, rows, cols, stride, dtype=np.int8) -> np.ndarray:
        """``rows`` x ``cols`` elements of ``dtype`` (little-endian), row r at
        ``addr + r * stride``, as int64."""
        dt = np.dtype(dtype).newbyteorder("<")
        self._span(addr, (rows - 1) * stride + cols * dt.itemsize if rows else 0)
        return np.stack([np.frombuffer(self.read(addr + r * stride, cols * dt.itemsize), dt)
                         for r in range(rows)]).astype(np.int64)

    # -- internal access (operands already checked) -----------------------------
    def _rows(self, addr, rows, stride, nbytes) -> np.ndarray:
        idx = addr + np.arange(rows, dtype=np.int64)[:, None] * stride + np.arange(nbytes)
        return self.mem[idx]

    def _put_rows(self, addr, stride, block: np.ndarray):
        for r, row in enumerate(block):
            a = addr + r * stride
            self.mem[a:a + row.size] = row

    # -- running --------------------------------------------------------------------
    def run(self, pc: int = 0) -> Status:
        """Run the program at ``pc`` up to FINISH or the first error; the
        :class:`~seedchip.isa.Status` is also left in ``self.status``, the
        executed instructions in ``self.trace``."""
        self.trace = []
        retired = 0
        while True:
            try:
                if pc % isa.PC_ALIGN:
                    raise _Fault(ChipError.BAD_ALIGN, Operand.PC)
                if pc + isa.INSN_BYTES > self.mem_bytes:
                    raise _Fault(ChipError.ADDR_RANGE, Operand.PC)
                insn = isa.decode(self.read(pc, isa.INSN_BYTES))
                v = isa.validate(insn, self.limits, self.mem_bytes)
                if not v.ok:
                    raise _Fault(v.error, v.detail.value)
                entry = TraceEntry(pc, insn, isa.unit_of(insn), insn.wait, [], [])
                if isinstance(insn, isa.Finish):
                    entry.wait = isa.WAIT_ALL
                self.trace.append(entry)
                getattr(self, f"_exec_{insn.opcode.name.lower()}")(insn, entry)
            except _Fault as f:
                self.status = Status(ChipState.ERROR, f.error, f.detail, f.bag, f.index, pc,
                                     retired)
                return self.status
            retired += 1
            if isinstance(insn, isa.Finish):
                self.status = Status(ChipState.DONE, pc=pc, retired=retired)
                return self.status
            pc += isa.INSN_BYTES

    def _exec_nop(self, insn, entry):
        pass

    def _exec_finish(self, insn, entry):
        pass

    def _exec_gemm(self, g: isa.Gemm, entry):
        entry.reads, entry.writes = isa.regions(g)
        a = self._rows(g.a_addr, g.m, g.a_stride, g.k).view(np.int8)
        b = self._rows(g.b_addr, g.k, g.b_stride, g.n).view(np.int8)
        # ACC: C_in is read whole before anything is written (in place)
        c_in = (self._rows(g.c_addr, g.m, g.c_stride, 4 * g.n).view("<i4").astype(np.int64)
                if g.acc else None)
        bias = mult = shift = None
        if g.params:
            raw = self.read(g.p_addr, g.n * isa.PARAM_BYTES)
            recs = [isa.unpack_record(isa.ParamRecord, raw[i:i + isa.PARAM_BYTES])
                    for i in range(0, len(raw), isa.PARAM_BYTES)]
            bias = [r["bias"] for r in recs]
            if g.requant:
                mult = [r["multiplier"] for r in recs]
                shift = [r["shift"] for r in recs]
        raw = golden.gemm_raw(a, b)
        if c_in is not None:
            raw = golden.wrap(raw + c_in)
        c = golden.postprocess(raw, bias, mult, shift, relu=g.relu)
        dt = "<i1" if g.requant else "<i4"
        self._put_rows(g.c_addr, g.c_stride, c.astype(dt).view(np.uint8).reshape(g.m, -1))

    def _exec_copy(self, c: isa.Copy, entry):
        entry.reads, entry.writes = isa.regions(c)
        block = self._rows(c.src, c.rows, c.src_stride, c.row_bytes)
        self._put_rows(c.dst, c.dst_stride, block)

    def _exec_interact(self, x: isa.Interact, entry):
        entry.reads, entry.writes = isa.regions(x)
        lo, hi = np.tril_indices(x.n_vec, -1)     # (1,0), (2,0), (2,1), (3,0), ...
        out = np.empty((x.batch, isa.pairs(x.n_vec)), dtype=np.int64)
        mult, shift = x.multiplier, x.shift
        if x.params:                                # a multiplier and shift per pair
            recs = [isa.unpack_record(isa.ParamRecord, r) for r in self._rows(
                x.p_addr, isa.pairs(x.n_vec), isa.PARAM_BYTES, isa.PARAM_BYTES)]
            mult = np.array([r["multiplier"] for r in recs], np.int64)
            shift = np.array([r["shift"] for r in recs], np.int64)
        for b in range(x.batch):
            t = self._rows(x.src + b * x.in_stride, x.n_vec, x.vec_stride, x.dim).view(np.int8)
            z = golden.gemm_raw(t, t.T)
            out[b] = golden.requantize(z[lo, hi], mult, shift)
        self._put_rows(x.dst, x.out_stride, out.astype(np.int8).view(np.uint8))

    def _exec_gather(self, g: isa.Gather, entry):
        lim, T, B = self.limits, g.n_tables, g.batch
        es = isa.out_bytes(g.requant)
        entry.reads = isa.regions(g)[0]
        raw = self.read(g.desc_addr, T * isa.DESC_BYTES)
        descs = []
        for t in range(T):
            d = isa.unpack_record(isa.DescRecord, raw[t * isa.DESC_BYTES:(t + 1) * isa.DESC_BYTES])
            if not (d["rows"] >= 1 and 1 <= d["dim"] <= lim.max_dim and d["base"] % isa.ALIGN == 0
                    and d["base"] + d["rows"] * isa.table_pitch(d["dim"]) <= self.mem_bytes):
                raise _Fault(ChipError.GATHER_ERROR, GatherError.BAD_DESC.value, 0, t)
            if (g.out_addr + (B - 1) * g.out_stride + t * g.out_tstride + d["dim"] * es
                    > self.mem_bytes):
                raise _Fault(ChipError.ADDR_RANGE, Operand.OUT_ADDR.value, 0, t)
            descs.append(d)
        offsets = np.frombuffer(self.read(g.off_addr, 4 * (T * B + 1)), "<u4").astype(np.int64)
        # The chip's own checks (index array inside memory) interleave with the
        # engine's per-bag input checks; find the first bag either stops, then
        # let the engine model run the bags before it.
        stop = None                                    # (bag, _Fault) of a pre-lookup error
        if offsets[0] != 0:
            stop = (0, _Fault(ChipError.GATHER_ERROR, GatherError.BAD_OFFSET.value, 0,
                              int(offsets[0])))
        for i in range(T * B if stop is None else 0):
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            f = None
            if hi < lo:
                f = _Fault(ChipError.GATHER_ERROR, GatherError.BAD_OFFSET.value, i, hi)
            elif hi - lo > lim.max_bag:
                f = _Fault(ChipError.GATHER_ERROR, GatherError.BAG_TOO_LONG.value, i, hi - lo)
            elif g.idx_addr + 4 * hi > self.mem_bytes:
                f = _Fault(ChipError.ADDR_RANGE, Operand.IDX_ADDR.value, i, hi)
            elif g.weighted and g.w_addr + hi > self.mem_bytes:
                f = _Fault(ChipError.ADDR_RANGE, Operand.W_ADDR.value, i, hi)
            if f is not None:
                stop = (i, f)
                break
        n_bags = T * B if stop is None else stop[0]
        n_idx = int(offsets[n_bags]) if n_bags else 0
        idx = np.frombuffer(self.read(g.idx_addr, 4 * n_idx), "<u4").astype(np.int64)
        entry.reads.append((g.idx_addr, g.idx_addr + 4 * n_idx))
        if g.weighted:
            wts = np.frombuffer(self.read(g.w_addr, n_idx), np.int8).astype(np.int64)
            entry.reads.append((g.w_addr, g.w_addr + n_idx))
        else:
            wts = np.zeros(n_idx, dtype=np.int64)
        res = None
        if n_bags:
            model = emb_golden.GatherModel(
                GatherParams(data_width=8 * isa.ALIGN, addr_width=32, lanes=isa.ALIGN,
                             cache_rows=0, n_tables=lim.n_tables, max_dim=lim.max_dim,
                             max_bag=lim.max_bag, index_width=32),
                _Words(self.mem), mem_words=self.mem_bytes // isa.ALIGN)
            for t, d in enumerate(descs):
                ok = model.write_desc(emb_golden.TableDesc(
                    table=t, base=d["base"] // isa.ALIGN, rows=d["rows"], dim=d["dim"],
                    multiplier=d["multiplier"], shift=d["shift"]))
                if not ok:                           # pragma: no cover - checked above
                    raise AssertionError(f"descriptor {t} refused by the engine model")
            items = emb_golden.make_bag_items([i // B for i in range(n_bags)],
                                              offsets[:n_bags + 1])
            res = model.run_batch(emb_golden.Cmd(mode=g.mode, bounds=g.bounds,
                                                 weighted=g.weighted, requant=g.requant),
                                  items, list(zip(idx.tolist(), wts.tolist())))
            for i, pooled in enumerate(res.outputs):
                t, b = divmod(i, B)
                a = g.out_addr + b * g.out_stride + t * g.out_tstride
                v = np.asarray(pooled, dtype=np.int64)
                v = v.astype("<i1") if g.requant else golden.wrap(v).astype("<i4")
                self.write(a, v)
                entry.writes.append((a, a + v.nbytes))
            for bag, rows in res.looked_up:
                d = descs[bag // B]
                p = isa.table_pitch(d["dim"])
                entry.reads += [(d["base"] + r * p, d["base"] + (r + 1) * p) for r in rows]
            if res.error != GatherError.NONE:
                if res.error == GatherError.MEM_ERROR:   # pragma: no cover - extents checked
                    raise AssertionError("the engine model read outside memory")
                raise _Fault(ChipError.GATHER_ERROR, res.error.value, res.error_bag,
                             res.error_index)
        if stop is not None:
            raise stop[1]


# -- hazards -------------------------------------------------------------------------

#: the byte-interval helpers (defined once in :mod:`seedchip.isa`)
merge = isa.merge_intervals
overlaps = isa.intervals_overlap


@dataclasses.dataclass(frozen=True)
class Hazard:
    """Instructions at ``first`` and ``second`` (pcs; ``first`` earlier in program
    order) may run at the same time and ``kind`` is what collides: "RAW" (the
    later reads what the earlier writes), "WAR", "WAW"; ``first == second``:
    "SELF" (an instruction reads bytes it writes, but for a GEMM ACC's in-place
    C) or "CODE" (``first`` writes
    the instruction at ``second``)."""
    first: int
    second: int
    kind: str

    def __str__(self):
        return f"{self.kind} hazard between 0x{self.first:x} and 0x{self.second:x}"


def _self_reads(e: TraceEntry, r):
    """The reads of ``e`` that may not overlap its own writes: all of them but a
    GEMM ACC's C_in, which it updates in place (defined behaviour)."""
    if isinstance(e.insn, isa.Gemm) and e.insn.acc:
        return merge(isa.regions(dataclasses.replace(e.insn, acc=False))[0])
    return r


def check_hazards(trace) -> list[Hazard]:
    """Replay the dispatch rule over ``trace`` (``ChipModel.trace`` of a run):
    an instruction dispatches after every earlier instruction of its own unit
    and of the units its wait mask names has finished; anything else earlier
    may still run. Returns the hazards in program order (empty: race-free)."""
    ents = [(e, merge(e.reads), merge(e.writes)) for e in trace]
    pending = {u: [] for u in Unit}
    found = []
    for e, r, w in ents:
        for u in Unit:
            if e.wait >> u.value & 1 or u == e.unit:
                pending[u] = []
        if overlaps(_self_reads(e, r), w) and e.unit is not None:
            found.append(Hazard(e.pc, e.pc, "SELF"))
        for u in Unit:
            for (p, pr, pw) in pending[u]:
                kinds = [kind for kind, x, y in (("RAW", pw, r), ("WAW", pw, w), ("WAR", pr, w))
                         if overlaps(x, y)]
                if kinds:
                    found.append(Hazard(p.pc, e.pc, kinds[0]))
        if e.unit is not None:
            pending[e.unit].append((e, r, w))
    # an instruction may not write code that is fetched after it
    for k, (e, _, w) in enumerate(ents):
        for later, _, _ in ents[k + 1:]:
            if overlaps(w, [(later.pc, later.pc + isa.INSN_BYTES)]):
                found.append(Hazard(e.pc, later.pc, "CODE"))
    return found
