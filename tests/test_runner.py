"""The simulation plumbing a user meets: the cache is keyed by the hardware, and
long steps (elaboration, a simulator build) say what they are doing."""

import time

import pytest

from seedchip.config import SMALL_CONFIG
from seedchip.rtl.gemm import GemmUnit
from seedchip.sim import runner


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDCHIP_BUILD_DIR", str(tmp_path))
    return tmp_path


def test_simulator_cache_is_keyed_by_the_hardware(build_dir):
    """An option that does not change the hardware (a board clock, the gather
    engine the matrix unit does not contain) must not cost a simulator build."""
    lines = []
    v0 = runner.generate_verilog(GemmUnit, "gemm_small", SMALL_CONFIG, progress=lines.append)
    assert any(line.startswith("elaborating gemm_small") for line in lines)
    same = [SMALL_CONFIG.replace(clk_mhz=SMALL_CONFIG.clk_mhz + 17.0),
            SMALL_CONFIG.replace(sdram_mhz=60.0, gather=SMALL_CONFIG.gather.replace(lanes=8))]
    for cfg in same:
        v = runner.generate_verilog(GemmUnit, "gemm_small", cfg)
        assert runner.hardware_dir(v, "gemm_small") == runner.hardware_dir(v0, "gemm_small")
    other = runner.generate_verilog(GemmUnit, "gemm_small", SMALL_CONFIG.replace(cols=2))
    assert runner.hardware_dir(other, "gemm_small") != runner.hardware_dir(v0, "gemm_small")
    # a second generation of the same configuration is a cache hit: nothing said
    lines.clear()
    runner.generate_verilog(GemmUnit, "gemm_small", SMALL_CONFIG, progress=lines.append)
    assert lines == []


def test_step_says_start_progress_and_end():
    lines = []
    with runner.step(lines.append, "building the thing", every=0.05):
        time.sleep(0.18)
    assert lines[0] == "building the thing..."
    assert any("building the thing: still running" in line for line in lines[1:-1])
    assert lines[-1].startswith("building the thing: done in ")


def test_step_on_interrupt_says_stopped_not_done():
    lines = []
    with pytest.raises(KeyboardInterrupt):
        with runner.step(lines.append, "simulating", every=10):
            raise KeyboardInterrupt
    assert lines[-1].startswith("simulating: stopped after")
    assert not any("done" in line for line in lines)
    lines.clear()
    with pytest.raises(RuntimeError):
        with runner.step(lines.append, "simulating", every=10):
            raise RuntimeError("boom")
    assert lines[-1].startswith("simulating: failed after")


def test_step_is_silent_without_a_listener():
    with runner.step(None, "quiet"):
        pass


def test_verilog_cache_key_covers_every_module_the_design_uses(tmp_path):
    """The key is derived from the import statements: every seedchip module
    that elaborating the design loads (here, in a fresh interpreter) is in it,
    emb_protocol.py included (a hand-kept list once missed it)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from amaranth.back import verilog\n"
        "from seedchip.config import SMALL_CONFIG\n"
        "from seedchip.sim.gather_tb import make_top, GatherSimConfig, SIM_PARAMS\n"
        "config = GatherSimConfig(params=SIM_PARAMS.replace(cache_rows=16))\n"
        "verilog.convert(make_top(config=config), name='t')\n"
        "print(json.dumps(sorted(getattr(m, '__file__', None) or '' for n, m in\n"
        "      list(sys.modules.items()) if n.startswith('seedchip'))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    from pathlib import Path

    from seedchip.sim.gather_tb import make_top
    loaded = {Path(f).resolve() for f in json.loads(r.stdout.splitlines()[-1]) if f}
    keyed = set(runner._rtl_sources(make_top))
    assert loaded - keyed == set()
    assert {p.name for p in keyed} >= {"emb_protocol.py", "gather.py", "checks.py",
                                       "gather_params.py"}


_CORE = """\
module top_core(clk, rst, q, d);
  input clk;
  wire clk;
  output [7:0] q;
  input rst;
  input [3:0] d;
endmodule
"""


def test_free_clock_wrapper():
    """The wrapper drives the core's clock and passes every other port, each
    visible to the testbench; a core without a clk input is refused."""
    text = runner.free_clock_wrapper("top", "top_core", "/* x */\n" + _CORE, 10)
    lines = text.splitlines()
    assert lines[0] == "module top(clk, q, rst, d);"
    assert "  output reg clk /*verilator public_flat_rw*/;" in lines
    assert "  output [7:0] q /*verilator public_flat_rw*/;" in lines
    assert "  input [3:0] d /*verilator public_flat_rw*/;" in lines
    assert "  always #5.0 clk = ~clk;" in lines
    assert "  top_core core(.clk(clk), .q(q), .rst(rst), .d(d));" in lines
    with pytest.raises(ValueError, match="no module 'other'"):
        runner.free_clock_wrapper("top", "other", _CORE, 10)
    with pytest.raises(ValueError, match="has no 1-bit input clk"):
        runner.free_clock_wrapper("top", "top_core", _CORE.replace("clk", "clock"), 10)


def test_free_clock_wrapper_two_clocks():
    """A core with a second domain: each clock port driven at its own period."""
    core = _CORE.replace("module top_core(clk, rst, q, d);",
                         "module top_core(clk, rst, q, d, sdram_clk);")
    core = core.replace("  input [3:0] d;\n", "  input [3:0] d;\n  input sdram_clk;\n")
    text = runner.free_clock_wrapper("top", "top_core", core, {"clk": 22, "sdram_clk": 11})
    lines = text.splitlines()
    assert "  output reg clk /*verilator public_flat_rw*/;" in lines
    assert "  output reg sdram_clk /*verilator public_flat_rw*/;" in lines
    assert "  always #11.0 clk = ~clk;" in lines and "  always #5.5 sdram_clk = ~sdram_clk;" in lines
    assert "  initial sdram_clk = 1'b0;" in lines
    assert not any(line.startswith("  input sdram_clk") for line in lines)
    with pytest.raises(ValueError, match="has no 1-bit input sdram2_clk"):
        runner.free_clock_wrapper("top", "top_core", core, {"clk": 22, "sdram2_clk": 11})
    with pytest.raises(ValueError, match="do not include clk"):
        runner.free_clock_wrapper("top", "top_core", core, {"sdram_clk": 11})
