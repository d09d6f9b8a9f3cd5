"""The newcomer's demo: a recommender trained, quantized, compiled and run on the chip.

:func:`run_demo` needs no download: a random *teacher* DLRM labels a
synthetic click-through data set; a small float DLRM is trained on it in
NumPy; the trained model is quantized with calibration samples, compiled
into one chip program and run on a device (by default the simulated chip);
the held-out samples' click probabilities of the float model, the quantized
golden model and the chip are compared (AUC, log loss, mean |dCTR|, chip
bit for bit against the golden model) and the chip's speed is reported from
its cycle counters.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from .. import isa
from .compiler import compile_model
from .dlrm_train import SMALL_ARCH, auc, init_dlrm, log_loss, synthetic_ctr, teacher_probs, train
from .quant import quantize
from .runtime import ModelRunner

__all__ = ["DemoResult", "run_demo", "DEMO_MEM_BYTES"]

#: The chip memory the demo compiles for (the simulated chip's default).
DEMO_MEM_BYTES = 1 << 20


@dataclasses.dataclass
class DemoResult:
    """The demo's figures (``figures``, JSON-able) and its printable report."""
    figures: dict
    report: str


def run_demo(dev_factory, *, config, samples: int = 20000, test: int = 512, epochs: int = 3,
             batch: int = 64, seed: int = 1, save_dir=None, progress=None) -> DemoResult:
    """Train, quantize, compile and run the small DLRM; ``dev_factory(compiled)``
    opens the device (it gets the compiled model, to size a simulated chip's
    memory and configuration). ``save_dir``: write there what ``seedchip
    compile`` and ``seedchip run`` take: ``dlrm.npz`` (the trained float
    model's state_dict), ``calib.npz``, ``test.npz`` (with ``label``) and
    ``model.seedchip``."""
    say = progress or (lambda s: None)
    arch = SMALL_ARCH
    say(f"teacher and data: {arch.describe()}; {samples} training + {test} held-out samples")
    teacher = init_dlrm(arch, seed=seed)
    data, labels = synthetic_ctr(teacher, samples + test, seed=seed + 1)
    tr, te = data.slice(0, samples), data.slice(samples, samples + test)
    ytr, yte = labels[:samples], labels[samples:]
    t0 = time.monotonic()
    model = train(init_dlrm(arch, seed=seed + 2), tr, ytr, epochs=epochs, seed=seed + 3,
                  log=lambda e, loss: say(f"epoch {e}/{epochs}: training loss {loss:.4f}"))
    t_train = time.monotonic() - t0
    calib = tr.slice(0, min(2048, samples))
    q = quantize(model, calib)
    compiled = compile_model(q, batch=batch, limits=isa.Limits.from_config(config),
                             mem_bytes=DEMO_MEM_BYTES, config=config)
    say(f"compiled: {len(compiled.program)} instructions, {compiled.meta['static_bytes']} "
        f"bytes of weights and tables")
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        model.save(save_dir / "dlrm.npz")
        calib.save(save_dir / "calib.npz")
        te.save(save_dir / "test.npz", label=yte)
        compiled.save(save_dir / "model.seedchip")
        say(f"wrote dlrm.npz, calib.npz, test.npz and model.seedchip to {save_dir}")
    p_float = model.predict(te)
    golden = q.forward_int(te)["top"][-1][:, 0]
    p_quant = q.predict(te)
    dev = dev_factory(compiled)
    try:
        res = ModelRunner(dev, compiled, progress=say).run(te)
    finally:
        dev.close()
    exact = bool(np.array_equal(res.acc, golden))
    clk = compiled.meta["clk_mhz"]
    fig = {
        "arch": dataclasses.asdict(arch), "train_samples": samples, "test_samples": test,
        "epochs": epochs, "train_seconds": t_train, "batch": batch,
        "auc_teacher": auc(yte, teacher_probs(teacher, te)),
        "auc_float": auc(yte, p_float), "auc_chip": auc(yte, res.scores),
        "logloss_float": log_loss(yte, p_float), "logloss_chip": log_loss(yte, res.scores),
        "mean_abs_dctr": float(np.abs(res.scores - p_float).mean()),
        "bit_exact": exact, "mismatches": int(np.sum(res.acc != golden)),
        "quant_equals_chip": bool(np.allclose(p_quant, res.scores)),
        "cycles_per_batch": [b["cycles"] for b in res.batches],
        "clk_mhz": clk, "breakdown": res.cycle_breakdown(),
    }
    cyc = [c for c in fig["cycles_per_batch"] if c]
    lines = [
        f"data: {samples} training, {test} held-out samples; the teacher's own AUC "
        f"{fig['auc_teacher']:.4f}",
        f"float model (NumPy, {epochs} epochs, {t_train:.0f} s): AUC {fig['auc_float']:.4f}, "
        f"log loss {fig['logloss_float']:.4f}",
        f"chip (int8):                     AUC {fig['auc_chip']:.4f}, "
        f"log loss {fig['logloss_chip']:.4f}, mean |dCTR| vs float {fig['mean_abs_dctr']:.4f}",
        "chip vs the quantized golden model: "
        + ("bit-exact on every sample" if exact else f"{fig['mismatches']} samples DIFFER"),
    ]
    if cyc:
        per = float(np.mean(cyc))
        lines.append(f"speed: {per:.0f} cycles per batch of {batch} = {per / clk:.1f} us at "
                     f"{clk:g} MHz, {batch * clk * 1e6 / per:,.0f} inferences/s on the chip")
    return DemoResult(figures=fig, report="\n".join(lines))
