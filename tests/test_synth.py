# amaranth: UnusedElaboratable=no
"""One real synthesis + place-and-route through the board build driver."""

import io
import json

import pytest

from seedchip.boards import get_board
from seedchip.boards.build import build, format_report
from seedchip.boards.ulx3s import missing_tools
from seedchip.config import SMALL_CONFIG

BOARD = "ulx3s-85f"


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.skip("FPGA tools not runnable: " + ", ".join(exe for _, exe in missing)
                    + " (pip install -e '.[fpga]')")
    build_dir = tmp_path_factory.mktemp("synth") / BOARD
    log = io.StringIO()
    report = build(BOARD, SMALL_CONFIG, seed=1, build_dir=build_dir, out=log, top="exerciser")
    return build_dir, report, log.getvalue()


@pytest.mark.synth
def test_bitstream(small_build):
    build_dir, report, _ = small_build
    bit = build_dir / "top.bit"
    assert bit.is_file() and bit.stat().st_size > 10_000
    assert report["bitstream"] == str(bit)


@pytest.mark.synth
def test_multipliers_on_dsps(small_build):
    _, report, _ = small_build
    macs = SMALL_CONFIG.rows * SMALL_CONFIG.cols
    assert report["resources"]["DSP"]["used"] >= macs
    assert report["yosys_cells"].get("MULT18X18D", 0) >= macs


@pytest.mark.synth
def test_report(small_build):
    build_dir, report, log = small_build
    on_disk = json.loads((build_dir / "report.json").read_text())
    assert on_disk == report
    assert json.loads((build_dir / "config.json").read_text()) == SMALL_CONFIG.to_dict()
    board = get_board(BOARD)
    assert (report["board"], report["device"], report["package"], report["speed"]) == \
        (BOARD, board.device, board.package, "6")
    assert report["seed"] == 1
    assert report["floorplan"] == "dsp-columns"   # 4x4 fits; nextpnr accepted the BEL locks
    assert report["config"] == SMALL_CONFIG.to_dict()
    for name in ("LUT4", "FF", "DSP", "EBR"):
        r = report["resources"][name]
        assert r["available"] and 0 < r["used"] <= r["available"], name
    assert report["target_mhz"] == pytest.approx(SMALL_CONFIG.clk_mhz)
    assert report["fmax_mhz"] and report["fmax_mhz"] > 10
    sync = [c for c in report["clocks"] if c["domain"] == "sync"]
    assert len(sync) == 1 and sync[0]["fmax_mhz"] == report["fmax_mhz"]
    assert sync[0]["met"] == (report["fmax_mhz"] >= report["target_mhz"])
    assert isinstance(report["met"], bool)
    assert report["peak_gops"] == pytest.approx(
        SMALL_CONFIG.peak_gops(report["fmax_mhz"]), abs=0.01)
    for option in ("--seed", "--router", "--timing-allow-fail", "--report", "--freq"):
        assert option in report["nextpnr_options"]
    # progress went to the console stream; the table renders
    assert "yosys: started" in log and "nextpnr: started" in log
    assert ("TIMING MET" if report["met"] else "TIMING FAILED") in format_report(report)


@pytest.mark.synth
def test_sdram_domain(small_build):
    """The SDRAM self test is in the build, in its own clock domain, reported
    with its target; the build is met only if every domain is."""
    _, report, log = small_build
    sdram = [c for c in report["clocks"] if c["domain"] == "sdram"]
    assert len(sdram) == 1 and sdram[0]["fmax_mhz"] and sdram[0]["fmax_mhz"] > 10
    assert sdram[0]["target_mhz"] == pytest.approx(SMALL_CONFIG.sdram_mhz)
    assert sdram[0]["met"] == (sdram[0]["fmax_mhz"] >= sdram[0]["target_mhz"])
    assert report["met"] == all(c["met"] for c in report["clocks"])
    s = report["sdram"]
    assert (s["fmax_mhz"], s["met"]) == (sdram[0]["fmax_mhz"], sdram[0]["met"])
    assert (s["cas_latency"], s["read_delay"], s["clock_phase_deg"]) == (3, 2, 225.0)
    assert s["io_margin_ns"] > 0
    assert "sdram 100 MHz" in log
    assert "clock sdram" in format_report(report)


@pytest.mark.synth
def test_gather_engine_in_build(small_build):
    """The gather engine is placed and routed on the SDRAM controller (cells of
    it survive synthesis: its checksum reaches an LED), and the report gives
    its parameters, clock and ceilings."""
    build_dir, report, _ = small_build
    netlist = (build_dir / "top.json").read_text()
    assert "sdram.gather.engine." in netlist and "sdram.arbiter." in netlist
    g = report["gather"]
    # the configuration's engine on the ULX3S's x16 SDRAM (its controller's port: 25 address bits)
    assert g["engine"] == SMALL_CONFIG.gather.with_memory(data_width=16, addr_width=25).to_dict()
    sdram = next(c for c in report["clocks"] if c["domain"] == "sdram")
    assert (g["domain"], g["fmax_mhz"], g["met"]) == ("sdram", sdram["fmax_mhz"], sdram["met"])
    assert g["clk_mhz"] == pytest.approx(SMALL_CONFIG.sdram_mhz)
    # 16- and 32-byte rows are 8 and 16 words of the x16 SDRAM; no cache
    assert g["peak_lookups_per_s"] == {"16": {"sdram": 12_500_000, "cache_hit": None},
                                       "32": {"sdram": 6_250_000, "cache_hit": None}}
    assert "gather      EmbeddingBag engine in `sdram` at 100 MHz" in format_report(report)
