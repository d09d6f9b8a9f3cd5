"""seedchip: an int8 recommendation-inference accelerator (systolic GEMM, EmbeddingBag
gather engine, SDR SDRAM controller) for open FPGA boards.

Subcommands run the chip's RTL in simulation (gemm, embedding-bag), write its
Verilog (generate), build and program a board (build, flash), measure it
(bench), talk to it over its host link (device) and run a recommender on it
(compile, run, demo). `seedchip COMMAND --help`
tells more.

Exit status: 0 done; 1 the work itself failed (a tool, the simulated engine,
a missed timing target); 2 a usage or input mistake, found before any long
work; 130/143 stopped by Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np

from .bench import PARTS as BENCH_PARTS
from .cli_common import (SIM_DEVICES, CommandError, UsageError, _add_config_args,  # noqa: F401
                         _add_device_args, _device_spec, _open_device, _out_file,
                         _progress_printer, _where, _writable_dir, load_config)

__all__ = ["main", "load_config", "UsageError", "CommandError", "Terminated"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, ``kill PID``), raised where the program is so
    that the same cleanup as Ctrl-C runs: child processes are stopped
    (``subprocess.run`` kills its child on any exception; the board build
    stops its tools' process group). Exit status 143."""


def _catch_sigterm():
    """Turn SIGTERM into :class:`Terminated` in the main thread; returns the
    previous handler (None where it cannot be set, e.g. off the main thread)."""
    def handler(signum, frame):
        raise Terminated()
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


# -- generate ---------------------------------------------------------------
#: Verilog-2005 (IEEE 1364) and the common SystemVerilog keywords: not usable as a module name.
VERILOG_KEYWORDS = frozenset("""
    always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config
    deassign default defparam design disable edge else end endcase endconfig endfunction
    endgenerate endmodule endprimitive endspecify endtable endtask event for force forever
    fork function generate genvar highz0 highz1 if ifnone incdir include initial inout input
    instance integer join large liblist library localparam macromodule medium module nand
    negedge nmos nor noshowcancelled not notif0 notif1 or output parameter pmos posedge
    primitive pull0 pull1 pulldown pullup pulsestyle_onevent pulsestyle_ondetect rcmos real
    realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled
    signed small specify specparam strong0 strong1 supply0 supply1 table task time tran
    tranif0 tranif1 tri tri0 tri1 triand trior trireg unsigned use uwire vectored wait wand
    weak0 weak1 while wire wor xnor xor
    bit byte logic int shortint longint class interface package program struct union enum
    typedef void string
""".split())


