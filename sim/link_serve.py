"""A simulated chip behind a pseudo-terminal: the cocotb side of ``open_device("sim")``.

``python -m seedchip.sim.link_serve`` builds (cached) and runs the top level
named by ``SEEDCHIP_SIM_TOP`` (``module:factory``, default the link test
top) with its config class ``SEEDCHIP_SIM_CONFIG_CLASS`` and JSON
``SEEDCHIP_SIM_CONFIG``. The top needs ``rx``/``tx`` UART pins; the config
``clk_period_ns`` and ``divisor``. Inside the simulator, :func:`serve` opens a
pty, writes its slave's path to ``SEEDCHIP_PTY_FILE`` and bridges its bytes
to the top's pins. It ends when the host process ``SEEDCHIP_HOST_PID`` is
gone.

Preload. ``SEEDCHIP_PRELOAD`` names an ``.npz`` of memory segments
(:func:`save_preload`: ``addr`` the segments' byte addresses, ``size``
their lengths, ``data`` their bytes one after the other) that
:func:`serve` places in the simulated memory after reset, before it
publishes the pty, so before the host's first request: on the SDRAM model
straight into its storage, at the (bank, row, column) the controller would
use (:func:`sdram_location`); on the on-chip RAM through the handle of its
memory array, which the build makes visible for this (:data:`RAM_PUBLIC`,
a Verilator configuration file: a build of its own, ``<name>_preload``,
cached like the other).

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
import numpy as np
from cocotb.triggers import FallingEdge, Timer

__all__ = ["serve", "main", "POLL_BYTES", "QUIET_POLLS", "PRELOAD_ENV", "save_preload",
           "load_preload", "sdram_location", "preload_sdram", "preload_onchip", "RAM_PUBLIC"]

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


#: environment variable: the ``.npz`` of segments to preload (see the module docstring)
PRELOAD_ENV = "SEEDCHIP_PRELOAD"
#: the on-chip RAM's memory array as ChipSimTop's Verilog names it
#: (rtl/onchip_ram.py: ``m.submodules.mem = Memory(...)``, a submodule
#: Amaranth flattens into an array ``mem`` of module ``<top>.ram``), below
#: the free-clock wrapper's ``core`` and the UART bridge's ``top``
RAM_PATH = ("core", "top", "ram", "mem")
#: Verilator configuration that makes that array (and only it: no other
#: ``mem`` exists in the chip's Verilog) visible to cocotb; a build with the
#: free clock otherwise exposes only the wrapper's ports
RAM_PUBLIC = '`verilator_config\npublic_flat_rw -module "*" -var "mem"\n'


def save_preload(path, segments) -> None:
    """Write ``[(byte_addr, bytes), ...]`` as the ``.npz`` :func:`load_preload` reads."""
    segments = list(segments)
    np.savez(path, addr=np.array([a for a, _ in segments], np.int64),
             size=np.array([len(d) for _, d in segments], np.int64),
             data=np.frombuffer(b"".join(bytes(d) for _, d in segments), np.uint8))


def load_preload(path) -> list:
    """``[(byte_addr, bytes), ...]`` from a :func:`save_preload` file."""
    with np.load(path) as f:
        addr, size, data = f["addr"], f["size"], f["data"].tobytes()
    ends = np.cumsum(size)
    return [(int(a), data[int(e - n):int(e)]) for a, n, e in zip(addr, size, ends)]


def sdram_location(byte_addr, chip):
    """Where the chip's byte ``byte_addr`` lives in the SDRAM ``chip`` (an
    :class:`~seedchip.rtl.sdram_chips.SDRAMChip`): ``(bank, row, col, lane)``,
    ``lane`` the byte's place in the ``chip.data_width`` word (bits
    ``8 * lane ..``). ``byte_addr`` may be a NumPy array (each part then is).

    As the hardware maps it (rtl/chip_sdram.py: Chip -> WidthAdapter ->
    SDRAMController):

    * the chip's 64-bit memory word ``w`` holds bytes ``8w .. 8w + 7``,
      byte ``b`` in bits ``8b ..`` (rtl/link_engine.py: ``waddr = addr >> lb``,
      ``wdata.word_select(lane, 8)``, ``lane = baddr[:lb]``);
    * the WidthAdapter (rtl/memwidth.py) splits it into ``R = 64 /
      data_width`` SDRAM words, part ``p`` at narrow address ``(w << log2 R) | p``
      with ``wdata.word_select(p, data_width)``: so SDRAM word ``n = byte_addr
      // (data_width / 8)`` holds the bytes ``n * data_width / 8 ..``, little-endian;
    * the controller's queue (rtl/sdram_queue.py) splits ``n``: column
      ``addr[:cb]`` (the side FIFO's ``col``, driven on ``a`` with READ/WRITE),
      bank ``addr[cb:cb + bb]`` (``ba``), row ``addr[cb + bb:cb + bb + rb]``
      (``a`` with ACTIVE), ``cb, bb, rb`` = log2 of the columns, banks and
      rows; the data word goes to ``dq_o`` unchanged (rtl/sdram.py).
    """
    nb = chip.data_width // 8
    n = byte_addr // nb
    cb, bb = chip.col_bits, chip.bank_bits
    return ((n >> cb) & (chip.banks - 1), (n >> (cb + bb)) & (chip.rows - 1),
            n & (chip.columns - 1), byte_addr % nb)


def preload_sdram(model, segments) -> None:
    """Put ``segments`` (``[(byte_addr, bytes), ...]``) into the storage of
    ``model`` (a :class:`~seedchip.sim.sdram_model.SDRAMModel`), where the
    chip reads them. A word the segments fill only in part keeps its other
    bytes (what it read before)."""
    chip = model.chip
    nb = chip.data_width // 8
    if chip.size_bytes % nb or 8 % nb:
        raise ValueError(f"{chip.name}: {chip.data_width}-bit words do not divide the chip's "
                         f"64-bit words")
    for addr, data in segments:
        if not data:
            continue
        if addr < 0 or addr + len(data) > chip.size_bytes:
            raise ValueError(f"preload segment at {addr:#x} ({len(data)} bytes) is outside "
                             f"the {chip.size_bytes:#x}-byte SDRAM")
        first, end = addr // nb, -(-(addr + len(data)) // nb)
        # the end words keep the bytes the segment does not cover
        buf = bytearray((end - first) * nb)
        for w in {first, end - 1}:
            i = (w - first) * nb
            buf[i:i + nb] = model.word(sdram_location(w * nb, chip)[:3]).to_bytes(nb, "little")
        off = addr - first * nb
        buf[off:off + len(data)] = data
        words = np.frombuffer(bytes(buf), np.dtype(f"u{nb}").newbyteorder("<")).tolist()
        bank, row, col, _ = sdram_location(np.arange(first, end, dtype=np.int64) * nb, chip)
        for loc, value in zip(zip(bank.tolist(), row.tolist(), col.tolist()), words):
            model.poke(loc, value)


async def preload_onchip(dut, segments, *, word_bytes=8) -> None:
    """Put ``segments`` into the on-chip RAM's array (64-bit words, byte
    ``b`` of word ``b >> 3`` in bits ``8 * (b & 7) ..``, as the link engine
    addresses it), through its handle (:data:`RAM_PATH`)."""
    mem = dut
    for name in RAM_PATH:
        mem = getattr(mem, name)
    for addr, data in segments:
        if not data:
            continue
        first, end = addr // word_bytes, -(-(addr + len(data)) // word_bytes)
        buf = bytearray((end - first) * word_bytes)
        for w in {first, end - 1}:
            i = (w - first) * word_bytes
            buf[i:i + word_bytes] = mem[w].value.to_unsigned().to_bytes(word_bytes, "little")
        off = addr - first * word_bytes
        buf[off:off + len(data)] = data
        for i in range(end - first):
            mem[first + i].value = int.from_bytes(buf[i * word_bytes:(i + 1) * word_bytes],
                                                  "little")


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
    preload = load_preload(os.environ[PRELOAD_ENV]) if os.environ.get(PRELOAD_ENV) else []
    if hasattr(cfg, "sdram"):               # the chip on the pin-level SDRAM model
        from .chip_top import sdram_chip  # noqa: PLC0415
        from .sdram_model import SDRAMModel  # noqa: PLC0415

        # on the controller's clock: the chip's, or its own (sdram_clk)
        model = SDRAMModel(chip=sdram_chip(cfg.sdram), clk_period_ns=cfg.sdram_period)
        preload_sdram(model, preload)
        model.attach(dut, clk=dut.sdram_clk if cfg.sdram_period_ns else clk)
    # each domain's reset, released just after a falling edge of its clock
    split = bool(getattr(cfg, "sdram_period_ns", None))
    dut.rst.value = 1
    if split:
        dut.sdram_rst.value = 1
    for _ in range(4):
        await FallingEdge(clk)
    dut.rst.value = 0
    if split:
        await FallingEdge(dut.sdram_clk)
        dut.sdram_rst.value = 0
    if preload and not hasattr(cfg, "sdram"):
        await preload_onchip(dut, preload)
        await FallingEdge(clk)

    master, slave = pty.openpty()
    tty.setraw(slave)            # no echo, no line discipline before the host opens it
    os.set_blocking(master, False)
    announce = os.environ["SEEDCHIP_PTY_FILE"]
    with open(announce + ".tmp", "w") as f:
        f.write(os.ttyname(slave))
    os.replace(announce + ".tmp", announce)

    # Every look happens just after a falling edge: the bridge's handshakes
    # are sampled on the rising one, so nothing written here races the clock.
    poll = Timer(round(cfg.clk_period_ns * cfg.divisor * 10 * POLL_BYTES, 3), unit="ns")
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
    build_args = []
    if os.environ.get(PRELOAD_ENV) and not hasattr(config, "sdram"):
        # the on-chip RAM's array must be visible: a build of its own, under
        # a name of its own (the runner keeps one build per Verilog, and the
        # two would take turns replacing each other); the file's path is part
        # of the build's cache key, so it stays put
        name += "_preload"
        vlt = runner.build_root() / "onchip_ram_public.vlt"
        vlt.parent.mkdir(parents=True, exist_ok=True)
        if not vlt.exists() or vlt.read_text() != RAM_PUBLIC:
            tmp = vlt.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(RAM_PUBLIC)
            os.replace(tmp, vlt)
        build_args.append(str(vlt))
    result = runner.run_cocotb(bridged(top), name, "seedchip.sim.link_serve", config,
                               tag="serve",
                               # the chip's clocks (two with the SDRAM in its own
                               # domain); other tops have the one
                               free_clock_ns=getattr(config, "clock_periods", None)
                               or config.clk_period_ns,
                               build_args=build_args,
                               extra_env={k: os.environ[k] for k in (
                                   "SEEDCHIP_PTY_FILE", "SEEDCHIP_HOST_PID",
                                   "SEEDCHIP_SIM_CONFIG_CLASS", PRELOAD_ENV)
                                   if k in os.environ})
    sys.exit(0 if result.sim_exit_code == 0 else 1)


if __name__ == "__main__":
    main()
