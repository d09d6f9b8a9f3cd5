"""A simulated chip behind a pseudo-terminal: the cocotb side of ``open_device("sim")``.

``python -m seedchip.sim.link_serve`` builds (cached) and runs the top level
named by ``SEEDCHIP_SIM_TOP`` (``module:factory``, default the link test
top) with its config class ``SEEDCHIP_SIM_CONFIG_CLASS`` and JSON
``SEEDCHIP_SIM_CONFIG``. The top needs ``clk``/``rst``/``rx``/``tx`` ports;
the config ``clk_period_ns`` and ``divisor``. Inside the simulator,
:func:`serve` opens a pty, writes its slave's path to ``SEEDCHIP_PTY_FILE``
and bridges its bytes to the ``rx``/``tx`` pins with cocotbext-uart. It ends
when the host process ``SEEDCHIP_HOST_PID`` is gone.
"""

import errno
import importlib
import logging
import os
import pty
import select
import sys
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer

__all__ = ["serve", "main"]


def _load(path):
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@cocotb.test()
async def serve(dut):
    from cocotbext.uart import UartSink, UartSource  # noqa: PLC0415

    cfg = _load(os.environ["SEEDCHIP_SIM_CONFIG_CLASS"]).from_json(os.environ["SEEDCHIP_CONFIG"])
    host = int(os.environ["SEEDCHIP_HOST_PID"])
    Clock(dut.clk, cfg.clk_period_ns, unit="ns").start()
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    bit_ns = cfg.clk_period_ns * cfg.divisor
    source = UartSource(dut.rx, baud=1e9 / bit_ns)
    sink = UartSink(dut.tx, baud=1e9 / bit_ns)
    for sig in (dut.rx, dut.tx):
        logging.getLogger(f"cocotb.{sig._path}").setLevel(logging.WARNING)

    master, slave = pty.openpty()
    tty.setraw(slave)            # no echo, no line discipline before the host opens it
    os.set_blocking(master, False)
    announce = os.environ["SEEDCHIP_PTY_FILE"]
    with open(announce + ".tmp", "w") as f:
        f.write(os.ttyname(slave))
    os.replace(announce + ".tmp", announce)

    poll = Timer(bit_ns * 10 * 4, unit="ns")      # every 4 byte times
    out = bytearray()
    idle = 0
    while True:
        moved = False
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if data:
            source.write_nowait(data)
            moved = True
        if not sink.empty():
            out += sink.read_nowait()
        if out:
            try:
                out = out[os.write(master, out):]
                moved = True
            except BlockingIOError:
                pass
        if moved or not source.idle() or sink.active:
            idle = 0
        else:
            idle += 1
            if idle % 64 == 0 and not _alive(host):
                return
            if idle > 256:
                # nothing moves: wait for the host on the pty, not by simulating
                select.select([master], [], [], 0.02)
        await poll


def main():
    from . import runner  # noqa: PLC0415

    top = _load(os.environ.get("SEEDCHIP_SIM_TOP", "seedchip.sim.link_top:make_link_top"))
    cfg_cls = os.environ.setdefault("SEEDCHIP_SIM_CONFIG_CLASS",
                                    "seedchip.sim.link_top:LinkSimConfig")
    text = os.environ.get("SEEDCHIP_SIM_CONFIG")
    cfg_type = _load(cfg_cls)
    config = cfg_type.from_json(text) if text else cfg_type()
    name = os.environ.get("SEEDCHIP_SIM_NAME", "seedchip_link_top")
    result = runner.run_cocotb(top, name, "seedchip.sim.link_serve", config, tag="serve",
                               extra_env={k: os.environ[k] for k in (
                                   "SEEDCHIP_PTY_FILE", "SEEDCHIP_HOST_PID",
                                   "SEEDCHIP_SIM_CONFIG_CLASS")})
    sys.exit(0 if result.sim_exit_code == 0 else 1)


if __name__ == "__main__":
    main()
