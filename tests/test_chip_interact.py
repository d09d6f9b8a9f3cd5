# amaranth: UnusedElaboratable=no
"""rtl/chip_interact.py (InteractUnit) in the Amaranth simulator against
:class:`~seedchip.sim.chip_golden.ChipModel`: random seeded interactions and
directed ones (n_vec 2 and max_vec, dim 1, dim not a multiple of 8, dim > 8,
multiplier 0, 2**31-1 and negative, shift 0 and 31, saturation both ways,
batches with interleaved samples), several back to back on one instance,
random memory latency and ``req.ready``, random cycles before each command;
the whole memory and every ``done`` are compared. A read or write error gives
MEM_ERROR without hanging and the next command is right. The cycle counts
of the DLRM Kaggle shape and of dim <= 8 are checked. PARAMS (a multiplier
and shift per pair, from param records in memory: random bytes there give
every multiplier and shift) in the random cases, directed ones and the cycle
count; a read error in the records gives their address."""

import numpy as np
import pytest

from seedchip import isa
from seedchip.isa import ChipError, Limits, Opcode, Unit
from seedchip.rtl.chip_interact import BytePacker, DotAccumulator, InteractUnit
from seedchip.sim.clocked import run_clocked, stream_sink, stream_source
from seedchip.sim.unit_tb import PROG, check_against_model, model_run, operands_raw, run_unit

MEM_BYTES = 4096


#: small limits for speed: up to 8 vectors of up to 20 bytes (3 words)
LIMITS = Limits(max_vec=8, max_dim=20)
OPERANDS_MASK = (1 << isa.INTERACT_OPERANDS.size) - 1
MULTIPLIERS = [0, 1, -1, (1 << 31) - 1, -(1 << 31), 1 << 30, -(1 << 30) - 12345]


def set_interact(ctx, payload, insn):
    ctx.set(payload.opcode, Opcode.INTERACT)
    ctx.set(payload.flags.as_value(), int(insn.params))
    ctx.set(payload.operands.as_value(), operands_raw(insn) & OPERANDS_MASK)


def interact(src, dst, *, n_vec, dim, batch=1, multiplier=1 << 30, shift=0, in_stride=None,
             vec_stride=None, out_stride=None, p_addr=None):
    vec_stride = isa.round_up(dim) if vec_stride is None else vec_stride
    in_stride = n_vec * vec_stride if in_stride is None else in_stride
    out_stride = isa.round_up(isa.pairs(n_vec)) if out_stride is None else out_stride
    return isa.Interact(src=src, dst=dst, multiplier=multiplier, shift=shift, batch=batch,
                        dim=dim, n_vec=n_vec, in_stride=in_stride, vec_stride=vec_stride,
                        out_stride=out_stride, p_addr=p_addr or 0, params=p_addr is not None)


