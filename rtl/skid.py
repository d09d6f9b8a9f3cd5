"""A skid buffer: cuts a stream's combinational ``ready`` path.

Between two blocks whose ``ready`` logic is deep (an arbiter's grant feeding
another arbiter's grant and then a unit's state machine), the chain of
``ready`` terms is the clock's critical path; a skid buffer ends it at a
register at no cost in latency.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "RegisterSlice"]


class _StreamStage(wiring.Component):
    """One stream ``i`` in, the same stream ``o`` out (``shape``: its payload)."""

    def __init__(self, *, shape):
        self.shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })


class SkidBuffer(_StreamStage):
    """One stream in, the same stream out; ``i.ready`` comes from a register.

    Parameters (keyword-only)
    -------------------------
    shape : shape-like
        The payload (e.g. a :class:`~amaranth.lib.data.StructLayout`).

    Ports
    -----
    i : In(stream.Signature(shape))
        ``ready`` is "the skid register is empty": a flop, whatever ``o.ready`` does.
    o : Out(stream.Signature(shape))
        ``i``'s items, in order. ``valid`` and ``payload`` are ``i``'s while the
        skid register is empty (no added latency), the register's otherwise.

    An item offered on ``i`` while ``o`` stalls is taken into the skid
    register; ``i`` then waits until ``o`` takes it. Throughput: one item per
    cycle while ``o`` is ready. Cost: one payload register and a mux.
    """

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        held = Signal()
        data = Signal.like(i.payload)
        m.d.comb += [
            i.ready.eq(~held),
            o.valid.eq(i.valid | held),
            o.payload.eq(Mux(held, data, i.payload)),
        ]
        with m.If(held):
            with m.If(o.ready):
                m.d.sync += held.eq(0)
        with m.Else():
            # the register follows ``i`` while empty, whether or not it is taken:
            # its enable is a flop, not ``o.ready`` (which can be deep and fan out
            # to every payload bit)
            m.d.sync += data.eq(i.payload)
            with m.If(i.valid & ~o.ready):
                m.d.sync += held.eq(1)
        return m


class RegisterSlice(_StreamStage):
    """One stream in, the same stream out, registered both ways: ``i.ready``,
    ``o.valid`` and ``o.payload`` all come from registers.

    Where :class:`SkidBuffer` only cuts the ``ready`` path, this also cuts
    the forward one, so nothing combinational crosses it: between a client
    and an arbiter placed apart on the die, the client's request logic and
    the arbiter's grant then meet only through flops. Cost: one cycle of
    latency and two payload registers.

    Parameters (keyword-only)
    -------------------------
    shape : shape-like
        The payload.

    Ports
    -----
    i : In(stream.Signature(shape))
        ``ready`` is "the second register is empty".
    o : Out(stream.Signature(shape))
        ``i``'s items, in order, one cycle after they are taken; one item
        per cycle while ``o`` is ready.
    """

    def elaborate(self, platform):
        # a SkidBuffer (its register takes what arrives while the output
        # stalls) in front of an output register
        m = Module()
        m.submodules.skid = skid = SkidBuffer(shape=self.shape)
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        out_v = Signal()
        out_d = Signal.like(skid.o.payload)
        take = ~out_v | self.o.ready
        m.d.comb += [skid.o.ready.eq(take), self.o.valid.eq(out_v), self.o.payload.eq(out_d)]
        with m.If(take):
            m.d.sync += [out_v.eq(skid.o.valid), out_d.eq(skid.o.payload)]
        return m
