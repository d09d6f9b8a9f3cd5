"""``make bench``: GEMM cycles and MAC utilization on the simulated RTL, the
SDRAM controller's sustained bandwidth on the simulated RTL (against the
pin-level SDRAM model, at the board's clock and CAS latency), plus the board
figures from the build report, to JSON and the README table."""

from __future__ import annotations

import json
import platform as _platform
import re
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_SIZES", "SDRAM_PATTERNS", "run_gemm_bench", "run_sdram_bench",
           "render_table", "update_readme", "main"]

#: (M, K, N). 256^3 is the headline; the others show where small K or M cost.
DEFAULT_SIZES = [
    (256, 256, 256),
    (128, 128, 128),
    (64, 64, 64),
    (256, 64, 256),
    (128, 256, 64),
    (100, 37, 19),
    (16, 16, 16),
]

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

#: SDRAM access patterns reported (names of ``seedchip.sim.sdram_bench``) -> README label.
SDRAM_PATTERNS = {
    "seq_read": "sequential reads",
    "rand_read_32B": "random 32-byte reads",
    "rand_read_64B": "random 64-byte reads",
    "rand_write_32B": "random 32-byte writes",
    "mixed_32B": "random 32-byte reads and writes, mixed",
}
#: Words per SDRAM pattern: enough for several refreshes and row switches per
#: pattern, a minute or so of simulation.
SDRAM_WORDS = 4096


def run_gemm_bench(config, sizes, seed=1):
    """Run each GEMM once on the RTL (no backpressure) and check it bit-exact."""
    from .sim import golden
    from .sim.gemm_run import run_gemm_batch
    rng = np.random.default_rng(seed)
    cases = []
    for (m, k, n) in sizes:
        a = rng.integers(-128, 128, (m, k), dtype=np.int64).astype(np.int8)
        b = rng.integers(-128, 128, (k, n), dtype=np.int64).astype(np.int8)
        bias = rng.integers(-(1 << 20), 1 << 20, n, dtype=np.int64).astype(np.int32)
        mult = rng.integers(1 << 30, (1 << 31) - 1, n, dtype=np.int64).astype(np.int32)
        shift = rng.integers(4, 12, n, dtype=np.int64).astype(np.int32)
        cases.append(dict(A=a, B=b, bias=bias, multiplier=mult, shift=shift, relu=True))
    print(f"bench: {len(cases)} GEMMs on the simulated RTL ({config.rows}x{config.cols})...", flush=True)
    t0 = time.monotonic()
    results = run_gemm_batch(config, cases)
    rows = []
    for (m, k, n), case, (c, cycles) in zip(sizes, cases, results):
        expect = golden.gemm(case["A"], case["B"], case["bias"], case["multiplier"],
                             case["shift"], relu=True)
        exact = bool(np.array_equal(c, expect))
        ideal = config.ideal_cycles(m, k, n)
        rows.append(dict(m=m, k=k, n=n, cycles=int(cycles), ideal_cycles=ideal,
                         mac_utilization=round(ideal / cycles, 4), bit_exact=exact))
        print(f"  {m:4d}x{k:4d}x{n:4d}  cycles {cycles:8d}  ideal {ideal:8d}  "
              f"utilization {ideal / cycles:6.1%}  {'bit-exact' if exact else 'MISMATCH'}", flush=True)
    print(f"bench: simulated in {time.monotonic() - t0:.0f} s (wall clock, not a figure)")
    return rows


