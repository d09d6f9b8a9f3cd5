"""sim/tb.py pieces that need no simulator: the payload codecs."""

import numpy as np
import pytest

from seedchip import protocol
from seedchip.config import DEFAULT_CONFIG, SMALL_CONFIG
from seedchip.sim.tb import LayoutCodec


@pytest.mark.parametrize("config", [SMALL_CONFIG, DEFAULT_CONFIG], ids=["small", "default"])
def test_array_codec_matches_protocol(config):
    rng = np.random.default_rng(0)
    for layout in (protocol.a_word_layout(config), protocol.b_word_layout(config)):
        codec = LayoutCodec(layout)
        rows = rng.integers(-128, 127, size=(50, layout.length), endpoint=True)
        rows[0] = -128
        rows[1] = 127
        packed = codec.pack_array_rows(rows)
        for r, bits in zip(rows.tolist(), packed):
            assert bits == protocol.pack(layout, r) == codec.pack(r)
            assert codec.unpack(bits) == r == protocol.unpack(layout, bits)


def test_struct_codecs_match_protocol():
    rng = np.random.default_rng(1)
    cmd = LayoutCodec(protocol.GemmCmdLayout)
    for _ in range(50):
        v = {"m": int(rng.integers(0, 1 << 16)), "k": int(rng.integers(0, 1 << 16)),
             "n": int(rng.integers(0, 1 << 16)), "params": int(rng.integers(2)),
             "requant": int(rng.integers(2)), "relu": int(rng.integers(2))}
        bits = cmd.pack(v)
        assert bits == protocol.pack(protocol.GemmCmdLayout, v)
        assert cmd.unpack(bits) == v == protocol.unpack(protocol.GemmCmdLayout, bits)
    par = LayoutCodec(protocol.ParamLayout)
    for v in ({"bias": -(1 << 31), "multiplier": (1 << 31) - 1, "shift": 31},
              {"bias": (1 << 31) - 1, "multiplier": -(1 << 31), "shift": 0},
              {"bias": -1, "multiplier": -1, "shift": 17}):
        bits = par.pack(v)
        assert bits == protocol.pack(protocol.ParamLayout, v)
        assert par.unpack(bits) == v
    out = LayoutCodec(protocol.OutLayout)
    for v in ({"data": -128, "last": 1}, {"data": (1 << 31) - 1, "last": 0},
              {"data": -(1 << 31), "last": 1}):
        assert out.unpack(protocol.pack(protocol.OutLayout, v)) == v


def test_codec_rejects_bad_values():
    codec = LayoutCodec(protocol.a_word_layout(SMALL_CONFIG))
    with pytest.raises(ValueError, match="expected 4 elements"):
        codec.pack([1, 2, 3])
    with pytest.raises(KeyError, match="unknown field"):
        LayoutCodec(protocol.ParamLayout).pack({"bias": 1, "scale": 2})
