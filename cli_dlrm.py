"""``seedchip compile``, ``seedchip run`` and ``seedchip demo``: a DLRM on the chip.

Registered by :func:`seedchip.cli.main` (:func:`register`); the mistakes a
user can make (a missing or malformed file, a model the chip cannot run,
inputs that do not fit the model) are found before any simulator starts and
reported in one line with exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cli_common import (CommandError, UsageError, _add_config_args, _add_device_args, _device_spec,
                  _open_device, _out_file, _progress_printer, _where, _writable_dir, load_config)

__all__ = ["register"]

#: The chip memory ``seedchip compile`` lays a model out in by default: the ULX3S's SDRAM.
DEFAULT_MEM_BYTES = 32 << 20


def _model_error():
    from .firmware.dlrm import ModelError
    return ModelError


def _input_file(path, what, suffixes):
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what}: no such file: {path}")
    if suffixes and p.suffix not in suffixes:
        raise UsageError(f"{what} must be a {' or '.join(suffixes)} file, not {path}")
    return p


# -- compile ----------------------------------------------------------------------------
def cmd_compile(args):
    from . import isa
    from .config import CHIP_CONFIG
    from .firmware.compiler import compile_model
    from .firmware.dlrm import DLRMFloat, Inputs
    from .firmware.quant import quantize
    ModelError = _model_error()
    config = load_config(args, CHIP_CONFIG)
    _input_file(args.model, "--model", (".pt", ".pth", ".npz"))
    _input_file(args.calib, "--calib", (".npz",))
    out = Path(args.out)
    _writable_dir(out.parent, "--out")
    if args.batch < 1 or args.batch > 0xFFFF:
        raise UsageError(f"--batch must be in range 1..65535, not {args.batch}")
    if not 50.0 <= args.percentile <= 100.0:
        raise UsageError(f"--percentile must be in range 50..100, not {args.percentile}")
    if args.mem_bytes < 4096:
        raise UsageError(f"--mem-bytes must be at least 4096, not {args.mem_bytes}")
    try:
        model = DLRMFloat.load(args.model)
    except ModelError as e:
        raise UsageError(f"--model {args.model}: {e}") from None
    try:
        calib = Inputs.load(args.calib)
        calib.check(model.arch)
    except ModelError as e:
        raise UsageError(f"--calib: {e}") from None
    try:
        q = quantize(model, calib, method=args.calib_method, percentile=args.percentile)
        c = compile_model(q, batch=args.batch, limits=isa.Limits.from_config(config),
                          mem_bytes=args.mem_bytes, config=config, max_bag=args.max_bag)
    except ModelError as e:
        raise UsageError(str(e)) from None
    c.save(out)
    print(model.arch.describe())
    print(q.describe())
    print(f"calibration: {calib.batch} samples")
    print()
    print(c.layer_table())
    print()
    m = c.meta
    batch_bytes = m["used_bytes"] - m["static_bytes"]
    print(f"memory: {m['static_bytes']:,} bytes of weights, tables, descriptors and program "
          f"(written once), {batch_bytes:,} bytes of batch buffers; {m['used_bytes']:,} of "
          f"{m['mem_bytes']:,} used")
    if args.memory_map:
        from .firmware.program import Allocator
        mem = Allocator(m["mem_bytes"])
        mem.regions = {k: tuple(v) for k, v in m["regions"].items()}
        mem.next = m["used_bytes"]
        print(mem)
    print(f"wrote {out}")
    return 0


# -- run --------------------------------------------------------------------------------
def _load_compiled(path):
    from .firmware.compiler import Compiled
    _input_file(path, "--model", ())
    try:
        return Compiled.load(path)
    except _model_error() as e:
        raise UsageError(str(e)) from None


def _load_inputs(path, compiled):
    """The inputs, checked against the model and every batch's bags (before a device opens)."""
    from .firmware.dlrm import Inputs
    from .firmware.runtime import pack_batch
    _input_file(path, "--inputs", (".npz",))
    try:
        inputs = Inputs.load(path)
        inputs.check(compiled.quant.arch)
        if inputs.batch == 0:
            raise _model_error()("the inputs hold no sample")
        for lo in range(0, inputs.batch, compiled.batch):
            pack_batch(compiled, inputs.slice(lo, min(lo + compiled.batch, inputs.batch)))
    except _model_error() as e:
        raise UsageError(f"--inputs: {e}") from None
    with np.load(path) as z:
        labels = z["label"] if "label" in z.files else None
    return inputs, labels