def run_sdram_bench(config, board, words=SDRAM_WORDS, report=None):
    """Bandwidth of the board's SDRAM controller setup (chip, clock, CAS
    latency, I/O read delay) on the simulated RTL; the controller's Fmax from
    the board ``report`` if there is one."""
    from .boards import get_board
    from .sim.sdram_bench import run_sdram_bench as run
    from .boardsim import board_sdram_sim

    board = get_board(board)
    sim_config, plan = board_sdram_sim(config, board.name)
    print(f"bench: SDRAM patterns on the simulated controller ({sim_config.chip}, "
          f"{sim_config.clk_freq / 1e6:g} MHz, CL{plan['cas_latency']}, read delay "
          f"{plan['read_delay']}), {words} words each...", flush=True)
    t0 = time.monotonic()
    (result,) = run([sim_config], words=words)
    print(f"bench: simulated in {time.monotonic() - t0:.0f} s (wall clock, not a figure)")
    patterns = {r["pattern"]: r for r in result["results"]}
    out = {
        "chip": result["chip"], "data_width": result["data_width"],
        "clk_mhz": result["clk_mhz"], "cas_latency": result["cas_latency"],
        "read_delay": plan["read_delay"],
        "peak_mbytes_per_s": result["peak_mbytes_per_s"],
        "patterns": {name: {k: patterns[name][k] for k in
                            ("words", "cycles", "efficiency", "mbytes_per_s")}
                     for name in SDRAM_PATTERNS if name in patterns},
        "read_latency_cycles": {k: patterns[k]["cycles"] for k in
                                ("read_latency_row_hit", "read_latency_row_miss") if k in patterns},
        "fmax_mhz": None, "target_mhz": round(plan["sdram_mhz"], 3), "fmax_source": "not built",
    }
    clk = next((c for c in (report or {}).get("clocks", []) if c.get("domain") == "sdram"), None)
    if clk is not None:
        out.update(fmax_mhz=clk["fmax_mhz"], target_mhz=clk["target_mhz"], met=clk["met"],
                   fmax_source=f"build/{board.name}/report.json (seed {report.get('seed')})")
    for name, label in SDRAM_PATTERNS.items():
        if name in out["patterns"]:
            r = out["patterns"][name]
            print(f"  {label:40s} {r['efficiency']:6.1%} of pin peak  {r['mbytes_per_s']:7.1f} MB/s")
    return out


def run_gather_bench(config=None):
    """EmbeddingBag lookup rates on the simulated engine + SDRAM controller +
    SDRAM model (:mod:`seedchip.sim.gather_bench`): dims 16/32/64 bytes, bags
    of 1/8/32, uniform and Zipf(1.05) indices; the engine and SDRAM clock of
    ``config`` (default: the gather build's, ``GATHER_CONFIG``)."""
    from .config import GATHER_CONFIG
    from .boardsim import board_gather_sim
    from .sim.gather_bench import run_gather_bench as run

    config = config or GATHER_CONFIG
    print(f"bench: gather engine on the simulated SDRAM at {config.sdram_mhz:g} MHz "
          "(18 cases, a quarter of an hour)...", flush=True)
    t0 = time.monotonic()
    out = run(board_gather_sim(config), progress=lambda line: print(f"  {line}", flush=True),
              clk_mhz=config.sdram_mhz)
    print(f"bench: simulated in {time.monotonic() - t0:.0f} s (wall clock, not a figure)")
    return out


def run_link_bench():
    """Host-link goodput at the board's clock and baud (:mod:`seedchip.sim.link_bench`)."""
    import tempfile

    from .sim.link_bench import run_link_bench as run

    print("bench: host link goodput, simulated at 100 MHz and 3 Mbaud (a few minutes)...",
          flush=True)
    with tempfile.TemporaryDirectory() as d:
        return run(Path(d) / "link.json", progress=lambda line: print(f"  {line}", flush=True))


#: GEMM sizes through the whole chip: (M, K, N, on the SDRAM model too)
CHIP_GEMMS = ((64, 64, 64, False), (128, 128, 128, False), (256, 256, 256, True))


def run_chip_bench(config, *, sdram=True):
    """The whole chip through the Device (:mod:`seedchip.firmware.measure`): GEMM
    memory to memory on the on-chip RAM (bit-exact checked) and, with
    ``sdram``, on the pin-level SDRAM model at the board's clock (operands
    as found: the timing does not depend on them); the control overhead."""
    from .firmware import open_device
    from .firmware import measure as chip_bench

    out = {"sim": [], "sim_sdram": []}
    print("bench: the whole chip, simulated (GEMM through the device; a few minutes)...",
          flush=True)
    with open_device("sim", chip=config) as dev:
        for m, k, n, _ in CHIP_GEMMS:
            out["sim"].append(chip_bench.gemm_figures(dev, config, m, k, n))
            print(f"  sim {m}x{k}x{n}: {out['sim'][-1]}", flush=True)
        out["control"] = chip_bench.control_gap(dev, config)
        print(f"  control: {out['control']}", flush=True)
    if sdram:
        print("bench: the whole chip on the SDRAM model (slow: a Python model per clock)...",
              flush=True)
        with open_device("sim-sdram", chip=config, timeout=120.0) as dev:
            for m, k, n, on_sdram in CHIP_GEMMS:
                if on_sdram:
                    out["sim_sdram"].append(chip_bench.gemm_figures(dev, config, m, k, n,
                                                                    check=False))
                    print(f"  sim-sdram {m}x{k}x{n}: {out['sim_sdram'][-1]}", flush=True)
        out["sim_sdram_board"] = run_chip_board_clocks()
    return out


