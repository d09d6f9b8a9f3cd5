"""The golden ISA executor (sim/chip_golden.py) against references written here:
sim/golden's GEMM, emb_golden's embedding_bag_ref per table, the dot
interaction as plain loops, and a small DLRM composed in NumPy."""

import numpy as np
import pytest

from seedchip import isa
from seedchip.emb_protocol import BoundsMode, GatherError, PoolMode
from seedchip.firmware.program import (Allocator, Program, Table, desc_records, param_records,
                                       table_image, u32_array)
from seedchip.isa import ChipError, ChipState, Limits, Operand
from seedchip.sim import golden
from seedchip.sim.chip_golden import ChipModel, check_hazards, merge, overlaps
from seedchip.sim.emb_golden import embedding_bag_ref

LIM = Limits(max_m=32, max_k=64, max_n=32, n_tables=4, max_dim=24, max_bag=8, max_vec=16)
MEM = 1 << 16
PROG = 0           # programs at 0, data from DATA
DATA = 4096


def run(model, *insns, pc=PROG):
    code = b"".join(isa.encode(i) for i in insns) + isa.encode(isa.Finish())
    model.write(pc, code)
    return model.run(pc)


def i8(rng, shape):
    return rng.integers(-128, 128, size=shape)


def put_matrix(model, addr, x, stride, dtype=np.int8):
    for r, row in enumerate(np.asarray(x)):
        model.write(addr + r * stride, np.asarray(row).astype(dtype))


# -- GEMM ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_gemm_random(seed):
    rng = np.random.default_rng(seed)
    m, k, n = (int(rng.integers(1, h + 1)) for h in (LIM.max_m, LIM.max_k, LIM.max_n))
    params = bool(rng.integers(2))
    requant = params and bool(rng.integers(2))
    relu = bool(rng.integers(2))
    es = 4 if not requant else 1
    a_s, b_s, c_s = (isa.round_up(x) + 8 * int(rng.integers(0, 3)) for x in (k, n, n * es))
    al = Allocator(MEM, base=DATA)
    a_addr, b_addr = al.alloc("a", m * a_s), al.alloc("b", k * b_s)
    p_addr, c_addr = al.alloc("p", n * 16), al.alloc("c", m * c_s)
    a, b = i8(rng, (m, k)), i8(rng, (k, n))
    bias = rng.integers(-1 << 31, 1 << 31, size=n)
    mult = rng.integers(1 << 30, 1 << 31, size=n)
    shift = rng.integers(0, 32, size=n)
    model = ChipModel(MEM, LIM)
    model.mem[:] = rng.integers(0, 256, size=MEM)      # junk everywhere
    model.mem[:DATA] = 0
    put_matrix(model, a_addr, a, a_s)
    put_matrix(model, b_addr, b, b_s)
    model.write(p_addr, param_records(bias, mult, shift))
    before = model.mem.copy()
    st = run(model, isa.Gemm(a_addr=a_addr, b_addr=b_addr, c_addr=c_addr, p_addr=p_addr, m=m,
                             k=k, n=n, a_stride=a_s, b_stride=b_s, c_stride=c_s, params=params,
                             requant=requant, relu=relu))
    assert st.state == ChipState.DONE, f"seed {seed}: {st}"
    want = golden.gemm(a, b, bias if params else None, mult if requant else None,
                       shift if requant else None, relu=relu)
    got = model.read_matrix(c_addr, m, n, c_s, np.int8 if requant else np.int32)
    np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
    # nothing but C's rows changed (the program at PROG aside)
    changed = np.flatnonzero(model.mem[DATA:] != before[DATA:]) + DATA
    rows = merge([(c_addr + r * c_s, c_addr + r * c_s + n * es) for r in range(m)])
    assert all(any(lo <= x < hi for lo, hi in rows) for x in changed)


