"""SDRAM controller throughput on the simulated RTL (for ``make bench``).

``run_sdram_bench(configs)`` runs the cocotb ``bench_sdram`` test of
:mod:`seedchip.sim.sdram_tb` once per :class:`~seedchip.sim.sdram_tb.SDRAMSimConfig`
and returns its figures: for each access pattern (sequential reads/writes,
random 32- and 64-byte reads spread over banks and rows, random 32-byte
writes, mixed 32-byte reads and writes, random single words) the words moved,
the clock cycles from the first request accepted to the last response, and
``efficiency`` = words / cycles, the fraction of the pin peak (bus width x
clock). Plus the read latency of an idle controller. Every read is checked
against the written data and the SDRAM model's timing checker, as in the tests.

``seedchip bench --only sdram`` prints the table.
"""

from __future__ import annotations

import json

from . import runner
from .sdram_tb import TOPLEVEL, SDRAMSimConfig, make_controller

__all__ = ["DEFAULT_CONFIGS", "run_sdram_bench", "render_table"]

DEFAULT_CONFIGS = [
    SDRAMSimConfig(chip="IS42S16160", period_ns=7, cas_latency=3),
    SDRAMSimConfig(chip="M12L64322A", period_ns=10, cas_latency=2),
]


def run_sdram_bench(configs=None, *, sim=None, words: int = 4096) -> list[dict]:
    """One dict per configuration: ``chip``, ``clk_mhz``, ``peak_mbytes_per_s``,
    ``results`` (a list of per-pattern dicts). Raises if a check failed."""
    out = []
    for config in configs or DEFAULT_CONFIGS:
        result = runner.run_cocotb(make_controller, TOPLEVEL, "seedchip.sim.sdram_tb", config,
                                   sim=sim, testcase="bench_sdram", tag="bench",
                                   extra_env={"SDRAM_BENCH_WORDS": words})
        if not result.passed:
            raise RuntimeError("SDRAM benchmark failed:\n" + result.summary())
        out.append(json.loads((result.run_dir / "sdram_bench.json").read_text()))
    return out


def render_table(rows: list[dict]) -> str:
    lines = ["| chip | clock | pattern | words | cycles | % of peak | MB/s |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        for p in r["results"]:
            if "efficiency" in p:
                lines.append(f"| {r['chip']} x{r['data_width']} | {r['clk_mhz']:g} MHz CL{r['cas_latency']} "
                             f"| {p['pattern']} | {p['words']} | {p['cycles']} "
                             f"| {100 * p['efficiency']:.1f} | {p['mbytes_per_s']:g} |")
            else:
                lines.append(f"| {r['chip']} x{r['data_width']} | {r['clk_mhz']:g} MHz CL{r['cas_latency']} "
                             f"| {p['pattern']} | | {p['cycles']} | | |")
    return "\n".join(lines)