def run_chip_board_clocks():
    """The largest GEMM of :data:`CHIP_GEMMS` (M capped at the board chip's
    ``max_m``) on the chip as ``make bitstream`` builds it, at its clocks, on the SDRAM model
    (:func:`~seedchip.boardsim.board_chip_sdram_sim`): its cycles and the
    clocks (MHz) the simulation ran."""
    from .boardsim import board_chip_sdram_sim
    from .firmware import open_device
    from .firmware import measure as chip_bench

    sim = board_chip_sdram_sim()
    m, k, n, _ = CHIP_GEMMS[-1]
    m = min(m, sim.chip.max_m)      # one GEMM instruction: the board's chip takes M <= max_m
    clocks = {"clk_mhz": sim.chip.clk_mhz, "sdram_mhz": sim.chip.sdram_mhz}
    print(f"bench: the chip at the board build's clocks ({clocks['clk_mhz']:g} MHz, SDRAM "
          f"{clocks['sdram_mhz']:g} MHz) on the SDRAM model, {m}x{k}x{n}...", flush=True)
    with open_device("sim-sdram", config=sim, timeout=120.0) as dev:
        r = {**chip_bench.gemm_figures(dev, sim.chip, m, k, n, check=False), **clocks}
    print(f"  board clocks {m}x{k}x{n}: {r}", flush=True)
    return [r]


def _chip_lines(chip, config):
    lines = ["", f"| GEMM through the chip, memory to memory, int8 out ({config['rows']}x"
             f"{config['cols']} array) | memory | cycles start to done | ideal | MAC utilization "
             "| matrix unit waiting for memory |", "|---|---|---:|---:|---:|---:|"]
    def board_label(r):
        own = " (its own domain)" if r["sdram_mhz"] != r["clk_mhz"] else ""
        return (f"SDRAM model at the board build's clocks: chip {r['clk_mhz']:g} MHz, "
                f"SDRAM {r['sdram_mhz']:g} MHz{own}")

    for where, label in (("sim", "on-chip RAM"),
                         ("sim_sdram", "SDRAM model (the ULX3S part, 16-bit) at 100 MHz"),
                         ("sim_sdram_board", board_label)):
        for r in chip.get(where, []):
            lines.append(f"| {r['m']} x {r['k']} x {r['n']} | "
                         f"{label(r) if callable(label) else label} | {r['cycles']} | "
                         f"{r['ideal_cycles']} | {r['mac_utilization']:.1%} | "
                         f"{r['gemm_mem_stall']} cycles |")
    ctl = chip.get("control")
    if ctl:
        lines.append(f"| control overhead: one instruction's end to the next one's start "
                     f"(COPY after COPY) | | {ctl['gap_cycles']:.1f} | | | |")
    return lines


def _link_lines(link):
    lines = ["", f"| host link, simulated: {link['baud'] / 1e6:.2f} Mbaud 8N1 ({link['divisor']} "
             f"clocks per bit at {link['clk_mhz']:g} MHz), {link['frame_data']}-byte frames, "
             f"{link['window']} in flight | goodput | of the line rate (baud / 10) |",
             "|---|---:|---:|"]
    for what in ("write", "read"):
        r = link[what]
        lines.append(f"| bulk {what.upper()} ({link['bytes']} bytes) | "
                     f"{r['bytes_per_s'] / 1e3:.1f} kB/s | {r['of_line_rate']:.1%} |")
    return lines


def gather_at_fmax(bench):
    """The gather figures at the gather build's ``sdram`` Fmax as well (the
    same cycle counts, a faster clock: what the build would do if run at its
    Fmax rather than its target): ``lookups_per_s_at_fmax``/``bags_per_s_at_fmax``
    per case and ``fmax_mhz`` in ``bench["gather"]``. Nothing without a build."""
    gather = bench.get("gather")
    bg = (bench.get("gather_board") or {}).get("gather") or {}
    fmax = bg.get("fmax_mhz")
    if not gather or not fmax:
        return bench
    gather["fmax_mhz"] = fmax
    for r in gather["results"]:
        r["lookups_per_s_at_fmax"] = round(r["lookups_per_cycle"] * fmax * 1e6)
        r["bags_per_s_at_fmax"] = round(r["bags"] / r["cycles"] * fmax * 1e6)
    return bench