def random_interact(rng, lim, mem_bytes):
    n_vec = int(rng.choice([2, lim.max_vec, int(rng.integers(2, lim.max_vec + 1))]))
    dim = min(lim.max_dim, int(rng.choice([1, 7, 8, 9, 16, lim.max_dim,
                                            int(rng.integers(1, lim.max_dim + 1))])))
    batch = int(rng.integers(1, 4))
    pitch = isa.round_up(dim)
    if rng.random() < 0.4:          # samples interleaved: vector j of sample b at (j*batch + b)
        in_stride, vec_stride = pitch, batch * pitch
    else:
        vec_stride = pitch + 8 * int(rng.integers(0, 2))
        in_stride = n_vec * vec_stride + 8 * int(rng.integers(0, 2)) if rng.random() < 0.9 else 0
    out_stride = isa.round_up(isa.pairs(n_vec)) + 8 * int(rng.integers(0, 2))
    r = rng.random()
    if r < 0.4:
        multiplier, shift = int(rng.choice(MULTIPLIERS)), int(rng.choice([0, 1, 31]))
    else:                           # mostly in range: a real scale
        multiplier = int(rng.integers(1 << 30, 1 << 31))
        shift = int(rng.integers(6, 12))
    src_len = (batch - 1) * in_stride + (n_vec - 1) * vec_stride + dim
    dst_len = (batch - 1) * out_stride + isa.pairs(n_vec)
    half = (mem_bytes - PROG) // 2
    lo, hi = (PROG, PROG + half), (PROG + half, mem_bytes)
    if rng.random() < 0.5:
        lo, hi = hi, lo
    src = lo[0] + 8 * int(rng.integers(0, (lo[1] - lo[0] - src_len) // 8 + 1))
    dst = hi[0] + 8 * int(rng.integers(0, (hi[1] - hi[0] - dst_len) // 8 + 1))
    p_addr = None
    if rng.random() < 0.5:          # PARAMS: records read from the source half (random bytes)
        p_len = isa.pairs(n_vec) * isa.PARAM_BYTES
        p_addr = lo[0] + 8 * int(rng.integers(0, (lo[1] - lo[0] - p_len) // 8 + 1))
    return interact(src, dst, n_vec=n_vec, dim=dim, batch=batch, multiplier=multiplier,
                    shift=shift, in_stride=in_stride, vec_stride=vec_stride, out_stride=out_stride,
                    p_addr=p_addr)


def fresh_mem(rng, nbytes=MEM_BYTES):
    mem = rng.integers(0, 256, nbytes, dtype=np.uint8)
    mem[:PROG] = 0
    return mem


@pytest.mark.parametrize("seed,limits,mem_bytes", [
    (1, LIMITS, MEM_BYTES), (2, LIMITS, MEM_BYTES), (3, LIMITS, MEM_BYTES),
    (4, Limits(max_vec=5, max_dim=8), MEM_BYTES), (5, Limits(max_vec=3, max_dim=33), MEM_BYTES),
    # a 1024-word buffer: sliced into 16-bit memories
    (6, Limits(max_vec=9, max_dim=200), 16384)])
def test_interact_random(seed, limits, mem_bytes):
    rng = np.random.default_rng(seed)
    mem = fresh_mem(rng, mem_bytes)
    dut = InteractUnit(addr_width=11, mem_bytes=mem_bytes, limits=limits)
    if seed == 6:
        assert dut.slice_bits == 16
    insns = [random_interact(rng, limits, mem_bytes) for _ in range(8)]
    print("seed", seed, *insns, sep="\n")
    check_against_model(dut, mem, insns, rng, limits=limits, set_cmd=set_interact,
                        ready_p=float(rng.choice([0.3, 0.7, 1.0])))


def test_interact_directed():
    rng = np.random.default_rng(10)
    mem = fresh_mem(rng)
    # vectors of extremes: -128 * -128 * 20 = 327680 saturates any positive scale
    mem[1024:1024 + 8 * 24] = np.tile(np.array([0x80] * 20 + [0] * 4, np.uint8), 8)
    mem[1280:1280 + 24] = 0x7F
    dut = InteractUnit(addr_width=9, mem_bytes=MEM_BYTES, limits=LIMITS)
    insns = [
        interact(64, 2048, n_vec=2, dim=1),
        interact(64, 2048, n_vec=8, dim=20, batch=3, in_stride=24, vec_stride=72,
                 multiplier=(1 << 31) - 1, shift=0),                  # interleaved, saturating
        interact(64, 2208, n_vec=8, dim=9, batch=2, multiplier=0, shift=31),
        interact(64, 2304, n_vec=5, dim=13, batch=2, in_stride=0, multiplier=-(1 << 31),
                 shift=0),                                            # negative: both ways
        interact(1024, 2400, n_vec=8, dim=20, vec_stride=24, multiplier=(1 << 31) - 1,
                 shift=0),                                            # +327680: 127
        interact(1024, 2504, n_vec=8, dim=20, vec_stride=24, multiplier=-(1 << 31),
                 shift=0),                                            # -327680: -128
        interact(1024, 2600, n_vec=8, dim=20, vec_stride=24, multiplier=(1 << 31) - 1,
                 shift=31),                                           # rounds to 0
        interact(1024, 2704, n_vec=2, dim=20, vec_stride=256, multiplier=-12345678,
                 shift=5),                                            # v0 = -128s, v1 = 127s
        interact(64, 2800, n_vec=7, dim=8, batch=3, vec_stride=16, in_stride=8,
                 multiplier=1 << 30, shift=3, out_stride=32),
        # PARAMS: a scale per pair (extremes, then real ones); the instruction's
        # multiplier/shift are ignored
        interact(1024, 2904, n_vec=8, dim=20, vec_stride=24, multiplier=0, shift=31,
                 p_addr=1536),
        interact(64, 3000, n_vec=8, dim=9, batch=3, p_addr=1536 + 28 * 16),
        interact(64, 3200, n_vec=2, dim=1, p_addr=1536 + 27 * 16),
    ]
    recs = [((1 << 31) - 1, 0), (-(1 << 31), 0), ((1 << 31) - 1, 31), (0, 0), (1, 0), (-1, 5)]
    recs += [(int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(0, 14))) for _ in range(50)]
    # (packed as records, not through param_records: the host refuses these
    # multipliers, the chip takes any; a bias is ignored)
    mem[1536:1536 + 56 * 16] = np.frombuffer(b"".join(
        isa.pack_record(isa.ParamRecord, bias=12345, multiplier=mu, shift=sh) for mu, sh in recs),
        np.uint8)
    check_against_model(dut, mem, insns, rng, limits=LIMITS, set_cmd=set_interact)
    assert (mem[2400:2428] == 127).all() and (mem[2504:2532] == 0x80).all()
    # pairs (1,0) and (2,0) of the all -128 vectors: +327680 saturates to 127, then -128
    assert list(mem[2904:2907]) == [127, 0x80, 0]


def test_interact_cycles():
    # the DLRM Kaggle shape: 27 vectors of 16 bytes, 351 pairs of 2 words: 702 cycles a sample
    lim = Limits(max_vec=27, max_dim=16)
    rng = np.random.default_rng(30)
    mem = fresh_mem(rng, 8192)
    dut = InteractUnit(addr_width=10, mem_bytes=8192, limits=lim)
    kaggle = [interact(64, 4096, n_vec=27, dim=16, batch=1 + 2 * k, multiplier=1 << 30,
                       shift=7, out_stride=352) for k in range(2)]
    # PARAMS (records read from random bytes): the same per sample, plus the
    # table's load (2 words a pair)
    kaggle_p = [interact(64, 4096, n_vec=27, dim=16, batch=1 + 2 * k, out_stride=352,
                         p_addr=2048) for k in range(2)]
    small = interact(64, 4096, n_vec=8, dim=8, batch=4, shift=4)
    got = check_against_model(dut, mem, kaggle + [small] + kaggle_p, rng, limits=lim,
                              set_cmd=set_interact, ready_p=1.0, max_latency=1)
    print("cycles", [g[1] for g in got])
    per_sample = (got[1][1] - got[0][1]) / 2
    assert per_sample == 702, got
    assert (got[4][1] - got[3][1]) / 2 == 702, got
    assert got[3][1] - got[0][1] <= 2 * 351 + 20, got
    # one pair per cycle with dim <= 8: 28 pairs a sample, and ~60 cycles of latency
    assert got[2][1] <= 4 * 28 + 60, got


def test_interact_output_backpressure():
    # one pair per cycle (dim <= 8) into a writer that gets ready one cycle in 20:
    # the credits must hold the compute side back, or the Requantizer overruns the FIFO
    rng = np.random.default_rng(50)
    mem = fresh_mem(rng)
    dut = InteractUnit(addr_width=9, mem_bytes=MEM_BYTES, limits=LIMITS)
    insns = [interact(64, 2048, n_vec=8, dim=8, batch=6, shift=5),
             interact(64, 2560, n_vec=8, dim=3, batch=6, in_stride=8, vec_stride=48,
                      multiplier=-(1 << 30), shift=2)]
    check_against_model(dut, mem, insns, rng, limits=LIMITS, set_cmd=set_interact,
                        ready_p=[1.0, 0.05])


def test_interact_mem_error():
    rng = np.random.default_rng(40)
    mem = fresh_mem(rng)
    dut = InteractUnit(addr_width=9, mem_bytes=MEM_BYTES, limits=LIMITS)
    bad = range(130, 131)           # bytes 1040..1047 answer err
    rd_err = interact(1024, 3000, n_vec=4, dim=16, batch=2)
    wr_err = interact(64, 1032, n_vec=8, dim=12, batch=2)
    good = interact(64, 2048, n_vec=6, dim=12, batch=2, shift=4)
    good2 = interact(256, 2560, n_vec=3, dim=20, batch=3, in_stride=8, vec_stride=24, shift=6)
    # PARAMS: record 1 of 3 (bytes 1024 + 16 .. +31) spans the bad word
    p_err = interact(256, 2700, n_vec=3, dim=20, p_addr=1024)
    got = run_unit(dut, mem, [rd_err, good, wr_err, good2, p_err, good], rng,
                   set_cmd=set_interact, err_words=bad)
    # index: the first read word with err (vector 1 of rd_err); 0 for a write error
    assert [g[0] for g in got] == [(ChipError.MEM_ERROR, Unit.GEMM.value, 0, 1040),
                                   (ChipError.NONE, 0, 0, 0),
                                   (ChipError.MEM_ERROR, Unit.GEMM.value, 0, 0),
                                   (ChipError.NONE, 0, 0, 0),
                                   (ChipError.MEM_ERROR, Unit.GEMM.value, 0, 1040),
                                   (ChipError.NONE, 0, 0, 0)]
    # nothing wrote the good commands' outputs after them: running them again changes nothing
    for insn in (good, good2):
        want, _ = model_run(mem, insn, LIMITS)
        assert np.array_equal(mem, want), insn


def test_interact_args():
    with pytest.raises(TypeError, match="limits must be a Limits"):
        InteractUnit(addr_width=9, mem_bytes=MEM_BYTES, limits=None)
    with pytest.raises(ValueError, match="mem_bytes must be at most 4096"):
        InteractUnit(addr_width=9, mem_bytes=8192, limits=LIMITS)
    # the buffer follows max_dim (the gather engine's), never max_k: 2 banks x 64 vectors
    # x 8 words, 16-bit slices (4 x 2 block RAMs)
    unit = InteractUnit(addr_width=20, mem_bytes=1 << 20, limits=Limits(max_k=4096))
    assert (unit.buf_depth, unit.slice_bits) == (2 * 64 * 8, 16)
    # 33 bytes: 5 words, rounded up to 8 a vector; 3 vectors rounded up to 4
    unit = InteractUnit(addr_width=20, mem_bytes=1 << 20, limits=Limits(max_vec=3, max_dim=33))
    assert unit.buf_depth == 2 * 4 * 8


def test_byte_packer():
    rng = np.random.default_rng(60)
    rows = [rng.integers(0, 256, int(rng.choice([1, 7, 8, 9, 17, 28]))) for _ in range(20)]
    items = [{"data": int(v), "last": int(k == len(r) - 1)} for r in rows for k, v in enumerate(r)]
    want = []
    for r in rows:
        for k in range(0, len(r), 8):
            want.append(int.from_bytes(bytes(int(v) for v in r[k:k + 8]), "little"))
    dut = BytePacker()
    got = []

    async def watchdog(ctx):
        for _ in range(5000):
            if len(got) == len(want):
                return
            await ctx.tick()
        raise AssertionError(f"the packer hangs: {len(got)} of {len(want)} beats")

    run_clocked(dut, stream_source(dut.i, items, rng, p_idle=0.3), watchdog,
                processes=[stream_sink(dut.o, got, rng, p_ready=0.5, conv=lambda p: p.data)])
    assert got == want


def test_dot_accumulator():
    rng = np.random.default_rng(70)
    dut = DotAccumulator()
    pairs = []
    for _ in range(30):
        words = int(rng.integers(1, 4))
        a = rng.integers(-128, 128, (words, 8))
        b = rng.integers(-128, 128, (words, 8))
        if rng.random() < 0.2:
            a[:], b[:] = -128, -128
        pairs.append((a, b, int(rng.random() < 0.3)))
    got = []

    def word(v):
        return int.from_bytes(v.astype(np.int8).tobytes(), "little")

    async def tb(ctx):
        for a, b, row_last in pairs:
            for w in range(len(a)):
                while rng.random() < 0.3:           # gaps inside and between pairs
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, w == 0)
                ctx.set(dut.last, w == len(a) - 1)
                ctx.set(dut.row_last, row_last)
                ctx.set(dut.a, word(a[w]))
                ctx.set(dut.b, word(b[w]))
                await ctx.tick()
        ctx.set(dut.valid, 0)
        await ctx.tick().repeat(DotAccumulator.LATENCY + 2)

    async def mon(ctx):
        async for _, _, o_valid, acc, row_last in ctx.tick().sample(
                dut.o_valid, dut.o_acc, dut.o_row_last):
            if o_valid:
                got.append((acc, row_last))

    run_clocked(dut, tb, processes=[mon])
    assert got == [(int((a * b).sum()), r) for a, b, r in pairs]
