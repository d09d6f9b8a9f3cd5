# amaranth: UnusedElaboratable=no
"""rtl/chip_gather.py (GatherFront, the GATHER unit) in the Amaranth simulator
against the golden executor (ChipModel._exec_gather): random batches over
several tables and every error path, several commands back to back on one
instance, every memory port behind its own MemModel on one shared byte
array (random ready and latency), the whole memory and the done item
compared after each command."""

import numpy as np
import pytest

from seedchip import isa
from seedchip.emb_protocol import BoundsMode, GatherError, PoolMode
from seedchip.gather_params import GatherParams
from seedchip.isa import ChipError, Operand, Unit
from seedchip.rtl.chip_gather import (N_PORTS, P_DESC, P_ENGINE, P_IDX, P_OFF, P_OUT, P_W,
                                      GatherFront)
from seedchip.rtl.chip_gather_io import IndexFeeder, PooledWriter, WordReader
from seedchip.sim.chip_golden import ChipModel
from seedchip.sim.clocked import run_clocked
from seedchip.sim.memmodel import MemModel

MEM_BYTES = 8192
AW = 10                     # 1024 words of 8 bytes
CODE = 64                   # the one-instruction program lives below this
LIM = isa.Limits(n_tables=4, max_dim=32, max_bag=8)


def make_params(cache_rows=0, drain_lanes=None):
    return GatherParams(data_width=64, addr_width=AW, lanes=8, cache_rows=cache_rows,
                        n_tables=LIM.n_tables, max_dim=LIM.max_dim, max_bag=LIM.max_bag,
                        inflight=16, index_width=32, drain_lanes=drain_lanes)


class Alloc:
    def __init__(self, rng):
        self.top, self.rng = CODE, rng

    def __call__(self, nbytes):
        self.top += 8 * int(self.rng.integers(0, 3))           # random gaps
        a = self.top
        self.top += isa.round_up(max(nbytes, 1))
        assert self.top <= MEM_BYTES, "test case does not fit"
        return a


