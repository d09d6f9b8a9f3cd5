"""Reusable cocotb testbench pieces: clock/reset, stream drivers, payload codecs.

Nothing here knows about a particular block. A block's testbench builds a
:class:`TB` on the DUT, asks it for a :class:`StreamSource` per input stream
and a :class:`StreamSink` per output stream, and compares what comes out with
a golden model.

Port names follow Amaranth's Verilog flattening of ``stream.Signature``
members: ``<name>__valid``, ``<name>__ready``, ``<name>__payload``.

Timing discipline (simulator-independent, Verilator included): drivers write
right after a rising edge, then wait for ``ReadOnly`` of the same time step to
see the settled ``valid``/``ready``; that pair is the handshake the *next*
rising edge performs. Nothing is sampled at the edge itself, where
Verilator has already updated the registers.
"""

from __future__ import annotations

import collections
import os
import zlib

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, ReadOnly, RisingEdge
from cocotb.simtime import convert, get_sim_time

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["LayoutCodec", "TB", "StreamSource", "StreamSink", "derive_seed", "load_config"]


# -- payload codecs -----------------------------------------------------------

class LayoutCodec:
    """Fast pack/unpack of an Amaranth layout to/from the integer on the wire.

    Field offsets come from the layout itself (``for key, field in layout``),
    so no offset is written here. ``protocol.pack``/``unpack`` do the same job
    through Amaranth constants, which is too slow for per-beat use.
    Struct values are dicts, array values lists; signed fields come back signed.
    Nested layouts are supported.
    """

    def __init__(self, layout):
        if not isinstance(layout, data.Layout):
            layout = data.Layout.cast(layout)
        self.layout = layout
        self.width = layout.size
        self.is_array = isinstance(layout, data.ArrayLayout)
        self._fields = []
        for key, field in layout:
            sub = LayoutCodec(field.shape) if isinstance(field.shape, data.Layout) else None
            cast = Shape.cast(field.shape)
            self._fields.append((key, field.offset, cast.width, cast.signed, sub))

    def pack(self, value) -> int:
        if self.is_array:
            if len(value) != len(self._fields):
                raise ValueError(f"expected {len(self._fields)} elements, not {len(value)}")
            get = value.__getitem__
        else:
            unknown = set(value) - {f[0] for f in self._fields}
            if unknown:
                raise KeyError(f"unknown field(s) {sorted(unknown)}")
            get = lambda k: value.get(k, 0)  # noqa: E731
        bits = 0
        for key, offset, width, _signed, sub in self._fields:
            v = get(key)
            v = sub.pack(v) if sub is not None else int(v)
            bits |= (v & ((1 << width) - 1)) << offset
        return bits

    def unpack(self, bits: int):
        bits = int(bits)
        out = [] if self.is_array else {}
        for key, offset, width, signed, sub in self._fields:
            v = (bits >> offset) & ((1 << width) - 1)
            if sub is not None:
                v = sub.unpack(v)
            elif signed and v >> (width - 1):
                v -= 1 << width
            if self.is_array:
                out.append(v)
            else:
                out[key] = v
        return out

    def pack_array_rows(self, rows) -> list[int]:
        """Pack each row of a 2-D integer array (for an ArrayLayout of scalars)."""
        if not self.is_array:
            raise TypeError("pack_array_rows needs an ArrayLayout")
        rows = np.asarray(rows, dtype=np.int64)
        n = len(self._fields)
        if rows.ndim != 2 or rows.shape[1] != n:
            raise ValueError(f"expected an [*, {n}] array, not {rows.shape}")
        width = self._fields[0][2]
        offsets = [f[1] for f in self._fields]
        masked = (rows & ((1 << width) - 1)).tolist()
        return [sum(v << o for v, o in zip(r, offsets)) for r in masked]


# -- seeds and configuration ------------------------------------------------

def derive_seed(name: str | None = None) -> int:
    """Seed of the running cocotb test.

    cocotb derives ``cocotb.RANDOM_SEED`` from ``COCOTB_RANDOM_SEED`` and the
    full test name, so a failing test is reproduced by re-running it with the
    base seed the run printed. ``name`` adds an extra, stable salt.
    """
    seed = int(cocotb.RANDOM_SEED) & 0xFFFF_FFFF
    if name:
        seed ^= zlib.crc32(name.encode())
    return seed


def load_config():
    """The ChipConfig the runner passed in ``SEEDCHIP_CONFIG``."""
    from seedchip.config import ChipConfig  # noqa: PLC0415

    text = os.environ.get("SEEDCHIP_CONFIG")
    if not text:
        raise RuntimeError("SEEDCHIP_CONFIG is not set: run this module through seedchip.sim.runner")
    return ChipConfig.from_json(text)


