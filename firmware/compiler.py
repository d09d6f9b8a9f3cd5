"""The DLRM compiler: a quantized DLRM -> one chip program + memory image + metadata.

:func:`compile_model` lays a :class:`~seedchip.firmware.quant.QuantDLRM` out
in chip memory and writes the whole forward pass of a batch of ``batch``
samples as one program; :class:`Compiled` is the artifact
(:meth:`Compiled.save` / :meth:`Compiled.load`, one ``.seedchip`` file: an
uncompressed NumPy zip holding the metadata as JSON, the memory image and
the quantized network). :mod:`seedchip.firmware.runtime` runs it.

Memory (an :class:`~seedchip.firmware.program.Allocator` map, printed by
``seedchip compile``): first the image the host writes once -- per layer the
int8 weights as the GEMM's B operand (``K x N``, row ``k`` = input column
``k``) and N param records (bias, multiplier, shift), per table its int8
rows (pitch :func:`~seedchip.isa.table_pitch`), the GATHER descriptors, the
interaction's param records (a multiplier and shift per pair), the
program -- then the buffers of a batch: the int8 dense features, per GATHER
the indices (u32) and offsets (u32, bag ``i = t * batch + b``), every
layer's output, ``T`` (per sample the ``n_vec`` vectors ``[x, e_1, ...]``
that the interaction reads, ``vec_stride`` apart), ``R`` (the top MLP's
input ``[x | Z]``) and the int32 logits.

The program (one instruction per layer and tile; wait masks from the bytes
each reads and writes, :class:`~seedchip.firmware.program.Program`):

1. GATHER, one per group of up to ``limits.n_tables`` tables: SUM pooling,
   FATAL bounds, pooled sums requantized to each table's scale and written straight into
   their slots of ``T``; it runs beside the bottom MLP.
2. The bottom MLP: a GEMM (+ReLU, int8) per layer; the last writes ``x``
   into ``T``.
3. INTERACT PARAMS (a rescale per pair): ``T`` -> the pairs ``Z`` at
   ``R + round_up(d)``; COPY ``x``
   from ``T`` to the start of ``R`` beside it.
4. The top MLP; the last layer writes int32 ``acc + bias`` (the logit).

A layer larger than one GEMM instruction is tiled: M (the batch) by
``max_m``, N by ``max_n``; K above ``max_k`` (or K whose input lies in two
places, as ``[x | Z]`` when ``d`` is not a multiple of 8) is split into
chunks that accumulate (GEMM ACC) into an int32 buffer, the last chunk
applying bias, requantization and ReLU in place.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from .. import isa
from ..emb_protocol import BoundsMode, PoolMode
from .dlrm import DLRMArch, ModelError
from .ops import _floor8
from .program import Allocator, Program, Table, desc_records, param_records, table_image
from .quant import QLayer, QTable, QuantDLRM, scale_span

__all__ = ["Compiled", "compile_model", "ARTIFACT_VERSION", "SDRAM_BYTES_PER_CYCLE"]

#: 2: the interaction's scales per vector and per pair (INTERACT PARAMS)
ARTIFACT_VERSION = 2
#: The cycle estimate's memory: the board's 16-bit SDRAM, one beat a cycle.
SDRAM_BYTES_PER_CYCLE = 2


def _has_acc() -> bool:
    return any(name == "acc" for name, _ in isa.GemmFlags)


@dataclasses.dataclass(frozen=True)
class _Act:
    """An activation ``[batch, cols]`` in memory: row b at ``addr + b * stride``;
    ``segs``: ``(col0, ncols, byte offset)`` of its column ranges."""
    addr: int
    stride: int
    segs: tuple


class _Builder:
    """Lays out one model and emits its program (used by :func:`compile_model`)."""

    def __init__(self, q: QuantDLRM, batch, limits, mem_bytes, max_bag, config):
        self.q, self.arch, self.B = q, q.arch, batch
        self.limits, self.mem_bytes, self.max_bag, self.config = limits, mem_bytes, max_bag, config
        self.mem = Allocator(mem_bytes)
        self.image: list[tuple[int, bytes]] = []
        self.rows: list[dict] = []              # the layer table
        self.prog = Program(base=0, limits=limits, mem_bytes=mem_bytes)

    def alloc(self, name, nbytes, data=None, align=isa.ALIGN):
        try:
            addr = self.mem.alloc(name, nbytes, align=align)
        except ValueError as e:
            static = sum(len(d) for _, d in self.image)
            raise ModelError(f"the model does not fit in the chip's {self.mem_bytes} bytes of "
                             f"memory: {e} (weights, tables and descriptors take {static} "
                             f"bytes; a smaller --batch or --max-bag shrinks the batch's "
                             f"buffers)") from None
        if data is not None:
            self.image.append((addr, bytes(data)))
        return addr

    def row(self, **kw):
        self.rows.append(kw)

    # -- static image --------------------------------------------------------------
    def place_weights(self):
        self.w = {}
        for layer in self.q.bot + self.q.top:
            bs = isa.round_up(layer.n)
            wk = np.zeros((layer.k, bs), np.int8)
            wk[:, :layer.n] = layer.wq.T
            waddr = self.alloc(f"{layer.name}.weight", wk.nbytes, wk.tobytes())
            prec = param_records(layer.bias, layer.multiplier, layer.shift)
            paddr = self.alloc(f"{layer.name}.params", len(prec), prec)
            self.w[layer.name] = (waddr, bs, paddr)

    def place_tables(self):
        self.tables = []
        for t, tab in enumerate(self.q.tables):
            img = table_image(tab.eq)
            base = self.alloc(f"emb_l.{t}", len(img), img)
            self.tables.append(Table(base=base, rows=tab.eq.shape[0], dim=tab.eq.shape[1],
                                     multiplier=tab.multiplier, shift=tab.shift))
        g = self.limits.n_tables
        self.groups = []
        for t0 in range(0, len(self.tables), g):
            tabs = self.tables[t0:t0 + g]
            recs = desc_records(tabs)
            desc = self.alloc(f"gather.{len(self.groups)}.desc", len(recs), recs)
            self.groups.append({"t0": t0, "n": len(tabs), "desc": desc})
        prec = param_records(np.zeros(self.arch.n_pairs), self.q.z_multiplier, self.q.z_shift)
        self.z_params = self.alloc("interaction.params", len(prec), prec)

    # -- batch buffers ---------------------------------------------------------------
    def place_buffers(self):
        a, B = self.arch, self.B
        self.dense = _Act(self.alloc("dense", B * isa.round_up(a.n_dense)),
                          isa.round_up(a.n_dense), ((0, a.n_dense, 0),))
        for i, grp in enumerate(self.groups):
            n = grp["n"]
            grp["capacity"] = B * n * self.max_bag
            grp["idx"] = self.alloc(f"gather.{i}.indices", 4 * grp["capacity"])
            grp["off"] = self.alloc(f"gather.{i}.offsets", 4 * (n * B + 1))
        self.vs = isa.round_up(a.dim)
        self.T = self.alloc("T", B * a.n_vec * self.vs)
        self.d8 = isa.round_up(a.dim)
        self.r_stride = isa.round_up(self.d8 + a.n_pairs)
        self.R = self.alloc("R", B * self.r_stride)

    def k_chunks(self, act: _Act, k):
        """``(col0, ncols, byte offset)`` chunks of the input: within one segment, <= max_k."""
        tk = _floor8(self.limits.max_k)
        out = []
        for c0, nc, off in act.segs:
            for j in range(0, nc, tk):
                out.append((c0 + j, min(tk, nc - j), off + j))
        assert sum(n for _, n, _ in out) == k
        return out

    def linear(self, layer: QLayer, act: _Act, dest: _Act | None):
        """The GEMMs of ``layer`` on ``act``; the output goes to ``dest`` (one
        segment; None: a new buffer) unless K is split. Returns the output _Act."""
        B, lim = self.B, self.limits
        waddr, bstride, paddr = self.w[layer.name]
        chunks = self.k_chunks(act, layer.k)
        es = isa.out_bytes(layer.requant)
        split = len(chunks) > 1
        if split and not _has_acc():
            raise ModelError(f"{layer.name}: K = {layer.k} is above the matrix unit's max_k "
                             f"{lim.max_k} (or its input lies in two places) and this chip's "
                             f"ISA has no accumulating GEMM")
        if split:
            stride = isa.round_up(4 * layer.n)
            out = _Act(self.alloc(f"{layer.name}.acc", B * stride), stride, ())
        elif dest is None:
            stride = isa.round_up(layer.n * es)
            out = _Act(self.alloc(f"{layer.name}.out", B * stride), stride, ((0, layer.n, 0),))
        else:
            out = dest
        tn, tm = _floor8(lim.max_n), lim.max_m
        segs, n_insn, est = [], 0, 0
        for n0 in range(0, layer.n, tn):
            nt = min(tn, layer.n - n0)
            segs.append((n0, nt, (4 if split else es) * n0))
            for m0 in range(0, B, tm):
                mt = min(tm, B - m0)
                c_addr = out.addr + m0 * out.stride + segs[-1][2]
                for ci, (c0, kc, off) in enumerate(chunks):
                    last = ci == len(chunks) - 1
                    kw = dict(acc=True) if split and ci else {}
                    self.prog.gemm(a_addr=act.addr + m0 * act.stride + off,
                                   b_addr=waddr + c0 * bstride + n0, c_addr=c_addr,
                                   m=mt, k=kc, n=nt, a_stride=act.stride, b_stride=bstride,
                                   c_stride=out.stride,
                                   p_addr=paddr + n0 * isa.PARAM_BYTES if last else None,
                                   requant=layer.requant and last, relu=layer.relu and last, **kw)
                    n_insn += 1
                    est += self.gemm_estimate(mt, kc, nt)
        if split:
            out = _Act(out.addr, out.stride, tuple(segs) if layer.requant else ((0, layer.n, 0),))
        self.row(layer=layer.name, op="GEMM", shape=f"{B}x{layer.k} @ {layer.k}x{layer.n}",
                 out="int8" if layer.requant else "int32",
                 scale=f"{layer.s_out:.4g}" if layer.requant else f"acc*{layer.s_acc[0]:.4g}",
                 where=f"W 0x{waddr:x}, out 0x{out.addr:x}", insns=n_insn, cycles=est)
        return out

    def gemm_estimate(self, m, k, n):
        bytes_in = m * k + k * n + n * isa.PARAM_BYTES
        return self.config.ideal_cycles(m, k, n) + -(-bytes_in // SDRAM_BYTES_PER_CYCLE)

    # -- the program -------------------------------------------------------------------
    def emit(self):
        a, B, q = self.arch, self.B, self.q
        for grp in self.groups:
            tabs = self.tables[grp["t0"]:grp["t0"] + grp["n"]]
            self.prog.gather(desc_addr=grp["desc"], idx_addr=grp["idx"], off_addr=grp["off"],
                             out_addr=self.T + self.vs * (1 + grp["t0"]), batch=B, tables=tabs,
                             n_indices=grp["capacity"], out_stride=a.n_vec * self.vs,
                             out_tstride=self.vs, mode=PoolMode.SUM, bounds=BoundsMode.FATAL,
                             requant=True)
            pitch = isa.table_pitch(a.dim)
            self.row(layer=f"emb_l.{grp['t0']}..{grp['t0'] + grp['n'] - 1}", op="GATHER",
                     shape=f"{B} x {grp['n']} bags, d={a.dim}", out="int8",
                     scale=scale_span(q.s_T[1 + grp["t0"]:1 + grp["t0"] + grp["n"]]),
                     where=f"tables 0x{tabs[0].base:x}, out T",
                     insns=1, cycles=B * grp["n"] * (2 * -(-pitch // SDRAM_BYTES_PER_CYCLE) + 8))
        act = self.dense
        t_dest = _Act(self.T, a.n_vec * self.vs, ((0, a.dim, 0),))
        for n, layer in enumerate(q.bot):
            last = n == len(q.bot) - 1
            act = self.linear(layer, act, t_dest if last else None)
        if act.addr != self.T:                     # K split: x (its N tiles) to T
            for c0, nc, off in act.segs:
                self.prog.copy(src=act.addr + off, dst=self.T + c0, rows=B, row_bytes=nc,
                               src_stride=act.stride, dst_stride=a.n_vec * self.vs)
            self.row(layer="x -> T", op="COPY", shape=f"{B} x {a.dim} B", out="int8",
                     scale=f"{q.s_T[0]:.4g}", where=f"T 0x{self.T:x}", insns=len(act.segs),
                     cycles=B * (2 * -(-a.dim // SDRAM_BYTES_PER_CYCLE) + 4))
        self.prog.interact(src=self.T, dst=self.R + self.d8, batch=B, n_vec=a.n_vec, dim=a.dim,
                           p_addr=self.z_params, vec_stride=self.vs,
                           in_stride=a.n_vec * self.vs, out_stride=self.r_stride)
        words = -(-a.dim // isa.ALIGN)
        self.row(layer="interaction", op="INTERACT", shape=f"{B} x {a.n_vec} vectors of {a.dim}",
                 out="int8", scale=scale_span(q.s_Z), where=f"T 0x{self.T:x} -> R 0x{self.R:x}",
                 insns=1, cycles=B * (a.n_pairs + a.n_vec) * words)
        self.prog.copy(src=self.T, dst=self.R, rows=B, row_bytes=a.dim,
                       src_stride=a.n_vec * self.vs, dst_stride=self.r_stride)
        self.row(layer="x -> R", op="COPY", shape=f"{B} x {a.dim} B", out="int8",
                 scale=f"{q.s_T[0]:.4g}", where=f"R 0x{self.R:x}", insns=1,
                 cycles=B * (2 * -(-a.dim // SDRAM_BYTES_PER_CYCLE) + 4))
        segs = ((0, a.dim, 0), (a.dim, a.n_pairs, self.d8)) if a.dim != self.d8 \
            else ((0, a.dim + a.n_pairs, 0),)
        act = _Act(self.R, self.r_stride, segs)
        for layer in q.top:
            act = self.linear(layer, act, None)
        self.logits = act
        self.prog.finish()


@dataclasses.dataclass
class Compiled:
    """A compiled model: ``meta`` (JSON-able), the memory ``image`` (``[(addr,
    bytes)]``, written once), the ``program`` and the quantized network."""
    meta: dict
    image: list
    program: Program
    quant: QuantDLRM

    @property
    def batch(self) -> int:
        return self.meta["batch"]

    @property
    def limits(self) -> isa.Limits:
        return isa.Limits(**self.meta["limits"])

    @property
    def config(self):
        """The :class:`~seedchip.config.ChipConfig` compiled for."""
        from ..config import ChipConfig  # noqa: PLC0415
        return ChipConfig.from_dict(self.meta["config"])

    def sim_mem_bytes(self) -> int:
        """The simulated chip's memory that holds this model: 1 MiB or the
        next power of two above what it uses."""
        return max(1 << 20, 1 << (self.meta["used_bytes"] - 1).bit_length())

    def layer_table(self) -> str:
        rows = self.meta["layers"]
        cols = ["layer", "op", "shape", "out", "scale", "where", "insns", "cycles"]
        w = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
        lines = ["  ".join(c.ljust(w[c]) for c in cols)]
        lines += ["  ".join(str(r[c]).ljust(w[c]) if c not in ("insns", "cycles")
                            else str(r[c]).rjust(w[c]) for c in cols) for r in rows]
        total = sum(r["cycles"] for r in rows)
        lines.append(f"estimated {total} cycles per batch of {self.batch} (serial sum; GATHER "
                     f"overlaps the bottom MLP), {len(self.program)} instructions")
        return "\n".join(lines)

    # -- the artifact ------------------------------------------------------------------
    def save(self, path):
        arrays = {"meta": np.frombuffer(json.dumps(self.meta).encode(), np.uint8),
                  "program": np.frombuffer(self.program.to_bytes(), np.uint8)}
        for i, (addr, data) in enumerate(self.image):
            arrays[f"image.{i}"] = np.frombuffer(data, np.uint8)
        for layer in self.quant.bot + self.quant.top:
            for f in ("wq", "bias", "s_acc", "s_in", "multiplier", "shift"):
                v = getattr(layer, f)
                if v is not None:
                    arrays[f"q.{layer.name}.{f}"] = np.asarray(v)
        with open(os.fspath(path), "wb") as f:      # a file object: no ".npz" appended
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> "Compiled":
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelError(f"{path}: no such file")
        try:
            z = np.load(path, allow_pickle=False)
            meta = json.loads(bytes(z["meta"]).decode())
        except Exception as e:
            raise ModelError(f"{path}: not a compiled seedchip model ({e})") from None
        with z:
            if meta.get("version") != ARTIFACT_VERSION:
                raise ModelError(f"{path}: artifact version {meta.get('version')}, this seedchip "
                                 f"reads version {ARTIFACT_VERSION}: compile the model again")
            image = [(addr, bytes(z[f"image.{i}"])) for i, addr in enumerate(meta["image"])]
            program = Program.from_bytes(bytes(z["program"]), base=meta["program"]["addr"])
            qm = meta["quant"]
            arch = DLRMArch(**meta["arch"])

            def layers(names):
                out = []
                for name, relu, s_out in names:
                    g = {f: z[f"q.{name}.{f}"] for f in ("wq", "bias", "s_acc", "s_in",
                                                         "multiplier", "shift")
                         if f"q.{name}.{f}" in z.files}
                    out.append(QLayer(name=name, relu=relu, s_out=s_out, **g))
                return out

            mem = dict(image)
            tables = []
            for t, tq in enumerate(qm["tables"]):
                raw = mem[tq["base"]]
                pitch = isa.table_pitch(arch.dim)
                eq = np.frombuffer(raw, np.int8).reshape(-1, pitch)[:, :arch.dim].copy()
                tables.append(QTable(eq=eq, scale=tq["scale"], multiplier=tq["multiplier"],
                                     shift=tq["shift"]))
            quant = QuantDLRM(arch=arch, s_dense=qm["s_dense"], bot=layers(qm["bot"]),
                              top=layers(qm["top"]), tables=tables, s_T=np.array(qm["s_T"]),
                              s_Z=np.array(qm["s_Z"]),
                              z_multiplier=np.array(qm["z_multiplier"], np.int64),
                              z_shift=np.array(qm["z_shift"], np.int64),
                              method=qm["method"], percentile=qm["percentile"],
                              notes=qm["notes"])
        return cls(meta=meta, image=image, program=program, quant=quant)


def compile_model(q: QuantDLRM, *, batch: int, limits: isa.Limits, mem_bytes: int,
                  config=None, max_bag: int | None = None) -> Compiled:
    """Lay out ``q`` for a chip of ``limits`` with ``mem_bytes`` of memory and
    write the program of one batch of ``batch`` samples; ``max_bag`` (default
    ``limits.max_bag``) bounds the indices per bag a batch may bring.
    ModelError says what does not fit or is not supported."""
    from ..config import CHIP_CONFIG  # noqa: PLC0415

    config = CHIP_CONFIG if config is None else config
    arch = q.arch
    if not 1 <= batch <= 0xFFFF:
        raise ModelError(f"batch must be in range 1..65535, not {batch}")
    max_bag = limits.max_bag if max_bag is None else max_bag
    if not 1 <= max_bag <= limits.max_bag:
        raise ModelError(f"max_bag must be in range 1..{limits.max_bag} (the gather engine's "
                         f"longest bag), not {max_bag}")
    if arch.dim > limits.max_dim:
        raise ModelError(f"the embedding dimension {arch.dim} is above the gather engine's "
                         f"max_dim {limits.max_dim} (which also bounds INTERACT's dim)")
    if arch.n_vec > limits.max_vec:
        raise ModelError(f"{arch.n_tables} tables give {arch.n_vec} vectors per sample; the "
                         f"interaction takes at most {limits.max_vec}")
    b = _Builder(q, batch, limits, mem_bytes, max_bag, config)
    b.place_weights()
    b.place_tables()
    b.place_buffers()
    b.emit()
    paddr = b.alloc("program", isa.INSN_BYTES * len(b.prog), align=isa.PC_ALIGN)
    program = Program.from_bytes(b.prog.to_bytes(), base=paddr)
    b.image.append((paddr, program.to_bytes()))
    meta = {
        "version": ARTIFACT_VERSION, "batch": batch, "mem_bytes": mem_bytes, "max_bag": max_bag,
        "limits": dataclasses.asdict(limits), "clk_mhz": config.clk_mhz,
        "config": config.to_dict(), "used_bytes": b.mem.used,
        "arch": {"bot": list(arch.bot), "top": list(arch.top),
                 "table_rows": list(arch.table_rows)},
        "image": [addr for addr, _ in b.image],
        "program": {"addr": paddr, "insns": len(program)},
        "dense": {"addr": b.dense.addr, "stride": b.dense.stride},
        "gathers": [{"t0": g["t0"], "n": g["n"], "idx": g["idx"], "off": g["off"],
                     "capacity": g["capacity"]} for g in b.groups],
        "logits": {"addr": b.logits.addr, "stride": b.logits.stride},
        "regions": {k: list(v) for k, v in b.mem.regions.items()},
        "static_bytes": sum(len(d) for _, d in b.image),
        "layers": b.rows,
        "quant": {"s_dense": q.s_dense, "s_T": [float(v) for v in q.s_T],
                  "s_Z": [float(v) for v in q.s_Z],
                  "z_multiplier": [int(v) for v in q.z_multiplier],
                  "z_shift": [int(v) for v in q.z_shift], "method": q.method,
                  "percentile": q.percentile, "notes": q.notes,
                  "bot": [(L.name, L.relu, L.s_out) for L in q.bot],
                  "top": [(L.name, L.relu, L.s_out) for L in q.top],
                  "tables": [{"base": t.base, "scale": qt.scale, "multiplier": qt.multiplier,
                              "shift": qt.shift} for t, qt in zip(b.tables, q.tables)]},
    }
    meta = json.loads(json.dumps(meta))          # as load() will read it back
    return Compiled(meta=meta, image=b.image, program=program, quant=q)
