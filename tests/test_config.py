# amaranth: UnusedElaboratable=no
import json

import pytest

from seedchip.config import (CHIP_CONFIG, ChipConfig, DEFAULT_CONFIG, GATHER_CONFIG, SMALL_CONFIG,
                             config_dict_from_arg, config_from_args)
from seedchip.gather_params import GatherParams
from seedchip.rtl.gemm import GemmUnit
from seedchip.rtl.systolic import SystolicArray
from seedchip.rtl.requant import Requantizer


def test_defaults_round_trip():
    for cfg in (DEFAULT_CONFIG, SMALL_CONFIG, GATHER_CONFIG):
        assert ChipConfig.from_json(cfg.to_json()) == cfg
        assert json.loads(cfg.to_json())["rows"] == cfg.rows


def test_gather_engine_nests_in_the_json():
    """The engine's parameters are one object in the configuration and one
    JSON object in its dump; null: no engine."""
    assert json.loads(DEFAULT_CONFIG.to_json())["gather"] is None
    d = json.loads(SMALL_CONFIG.to_json())["gather"]
    assert d == SMALL_CONFIG.gather.to_dict() and d["lanes"] == 2
    cfg = SMALL_CONFIG.replace(gather=SMALL_CONFIG.gather.replace(lanes=4, cache_rows=256))
    back = ChipConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.gather, GatherParams)
    # a file may give any subset of the engine's parameters
    assert ChipConfig.from_dict({"gather": {"max_bag": 7}}).gather == GatherParams(max_bag=7)
    with pytest.raises(ValueError, match="gather engine: lanes must be in range 1..8, not 0"):
        ChipConfig.from_dict({"gather": {"lanes": 0}})
    with pytest.raises(ValueError, match="gather engine: unknown gather engine parameters: tables"):
        ChipConfig.from_dict({"gather": {"tables": 4}})
    with pytest.raises(TypeError, match=r"^gather must be an object of the gather engine's "
                                        r"parameters or null, not 8$"):
        ChipConfig.from_dict({"gather": 8})


def test_presets_keep_their_engines():
    """The presets' engines, field by field, as they were before the engine's
    parameters became one object."""
    assert DEFAULT_CONFIG.gather is None
    assert GATHER_CONFIG.gather == GatherParams(lanes=8, cache_rows=2048, n_tables=8, max_dim=64,
                                                max_bag=32, inflight=32)
    assert SMALL_CONFIG.gather == GatherParams(lanes=2, cache_rows=0, n_tables=2, max_dim=32,
                                               max_bag=16, inflight=16)


def test_old_config_files_load(tmp_path):
    """A configuration written before ``gather`` was one object (a bool and
    flat ``gather_*`` keys) loads as the same engine; with ``"gather":
    false`` the engine is off and those keys are dropped."""
    old = {k: v for k, v in DEFAULT_CONFIG.to_dict().items() if k != "gather"}
    old.update(gather=True, gather_lanes=4, gather_cache_rows=256, gather_tables=2,
               gather_max_dim=48, gather_max_bag=16, gather_inflight=8)
    want = DEFAULT_CONFIG.replace(gather=GatherParams(lanes=4, cache_rows=256, n_tables=2,
                                                      max_dim=48, max_bag=16, inflight=8))
    assert ChipConfig.from_dict(old) == want
    assert ChipConfig.from_json(json.dumps({"gather": True})) == \
        DEFAULT_CONFIG.replace(gather=GatherParams())
    assert ChipConfig.from_dict({**old, "gather": False}) == DEFAULT_CONFIG
    assert ChipConfig.from_dict({"gather_lanes": 2}) == DEFAULT_CONFIG
    # through --config FILE, with the command line's overrides on top
    f = tmp_path / "old.json"
    f.write_text(json.dumps(old))
    assert config_dict_from_arg(str(f))["gather"] == {"lanes": 4, "cache_rows": 256,
                                                      "n_tables": 2, "max_dim": 48,
                                                      "max_bag": 16, "inflight": 8}
    assert config_from_args(_args(config=str(f), gather_lanes=8)) == \
        want.replace(gather=want.gather.replace(lanes=8))
    # an old key beside a new object: refused, naming the key
    with pytest.raises(ValueError, match=r"^gather_max_dim is a key of the old configuration "
                                         r"format; beside a \"gather\" object, give it as "
                                         r"\"gather\": \{\"max_dim\": \.\.\.\}$"):
        ChipConfig.from_dict({"gather": {"lanes": 4}, "gather_max_dim": 48})


@pytest.mark.parametrize("field,value,exc,msg", [
    ("rows", 0, ValueError, "rows must be in range 1..64, not 0"),
    ("rows", 65, ValueError, "rows must be in range 1..64, not 65"),
    ("cols", 2.0, TypeError, "cols must be an integer, not 2.0"),
    ("cols", True, TypeError, "cols must be an integer, not True"),
    ("in_width", 1, ValueError, "in_width must be in range 2..12, not 1"),
    ("acc_width", 16, ValueError, "acc_width must be in range 25..32, not 16"),
    ("acc_width", 33, ValueError, "acc_width must be in range 25..32, not 33"),
    ("max_m", 0, ValueError, "max_m must be in range 1..65536, not 0"),
    ("max_k", "8", TypeError, "max_k must be an integer, not '8'"),
    ("clk_mhz", 5, ValueError, "clk_mhz must be in range 10..400, not 5"),
    ("clk_mhz", "fast", TypeError, "clk_mhz must be a number, not 'fast'"),
    ("sdram_mhz", 20, ValueError, "sdram_mhz must be in range 25..200, not 20"),
    ("sdram_mhz", 250.0, ValueError, "sdram_mhz must be in range 25..200, not 250.0"),
    ("sdram_mhz", None, TypeError, "sdram_mhz must be a number, not None"),
    ("gather", 1, TypeError, "gather must be a GatherParams or None, not 1"),
    ("gather", True, TypeError, "gather must be a GatherParams or None, not True"),
    ("gather", {"lanes": 8}, TypeError, "gather must be a GatherParams or None, not {'lanes': 8}"),
])
def test_bad_values_name_the_field(field, value, exc, msg):
    with pytest.raises(exc) as info:
        DEFAULT_CONFIG.replace(**{field: value})
    assert str(info.value) == msg


