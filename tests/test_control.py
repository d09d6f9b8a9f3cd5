# amaranth: UnusedElaboratable=no
"""The control unit (rtl/control.py and its parts) in the Amaranth simulator.

* InsnCheck alone against :func:`seedchip.isa.validate`: directed edge cases
  of every rule (an operand ending exactly at mem_bytes passes, 8 bytes more
  fails, ...) and seeded random mutations of valid instructions.
* ControlUnit against a dispatch reference written here from the rules of
  :mod:`seedchip.isa` (itself checked against :class:`ChipModel` on programs
  it can execute): a memory model with random latency and ``req.ready``, unit
  models with random backpressure, run times and injected errors; the
  dispatch sequence, the decoded operands, the wait rule at every dispatch,
  the final status, the registers and counters; RESET in mid-run.
"""

import collections
import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Shape

from seedchip import isa
from seedchip.emb_protocol import BoundsMode, GatherError, PoolMode
from seedchip.firmware.program import Program, Table
from seedchip.isa import ChipError, ChipState, Limits, Opcode, Operand, Unit
from seedchip.sim.memmodel import MemModel
from seedchip.link_protocol import (CTRL_RESET, CTRL_START, N_UNIT_REGS, N_UNITS, STATUS_BUSY,
                                    STATUS_DONE, UNIT_CYCLES, Reg, UnitCounter, unit_counter)
from seedchip.rtl.control import ControlUnit
from seedchip.rtl.control_check import InsnCheck
from seedchip.rtl.control_fetch import InsnFetch
from seedchip.sim.chip_golden import ChipModel
from seedchip.sim.clocked import run_clocked

LIM = Limits(max_m=32, max_k=64, max_n=48, n_tables=4, max_dim=24, max_bag=8, max_vec=16)
MEM = 1 << 14
#: operands of the random instructions lie above the programs
DATA = 0x1000


def word_of(insn) -> int:
    return int.from_bytes(isa.encode(insn), "little")


# -- instruction generators -----------------------------------------------------------

