"""The whole chip (rtl/chip.py) through the ``sim`` Device: the RTL under
Verilator behind a pty, driven over its UART by the serial transport.

Every program runs on the chip and on the golden executor
(:class:`~seedchip.sim.chip_golden.ChipModel`) from the same memory image;
the regions the program writes (and guard bytes around them) and the status
must be equal. Two engines run at once (a GATHER beside GEMMs) and contend
for the one memory, which is the backpressure each sees.
"""

import numpy as np
import pytest

from seedchip import isa
from seedchip.cli import main
from seedchip.config import ChipConfig
from seedchip.emb_protocol import BoundsMode, GatherError, PoolMode
from seedchip.firmware import GoldenDevice, ProgramError, embedding_bag, gemm, open_device
from seedchip.firmware.program import (Allocator, Program, Table, desc_records, param_records,
                                       table_image, u32_array)
from seedchip.isa import ChipError, ChipState, Operand
from seedchip.sim import golden, runner
from seedchip.sim.chip_golden import ChipModel
from seedchip.sim.chip_top import SERVE_MEM_BYTES, ChipSDRAMSimConfig
from seedchip.sim.emb_golden import embedding_bag_ref

LIMITS = isa.Limits.from_config(ChipConfig())
MEM = SERVE_MEM_BYTES


@pytest.fixture(scope="module")
def dev():
    runner.require_simulator(runner.simulators_from_env()[0])
    d = open_device("sim")
    yield d
    d.close()


class Twin:
    """A memory image written to the chip and to the golden model alike."""

    def __init__(self, dev):
        self.dev = dev
        self.model = ChipModel(MEM, LIMITS)
        self.mem = Allocator(MEM, base=4096)       # programs below 4096

    def put(self, name, data, *, nbytes=None):
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        addr = self.mem.alloc(name, nbytes or len(raw))
        self.dev.write(addr, raw)
        self.model.write(addr, np.frombuffer(raw, np.uint8))
        return addr

    def space(self, name, nbytes):
        """A region the program writes: cleared on both, with 8 guard bytes after."""
        return self.put(name, bytes(nbytes + 8))

    def run(self, prog):
        raw = prog.to_bytes()
        self.dev.write(prog.base, raw)
        self.model.write(prog.base, np.frombuffer(raw, np.uint8))
        want = self.model.run(prog.base)
        got = self.dev.run(prog, check=False)
        return got, want

    def same(self, name):
        lo, n = self.mem.regions[name]
        got = bytes(self.dev.read(lo, n))
        want = self.model.read(lo, n)
        assert got == want, f"{name}: chip and golden model differ at byte " \
            f"{next(i for i in range(n) if got[i] != want[i])}"


def _params(rng, n, requant=True):
    bias = rng.integers(-3000, 3000, n)
    mult = rng.integers(1 << 30, 1 << 31, n) if requant else None
    shift = rng.integers(4, 10, n) if requant else None
    return param_records(bias, mult, shift)


