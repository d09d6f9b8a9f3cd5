"""The host driver (firmware/link.py, firmware/device.py): against a Python
fake of the chip's side of the protocol (fast), and once end to end through
``open_device("sim")`` (Verilator behind a pty, the pyserial path)."""

import os
import time

import numpy as np
import pytest

from seedchip.firmware.device import Device, open_device
from seedchip.firmware.sim import LINK_TOP
from seedchip.firmware.link import DeviceError, Link, LinkError
from seedchip.link_protocol import (MAX_DATA, RESPONSE, Cmd, FrameDecoder, InfoLayout, Status,
                                    encode_frame, pack_bytes)


class FakeChip:
    """The chip side in Python: memory, INFO, WRITE, READ, STATUS; faults on
    request: ``nak`` (seqs to NAK once), ``drop`` (responses to lose once),
    ``dup`` (responses to send twice)."""

    def __init__(self, size=8192, slots=4):
        self.mem = bytearray(size)
        self.slots = slots
        self.dec = FrameDecoder()
        self.out = bytearray()
        self.nak, self.drop, self.dup = set(), set(), set()
        self.frames = 0

    def write(self, data):
        for cmd, seq, payload in self.dec.feed(data):
            self.frames += 1
            self._answer(cmd, seq, payload)

    def _answer(self, cmd, seq, p):
        if self.frames in self.nak:
            self.nak.discard(self.frames)
            self.out += encode_frame(Cmd.NAK.value | RESPONSE, seq, bytes([Status.BAD_CRC.value]))
            return
        st, data = Status.OK, b""
        if cmd == Cmd.INFO.value:
            data = pack_bytes(InfoLayout, {"version": 1, "max_payload": 1024, "max_data": MAX_DATA,
                                           "mem_bytes": len(self.mem), "word_bytes": 4,
                                           "rx_slots": self.slots, "n_link_counters": 9,
                                           "n_unit_counters": 0, "reg_addr_bits": 16})
        elif cmd == Cmd.WRITE.value:
            a = int.from_bytes(p[:4], "little")
            if a + len(p) - 4 > len(self.mem):
                st = Status.MEM_ERR
            else:
                self.mem[a:a + len(p) - 4] = p[4:]
        elif cmd == Cmd.READ.value:
            a, n = int.from_bytes(p[:4], "little"), int.from_bytes(p[4:6], "little")
            if a + n > len(self.mem):
                st = Status.MEM_ERR
            else:
                data = bytes(self.mem[a:a + n])
        elif cmd == Cmd.STATUS.value:
            data = (2).to_bytes(4, "little")
        else:
            st = Status.UNKNOWN_CMD
        frame = encode_frame(cmd | RESPONSE, seq, bytes([st.value]) + data)
        if self.frames in self.drop:
            self.drop.discard(self.frames)
            return
        self.out += frame
        if self.frames in self.dup:
            self.out += frame

    def read(self, timeout):
        out, self.out = bytes(self.out), bytearray()
        if not out:
            time.sleep(min(timeout, 0.001))
        return out

    def close(self):
        pass


def _device(chip, **kw):
    return Device(Link(chip, timeout=kw.pop("timeout", 0.05), **kw))


