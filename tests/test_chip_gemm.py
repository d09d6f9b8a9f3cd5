# amaranth: UnusedElaboratable=no
"""rtl/chip_gemm.py (GemmFront: the chip's GEMM unit, memory to memory) in the
Amaranth simulator against :class:`~seedchip.sim.chip_golden.ChipModel`: a
random memory image, a GEMM instruction (or several, back to back on one
instance), the whole memory compared byte for byte with the model's and the
done item with the model's status; random memory latency and ``req.ready``
on every port (one :class:`MemModel` each, one shared byte array), random
cycles before each command is offered. Plus a memory error on A's words
(done MEM_ERROR, and the next command still right) and the cycle figures
with an ideal memory. ACC GEMMs (C_in in place, rtl/chip_gemm_acc.py) the
same way, and its CinReader and AccJoin alone."""

import dataclasses

import numpy as np
import pytest

from seedchip import isa
from seedchip.config import ChipConfig
from seedchip.isa import ChipError, Limits, Operand, Unit
from seedchip.protocol import GemmError
from seedchip.rtl.chip_gemm_acc import AccJoin, CinReader
from seedchip.rtl.chip_gemm import (N_PORTS, PORT_A, PORT_B, PORT_C, PORT_CIN, PORT_PARAMS,
                                    GemmFront, LaneSplitter, ResultWriter)
from seedchip.sim.chip_golden import ChipModel
from seedchip.sim.clocked import run_clocked, stream_sink, stream_source
from seedchip.sim import golden as golden_ref
from seedchip.sim.golden import tile_order
from seedchip.sim.memmodel import MemModel

SMALL = ChipConfig(rows=4, cols=4, max_m=32, max_k=40, max_n=40)
WB = 8
FIELDS = ("a_addr", "b_addr", "c_addr", "p_addr", "m", "k", "n", "a_stride", "b_stride",
          "c_stride")