# -- the testbench --------------------------------------------------------------

class TB:
    """Owns the clock, the reset, the random generator and the stream drivers.

    ``TB(dut, seed=...)`` starts a clock on ``dut.clk``. Every random choice in a
    test should come from ``tb.rng`` (or a driver's generator spawned from it),
    so the printed seed reproduces the run.
    """

    def __init__(self, dut, *, seed: int | None = None, period_ns: int = 10,
                 clk: str = "clk", rst: str = "rst"):
        self.dut = dut
        self.log = dut._log
        self.seed = derive_seed() if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.period_ns = period_ns
        self.clk = getattr(dut, clk)
        self.rst = getattr(dut, rst) if rst else None
        self.edge = RisingEdge(self.clk)
        self.log.info("seed=%d (reproduce with COCOTB_RANDOM_SEED=%s and this test name)",
                      self.seed, os.environ.get("COCOTB_RANDOM_SEED", "?"))
        self.clock = Clock(self.clk, period_ns, unit="ns")
        self._period_steps = convert(period_ns, "ns", to="step")
        self._t_start = get_sim_time()
        self.clock.start()
        self.sources: dict[str, StreamSource] = {}
        self.sinks: dict[str, StreamSink] = {}
        #: True while :meth:`reset` holds ``rst`` (stream rules do not apply)
        self.in_reset = False

    # -- time ------------------------------------------------------------------
    def cycle(self) -> int:
        """Index of the current clock cycle (rising edges since the clock started)."""
        # Integer simulator steps: differences of float nanoseconds can fall
        # a hair short of a whole period and floor to the previous cycle.
        return (get_sim_time() - self._t_start) // self._period_steps

    async def cycles(self, n: int = 1) -> None:
        for _ in range(n):
            await self.edge

    async def reset(self, cycles: int = 4) -> None:
        """Synchronous, active-high reset (Amaranth's ``rst``)."""
        if self.rst is None:
            return
        self.in_reset = True
        self.rst.value = 1
        await self.cycles(cycles)
        self.rst.value = 0
        await self.edge
        self.in_reset = False

    # -- checks ------------------------------------------------------------------
    def fail(self, msg: str):
        raise AssertionError(f"{msg} [seed={self.seed}]")

    def check(self, cond, msg: str) -> None:
        if not cond:
            self.fail(msg)

    # -- streams -----------------------------------------------------------------
    def source(self, name: str, layout=None, *, idle: float = 0.0) -> StreamSource:
        src = StreamSource(self, name, layout, idle=idle)
        self.sources[name] = src
        return src

    def sink(self, name: str, layout=None, *, backpressure: float = 0.0,
             dont_care=()) -> StreamSink:
        snk = StreamSink(self, name, layout, backpressure=backpressure, dont_care=dont_care)
        self.sinks[name] = snk
        return snk

    def set_traffic(self, *, idle: float | None = None, backpressure: float | None = None):
        """Change the idle probability of every source / backpressure of every sink."""
        for s in self.sources.values():
            if idle is not None:
                s.idle = idle
        for s in self.sinks.values():
            if backpressure is not None:
                s.backpressure = backpressure


def _check_prob(name, p):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in range [0, 1), not {p!r}")
    return float(p)


class _StreamEnd:
    """The ``<name>__valid``/``__ready``/``__payload`` handles of one stream
    port of the DUT, and the codec of its payload layout."""

    def _attach(self, tb: TB, name: str, layout):
        dut = tb.dut
        self.tb = tb
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.codec = LayoutCodec(layout) if layout is not None else None


class StreamSource(_StreamEnd):
    """Drives ``<name>__valid``/``__payload`` from a queue; reads ``__ready``.

    With ``idle`` > 0, every cycle in which a beat could be presented is left
    idle with that probability. Once ``valid`` is high, it and the payload
    hold until the beat is taken (the stream rules).
    """

    def __init__(self, tb: TB, name: str, layout=None, *, idle: float = 0.0):
        self._attach(tb, name, layout)
        self.idle = _check_prob("idle", idle)
        self.rng = tb.rng.spawn(1)[0]
        self.queue: collections.deque = collections.deque()
        #: beats accepted so far, and the cycle index of each acceptance
        self.count = 0
        self.accept_cycles: list[int] = []
        self._have_data = Event()
        self._drained = Event()
        self._drained.set()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, beat) -> None:
        """Queue one beat: an int (raw bits) or a value for the codec."""
        if not isinstance(beat, int):
            beat = self.codec.pack(beat)
        self.queue.append(beat)
        self._drained.clear()
        self._have_data.set()

    def extend(self, beats) -> None:
        for b in beats:
            self.send_nowait(b)

    async def wait_drained(self) -> None:
        """Until every queued beat has been accepted."""
        await self._drained.wait()

    @property
    def pending(self) -> int:
        return len(self.queue)

    async def _run(self):
        edge = self.tb.edge
        presenting = False      # valid is high
        handshake = False       # valid & ready seen settled in this cycle
        while True:
            if not presenting and not self.queue:
                self._have_data.clear()
                await self._have_data.wait()
            await edge
            if presenting and handshake:
                self.queue.popleft()
                self.count += 1
                self.accept_cycles.append(self.tb.cycle() - 1)
                if not self.queue:
                    self._drained.set()
                if not (self.queue and not (self.idle and self.rng.random() < self.idle)):
                    self.valid.value = 0
                    presenting = False
                    continue
                self.payload.value = self.queue[0]
            elif not presenting:
                if not (self.queue and not (self.idle and self.rng.random() < self.idle)):
                    continue
                self.payload.value = self.queue[0]
                self.valid.value = 1
                presenting = True
            await ReadOnly()
            handshake = bool(self.ready.value)


