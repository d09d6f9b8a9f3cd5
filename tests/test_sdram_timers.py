# amaranth: UnusedElaboratable=no
"""The SDRAM controller's command timers (rtl/sdram_timers.py), alone in the
Amaranth simulator: after a trigger in cycle 0, each ``*_soon`` flag rises in
cycle ``max(dist, 2) - 1`` and each registered ``ok`` (``pre_ok``) in cycle
``max(dist, 2)``, the documented command distance."""

import pytest

from seedchip.rtl.sdram import IS42S16160
from seedchip.rtl.sdram_timers import SDRAMBankTimers, SDRAMDistances
from seedchip.sim.clocked import run_clocked


def _first_high(dut, trigger, flag, cycles=40):
    """Pulse ``trigger(ctx)`` in cycle 0; the first cycle >= 1 with ``flag`` high."""
    seen = []

    async def tb(ctx):
        await ctx.tick()        # cycle 0
        trigger(ctx, 1)
        for k in range(1, cycles):
            await ctx.tick()
            trigger(ctx, 0)
            if ctx.get(flag) and not seen:
                seen.append(k)
    run_clocked(dut, tb)
    return seen[0] if seen else None


DIST = SDRAMDistances(rcd=3, ras=7, rp=4, wr=2, rrd=2, rfc=9, mrd=2, rd_wr=5)


@pytest.mark.parametrize("trigger,flag,dist", [
    ("act", "col_soon", DIST.rcd),
    ("act", "ras_soon", DIST.ras),
    ("wr", "wr_soon", DIST.wr),
    ("pre", "rp_soon", DIST.rp),
])
def test_bank_timer(trigger, flag, dist):
    dut = SDRAMBankTimers(banks=4, dist=DIST)

    def pulse(ctx, v):
        ctx.set(getattr(dut, trigger), v << 2)     # bank 2

    assert _first_high(dut, pulse, getattr(dut, flag)[2]) == max(dist, 2) - 1
    # the other banks never notice
    dut = SDRAMBankTimers(banks=4, dist=DIST)
    assert _first_high(dut, lambda ctx, v: ctx.set(getattr(dut, trigger), v << 2),
                       getattr(dut, flag)[1]) == 1


def test_pre_ok_waits_for_ras_and_wr():
    dut = SDRAMBankTimers(banks=4, dist=DIST)
    assert _first_high(dut, lambda ctx, v: ctx.set(dut.act, v), dut.pre_ok[0]) == DIST.ras
    dut = SDRAMBankTimers(banks=4, dist=DIST)
    assert _first_high(dut, lambda ctx, v: ctx.set(dut.wr, v << 3), dut.pre_ok[3]) == \
        max(DIST.wr, 2)


@pytest.mark.parametrize("trigger,flag,dist", [
    ("act", "rrd_soon", DIST.rrd),
    ("rd", "rdwr_soon", DIST.rd_wr),
])
def test_chip_timer(trigger, flag, dist):
    dut = SDRAMBankTimers(banks=4, dist=DIST)
    value = 0b0100 if trigger == "act" else 1
    assert _first_high(dut, lambda ctx, v: ctx.set(getattr(dut, trigger), value * v),
                       getattr(dut, flag)) == max(dist, 2) - 1


def test_distances_of_chip():
    t = IS42S16160.cycles(143e6)
    d = SDRAMDistances.of(t, cas_latency=3)
    assert (d.rcd, d.rp, d.wr, d.rrd) == (t.tRCD, t.tRP, t.tWR, t.tRRD)
    assert d.ras == max(3, t.tRAS, t.tRC - t.tRP)      # ACT->PRE->ACT meets tRC
    assert d.rd_wr == 3 + 2


def test_validation():
    with pytest.raises(TypeError, match=r"dist must be an SDRAMDistances, not 3"):
        SDRAMBankTimers(banks=4, dist=3)
    with pytest.raises(ValueError, match=r"rcd must be in range"):
        SDRAMDistances(rcd=0, ras=7, rp=4, wr=2, rrd=2, rfc=9, mrd=2, rd_wr=5)
    with pytest.raises(TypeError, match=r"timings must be an SDRAMTimings"):
        SDRAMDistances.of(None, cas_latency=2)
