# amaranth: UnusedElaboratable=no
"""The build driver's parsing, reporting and flashing, without running the FPGA tools."""

import json
import os
import re
import stat

import pytest

from seedchip.boards import build as build_mod
from seedchip.boards.build import (FlashError, NoBitstream, assign_domains, flash, format_report,
                                   parse_nextpnr_report, parse_yosys_stat)
from seedchip.cli import main
from seedchip.config import SMALL_CONFIG

YOSYS_STAT = """
3. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |
     4121 wires
       17 ports
     8105 cells
      620   CCU2C
       10   DP16KD
        1   EHXPLLL
     1855   LUT4
       20   MULT18X18D
     3249   TRELLIS_FF
"""

NEXTPNR = {
    "utilization": {
        "TRELLIS_COMB": {"used": 3639, "available": 83640},
        "TRELLIS_FF": {"used": 3249, "available": 83640},
        "MULT18X18D": {"used": 20, "available": 156},
        "DP16KD": {"used": 10, "available": 208},
        "EHXPLLL": {"used": 1, "available": 4},
    },
    "fmax": {"$glbnet$exerciser.clk": {"achieved": 79.594, "constraint": 100.0}},
    "critical_paths": [{
        "from": "posedge clk", "to": "posedge clk",
        "path": [
            {"type": "clk-to-q", "from": {"cell": "a", "port": "CLK"},
             "to": {"cell": "a", "port": "Q"}, "delay": 0.5},
            {"type": "routing", "from": {"cell": "a", "port": "Q"},
             "to": {"cell": "b", "port": "A"}, "delay": 2.0},
            {"type": "logic", "from": {"cell": "b", "port": "A"},
             "to": {"cell": "b", "port": "F"}, "delay": 0.4},
            {"type": "setup", "from": {"cell": "b", "port": "F"},
             "to": {"cell": "c", "port": "DI"}, "delay": 0.1},
        ],
    }],
}


def test_parse_yosys_stat():
    parsed = parse_yosys_stat(YOSYS_STAT)
    assert parsed["cells"] == 8105
    assert parsed["by_type"]["MULT18X18D"] == 20
    assert parsed["by_type"]["LUT4"] == 1855
    assert "wires" not in parsed["by_type"]


def test_parse_nextpnr_report():
    parsed = parse_nextpnr_report(NEXTPNR)
    assert parsed["resources"]["DSP"] == {"cell": "MULT18X18D", "used": 20, "available": 156,
                                          "percent": 12.8}
    assert parsed["resources"]["LUT4"]["used"] == 3639
    assert parsed["clocks"] == [{"domain": "$glbnet$exerciser.clk", "net": "$glbnet$exerciser.clk",
                                 "fmax_mhz": 79.59, "target_mhz": 100.0, "met": False}]
    paths = build_mod._critical_paths(NEXTPNR)
    assert paths[0]["from"] == "a.CLK" and paths[0]["to"] == "c.DI"
    assert paths[0]["delay_ns"] == 3.0 and paths[0]["logic_levels"] == 1


def _report(met):
    parsed = parse_nextpnr_report(NEXTPNR)
    return {
        "board": "ulx3s-85f", "device": "LFE5U-85F", "package": "BG381", "speed": "6",
        "seed": 1, "config": SMALL_CONFIG.to_dict(), "macs": 16, "target_mhz": 100.0,
        "fmax_mhz": 79.59, "clocks": parsed["clocks"], "met": met,
        "peak_gops": 2.55, "resources": parsed["resources"],
        "critical_paths": build_mod._critical_paths(NEXTPNR), "bitstream": "build/x/top.bit",
    }


def test_format_report():
    text = format_report(_report(False))
    assert "TIMING FAILED: Fmax 79.59 MHz < target 100 MHz" in text
    assert "critical    a.CLK -> c.DI" in text
    assert "DSP" in text and "12.8 %" in text
    assert "TIMING MET: 100 MHz" in format_report(_report(True))


def _path(clock, cells):
    steps = [{"type": "logic", "from": {"cell": c, "port": "A"}, "to": {"cell": c, "port": "F"},
              "delay": 1.0} for c in cells]
    return {"from": f"posedge {clock}", "to": f"posedge {clock}", "path": steps}