def _open_for(kind, port, args, compiled, preload=False):
    """The device, a simulated one sized and configured for ``compiled`` (with
    ``preload``: its memory image already in place)."""
    if kind == "sim" and args.mem_bytes is None:
        args.mem_bytes = compiled.sim_mem_bytes()
    if kind == "sim-sdram" and compiled.meta["used_bytes"] > 32 << 20:
        raise UsageError("the model needs more than the SDRAM's 32 MiB")
    if kind == "serial":
        return _open_device(kind, port, args)
    return _open_device(kind, port, args, chip=compiled.config,
                        **({"preload": compiled.image} if preload else {}))


def cmd_run(args):
    from .firmware.device import ProgramError
    from .firmware.link import LinkError
    from .firmware.runtime import ModelRunner
    kind, port = _device_spec(args)
    if args.preload and kind == "serial":
        raise UsageError("--preload is for a simulated chip (--device sim or sim-sdram); a "
                         "board gets its image over the link")
    compiled = _load_compiled(args.model)
    inputs, labels = _load_inputs(args.inputs, compiled)
    out = _out_file(args.out, "--out") if args.out else None
    say = _progress_printer()
    dev = _open_for(kind, port, args, compiled, preload=args.preload)
    try:
        print(f"running {inputs.batch} samples on {_where(kind, port)} in batches of "
              f"{compiled.batch}", flush=True)
        runner = ModelRunner(dev, compiled, progress=say, preloaded=args.preload)
        res = runner.run(inputs)
        prof = runner.profile() if args.profile else None
    except (ProgramError, LinkError) as e:
        raise CommandError(str(e)) from None
    except _model_error() as e:
        raise UsageError(str(e)) from None
    finally:
        dev.close()
    print(res.summary(compiled.meta["clk_mhz"]))
    if prof:
        total = sum(p["cycles"] for p in prof)
        print(f"each instruction alone (the last batch's data; {total} cycles in all, "
              f"{res.batches[-1]['cycles']} together):")
        for p in prof:
            print(f"  {p['cycles']:9d}  {p['insn']}")
    ok = True
    if args.check:
        ref = compiled.quant.forward_int(inputs)["top"][-1][:, 0]
        bad = int(np.sum(ref != res.acc))
        ok = bad == 0
        print("chip vs the quantized golden model: " + ("bit-exact on every sample" if ok else
              f"{bad} of {ref.size} samples DIFFER"))
    if labels is not None:
        from .firmware.dlrm_train import auc, log_loss
        print(f"labels: AUC {auc(labels, res.scores):.4f}, log loss "
              f"{log_loss(labels, res.scores):.4f}")
    if out is not None:
        np.save(out, res.scores)
        print(f"wrote {out} ({res.scores.size} click probabilities)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"samples": int(res.scores.size), "batch": compiled.batch,
             "cycles_per_batch": [b["cycles"] for b in res.batches],
             "breakdown": res.cycle_breakdown(), "bit_exact": ok if args.check else None,
             "profile": prof,
             "clk_mhz": compiled.meta["clk_mhz"]}, indent=2))
    if not ok:
        raise CommandError("the chip's results differ from the golden model")
    return 0


