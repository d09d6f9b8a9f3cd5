# amaranth: UnusedElaboratable=no
"""Issuer (rtl/gather_issue.py): lookups -> word requests, word entries and
tags, against a Python model, under random input gaps and backpressure."""

import random

import pytest

from seedchip.gather_params import GatherParams
from seedchip.rtl.gather_issue import Issuer
from seedchip.sim.clocked import run_clocked, stream_sink, stream_source


def _model(lookups, ratio):
    reqs, words, tags = [], [], []
    for c in lookups:
        lk = c["lk"]
        if lk["row"] and not c["hit"]:
            for w in range(lk["pitch"]):
                last = w == lk["pitch"] - 1
                emit = w % ratio == ratio - 1 or last
                reqs.append(lk["addr"] + w)
                words.append((w % ratio, emit))
                if emit:
                    tags.append((1, 0, w // ratio, lk["bag_end"] and last, lk["index"]))
        else:
            tags.append((0, int(bool(lk["row"] and c["hit"])), 0, lk["bag_end"], lk["index"]))
    return reqs, words, tags


@pytest.mark.parametrize("word_lanes,lanes,cache_rows", [(2, 4, 4), (1, 1, 0), (1, 8, 8)])
def test_against_model(word_lanes, lanes, cache_rows):
    max_dim = 24
    dut = Issuer(GatherParams(addr_width=12, index_width=10, n_tables=4, max_dim=max_dim,
                              data_width=8 * word_lanes, lanes=lanes, cache_rows=cache_rows,
                              inflight=8))
    ratio = lanes // word_lanes
    rng = random.Random(word_lanes * 100 + lanes * 10 + cache_rows)
    lookups = []
    for _ in range(150):
        row = rng.random() < 0.85
        pitch = rng.choice([1, 2, 3, -(-max_dim // word_lanes), rng.randrange(1, -(-max_dim // word_lanes) + 1)])
        lookups.append({"lk": {"row": row, "addr": rng.randrange(4000),
                               "pitch": pitch, "beats": -(-pitch // ratio),
                               "bag_end": rng.random() < 0.4, "index": rng.randrange(1024)},
                        # (the hit check reports hits only for rows)
                        "hit": row and cache_rows > 0 and rng.random() < 0.3,
                        "line": rng.randrange(max(1, cache_rows))})
    want = _model(lookups, ratio)
    got = ([], [], [])
    run_clocked(
        dut,
        stream_source(dut.lookups, lookups, rng, 0.2),
        stream_sink(dut.req, got[0], random.Random(1), 0.7, int, count=len(want[0])),
        stream_sink(dut.words, got[1], random.Random(2), 0.6, lambda p: (p.slot, p.emit),
                    count=len(want[1])),
        stream_sink(dut.tags, got[2], random.Random(3), 0.6,
                    lambda p: (p.has_resp, p.hit, p.k, p.bag_end, p.index), count=len(want[2])))
    assert got[0] == want[0]
    assert got[1] == [(s, int(e)) for s, e in want[1]]
    assert got[2] == [tuple(int(x) for x in t) for t in want[2]]


def test_params_type():
    with pytest.raises(TypeError, match="params must be a GatherParams, not 8"):
        Issuer(8)
