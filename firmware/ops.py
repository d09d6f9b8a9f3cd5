"""Whole operations on a device: a GEMM of any size, an EmbeddingBag.

Each function lays its operands out in chip memory, writes them, builds a
program (:class:`~seedchip.firmware.program.Program`), runs it on the device
and reads the result back. A *device* is anything with ``write(addr,
data)``, ``read(addr, n)``, ``run(program)`` and ``info()["mem_bytes"]``: a
:class:`~seedchip.firmware.device.Device` (the RTL in simulation or a
board), or :class:`GoldenDevice`, the golden executor behind the same
calls.

GEMM tiling. One GEMM instruction covers up to ``max_m x max_k x max_n``
(the matrix unit's buffers, :class:`~seedchip.isa.Limits`); larger M and N
are tiled into several instructions of one program, each reading its
block of A and B in place through the strides and writing its block of C.
A K larger than ``max_k`` is split into chunks, still in the one program:
for each (M, N) tile the first chunk writes its int32 partial C, the next
ones accumulate onto it in place (GEMM ACC) and the last one also applies
bias, requantization and ReLU, so the whole result is computed on the chip
and the data never leaves it. C is then laid out as int32 rows (``4 * n``
bytes); with requantization each tile's int8 result sits at the start of
the tile's int32 span (ACC writes in place), which the host reads back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import isa
from ..emb_protocol import BoundsMode, PoolMode
from .program import Allocator, Program, Table, desc_records, param_records, table_image, u32_array

__all__ = ["GoldenDevice", "GemmRun", "gemm", "gemm_layout", "BagRun", "embedding_bag",
           "bag_layout", "FitError"]


class FitError(ValueError):
    """The operands do not fit in the device's memory."""


class GoldenDevice:
    """The golden executor (:class:`~seedchip.sim.chip_golden.ChipModel`) with a
    device's calls, for checking programs without RTL."""

    def __init__(self, mem_bytes: int, limits: isa.Limits | None = None):
        from ..sim.chip_golden import ChipModel  # noqa: PLC0415

        self.model = ChipModel(mem_bytes, limits)
        self.mem_bytes = mem_bytes

    def info(self) -> dict:
        return {"mem_bytes": self.mem_bytes}

    def write(self, addr, data):
        raw = np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else bytes(data)
        self.model.write(addr, np.frombuffer(raw, np.uint8))

    def read(self, addr, n=None, *, dtype=np.uint8, shape=None):
        dtype = np.dtype(dtype)
        if shape is not None:
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            n = int(np.prod(shape)) * dtype.itemsize
        out = np.frombuffer(self.model.read(addr, n), dtype=dtype)
        return out.reshape(shape) if shape is not None else out.copy()

    def run(self, program, *, addr=None, timeout=None, check=True):
        raw = program.to_bytes()
        base = program.base if addr is None else addr
        self.write(base, raw)
        st = self.model.run(base)
        if check and st.state != isa.ChipState.DONE:
            from .device import ProgramError  # noqa: PLC0415

            raise ProgramError(st)
        return st

    def unit_counters(self):
        return None

    def close(self):
        pass


def _floor8(n: int) -> int:
    return n - n % isa.ALIGN if n >= isa.ALIGN else n


def _gemm_tiles(m, k, n, limits):
    """The (M, N) tiles ``(i0, m, j0, n)`` of one program and the K chunks ``(k0, k)``."""
    tm, tn, tk = limits.max_m, _floor8(limits.max_n), _floor8(limits.max_k)
    chunks = [(k0, min(tk, k - k0)) for k0 in range(0, k, tk)]
    tiles = [(i0, min(tm, m - i0), j0, min(tn, n - j0))
             for j0 in range(0, n, tn) for i0 in range(0, m, tm)]
    return tiles, chunks


def gemm_layout(m, k, n, *, mem_bytes, limits, requant=False, params=False) -> dict:
    """Where :func:`gemm` puts everything in a memory of ``mem_bytes``:
    ``{"mem": the Allocator, "program", "A", "B", "params" (or None), "C",
    "c_stride"}``; :class:`FitError` if it does not fit (a host checks this
    before it starts anything slow)."""
    tiles, chunks = _gemm_tiles(m, k, n, limits)
    single = len(chunks) == 1
    # K chunks accumulate into int32 rows of C
    es = isa.out_bytes(requant) if single else 4
    mem = Allocator(mem_bytes)
    out = {"mem": mem, "c_stride": isa.round_up(n * es)}
    try:
        out["program"] = mem.alloc("program", isa.INSN_BYTES * (len(tiles) * len(chunks) + 1))
        out["A"] = mem.alloc("A", m * isa.round_up(k))
        out["B"] = mem.alloc("B", k * isa.round_up(n))
        out["params"] = mem.alloc("params", n * isa.PARAM_BYTES) if params else None
        out["C"] = mem.alloc("C", m * out["c_stride"])
    except ValueError as e:
        raise FitError(f"{m}x{k} @ {k}x{n} does not fit in the device's {mem_bytes} bytes of "
                       f"memory: {e}") from None
    return out


