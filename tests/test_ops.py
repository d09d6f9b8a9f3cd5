"""firmware/ops.py on the golden executor: GEMM tiling over M, N and K
(K chunks accumulated on the chip with GEMM ACC) and the EmbeddingBag layout, bit-exact
against the golden models; the same calls run on the RTL in
tests/test_chip.py."""

import numpy as np
import pytest

from seedchip import isa
from seedchip.firmware import FitError, GoldenDevice, ProgramError, embedding_bag, gemm
from seedchip.sim import golden
from seedchip.sim.chip_golden import check_hazards
from seedchip.sim.emb_golden import embedding_bag_ref

SMALL = isa.Limits(max_m=16, max_k=16, max_n=16, n_tables=4, max_dim=32, max_bag=8)


@pytest.mark.parametrize("m,k,n,post", [
    (1, 1, 1, "raw"), (16, 16, 16, "requant"), (37, 20, 45, "requant"), (40, 16, 9, "bias"),
    (5, 33, 17, "requant"), (19, 50, 3, "raw"), (33, 40, 33, "relu"), (7, 37, 20, "bias"),
    (3, 45, 5, "relu_only"), (18, 16 * 3 + 1, 17, "requant")])
def test_gemm_tiles(m, k, n, post):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    bias = rng.integers(-5000, 5000, n) if post not in ("raw", "relu_only") else None
    mult = rng.integers(1 << 30, 1 << 31, n) if post in ("requant", "relu") else None
    shift = rng.integers(0, 12, n) if mult is not None else None
    relu = post in ("relu", "relu_only")
    dev = GoldenDevice(1 << 16, SMALL)
    r = gemm(dev, a, b, bias, mult, shift, relu, limits=SMALL)
    want = golden.gemm(a, b, bias, mult, shift, relu=relu)
    assert np.array_equal(r.c, want)
    # one program: per (M, N) tile one GEMM per K chunk, the later ones ACC
    chunks = -(-k // 16)
    assert r.programs == [-(-m // 16) * -(-n // 16) * chunks + 1]
    insns = dev.model.trace[:-1]
    assert [e.insn.acc for e in insns] == [c > 0 for _ in range(len(insns) // chunks)
                                           for c in range(chunks)]
    assert check_hazards(dev.model.trace) == []


def test_gemm_does_not_fit():
    with pytest.raises(FitError, match="does not fit in the device's 4096 bytes"):
        gemm(GoldenDevice(4096, SMALL), np.ones((64, 64), np.int8), np.ones((64, 64), np.int8), limits=SMALL)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag(mode):
    rng = np.random.default_rng(7)
    table = rng.integers(-128, 128, (50, 13))
    offsets = np.array([0, 3, 3, 8, 12])
    idx = rng.integers(0, 50, 12)
    weights = rng.integers(-128, 128, 12) if mode == "sum" else None
    r = embedding_bag(GoldenDevice(1 << 15, SMALL), table, idx, offsets, mode=mode,
                      weights=weights, limits=SMALL)
    want = embedding_bag_ref(table, idx, offsets, mode=mode, per_sample_weights=weights)
    assert np.array_equal(r.pooled, want)


def test_embedding_bag_error_is_the_chips():
    table = np.zeros((10, 8), np.int64)
    with pytest.raises(ProgramError, match="GATHER_ERROR OUT_OF_RANGE bag=1 index=10"):
        embedding_bag(GoldenDevice(1 << 15, SMALL), table, [1, 2, 10], [0, 2, 3], limits=SMALL)


def test_index_past_32_bits_is_not_wrapped():
    """2**32 + 3 and -1 reach the chip as all ones (out of range), never as row 3."""
    table = np.arange(10 * 8).reshape(10, 8) % 100 - 50
    r = embedding_bag(GoldenDevice(1 << 15, SMALL), table, [5, 2**32 + 3, -1, 9], [0, 2, 4],
                      bounds="clamp", limits=SMALL)
    want = embedding_bag_ref(table, [5, 0, 0, 9], [0, 2, 4])
    assert np.array_equal(r.pooled, want)
