# amaranth: UnusedElaboratable=no
import json

import pytest

from seedchip.config import (ChipConfig, DEFAULT_CONFIG, GATHER_CONFIG, SMALL_CONFIG,
                             config_dict_from_arg)
from seedchip.rtl.gemm import GemmUnit
from seedchip.rtl.systolic import SystolicArray
from seedchip.rtl.requant import Requantizer


def test_defaults_round_trip():
    for cfg in (DEFAULT_CONFIG, SMALL_CONFIG):
        assert ChipConfig.from_json(cfg.to_json()) == cfg
        assert json.loads(cfg.to_json())["rows"] == cfg.rows


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
    ("gather", 1, TypeError, "gather must be True or False, not 1"),
    ("gather_lanes", 0, ValueError, "gather_lanes must be in range 1..8, not 0"),
    ("gather_lanes", 16, ValueError, "gather_lanes must be in range 1..8, not 16"),
    ("gather_cache_rows", 1000, ValueError,
     "gather_cache_rows must be 0 or a power of 2 from 2, not 1000"),
    ("gather_cache_rows", 8192, ValueError, "gather_cache_rows must be in range 0..4096, not 8192"),
    ("gather_tables", 0, ValueError, "gather_tables must be in range 1..256, not 0"),
    ("gather_max_dim", 2048, ValueError, "gather_max_dim must be in range 1..1024, not 2048"),
    ("gather_max_bag", 0, ValueError, "gather_max_bag must be in range 1..65535, not 0"),
    ("gather_inflight", 2, ValueError, "gather_inflight must be in range 4..256, not 2"),
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
    """``gather_params()`` are GatherEngine keywords: the board's engine is the
    configuration's."""
    from seedchip.rtl.gather import GatherEngine
    eng = GatherEngine(data_width=16, **DEFAULT_CONFIG.gather_params())
    assert (eng.lanes, eng.cache_rows, eng.n_tables, eng.max_dim, eng.max_bag, eng.inflight) == \
        (8, 2048, 8, 64, 32, 32)


def test_presets(tmp_path):
    """``--config NAME`` takes a preset; a file may give any subset of the
    fields; anything else is an error that names the presets."""
    assert config_dict_from_arg("gather") == GATHER_CONFIG.to_dict()
    assert GATHER_CONFIG.gather and not DEFAULT_CONFIG.gather
    assert config_dict_from_arg("small") == SMALL_CONFIG.to_dict()
    f = tmp_path / "c.json"
    f.write_text('{"rows": 4}')
    assert config_dict_from_arg(str(f)) == {"rows": 4}
    with pytest.raises(ValueError, match=r"neither a configuration file nor a preset "
                                         r"\(default, small, gather\)"):
        config_dict_from_arg("gathr")
    f.write_text("[1]")
    with pytest.raises(ValueError, match="holds a JSON object"):
        config_dict_from_arg(str(f))


def test_cli_config_preset():
    """The command line reads presets, overrides on top."""
    import argparse
    from seedchip.cli import load_config
    ns = argparse.Namespace(config="gather", rows=None, cols=None, max_m=None, max_k=None,
                            max_n=None, clk_mhz=None, sdram_mhz=75.0, gather_lanes=None,
                            gather_cache_rows=None, gather=False, no_gather=False)
    assert load_config(ns) == GATHER_CONFIG.replace(sdram_mhz=75.0)
