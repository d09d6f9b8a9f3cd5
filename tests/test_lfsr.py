# amaranth: UnusedElaboratable=no
"""The LFSR pattern generator (:mod:`seedchip.rtl.lfsr`) against its recurrence and
its Python reference."""

import pytest

from seedchip.rtl.lfsr import Lfsr, lfsr_init, lfsr_words
from seedchip.sim.clocked import run_clocked


def _lfsr_words(dut, n, enable=lambda i: True):
    words = []

    async def testbench(ctx):
        for i in range(n):
            ctx.set(dut.en, enable(i))
            words.append(ctx.get(dut.value))
            await ctx.tick()

    run_clocked(dut, testbench)
    return words


@pytest.mark.parametrize("width,step", [(64, 8), (40, 28), (8, 1), (128, 8)])
def test_lfsr_recurrence(width, step):
    dut = Lfsr(width=width, step=step, seed=3)
    words = _lfsr_words(dut, 40)
    # Each word is the previous one shifted by `step`, with `step` new bits.
    for prev, cur in zip(words, words[1:]):
        keep = width - step
        if keep > 0:
            assert cur & ((1 << keep) - 1) == prev >> step
    # The bit sequence obeys b[n] = b[n-28] ^ b[n-31] past the seed window
    # (visible when the word is the whole window, width >= 31).
    if width >= 31:
        assert len(set(words)) == len(words)
        bits = [(words[0] >> i) & 1 for i in range(width)]
        for w in words[1:]:
            bits += [(w >> i) & 1 for i in range(width - step, width)]
        for n in range(width, len(bits)):
            assert bits[n] == bits[n - 28] ^ bits[n - 31]


def test_lfsr_holds_without_enable():
    dut = Lfsr(width=32, seed=9)
    words = _lfsr_words(dut, 12, enable=lambda i: i % 3 == 0)
    for i in range(1, 12):
        if (i - 1) % 3 != 0:
            assert words[i] == words[i - 1]
        else:
            assert words[i] != words[i - 1]


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(width=0), TypeError, r"width must be a positive integer, not 0"),
    (dict(width=8, step=29), ValueError, r"step must be an integer in range 1\.\.28, not 29"),
    (dict(width=8, seed="x"), TypeError, r"seed must be an integer, not 'x'"),
])
def test_lfsr_validation(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        Lfsr(**kw)


@pytest.mark.parametrize("width", [1, 8, 17, 28])
def test_gateware_follows_the_reference(width):
    """With step == width (at most 28: one XOR per new bit) each gateware
    word is the next word of the reference."""
    dut = Lfsr(width=width, step=width, seed=5)
    words = _lfsr_words(dut, 20)
    assert words == lfsr_words(data_width=width, seed=5, count=20)
    assert lfsr_init(data_width=width, seed=5) & ((1 << width) - 1) == words[0]
