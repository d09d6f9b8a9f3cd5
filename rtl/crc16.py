"""CRC-16/CCITT-FALSE, one byte per cycle (the host link's frame check)."""

from functools import reduce

from amaranth.hdl import C, Cat, Value

__all__ = ["crc16_next"]

POLY = 0x1021


def _taps():
    """For each bit of the next CRC register, the bits of ``Cat(crc, byte)``
    (24 bits) whose XOR it is: the eight shift steps run once, in Python, on
    bit masks (the CRC is linear), so the gateware gets one flat XOR per bit."""
    c = [1 << i for i in range(16)]             # crc bit i depends on input bit i
    for i in range(7, -1, -1):
        fb = c[15] ^ (1 << (16 + i))
        c = [fb if k == 0 else c[k - 1] for k in range(16)]
        c = [c[k] ^ fb if (POLY >> k) & 1 and k != 0 else c[k] for k in range(16)]
    return c


_TAPS = _taps()


def crc16_next(crc, byte) -> Value:
    """The CRC register after ``byte`` (MSB first, not reflected); with init
    0xFFFF and no final XOR, CRC-16/CCITT-FALSE
    (:func:`seedchip.link_protocol.crc16`). Combinational."""
    byte = Value.cast(byte)
    bits = Cat(Value.cast(crc), byte, C(0, 8 - len(byte)))
    return Cat(*(reduce(lambda a, b: a ^ b, [bits[j] for j in range(24) if taps >> j & 1])
                 for taps in _TAPS))
