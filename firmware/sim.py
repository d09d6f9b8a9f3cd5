"""The simulated chip as a process: ``open_device("sim")`` starts it and
talks to it through its pty with the serial transport.

The simulator runs in its own process group (one ``python -m
seedchip.sim.link_serve`` and the Verilator model under it); :meth:`SimChip.stop`
ends that group. If the host dies instead, the wrapper gets SIGTERM from the
kernel (``PR_SET_PDEATHSIG``) and the model ends itself when it sees the
host's pid gone, so no simulator outlives its host.
"""

import ctypes
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .link import LinkError

__all__ = ["SimChip", "check_preload", "DEFAULT_TOP", "SDRAM_TOP", "LINK_TOP"]

_PKG_PARENT = Path(__file__).resolve().parent.parent.parent
#: the chip on an on-chip RAM
DEFAULT_TOP = "seedchip.sim.chip_top:make_chip_top"
#: the chip on the pin-level SDRAM model
SDRAM_TOP = "seedchip.sim.chip_top:make_chip_sdram_top"
#: the host link on a RAM and a toy register file (the link's own tests)
LINK_TOP = "seedchip.sim.link_top:make_link_top"


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def check_preload(preload, config) -> list:
    """``preload`` as ``[(byte_addr, bytes), ...]``, checked against the chip
    memory of ``config`` (a chip build: ``sim`` or ``sim-sdram``)."""
    from ..sim.chip_top import ChipSDRAMSimConfig, ChipSimConfig  # noqa: PLC0415

    if not isinstance(config, (ChipSimConfig, ChipSDRAMSimConfig)):
        raise ValueError(f"preload is for the chip ('sim', 'sim-sdram'), not a "
                         f"{type(config).__name__} build")
    mem_bytes = config.mem_bytes
    try:
        items = list(preload)
    except TypeError:
        raise TypeError(f"preload must be a list of (byte_addr, bytes), not "
                        f"{type(preload).__name__}") from None
    out = []
    for i, seg in enumerate(items):
        try:
            addr, data = seg
        except (TypeError, ValueError):
            raise TypeError(f"preload segment {i} must be (byte_addr, bytes), not "
                            f"{type(seg).__name__}") from None
        if isinstance(addr, bool) or not isinstance(addr, (int, np.integer)):
            raise TypeError(f"preload segment {i}: byte_addr must be an integer, not {addr!r}")
        if isinstance(data, np.ndarray):
            raw = np.ascontiguousarray(data).tobytes()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError(f"preload segment {i}: data must be bytes or a NumPy array, "
                            f"not {type(data).__name__}")
        addr = int(addr)
        if addr < 0 or addr + len(raw) > mem_bytes:
            raise ValueError(f"preload segment {i} (byte address {addr:#x}, {len(raw)} bytes) "
                             f"is outside the chip memory (0x0..{mem_bytes:#x})")
        out.append((addr, raw))
    return out


class SimChip:
    """Starts a simulated top level and waits for its pty.

    ``top``: ``"module:factory"`` of the component (default the chip,
    :mod:`seedchip.sim.chip_top`; the link test top is
    ``"seedchip.sim.link_top:make_link_top"``); ``config``: its config object
    (``to_json``/``from_json``, ``clk_period_ns``, ``divisor``), default the
    factory's ``serve_config`` attribute, else its module's, called with ``**serve_kw`` (the chip's: ``mem_bytes``,
    ``chip``, a :class:`~seedchip.config.ChipConfig`); ``name``: the Verilog top-level name.
    ``start_timeout``: seconds for the (cached) build.

    ``preload``: ``[(byte_addr, data), ...]`` (``data`` bytes or a NumPy
    array's bytes) placed in the chip's memory before the host's first
    request, as a board's image loaded once, without the link (the SDRAM
    model's storage, or the on-chip RAM's array: that needs a build of the
    ``sim`` chip of its own, cached like the default one). A segment
    outside the memory is a ValueError before the simulator starts.
    """

    def __init__(self, *, top=DEFAULT_TOP, config=None, name=None, start_timeout=900.0,
                 log=None, preload=None, **serve_kw):
        if serve_kw and config is not None:
            raise TypeError(f"{', '.join(sorted(serve_kw))}: for the default build; give "
                            f"them or config, not both")
        if config is None:
            mod, _, factory = top.partition(":")
            mod = importlib.import_module(mod)
            serve_config = getattr(getattr(mod, factory), "serve_config", None) or mod.serve_config
            config = serve_config(**serve_kw)
        if name is None:
            name = {LINK_TOP: "seedchip_link_serve", SDRAM_TOP: "seedchip_chip_sdram_serve"}.get(
                top, "seedchip_chip_serve")
        segments = None if preload is None else check_preload(preload, config)
        self._dir = tempfile.TemporaryDirectory(prefix="seedchip-sim-")
        pty_file = Path(self._dir.name) / "pty"
        env = dict(os.environ)
        env.update({
            "SEEDCHIP_SIM_TOP": top,
            "SEEDCHIP_SIM_NAME": name,
            "SEEDCHIP_PTY_FILE": str(pty_file),
            "SEEDCHIP_HOST_PID": str(os.getpid()),
            "PYTHONPATH": os.pathsep.join([str(_PKG_PARENT), env.get("PYTHONPATH", "")]),
        })
        if segments:
            from ..sim.link_serve import PRELOAD_ENV, save_preload  # noqa: PLC0415

            save_preload(Path(self._dir.name) / "preload.npz", segments)
            env[PRELOAD_ENV] = str(Path(self._dir.name) / "preload.npz")
        if config is not None:
            env["SEEDCHIP_SIM_CONFIG"] = config.to_json()
            env["SEEDCHIP_SIM_CONFIG_CLASS"] = f"{type(config).__module__}:{type(config).__name__}"
        self.log_path = Path(log) if log else Path(self._dir.name) / "serve.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "seedchip.sim.link_serve"],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        t0 = time.monotonic()
        while not pty_file.exists():
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise LinkError(f"the simulator exited ({self.proc.returncode}) before it "
                                f"opened its pty; its log ends:\n{tail}")
            if time.monotonic() - t0 > start_timeout:
                self.stop()
                raise LinkError(f"the simulator did not open its pty within {start_timeout} s")
            time.sleep(0.1)
        self.pty = pty_file.read_text()

    def stop(self, timeout=10.0):
        """End the simulator's process group and wait for it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # the model under the wrapper is in the same group: make sure it is
        # gone (and reaped) before returning
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self._log.close()
        self._dir.cleanup()
