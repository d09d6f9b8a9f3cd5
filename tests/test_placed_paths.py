"""boards/placed_paths.py on a hand-made placed netlist: the path found, its
hops and their lengths, the delay model, constants skipped, carry inputs
free, and the command line's error for a file it cannot read."""

import json

import pytest

from seedchip.boards import placed_paths
from seedchip.boards.placed_paths import analyse, wire_delay


def _cell(type_, x, y, conns, dirs, **params):
    return {"type": type_, "attributes": {"NEXTPNR_BEL": f"X{x}/Y{y}/SLICEA"},
            "parameters": params, "connections": conns, "port_directions": dict(dirs)}


def netlist():
    """ff_a (0,0) -> lut1 (10,0) -> lut2 (10,20) -> ff_b (10,21); ff_c (1,0)
    -> lut3 (1,1) -> ff_d (1,1) a short path; a constant into lut2."""
    comb = {"A": "input", "B": "input", "F": "output"}
    ff = {"DI": "input", "CLK": "input", "Q": "output"}
    cells = {
        "ff_a": _cell("TRELLIS_FF", 0, 0, {"DI": [9], "CLK": [2], "Q": [10]}, ff),
        "lut1": _cell("TRELLIS_COMB", 10, 0, {"A": [10], "B": [1], "F": [11]}, comb),
        "lut2": _cell("TRELLIS_COMB", 10, 20, {"A": [11], "B": [20], "F": [12]}, comb),
        "ff_b": _cell("TRELLIS_FF", 10, 21, {"DI": [12], "CLK": [2], "Q": [13]}, ff),
        "ff_c": _cell("TRELLIS_FF", 1, 0, {"DI": [9], "CLK": [2], "Q": [14]}, ff),
        "lut3": _cell("TRELLIS_COMB", 1, 1, {"A": [14], "B": [1], "F": [15]}, comb),
        "ff_d": _cell("TRELLIS_FF", 1, 1, {"DI": [15], "CLK": [2], "Q": [16]}, ff),
        "vcc": {"type": "VCC", "attributes": {}, "parameters": {},
                "connections": {"Z": [20]}, "port_directions": {"Z": "output"}},
    }
    names = {"unit.a": [10], "unit.mid": [11], "unit.out": [12], "other.c": [14],
             "other.mid": [15], "$PACKER_VCC_NET": [20]}
    return {"modules": {"top": {"attributes": {"top": 1}, "cells": cells,
                                "netnames": {k: {"bits": v} for k, v in names.items()}}}}


def test_wire_delay():
    assert wire_delay((0, 0), (0, 0)) == pytest.approx(0.72)
    assert wire_delay((0, 0), (5, 0)) == pytest.approx(0.120 * 16)
    assert wire_delay((0, 0), (25, 0)) == pytest.approx(0.120 * 36)
    assert wire_delay((3, 4), (0, 0)) == wire_delay((0, 0), (3, 4))


def test_worst_path():
    res = analyse(netlist(), paths=5)
    worst = res["paths"][0]
    expect = (0.45 + wire_delay((0, 0), (10, 0)) + 0.35 + wire_delay((10, 0), (10, 20)) + 0.35
              + wire_delay((10, 20), (10, 21)) + 0.15)
    assert worst["ns"] == pytest.approx(expect, abs=0.01)
    assert res["worst_ns"] == worst["ns"]
    assert worst["start"] == "TRELLIS_FF (0, 0)" and worst["end"] == "TRELLIS_FF.DI (10, 21)"
    assert [(h["net"], h["tiles"]) for h in worst["hops"]] == \
        [("unit.a", 10), ("unit.mid", 20), ("unit.out", 1)]
    # the short path comes second; the constant net is no path
    assert res["paths"][1]["end"] == "TRELLIS_FF.DI (1, 1)"
    assert all(h["net"] != "$PACKER_VCC_NET" for p in res["paths"] for h in p["hops"])
    assert sum(res["histogram"].values()) == res["endpoints"]


def test_carry_input_is_free():
    nl = netlist()
    lut2 = nl["modules"]["top"]["cells"]["lut2"]
    lut2["connections"]["FCI"] = lut2["connections"].pop("A")
    lut2["port_directions"]["FCI"] = lut2["port_directions"].pop("A")
    worst = analyse(nl)["paths"][0]
    expect = (0.45 + wire_delay((0, 0), (10, 0)) + 0.35 + 0.06
              + wire_delay((10, 20), (10, 21)) + 0.15)
    assert worst["ns"] == pytest.approx(expect, abs=0.01)


def test_cli(tmp_path, capsys):
    path = tmp_path / "placed.json"
    path.write_text(json.dumps(netlist()))
    out = tmp_path / "paths.json"
    assert placed_paths.main([str(path), "--paths", "1", "--json", str(out)]) == 0
    assert "unit.mid" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["paths"]) == 1
    assert placed_paths.main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("placed_paths: cannot read")
