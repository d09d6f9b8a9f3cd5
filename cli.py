"""The ``seedchip`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .config import OVERRIDE_FIELDS, PRESETS, ChipConfig, config_from_args

__all__ = ["main", "load_config"]


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def load_config(args) -> ChipConfig:
    """The configuration from ``--config FILE`` and the per-field overrides."""
    try:
        return config_from_args(args)
    except OSError as e:
        raise UsageError(f"cannot read configuration {args.config}: {e}")
    except (TypeError, ValueError) as e:
        raise UsageError(f"invalid configuration: {e}")


def _add_config_args(p):
    p.add_argument("--config", metavar="FILE|PRESET",
                   help="configuration JSON, or a preset: " + ", ".join(PRESETS)
                   + " (default: the built-in default)")
    p.add_argument("--rows", type=int, help="array rows (the K dimension)")
    p.add_argument("--cols", type=int, help="array columns (the N dimension)")
    p.add_argument("--max-m", dest="max_m", type=int, help="largest M the buffers hold")
    p.add_argument("--max-k", dest="max_k", type=int, help="largest K the buffers hold")
    p.add_argument("--max-n", dest="max_n", type=int, help="largest N the buffers hold")
    p.add_argument("--clk-mhz", dest="clk_mhz", type=float, help="core clock on the board")
    p.add_argument("--sdram-mhz", dest="sdram_mhz", type=float, help="SDRAM controller clock on the board")
    p.add_argument("--gather", dest="gather", action="store_true",
                   help="put the gather engine in the board build (config.gather)")
    p.add_argument("--no-gather", dest="no_gather", action="store_true",
                   help="leave the gather engine out of the board build")
    p.add_argument("--gather-lanes", dest="gather_lanes", type=int,
                   help="gather engine datapath bytes per beat")
    p.add_argument("--gather-cache-rows", dest="gather_cache_rows", type=int,
                   help="gather engine hot-row cache lines (0: none)")


# -- generate ---------------------------------------------------------------
def cmd_generate(args):
    from amaranth.back import verilog
    from .rtl.gemm import GemmUnit
    config = load_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unit = GemmUnit(config=config)
    text = verilog.convert(unit, name=args.name)
    (out / f"{args.name}.v").write_text(text)
    (out / "config.json").write_text(config.to_json() + "\n")
    print(f"wrote {out / (args.name + '.v')} ({config.rows}x{config.cols} array, "
          f"{len(text.splitlines())} lines) and {out / 'config.json'}")


# -- build / flash ------------------------------------------------------------
def cmd_build(args):
    from .boards import build as board_build
    argv = ["--board", args.board]
    if args.config:
        argv += ["--config", args.config]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.build_dir:
        argv += ["--build-dir", args.build_dir]
    if args.allow_timing_fail:
        argv += ["--allow-timing-fail"]
    if getattr(args, "gather", False):
        argv += ["--gather"]
    if getattr(args, "no_gather", False):
        argv += ["--no-gather"]
    for key in OVERRIDE_FIELDS:
        v = getattr(args, key)
        if v is not None:
            argv += [f"--{key.replace('_', '-')}", str(v)]
    return board_build.main(argv)


def cmd_flash(args):
    from .boards import build as board_build
    argv = ["--board", args.board]
    if args.bitstream:
        argv += ["--bitstream", args.bitstream]
    return board_build.flash_main(argv)


# -- embedding-bag ----------------------------------------------------------------
def cmd_embedding_bag(args):
    from .emb_protocol import GatherError
    from .sim.gather_run import describe_error, run_embedding_bag
    table = _load_npy(args.table, "--table")
    indices = _load_npy(args.indices, "--indices")
    offsets = _load_npy(args.offsets, "--offsets")
    weights = _load_npy(args.weights, "--weights") if args.weights else None
    try:
        r = run_embedding_bag(table, indices, offsets, mode=args.mode, weights=weights,
                              bounds=args.bounds, include_last_offset=args.include_last_offset)
    except ValueError as e:
        raise UsageError(str(e))
    bags = len(offsets) - (1 if args.include_last_offset else 0)
    print(f"{len(r.pooled)} of {bags} bags pooled ({args.mode}), {r.lookups} lookups in "
          f"{r.cycles} cycles = {r.lookups_per_cycle:.4f} lookups/cycle "
          f"(engine + SDRAM controller + SDRAM model, IS42S16160 at 143 MHz)")
    if r.clamped or r.skipped:
        print(f"out-of-range indices: {r.clamped} clamped to row 0, {r.skipped} skipped")
    if args.out:
        np.save(args.out, r.pooled.astype(np.int32))
        print(f"wrote {args.out}")
    elif r.error == GatherError.NONE:
        print(r.pooled)
    if r.error != GatherError.NONE:
        print(f"engine error {r.error.name}: "
              f"{describe_error(r.error, r.error_bag, r.error_index)}", file=sys.stderr)
        return 1
    return 0


# -- gemm -----------------------------------------------------------------------
def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {what} from {path}: {e}")


def _check_int_array(x, what, dtypes, ndim):
    if x.ndim != ndim:
        raise UsageError(f"{what} must be {ndim}-dimensional, not shape {x.shape}")
    if x.dtype not in [np.dtype(d) for d in dtypes]:
        raise UsageError(f"{what} must have dtype {' or '.join(dtypes)}, not {x.dtype}")


def validate_gemm_operands(config, a, b, bias=None, multiplier=None, shift=None):
    """Check shapes, dtypes and ranges of a GEMM for ``config``; raise UsageError."""
    from .sim import golden
    in_dtype = "int8" if config.in_width == 8 else "int16"
    _check_int_array(a, "A", [in_dtype], 2)
    _check_int_array(b, "B", [in_dtype], 2)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise UsageError(f"A is {m}x{k} but B is {k2}x{n}: the inner dimensions must match")
    for name, v, hi in (("M", m, config.max_m), ("K", k, config.max_k), ("N", n, config.max_n)):
        if not 1 <= v <= hi:
            raise UsageError(f"{name} must be in range 1..{hi} for this configuration, not {v}")
    lo_in, hi_in = -(1 << (config.in_width - 1)), (1 << (config.in_width - 1)) - 1
    for name, x in (("A", a), ("B", b)):
        if x.size and (x.min() < lo_in or x.max() > hi_in):
            raise UsageError(f"{name} values must be in range {lo_in}..{hi_in}")
    if bias is not None:
        _check_int_array(bias, "bias", ["int32"], 1)
        if bias.shape != (n,):
            raise UsageError(f"bias must have shape ({n},), not {bias.shape}")
    if (multiplier is None) != (shift is None):
        raise UsageError("--multiplier and --shift go together")
    if multiplier is not None:
        _check_int_array(multiplier, "multiplier", ["int32"], 1)
        _check_int_array(shift, "shift", ["int8", "int16", "int32", "int64", "uint8"], 1)
        for name, x in (("multiplier", multiplier), ("shift", shift)):
            if x.shape != (n,):
                raise UsageError(f"{name} must have shape ({n},), not {x.shape}")
        try:
            golden.check_requant_params(multiplier, shift)
        except ValueError as e:
            raise UsageError(str(e))


def cmd_gemm(args):
    from .sim import golden
    from .sim.gemm_run import run_gemm_rtl
    config = load_config(args)
    a = _load_npy(args.a, "A")
    b = _load_npy(args.b, "B")
    bias = _load_npy(args.bias, "bias") if args.bias else None
    mult = _load_npy(args.multiplier, "multiplier") if args.multiplier else None
    shift = _load_npy(args.shift, "shift") if args.shift else None
    validate_gemm_operands(config, a, b, bias, mult, shift)
    (m, k), n = a.shape, b.shape[1]
    print(f"running {m}x{k} @ {k}x{n} on the simulated RTL ({config.rows}x{config.cols} array, "
          f"{'int8 requantized' if mult is not None else 'raw int32'} output)...", flush=True)
    c, cycles = run_gemm_rtl(config, a, b, bias=bias, multiplier=mult, shift=shift, relu=args.relu)
    expect = golden.gemm(a, b, bias, mult, shift, relu=args.relu, out_bits=config.in_width)
    exact = bool(np.array_equal(c, expect))
    c = c.astype(np.int8 if mult is not None and config.in_width == 8 else np.int32)
    ideal = config.ideal_cycles(m, k, n)
    util = ideal / cycles if cycles else 0.0
    print(f"cycles: {cycles}   ideal (M*K*N/{config.macs}): {ideal}   MAC utilization: {util:.1%}")
    print(f"bit-exact against the golden model: {'yes' if exact else 'NO'}")
    if args.out:
        np.save(args.out, c)
        print(f"wrote {args.out} ({c.dtype}, {c.shape[0]}x{c.shape[1]})")
    else:
        with np.printoptions(threshold=200, linewidth=120):
            print(c)
    return 0 if exact else 1


# -- bench ----------------------------------------------------------------------
def cmd_bench(args):
    from . import bench
    return bench.main(args)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="seedchip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write Verilog of the matrix unit for a configuration")
    _add_config_args(p)
    p.add_argument("--out", default="build/verilog", help="output directory (default build/verilog)")
    p.add_argument("--name", default="seedchip_gemm", help="top module name")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("build", help="synthesize, place and route a board top to a bitstream")
    _add_config_args(p)
    p.add_argument("--board", default="ulx3s-85f")
    p.add_argument("--seed", type=int, help="nextpnr placement seed")
    p.add_argument("--build-dir", help="default: build/<board>")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when the clock target is missed")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("flash", help="program a connected board with the built bitstream")
    p.add_argument("--board", default="ulx3s-85f")
    p.add_argument("--bitstream", help="default: build/<board>/top.bit")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("gemm", help="run C = A.B (+bias, requantization) on the simulated RTL")
    _add_config_args(p)
    p.add_argument("--a", required=True, metavar="A.npy", help="int8 [M, K]")
    p.add_argument("--b", required=True, metavar="B.npy", help="int8 [K, N]")
    p.add_argument("--bias", metavar="BIAS.npy", help="int32 [N]")
    p.add_argument("--multiplier", metavar="M.npy", help="int32 [N], 0 or in [2**30, 2**31)")
    p.add_argument("--shift", metavar="S.npy", help="integer [N], right shifts 0..31")
    p.add_argument("--relu", action="store_true", help="clamp negative results to 0")
    p.add_argument("--out", metavar="C.npy", help="write the result here (else print it)")
    p.set_defaults(func=cmd_gemm)

    p = sub.add_parser("embedding-bag",
                       help="run EmbeddingBag lookups on the simulated RTL (engine + SDRAM)")
    p.add_argument("--table", metavar="T.npy", required=True, help="int8 [rows, dim] table")
    p.add_argument("--indices", metavar="I.npy", required=True, help="1-D integer indices")
    p.add_argument("--offsets", metavar="O.npy", required=True,
                   help="1-D bag offsets, PyTorch meaning (B entries; see --include-last-offset)")
    p.add_argument("--include-last-offset", action="store_true",
                   help="offsets has B + 1 entries, the last one = len(indices)")
    p.add_argument("--mode", choices=("sum", "mean", "max"), default="sum")
    p.add_argument("--weights", metavar="W.npy", help="int8 per-sample weights (mode sum)")
    p.add_argument("--bounds", choices=("fatal", "clamp", "skip"), default="fatal",
                   help="out-of-range indices: stop with an error, use row 0, or leave out")
    p.add_argument("--out", metavar="P.npy", help="write the pooled [B, dim] int32 result here")
    p.set_defaults(func=cmd_embedding_bag)

    p = sub.add_parser("bench", help="benchmarks: GEMM cycles/utilization on the RTL + board figures")
    _add_config_args(p)
    p.add_argument("--out", default="build/bench.json")
    p.add_argument("--readme", help="rewrite the figures table in this README")
    p.add_argument("--board", default="ulx3s-85f")
    p.add_argument("--no-build", action="store_true",
                   help="use the existing build report instead of running the board build")
    p.add_argument("--sizes", help="comma-separated MxKxN list (default: the standard set)")
    p.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UsageError as e:
        print(f"seedchip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
