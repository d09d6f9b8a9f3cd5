# amaranth: UnusedElaboratable=no
"""The board's gather-engine exerciser, in Amaranth's simulator on block RAM."""

from amaranth.hdl import Fragment, Module
from amaranth.lib import wiring

from seedchip.boards.gather_exerciser import GatherExerciser
from seedchip.gather_params import GatherParams
from seedchip.rtl.onchip_ram import OnChipRAM
from seedchip.sim.clocked import run_clocked


def test_runs_batches_without_errors():
    m = Module()
    m.submodules.gx = gx = GatherExerciser(
        engine=GatherParams(data_width=16, addr_width=13, max_dim=64, max_bag=32, lanes=2,
                            cache_rows=0),
        rows_log2=6, dim=20, bags_per_batch=4)
    m.submodules.ram = ram = OnChipRAM(depth=4096, data_width=16, addr_width=13)
    wiring.connect(m, gx.mem, ram.port)
    seen = {}

    async def bench(ctx):
        for _ in range(5000):
            await ctx.tick()
        seen.update(bags=ctx.get(gx.bags), lookups=ctx.get(gx.lookups),
                    clamped=ctx.get(gx.clamped), error=ctx.get(gx.error_seen),
                    checksum=ctx.get(gx.checksum))

    run_clocked(m, bench)
    # 20-byte rows are 10 words; about one word per cycle, bags of 0..15
    assert seen["bags"] > 40 and seen["lookups"] > 300
    assert 0 < seen["clamped"] < seen["lookups"] // 8     # about 1 in 32 out of range
    assert seen["error"] == 0 and seen["checksum"] != 0


def test_board_top_includes_the_engine():
    """With ``config.gather`` the board top has the engine (the configuration's
    parameters, bound to the SDRAM controller's port: the x16 chip, 25 address
    bits) on the SDRAM controller, sharing it with the self test through the
    arbiter; ``gather=False`` (or ``config.gather`` None, the default) leaves
    it out."""
    import pytest

    from seedchip.boards import get_board
    from seedchip.boards.sdram_bist import SDRAMSelfTest
    from seedchip.boards.top import Top
    from seedchip.config import SMALL_CONFIG

    board = get_board("ulx3s-85f")
    top = Top(config=SMALL_CONFIG)
    assert top.gather == SMALL_CONFIG.gather.with_memory(data_width=16, addr_width=25)
    il = board.platform().prepare(top, name="top").files["top.il"]
    assert "sdram.gather.engine" in il and "sdram.arbiter" in il
    # the engine the self test builds is exactly the top's
    st = SDRAMSelfTest(chip=top.sdram_chip, clk_freq=100e6, gather=top.gather)
    assert st.gather._engine.params == top.gather
    assert (st.controller.addr_width, top.sdram_chip.data_width) == (25, 16)
    Fragment.get(st, None)      # elaborates (and so uses) every block of it
    # parameters bound to another memory are refused, not rebound
    with pytest.raises(ValueError, match="gather.addr_width must be the SDRAM controller's 25, "
                                         "not 13"):
        SDRAMSelfTest(chip=top.sdram_chip, clk_freq=100e6,
                      gather=top.gather.with_memory(data_width=16, addr_width=13))
    with pytest.raises(TypeError, match="gather must be a GatherParams or None, not"):
        SDRAMSelfTest(chip=top.sdram_chip, clk_freq=100e6, gather={"engine": {}})
    # an engine given to the top directly
    other = GatherParams(lanes=4, cache_rows=0, max_dim=16)
    assert Top(config=SMALL_CONFIG, gather=other).gather == \
        other.with_memory(data_width=16, addr_width=25)
    with pytest.raises(TypeError, match="gather must be None, False or a GatherParams, not True"):
        Top(config=SMALL_CONFIG, gather=True)
    for off in (Top(config=SMALL_CONFIG, gather=False),
                Top(config=SMALL_CONFIG.replace(gather=None))):
        assert off.gather is None
        assert "gather" not in board.platform().prepare(off, name="top").files["top.il"]
