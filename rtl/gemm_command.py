"""The GEMM controller's command stage: capture, shape check, decode and phases."""

from amaranth.hdl import Module, Signal, Mux
from amaranth.lib import data, wiring, stream
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from ..protocol import GemmCmdLayout, GemmError

__all__ = ["CommandStage", "DecodedLayout", "MIN_PASS"]

#: Shortest pass over the array, in cycles (a pass is max(M, MIN_PASS)).
MIN_PASS = 6

#: The registered command, with everything the stages compare against
#: precomputed so no stage needs an adder in front of a compare.
DecodedLayout = data.StructLayout({
    "m": 16, "k": 16, "n": 16,
    "m_m1": 16, "k_m1": 16, "n_m1": 16,
    "m_m2": 16,                 # M - 2: the drain's row compare, one row early
    "k_m2": 16, "n_m2": 16,
    "m_is_1": 1,
    "pass_last": 16,            # max(M, MIN_PASS) - 1
    "pass_last_m1": 16,         # pass_last - 1 (>= MIN_PASS - 2 > 0)
    "one_kt": 1, "one_nt": 1,   # K <= rows, N <= cols
    "two_kt": 1, "two_nt": 1,   # K <= 2 * rows, N <= 2 * cols
    "use_params": 1, "requant": 1, "relu": 1,
})


class CommandStage(wiring.Component):
    """Accepts a command while idle, checks its shape, decodes it and runs
    the load and run phases.

    Ports
    -----
    cmd : In(stream(GemmCmdLayout))
        Ready while idle. Accepted -> checked -> started (or refused with
        ``error = BAD_SHAPE``), one cycle each.
    busy, error, cycles : Out
        As :class:`~seedchip.rtl.gemm.GemmUnit`'s.
    p : Out(GemmCmdLayout)
        The registered command (follows the payload while idle).
    start : Out(1)
        Combinational: the load starts (``dec`` is valid from the next cycle).
    dec : Out(DecodedLayout)
        The decoded command, registered at ``start``.
    load_done : In(1)
        The operands are all in (the load phase ends, registered).
    load_fin : Out(1)
        Registered, one cycle: the run phase starts next cycle (every stage
        restarts on it).
    run : Out(1)
        The run phase.
    end : In(1)
        The last result left: back to idle.
    """

    def __init__(self, *, config):
        check_type("config", config, ChipConfig)
        self.config = config
        super().__init__({
            "cmd": In(stream.Signature(GemmCmdLayout)),
            "busy": Out(1),
            "error": Out(GemmError),
            "cycles": Out(32),
            "p": Out(GemmCmdLayout),
            "start": Out(1),
            "dec": Out(DecodedLayout),
            "load_done": In(1),
            "load_fin": Out(1),
            "run": Out(1),
            "end": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        d = self.dec

        busy = Signal()
        load_phase = Signal()
        run_phase = self.run
        # The accepted command is registered before it is checked and decoded:
        # the shape compares and the decode (with its adders) then start from
        # registers, not from whatever logic drives the command stream.
        cmd_pend = Signal()             # the registered command is being checked
        cmd_go = Signal()               # ... and starts (or is refused)
        p = self.p
        m.d.comb += [
            busy.eq(load_phase | run_phase | cmd_pend | cmd_go),
            self.busy.eq(busy),
            self.cmd.ready.eq(~busy),
        ]
        with m.If(load_phase | run_phase):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # p follows the payload whenever idle (only an accepted one is used):
        # its 51 enables then hang off the busy OR alone, not the handshake.
        with m.If(~busy):
            m.d.sync += p.eq(self.cmd.payload)
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [cmd_pend.eq(1), self.error.eq(GemmError.NONE)]
        # Then the shape check is registered too, so the start (which fans out
        # to every counter's reset) hangs off one register.
        bad = Signal()
        with m.If(cmd_pend):
            m.d.sync += [
                cmd_pend.eq(0), cmd_go.eq(1),
                bad.eq((p.m == 0) | (p.m > cfg.max_m) | (p.k == 0) | (p.k > cfg.max_k) |
                       (p.n == 0) | (p.n > cfg.max_n)),
            ]
        m.d.comb += self.start.eq(cmd_go & ~bad)
        with m.If(cmd_go):
            m.d.sync += cmd_go.eq(0)
            with m.If(bad):
                m.d.sync += self.error.eq(GemmError.BAD_SHAPE)
            with m.Else():
                m.d.sync += [
                    # the accepting cycle, the check and this one
                    self.cycles.eq(3),
                    d.m.eq(p.m), d.k.eq(p.k), d.n.eq(p.n),
                    d.m_m1.eq(p.m - 1), d.k_m1.eq(p.k - 1), d.n_m1.eq(p.n - 1),
                    d.m_m2.eq(p.m - 2), d.m_is_1.eq(p.m == 1),
                    d.k_m2.eq(p.k - 2), d.n_m2.eq(p.n - 2),
                    d.two_kt.eq(p.k <= 2 * R), d.two_nt.eq(p.n <= 2 * C),
                    d.pass_last.eq(Mux(p.m < MIN_PASS, MIN_PASS - 1, p.m - 1)),
                    d.pass_last_m1.eq(Mux(p.m < MIN_PASS, MIN_PASS - 2, p.m - 2)),
                    d.one_kt.eq(p.k <= R), d.one_nt.eq(p.n <= C),
                    d.use_params.eq(p.params), d.requant.eq(p.requant & p.params),
                    d.relu.eq(p.relu),
                    load_phase.eq(1),
                ]

        # The end of the load is registered (one cycle per command): the
        # start of the run phase resets every walker and the drain, and the
        # handshake logic in front of that fanout was 4 levels.
        load_fin = self.load_fin
        m.d.sync += load_fin.eq(load_phase & self.load_done & ~load_fin)
        with m.If(load_fin):
            m.d.sync += [load_phase.eq(0), run_phase.eq(1)]

        with m.If(self.end):
            m.d.sync += run_phase.eq(0)
        return m
