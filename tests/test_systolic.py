"""The systolic array alone: declared latency, bank switching on the wavefront."""

import numpy as np
import pytest

from seedchip.rtl.systolic import SystolicArray
from seedchip.sim.clocked import run_clocked


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 5), (4, 4), (16, 8)])
def test_array_matches_matmul(rows, cols):
    seed = 100 * rows + cols
    rng = np.random.default_rng(seed)
    dut = SystolicArray(rows=rows, cols=cols)
    n_tiles, per_tile = 4, 9
    weights = rng.integers(-128, 128, (n_tiles, rows, cols))
    weights[0] = -128                    # extreme corner: largest positive products
    acts = rng.integers(-128, 128, (n_tiles, per_tile, rows))
    acts[0] = -128
    expect = [acts[t] @ weights[t] for t in range(n_tiles)]
    got = []

    async def load(ctx, tile, bank):
        for i in range(rows):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_bank, bank)
            ctx.set(dut.w_row, i)
            ctx.set(dut.w_data, [int(x) for x in weights[tile, i]])
            await ctx.tick()
        ctx.set(dut.w_en, 0)

    async def tb(ctx):
        await load(ctx, 0, 0)
        for t in range(n_tiles):
            bank = t % 2
            for v in acts[t]:
                ctx.set(dut.act, [int(x) for x in v])
                ctx.set(dut.act_bank, bank)
                await ctx.tick()
            # The next tile's weights go into the other bank; the bank just used
            # is only rewritten two tiles later, long after its wavefront left.
            if t + 1 < n_tiles:
                await load(ctx, t + 1, 1 - bank)
        for _ in range(dut.latency + 2):
            await ctx.tick()

    async def collect(ctx):
        async for _, _, psum in ctx.tick().sample(dut.psum):
            got.append([int(x) for x in psum])

    run_clocked(dut, tb, processes=[collect])

    # Reconstruct when each activation was presented, then read psum exactly
    # `latency` cycles later.
    cycle = rows
    for t in range(n_tiles):
        for r in range(per_tile):
            out = got[cycle + dut.latency]
            assert out == list(expect[t][r]), (
                f"seed {seed}: tile {t} row {r}: {out} != {list(expect[t][r])}")
            cycle += 1
        cycle += rows if t + 1 < n_tiles else 0
