# amaranth: UnusedElaboratable=no
"""rtl/dma.py (RowReader, RowWriter) in the Amaranth simulator against a
byte-array model of the memory: random regions (overlapping rows, rows
past the end of memory), random memory latency and ``req.ready``, random
backpressure and idle cycles on the beat streams."""

import numpy as np
import pytest

from seedchip.rtl.dma import RowReader, RowWriter
from seedchip.sim.clocked import run_clocked
from seedchip.sim.memmodel import MemModel


def random_cmd(rng, mem_bytes, beat_bytes):
    rows = int(rng.integers(1, 6))
    row_bytes = int(rng.choice([1, 2, 3, beat_bytes - 1 or 1, beat_bytes, beat_bytes + 1,
                                int(rng.integers(1, 4 * beat_bytes + 2))]))
    stride = 8 * int(rng.integers(0, (row_bytes + 7) // 8 + 3))       # rows may overlap
    base = 8 * int(rng.integers(0, mem_bytes // 8 + 2))                # may run past the end
    if rng.random() < 0.7:                                             # mostly inside
        base = 8 * int(rng.integers(0, max(1, (mem_bytes - rows * max(stride, row_bytes)) // 8)))
    return dict(base=base, stride=stride, rows=rows, row_bytes=row_bytes)


def set_cmd(ctx, cmd, c):
    for k, v in c.items():
        ctx.set(getattr(cmd.payload, k), v)


def expected_reads(mem, c, wb, beat_bytes):
    """The beats of one command, from the memory before the command."""
    out = []
    base = c["base"] & ~(wb - 1)
    stride = c["stride"] & ~(wb - 1)
    words = -(-c["row_bytes"] // wb)
    for r in range(c["rows"]):
        start = base + r * stride
        row = np.zeros(words * wb, np.uint8)
        errs = []
        for w in range(words):
            a = start + w * wb
            if a + wb <= len(mem):
                row[w * wb:(w + 1) * wb] = mem[a:a + wb]
                errs.append(0)
            else:
                errs.append(1)
        row[c["row_bytes"]:] = 0
        nb = -(-c["row_bytes"] // beat_bytes)
        per = beat_bytes // wb
        for b in range(nb):
            chunk = np.zeros(beat_bytes, np.uint8)
            part = row[b * beat_bytes:(b + 1) * beat_bytes]
            chunk[:len(part)] = part
            out.append((int.from_bytes(chunk.tobytes(), "little"), int(b == nb - 1),
                        int(b == nb - 1 and r == c["rows"] - 1),
                        int(any(errs[b * per:(b + 1) * per]))))
    return out


@pytest.mark.parametrize("data_width,beat_bytes,seed", [
    (16, 8, 1), (16, 2, 2), (32, 8, 3), (32, 16, 4), (8, 4, 5), (64, 8, 6), (16, 16, 7)])
def test_row_reader(data_width, beat_bytes, seed):
    rng = np.random.default_rng(seed)
    wb = data_width // 8
    mem = rng.integers(0, 256, 512, dtype=np.uint8)
    dut = RowReader(addr_width=12, data_width=data_width, beat_bytes=beat_bytes, depth=4)
    cmds = [random_cmd(rng, len(mem), beat_bytes) for _ in range(25)]
    want = [b for c in cmds for b in expected_reads(mem, c, wb, beat_bytes)]
    got = []

    async def tb(ctx):
        model = MemModel(dut.mem, mem.copy(), wb, rng)
        queue = list(cmds)
        for cycle in range(20000):
            model.step(ctx)
            ctx.set(dut.cmd.valid, int(bool(queue) and rng.random() < 0.8))
            if queue:
                set_cmd(ctx, dut.cmd, queue[0])
                if ctx.get(dut.cmd.valid) and ctx.get(dut.cmd.ready):
                    queue.pop(0)
            ctx.set(dut.beats.ready, int(rng.random() < 0.6))
            if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                p = dut.beats.payload
                got.append((ctx.get(p.data), ctx.get(p.row_last), ctx.get(p.last), ctx.get(p.err)))
            await ctx.tick()
            if not queue and len(got) >= len(want) and not ctx.get(dut.busy):
                break
        assert not ctx.get(dut.busy)
        assert len(model.pending) == 0

    run_clocked(dut, tb)
    assert len(got) == len(want), f"seed {seed}: {len(got)} beats, want {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"seed {seed}: beat {i}: got {g}, want {w}"


def expected_writes(mem, c, beats, wb):
    """Apply one command to ``mem`` (a copy); the beats' bytes past the row
    end are dropped; words past the end of memory are not written."""
    base = c["base"] & ~(wb - 1)
    stride = c["stride"] & ~(wb - 1)
    beat_bytes = len(beats[0])
    nb = -(-c["row_bytes"] // beat_bytes)
    err = 0
    for r in range(c["rows"]):
        row = np.concatenate(beats[r * nb:(r + 1) * nb])[:c["row_bytes"]]
        start = base + r * stride
        for w in range(-(-c["row_bytes"] // wb)):
            a = start + w * wb
            part = row[w * wb:(w + 1) * wb]
            if a + wb <= len(mem):
                mem[a:a + len(part)] = part
            else:
                err = 1
    return err


@pytest.mark.parametrize("data_width,beat_bytes,seed", [
    (16, 8, 11), (16, 2, 12), (32, 8, 13), (32, 16, 14), (8, 4, 15), (64, 8, 16), (16, 32, 17)])
def test_row_writer(data_width, beat_bytes, seed):
    rng = np.random.default_rng(seed)
    wb = data_width // 8
    mem0 = rng.integers(0, 256, 512, dtype=np.uint8)
    dut = RowWriter(addr_width=12, data_width=data_width, beat_bytes=beat_bytes, depth=4)
    cmds = [random_cmd(rng, len(mem0), beat_bytes) for _ in range(25)]
    beats = [[rng.integers(0, 256, beat_bytes, dtype=np.uint8)
              for _ in range(c["rows"] * -(-c["row_bytes"] // beat_bytes))] for c in cmds]
    want = mem0.copy()
    want_err = [expected_writes(want, c, b, wb) for c, b in zip(cmds, beats)]
    got_err = []

    async def tb(ctx):
        model = MemModel(dut.mem, mem0.copy(), wb, rng)
        queue = list(cmds)
        stream = [b for bs in beats for b in bs]
        issued = 0
        for cycle in range(30000):
            model.step(ctx)
            # the next command only once the previous one is done (err is per command)
            valid = bool(queue) and rng.random() < 0.8 and (issued == 0 or not ctx.get(dut.busy))
            if issued and not ctx.get(dut.busy) and len(got_err) < issued:
                got_err.append(ctx.get(dut.err))
            ctx.set(dut.cmd.valid, int(valid))
            if queue:
                set_cmd(ctx, dut.cmd, queue[0])
                if valid and ctx.get(dut.cmd.ready):
                    queue.pop(0)
                    issued += 1
            ctx.set(dut.beats.valid, int(bool(stream) and rng.random() < 0.7))
            if stream:
                ctx.set(dut.beats.payload.data, int.from_bytes(stream[0].tobytes(), "little"))
                if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                    stream.pop(0)
            await ctx.tick()
            if not queue and not ctx.get(dut.busy) and len(got_err) == issued:
                break
        assert not stream, f"{len(stream)} beats never taken"
        assert not ctx.get(dut.busy)
        np.testing.assert_array_equal(model.data, want, err_msg=f"seed {seed}")

    run_clocked(dut, tb)
    assert got_err == want_err, f"seed {seed}"


def test_reader_beats_wait_without_stalling_memory():
    """With ``beats`` never ready, the reader stops at ``depth`` responses
    and never refuses one (a stalled consumer cannot wedge the memory)."""
    rng = np.random.default_rng(3)
    mem = rng.integers(0, 256, 256, dtype=np.uint8)
    dut = RowReader(addr_width=10, data_width=16, beat_bytes=8, depth=4)

    async def tb(ctx):
        model = MemModel(dut.mem, mem, 2, rng, ready_p=1.0, max_latency=1)
        set_cmd(ctx, dut.cmd, dict(base=0, stride=64, rows=4, row_bytes=64))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.beats.ready, 0)
        requests = 0
        for _ in range(100):
            model.step(ctx)
            requests += ctx.get(dut.mem.req.valid) and ctx.get(dut.mem.req.ready)
            await ctx.tick()
        # 4 words in the FIFO + 4 packed into the held beat (the packer
        # takes words until a beat-ending word finds the output occupied)
        assert requests <= 4 + 4 + 4
        assert ctx.get(dut.busy)

    run_clocked(dut, tb)


@pytest.mark.parametrize("cls", [RowReader, RowWriter])
@pytest.mark.parametrize("kwargs,match", [
    (dict(data_width=24), r"^data_width must be a power of two, not 24$"),
    (dict(data_width=128), r"^data_width must be in range 8\.\.64, not 128$"),
    (dict(beat_bytes=3), r"^beat_bytes must be a power of two, not 3$"),
    (dict(data_width=32, beat_bytes=2), r"^beat_bytes must be at least the memory word's 4 bytes, not 2$"),
    (dict(depth=1), r"^depth must be in range 2\.\.256, not 1$"),
])
def test_rejects_bad_parameters(cls, kwargs, match):
    args = dict(addr_width=12, data_width=16, beat_bytes=8, depth=4) | kwargs
    with pytest.raises(ValueError, match=match):
        cls(**args)
