"""DSP floorplan of the systolic array on ECP5.

nextpnr's placer scatters the array's MULT18X18D blocks over the three DSP
rows of an LFE5U-85F without regard to the partial-sum chains that link
them, so a product often travels across the whole die to the adder of its
column (measured: 9.7 ns of routing on one hop of a 16x8 array). Here every
PE's multiplier is locked to a DSP site so that each column's chain
``pe_0_j -> pe_1_j -> ...`` sits on consecutive sites of one DSP row; the
activations, which are re-registered at every PE, take the longer hops.
The array takes the fewest DSP rows that hold it, so a small array stays
compact (an 8x8 array spread over all three rows spanned the die and
pulled the controller's logic and block RAMs apart).

The locks are nextpnr ``BEL`` attributes set by Yosys after synthesis
(``setattr``), on cells found by name: ``*array.pe_{i}_{j}.dsp`` (the
:class:`~seedchip.rtl.systolic.SystolicArray` submodule named ``array``, its
PEs ``pe_{i}_{j}``, each :class:`~seedchip.rtl.mac.Mul`'s primitive ``dsp``).
"""

__all__ = ["DSP_SITES", "dsp_sites", "array_floorplan", "yosys_script"]


def _ecp5_85_sites():
    # MULT18X18D sites of LFE5U-85F/LFE5UM-85F as nextpnr names them: three
    # DSP rows, thirteen DSP blocks per row, four multipliers per block.
    blocks = [4 + 9 * k for k in range(7)] + [69 + 9 * k for k in range(6)]
    sites = []
    for y in (10, 34, 58):
        row = []
        for x0 in blocks:
            row += [(x0, y, "MULT18_0"), (x0 + 1, y, "MULT18_1"),
                    (x0 + 4, y, "MULT18_4"), (x0 + 5, y, "MULT18_5")]
        sites.append(row)
    return sites


#: device -> DSP rows, each a list of ``(x, y, bel)`` sorted by x.
DSP_SITES = {
    "LFE5U-85F": _ecp5_85_sites(),
    "LFE5UM-85F": _ecp5_85_sites(),
    "LFE5UM5G-85F": _ecp5_85_sites(),
}


def dsp_sites(device):
    """The device's DSP rows, or ``None`` if no site table is known for it."""
    return DSP_SITES.get(device)


def array_floorplan(rows, cols, sites):
    """``{(i, j): "X../Y../MULT18_n"}`` for a ``rows`` x ``cols`` array, or ``None``.

    Each column's ``rows`` PEs take consecutive sites of one DSP row. The
    array takes the fewest DSP rows that hold it (adjacent ones, centred on
    the die), its columns spread evenly over them and centred in each, so
    the array and the logic around it stay compact; DSP rows alternate direction (a serpentine),
    so the last column of one row sits above the first column of the next.
    ``None`` if the array does not fit that way.
    """
    if not sites:
        return None
    fit = len(sites[0]) // rows
    if fit == 0 or -(-cols // fit) > len(sites):
        return None
    n_rows = -(-cols // fit)                    # the fewest DSP rows that hold it
    per_row = -(-cols // n_rows)                # columns per DSP row, balanced
    first_row = (len(sites) - n_rows) // 2
    plan = {}
    for j in range(cols):
        r, slot = divmod(j, per_row)
        in_row = min(per_row, cols - r * per_row)
        first = (len(sites[first_row + r]) - in_row * rows) // 2
        row = sites[first_row + r] if r % 2 == 0 else sites[first_row + r][::-1]
        for i in range(rows):
            x, y, bel = row[first + slot * rows + i]
            plan[(i, j)] = f"X{x}/Y{y}/{bel}"
    return plan


def yosys_script(plan, *, pattern="*array.pe_{i}_{j}.dsp"):
    """Yosys commands that lock each PE's MULT18X18D to its site."""
    return "\n".join(
        f'setattr -set BEL "{bel}" c:{pattern.format(i=i, j=j)}'
        for (i, j), bel in sorted(plan.items()))