@dataclasses.dataclass
class GemmRun:
    """What :func:`gemm` did: the result, the programs run (instructions
    each: one program), the layout and the device's cycle counters of each
    program."""
    c: np.ndarray
    programs: list
    layout: str
    counters: list


def _check_int8(name, x, ndim):
    x = np.asarray(x)
    if x.ndim != ndim or x.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a {ndim}-D integer array, not {x.dtype} {x.shape}")
    if x.size and (x.min() < -128 or x.max() > 127):
        raise ValueError(f"{name} must hold int8 values (-128..127)")
    return x.astype(np.int64)


def gemm(dev, a, b, bias=None, multiplier=None, shift=None, relu=False, *,
         limits: isa.Limits, progress=None, timeout: float = 600.0) -> GemmRun:
    """``C = post(A @ B)`` on ``dev``, bit-exact with :func:`seedchip.sim.golden.gemm`
    (int8 output with ``multiplier``/``shift``, else int32). See the module
    docstring for the tiling."""
    a, b = _check_int8("a", a, 2), _check_int8("b", b, 2)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"a is {m}x{k} and b is {k2}x{n}: the inner sizes differ")
    requant = multiplier is not None
    say = progress or (lambda s: None)
    mem_bytes = dev.info()["mem_bytes"]
    tiles, chunks = _gemm_tiles(m, k, n, limits)
    single = len(chunks) == 1
    es = isa.out_bytes(requant) if single else 4
    lay = gemm_layout(m, k, n, mem_bytes=mem_bytes, limits=limits, requant=requant,
                      params=bias is not None or requant)
    mem, prog_addr = lay["mem"], lay["program"]
    a_addr, b_addr, p_addr, c_addr = lay["A"], lay["B"], lay["params"], lay["C"]
    a_stride, b_stride, c_stride = isa.round_up(k), isa.round_up(n), lay["c_stride"]
    img = np.zeros((m, a_stride), np.int8)
    img[:, :k] = a
    say(f"writing A ({m}x{k}) and B ({k}x{n}) to the chip")
    dev.write(a_addr, img)
    img = np.zeros((k, b_stride), np.int8)
    img[:, :n] = b
    dev.write(b_addr, img)
    if p_addr is not None:
        dev.write(p_addr, param_records(np.zeros(n, np.int64) if bias is None else bias,
                                        multiplier, shift))
    prog = Program(base=prog_addr, limits=limits, mem_bytes=mem_bytes)
    for i0, mc, j0, nc in tiles:
        for n_chunk, (k0, kc) in enumerate(chunks):
            last = n_chunk == len(chunks) - 1
            prog.gemm(a_addr=a_addr + i0 * a_stride + k0, b_addr=b_addr + k0 * b_stride + j0,
                      c_addr=c_addr + i0 * c_stride + j0 * es, m=mc, k=kc, n=nc,
                      a_stride=a_stride, b_stride=b_stride, c_stride=c_stride,
                      p_addr=(p_addr + j0 * isa.PARAM_BYTES
                              if p_addr is not None and last else None),
                      requant=requant and last, relu=relu and last, acc=n_chunk > 0)
    prog.finish()
    say(f"running {len(prog) - 1} GEMM instruction(s)"
        + ("" if single else f" ({len(chunks)} K chunks each accumulated on the chip)"))
    dev.run(prog, timeout=timeout)
    out8 = requant
    say(f"reading C ({m}x{n} {'int8' if out8 else 'int32'})")
    raw = dev.read(c_addr, m * c_stride).reshape(m, c_stride)
    if single or not out8:
        c = raw[:, :n * (1 if out8 else 4)].copy().view("<i1" if out8 else "<i4")
    else:
        # each N tile's int8 result at the start of its int32 span
        c = np.concatenate([raw[:, 4 * j0:4 * j0 + nc] for j0, nc in
                            sorted({(j0, nc) for _, _, j0, nc in tiles})], axis=1).view("<i1")
    return GemmRun(c=c.astype(np.int64), programs=[len(prog)], layout=str(mem),
                   counters=[dev.unit_counters()])