def _clock_rows(report):
    """A board build report's Fmax rows, one per clock against its target
    (not the clocks with nothing to time: the SDRAM clock pin's)."""
    rows = []
    for clk in report.get("clocks", []):
        if not clk.get("required", True):
            continue
        fmax = "not reported" if clk["fmax_mhz"] is None else f"{clk['fmax_mhz']:.1f} MHz"
        rows.append(f"| Fmax `{clk['domain']}` (target {clk['target_mhz']:g} MHz) | "
                    f"{fmax} ({'met' if clk['met'] else 'MISSED'}) |")
    return rows


def _chip_board_lines(report):
    """The chip's board build (``make bitstream``, its ``report.json``):
    Fmax against the target per clock, resources and each clock's worst path."""
    if not report:
        return []
    lines = ["", "| the chip on the board (`make bitstream`) | value |", "|---|---|",
             f"| board / device | {report.get('board')} / {report.get('device')} "
             f"(speed {report.get('speed')}), nextpnr seed {report.get('seed')} |"]
    lines += _clock_rows(report)
    res = report.get("resources", {})
    lines.append("| resources | " + ", ".join(
        f"{res[k]['used']} / {res[k]['available']} {k}" for k in ("LUT4", "FF", "DSP", "EBR")
        if k in res) + " |")
    for path in report.get("critical_paths", []):
        if path["clock_from"] != path["clock_to"] or "sdram_clkout" in path["clock_to"]:
            continue        # the I/O paths and the SDRAM clock pin's
        lines.append(f"| worst path, {path['clock_to'].split()[-1].replace('$glbnet$', '')} | "
                     f"{path['delay_ns']:.1f} ns ({path['routing_ns']:.1f} routing, "
                     f"{path['logic_levels']} logic levels): `{_cell(path['from'])}` → "
                     f"`{_cell(path['to'])}` |")
    return lines


def _cell(name):
    """A netlist name without Yosys' suffixes (``..._TRELLIS_FF_Q_1.Q`` -> ``...``)."""
    return re.sub(r"(_(TRELLIS|LUT4|CCU2C|PFUMX|DP16KD)\w*)?\.\w+$", "", name)


