"""SDR SDRAM command encoding, mode register and the controller's pin signature,
shared by the controller and its sub-components."""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Const
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .sdram_chips import SDRAMChip

__all__ = ["SDRAMCommand", "mode_register", "SDRAMPinSignature", "or_all"]


class SDRAMCommand(enum.Enum, shape=4):
    """``Cat(we_n, cas_n, ras_n, cs_n)`` of each command (bit 3 = ``cs_n``)."""
    DESELECT = 0b1111
    NOP = 0b0111
    ACTIVE = 0b0011
    READ = 0b0101
    WRITE = 0b0100
    BURST_TERMINATE = 0b0110
    PRECHARGE = 0b0010      # A10 = 1: all banks
    AUTO_REFRESH = 0b0001
    LOAD_MODE = 0b0000


def mode_register(*, cas_latency, burst_length=1):
    """Mode register value: sequential burst of ``burst_length``, ``cas_latency``,
    standard operation, programmed write burst."""
    bl = {1: 0, 2: 1, 4: 2, 8: 3}[burst_length]
    return (cas_latency << 4) | bl


class SDRAMPinSignature(wiring.Signature):
    """Controller side of the SDRAM pins (DQ split into ``dq_o``/``dq_oe``/``dq_i``).

    Members: ``cke, cs_n, ras_n, cas_n, we_n`` (1), ``ba`` (bank bits), ``a``
    (:attr:`SDRAMChip.a_width`), ``dqm`` (``data_width // 8``, 1 = masked),
    ``dq_o`` (``data_width``), ``dq_oe`` (1) out; ``dq_i`` (``data_width``) in.
    The SDRAM clock is the board's business (a phase-shifted copy of ``sync``).
    """

    def __init__(self, *, chip):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        self.chip = chip
        super().__init__({
            "cke": Out(1, init=0),
            "cs_n": Out(1, init=1),
            "ras_n": Out(1, init=1),
            "cas_n": Out(1, init=1),
            "we_n": Out(1, init=1),
            "ba": Out(chip.bank_bits),
            "a": Out(chip.a_width),
            "dqm": Out(chip.data_width // 8, init=(1 << (chip.data_width // 8)) - 1),
            "dq_o": Out(chip.data_width),
            "dq_oe": Out(1),
            "dq_i": In(chip.data_width),
        })

    def __eq__(self, other):
        return isinstance(other, SDRAMPinSignature) and self.chip == other.chip

    def __repr__(self):
        return f"SDRAMPinSignature(chip={self.chip.name})"


def or_all(values):
    """OR of ``values`` (``Const(0)`` when empty)."""
    values = list(values)
    return functools.reduce(operator.or_, values) if values else Const(0)
