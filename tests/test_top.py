# amaranth: UnusedElaboratable=no
import pytest
from amaranth.sim import Simulator

from seedchip.boards import BOARDS, get_board
from seedchip.boards.top import Exerciser, Lfsr, Top
from seedchip.config import SMALL_CONFIG


def _lfsr_words(dut, n, enable=lambda i: True):
    words = []

    async def testbench(ctx):
        for i in range(n):
            ctx.set(dut.en, enable(i))
            words.append(ctx.get(dut.value))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
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


def test_exerciser_runs_commands():
    dut = Exerciser(config=SMALL_CONFIG, display_bits=6)
    seen = {}

    async def testbench(ctx):
        checksums = set()
        for _ in range(6000):
            await ctx.tick()
            checksums.add(ctx.get(dut.checksum))
        seen["commands"] = ctx.get(dut.commands)
        seen["checksums"] = len(checksums)
        seen["leds"] = ctx.get(dut.leds)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["commands"] >= 3
    assert seen["checksums"] > 1000
    assert not seen["leds"] & 0x40, "the unit reported an error for a generated command"


def test_exerciser_validation():
    with pytest.raises(TypeError, match=r"config must be a ChipConfig, not 3"):
        Exerciser(config=3)
    with pytest.raises(TypeError, match=r"config must be a ChipConfig, not None"):
        Top(config=None)


def test_top_clock():
    top = Top(config=SMALL_CONFIG)
    assert top.clk_mhz == pytest.approx(100.0)
    assert Top(config=SMALL_CONFIG.replace(clk_mhz=133.0)).clk_mhz == pytest.approx(133.333, abs=1e-3)
    with pytest.raises(ValueError, match=r"PLL output frequency 48\.0 MHz is not achievable within"):
        Top(config=SMALL_CONFIG.replace(clk_mhz=48.0))


def test_top_elaborates_for_ulx3s():
    board = get_board("ulx3s-85f")
    plan = board.platform().prepare(Top(config=SMALL_CONFIG), name="top")
    il = plan.files["top.il"]
    assert "EHXPLLL" in il and il.count("MULT18X18D") >= SMALL_CONFIG.macs
    assert "SGSR" in il
    lpf = plan.files["top.lpf"]
    assert 'SITE "G2"' in lpf                  # clk25
    for pin in "B2 C2 C1 D2 D1 E2 E1 H3".split():
        assert f'SITE "{pin}"' in lpf          # the eight LEDs
    assert "FREQUENCY NET" in lpf and "100000000" in lpf


def test_board_registry():
    assert set(BOARDS) == {"ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f"}
    b = get_board("ULX3S-85F")
    assert (b.device, b.package, b.speed, b.dsp, b.ebr) == ("LFE5U-85F", "BG381", "6", 156, 208)
    with pytest.raises(ValueError, match=r"unknown board 'ulx3s-99f'; known boards: ulx3s-12f"):
        get_board("ulx3s-99f")
