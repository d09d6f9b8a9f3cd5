"""``open_device("sim"|"sim-sdram", preload=[(byte_addr, bytes), ...])``: a
memory image placed in the simulated memory before the link starts
(firmware/sim.py, sim/link_serve.py). It must read back through the link
byte for byte, and programs must compute on it.
"""

import numpy as np
import pytest

from seedchip import isa
from seedchip.config import ChipConfig
from seedchip.firmware import open_device
from seedchip.firmware.program import Program
from seedchip.firmware.sim import SimChip, check_preload
from seedchip.sim import golden, runner
from seedchip.sim.chip_top import SERVE_MEM_BYTES, sdram_chip, sdram_serve_config
from seedchip.sim.link_serve import load_preload, preload_sdram, save_preload, sdram_location
from seedchip.sim.link_top import serve_config as link_serve_config
from seedchip.sim.sdram_model import SDRAMModel

LIMITS = isa.Limits.from_config(ChipConfig())
SDRAM_BYTES = 32 << 20
SEED = 2026


def _segments(rng, mem_bytes):
    """Random bytes, unaligned starts and lengths: across an SDRAM page
    (1 KiB of one bank) into the next bank, across a row (4 KiB: every
    bank's page), a lone byte at an odd address, the last bytes of memory."""
    return [
        (1024 - 5, rng.bytes(1500)),
        (7 * 4096 - 3, rng.bytes(41)),
        (0x2_0001, rng.bytes(1)),
        (mem_bytes - 13, rng.bytes(13)),
    ]


# -- no simulator --------------------------------------------------------------------------

@pytest.mark.parametrize("seg, index", [
    ([(0, b"ok"), (SDRAM_BYTES - 1, b"xy")], 1),
    ([(-8, b"x")], 0),
    ([(0, b"a"), (8, b""), (SDRAM_BYTES, b"z")], 2),
])
def test_segment_outside_memory_is_refused(seg, index):
    with pytest.raises(ValueError, match=rf"preload segment {index} \(byte address .*\) is "
                                         r"outside the chip memory"):
        check_preload(seg, sdram_serve_config())


def test_refused_before_the_simulator_starts(monkeypatch):
    def no_popen(*a, **k):
        raise AssertionError("the simulator was started")

    monkeypatch.setattr("subprocess.Popen", no_popen)
    with pytest.raises(ValueError, match=r"preload segment 0 \(byte address 0xffff8, 16 bytes\)"):
        open_device("sim", preload=[(SERVE_MEM_BYTES - 8, bytes(16))])
    with pytest.raises(ValueError, match=r"not a LinkSimConfig build"):
        SimChip(config=link_serve_config(), preload=[(0, b"x")])
    with pytest.raises(TypeError, match=r"segment 0: data must be bytes or a NumPy array"):
        open_device("sim-sdram", preload=[(0, 5)])
    with pytest.raises(TypeError, match=r"for open_device\('sim'\) only"):
        open_device("serial:/dev/null", preload=[(0, b"x")])


def test_preload_file_round_trip(tmp_path):
    rng = np.random.default_rng(SEED)
    segs = _segments(rng, SDRAM_BYTES) + [(64, b"")]
    save_preload(tmp_path / "p.npz", segs)
    assert load_preload(tmp_path / "p.npz") == segs


def test_sdram_location_follows_the_controller():
    """Byte -> (bank, row, column, lane) of the ULX3S part (16-bit words,
    512 columns, 4 banks, 8192 rows): column bits first, then bank, then row."""
    chip = sdram_chip("ULX3S-SDRAM")
    assert (chip.data_width, chip.columns, chip.banks, chip.rows) == (16, 512, 4, 8192)
    assert sdram_location(0, chip) == (0, 0, 0, 0)
    assert sdram_location(1, chip) == (0, 0, 0, 1)
    assert sdram_location(2, chip) == (0, 0, 1, 0)
    assert sdram_location(1023, chip) == (0, 0, 511, 1)
    assert sdram_location(1024, chip) == (1, 0, 0, 0)       # next bank, same row
    assert sdram_location(4096, chip) == (0, 1, 0, 0)       # next row
    assert sdram_location(0x123_4567, chip) == (1, 0x1234, 0xB3, 1)
    assert sdram_location(SDRAM_BYTES - 1, chip) == (3, 8191, 511, 1)