def addr_width(mem_bytes):
    return max(1, (mem_bytes // WB - 1).bit_length())


def param_bytes(rng, n, requant):
    """N param records; multipliers 0 or Q31 in [2**30, 2**31), random ignored bits."""
    out = b""
    for _ in range(n):
        mult = 0 if requant and rng.random() < 0.1 else int(rng.integers(1 << 30, 1 << 31))
        out += isa.pack_record(isa.ParamRecord, bias=int(rng.integers(-(1 << 20), 1 << 20)),
                               multiplier=mult, shift=int(rng.integers(0, 32)),
                               ignored=int(rng.integers(0, 1 << 59)))
    return out


class Layout:
    """Places the operands of GEMMs one after another (random 8-byte gaps)
    above the program, in a random memory image."""

    def __init__(self, rng, mem_bytes):
        self.rng = rng
        self.mem = rng.integers(0, 256, mem_bytes, dtype=np.uint8)
        self.top = 64

    def alloc(self, nbytes):
        a = self.top + 8 * int(self.rng.integers(0, 4))
        self.top = isa.round_up(a + nbytes)
        assert self.top <= len(self.mem), "test memory too small"
        return a

    def gemm(self, m, k, n, *, params=False, requant=False, relu=False, acc=False, pad=None):
        """A GEMM instruction on fresh regions (strides padded by 0..2 words,
        or ``pad`` words); param records written into the image. With ``acc``
        C's rows are 4 * n bytes (C_in: the random image's bytes)."""
        rng = self.rng
        es = 4 if acc else isa.out_bytes(requant)
        pads = [int(rng.integers(0, 3)) if pad is None else pad for _ in range(3)]
        a_s, b_s, c_s = (isa.round_up(x) + 8 * p for x, p in zip((k, n, n * es), pads))
        a_addr = self.alloc(m * a_s)
        b_addr = self.alloc(k * b_s)
        p_addr = 0
        if params:
            p_addr = self.alloc(n * isa.PARAM_BYTES)
            raw = param_bytes(rng, n, requant)
            self.mem[p_addr:p_addr + len(raw)] = np.frombuffer(raw, np.uint8)
        c_addr = self.alloc(m * c_s)
        return isa.Gemm(a_addr=a_addr, b_addr=b_addr, c_addr=c_addr, p_addr=p_addr, m=m, k=k,
                        n=n, a_stride=a_s, b_stride=b_s, c_stride=c_s, params=params,
                        requant=requant, relu=relu, acc=acc)


def golden(image, cfg, insns):
    """The memory after each instruction runs on ChipModel, and the statuses."""
    model = ChipModel(len(image), Limits.from_config(cfg))
    model.mem[:] = image
    statuses = []
    for insn in insns:
        assert isa.validate(insn, model.limits, len(image)).ok, insn
        saved = model.mem[:64].copy()
        model.write(0, isa.encode(insn) + isa.encode(isa.Finish()))
        statuses.append(model.run(0))
        model.mem[:64] = saved
    return model.mem, statuses


def simulate(cfg, image, insns, *, seed, ready_p=0.7, max_latency=4, err_words=range(0),
             max_idle=4, err_port=PORT_A):
    """Run ``insns`` back to back on one GemmFront; returns (memory, done
    items, cycles from each accepted command to its done)."""
    mem_bytes = len(image)
    dut = GemmFront(config=cfg, addr_width=addr_width(mem_bytes), mem_bytes=mem_bytes)
    data = image.copy()
    rng = np.random.default_rng(seed)
    mems = [MemModel(dut.mem[i], data, WB, rng, ready_p=ready_p, max_latency=max_latency,
                     err_words=err_words if i == err_port else range(0)) for i in range(N_PORTS)]
    dones, cycles = [], []

    def limit(i):
        """Cycles a command may take at worst here: 10 times the words it
        moves and its passes over the array (the memory answers a word every
        other cycle or so, after up to 8 cycles)."""
        if not isinstance(i, isa.Gemm):
            return 100
        kt, nt = -(-i.k // cfg.rows), -(-i.n // cfg.cols)
        return (300 + 10 * (i.m * kt + i.k * nt + 2 * i.n + i.m * i.n + nt * kt * max(i.m, 8))
                + (10 * (i.m * i.n + 10 * nt) if i.acc else 0))

    async def tb(ctx):
        ctl = dut.ctl
        ctx.set(ctl.done.ready, 1)
        t = 0
        for insn in insns:
            idle = int(rng.integers(0, max_idle + 1))
            accepted = None
            start = t
            while True:
                for mm in mems:
                    mm.step(ctx)
                if accepted is None and idle == 0:
                    p = ctl.cmd.payload
                    ctx.set(p.opcode, insn.opcode)
                    if isinstance(insn, isa.Gemm):
                        for f in FIELDS:
                            ctx.set(getattr(p.operands.gemm, f), getattr(insn, f))
                        for f in ("params", "requant", "relu", "acc"):
                            ctx.set(getattr(p.flags, f), int(getattr(insn, f)))
                    ctx.set(ctl.cmd.valid, 1)
                    if ctx.get(ctl.cmd.ready):
                        accepted = t
                else:
                    idle = max(0, idle - 1)
                    ctx.set(ctl.cmd.valid, 0)
                done = None
                if ctx.get(ctl.done.valid):
                    assert accepted is not None and accepted < t, "done without a command"
                    d = ctl.done.payload
                    done = (ChipError(ctx.get(d.error)), ctx.get(d.detail), ctx.get(d.bag),
                            ctx.get(d.index))
                await ctx.tick()
                t += 1
                if accepted == t - 1:
                    ctx.set(ctl.cmd.valid, 0)
                assert ctx.get(ctl.mem_stall) in (0, 1)
                if done is not None:
                    dones.append(done)
                    cycles.append(t - 1 - accepted)
                    break
                assert t - start < limit(insn), f"no done after {t - start} cycles (seed {seed})"
        for _ in range(3):          # nothing more may happen
            for mm in mems:
                mm.step(ctx)
            assert not ctx.get(ctl.done.valid)
            await ctx.tick()
        assert all(mm.idle for mm in mems)

    run_clocked(dut, tb)
    return data, dones, cycles


def check(cfg, insns, layout, *, seed, **kw):
    want, statuses = golden(layout.mem, cfg, insns)
    got, dones, cycles = simulate(cfg, layout.mem, insns, seed=seed, **kw)
    assert len(dones) == len(insns)
    for insn, st, done in zip(insns, statuses, dones):
        assert done == (st.error, st.detail, st.bag, st.index), f"{insn} (seed {seed})"
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} bytes differ, first at 0x{bad[0]:x}: "
                           f"got {got[bad[0]]} want {want[bad[0]]} (seed {seed})")
    return cycles


# -- directed and random cases ------------------------------------------------------

DIRECTED = [
    # (m, k, n, params, requant, relu)
    (1, 1, 1, False, False, False),
    (1, 1, 1, True, True, True),
    (1, 9, 6, True, True, False),
    (7, 1, 5, False, False, True),
    (5, 6, 1, True, False, False),          # bias only, int32
    (9, 7, 5, True, False, True),           # bias only, ReLU
    (6, 8, 8, True, True, False),
    (3, 13, 11, False, False, False),
    (12, 4, 17, True, True, True),
    (32, 40, 40, True, True, False),        # the buffers' limits
]


def test_directed_small():
    rng = np.random.default_rng(1)
    lay = Layout(rng, 1 << 16)
    insns = [lay.gemm(m, k, n, params=p, requant=r, relu=u, pad=i % 3)
             for i, (m, k, n, p, r, u) in enumerate(DIRECTED)]
    check(SMALL, insns, lay, seed=1, ready_p=0.6)


@pytest.mark.parametrize("seed", [2, 3])
def test_random_small(seed):
    rng = np.random.default_rng(seed)
    lay = Layout(rng, 1 << 16)
    insns = []
    for _ in range(6):
        params = bool(rng.integers(2))
        insns.append(lay.gemm(int(rng.integers(1, SMALL.max_m + 1)),
                              int(rng.integers(1, SMALL.max_k + 1)),
                              int(rng.integers(1, SMALL.max_n + 1)), params=params,
                              requant=params and bool(rng.integers(2)),
                              relu=bool(rng.integers(2))))
    check(SMALL, insns, lay, seed=seed, ready_p=float(rng.uniform(0.3, 1.0)),
          max_latency=int(rng.integers(1, 8)))


@pytest.mark.parametrize("rows, cols", [(8, 8), (16, 2), (2, 16)])
def test_array_shapes(rows, cols):
    """Beats of one word (8), of two (16) and parts of a word (2) on A and B."""
    cfg = ChipConfig(rows=rows, cols=cols, max_m=24, max_k=40, max_n=40)
    rng = np.random.default_rng(rows * 100 + cols)
    lay = Layout(rng, 1 << 15)
    insns = [lay.gemm(5, 17, 19, params=True, requant=True, relu=True),
             lay.gemm(3, 40, 33, params=True),
             lay.gemm(1, 1, 1),
             lay.gemm(9, 16, 16, params=True, requant=True)]
    check(cfg, insns, lay, seed=rows, ready_p=0.7)


def test_mem_error():
    """An ``err`` on A's words: done MEM_ERROR (no hang); the next command,
    on the same instance, is computed right."""
    rng = np.random.default_rng(4)
    lay = Layout(rng, 1 << 14)
    bad = lay.gemm(6, 10, 7, params=True, requant=True)
    good = lay.gemm(5, 9, 6, params=True, requant=False, relu=True)
    w = (bad.a_addr + bad.a_stride) // WB      # row 1's first word
    err = range(w, w + 1)
    want, _ = golden(lay.mem, SMALL, [bad, good])
    got, dones, _ = simulate(SMALL, lay.mem, [bad, good], seed=4, err_words=err)
    assert dones[0][:2] == (ChipError.MEM_ERROR, Unit.GEMM.value)
    assert dones[1] == (ChipError.NONE, 0, 0, 0)
    c = good.c_addr, good.c_addr + good.m * good.c_stride
    assert np.array_equal(got[c[0]:c[1]], want[c[0]:c[1]])
    # nothing outside the two C regions was written
    keep = np.ones(len(got), bool)
    for g in (bad, good):
        keep[g.c_addr:g.c_addr + g.m * g.c_stride] = False
    assert np.array_equal(got[keep], lay.mem[keep])


def test_gemm_refused():
    """A shape beyond the matrix unit's buffers (a control unit with larger
    limits would pass it): done GEMM_ERROR BAD_SHAPE, its operands read and
    dropped, nothing written; the next command is computed right."""
    rng = np.random.default_rng(8)
    lay = Layout(rng, 1 << 15)
    big = lay.gemm(SMALL.max_m + 1, 5, SMALL.max_n + 3, params=True)
    good = lay.gemm(4, 6, 7, params=True, requant=True)
    want, _ = golden(lay.mem, SMALL, [good])
    got, dones, _ = simulate(SMALL, lay.mem, [big, good], seed=8)
    assert dones == [(ChipError.GEMM_ERROR, GemmError.BAD_SHAPE.value, 0, 0),
                     (ChipError.NONE, 0, 0, 0)]
    assert np.array_equal(got, want)


def test_not_gemm():
    """An opcode other than GEMM (INTERACT, not this unit's yet) is refused at
    once: ILLEGAL OPCODE, nothing read or written."""
    rng = np.random.default_rng(5)
    lay = Layout(rng, 1 << 12)
    x = isa.Interact(src=64, dst=128, batch=1, n_vec=2, dim=1, in_stride=8, vec_stride=8,
                     out_stride=8, multiplier=0, shift=0)
    got, dones, _ = simulate(SMALL, lay.mem, [x], seed=5)
    assert dones == [(ChipError.ILLEGAL, Operand.OPCODE.value, 0, 0)]
    assert np.array_equal(got, lay.mem)


# -- ACC ----------------------------------------------------------------------------

ACC_DIRECTED = [
    # (m, k, n, params, requant, relu): every flag combination, edge sizes,
    # N not a multiple of cols (4), N below cols, one element
    (1, 1, 1, False, False, False),
    (1, 1, 1, True, True, True),
    (3, 5, 2, False, False, True),
    (5, 6, 1, True, False, False),
    (9, 7, 5, True, False, True),
    (6, 8, 8, True, True, False),
    (4, 13, 11, True, True, True),
    (7, 3, 9, False, False, False),
    (32, 40, 40, True, True, False),        # the buffers' limits
]


def test_acc_directed():
    """ACC GEMMs (in place on C_in, the random image's int32s) of every flag
    combination, mixed with plain ones on the same instance."""
    rng = np.random.default_rng(11)
    lay = Layout(rng, 1 << 16)
    insns = []
    for i, (m, k, n, p, r, u) in enumerate(ACC_DIRECTED):
        insns.append(lay.gemm(m, k, n, params=p, requant=r, relu=u, acc=True, pad=i % 3))
        if i % 3 == 1:
            insns.append(lay.gemm(m, k, n, params=p, requant=r, relu=u, pad=i % 3))
    check(SMALL, insns, lay, seed=11, ready_p=0.6)


@pytest.mark.parametrize("seed", [12, 13])
def test_acc_random(seed):
    """Random ACC GEMMs, under random memory backpressure and latency; a
    chain of two ACCs onto the same C (the K-split use) among them."""
    rng = np.random.default_rng(seed)
    lay = Layout(rng, 1 << 16)
    insns = []
    for _ in range(5):
        params = bool(rng.integers(2))
        insns.append(lay.gemm(int(rng.integers(1, SMALL.max_m + 1)),
                              int(rng.integers(1, SMALL.max_k + 1)),
                              int(rng.integers(1, SMALL.max_n + 1)), params=params,
                              requant=params and bool(rng.integers(2)),
                              relu=bool(rng.integers(2)), acc=bool(rng.integers(4))))
    # K split in two: plain int32 C, then ACC with requant onto it
    first = lay.gemm(6, 9, 10, params=True, acc=False, pad=0)
    second = lay.gemm(6, 7, 10, params=True, requant=True, relu=True, acc=True, pad=0)
    insns += [first, dataclasses.replace(second, c_addr=first.c_addr,
                                         c_stride=first.c_stride)]
    check(SMALL, insns, lay, seed=seed, ready_p=float(rng.uniform(0.3, 1.0)),
          max_latency=int(rng.integers(1, 8)))


@pytest.mark.parametrize("rows, cols", [(8, 8), (2, 1), (2, 16)])
def test_acc_array_shapes(rows, cols):
    """ACC with N tiles of one channel (an odd tile's addends start in a
    word's upper half), of eight and of sixteen channels."""
    cfg = ChipConfig(rows=rows, cols=cols, max_m=16, max_k=24, max_n=24)
    rng = np.random.default_rng(rows * 100 + cols + 7)
    lay = Layout(rng, 1 << 15)
    insns = [lay.gemm(5, 17, 19, params=True, requant=True, relu=True, acc=True),
             lay.gemm(3, 24, 24, params=True, acc=True),
             lay.gemm(1, 1, 1, acc=True),
             lay.gemm(9, 16, 7, relu=True, acc=True)]
    check(cfg, insns, lay, seed=rows + cols, ready_p=0.7)


def test_acc_mem_error():
    """An ``err`` on a C_in word: done MEM_ERROR (no hang); the next ACC, on
    the same instance, is computed right."""
    rng = np.random.default_rng(14)
    lay = Layout(rng, 1 << 14)
    bad = lay.gemm(6, 10, 7, params=True, requant=True, acc=True)
    good = lay.gemm(5, 9, 6, params=True, relu=True, acc=True)
    w = (bad.c_addr + bad.c_stride) // WB
    want, _ = golden(lay.mem, SMALL, [bad, good])
    got, dones, _ = simulate(SMALL, lay.mem, [bad, good], seed=14, err_words=range(w, w + 1),
                             err_port=PORT_CIN)
    assert dones[0][:2] == (ChipError.MEM_ERROR, Unit.GEMM.value)
    assert dones[1] == (ChipError.NONE, 0, 0, 0)
    c = good.c_addr, good.c_addr + good.m * good.c_stride
    assert np.array_equal(got[c[0]:c[1]], want[c[0]:c[1]])


def test_acc_refused():
    """An ACC the matrix unit refuses: its C_in is read and dropped too, GEMM_ERROR."""
    rng = np.random.default_rng(15)
    lay = Layout(rng, 1 << 15)
    big = lay.gemm(SMALL.max_m + 1, 5, 9, params=True, acc=True)
    good = lay.gemm(4, 6, 7, params=True, requant=True, acc=True)
    want, _ = golden(lay.mem, SMALL, [good])
    got, dones, _ = simulate(SMALL, lay.mem, [big, good], seed=15)
    assert dones == [(ChipError.GEMM_ERROR, GemmError.BAD_SHAPE.value, 0, 0),
                     (ChipError.NONE, 0, 0, 0)]
    assert np.array_equal(got, want)


# -- cycles -------------------------------------------------------------------------

def test_cycles(capsys):
    """Accepted command to done with an ideal memory (ready always, latency
    1), on the default 8x8 array; printed, bound generously. (128 x 128 x
    128 int32 measured 36170 cycles of 32768 ideal, 90.6 %, and 256 x 256 x
    256 int8 273482 of 262144, 95.9 %: too slow to run here each time.)"""
    cfg = ChipConfig()
    rng = np.random.default_rng(6)
    shapes = [(64, 64, 64, True), (32, 20, 40, True), (16, 16, 16, False)]
    lay = Layout(rng, 1 << 16)
    insns = [lay.gemm(m, k, n, params=q, requant=q, pad=0) for m, k, n, q in shapes]
    # the second again with ACC: AccJoin's latency once (C_in is read ahead)
    insns.append(lay.gemm(32, 20, 40, params=True, requant=True, acc=True, pad=0))
    cycles = check(cfg, insns, lay, seed=6, ready_p=1.0, max_latency=1, max_idle=0)
    acc_cycles = cycles.pop()
    with capsys.disabled():
        print()
        for (m, k, n, q), cyc in zip(shapes, cycles):
            ideal = cfg.ideal_cycles(m, k, n)
            print(f"GemmFront {m}x{k}x{n} {'int8' if q else 'int32'}: {cyc} cycles, "
                  f"ideal {ideal}, MAC utilization {100 * ideal / cyc:.1f} %")
        print(f"GemmFront 32x20x40 int8 ACC: {acc_cycles} cycles")
    assert cycles[0] < 1.5 * cfg.ideal_cycles(64, 64, 64)
    assert acc_cycles <= cycles[1] + 25


# -- stages and arguments -----------------------------------------------------------

@pytest.mark.parametrize("cols, int8", [(4, True), (3, True), (1, False), (8, False), (5, True)])
def test_result_writer(cols, int8):
    """ResultWriter alone: elements in tile order with idle cycles, rows of
    any byte offset, two commands back to back; every other byte untouched."""
    rng = np.random.default_rng(cols * 2 + int8)
    mem_bytes = 1 << 12
    dut = ResultWriter(addr_width=addr_width(mem_bytes), cols=cols)
    image = rng.integers(0, 256, mem_bytes, dtype=np.uint8)
    data, want = image.copy(), image.copy()
    es = 1 if int8 else 4
    cmds = []
    for c_addr in (8, 1536):
        m, n = int(rng.integers(1, 7)), int(rng.integers(1, 3 * cols + 2))
        stride = isa.round_up(n * es) + 8 * int(rng.integers(0, 2))
        c = rng.integers(-(1 << 31), 1 << 31, (m, n), dtype=np.int64)
        for i in range(m):
            row = c[i].astype("<i1" if int8 else "<i4").view(np.uint8)
            want[c_addr + i * stride:c_addr + i * stride + row.size] = row
        cmds.append((c_addr, stride, m, n, tile_order(c, cols)))
    mm = MemModel(dut.mem, data, WB, rng, ready_p=0.6, max_latency=5)

    async def tb(ctx):
        for c_addr, stride, m, n, flat in cmds:
            while ctx.get(dut.busy):
                mm.step(ctx)
                await ctx.tick()
            for name, v in (("c_addr", c_addr), ("c_stride", stride), ("m", m), ("n", n),
                            ("int8", int(int8)), ("start", 1)):
                ctx.set(getattr(dut, name), v)
            mm.step(ctx)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for x in flat:
                while rng.random() < 0.3:
                    ctx.set(dut.c.valid, 0)
                    mm.step(ctx)
                    await ctx.tick()
                ctx.set(dut.c.valid, 1)
                ctx.set(dut.c.payload.data, int(x))
                while True:
                    mm.step(ctx)
                    taken = ctx.get(dut.c.ready)
                    await ctx.tick()
                    if taken:
                        break
            ctx.set(dut.c.valid, 0)
        while ctx.get(dut.busy):
            mm.step(ctx)
            await ctx.tick()
        assert mm.idle

    run_clocked(dut, tb)
    assert np.array_equal(data, want)


@pytest.mark.parametrize("cols", [1, 2, 4, 8])
def test_cin_reader(cols):
    """CinReader alone: C_in in tile order with each element's channel, two
    commands back to back (N a multiple of cols and not), random memory
    backpressure and ``parts`` backpressure."""
    rng = np.random.default_rng(40 + cols)
    mem_bytes = 1 << 13
    dut = CinReader(addr_width=addr_width(mem_bytes), cols=cols)
    image = rng.integers(0, 256, mem_bytes, dtype=np.uint8)
    cmds, want = [], []
    for c_addr, n in ((64, 2 * cols + 1), (4096, cols)):
        m = int(rng.integers(1, 6))
        stride = isa.round_up(4 * n) + 8 * int(rng.integers(0, 2))
        c = np.stack([image[c_addr + i * stride:c_addr + i * stride + 4 * n].view("<i4")
                      for i in range(m)]).astype(np.int64)
        ch = np.broadcast_to(np.arange(n), (m, n))
        want += list(zip(tile_order(c, cols).tolist(), tile_order(ch, cols).tolist()))
        cmds.append((c_addr, stride, m, n))
    mm = MemModel(dut.mem, image, WB, rng, ready_p=0.6, max_latency=5)
    got = []

    async def tb(ctx):
        for c_addr, stride, m, n in cmds:
            for name, v in (("c_addr", c_addr), ("c_stride", stride), ("m", m), ("n", n),
                            ("start", 1)):
                ctx.set(getattr(dut, name), v)
            mm.step(ctx)
            await ctx.tick()
            ctx.set(dut.start, 0)
            while ctx.get(dut.busy):
                ready = rng.random() < 0.6
                ctx.set(dut.parts.ready, ready)
                mm.step(ctx)
                if ready and ctx.get(dut.parts.valid):
                    p = dut.parts.payload
                    got.append((ctx.get(p.data), ctx.get(p.ch)))
                assert not ctx.get(dut.err)
                await ctx.tick()
        assert mm.idle

    run_clocked(dut, tb)
    assert got == want


def test_acc_join():
    """AccJoin alone: results and addends with independent random idle cycles,
    output backpressure, every post-processing mode over one command each;
    against golden.postprocess of the wrapped sums."""
    rng = np.random.default_rng(50)
    n = 7
    dut = AccJoin(max_n=16)
    cases = []
    for requant, relu in ((0, 0), (0, 1), (1, 0), (1, 1)):
        m = int(rng.integers(1, 5))
        res = rng.integers(-1 << 31, 1 << 31, (m, n))
        cin = rng.integers(-1 << 31, 1 << 31, (m, n))
        res[0, 0] = cin[0, 0] = (1 << 31) - 1                   # a sum that wraps
        mult = rng.integers(1 << 30, 1 << 31, n)
        shift = rng.integers(0, 32, n)
        x = golden_ref.wrap(res + cin)
        want = golden_ref.postprocess(x, None, mult if requant else None,
                                  shift if requant else None, relu=bool(relu))
        cases.append((requant, relu, mult, shift, tile_order(res, 4), tile_order(cin, 4),
                      tile_order(np.broadcast_to(np.arange(n), (m, n)), 4),
                      tile_order(want, 4)))
    got_all = []

    async def tb(ctx):
        for requant, relu, mult, shift, res, cin, ch, want in cases:
            ctx.set(dut.requant, requant)
            ctx.set(dut.relu, relu)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for j in range(n):
                ctx.set(dut.p_we, 1)
                ctx.set(dut.p_scale.multiplier, int(mult[j]))
                ctx.set(dut.p_scale.shift, int(shift[j]))
                await ctx.tick()
            ctx.set(dut.p_we, 0)
            ir = ic = 0
            got = []
            while len(got) < len(want):
                # offers change only after a handshake (or while idle)
                if ir < len(res):
                    ctx.set(dut.res.valid, rng.random() < 0.7 or ctx.get(dut.res.valid))
                    ctx.set(dut.res.payload.data, int(res[ir]))
                if ic < len(cin):
                    ctx.set(dut.cin.valid, rng.random() < 0.7 or ctx.get(dut.cin.valid))
                    ctx.set(dut.cin.payload.data, int(cin[ic]))
                    ctx.set(dut.cin.payload.ch, int(ch[ic]))
                ctx.set(dut.out.ready, rng.random() < 0.6)
                _, _, rv, rr, cv, cr, ov, orr, od = await ctx.tick().sample(
                    dut.res.valid, dut.res.ready, dut.cin.valid, dut.cin.ready,
                    dut.out.valid, dut.out.ready, dut.out.payload.data)
                if rv and rr:
                    ir += 1
                    ctx.set(dut.res.valid, 0)
                if cv and cr:
                    ic += 1
                    ctx.set(dut.cin.valid, 0)
                if ov and orr:
                    got.append(od)
            while ctx.get(dut.busy):
                await ctx.tick()
            got_all.append(got)

    run_clocked(dut, tb)
    for (requant, relu, *_, want), got in zip(cases, got_all):
        assert got == want.tolist(), (requant, relu)


@pytest.mark.parametrize("part_bytes", [1, 2, 4])
def test_lane_splitter(part_bytes):
    """LaneSplitter alone: rows of several lengths, random idle and backpressure."""
    rng = np.random.default_rng(part_bytes)
    dut = LaneSplitter(part_bytes=part_bytes)
    row_bytes = int(rng.integers(1, 30))
    rows = [rng.integers(0, 256, row_bytes, dtype=np.uint8) for _ in range(4)]
    beats, want = [], []
    for r in rows:
        padded = np.zeros(-(-row_bytes // 8) * 8, np.uint8)
        padded[:row_bytes] = r
        for b in range(0, len(padded), 8):
            beats.append({"data": int.from_bytes(padded[b:b + 8].tobytes(), "little"),
                          "row_last": int(b + 8 == len(padded)), "last": 0, "err": 0})
        parts = -(-row_bytes // part_bytes)
        want += [int.from_bytes(padded[p * part_bytes:(p + 1) * part_bytes].tobytes(), "little")
                 for p in range(parts)]
    got = []

    async def setup(ctx):
        ctx.set(dut.parts_m1, -(-row_bytes // part_bytes) - 1)

    run_clocked(dut, setup, stream_source(dut.beats, beats, rng, p_idle=0.3),
                stream_sink(dut.parts, got, rng, p_ready=0.6, count=len(want)))
    assert got == want


def test_arguments():
    mb = 1 << 12
    with pytest.raises(TypeError, match="config must be a ChipConfig"):
        GemmFront(config=None, addr_width=9, mem_bytes=mb)
    with pytest.raises(ValueError, match="config.in_width must be 8"):
        GemmFront(config=ChipConfig(in_width=6), addr_width=9, mem_bytes=mb)
    with pytest.raises(ValueError, match="config.rows must be a power of two, not 6"):
        GemmFront(config=ChipConfig(rows=6), addr_width=9, mem_bytes=mb)
    with pytest.raises(ValueError, match="config.cols must be a power of two, not 3"):
        GemmFront(config=ChipConfig(cols=3), addr_width=9, mem_bytes=mb)
    with pytest.raises(ValueError, match="addr_width must be in range 1..40"):
        GemmFront(config=SMALL, addr_width=0, mem_bytes=mb)
    with pytest.raises(ValueError, match="mem_bytes must be at most 2048"):
        GemmFront(config=SMALL, addr_width=8, mem_bytes=mb)
    with pytest.raises(TypeError, match="addr_width must be an integer"):
        GemmFront(config=SMALL, addr_width="9", mem_bytes=mb)
    with pytest.raises(ValueError, match="part_bytes must be a power of two, not 3"):
        LaneSplitter(part_bytes=3)
    with pytest.raises(ValueError, match="part_bytes must be in range 1..7"):
        LaneSplitter(part_bytes=8)
    with pytest.raises(ValueError, match="cols must be in range 1..64"):
        ResultWriter(addr_width=9, cols=0)
    dut = GemmFront(config=SMALL, addr_width=9, mem_bytes=mb)
    assert len(dut.mem) == N_PORTS == 5
    assert (PORT_A, PORT_B, PORT_PARAMS, PORT_C, PORT_CIN) == (0, 1, 2, 3, 4)