def bag_layout(rows, dim, n_indices, batch, *, mem_bytes, requant=False, weighted=False
               ) -> dict:
    """Where :func:`embedding_bag` puts everything (``{"mem", "program",
    "table", "descriptor", "indices", "offsets", "weights" (or None),
    "pooled"}``); :class:`FitError` if it does not fit."""
    mem = Allocator(mem_bytes)
    out = {"mem": mem}
    try:
        out["program"] = mem.alloc("program", 2 * isa.INSN_BYTES)
        out["table"] = mem.alloc("table", rows * isa.table_pitch(dim))
        out["descriptor"] = mem.alloc("descriptor", isa.DESC_BYTES)
        out["indices"] = mem.alloc("indices", max(4, 4 * n_indices))
        out["offsets"] = mem.alloc("offsets", 4 * (batch + 1))
        out["weights"] = mem.alloc("weights", max(1, n_indices)) if weighted else None
        out["pooled"] = mem.alloc("pooled", batch * isa.round_up(dim * isa.out_bytes(requant)))
    except ValueError as e:
        raise FitError(f"the table ({rows}x{dim}) and {n_indices} indices do not fit in the "
                       f"device's {mem_bytes} bytes of memory: {e}") from None
    return out


@dataclasses.dataclass
class BagRun:
    """What :func:`embedding_bag` did: pooled ``[B, dim]`` (int32, or int8
    values with ``requant``), the chip's status, the layout and counters."""
    pooled: np.ndarray
    status: isa.Status
    layout: str
    counters: dict | None


def embedding_bag(dev, table, indices, offsets, *, mode="sum", bounds="fatal", weights=None,
                  limits: isa.Limits, multiplier=None, shift=0, timeout: float = 600.0,
                  progress=None) -> BagRun:
    """PyTorch ``EmbeddingBag`` (``offsets`` with B + 1 entries, the last =
    ``len(indices)``) over one int8 ``table`` on ``dev``: one GATHER.
    ``multiplier``/``shift``: int8 output requantized with the table's scale.
    A GATHER error raises :class:`~seedchip.firmware.device.ProgramError`
    with the chip's status (error, bag, index)."""
    table = _check_int8("table", table, 2)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1)
    rows, dim = table.shape
    batch = len(off) - 1
    say = progress or (lambda s: None)
    requant = multiplier is not None
    es = isa.out_bytes(requant)
    out_stride = isa.round_up(dim * es)
    mem_bytes = dev.info()["mem_bytes"]
    lay = bag_layout(rows, dim, len(idx), batch, mem_bytes=mem_bytes, requant=requant,
                     weighted=weights is not None)
    mem, prog_addr = lay["mem"], lay["program"]
    desc_addr, idx_addr, off_addr = lay["descriptor"], lay["indices"], lay["offsets"]
    w_addr, out_addr = lay["weights"], lay["pooled"]
    tab = Table(base=lay["table"], rows=rows, dim=dim,
                **({} if multiplier is None else {"multiplier": int(multiplier),
                                                  "shift": int(shift)}))
    say(f"writing the table ({rows}x{dim}) and {len(idx)} indices to the chip")
    dev.write(tab.base, table_image(table))
    dev.write(desc_addr, desc_records([tab]))
    # indices as u32; one below 0 or past 2**32 - 1 becomes all ones, out of
    # range for every table (never wrapped to another row)
    wire = np.where((idx >= 0) & (idx < 1 << 32), idx, 0xFFFF_FFFF)
    dev.write(idx_addr, wire.astype("<u4").tobytes())
    dev.write(off_addr, u32_array(off))
    if w_addr is not None:
        dev.write(w_addr, np.asarray(weights, dtype=np.int8).reshape(-1).tobytes())
    prog = Program(base=prog_addr, limits=limits, mem_bytes=mem_bytes)
    prog.gather(desc_addr=desc_addr, idx_addr=idx_addr, off_addr=off_addr, out_addr=out_addr,
                batch=batch, tables=[tab], n_indices=len(idx), out_stride=out_stride,
                out_tstride=0, w_addr=w_addr, mode=PoolMode[mode.upper()],
                bounds=BoundsMode[bounds.upper()], requant=requant)
    prog.finish()
    say(f"running one GATHER ({batch} bags, {mode})")
    st = dev.run(prog, timeout=timeout)
    raw = dev.read(out_addr, batch * out_stride).reshape(batch, out_stride)
    pooled = raw[:, :dim * es].copy().view("<i1" if requant else "<i4").astype(np.int64)
    return BagRun(pooled=pooled, status=st, layout=str(mem), counters=dev.unit_counters())
