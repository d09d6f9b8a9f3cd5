"""The project's pseudo-random bit sequence, in gateware and in Python.

One sequence ``b[n] = b[n-28] ^ b[n-31]`` (primitive x^31 + x^3 + 1, period
2^31 - 1) serves the board exercisers (:class:`Lfsr` feeds the matrix unit and
the gather engine with patterns) and the SDRAM self test (its pattern is
:func:`lfsr_words`). A seed picks the first window of bits
(:func:`lfsr_init`), the same in gateware and in the reference.
"""

from __future__ import annotations

import random

import numpy as np

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TAPS", "lfsr_state_size", "lfsr_init", "lfsr_words", "Lfsr"]

#: ``b[n] = b[n - TAPS[0]] ^ b[n - TAPS[1]]``
TAPS = (28, 31)


def lfsr_state_size(data_width):
    """Bits of state (the sequence window) behind ``data_width``-bit words."""
    return max(data_width, TAPS[1])


def lfsr_init(*, data_width, seed):
    """The first ``max(data_width, 31)`` bits of the sequence (bit ``i`` =
    ``b[i]``) for ``seed``; never all zero in its last 31 bits."""
    size = lfsr_state_size(data_width)
    init = random.Random(seed).getrandbits(size)
    if init >> (size - TAPS[1]) == 0:
        init |= 1 << (size - 1)
    return init


def lfsr_words(*, data_width, seed, count, start=0) -> list[int]:
    """Words ``start .. start + count - 1`` of the sequence cut into
    ``data_width``-bit words, least significant bit first (the reference
    model of the self test's pattern)."""
    size = lfsr_state_size(data_width)
    total = (start + count) * data_width
    n_bits = max(total, size)
    bits = np.zeros(n_bits + TAPS[0], dtype=np.uint8)
    init = lfsr_init(data_width=data_width, seed=seed)
    bits[:size] = [(init >> i) & 1 for i in range(size)]
    # Chunks of TAPS[0] bits depend only on earlier bits.
    for n in range(size, n_bits, TAPS[0]):
        bits[n:n + TAPS[0]] = bits[n - TAPS[0]:n] ^ bits[n - TAPS[1]:n - TAPS[1] + TAPS[0]]
    chunk = bits[start * data_width:total].reshape(count, data_width)
    weights = [1 << i for i in range(data_width)]
    return [sum(w for w, b in zip(weights, row) if b) for row in chunk.tolist()]


class Lfsr(wiring.Component):
    """Pseudo-random word, advancing ``step`` bits when ``en`` is high.

    Ports
    -----
    en : In(1)
    value : Out(width)
        Registered; holds while ``en`` is low (so it can be a stream payload).

    The state is a window of ``max(width, 31)`` consecutive bits of the
    sequence ``b[n] = b[n-28] ^ b[n-31]`` (primitive x^31 + x^3 + 1, period
    2^31 - 1). With ``step <= 28`` every new bit is the XOR of two current
    bits: one LUT per new bit, whatever the width.
    """

    _TAPS = TAPS

    def __init__(self, *, width, step=8, seed=1):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise TypeError(f"width must be a positive integer, not {width!r}")
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= self._TAPS[0]:
            raise ValueError(f"step must be an integer in range 1..{self._TAPS[0]}, not {step!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, not {seed!r}")
        self._width = width
        self._step = step
        self._size = lfsr_state_size(width)
        self._init = lfsr_init(data_width=width, seed=seed)
        super().__init__({"en": In(1), "value": Out(width)})

    def elaborate(self, platform):
        m = Module()
        size, step = self._size, self._step
        # state[0] is the oldest bit of the window, state[size-1] the newest.
        state = Signal(size, init=self._init)
        new = [state[size + i - self._TAPS[0]] ^ state[size + i - self._TAPS[1]]
               for i in range(step)]
        with m.If(self.en):
            m.d.sync += state.eq(Cat(state[step:], *new))
        m.d.comb += self.value.eq(state[:self._width])
        return m
