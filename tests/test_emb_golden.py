"""The gather engine's golden model (sim/emb_golden.py) against the
PyTorch-semantics reference, and its bad-input policies."""

from fractions import Fraction

import numpy as np
import pytest

from seedchip.emb_protocol import BoundsMode, GatherError, PoolMode
from seedchip.sim import golden
from seedchip.gather_params import GatherParams
from seedchip.sim.emb_golden import (Cmd, GatherModel, TableDesc,
                                     embedding_bag_ref, layout_tables, make_bag_items,
                                     mean_round, pack_row, unpack_row)

MODES = {PoolMode.SUM: "sum", PoolMode.MEAN: "mean", PoolMode.MAX: "max"}


def _model(params, tables, rng=None, gap=3, base=5, **kw):
    image, descs = layout_tables(tables, params.data_width, base=base, gap=gap, rng=rng, **kw)
    m = GatherModel(params, image)
    for d in descs:
        assert m.write_desc(d)
    return m, descs


def _random_batch(rng, tables, n_bags, max_bag, *, empty=0.2):
    lens = rng.integers(0, max_bag, n_bags, endpoint=True)
    lens[rng.random(n_bags) < empty] = 0
    offsets = np.concatenate([[0], np.cumsum(lens)])
    tabs = rng.integers(0, len(tables), n_bags)
    idx, wts = [], []
    for b in range(n_bags):
        rows = tables[tabs[b]].shape[0]
        idx += rng.integers(0, rows, lens[b]).tolist()
        wts += rng.integers(-128, 128, lens[b]).tolist()
    return tabs, offsets, idx, wts


