"""The DLRM benchmark (``seedchip bench --only dlrm``): accuracy, speed, link.

For two sizes -- :data:`~seedchip.firmware.dlrm_train.SMALL_ARCH` and the
Kaggle shape (:func:`~seedchip.firmware.dlrm_train.kaggle_arch`, tables
capped at :data:`KAGGLE_CAP` rows for the simulation; the layout of the
100k-row cap is checked to fit the board's 32 MiB) -- a float DLRM is trained
on synthetic clicks of a random teacher, quantized and compiled, and:

* **accuracy** on held-out samples: AUC and log loss of the float model and
  of the quantized golden model (which the chip equals bit for bit), mean
  |dCTR|, and the cost of each stage quantized alone;
* **speed** on the simulated chip (the RTL under Verilator; the on-chip RAM,
  and with ``sdram`` the pin-level SDRAM model of the ULX3S at the board's
  100 MHz): cycles per batch of 64 and of 1 from the chip's counter, the
  result checked bit for bit; each instruction alone (where the time goes:
  GATHER, GEMM, INTERACT, COPY); the host CPU running the same model in
  NumPy (the quantized golden model and the float model) and in PyTorch
  (float, :mod:`~seedchip.firmware.dlrm_torch`, if installed) in the same run;
* **link**: the bytes a request and its answer take on the UART and the
  samples/s that carries at the measured goodput, against what the chip
  computes.

The memory image reaches the simulated chip preloaded when the simulator
supports it (the link would take minutes of wall time for the Kaggle
image); what the board's link needs to load it is computed from the link's
measured goodput.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import isa
from .compiler import compile_model
from .dlrm_train import SMALL_ARCH, auc, init_dlrm, kaggle_arch, log_loss, synthetic_ctr, train
from .quant import quantize
from .runtime import ModelRunner, pack_batch

__all__ = ["run_dlrm_bench", "dlrm_lines", "KAGGLE_CAP", "BOARD_CAP"]

#: Rows per Kaggle table in the simulated benchmark (the link and the
#: simulator's memory); the layout check uses :data:`BOARD_CAP`.
KAGGLE_CAP = 2000
#: The cap with which the Kaggle tables fill the ULX3S's 32 MiB (DLRM's
#: ``--max-ind-range=100000``: 840,543 rows, 13.4 MB of int8 tables).
BOARD_CAP = 100_000
#: UART goodput measured by ``seedchip bench --only link`` (of 3 Mbaud / 10).
LINK_GOODPUT = 0.987
LINK_BYTES_PER_S = 3_000_000 / 10 * LINK_GOODPUT
_SIZES = {
    "small": dict(arch=SMALL_ARCH, train=20000, epochs=3),
    # lr 0.002: at the default 0.01 every output of this bottom MLP died (ReLU
    # at 0 for every sample), so the benchmark measured a model without one
    "kaggle": dict(arch=kaggle_arch(cap=KAGGLE_CAP), train=20000, epochs=2, lr=0.002),
}


def _accuracy(model, q, te, y):
    pf, pq = model.predict(te), q.predict(te)
    out = {"auc_float": auc(y, pf), "auc_quant": auc(y, pq), "logloss_float": log_loss(y, pf),
           "logloss_quant": log_loss(y, pq), "mean_abs_dctr": float(np.abs(pf - pq).mean()),
           "stages": []}
    for s in q.stages():
        p = 1 / (1 + np.exp(-q.fake_quant_logits(model, te, [s])))
        out["stages"].append({"stage": s, "auc": auc(y, p),
                              "mean_abs_dctr": float(np.abs(p - pf).mean())})
    return out


def _best_rate(fn, batch, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return batch / best


def _host_speed(model, q, inputs, reps=3):
    """Inferences/s of the host CPU (this machine), best of ``reps`` on the same
    ``inputs``: NumPy float and quantized golden, and PyTorch float (the
    ``DLRM_Net``-shaped module, ``torch.inference_mode()``, on one thread, and
    again on PyTorch's default thread count) when PyTorch is installed; else
    ``pytorch_float`` is None and ``pytorch_float_reason`` says why."""
    out = {"numpy_float": _best_rate(lambda: model.predict(inputs), inputs.batch, reps),
           "numpy_int8": _best_rate(lambda: q.predict(inputs), inputs.batch, reps)}
    try:
        import torch

        from .dlrm_torch import torch_inputs, torch_module
    except ImportError as e:
        return {**out, "pytorch_float": None,
                "pytorch_float_reason": f"PyTorch is not installed ({e})"}
    net = torch_module(model)

    def run():
        with torch.inference_mode():
            net(*torch_inputs(inputs))
    # one thread, as the NumPy figures run: with another job on the cores (a nextpnr
    # run), PyTorch's default threads wait on each other at every op, and the small
    # DLRM ran 2,000/s on 2 threads but 188,000/s on one; the default is kept too
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out["pytorch_float"] = _best_rate(run, inputs.batch, reps)
    finally:
        torch.set_num_threads(threads)
    out["pytorch_float_default_threads"] = _best_rate(run, inputs.batch, reps)
    out["pytorch_default_threads"] = threads
    out["pytorch_version"] = torch.__version__
    return out


def _request_bytes(compiled, inputs):
    """Link bytes per sample each way (``to_chip``: the batch's WRITE frames,
    START and a STATUS poll; ``from_chip``: their answers and the READ of the
    logits), frames of up to MAX_DATA bytes with their header, CRC and address
    or status bytes (:mod:`seedchip.link_protocol`). The UART is full duplex:
    the busier direction bounds the rate."""
    from ..link_protocol import CRC_BYTES, HEADER_BYTES, MAX_DATA
    frame = HEADER_BYTES + CRC_BYTES + 4 + 1       # + the address/length, + a status byte
    writes = sum(len(d) for _, d in pack_batch(compiled, inputs))
    wframes = -(-writes // MAX_DATA)
    logits = inputs.batch * compiled.meta["logits"]["stride"]
    rframes = -(-logits // MAX_DATA)
    to_chip = writes + (wframes + rframes + 2) * frame
    from_chip = logits + (wframes + rframes + 2) * frame
    return {"to_chip": to_chip / inputs.batch, "from_chip": from_chip / inputs.batch}


def _chip_runs(kind, compiled, runs, config, say, preload):
    """Cycles per batch for each (label, compiled, inputs) of ``runs`` on device ``kind``."""
    from . import open_device
    out = {}
    for label, comp, inputs in runs:
        kw = {"chip": config}
        if kind == "sim":
            kw["mem_bytes"] = comp.sim_mem_bytes()
        if preload:
            kw["preload"] = comp.image
        say(f"{kind}: {label}: opening the simulated chip")
        with open_device(kind, timeout=600.0, **kw) as dev:
            r = ModelRunner(dev, comp, progress=say, preloaded=preload)
            res = r.run(inputs)
            want = comp.quant.forward_int(inputs)["top"][-1][:, 0]
            prof = r.profile()
            retransmits = dev.link.retransmits
        cyc = [b["cycles"] for b in res.batches]
        by_op = {}
        for p in prof:
            by_op[p["op"]] = by_op.get(p["op"], 0) + p["cycles"]
        out[label] = {"batch": comp.batch, "batches": len(cyc), "cycles_per_batch": cyc,
                      "bit_exact": bool(np.array_equal(res.acc, want)),
                      "breakdown": res.cycle_breakdown(), "per_op_alone": by_op,
                      "per_insn_alone": [{"insn": p["insn"], "cycles": p["cycles"]}
                                         for p in prof],
                      # requests the host sent again (no answer within the timeout, or a NAK)
                      "link_retransmits": retransmits}
        say(f"{kind}: {label}: {cyc} cycles, bit-exact {out[label]['bit_exact']}"
            + (f", {retransmits} link retransmissions" if retransmits else ""))
    return out


def _preload_supported() -> bool:
    import inspect

    from .sim import SimChip  # noqa: PLC0415
    return "preload" in inspect.signature(SimChip).parameters


def run_dlrm_bench(config, *, sdram: bool = True, progress=print) -> dict:
    """Both sizes (see the module docstring); JSON-able results."""
    say = progress
    preload = _preload_supported()
    clk = config.clk_mhz
    limits = isa.Limits.from_config(config)
    out = {"clk_mhz": clk, "preloaded": preload, "link_bytes_per_s": LINK_BYTES_PER_S}
    for size, spec in _SIZES.items():
        arch = spec["arch"]
        say(f"dlrm {size}: {arch.describe()}")
        teacher = init_dlrm(arch, seed=10)
        data, labels = synthetic_ctr(teacher, spec["train"] + 2000, seed=11)
        tr, te = data.slice(0, spec["train"]), data.slice(spec["train"], spec["train"] + 2000)
        yte = labels[spec["train"]:]
        t0 = time.monotonic()
        model = train(init_dlrm(arch, seed=12), tr, labels[:spec["train"]],
                      epochs=spec["epochs"], seed=13, lr=spec.get("lr", 0.01))
        say(f"dlrm {size}: trained in {time.monotonic() - t0:.0f} s")
        q = quantize(model, tr.slice(0, 2000))
        r = {"arch": dataclasses.asdict(arch), "accuracy": _accuracy(model, q, te, yte),
             "macs_per_sample": arch.mlp_macs() + arch.n_pairs * arch.dim}
        mem = 32 << 20
        c64 = compile_model(q, batch=64, limits=limits, mem_bytes=mem, config=config)
        c1 = compile_model(q, batch=1, limits=limits, mem_bytes=mem, config=config)
        r["image_bytes"] = c64.meta["static_bytes"]
        # the floors of one batch: the MACs on the array, the weights through the
        # board's 16-bit SDRAM (read once per batch: every layer's B operand)
        wbytes = sum(L.k * isa.round_up(L.n) for L in q.bot + q.top)
        r["bounds"] = {"weight_bytes": wbytes,
                       "sdram_cycles_for_weights": wbytes // 2,
                       **{f"mac_cycles_batch{b}": -(-b * r["macs_per_sample"] // config.macs)
                          for b in (1, 64)}}
        r["insns_batch64"] = len(c64.program)
        r["host"] = {"batch64": _host_speed(model, q, te.slice(0, 64)),
                     "batch1": _host_speed(model, q, te.slice(0, 1), reps=20)}
        r["link_bytes_per_sample"] = {"batch64": _request_bytes(c64, te.slice(0, 64)),
                                      "batch1": _request_bytes(c1, te.slice(0, 1))}
        r["image_load_s_at_3mbaud"] = r["image_bytes"] / LINK_BYTES_PER_S
        if size == "kaggle":
            big = dataclasses.replace(arch, table_rows=kaggle_arch(cap=BOARD_CAP).table_rows)
            r["board_cap_rows"] = sum(big.table_rows)
            r["board_cap_table_bytes"] = sum(big.table_rows) * isa.table_pitch(arch.dim)
            r["board_cap_image_load_s"] = (r["image_bytes"] + r["board_cap_table_bytes"]
                                           - sum(arch.table_rows) * isa.table_pitch(arch.dim)
                                           ) / LINK_BYTES_PER_S
        runs = [("batch64", c64, te.slice(0, 128)), ("batch1", c1, te.slice(0, 3))]
        r["sim"] = _chip_runs("sim", c64, runs, config, say, preload)
        if sdram and (preload or size == "small"):
            r["sim_sdram"] = _chip_runs("sim-sdram", c64, runs[:1] + [("batch1", c1,
                                                                        te.slice(0, 2))],
                                        config, say, preload)
        out[size] = r
    return out


def _speed(r, where, clk):
    d = r.get(where) or {}
    res = {}
    for label in ("batch64", "batch1"):
        x = d.get(label)
        if x:
            per = float(np.mean(x["cycles_per_batch"]))
            res[label] = {"cycles": per, "us": per / clk, "inf_s": x["batch"] * clk * 1e6 / per,
                          "bit_exact": x["bit_exact"]}
    return res


def dlrm_lines(d) -> list:
    """README table rows of a :func:`run_dlrm_bench` result."""
    clk = d["clk_mhz"]
    lines = ["", f"| DLRM compiled to the chip (`chip` preset, {clk:g} MHz; cycles from its "
             f"counter, results bit-exact; Kaggle shape with tables capped at {KAGGLE_CAP} "
             "rows) | small | Kaggle-shaped |", "|---|---:|---:|"]
    s, k = d.get("small", {}), d.get("kaggle", {})

    def row(label, fn):
        vals = []
        for r in (s, k):
            try:
                vals.append(fn(r))
            except (KeyError, TypeError):
                vals.append("")
        lines.append(f"| {label} | {vals[0]} | {vals[1]} |")

    row("AUC float / chip (held-out synthetic)", lambda r: f"{r['accuracy']['auc_float']:.4f} / "
        f"{r['accuracy']['auc_quant']:.4f}")
    row("mean \\|dCTR\\| chip vs float", lambda r: f"{r['accuracy']['mean_abs_dctr']:.4f}")
    for where, label in (("sim", "on-chip RAM"), ("sim_sdram", "SDRAM model, 16-bit")):
        for b in ("batch64", "batch1"):
            row(f"{b.replace('batch', 'batch ')}: inferences/s ({label})",
                lambda r, w=where, b=b: f"{_speed(r, w, clk)[b]['inf_s']:,.0f}")
        row(f"batch 1 latency ({label})", lambda r, w=where: f"{_speed(r, w, clk)['batch1']['us']:.1f} us")
    row("host CPU, NumPy int8 golden, batch 64: inferences/s",
        lambda r: f"{r['host']['batch64']['numpy_int8']:,.0f}")
    row("host CPU, NumPy float, batch 64: inferences/s",
        lambda r: f"{r['host']['batch64']['numpy_float']:,.0f}")
    row("host CPU, PyTorch float (1 thread), batch 64: inferences/s",
        lambda r: f"{r['host']['batch64']['pytorch_float']:,.0f}")

    def over_host(r, name):
        return _speed(r, "sim_sdram", clk)["batch64"]["inf_s"] / r["host"]["batch64"][name]
    for name, label in (("numpy_int8", "NumPy int8"), ("pytorch_float", "PyTorch float (1 thread)")):
        row(f"chip on SDRAM / host {label}, batch 64",
            lambda r, n=name: f"{over_host(r, n):.1f}x")
    row("UART at 3 Mbaud: bytes per sample to the chip (batch 64) / samples/s it carries",
        lambda r: f"{r['link_bytes_per_sample']['batch64']['to_chip']:.0f} B / "
        f"{d['link_bytes_per_s'] / r['link_bytes_per_sample']['batch64']['to_chip']:,.0f}")
    return lines
