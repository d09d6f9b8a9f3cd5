"""Pipelined signed multiplier that lands on one ECP5 sysDSP block.

Yosys' ``synth_ecp5`` maps a ``*`` onto a MULT18X18D but never folds the
fabric registers around it into the block's own input/output registers, so a
behavioural registered multiply still routes fabric -> DSP -> fabric with the
full multiplier delay on one path (~87-128 MHz). Instantiating the primitive
with its internal registers enabled keeps the whole product inside the DSP
(~150+ MHz), which is what lets the systolic array close 125 MHz.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .vendor import is_ecp5

__all__ = ["Mul"]

_DSP_WIDTH = 18


def _check_width(name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if not 1 <= value <= _DSP_WIDTH:
        raise ValueError(f"{name} must be in range 1..{_DSP_WIDTH}, not {value!r}")


class Mul(wiring.Component):
    """Signed multiplier with a fixed two-cycle latency.

    Ports
    -----
    a : In(signed(a_width))
    b : In(signed(b_width))
    p : Out(signed(a_width + b_width))
        ``a * b`` of the operands presented :attr:`LATENCY` cycles earlier.

    Fully pipelined (one product per cycle), no clock enable and no reset: the
    array around it never stalls, and keeping resets off the DSP's reset pins
    lets the registers stay inside the block.

    On an ECP5 platform this is one MULT18X18D with its input (A, B) and output
    registers enabled; anywhere else (simulation, Verilog for cocotb, other
    vendors) it is a behavioural multiply between two register stages with the
    same latency.
    """

    #: cycles from ``a``/``b`` to ``p``: input register + output register.
    LATENCY = 2

    def __init__(self, *, a_width, b_width):
        _check_width("a_width", a_width)
        _check_width("b_width", b_width)
        self._a_width = a_width
        self._b_width = b_width
        super().__init__({
            "a": In(signed(a_width)),
            "b": In(signed(b_width)),
            "p": Out(signed(a_width + b_width)),
        })

    @property
    def a_width(self):
        return self._a_width

    @property
    def b_width(self):
        return self._b_width

    def elaborate(self, platform):
        m = Module()
        if is_ecp5(platform):
            self._elaborate_mult18x18d(m)
        else:
            self._elaborate_behavioural(m)
        return m

    def _elaborate_behavioural(self, m):
        # reset_less: matches the DSP form, whose registers are not reset.
        a_r = Signal.like(self.a, reset_less=True)
        b_r = Signal.like(self.b, reset_less=True)
        p_r = Signal.like(self.p, reset_less=True)
        m.d.sync += [
            a_r.eq(self.a),
            b_r.eq(self.b),
            p_r.eq(a_r * b_r),
        ]
        m.d.comb += self.p.eq(p_r)

    def _elaborate_mult18x18d(self, m):
        # Sign-extend both operands to the DSP width; SIGNEDA/SIGNEDB make the
        # block treat them as two's complement, so the 36-bit product is exact.
        a18 = Signal(signed(_DSP_WIDTH))
        b18 = Signal(signed(_DSP_WIDTH))
        p36 = Signal(2 * _DSP_WIDTH)
        m.d.comb += [
            a18.eq(self.a),
            b18.eq(self.b),
            self.p.eq(p36[:len(self.p)]),
        ]
        ports = {}
        for i in range(_DSP_WIDTH):
            ports[f"i_A{i}"] = a18[i]
            ports[f"i_B{i}"] = b18[i]
        for i in range(2 * _DSP_WIDTH):
            ports[f"o_P{i}"] = p36[i]
        m.submodules.dsp = Instance("MULT18X18D",
            p_REG_INPUTA_CLK="CLK0",
            p_REG_INPUTA_CE="CE0",
            p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0",
            p_REG_INPUTB_CE="CE0",
            p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0",
            p_REG_OUTPUT_CE="CE0",
            p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED",
            p_CLK1_DIV="ENABLED",
            p_CLK2_DIV="ENABLED",
            p_CLK3_DIV="ENABLED",
            p_HIGHSPEED_CLK="NONE",
            # No global set/reset either: the pipeline needs no initial value.
            p_GSR="DISABLED",
            p_CAS_MATCH_REG="FALSE",
            p_SOURCEB_MODE="B_SHIFT",
            p_MULT_BYPASS="DISABLED",
            p_RESETMODE="SYNC",
            i_SIGNEDA=Const(1),
            i_SIGNEDB=Const(1),
            i_SOURCEA=Const(0),
            i_SOURCEB=Const(0),
            # C (only used by a downstream ALU54B), CLK1-3/CE1-3/RST1-3 and the
            # SRIA/SRIB cascade inputs stay unconnected. The cascade pins have
            # no fabric route (tying them to a constant makes nextpnr fail to
            # route the GND net), and every tied pin is one more GND sink to
            # route into the congested DSP rows.
            i_CLK0=ClockSignal("sync"),
            i_CE0=Const(1),
            i_RST0=Const(0),
            **ports,
        )