#: Two domains at the same target, nextpnr's nets named after arbitrary aliases,
#: and the SDRAM clock pin's ODDR clock (same target, not a domain to time).
TWO_DOMAINS = {
    "utilization": NEXTPNR["utilization"],
    "fmax": {
        "$glbnet$sdram_clkout_clk": {"achieved": 600.0, "constraint": 100.0},
        "$glbnet$clk": {"achieved": 93.1, "constraint": 100.0},
        "$glbnet$pll.clkos": {"achieved": 104.2, "constraint": 100.0},
    },
    "critical_paths": [
        _path("$glbnet$sdram_clkout_clk", ["sdram_phy.clk.o_ddr0"]),
        _path("$glbnet$clk", ["exerciser.gemm.a", "exerciser.gemm.b"]),
        _path("$glbnet$pll.clkos", ["sdram.controller.go", "sdram.controller.q0"]),
    ],
}
HINTS = {"sync": ("exerciser.",), "sdram": ("sdram.",), "sdram_clkout": ("sdram_phy.clk.",)}


def test_assign_domains_by_cells():
    parsed = parse_nextpnr_report(TWO_DOMAINS)
    clocks = assign_domains(parsed["clocks"], {"sync": 100.0, "sdram": 100.0}, HINTS, TWO_DOMAINS)
    by_domain = {c["domain"]: c for c in clocks}
    assert by_domain["sync"]["fmax_mhz"] == 93.1 and not by_domain["sync"]["met"]
    assert by_domain["sdram"]["fmax_mhz"] == 104.2 and by_domain["sdram"]["met"]
    assert by_domain["sdram_clkout"]["met"]       # named by its hint, not required
    assert not by_domain["sdram_clkout"]["required"] and by_domain["sdram"]["required"]
    assert len(clocks) == 3
    # without a hint it keeps its net name
    hints = {k: v for k, v in HINTS.items() if k != "sdram_clkout"}
    clocks = assign_domains(parsed["clocks"], {"sync": 100.0, "sdram": 100.0}, hints, TWO_DOMAINS)
    assert {c["domain"] for c in clocks} == {"sync", "sdram", "$glbnet$sdram_clkout_clk"}


def test_assign_domains_chip_top():
    """The chip top: one domain; the SDRAM clock pin's clock at the same
    target is told apart by its cells and not required."""
    from seedchip.boards.chip_top import ChipTop
    data = {
        "fmax": {"$glbnet$pll.clkos": {"achieved": 500.0, "constraint": 100.0},
                 "$glbnet$pll.clkop": {"achieved": 97.5, "constraint": 100.0}},
        "critical_paths": [
            _path("$glbnet$pll.clkos", ["sdram_phy.clk.o_ddr0"]),
            _path("$glbnet$pll.clkop", ["chip.chip.control.a", "sdram_phy.a_buf"]),
        ],
    }
    parsed = parse_nextpnr_report(data)
    clocks = assign_domains(parsed["clocks"], {"sync": 100.0}, ChipTop.clock_hints, data)
    by_domain = {c["domain"]: c for c in clocks}
    assert set(by_domain) == {"sync", "sdram_clkout"}
    assert by_domain["sync"]["fmax_mhz"] == 97.5 and by_domain["sync"]["required"]
    assert not by_domain["sdram_clkout"]["required"]


def test_assign_domains_by_target_and_missing():
    parsed = parse_nextpnr_report(NEXTPNR)      # one clock, no critical path of its own name
    clocks = assign_domains(parsed["clocks"], {"sync": 100.0, "sdram": 125.0}, HINTS, {})
    assert [c["domain"] for c in clocks] == ["sync", "sdram"]
    assert clocks[1] == {"domain": "sdram", "net": None, "fmax_mhz": None, "target_mhz": 125.0,
                         "met": False, "required": True}
    assert clocks[0]["required"]
    report = {**_report(False), "clocks": clocks}
    text = format_report(report)
    assert "clock sdram     not found in nextpnr's report, target 125 MHz  [MISSED]" in text
    assert "Fmax None MHz < target 125 MHz (sdram)" in text


def test_format_report_two_domains():
    parsed = parse_nextpnr_report(TWO_DOMAINS)
    clocks = assign_domains(parsed["clocks"], {"sync": 100.0, "sdram": 100.0}, HINTS, TWO_DOMAINS)
    report = {**_report(False), "clocks": clocks,
              "critical_paths": build_mod._critical_paths(TWO_DOMAINS),
              "sdram": {"chip": "ULX3S-SDRAM", "cas_latency": 3, "read_delay": 2,
                        "clock_phase_deg": 225.0, "io_margin_ns": 1.05}}
    text = format_report(report)
    assert "clock sync      93.1 MHz achieved, target 100 MHz  [MISSED]" in text
    assert "clock sdram     104.2 MHz achieved, target 100 MHz  [met]" in text
    assert "sdram       ULX3S-SDRAM CL3, read_delay 2, clock pin at 225 deg" in text
    # the critical path of the domain that missed, not of the others
    assert "exerciser.gemm.a.A -> exerciser.gemm.b.F" in text and "(sync)" in text
    assert "sdram.controller.go" not in text
    assert "TIMING FAILED: Fmax 93.1 MHz < target 100 MHz (sync)" in text
    met = {**report, "met": True, "clocks": [{**c, "met": True} for c in clocks]}
    assert "TIMING MET: 100 MHz (sdram_clkout), 100 MHz (sync), 100 MHz (sdram)" \
        in format_report(met)