def test_mean_round_exact():
    for n in (1, 2, 3, 4, 7, 64, 65535):
        for s in list(range(-300, 301)) + [-128 * n, 127 * n, -128 * n + 1, 64 * n, -n // 2]:
            q = Fraction(s, n)
            exp = int(abs(q)) + (abs(q) - int(abs(q)) >= Fraction(1, 2))
            exp = exp if q >= 0 else -exp
            assert int(mean_round(s, n)) == exp, (s, n)
    # ties go away from zero
    assert mean_round([1, -1, 3, -3, 5, -5], 2).tolist() == [1, -1, 2, -2, 3, -3]


@pytest.mark.parametrize("data_width", [8, 16, 24, 32, 64])
def test_row_packing_roundtrip(data_width):
    rng = np.random.default_rng(data_width)
    for dim in (1, 2, 3, 7, 8, 9, 31, 64):
        row = rng.integers(-128, 128, dim)
        words = pack_row(row, data_width)
        assert len(words) == -(-dim // (data_width // 8))
        assert all(0 <= w < 1 << data_width for w in words)
        assert (unpack_row(words, dim, data_width) == row).all()
    # little-endian: element 0 in the low byte
    assert pack_row([1, -1], 16) == [0xFF01]


@pytest.mark.parametrize("data_width", [8, 16, 24, 32, 64])
@pytest.mark.parametrize("mode,weighted", [(PoolMode.SUM, False), (PoolMode.SUM, True),
                                           (PoolMode.MEAN, False), (PoolMode.MAX, False)])
def test_golden_matches_pytorch_semantics(data_width, mode, weighted):
    rng = np.random.default_rng(1000 * data_width + 10 * mode.value + weighted)
    params = GatherParams(data_width=data_width, addr_width=20, n_tables=4, max_dim=70,
                          max_bag=12, lanes=data_width // 8, cache_rows=0)
    dims = [1, 70, int(rng.integers(2, 70)), data_width // 8 + 1]
    tables = [rng.integers(-128, 128, (int(rng.integers(1, 30)), d)) for d in dims]
    tables[1][0, :] = -128              # extremes in the sum/mean/max
    m, descs = _model(params, tables, rng=rng)
    for trial in range(4):
        tabs, offsets, idx, wts = _random_batch(rng, tables, 12, params.max_bag)
        if trial == 0:
            # every bag the extreme row, max_bag times: -128 * max_bag
            tabs[:] = 1
            offsets = np.arange(13) * params.max_bag
            idx = [0] * (12 * params.max_bag)
            wts = [-128] * len(idx)
        items = make_bag_items(tabs, offsets)
        cmd = Cmd(mode=mode, weighted=weighted)
        res = m.run_batch(cmd, items, list(zip(idx, wts)))
        assert res.error == GatherError.NONE
        assert len(res.outputs) == len(tabs)
        for b, t in enumerate(tabs):
            lo, hi = offsets[b], offsets[b + 1]
            ref = embedding_bag_ref(tables[t], idx[lo:hi], [0, hi - lo], MODES[mode],
                                    wts[lo:hi] if weighted else None)[0]
            assert (res.outputs[b] == ref).all(), (b, res.outputs[b], ref)
        # every word read lies in its table's extent, pitch words per lookup
        for a, t in res.requests:
            lo_a, hi_a = descs[t].extent(data_width)
            assert lo_a <= a < hi_a
        assert len(res.requests) == sum(descs[t].pitch(data_width) * (offsets[b + 1] - offsets[b])
                                        for b, t in enumerate(tabs))
        assert res.lookups == offsets[-1] and res.indices == offsets[-1]


def test_pytorch_ref_whole_batch():
    """embedding_bag_ref on a multi-bag batch, hand-checked."""
    w = np.array([[1, -2], [3, 4], [-5, 6]])
    out = embedding_bag_ref(w, [0, 1, 2, 2], [0, 2, 2, 4], "sum")
    assert out.tolist() == [[4, 2], [0, 0], [-10, 12]]
    assert embedding_bag_ref(w, [0, 1], [0, 2], "mean").tolist() == [[2, 1]]
    assert embedding_bag_ref(w, [0, 2], [0, 2], "mean").tolist() == [[-2, 2]]
    assert embedding_bag_ref(w, [0, 2], [0, 2], "max").tolist() == [[1, 6]]
    assert embedding_bag_ref(w, [1, 2], [0, 2], "sum", [2, -1]).tolist() == [[11, 2]]


def test_requant_uses_shared_golden():
    rng = np.random.default_rng(5)
    params = GatherParams(data_width=16, addr_width=16, n_tables=2, max_dim=16, max_bag=8,
                          lanes=2, cache_rows=0)
    tables = [rng.integers(-128, 128, (10, 13)), rng.integers(-128, 128, (4, 16))]
    m, _ = _model(params, tables, multipliers=[1518500250, 1 << 30], shifts=[3, 0])
    items = make_bag_items([0, 1], [0, 5, 8])
    idx = [(int(i), 0) for i in (1, 2, 3, 3, 9, 0, 1, 3)]
    raw = m.run_batch(Cmd(), items, idx)
    q = m.run_batch(Cmd(requant=True), items, idx)
    assert (q.outputs[0] == golden.requantize(raw.outputs[0], 1518500250, 3)).all()
    assert (q.outputs[1] == golden.requantize(raw.outputs[1], 1 << 30, 0)).all()
    assert all(((-128 <= o) & (o <= 127)).all() for o in q.outputs)


def _one_table(rows=6, dim=5):
    params = GatherParams(data_width=16, addr_width=12, n_tables=4, max_dim=32, max_bag=4,
                          lanes=2, cache_rows=0)
    rng = np.random.default_rng(rows * 100 + dim)
    tables = [rng.integers(-128, 128, (rows, dim))]
    m, descs = _model(params, tables)
    return m, tables[0], descs[0]


@pytest.mark.parametrize("bad", ["all_ones", "rows", "rows+1", "huge"])
@pytest.mark.parametrize("bounds", list(BoundsMode))
def test_out_of_range_policies(bad, bounds):
    m, tab, desc = _one_table()
    bad_idx = {"all_ones": (1 << 32) - 1, "rows": 6, "rows+1": 7, "huge": 1 << 31}[bad]
    # bag 0: [1, 2], bag 1: [3, bad, 0], bag 2: [5]
    idx = [(1, 0), (2, 0), (3, 0), (bad_idx, 0), (0, 0), (5, 0)]
    items = make_bag_items([0, 0, 0], [0, 2, 5, 6])
    res = m.run_batch(Cmd(mode=PoolMode.MEAN, bounds=bounds), items, idx)
    assert res.bag_items == 4 and res.indices == 6
    if bounds == BoundsMode.FATAL:
        assert (res.error, res.error_bag, res.error_index) == (GatherError.OUT_OF_RANGE, 1, bad_idx)
        assert len(res.outputs) == 1
        assert (res.lookups, res.clamped, res.skipped) == (3, 0, 0)
        assert m.error == GatherError.OUT_OF_RANGE
        with pytest.raises(RuntimeError, match="cleared"):
            m.run_batch(Cmd(), items, idx)
        m.clear()
        return
    assert res.error == GatherError.NONE and len(res.outputs) == 3
    if bounds == BoundsMode.CLAMP:
        assert (res.lookups, res.clamped, res.skipped) == (6, 1, 0)
        exp = mean_round(tab[[3, 0, 0]].sum(0), 3)
        assert (0 + desc.base, 0) in res.requests       # row 0 read for the clamped index
    else:
        assert (res.lookups, res.clamped, res.skipped) == (5, 0, 1)
        exp = mean_round(tab[[3, 0]].sum(0), 2)           # skipped: not counted for the mean
    assert (res.outputs[1] == exp).all()
    assert m.skipped == res.skipped and m.clamped == res.clamped


def test_all_skipped_bag_is_zeros():
    m, tab, _ = _one_table()
    items = make_bag_items([0, 0], [0, 2, 3])
    res = m.run_batch(Cmd(mode=PoolMode.MAX, bounds=BoundsMode.SKIP), items,
                      [(9, 0), (6, 0), (1, 0)])
    assert (res.outputs[0] == 0).all() and (res.outputs[1] == tab[1]).all()
    assert res.skipped == 2 and res.lookups == 1


def test_bag_level_errors():
    m, tab, _ = _one_table()
    idx = [(i % 6, 0) for i in range(20)]
    # unknown table (>= n_tables, and a valid id never written)
    for t in (200, 3):
        res = m.run_batch(Cmd(), make_bag_items([0, t, 0], [0, 1, 2, 3]), idx)
        assert (res.error, res.error_bag, res.error_index) == (GatherError.BAD_TABLE, 1, t)
        assert len(res.outputs) == 1 and res.indices == 3 and res.lookups == 1
        m.clear()
    # offsets[0] != 0
    res = m.run_batch(Cmd(), make_bag_items([0, 0], [2, 3, 4]), idx)
    assert (res.error, res.error_bag, res.error_index) == (GatherError.BAD_OFFSET, 0, 2)
    assert res.outputs == [] and res.indices == 4 and res.requests == []
    m.clear()
    # backwards: offsets [0, 3, 1, 4]; consumes up to the largest offset
    res = m.run_batch(Cmd(), make_bag_items([0, 0, 0], [0, 3, 1, 4]), idx)
    assert (res.error, res.error_bag, res.error_index) == (GatherError.BAD_OFFSET, 1, 1)
    assert len(res.outputs) == 1 and res.indices == 4
    m.clear()
    # too long (max_bag = 4)
    res = m.run_batch(Cmd(), make_bag_items([0, 0], [0, 4, 9]), idx)
    assert (res.error, res.error_bag, res.error_index) == (GatherError.BAG_TOO_LONG, 1, 5)
    assert len(res.outputs) == 1 and res.indices == 9
    m.clear()
    # bad commands: reserved modes, weights with mean/max
    for cmd in (Cmd(mode=3), Cmd(bounds=3), Cmd(mode=PoolMode.MEAN, weighted=True),
                Cmd(mode=PoolMode.MAX, weighted=True)):
        res = m.run_batch(cmd, make_bag_items([0], [0, 2]), idx)
        assert (res.error, res.error_bag, res.error_index) == (GatherError.BAD_CMD, 0, 0)
        assert res.outputs == [] and res.indices == 2
        m.clear()
    # a batch with no bags
    res = m.run_batch(Cmd(), [(0, 0, 1)], idx)
    assert res.error == GatherError.NONE and res.outputs == [] and res.indices == 0


def test_descriptor_checks():
    params = GatherParams(data_width=32, addr_width=10, n_tables=4, max_dim=40, max_bag=4,
                          lanes=4, cache_rows=0)
    m = GatherModel(params, [0] * 1024)
    assert m.write_desc(TableDesc(table=0, base=0, rows=1, dim=40))
    assert m.write_desc(TableDesc(table=1, base=1024 - 10, rows=1, dim=40))   # ends at 2**10
    for d in (TableDesc(table=4, base=0, rows=1, dim=4),
              TableDesc(table=2, base=0, rows=0, dim=4),
              TableDesc(table=2, base=0, rows=1, dim=0),
              TableDesc(table=2, base=0, rows=1, dim=41),
              TableDesc(table=1, base=1024 - 9, rows=1, dim=40),
              TableDesc(table=2, base=0, rows=(1 << 32) - 1, dim=1)):
        assert not m.write_desc(d)
        assert (m.error, m.error_index) == (GatherError.BAD_DESC, d.table)
        m.clear()
    assert 1 not in m.descs and 0 in m.descs          # a refused write invalidates the table


def test_mem_error():
    """A table running past the memory: MEM_ERROR at the first lookup that
    reads outside; earlier bags still come out; it beats a later input error."""
    params = GatherParams(data_width=16, addr_width=12, n_tables=2, max_dim=8, max_bag=4,
                          lanes=2, cache_rows=0)
    m = GatherModel(params, [0x0102] * 100)
    assert m.write_desc(TableDesc(table=0, base=90, rows=10, dim=4))   # rows 0..4 inside
    idx = [(1, 0), (4, 0), (5, 0), (0, 0), (99, 0)]
    res = m.run_batch(Cmd(), make_bag_items([0, 0, 0], [0, 2, 4, 5]), idx)
    assert (res.error, res.error_bag, res.error_index) == (GatherError.MEM_ERROR, 1, 5)
    assert len(res.outputs) == 1
    assert any(a >= 100 for a, _ in res.requests)


def test_cache_model():
    """The exact hot-row cache simulation: a hit reads no memory and gives
    the same result as without a cache; conflicts in a direct-mapped line;
    a descriptor write empties the cache; hits + misses = lookups."""
    rng = np.random.default_rng(7)
    tables = [rng.integers(-128, 128, (40, 5)), rng.integers(-128, 128, (9, 3))]
    engine = GatherParams(data_width=16, n_tables=2, max_dim=8, lanes=2, cache_rows=0)
    plain, _ = _model(engine, tables)
    cached, descs = _model(engine.replace(lanes=8, cache_rows=4), tables)
    assert cached.p.lanes == 8 and cached.p.word_lanes == 2
    items = make_bag_items([0, 1, 0], [0, 4, 6, 9])
    # line 3 holds (0, 3), (0, 7) and (1, 2) in turn: rows 3, 3 (hit), 7, 3 (conflict
    # misses); table 1 rows 2, 2 (hit); table 0 rows 1, 1 (hit, line 1), 7
    idx = [(3, 1), (3, 1), (7, 1), (3, 1), (2, 1), (2, 1), (1, 1), (1, 1), (7, 1)]
    r0 = plain.run_batch(Cmd(), items, idx)
    r1 = cached.run_batch(Cmd(), items, idx)
    assert all((a == b).all() for a, b in zip(r0.outputs, r1.outputs))
    assert (r1.cache_hits, r1.cache_misses) == (3, 6)
    assert r1.cache_hits + r1.cache_misses == r1.lookups == 9
    pitch = descs[0].pitch(16)
    assert len(r1.requests) == 5 * pitch + 1 * descs[1].pitch(16)
    r2 = cached.run_batch(Cmd(), items, idx)
    assert r2.cache_hits == 4            # line 1 still holds row 1: both lookups hit
    cached.write_desc(descs[1])
    r3 = cached.run_batch(Cmd(), items, idx)
    assert (r3.cache_hits, r3.cache_misses) == (r1.cache_hits, r1.cache_misses)


def test_model_takes_the_engine_parameters():
    """The golden model reads the engine's own parameter object, nothing copied."""
    with pytest.raises(TypeError, match="params must be a GatherParams, not"):
        GatherModel({"data_width": 16}, [])
