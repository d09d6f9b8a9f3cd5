"""Weight-stationary systolic array."""

from amaranth.hdl import Module, Signal, signed, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .ffcopy import ff_copy
from .mac import Mul

__all__ = ["SystolicArray"]


def _check_pos(name, value, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if not 1 <= value <= hi:
        raise ValueError(f"{name} must be in range 1..{hi}, not {value!r}")


class SystolicArray(wiring.Component):
    """``rows`` x ``cols`` weight-stationary int MAC array.

    PE(i, j) holds two weights (double buffered: one bank is loaded while the
    other computes) and multiplies the activation flowing right along row i;
    partial sums flow down column j. The input skew and output deskew are
    inside, so the ports see plain vectors:

    Ports
    -----
    act : In(ArrayLayout(signed(in_width), rows))
        One K-slice of one row of A, every cycle (the array never stalls).
    act_bank : In(1)
        Weight bank the activation is multiplied with; it travels with the
        activation wavefront, so a new tile's weights take over PE by PE
        exactly when its first activation arrives.
    w_en, w_bank, w_row : In
        Write ``w_data`` into row ``w_row`` of weight bank ``w_bank``; the
        weights change two clock edges later (the write is registered per row).
    w_data : In(ArrayLayout(signed(in_width), cols))
    psum : Out(ArrayLayout(signed(acc_width), cols))
        ``sum_i act[i] * W[bank][i][j]`` for the activation presented
        :attr:`latency` cycles earlier.

    Latency ``rows + cols + Mul.LATENCY``; throughput one vector per cycle.
    A weight row may be rewritten ``cols + 2`` cycles after the last
    activation using that bank was presented.
    """

    def __init__(self, *, rows, cols, in_width=8, acc_width=32):
        _check_pos("rows", rows, 64)
        _check_pos("cols", cols, 64)
        _check_pos("in_width", in_width, 17)
        if not isinstance(acc_width, int) or isinstance(acc_width, bool):
            raise TypeError(f"acc_width must be a positive integer, not {acc_width!r}")
        need = 2 * in_width + ceil_log2(rows) + 1
        if not need <= acc_width <= 64:
            raise ValueError(f"acc_width must be in range {need}..64, not {acc_width!r}")
        self.rows, self.cols = rows, cols
        self.in_width, self.acc_width = in_width, acc_width
        self.latency = rows + cols + Mul.LATENCY
        super().__init__({
            "act": In(data.ArrayLayout(signed(in_width), rows)),
            "act_bank": In(1),
            "w_en": In(1),
            "w_bank": In(1),
            "w_row": In(range(rows)),
            "w_data": In(data.ArrayLayout(signed(in_width), cols)),
            "psum": Out(data.ArrayLayout(signed(acc_width), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, W = self.rows, self.cols, self.in_width

        # Weights: w[bank][i][j].
        w = [[[Signal(signed(W), name=f"w{b}_{i}_{j}") for j in range(C)]
              for i in range(R)] for b in range(2)]
        # Weight writes go through one register stage per column before the
        # weight registers. Column j's PEs sit on consecutive DSP sites (see
        # boards/floorplan.py) while a row spans the whole array, so the write
        # controls are copied once per column (unmergeable copies: Yosys would
        # fold identical flops back into one die-wide net) and decoded next to
        # the column; only register-to-register routes cross the die. Per-row
        # copies still had 8.4 ns of routing from the row decode to every
        # column's enables on an 8x8 array.
        for j in range(C):
            c_en = ff_copy(m, self.w_en, name=f"w_en_c{j}", platform=platform)
            c_bank = ff_copy(m, self.w_bank, name=f"w_bank_c{j}", platform=platform)
            c_row = ff_copy(m, self.w_row, name=f"w_row_c{j}", platform=platform)
            c_data = Signal(signed(W), name=f"w_in_c{j}")
            m.d.sync += c_data.eq(self.w_data[j])
            for i in range(R):
                for b in range(2):
                    with m.If(c_en & (c_row == i) & (c_bank == b)):
                        m.d.sync += w[b][i][j].eq(c_data)

        # Input skew: row i is delayed by i cycles, then the activation (and its
        # bank bit) moves one PE to the right per cycle.
        psum_prev = [None] * C
        for i in range(R):
            a_in, bank_in = self.act[i], self.act_bank
            for d in range(i):
                a_d = Signal(signed(W), name=f"skew_a{i}_{d}")
                b_d = Signal(name=f"skew_b{i}_{d}")
                m.d.sync += [a_d.eq(a_in), b_d.eq(bank_in)]
                a_in, bank_in = a_d, b_d
            # Row i's partial sums need 2*W + bits(i + 1) bits, not acc_width:
            # narrower adders and registers near the top of the array.
            ps_width = min(2 * W + (i + 1).bit_length(), self.acc_width)
            for j in range(C):
                a_r = Signal(signed(W), name=f"a_{i}_{j}")
                # The bank bit is the same for every PE of an anti-diagonal:
                # as plain registers Yosys merges them into one flop driving
                # PEs all over the die (7.5 ns of routing into a DSP input).
                b_r = ff_copy(m, bank_in, name=f"bank_{i}_{j}", platform=platform)
                m.d.sync += a_r.eq(a_in)
                a_in, bank_in = a_r, b_r

                mul = Mul(a_width=W, b_width=W)
                m.submodules[f"pe_{i}_{j}"] = mul
                m.d.comb += [
                    mul.a.eq(a_r),
                    mul.b.eq(Mux(b_r, w[1][i][j], w[0][i][j])),
                ]
                ps = Signal(signed(ps_width), name=f"ps_{i}_{j}")
                if psum_prev[j] is None:
                    m.d.sync += ps.eq(mul.p)
                else:
                    m.d.sync += ps.eq(psum_prev[j] + mul.p)
                psum_prev[j] = ps

        # Output deskew: column j is early by cols-1-j cycles.
        for j in range(C):
            v = psum_prev[j]
            for d in range(C - 1 - j):
                v_d = Signal(signed(v.shape().width), name=f"deskew_{j}_{d}")
                m.d.sync += v_d.eq(v)
                v = v_d
            m.d.comb += self.psum[j].eq(v)
        return m
