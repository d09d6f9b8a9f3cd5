"""The chip on an SDR SDRAM: :class:`~seedchip.rtl.chip.Chip`, a
:class:`~seedchip.rtl.memwidth.WidthAdapter` from its 64-bit words to the
SDRAM's, and the :class:`~seedchip.rtl.sdram.SDRAMController`, in one clock
domain. What the board runs (behind the I/O cells of
:class:`~seedchip.boards.sdram_phy.SDRAMPHY`) and what ``open_device("sim-sdram")``
simulates against the pin-level SDRAM model.

One domain: the controller runs at the chip's clock (the ULX3S's parts are
rated for 133 MHz and more at CAS latency 3), so no request crosses clocks.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from .chip import DATA_WIDTH, Chip
from .memwidth import WidthAdapter
from .sdram import SDRAMController
from .sdram_chips import SDRAMChip
from .sdram_common import SDRAMPinSignature

__all__ = ["ChipOnSDRAM"]


class ChipOnSDRAM(wiring.Component):
    """The chip with the whole SDRAM ``sdram`` (an :class:`SDRAMChip`) as its memory.

    Parameters (keyword-only): ``config``, ``clk_freq`` (Hz: the chip's and
    the controller's clock), ``baud``, ``rx_slots``, ``timeout_bytes`` as
    :class:`Chip`; ``cas_latency`` and ``read_delay`` as the controller's.

    Ports: ``rx``/``tx``, ``running``/``done``/``error``/``link_rx``/``link_tx``
    as :class:`Chip`; ``pins`` the SDRAM's (:class:`SDRAMPinSignature`);
    ``init_done`` the controller's.
    """

    def __init__(self, *, config, sdram, clk_freq, baud=3_000_000, cas_latency=None,
                 read_delay=0, rx_slots=4, timeout_bytes=1000):
        check_type("config", config, ChipConfig)
        self.sdram = check_type("sdram", sdram, SDRAMChip)
        self.chip = Chip(config=config, mem_bytes=sdram.size_bytes,
                         clk_freq=clk_freq, baud=baud, rx_slots=rx_slots,
                         timeout_bytes=timeout_bytes)
        self.adapter = WidthAdapter(addr_width=self.chip.addr_width, wide_width=DATA_WIDTH,
                                    narrow_width=sdram.data_width)
        self.controller = SDRAMController(chip=sdram, clk_freq=clk_freq,
                                          cas_latency=cas_latency, read_delay=read_delay,
                                          addr_width=self.adapter.narrow.signature.addr_width)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "running": Out(1), "done": Out(1), "error": Out(1),
            "link_rx": Out(1), "link_tx": Out(1),
            "pins": Out(SDRAMPinSignature(chip=sdram)),
            "init_done": Out(1),
        })

    @property
    def mem_bytes(self) -> int:
        return self.chip.mem_bytes

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = self.chip
        m.submodules.adapter = adapter = self.adapter
        m.submodules.controller = ctrl = self.controller
        wiring.connect(m, chip.mem, adapter.wide)
        wiring.connect(m, adapter.narrow, ctrl.port)
        wiring.connect(m, ctrl.pins, wiring.flipped(self.pins))
        m.d.comb += [chip.rx.eq(self.rx), self.tx.eq(chip.tx), self.init_done.eq(ctrl.init_done)]
        for name in ("running", "done", "error", "link_rx", "link_tx"):
            m.d.comb += getattr(self, name).eq(getattr(chip, name))
        return m
