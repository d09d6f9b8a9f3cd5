"""The chip as the host sees it: memory, registers, start/status/counters.

``open_device("serial:/dev/ttyUSB0", baud=3_000_000)`` for a board,
``open_device("sim")`` for the chip simulated under Verilator behind a pty
(the same pyserial code path), ``open_device("sim-sdram")`` the same on the
pin-level SDRAM model.
"""

import time

import numpy as np

from .. import isa
from ..link_protocol import (MAX_REGS, N_UNITS, UNIT_CYCLES, AddrArgs, Cmd, InfoLayout,
                             LinkCounter, ReadArgs, Reg, RegReadArgs, RegWriteArgs, UnitCounter,
                             pack_bytes, unpack_bytes)
from .link import Link, LinkError, SerialTransport

__all__ = ["Device", "open_device", "ChipTimeout", "ProgramError"]


class ChipTimeout(LinkError):
    """A program did not stop within the time given."""


class ProgramError(RuntimeError):
    """A program stopped with an error; ``status`` is the :class:`seedchip.isa.Status`."""

    def __init__(self, status):
        self.status = status
        super().__init__(f"the program stopped with an error: {status}")


def _u32s(raw) -> list:
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]


class Device:
    """A chip behind a :class:`~seedchip.firmware.link.Link`.

    Large transfers are split into MAX_DATA-byte frames and pipelined
    ``rx_slots`` at a time (INFO says how many the chip holds).
    """

    def __init__(self, link: Link, *, owner=None):
        self.link = link
        self._owner = owner              # e.g. the simulator process to stop on close()
        link.window = 1
        self._info = unpack_bytes(InfoLayout, link.request(Cmd.INFO))
        link.window = max(1, self._info["rx_slots"])

    # -- information -------------------------------------------------------------
    def info(self) -> dict:
        return dict(self._info)

    # -- memory --------------------------------------------------------------------
    def write(self, addr: int, data) -> None:
        """Write bytes, or a NumPy array's bytes (C order), at byte address ``addr``."""
        raw = np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else bytes(data)
        step = self._info["max_data"]
        self.link.pipeline(
            (Cmd.WRITE, pack_bytes(AddrArgs, {"addr": addr + i}) + raw[i:i + step])
            for i in range(0, len(raw), step))

    def read(self, addr: int, n=None, *, dtype=np.uint8, shape=None) -> np.ndarray:
        """``n`` bytes, or an array of ``dtype`` and ``shape``, from byte address ``addr``."""
        dtype = np.dtype(dtype)
        if shape is not None:
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            nbytes = int(np.prod(shape)) * dtype.itemsize
        elif n is not None:
            nbytes = int(n)
            if nbytes % dtype.itemsize:
                raise ValueError(f"n must be a multiple of {dtype.itemsize} for {dtype}, not {n}")
            shape = (nbytes // dtype.itemsize,)
        else:
            raise TypeError("read() needs n or shape")
        step = self._info["max_data"]
        parts = self.link.pipeline(
            (Cmd.READ, pack_bytes(ReadArgs, {"addr": addr + i, "n": min(step, nbytes - i)}))
            for i in range(0, nbytes, step))
        return np.frombuffer(b"".join(parts), dtype=dtype).reshape(shape).copy()

    # -- registers -----------------------------------------------------------------
    def reg_read(self, reg: int, count: int = 1) -> list:
        out = []
        for i in range(0, count, MAX_REGS):
            k = min(MAX_REGS, count - i)
            out += _u32s(self.link.request(
                Cmd.REG_READ, pack_bytes(RegReadArgs, {"reg": reg + i, "count": k})))
        return out

    def reg_write(self, reg: int, values) -> None:
        values = [values] if isinstance(values, int) else list(values)
        self.link.request(Cmd.REG_WRITE, pack_bytes(RegWriteArgs, {"reg": reg}) +
                          b"".join((v & 0xFFFF_FFFF).to_bytes(4, "little") for v in values))

    def status(self) -> int:
        return _u32s(self.link.request(Cmd.STATUS))[0]

    def counters(self) -> dict:
        """The link counters by name, and ``unit``: the chip's unit counters."""
        vals = _u32s(self.link.request(Cmd.COUNTERS))
        out = {c.name.lower(): vals[c] for c in LinkCounter}
        out["unit"] = vals[len(LinkCounter):]
        return out

    def reset(self) -> None:
        self.link.request(Cmd.RESET)

    def start(self, addr: int) -> None:
        self.link.request(Cmd.START, pack_bytes(AddrArgs, {"addr": addr}))

    # -- programs ------------------------------------------------------------------
    def chip_status(self) -> isa.Status:
        """The control unit's status (STATUS, PC, RETIRED, ERR_BAG, ERR_INDEX)."""
        words = self.reg_read(Reg.STATUS, Reg.ERR_INDEX - Reg.STATUS + 1)
        # StatusLayout's words: STATUS, PC, RETIRED, ERR_BAG, ERR_INDEX
        words = [words[r - Reg.STATUS] for r in (Reg.STATUS, Reg.PC, Reg.RETIRED, Reg.ERR_BAG,
                                                 Reg.ERR_INDEX)]
        raw = b"".join(w.to_bytes(4, "little") for w in words)
        v = isa.StatusLayout.from_bits(int.from_bytes(raw, "little"))
        return isa.Status(state=isa.ChipState(v.state), error=isa.ChipError(v.error),
                          detail=int(v.detail), bag=int(v.bag), index=int(v.index),
                          pc=int(v.pc), retired=int(v.retired))

    def wait(self, timeout: float = 60.0, poll: float = 0.002) -> isa.Status:
        """Poll until the program stops (DONE or ERROR); ``ChipTimeout`` after
        ``timeout`` seconds."""
        t0 = time.monotonic()
        while True:
            st = self.chip_status()
            if st.state in (isa.ChipState.DONE, isa.ChipState.ERROR):
                return st
            if st.state == isa.ChipState.IDLE:
                raise LinkError("no program is running (the chip is idle)")
            if time.monotonic() - t0 > timeout:
                raise ChipTimeout(f"the program did not stop within {timeout} s: {st}")
            time.sleep(poll)

    def run(self, program, *, addr=None, timeout: float = 60.0, check: bool = True
            ) -> isa.Status:
        """Load ``program`` (a :class:`~seedchip.firmware.program.Program`, or
        its bytes at ``addr``) into chip memory, start it and wait for it.
        ``check``: raise :class:`ProgramError` when it stops with an error."""
        raw = program.to_bytes() if hasattr(program, "to_bytes") else bytes(program)
        addr = getattr(program, "base", 0) if addr is None else addr
        self.write(addr, raw)
        self.start(addr)
        st = self.wait(timeout)
        if check and st.state != isa.ChipState.DONE:
            raise ProgramError(st)
        return st

    def unit_counters(self) -> dict:
        """The last program's cycles and per-unit cycle counters:
        ``{"cycles": n, "gemm": {"busy": .., "mem_stall": .., "idle": ..}, ...}``."""
        vals = self.reg_read(UNIT_CYCLES, 1 + N_UNITS * len(UnitCounter))
        out = {"cycles": vals[0]}
        for u in isa.Unit:
            base = 1 + u.value * len(UnitCounter)
            out[u.name.lower()] = {c.name.lower(): vals[base + c] for c in UnitCounter}
        return out

    # -- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.link.close()
        finally:
            if self._owner is not None:
                self._owner.stop()
                self._owner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_device(spec: str, *, baud: int = 3_000_000, timeout: float | None = None,
                **sim_kw) -> Device:
    """``"serial:<port>"`` (a board), ``"sim"`` (the chip on an on-chip RAM,
    simulated) or ``"sim-sdram"`` (the chip on the pin-level SDRAM model, at
    the board's clock; much slower). Keywords go to
    :class:`seedchip.firmware.sim.SimChip`: ``mem_bytes`` (sim), ``chip`` (a
    :class:`~seedchip.config.ChipConfig`), or ``top`` and ``config``;
    ``preload=[(byte_addr, bytes), ...]``, a memory image placed in the
    simulated memory before the link starts (a board would load it once)."""
    if spec.startswith("serial:"):
        if sim_kw:
            raise TypeError(f"{', '.join(sorted(sim_kw))}: for open_device('sim') only")
        link = Link(SerialTransport(spec[len("serial:"):], baud),
                    timeout=1.0 if timeout is None else timeout)
        return Device(link)
    if spec in ("sim", "sim-sdram"):
        from .sim import SDRAM_TOP, SimChip  # noqa: PLC0415

        if spec == "sim-sdram":
            sim_kw.setdefault("top", SDRAM_TOP)
        chip = SimChip(**sim_kw)
        try:
            link = Link(SerialTransport(chip.pty), timeout=30.0 if timeout is None else timeout)
            return Device(link, owner=chip)
        except BaseException:
            chip.stop()
            raise
    raise LinkError(f"device must be 'serial:<port>', 'sim' or 'sim-sdram', not {spec!r}")