def check_verilog_name(name: str) -> str:
    """``name`` if it is a legal Verilog module name, else a :class:`UsageError`."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name):
        raise UsageError(f"--name must be a Verilog identifier (a letter or _, then letters, "
                         f"digits, _ or $), not {name!r}")
    if name in VERILOG_KEYWORDS:
        raise UsageError(f"--name {name!r} is a Verilog keyword; choose another module name")
    return name


def cmd_generate(args):
    from amaranth.back import verilog
    from .rtl.gemm import GemmUnit
    from .sim.runner import step
    config = load_config(args)
    check_verilog_name(args.name)
    out = Path(args.out)
    _writable_dir(out, "--out")
    unit = GemmUnit(config=config)
    with step(_progress_printer(), f"elaborating {config.rows}x{config.cols} matrix unit "
              f"{args.name}"):
        text = verilog.convert(unit, name=args.name)
    (out / f"{args.name}.v").write_text(text)
    (out / "config.json").write_text(config.to_json() + "\n")
    print(f"wrote {out / (args.name + '.v')} ({config.rows}x{config.cols} array, "
          f"{len(text.splitlines())} lines) and {out / 'config.json'}")


# -- build / flash ------------------------------------------------------------
def cmd_build(args):
    import shlex
    from .boards import build as board_build
    if args.top == "chip" and args.no_gather:
        raise UsageError("--no-gather: the chip always has its gather engine "
                         "(--top exerciser builds without one)")
    config = load_config(args, board_build.TOP_CONFIGS[args.top])
    # the preset's seed; without --config the top's own configuration is the
    # preset of its name ("chip"), or the built-in default
    preset = args.config or (args.top if args.top in board_build.PRESET_SEEDS else None)
    seed = args.seed if args.seed is not None else \
        board_build.PRESET_SEEDS.get(preset, board_build.DEFAULT_SEED)
    if seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, not {seed}")
    try:
        synth_opts, nextpnr_opts = shlex.split(args.synth_opts), shlex.split(args.nextpnr_opts)
    except ValueError as e:
        raise UsageError(f"--synth-opts/--nextpnr-opts: {e}") from None
    if args.build_dir:
        _check_build_dir(Path(args.build_dir))
    try:
        report = board_build.build(args.board, config, seed=seed, build_dir=args.build_dir,
                                   top=args.top, synth_opts=synth_opts, nextpnr_opts=nextpnr_opts,
                                   floorplan=args.floorplan, force=args.force)
    except board_build.ConfigError as e:         # found before elaboration
        raise UsageError(str(e)) from None
    except board_build.BuildError as e:          # a tool missing or failing
        raise CommandError(str(e)) from None
    print()
    print(board_build.format_report(report))
    print(f"\nreport: {Path(report['bitstream']).parent / 'report.json'}")
    if not report["met"] and not args.allow_timing_fail:
        missed = "; ".join(
            f"{c['domain']} {c['fmax_mhz']} MHz < {c['target_mhz']:g} MHz"
            if c["fmax_mhz"] is not None else f"{c['domain']} not in nextpnr's report"
            for c in report["clocks"] if not c["met"])
        raise CommandError(f"timing target missed ({missed}); the bitstream was written "
                           f"anyway (--allow-timing-fail exits 0)")
    return 0


def _check_build_dir(d: Path) -> None:
    """``--build-dir`` can be created and written; nothing is created yet (a
    configuration refused later leaves no empty directory behind)."""
    for parent in (d, *d.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--build-dir: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"--build-dir: {parent} is not writable")
            return


def cmd_flash(args):
    from .boards import build as board_build
    try:
        board_build.flash(args.board, bitstream=args.bitstream, persistent=args.persistent)
    except board_build.NoBitstream as e:
        raise UsageError(str(e)) from None
    except board_build.FlashError as e:
        raise CommandError(str(e)) from None
    return 0


# -- embedding-bag ----------------------------------------------------------------
def cmd_embedding_bag(args):
    kind, port = _device_spec(args, unit=True)
    table = _load_npy(args.table, "--table")
    indices = _load_npy(args.indices, "--indices")
    offsets = _load_npy(args.offsets, "--offsets")
    weights = _load_npy(args.weights, "--weights") if args.weights else None
    out = _out_file(args.out, "--out") if args.out else None
    if kind == "unit":
        return _bag_on_unit(args, table, indices, offsets, weights, out)
    return _bag_on_device(args, kind, port, table, indices, offsets, weights, out)


def _check_bag_inputs(args, table, indices, offsets, weights, max_dim, max_bag):
    """The host's checks (before anything starts): (table, indices, bounds)."""
    from .sim import gather_run
    try:
        table, indices, bounds = gather_run.check_inputs(
            table, indices, offsets, weights=weights, mode=args.mode,
            include_last_offset=args.include_last_offset, max_dim=max_dim, max_bag=max_bag)
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = table.shape[0]
    bad = gather_run.out_of_range(indices, rows)
    if len(bad) and args.bounds == "fatal":
        k = int(bad[0])
        bag = next(i for i in range(len(bounds) - 1) if bounds[i] <= k < bounds[i + 1])
        raise UsageError(f"indices[{k}] = {int(indices[k])} (bag {bag}) is outside the table's "
                         f"rows 0..{rows - 1}" + (f", and {len(bad) - 1} more" if len(bad) > 1 else "")
                         + "; --bounds clamp or skip runs anyway")
    return table, indices, bounds


