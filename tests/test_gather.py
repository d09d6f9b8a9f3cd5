# amaranth: UnusedElaboratable=no
"""The EmbeddingBag gather engine (rtl/gather.py).

* parameter validation;
* Amaranth-simulator smoke tests on odd word widths (8, 24, 64 bits) with a
  Python memory, against the golden model;
* cocotb tests (sim/gather_tb.py) under Verilator on two backends: on-chip
  RAM (32-bit words) and the SDR SDRAM controller with the pin-level model
  (IS42S16160, 16-bit, 7 ns, CL3); the address monitor runs in every one;
* the same with a 64-bit datapath and the hot-row cache (``*c`` configs:
  16 lines on the on-chip RAM, so lines conflict; 64 on the SDRAM), plus
  Zipf(1.05) lookups and stale-cache checks (descriptor rewrite, cache_clear);
* the throughput measurement (sim/gather_bench.py) on a small case, and
  uniform vs Zipf with the cache.

``SIM=icarus`` changes the simulator, ``SEED=<n>``/``SEED=random`` the base
seed, ``WAVES=1`` dumps waveforms into ``build/sim/seedchip_gather-*/``.
"""

import collections

import numpy as np
import pytest

from seedchip.emb_protocol import BagLayout, BoundsMode, CmdLayout, GatherError, PoolMode
from seedchip.gather_params import GatherParams
from seedchip.rtl.gather import GatherEngine
from seedchip.sim import runner
from seedchip.sim.emb_golden import Cmd, GatherModel, layout_tables, make_bag_items
from seedchip.sim.gather_tb import TOPLEVEL, GatherSimConfig, make_top
from seedchip.sim.tb import LayoutCodec
from seedchip.sim.clocked import run_clocked

#: the engines: one memory word per beat, no cache, on the on-chip RAM (32-bit)
#: and on the SDRAM (16-bit; the backend binds the memory geometry)
_ONCHIP = GatherParams(data_width=32, lanes=4, cache_rows=0, n_tables=4, max_dim=72, max_bag=20,
                       inflight=32)
_SDRAM = GatherParams(data_width=16, lanes=2, cache_rows=0, n_tables=8, max_dim=64, max_bag=32,
                      inflight=32)
CONFIGS = {
    "onchip32": GatherSimConfig(backend="onchip", ram_depth=4096, params=_ONCHIP),
    "sdram16": GatherSimConfig(backend="sdram", chip="IS42S16160", period_ns=7, cas_latency=3,
                               params=_SDRAM),
    # hot-row cache on, 64-bit datapath: a small cache (conflicts) on the
    # on-chip RAM, 2 words per beat; the SDRAM one, 4 words per beat, with
    # the board's two I/O registers in the read path (read_delay) and the
    # chip's 2-lane drain (a beat in 4 parts)
    "onchip32c": GatherSimConfig(backend="onchip", ram_depth=4096,
                                 params=_ONCHIP.replace(lanes=8, cache_rows=16)),
    "sdram16c": GatherSimConfig(backend="sdram", chip="IS42S16160", period_ns=7, cas_latency=3,
                                read_delay=2, params=_SDRAM.replace(lanes=8, cache_rows=64,
                                                                    drain_lanes=2)),
    # more tables than cache lines: the same row of tables t and t + 4 shares a
    # line (0x9E5 is odd, so with n_tables <= cache_rows it never does), the
    # one case where a hit check must compare the table id; a 4-lane drain
    "onchip32c4": GatherSimConfig(backend="onchip", ram_depth=4096,
                                  params=_ONCHIP.replace(n_tables=8, lanes=8, cache_rows=4,
                                                         drain_lanes=4)),
}
#: the cocotb tests each configuration runs (a selection: the cache tests
#: need a cache, the slow ones run where they say most);
#: test_every_testbench_test_runs keeps it in step with the testbench
TESTCASES = {
    "onchip32": ["test_random", "test_patterns", "test_bounds", "test_bad_input",
                 "test_mem_error", "test_output_stall", "test_one_bank", "test_throughput"],
    "sdram16": ["test_random", "test_patterns", "test_bounds", "test_mem_error",
                "test_output_stall", "test_one_bank"],
    "onchip32c": ["test_random", "test_patterns", "test_bounds", "test_bad_input",
                  "test_mem_error", "test_output_stall", "test_zipf", "test_desc_rewrite",
                  "test_cache_collide"],
    "sdram16c": ["test_random", "test_patterns", "test_bounds", "test_mem_error",
                 "test_output_stall", "test_zipf", "test_desc_rewrite"],
    "onchip32c4": ["test_cache_collide", "test_random"],
}




