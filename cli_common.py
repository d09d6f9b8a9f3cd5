"""What the ``seedchip`` subcommands share: the user-mistake and failure
exceptions, the configuration and device options, progress lines, output
paths. :mod:`seedchip.cli` (the engines, boards, benchmarks) and
:mod:`seedchip.cli_dlrm` (compile, run, demo) both build on it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .config import PRESETS, ChipConfig, config_from_args

__all__ = ["UsageError", "CommandError", "load_config", "SIM_DEVICES"]


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class CommandError(Exception):
    """The work itself failed: printed as one line, exit status 1."""


def load_config(args, default=None) -> ChipConfig:
    """The configuration from ``--config FILE`` and the per-field overrides,
    over ``default`` (None: the built-in default) when there is no ``--config``."""
    try:
        return config_from_args(args, default)
    except OSError as e:
        raise UsageError(f"cannot read configuration {args.config}: {e}")
    except (TypeError, ValueError) as e:
        raise UsageError(f"invalid configuration: {e}")


def _add_config_args(p, default="the built-in default"):
    p.add_argument("--config", metavar="FILE|PRESET",
                   help="configuration JSON, or a preset: " + ", ".join(PRESETS)
                   + f" (default: {default})")
    p.add_argument("--rows", type=int, help="array rows (the K dimension)")
    p.add_argument("--cols", type=int, help="array columns (the N dimension)")
    p.add_argument("--max-m", dest="max_m", type=int, help="largest M the buffers hold")
    p.add_argument("--max-k", dest="max_k", type=int, help="largest K the buffers hold")
    p.add_argument("--max-n", dest="max_n", type=int, help="largest N the buffers hold")
    p.add_argument("--clk-mhz", dest="clk_mhz", type=float, help="core clock on the board")
    p.add_argument("--sdram-mhz", dest="sdram_mhz", type=float,
                   help="SDRAM controller clock on the board (its own clock domain when it "
                   "differs from --clk-mhz; the chip's GATHER unit runs in it too)")
    p.add_argument("--gather", dest="gather", action="store_true",
                   help="put the gather engine in the board build (config.gather)")
    p.add_argument("--no-gather", dest="no_gather", action="store_true",
                   help="leave the gather engine out of the board build")
    p.add_argument("--gather-lanes", dest="gather_lanes", type=int,
                   help="gather engine datapath bytes per beat (gather.lanes)")
    p.add_argument("--gather-cache-rows", dest="gather_cache_rows", type=int,
                   help="gather engine hot-row cache lines, 0: none (gather.cache_rows)")


def _out_file(path, what, suffix=".npy") -> Path:
    """Where ``--out`` will be written (``numpy.save`` adds ``.npy``): its
    directory is created and checked for writing now, before any long work."""
    p = Path(path)
    if p.suffix != suffix:
        p = p.with_name(p.name + suffix)
    if p.is_dir():
        raise UsageError(f"{what}: {p} is a directory; give a file name")
    _writable_dir(p.parent, what)
    return p


def _writable_dir(d: Path, what) -> None:
    d = Path(d)
    for parent in (d, *d.parents):
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"{what}: {parent} is a file, not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what}: cannot create directory {d}: {e.strerror}") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"{what}: directory {d} is not writable")


def _progress_printer():
    """A ``progress`` callable for the simulation helpers: time-stamped lines
    on stderr, so that a first run (elaboration, a simulator build of a
    minute or two) is never silent, and stdout keeps the results."""
    t0 = time.monotonic()

    def say(line):
        t = int(time.monotonic() - t0)
        print(f"[{t // 60:2d}:{t % 60:02d}] {line}", file=sys.stderr, flush=True)
    return say


def _where(kind, port):
    return {"sim": "the simulated chip", "sim-sdram": "the simulated chip on SDRAM"}.get(
        kind, port)


#: --device values that start a simulator
SIM_DEVICES = ("sim", "sim-sdram")


def _device_spec(args, *, unit=False):
    """(kind, port) from ``--device``, checked before anything starts: a
    malformed string or a serial port that is not there is a usage error.
    ``unit``: the command also runs on its unit alone (``--device unit``)."""
    spec = args.device
    if spec in SIM_DEVICES or (unit and spec == "unit"):
        if args.baud is not None:
            raise UsageError("--baud is for --device serial:PORT; the simulated chip's line "
                             "has no rate to choose")
        if args.mem_bytes is not None:
            if spec != "sim":
                raise UsageError("--mem-bytes sizes the simulated chip's on-chip RAM (--device "
                                 "sim); sim-sdram has the board's SDRAM")
            from .sim.chip_top import serve_config
            try:
                serve_config(mem_bytes=args.mem_bytes)
            except ValueError as e:
                raise UsageError(f"--mem-bytes: {e}") from None
        return spec, None
    if spec.startswith("serial:") and spec[len("serial:"):]:
        port = spec[len("serial:"):]
        if args.mem_bytes is not None:
            raise UsageError("--mem-bytes sizes the simulated chip's memory (--device sim)")
        if args.baud is not None and args.baud <= 0:
            raise UsageError(f"--baud must be a positive integer, not {args.baud}")
        if "://" not in port and not Path(port).exists():
            raise UsageError(f"--device: no serial port {port} (is the board plugged in? "
                             f"ls /dev/ttyUSB* /dev/ttyACM*)")
        return "serial", port
    choices = ("'sim', 'sim-sdram', 'unit' or 'serial:PORT'" if unit
               else "'sim', 'sim-sdram' or 'serial:PORT'")
    raise UsageError(f"--device must be {choices} (e.g. serial:/dev/ttyUSB0), not {spec!r}")


def _add_device_args(p, *, unit=None):
    """--device (and --baud, --mem-bytes); ``unit``: what --device unit runs."""
    extra = f"; 'unit': {unit}" if unit else ""
    p.add_argument("--device", default=os.environ.get("SEEDCHIP_DEVICE", "sim"),
                   metavar="sim|sim-sdram|serial:PORT" + ("|unit" if unit else ""),
                   help="the simulated chip (Verilator behind a pty, a fresh one for each "
                   "command, its memory zero; sim-sdram: on the pin-level SDRAM model at the "
                   f"board's clock, slower) or a board's serial port{extra} (default "
                   "$SEEDCHIP_DEVICE, else sim)")
    p.add_argument("--baud", type=int, help="serial line rate (default 3000000)")
    p.add_argument("--mem-bytes", dest="mem_bytes", type=int,
                   help="memory of the simulated chip (default 1 MiB)")


def _open_device(kind, port, args, chip=None, **sim_kw):
    """The device of ``--device``; ``chip`` and ``sim_kw`` (e.g. ``preload``)
    configure a simulated one."""
    from .firmware.device import open_device
    from .firmware.link import LinkError
    try:
        if kind == "serial":
            return open_device(f"serial:{port}", baud=args.baud or 3_000_000)
        say = _progress_printer()
        say("starting the simulated chip (its first run builds the Verilator model, "
            "about a minute)")
        kw = {} if args.mem_bytes is None else {"mem_bytes": args.mem_bytes}
        if chip is not None:
            kw["chip"] = chip
        return open_device(kind, **kw, **sim_kw)
    except LinkError as e:
        raise CommandError(str(e).splitlines()[0]) from None
