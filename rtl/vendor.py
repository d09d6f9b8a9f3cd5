"""Which FPGA a component is elaborated for (``platform`` in ``elaborate``).

Components elaborate a vendor primitive (a DSP block with its registers, a
block RAM with its output register) for the board and a behavioural
equivalent for simulation (``platform`` None); they ask here which.
"""

__all__ = ["is_ecp5"]


def is_ecp5(platform) -> bool:
    """True when elaborating for a Lattice ECP5 (the ULX3S, the Colorlight boards)."""
    # `amaranth.vendor.LatticeECP5Platform` is an alias of `LatticePlatform` in
    # 0.5, which also covers MachXO2/Nexus: check the family too.
    if platform is None:
        return False
    from amaranth.vendor import LatticePlatform
    return isinstance(platform, LatticePlatform) and getattr(platform, "family", None) == "ecp5"