def random_case(rng, *, T=None, B=None, mode=None, bounds=None, weighted=None, requant=None,
                layout=None):
    """A valid GATHER and the writes that set up its data: ``(insn, writes)``,
    writes a list of (address, bytes); ``info`` keeps what directed cases mutate."""
    T = T or int(rng.integers(1, LIM.n_tables + 1))
    B = B or int(rng.integers(1, 5))
    mode = mode if mode is not None else PoolMode(int(rng.integers(0, 3)))
    bounds = bounds if bounds is not None else BoundsMode(int(rng.integers(0, 3)))
    weighted = (mode == PoolMode.SUM and rng.random() < 0.5) if weighted is None else weighted
    requant = bool(rng.random() < 0.5) if requant is None else requant
    al = Alloc(rng)
    writes = []
    descs = []
    for t in range(T):
        dim = int(rng.choice([1, 3, 7, 8, 9, 15, 16, 17, 31, 32, int(rng.integers(1, 33))]))
        rows = int(rng.integers(1, 9))
        base = al(rows * isa.table_pitch(dim))
        writes.append((base, rng.integers(0, 256, rows * isa.table_pitch(dim), dtype=np.uint8)
                       .tobytes()))
        mult = int(rng.integers(1 << 30, 1 << 31))
        shift = int(rng.integers(0, 12))
        descs.append(dict(base=base, rows=rows, dim=dim, shift=shift, multiplier=mult,
                          pad=int(rng.integers(0, 256))))
    desc_addr = al(T * isa.DESC_BYTES)
    writes.append((desc_addr, b"".join(isa.pack_record(isa.DescRecord, **d) for d in descs)))
    lens = [int(rng.choice([0, 1, 2, LIM.max_bag, int(rng.integers(0, LIM.max_bag + 1))]))
            for _ in range(T * B)]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n = int(offsets[-1])
    idx = []
    for i in range(T * B):
        rows = descs[i // B]["rows"]
        for _ in range(lens[i]):
            if rng.random() < (0.2 if bounds != BoundsMode.FATAL else 0.02):
                idx.append(int(rng.choice([rows, rows + 5, (1 << 32) - 1])))
            else:
                idx.append(int(rng.integers(0, rows)))
    off_addr = al(4 * len(offsets))
    writes.append((off_addr, offsets.astype("<u4").tobytes()))
    idx_addr = al(4 * n)
    writes.append((idx_addr, np.array(idx, dtype="<u4").tobytes()))
    w_addr = al(n)
    writes.append((w_addr, rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
    es = isa.out_bytes(requant)
    row = isa.round_up(max(d["dim"] for d in descs) * es)
    layout = layout or rng.choice(["table_major", "sample_major", "overlap"])
    if layout == "table_major":
        out_stride, out_tstride = row, B * row
    elif layout == "sample_major":
        out_stride, out_tstride = T * row, row
    else:                                   # rows overlap: later bags win
        out_stride, out_tstride = 8 * int(rng.integers(0, 4)), 8 * int(rng.integers(0, 4))
    out_addr = al((B - 1) * out_stride + (T - 1) * out_tstride + row)
    writes.append((out_addr, rng.integers(0, 256, al.top - out_addr, dtype=np.uint8).tobytes()))
    insn = isa.Gather(desc_addr=desc_addr, idx_addr=idx_addr, off_addr=off_addr, w_addr=w_addr,
                      out_addr=out_addr, batch=B, out_stride=out_stride, out_tstride=out_tstride,
                      n_tables=T, mode=mode, bounds=bounds, weighted=weighted, requant=requant)
    return insn, writes


def put_u32(writes, addr, k, value):
    writes.append((addr + 4 * k, int(value).to_bytes(4, "little")))


def put_desc(writes, insn, t, **fields):
    """Overwrite fields of descriptor t (a later write wins)."""
    a = insn.desc_addr + t * isa.DESC_BYTES
    for addr, raw in writes:
        if addr <= a < addr + len(raw):
            d = isa.unpack_record(isa.DescRecord, raw[a - addr:a - addr + isa.DESC_BYTES])
    d.update(fields)
    writes.append((a, isa.pack_record(isa.DescRecord, **d)))


def apply(mem, insn, writes):
    for a, raw in writes:
        mem[a:a + len(raw)] = np.frombuffer(raw, np.uint8)
    mem[0:isa.INSN_BYTES] = np.frombuffer(isa.encode(insn), np.uint8)
    mem[isa.INSN_BYTES:2 * isa.INSN_BYTES] = np.frombuffer(isa.encode(isa.Finish()), np.uint8)


def run_commands(cases, *, seed, cache_rows=0, drain_lanes=None, ready_p=0.7, max_latency=4,
                 max_idle=3, port_errs=None):
    """Run ``cases`` [(insn, writes)] back to back on one GatherFront; each
    checked against ChipModel. ``port_errs`` {case number: (port, word range)}:
    that port answers ``err`` in that range during that case, which must end
    with MEM_ERROR (its memory is not compared). Returns the cycles of each
    command (offer to done)."""
    port_errs = port_errs or {}
    rng = np.random.default_rng(seed)
    dut = GatherFront(params=make_params(cache_rows, drain_lanes), mem_bytes=MEM_BYTES)
    mem = np.zeros(MEM_BYTES, np.uint8)
    model = ChipModel(MEM_BYTES, LIM)
    cycles = []

    async def tb(ctx):
        ports = [MemModel(dut.mem[i], mem, 8, rng, ready_p=ready_p, max_latency=max_latency)
                 for i in range(N_PORTS)]
        ctx.set(dut.ctl.done.ready, 1)

        async def step():
            for pm in ports:
                pm.step(ctx)
            assert not ctx.get(dut.ctl.done.valid), "done without a command"
            await ctx.tick()

        for n, (insn, writes) in enumerate(cases):
            apply(mem, insn, writes)
            model.mem[:] = mem
            for i, pm in enumerate(ports):
                pm.err_words = range(0)
            if n in port_errs:
                ports[port_errs[n][0]].err_words = port_errs[n][1]
            status = model.run(0)
            assert isa.validate(insn, LIM, MEM_BYTES).ok
            for _ in range(int(rng.integers(0, max_idle + 1))):
                await step()
            pl = dut.ctl.cmd.payload
            for f in ("mode", "bounds", "weighted", "requant"):
                ctx.set(getattr(pl.flags, f), getattr(insn, f))
            for f in ("desc_addr", "idx_addr", "off_addr", "w_addr", "out_addr", "batch",
                      "out_stride", "out_tstride", "n_tables"):
                ctx.set(getattr(pl.operands, f), getattr(insn, f))
            ctx.set(dut.ctl.cmd.valid, 1)
            start = 0
            for start in range(100000):
                for pm in ports:
                    pm.step(ctx)
                taken = ctx.get(dut.ctl.cmd.ready)
                await ctx.tick()
                if taken:
                    break
            ctx.set(dut.ctl.cmd.valid, 0)
            for c in range(200000):
                for pm in ports:
                    pm.step(ctx)
                if ctx.get(dut.ctl.done.valid):
                    got = ctx.get(dut.ctl.done.payload)
                    await ctx.tick()
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"command {n} ({insn}) never finished")
            cycles.append(start + c + 1)
            want = (status.error, status.detail, status.bag, status.index)
            have = (got.error, got.detail, got.bag, got.index)
            if n in port_errs:
                assert (got.error, got.detail) == (ChipError.MEM_ERROR, Unit.GATHER.value), \
                    f"port {port_errs[n][0]} answering err: done {have}"
                for _ in range(10):
                    await step()
                assert all(pm.idle for pm in ports)
                continue
            assert have == want, f"seed {seed} command {n} {insn}: done {have}, model {status}"
            bad = np.flatnonzero(mem != model.mem)
            assert bad.size == 0, (f"seed {seed} command {n} {insn} ({status}): "
                                   f"{bad.size} bytes differ, first at {bad[:8]}")
            for _ in range(10):            # nothing moves after done
                await step()
            assert all(pm.idle for pm in ports)
            assert (mem == model.mem).all()

    run_clocked(dut, tb)
    return cycles


def test_front_checks_params():
    with pytest.raises(ValueError, match="data_width must be 64"):
        GatherFront(params=make_params().replace(data_width=32), mem_bytes=MEM_BYTES)
    with pytest.raises(ValueError, match="index_width must be 32"):
        GatherFront(params=make_params().replace(index_width=16), mem_bytes=MEM_BYTES)
    with pytest.raises(ValueError, match="mem_bytes"):
        GatherFront(params=make_params(), mem_bytes=MEM_BYTES * 2)
    with pytest.raises(TypeError, match="params must be a GatherParams"):
        GatherFront(params=None, mem_bytes=MEM_BYTES)
    with pytest.raises(ValueError, match="addr_width"):
        WordReader(addr_width=0)
    with pytest.raises(TypeError, match="addr_width"):
        PooledWriter(addr_width="8")
    with pytest.raises(ValueError, match="addr_width"):
        IndexFeeder(addr_width=41)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_batches(seed):
    rng = np.random.default_rng(seed)
    cases = [random_case(rng) for _ in range(8)]
    run_commands(cases, seed=seed)


def test_random_batches_cache():
    rng = np.random.default_rng(7)
    cases = [random_case(rng, bounds=BoundsMode.CLAMP) for _ in range(4)]
    run_commands(cases, seed=7, cache_rows=16)


def test_random_batches_chip_drain():
    """The board chip's engine: the cache and a 2-lane drain (a beat in 4 parts)."""
    rng = np.random.default_rng(8)
    cases = [random_case(rng) for _ in range(6)]
    run_commands(cases, seed=8, cache_rows=16, drain_lanes=2)


def test_modes_and_layouts():
    rng = np.random.default_rng(11)
    cases = []
    for mode in PoolMode:
        for requant in (False, True):
            for layout in ("table_major", "sample_major", "overlap"):
                cases.append(random_case(rng, T=2, B=3, mode=mode, requant=requant,
                                         layout=layout, weighted=False if mode != PoolMode.SUM
                                         else None))
    run_commands(cases[::2], seed=11, ready_p=1.0, max_latency=1)
    run_commands(cases[1::2], seed=12)


def _error_cases(rng):
    """[(name, insn, writes, expected (error, detail))] -- every error path, each
    followed (in run order) by a valid command."""
    out = []

    def base(**kw):
        kw.setdefault("T", 3)
        kw.setdefault("B", 2)
        return random_case(rng, **kw)

    def add(name, insn, writes, want):
        out.append((name, insn, writes, want))

    GE, AR = ChipError.GATHER_ERROR, ChipError.ADDR_RANGE
    for name, fields in (("rows0", dict(rows=0)), ("dim0", dict(dim=0)),
                         ("dim_big", dict(dim=LIM.max_dim + 1)), ("base_align", None),
                         ("base_extent", dict(rows=(1 << 32) - 1)),
                         ("base_extent_edge", None)):
        insn, w = base()
        if name == "base_align":
            fields = dict(base=insn.desc_addr + 4)      # not aligned (any base: checked first)
        if name == "base_extent_edge":                  # one row past the end
            fields = dict(base=MEM_BYTES - 8 * 2, rows=3, dim=9)
        put_desc(w, insn, 1, **fields)
        add(name, insn, w, (GE, GatherError.BAD_DESC.value))
    insn, w = base()
    insn = isa.dataclasses.replace(insn, out_tstride=65528)          # table 1 ends outside
    add("out_extent", insn, w, (AR, Operand.OUT_ADDR.value))
    insn, w = base(B=3)
    insn = isa.dataclasses.replace(insn, out_stride=MEM_BYTES // 2 - 8, out_tstride=0,
                                   out_addr=MEM_BYTES // 2 - 64)     # batch rows reach the end
    add("out_extent_batch", insn, w, (AR, Operand.OUT_ADDR.value))
    insn, w = base()
    put_u32(w, insn.off_addr, 0, 3)
    add("offset0", insn, w, (GE, GatherError.BAD_OFFSET.value))
    insn, w = base()
    put_u32(w, insn.off_addr, 0, (1 << 32) - 1)
    add("offset0_huge", insn, w, (GE, GatherError.BAD_OFFSET.value))
    insn, w = base(mode=PoolMode.SUM, bounds=BoundsMode.CLAMP)
    offs = [0, 2, 4, 1, 5, 6, 7]
    for k, v in enumerate(offs):
        put_u32(w, insn.off_addr, k, v)
    add("offset_decreasing", insn, w, (GE, GatherError.BAD_OFFSET.value))
    insn, w = base(bounds=BoundsMode.CLAMP)
    for k, v in enumerate([0, 1, 1 + LIM.max_bag + 1, 12, 13, 14, 15]):
        put_u32(w, insn.off_addr, k, v)
    w.append((insn.idx_addr, bytes(4 * 15)))
    add("bag_too_long", insn, w, (GE, GatherError.BAG_TOO_LONG.value))
    insn, w = base(bounds=BoundsMode.CLAMP)
    for k, v in enumerate([0, 1, 2, (1 << 32) - 1, (1 << 32) - 1, (1 << 32) - 1, (1 << 32) - 1]):
        put_u32(w, insn.off_addr, k, v)
    add("bag_too_long_huge", insn, w, (GE, GatherError.BAG_TOO_LONG.value))
    # the index array ends at the end of memory: bag 2 reads one index past it
    insn, w = base(bounds=BoundsMode.CLAMP, weighted=False)
    for k, v in enumerate([0, 2, 4, 5, 6, 7, 8]):
        put_u32(w, insn.off_addr, k, v)
    insn = isa.dataclasses.replace(insn, idx_addr=MEM_BYTES - 16)
    add("idx_extent", insn, w, (AR, Operand.IDX_ADDR.value))
    insn, w = base(mode=PoolMode.SUM, bounds=BoundsMode.CLAMP, weighted=True)
    for k, v in enumerate([0, 2, 4, 9, 10, 11, 12]):
        put_u32(w, insn.off_addr, k, v)
    w.append((insn.idx_addr, bytes(4 * 12)))
    insn = isa.dataclasses.replace(insn, w_addr=MEM_BYTES - 8)
    add("w_extent", insn, w, (AR, Operand.W_ADDR.value))
    insn, w = base(bounds=BoundsMode.FATAL)
    for k, v in enumerate([0, 2, 4, 5, 6, 7, 8]):
        put_u32(w, insn.off_addr, k, v)
    w.append((insn.idx_addr, bytes(4 * 8)))
    put_u32(w, insn.idx_addr, 3, 1000)                                # bag 1's second index
    add("out_of_range", insn, w, (GE, GatherError.OUT_OF_RANGE.value))
    # an engine error of an earlier bag wins over a later ADDR_RANGE ...
    insn, w = base(bounds=BoundsMode.FATAL, weighted=False)
    for k, v in enumerate([0, 2, 4, 5, 6, 7, 8]):
        put_u32(w, insn.off_addr, k, v)
    insn = isa.dataclasses.replace(insn, idx_addr=MEM_BYTES - 16)
    mem_tail = bytearray(16)
    mem_tail[4:8] = b"\xff\xff\xff\xff"                              # index 1: bag 0
    w.append((MEM_BYTES - 16, bytes(mem_tail)))
    add("earlier_engine_error", insn, w, (GE, GatherError.OUT_OF_RANGE.value))
    # ... and the stop bag's own error wins over an out-of-range index in it or after it
    insn, w = base(bounds=BoundsMode.FATAL, weighted=False)
    for k, v in enumerate([0, 1, 2, 5, 6, 7, 8]):
        put_u32(w, insn.off_addr, k, v)
    insn = isa.dataclasses.replace(insn, idx_addr=MEM_BYTES - 16)
    mem_tail = bytearray(16)
    mem_tail[8:12] = b"\xff\xff\xff\xff"                             # index 2: bag 2
    w.append((MEM_BYTES - 16, bytes(mem_tail)))
    add("stop_bag_wins", insn, w, (AR, Operand.IDX_ADDR.value))
    insn, w = base(bounds=BoundsMode.FATAL)
    for k, v in enumerate([0, 2, 4, 4 + LIM.max_bag + 1, 20, 21, 22]):
        put_u32(w, insn.off_addr, k, v)
    w.append((insn.idx_addr, bytes(4 * 22)))
    put_u32(w, insn.idx_addr, 1, 99)                                  # bag 0
    add("engine_error_before_too_long", insn, w, (GE, GatherError.OUT_OF_RANGE.value))
    return out


def test_error_paths():
    rng = np.random.default_rng(5)
    errs = _error_cases(rng)
    cases = []
    for name, insn, w, want in errs:
        # the case's own check: the model says what the directed case means
        mem = np.zeros(MEM_BYTES, np.uint8)
        apply(mem, insn, w)
        model = ChipModel(MEM_BYTES, LIM)
        model.mem[:] = mem
        st = model.run(0)
        assert (st.error, st.detail) == want, f"{name}: the model says {st}"
        cases.append((insn, w))
        cases.append(random_case(rng, T=2, B=2))      # the unit recovers
    run_commands(cases, seed=5)


def fixed_case(rng, **kw):
    """Two tables, two samples, every bag two lookups of row 0: every port is used."""
    insn, w = random_case(rng, T=2, B=2, bounds=BoundsMode.CLAMP, **kw)
    for k, v in enumerate([0, 2, 4, 6, 8]):
        put_u32(w, insn.off_addr, k, v)
    w.append((MEM_BYTES - 256, bytes(32)))
    w.append((MEM_BYTES - 128, bytes(range(1, 9))))
    return isa.dataclasses.replace(insn, idx_addr=MEM_BYTES - 256, w_addr=MEM_BYTES - 128), w


def test_mem_errors():
    # a memory answering err on any port ends the command with MEM_ERROR (no hang),
    # and the next command runs correctly
    rng = np.random.default_rng(9)
    cases, errs = [], {}
    for port in (P_ENGINE, P_DESC, P_OFF, P_IDX, P_W, P_OUT):
        insn, w = fixed_case(rng, mode=PoolMode.SUM, weighted=True)
        word = {P_ENGINE: range(CODE // 8, MEM_BYTES // 8), P_DESC: range(insn.desc_addr // 8,
                insn.desc_addr // 8 + 1), P_OFF: range(insn.off_addr // 8, insn.off_addr // 8 + 1),
                P_IDX: range(insn.idx_addr // 8, insn.idx_addr // 8 + 1),
                P_W: range(insn.w_addr // 8, insn.w_addr // 8 + 1),
                P_OUT: range(0, MEM_BYTES // 8)}[port]
        errs[len(cases)] = (port, word)
        cases.append((insn, w))
        cases.append(random_case(rng, T=2, B=2))
    run_commands(cases, seed=9, port_errs=errs)


def test_throughput_short_bags():
    # ideal memory, 32 bags of one lookup (dim 8, int8 out): the engine's own
    # rate is about 3.5 cycles a bag (112 cycles busy, measured on the bare
    # engine); the unit adds its descriptor phase and end, not a cost per bag
    rng = np.random.default_rng(3)
    insn, w = random_case(rng, T=4, B=8, mode=PoolMode.SUM, bounds=BoundsMode.CLAMP,
                          weighted=False, requant=True, layout="table_major")
    for t in range(4):
        put_desc(w, insn, t, dim=8)
    for k in range(33):
        put_u32(w, insn.off_addr, k, k)
    w.append((MEM_BYTES - 256, bytes(4 * 32)))
    insn = isa.dataclasses.replace(insn, idx_addr=MEM_BYTES - 256)
    (cycles,) = run_commands([(insn, w)], seed=3, ready_p=1.0, max_latency=1, max_idle=0)
    assert cycles <= 150, cycles
