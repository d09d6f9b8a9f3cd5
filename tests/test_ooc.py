"""boards/ooc.py without running the FPGA tools: each small part builds as the
chip builds it and converts to RTLIL for the board's platform; a nextpnr
report becomes a table row; unknown names are refused."""

import pytest
from amaranth.back import rtlil

from seedchip.boards import ooc
from seedchip.rtl.chip import chip_addr_width


def test_components_cover_the_chip():
    assert set(ooc.COMPONENTS) == {"control", "gemm", "gather", "interact", "copy", "link",
                                   "arbiter", "arbiter6", "sdram", "chip"}


# the big parts (gemm, gather, chip) take a minute to convert: not here
@pytest.mark.parametrize("name", ["copy", "arbiter", "sdram"])
def test_converts(name):
    part = ooc.COMPONENTS[name]()
    assert "module \\top" in rtlil.convert(part, name="top", platform=ooc._platform())


def test_chip_geometry():
    arb = ooc.COMPONENTS["arbiter"]()
    assert arb.n_ports == 5
    assert arb.addr_width == chip_addr_width(ooc.MEM_BYTES) == 23
    arb._MustUse__silence = True


def test_summarize():
    step = {"from": {"cell": "a"}, "to": {"cell": "b"}}
    report = {
        "fmax": {"clk": {"achieved": 98.76, "constraint": 100.0}},
        "utilization": {"TRELLIS_COMB": {"used": 10}, "TRELLIS_FF": {"used": 5}},
        "critical_paths": [{"path": [
            {**step, "type": "clk-to-q", "delay": 0.5},
            {**step, "type": "routing", "delay": 2.0},
            {"from": {"cell": "b"}, "to": {"cell": "c"}, "type": "logic", "delay": 1.0}]}],
    }
    row = ooc.summarize(report)
    assert row["fmax_mhz"] == 98.76
    assert (row["LUT4"], row["FF"], row["DSP"], row["EBR"]) == (10, 5, 0, 0)
    assert (row["path_from"], row["path_to"]) == ("a", "c")
    assert (row["logic_ns"], row["routing_ns"]) == (1.5, 2.0)


def test_unknown_component():
    with pytest.raises(SystemExit):
        ooc.main(["--component", "nope"])


def test_log_fmax(tmp_path):
    """An unrouted run's Fmax comes from the log: the last estimate per clock."""
    log = tmp_path / "nextpnr1.log"
    log.write_text("Info: Max frequency for clock 'clk': 40.00 MHz (FAIL at 100.00 MHz)\n"
                   "Info: Max frequency for clock 'clk': 45.12 MHz (FAIL at 100.00 MHz)\n")
    assert ooc._log_fmax(log) == {"clk": {"achieved": 45.12}}


def test_unbracket_names():
    """Indices inside wire names become <i> (a yosys abc9 crash); slices stay."""
    il = ("  wire width 32 \\pooled__payload.data[0]\n"
          "  connect \\a[2].b[13] \\c [3:0]\n"
          "  connect \\x \\y [7]\n")
    assert ooc.unbracket_names(il) == ("  wire width 32 \\pooled__payload.data<0>\n"
                                       "  connect \\a<2>.b<13> \\c [3:0]\n"
                                       "  connect \\x \\y [7]\n")