def _bag_on_device(args, kind, port, table, indices, offsets, weights, out):
    """One GATHER on the whole chip through the Device."""
    from . import isa
    from .config import ChipConfig
    from .firmware import ops
    from .sim.emb_golden import embedding_bag_ref
    limits = isa.Limits.from_config(ChipConfig())
    table, indices, bounds = _check_bag_inputs(args, table, indices, offsets, weights,
                                               limits.max_dim, limits.max_bag)
    rows, dim = table.shape
    _check_fits(kind, args, ops.bag_layout, rows, dim, len(indices), len(bounds) - 1,
                weighted=weights is not None)
    r = _run_on_device(
        kind, port, args,
        f"running {len(bounds) - 1} bags ({len(indices)} lookups, {args.mode}) over a "
        f"{rows} x {dim} table on {_where(kind, port)}",
        lambda dev: ops.embedding_bag(dev, table, indices, bounds, mode=args.mode,
                                      bounds=args.bounds, weights=weights, limits=limits,
                                      progress=_progress_printer()))
    idx = np.asarray(indices, dtype=np.int64)
    ok = (idx >= 0) & (idx < rows)
    keep = np.ones(len(idx), bool)
    if args.bounds == "clamp":
        idx = np.where(ok, idx, 0)
    elif args.bounds == "skip":
        keep = ok
    pos = np.cumsum(np.concatenate([[0], keep]))
    want = embedding_bag_ref(table, idx[keep], pos[np.asarray(bounds)],
                             mode=args.mode,
                             per_sample_weights=None if weights is None
                             else np.asarray(weights).reshape(-1)[keep])
    exact = bool(np.array_equal(r.pooled, want))
    if (~ok).any() and args.bounds != "fatal":
        print(f"out-of-range indices: {int((~ok).sum())} "
              f"{'clamped to row 0' if args.bounds == 'clamp' else 'skipped'}")
    c = r.counters
    if c:
        g = c["gather"]
        print(f"{len(bounds) - 1} bags pooled ({args.mode}), {len(indices)} lookups; program "
              f"{c['cycles']} cycles, gather engine busy {g['busy']} of them (waiting for "
              f"memory {g['mem_stall']})")
    print(f"bit-exact against the golden model: {'yes' if exact else 'NO'}")
    if out is not None:
        np.save(out, r.pooled.astype(np.int32))
        print(f"wrote {out} (int32, {r.pooled.shape[0]}x{r.pooled.shape[1]})")
    else:
        with np.printoptions(threshold=200, linewidth=120):
            print(r.pooled)
    if not exact:
        raise CommandError("the chip disagreed with the golden model")
    return 0


