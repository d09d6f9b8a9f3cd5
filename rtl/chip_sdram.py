"""The chip on an SDR SDRAM: :class:`~seedchip.rtl.chip.Chip`, a
:class:`~seedchip.rtl.memwidth.WidthAdapter` from its 64-bit words to the
SDRAM's, and the :class:`~seedchip.rtl.sdram.SDRAMController`, in one clock
domain. What the board runs (behind the I/O cells of
:class:`~seedchip.boards.sdram_phy.SDRAMPHY`) and what ``open_device("sim-sdram")``
simulates against the pin-level SDRAM model.

By default one domain: the controller runs at the chip's clock. With
``sdram_clk_freq`` it runs in a domain of its own, ``sdram``, at that clock
(the ULX3S's parts are rated for 133 MHz and more at CAS latency 3, and the
controller alone closes timing far above the whole chip), and the chip's
memory port reaches the width adapter through a :class:`~seedchip.rtl.memcdc.MemPortCDC`.
The chip's GATHER unit then runs in that domain as well (:class:`~seedchip.rtl.chip.Chip`'s
``gather_domain``: the engine's pace is the SDRAM's), and an arbiter there
merges its port with the crossing's in front of the width adapter.
"""

from amaranth.hdl import DomainRenamer, Module
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..checks import check_type
from ..config import ChipConfig
from .chip import DATA_WIDTH, Chip, merge_ports
from .memcdc import MemPortCDC
from .memwidth import WidthAdapter
from .sdram import SDRAMController
from .sdram_chips import SDRAMChip
from .sdram_common import SDRAMPinSignature

__all__ = ["ChipOnSDRAM"]


class ChipOnSDRAM(wiring.Component):
    """The chip with the whole SDRAM ``sdram`` (an :class:`SDRAMChip`) as its memory.

    Parameters (keyword-only): ``config``, ``clk_freq`` (Hz: the chip's
    clock, ``sync``), ``baud``, ``rx_slots``, ``timeout_bytes`` as
    :class:`Chip`; ``sdram_clk_freq`` (Hz) the controller's clock in its own
    domain ``sdram`` (``None``: the controller in ``sync`` at ``clk_freq``);
    ``cas_latency`` and ``read_delay`` as the controller's.

    Ports: ``rx``/``tx``, ``running``/``done``/``error``/``link_rx``/``link_tx``
    as :class:`Chip`; ``pins`` the SDRAM's (:class:`SDRAMPinSignature`, in
    the controller's domain); ``init_done`` the controller's (in ``sync``).
    """

    #: the controller's clock domain when it has its own
    SDRAM_DOMAIN = "sdram"

    def __init__(self, *, config, sdram, clk_freq, baud=3_000_000, cas_latency=None,
                 read_delay=0, rx_slots=4, timeout_bytes=1000, sdram_clk_freq=None):
        check_type("config", config, ChipConfig)
        self.sdram = check_type("sdram", sdram, SDRAMChip)
        if sdram_clk_freq is not None and (
                not isinstance(sdram_clk_freq, (int, float)) or isinstance(sdram_clk_freq, bool)
                or sdram_clk_freq <= 0):
            raise ValueError(f"sdram_clk_freq must be a positive frequency in Hz or None, "
                             f"not {sdram_clk_freq!r}")
        self.sdram_clk_freq = sdram_clk_freq
        #: the controller's domain: ``sync``, or ``sdram`` with a clock of its
        #: own (and then the GATHER unit's too)
        self.controller_domain = "sync" if sdram_clk_freq is None else self.SDRAM_DOMAIN
        self.chip = Chip(config=config, mem_bytes=sdram.size_bytes,
                         clk_freq=clk_freq, baud=baud, rx_slots=rx_slots,
                         timeout_bytes=timeout_bytes,
                         gather_domain=None if self.controller_domain == "sync"
                         else self.controller_domain)
        self.adapter = WidthAdapter(addr_width=self.chip.addr_width, wide_width=DATA_WIDTH,
                                    narrow_width=sdram.data_width)
        self.controller = SDRAMController(chip=sdram, clk_freq=sdram_clk_freq or clk_freq,
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
        adapter, ctrl = self.adapter, self.controller
        if self.controller_domain == "sync":
            m.submodules.adapter = adapter
            m.submodules.controller = ctrl
            wiring.connect(m, chip.mem, adapter.wide)
            m.d.comb += self.init_done.eq(ctrl.init_done)
        else:
            dom = self.controller_domain
            m.submodules.adapter = DomainRenamer(dom)(adapter)
            m.submodules.controller = DomainRenamer(dom)(ctrl)
            m.submodules.mem_cdc = cdc = MemPortCDC(
                addr_width=self.chip.addr_width, data_width=DATA_WIDTH, up_domain="sync",
                down_domain=dom)
            wiring.connect(m, chip.mem, cdc.up)
            # the crossing's requests and the GATHER unit's (both leave
            # registers: skid buffers cut their ready alone); the unit's
            # port, an arbiter's, holds resp.ready at 1
            front = Module()
            port = merge_ports(front, "arbiter", [cdc.down, chip.gather_mem],
                               addr_width=self.chip.addr_width, sliced=True, sinks=[1],
                               registered=[0, 1])
            m.submodules.mem_front = DomainRenamer(dom)(front)
            wiring.connect(m, port, adapter.wide)
            m.submodules.init_sync = FFSynchronizer(ctrl.init_done, self.init_done)
        wiring.connect(m, adapter.narrow, ctrl.port)
        wiring.connect(m, ctrl.pins, wiring.flipped(self.pins))
        m.d.comb += [chip.rx.eq(self.rx), self.tx.eq(chip.tx)]
        for name in ("running", "done", "error", "link_rx", "link_tx"):
            m.d.comb += getattr(self, name).eq(getattr(chip, name))
        return m