def test_gemm_relu_on_int32_and_bias_wrap():
    model = ChipModel(MEM, LIM)
    a = np.array([[127, -128], [-1, 1]])
    b = np.array([[127], [-128]])
    put_matrix(model, DATA, a, 8)
    put_matrix(model, DATA + 64, b, 8)
    model.write(DATA + 128, param_records([(1 << 31) - 1]))
    st = run(model, isa.Gemm(a_addr=DATA, b_addr=DATA + 64, c_addr=DATA + 256, p_addr=DATA + 128,
                             m=2, k=2, n=1, a_stride=8, b_stride=8, c_stride=8, params=True,
                             relu=True))
    assert st.state == ChipState.DONE
    acc = [127 * 127 + 128 * 128, -127 - 128]
    want = [(acc[0] + (1 << 31) - 1 + (1 << 31)) % (1 << 32) - (1 << 31),
            (acc[1] + (1 << 31) - 1 + (1 << 31)) % (1 << 32) - (1 << 31)]
    want = [max(v, 0) for v in want]
    np.testing.assert_array_equal(model.read_matrix(DATA + 256, 2, 1, 8, np.int32)[:, 0], want)


# -- COPY -------------------------------------------------------------------------------

def test_copy_strided_and_broadcast():
    rng = np.random.default_rng(7)
    model = ChipModel(MEM, LIM)
    src = i8(rng, (5, 13))
    put_matrix(model, DATA, src, 24)
    before = model.mem.copy()
    st = run(model, isa.Copy(src=DATA, dst=DATA + 1024, src_stride=24, dst_stride=16, rows=5,
                             row_bytes=13),
             isa.Copy(src=DATA + 48, dst=DATA + 2048, src_stride=0, dst_stride=32, rows=3,
                      row_bytes=13))
    assert st == isa.Status(ChipState.DONE, pc=64, retired=3)
    np.testing.assert_array_equal(model.read_matrix(DATA + 1024, 5, 13, 16), src)
    np.testing.assert_array_equal(model.read_matrix(DATA + 2048, 3, 13, 32), src[[2, 2, 2]])
    # padding bytes after each 13-byte row are untouched
    assert model.read(DATA + 1024 + 13, 3) == before[DATA + 1024 + 13:DATA + 1024 + 16].tobytes()


# -- INTERACT ---------------------------------------------------------------------------

def interaction_ref(t, multiplier, shift):
    """t: [B, n_vec, dim]; the strict lower triangle (1,0), (2,0), (2,1), ... per sample."""
    out = []
    for sample in t:
        z = []
        for i in range(len(sample)):
            for j in range(i):
                dot = sum(int(x) * int(y) for x, y in zip(sample[i], sample[j]))
                z.append(dot)
        out.append(z)
    return golden.requantize(np.array(out), multiplier, shift)


@pytest.mark.parametrize("seed", range(6))
def test_interact_random(seed):
    rng = np.random.default_rng(100 + seed)
    bsz = int(rng.integers(1, 5))
    n_vec = int(rng.integers(2, LIM.max_vec + 1))
    dim = int(rng.integers(1, LIM.max_dim + 1))      # INTERACT's limit: max_dim, not max_k
    vs = isa.round_up(dim) + 8 * int(rng.integers(0, 2))
    ins = vs * n_vec + 8 * int(rng.integers(0, 2))
    os_ = isa.round_up(isa.pairs(n_vec))
    mult, shift = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(0, 16))
    t = i8(rng, (bsz, n_vec, dim))
    model = ChipModel(MEM, LIM)
    for b in range(bsz):
        put_matrix(model, DATA + b * ins, t[b], vs)
    dst = DATA + 16384
    st = run(model, isa.Interact(src=DATA, dst=dst, multiplier=mult, shift=shift, batch=bsz,
                                 dim=dim, n_vec=n_vec, in_stride=ins, vec_stride=vs,
                                 out_stride=os_))
    assert st.state == ChipState.DONE, f"seed {seed}: {st}"
    got = model.read_matrix(dst, bsz, isa.pairs(n_vec), os_)
    np.testing.assert_array_equal(got, interaction_ref(t, mult, shift), err_msg=f"seed {seed}")


# -- GATHER -----------------------------------------------------------------------------

