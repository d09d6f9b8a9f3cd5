"""The host link's wire format and register map, defined once.

The gateware (:mod:`seedchip.rtl.hostlink` and its parts), the host driver
(:mod:`seedchip.firmware.link`) and the testbenches import this module; no
byte offset, opcode or register index is written anywhere else.

Frame (both directions, bytes of a UART 8N1 line)::

    SOF=0xA5 | cmd:u8 | seq:u8 | len:u16 LE | payload (len bytes) | crc:u16 LE

``crc`` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected;
check value 0x29B1, Python's ``binascii.crc_hqx(data, 0xFFFF)``) over
``cmd`` .. the last payload byte. ``len <= MAX_PAYLOAD``. Multi-byte fields
are little-endian, and every layout below is a :class:`data.StructLayout`
whose bit order *is* the byte order (``int.to_bytes(..., "little")``).

A response carries ``cmd | RESPONSE``, the request's ``seq``, and a payload
that starts with a :class:`Status` byte. A frame with a bad CRC is answered
with a NAK frame (``Cmd.NAK | RESPONSE``, the seq as received, ``BAD_CRC``)
so that the host retransmits at once; nothing of such a frame is applied.

Flow control: the chip holds at most ``rx_slots`` (INFO) received frames,
each in a slot of ``MAX_PAYLOAD`` bytes, from its SOF until its response has
been handed to the transmitter. The host keeps at most ``rx_slots`` requests
outstanding (sent, not answered), so a frame always finds a free slot: a
response arrives only after its slot was freed. A frame that finds no free
slot anyway (a host breaking this rule) is skipped and counted in
``RX_OVERFLOW``, never a hang: the host's timeout retransmits it.
"""

import binascii
import enum as py_enum

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

__all__ = [
    "SOF", "RESPONSE", "VERSION", "MAX_PAYLOAD", "MAX_DATA", "MAX_REGS",
    "HEADER_BYTES", "CRC_BYTES", "REG_ADDR_BITS", "REG_WIDTH",
    "Cmd", "Status", "LinkCounter", "Reg", "Block", "CTRL_START", "CTRL_RESET",
    "UnitCounter", "UNIT_CYCLES", "N_UNITS", "N_UNIT_REGS", "unit_counter",
    "STATUS_BUSY", "STATUS_DONE",
    "HeaderLayout", "InfoLayout", "AddrArgs", "ReadArgs", "RegReadArgs", "RegWriteArgs",
    "IDEMPOTENT", "crc16", "encode_frame", "pack_bytes", "unpack_bytes", "FrameDecoder",
]

SOF = 0xA5
#: set in ``cmd`` of every chip-to-host frame
RESPONSE = 0x80
VERSION = 1
#: payload bytes of one frame, either direction (one receive slot)
MAX_PAYLOAD = 1024
#: data bytes of one READ or WRITE: a multiple of 8 (whole words for data
#: widths up to 64 bits) that leaves room for the 4-byte address of a WRITE
#: and the status byte of a READ response within MAX_PAYLOAD
MAX_DATA = 1016
#: registers of one REG_READ (status + 4 bytes each fit in MAX_PAYLOAD)
MAX_REGS = (MAX_PAYLOAD - 1) // 4
HEADER_BYTES = 5
CRC_BYTES = 2
#: register port: address bits (register index, not bytes) and data width
REG_ADDR_BITS = 16
REG_WIDTH = 32


class Cmd(enum.Enum, shape=8):
    """Host-to-chip commands (payload: request -> response after the status byte)."""
    #: () -> InfoLayout
    INFO = 0x01
    #: addr:u32 (byte address) + data bytes (<= MAX_DATA) -> ()
    WRITE = 0x02
    #: ReadArgs (n <= MAX_DATA) -> n bytes
    READ = 0x03
    #: reg:u16 + k values:u32 (registers reg .. reg+k-1, k >= 1) -> ()
    REG_WRITE = 0x04
    #: RegReadArgs (1 <= count <= MAX_REGS) -> count values:u32
    REG_READ = 0x05
    #: addr:u32 -> (): PROG_ADDR := addr, then CTRL := CTRL_START
    START = 0x06
    #: () -> STATUS register:u32
    STATUS = 0x07
    #: () -> the link counters then the unit counters, u32 each (INFO says how many)
    COUNTERS = 0x08
    #: () -> (): CTRL := CTRL_RESET, and the link counters are cleared
    RESET = 0x09
    #: never sent by the host: ``NAK | RESPONSE`` answers a frame with a bad CRC
    NAK = 0x7F


