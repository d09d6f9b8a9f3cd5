import re

import pytest

from seedchip.boards.floorplan import DSP_SITES, array_floorplan, dsp_sites, yosys_script


def _xy(bel):
    x, y = re.match(r"X(\d+)/Y(\d+)/MULT18_[0145]$", bel).groups()
    return int(x), int(y)


def test_site_table():
    rows = dsp_sites("LFE5U-85F")
    flat = [s for row in rows for s in row]
    assert len(flat) == 156 == len(set(flat))
    for row in rows:
        assert [s[0] for s in row] == sorted(s[0] for s in row)
        assert len({s[1] for s in row}) == 1
    assert dsp_sites("LFE5U-12F") is None


@pytest.mark.parametrize("rows,cols", [(16, 8), (12, 12), (16, 9), (8, 8), (4, 4), (52, 3)])
def test_plan(rows, cols):
    plan = array_floorplan(rows, cols, DSP_SITES["LFE5U-85F"])
    assert len(plan) == rows * cols == len(set(plan.values()))
    for j in range(cols):
        # A column's chain stays in one DSP row, on consecutive sites.
        ys = {_xy(plan[(i, j)])[1] for i in range(rows)}
        assert len(ys) == 1
        xs = [_xy(plan[(i, j)])[0] for i in range(rows)]
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True)
        assert max(abs(a - b) for a, b in zip(xs, xs[1:])) <= 6 if rows > 1 else True


@pytest.mark.parametrize("rows,cols", [(16, 10), (14, 12), (53, 1)])
def test_plan_does_not_fit(rows, cols):
    assert array_floorplan(rows, cols, DSP_SITES["LFE5U-85F"]) is None
    assert array_floorplan(rows, cols, None) is None


def test_small_arrays_stay_compact():
    def ys(rows, cols):
        return [_xy(b)[1] for b in array_floorplan(rows, cols, DSP_SITES["LFE5U-85F"]).values()]
    # the fewest DSP rows: 4x4 in the middle one, 8x8 in two (4 + 4 columns),
    # 16x8 needs all three (3 + 3 + 2 columns)
    assert set(ys(4, 4)) == {34}
    assert sorted(ys(8, 8).count(y) for y in set(ys(8, 8))) == [32, 32]
    assert sorted(ys(16, 8).count(y) for y in set(ys(16, 8))) == [32, 48, 48]


def test_script():
    plan = {(0, 0): "X4/Y10/MULT18_0", (1, 0): "X5/Y10/MULT18_1"}
    assert yosys_script(plan).splitlines() == [
        'setattr -set BEL "X4/Y10/MULT18_0" c:*array.pe_0_0.dsp',
        'setattr -set BEL "X5/Y10/MULT18_1" c:*array.pe_1_0.dsp',
    ]
