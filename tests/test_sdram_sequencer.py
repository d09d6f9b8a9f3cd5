# amaranth: UnusedElaboratable=no
"""The SDRAM controller's init and refresh sequencer (rtl/sdram_sequencer.py),
alone in the Amaranth simulator, with small timings: the init sequence in
order with its waits, a refresh every tREFI when idle, postponed refreshes
under traffic, and the ``refreshes`` counter against the commands issued."""

import pytest

from seedchip.rtl.sdram import IS42S16160, SDRAMTimings
from seedchip.rtl.sdram_common import SDRAMCommand
from seedchip.rtl.sdram_sequencer import SDRAMSequencer
from seedchip.rtl.sdram_timers import SDRAMDistances
from seedchip.sim.clocked import run_clocked

TIMINGS = SDRAMTimings(clk_freq=100e6, tRCD=2, tRP=3, tRAS=5, tRC=8, tRFC=7, tWR=2, tRRD=2,
                       tMRD=2, tREFI=60, init=20)
DIST = SDRAMDistances.of(TIMINGS, cas_latency=2)


def _trace(*, cycles, idle, postpone_max=2, init_refreshes=3):
    """``(commands, init_done_cycle, refreshes, run_cycles)``: commands as
    ``(cycle, name, a10, load_mode, pre_all)``."""
    dut = SDRAMSequencer(timings=TIMINGS, dist=DIST, init_refreshes=init_refreshes,
                         postpone_max=postpone_max)
    out = {"cmds": [], "done": None, "run": 0}

    async def tb(ctx):
        ctx.set(dut.pre_ok, 1)
        for k in range(cycles):
            ctx.set(dut.idle, idle(k))
            if ctx.get(dut.cmd_en):
                out["cmds"].append((k, ctx.get(dut.cmd).name, ctx.get(dut.a10),
                                    ctx.get(dut.load_mode), ctx.get(dut.pre_all)))
            if ctx.get(dut.init_done) and out["done"] is None:
                out["done"] = k
            out["run"] += ctx.get(dut.run)
            await ctx.tick()
        out["refreshes"] = ctx.get(dut.refreshes)

    run_clocked(dut, tb)
    return out


def test_init_sequence():
    out = _trace(cycles=80, idle=lambda k: 1)
    cmds = out["cmds"]
    names = [c[1] for c in cmds]
    assert names[:5] == ["PRECHARGE", "AUTO_REFRESH", "AUTO_REFRESH", "AUTO_REFRESH", "LOAD_MODE"]
    (k_pre, _, a10, _, pre_all), *refs, (k_lmr, _, _, load_mode, _) = cmds[:5]
    assert k_pre >= TIMINGS.init and a10 and pre_all
    assert load_mode
    assert refs[0][0] - k_pre >= DIST.rp
    assert all(b[0] - a[0] >= DIST.rfc for a, b in zip(refs, refs[1:]))
    assert k_lmr - refs[-1][0] >= DIST.rfc
    assert out["done"] - k_lmr >= DIST.mrd
    assert out["refreshes"] == 0      # the init refreshes are not counted


def test_idle_refresh_every_trefi():
    cycles = 800
    out = _trace(cycles=cycles, idle=lambda k: 1)
    after = [c for c in out["cmds"] if c[0] > out["done"]]
    refs = [c for c in after if c[1] == "AUTO_REFRESH"]
    pres = [c for c in after if c[1] == "PRECHARGE"]
    assert all(c[2] and c[4] for c in pres)             # PRECHARGE ALL
    assert len(pres) == len(refs)
    assert out["refreshes"] == len(refs)
    # one per tREFI, each right after its PRECHARGE ALL (tRP)
    n = (cycles - out["done"]) // TIMINGS.tREFI
    assert n - 1 <= len(refs) <= n
    gaps = {b[0] - a[0] for a, b in zip(refs, refs[1:])}
    assert gaps == {TIMINGS.tREFI}
    assert all(r[0] - p[0] == DIST.rp for p, r in zip(pres, refs))


@pytest.mark.parametrize("postpone_max", [0, 2])
def test_refresh_postponed_under_traffic(postpone_max):
    """Never idle: refreshes wait until ``postpone_max + 1`` are owed, then
    all go out back to back (tRFC apart); none is lost."""
    cycles = 1200
    out = _trace(cycles=cycles, idle=lambda k: 0, postpone_max=postpone_max)
    refs = [c[0] for c in out["cmds"] if c[1] == "AUTO_REFRESH" and c[0] > out["done"]]
    assert out["refreshes"] == len(refs)
    bursts = [[refs[0]]]
    for k in refs[1:]:
        if k - bursts[-1][-1] <= DIST.rfc + 1:
            bursts[-1].append(k)
        else:
            bursts.append([k])
    assert all(len(b) == postpone_max + 1 for b in bursts[:-1])
    due = (cycles - out["done"]) // TIMINGS.tREFI
    assert due - postpone_max - 2 <= len(refs) <= due


def test_validation():
    with pytest.raises(TypeError, match=r"timings must be an SDRAMTimings, not 1"):
        SDRAMSequencer(timings=1, dist=DIST, init_refreshes=2, postpone_max=0)
    with pytest.raises(ValueError, match=r"postpone_max must be in range 0\.\.8, not 9"):
        SDRAMSequencer(timings=TIMINGS, dist=DIST, init_refreshes=2, postpone_max=9)
    assert IS42S16160.init_refreshes == 8       # the preset the controller passes on
