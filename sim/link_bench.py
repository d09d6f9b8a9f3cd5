"""Host-link goodput in simulated time (cocotb, on :class:`~seedchip.sim.link_top.LinkTestTop`).

A host that answers instantly keeps ``rx_slots`` frames in flight (a
sliding window, as :meth:`seedchip.firmware.link.Link.pipeline` does) and
moves ``BYTES`` bytes with full WRITE frames, then reads them back with full
READ frames, through cocotbext-uart at the link's own rate. Goodput = data
bytes / simulated time from the first byte sent to the last response
received, against the line rate (baud / 10 bytes per second: 8N1). The
data read back must equal what was written.

Results go to the JSON file ``SEEDCHIP_BENCH_OUT``. Run through
:func:`run_link_bench`.
"""

import json
import os

import numpy as np

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Timer

from ..link_protocol import MAX_DATA, Cmd
from .link_tb import LinkTB
from .link_top import TOPLEVEL, LinkSimConfig, make_link_top

__all__ = ["BYTES", "bench_config", "run_link_bench"]

#: bytes moved each way
BYTES = 8 * MAX_DATA


def bench_config(*, clk_mhz: float = 100.0, baud: float = 3_000_000) -> LinkSimConfig:
    """The link at the board's clock and baud, on a 64-bit RAM that holds ``BYTES``."""
    period = round(1e3 / clk_mhz)
    return LinkSimConfig(data_width=64, ram_depth=-(-BYTES // 8), clk_period_ns=period,
                         divisor=round(1e9 / period / baud), timeout_bytes=1000)


async def _stream(tb, frames):
    """Send ``frames`` ((cmd, payload) pairs) with ``rx_slots`` in flight;
    the responses' data in order and the simulated ns from first byte to last response."""
    t0 = get_sim_time("ns")
    out, flight = [], []
    for cmd, payload in frames:
        if len(flight) == tb.cfg.rx_slots:
            c, s = flight.pop(0)
            out.append(await tb.expect_response(c, s, timeout_bytes=20000))
        flight.append((cmd, tb.send(cmd, payload)))
    for c, s in flight:
        out.append(await tb.expect_response(c, s, timeout_bytes=20000))
    return out, get_sim_time("ns") - t0


@cocotb.test()
async def goodput(dut):
    tb = LinkTB(dut)
    await tb.reset()
    await Timer(tb.bit_ns * 20, unit="ns")
    data = tb.rng.integers(0, 256, BYTES, dtype=np.uint8).tobytes()
    starts = range(0, BYTES, MAX_DATA)
    _, t_write = await _stream(tb, [(Cmd.WRITE, a.to_bytes(4, "little") + data[a:a + MAX_DATA])
                                    for a in starts])
    got, t_read = await _stream(tb, [(Cmd.READ, a.to_bytes(4, "little")
                                      + min(MAX_DATA, BYTES - a).to_bytes(2, "little"))
                                     for a in starts])
    if b"".join(bytes(g) for g in got) != data:
        tb.fail("the data read back differs from what was written")
    line = 1e9 / (tb.bit_ns * 10)                 # bytes per second, 8N1
    res = {"bytes": BYTES, "frame_data": MAX_DATA, "window": tb.cfg.rx_slots,
           "baud": 1e9 / tb.bit_ns, "clk_mhz": 1e3 / tb.cfg.clk_period_ns,
           "divisor": tb.cfg.divisor, "line_bytes_per_s": line}
    for what, t in (("write", t_write), ("read", t_read)):
        rate = BYTES / (t * 1e-9)
        res[what] = {"ns": t, "bytes_per_s": rate, "of_line_rate": rate / line}
    dut._log.info("link goodput: %s", res)
    with open(os.environ["SEEDCHIP_BENCH_OUT"], "w") as f:
        json.dump(res, f, indent=2)


def run_link_bench(out_json, *, sim=None, progress=None, **kw) -> dict:
    """Build (cached) and run :func:`goodput`; its results."""
    from . import runner  # noqa: PLC0415

    cfg = bench_config(**kw)
    result = runner.run_cocotb(make_link_top, TOPLEVEL, "seedchip.sim.link_bench", cfg,
                               sim=sim, tag="bench", extra_env={"SEEDCHIP_BENCH_OUT": str(out_json)},
                               progress=progress, what="measuring the link's goodput")
    runner.check_cocotb(result)
    with open(out_json) as f:
        return json.load(f)
