"""A simulated chip behind a pseudo-terminal: the cocotb side of ``open_device("sim")``.

``python -m seedchip.sim.link_serve`` builds (cached) and runs the top level
named by ``SEEDCHIP_SIM_TOP`` (``module:factory``, default the link test
top) with its config class ``SEEDCHIP_SIM_CONFIG_CLASS`` and JSON
``SEEDCHIP_SIM_CONFIG``. The top needs ``rx``/``tx`` UART pins; the config
``clk_period_ns`` and ``divisor``. Inside the simulator, :func:`serve` opens a
pty, writes its slave's path to ``SEEDCHIP_PTY_FILE`` and bridges its bytes
to the top's pins. It ends when the host process ``SEEDCHIP_HOST_PID`` is
gone.

Speed. The simulation is built with its own clock (``free_clock_ns``: no
simulator callback per clock edge) and the top sits behind a
:class:`~seedchip.sim.uart_bridge.UARTBridge`, a host-side UART in gateware,
so that Python wakes up once every POLL_BYTES byte times, or once per word
of W bytes moved, never once per bit or byte. Every byte still crosses the
top's own UART pins.
When nothing has moved for QUIET_POLLS polls (the chip is silent: no
response is being prepared, and no program runs), the bridge waits for the host in ``select()``
without simulating, so simulated time stands still while the host thinks,
and an idle simulator costs no CPU.
"""

import errno
import importlib
import os
import pty
import select
import sys
import tty

import cocotb
from cocotb.triggers import FallingEdge, Timer

__all__ = ["serve", "main", "POLL_BYTES", "QUIET_POLLS"]

#: byte times between two looks at the pty and the bridge's FIFOs (the
#: bridge's receive FIFO must hold what arrives in between)
POLL_BYTES = 16
#: polls without traffic before the bridge stops simulating: longer than any
#: command takes to start its response (a full READ is ~30 byte times)
QUIET_POLLS = 8
#: the bridge's words: bytes per word, words per FIFO (what arrives between
#: two polls fits: POLL_BYTES <= W * BRIDGE_DEPTH, and a word is flushed at
#: most every byte time)
W = 8
BRIDGE_DEPTH = 32
WORD_MASK = (1 << 8 * W) - 1


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


def _read(fd) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    except OSError as e:
        if e.errno != errno.EIO:        # EIO: no one has the slave open
            raise
        return b""


@cocotb.test()
async def serve(dut):
    cfg = _load(os.environ["SEEDCHIP_SIM_CONFIG_CLASS"]).from_json(os.environ["SEEDCHIP_CONFIG"])
    host = int(os.environ["SEEDCHIP_HOST_PID"])
    clk = dut.clk
    h2d_valid, h2d_data, h2d_level = dut.h2d__valid, dut.h2d__payload, dut.h2d_level
    d2h_ready, d2h_data, d2h_level = dut.d2h__ready, dut.d2h__payload, dut.d2h_level
    h2d_valid.value = 0
    d2h_ready.value = 0
    if hasattr(cfg, "sdram"):               # the chip on the pin-level SDRAM model
        from .chip_top import sdram_chip  # noqa: PLC0415
        from .sdram_model import SDRAMModel  # noqa: PLC0415

        SDRAMModel(chip=sdram_chip(cfg.sdram), clk_period_ns=cfg.clk_period_ns).attach(dut)
    dut.rst.value = 1
    for _ in range(4):
        await FallingEdge(clk)
    dut.rst.value = 0

    master, slave = pty.openpty()
    tty.setraw(slave)            # no echo, no line discipline before the host opens it
    os.set_blocking(master, False)
    announce = os.environ["SEEDCHIP_PTY_FILE"]
    with open(announce + ".tmp", "w") as f:
        f.write(os.ttyname(slave))
    os.replace(announce + ".tmp", announce)

    # Every look happens just after a falling edge: the bridge's handshakes
    # are sampled on the rising one, so nothing written here races the clock.
    poll = Timer(cfg.clk_period_ns * cfg.divisor * 10 * POLL_BYTES, unit="ns")
    inbuf = bytearray()
    out = bytearray()
    quiet = 0
    polls = 0
    while True:
        inbuf += _read(master)
        # as many words as the FIFOs allow, back to back: one write or read
        # of a signal per word, not a handshake
        npush = min(-(-len(inbuf) // W), BRIDGE_DEPTH - h2d_level.value.to_unsigned())
        npop = d2h_level.value.to_unsigned()
        moved = npush + npop > 0
        if npush:
            h2d_valid.value = 1
        if npop:
            d2h_ready.value = 1
        for i in range(max(npush, npop)):
            if i < npush:
                chunk = inbuf[i * W:(i + 1) * W]
                h2d_data.value = int.from_bytes(chunk, "little") | len(chunk) << 8 * W
            elif i == npush:
                h2d_valid.value = 0
            if i < npop:
                word = d2h_data.value.to_unsigned()
                out += (word & WORD_MASK).to_bytes(W, "little")[:word >> 8 * W]
            elif i == npop:
                d2h_ready.value = 0
            await FallingEdge(clk)
        if npush >= npop and npush:
            h2d_valid.value = 0
        if npop >= npush and npop:
            d2h_ready.value = 0
        del inbuf[:npush * W]
        if out:
            try:
                del out[:os.write(master, out)]
            except BlockingIOError:
                pass
        if moved or inbuf or not dut.h2d_idle.value or dut.top_busy.value:
            quiet = 0
        else:
            quiet += 1
        polls += 1
        if quiet >= QUIET_POLLS and not out:
            # the chip is silent: wait for the host without simulating
            while not select.select([master], [], [], 0.5)[0]:
                if not _alive(host):
                    return
            quiet = 0
        elif polls % 1024 == 0 and not _alive(host):
            return
        await poll
        # a timer can end in the time step of a falling edge, before the
        # clock has fallen: go past the edge so the next one is a full cycle away
        await FallingEdge(clk)


def bridged(top_factory):
    """A component factory for the runner: ``top_factory``'s top behind a
    :class:`~seedchip.sim.uart_bridge.UARTBridge`."""
    from .uart_bridge import UARTBridge  # noqa: PLC0415

    def factory(*, config):
        return UARTBridge(top_factory(config=config), divisor=config.divisor,
                          word_bytes=W, depth=BRIDGE_DEPTH)

    # the runner regenerates the Verilog when the top's sources change
    factory.__module__ = top_factory.__module__
    factory.rtl_sources = [__file__, sys.modules[UARTBridge.__module__].__file__]
    return factory


def main():
    from . import runner  # noqa: PLC0415

    top = _load(os.environ.get("SEEDCHIP_SIM_TOP", "seedchip.sim.link_top:make_link_top"))
    cfg_cls = os.environ.setdefault("SEEDCHIP_SIM_CONFIG_CLASS",
                                    "seedchip.sim.link_top:LinkSimConfig")
    text = os.environ.get("SEEDCHIP_SIM_CONFIG")
    cfg_type = _load(cfg_cls)
    config = cfg_type.from_json(text) if text else cfg_type()
    name = os.environ.get("SEEDCHIP_SIM_NAME", "seedchip_link_serve")
    result = runner.run_cocotb(bridged(top), name, "seedchip.sim.link_serve", config,
                               tag="serve", free_clock_ns=config.clk_period_ns,
                               extra_env={k: os.environ[k] for k in (
                                   "SEEDCHIP_PTY_FILE", "SEEDCHIP_HOST_PID",
                                   "SEEDCHIP_SIM_CONFIG_CLASS")})
    sys.exit(0 if result.sim_exit_code == 0 else 1)


if __name__ == "__main__":
    main()