def _bag_on_unit(args, table, indices, offsets, weights, out):
    """The gather engine alone on the simulated RTL (engine + SDRAM model)."""
    from .emb_protocol import GatherError
    from .sim import gather_run
    from .boardsim import cli_gather_sim
    config = cli_gather_sim()
    # Everything the host can check, checked before the simulator starts.
    table, indices, bounds = _check_bag_inputs(args, table, indices, offsets, weights,
                                               config.params.max_dim, config.params.max_bag)
    try:
        gather_run.check_fits(table.shape, config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = table.shape[0]
    print(f"running {len(bounds) - 1} bags ({len(indices)} lookups, {args.mode}) over a "
          f"{rows} x {table.shape[1]} table on the simulated RTL: "
          f"{gather_run.describe_setup(config)}", flush=True)
    try:
        r = gather_run.run_embedding_bag(table, indices, offsets, mode=args.mode, weights=weights,
                                         bounds=args.bounds,
                                         include_last_offset=args.include_last_offset,
                                         config=config, progress=_progress_printer())
    except ValueError as e:
        raise UsageError(str(e)) from None
    except RuntimeError as e:
        raise CommandError(str(e)) from None
    bags = len(bounds) - 1
    print(f"{len(r.pooled)} of {bags} bags pooled ({args.mode}), {r.lookups} lookups in "
          f"{r.cycles} cycles = {r.lookups_per_cycle:.4f} lookups/cycle")
    if r.clamped or r.skipped:
        print(f"out-of-range indices: {r.clamped} clamped to row 0, {r.skipped} skipped")
    if out is not None:
        np.save(out, r.pooled.astype(np.int32))
        print(f"wrote {out} (int32, {r.pooled.shape[0]}x{r.pooled.shape[1]})")
    elif r.error == GatherError.NONE:
        with np.printoptions(threshold=200, linewidth=120):
            print(r.pooled)
    if r.error != GatherError.NONE:
        where = f" (indices[{r.error_position}])" if r.error_position is not None else ""
        raise CommandError(f"the engine stopped the batch: {r.error.name}: "
                           f"{gather_run.describe_error(r.error, r.error_bag, r.error_index)}{where}")
    return 0


# -- gemm -----------------------------------------------------------------------
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _load_npy(path, what):
    """One array from an ``.npy`` file, or a :class:`UsageError` that says
    what the file is instead (missing, a directory, an ``.npz`` archive, not
    NumPy at all, Python objects)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what}: no such file: {path}")
    if p.is_dir():
        raise UsageError(f"{what}: {path} is a directory, not an .npy file")
    try:
        with open(p, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise UsageError(f"{what}: cannot read {path}: {e.strerror}") from None
    if magic.startswith(_ZIP_MAGIC):
        try:
            with np.load(p, allow_pickle=False) as z:
                names = ", ".join(z.files) or "none"
        except Exception:  # noqa: BLE001  (any damage: we only name the arrays)
            names = "unreadable"
        raise UsageError(f"{what}: {path} is an .npz archive (arrays: {names}); give one array "
                         f"as an .npy file (numpy.save)")
    if magic != _NPY_MAGIC:
        raise UsageError(f"{what}: {path} is not a NumPy .npy file (write the array with "
                         f"numpy.save)")
    try:
        x = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UsageError(f"{what}: {path} holds Python objects (dtype object), not a numeric "
                             f"array") from None
        raise UsageError(f"{what}: {path} is a damaged .npy file ({e})") from None
    except OSError as e:
        raise UsageError(f"{what}: cannot read {path}: {e}") from None
    return x


def _check_int_array(x, what, dtypes, ndim):
    if x.ndim != ndim:
        raise UsageError(f"{what} must be {ndim}-dimensional, not shape {x.shape}")
    if x.dtype not in [np.dtype(d) for d in dtypes]:
        raise UsageError(f"{what} must have dtype {' or '.join(dtypes)}, not {x.dtype}")


def validate_gemm_operands(config, a, b, bias=None, multiplier=None, shift=None, *,
                           tiled=False):
    """Check shapes, dtypes and ranges of a GEMM for ``config``; raise UsageError.
    ``tiled``: the firmware tiles it, any M, K, N goes (memory permitting)."""
    from .sim import golden
    in_dtype = "int8" if config.in_width == 8 else "int16"
    _check_int_array(a, "A", [in_dtype], 2)
    _check_int_array(b, "B", [in_dtype], 2)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise UsageError(f"A is {m}x{k} but B is {k2}x{n}: the inner dimensions must match")
    for name, v, hi in (("M", m, config.max_m), ("K", k, config.max_k), ("N", n, config.max_n)):
        if tiled:
            if v < 1:
                raise UsageError(f"{name} must be at least 1, not {v}")
        elif not 1 <= v <= hi:
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
    config = load_config(args)
    kind, port = _device_spec(args, unit=True)
    a = _load_npy(args.a, "--a")
    b = _load_npy(args.b, "--b")
    bias = _load_npy(args.bias, "--bias") if args.bias else None
    mult = _load_npy(args.multiplier, "--multiplier") if args.multiplier else None
    shift = _load_npy(args.shift, "--shift") if args.shift else None
    validate_gemm_operands(config, a, b, bias, mult, shift, tiled=kind != "unit")
    out = _out_file(args.out, "--out") if args.out else None
    if kind == "unit":
        c, exact = _gemm_on_unit(config, args, a, b, bias, mult, shift)
    else:
        c, exact = _gemm_on_device(config, args, kind, port, a, b, bias, mult, shift)
    c = c.astype(np.int8 if mult is not None and config.in_width == 8 else np.int32)
    print(f"bit-exact against the golden model: {'yes' if exact else 'NO'}")
    if out is not None:
        np.save(out, c)
        print(f"wrote {out} ({c.dtype}, {c.shape[0]}x{c.shape[1]})")
    else:
        with np.printoptions(threshold=200, linewidth=120):
            print(c)
    if not exact:
        raise CommandError("the chip disagreed with the golden model")
    return 0


def _gemm_on_unit(config, args, a, b, bias, mult, shift):
    """The matrix unit alone on the simulated RTL (cycle-exact utilization)."""
    from .sim import golden
    from .sim.gemm_run import run_gemm_rtl
    (m, k), n = a.shape, b.shape[1]
    print(f"running {m}x{k} @ {k}x{n} on the simulated matrix unit ({config.rows}x{config.cols} "
          f"array, {'int8 requantized' if mult is not None else 'raw int32'} output)", flush=True)
    try:
        c, cycles = run_gemm_rtl(config, a, b, bias=bias, multiplier=mult, shift=shift,
                                 relu=args.relu, progress=_progress_printer())
    except RuntimeError as e:
        raise CommandError(str(e)) from None
    expect = golden.gemm(a, b, bias, mult, shift, relu=args.relu, out_bits=config.in_width)
    ideal = config.ideal_cycles(m, k, n)
    util = ideal / cycles if cycles else 0.0
    print(f"cycles: {cycles}   ideal (M*K*N/{config.macs}): {ideal}   MAC utilization: {util:.1%}")
    return c, bool(np.array_equal(c, expect))


def _gemm_on_device(config, args, kind, port, a, b, bias, mult, shift):
    """Through the Device on the whole chip: operands written to chip memory,
    a program of GEMM instructions (tiled), the result read back."""
    from . import isa
    from .firmware import ops
    from .sim import golden
    (m, k), n = a.shape, b.shape[1]
    limits = isa.Limits.from_config(config)
    _check_fits(kind, args, ops.gemm_layout, m, k, n, limits=limits, requant=mult is not None,
                params=bias is not None or mult is not None)
    say = _progress_printer()
    r = _run_on_device(
        kind, port, args,
        f"running {m}x{k} @ {k}x{n} on {_where(kind, port)} ({config.rows}x{config.cols} "
        f"array, {'int8 requantized' if mult is not None else 'raw int32'} output)",
        lambda dev: ops.gemm(dev, a, b, bias, mult, shift, args.relu, limits=limits,
                             progress=say), chip=config)
    expect = golden.gemm(a, b, bias, mult, shift, relu=args.relu, out_bits=config.in_width)
    print(f"{sum(r.programs)} instructions in {len(r.programs)} program(s)"
          + ("" if k <= limits.max_k else " (K split: GEMM ACC chunks accumulate in chip memory)"))
    cycles = sum(c["cycles"] for c in r.counters if c)
    if cycles:
        ideal = config.ideal_cycles(m, k, n)
        busy = sum(c["gemm"]["busy"] for c in r.counters)
        stall = sum(c["gemm"]["mem_stall"] for c in r.counters)
        print(f"cycles start to done: {cycles}   ideal (M*K*N/{config.macs}): {ideal}   "
              f"MAC utilization: {ideal / cycles:.1%}\n"
              f"matrix unit busy {busy} cycles, of which waiting for memory {stall}")
    return r.c, bool(np.array_equal(r.c, expect))


def _run_on_device(kind, port, args, banner, work, chip=None):
    """Open the device, say ``banner``, return ``work(dev)``; a FitError is a
    usage error, a program's or the link's error a failure of the work."""
    from .firmware import FitError, ProgramError
    from .firmware.link import LinkError
    dev = _open_device(kind, port, args, chip=chip)
    try:
        print(banner, flush=True)
        return work(dev)
    except FitError as e:
        raise UsageError(str(e)) from None
    except (ProgramError, LinkError) as e:
        raise CommandError(str(e)) from None
    finally:
        dev.close()


def _sim_mem_bytes(kind, args):
    """The memory of the simulated device ``kind`` (None for a board: INFO says)."""
    from .sim import chip_top
    if kind == "sim":
        return args.mem_bytes or chip_top.SERVE_MEM_BYTES
    if kind == "sim-sdram":
        return chip_top.sdram_serve_config().mem_bytes
    return None


def _check_fits(kind, args, layout, *a, **kw):
    """``layout(*a, mem_bytes=..., **kw)`` on the simulated device's memory,
    before it starts: a FitError is a usage error."""
    from .firmware import FitError
    mem_bytes = _sim_mem_bytes(kind, args)
    if mem_bytes is not None:
        try:
            layout(*a, mem_bytes=mem_bytes, **kw)
        except FitError as e:
            raise UsageError(str(e)) from None


# -- bench ----------------------------------------------------------------------
def cmd_bench(args):
    from . import bench
    from .boards.build import BuildError
    config = load_config(args)
    sizes = None
    if args.sizes:
        try:
            sizes = bench.parse_sizes(args.sizes, config)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.readme and not Path(args.readme).is_file():
        raise UsageError(f"--readme: no such file: {args.readme}")
    if args.readme and args.only:
        raise UsageError("--readme needs the whole table: leave out --only")
    if args.out is None:
        args.out = f"build/bench-{args.only}.json" if args.only else "build/bench.json"
    _writable_dir(Path(args.out).parent, "--out")
    if not args.no_build and not args.only:
        from .boards.estimate import check_fit
        try:
            # bench builds the exerciser (build/<board>-exerciser/)
            check_fit(config, args.board, top="exerciser")
        except ValueError as e:
            raise UsageError(str(e).replace("--force to try anyway",
                                            "--no-build leaves the board builds out")) from None
    try:
        return bench.main(config, board=args.board, out=args.out, readme=args.readme,
                          build=not args.no_build, sizes=sizes, only=args.only)
    except (RuntimeError, BuildError) as e:  # a simulation or a build that failed
        raise CommandError(str(e)) from None


# -- device -------------------------------------------------------------------------


def _device_int(text, what, lo=0):
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{what} must be an integer (decimal or 0x hex), not {text!r}") from None
    if value < lo:
        raise UsageError(f"{what} must be at least {lo}, not {text}")
    return value


def _status_text(value):
    from .link_protocol import STATUS_BUSY, STATUS_DONE
    names = [n for bit, n in ((STATUS_BUSY, "busy"), (STATUS_DONE, "done")) if value & bit]
    return ", ".join(names) or "idle"


def _hexdump(data, addr, limit=256):
    lines = []
    for i in range(0, min(len(data), limit), 16):
        row = data[i:i + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{addr + i:08x}  {row.hex(' '):<47}  {text}")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit} more bytes (--out FILE.npy saves them all)")
    return "\n".join(lines)


def cmd_device(args):
    import json
    from .firmware.link import LinkError
    kind, port = _device_spec(args)
    action = args.action
    addr = n = raw = out = None
    if action == "read":
        addr = _device_int(args.addr, "ADDR")
        n = _device_int(args.n, "N", lo=1)
        if args.out:
            out = _out_file(args.out, "--out")
    elif action == "write":
        addr = _device_int(args.addr, "ADDR")
        arr = _load_npy(args.file, "FILE")
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"FILE: {args.file} holds {arr.dtype} data; give a numeric array")
        raw = np.ascontiguousarray(arr).tobytes()
        if not raw:
            raise UsageError(f"FILE: {args.file} is an empty array: nothing to write")
    dev = _open_device(kind, port, args)
    try:
        info = dev.info()
        if action in ("read", "write"):
            n_bytes = n if action == "read" else len(raw)
            if addr + n_bytes > info["mem_bytes"]:
                raise UsageError(f"ADDR {addr:#x} + {n_bytes} bytes runs past the device's "
                                 f"memory ({info['mem_bytes']} bytes)")
        result = _device_action(dev, action, info, addr=addr, n=n, raw=raw)
    except LinkError as e:
        raise CommandError(str(e)) from None
    finally:
        dev.close()
    if action == "read":
        data = result.pop("data")
        if out is not None:
            np.save(out, np.frombuffer(data, np.uint8))
            result["out"] = str(out)
    if args.json:
        if action == "read" and out is None:
            result["data"] = data.hex()
        print(json.dumps(result, indent=2))
        return 0
    where = "the simulated chip" if kind in SIM_DEVICES else port
    if action == "info":
        print(f"device: {where}\n"
              f"protocol version {info['version']}\n"
              f"memory: {info['mem_bytes']} bytes in {8 * info['word_bytes']}-bit words\n"
              f"frames: {info['max_payload']} B payload, {info['max_data']} B of data per "
              f"READ/WRITE, {info['rx_slots']} in flight\n"
              f"registers: {info['reg_addr_bits']}-bit addresses; counters: "
              f"{info['n_link_counters']} link, {info['n_unit_counters']} unit")
    elif action == "status":
        print(f"status: {result['status']:#010x} ({_status_text(result['status'])})")
    elif action == "counters":
        width = max(len(k) for k in result["link"])
        for k, v in result["link"].items():
            print(f"{k:<{width}}  {v}")
        for i, v in enumerate(result["unit"]):
            print(f"{'unit[' + str(i) + ']':<{width}}  {v}")
    elif action == "reset":
        print(f"reset {where}: control unit reset, link counters cleared")
    elif action == "read":
        if out is not None:
            print(f"read {n} bytes at {addr:#x}; wrote {out} (uint8, {n})")
        else:
            print(_hexdump(data, addr))
    elif action == "write":
        print(f"wrote {len(raw)} bytes ({arr.dtype}, shape {arr.shape}) at {addr:#x}")
    return 0


def _device_action(dev, action, info, *, addr, n, raw):
    """Run ``action`` on ``dev``; a dict for --json (``data``: the bytes read)."""
    if action == "info":
        return dict(info)
    if action == "status":
        return {"status": dev.status()}
    if action == "counters":
        c = dev.counters()
        unit = c.pop("unit")
        return {"link": c, "unit": unit}
    if action == "reset":
        dev.reset()
        return {"reset": True}
    if action == "read":
        return {"addr": addr, "n": n, "data": dev.read(addr, n).tobytes()}
    dev.write(addr, raw)
    return {"addr": addr, "n": len(raw)}


class _Parser(argparse.ArgumentParser):
    """argparse with a mistake told in one line (argparse prints the whole
    usage first) and a pointer to the help; exit status 2 as argparse's."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _board_names():
    from .boards import BOARDS
    return sorted(BOARDS)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("seedchip")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv=None):
    parser = _Parser(prog="seedchip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"seedchip {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="write Verilog of the matrix unit for a configuration")
    _add_config_args(p)
    p.add_argument("--out", default="build/verilog", help="output directory (default build/verilog)")
    p.add_argument("--name", default="seedchip_gemm", help="top module name")
    p.set_defaults(func=cmd_generate)

    from .boards import DEFAULT_BOARD
    from .boards.build import (CHIP_BOARD_MHZ, CHIP_BOARD_SDRAM_MHZ, DEFAULT_SEED, DEFAULT_TOP,
                               PRESET_SEEDS, TOPS)
    p = sub.add_parser(
        "build", help="synthesize, place and route a board top to a bitstream (default: the "
        "whole chip)",
        description="Synthesize, place and route a board top to a bitstream, "
        "build/<board>/top.bit with report.json. --top chip (the default): the whole chip, "
        "its host link on the board's USB-serial port at 3 Mbaud, its memory the SDRAM; the "
        "chip at clk_mhz, the SDRAM controller and the GATHER unit at sdram_mhz in a clock "
        "domain of their own when the two differ (without --config the `chip` preset at "
        f"{CHIP_BOARD_MHZ:g} MHz, its SDRAM and GATHER unit at {CHIP_BOARD_SDRAM_MHZ:g} MHz, "
        "the clocks it meets; the preset itself is specified for 100 MHz, one domain). "
        "--top exerciser (build/<board>-exerciser/): the matrix unit fed by pattern "
        "generators beside the SDRAM self test, in two clock domains (clk_mhz, sdram_mhz; "
        "the built-in default configuration, --config gather adds the gather engine).")
    _add_config_args(p, default=f"--top chip: the chip preset at {CHIP_BOARD_MHZ:g} MHz, "
                     f"SDRAM {CHIP_BOARD_SDRAM_MHZ:g} MHz, "
                     "--top exerciser: the built-in default")
    p.add_argument("--top", choices=TOPS, default=DEFAULT_TOP,
                   help=f"the board top (default {DEFAULT_TOP}): chip = the whole chip "
                   "(configuration: the `chip` preset unless --config), exerciser = the "
                   "matrix unit and SDRAM self test (the built-in default unless --config)")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=_board_names(),
                   help=f"the board to build for (default {DEFAULT_BOARD})")
    p.add_argument("--seed", type=int, help=f"nextpnr placement seed (default {DEFAULT_SEED}, or the "
                   "preset's: " + ", ".join(f"--config {k}: {v}" for k, v in PRESET_SEEDS.items())
                   + "; --top chip without --config is the chip preset)")
    p.add_argument("--build-dir", help="default: build/<board>")
    p.add_argument("--synth-opts", default="", metavar="OPTS",
                   help="extra synth_ecp5 options, e.g. --synth-opts=-nowidelut")
    p.add_argument("--nextpnr-opts", default="", metavar="OPTS",
                   help="extra nextpnr-ecp5 options, e.g. --nextpnr-opts='--placer heap'")
    p.add_argument("--no-floorplan", dest="floorplan", action="store_false",
                   help="let nextpnr place the array's DSPs freely")
    p.add_argument("--force", action="store_true",
                   help="build even when the configuration is estimated not to fit the board")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when the clock target is missed")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("flash", help="program a connected board with the built bitstream")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=_board_names(),
                   help=f"the board to program (default {DEFAULT_BOARD})")
    p.add_argument("--bitstream", help="default: build/<board>/top.bit, the chip `make "
                   "bitstream` builds")
    p.add_argument("--flash", dest="persistent", action="store_true",
                   help="write the SPI flash (kept over power-off) instead of SRAM")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("gemm", help="run C = A.B (+bias, requantization) on the chip (simulated "
                       "or a board)")
    _add_config_args(p)
    _add_device_args(p, unit="the matrix unit alone on the simulated RTL, M, K, N up to its "
                     "buffers")
    p.add_argument("--a", required=True, metavar="A.npy", help="int8 [M, K]")
    p.add_argument("--b", required=True, metavar="B.npy", help="int8 [K, N]")
    p.add_argument("--bias", metavar="BIAS.npy", help="int32 [N]")
    p.add_argument("--multiplier", metavar="M.npy", help="int32 [N], 0 or in [2**30, 2**31)")
    p.add_argument("--shift", metavar="S.npy", help="integer [N], right shifts 0..31")
    p.add_argument("--relu", action="store_true", help="clamp negative results to 0")
    p.add_argument("--out", metavar="C.npy", help="write the result here (else print it)")
    p.set_defaults(func=cmd_gemm)

    p = sub.add_parser("embedding-bag",
                       help="run EmbeddingBag lookups on the chip (simulated or a board)")
    _add_device_args(p, unit="the gather engine alone on the simulated RTL with the SDRAM "
                     "model, with its lookup rate")
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
    p.add_argument("--out", help="the JSON results (default build/bench.json, with --only "
                   "build/bench-PART.json)")
    p.add_argument("--only", choices=BENCH_PARTS,
                   help="run one simulated benchmark alone (no board build: the build "
                   "reports already in build/ are used)")
    p.add_argument("--readme", help="rewrite the figures table in this README")
    p.add_argument("--board", default="ulx3s-85f", choices=_board_names(),
                   help="the board whose build figures are reported (default ulx3s-85f)")
    p.add_argument("--no-build", action="store_true",
                   help="use the existing build report instead of running the board build")
    p.add_argument("--sizes", help="comma-separated MxKxN list (default: the standard set)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("device", help="talk to the chip over its host link: a board's serial "
                       "port or the simulated chip")
    _add_device_args(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                               parser_class=_Parser)
    for name, what in (("info", "what the chip reports about itself (INFO)"),
                       ("status", "the STATUS register"),
                       ("counters", "the link's and the units' counters"),
                       ("reset", "reset the control unit and clear the link counters")):
        a = actions.add_parser(name, help=what)
        a.add_argument("--json", action="store_true", help="print JSON for scripts")
    a = actions.add_parser("read", help="read N bytes of memory at byte address ADDR")
    a.add_argument("addr", metavar="ADDR", help="byte address (decimal or 0x hex)")
    a.add_argument("n", metavar="N", help="bytes to read")
    a.add_argument("--out", metavar="FILE.npy", help="save them as a uint8 array (else a hex dump)")
    a.add_argument("--json", action="store_true", help="print JSON for scripts")
    a = actions.add_parser("write", help="write an array's bytes (C order) at byte address ADDR")
    a.add_argument("addr", metavar="ADDR", help="byte address (decimal or 0x hex)")
    a.add_argument("file", metavar="FILE.npy", help="the array (numpy.save)")
    a.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_device)

    from .cli_dlrm import register
    register(sub)

    args = parser.parse_args(argv)
    prefix = f"seedchip {args.command}"
    old_term = _catch_sigterm()
    try:
        return args.func(args) or 0
    except UsageError as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"{prefix}: stopped (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{prefix}: stopped (Ctrl-C)", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