def test_every_testbench_test_runs():
    """Every cocotb test of sim/gather_tb.py runs on some configuration, and
    every name here is one of them: a new test cannot be forgotten."""
    tests = {t for t in runner.cocotb_tests("seedchip.sim.gather_tb") if t.startswith("test_")}
    chosen = {t for names in TESTCASES.values() for t in names}
    assert chosen == tests, (sorted(tests - chosen), sorted(chosen - tests))


# -- parameters ---------------------------------------------------------------------
# (their validation: tests/test_gather_params.py)

def test_takes_one_parameter_object():
    p = GatherParams(data_width=16, max_dim=60, lanes=8, cache_rows=64)
    e = GatherEngine(p)
    assert e.params is p
    for name in ("data_width", "addr_width", "n_tables", "max_dim", "max_bag", "inflight",
                 "index_width", "lanes", "cache_rows", "word_lanes", "ratio", "max_pitch",
                 "max_beats"):
        assert getattr(e, name) == getattr(p, name), name
    with pytest.raises(TypeError, match=r"params must be a GatherParams, not \{'lanes': 8\}"):
        GatherEngine({"lanes": 8})
    with pytest.raises(TypeError):
        GatherEngine(lanes=8)


def test_ports():
    e = GatherEngine(GatherParams(data_width=24, addr_width=14, index_width=20, lanes=3,
                                  max_dim=128, cache_rows=0))
    assert e.lanes == 3 and e.max_pitch == 43
    assert len(e.mem.req.payload.addr) == 14 and len(e.mem.resp.payload.rdata) == 24
    assert len(e.indices.payload.index) == 20
    assert len(e.pooled.payload.data) == 3
    c = GatherEngine(GatherParams(data_width=16, max_dim=60, lanes=8, cache_rows=64))
    assert (c.lanes, c.word_lanes, c.ratio, c.max_pitch, c.max_beats) == (8, 2, 4, 30, 8)
    assert len(c.pooled.payload.data) == 8 and len(c.mem.resp.payload.rdata) == 16
    assert len(c.cache_hits) == 32 and len(c.cache_misses) == 32 and len(c.cache_clear) == 1


# -- Amaranth simulator: odd word widths ----------------------------------------------------

