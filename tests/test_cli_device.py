"""``seedchip device``: the host link from the command line.

Mistakes are refused in one line with exit status 2 before any simulator
starts (SimChip is replaced by a trap); a few commands run against the
simulated chip (the cached Verilator model of ``open_device("sim")``).
"""

import json

import numpy as np
import pytest

from seedchip.cli import main
from seedchip.sim.chip_top import SERVE_MEM_BYTES


def _error(capsys, argv, status=2):
    assert main(["device", *argv]) == status
    # progress lines ("[ 0:00] starting the simulated chip") aside
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("[")]
    assert len(err) == 1, err
    assert err[0].startswith("seedchip device: error: "), err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["--device", "usb", "info"], "--device must be 'sim', 'sim-sdram' or 'serial:PORT'"),
    (["--device", "serial:", "info"], "--device must be 'sim', 'sim-sdram' or 'serial:PORT'"),
    (["--device", "serial:/dev/ttyNOPE0", "status"], "no serial port /dev/ttyNOPE0"),
    (["--device", "sim", "--baud", "9600", "info"], "--baud is for --device serial:PORT"),
    (["--device", "serial:/dev/null", "--mem-bytes", "4096", "info"], "--mem-bytes sizes"),
    (["--mem-bytes", "10001", "info"], "--mem-bytes: mem_bytes must be a multiple of 8"),
    (["--mem-bytes", "1024", "info"], "--mem-bytes: mem_bytes must be in range 4096..67108864"),
    (["read", "0x1g", "4"], "ADDR must be an integer"),
    (["read", "0", "0"], "N must be at least 1"),
    (["write", "0", "/nonexistent/a.npy"], "FILE: no such file"),
])
def test_refused_before_the_simulator(capsys, no_sim, argv, message):
    assert message in _error(capsys, argv)


def test_write_needs_a_numeric_array(capsys, no_sim, tmp_path):
    np.save(tmp_path / "e.npy", np.zeros(0, np.uint8))
    assert "empty array" in _error(capsys, ["write", "0", str(tmp_path / "e.npy")])


def test_unknown_action_is_one_line(capsys, no_sim):
    with pytest.raises(SystemExit) as e:
        main(["device", "peek"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_on_the_simulated_chip(sim, capsys, tmp_path):
    assert main(["device", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mem_bytes"] == SERVE_MEM_BYTES and info["rx_slots"] == 4

    out = tmp_path / "m.npy"
    assert main(["device", "read", "0x10", "2000", "--out", str(out)]) == 0
    assert "read 2000 bytes at 0x10" in capsys.readouterr().out
    m = np.load(out)
    assert m.dtype == np.uint8 and m.shape == (2000,) and not m.any()

    msg = _error(capsys, ["read", str(SERVE_MEM_BYTES - 4), "8"])
    assert f"runs past the device's memory ({SERVE_MEM_BYTES} bytes)" in msg