def render_table(bench):
    """Markdown for the README."""
    lines = []
    cfg = bench["config"]
    lines.append(f"Configuration: {cfg['rows']}x{cfg['cols']} array ({cfg['rows'] * cfg['cols']} int8 MACs), "
                 f"buffers M/K/N up to {cfg['max_m']}/{cfg['max_k']}/{cfg['max_n']}, "
                 f"target clock {cfg['clk_mhz']:g} MHz.")
    lines.append("")
    if bench.get("gemm"):
        lines.append("| GEMM M x K x N | cycles | ideal cycles | MAC utilization |")
        lines.append("|---|---:|---:|---:|")
    for r in bench.get("gemm", []):
        lines.append(f"| {r['m']} x {r['k']} x {r['n']} | {r['cycles']} | {r['ideal_cycles']} | "
                     f"{r['mac_utilization']:.1%} |")
    board = bench.get("board")
    if board:
        lines.append("")
        lines.append("| the exerciser's build (`make bitstream-exerciser`) | value |")
        lines.append("|---|---|")
        lines.append(f"| board / device | {board.get('board')} / {board.get('device')} "
                     f"(speed {board.get('speed')}) |")
        lines += _clock_rows(board)
        res = board.get("resources", {})
        for key in ("LUT4", "FF", "DSP", "EBR"):
            if key in res:
                lines.append(f"| {key} ({res[key]['cell']}) | {res[key]['used']} / {res[key]['available']} |")
        if board.get("peak_gops"):
            lines.append(f"| peak int8 GOPS at Fmax | {board['peak_gops']:.1f} |")
        if "seed" in board:
            lines.append(f"| nextpnr seed | {board['seed']} |")
    lines += _chip_board_lines(bench.get("chip_board"))
    sdram = bench.get("sdram")
    if sdram:
        lines.append("")
        lines.append(f"| SDRAM, {sdram['chip']} x{sdram['data_width']} at {sdram['clk_mhz']:g} MHz "
                     f"CL{sdram['cas_latency']} (simulated) | % of pin peak | MB/s |")
        lines.append("|---|---:|---:|")
        for name, label in SDRAM_PATTERNS.items():
            r = sdram["patterns"].get(name)
            if r:
                lines.append(f"| {label} | {r['efficiency']:.1%} | {r['mbytes_per_s']:g} |")
        lines.append(f"| pin peak | 100% | {sdram['peak_mbytes_per_s']:g} |")
        if sdram.get("fmax_mhz") is not None:
            fmax = (f"{sdram['fmax_mhz']:.1f} MHz ({'met' if sdram.get('met') else 'MISSED'}, "
                    f"target {sdram['target_mhz']:g} MHz)")
        else:
            fmax = f"not built (target {sdram['target_mhz']:g} MHz)"
        lines.append(f"| controller Fmax, `sdram` domain on the board | {fmax} | |")
    gather = bench.get("gather")
    if gather:
        lines.append("")
        sim_clk = gather.get("sim_clk_mhz", gather["clk_mhz"])
        lines.append(f"| EmbeddingBag, {gather.get('chip')} x{gather['data_width']}, per second at "
                     f"{gather['clk_mhz']:g} MHz (simulated with a {1000 / sim_clk:.0f} ns period), "
                     f"{gather.get('lanes')}-lane datapath, "
                     f"{gather.get('cache_rows')}-row cache | uniform: lookups/s, bags/s "
                     f"(% of pin limit, hit rate) | Zipf(1.05) | Zipf / uniform |")
        lines.append("|---|---:|---:|---:|")
        by = {(r["dim"], r["bag"], r["dist"]): r for r in gather["results"]}
        for (dim, bag, dist), r in by.items():
            if dist != "uniform":
                continue
            z = by.get((dim, bag, "zipf"))

            def cell(x):
                return (f"{x['lookups_per_s'] / 1e6:.2f} M, {x['bags_per_s'] / 1e3:.0f} k "
                        f"({100 * x['fraction_of_pin_limit']:.0f} %, {x['hit_rate']:.2f})")
            ratio = f"{z['zipf_over_uniform']:.2f}x" if z and "zipf_over_uniform" in z else ""
            lines.append(f"| {dim}-byte rows, bags of {bag} | {cell(r)} | "
                         f"{cell(z) if z else ''} | {ratio} |")
        gboard = bench.get("gather_board")
        bg = (gboard or {}).get("gather")
        if bg:
            for clk in gboard.get("clocks", []):
                if clk.get("required", True) and clk["fmax_mhz"] is not None:
                    where = " (controller + engine)" if clk["domain"] == bg["domain"] else ""
                    lines.append(f"| gather build (`--config gather`): Fmax `{clk['domain']}`{where} | "
                                 f"{clk['fmax_mhz']:.1f} MHz ({'met' if clk['met'] else 'MISSED'}, "
                                 f"target {clk['target_mhz']:g} MHz) | | |")
            if gather.get("fmax_mhz"):
                u64 = by.get((64, 8, "uniform")) or {}
                if "lookups_per_s_at_fmax" in u64:
                    lines.append(f"| at the gather build's `sdram` Fmax ({gather['fmax_mhz']:.1f} MHz) "
                                 f"instead of its target: 64-byte rows, bags of 8, uniform | "
                                 f"{u64['lookups_per_s_at_fmax'] / 1e6:.2f} M, "
                                 f"{u64['bags_per_s_at_fmax'] / 1e3:.0f} k | | |")
            res = gboard.get("resources", {})
            lines.append("| gather build: resources | "
                         + ", ".join(f"{res[k]['used']} {k}" for k in ("LUT4", "FF", "DSP", "EBR")
                                     if k in res) + " | | |")

    if bench.get("chip"):
        lines += _chip_lines(bench["chip"], cfg)
    if bench.get("link"):
        lines += _link_lines(bench["link"])
    if bench.get("dlrm"):
        from .firmware.dlrm_bench import dlrm_lines
        lines += dlrm_lines(bench["dlrm"])
    lines.append("")
    lines.append(f"Measured by `make bench` on {bench['date']}; raw numbers in `build/bench.json`.")
    return "\n".join(lines)


def update_readme(path, bench):
    text = Path(path).read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block to update")
    new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                 lambda _: BEGIN + "\n" + render_table(bench) + "\n" + END, text, flags=re.S)
    Path(path).write_text(new)


def parse_sizes(text: str, config) -> list:
    """``--sizes`` ("MxKxN,...") as tuples; a :class:`ValueError` names the bad one."""
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            m, k, n = (int(x) for x in parts)
        except ValueError:
            raise ValueError(f"--sizes: {item.strip()!r} is not MxKxN (e.g. 64x64x64)") from None
        for name, v, hi in (("M", m, config.max_m), ("K", k, config.max_k),
                            ("N", n, config.max_n)):
            if not 1 <= v <= hi:
                raise ValueError(f"--sizes: {name} of {item.strip()} must be in range 1..{hi} "
                                 f"for this configuration, not {v}")
        sizes.append((m, k, n))
    return sizes