def test_dlrm_like_program(dev):
    """GEMM -> GEMM with ReLU -> GATHER (beside the GEMMs) -> INTERACTION ->
    COPY, one program: a small DLRM forward pass, bit-exact."""
    rng = np.random.default_rng(12)
    B, n_dense, h, d, T = 6, 13, 24, 16, 3
    n_vec = T + 1
    vs = isa.round_up(d)                          # one vector's stride
    t = Twin(dev)
    x = t.put("dense", rng.integers(-128, 128, (B, 16)).astype(np.int8))
    w1 = t.put("w1", rng.integers(-128, 128, (n_dense, h)).astype(np.int8))
    p1 = t.put("p1", _params(rng, h))
    w2 = t.put("w2", rng.integers(-128, 128, (h, d)).astype(np.int8))
    p2 = t.put("p2", _params(rng, d))
    tabs = []
    for k in range(T):
        rows = int(rng.integers(5, 40))
        w = rng.integers(-128, 128, (rows, d))
        tabs.append(Table(base=t.put(f"table{k}", table_image(w)), rows=rows, dim=d,
                          multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=7))
    desc = t.put("desc", desc_records(tabs))
    lens = rng.integers(0, 6, T * B)
    offs = np.concatenate([[0], np.cumsum(lens)])
    idx = np.concatenate([rng.integers(0, tabs[i // B].rows, lens[i]) for i in range(T * B)])
    ia = t.put("idx", u32_array(idx), nbytes=max(8, 4 * len(idx)))
    oa = t.put("off", u32_array(offs))
    h1 = t.space("h1", B * isa.round_up(h))
    tv = t.space("vectors", B * n_vec * vs)        # [x, e_1, .., e_T] per sample
    z = t.space("z", B * isa.round_up(isa.pairs(n_vec)))
    top = t.space("top_in", B * 64)                # [x | z] for the top MLP
    prog = Program(base=0, limits=LIMITS, mem_bytes=MEM)
    prog.gemm(a_addr=x, b_addr=w1, c_addr=h1, m=B, k=n_dense, n=h, a_stride=16, p_addr=p1,
              requant=True)
    prog.gather(desc_addr=desc, idx_addr=ia, off_addr=oa, out_addr=tv + vs, batch=B,
                tables=tabs, n_indices=len(idx), out_stride=n_vec * vs, out_tstride=vs,
                mode=PoolMode.SUM, requant=True)
    prog.gemm(a_addr=h1, b_addr=w2, c_addr=tv, m=B, k=h, n=d, c_stride=n_vec * vs, p_addr=p2,
              requant=True, relu=True)
    prog.interact(src=tv, dst=z, batch=B, n_vec=n_vec, dim=d, multiplier=1 << 30, shift=6)
    prog.copy(src=tv, dst=top, rows=B, row_bytes=d, src_stride=n_vec * vs, dst_stride=64)
    prog.copy(src=z, dst=top + d, rows=B, row_bytes=isa.pairs(n_vec),
              src_stride=isa.round_up(isa.pairs(n_vec)), dst_stride=64)
    prog.finish()
    got, want = t.run(prog)
    assert want.state == ChipState.DONE
    assert got == want, f"chip {got}, golden {want}"
    for name in ("h1", "vectors", "z", "top_in"):
        t.same(name)
    c = dev.unit_counters()
    for u in ("gemm", "gather", "copy"):
        assert c[u]["busy"] > 0 and c[u]["busy"] + c[u]["idle"] == c["cycles"], c


def _error_programs():
    """(name, build(t) -> Program): one program per error a program can raise."""
    def illegal(t):
        p = Program(base=0)
        p.nop()
        p.insns.append(isa.Illegal(word=0x77))
        p.finish()
        return p

    def gemm_shape(t):
        p = Program(base=0)
        a = t.space("a", 64)
        p.insns.append(isa.Gemm(a_addr=a, b_addr=a, c_addr=a, p_addr=0, m=1, k=300, n=1,
                                a_stride=304, b_stride=8, c_stride=8))
        p.finish()
        return p

    def align(t):
        p = Program(base=0)
        a = t.space("a", 64)
        p.insns.append(isa.Copy(src=a + 4, dst=a, src_stride=8, dst_stride=8, rows=1,
                                row_bytes=4))
        p.finish()
        return p

    def addr_range(t):
        p = Program(base=0)
        a = t.space("a", 64)
        p.insns.append(isa.Copy(src=a, dst=MEM - 8, src_stride=8, dst_stride=8, rows=2,
                                row_bytes=8))
        p.finish()
        return p

    def gather_oob(t):
        tab = Table(base=t.put("tab", table_image(np.ones((4, 8)))), rows=4, dim=8)
        p = Program(base=0)
        p.gather(desc_addr=t.put("desc", desc_records([tab])),
                 idx_addr=t.put("idx", u32_array([0, 1, 9, 2])),
                 off_addr=t.put("off", u32_array([0, 2, 4])), out_addr=t.space("o", 64),
                 batch=2, tables=[tab], n_indices=4, out_stride=32, out_tstride=0,
                 bounds=BoundsMode.FATAL)
        p.finish()
        return p

    def gather_idx_range(t):
        tab = Table(base=t.put("tab", table_image(np.ones((4, 8)))), rows=4, dim=8)
        p = Program(base=0)
        p.gather(desc_addr=t.put("desc", desc_records([tab])), idx_addr=MEM - 8,
                 off_addr=t.put("off", u32_array([0, 1, 5])), out_addr=t.space("o", 64),
                 batch=2, tables=[tab], n_indices=0, out_stride=32, out_tstride=0)
        p.finish()
        return p

    def gather_bad_desc(t):
        tab = Table(base=t.put("tab", table_image(np.ones((4, 8)))), rows=4, dim=8)
        bad = Table(base=tab.base, rows=4, dim=LIMITS.max_dim + 1)
        p = Program(base=0)
        p.gather(desc_addr=t.put("desc", desc_records([tab, bad])),
                 idx_addr=t.put("idx", u32_array([0, 1])),
                 off_addr=t.put("off", u32_array([0, 1, 2])), out_addr=t.space("o", 256),
                 batch=1, tables=[tab, bad], n_indices=2, out_stride=256, out_tstride=8)
        p.finish()
        return p

    def earliest(t):
        """A GATHER that fails while a later GEMM has already failed its
        checks: the GATHER's error (earlier in the program) is reported."""
        p = gather_oob(t)
        fin = p.insns.pop()
        p.insns.append(isa.Gemm(a_addr=0, b_addr=0, c_addr=0, p_addr=0, m=0, k=1, n=1,
                                a_stride=8, b_stride=8, c_stride=8))
        p.insns.append(fin)
        return p

    def pc_range(t):
        p = Program(base=MEM - 32)
        p.nop()
        return p                                  # no FINISH: runs off the end

    return [("illegal", illegal, ChipError.ILLEGAL), ("shape", gemm_shape, ChipError.BAD_SHAPE),
            ("align", align, ChipError.BAD_ALIGN), ("range", addr_range, ChipError.ADDR_RANGE),
            ("gather", gather_oob, ChipError.GATHER_ERROR),
            ("gather_idx", gather_idx_range, ChipError.ADDR_RANGE),
            ("bad_desc", gather_bad_desc, ChipError.GATHER_ERROR),
            ("earliest", earliest, ChipError.GATHER_ERROR),
            ("pc", pc_range, ChipError.ADDR_RANGE)]


@pytest.mark.parametrize("name,build,error", _error_programs(), ids=[e[0] for e in
                                                                     _error_programs()])
def test_errors_stop_the_program(dev, name, build, error):
    """Each error a program can raise stops it with the golden model's status
    (error, detail, bag, index, pc, retired); the chip then runs the next
    program."""
    t = Twin(dev)
    prog = build(t)
    got, want = t.run(prog)
    assert want.error == error, want
    assert got == want, f"chip {got}, golden {want}"
    ok = Program(base=0)
    ok.nop()
    ok.finish()
    assert dev.run(ok).state == ChipState.DONE


@pytest.mark.parametrize("m,k,n,post", [(40, 24, 33, "requant"), (300, 20, 12, "raw"),
                                        (9, 300, 17, "requant"), (17, 64, 280, "relu"),
                                        (6, 2 * LIMITS.max_k + 37, 19, "relu"),
                                        (6, 2 * LIMITS.max_k + 37, 19, "raw")])
def test_gemm_any_size(dev, m, k, n, post):
    """firmware.ops.gemm on the chip: tiled over M and N, K split into a GEMM and
    ACC GEMMs onto its int32 C in chip memory (the last with bias, requantization
    and ReLU, or raw int32), all in one program, bit-exact."""
    rng = np.random.default_rng(m + k + n)
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    bias = rng.integers(-9000, 9000, n) if post != "raw" else None
    mult = rng.integers(1 << 30, 1 << 31, n) if post != "raw" else None
    shift = rng.integers(5, 12, n) if post != "raw" else None
    r = gemm(dev, a, b, bias, mult, shift, post == "relu", limits=LIMITS)
    assert len(r.programs) == 1
    assert np.array_equal(r.c, golden.gemm(a, b, bias, mult, shift, relu=post == "relu"))


def test_embedding_bag_on_the_chip(dev):
    rng = np.random.default_rng(3)
    table = rng.integers(-128, 128, (100, 20))
    offsets = np.array([0, 4, 4, 11, 30, 31])
    idx = rng.integers(0, 100, 31)
    w = rng.integers(-128, 128, 31)
    r = embedding_bag(dev, table, idx, offsets, weights=w, limits=LIMITS)
    assert np.array_equal(r.pooled, embedding_bag_ref(table, idx, offsets,
                                                      per_sample_weights=w))
    g = embedding_bag(GoldenDevice(MEM, LIMITS), table, idx, offsets, weights=w, limits=LIMITS)
    assert np.array_equal(r.pooled, g.pooled)
    with pytest.raises(ProgramError, match="OUT_OF_RANGE bag=2 index=100"):
        embedding_bag(dev, table, [1, 2, 100], [0, 1, 1, 3], limits=LIMITS)


def test_cli_gemm_and_embedding_bag(sim, tmp_path, capsys):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "a.npy", rng.integers(-128, 128, (70, 30)).astype(np.int8))
    np.save(tmp_path / "b.npy", rng.integers(-128, 128, (30, 20)).astype(np.int8))
    assert main(["gemm", "--a", str(tmp_path / "a.npy"), "--b", str(tmp_path / "b.npy"),
                 "--out", str(tmp_path / "c.npy")]) == 0
    out = capsys.readouterr().out
    assert "bit-exact against the golden model: yes" in out and "MAC utilization" in out
    c = np.load(tmp_path / "c.npy")
    assert np.array_equal(c, golden.gemm(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")))
    np.save(tmp_path / "t.npy", rng.integers(-128, 128, (30, 12)).astype(np.int8))
    np.save(tmp_path / "i.npy", np.array([1, 2, 3, 29, 0]))
    np.save(tmp_path / "o.npy", np.array([0, 2, 2]))
    assert main(["embedding-bag", "--table", str(tmp_path / "t.npy"), "--indices",
                 str(tmp_path / "i.npy"), "--offsets", str(tmp_path / "o.npy"),
                 "--mode", "max", "--out", str(tmp_path / "p.npy")]) == 0
    assert "bit-exact against the golden model: yes" in capsys.readouterr().out
    assert np.load(tmp_path / "p.npy").shape == (3, 12)       # PyTorch offsets: 3 bags


def test_on_the_sdram_model(sim):
    """``sim-sdram``: the same chip on the SDRAM controller and the pin-level
    SDRAM model (which checks every timing rule): a GEMM and a GATHER, bit-exact."""
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (12, 20))
    b = rng.integers(-128, 128, (20, 10))
    with open_device("sim-sdram") as d:
        assert d.info()["mem_bytes"] == 32 << 20
        r = gemm(d, a, b, limits=LIMITS)
        assert np.array_equal(r.c, golden.gemm(a, b))
        table = rng.integers(-128, 128, (16, 12))
        idx = rng.integers(0, 16, 9)
        bag = embedding_bag(d, table, idx, [0, 4, 9], mode="max", limits=LIMITS)
        assert np.array_equal(bag.pooled, embedding_bag_ref(table, idx, [0, 4, 9], "max"))
        # the first WRITE came while the SDRAM was still initializing: the
        # simulation ran on for it instead of waiting for the host, so no
        # request waited out the link's timeout (30 s) and was sent again
        assert d.link.retransmits == 0 and d.link.dropped == 0


def test_sdram_on_its_own_clock(sim):
    """The board build's two domains (``sdram_mhz`` != ``clk_mhz``): the
    chip at 45 MHz (22 ns); the SDRAM controller, the pin-level model and
    the GATHER unit at 90 MHz (11 ns) in their own domain, the chip's memory
    port crossing through MemPortCDC, the GATHER unit's command and done
    through UnitPortCDC. A GEMM, GATHERs (sum with an empty bag, weighted,
    an out-of-range index: its error and then a good one again) and 4 KiB
    written and read back over the link, bit-exact; the GATHER unit's
    counters (kept in the chip's clock) add up."""
    rng = np.random.default_rng(10)
    a = rng.integers(-128, 128, (40, 72))
    b = rng.integers(-128, 128, (72, 24))
    cfg = ChipSDRAMSimConfig(clk_period_ns=22, sdram_period_ns=11)
    with open_device("sim-sdram", config=cfg) as d:
        assert d.info()["mem_bytes"] == 32 << 20
        r = gemm(d, a, b, limits=LIMITS)
        assert np.array_equal(r.c, golden.gemm(a, b))
        table = rng.integers(-128, 128, (300, 40))
        idx = rng.integers(0, 300, 50)
        offsets = [0, 7, 7, 30, 50]
        bag = embedding_bag(d, table, idx, offsets, mode="sum", limits=LIMITS)
        assert np.array_equal(bag.pooled, embedding_bag_ref(table, idx, offsets, "sum"))
        w = rng.integers(-128, 128, idx.size)
        bag = embedding_bag(d, table, idx, offsets, weights=w, limits=LIMITS)
        assert np.array_equal(bag.pooled, embedding_bag_ref(table, idx, offsets,
                                                            per_sample_weights=w))
        with pytest.raises(ProgramError, match="OUT_OF_RANGE bag=1 index=300"):
            embedding_bag(d, table, [1, 300, 2], [0, 1, 3], limits=LIMITS)
        bag = embedding_bag(d, table, idx, offsets, mode="max", limits=LIMITS)
        assert np.array_equal(bag.pooled, embedding_bag_ref(table, idx, offsets, "max"))
        c = d.unit_counters()
        assert c["gather"]["busy"] > 0 and c["gather"]["busy"] + c["gather"]["idle"] == c["cycles"]
        data = rng.integers(0, 256, 4096, dtype=np.uint8)
        d.write(0x10000, data)
        assert np.array_equal(d.read(0x10000, data.size), data)
        assert d.link.retransmits == 0 and d.link.dropped == 0
