"""Run GEMMs on the simulated RTL of the matrix unit (for the CLI and the benchmark).

Host side::

    C, cycles = run_gemm_rtl(config, A, B, bias, multiplier, shift, relu=False)
    results = run_gemm_batch(config, [dict(A=..., B=..., bias=..., ...), ...])

A batch runs in one simulator session: the operands go to the simulator in an
``.npz`` file in the run directory, the cocotb test :func:`gemm_batch` below
feeds them to the unit one command at a time with no idle cycles and no
backpressure (so ``cycles`` is the unit's own count, load included), and the
results come back in another ``.npz``. The Verilator model is built once per
configuration and cached (see :mod:`seedchip.sim.runner`).

``bias`` alone gives raw int32 ``A @ B + bias``; ``multiplier`` and ``shift``
add the int8 requantization. ``cycles`` is the unit's ``cycles`` output: clock
cycles from the accepted command to the last result, both inclusive.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["run_gemm_rtl", "run_gemm_batch", "TOPLEVEL"]

#: Verilog module name of the GEMM unit in simulation builds.
TOPLEVEL = "seedchip_gemm"

_KEYS = ("A", "B", "bias", "multiplier", "shift", "relu")


def _normalise(config, case, index):
    if isinstance(case, dict):
        unknown = set(case) - set(_KEYS)
        if unknown:
            raise ValueError(f"case {index}: unknown key(s) {sorted(unknown)}; known: {', '.join(_KEYS)}")
        d = dict(case)
    elif isinstance(case, (tuple, list)):
        if not 2 <= len(case) <= len(_KEYS):
            raise ValueError(f"case {index}: expected (A, B[, bias, multiplier, shift, relu])")
        d = dict(zip(_KEYS, case))
    else:
        raise TypeError(f"case {index} must be a dict or a tuple, not {type(case).__name__}")
    if "A" not in d or "B" not in d:
        raise ValueError(f"case {index}: A and B are required")
    a = np.asarray(d["A"])
    b = np.asarray(d["B"])
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"case {index}: A {a.shape} and B {b.shape} do not multiply")
    m, k = a.shape
    n = b.shape[1]
    for name, v, hi in (("M", m, config.max_m), ("K", k, config.max_k), ("N", n, config.max_n)):
        if not 1 <= v <= hi:
            raise ValueError(f"case {index}: {name} must be in range 1..{hi} for this "
                             f"configuration, not {v}")
    lo, hi = -(1 << (config.in_width - 1)), (1 << (config.in_width - 1)) - 1
    for name, x in (("A", a), ("B", b)):
        if x.size and (x.min() < lo or x.max() > hi):
            raise ValueError(f"case {index}: {name} values must be in range {lo}..{hi}")
    out = {"a": a.astype(np.int64), "b": b.astype(np.int64), "relu": bool(d.get("relu", False))}
    mult, shift = d.get("multiplier"), d.get("shift")
    if (mult is None) != (shift is None):
        raise ValueError(f"case {index}: multiplier and shift go together")
    for name, v, lo_, hi_ in (("bias", d.get("bias"), -(1 << 31), (1 << 31) - 1),
                              ("multiplier", mult, -(1 << 31), (1 << 31) - 1),
                              ("shift", shift, 0, 31)):
        if v is None:
            continue
        v = np.broadcast_to(np.asarray(v, dtype=np.int64), (n,))
        if v.min() < lo_ or v.max() > hi_:
            raise ValueError(f"case {index}: {name} values must be in range {lo_}..{hi_}")
        out[name] = v.copy()
    return out


def run_gemm_batch(config, cases, *, sim: str | None = None, keep: bool = False,
                   progress=None):
    """Run several GEMMs in one simulator session; returns ``[(C, cycles), ...]``.

    Each case is a dict with keys ``A``, ``B`` and optionally ``bias``,
    ``multiplier``, ``shift``, ``relu`` (or a tuple in that order). ``C`` is
    int64: raw int32 values, or the int8 values when requantized.
    ``progress`` (a callable taking a line) hears what is going on: the
    first run of a configuration elaborates and builds the simulator.
    """
    from seedchip.rtl.gemm import GemmUnit  # noqa: PLC0415
    from seedchip.sim import runner  # noqa: PLC0415

    cases = [_normalise(config, c, i) for i, c in enumerate(cases)]
    if not cases:
        return []
    sim = runner.simulator_name(sim)
    _, sim_dir = runner.build_sim(GemmUnit, TOPLEVEL, config, sim=sim, progress=progress)
    runs = sim_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="batch-", dir=runs))
    arrays = {"count": np.array(len(cases))}
    for i, c in enumerate(cases):
        for key, v in c.items():
            arrays[f"{key}{i}"] = np.asarray(v)
    np.savez(run_dir / "in.npz", **arrays)
    result = runner.run_cocotb(
        GemmUnit, TOPLEVEL, "seedchip.sim.gemm_run", config, sim=sim,
        testcase="gemm_batch", tag=f"{run_dir.name}", progress=progress,
        what=f"simulating {len(cases)} GEMM{'s' if len(cases) > 1 else ''} under {sim}",
        extra_env={"SEEDCHIP_GEMM_IN": str(run_dir / "in.npz"),
                   "SEEDCHIP_GEMM_OUT": str(run_dir / "out.npz")})
    if not result.passed:
        raise RuntimeError(f"RTL simulation of the GEMM batch failed:\n{result.summary()}")
    with np.load(run_dir / "out.npz") as out:
        results = [(out[f"c{i}"], int(out["cycles"][i])) for i in range(len(cases))]
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


def run_gemm_rtl(config, A, B, bias=None, multiplier=None, shift=None, relu=False, *,
                 sim: str | None = None, progress=None):
    """One GEMM on the simulated RTL: ``(C, cycles)``."""
    case = {"A": A, "B": B, "bias": bias, "multiplier": multiplier, "shift": shift, "relu": relu}
    case = {k: v for k, v in case.items() if v is not None}
    return run_gemm_batch(config, [case], sim=sim, progress=progress)[0]


# -- simulator side ----------------------------------------------------------------
# Imported by cocotb inside the simulator (COCOTB_TEST_MODULES=seedchip.sim.gemm_run).

try:
    import cocotb
except ImportError:  # pragma: no cover - the host API does not need cocotb
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def gemm_batch(dut):
        """Run the batch in ``SEEDCHIP_GEMM_IN`` and write ``SEEDCHIP_GEMM_OUT``."""
        from seedchip.sim.gemm_tb import GemmCase, GemmTB  # noqa: PLC0415
        from seedchip.sim.tb import load_config  # noqa: PLC0415

        config = load_config()
        src, dst = os.environ["SEEDCHIP_GEMM_IN"], os.environ["SEEDCHIP_GEMM_OUT"]
        with np.load(src) as f:
            arrays = {k: f[k] for k in f.files}
        cases = []
        for i in range(int(arrays["count"])):
            get = lambda key: arrays.get(f"{key}{i}")  # noqa: E731
            cases.append(GemmCase(get("a"), get("b"), get("bias"), get("multiplier"),
                                  get("shift"), relu=bool(get("relu")), label=f"#{i}"))
        tb = GemmTB(dut, config, idle=0.0, backpressure=0.0, seed=0)
        await tb.reset()
        # One command at a time, so that the unit's cycles output belongs to it;
        # zeros in the don't-care lanes keep runs deterministic.
        results = await tb.run_gemms(cases, sequential=True, check=False, junk=False)
        out = {"cycles": np.array([r.dut_cycles for r in results], dtype=np.int64),
               "tb_cycles": np.array([r.cycles for r in results], dtype=np.int64)}
        for i, r in enumerate(results):
            out[f"c{i}"] = r.c
        np.savez(dst, **out)
        for case, r in zip(cases, results):
            m, k, n = case.shape
            tb.log.info("%s: %d cycles (ideal %d)", case.describe(), r.cycles,
                        config.ideal_cycles(m, k, n))