def _pysim(params, image, descs, batches, *, seed=0, mem_latency=3, bp=0.3, idle=0.2,
           max_cycles=30000):
    """Run ``batches`` ((Cmd, items, indices) with indices trimmed to what each
    consumes) through the engine with a Python memory of fixed latency.
    Errors are cleared between batches. Returns beats, statuses, counters."""
    dut = GatherEngine(params)
    rng = np.random.default_rng(seed)
    codecs = {"desc": LayoutCodec(dut.desc_layout), "cmd": LayoutCodec(CmdLayout),
              "bags": LayoutCodec(BagLayout), "indices": LayoutCodec(dut.index_layout)}
    c_out = LayoutCodec(dut.pooled_layout)
    out = {"beats": [], "status": []}
    streams = {n: getattr(dut, n) for n in codecs}

    async def bench(ctx):
        qs = {n: collections.deque() for n in streams}
        qs["desc"].extend(codecs["desc"].pack(d.to_wire()) for d in descs)
        presenting = {n: False for n in streams}
        mem_q = collections.deque()
        pending = list(batches)
        for cyc in range(max_cycles):
            quiet = not any(qs.values()) and not any(presenting.values())
            if quiet and cyc > 8 and not ctx.get(dut.busy):
                out["status"].append((GatherError(ctx.get(dut.error)), ctx.get(dut.error_bag),
                                      ctx.get(dut.error_index)))
                if not pending:
                    break
                if ctx.get(dut.error) != GatherError.NONE:
                    ctx.set(dut.clear, 1)
                    await ctx.tick()
                    ctx.set(dut.clear, 0)
                cmd, items, idx = pending.pop(0)
                qs["cmd"].append(codecs["cmd"].pack(cmd.to_wire()))
                qs["bags"].extend(codecs["bags"].pack({"table": t, "offset": o, "last": last})
                                  for t, o, last in items)
                qs["indices"].extend(codecs["indices"].pack({"index": i, "weight": w})
                                     for i, w in idx)
            for n, s in streams.items():
                if not presenting[n] and qs[n] and rng.random() >= idle:
                    presenting[n] = True
                ctx.set(s.valid, int(presenting[n]))
                if presenting[n]:
                    ctx.set(s.payload.as_value(), qs[n][0])
            ctx.set(dut.pooled.ready, int(rng.random() >= bp))
            ctx.set(dut.mem.req.ready, int(rng.random() >= 0.1))
            head = mem_q[0] if mem_q and mem_q[0][0] <= cyc else None
            ctx.set(dut.mem.resp.valid, int(head is not None))
            if head is not None:
                ctx.set(dut.mem.resp.payload.rdata, head[1])
                ctx.set(dut.mem.resp.payload.err, head[2])
            _, _, *vals = await ctx.tick().sample(
                *[x for s in streams.values() for x in (s.valid, s.ready)],
                dut.pooled.valid, dut.pooled.ready, dut.pooled.payload.as_value(),
                dut.mem.req.valid, dut.mem.req.ready, dut.mem.req.payload.addr,
                dut.mem.resp.valid, dut.mem.resp.ready)
            for k, n in enumerate(streams):
                if vals[2 * k] and vals[2 * k + 1]:
                    qs[n].popleft()
                    presenting[n] = False
            pv, pr, pp, rv, rr, ra, sv, sr = vals[2 * len(streams):]
            if pv and pr:
                out["beats"].append(c_out.unpack(pp))
            if sv and sr:
                mem_q.popleft()
            if rv and rr:
                err = ra >= len(image)
                mem_q.append((cyc + mem_latency, 0 if err else image[ra], int(err)))
        else:
            raise AssertionError(f"no end after {max_cycles} cycles")
        out["counters"] = {k: ctx.get(getattr(dut, k)) for k in ("clamped", "skipped", "lookups")}

    run_clocked(dut, bench)
    return out


@pytest.mark.parametrize("data_width,drain_lanes", [(8, None), (24, None), (64, None),
                                                    (24, 1), (64, 2), (64, 4)])