def gather_setup(rng, *, n_tables=3, batch=4, dims=None, rows=None, max_len=None, oob=0.0):
    """Random tables and bags in a fresh model; returns (model, kwargs for Gather, data)."""
    dims = dims or [int(rng.integers(1, LIM.max_dim + 1)) for _ in range(n_tables)]
    rows = rows or [int(rng.integers(1, 40)) for _ in range(n_tables)]
    max_len = LIM.max_bag if max_len is None else max_len
    al = Allocator(MEM, base=DATA)
    weights = [i8(rng, (r, d)) for r, d in zip(rows, dims)]
    mults = rng.integers(1 << 30, 1 << 31, size=n_tables)
    shifts = rng.integers(0, 12, size=n_tables)
    tables = []
    for t, w in enumerate(weights):
        base = al.alloc(f"table{t}", len(table_image(w)))
        tables.append(Table(base, *w.shape, multiplier=int(mults[t]), shift=int(shifts[t])))
    lens = rng.integers(0, max_len + 1, size=n_tables * batch)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    idx = np.concatenate([rng.integers(0, rows[i // batch], size=lens[i]) for i in
                          range(n_tables * batch)] + [np.zeros(0, np.int64)]).astype(np.int64)
    if oob:
        bad = rng.random(idx.size) < oob
        owner = np.repeat(np.arange(n_tables * batch), lens) // batch
        idx[bad] = np.array(rows)[owner[bad]] + rng.integers(0, 5, size=int(bad.sum()))
    wts = i8(rng, idx.size)
    desc = al.alloc("desc", 16 * n_tables)
    off = al.alloc("off", 4 * offsets.size)
    ia = al.alloc("idx", 4 * idx.size)
    wa = al.alloc("w", idx.size)
    slot = isa.round_up(4 * max(dims))
    out = al.alloc("out", batch * n_tables * slot)
    model = ChipModel(MEM, LIM)
    for t, w in zip(tables, weights):
        model.write(t.base, table_image(w))
    model.write(desc, desc_records(tables))
    model.write(off, u32_array(offsets))
    model.write(ia, u32_array(idx))
    model.write(wa, wts.astype(np.int8))
    kw = dict(desc_addr=desc, idx_addr=ia, off_addr=off, out_addr=out, batch=batch,
              n_tables=n_tables, out_stride=n_tables * slot, out_tstride=slot)
    d = dict(weights=weights, tables=tables, offsets=offsets, idx=idx, wts=wts, w_addr=wa,
             slot=slot, dims=dims, rows=rows)
    return model, kw, d


CASES = [(mode, weighted, requant, bounds)
         for mode in PoolMode for weighted in (False, True) for requant in (False, True)
         for bounds in (BoundsMode.FATAL, BoundsMode.CLAMP, BoundsMode.SKIP)
         if not (weighted and mode != PoolMode.SUM)]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_gather_matches_embedding_bag_ref(case):
    mode, weighted, requant, bounds = CASES[case]
    rng = np.random.default_rng(1000 + case)
    model, kw, d = gather_setup(rng, oob=0.0 if bounds == BoundsMode.FATAL else 0.2)
    st = run(model, isa.Gather(**kw, mode=mode, bounds=bounds, weighted=weighted,
                               requant=requant, w_addr=d["w_addr"] if weighted else 0))
    assert st.state == ChipState.DONE, f"case {CASES[case]}: {st}"
    bsz, off = kw["batch"], d["offsets"]
    for t, (w, tab) in enumerate(zip(d["weights"], d["tables"])):
        lo, hi = off[t * bsz], off[(t + 1) * bsz]
        idx, wts = d["idx"][lo:hi], d["wts"][lo:hi]
        o = off[t * bsz:(t + 1) * bsz + 1] - lo
        if bounds == BoundsMode.CLAMP:
            idx = np.where(idx >= tab.rows, 0, idx)
        elif bounds == BoundsMode.SKIP:
            keep = idx < tab.rows
            o = np.concatenate([[0], np.cumsum([keep[o[b]:o[b + 1]].sum() for b in range(bsz)])])
            idx, wts = idx[keep], wts[keep]
        want = embedding_bag_ref(w, idx, o, mode=mode.name.lower(),
                                 per_sample_weights=wts if weighted else None)
        if requant:
            want = golden.requantize(want, tab.multiplier, tab.shift)
        got = model.read_matrix(kw["out_addr"] + t * kw["out_tstride"], bsz, tab.dim,
                                kw["out_stride"], np.int8 if requant else np.int32)
        np.testing.assert_array_equal(got, want, err_msg=f"case {CASES[case]} table {t}")


def test_gather_out_of_range_is_fatal_with_bag_and_index():
    rng = np.random.default_rng(5)
    model, kw, d = gather_setup(rng, max_len=4)
    # plant a bad index in bag 6 (table 1, sample 2), after a good one
    bag = 6
    lo, hi = d["offsets"][bag], d["offsets"][bag + 1]
    if hi - lo < 2:
        pytest.skip("bag too short for this seed")       # pragma: no cover
    d["idx"][lo + 1] = d["rows"][1] + 3
    model.write(kw["idx_addr"], u32_array(d["idx"]))
    st = run(model, isa.Gather(**kw))
    assert (st.state, st.error, st.detail, st.bag, st.index, st.pc, st.retired) == \
        (ChipState.ERROR, ChipError.GATHER_ERROR, GatherError.OUT_OF_RANGE.value, bag,
         d["rows"][1] + 3, PROG, 0)


def _gather_error(mutate, **setup):
    rng = np.random.default_rng(11)
    model, kw, d = gather_setup(rng, **setup)
    mutate(model, kw, d)
    return run(model, isa.Gather(**kw))


def test_gather_bad_desc():
    def dim0(model, kw, d):
        t = d["tables"]
        model.write(kw["desc_addr"] + 16, isa.pack_record(isa.DescRecord, base=t[1].base,
                                                           rows=t[1].rows, dim=0))
    st = _gather_error(dim0)
    assert (st.error, st.detail, st.bag, st.index) == \
        (ChipError.GATHER_ERROR, GatherError.BAD_DESC.value, 0, 1)

    def too_wide(model, kw, d):
        model.write(kw["desc_addr"], isa.pack_record(isa.DescRecord, base=0, rows=1,
                                                     dim=LIM.max_dim + 1))
    assert _gather_error(too_wide).index == 0

    def at_memory_end(rows):
        def mutate(model, kw, d):
            model.write(kw["desc_addr"] + 32, isa.pack_record(isa.DescRecord, base=MEM - 64,
                                                              rows=rows, dim=8))
        return mutate
    # rows * pitch ending exactly at mem_bytes is fine; one row more is BAD_DESC
    assert _gather_error(at_memory_end(8), dims=[8, 8, 8], rows=[8, 8, 8]).state == \
        ChipState.DONE
    st = _gather_error(at_memory_end(9), dims=[8, 8, 8], rows=[8, 8, 8])
    assert (st.error, st.detail, st.index) == (ChipError.GATHER_ERROR,
                                               GatherError.BAD_DESC.value, 2)


def test_gather_offsets_errors():
    def first(model, kw, d):
        model.write(kw["off_addr"], u32_array([3]))
    st = _gather_error(first)
    assert (st.error, st.detail, st.bag, st.index) == \
        (ChipError.GATHER_ERROR, GatherError.BAD_OFFSET.value, 0, 3)

    def decreasing(model, kw, d):
        o = d["offsets"].copy()
        assert o[4] > 0, "seed precondition"
        o[5] = o[4] - 1
        model.write(kw["off_addr"], u32_array(o))
    st = _gather_error(decreasing)
    assert (st.error, st.detail, st.bag) == (ChipError.GATHER_ERROR,
                                             GatherError.BAD_OFFSET.value, 4)

    def too_long(model, kw, d):
        o = d["offsets"].copy()
        o[3:] += LIM.max_bag + 1 - (o[3] - o[2])
        model.write(kw["off_addr"], u32_array(o))
    st = _gather_error(too_long)
    assert (st.error, st.detail, st.bag, st.index) == \
        (ChipError.GATHER_ERROR, GatherError.BAG_TOO_LONG.value, 2, LIM.max_bag + 1)

    seen = {}

    def idx_near_memory_end(model, kw, d):
        # the index array moves so that bags 0..5 fit exactly before the end
        # of memory: the first later bag with an index reads past it
        o = d["offsets"]
        room = isa.round_up(4 * int(o[6])) // 4
        kw["idx_addr"] = MEM - 4 * room
        model.write(kw["idx_addr"], u32_array(d["idx"][:o[6]]))
        seen["bag"] = next(i for i in range(6, len(o) - 1) if o[i + 1] > room)
        seen["index"] = int(o[seen["bag"] + 1])
    st = _gather_error(idx_near_memory_end, max_len=2)
    assert (st.error, st.detail, st.bag, st.index) == \
        (ChipError.ADDR_RANGE, Operand.IDX_ADDR.value, seen["bag"], seen["index"])


# -- fetch, errors, status ----------------------------------------------------------------

def test_running_off_the_end_of_memory():
    model = ChipModel(1024, LIM)
    st = model.run(1024 - 64)                  # two NOPs (zeros), then no instruction
    assert st == isa.Status(ChipState.ERROR, ChipError.ADDR_RANGE, Operand.PC.value,
                            pc=1024, retired=2)


def test_misaligned_start_and_illegal_stop_with_pc():
    model = ChipModel(1024, LIM)
    assert model.run(8).error == ChipError.BAD_ALIGN
    model.write(0, isa.encode(isa.Nop()) + isa.encode(isa.Illegal(7)))
    st = model.run(0)
    assert (st.error, st.detail, st.pc, st.retired) == (ChipError.ILLEGAL, 0, 32, 1)


def test_operand_ending_at_memory_end_runs_and_one_more_byte_does_not():
    model = ChipModel(1024, LIM)
    ok = isa.Copy(src=0, dst=1024 - 16, src_stride=8, dst_stride=8, rows=2, row_bytes=8)
    assert run(model, ok).state == ChipState.DONE
    assert run(model, isa.Copy(src=0, dst=1024 - 8, src_stride=0, dst_stride=16, rows=1,
                               row_bytes=8)).state == ChipState.DONE
    bad = isa.Copy(src=0, dst=1024 - 8, src_stride=0, dst_stride=16, rows=1, row_bytes=9)
    st = run(model, bad)
    assert (st.error, st.detail) == (ChipError.ADDR_RANGE, Operand.DST.value)


# -- a whole DLRM-like program --------------------------------------------------------------

def test_small_dlrm_end_to_end():
    rng = np.random.default_rng(2024)
    B, F, D, T = 4, 13, 8, 3
    n_vec, P = T + 1, isa.pairs(T + 1)
    rows = [50, 30, 20]
    mem = 1 << 15
    al = Allocator(mem, base=1024)
    # parameters
    w1, w2 = i8(rng, (F, 16)), i8(rng, (16, D))
    w3, w4 = i8(rng, (D + P, 16)), i8(rng, (16, 1))
    layers = []
    for name, w, requant in (("bot1", w1, True), ("bot2", w2, True), ("top1", w3, True),
                             ("top2", w4, False)):
        n = w.shape[1]
        bias = rng.integers(-2000, 2000, size=n)
        mult = rng.integers(1 << 30, 1 << 31, size=n)
        shift = rng.integers(6, 10, size=n)
        layers.append(dict(name=name, w=w, bias=bias, mult=mult, shift=shift, requant=requant,
                           w_addr=al.alloc(name + ".w", w.shape[0] * isa.round_up(n)),
                           p_addr=al.alloc(name + ".p", 16 * n)))
    emb = [i8(rng, (r, D)) for r in rows]
    tables = [Table(al.alloc(f"emb{t}", r * isa.table_pitch(D)), r, D,
                    multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=2)
              for t, r in enumerate(rows)]
    i_mult, i_shift = int(rng.integers(1 << 30, 1 << 31)), 7
    # inputs
    x = i8(rng, (B, F))
    lens = rng.integers(0, 4, size=T * B)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    idx = np.concatenate([rng.integers(0, rows[i // B], size=lens[i]) for i in range(T * B)])
    # buffers
    x_addr = al.alloc("x", B * 16)
    h1 = al.alloc("h1", B * 16)
    tin = al.alloc("interaction_in", B * n_vec * D)          # [x | e0 | e1 | e2] per sample
    r_addr = al.alloc("top_in", B * 16)                      # [x | z] per sample, 8 + 6 bytes
    h3 = al.alloc("h3", B * 16)
    out = al.alloc("out", B * 8)
    desc, off_a, idx_a = (al.alloc("desc", 16 * T), al.alloc("off", 4 * offsets.size),
                          al.alloc("idx", 4 * idx.size))
    model = ChipModel(mem, LIM)
    for L in layers:
        put_matrix(model, L["w_addr"], L["w"], isa.round_up(L["w"].shape[1]))
        model.write(L["p_addr"], param_records(L["bias"], L["mult"], L["shift"]))
    for t, e in zip(tables, emb):
        model.write(t.base, table_image(e))
    model.write(desc, desc_records(tables))
    model.write(off_a, u32_array(offsets))
    model.write(idx_a, u32_array(idx))
    put_matrix(model, x_addr, x, 16)

    p = Program(limits=LIM, mem_bytes=mem)
    bot1, bot2, top1, top2 = layers

    def gemm(L, a, a_stride, c, c_stride, m, relu=True):
        k, n = L["w"].shape
        return p.gemm(a_addr=a, b_addr=L["w_addr"], c_addr=c, p_addr=L["p_addr"], m=m, k=k, n=n,
                      a_stride=a_stride, c_stride=c_stride, requant=L["requant"], relu=relu)

    i_b1 = gemm(bot1, x_addr, 16, h1, 16, B)
    i_b2 = gemm(bot2, h1, 16, tin, n_vec * D, B)                  # dense vector into slot 0
    i_g = p.gather(desc_addr=desc, idx_addr=idx_a, off_addr=off_a, out_addr=tin + D, batch=B,
                   tables=tables, n_indices=idx.size, out_stride=n_vec * D, out_tstride=D,
                   requant=True)
    i_c = p.copy(src=tin, dst=r_addr, rows=B, row_bytes=D, src_stride=n_vec * D, dst_stride=16)
    i_x = p.interact(src=tin, dst=r_addr + D, batch=B, n_vec=n_vec, dim=D, multiplier=i_mult,
                     shift=i_shift, in_stride=n_vec * D, vec_stride=D, out_stride=16)
    i_t1 = gemm(top1, r_addr, 16, h3, 16, B)
    i_t2 = gemm(top2, h3, 16, out, 8, B, relu=False)
    p.finish()
    # the builder's waits: the gather overlaps the bottom MLP, the interaction
    # waits for it, the copy for the bottom MLP, the top MLP for the copy
    assert [i.wait for i in (i_b1, i_b2, i_g, i_c, i_x, i_t1, i_t2)] == \
        [0, 0, 0, 1 << 0, 1 << 1, 1 << 2, 0]
    model.write(0, p.to_bytes())
    st = model.run(0)
    assert st == isa.Status(ChipState.DONE, pc=32 * 7, retired=8), str(st)
    assert check_hazards(model.trace) == []

    # the reference, composed here
    def layer(L, a, relu=True):
        return golden.gemm(a, L["w"], L["bias"], L["mult"] if L["requant"] else None,
                           L["shift"] if L["requant"] else None, relu=relu)
    dense = layer(bot2, layer(bot1, x))
    pooled = [golden.requantize(embedding_bag_ref(emb[t], idx[offsets[t * B]:offsets[(t + 1) * B]],
                                                  offsets[t * B:(t + 1) * B + 1] - offsets[t * B]),
                                tables[t].multiplier, tables[t].shift) for t in range(T)]
    tcat = np.stack([dense] + pooled, axis=1)                 # [B, n_vec, D]
    z = interaction_ref(tcat, i_mult, i_shift)
    r = np.concatenate([dense, z], axis=1)
    want = layer(top2, layer(top1, r), relu=False)
    got = model.read_matrix(out, B, 1, 8, np.int32)
    np.testing.assert_array_equal(got, want)


# -- hazards ----------------------------------------------------------------------------------

def test_hazard_checker_finds_a_planted_missing_wait():
    model = ChipModel(MEM, LIM)
    p = Program()
    p.gemm(a_addr=DATA, b_addr=DATA + 256, c_addr=DATA + 512, m=2, k=8, n=8)
    c = p.copy(src=DATA + 512, dst=DATA + 1024, rows=2, row_bytes=32)
    assert c.wait == 1 << isa.Unit.GEMM.value
    p.finish()
    model.write(0, p.to_bytes())
    assert model.run(0).state == ChipState.DONE
    assert check_hazards(model.trace) == []
    # the same program without the copy's wait
    q = Program()
    q.gemm(a_addr=DATA, b_addr=DATA + 256, c_addr=DATA + 512, m=2, k=8, n=8)
    q.copy(src=DATA + 512, dst=DATA + 1024, rows=2, row_bytes=32, wait=0)
    q.copy(src=DATA + 2048, dst=DATA, rows=1, row_bytes=8, wait=0)     # WAR on A
    q.finish()
    model.write(0, q.to_bytes())
    assert model.run(0).state == ChipState.DONE
    assert [(h.first, h.second, h.kind) for h in check_hazards(model.trace)] == \
        [(0, 32, "RAW"), (0, 64, "WAR")]


def test_hazard_checker_self_overlap_and_code():
    model = ChipModel(MEM, LIM)
    st = run(model, isa.Copy(src=DATA, dst=DATA + 8, src_stride=8, dst_stride=8, rows=2,
                             row_bytes=8),
             isa.Copy(src=64, dst=64, src_stride=8, dst_stride=8, rows=1, row_bytes=8))
    assert st.state == ChipState.DONE
    kinds = [(h.first, h.second, h.kind) for h in check_hazards(model.trace)]
    assert kinds == [(0, 0, "SELF"), (32, 32, "SELF"), (32, 64, "CODE")]


def test_interval_helpers():
    assert merge([(5, 9), (0, 3), (3, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]
    assert overlaps([(0, 4), (10, 12)], [(4, 10)]) is False
    assert overlaps([(0, 4), (10, 12)], [(4, 11)]) is True


# -- GEMM ACC -----------------------------------------------------------------------------

def _wrap32(x):
    return (int(x) + (1 << 31)) % (1 << 32) - (1 << 31)


def _post_ref(x, bias, mult, shift, relu, requant):
    """gemmlowp's post-processing of one int32, written out with Python ints."""
    x = _wrap32(x + bias)
    if not requant:
        return max(x, 0) if relu else x
    if x == mult == -(1 << 31):
        y = (1 << 31) - 1
    else:
        ab = x * mult
        t = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
        y = abs(t) >> 31
        y = -y if t < 0 else y                             # division toward zero
    mask = (1 << shift) - 1
    z = (y >> shift) + ((y & mask) > (mask >> 1) + (y < 0))
    if relu:
        z = max(z, 0)
    return min(max(z, -128), 127)


def acc_ref(a, b, c_in, bias, mult, shift, relu, requant):
    """post(wrap32(A @ B + C_in)) from int64 products, element by element."""
    raw = np.asarray(a, np.int64) @ np.asarray(b, np.int64) + np.asarray(c_in, np.int64)
    m, n = raw.shape
    return np.array([[_post_ref(_wrap32(raw[i, j]), bias[j], mult[j], shift[j], relu, requant)
                      for j in range(n)] for i in range(m)], dtype=np.int64)


@pytest.mark.parametrize("seed", range(8))
def test_gemm_acc_in_place(seed):
    """ACC: C_in read at c_addr and the result written over it; C_in holds
    values near the int32 limits so the sum wraps; only the output's bytes
    change (int8 output: the first n bytes of each row)."""
    rng = np.random.default_rng(100 + seed)
    m, k, n = (int(rng.integers(1, h + 1)) for h in (LIM.max_m, LIM.max_k, LIM.max_n))
    params = seed % 4 != 0
    requant = params and seed % 2 == 1
    relu = seed % 3 == 0
    es = 1 if requant else 4
    a_s, b_s, c_s = (isa.round_up(x) + 8 * int(rng.integers(0, 3)) for x in (k, n, 4 * n))
    al = Allocator(MEM, base=DATA)
    a_addr, b_addr = al.alloc("a", m * a_s), al.alloc("b", k * b_s)
    p_addr, c_addr = al.alloc("p", n * 16), al.alloc("c", m * c_s)
    a, b = i8(rng, (m, k)), i8(rng, (k, n))
    c_in = rng.integers(-1 << 31, 1 << 31, size=(m, n))
    c_in[rng.random((m, n)) < 0.3] = (1 << 31) - 1 - int(rng.integers(0, 1000))
    bias = rng.integers(-1 << 31, 1 << 31, size=n)
    mult = rng.integers(1 << 30, 1 << 31, size=n)
    shift = rng.integers(0, 32, size=n)
    model = ChipModel(MEM, LIM)
    model.mem[:] = rng.integers(0, 256, size=MEM)
    model.mem[:DATA] = 0
    put_matrix(model, a_addr, a, a_s)
    put_matrix(model, b_addr, b, b_s)
    put_matrix(model, c_addr, c_in, c_s, np.int32)
    model.write(p_addr, param_records(bias, mult, shift))
    before = model.mem.copy()
    g = isa.Gemm(a_addr=a_addr, b_addr=b_addr, c_addr=c_addr, p_addr=p_addr, m=m, k=k, n=n,
                 a_stride=a_s, b_stride=b_s, c_stride=c_s, params=params, requant=requant,
                 relu=relu, acc=True)
    st = run(model, g)
    assert st.state == ChipState.DONE, f"seed {seed}: {st}"
    zeros = np.zeros(n, np.int64)
    want = acc_ref(a, b, c_in, bias if params else zeros, mult, shift, relu, requant)
    got = model.read_matrix(c_addr, m, n, c_s, np.int8 if requant else np.int32)
    np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
    changed = np.flatnonzero(model.mem[DATA:] != before[DATA:]) + DATA
    rows = merge([(c_addr + r * c_s, c_addr + r * c_s + n * es) for r in range(m)])
    assert all(any(lo <= x < hi for lo, hi in rows) for x in changed)
    # the in-place update is defined: no SELF hazard; C_in is among the reads
    assert check_hazards(model.trace) == []
    assert overlaps(merge(model.trace[0].reads), [(c_addr, c_addr + 4 * n)])


def test_gemm_acc_chain_is_one_long_k():
    """K = 3 * max_k + 5 as four GEMMs: int32, ACC, ACC, ACC with params,
    requant and ReLU, is the one-GEMM result of the whole K."""
    rng = np.random.default_rng(7)
    m, n, kk = 5, 11, 3 * LIM.max_k + 5
    a, b = i8(rng, (m, kk)), i8(rng, (kk, n))
    bias = rng.integers(-1 << 20, 1 << 20, size=n)
    mult = rng.integers(1 << 30, 1 << 31, size=n)
    shift = rng.integers(0, 12, size=n)
    model = ChipModel(MEM, LIM)
    a_s, b_s, c_s = isa.round_up(kk), isa.round_up(n), isa.round_up(4 * n)
    al = Allocator(MEM, base=DATA)
    a_addr, b_addr = al.alloc("a", m * a_s), al.alloc("b", kk * b_s)
    p_addr, c_addr = al.alloc("p", n * 16), al.alloc("c", m * c_s)
    put_matrix(model, a_addr, a, a_s)
    put_matrix(model, b_addr, b, b_s)
    model.write(p_addr, param_records(bias, mult, shift))
    p = Program(base=PROG, limits=LIM, mem_bytes=MEM)
    chunks = list(range(0, kk, LIM.max_k))
    for i, k0 in enumerate(chunks):
        k = min(LIM.max_k, kk - k0)
        last = i == len(chunks) - 1
        p.gemm(a_addr=a_addr + k0, b_addr=b_addr + k0 * b_s, c_addr=c_addr, m=m, k=k, n=n,
               a_stride=a_s, b_stride=b_s, c_stride=c_s, p_addr=p_addr if last else None,
               requant=last, relu=last, acc=i > 0)
    p.finish()
    model.write(PROG, p.to_bytes())
    assert model.run(PROG).state == ChipState.DONE
    assert [g.acc for g in p.insns[:-1]] == [False, True, True, True]
    want = acc_ref(a, b, np.zeros((m, n)), bias, mult, shift, True, True)
    np.testing.assert_array_equal(model.read_matrix(c_addr, m, n, c_s, np.int8), want)
    np.testing.assert_array_equal(want, golden.gemm(a, b, bias, mult, shift, relu=True))
    assert check_hazards(model.trace) == []


def test_hazard_checker_acc_other_overlaps():
    """An ACC GEMM whose A overlaps its C is still a SELF hazard; a COPY
    writing bytes of C_in that a running ACC GEMM (int8 output) only reads
    is a WAR hazard: C_in's reads count."""
    model = ChipModel(MEM, LIM)
    g = isa.Gemm(a_addr=DATA, b_addr=DATA + 256, c_addr=DATA, m=2, k=8, n=2, a_stride=8,
                 b_stride=8, c_stride=8, acc=True)
    st = run(model, g)
    assert st.state == ChipState.DONE
    assert [(h.first, h.second, h.kind) for h in check_hazards(model.trace)] == \
        [(0, 0, "SELF")]
    g = isa.Gemm(a_addr=DATA + 1024, b_addr=DATA + 256, c_addr=DATA, p_addr=DATA + 2048, m=2,
                 k=8, n=4, a_stride=8, b_stride=8, c_stride=16, params=True, requant=True,
                 acc=True)
    # C's row 0: bytes 0..3 written (int8), 0..15 read (int32 C_in)
    st = run(model, g, isa.Copy(src=DATA + 512, dst=DATA + 8, src_stride=8, dst_stride=8,
                                rows=1, row_bytes=8))
    assert st.state == ChipState.DONE
    assert [(h.first, h.second, h.kind) for h in check_hazards(model.trace)] == [(0, 32, "WAR")]
