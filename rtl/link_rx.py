"""Frame receiver of the host link: bytes in, checked frames out."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..checks import check_int, check_pow2
from ..link_protocol import MAX_PAYLOAD, SOF, Status
from .crc16 import crc16_next

__all__ = ["FrameDescLayout", "FrameReceiver", "PAYLOAD_BITS"]

PAYLOAD_BITS = exact_log2(MAX_PAYLOAD)

#: one received frame; its payload is in the frame buffer's next slot
FrameDescLayout = data.StructLayout({
    "cmd": 8,
    "seq": 8,
    "len": range(MAX_PAYLOAD + 1),
    #: OK, BAD_CRC (NAK it) or BAD_LENGTH (the payload was not received)
    "status": Status,
})


class FrameReceiver(wiring.Component):
    """Hunts for SOF, checks length and CRC, stores payloads in slots.

    Ports
    -----
    data : In(stream.Signature(8))
        Bytes from the UART receiver; always ready.
    desc : Out(stream.Signature(FrameDescLayout))
        One descriptor per frame that took a slot, in order; slot ``k`` of the
        frame buffer (``rx_slots`` slots of MAX_PAYLOAD bytes, used round
        robin) holds the k-th frame's payload.
    release : In(1)
        The consumer is done with its oldest slot (one pulse per descriptor).
    fb_addr, fb_data, fb_en : Out
        The frame buffer's write port: ``Cat(offset, slot)``.
    frame_ok, bad_crc, timeout, bad_length, garbage, overflow : Out(1)
        Counter pulses (see :class:`~seedchip.link_protocol.LinkCounter`).

    A frame is stored whatever its CRC; a bad CRC turns its descriptor into
    a NAK request, so nothing of it is applied. A header with ``len >
    MAX_PAYLOAD`` gets a descriptor at once (BAD_LENGTH) and the receiver
    hunts again. ``timeout`` clocks without a byte in mid-frame drop the
    partial frame. A frame that finds every slot taken is skipped (its length
    is known, so its payload is not mistaken for frames) and counted in
    ``overflow``.
    """

    def __init__(self, *, rx_slots, timeout):
        self.rx_slots = check_pow2("rx_slots", rx_slots, 1, 64)
        self.timeout_cycles = check_int("timeout", timeout, 16, 1 << 30)
        self.slot_bits = exact_log2(rx_slots)
        super().__init__({
            "data": In(stream.Signature(8)),
            "desc": Out(stream.Signature(FrameDescLayout)),
            "release": In(1),
            "fb_addr": Out(PAYLOAD_BITS + self.slot_bits),
            "fb_data": Out(8),
            "fb_en": Out(1),
            "frame_ok": Out(1), "bad_crc": Out(1), "timeout": Out(1),
            "bad_length": Out(1), "garbage": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFO(width=FrameDescLayout.size, depth=self.rx_slots)
        m.d.comb += [
            self.desc.valid.eq(fifo.r_rdy),
            self.desc.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.desc.ready),
        ]
        push = FrameDescLayout(fifo.w_data)

        used = Signal(range(self.rx_slots + 1))     # slots holding a frame
        slot = Signal(self.slot_bits)               # the slot being filled
        take = Signal()                             # a descriptor is pushed now
        m.d.comb += fifo.w_en.eq(take)
        m.d.sync += used.eq(used + take - self.release)
        with m.If(take):
            m.d.sync += slot.eq(slot + 1)

        byte = self.data.payload
        got = Signal()
        m.d.comb += [self.data.ready.eq(1), got.eq(self.data.valid)]

        crc = Signal(16)            # over cmd .. payload
        crc_en = Signal()
        crc_lo = Signal(8)          # the frame's CRC, low byte
        length = Signal(16)
        offset = Signal(PAYLOAD_BITS + 1)
        skip = Signal()             # no free slot: skip this frame's bytes
        cmd = Signal(8)
        seq = Signal(8)
        m.d.comb += [
            self.fb_addr.eq(Cat(offset[:PAYLOAD_BITS], slot)),
            self.fb_data.eq(byte),
            push.cmd.eq(cmd),
            push.seq.eq(seq),
            push.len.eq(length),
            push.status.eq(Status.OK),
        ]
        with m.If(got & crc_en):
            m.d.sync += crc.eq(crc16_next(crc, byte))

        idle = Signal(range(self.timeout_cycles + 1))
        hunting = Signal()
        with m.If(got | hunting):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        timed_out = Signal()
        m.d.comb += timed_out.eq((idle == self.timeout_cycles) & ~got)

        def header_state(name, nxt, target):
            with m.State(name):
                m.d.comb += crc_en.eq(1)
                with m.If(got):
                    m.d.sync += target.eq(byte)
                    m.next = nxt
                with m.If(timed_out):
                    m.next = "TIMEOUT"

        with m.FSM() as fsm:
            m.d.comb += hunting.eq(fsm.ongoing("HUNT"))
            with m.State("HUNT"):
                with m.If(got):
                    with m.If(byte == SOF):
                        m.d.sync += [crc.eq(0xFFFF), skip.eq(used == self.rx_slots)]
                        m.next = "CMD"
                    with m.Else():
                        m.d.comb += self.garbage.eq(1)
            header_state("CMD", "SEQ", cmd)
            header_state("SEQ", "LEN0", seq)
            header_state("LEN0", "LEN1", length[:8])
            with m.State("LEN1"):
                m.d.comb += crc_en.eq(1)
                full = Cat(length[:8], byte)
                with m.If(got):
                    m.d.sync += [length[8:].eq(byte), offset.eq(0)]
                    with m.If(full > MAX_PAYLOAD):
                        m.d.comb += self.bad_length.eq(1)
                        with m.If(skip):
                            m.d.comb += self.overflow.eq(1)
                        with m.Else():
                            m.d.comb += [take.eq(1), push.len.eq(0),
                                         push.status.eq(Status.BAD_LENGTH)]
                        m.next = "HUNT"
                    with m.Elif(full == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"
                with m.If(timed_out):
                    m.next = "TIMEOUT"
            with m.State("PAYLOAD"):
                m.d.comb += crc_en.eq(1)
                with m.If(got):
                    m.d.comb += self.fb_en.eq(~skip)
                    m.d.sync += offset.eq(offset + 1)
                    with m.If(offset + 1 == length):
                        m.next = "CRC0"
                with m.If(timed_out):
                    m.next = "TIMEOUT"
            with m.State("CRC0"):
                with m.If(got):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                with m.If(timed_out):
                    m.next = "TIMEOUT"
            with m.State("CRC1"):
                with m.If(got):
                    m.next = "HUNT"
                    with m.If(skip):
                        m.d.comb += self.overflow.eq(1)
                    with m.Else():
                        m.d.comb += take.eq(1)
                        with m.If(Cat(crc_lo, byte) == crc):
                            m.d.comb += self.frame_ok.eq(1)
                        with m.Else():
                            m.d.comb += [self.bad_crc.eq(1), push.status.eq(Status.BAD_CRC)]
                with m.If(timed_out):
                    m.next = "TIMEOUT"
            with m.State("TIMEOUT"):
                m.d.comb += self.timeout.eq(1)
                m.next = "HUNT"
        return m