def test_pysim_smoke(data_width, drain_lanes):
    """Every pooling mode, weights, requantization, bounds modes and a fatal
    error, on word widths the cocotb builds do not cover (lanes 1, 3, 8), and
    drains narrower than the word (a beat in 2, 3 and 4 parts)."""
    rng = np.random.default_rng(data_width)
    lanes = data_width // 8
    params = GatherParams(data_width=data_width, addr_width=12, n_tables=3, max_dim=20,
                          max_bag=5, inflight=8, index_width=16, lanes=lanes, cache_rows=0,
                          drain_lanes=drain_lanes)
    tables = [rng.integers(-128, 128, (7, 5)), rng.integers(-128, 128, (3, 20)),
              rng.integers(-128, 128, (2, lanes + 1))]
    image, descs = layout_tables(tables, data_width, base=3, gap=2, rng=rng,
                                 multipliers=[1 << 30, 1518500250, 1 << 30], shifts=[2, 5, 0])
    model = GatherModel(params, image)
    for d in descs:
        assert model.write_desc(d)
    items = make_bag_items([0, 1, 0, 2, 1], [0, 2, 2, 7, 8, 13])
    idx = [(int(i), int(w)) for i, w in zip(rng.integers(0, 2, 13), rng.integers(-128, 128, 13))]
    idx[1] = (5, -7)
    bad = list(idx)
    bad[4] = ((1 << 16) - 1, 1)
    batches = [(Cmd(), items, idx), (Cmd(mode=PoolMode.MEAN), items, idx),
               (Cmd(mode=PoolMode.MAX, requant=True), items, idx), (Cmd(weighted=True), items, idx),
               (Cmd(mode=PoolMode.MEAN, requant=True), items, idx),
               (Cmd(bounds=BoundsMode.SKIP, mode=PoolMode.MEAN), items, bad),
               (Cmd(bounds=BoundsMode.CLAMP), items, bad),
               (Cmd(), items, bad), (Cmd(), items, idx)]
    exp_bags, exp_status = [], []
    for cmd, it, ix in batches:
        res = model.run_batch(cmd, it, ix)
        exp_bags += [[int(v) for v in o] for o in res.outputs]
        exp_status.append((res.error, res.error_bag, res.error_index))
        model.clear()
    out = _pysim(params, image, descs, batches, seed=data_width)
    got, cur = [], []
    for b in out["beats"]:
        cur += b["data"]
        if b["last"]:
            got.append(cur)
            cur = []
    assert len(got) == len(exp_bags)
    for g, e in zip(got, exp_bags):
        assert g[:len(e)] == e and not any(g[len(e):])
    assert out["status"][1:] == exp_status
    assert out["counters"] == {"clamped": model.clamped, "skipped": model.skipped,
                               "lookups": model.lookups}


# -- cocotb ------------------------------------------------------------------------------


@pytest.mark.parametrize("config_name,testcase",
                         [(c, t) for c in CONFIGS for t in TESTCASES[c]])
def test_gather_cocotb(sim, config_name, testcase):
    result = runner.run_cocotb(make_top, TOPLEVEL, "seedchip.sim.gather_tb",
                               CONFIGS[config_name], sim=sim, testcase=testcase, tag=testcase)
    runner.check_cocotb(result)
    assert [c.name for c in result.cases] == [testcase]


def test_gather_bench(sim):
    """The measurement runs on the SDRAM build and 64-byte rows reach at least
    60 % of the pin limit (one word per cycle)."""
    from seedchip.sim.gather_bench import run_gather_bench

    out = run_gather_bench(CONFIGS["sdram16"], dims=[64], bag_sizes=[8], bags=16,
                           dists=["uniform"], min_lookups=0, warm=0, sim=sim)
    (r,) = out["results"]
    assert r["lookups"] == 128 and r["words"] == 128 * 32
    assert r["words_per_cycle"] >= 0.6, r


def test_gather_bench_cache(sim):
    """With the cache and a 64-bit datapath, Zipf lookups after a warm-up hit
    and beat uniform ones; every hit is a lookup that read no memory."""
    from seedchip.sim.gather_bench import run_gather_bench

    out = run_gather_bench(CONFIGS["sdram16c"], dims=[32], bag_sizes=[8], bags=16,
                           min_lookups=0, rows=1024, warm=256, sim=sim)
    u, z = out["results"]
    for r in (u, z):
        assert r["cache_hits"] + r["cache_misses"] == r["lookups"] == 128
        assert r["words"] == r["cache_misses"] * r["pitch"]
    assert z["hit_rate"] > 0.3 and z["zipf_over_uniform"] > 1.0, out