class StreamSink(_StreamEnd):
    """Drives ``<name>__ready`` (random backpressure) and records accepted beats.

    ``beats`` holds raw integers (decode with ``codec``); ``accept_cycles``
    the cycle index of each handshake. With ``check_protocol`` (default) it
    also fails the test when the DUT breaks the stream rules: ``valid``
    dropped, or the payload changed, while a beat waits for ``ready``
    (not checked while :meth:`TB.reset` holds the reset).

    ``dont_care`` names fields of ``layout`` that the protocol leaves
    undefined (``rdata`` of a write response): X/Z bits there read as 0.
    Verilator starts undefined registers at 0 (``--x-initial fast``), Icarus
    keeps them X; X anywhere else fails the test.
    """

    def __init__(self, tb: TB, name: str, layout=None, *, backpressure: float = 0.0,
                 check_protocol: bool = True, dont_care=()):
        self._attach(tb, name, layout)
        self.backpressure = _check_prob("backpressure", backpressure)
        self.rng = tb.rng.spawn(1)[0]
        self.beats: list[int] = []
        self.accept_cycles: list[int] = []
        self._new = Event()
        self.check_protocol = check_protocol
        self._dont_care = 0
        for key in dont_care:
            if self.codec is None:
                raise ValueError("dont_care needs a layout")
            field = self.codec.layout[key]
            self._dont_care |= ((1 << Shape.cast(field.shape).width) - 1) << field.offset
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def __len__(self):
        return len(self.beats)

    def _payload(self) -> int:
        value = self.payload.value
        if value.is_resolvable:
            return value.to_unsigned()
        text, n = str(value), len(value)
        text = "".join("0" if c not in "01" and self._dont_care >> (n - 1 - i) & 1 else c
                       for i, c in enumerate(text))
        if any(c not in "01" for c in text):
            self.tb.fail(f"{self.name}: payload {value} has undefined bits (cycle {self.tb.cycle()})")
        return int(text, 2)

    def decoded(self, start: int = 0):
        return [self.codec.unpack(b) for b in self.beats[start:]]

    async def wait_for(self, count: int) -> None:
        """Until at least ``count`` beats have been received in total."""
        while len(self.beats) < count:
            self._new.clear()
            await self._new.wait()

    async def _run(self):
        edge = self.tb.edge
        ready = False
        taken = None            # payload of the handshake the coming edge performs
        stalled = None          # payload offered but refused in the previous cycle
        while True:
            await edge
            if taken is not None:
                # Committed only now, at the edge, so that waiters wake up in a
                # phase where they may drive signals.
                self.beats.append(taken)
                self.accept_cycles.append(self.tb.cycle() - 1)
                taken = None
                self._new.set()
            r = not (self.backpressure and self.rng.random() < self.backpressure)
            if r != ready:
                self.ready.value = int(r)
                ready = r
            await ReadOnly()
            valid = bool(self.valid.value)
            if self.tb.in_reset:
                stalled = None      # a reset may withdraw an offered beat
            if stalled is not None:
                # Stream rule: once offered, a beat stays offered, unchanged,
                # until it is taken.
                if not valid:
                    self.tb.fail(f"{self.name}: valid dropped in cycle {self.tb.cycle()} "
                                 f"before the beat {stalled:#x} was taken")
                now = self._payload()
                if now != stalled:
                    self.tb.fail(f"{self.name}: payload changed from {stalled:#x} to {now:#x} "
                                 f"while valid and not ready (cycle {self.tb.cycle()})")
                stalled = None
            if valid:
                if ready:
                    taken = self._payload()
                elif self.check_protocol and not self.tb.in_reset:
                    stalled = self._payload()