def test_format_report_chip_top():
    """The chip's report: which top, its notes, its SDRAM controller in `sync`."""
    report = {**_report(True), "top": "chip",
              "notes": ["the bitstream is for the 85F: the 45F has fewer block RAMs"],
              "sdram": {"chip": "ULX3S-SDRAM", "domain": "sync", "target_mhz": 100.0,
                        "cas_latency": 3, "read_delay": 2, "clock_phase_deg": 225.0,
                        "io_margin_ns": 1.05}}
    text = format_report(report)
    assert text.splitlines()[0].endswith("seed 1, top chip")
    assert "note        the bitstream is for the 85F: the 45F has fewer block RAMs" in text
    assert "estimated I/O margin 1.05 ns; controller in `sync` at 100 MHz" in text


def test_flash_without_bitstream(tmp_path, monkeypatch, capsys):
    """The default bitstream missing: build it first (a usage mistake, exit 2);
    a bitstream the user named that does not exist: no such file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NoBitstream, match=r"no bitstream at build/ulx3s-85f/top\.bit: build it "
                                          r"first with `make bitstream BOARD=ulx3s-85f`"):
        flash("ulx3s-85f")
    assert main(["flash", "--board", "ulx3s-85f"]) == 2
    assert "make bitstream BOARD=ulx3s-85f" in capsys.readouterr().err
    with pytest.raises(NoBitstream, match=r"^no such file: missing\.bit$"):
        flash("ulx3s-85f", bitstream="missing.bit")
    with pytest.raises(NoBitstream, match=r"is a directory, not a bitstream"):
        flash("ulx3s-85f", bitstream=tmp_path)


def _fake_loader(tmp_path, body):
    exe = tmp_path / "fake-openFPGALoader"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


@pytest.mark.parametrize("body,message", [
    ("echo 'unable to open ftdi device: -3 (device not found)' >&2; exit 1",
     r"no ULX3S board found on USB \(openFPGALoader: unable to open ftdi device: -3 "
     r"\(device not found\)"),
    # the cause first, not "no board found"
    ("echo 'openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: "
     "cannot open shared object file: No such file or directory' >&2; exit 127",
     r"^openFPGALoader cannot start: system library libusb-1\.0\.so\.0 not installed; "
     r"install with `sudo apt-get install libusb-1\.0-0 libftdi1-2`"),
])
def test_flash_no_board(tmp_path, monkeypatch, body, message, capsys):
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\xff" * 64)
    monkeypatch.setenv("OPENFPGALOADER", _fake_loader(tmp_path, body))
    with pytest.raises(FlashError, match=message):
        flash("ulx3s-85f", bitstream=bit)
    assert main(["flash", "--bitstream", str(bit)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("seedchip flash: error: ")


def test_flash_ok(tmp_path, monkeypatch):
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\xff" * 64)
    log = tmp_path / "args"
    monkeypatch.setenv("OPENFPGALOADER", _fake_loader(tmp_path, f'echo "$@" > {log}\n'))
    flash("ulx3s-85f", bitstream=bit)
    assert log.read_text().split() == ["-b", "ulx3s", "-m", str(bit)]
    flash("ulx3s-85f", bitstream=bit, persistent=True)
    assert log.read_text().split() == ["-b", "ulx3s", "-f", str(bit)]


def test_main_bad_config(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"rows": 0}))
    assert main(["build", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == ("seedchip build: error: invalid configuration: rows must "
                                       "be in range 1..64, not 0\n")


def test_build_missing_tools(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEXTPNR_ECP5", str(tmp_path / "no-such-nextpnr"))
    with pytest.raises(build_mod.BuildError, match=r"missing FPGA tools: .*no-such-nextpnr"):
        build_mod.build("ulx3s-85f", SMALL_CONFIG, top="exerciser", build_dir=tmp_path / "b")
    # a failure of the work (1), with the install command
    assert main(["build", "--config", "small", "--top", "exerciser",
                 "--build-dir", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("seedchip build: error: missing FPGA tools: ")
    assert err[0].endswith("install them with `pip install -e '.[fpga]'`")


def _fake_tools(tmp_path, monkeypatch, nextpnr_error):
    """Yosys that does nothing and a nextpnr that logs its arguments and fails
    with ``nextpnr_error`` (named as the build driver's stage detection expects)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    for name, body in (("yosys", "exit 0\n"),
                       ("nextpnr-ecp5", f'echo "$@" >> {calls}\necho "{nextpnr_error}"\nexit 125\n')):
        exe = bindir / name
        exe.write_text("#!/bin/sh\n" + body)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv(name.upper().replace("-", "_"), str(exe))
    return calls