class Status(enum.Enum, shape=8):
    OK = 0
    #: the frame's CRC failed (sent in a NAK frame); nothing was applied
    BAD_CRC = 1
    #: ``len > MAX_PAYLOAD``: answered as soon as the header is in
    BAD_LENGTH = 2
    UNKNOWN_CMD = 3
    #: payload size or a count wrong for the command; nothing was applied
    BAD_ARGS = 4
    #: address range outside the memory (nothing was read or written), or the
    #: memory port answered ``err``
    MEM_ERR = 5
    #: no such register, or a read-only one written; registers before it in a
    #: REG_WRITE were written
    REG_ERR = 6


class LinkCounter(py_enum.IntEnum):
    """The link's own counters: registers ``Block.LINK.base + index``, served
    by the link itself (read-only; RESET clears them)."""
    RX_FRAMES = 0       # frames received with a good CRC
    RX_BAD_CRC = 1      # frames dropped for a bad CRC (NAK sent)
    RX_TIMEOUT = 2      # partial frames dropped by the inter-byte timeout
    RX_BAD_LENGTH = 3   # headers with len > MAX_PAYLOAD
    RX_GARBAGE = 4      # bytes skipped while hunting for SOF
    RX_FRAMING = 5      # UART bytes with a bad stop bit (dropped)
    RX_OVERFLOW = 6     # frames with no free slot, plus UART overruns
    TX_FRAMES = 7       # responses sent
    CMD_ERRORS = 8      # responses with a status other than OK to good frames


class Block(py_enum.Enum):
    """Register-map blocks: (base, size) in register indices."""
    CONTROL = (0x0000, 0x0100)
    UNIT = (0x0100, 0x0100)      # per-unit counters (the chip's own)
    LINK = (0x0F00, 0x0100)      # LinkCounter, served by the link

    @property
    def base(self):
        return self.value[0]

    @property
    def size(self):
        return self.value[1]


class Reg(py_enum.IntEnum):
    """Control/status registers (block CONTROL). A read of CTRL, a write of a
    read-only register, or any index not named here answers ``err``."""
    CTRL = 0x0000        # write-only pulses: CTRL_START, CTRL_RESET
    STATUS = 0x0001      # read-only: seedchip.isa.StatusLayout's word 0 (STATUS_BUSY, ...)
    PROG_ADDR = 0x0002   # program address for CTRL_START
    SCRATCH = 0x0003     # read/write, no effect
    PC = 0x0004          # read-only: last dispatched; stopped: the failing one / FINISH
    RETIRED = 0x0005     # read-only: instructions dispatched; stopped: isa.Status.retired
    ERR_BAG = 0x0006     # read-only: isa.Status.bag
    ERR_INDEX = 0x0007   # read-only: isa.Status.index (MEM_ERROR: the byte address)


class UnitCounter(py_enum.IntEnum):
    """Per-unit cycle counters (block UNIT, after CYCLES): register
    ``unit_counter(unit, counter)``; they count while a program runs
    (STATUS busy), CTRL_START and CTRL_RESET clear them."""
    BUSY = 0             # the unit holds an instruction (dispatched, not done)
    MEM_STALL = 1        # ... and reports it waits for memory
    IDLE = 2             # the unit holds no instruction


#: Block UNIT, index 0: cycles of the program (STATUS busy), read-only.
UNIT_CYCLES = Block.UNIT.base
#: Units with counters (seedchip.isa.Unit: GEMM, GATHER, COPY).
N_UNITS = 3
#: Registers of the unit block that the control unit serves (CYCLES, then
#: the UnitCounters of each unit): what COUNTERS reads after the link's.
N_UNIT_REGS = 1 + N_UNITS * len(UnitCounter)


def unit_counter(unit: int, counter: UnitCounter) -> int:
    """The register index of ``counter`` of ``unit`` (an ``isa.Unit`` value)."""
    if not 0 <= int(unit) < N_UNITS:
        raise ValueError(f"unit must be in range 0..{N_UNITS - 1}, not {unit!r}")
    return UNIT_CYCLES + 1 + int(unit) * len(UnitCounter) + int(UnitCounter(counter))


CTRL_START = 1 << 0   # not while a program runs (answered err, nothing happens)
CTRL_RESET = 1 << 1   # wins over CTRL_START in the same write
STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1