def test_write_read_pipelined():
    chip = FakeChip()
    dev = _device(chip)
    assert dev.info()["rx_slots"] == 4 and dev.link.window == 4
    rng = np.random.default_rng(1)
    a = rng.integers(-2**31, 2**31, 1500, dtype=np.int32)
    dev.write(3, a)
    assert bytes(chip.mem[3:3 + a.nbytes]) == a.tobytes()
    assert chip.frames == 1 + -(-a.nbytes // MAX_DATA)
    b = dev.read(3, dtype=np.int32, shape=(500, 3))
    assert b.shape == (500, 3) and (b.ravel() == a).all()
    assert dev.status() == 2


def test_nak_drop_duplicate():
    chip = FakeChip()
    dev = _device(chip)
    chip.nak = {2, 4}            # NAK'd frames are retransmitted at once
    chip.drop = {6}              # a lost response: retransmitted after the timeout
    chip.dup = {8}               # a duplicate response: dropped by seq
    data = bytes(range(256)) * 20
    dev.write(0, data)
    assert bytes(chip.mem[:len(data)]) == data
    assert dev.link.retransmits == 3
    assert bytes(dev.read(0, len(data))) == data
    assert dev.link.dropped >= 1


def test_errors():
    chip = FakeChip(size=100)
    dev = _device(chip, retries=2)
    with pytest.raises(DeviceError, match="MEM_ERR") as e:
        dev.write(90, b"x" * 20)
    assert e.value.status == Status.MEM_ERR
    chip.drop = set(range(100))              # nothing answers any more
    with pytest.raises(LinkError, match="after 2 retransmissions"):
        dev.read(0, 4)
    chip.drop = set()
    with pytest.raises(LinkError, match="not retransmitted"):
        chip.drop = set(range(chip.frames + 1, chip.frames + 3))
        dev.link.request(Cmd.START, b"\0\0\0\0")
    with pytest.raises(LinkError, match="'sim'"):
        open_device("tcp:1")


def _group(pgid):
    """The processes of process group ``pgid``."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            if int(fields[2]) == pgid:
                out.append(int(pid))
        except (OSError, ValueError, IndexError):
            pass
    return out


def test_sim_mem_bytes_checked():
    """Refused before a simulator starts."""
    with pytest.raises(ValueError, match="mem_bytes must be a multiple of 8"):
        open_device("sim", mem_bytes=10001)
    with pytest.raises(ValueError, match=r"mem_bytes must be in range 4096\.\.67108864"):
        open_device("sim", mem_bytes=1 << 30)
    with pytest.raises(ValueError, match="mem_bytes must be a multiple of 4"):
        open_device("sim", top=LINK_TOP, mem_bytes=1001)
    with pytest.raises(TypeError, match="mem_bytes: for the default build; give them or config"):
        open_device("sim", mem_bytes=4096, config=object())
    with pytest.raises(TypeError, match="mem_bytes: for open_device\\('sim'\\) only"):
        open_device("serial:/dev/null", mem_bytes=4096)


def test_sim_end_to_end(sim):
    """Through the link test top's Verilator model behind a pty (its default 64 KiB build):
    arrays across frame boundaries, the top of memory, status/counters, a bad
    CRC through the pty, clean close()."""
    from seedchip.sim.link_top import SERVE_MEM_BYTES

    dev = open_device("sim", top=LINK_TOP)
    chip = dev._owner
    try:
        assert dev.info()["mem_bytes"] == SERVE_MEM_BYTES
        dev.write(SERVE_MEM_BYTES - 4, b"\x01\x02\x03\x04")
        assert bytes(dev.read(SERVE_MEM_BYTES - 4, 4)) == b"\x01\x02\x03\x04"
        with pytest.raises(DeviceError, match="MEM_ERR"):
            dev.read(SERVE_MEM_BYTES - 2, 4)
        rng = np.random.default_rng(7)
        a = rng.integers(0, 2**16, 2100, dtype=np.uint16)       # 4200 B: 5 frames
        t0 = time.monotonic()
        dev.write(1, a)
        b = dev.read(1, dtype=np.uint16, shape=a.shape)
        rate = 2 * a.nbytes / (time.monotonic() - t0)
        print(f"sim transport: {rate:.0f} B/s")
        assert (a == b).all()
        assert dev.status() == 0
        # a frame with a bad CRC through the real pty: NAK, nothing written
        frame = bytearray(encode_frame(Cmd.WRITE, 200, (1).to_bytes(4, "little") + b"\xFF" * 4))
        frame[-2] ^= 1
        dev.link.transport.write(bytes(frame))
        dec = FrameDecoder()
        got = []
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < 30:
            got = dec.feed(dev.link.transport.read(0.5))
        assert got and got[0][:2] == (Cmd.NAK.value | RESPONSE, 200)
        assert got[0][2][0] == Status.BAD_CRC.value
        assert (dev.read(1, dtype=np.uint16, shape=4) == a[:4]).all()
        c = dev.counters()
        assert c["rx_bad_crc"] == 1 and c["rx_framing"] == 0 and c["rx_overflow"] == 0
        assert c["cmd_errors"] == 1
    finally:
        dev.close()
    assert chip.proc.poll() is not None
    assert _group(chip.proc.pid) == []          # the Verilator model is gone too
