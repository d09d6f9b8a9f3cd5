"""cocotb tests of :class:`seedchip.rtl.gemm.GemmUnit` against ``sim/golden.py``.

Run through :mod:`seedchip.sim.runner` (``tests/test_gemm.py`` does), which
passes the ChipConfig in ``SEEDCHIP_CONFIG``. Every test drives all input
streams with random idle cycles and the output with random backpressure,
except :func:`test_cycles_no_backpressure`, which measures the unit's own
cycle counts, and :func:`test_pipeline_overlap`, which runs the inputs at full
speed (first with no backpressure at all). Each test logs its seed; failures
quote it.

:class:`GemmTB` and :func:`run_gemm` / :meth:`GemmTB.run_gemms` are also used
by the batch runner in :mod:`seedchip.sim.gemm_run`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import cocotb
from cocotb.triggers import SimTimeoutError, with_timeout

from seedchip import protocol
from seedchip.protocol import GemmError
from seedchip.sim import golden
from seedchip.sim.tb import TB, LayoutCodec, load_config

__all__ = ["GemmCase", "GemmTB", "GemmResult", "run_gemm", "encode_case"]

I32_MIN, I32_MAX = golden.INT32_MIN, golden.INT32_MAX


# -- one GEMM command and its stream traffic -----------------------------------

@dataclasses.dataclass
class GemmCase:
    """A GEMM command with its operands.

    ``params`` defaults to "bias or multiplier given", ``requant`` to
    "multiplier given". With ``params`` but no bias, the bias is zero; with
    ``params`` but no requantization, the multiplier/shift fields carry random
    junk (the unit must ignore them).
    """

    a: np.ndarray
    b: np.ndarray
    bias: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False
    params: bool | None = None
    requant: bool | None = None
    label: str = ""

    def __post_init__(self):
        self.a = np.asarray(self.a, dtype=np.int64)
        self.b = np.asarray(self.b, dtype=np.int64)
        if self.a.ndim != 2 or self.b.ndim != 2 or self.a.shape[1] != self.b.shape[0]:
            raise ValueError(f"bad operand shapes {self.a.shape} x {self.b.shape}")
        n = self.b.shape[1]
        for name in ("bias", "multiplier", "shift"):
            v = getattr(self, name)
            if v is not None:
                v = np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy()
                setattr(self, name, v)
        if self.requant is None:
            self.requant = self.multiplier is not None
        if self.params is None:
            self.params = self.bias is not None or self.requant
        if self.requant and not self.params:
            raise ValueError("requant needs params")
        if self.requant and (self.multiplier is None or self.shift is None):
            raise ValueError("requant needs multiplier and shift")
        self.relu = bool(self.relu)

    @property
    def shape(self):
        return self.a.shape[0], self.a.shape[1], self.b.shape[1]

    def expected(self) -> np.ndarray:
        bias = self.bias if self.params else None
        if self.params and bias is None:
            bias = np.zeros(self.shape[2], dtype=np.int64)
        if self.requant:
            return golden.gemm(self.a, self.b, bias, self.multiplier, self.shift, relu=self.relu)
        return golden.gemm(self.a, self.b, bias, relu=self.relu)

    def describe(self) -> str:
        m, k, n = self.shape
        flags = [f for f, on in (("params", self.params), ("requant", self.requant),
                                 ("relu", self.relu)) if on]
        lab = f" {self.label}" if self.label else ""
        return f"GEMM{lab} M={m} K={k} N={n} [{','.join(flags) or 'raw'}]"


class _Codecs:
    def __init__(self, config):
        self.cmd = LayoutCodec(protocol.GemmCmdLayout)
        self.a = LayoutCodec(protocol.a_word_layout(config))
        self.b = LayoutCodec(protocol.b_word_layout(config))
        self.params = LayoutCodec(protocol.ParamLayout)
        self.out = LayoutCodec(protocol.OutLayout)


def _pad(x, width, lanes, rng):
    """Pad the columns of ``x`` up to a multiple of ``lanes`` with junk (or zeros)."""
    rows, cols = x.shape
    tiles = -(-cols // lanes)
    out = np.zeros((rows, tiles * lanes), dtype=np.int64)
    if rng is not None:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        out[:] = rng.integers(lo, hi, size=out.shape, endpoint=True)
    out[:, :cols] = x
    return out.reshape(rows * tiles, lanes)


def encode_case(config, case: GemmCase, rng=None, codecs=None):
    """(cmd beat, a beats, b beats, params beats) as wire integers.

    With ``rng``, the lanes past K (A) and N (B), and the unused multiplier and
    shift fields, carry random junk instead of zeros.
    """
    codecs = codecs or _Codecs(config)
    m, k, n = case.shape
    cmd = codecs.cmd.pack({"m": m, "k": k, "n": n, "params": int(case.params),
                           "requant": int(case.requant), "relu": int(case.relu)})
    a = codecs.a.pack_array_rows(_pad(case.a, config.in_width, config.rows, rng))
    b = codecs.b.pack_array_rows(_pad(case.b, config.in_width, config.cols, rng))
    params = []
    if case.params:
        for j in range(n):
            bias = 0 if case.bias is None else int(case.bias[j])
            if case.requant:
                mult, shift = int(case.multiplier[j]), int(case.shift[j])
            elif rng is not None:
                mult, shift = int(rng.integers(I32_MIN, I32_MAX, endpoint=True)), int(rng.integers(0, 32))
            else:
                mult, shift = 0, 0
            params.append(codecs.params.pack({"bias": bias, "multiplier": mult, "shift": shift}))
    return cmd, a, b, params


@dataclasses.dataclass
class _Pending:
    case: GemmCase
    cmd_index: int          # position of its command among all cmd beats


@dataclasses.dataclass
class GemmResult:
    c: np.ndarray            # [M, N] as the unit produced it
    cycles: int              # clock cycles, cmd accepted .. last c taken, both inclusive
    dut_cycles: int | None   # the unit's ``cycles`` output, when it could be read unambiguously

    def __iter__(self):      # ``C, cycles = await run_gemm(...)``
        return iter((self.c, self.cycles))


# -- the testbench --------------------------------------------------------------

class GemmTB(TB):
    """Clock, reset and the five streams of a GemmUnit."""

    def __init__(self, dut, config, *, idle: float = 0.0, backpressure: float = 0.0,
                 seed: int | None = None):
        super().__init__(dut, seed=seed)
        self.config = config
        self.codecs = _Codecs(config)
        self.cmd = self.source("cmd", protocol.GemmCmdLayout, idle=idle)
        self.a = self.source("a", protocol.a_word_layout(config), idle=idle)
        self.b = self.source("b", protocol.b_word_layout(config), idle=idle)
        self.params = self.source("params", protocol.ParamLayout, idle=idle)
        self.c = self.sink("c", protocol.OutLayout, backpressure=backpressure)
        #: junk goes into don't-care lanes and fields
        self.junk_rng = self.rng.spawn(1)[0]
        #: index of the first ``c`` beat not yet claimed by :meth:`collect`
        self.c_read = 0

    # -- status ------------------------------------------------------------------
    def error(self) -> GemmError:
        return GemmError(int(self.dut.error.value))

    def busy(self) -> bool:
        return bool(self.dut.busy.value)

    def dut_cycles(self) -> int:
        return int(self.dut.cycles.value)

    def state(self) -> str:
        return (f"busy={int(self.busy())} error={self.error().name} "
                f"accepted cmd={self.cmd.count} a={self.a.count} b={self.b.count} "
                f"params={self.params.count} c={len(self.c)}; queued cmd={self.cmd.pending} "
                f"a={self.a.pending} b={self.b.pending} params={self.params.pending}")

    def random_traffic(self, choices=((0.0, 0.0), (0.2, 0.2), (0.5, 0.3), (0.3, 0.7),
                                      (0.8, 0.1), (0.1, 0.9))):
        """Pick an idle/backpressure pair at random (for the next command)."""
        idle, bp = choices[int(self.rng.integers(len(choices)))]
        self.set_traffic(idle=idle, backpressure=bp)
        return idle, bp

    # -- commands ----------------------------------------------------------------
    def budget_cycles(self, cases) -> int:
        """A generous bound on the cycles a list of commands may take."""
        cfg = self.config
        total = 2000
        for case in cases:
            m, k, n = case.shape
            kt, nt = -(-k // cfg.rows), -(-n // cfg.cols)
            work = (kt * nt * (max(m, 4) + cfg.rows + cfg.cols + 40) + m * kt + k * nt + n
                    + m * n + 200)
            total += work
        slow = max([s.idle for s in self.sources.values()] + [s.backpressure for s in self.sinks.values()])
        return int(4 * total / (1.0 - slow) ** 2)

    def queue_inputs(self, case: GemmCase, *, junk: bool = True):
        """Queue a/b/params of ``case`` (not its command)."""
        cmd, a, b, params = encode_case(self.config, case, self.junk_rng if junk else None,
                                        self.codecs)
        self.a.extend(a)
        self.b.extend(b)
        self.params.extend(params)
        return cmd

    def send_cmd(self, cmd_beat: int, case: GemmCase) -> "_Pending":
        """Queue the command beat of ``case`` (its inputs already queued)."""
        pend = _Pending(case, self.cmd.count + self.cmd.pending)
        self.cmd.send_nowait(cmd_beat)
        return pend

    def submit(self, case: GemmCase, *, junk: bool = True) -> "_Pending":
        """Queue the inputs and the command of ``case``; collect with :meth:`collect`."""
        return self.send_cmd(self.queue_inputs(case, junk=junk), case)

    async def run_gemms(self, cases, *, sequential: bool = False, check: bool = True,
                        junk: bool = True) -> list[GemmResult]:
        """Run ``cases`` and return their results in order.

        By default everything is queued at once, so each command waits on the
        ``cmd`` stream until the unit is idle again (back to back). With
        ``sequential``, a command's traffic is queued only after the previous
        command finished. Either way, the unit's ``cycles`` output is read and
        checked wherever it belongs unambiguously to one command.

        Checks (always): exactly M*N results per command, ``last`` on the final
        one only, no input beat left over, nothing extra on ``c``, ``busy``
        low and ``error`` NONE at the end. With ``check``, the values are
        compared with the golden model.
        """
        cases = list(cases)
        results = []
        if sequential:
            for case in cases:
                pend = self.submit(case, junk=junk)
                results.append(await self.collect(pend, check=check, read_cycles=True))
        else:
            pends = [self.submit(case, junk=junk) for case in cases]
            for i, pend in enumerate(pends):
                results.append(await self.collect(pend, check=check,
                                                  read_cycles=(i == len(pends) - 1)))
        await self.finish(cases[-1])
        return results

    async def collect(self, pend: "_Pending", *, check: bool = True,
                      read_cycles: bool = False) -> GemmResult:
        """Wait for the results of a submitted command and check them.

        ``read_cycles``: no other command follows in the queue, so the
        unit's ``cycles`` output must equal the testbench's count.
        """
        case = pend.case
        budget = self.budget_cycles([case])
        try:
            return await with_timeout(self._collect(pend, check, read_cycles),
                                      budget * self.period_ns, "ns")
        except SimTimeoutError:
            self.fail(f"timeout after {budget} cycles waiting for {case.describe()} "
                      f"(cmd #{pend.cmd_index}): {self.state()}")

    async def _collect(self, pend, check, read_cycles):
        case = pend.case
        m, k, n = case.shape
        pos, total = self.c_read, m * n
        await self.c.wait_for(pos + total)
        self.c_read = pos + total
        beats = self.c.decoded(pos)[:total]
        lasts = [bt["last"] for bt in beats]
        if lasts[-1] != 1 or any(lasts[:-1]):
            where = [j for j, v in enumerate(lasts) if v]
            self.fail(f"{case.describe()}: 'last' must be set on result {total - 1} "
                      f"only, was set on {where[:10]}")
        got = golden.from_tile_order(np.array([bt["data"] for bt in beats], dtype=np.int64),
                                     m, n, self.config.cols)
        t0 = self.cmd.accept_cycles[pend.cmd_index]
        t1 = self.c.accept_cycles[pos + total - 1]
        cycles = t1 - t0 + 1
        dut_cycles = None
        if read_cycles:
            await self.cycles(1)      # the counter's last increment lands at this edge
            dut_cycles = self.dut_cycles()
            self.check(dut_cycles == cycles,
                       f"{case.describe()}: cycles output {dut_cycles}, but the testbench "
                       f"counted {cycles} (cmd accepted in cycle {t0}, last result in {t1})")
        if check:
            self.compare(case, got)
        return GemmResult(got, cycles, dut_cycles)

    async def finish(self, last_case: GemmCase | None = None, settle: int = 20) -> None:
        """After the last command: nothing more comes out, nothing is left over."""
        what = last_case.describe() if last_case is not None else "the last command"
        await self.cycles(settle)
        self.check(len(self.c) == self.c_read, f"{len(self.c) - self.c_read} extra result(s) "
                   f"after {what}: {self.c.decoded(self.c_read)[:5]}")
        for s in (self.a, self.b, self.params, self.cmd):
            self.check(s.pending == 0, f"{s.pending} '{s.name}' beat(s) never consumed "
                       f"after {what}: {self.state()}")
        self.check(not self.busy(), f"busy still high after {what}: {self.state()}")
        self.check(self.error() == GemmError.NONE,
                   f"error={self.error().name} after {what}: {self.state()}")

    def compare(self, case: GemmCase, got: np.ndarray) -> None:
        exp = case.expected()
        bad = np.argwhere(got != exp)
        if not len(bad):
            return
        acc = golden.gemm_raw(case.a, case.b)
        lines = []
        for mi, ni in bad[:8]:
            extra = ""
            if case.params:
                extra = f" bias={0 if case.bias is None else int(case.bias[ni])}"
            if case.requant:
                extra += f" mult={int(case.multiplier[ni])} shift={int(case.shift[ni])}"
            lines.append(f"C[{mi},{ni}] = {int(got[mi, ni])}, expected {int(exp[mi, ni])} "
                         f"(acc={int(acc[mi, ni])}{extra})")
        self.fail(f"{case.describe()}: {len(bad)} of {got.size} results wrong:\n    "
                  + "\n    ".join(lines))

    async def bad_command(self, m: int, k: int, n: int, *, params=0, requant=0, relu=0,
                          settle: int = 30):
        """Send a command with an invalid shape and check it is refused cleanly."""
        before = (self.a.count, self.b.count, self.params.count, len(self.c))
        idx = self.cmd.count + self.cmd.pending
        self.cmd.send_nowait({"m": m, "k": k, "n": n, "params": params,
                              "requant": requant, "relu": relu})
        try:
            await with_timeout(self.cmd.wait_drained(), 2000 * self.period_ns, "ns")
        except SimTimeoutError:
            self.fail(f"command M={m} K={k} N={n} never accepted: {self.state()}")
        await self.cycles(settle)
        what = f"bad shape M={m} K={k} N={n} (params={params})"
        self.check(self.error() == GemmError.BAD_SHAPE,
                   f"{what}: error={self.error().name}, expected BAD_SHAPE")
        self.check(not self.busy(), f"{what}: busy still high {settle} cycles after: {self.state()}")
        after = (self.a.count, self.b.count, self.params.count, len(self.c))
        self.check(after == before, f"{what}: streams moved (a, b, params, c) {before} -> {after}")
        self.check(self.cmd.count == idx + 1, f"{what}: command not consumed")


async def run_gemm(tb: GemmTB, A, B, bias=None, mult=None, shift=None, relu=False,
                   requant=None, backpressure=None):
    """Run one GEMM and return ``(C, cycles)`` (also checks it against the golden model).

    ``backpressure``: ``None`` keeps the TB's traffic, a float sets both the
    idle probability of the inputs and the backpressure on ``c``, a pair sets
    them separately.
    """
    if backpressure is not None:
        idle, bp = backpressure if isinstance(backpressure, tuple) else (backpressure, backpressure)
        tb.set_traffic(idle=idle, backpressure=bp)
    case = GemmCase(A, B, bias, mult, shift, relu=relu, requant=requant)
    (result,) = await tb.run_gemms([case])
    return result.c, result.cycles


# -- operand generators -----------------------------------------------------------

def rand_int8(rng, shape, kind="uniform"):
    if kind == "uniform":
        return rng.integers(-128, 127, size=shape, endpoint=True)
    if kind == "extreme":
        return rng.choice(np.array([-128, 127]), size=shape)
    if kind == "small":
        return rng.integers(-3, 3, size=shape, endpoint=True)
    if kind == "sparse":
        v = rng.integers(-128, 127, size=shape, endpoint=True)
        return np.where(rng.random(shape) < 0.8, 0, v)
    raise ValueError(kind)


def random_case(rng, config, *, max_m, max_k, max_n, label="") -> GemmCase:
    def dim(hi, lanes):
        pick = rng.random()
        if pick < 0.15:
            return 1
        if pick < 0.45:
            return int(min(hi, max(1, lanes + int(rng.integers(-1, 2)) + lanes * int(rng.integers(0, 3)))))
        return int(rng.integers(1, hi, endpoint=True))

    m = dim(max_m, config.rows)
    k = dim(max_k, config.rows)
    n = dim(max_n, config.cols)
    kind_a = rng.choice(["uniform", "uniform", "extreme", "small", "sparse"])
    kind_b = rng.choice(["uniform", "uniform", "extreme", "small", "sparse"])
    a = rand_int8(rng, (m, k), kind_a)
    b = rand_int8(rng, (k, n), kind_b)
    return random_post(rng, a, b, label=label or f"random({kind_a}x{kind_b})")


def random_post(rng, a, b, *, label="") -> GemmCase:
    """A case on operands ``a``, ``b`` with random post-processing."""
    n = b.shape[1]
    mode = rng.choice(["raw", "bias", "requant", "requant"])
    relu = bool(rng.integers(2))
    bias = mult = shift = None
    if mode != "raw":
        if rng.random() < 0.3:
            bias = rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True)    # wraps
        else:
            bias = rng.integers(-(1 << 20), 1 << 20, size=n, endpoint=True)
    if mode == "requant":
        r = rng.random()
        if r < 0.5:      # TFLite-like: scale the accumulator range onto int8
            mult = rng.integers(1 << 30, I32_MAX, size=n, endpoint=True)
            span = max(1, int(np.abs(golden.gemm_raw(a, b)).max()))
            s = max(0, min(31, span.bit_length() - 7))
            shift = np.clip(s + rng.integers(-2, 3, size=n), 0, 31)
        elif r < 0.8:    # anything the hardware accepts
            mult = rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True)
            shift = rng.integers(0, 31, size=n, endpoint=True)
        else:
            mult = rng.choice(np.array([0, 1 << 30, I32_MAX, I32_MIN, -1, 1]), size=n)
            shift = rng.integers(0, 31, size=n, endpoint=True)
    return GemmCase(a, b, bias, mult, shift, relu=relu, params=(mode != "raw"), label=label)


# -- tests ----------------------------------------------------------------------

def _clip_shape(config, m, k, n):
    return min(m, config.max_m), min(k, config.max_k), min(n, config.max_n)


async def _start(dut, *, idle=0.3, backpressure=0.3) -> GemmTB:
    config = load_config()
    tb = GemmTB(dut, config, idle=idle, backpressure=backpressure)
    await tb.reset()
    tb.check(not tb.busy(), "busy after reset")
    tb.check(tb.error() == GemmError.NONE, f"error={tb.error().name} after reset")
    return tb


@cocotb.test()
async def test_shapes(dut):
    """Directed shapes: K=1, sizes around and between the array dimensions."""
    tb = await _start(dut)
    cfg = tb.config
    R, C = cfg.rows, cfg.cols
    shapes = [(1, 1, 1), (5, 7, 3), (13, 9, 17), (3, 1, 5), (1, 1, C + 1), (7, 1, 1),
              (R, R, C), (R - 1 or 1, R + 1, C - 1 or 1), (R + 1, 2 * R + 1, 2 * C + 1),
              (1, 2 * R, 3 * C), (2, R - 1 or 1, C + 1), (9, 3 * R - 1, C)]
    if cfg.max_m * cfg.max_k * cfg.max_n <= 32 ** 3:
        shapes.append((cfg.max_m, cfg.max_k, cfg.max_n))      # every buffer full
    else:
        shapes.append((cfg.max_m, 2 * R, C + 1))                # the A buffer's depth
        shapes.append((3, cfg.max_k, 2))                         # the deepest K
        shapes.append((2, R + 3, cfg.max_n))                     # the widest N
    seen = set()
    for shape in shapes:
        shape = _clip_shape(cfg, *shape)
        if shape in seen:
            continue
        seen.add(shape)
        m, k, n = shape
        tb.random_traffic()
        a = rand_int8(tb.rng, (m, k))
        b = rand_int8(tb.rng, (k, n))
        c, cycles = await run_gemm(tb, a, b)
        tb.log.info("M=%d K=%d N=%d: %d cycles", m, k, n, cycles)


@cocotb.test()
async def test_extremes_max_k(dut):
    """-128/127 operands at K = max_k: the accumulator must not overflow."""
    tb = await _start(dut)
    cfg = tb.config
    k = cfg.max_k
    m, n = min(3, cfg.max_m), min(cfg.cols + 1, cfg.max_n)
    checker = np.where((np.arange(m)[:, None] + np.arange(k)[None, :]) % 2 == 0, -128, 127)
    combos = [
        ("-128 x -128", np.full((m, k), -128), np.full((k, n), -128)),
        ("127 x 127", np.full((m, k), 127), np.full((k, n), 127)),
        ("-128 x 127", np.full((m, k), -128), np.full((k, n), 127)),
        ("127 x -128", np.full((m, k), 127), np.full((k, n), -128)),
        ("checker x -128", checker, np.full((k, n), -128)),
        ("random extremes", rand_int8(tb.rng, (m, k), "extreme"), rand_int8(tb.rng, (k, n), "extreme")),
    ]
    for label, a, b in combos:
        tb.random_traffic()
        case = GemmCase(a, b, label=label)
        (res,) = await tb.run_gemms([case])
        tb.log.info("%s: C[0,0]=%d, %d cycles", label, int(res.c[0, 0]), res.cycles)
    # The extreme sum once more through the bias path (params, no requantization).
    case = GemmCase(np.full((m, k), -128), np.full((k, n), -128), bias=np.zeros(n, np.int64),
                    label="-128 x -128 + bias 0")
    await tb.run_gemms([case])


@cocotb.test()
async def test_zeros_identity(dut):
    tb = await _start(dut)
    cfg = tb.config
    m, k, n = _clip_shape(cfg, 6, cfg.rows + 2, cfg.cols + 3)
    rng = tb.rng
    cases = [
        GemmCase(np.zeros((m, k), np.int64), rand_int8(rng, (k, n)), label="0 @ B"),
        GemmCase(rand_int8(rng, (m, k)), np.zeros((k, n), np.int64), label="A @ 0"),
    ]
    d = min(cfg.max_k, cfg.max_n, 2 * cfg.cols + 1)
    a = rand_int8(rng, (m, d))
    cases.append(GemmCase(a, np.eye(d, dtype=np.int64), label="A @ I"))
    d2 = min(cfg.max_m, cfg.max_k, cfg.rows + 1)
    b = rand_int8(rng, (d2, n))
    cases.append(GemmCase(np.eye(d2, dtype=np.int64), b, label="I @ B"))
    cases.append(GemmCase(-np.eye(d2, dtype=np.int64), b, label="-I @ B"))
    for case in cases:
        tb.random_traffic()
        (res,) = await tb.run_gemms([case])
        if case.label == "A @ I":
            tb.check((res.c == a).all(), "A @ I != A")


# Requantization channels: (label, multiplier, shift, bias). With A a single
# column and B a row of ones (K = 1), x[m, n] = A[m] + bias[n] exactly, so each
# channel sweeps the same set of small x values around its bias.
_REQUANT_A = [0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8, 12, -12,
              16, -16, 32, -32, 64, -64, 100, -100, 127, -128, 31, -31, 33]


def _requant_channels():
    ch = []
    for s in (0, 1, 2, 3, 5, 6):       # x/2 with ties at several shifts
        ch.append((f"2^30 >>{s}", 1 << 30, s, 0))
    ch += [
        ("2^30 >>31 at INT32_MIN", 1 << 30, 31, I32_MIN),           # y = -2^30: tie at shift 31
        ("INT32_MIN x INT32_MIN >>0", I32_MIN, 0, I32_MIN),          # saturating SRDHM
        ("INT32_MIN x INT32_MIN >>31", I32_MIN, 31, I32_MIN),
        ("INT32_MIN >>31 at -2^30", I32_MIN, 31, -(1 << 30)),      # y = +2^30: tie at shift 31
        ("INT32_MIN >>0 (negate)", I32_MIN, 0, 0),
        ("-2^30 >>1", -(1 << 30), 1, 0),
        ("-1 near INT32_MAX", -1, 0, I32_MAX - 200),
        ("-(2^31-1) >>4", -I32_MAX, 4, 300),
        ("2^31-1 >>0", I32_MAX, 0, 0),
        ("2^31-1 >>0 sat+", I32_MAX, 0, 1000),
        ("2^31-1 >>0 sat-", I32_MAX, 0, -1000),
        ("2^31-1 >>31 wrap", I32_MAX, 31, I32_MAX),
        ("2^31-1 >>30", I32_MAX, 30, (1 << 30) - 50),
        ("0 >>0", 0, 0, 12345),
        ("0 >>31", 0, 31, I32_MIN),
        ("tflite >>7", (1 << 30) + 12345, 7, 5000),
        ("tflite >>9 neg", 1518500250, 9, -20000),
        ("2^30 >>0 wrap INT32_MAX", 1 << 30, 0, I32_MAX - 60),
    ]
    return ch


def _requant_coverage(x, mult, shift):
    """Which edge cases the inputs actually reach (computed, not assumed)."""
    x = golden.wrap(x)
    y = golden.srdhm(x, mult)
    z = golden.rounding_divide_by_pot(y, shift)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), -1)
    tie = (shift > 0) & ((y & ((np.int64(1) << shift) - 1)) == half)
    cov = set()
    if (tie & (y > 0)).any():
        cov.add("tie+")
    if (tie & (y < 0)).any():
        cov.add("tie-")
    if (tie & (shift == 31)).any():
        cov.add("tie@31")
    if ((x == I32_MIN) & (mult == I32_MIN)).any():
        cov.add("INT32_MIN^2")
    if ((x * mult) % (1 << 31) == (1 << 30)).any():
        cov.add("srdhm tie")
    if (z > 127).any():
        cov.add("sat+")
    if (z < -128).any():
        cov.add("sat-")
    if ((z < 0) & (z >= -128)).any():
        cov.add("negative")
    for name, cond in (("shift0", shift == 0), ("shift31", shift == 31), ("mult0", mult == 0),
                       ("mult2^30", mult == 1 << 30), ("multmax", mult == I32_MAX),
                       ("multneg", mult < 0)):
        if cond.any():
            cov.add(name)
    return cov


_REQUANT_NEEDS = {"tie+", "tie-", "tie@31", "INT32_MIN^2", "srdhm tie", "sat+", "sat-",
                  "negative", "shift0", "shift31", "mult0", "mult2^30", "multmax", "multneg"}


@cocotb.test()
async def test_requant_edges(dut):
    """Rounding ties, saturation, shift 0/31, multiplier 0/2^30/2^31-1/negative/INT32_MIN."""
    tb = await _start(dut)
    cfg = tb.config
    avals = np.array(_REQUANT_A[:cfg.max_m], dtype=np.int64)
    channels = _requant_channels()
    cov = set()
    for relu in (False, True):
        for start in range(0, len(channels), cfg.max_n):
            chunk = channels[start:start + cfg.max_n]
            n = len(chunk)
            mult = np.array([c[1] for c in chunk], dtype=np.int64)
            shift = np.array([c[2] for c in chunk], dtype=np.int64)
            bias = np.array([c[3] for c in chunk], dtype=np.int64)
            a = avals[:, None]
            b = np.ones((1, n), dtype=np.int64)
            x = a + bias[None, :]
            cov |= _requant_coverage(x, mult[None, :], shift[None, :])
            tb.random_traffic()
            case = GemmCase(a, b, bias, mult, shift, relu=relu,
                            label=f"requant edges {start // cfg.max_n}")
            await tb.run_gemms([case])
    missing = _REQUANT_NEEDS - cov
    tb.check(not missing, f"requant edge inputs do not reach {sorted(missing)}")
    # The same channels on real products (K > rows), with a random A.
    n = min(len(channels), cfg.max_n)
    k = min(cfg.max_k, cfg.rows + 3)
    m = min(cfg.max_m, 9)
    a = rand_int8(tb.rng, (m, k))
    b = rand_int8(tb.rng, (k, n), "small")
    chunk = channels[:n]
    case = GemmCase(a, b, [c[3] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk],
                    relu=True, label="requant edges, K>rows")
    tb.random_traffic()
    await tb.run_gemms([case])


@cocotb.test()
async def test_raw_bias_relu(dut):
    """Raw int32 output: bias wrap-around both ways, ReLU with and without params."""
    tb = await _start(dut)
    cfg = tb.config
    k = cfg.max_k
    m, n = min(4, cfg.max_m), min(2 * cfg.cols + 1, cfg.max_n)
    a_pos = np.full((m, k), 127)
    a_pos[1::2] = -128                       # rows alternate +max / -max sums
    b = np.full((k, n), 127)
    acc = golden.gemm_raw(a_pos, b)
    bias = np.empty(n, dtype=np.int64)
    bias[0::3] = I32_MAX - 1000               # positive rows overflow upward
    bias[1::3] = I32_MIN + 1000               # negative rows overflow downward
    bias[2::3] = tb.rng.integers(I32_MIN, I32_MAX, size=len(bias[2::3]), endpoint=True)
    wrapped = acc + bias[None, :]
    tb.check(((wrapped > I32_MAX).any() and (wrapped < I32_MIN).any()),
             "bias test inputs do not overflow both ways")
    for relu in (False, True):
        for case in (GemmCase(a_pos, b, bias, relu=relu, label="bias wrap"),
                     GemmCase(a_pos, b, relu=relu, label="no params"),
                     GemmCase(rand_int8(tb.rng, (m, 5)), rand_int8(tb.rng, (5, n)),
                              bias=tb.rng.integers(-3000, 3000, size=n), relu=relu,
                              label="small bias")):
            tb.random_traffic()
            await tb.run_gemms([case])


@cocotb.test()
async def test_bad_shape(dut):
    """Invalid shapes set BAD_SHAPE, consume and produce nothing; the next command works."""
    tb = await _start(dut)
    cfg = tb.config
    bad = [(0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 0),
           (cfg.max_m + 1, 1, 1), (1, cfg.max_k + 1, 1), (1, 1, cfg.max_n + 1),
           (65535, 65535, 65535), (2, cfg.max_k + 1, 3)]
    for i, (m, k, n) in enumerate(bad):
        tb.random_traffic()
        good = random_case(tb.rng, cfg, max_m=min(cfg.max_m, 9), max_k=min(cfg.max_k, 2 * cfg.rows + 3),
                           max_n=min(cfg.max_n, 2 * cfg.cols + 1), label=f"after bad {i}")
        # The good command's operands wait on the streams, valid, while the
        # bad command is refused: none of them may be taken.
        cmd = tb.queue_inputs(good)
        await tb.bad_command(m, k, n, params=i % 2, requant=i % 2, relu=(i // 2) % 2)
        if i == 3:     # two refusals in a row
            await tb.bad_command(1, cfg.max_k + 1, cfg.max_n + 1, params=1)
        pend = tb.send_cmd(cmd, good)
        # error clears when the good command is accepted, not only when it ends
        await tb.cmd.wait_drained()
        await tb.cycles(1)
        tb.check(tb.error() == GemmError.NONE,
                 f"error={tb.error().name} still set after a valid command was accepted")
        res = await tb.collect(pend, read_cycles=True)
        await tb.finish(good)
        tb.log.info("bad shape %s refused; then %s ok (%d cycles)", (m, k, n), good.describe(),
                    res.cycles)
    # A bad command queued right behind a running one is refused once the
    # unit is idle; the error stays until the next valid command.
    small = dict(max_m=min(cfg.max_m, 9), max_k=min(cfg.max_k, 2 * cfg.rows + 3),
                 max_n=min(cfg.max_n, 2 * cfg.cols + 1))
    tb.random_traffic()
    first = random_case(tb.rng, cfg, **small, label="before bad")
    pend = tb.submit(first)
    tb.cmd.send_nowait({"m": 1, "k": 1, "n": cfg.max_n + 1, "params": 1})
    await tb.collect(pend)
    try:
        await with_timeout(tb.cmd.wait_drained(), 2000 * tb.period_ns, "ns")
    except SimTimeoutError:
        tb.fail(f"bad command behind a valid one never accepted: {tb.state()}")
    await tb.cycles(30)
    tb.check(tb.error() == GemmError.BAD_SHAPE and not tb.busy(),
             f"bad command after a valid one: {tb.state()}")
    last = random_case(tb.rng, cfg, **small, label="after queued bad")
    await tb.run_gemms([last])


@cocotb.test()
async def test_random(dut):
    """Seeded random shapes, values, post-processing and traffic; back-to-back batches."""
    tb = await _start(dut)
    cfg = tb.config
    small = cfg.max_m * cfg.max_k * cfg.max_n <= 32 ** 3
    # Small buffers: the whole shape space. Big ones: moderate shapes (the
    # benchmark runs the full-size GEMM), plus one deep and one wide case.
    lim = (dict(max_m=cfg.max_m, max_k=cfg.max_k, max_n=cfg.max_n) if small else
           dict(max_m=min(cfg.max_m, 64), max_k=min(cfg.max_k, 6 * cfg.rows),
                max_n=min(cfg.max_n, 6 * cfg.cols)))
    batches = 40 if small else 16
    for bi in range(batches):
        tb.random_traffic()
        cases = [random_case(tb.rng, cfg, **lim, label=f"random {bi}.{j}")
                 for j in range(int(tb.rng.integers(1, 4)))]
        await tb.run_gemms(cases)
        tb.log.info("batch %d: %s", bi, "; ".join(c.describe() for c in cases))
    if not small:
        # one deep and one wide case through the big buffers
        for j, (m, k, n) in enumerate([(5, cfg.max_k, cfg.cols + 3), (7, 2 * cfg.rows + 1, cfg.max_n // 2)]):
            case = random_post(tb.rng, rand_int8(tb.rng, (m, k)), rand_int8(tb.rng, (k, n)),
                               label=f"random big {j}")
            tb.random_traffic()
            await tb.run_gemms([case])


@cocotb.test()
async def test_pipeline_overlap(dut):
    """Short and long passes at full speed: weight prefetch, accumulator banks, drain overlap.

    M around ``rows + cols + 4`` (where passes start to run back to back) and
    below the minimum pass length, on compute-bound (many K tiles) and
    drain-bound (many N tiles) shapes, with no idle cycles, then with
    backpressure on ``c`` only.
    """
    tb = await _start(dut, idle=0.0, backpressure=0.0)
    cfg = tb.config
    R, C = cfg.rows, cfg.cols
    ms = sorted({1, 2, 3, 4, 5, R + C + 3, R + C + 4, R + C + 5, 2 * (R + C)})
    tiles = [(1, 4), (4, 1), (3, 3), (2, 2)]
    for bp in (0.0, 0.5):
        tb.set_traffic(idle=0.0, backpressure=bp)
        cases = []
        for mi in ms:
            for kt, nt in tiles:
                m, k, n = _clip_shape(cfg, mi, kt * R - (mi % 2), nt * C - (mi % 3 == 0))
                a, b = rand_int8(tb.rng, (m, k)), rand_int8(tb.rng, (k, n))
                cases.append(random_post(tb.rng, a, b, label=f"overlap kt={kt} nt={nt}"))
        # back to back in one go, then one at a time
        await tb.run_gemms(cases)
        await tb.run_gemms(cases[::5], sequential=True)


@cocotb.test()
async def test_cycles_no_backpressure(dut):
    """No idle, no backpressure: the unit's own cycle counts (checked against ``cycles``)."""
    tb = await _start(dut, idle=0.0, backpressure=0.0)
    cfg = tb.config
    shapes = [(1, 1, 1), (cfg.rows, cfg.rows, cfg.cols), (32, 2 * cfg.rows, 2 * cfg.cols),
              (cfg.max_m, cfg.rows, cfg.cols)]
    for shape in shapes:
        m, k, n = _clip_shape(cfg, *shape)
        case = GemmCase(rand_int8(tb.rng, (m, k)), rand_int8(tb.rng, (k, n)),
                        bias=tb.rng.integers(-1000, 1000, size=n),
                        multiplier=np.full(n, 1 << 30), shift=np.full(n, 6), relu=True)
        (res,) = await tb.run_gemms([case], sequential=True)
        ideal = cfg.ideal_cycles(m, k, n)
        tb.log.info("M=%d K=%d N=%d: %d cycles (ideal %d, %.0f%% MAC utilisation)",
                    m, k, n, res.cycles, ideal, 100.0 * ideal / res.cycles)
    # back to back, sequential again so every cycles value can be read
    cases = [random_case(tb.rng, cfg, max_m=min(cfg.max_m, 20), max_k=min(cfg.max_k, 3 * cfg.rows),
                         max_n=min(cfg.max_n, 3 * cfg.cols)) for _ in range(3)]
    await tb.run_gemms(cases, sequential=True)