#: commands a host may retransmit after a timeout (its response may be lost
#: after the chip applied it); the others are retransmitted only on a NAK
IDEMPOTENT = frozenset({Cmd.INFO, Cmd.WRITE, Cmd.READ, Cmd.REG_READ, Cmd.STATUS,
                        Cmd.COUNTERS, Cmd.REG_WRITE})

HeaderLayout = data.StructLayout({
    "sof": unsigned(8), "cmd": unsigned(8), "seq": unsigned(8), "len": unsigned(16),
})

#: INFO response payload after the status byte
InfoLayout = data.StructLayout({
    "version": unsigned(8),
    "max_payload": unsigned(16),
    "max_data": unsigned(16),
    "mem_bytes": unsigned(32),
    "word_bytes": unsigned(8),
    "rx_slots": unsigned(8),
    "n_link_counters": unsigned(8),
    "n_unit_counters": unsigned(8),
    "reg_addr_bits": unsigned(8),
})

#: WRITE (followed by the data) and START arguments
AddrArgs = data.StructLayout({"addr": unsigned(32)})
ReadArgs = data.StructLayout({"addr": unsigned(32), "n": unsigned(16)})
RegReadArgs = data.StructLayout({"reg": unsigned(REG_ADDR_BITS), "count": unsigned(16)})
#: REG_WRITE arguments (followed by the values)
RegWriteArgs = data.StructLayout({"reg": unsigned(REG_ADDR_BITS)})


def crc16(data_bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data_bytes`` (``crc16(b"123456789") == 0x29B1``)."""
    return binascii.crc_hqx(bytes(data_bytes), crc)


def pack_bytes(layout, value) -> bytes:
    """A struct layout's value (dict) as the little-endian bytes on the wire."""
    return layout.const(value).as_bits().to_bytes(layout.size // 8, "little")


def unpack_bytes(layout, raw) -> dict:
    """Inverse of :func:`pack_bytes`: a dict of ints."""
    bits = int.from_bytes(bytes(raw)[:layout.size // 8], "little")
    out = {}
    for name, field in layout:
        out[name] = (bits >> field.offset) & ((1 << field.shape.width) - 1)
    return out


def encode_frame(cmd: int, seq: int, payload=b"") -> bytes:
    """One complete frame: header, payload, CRC."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload must be at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    cmd = cmd.value if isinstance(cmd, Cmd) else cmd
    head = pack_bytes(HeaderLayout, {"sof": SOF, "cmd": cmd & 0xFF, "seq": seq & 0xFF,
                                     "len": len(payload)})
    return head + payload + crc16(head[1:] + payload).to_bytes(2, "little")


class FrameDecoder:
    """Incremental frame parser (host side and testbenches): feed bytes,
    take ``(cmd, seq, payload)`` tuples. Mirrors the chip's receiver:
    hunts for SOF, skips garbage, drops a frame with a bad CRC or a length
    over ``max_payload`` (counted in :attr:`bad_crc`, :attr:`bad_length`,
    :attr:`garbage`)."""

    def __init__(self, max_payload: int = MAX_PAYLOAD + 1):
        self.max_payload = max_payload
        self.buf = bytearray()
        self.frames = []
        self.garbage = 0
        self.bad_crc = 0
        self.bad_length = 0

    def reset(self) -> None:
        """Drop a partial frame (the host's inter-byte timeout)."""
        self.buf.clear()

    def feed(self, chunk) -> list:
        """Add bytes; returns (and removes) the complete frames so far."""
        self.buf += chunk
        buf = self.buf
        while buf:
            if buf[0] != SOF:
                i = buf.find(SOF)
                i = len(buf) if i < 0 else i
                self.garbage += i
                del buf[:i]
                continue
            if len(buf) < HEADER_BYTES:
                break
            n = buf[3] | buf[4] << 8
            if n > self.max_payload:
                self.bad_length += 1
                del buf[:1]
                continue
            end = HEADER_BYTES + n + CRC_BYTES
            if len(buf) < end:
                break
            body = bytes(buf[1:HEADER_BYTES + n])
            if crc16(body) != (buf[end - 2] | buf[end - 1] << 8):
                self.bad_crc += 1
                del buf[:1]          # hunt again from the next byte
                continue
            self.frames.append((body[0], body[1], body[4:]))
            del buf[:end]
        out, self.frames = self.frames, []
        return out
