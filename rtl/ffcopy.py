"""Register copies that synthesis keeps apart.

Yosys merges flip-flops with identical inputs (``opt_merge``), which undoes
every register duplicated to cut a die-wide fanout: the copies collapse back
into one flop whose net spans the die again. On ECP5 the copies are therefore
``FD1S3AX`` primitives (a plain D flop, cleared by GSR), which Yosys does not
merge; elsewhere (simulation, Verilog for cocotb) they are ordinary ``sync``
registers with the same behaviour (init 0).
"""

from amaranth.hdl import ClockSignal, Instance, Signal, Value

from .vendor import is_ecp5

__all__ = ["ff_copy"]


def ff_copy(m, d, *, name, platform):
    """A ``sync`` register of ``d`` (one cycle later, init 0) that is never
    merged with another copy of the same value. Returns the register."""
    d = Value.cast(d)
    q = Signal(len(d), name=name)
    if is_ecp5(platform):
        for i in range(len(d)):
            m.submodules[f"{name}_ff{i}"] = Instance(
                "FD1S3AX", p_GSR="ENABLED",
                i_CK=ClockSignal("sync"), i_D=d[i], o_Q=q[i])
    else:
        m.d.sync += q.eq(d)
    return q