def test_preload_sdram_keeps_the_bytes_it_does_not_cover():
    chip = sdram_chip("ULX3S-SDRAM")
    model = SDRAMModel(chip=chip, clk_period_ns=10)
    before = model.word((0, 0, 2))
    preload_sdram(model, [(5, b"\xAB")])                    # the high byte of word 2
    assert model.word((0, 0, 2)) == (before & 0xFF) | 0xAB00
    preload_sdram(model, [(1023, b"\x11\x22\x33")])          # bank 0 col 511 hi, bank 1 col 0
    assert model.word((0, 0, 511)) >> 8 == 0x11
    assert model.word((1, 0, 0)) == 0x3322


# -- through the simulated chip -------------------------------------------------------------

def _read_back(d, segs):
    for addr, data in segs:
        got = d.read(addr, len(data)).tobytes()
        assert got == data, f"segment at {addr:#x} ({len(data)} bytes, seed {SEED}) differs"


@pytest.fixture(scope="module")
def sdram_dev():
    runner.require_simulator(runner.simulators_from_env()[0])
    rng = np.random.default_rng(SEED)
    segs = _segments(rng, SDRAM_BYTES)
    gemm = _gemm_image(rng)
    d = open_device("sim-sdram", preload=segs + gemm["image"])
    yield d, segs, gemm
    d.close()


def _gemm_image(rng, m=8, k=20, n=12):
    """A and B of a GEMM, high in the SDRAM (rows far from the link's first
    writes), as the images :func:`seedchip.firmware.ops.gemm` would write."""
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    a_stride, b_stride, c_stride = isa.round_up(k), isa.round_up(n), isa.round_up(4 * n)
    a_addr, b_addr, c_addr = 0x123_4560, 0x1A0_0408, 0x100_0000
    a_img = np.zeros((m, a_stride), np.int8)
    a_img[:, :k] = a
    b_img = np.zeros((k, b_stride), np.int8)
    b_img[:, :n] = b
    prog = Program(base=0x40, limits=LIMITS, mem_bytes=SDRAM_BYTES)
    prog.gemm(a_addr=a_addr, b_addr=b_addr, c_addr=c_addr, m=m, k=k, n=n,
              a_stride=a_stride, b_stride=b_stride, c_stride=c_stride)
    prog.finish()
    return {"a": a, "b": b, "program": prog, "c_addr": c_addr, "c_stride": c_stride,
            "image": [(a_addr, a_img.tobytes()), (b_addr, b_img.tobytes())]}


def test_sdram_preload_reads_back(sdram_dev):
    d, segs, gemm = sdram_dev
    assert d.info()["mem_bytes"] == SDRAM_BYTES
    _read_back(d, segs + gemm["image"][:1])


def test_sdram_gemm_on_preloaded_operands(sdram_dev):
    """Only the program goes over the link; A and B were preloaded."""
    d, _, g = sdram_dev
    d.run(g["program"], timeout=120)
    m, n = g["a"].shape[0], g["b"].shape[1]
    c = d.read(g["c_addr"], shape=(m, g["c_stride"] // 4), dtype="<i4")[:, :n]
    assert np.array_equal(c, golden.gemm(g["a"], g["b"])), f"seed {SEED}"


def test_onchip_preload_reads_back():
    """``sim``: the on-chip RAM's array written through its handle (a build
    with that array public)."""
    runner.require_simulator(runner.simulators_from_env()[0])
    rng = np.random.default_rng(SEED + 1)
    segs = _segments(rng, SERVE_MEM_BYTES)
    with open_device("sim", preload=segs) as d:
        assert d.info()["mem_bytes"] == SERVE_MEM_BYTES
        _read_back(d, segs)
        # the link still writes around a preloaded segment
        d.write(1024 - 6, b"\x5A")
        assert d.read(1024 - 6, 3).tobytes() == b"\x5A" + segs[0][1][:2]