def rand_gemm(rng, mem=MEM, **kw):
    m, k, n = (int(rng.integers(1, x + 1)) for x in (LIM.max_m, LIM.max_k, LIM.max_n))
    params = bool(rng.integers(2))
    requant = params and bool(rng.integers(2))
    acc = bool(rng.integers(2))
    es = 4 if acc else isa.out_bytes(requant)
    a_s, b_s, c_s = (isa.round_up(x) + 8 * int(rng.integers(0, 3)) for x in (k, n, n * es))
    span = max(m * a_s, k * b_s, m * c_s, n * 16)
    addr = lambda: DATA + 8 * int(rng.integers(0, (mem - DATA - span) // 8))   # noqa: E731
    return isa.Gemm(a_addr=addr(), b_addr=addr(), c_addr=addr(), p_addr=addr() if params else
                    8 * int(rng.integers(0, 1 << 29)), m=m, k=k, n=n, a_stride=a_s, b_stride=b_s,
                    c_stride=c_s, params=params, requant=requant, relu=bool(rng.integers(2)),
                    acc=acc, **kw)


def rand_gather(rng, mem=MEM, **kw):
    t = int(rng.integers(1, LIM.n_tables + 1))
    b = int(rng.integers(1, 20))
    weighted = bool(rng.integers(2))
    mode = PoolMode.SUM if weighted else PoolMode(int(rng.integers(0, 3)))
    room = mem - DATA - 4 * (t * b + 1) - 64
    addr = lambda: DATA + 8 * int(rng.integers(0, room // 8))       # noqa: E731
    return isa.Gather(desc_addr=addr(), idx_addr=addr(), off_addr=addr(),
                      w_addr=addr() if weighted else int(rng.integers(0, 1 << 32)),
                      out_addr=addr(), batch=b, n_tables=t, out_stride=8 * int(rng.integers(0, 9)),
                      out_tstride=8 * int(rng.integers(0, 9)), mode=mode,
                      bounds=BoundsMode(int(rng.integers(0, 3))), weighted=weighted,
                      requant=bool(rng.integers(2)), **kw)


def rand_copy(rng, mem=MEM, **kw):
    rows, rb = int(rng.integers(1, 9)), int(rng.integers(1, 100))
    ss, ds = 8 * int(rng.integers(0, 20)), isa.round_up(rb) + 8 * int(rng.integers(0, 3))
    span = rows * max(ss, ds) + rb
    addr = lambda: DATA + 8 * int(rng.integers(0, (mem - DATA - span) // 8))   # noqa: E731
    return isa.Copy(src=addr(), dst=addr(), src_stride=ss, dst_stride=ds, rows=rows,
                    row_bytes=rb, **kw)


def rand_interact(rng, mem=MEM, **kw):
    b, nv = int(rng.integers(1, 6)), int(rng.integers(2, LIM.max_vec + 1))
    # up to the gather engine's max_dim (not max_k); mutate() tries the dims past it
    dim = LIM.max_dim if rng.random() < 0.2 else int(rng.integers(1, LIM.max_dim + 1))
    vs = isa.round_up(dim) + 8 * int(rng.integers(0, 2))
    ins = 8 * int(rng.integers(0, 2 * nv * vs // 8 + 1))
    os_ = isa.round_up(isa.pairs(nv)) + 8 * int(rng.integers(0, 2))
    span = b * max(ins, 1) + nv * vs + b * os_
    addr = lambda: DATA + 8 * int(rng.integers(0, max(1, (mem - DATA - span) // 8)))  # noqa
    if rng.random() < 0.5 and "params" not in kw:   # PARAMS: records per pair
        kw.update(params=True, p_addr=DATA + 8 * int(rng.integers(
            0, max(1, (mem - DATA - isa.pairs(nv) * isa.PARAM_BYTES) // 8))))
    return isa.Interact(src=addr(), dst=addr(), multiplier=int(rng.integers(-(1 << 31), 1 << 31)),
                        shift=int(rng.integers(0, 32)), batch=b, dim=dim, n_vec=nv,
                        in_stride=ins, vec_stride=vs, out_stride=os_, **kw)


RAND = {Opcode.GEMM: rand_gemm, Opcode.GATHER: rand_gather, Opcode.COPY: rand_copy,
        Opcode.INTERACT: rand_interact}

# numeric fields a mutation may set to an edge value
_NUMERIC = {"a_addr", "b_addr", "c_addr", "p_addr", "m", "k", "n", "a_stride", "b_stride",
            "c_stride", "desc_addr", "idx_addr", "off_addr", "w_addr", "out_addr", "batch",
            "n_tables", "out_stride", "out_tstride", "src", "dst", "src_stride", "dst_stride",
            "rows", "row_bytes", "dim", "in_stride", "vec_stride", "n_vec"}


def mutate(rng, insn, mem=MEM):
    """``insn`` with one to three fields pushed to an edge (alignment, limit,
    extent at the end of memory) or a reserved bit / flag combination set."""
    kind = rng.integers(6)
    if kind == 0:                                         # a reserved bit
        mask = isa.RESERVED_MASK[insn.opcode]
        bits = [b for b in range(256) if mask >> b & 1]
        return isa.decode(word_of(insn) | 1 << int(rng.choice(bits)))
    if kind == 1:                                         # an opcode that does not exist
        return isa.decode((word_of(insn) & ~0xFF) | int(rng.choice([5, 6, 14, 16, 0xFF])))
    if kind == 2 and insn.opcode in (Opcode.GEMM, Opcode.GATHER):   # flag combinations
        w = word_of(insn) & ~(0xFF << 8)
        return isa.decode(w | int(rng.integers(0, 64)) << 8)
    if kind == 2 and insn.opcode == Opcode.INTERACT:      # a dim K may have, INTERACT not
        return dataclasses.replace(insn, dim=int(rng.integers(LIM.max_dim + 1, LIM.max_k + 1)))
    fields = [f.name for f in dataclasses.fields(insn) if f.name in _NUMERIC]
    kw = {}
    for name in rng.choice(fields, size=int(rng.integers(1, 4))):
        wide = name.endswith("addr") or name in ("src", "dst", "src_stride", "dst_stride")
        width = 8 if name in ("n_tables", "n_vec") else 32 if wide else 16
        v = getattr(insn, name)
        cands = [0, 1, v + 1, v + 4, v - 8, v + 8, mem - 8 * int(rng.integers(0, 64)),
                 mem, (1 << width) - 1, (1 << width) - 8, 2, LIM.max_m, LIM.max_m + 1,
                 LIM.max_vec + 1, LIM.max_k, LIM.max_k + 1, LIM.max_dim, LIM.max_dim + 1,
                 LIM.n_tables + 1, v // 2]
        kw[name] = min(max(int(rng.choice(cands)), 0), (1 << width) - 1)
    return dataclasses.replace(insn, **kw)


# -- InsnCheck against isa.validate -------------------------------------------------------

def run_checker(words, limits=LIM, mem=MEM):
    """The checker's (error, detail) of each 256-bit word."""
    dut = InsnCheck(limits=limits, mem_bytes=mem)
    got = []

    async def tb(ctx):
        for w in words:
            ctx.set(dut.inp.payload.insn.as_value(), w)
            ctx.set(dut.inp.payload.pc, 0x40)
            ctx.set(dut.inp.valid, 1)
            await ctx.tick().until(dut.inp.ready)
            ctx.set(dut.inp.valid, 0)
            ctx.set(dut.out.ready, 1)
            o = dut.out.payload
            *_, err, det, pc, word = await ctx.tick().sample(
                o.error.as_value(), o.detail, o.pc, o.insn.as_value()).until(dut.out.valid)
            got.append((ChipError(err), det, pc, word))
            ctx.set(dut.out.ready, 0)
    run_clocked(dut, tb)
    for w, (err, det, pc, word) in zip(words, got):
        assert pc == 0x40 and word == w
    return [(e, d) for e, d, _, _ in got]


def want(word, limits=LIM, mem=MEM):
    v = isa.validate(isa.decode(word), limits, mem)
    return (v.error, 0 if v.ok else v.detail.value)


def gemm(**kw):
    base = dict(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, p_addr=0x3800, m=4, k=16, n=8,
                a_stride=16, b_stride=8, c_stride=8, params=True, requant=True)
    return isa.Gemm(**{**base, **kw})


def directed_insns():
    """The edge cases of tests/test_isa.py's validation tests, at mem_bytes MEM."""
    g = dict(desc_addr=0x100, idx_addr=0x200, off_addr=0x300, w_addr=0x400, out_addr=0x500,
             batch=4, n_tables=4, out_stride=64, out_tstride=16)
    c = dict(src=0x100, dst=0x200, src_stride=16, dst_stride=16, rows=3, row_bytes=13)
    x = dict(src=0x100, dst=0x1000, multiplier=1 << 30, shift=0, batch=2, dim=16, n_vec=4,
             in_stride=64, vec_stride=16, out_stride=8)
    out = [isa.Nop(), isa.Nop(wait=isa.WAIT_ALL), isa.Finish(wait=3), isa.Nop(wait=8), gemm(),
           gemm(params=False, requant=True), gemm(params=False, requant=False, p_addr=3,
                                                 c_stride=32)]
    big = dict(a_stride=512, b_stride=512, c_stride=512, a_addr=0, b_addr=0x100, c_addr=0x200)
    for f, hi in (("m", LIM.max_m), ("k", LIM.max_k), ("n", LIM.max_n)):
        out += [gemm(**big, **{f: v}) for v in (0, 1, hi, hi + 1)]
    out += [gemm(k=17, a_stride=16), gemm(n=9, b_stride=8, c_stride=16),
            gemm(requant=False, c_stride=8), gemm(requant=False, c_stride=32)]
    for f in ("a_addr", "b_addr", "c_addr", "p_addr", "a_stride", "b_stride", "c_stride"):
        out.append(gemm(**{f: getattr(gemm(), f) + 4}))
    out += [gemm(m=0, a_addr=4, c_addr=MEM), gemm(a_addr=MEM, c_addr=4), gemm(b_addr=4, a_addr=12),
            gemm(c_addr=MEM, b_addr=MEM), gemm(a_addr=MEM - 64), gemm(a_addr=MEM - 56),
            gemm(a_addr=MEM - 72, k=17, a_stride=24, m=3),
            gemm(requant=False, c_stride=32, c_addr=MEM - 128),
            gemm(requant=False, c_stride=32, c_addr=MEM - 120),
            gemm(p_addr=MEM - 128), gemm(p_addr=MEM - 120),
            # ACC: C's rows are 4 * n bytes (C_in is int32) with or without REQUANT
            gemm(acc=True), gemm(acc=True, c_stride=24), gemm(acc=True, c_stride=32),
            gemm(acc=True, requant=False, c_stride=24), gemm(acc=True, params=False,
                                                              requant=False, c_stride=32),
            gemm(acc=True, params=False, requant=True, c_stride=32),
            gemm(acc=True, c_stride=32, c_addr=MEM - 128),
            gemm(acc=True, c_stride=32, c_addr=MEM - 120),
            gemm(acc=True, c_stride=40, c_addr=MEM - 136),
            gemm(acc=True, c_stride=40, c_addr=MEM - 128),
            gemm(m=32, a_stride=0xFFF8, a_addr=0xFFFFFFF8)]                 # 50-bit extent
    out += [isa.Gather(**g), isa.Gather(**{**g, "batch": 0}), isa.Gather(**{**g, "n_tables": 0}),
            isa.Gather(**{**g, "n_tables": LIM.n_tables + 1}), isa.Gather(**{**g, "w_addr": 3}),
            isa.Gather(**{**g, "w_addr": 3}, weighted=True),
            isa.Gather(**g, mode=3), isa.Gather(**g, bounds=3),
            isa.Gather(**g, mode=PoolMode.MEAN, weighted=True),
            isa.Gather(**g, mode=PoolMode.SUM, weighted=True),
            isa.Gather(**{**g, "desc_addr": MEM - 64}), isa.Gather(**{**g, "desc_addr": MEM - 56}),
            isa.Gather(**{**g, "off_addr": MEM - 72}), isa.Gather(**{**g, "off_addr": MEM - 64}),
            isa.Gather(**{**g, "batch": 0xFFFF, "off_addr": 0})]
    for f in ("desc_addr", "idx_addr", "off_addr", "out_addr", "out_stride", "out_tstride"):
        out.append(isa.Gather(**{**g, f: g[f] + 1}))
    out += [isa.Copy(**c), isa.Copy(**{**c, "src_stride": 0}), isa.Copy(**{**c, "rows": 0}),
            isa.Copy(**{**c, "row_bytes": 0}), isa.Copy(**{**c, "row_bytes": 17}),
            isa.Copy(**{**c, "src_stride": 12}), isa.Copy(**{**c, "dst": MEM - 45}),
            isa.Copy(**{**c, "dst": MEM - 48}), isa.Copy(**{**c, "dst": MEM - 40}),
            isa.Copy(**{**c, "src": MEM - 40}),
            isa.Copy(**{**c, "dst_stride": (1 << 32) - 8, "rows": 0xFFFF})]
    out += [isa.Interact(**x), isa.Interact(**{**x, "n_vec": 5}), isa.Interact(**{**x, "dim": 0}),
            isa.Interact(**{**x, "dim": LIM.max_dim, "vec_stride": 512}),
            isa.Interact(**{**x, "dim": LIM.max_dim + 1, "vec_stride": 512}),
            isa.Interact(**{**x, "dim": LIM.max_k, "vec_stride": 512}),
            isa.Interact(**{**x, "dim": LIM.max_k + 1, "vec_stride": 512}),
            isa.Interact(**{**x, "dim": 17}), isa.Interact(**{**x, "in_stride": 0}),
            isa.Interact(**{**x, "in_stride": 4}), isa.Interact(**{**x, "src": MEM - 128}),
            isa.Interact(**{**x, "src": MEM - 120}), isa.Interact(**{**x, "dst": MEM - 16}),
            isa.Interact(**{**x, "dst": MEM - 8}), isa.Interact(**{**x, "shift": 31}),
            isa.Interact(**{**x, "batch": 0xFFFF, "in_stride": 0xFFF8, "n_vec": 16,
                            "vec_stride": 0xFFF8, "out_stride": 128})]
    # PARAMS: p_addr aligned and its pairs(n_vec) records inside memory
    end = MEM - isa.pairs(x["n_vec"]) * isa.PARAM_BYTES
    out += [isa.Interact(**{**x, "params": True, "p_addr": a})
            for a in (end, end + 8, end - 4, 0xFFFFFFF8, 4)]
    out += [isa.Interact(**{**x, "params": True, "p_addr": 12, "dst": 4})]   # DST aligns first
    for n_vec in (1, 2, LIM.max_vec, LIM.max_vec + 1, 255):
        out.append(isa.Interact(**{**x, "n_vec": n_vec, "out_stride": 0x7FF8}))
    return out


def test_check_directed():
    words = [word_of(i) for i in directed_insns()]
    # every reserved bit of every opcode, and wait bit 3
    for op, insn in ((Opcode.NOP, isa.Nop()), (Opcode.FINISH, isa.Finish()),
                     (Opcode.GEMM, gemm()), (Opcode.COPY, isa.Copy(src=0, dst=8, src_stride=8,
                                                                   dst_stride=8, rows=1,
                                                                   row_bytes=8))):
        mask = isa.RESERVED_MASK[op]
        words += [word_of(insn) | 1 << b for b in range(256) if mask >> b & 1][::3]
        words.append(word_of(insn) | 1 << 19)
    words += [w | (c & 0xFF) for w in words[:2] for c in (5, 14, 0xFF)]
    got = run_checker(words)
    for w, g in zip(words, got):
        assert g == want(w), isa.format_insn(isa.decode(w))
    # the directed cases cover every class
    assert {e for e, _ in got} == {ChipError.NONE, ChipError.ILLEGAL, ChipError.BAD_SHAPE,
                                   ChipError.BAD_ALIGN, ChipError.ADDR_RANGE}


@pytest.mark.parametrize("seed", [1, 2])
def test_check_random(seed):
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(150):
        op = Opcode(int(rng.choice([1, 2, 3, 4])))
        insn = RAND[op](rng)
        assert isa.validate(insn, LIM, MEM).ok, insn
        words.append(word_of(insn if rng.random() < 0.2 else mutate(rng, insn)))
    got = run_checker(words)
    for w, g in zip(words, got):
        assert g == want(w), f"seed {seed}: {isa.format_insn(isa.decode(w))}"


def test_check_other_limits():
    """The limits and mem_bytes are parameters: a small memory of 4 KiB and
    the small preset's limits."""
    lim = Limits(max_m=8, max_k=8, max_n=8, n_tables=2, max_dim=8, max_bag=4, max_vec=3)
    insns = [gemm(m=8, k=8, n=8, a_addr=0, b_addr=0x100, c_addr=0x200, p_addr=0x300,
                  a_stride=8, b_stride=8, c_stride=8), gemm(m=9), gemm(a_addr=4096 - 64),
             isa.Copy(src=4096 - 16, dst=0, src_stride=8, dst_stride=8, rows=2, row_bytes=8),
             isa.Copy(src=4096 - 8, dst=0, src_stride=8, dst_stride=8, rows=2, row_bytes=8),
             isa.Interact(src=0, dst=64, multiplier=0, shift=0, batch=1, dim=8, n_vec=4,
                          in_stride=0, vec_stride=8, out_stride=8)]
    words = [word_of(i) for i in insns]
    assert run_checker(words, lim, 4096) == [want(w, lim, 4096) for w in words]


# -- InsnFetch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data_width,seed", [(16, 1), (32, 2), (64, 3)])
def test_fetch_abort_and_restart(data_width, seed):
    """InsnFetch under random aborts and restarts with requests in flight:
    every instruction it hands on is the memory's at its pc, the pcs follow
    each other from the last start; a bad pc or an ``err`` word stops it."""
    rng = np.random.default_rng(seed)
    mem_bytes = 2048
    mem = rng.integers(0, 256, mem_bytes, dtype=np.uint8)
    wb = data_width // 8
    dut = InsnFetch(addr_width=(mem_bytes // wb).bit_length() + 1, data_width=data_width,
                    mem_bytes=mem_bytes)
    seen = collections.Counter()

    async def tb(ctx):
        model = MemModel(dut.mem, mem, wb, rng, ready_p=0.7, max_latency=8,
                         err_words=range(1024 // wb, 1280 // wb))
        expect = None                  # next pc, or None: nothing may come
        for cycle in range(6000):
            model.step(ctx)
            ctx.set(dut.abort, 0)
            ctx.set(dut.start, 0)
            ctx.set(dut.out.ready, int(rng.random() < 0.4))
            r = rng.random()
            if r < 0.01:
                ctx.set(dut.abort, 1)
            elif r < 0.03 and not ctx.get(dut.busy):
                pc = int(rng.choice([32 * int(rng.integers(0, mem_bytes // 32)),
                                     mem_bytes - 64, 1024 - 64, 8 * int(rng.integers(0, 256))]))
                ctx.set(dut.start, 1)
                ctx.set(dut.start_pc, pc)
            o = dut.out
            if ctx.get(o.valid) and ctx.get(o.ready) and not ctx.get(dut.abort):
                pc, err = ctx.get(o.payload.pc), ChipError(ctx.get(o.payload.error.as_value()))
                assert pc == expect, (cycle, pc, expect)
                if pc % 32:
                    assert err == ChipError.BAD_ALIGN
                elif pc + 32 > mem_bytes:
                    assert err == ChipError.ADDR_RANGE
                elif pc + 32 > 1024 and pc < 1280:
                    assert err == ChipError.MEM_ERROR
                else:
                    assert err == ChipError.NONE
                    assert ctx.get(o.payload.insn.as_value()) == \
                        int.from_bytes(mem[pc:pc + 32].tobytes(), "little")
                seen[err] += 1
                expect = pc + 32 if err == ChipError.NONE else None
            if ctx.get(dut.abort):
                expect = None
            if ctx.get(dut.start) and not ctx.get(dut.abort):
                expect = ctx.get(dut.start_pc)
            await ctx.tick()
    run_clocked(dut, tb)
    assert seen[ChipError.NONE] > 50 and len(seen) == 4, seen


# -- the dispatch reference -----------------------------------------------------------------

@dataclasses.dataclass
class Ref:
    """What the control unit must do with a memory image: the unit
    instructions it dispatches ``(seq, pc, insn)`` in order, and the status."""
    dispatched: list
    status: isa.Status


def reference(mem, pc, limits, unit_errors, *, max_insns=10000):
    """Walk the program in order (isa's rules); ``unit_errors``: ``{pc:
    (error, detail, bag, index)}`` of unit instructions whose unit reports an
    error. The first failing instruction in program order stops it."""
    mem_bytes, seq, out = len(mem), 0, []
    for _ in range(max_insns):
        if pc % isa.PC_ALIGN:
            return Ref(out, isa.Status(ChipState.ERROR, ChipError.BAD_ALIGN, Operand.PC.value,
                                       pc=pc, retired=seq))
        if pc + isa.INSN_BYTES > mem_bytes:
            return Ref(out, isa.Status(ChipState.ERROR, ChipError.ADDR_RANGE, Operand.PC.value,
                                       pc=pc, retired=seq))
        insn = isa.decode(bytes(mem[pc:pc + isa.INSN_BYTES]))
        v = isa.validate(insn, limits, mem_bytes)
        if not v.ok:
            return Ref(out, isa.Status(ChipState.ERROR, v.error, v.detail.value, pc=pc,
                                       retired=seq))
        if isinstance(insn, isa.Finish):
            return Ref(out, isa.Status(ChipState.DONE, pc=pc, retired=seq + 1))
        if isa.unit_of(insn) is not None:
            out.append((seq, pc, insn))
            if pc in unit_errors:
                e, d, b, i = unit_errors[pc]
                return Ref(out, isa.Status(ChipState.ERROR, e, d, b, i, pc=pc, retired=seq))
        seq += 1
        pc += isa.INSN_BYTES
    raise AssertionError("program too long")


def cmd_bits(insn) -> int:
    """The unit command the instruction becomes (rtl/control.py's layouts,
    stated here from the instruction word: opcode and flags, then operands)."""
    w = word_of(insn)
    u = isa.unit_of(insn)
    if u == Unit.GEMM:
        return (w & 0xFFFF) | (w >> 32) << 16
    if u == Unit.GATHER:
        return (w >> 8 & 0xFF) | (w >> 32) << 8
    return w >> 32


# -- models ------------------------------------------------------------------------------------

class UnitModel:
    """One unit: takes commands with random backpressure, runs a random
    number of cycles (``mem_stall`` at random), reports done with the error
    planned for its k-th command. Records (offered cycle, accepted cycle,
    done cycle, bits) per command."""

    def __init__(self, unit, port, rng, plan, *, ready_p=0.5, min_run=1, max_run=30):
        self.unit, self.port, self.rng, self.plan = unit, port, rng, plan
        self.ready_p, self.min_run, self.max_run = ready_p, min_run, max_run
        self.log = []             # [offered, accepted, done, bits]
        self.left = None          # cycles until done, None: idle
        self.offered = None
        self.aborts = []          # cycles left of the command at each ``abort``

    def step(self, ctx, cycle):
        cmd, done = self.port.cmd, self.port.done
        ctx.set(done.valid, 0)
        busy = self.left is not None
        ctx.set(self.port.mem_stall, int(busy and self.rng.random() < 0.3))
        if busy:
            self.left -= 1
            if self.left == 0:
                e, d, b, i = self.plan.get(len(self.log) - 1, (ChipError.NONE, 0, 0, 0))
                ctx.set(done.valid, 1)
                ctx.set(done.payload.error, e)
                ctx.set(done.payload.detail, d)
                ctx.set(done.payload.bag, b)
                ctx.set(done.payload.index, i)
                self.log[-1][2] = cycle
                self.left = None
        ctx.set(cmd.ready, int(self.rng.random() < self.ready_p))
        if ctx.get(cmd.valid):
            if self.offered is None:
                self.offered = cycle
            if ctx.get(cmd.ready):
                assert self.left is None, f"{self.unit.name}: a command while busy"
                self.log.append([self.offered, cycle, None, ctx.get(cmd.payload.as_value())])
                self.left = int(self.rng.integers(self.min_run, self.max_run + 1))
                self.offered = None

    def abort(self):
        self.aborts.append(self.left)
        self.left = None
        self.offered = None


class RegPort:
    """The host's side of the register port: a queue of (index, write value
    or None, callback(rdata, err))."""

    def __init__(self, port, rng):
        self.port, self.rng = port, rng
        self.queue, self.inflight = [], []

    def read(self, index, cb):
        self.queue.append((index, None, cb))

    def write(self, index, value, cb=None):
        self.queue.append((index, value, cb))

    def step(self, ctx):
        req, resp = self.port.req, self.port.resp
        ctx.set(resp.ready, 1)
        if ctx.get(resp.valid):
            cb = self.inflight.pop(0)
            if cb is not None:
                cb(ctx.get(resp.payload.rdata), ctx.get(resp.payload.err))
        if self.queue:
            index, value, cb = self.queue[0]
            ctx.set(req.valid, 1)
            ctx.set(req.payload.addr, index)
            ctx.set(req.payload.we, int(value is not None))
            ctx.set(req.payload.wdata, value or 0)
            ctx.set(req.payload.mask, 0xF)
            if ctx.get(req.ready):
                self.queue.pop(0)
                self.inflight.append(cb)
        else:
            ctx.set(req.valid, 0)

    @property
    def idle(self):
        return not self.queue and not self.inflight


# -- the bench ---------------------------------------------------------------------------------

class Bench:
    """A ControlUnit with its memory, unit models and register port. ``run``
    takes phases: ``(pc, reset_at)`` runs the program at ``pc`` (RESET
    ``reset_at`` cycles after the start, if not None) and reads every status
    register and counter afterwards into ``self.finals``."""

    def __init__(self, mem, rng, *, data_width=32, limits=LIM, plans=None, mem_kw=None,
                 unit_kw=None):
        self.mem, self.rng, self.limits = mem, rng, limits
        wb = data_width // 8
        self.dut = ControlUnit(addr_width=max(1, (len(mem) // wb - 1).bit_length()) + 1,
                               data_width=data_width, mem_bytes=len(mem), limits=limits)
        self.wb = wb
        self.plans = plans or {u: {} for u in Unit}
        self.units = {u: UnitModel(u, getattr(self.dut, u.name.lower()), rng, self.plans[u],
                                   **(unit_kw or {})) for u in Unit}
        self.mem_model = MemModel(self.dut.mem, mem, wb, rng,
                                  **{"ready_p": 0.6, "max_latency": 5, **(mem_kw or {})})
        self.regs = RegPort(self.dut.regs, rng)
        self.reg_log = []          # (tag, rdata, err) of register responses during runs
        self.finals = []
        self.starts = []           # cycle of each phase's start
        self.cycle = 0

    def note(self, tag):
        return lambda rdata, err: self.reg_log.append((tag, rdata, err))

    async def step(self, ctx):
        self.mem_model.step(ctx)
        for u in self.units.values():
            if ctx.get(u.port.abort):
                u.abort()
            u.step(ctx, self.cycle)
        self.regs.step(ctx)
        await ctx.tick()
        self.cycle += 1

    async def program(self, ctx, pc, reset_at=None, max_cycles=80000, reads=True):
        regs, rng = self.regs, self.rng
        self.starts.append(self.cycle)
        regs.write(Reg.PROG_ADDR, pc)
        regs.write(Reg.CTRL, CTRL_START, self.note("start"))
        st = self.dut.dispatch.status
        started = None
        for _ in range(max_cycles):
            state = ChipState(ctx.get(st.state.as_value()))
            if state == ChipState.RUNNING:
                started = self.cycle if started is None else started
                if reads and regs.idle and rng.random() < 0.05:
                    index = int(rng.choice([Reg.STATUS, Reg.PC, Reg.RETIRED, UNIT_CYCLES,
                                            Reg.CTRL, 0x99, Reg.SCRATCH]))
                    regs.read(index, self.note(index))
                if reset_at is not None and self.cycle == started + reset_at:
                    regs.write(Reg.CTRL, CTRL_RESET, self.note("reset"))
            elif started is not None and (state != ChipState.IDLE or reset_at is not None):
                break
            await self.step(ctx)
        else:
            raise AssertionError("the program did not stop")
        while not regs.idle:
            await self.step(ctx)
        final = {}
        for index in (Reg.STATUS, Reg.PC, Reg.RETIRED, Reg.ERR_BAG, Reg.ERR_INDEX,
                      *range(UNIT_CYCLES, UNIT_CYCLES + N_UNIT_REGS)):
            regs.read(index, lambda rd, err, i=index: final.__setitem__(i, (rd, err)))
        while not regs.idle:
            await self.step(ctx)
        self.finals.append(final)

    def run(self, *phases):
        async def tb(ctx):
            for pc, reset_at in phases:
                await self.program(ctx, pc, reset_at)
        run_clocked(self.dut, tb)
        return self

    def status(self, final=None) -> isa.Status:
        final = self.finals[-1] if final is None else final
        word = final[Reg.STATUS][0]
        get = lambda n: word >> isa.StatusLayout[n].offset & \
            ((1 << Shape.cast(isa.StatusLayout[n].shape).width) - 1)     # noqa: E731
        return isa.Status(ChipState(get("state")), ChipError(get("error")), get("detail"),
                          bag=final[Reg.ERR_BAG][0], index=final[Reg.ERR_INDEX][0],
                          pc=final[Reg.PC][0], retired=final[Reg.RETIRED][0])

    def check_against(self, ref: Ref, full: Ref | None = None):
        """Dispatches, operands, the wait rule, the status, the registers.
        ``full``: the reference without the unit errors (instructions after
        a failing one may be dispatched before its error comes back)."""
        full = ref if full is None else full
        for u in Unit:
            got = self.units[u].log
            least = [x for x in ref.dispatched if isa.unit_of(x[2]) == u]
            most = [x for x in full.dispatched if isa.unit_of(x[2]) == u]
            # at least up to the failing one, in order, and no more than the
            # program without errors dispatches
            assert len(least) <= len(got) <= len(most), (u, len(got), len(least), len(most))
            if ref.status.state == ChipState.DONE:
                assert len(got) == len(least)
            for (seq, pc, insn), rec in zip(most, got):
                assert rec[3] == cmd_bits(insn), f"{u.name} command of 0x{pc:x}"
                assert rec[2] is not None, f"{u.name} at 0x{pc:x} never finished"
        self.check_waits(full)
        assert self.status() == ref.status, f"{self.status()} != {ref.status}"
        final = self.finals[-1]
        st = final[Reg.STATUS][0]
        assert not st & STATUS_BUSY and st & STATUS_DONE
        assert not any(err for rd, err in final.values())
        self.check_counters(final)
        self.check_reg_log()

    def check_reg_log(self):
        for tag, rdata, err in self.reg_log:
            assert err == (tag in (Reg.CTRL, 0x99, "start_busy")), (tag, err)
            if tag == Reg.STATUS:       # running, or just stopped
                assert bool(rdata & STATUS_BUSY) != bool(rdata & STATUS_DONE), hex(rdata)

    def check_waits(self, ref: Ref):
        """Each dispatched instruction was offered after every earlier one it
        must wait for had finished: those of its own unit, of its wait units,
        and of the units a NOP or FINISH between them names."""
        idx = {u: 0 for u in Unit}
        events = []                  # (seq, pc, insn, offered, done)
        for seq, pc, insn in ref.dispatched:
            u = isa.unit_of(insn)
            if idx[u] < len(self.units[u].log):
                rec = self.units[u].log[idx[u]]
                events.append((seq, pc, insn, rec[0], rec[2]))
                idx[u] += 1
        barriers = self.barriers(ref)
        for k, (seq, pc, insn, offered, _) in enumerate(events):
            u = isa.unit_of(insn)
            for seq2, pc2, insn2, _, done2 in events[:k]:
                u2 = isa.unit_of(insn2)
                if u2 == u or insn.wait >> u2.value & 1 or any(
                        seq2 < bs < seq and bw >> u2.value & 1 for bs, bw in barriers):
                    assert done2 is not None and done2 < offered, \
                        f"0x{pc:x} offered at {offered} before 0x{pc2:x} finished ({done2})"

    def barriers(self, ref):
        """(seq, wait) of the NOPs the program passed."""
        out = []
        if ref.dispatched:
            base = ref.dispatched[0][1] - isa.INSN_BYTES * ref.dispatched[0][0]
            for s in range(ref.status.retired + 1):
                a = base + s * isa.INSN_BYTES
                if a + isa.INSN_BYTES <= len(self.mem):
                    insn = isa.decode(bytes(self.mem[a:a + isa.INSN_BYTES]))
                    if isinstance(insn, isa.Nop):
                        out.append((s, insn.wait))
        return out

    def check_counters(self, final):
        cyc = final[UNIT_CYCLES][0]
        assert cyc > 0
        for u in Unit:
            busy, stall, idle = (final[unit_counter(u.value, c)][0] for c in UnitCounter)
            assert busy + idle == cyc and stall <= busy, (u, busy, stall, idle, cyc)
            assert (busy > 0) == bool(self.units[u].log)


# -- programs -----------------------------------------------------------------------------------

def add_random(p, rng, insn, wait):
    """Add ``insn`` (a valid instruction object) through the Program builder."""
    if isinstance(insn, isa.Gemm):
        return p.gemm(a_addr=insn.a_addr, b_addr=insn.b_addr, c_addr=insn.c_addr, m=insn.m,
                      k=insn.k, n=insn.n, a_stride=insn.a_stride, b_stride=insn.b_stride,
                      c_stride=insn.c_stride, p_addr=insn.p_addr if insn.params else None,
                      requant=insn.requant, relu=insn.relu, acc=insn.acc, wait=wait)
    if isinstance(insn, isa.Copy):
        return p.copy(src=insn.src, dst=insn.dst, rows=insn.rows, row_bytes=insn.row_bytes,
                      src_stride=insn.src_stride, dst_stride=insn.dst_stride, wait=wait)
    if isinstance(insn, isa.Interact):
        return p.interact(src=insn.src, dst=insn.dst, batch=insn.batch, n_vec=insn.n_vec,
                          dim=insn.dim, multiplier=1 << 30, shift=insn.shift,
                          p_addr=insn.p_addr if insn.params else None,
                          vec_stride=insn.vec_stride, in_stride=insn.in_stride,
                          out_stride=insn.out_stride, wait=wait)
    tables = [Table(base=8 * int(rng.integers(0, 64)), rows=int(rng.integers(1, 9)),
                    dim=int(rng.integers(1, LIM.max_dim + 1))) for _ in range(insn.n_tables)]
    return p.gather(desc_addr=insn.desc_addr, idx_addr=insn.idx_addr, off_addr=insn.off_addr,
                    out_addr=insn.out_addr, batch=insn.batch, tables=tables, n_indices=4,
                    out_stride=insn.out_stride, out_tstride=insn.out_tstride,
                    w_addr=insn.w_addr if insn.weighted else None, mode=insn.mode,
                    bounds=insn.bounds, requant=insn.requant, wait=wait)


def random_program(rng, *, base, n, mem=MEM, kinds=(1, 2, 3, 4), finish=True):
    p = Program(base=base, limits=LIM, mem_bytes=mem)
    for _ in range(n):
        if rng.random() < 0.12:
            p.nop(wait=int(rng.integers(0, 8)))
            continue
        insn = RAND[Opcode(int(rng.choice(kinds)))](rng, mem)
        add_random(p, rng, insn, None if rng.random() < 0.5 else int(rng.integers(0, 8)))
    if finish:
        p.finish()
    return p


def plant(rng, raw, count):
    """``count`` instruction words of the program replaced by mutated ones."""
    raw = bytearray(raw)
    n = len(raw) // 32
    for _ in range(count):
        k = int(rng.integers(0, n))
        insn = isa.decode(bytes(raw[32 * k:32 * k + 32]))
        if isinstance(insn, (isa.Nop, isa.Finish, isa.Illegal)):
            continue
        raw[32 * k:32 * k + 32] = isa.encode(mutate(rng, insn))
    return bytes(raw)


UNIT_ERRORS = {Unit.GEMM: lambda rng: (ChipError.GEMM_ERROR, 1, 0, 0),
               Unit.GATHER: lambda rng: (ChipError.GATHER_ERROR, GatherError.OUT_OF_RANGE.value,
                                         int(rng.integers(0, 1 << 32)),
                                         int(rng.integers(0, 1 << 32))),
               Unit.COPY: lambda rng: (ChipError.MEM_ERROR, Unit.COPY.value, 0,
                                       int(rng.integers(0, MEM)))}


def plan_unit_errors(rng, mem, pc, count):
    """Unit errors for ``count`` random unit instructions the program reaches:
    the unit models' plans and the reference's ``{pc: error}``."""
    ref = reference(mem, pc, LIM, {})
    plans, by_pc = {u: {} for u in Unit}, {}
    order = {u: [p for _, p, i in ref.dispatched if isa.unit_of(i) == u] for u in Unit}
    picks = [(s, p, i) for s, p, i in ref.dispatched]
    for _ in range(count if picks else 0):
        s, p, i = picks[int(rng.integers(0, len(picks)))]
        u = isa.unit_of(i)
        e = UNIT_ERRORS[u](rng)
        plans[u][order[u].index(p)] = e
        by_pc[p] = e
    return plans, by_pc





def test_reference_agrees_with_chip_golden():
    """The test's dispatch reference gives ChipModel's status on programs the
    golden model can execute (no GATHER: its data is not set up here)."""
    rng = np.random.default_rng(5)
    for trial in range(40):
        p = random_program(rng, base=32 * int(rng.integers(0, 8)), n=int(rng.integers(1, 12)),
                           kinds=(1, 3, 4), finish=rng.random() < 0.8)
        raw = plant(rng, p.to_bytes(), int(rng.integers(0, 3)))
        mem = np.zeros(MEM, np.uint8)
        mem[p.base:p.base + len(raw)] = np.frombuffer(raw, np.uint8)
        start = p.base + (4 if trial % 10 == 9 else 0)
        chip = ChipModel(mem_bytes=MEM, limits=LIM)
        chip.write(0, mem.tobytes())
        got = chip.run(start)
        if chip.read(0, DATA) != mem[:DATA].tobytes():
            continue            # a planted operand wrote into the program: not comparable
        assert reference(mem, start, LIM, {}).status == got, trial


def image(prog_bytes, base, mem=MEM):
    m = np.zeros(mem, np.uint8)
    m[base:base + len(prog_bytes)] = np.frombuffer(prog_bytes, np.uint8)
    return m


@pytest.mark.parametrize("data_width,seed", [(32, 1), (16, 2), (64, 3), (32, 4), (32, 5),
                                             (64, 6)])
def test_random_programs(data_width, seed):
    """Valid programs, some with planted bad words and unit errors."""
    rng = np.random.default_rng(seed)
    for trial in range(5):
        # 0: valid; 1: planted bad words; 2: unit errors; 3, 4: both
        base = 32 * int(rng.integers(0, 16))
        p = random_program(rng, base=base, n=int(rng.integers(4, 16)))
        raw = p.to_bytes() if trial in (0, 2) else plant(rng, p.to_bytes(),
                                                         int(rng.integers(1, 3)))
        mem = image(raw, base)
        plans, by_pc = plan_unit_errors(rng, mem, base, 0 if trial < 2 else
                                        int(rng.integers(1, 3)))
        ref = reference(mem, base, LIM, by_pc)
        bench = Bench(mem, rng, data_width=data_width, plans=plans).run((base, None))
        bench.check_against(ref, reference(mem, base, LIM, {}))
        if trial == 0:
            assert ref.status.state == ChipState.DONE


@pytest.mark.parametrize("case", ["misaligned", "runs_off_the_end", "last_slot", "fetch_err",
                                  "empty"])
def test_pc_checks(case):
    rng = np.random.default_rng(7)
    p = Program(base=0)
    p.nop(wait=1)
    p.finish()
    if case == "misaligned":
        mem, pc = image(p.to_bytes(), 0), 8
    elif case == "runs_off_the_end":      # NOPs up to the end of memory: ADDR_RANGE PC at MEM
        mem, pc = image(bytes(32 * 3), MEM - 96), MEM - 96
    elif case == "last_slot":             # a FINISH in the last 32 bytes is fine
        mem, pc = image(isa.encode(isa.Finish()), MEM - 32), MEM - 32
    elif case == "empty":                 # a pc at the end of memory
        mem, pc = image(b"", 0), MEM
    else:                                 # a word answered with err: MEM_ERROR (fetch)
        mem, pc = image(p.to_bytes(), 0x100), 0x100
    kw = {"mem_kw": {"err_words": range(0x120 // 4, MEM // 4)}} if case == "fetch_err" else {}
    ref = reference(mem, pc, LIM, {})
    if case == "fetch_err":
        ref = Ref([], isa.Status(ChipState.ERROR, ChipError.MEM_ERROR, len(Unit), 0, 0x120,
                                 pc=0x120, retired=1))
    bench = Bench(mem, rng, **kw).run((pc, None))
    bench.check_against(ref)
    want = {"misaligned": ChipError.BAD_ALIGN, "runs_off_the_end": ChipError.ADDR_RANGE,
            "last_slot": ChipError.NONE, "empty": ChipError.ADDR_RANGE,
            "fetch_err": ChipError.MEM_ERROR}[case]
    assert bench.status().error == want


def test_units_overlap_and_barriers():
    """A GATHER and a GEMM (and a COPY) without waits run at the same time; a
    NOP barrier and FINISH wait for them."""
    rng = np.random.default_rng(8)
    p = Program(base=0, limits=LIM, mem_bytes=MEM)
    add_random(p, rng, rand_gather(rng), 0)
    add_random(p, rng, rand_gemm(rng), 0)
    add_random(p, rng, rand_copy(rng), 0)
    p.nop(wait=isa.WAIT_ALL)
    add_random(p, rng, rand_interact(rng), 0)
    add_random(p, rng, rand_copy(rng), 0b001)     # waits for the INTERACT
    p.finish()
    mem = image(p.to_bytes(), 0)
    bench = Bench(mem, rng, unit_kw={"min_run": 60, "max_run": 80, "ready_p": 0.9}).run((0, None))
    bench.check_against(reference(mem, 0, LIM, {}))
    g, m, c = (bench.units[u].log for u in (Unit.GATHER, Unit.GEMM, Unit.COPY))
    # accepted .. done intervals intersect
    assert m[0][1] < g[0][2] and g[0][1] < m[0][2]
    assert c[0][1] < g[0][2] and c[0][1] < m[0][2]
    # after the barrier: the INTERACT after everything before it
    assert m[1][0] > max(g[0][2], m[0][2], c[0][2])
    assert c[1][0] > m[1][2]


@pytest.mark.parametrize("case", ["later_fails_first", "decode_error_first", "drain"])
def test_earliest_error_wins(case):
    """The error reported is the earliest failing instruction's in program
    order, whatever the order the errors arrive in; the units drain first."""
    rng = np.random.default_rng(11)
    p = Program(base=0, limits=LIM, mem_bytes=MEM)
    add_random(p, rng, rand_gemm(rng), 0)
    add_random(p, rng, rand_gather(rng), 0)
    add_random(p, rng, rand_copy(rng), 0)
    p.finish()
    raw = bytearray(p.to_bytes())
    gemm_err = (ChipError.GEMM_ERROR, 1, 0, 0)
    gather_err = (ChipError.GATHER_ERROR, GatherError.BAG_TOO_LONG.value, 7, 99)
    plans = {u: {} for u in Unit}
    if case == "later_fails_first":           # the GATHER fails long before the GEMM does
        plans[Unit.GEMM][0], plans[Unit.GATHER][0] = gemm_err, gather_err
        by_pc = {0: gemm_err, 32: gather_err}
    elif case == "decode_error_first":        # the word after the GEMM is illegal
        raw[32:64] = bytes([0x77]) + bytes(31)
        plans[Unit.GEMM][0] = gemm_err
        by_pc = {0: gemm_err}
    else:                                     # the GATHER fails; the GEMM still runs
        plans[Unit.GATHER][0] = gather_err
        by_pc = {32: gather_err}
    mem = image(bytes(raw), 0)
    bench = Bench(mem, rng, plans=plans)
    gemm_unit = bench.units[Unit.GEMM]
    gemm_unit.min_run = gemm_unit.max_run = 200
    bench.units[Unit.GATHER].max_run = 5
    bench.run((0, None))
    ref = reference(mem, 0, LIM, by_pc)
    bench.check_against(ref, reference(mem, 0, LIM, {}))
    want = gather_err if case == "drain" else gemm_err
    assert (bench.status().error, bench.status().detail) == want[:2]
    g = bench.units[Unit.GEMM].log[0]
    if case == "later_fails_first":
        assert bench.units[Unit.GATHER].log[0][2] < g[2]
    if case == "drain":
        assert bench.status().pc == 32 and bench.status().retired == 1
        assert bench.status().bag == 7 and bench.status().index == 99


def test_reset_mid_run():
    """RESET in mid-run: IDLE, status and counters cleared, the units get
    ``abort``; the next START runs the program again from the start."""
    rng = np.random.default_rng(9)
    p = random_program(rng, base=0, n=12, kinds=(1, 2, 3))
    mem = image(p.to_bytes(), 0)
    bench = Bench(mem, rng, unit_kw={"max_run": 60}).run((0, 150), (0, None))
    first = bench.finals[0]
    assert all(rd == 0 and not err for rd, err in first.values()), first
    assert any(left is not None for u in Unit for left in bench.units[u].aborts), \
        "no unit was running at the reset"
    # the second run alone
    for u in Unit:
        bench.units[u].log = [r for r in bench.units[u].log if r[0] > bench.starts[1]]
    bench.check_against(reference(mem, 0, LIM, {}))
    assert bench.status().state == ChipState.DONE


def test_register_errors():
    """CTRL reads, unknown registers and writes of read-only ones answer err;
    START while running answers err and changes nothing; SCRATCH and
    PROG_ADDR read back."""
    rng = np.random.default_rng(10)
    p = Program(base=0, limits=LIM, mem_bytes=MEM)
    add_random(p, rng, rand_gemm(rng), 0)
    p.finish()
    mem = image(p.to_bytes(), 0)
    bench = Bench(mem, rng, unit_kw={"max_run": 1, "ready_p": 0.0})    # the GEMM never starts
    dut, regs = bench.dut, bench.regs
    log = []

    async def tb(ctx):
        for index, value in ((Reg.PROG_ADDR, 0), (Reg.SCRATCH, 0x1234), (Reg.CTRL, CTRL_START)):
            regs.write(index, value)
        for _ in range(200):
            await bench.step(ctx)
        for index, value in ((Reg.CTRL, None), (Reg.STATUS, 5), (Reg.PC, 1), (Reg.RETIRED, 1),
                             (UNIT_CYCLES, 0), (unit_counter(2, UnitCounter.IDLE), 0),
                             (0x0008, None), (0x00FF, None), (UNIT_CYCLES + N_UNIT_REGS, None),
                             (0x0F00, None), (Reg.CTRL, CTRL_START), (Reg.SCRATCH, None),
                             (Reg.PROG_ADDR, None), (Reg.STATUS, None), (Reg.PC, None),
                             (Reg.RETIRED, None)):
            cb = (lambda rd, err, i=index, v=value: log.append((i, v, rd, err)))
            (regs.read(index, cb) if value is None else regs.write(index, value, cb))
        while not regs.idle:
            await bench.step(ctx)
        # the unit never takes the GEMM: the control unit still answers and RESET works
        regs.write(Reg.CTRL, CTRL_RESET)
        regs.read(Reg.STATUS, lambda rd, err: log.append(("after", None, rd, err)))
        while not regs.idle:
            await bench.step(ctx)
    run_clocked(dut, tb)
    errs = {(i, v): err for i, v, rd, err in log}
    for key in ((Reg.CTRL, None), (Reg.STATUS, 5), (Reg.PC, 1), (Reg.RETIRED, 1),
                (UNIT_CYCLES, 0), (unit_counter(2, UnitCounter.IDLE), 0), (0x0008, None),
                (0x00FF, None), (UNIT_CYCLES + N_UNIT_REGS, None), (0x0F00, None),
                (Reg.CTRL, CTRL_START)):
        assert errs[key], key
    reads = {i: rd for i, v, rd, err in log if v is None and not err}
    assert reads[Reg.SCRATCH] == 0x1234 and reads[Reg.PROG_ADDR] == 0
    # running: the GEMM is dispatched (offered, never taken), FINISH waits for it
    assert reads[Reg.STATUS] & STATUS_BUSY and reads[Reg.RETIRED] == 1 and reads[Reg.PC] == 0
    assert log[-1][2] == 0 and not log[-1][3]        # IDLE after RESET
    assert bench.units[Unit.GEMM].log == []


def test_status_layout_and_register_map():
    assert 1 << isa.StatusLayout["busy"].offset == STATUS_BUSY
    assert 1 << isa.StatusLayout["done"].offset == STATUS_DONE
    assert isa.StatusLayout["reserved"].offset + 16 == 32
    assert N_UNITS == len(Unit)
    regs = [UNIT_CYCLES] + [unit_counter(u.value, c) for u in Unit for c in UnitCounter]
    assert regs == list(range(UNIT_CYCLES, UNIT_CYCLES + N_UNIT_REGS))
    with pytest.raises(ValueError, match="unit must be in range 0..2"):
        unit_counter(3, UnitCounter.BUSY)


def test_constructor_checks():
    with pytest.raises(ValueError, match=r"^mem_bytes must be a multiple of 8, not 1028$"):
        ControlUnit(addr_width=10, data_width=32, mem_bytes=1028, limits=LIM)
    with pytest.raises(ValueError, match="mem_bytes must be at most 4096"):
        ControlUnit(addr_width=10, data_width=32, mem_bytes=8192, limits=LIM)
    with pytest.raises(TypeError, match="limits must be a Limits"):
        ControlUnit(addr_width=10, data_width=32, mem_bytes=4096, limits=None)
    with pytest.raises(ValueError, match="data_width must be a power of two"):
        ControlUnit(addr_width=10, data_width=24, mem_bytes=4096, limits=LIM)
