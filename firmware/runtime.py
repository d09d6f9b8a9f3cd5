"""Running a compiled DLRM on a device: load the image once, stream batches.

:class:`ModelRunner` writes a :class:`~seedchip.firmware.compiler.Compiled`
model's memory image to a device (a :class:`~seedchip.firmware.device.Device`
-- the simulated chip or a board -- or a
:class:`~seedchip.firmware.ops.GoldenDevice`), then for each batch of the
inputs writes the int8 dense features, the indices and the offsets, runs the
program, reads the int32 logit accumulators back and turns them into click
probabilities (the scale and the sigmoid on the host). A last batch smaller
than the compiled batch is padded with samples of zero dense features and
empty bags, whose outputs are dropped. Per batch it keeps the chip's cycle
count from START to done and the per-unit busy / memory-stall / idle
cycles, and the bytes sent and received.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import isa
from .compiler import Compiled
from .dlrm import Inputs, ModelError, sigmoid

__all__ = ["ModelRunner", "RunResult", "pack_batch", "run_model"]


def pack_batch(compiled: Compiled, inputs: Inputs) -> list[tuple[int, bytes]]:
    """The ``(addr, bytes)`` writes that put one batch (at most the compiled
    batch) in chip memory. ModelError for inputs the chip cannot take."""
    m, B = compiled.meta, compiled.batch
    n = inputs.batch
    if not 1 <= n <= B:
        raise ModelError(f"a batch has 1..{B} samples (the compiled batch), not {n}")
    q = compiled.quant
    inputs.check(q.arch)
    max_bag = m["max_bag"]
    for t in range(q.arch.n_tables):
        lens = inputs.bag_lengths(t)
        if lens.size and lens.max() > max_bag:
            b = int(np.argmax(lens))
            raise ModelError(f"sample {b}'s bag of table {t} has {lens[b]} indices; the model was "
                             f"compiled for bags of at most {max_bag}")
    stride = m["dense"]["stride"]
    dense = np.zeros((B, stride), np.int8)
    dense[:n, :q.arch.n_dense] = q.quantize_inputs(inputs)
    writes = [(m["dense"]["addr"], dense.tobytes())]
    for g in m["gathers"]:
        idx, off, count = [], [], 0
        for t in range(g["t0"], g["t0"] + g["n"]):
            ends = np.append(inputs.offsets[t], inputs.indices[t].size)
            off.append(count + ends[:-1])
            off.append(np.full(B - n, count + ends[-1], np.int64))    # padding: empty bags
            idx.append(inputs.indices[t])
            count += inputs.indices[t].size
        off.append([count])
        idx = np.concatenate(idx).astype("<u4")
        assert idx.size <= g["capacity"]
        writes.append((g["idx"], idx.tobytes()))
        writes.append((g["off"], np.concatenate(off).astype("<u4").tobytes()))
    return writes


@dataclasses.dataclass
class RunResult:
    """Click probabilities ``scores`` and int32 logit accumulators ``acc`` of
    every sample; per batch ``{"samples", "cycles", "counters", "seconds",
    "bytes_out", "bytes_in"}``."""
    scores: np.ndarray
    acc: np.ndarray
    batches: list
    load_bytes: int
    load_seconds: float

    def cycle_breakdown(self) -> dict:
        """Summed over the batches: cycles and per unit busy/mem_stall/idle."""
        out = {"cycles": 0}
        for b in self.batches:
            c = b.get("counters") or {}
            out["cycles"] += c.get("cycles", 0)
            for u in isa.Unit:
                d = out.setdefault(u.name.lower(), {"busy": 0, "mem_stall": 0, "idle": 0})
                for k, v in (c.get(u.name.lower()) or {}).items():
                    d[k] += v
        return out

    def summary(self, clk_mhz: float) -> str:
        n = self.scores.size
        lines = [f"{n} samples in {len(self.batches)} batches; image {self.load_bytes} bytes "
                 f"loaded in {self.load_seconds:.1f} s"]
        cyc = [b["cycles"] for b in self.batches if b.get("cycles")]
        if cyc:
            per = np.mean(cyc)
            bsz = self.batches[0]["samples"]
            lines.append(f"chip: {per:.0f} cycles per batch of {bsz} = {per / clk_mhz:.1f} us at "
                         f"{clk_mhz:g} MHz: {bsz * clk_mhz * 1e6 / per:,.0f} inferences/s "
                         f"(compute only, from the chip's cycle counter)")
            br = self.cycle_breakdown()
            tot = br["cycles"]
            parts = [f"{u}: busy {br[u]['busy'] / tot:.0%} (memory stall "
                     f"{br[u]['mem_stall'] / tot:.0%})" for u in ("gemm", "gather", "copy")]
            lines.append("units, of the cycles: " + "; ".join(parts))
        wall = sum(b["seconds"] for b in self.batches)
        bytes_io = sum(b["bytes_out"] + b["bytes_in"] for b in self.batches)
        lines.append(f"host: {wall:.2f} s for the batches ({n / wall:,.1f} inferences/s through "
                     f"this device's link, {bytes_io / max(n, 1):.0f} bytes per sample)")
        return "\n".join(lines)


class ModelRunner:
    """A compiled model on a device (see the module's docstring)."""

    def __init__(self, dev, compiled: Compiled, *, progress=None, preloaded: bool = False):
        """``preloaded``: the image is already in the device's memory (a
        simulated chip opened with ``preload=compiled.image``)."""
        self.dev, self.c = dev, compiled
        self.say = progress or (lambda s: None)
        self.loaded = preloaded

    def load(self) -> tuple[int, float]:
        """Write the memory image (weights, tables, descriptors, program)."""
        have = self.dev.info()["mem_bytes"]
        need = self.c.meta["used_bytes"]
        if have < need:
            raise ModelError(f"the model uses {need} bytes of chip memory; the device has "
                             f"{have}")
        total = sum(len(d) for _, d in self.c.image)
        self.say(f"loading the model image: {total} bytes")
        t0 = time.monotonic()
        for addr, data in self.c.image:
            self.dev.write(addr, data)
        self.loaded = True
        return total, time.monotonic() - t0

    def run_batch(self, inputs: Inputs) -> tuple[np.ndarray, dict]:
        """The int32 logit accumulators of one batch, and its figures."""
        if not self.loaded:
            self.load()
        t0 = time.monotonic()
        writes = pack_batch(self.c, inputs)
        for addr, data in writes:
            self.dev.write(addr, data)
        self.dev.run(self.c.program, timeout=600.0)
        lg = self.c.meta["logits"]
        raw = self.dev.read(lg["addr"], inputs.batch * lg["stride"])
        acc = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), "<i4").reshape(
            inputs.batch, -1)[:, 0].astype(np.int64)
        counters = self.dev.unit_counters()
        fig = {"samples": inputs.batch, "seconds": time.monotonic() - t0,
               "bytes_out": sum(len(d) for _, d in writes) + len(self.c.program) * isa.INSN_BYTES,
               "bytes_in": inputs.batch * lg["stride"],
               "cycles": counters["cycles"] if counters else None, "counters": counters}
        return acc, fig

    def profile(self) -> list[dict]:
        """On a :class:`~seedchip.firmware.device.Device`: the cycles of each
        instruction of the program alone (``[{"insn", "op",
        "cycles", "counters"}]``), run one at a time on what the last batch
        left in memory: where the time of a batch goes. Timing only: an
        accumulating GEMM run again reads its own result, so the outputs are
        garbage until the next batch rewrites them."""
        out = []
        base = self.c.program.base
        for insn in self.c.program:
            if isinstance(insn, isa.Finish):
                continue
            one = dataclasses.replace(insn, wait=0)
            raw = isa.encode(one) + isa.encode(isa.Finish(wait=isa.WAIT_ALL))
            self.dev.write(base, raw)
            self.dev.start(base)
            st = self.dev.wait(600.0)
            if st.state != isa.ChipState.DONE:
                from .device import ProgramError  # noqa: PLC0415
                raise ProgramError(st)
            c = self.dev.unit_counters()
            out.append({"insn": str(insn), "op": insn.opcode.name, "cycles": c["cycles"],
                        "counters": c})
        self.dev.write(base, self.c.program.to_bytes())
        return out

    def run(self, inputs: Inputs) -> RunResult:
        """Every sample of ``inputs``, in batches of the compiled size."""
        inputs.check(self.c.quant.arch)
        load = self.load() if not self.loaded else (0, 0.0)
        B, accs, figs = self.c.batch, [], []
        for lo in range(0, inputs.batch, B):
            hi = min(lo + B, inputs.batch)
            self.say(f"batch {lo // B + 1}/{-(-inputs.batch // B)}: samples {lo}..{hi - 1}")
            acc, fig = self.run_batch(inputs.slice(lo, hi))
            accs.append(acc)
            figs.append(fig)
        acc = np.concatenate(accs) if accs else np.zeros(0, np.int64)
        scores = sigmoid(self.c.quant.logits_from_acc(acc))
        return RunResult(scores=scores, acc=acc, batches=figs, load_bytes=load[0],
                         load_seconds=load[1])


def run_model(dev, compiled: Compiled, inputs: Inputs, *, progress=None) -> RunResult:
    """Load ``compiled`` on ``dev`` and run ``inputs`` (:meth:`ModelRunner.run`)."""
    return ModelRunner(dev, compiled, progress=progress).run(inputs)
