"""Gather engine lookup rate on the simulated RTL, uniform vs Zipf indices.

``run_gather_bench(config, dims, bag_sizes, dists)`` runs the cocotb
``bench_gather`` test of :mod:`seedchip.sim.gather_tb` once on the engine +
memory backend of ``config`` (``make bench`` passes the board's: the engine of
:class:`~seedchip.config.ChipConfig`'s ``gather`` on an IS42S16160 at the
gather build's SDRAM clock; :func:`seedchip.boardsim.board_gather_sim`), with no idle and no
backpressure, for every (dim, bag
size, distribution): a fresh ``rows``-row table, ``warm`` lookups of the same
distribution to fill the cache (not timed; by default eight times the
cache's lines, so the timed batch sees the cache in its steady state, as a
server's long-running traffic does), then ``bags`` bags (at least
``min_lookups`` lookups) timed. ``zipf`` is Zipf(1.05) bounded to the
table, ranks in a random order. Every output is checked against the golden
model and every read by the address monitor, as in the tests.

Per case it returns (list of dicts, ``results``) the cycles (command
accepted .. last output beat taken), lookups, words read,
``lookups_per_cycle``, ``lookups_per_s`` and ``bags_per_s`` (at the simulated
clock), ``fraction_of_pin_limit`` (lookups x pitch per cycle:
the SDRAM pins carry one word per cycle, so above 1 the cache beats the
pins), ``words_per_cycle`` (the pins' real use), the cache ``hit_rate``; the Zipf
cases also carry ``zipf_over_uniform``, their lookup rate over the uniform
case's of the same dim and bag size.

Defaults (ULX3S-85F, ``ChipConfig``): a 64-bit datapath (``lanes=8``: a hit row comes out of
the cache at 8 bytes per cycle, 4 SDRAM words) and 2048 cache lines of 64
bytes (``max_dim``). Block RAM: the lines are 2048 x 8 beats x 64 bits =
1 Mbit = 64 DP16KD; the keys 2048 x 36 bits = 4 DP16KD; the engine's other
memories (descriptors, accumulator banks, FIFOs) are a few more: about 76
of the 85F's 208 EBRs, next to about 100 for the matrix unit. The SDRAM
clock is the gather build's (``GATHER_CONFIG.sdram_mhz``) when the caller
passes that configuration, as ``make bench`` does.

``seedchip bench --only gather`` prints the table (a line per case on
stderr while it runs).
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

from . import runner
from .gather_tb import TOPLEVEL, GatherSimConfig, make_top

__all__ = ["run_gather_bench", "render_table"]


def run_gather_bench(config: GatherSimConfig, *, dims=(16, 32, 64),
                     bag_sizes=(1, 8, 32), dists=("uniform", "zipf"), bags: int = 64,
                     min_lookups: int = 512, rows: int = 65536, warm: int | None = None,
                     sim=None, progress=None, clk_mhz: float | None = None) -> dict:
    """Measure; returns the ``gather_bench.json`` dict (``results``: one dict
    per case). ``progress``, if given, is called with a line per finished
    case. ``clk_mhz`` is the clock the per-second figures are at (default:
    the simulated one, a whole number of ns; the board's clock when the
    caller gives it). Raises if a check failed."""
    if warm is None:
        warm = max(2048, 8 * config.params.cache_rows)
    cases = [{"dim": int(d), "bag": int(b), "bags": max(int(bags), -(-min_lookups // int(b))),
              "rows": int(rows), "dist": dist, "warm": int(warm)}
             for d in dims for b in bag_sizes for dist in dists]
    env = {"GATHER_BENCH": json.dumps({"cases": cases})}
    with tempfile.TemporaryDirectory() as tmp:
        stop = threading.Event()
        watcher = None
        if progress is not None:
            path = Path(tmp) / "progress"
            path.touch()
            env["GATHER_BENCH_PROGRESS"] = str(path)

            def watch():
                seen = 0
                while True:
                    done = stop.wait(2.0)
                    lines = path.read_text().splitlines()
                    for line in lines[seen:]:
                        progress(line)
                    seen = len(lines)
                    if done:
                        return
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        try:
            result = runner.run_cocotb(make_top, TOPLEVEL, "seedchip.sim.gather_tb", config,
                                       sim=sim, testcase="bench_gather", tag="bench",
                                       extra_env=env)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
    if not result.passed:
        raise RuntimeError("gather benchmark failed:\n" + result.summary())
    out = json.loads((result.run_dir / "gather_bench.json").read_text())
    out["sim_clk_mhz"] = out["clk_mhz"]
    if clk_mhz is not None:
        out["clk_mhz"] = clk_mhz
    hz = out["clk_mhz"] * 1e6
    for r in out["results"]:
        # per second at the simulated clock (the board's SDRAM clock by default)
        r["lookups_per_s"] = round(r["lookups_per_cycle"] * hz)
        r["bags_per_s"] = round(r["bags"] / r["cycles"] * hz)
    uniform = {(r["dim"], r["bag"]): r for r in out["results"] if r["dist"] == "uniform"}
    for r in out["results"]:
        u = uniform.get((r["dim"], r["bag"]))
        if r["dist"] != "uniform" and u is not None:
            r["zipf_over_uniform"] = round(r["lookups_per_cycle"] / u["lookups_per_cycle"], 3)
    return out


def render_table(out: dict) -> str:
    lines = [f"{out['backend']} x{out['data_width']} ({out.get('chip') or 'block RAM'}, "
             f"{out['clk_mhz']:g} MHz), datapath {out.get('lanes')} lanes, "
             f"{out.get('cache_rows')} cache lines",
             "| dim (B) | bag | indices | pitch (words) | lookups | cycles | lookups/cycle "
             "| M lookups/s | bags/s | % of pin limit | SDRAM words/cycle | hit rate "
             "| Zipf / uniform |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out["results"]:
        ratio = f"{r['zipf_over_uniform']:.2f}" if "zipf_over_uniform" in r else ""
        lines.append(f"| {r['dim']} | {r['bag']} | {r['dist']} | {r['pitch']} | {r['lookups']} "
                     f"| {r['cycles']} | {r['lookups_per_cycle']:.4f} "
                     f"| {r['lookups_per_s'] / 1e6:.2f} | {r['bags_per_s']:,} "
                     f"| {100 * r['fraction_of_pin_limit']:.1f} | {r['words_per_cycle']:.3f} "
                     f"| {r['hit_rate']:.3f} "
                     f"| {ratio} |")
    return "\n".join(lines)
