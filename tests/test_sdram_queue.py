# amaranth: UnusedElaboratable=no
"""The SDRAM controller's request queue (rtl/sdram_queue.py), alone in the
Amaranth simulator, with the testbench playing scheduler and timers: address
decoding, the oldest request of each bank asking for its row, the row-hit
flags following ACTIVATE/PRECHARGE, ``head_ready``, order, ``err`` requests
and backpressure when full."""

import pytest

from seedchip.rtl.sdram import IS42S16160
from seedchip.rtl.sdram_queue import SDRAMQueue
from seedchip.sim.clocked import run_clocked

CHIP = IS42S16160
CB, BB = CHIP.col_bits, CHIP.bank_bits


def _addr(bank, row, col):
    return (row << (CB + BB)) | (bank << CB) | col


def _sim(dut, body):
    run_clocked(dut, body)


async def _send(ctx, dut, addr, *, we=0, wdata=0, mask=0):
    ctx.set(dut.req.valid, 1)
    ctx.set(dut.req.payload.addr, addr)
    ctx.set(dut.req.payload.we, we)
    ctx.set(dut.req.payload.wdata, wdata)
    ctx.set(dut.req.payload.mask, mask)
    while not ctx.get(dut.req.ready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(dut.req.valid, 0)


def test_row_request_then_hits():
    """Three requests to bank 2: row 5 twice, then row 9. Bank 2 wants row 5;
    after its ACTIVATE both row-5 requests hit and leave in order; then the
    bank wants a PRECHARGE (row 9 is not the open row)."""
    dut = SDRAMQueue(chip=CHIP, depth=4, addr_width=CHIP.addr_width + 1)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.col_soon, 0b1111)
        ctx.set(dut.rdwr_soon, 1)
        ctx.set(dut.credit_pop, 1)
        ctx.set(dut.credit_nopop, 1)
        assert ctx.get(dut.idle)
        await _send(ctx, dut, _addr(2, 5, 7), we=1, wdata=0xBEEF, mask=0b10)
        await _send(ctx, dut, _addr(2, 5, 8))
        await _send(ctx, dut, _addr(2, 9, 1))
        await ctx.tick().repeat(3)
        head = ctx.get(dut.head)
        seen["head"] = (head.valid, head.we, head.bank_oh, head.row, head.hit)
        seen["side"] = (ctx.get(dut.head_side.col), ctx.get(dut.head_side.wdata),
                        ctx.get(dut.head_side.mask))
        seen["need"] = ctx.get(dut.need)
        seen["need_row"] = ctx.get(dut.need_row[2])
        seen["ready_closed"] = ctx.get(dut.head_ready)
        # ACTIVATE bank 2, row 5
        ctx.set(dut.act, 0b0100)
        ctx.set(dut.row, 5)
        await ctx.tick()
        ctx.set(dut.act, 0)
        await ctx.tick().repeat(2)
        seen["open"] = ctx.get(dut.bank_open)
        seen["after_act"] = (ctx.get(dut.head.hit), ctx.get(dut.need), ctx.get(dut.head_ready))
        popped = []
        for _ in range(6):
            if ctx.get(dut.head_ready) and ctx.get(dut.head.valid):
                popped.append(ctx.get(dut.head_side.col))
                ctx.set(dut.pop, 1)
            else:
                ctx.set(dut.pop, 0)
            await ctx.tick()
        ctx.set(dut.pop, 0)
        await ctx.tick()
        seen["popped"] = popped
        seen["last"] = (ctx.get(dut.head.row), ctx.get(dut.head.hit), ctx.get(dut.need),
                        ctx.get(dut.head_ready))

    _sim(dut, tb)
    assert seen["head"] == (1, 1, 0b0100, 5, 0)
    assert seen["side"] == (7, 0xBEEF, 0b10)
    assert seen["need"] == 0b0100 and seen["need_row"] == 5
    assert not seen["ready_closed"]
    assert seen["open"] == 0b0100
    assert seen["after_act"] == (1, 0, 1)
    assert seen["popped"] == [7, 8]
    assert seen["last"] == (9, 0, 0b0100, 0)   # row 9 needs its bank precharged


def test_err_and_credit():
    """An address beyond the chip: no bank, ready at once (with a credit)."""
    dut = SDRAMQueue(chip=CHIP, depth=2, addr_width=CHIP.addr_width + 1)
    seen = []

    async def tb(ctx):
        ctx.set(dut.col_soon, 0)
        await _send(ctx, dut, 1 << CHIP.addr_width)
        await ctx.tick().repeat(3)
        seen.append((ctx.get(dut.head.err), ctx.get(dut.head.bank_oh), ctx.get(dut.need),
                     ctx.get(dut.head_ready)))
        ctx.set(dut.credit_nopop, 1)
        await ctx.tick().repeat(2)
        seen.append(ctx.get(dut.head_ready))

    _sim(dut, tb)
    assert seen == [(1, 0, 0, 0), 1]


def test_full_backpressure():
    """With nothing leaving, ``depth`` requests in the queue plus one in the
    input register, then ``req.ready`` low."""
    depth = 3
    dut = SDRAMQueue(chip=CHIP, depth=depth, addr_width=CHIP.addr_width + 1)
    taken = []

    async def tb(ctx):
        ctx.set(dut.req.valid, 1)
        n = 0
        for k in range(20):
            ctx.set(dut.req.payload.addr, _addr(k % 4, k, k))
            if ctx.get(dut.req.ready):
                n += 1
            await ctx.tick()
        taken.append(n)

    _sim(dut, tb)
    assert taken == [depth + 1]


def test_validation():
    with pytest.raises(ValueError, match=r"depth must be in range 2\.\.8, not 9"):
        SDRAMQueue(chip=CHIP, depth=9, addr_width=CHIP.addr_width)
    with pytest.raises(TypeError, match=r"chip must be an SDRAMChip, not 'x'"):
        SDRAMQueue(chip="x", depth=4, addr_width=20)
