"""A wide memory port on a narrow memory: the chip's 64-bit words on a
16-bit SDRAM.

Wide word ``w`` is narrow words ``w * R .. w * R + R - 1`` (``R`` =
wide / narrow width), the first in the low bits: byte ``b`` of the wide
word is byte ``b`` of the same little-endian memory, so a byte address means
the same thing on both sides.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..checks import check_int, check_pow2
from .memport import MemPortSignature

__all__ = ["WidthAdapter"]


class WidthAdapter(wiring.Component):
    """Each wide request becomes ``R`` narrow requests (one per cycle, the
    byte mask sliced with the data); their ``R`` responses, in order, become
    one wide response (``err`` if any of them had it).

    Parameters (keyword-only)
    -------------------------
    addr_width : int
        The wide port's word-address bits (the narrow port has ``log2(R)`` more).
    wide_width, narrow_width : int
        Data bits, powers of two, ``narrow_width < wide_width``.

    Ports
    -----
    wide : In(MemPortSignature(addr_width, wide_width))
    narrow : Out(MemPortSignature(addr_width + log2(R), narrow_width))

    Throughput: one narrow request per cycle (a wide word every ``R``
    cycles), as many in flight as the narrow memory allows. A wide response
    not taken holds the narrow responses back (``narrow.resp.ready``).
    """

    def __init__(self, *, addr_width, wide_width=64, narrow_width=16):
        check_pow2("narrow_width", narrow_width, 8, 128)
        check_pow2("wide_width", wide_width, 2 * narrow_width, 256)
        check_int("addr_width", addr_width, 1, 38)
        self.ratio = wide_width // narrow_width
        self.addr_width = addr_width
        self.wide_width, self.narrow_width = wide_width, narrow_width
        super().__init__({
            "wide": In(MemPortSignature(addr_width=addr_width, data_width=wide_width)),
            "narrow": Out(MemPortSignature(addr_width=addr_width + exact_log2(self.ratio),
                                           data_width=narrow_width)),
        })

    def elaborate(self, platform):
        m = Module()
        R, nw, nb = self.ratio, self.narrow_width, self.narrow_width // 8
        wide, narrow = self.wide, self.narrow

        # requests: hold one wide request, give its R parts
        held = Signal.like(wide.req.payload)
        busy = Signal()
        part = Signal(range(R))
        last_part = part == R - 1
        m.d.comb += [
            narrow.req.valid.eq(busy),
            narrow.req.payload.addr.eq((held.addr << exact_log2(R)) | part),
            narrow.req.payload.we.eq(held.we),
            narrow.req.payload.wdata.eq(held.wdata.word_select(part, nw)),
            narrow.req.payload.mask.eq(held.mask.word_select(part, nb)),
            wide.req.ready.eq(~busy | (last_part & narrow.req.ready)),
        ]
        with m.If(narrow.req.valid & narrow.req.ready):
            m.d.sync += part.eq(part + 1)
            with m.If(last_part):
                m.d.sync += [busy.eq(0), part.eq(0)]
        with m.If(wide.req.valid & wide.req.ready):
            m.d.sync += [held.eq(wide.req.payload), busy.eq(1)]

        # responses: R in order make one
        data = Signal(self.wide_width)
        err = Signal()
        got = Signal(range(R))
        m.d.comb += narrow.resp.ready.eq(~wide.resp.valid | wide.resp.ready)
        with m.If(wide.resp.valid & wide.resp.ready):
            m.d.sync += wide.resp.valid.eq(0)
        with m.If(narrow.resp.valid & narrow.resp.ready):
            r = narrow.resp.payload
            m.d.sync += got.eq(got + 1)
            for i in range(R):
                with m.If(got == i):
                    m.d.sync += data.word_select(i, nw).eq(r.rdata)
            with m.If(got == R - 1):
                m.d.sync += [got.eq(0), wide.resp.valid.eq(1),
                             wide.resp.payload.rdata.eq(
                                 (r.rdata << (nw * (R - 1))) | data[:nw * (R - 1)]),
                             wide.resp.payload.err.eq(err | r.err), err.eq(0)]
            with m.Else():
                m.d.sync += err.eq(err | r.err)
        return m