#: What ``seedchip bench --only`` can run alone.
PARTS = ("gemm", "sdram", "gather", "link", "chip", "dlrm")


def main(config, *, board="ulx3s-85f", out="build/bench.json", readme=None, build=True,
         sizes=None, only=None):
    """``seedchip bench``: every part, or just ``only`` (one of :data:`PARTS`,
    with the build reports already in ``build/``, no board build).
    ``build=False`` uses the existing build reports too. Writes ``out`` (JSON)
    and, with ``readme``, the figures table there. Raises
    :class:`RuntimeError` or ``BuildError`` when a simulation or build fails."""
    from .config import GATHER_CONFIG
    parts = PARTS if only is None else (only,)
    build = build and only is None
    sizes = DEFAULT_SIZES if sizes is None else sizes
    sizes = [s for s in sizes if s[0] <= config.max_m and s[1] <= config.max_k and s[2] <= config.max_n]
    bench = {"date": time.strftime("%Y-%m-%d"), "host": _platform.node(),
             "config": config.to_dict()}
    if "gemm" in parts:
        bench["gemm"] = run_gemm_bench(config, sizes)
    # the chip's build (`make bitstream`): Fmax, resources, worst paths
    chip_dir = Path("build") / board
    if build:
        from .boards import build as board_build
        print(f"bench: building the chip for {board} (`make bitstream`; half an hour)...",
              flush=True)
        board_build.build(board, top="chip", build_dir=chip_dir,
                          seed=board_build.PRESET_SEEDS["chip"])
    if "chip" in parts:
        path = chip_dir / "report.json"
        report = json.loads(path.read_text()) if path.exists() else None
        if report and report.get("top") == "chip":
            bench["chip_board"] = report
        else:
            print(f"bench: no chip build report at {path}; its figures left out", file=sys.stderr)
    # the exerciser's build (`make bitstream-exerciser`): the matrix unit's and
    # the SDRAM controller's figures, each in a domain of its own
    exerciser_dir = Path("build") / f"{board}-exerciser"
    report_path = exerciser_dir / "report.json"
    if build:
        from .boards import build as board_build
        print(f"bench: building {board} for the board figures...", flush=True)
        board_build.build(board, config, top="exerciser", build_dir=exerciser_dir)
    if "sdram" in parts or only is None:
        if report_path.exists():
            bench["board"] = json.loads(report_path.read_text())
        else:
            print(f"bench: no {report_path}; board figures left out", file=sys.stderr)
    if "sdram" in parts:
        bench["sdram"] = run_sdram_bench(config, board, report=bench.get("board"))
    # the gather engine: its own build (the recommender preset), its figures
    # at that build's SDRAM clock
    gather_dir = Path("build") / f"{board}-gather"
    if build:
        from .boards import build as board_build
        print(f"bench: building {board} with the gather engine (--config gather; "
              "about ten minutes)...", flush=True)
        board_build.build(board, GATHER_CONFIG, build_dir=gather_dir, top="exerciser",
                          seed=board_build.PRESET_SEEDS["gather"])
    if "gather" in parts:
        if (gather_dir / "report.json").exists():
            bench["gather_board"] = json.loads((gather_dir / "report.json").read_text())
        else:
            print(f"bench: no {gather_dir / 'report.json'}; gather build figures left out",
                  file=sys.stderr)
        bench["gather"] = run_gather_bench(GATHER_CONFIG)
        gather_at_fmax(bench)
    if "link" in parts:
        bench["link"] = run_link_bench()
    if "chip" in parts:
        bench["chip"] = run_chip_bench(config)
    if "dlrm" in parts:
        from .firmware.dlrm_bench import run_dlrm_bench
        print("bench: a DLRM trained, quantized, compiled and run on the simulated chip, two "
              "sizes (a quarter of an hour, more when the models are built)...", flush=True)
        from .config import CHIP_CONFIG      # the board's chip: its clock and buffers
        bench["dlrm"] = run_dlrm_bench(CHIP_CONFIG,
                                       progress=lambda s: print(f"  {s}", flush=True))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bench, indent=2) + "\n")
    print(f"bench: wrote {out}")
    if readme:
        update_readme(readme, bench)
        print(f"bench: updated the figures table in {readme}")
    print()
    print(render_table(bench))
    bad = [r for r in bench.get("gemm", []) if not r["bit_exact"]]
    return 1 if bad else 0
