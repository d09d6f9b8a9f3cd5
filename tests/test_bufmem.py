# amaranth: UnusedElaboratable=no
"""BufferRAM: two-cycle reads in simulation, DP16KD with output registers on ECP5."""

import random
import re

import pytest
from amaranth.back import rtlil
from amaranth.hdl import unsigned

from seedchip.boards.ulx3s import ULX3S_85F_Platform
from seedchip.rtl.bufmem import BufferRAM
from seedchip.sim.clocked import run_clocked


@pytest.mark.parametrize("width,depth,bank_depth", [(8, 40, None), (12, 100, 32)])
def test_read_latency_and_contents(width, depth, bank_depth):
    """Random writes and reads against a Python model: every read returns the
    word written before the read's address cycle, exactly LATENCY cycles later."""
    dut = BufferRAM(shape=unsigned(width), depth=depth, bank_depth=bank_depth)
    if bank_depth:
        assert dut.n_banks == -(-depth // bank_depth) > 1
    rng = random.Random(width * 1000 + depth)
    ref = {}

    async def bench(ctx):
        pending = []
        for _ in range(600):
            we = rng.random() < 0.5
            wa, wd = rng.randrange(depth), rng.randrange(1 << width)
            ra = rng.randrange(depth)
            ctx.set(dut.w_en, we)
            ctx.set(dut.w_addr, wa)
            ctx.set(dut.w_data, wd)
            ctx.set(dut.r_addr, ra)
            # a read sees memory as it was before this cycle's write
            pending.append(ref.get(ra))
            await ctx.tick()
            if we:
                ref[wa] = wd
            if len(pending) > BufferRAM.LATENCY - 1:
                want = pending.pop(0)
                # r_data now shows the read issued LATENCY - 1 ticks ago
                if want is not None:
                    assert ctx.get(dut.r_data) == want

    run_clocked(dut, bench)


def _cells(il, kind):
    return re.findall(rf"cell \\{kind} (\S+)\n(.*?)\n  end", il, re.S)


@pytest.mark.parametrize("width,depth,ebrs,mode", [
    (64, 8192, 32, 2),      # A/B operand buffers of the default 8x8 configuration
    (256, 512, 15, 18),     # accumulator rows
    (69, 256, 4, 18),       # per-channel parameters
    (9, 2048, 1, 9),
])
def test_ecp5_uses_dp16kd_output_register(width, depth, ebrs, mode):
    il = rtlil.convert(BufferRAM(shape=unsigned(width), depth=depth),
                       platform=ULX3S_85F_Platform())
    cells = _cells(il, "DP16KD")
    assert len(cells) == ebrs
    shift = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4}[mode]
    for _, body in cells:
        assert re.search(r'parameter \\REGMODE_B "OUTREG"', body)
        assert re.search(rf"parameter \\DATA_WIDTH_A {mode}\b", body)
        assert re.search(rf"parameter \\DATA_WIDTH_B {mode}\b", body)
        # address bits below the word address are constants (x18 writes: byte enables on)
        for i in range(shift):
            assert re.search(rf"connect \\ADB{i} 1'0\b", body), f"ADB{i}"
            want = "1'1" if mode == 18 and i < 2 else "1'0"
            assert re.search(rf"connect \\ADA{i} {want}\b", body), f"ADA{i}"
        assert not re.search(rf"connect \\ADB{shift} 1'", body)   # first address bit is wired
    assert "$mem" not in il          # nothing left for Yosys to infer
    # one copy of the address/enable registers per group of RAMs, as primitives
    # (Yosys would merge plain registers back into one)
    groups = -(-ebrs // BufferRAM.GROUP)
    abits = max(1, (depth - 1).bit_length())
    assert len(_cells(il, "FD1S3AX")) == groups * (1 + 2 * abits)


def test_simulation_has_no_primitives():
    il = rtlil.convert(BufferRAM(shape=unsigned(64), depth=8192))
    assert "DP16KD" not in il


@pytest.mark.parametrize("kwargs,msg", [
    (dict(shape=unsigned(8), depth=0), r"depth must be a positive integer, not 0"),
    (dict(shape=unsigned(8), depth=10, bank_depth=3), r"bank_depth must be a power of two, not 3"),
])
def test_bad_parameters(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BufferRAM(**kwargs)
