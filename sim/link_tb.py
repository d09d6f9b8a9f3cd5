"""cocotb tests of the host link (:class:`~seedchip.sim.link_top.LinkTestTop`)
through its UART pins, with cocotbext-uart at the link's rate.

The reference is a NumPy byte image of the memory and the protocol module;
nothing expected is taken from the RTL. Run through tests/test_hostlink.py.
"""

import logging
import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer
from cocotbext.uart import UartSink, UartSource

from ..link_protocol import (MAX_DATA, MAX_PAYLOAD, RESPONSE, SOF, STATUS_BUSY, STATUS_DONE,
                             Block, Cmd, FrameDecoder, InfoLayout, LinkCounter, Reg, Status,
                             crc16, encode_frame, unpack_bytes)
from .link_top import RUN_CYCLES, LinkSimConfig
from .tb import derive_seed

N_LINK = len(LinkCounter)


def load_link_config() -> LinkSimConfig:
    text = os.environ.get("SEEDCHIP_CONFIG")
    if not text:
        raise RuntimeError("SEEDCHIP_CONFIG is not set: run this module through seedchip.sim.runner")
    return LinkSimConfig.from_json(text)


class LinkTB:
    """Clock, reset, UART source/sink on ``rx``/``tx``, a frame decoder and
    the memory model (``self.mem``, bytes)."""

    def __init__(self, dut, *, baud_error: float = 0.0):
        self.dut = dut
        self.cfg = load_link_config()
        self.seed = derive_seed()
        self.rng = np.random.default_rng(self.seed)
        dut._log.info("seed=%d", self.seed)
        Clock(dut.clk, self.cfg.clk_period_ns, unit="ns").start()
        self.bit_ns = self.cfg.clk_period_ns * self.cfg.divisor
        self.source = self.sink = None
        self.set_host_baud(baud_error)
        self.decoder = FrameDecoder()
        self.pending = []
        self.seq = 0
        self.mem = np.zeros(self.cfg.mem_bytes, np.uint8)
        self.expect = {c: 0 for c in LinkCounter}

    def set_host_baud(self, error: float):
        """(Re)start the host's UART ``error`` off the link's rate (whole ns per bit)."""
        for old in (self.source, self.sink):
            if old is not None:
                old._run_cr.cancel()
        host_bit_ns = round(self.bit_ns * (1 + error))
        self.source = UartSource(self.dut.rx, baud=1e9 / host_bit_ns)
        self.sink = UartSink(self.dut.tx, baud=1e9 / host_bit_ns)
        for sig in (self.dut.rx, self.dut.tx):        # one log line per byte is too slow
            logging.getLogger(f"cocotb.{sig._path}").setLevel(logging.WARNING)
        return (host_bit_ns - self.bit_ns) / self.bit_ns

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def fail(self, msg):
        raise AssertionError(f"{msg} [seed={self.seed}]")

    # -- frames ------------------------------------------------------------------
    def next_seq(self):
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def send_raw(self, raw: bytes):
        self.source.write_nowait(raw)

    def send(self, cmd, payload=b"", seq=None) -> int:
        seq = self.next_seq() if seq is None else seq
        self.send_raw(encode_frame(cmd, seq, payload))
        return seq

    async def recv(self, timeout_bytes: int = 3000):
        """The next response frame (cmd, seq, payload)."""
        waited = 0
        while not self.pending:
            if not self.sink.empty():
                self.pending += self.decoder.feed(self.sink.read_nowait())
                continue
            if waited > timeout_bytes:
                self.fail(f"no response within {timeout_bytes} byte times")
            await Timer(self.bit_ns * 10, unit="ns")
            waited += 1
        return self.pending.pop(0)

    async def expect_response(self, cmd, seq, status=Status.OK, timeout_bytes=3000):
        rcmd, rseq, payload = await self.recv(timeout_bytes)
        cmd_v = cmd.value if isinstance(cmd, Cmd) else cmd
        if (rcmd, rseq) != (cmd_v | RESPONSE, seq):
            self.fail(f"response cmd/seq {rcmd:#x}/{rseq} for {cmd!r} seq {seq}")
        if not payload or payload[0] != status.value:
            got = Status(payload[0]) if payload and payload[0] < 7 else payload[:1]
            self.fail(f"{cmd!r}: status {got!r}, expected {status!r}")
        self.expect[LinkCounter.TX_FRAMES] += 1
        return payload[1:]

    async def call(self, cmd, payload=b"", status=Status.OK):
        seq = self.send(cmd, payload)
        data = await self.expect_response(cmd, seq, status)
        if status in (Status.OK, Status.MEM_ERR, Status.REG_ERR, Status.BAD_ARGS,
                      Status.UNKNOWN_CMD):
            self.expect[LinkCounter.RX_FRAMES] += 1
        if status in (Status.MEM_ERR, Status.REG_ERR, Status.BAD_ARGS, Status.UNKNOWN_CMD):
            self.expect[LinkCounter.CMD_ERRORS] += 1
        return data

    # -- commands ----------------------------------------------------------------
    async def write(self, addr, data, status=Status.OK):
        await self.call(Cmd.WRITE, addr.to_bytes(4, "little") + bytes(data), status)
        if status == Status.OK:
            self.mem[addr:addr + len(data)] = np.frombuffer(bytes(data), np.uint8)

    async def read(self, addr, n, status=Status.OK):
        return await self.call(Cmd.READ, addr.to_bytes(4, "little") + n.to_bytes(2, "little"),
                               status)

    async def reg_read(self, reg, count=1, status=Status.OK):
        raw = await self.call(Cmd.REG_READ, reg.to_bytes(2, "little") +
                              count.to_bytes(2, "little"), status)
        return [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(len(raw) // 4)]

    async def reg_write(self, reg, values, status=Status.OK):
        await self.call(Cmd.REG_WRITE, reg.to_bytes(2, "little") +
                        b"".join(v.to_bytes(4, "little") for v in values), status)

    async def counters(self):
        raw = await self.call(Cmd.COUNTERS)
        vals = [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(len(raw) // 4)]
        return vals[:N_LINK], vals[N_LINK:]

    async def check_counters(self, what):
        link, _ = await self.counters()
        exp = [self.expect[c] for c in LinkCounter]
        exp[LinkCounter.TX_FRAMES] -= 1       # this response is not sent yet
        if link != exp:
            diff = {c.name: (link[c], exp[c]) for c in LinkCounter if link[c] != exp[c]}
            self.fail(f"after {what}: link counters (got, expected) {diff}")

    async def check_memory(self, what):
        got = await self.read_all()
        bad = np.flatnonzero(np.frombuffer(bytes(got), np.uint8) != self.mem)
        if bad.size:
            self.fail(f"after {what}: memory differs at {bad.size} bytes, first at {bad[0]:#x}")

    async def load_model(self):
        """The model := the memory as it is (earlier tests of the run wrote it)."""
        self.mem[:] = np.frombuffer(bytes(await self.read_all()), np.uint8)

    async def read_all(self):
        got = bytearray()
        starts = list(range(0, self.cfg.mem_bytes, MAX_DATA))
        for i in range(0, len(starts), self.cfg.rx_slots):   # windows of rx_slots frames
            for a in starts[i:i + self.cfg.rx_slots]:
                n = min(MAX_DATA, self.cfg.mem_bytes - a)
                self.window_send(Cmd.READ, a.to_bytes(4, "little") + n.to_bytes(2, "little"))
            for data in await self.window_drain():
                got += data
        return got

    # -- a window of frames in flight ----------------------------------------------
    def window_send(self, cmd, payload):
        if not hasattr(self, "_window"):
            self._window = []
        self._window.append((cmd, self.send(cmd, payload)))

    async def window_drain(self):
        out = []
        for entry in self._window:
            cmd, seq = entry[:2]
            out.append(await self.expect_response(cmd, seq))
            self.expect[LinkCounter.RX_FRAMES] += 1
        self._window = []
        return out


async def _start(dut, **kw):
    tb = LinkTB(dut, **kw)
    await tb.reset()
    return tb


@cocotb.test()
async def test_info_regs(dut):
    """INFO, register reads/writes, START/STATUS, COUNTERS, RESET, REG_ERR."""
    tb = await _start(dut)
    cfg = tb.cfg
    info = unpack_bytes(InfoLayout, await tb.call(Cmd.INFO))
    want = {"version": 1, "max_payload": MAX_PAYLOAD, "max_data": MAX_DATA,
            "mem_bytes": cfg.mem_bytes, "word_bytes": cfg.data_width // 8,
            "rx_slots": cfg.rx_slots, "n_link_counters": N_LINK, "n_unit_counters": 2,
            "reg_addr_bits": 16}
    if info != want:
        tb.fail(f"INFO {info} != {want}")
    await tb.reg_write(Reg.SCRATCH, [0xDEADBEEF])
    await tb.reg_write(Reg.PROG_ADDR, [0x1234, 0x5678_9ABC])     # PROG_ADDR, SCRATCH
    vals = await tb.reg_read(Reg.PROG_ADDR, 2)
    if vals != [0x1234, 0x5678_9ABC]:
        tb.fail(f"REG_READ {vals}")
    await tb.reg_read(0x0050, 1, Status.REG_ERR)              # no such register
    await tb.reg_write(Reg.STATUS, [1], Status.REG_ERR)       # read-only
    await tb.reg_write(Block.LINK.base, [0], Status.REG_ERR)  # link counters are read-only
    await tb.reg_read(Block.LINK.base + N_LINK, 1, Status.REG_ERR)
    # START: PROG_ADDR, then a fake run of RUN_CYCLES
    await tb.call(Cmd.START, (0xCAFE00).to_bytes(4, "little"))
    st = int.from_bytes(await tb.call(Cmd.STATUS), "little")
    if st != STATUS_BUSY and st != STATUS_DONE:
        tb.fail(f"STATUS after START: {st:#x}")
    await Timer(RUN_CYCLES * cfg.clk_period_ns, unit="ns")
    st = int.from_bytes(await tb.call(Cmd.STATUS), "little")
    if st != STATUS_DONE:
        tb.fail(f"STATUS after the run: {st:#x}")
    if (await tb.reg_read(Reg.PROG_ADDR))[0] != 0xCAFE00:
        tb.fail("START did not write PROG_ADDR")
    link, unit = await tb.counters()
    if unit[1] != 1 or unit[0] == 0:
        tb.fail(f"unit counters {unit}")
    # the link block through REG_READ equals COUNTERS' link part (one more frame each)
    via_regs = await tb.reg_read(Block.LINK.base, N_LINK)
    if via_regs[LinkCounter.RX_FRAMES] != link[LinkCounter.RX_FRAMES] + 1:
        tb.fail(f"REG_READ of the link block {via_regs} vs COUNTERS {link}")
    await tb.check_counters("register commands")
    await tb.call(Cmd.RESET)
    tb.expect = {c: 0 for c in LinkCounter}
    tb.expect[LinkCounter.TX_FRAMES] = 1        # RESET's own response, sent after the clear
    link, unit = await tb.counters()
    tb.expect[LinkCounter.RX_FRAMES] = 1
    if unit[1] != 0 or link[LinkCounter.RX_FRAMES] != 1 or link[LinkCounter.TX_FRAMES] != 1:
        tb.fail(f"after RESET: link {link} unit {unit}")
    st = int.from_bytes(await tb.call(Cmd.STATUS), "little")
    if st != 0:
        tb.fail(f"STATUS after RESET: {st:#x}")


@cocotb.test()
async def test_random_mem(dut):
    """Random WRITE/READ (unaligned, up to MAX_DATA, windows of rx_slots
    frames) against the NumPy model; out-of-range ranges get MEM_ERR."""
    tb = await _start(dut)
    size = tb.cfg.mem_bytes
    rng = tb.rng
    await tb.load_model()
    for rnd in range(12):
        for _ in range(tb.cfg.rx_slots):
            n = int(rng.choice([1, 2, 3, 7, int(rng.integers(1, MAX_DATA + 1)), MAX_DATA]))
            addr = int(rng.integers(0, size - n + 1))
            if rng.random() < 0.6:
                data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                tb.window_send(Cmd.WRITE, addr.to_bytes(4, "little") + data)
                tb.mem[addr:addr + n] = np.frombuffer(data, np.uint8)
            else:
                tb.window_send(Cmd.READ, addr.to_bytes(4, "little") + n.to_bytes(2, "little"))
                tb._window[-1] += (addr, n, tb.mem[addr:addr + n].tobytes())
        entries = list(tb._window)
        results = await tb.window_drain()
        for e, got in zip(entries, results):
            if e[0] == Cmd.READ and bytes(got) != e[4]:
                tb.fail(f"round {rnd}: READ {e[2]:#x}+{e[3]} differs")
    # out of range: refused whole, nothing written
    await tb.write(size - 3, b"\x11" * 4, Status.MEM_ERR)
    await tb.write(size, b"\x22", Status.MEM_ERR)
    await tb.write(0xFFFF_FFFF, b"\x33" * 8, Status.MEM_ERR)
    await tb.read(size - 1, 2, Status.MEM_ERR)
    await tb.read(0, MAX_DATA + 1, Status.BAD_ARGS)
    await tb.write(size - 4, b"\x44" * 4)                     # the last bytes: fine
    if bytes(await tb.read(size - 4, 4)) != b"\x44" * 4:
        tb.fail("last word")
    await tb.check_memory("random traffic and out-of-range writes")
    await tb.check_counters("random traffic")


async def _bad_stop_bit(tb, byte):
    """One byte with its stop bit low, driven by hand."""
    await tb.source.wait()
    bit = Timer(tb.bit_ns, unit="ns")
    for v in [0] + [(byte >> i) & 1 for i in range(8)] + [0]:
        tb.dut.rx.value = v
        await bit
    tb.dut.rx.value = 1
    await Timer(tb.bit_ns * 20, unit="ns")


@cocotb.test()
async def test_errors(dut):
    """Bad CRC (NAK, nothing written), truncated frame, oversize length,
    unknown command, bad arguments, garbage, a lost byte, a framing error:
    after each the link works and the right counter moved."""
    tb = await _start(dut)
    await tb.load_model()
    E = tb.expect
    await tb.write(0x40, b"\x01\x02\x03\x04")

    frame = bytearray(encode_frame(Cmd.WRITE, 7, (0x40).to_bytes(4, "little") + b"\xEE" * 4))
    frame[-1] ^= 0x55
    tb.send_raw(bytes(frame))
    await tb.expect_response(Cmd.NAK, 7, Status.BAD_CRC)
    E[LinkCounter.RX_BAD_CRC] += 1
    await tb.check_memory("a bad CRC")

    # truncated frame: dropped by the inter-byte timeout, then a good frame
    tb.send_raw(encode_frame(Cmd.WRITE, 9, (0x80).to_bytes(4, "little") + b"\xAB" * 16)[:12])
    await tb.source.wait()
    await Timer(tb.bit_ns * 10 * (tb.cfg.timeout_bytes + 4), unit="ns")
    E[LinkCounter.RX_TIMEOUT] += 1
    await tb.write(0x80, b"\x5A" * 5)
    await tb.check_counters("a truncated frame")

    # oversize length: answered at once, then hunting resumes
    tb.send_raw(bytes((SOF, Cmd.READ.value, 11)) + (MAX_PAYLOAD + 1).to_bytes(2, "little"))
    await tb.expect_response(Cmd.READ, 11, Status.BAD_LENGTH)
    E[LinkCounter.RX_BAD_LENGTH] += 1
    await tb.write(0x90, b"\x77")

    await tb.call(0x55, b"", Status.UNKNOWN_CMD)
    await tb.call(Cmd.READ, b"\x00" * 5, Status.BAD_ARGS)
    await tb.call(Cmd.INFO, b"\x00", Status.BAD_ARGS)
    await tb.call(Cmd.REG_WRITE, b"\x03\x00\x01", Status.BAD_ARGS)
    await tb.call(Cmd.REG_READ, b"\x03\x00\x00\x00", Status.BAD_ARGS)     # count 0
    await tb.call(Cmd.WRITE, b"\x00" * 3, Status.BAD_ARGS)

    # garbage (no SOF in it) between frames
    garbage = bytes(b for b in tb.rng.integers(0, 256, 50, dtype=np.uint8) if b != SOF)
    tb.send_raw(garbage)
    E[LinkCounter.RX_GARBAGE] += len(garbage)
    await tb.write(0xA0, b"\x99" * 3)
    await tb.check_counters("garbage")

    # a lost byte: the frame runs into the next one; the host's retransmission
    # after the NAK or the timeout gets through
    lost = bytearray(encode_frame(Cmd.WRITE, 21, (0xB0).to_bytes(4, "little") + b"\xC3" * 8))
    del lost[8]
    tb.send_raw(bytes(lost))
    await tb.source.wait()
    await Timer(tb.bit_ns * 10 * (tb.cfg.timeout_bytes + 4), unit="ns")
    E[LinkCounter.RX_TIMEOUT] += 1
    await tb.write(0xB0, b"\xC3" * 8)

    await _bad_stop_bit(tb, 0x3C)
    E[LinkCounter.RX_FRAMING] += 1
    await tb.write(0xC0, b"\x12\x34")
    await tb.check_counters("a lost byte and a framing error")
    await tb.check_memory("the error cases")
    if tb.decoder.bad_crc or tb.decoder.garbage:
        tb.fail(f"the chip sent {tb.decoder.bad_crc} bad frames, {tb.decoder.garbage} stray bytes")


@cocotb.test()
async def test_baud_error(dut):
    """The host's UART 1.25 % slow, then fast (whole ns per bit at 8 clocks
    per bit): frames still get through both ways, no framing error."""
    tb = await _start(dut)
    for err in (-0.0125, 0.0125):
        err = tb.set_host_baud(err)
        data = tb.rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        await tb.write(0x10, data)
        if bytes(await tb.read(0x10, 300)) != data:
            tb.fail(f"baud error {err}: read back differs")
        link, _ = await tb.counters()
        if link[LinkCounter.RX_FRAMING] or link[LinkCounter.RX_BAD_CRC]:
            tb.fail(f"baud error {err}: counters {link}")
