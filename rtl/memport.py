"""The memory request/response port, defined once.

Every memory client (gather engine, DMA/host, built-in self test) speaks this
port and every memory backend (SDR SDRAM controller, on-chip RAM) serves it; the
arbiter has N of them on one side and one on the other.

Rules:

* a request is one data word (``data_width`` bits, the memory's native word)
  at word address ``addr``; ``we`` selects a write of ``wdata`` under the byte
  mask ``mask`` (1 = write that byte);
* every accepted request gets exactly one response, in request order per
  port: ``rdata`` for a read (don't-care for a write) and ``err`` set when the
  address is outside the memory (then nothing was read or written).
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int

__all__ = ["req_layout", "resp_layout", "MemPortSignature"]


def req_layout(addr_width, data_width):
    check_int("addr_width", addr_width, 1, 40)
    check_int("data_width", data_width, 8, 256)
    if data_width % 8:
        raise ValueError(f"data_width must be a multiple of 8, not {data_width!r}")
    return data.StructLayout({
        "addr": unsigned(addr_width),
        "we": unsigned(1),
        "wdata": unsigned(data_width),
        "mask": unsigned(data_width // 8),
    })


def resp_layout(data_width):
    check_int("data_width", data_width, 8, 256)
    return data.StructLayout({
        "rdata": unsigned(data_width),
        "err": unsigned(1),
    })


class MemPortSignature(wiring.Signature):
    """Client side of a memory port: ``req`` out, ``resp`` in.

    A backend takes ``MemPortSignature(...).flip()``.
    """

    def __init__(self, *, addr_width, data_width):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "req": Out(stream.Signature(req_layout(addr_width, data_width))),
            "resp": In(stream.Signature(resp_layout(data_width))),
        })

    def __eq__(self, other):
        return (isinstance(other, MemPortSignature) and
                (self.addr_width, self.data_width) == (other.addr_width, other.data_width))

    def __repr__(self):
        return f"MemPortSignature(addr_width={self.addr_width}, data_width={self.data_width})"
