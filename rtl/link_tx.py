"""Response framer of the host link: a response buffer out as one frame."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..link_protocol import MAX_PAYLOAD, SOF
from .crc16 import crc16_next
from .link_rx import PAYLOAD_BITS

__all__ = ["RespLayout", "ResponseFramer"]

#: one response: its payload is in the response buffer, bytes 0 .. len-1
RespLayout = data.StructLayout({
    "cmd": 8,
    "seq": 8,
    "len": range(MAX_PAYLOAD + 1),
})


class ResponseFramer(wiring.Component):
    """Sends ``SOF, cmd, seq, len, payload, crc`` for each response.

    Ports
    -----
    resp : In(stream.Signature(RespLayout))
        Taken when the previous frame's last byte has left; ``busy`` is high
        from then until this frame's last byte has left, and the response
        buffer must not change meanwhile.
    busy : Out(1)
    buf_addr : Out(PAYLOAD_BITS), buf_data : In(8)
        The response buffer's synchronous read port (data one cycle after
        the address).
    data : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    sent : Out(1)
        Pulses when a frame's last byte is taken.
    """

    resp: In(stream.Signature(RespLayout))
    busy: Out(1)
    buf_addr: Out(PAYLOAD_BITS)
    buf_data: In(8)
    data: Out(stream.Signature(8))
    sent: Out(1)

    def elaborate(self, platform):
        m = Module()
        cur = Signal(RespLayout)
        crc = Signal(16)
        index = Signal(PAYLOAD_BITS + 1)
        # The buffer's byte is registered before it is sent and CRC'd: a block
        # RAM's output is slow (5.8 ns clk-to-q on the ECP5 without its output
        # register), and the CRC after it made the link's critical path. A byte
        # takes hundreds of cycles on the UART: the extra cycle costs nothing.
        byte = Signal(8)            # the byte at ``index`` when ``fresh``
        at_ram = Signal()           # buf_data is the byte at ``index``
        fresh = Signal()
        out = self.data
        took = Signal()
        m.d.comb += [took.eq(out.valid & out.ready), self.buf_addr.eq(index)]
        m.d.sync += [byte.eq(self.buf_data), at_ram.eq(1), fresh.eq(at_ram)]

        def byte_state(name, value, nxt, *, crc_on=True):
            with m.State(name):
                m.d.comb += [out.valid.eq(1), out.payload.eq(value)]
                with m.If(took):
                    if crc_on:
                        m.d.sync += crc.eq(crc16_next(crc, value))
                    m.next = nxt

        with m.FSM() as fsm:
            m.d.comb += [self.busy.eq(~fsm.ongoing("IDLE")),
                         self.resp.ready.eq(fsm.ongoing("IDLE"))]
            with m.State("IDLE"):
                with m.If(self.resp.valid):
                    m.d.sync += [cur.eq(self.resp.payload), crc.eq(0xFFFF), index.eq(0)]
                    m.next = "SOF"
            byte_state("SOF", SOF, "CMD", crc_on=False)
            byte_state("CMD", cur.cmd, "SEQ")
            byte_state("SEQ", cur.seq, "LEN0")
            byte_state("LEN0", cur.len[:8], "LEN1")
            with m.State("LEN1"):
                value = cur.len[8:]
                m.d.comb += [out.valid.eq(1), out.payload.eq(value)]
                with m.If(took):
                    m.d.sync += crc.eq(crc16_next(crc, value))
                    m.next = "PAYLOAD"
                    with m.If(cur.len == 0):
                        m.next = "CRC0"
            with m.State("PAYLOAD"):
                m.d.comb += [out.valid.eq(fresh), out.payload.eq(byte)]
                with m.If(took):
                    m.d.sync += [crc.eq(crc16_next(crc, byte)),
                                 index.eq(index + 1), at_ram.eq(0), fresh.eq(0)]
                    with m.If(index + 1 == cur.len):
                        m.next = "CRC0"
            byte_state("CRC0", crc[:8], "CRC1", crc_on=False)
            with m.State("CRC1"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(crc[8:])]
                with m.If(took):
                    m.d.comb += self.sent.eq(1)
                    m.next = "IDLE"
        return m
