"""make bench's report: the gather figures at the gather build's Fmax and the README table."""

from seedchip.bench import gather_at_fmax, render_table


def _bench():
    res = [{"dim": 64, "bag": 8, "dist": d, "bags": 64, "lookups": 512, "cycles": c,
            "lookups_per_cycle": round(512 / c, 4), "lookups_per_s": round(512 / c * 80e6),
            "bags_per_s": round(64 / c * 80e6), "fraction_of_pin_limit": round(512 * 32 / c, 4),
            "hit_rate": h} for d, c, h in (("uniform", 16000, 0.03), ("zipf", 8000, 0.6))]
    res[1]["zipf_over_uniform"] = 2.0
    return {
        "date": "2026-11-23",
        "config": {"rows": 8, "cols": 8, "max_m": 256, "max_k": 256, "max_n": 256, "clk_mhz": 125.0},
        "gemm": [],
        "gather": {"chip": "IS42S16160", "data_width": 16, "clk_mhz": 80.0, "sim_clk_mhz": 83.333,
                   "lanes": 8, "cache_rows": 2048, "results": res},
        "gather_board": {
            "clocks": [{"domain": "sync", "fmax_mhz": 114.19, "target_mhz": 100, "met": True},
                       {"domain": "sdram", "fmax_mhz": 86.43, "target_mhz": 80.0, "met": True}],
            "resources": {"EBR": {"used": 174, "available": 208, "cell": "DP16KD"}},
            "gather": {"domain": "sdram", "clk_mhz": 80.0, "fmax_mhz": 86.43, "met": True},
        },
    }


def test_gather_at_fmax_and_table():
    b = gather_at_fmax(_bench())
    u, z = b["gather"]["results"]
    assert b["gather"]["fmax_mhz"] == 86.43
    assert u["lookups_per_s_at_fmax"] == round(512 / 16000 * 86.43e6)
    assert z["bags_per_s_at_fmax"] == round(64 / 8000 * 86.43e6)
    table = render_table(b)
    assert "per second at 80 MHz (simulated with a 12 ns period)" in table
    assert "| 64-byte rows, bags of 8 | 2.56 M, 320 k (102 %, 0.03) |" in table
    assert "| 2.00x |" in table
    assert "Fmax `sdram` (controller + engine) | 86.4 MHz (met, target 80 MHz)" in table
    assert "Fmax (86.4 MHz) instead of its target: 64-byte rows, bags of 8, uniform | 2.77 M" in table
    assert "174 EBR" in table


def test_no_gather_build_no_fmax_figures():
    b = _bench()
    del b["gather_board"]
    gather_at_fmax(b)
    assert "fmax_mhz" not in b["gather"]
    assert "lookups_per_s_at_fmax" not in b["gather"]["results"][0]
    assert "gather build" not in render_table(b)


def test_dlrm_rows():
    """The DLRM rows of the README table from a (hand-made) bench-dlrm result."""
    from seedchip.firmware.dlrm_bench import dlrm_lines

    def size(c64, c1, b64_host, torch_host):
        runs = {"batch64": {"batch": 64, "cycles_per_batch": [c64, c64], "bit_exact": True},
                "batch1": {"batch": 1, "cycles_per_batch": [c1], "bit_exact": True}}
        return {"accuracy": {"auc_float": 0.8, "auc_quant": 0.799, "mean_abs_dctr": 0.005},
                "sim": runs, "sim_sdram": runs,
                "host": {"batch64": {"numpy_int8": b64_host, "numpy_float": 2 * b64_host,
                                     "pytorch_float": torch_host}},
                "link_bytes_per_sample": {"batch64": {"to_chip": 100.0, "from_chip": 10.0}}}

    # the Kaggle size as measured where PyTorch is not installed: empty cells
    d = {"clk_mhz": 100.0, "link_bytes_per_s": 296100.0,
         "small": size(6400, 2000, 1000.0, 4000.0), "kaggle": size(640000, 100000, 100.0, None)}
    text = "\n".join(dlrm_lines(d))
    assert "| batch 64: inferences/s (on-chip RAM) | 1,000,000 | 10,000 |" in text
    assert "| batch 1 latency (SDRAM model, 16-bit) | 20.0 us | 1000.0 us |" in text
    assert "| chip on SDRAM / host NumPy int8, batch 64 | 1000.0x | 100.0x |" in text
    assert "| host CPU, PyTorch float (1 thread), batch 64: inferences/s | 4,000 |  |" in text
    assert "| chip on SDRAM / host PyTorch float (1 thread), batch 64 | 250.0x |  |" in text
    assert "| 100 B / 2,961 | 100 B / 2,961 |" in text
    assert "| AUC float / chip (held-out synthetic) | 0.8000 / 0.7990 |" in text


