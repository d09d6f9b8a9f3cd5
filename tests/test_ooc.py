"""boards/ooc.py without running the FPGA tools: each small part builds as the
chip builds it and converts to RTLIL for the board's platform; a nextpnr
report becomes a table row; unknown names are refused."""

import json

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


def test_array_lock_places_the_multipliers(tmp_path):
    """measure(floorplan=...) puts each PE's multiplier on the site the board
    build locks it to: a 2x2 array, synthesized and placed out of context."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from seedchip.boards.floorplan import array_floorplan, dsp_sites
    from seedchip.rtl.systolic import SystolicArray

    class Wrapped(wiring.Component):      # the array as a submodule named "array"
        def __init__(self):
            self._array = SystolicArray(rows=2, cols=2)
            super().__init__(self._array.signature)

        def elaborate(self, platform):
            m = Module()
            m.submodules.array = self._array
            wiring.connect(m, wiring.flipped(self), self._array)
            return m

    plan = array_floorplan(2, 2, dsp_sites(ooc.OOC_DEVICE))
    ooc.measure(Wrapped(), seeds=(1,), freq=100, workdir=str(tmp_path), route=False,
                floorplan=plan)
    cells = json.loads((tmp_path / "placed1.json").read_text())["modules"]["top"]["cells"]
    placed = {name: c["attributes"]["NEXTPNR_BEL"] for name, c in cells.items()
              if c["type"] == "MULT18X18D"}
    assert len(placed) == 4
    for (i, j), bel in plan.items():
        [name] = [n for n in placed if f"array.pe_{i}_{j}.dsp" in n]
        assert placed[name] == bel


def test_array_lock_of_the_board_chip():
    plan = ooc.array_lock(ooc.CHIP_CONFIG)
    assert len(plan) == ooc.CHIP_CONFIG.rows * ooc.CHIP_CONFIG.cols
    assert len(set(plan.values())) == len(plan)