# -- demo -------------------------------------------------------------------------------
def cmd_demo(args):
    from .config import CHIP_CONFIG
    from .firmware.demo import run_demo
    kind, port = _device_spec(args)
    if args.samples < 1000:
        raise UsageError(f"--samples must be at least 1000, not {args.samples}")
    if not 64 <= args.test <= 100000:
        raise UsageError(f"--test must be in range 64..100000, not {args.test}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, not {args.epochs}")
    if args.json:
        _writable_dir(Path(args.json).parent, "--json")
    if args.save and Path(args.save).exists() and not Path(args.save).is_dir():
        raise UsageError(f"--save: {args.save} is not a directory")
    config = load_config(args, CHIP_CONFIG)
    say = _progress_printer()

    def open_dev(compiled):
        say("starting the device")
        return _open_for(kind, port, args, compiled)

    try:
        r = run_demo(open_dev, config=config, samples=args.samples, test=args.test,
                     epochs=args.epochs, seed=args.seed, save_dir=args.save, progress=say)
    except _model_error() as e:
        raise UsageError(str(e)) from None
    print(r.report)
    if args.json:
        Path(args.json).write_text(json.dumps(r.figures, indent=2, default=float))
    if not r.figures["bit_exact"]:
        raise CommandError("the chip's results differ from the golden model")
    return 0


def register(sub):
    """Add compile, run and demo to the ``seedchip`` subparsers ``sub``."""
    p = sub.add_parser("compile", help="quantize a trained DLRM and compile it into a chip program",
                       description="Post-training quantization (int8 weights per channel, "
                       "activations per tensor from --calib, tables per table) and compilation "
                       "of a DLRM (facebookresearch/dlrm DLRM_Net state_dict, dot interaction) "
                       "into one chip program + memory image, saved as one file.")
    _add_config_args(p, default="the chip preset, as the board runs it")
    p.add_argument("--model", required=True, metavar="dlrm.pt|dlrm.npz",
                   help="the state_dict (torch.save needs PyTorch; .npz with the same keys)")
    p.add_argument("--calib", required=True, metavar="calib.npz",
                   help="calibration inputs: dense [B, n_dense], indices_t, offsets_t")
    p.add_argument("--out", required=True, metavar="model.seedchip")
    p.add_argument("--batch", type=int, default=64, help="samples per program run (default 64)")
    p.add_argument("--calib-method", choices=("max", "percentile"), default="percentile",
                   help="activation range: the maximum, or a percentile of |a| (default)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="with --calib-method percentile (default 99.99)")
    p.add_argument("--mem-bytes", dest="mem_bytes", type=int, default=DEFAULT_MEM_BYTES,
                   help=f"the chip memory to lay out in (default {DEFAULT_MEM_BYTES}: the "
                   "ULX3S's 32 MiB SDRAM)")
    p.add_argument("--max-bag", dest="max_bag", type=int,
                   help="most indices per bag a batch may bring (default: the engine's limit)")
    p.add_argument("--memory-map", action="store_true", help="print every region's address")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a compiled DLRM on the chip: click probabilities")
    _add_device_args(p)
    p.add_argument("--model", required=True, metavar="model.seedchip")
    p.add_argument("--inputs", required=True, metavar="batch.npz",
                   help="dense [B, n_dense], indices_t, offsets_t (and label: AUC is printed)")
    p.add_argument("--out", metavar="scores.npy", help="write the click probabilities here")
    p.add_argument("--check", action="store_true",
                   help="compare with the quantized golden model bit for bit (exit 1 if not)")
    p.add_argument("--preload", action="store_true",
                   help="(sim, sim-sdram) place the memory image in the simulated memory "
                   "instead of sending it over the link (sim-sdram's link is slow)")
    p.add_argument("--profile", action="store_true",
                   help="then run each instruction alone and print its cycles")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="train a small recommender on synthetic clicks, quantize, "
                       "compile and run it on the simulated chip")
    _add_config_args(p, default="the chip preset, as the board runs it")
    _add_device_args(p)
    p.add_argument("--samples", type=int, default=20000, help="training samples (default 20000)")
    p.add_argument("--test", type=int, default=512, help="held-out samples run on the chip "
                   "(default 512)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--save", metavar="DIR", help="keep the trained model (dlrm.npz), calib.npz, "
                   "test.npz and model.seedchip there, for seedchip compile / run")
    p.set_defaults(func=cmd_demo)
