# amaranth: UnusedElaboratable=no
"""The SDRAM controller's read capture and response FIFO
(rtl/sdram_response.py), alone in the Amaranth simulator: a response per
slot in order, read data taken ``delay + 1`` cycles after the slot (the READ
goes on the pins the edge after its slot, the data ``delay`` edges later),
``err`` slots answered with 0, and the credits that keep the FIFO from
overflowing under backpressure."""

import pytest

from seedchip.rtl.sdram_response import SDRAMResponder
from seedchip.sim.clocked import run_clocked


def _dq(k):
    return (k * 0x9E37 + 0x1234) & 0xFFFF


@pytest.mark.parametrize("delay", [2, 5])
def test_data_and_order(delay):
    dut = SDRAMResponder(data_width=16, delay=delay, depth=16)
    slots = {3: 0, 4: 0, 5: 1, 9: 0, 10: 1, 11: 0}     # cycle -> err
    got = []

    async def tb(ctx):
        ctx.set(dut.resp.ready, 1)
        for k in range(40):
            ctx.set(dut.slot, k in slots)
            ctx.set(dut.slot_err, slots.get(k, 0))
            ctx.set(dut.dq_i, _dq(k))
            if ctx.get(dut.resp.valid):
                got.append((k, ctx.get(dut.resp.payload.rdata), ctx.get(dut.resp.payload.err)))
            await ctx.tick()

    run_clocked(dut, tb)
    want = [(0 if err else _dq(k + delay + 1), err) for k, err in slots.items()]
    assert [(d, e) for _, d, e in got] == want
    # earliest response: the slot, delay + 2 tokens, the FIFO
    assert got[0][0] == 3 + delay + 3


def test_credits_under_backpressure():
    depth = 4
    dut = SDRAMResponder(data_width=16, delay=2, depth=depth)
    log = []

    async def tb(ctx):
        ctx.set(dut.resp.ready, 0)
        used, slot = 0, 0
        for k in range(30):
            # as the controller's head_ready: a slot next cycle when the
            # credit for this cycle's choice allows it
            ctx.set(dut.slot, slot)
            used += slot
            slot = ctx.get(dut.credit_pop if slot else dut.credit_nopop)
            await ctx.tick()
        log.append(used)
        ctx.set(dut.resp.ready, 1)
        n = 0
        for _ in range(20):
            n += ctx.get(dut.resp.valid)
            ctx.set(dut.slot, 0)
            await ctx.tick()
        log.append(n)

    run_clocked(dut, tb)
    assert log == [depth, depth]      # never more slots than FIFO room, none lost


def test_validation():
    with pytest.raises(ValueError, match=r"depth must be in range 2\.\.256, not 1"):
        SDRAMResponder(data_width=16, delay=2, depth=1)