def test_host_speed_without_pytorch(monkeypatch):
    """Where PyTorch is not installed (None in sys.modules: ``import torch``
    fails) the bench records NumPy only and says why PyTorch is missing."""
    import sys

    from seedchip.firmware.dlrm_bench import _host_speed
    from seedchip.firmware.dlrm_train import SMALL_ARCH, init_dlrm, synthetic_ctr
    from seedchip.firmware.quant import quantize

    monkeypatch.setitem(sys.modules, "torch", None)
    model = init_dlrm(SMALL_ARCH, seed=0)
    data = synthetic_ctr(model, 64, seed=1)[0]
    h = _host_speed(model, quantize(model, data), data, reps=1)
    assert h["numpy_float"] > 0 and h["numpy_int8"] > 0
    assert h["pytorch_float"] is None
    assert h["pytorch_float_reason"].startswith("PyTorch is not installed")


def test_chip_board_rows():
    b = _bench()
    assert "the chip on the board" not in render_table(b)      # no chip build, no rows
    b["chip_board"] = {
        "board": "ulx3s-85f", "device": "LFE5U-85F", "speed": 6, "seed": 1, "top": "chip",
        "clocks": [{"domain": "sync", "fmax_mhz": 47.3, "target_mhz": 45, "met": True,
                    "required": True},
                   {"domain": "$glbnet$pll.sdram_clkout_clk", "fmax_mhz": 650.0,
                    "target_mhz": 45, "met": True, "required": False}],
        "resources": {"LUT4": {"used": 37204, "available": 83640, "cell": "TRELLIS_COMB"},
                      "EBR": {"used": 179, "available": 208, "cell": "DP16KD"}},
        "critical_paths": [
            {"clock_from": "posedge $glbnet$chip.adapter.clk",
             "clock_to": "posedge $glbnet$chip.adapter.clk",
             "from": "chip.chip.gemm_arbiter.mask_TRELLIS_FF_Q_1.Q",
             "to": "chip.chip.gemm_arbiter.staged.addr_TRELLIS_FF_Q_5.CE",
             "delay_ns": 17.776, "logic_levels": 8, "routing_ns": 15.343},
            {"clock_from": "<async>", "clock_to": "posedge $glbnet$chip.adapter.clk",
             "from": "uart_rx.buf.buf0.O", "to": "chip.chip.link.uart_rx.sync1_TRELLIS_FF_Q.M",
             "delay_ns": 9.8, "logic_levels": 0, "routing_ns": 9.8}],
    }
    table = render_table(b)
    assert "| Fmax `sync` (target 45 MHz) | 47.3 MHz (met) |" in table
    assert "sdram_clkout" not in table and "uart_rx" not in table
    assert "| resources | 37204 / 83640 LUT4, 179 / 208 EBR |" in table
    assert ("| worst path, chip.adapter.clk | 17.8 ns (15.3 routing, 8 logic levels): "
            "`chip.chip.gemm_arbiter.mask` → `chip.chip.gemm_arbiter.staged.addr` |") in table


def test_chip_gemm_rows_at_the_board_clocks():
    """The chip's GEMM rows: on-chip RAM, the SDRAM model at 100 MHz, and at
    the board build's clocks (its SDRAM in a domain of its own)."""
    from seedchip.bench import _chip_lines

    def row(cycles, **clocks):
        return {"m": 256, "k": 256, "n": 256, "cycles": cycles, "ideal_cycles": 262144,
                "mac_utilization": 262144 / cycles, "gemm_mem_stall": 10, **clocks}
    chip = {"sim": [row(300000)], "sim_sdram": [row(340000)],
            "sim_sdram_board": [row(280000, clk_mhz=45.0, sdram_mhz=80.0)]}
    text = "\n".join(_chip_lines(chip, {"rows": 8, "cols": 8}))
    assert ("| 256 x 256 x 256 | SDRAM model at the board build's clocks: chip 45 MHz, "
            "SDRAM 80 MHz (its own domain) | 280000 | 262144 | 93.6% | 10 cycles |") in text
    assert "| 256 x 256 x 256 | SDRAM model (the ULX3S part, 16-bit) at 100 MHz | 340000 |" in text


def test_board_chip_sdram_sim():
    """The simulation of `make bitstream`'s chip: its clocks as whole ns, the
    SDRAM's own clock when it has one."""
    from seedchip.boardsim import board_chip_sdram_sim
    from seedchip.config import CHIP_CONFIG

    s = board_chip_sdram_sim(CHIP_CONFIG.replace(clk_mhz=45.0, sdram_mhz=80.0))
    assert (s.clk_period_ns, s.sdram_period_ns, s.sdram_period) == (22.222, 12.5, 12.5)
    assert s.clock_periods == {"clk": 22.222, "sdram_clk": 12.5}
    s = board_chip_sdram_sim(CHIP_CONFIG.replace(clk_mhz=45.0, sdram_mhz=45.0))
    assert (s.clk_period_ns, s.sdram_period_ns, s.sdram_period) == (22.222, None, 22.222)
    assert s.clock_periods == {"clk": 22.222}
    # the board build's own
    from seedchip.boards.build import CHIP_BOARD_MHZ, CHIP_BOARD_SDRAM_MHZ
    s = board_chip_sdram_sim()
    assert s.chip.clk_mhz == CHIP_BOARD_MHZ
    assert s.sdram_period_ns == round(1000 / CHIP_BOARD_SDRAM_MHZ, 3)