def test_sdram_clock_round_trip():
    cfg = DEFAULT_CONFIG.replace(sdram_mhz=125.0)
    assert json.loads(cfg.to_json())["sdram_mhz"] == 125.0
    assert ChipConfig.from_json(cfg.to_json()) == cfg
    # a configuration written before the field existed still loads
    old = {k: v for k, v in DEFAULT_CONFIG.to_dict().items() if k != "sdram_mhz"}
    assert ChipConfig.from_dict(old).sdram_mhz == 100.0


def test_accumulator_cannot_overflow():
    # 16-bit operands with K = 2**16 would need more than 32 bits.
    with pytest.raises(ValueError, match="max_k must be at most"):
        ChipConfig(in_width=12, max_k=1 << 16)


def test_unknown_key():
    with pytest.raises(ValueError, match="unknown configuration keys: bogus"):
        ChipConfig.from_dict({"rows": 4, "bogus": 1})


def test_components_validate_arguments():
    with pytest.raises(TypeError, match="config must be a ChipConfig"):
        GemmUnit(config={"rows": 4})
    with pytest.raises(ValueError, match="rows must be in range 1..64, not 0"):
        SystolicArray(rows=0, cols=4)
    with pytest.raises(TypeError, match="cols must be a positive integer, not 'x'"):
        SystolicArray(rows=4, cols="x")
    with pytest.raises(ValueError, match="acc_width must be in range 19..64, not 8"):
        SystolicArray(rows=4, cols=4, acc_width=8)
    with pytest.raises(ValueError, match="out_width must be in range 2..32, not 1"):
        Requantizer(out_width=1)


def test_gather_params_feed_the_engine():
    """The configuration's engine parameters are what GatherEngine takes."""
    from seedchip.rtl.gather import GatherEngine
    eng = GatherEngine(GATHER_CONFIG.gather)
    assert eng.params is GATHER_CONFIG.gather
    assert (eng.lanes, eng.cache_rows, eng.n_tables, eng.max_dim, eng.max_bag, eng.inflight) == \
        (8, 2048, 8, 64, 32, 32)


def test_presets(tmp_path):
    """``--config NAME`` takes a preset; a file may give any subset of the
    fields; anything else is an error that names the presets."""
    assert config_dict_from_arg("gather") == GATHER_CONFIG.to_dict()
    assert GATHER_CONFIG.gather and not DEFAULT_CONFIG.gather
    assert config_dict_from_arg("small") == SMALL_CONFIG.to_dict()
    # the chip's board build: one clock, 100 MHz; M up to 128 (block RAM)
    assert config_dict_from_arg("chip") == CHIP_CONFIG.to_dict()
    assert CHIP_CONFIG == DEFAULT_CONFIG.replace(clk_mhz=100.0, sdram_mhz=100.0, max_m=128,
                                                 gather=GatherParams(drain_lanes=2))
    f = tmp_path / "c.json"
    f.write_text('{"rows": 4}')
    assert config_dict_from_arg(str(f)) == {"rows": 4}
    with pytest.raises(ValueError, match=r"neither a configuration file nor a preset "
                                         r"\(default, small, gather, chip\)"):
        config_dict_from_arg("gathr")
    f.write_text("[1]")
    with pytest.raises(ValueError, match="holds a JSON object"):
        config_dict_from_arg(str(f))


def _args(**kw):
    import argparse
    d = dict(config=None, rows=None, cols=None, max_m=None, max_k=None, max_n=None, clk_mhz=None,
             sdram_mhz=None, gather_lanes=None, gather_cache_rows=None, gather=False,
             no_gather=False)
    return argparse.Namespace(**{**d, **kw})


def test_cli_config_preset():
    """The command line reads presets, overrides on top."""
    from seedchip.cli import load_config
    assert load_config(_args(config="gather", sdram_mhz=75.0)) == \
        GATHER_CONFIG.replace(sdram_mhz=75.0)


def test_cli_gather_options():
    """``--gather`` adds the default engine (or keeps the configuration's),
    ``--no-gather`` removes it, ``--gather-lanes``/``--gather-cache-rows``
    set its parameters and need an engine."""
    from seedchip.cli import UsageError, load_config
    assert load_config(_args(gather=True)) == DEFAULT_CONFIG.replace(gather=GatherParams())
    assert load_config(_args(config="small", gather=True)) == SMALL_CONFIG
    assert load_config(_args(config="small", no_gather=True)).gather is None
    got = load_config(_args(config="gather", gather_lanes=4, gather_cache_rows=0))
    assert got == GATHER_CONFIG.replace(gather=GatherParams(lanes=4, cache_rows=0))
    assert load_config(_args(gather=True, gather_cache_rows=512)).gather == \
        GatherParams(cache_rows=512)
    with pytest.raises(UsageError, match=r"^invalid configuration: --gather-lanes sets a gather "
                                         r"engine parameter, but this configuration has no "
                                         r"gather engine \(add --gather\)$"):
        load_config(_args(gather_lanes=4))
    with pytest.raises(UsageError, match=r"^invalid configuration: gather engine: cache_rows "
                                         r"must be 0 or a power of 2 from 2, not 1000$"):
        load_config(_args(config="gather", gather_cache_rows=1000))
