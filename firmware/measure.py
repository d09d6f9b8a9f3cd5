"""Whole-chip figures through a Device (``open_device("sim")`` or
``"sim-sdram"``), from the chip's own cycle counters: what ``seedchip bench
--only chip`` runs.

* GEMM, memory to memory: one GEMM instruction (+ FINISH) of M x K x N,
  int8 requantized output; MAC utilization = ideal cycles (M*K*N / MACs) /
  cycles from START to done (``UNIT_CYCLES``), with the matrix unit's busy
  and memory-stall cycles. With ``check`` the operands are random and the
  result is compared with the golden model; without, the operands are
  whatever the memory holds (the timing does not depend on the data), which
  spares the slow upload on the SDRAM model.
* Control overhead: a program of ``N_COPIES`` small COPYs on one unit; the
  unit's idle cycles between them, per instruction, are the cycles from one
  instruction's end to the next one's start.
"""

from __future__ import annotations

import numpy as np

from .. import isa
from ..config import ChipConfig
from .program import Allocator, Program, param_records
from ..sim import golden

__all__ = ["gemm_figures", "control_gap", "N_COPIES"]

#: COPYs in the control-overhead program
N_COPIES = 32


def gemm_figures(dev, config: ChipConfig, m: int, k: int, n: int, *, check: bool = True,
                 seed: int = 1, timeout: float = 3600.0) -> dict:
    """Run one GEMM on ``dev``; its cycle figures (and ``bit_exact`` with ``check``)."""
    limits = isa.Limits.from_config(config)
    mem_bytes = dev.info()["mem_bytes"]
    mem = Allocator(mem_bytes)
    prog_addr = mem.alloc("program", 2 * isa.INSN_BYTES)
    a_addr = mem.alloc("A", m * isa.round_up(k))
    b_addr = mem.alloc("B", k * isa.round_up(n))
    p_addr = mem.alloc("params", n * isa.PARAM_BYTES)
    c_addr = mem.alloc("C", m * isa.round_up(n))
    rng = np.random.default_rng(seed)
    bias = rng.integers(-20000, 20000, n)
    mult = rng.integers(1 << 30, 1 << 31, n)
    shift = rng.integers(8, 14, n)
    dev.write(p_addr, param_records(bias, mult, shift))
    if check:
        a = rng.integers(-128, 128, (m, k))
        b = rng.integers(-128, 128, (k, n))
        img = np.zeros((m, isa.round_up(k)), np.int8)
        img[:, :k] = a
        dev.write(a_addr, img)
        img = np.zeros((k, isa.round_up(n)), np.int8)
        img[:, :n] = b
        dev.write(b_addr, img)
    prog = Program(base=prog_addr, limits=limits, mem_bytes=mem_bytes)
    prog.gemm(a_addr=a_addr, b_addr=b_addr, c_addr=c_addr, m=m, k=k, n=n, p_addr=p_addr,
              requant=True)
    prog.finish()
    dev.run(prog, timeout=timeout)
    c = dev.unit_counters()
    ideal = config.ideal_cycles(m, k, n)
    out = {"m": m, "k": k, "n": n, "cycles": c["cycles"], "ideal_cycles": ideal,
           "mac_utilization": ideal / c["cycles"], "gemm_busy": c["gemm"]["busy"],
           "gemm_mem_stall": c["gemm"]["mem_stall"], "data": "random" if check else "as found"}
    if check:
        got = dev.read(c_addr, m * isa.round_up(n)).view(np.int8).reshape(m, -1)[:, :n]
        out["bit_exact"] = bool(np.array_equal(got, golden.gemm(a, b, bias, mult, shift)))
    return out


def _copies(dev, limits, mem_bytes, n, row_bytes):
    """Run ``n`` COPYs of one ``row_bytes`` row, back to back; the counters."""
    mem = Allocator(mem_bytes)
    prog_addr = mem.alloc("program", (n + 1) * isa.INSN_BYTES)
    src = mem.alloc("src", row_bytes)
    dst = mem.alloc("dst", n * isa.round_up(row_bytes))
    prog = Program(base=prog_addr, limits=limits, mem_bytes=mem_bytes)
    for i in range(n):
        prog.copy(src=src, dst=dst + i * isa.round_up(row_bytes), rows=1, row_bytes=row_bytes)
    prog.finish()
    dev.run(prog)
    return dev.unit_counters()


def control_gap(dev, config: ChipConfig, *, row_bytes: int = 8) -> dict:
    """Cycles between one instruction's end and the next one's start on one
    unit: the COPY unit's idle cycles in a program of ``N_COPIES`` COPYs
    minus those in a program of ``N_COPIES // 4`` (the start-up and FINISH
    cancel), per instruction."""
    limits = isa.Limits.from_config(config)
    mem_bytes = dev.info()["mem_bytes"]
    few = _copies(dev, limits, mem_bytes, N_COPIES // 4, row_bytes)
    many = _copies(dev, limits, mem_bytes, N_COPIES, row_bytes)
    extra = N_COPIES - N_COPIES // 4
    return {"instructions": N_COPIES, "cycles": many["cycles"],
            "busy_per_copy": many["copy"]["busy"] / N_COPIES,
            "gap_cycles": (many["copy"]["idle"] - few["copy"]["idle"]) / extra,
            "cycles_per_copy": (many["cycles"] - few["cycles"]) / extra}
