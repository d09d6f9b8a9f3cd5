"""The gather engine's one parameter object (gather_params.py)."""

import dataclasses

import pytest

from seedchip.gather_params import GatherParams


@pytest.mark.parametrize("name,value,exc,msg", [
    ("data_width", 12, ValueError, "data_width must be a multiple of 8, not 12"),
    ("data_width", 72, ValueError, "data_width must be in range 8..64, not 72"),
    ("data_width", 16.0, TypeError, "data_width must be an integer, not 16.0"),
    ("addr_width", 0, ValueError, "addr_width must be in range 1..40, not 0"),
    ("addr_width", 41, ValueError, "addr_width must be in range 1..40, not 41"),
    ("n_tables", 0, ValueError, "n_tables must be in range 1..256, not 0"),
    ("n_tables", 257, ValueError, "n_tables must be in range 1..256, not 257"),
    ("n_tables", True, TypeError, "n_tables must be an integer, not True"),
    ("max_dim", 0, ValueError, "max_dim must be in range 1..1024, not 0"),
    ("max_dim", 1025, ValueError, "max_dim must be in range 1..1024, not 1025"),
    ("max_bag", 0, ValueError, "max_bag must be in range 1..65535, not 0"),
    ("max_bag", 65536, ValueError, "max_bag must be in range 1..65535, not 65536"),
    ("inflight", 3, ValueError, "inflight must be in range 4..256, not 3"),
    ("inflight", 257, ValueError, "inflight must be in range 4..256, not 257"),
    ("index_width", 0, ValueError, "index_width must be in range 1..32, not 0"),
    ("index_width", 33, ValueError, "index_width must be in range 1..32, not 33"),
    ("index_width", "32", TypeError, "index_width must be an integer, not '32'"),
    ("lanes", 0, ValueError, "lanes must be in range 1..8, not 0"),
    ("lanes", 9, ValueError, "lanes must be in range 1..8, not 9"),
    ("lanes", 3, ValueError, "lanes must be a multiple of the memory word's 2 byte(s), not 3"),
    ("lanes", None, TypeError, "lanes must be an integer, not None"),
    ("lanes", 8.0, TypeError, "lanes must be an integer, not 8.0"),
    ("drain_lanes", 0, ValueError, "drain_lanes must be in range 1..8, not 0"),
    ("drain_lanes", 16, ValueError, "drain_lanes must be in range 1..8, not 16"),
    ("drain_lanes", 3, ValueError, "drain_lanes must divide lanes (8), not 3"),
    ("drain_lanes", 2.0, TypeError, "drain_lanes must be an integer, not 2.0"),
    ("cache_rows", 3, ValueError, "cache_rows must be 0 or a power of 2 from 2, not 3"),
    ("cache_rows", 1, ValueError, "cache_rows must be 0 or a power of 2 from 2, not 1"),
    ("cache_rows", 8192, ValueError, "cache_rows must be in range 0..4096, not 8192"),
    ("cache_rows", -2, ValueError, "cache_rows must be in range 0..4096, not -2"),
])
def test_bad_values_name_the_parameter_and_range(name, value, exc, msg):
    with pytest.raises(exc) as info:
        GatherParams(**{name: value})
    assert str(info.value) == msg
    # the same check when a copy changes it
    with pytest.raises(exc):
        GatherParams().replace(**{name: value})


def test_defaults_are_the_board_engine():
    """The defaults: the board build's engine (``--gather``) on the ULX3S's
    16-bit SDRAM (the controller's port: 25 address bits)."""
    p = GatherParams()
    assert dataclasses.asdict(p) == dict(lanes=8, drain_lanes=None, cache_rows=2048, n_tables=8, max_dim=64,
                                         max_bag=32, inflight=32, index_width=32,
                                         data_width=16, addr_width=25)


def test_drain_width():
    """``drain_lanes`` None is a drain as wide as the beat."""
    assert (GatherParams().drain_width, GatherParams().drain_every) == (8, 1)
    p = GatherParams(drain_lanes=2)
    assert (p.drain_width, p.drain_every) == (2, 4)
    assert GatherParams.from_dict(p.to_dict()) == p


def test_frozen_and_hashable():
    p = GatherParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lanes = 4
    assert hash(p) == hash(GatherParams()) and p == GatherParams()
    assert p != p.replace(lanes=4)


def test_derived_figures():
    p = GatherParams(data_width=16, max_dim=60, lanes=8, cache_rows=64)
    assert (p.word_lanes, p.ratio, p.max_pitch, p.max_beats) == (2, 4, 30, 8)
    q = GatherParams(data_width=24, lanes=3, max_dim=128)
    assert (q.word_lanes, q.ratio, q.max_pitch, q.max_beats) == (3, 1, 43, 43)


def test_with_memory_binds_only_the_geometry():
    p = GatherParams(lanes=8, cache_rows=16, max_dim=40)
    q = p.with_memory(data_width=32, addr_width=13)
    assert (q.data_width, q.addr_width) == (32, 13)
    assert q == p.replace(data_width=32, addr_width=13)
    assert q.with_memory(data_width=16, addr_width=25) == p
    # the datapath must still hold whole memory words
    with pytest.raises(ValueError, match="lanes must be a multiple of the memory word's 8"):
        GatherParams(lanes=4).with_memory(data_width=64, addr_width=20)
    with pytest.raises(TypeError):
        p.with_memory(32, 13)


def test_dict_round_trip():
    p = GatherParams(lanes=2, cache_rows=0, n_tables=2, max_dim=32, max_bag=16, inflight=16)
    assert GatherParams.from_dict(p.to_dict()) == p
    assert GatherParams.from_dict({"lanes": 4}) == GatherParams(lanes=4)
    with pytest.raises(ValueError, match="unknown gather engine parameters: bogus; "
                                         "known: lanes, drain_lanes, cache_rows"):
        GatherParams.from_dict({"lanes": 4, "bogus": 1})
    with pytest.raises(TypeError, match="gather engine parameters must be a dict, not True"):
        GatherParams.from_dict(True)