def _seeds(calls):
    seeds = []
    for line in calls.read_text().splitlines():
        args = line.split()
        seeds.append(int(args[args.index("--seed") + 1]))
    return seeds


def test_global_buffer_route_failure_retries_next_seed(tmp_path, monkeypatch):
    """nextpnr failing to route a DCC's fabric input is retried with the next
    seeds (GLOBAL_ROUTE_RETRIES), then reported; any other nextpnr failure is
    reported at once."""
    import io
    calls = _fake_tools(tmp_path, monkeypatch,
                        "ERROR: Failed to route arc 0.0 of net 'sdram_reset_buf_CLKI', from "
                        "X66/Y4/Q2_SLICE to X0/Y0/G_CLKI_TDCC0.")
    out = io.StringIO()
    with pytest.raises(build_mod.BuildError, match=r"nextpnr failed \(exit 125\): ERROR: Failed "
                                                   r"to route arc 0\.0 of net 'sdram_reset_buf_CLKI'"):
        build_mod.build("ulx3s-85f", SMALL_CONFIG, top="exerciser", seed=5, build_dir=tmp_path / "b", out=out)
    assert _seeds(calls) == [5, 6, 7][:1 + build_mod.GLOBAL_ROUTE_RETRIES]
    assert "retrying with seed 6" in out.getvalue()


def test_other_nextpnr_failure_not_retried(tmp_path, monkeypatch):
    import io
    calls = _fake_tools(tmp_path, monkeypatch,
                        "ERROR: Failed to route arc 3.0 of net 'foo', from X1/Y1/Q0_SLICE to "
                        "X2/Y2/A0_SLICE.")
    with pytest.raises(build_mod.BuildError, match=r"nextpnr failed \(exit 125\)"):
        build_mod.build("ulx3s-85f", SMALL_CONFIG, top="exerciser", build_dir=tmp_path / "b", out=io.StringIO())
    assert _seeds(calls) == [build_mod.DEFAULT_SEED]       # one try, the default seed
    # what Yosys read: no "[i]" inside a wire name (ABC9 trips over them)
    il = (tmp_path / "b" / "top.il").read_text()
    assert "<0>" in il and not re.search(r"\\\S*\[\d+\]", il)


def test_nextpnr_options_pick_the_tops_placer():
    chip = build_mod.nextpnr_options("chip", target=100.0, seed=1)
    assert chip[chip.index("--placer") + 1] == "static"
    assert chip[chip.index("--router") + 1] == "router2"
    assert chip[chip.index("--freq") + 1] == "100" and chip[chip.index("--seed") + 1] == "1"
    ex = build_mod.nextpnr_options("exerciser", target=125.0, seed=2, extra="--tmg-ripup")
    assert ex[ex.index("--placer") + 1] == "heap" and ex[-1] == "--tmg-ripup"
    # the user's placer wins, and is the only one (nextpnr refuses an option twice)
    for extra in (["--placer", "sa"], ["--placer=sa"]):
        opts = build_mod.nextpnr_options("chip", target=100.0, seed=1, extra=extra)
        assert opts.count("--placer") + sum(o.startswith("--placer=") for o in opts) == 1
        assert opts[-len(extra):] == extra
    # an experiment's own top: nextpnr's default placer
    assert not any(o.startswith("--placer") for o in
                   build_mod.nextpnr_options(None, target=100.0, seed=1))


def test_default_build_dirs():
    # the chip, what `make bitstream` builds and `make flash` loads, in build/<board>/
    assert build_mod.default_build_dir("ulx3s-85f") == build_mod.Path("build/ulx3s-85f")
    assert build_mod.default_build_dir("ulx3s-85f", "chip") == build_mod.Path("build/ulx3s-85f")
    assert build_mod.default_build_dir("ulx3s-45f", "exerciser") == \
        build_mod.Path("build/ulx3s-45f-exerciser")
