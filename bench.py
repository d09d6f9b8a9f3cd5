"""``make bench``: GEMM cycles and MAC utilization on the simulated RTL, plus
the board figures from the build report, to JSON and the README table."""

from __future__ import annotations

import json
import platform as _platform
import re
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_SIZES", "run_gemm_bench", "render_table", "update_readme", "main"]

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


def render_table(bench):
    """Markdown for the README."""
    lines = []
    cfg = bench["config"]
    lines.append(f"Configuration: {cfg['rows']}x{cfg['cols']} array ({cfg['rows'] * cfg['cols']} int8 MACs), "
                 f"buffers M/K/N up to {cfg['max_m']}/{cfg['max_k']}/{cfg['max_n']}, "
                 f"target clock {cfg['clk_mhz']:g} MHz.")
    lines.append("")
    lines.append("| GEMM M x K x N | cycles | ideal cycles | MAC utilization |")
    lines.append("|---|---:|---:|---:|")
    for r in bench["gemm"]:
        lines.append(f"| {r['m']} x {r['k']} x {r['n']} | {r['cycles']} | {r['ideal_cycles']} | "
                     f"{r['mac_utilization']:.1%} |")
    board = bench.get("board")
    if board:
        lines.append("")
        lines.append("| board build | value |")
        lines.append("|---|---|")
        lines.append(f"| board / device | {board.get('board')} / {board.get('device')} "
                     f"(speed {board.get('speed')}) |")
        for clk in board.get("clocks", []):
            lines.append(f"| Fmax `{clk['domain']}` (target {clk['target_mhz']:g} MHz) | "
                         f"{clk['fmax_mhz']:.1f} MHz ({'met' if clk['met'] else 'MISSED'}) |")
        res = board.get("resources", {})
        for key in ("LUT4", "FF", "DSP", "EBR"):
            if key in res:
                lines.append(f"| {key} ({res[key]['cell']}) | {res[key]['used']} / {res[key]['available']} |")
        if board.get("peak_gops"):
            lines.append(f"| peak int8 GOPS at Fmax | {board['peak_gops']:.1f} |")
        if "seed" in board:
            lines.append(f"| nextpnr seed | {board['seed']} |")
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


def main(args):
    from .cli import load_config
    config = load_config(args)
    sizes = DEFAULT_SIZES
    if args.sizes:
        sizes = [tuple(int(x) for x in s.lower().split("x")) for s in args.sizes.split(",")]
    sizes = [s for s in sizes if s[0] <= config.max_m and s[1] <= config.max_k and s[2] <= config.max_n]
    bench = {
        "date": time.strftime("%Y-%m-%d"),
        "host": _platform.node(),
        "config": config.to_dict(),
        "gemm": run_gemm_bench(config, sizes),
    }
    report_path = Path("build") / args.board / "report.json"
    if not args.no_build:
        from .boards import build as board_build
        print(f"bench: building {args.board} for the board figures...", flush=True)
        board_build.build(args.board, config)
    if report_path.exists():
        bench["board"] = json.loads(report_path.read_text())
    else:
        print(f"bench: no {report_path}; board figures left out", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bench, indent=2) + "\n")
    print(f"bench: wrote {out}")
    if args.readme:
        update_readme(args.readme, bench)
        print(f"bench: updated the figures table in {args.readme}")
    print()
    print(render_table(bench))
    bad = [r for r in bench["gemm"] if not r["bit_exact"]]
    return 1 if bad else 0
