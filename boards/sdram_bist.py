"""Memory built-in self test: an LFSR pattern written over a whole memory and
read back, pass after pass, with a new pattern every pass.

:class:`SDRAMBist` is a client of :class:`~seedchip.rtl.memport.MemPortSignature`,
so it tests any backend (the SDR SDRAM controller, on-chip RAM, an arbiter
port). :class:`SDRAMSelfTest` is what the board runs: the SDRAM controller
with the BIST on its port, pins out. :func:`bist_words` is the reference model
of the pattern.

The pattern
-----------
One bit sequence ``b[n] = b[n-28] ^ b[n-31]`` (x^31 + x^3 + 1, period
2^31 - 1), cut into ``data_width``-bit words: word ``k`` is
``b[k*w : (k+1)*w]``, least significant bit first. Pass ``p`` writes words
``p*N .. p*N + N-1`` to addresses ``0 .. N-1`` (``N = words``), so every pass
writes new data everywhere, and any two addresses of a pass hold independent
words: a stuck data bit, a bit that does not hold, or two addresses aliased
onto one cell (a stuck or shorted address line) all show as read errors.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from ..gather_params import GatherParams
from ..rtl.lfsr import TAPS, lfsr_init, lfsr_state_size, lfsr_words
from ..rtl.memport import MemPortSignature
from ..rtl.sdram import SDRAMChip, SDRAMController, SDRAMPinSignature

__all__ = ["bist_words", "SDRAMBist", "SDRAMSelfTest", "gather_on_sdram"]

#: The reference model of the pattern: words of the LFSR sequence.
bist_words = lfsr_words

def _advance(state, size, step):
    """``state`` advanced ``step`` bits along the sequence: each new bit as an
    XOR of current bits, worked out symbolically (any step, any size)."""
    seq = [1 << i for i in range(size)]       # bit masks over the current state
    for _ in range(step):
        seq.append(seq[-TAPS[0]] ^ seq[-TAPS[1]])
    out = []
    for mask in seq[step:step + size]:
        terms = [state[i] for i in range(size) if (mask >> i) & 1]
        value = terms[0]
        for t in terms[1:]:
            value = value ^ t
        out.append(value)
    return Cat(*out)


class SDRAMBist(wiring.Component):
    """Built-in self test over ``words`` words of a memory, from address 0.

    Parameters (keyword-only)
    -------------------------
    addr_width, data_width : int
        Of the memory port.
    words : int or None
        Words tested (addresses ``0 .. words-1``); None: ``2**addr_width``.
    seed : int
        Selects the pattern (see :func:`bist_words`).

    Ports
    -----
    port : Out(MemPortSignature(addr_width=addr_width, data_width=data_width))
        A write pass (full byte mask) then a read-and-check pass, repeated.
        Requests are sequential, one per cycle while ``req.ready``; ``resp``
        is always ready. The read pass starts right behind the write pass and
        the next write pass right behind the reads: responses come in request
        order, so each read sees the write of its own pass.
    en : In(1, init=1)
        Low: no new requests (the one offered stays until taken).
    phase : Out(1)
        0 while write requests are issued, 1 while read requests are.
    addr : Out(range(words))
        Next address requested (progress within the pass).
    passes : Out(32)
        Passes (writes and checked reads) completed. Counted two cycles after
        the last read response, when ``errors`` includes the whole pass.
    errors : Out(32)
        Words read back wrong plus responses with ``err``; saturates.
    error : Out(1)
        Sticky: ``errors != 0``.
    error_addr : Out(addr_width), error_xor : Out(data_width)
        The address of the first error and the bits that differed (0 for an
        ``err`` response).
    pass_cycles : Out(32)
        Cycles the last pass took, from the end of the pass before (the first
        pass counts from reset). ``2 * words / pass_cycles`` is the fraction
        of one word per cycle the memory sustained.

    Timing: every decision is a register or one small comparison; the read
    data is registered before the compare and the compare before the counters.
    """

    def __init__(self, *, addr_width, data_width, words=None, seed=1):
        check_int("addr_width", addr_width, 1, 40)
        check_int("data_width", data_width, 8, 256)
        if data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {data_width!r}")
        if words is None:
            words = 1 << addr_width
        check_int("words", words, 2, 1 << addr_width)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, not {seed!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        self.words = words
        self.seed = seed
        super().__init__({
            "port": Out(MemPortSignature(addr_width=addr_width, data_width=data_width)),
            "en": In(1, init=1),
            "phase": Out(1),
            "addr": Out(range(words)),
            "passes": Out(32),
            "errors": Out(32),
            "error": Out(1),
            "error_addr": Out(addr_width),
            "error_xor": Out(data_width),
            "pass_cycles": Out(32),
        })

    def words_of_pass(self, index) -> list[int]:
        """The words pass ``index`` (0 = first) writes to addresses 0, 1, ..."""
        return bist_words(data_width=self.data_width, seed=self.seed, count=self.words,
                          start=index * self.words)

    def elaborate(self, platform):
        m = Module()
        dw, n = self.data_width, self.words
        size = lfsr_state_size(dw)
        init = lfsr_init(data_width=dw, seed=self.seed)
        req, resp = self.port.req, self.port.resp

        # -- requests ------------------------------------------------------------
        wstate = Signal(size, init=init)
        valid = Signal()
        last = Signal(init=n == 1)
        take = req.valid & req.ready
        m.d.comb += [
            req.valid.eq(valid),
            req.payload.addr.eq(self.addr),
            req.payload.we.eq(~self.phase),
            req.payload.wdata.eq(wstate[:dw]),
            req.payload.mask.eq((1 << (dw // 8)) - 1),
        ]
        with m.If(~valid | take):
            m.d.sync += valid.eq(self.en)
        with m.If(take):
            with m.If(last):
                m.d.sync += [self.addr.eq(0), last.eq(0), self.phase.eq(~self.phase)]
            with m.Else():
                # Registered end-of-pass flag: the wide compare is off the
                # address counter's carry chain.
                m.d.sync += [self.addr.eq(self.addr + 1), last.eq(self.addr == n - 2)]
            with m.If(~self.phase):
                m.d.sync += wstate.eq(_advance(wstate, size, dw))

        # -- responses -------------------------------------------------------------
        m.d.comb += resp.ready.eq(1)
        rstate = Signal(size, init=init)
        rcount = Signal(range(n))
        rlast = Signal(init=n == 1)
        rphase = Signal()
        with m.If(resp.valid):
            with m.If(rlast):
                m.d.sync += [rcount.eq(0), rlast.eq(0), rphase.eq(~rphase)]
            with m.Else():
                m.d.sync += [rcount.eq(rcount + 1), rlast.eq(rcount == n - 2)]
            with m.If(rphase):
                m.d.sync += rstate.eq(_advance(rstate, size, dw))

        # Stage 1: the response, registered with what it should be.
        s1_valid = Signal()
        s1_read = Signal()
        s1_err = Signal()
        s1_end = Signal()
        s1_data = Signal(dw)
        s1_expect = Signal(dw)
        s1_addr = Signal(range(n))
        m.d.sync += [
            s1_valid.eq(resp.valid),
            s1_read.eq(rphase),
            s1_err.eq(resp.payload.err),
            s1_end.eq(resp.valid & rphase & rlast),
            s1_data.eq(resp.payload.rdata),
            s1_expect.eq(rstate[:dw]),
            s1_addr.eq(rcount),
        ]
        # Stage 2: the comparison, registered.
        s2_bad = Signal()
        s2_end = Signal()
        s2_xor = Signal(dw)
        s2_addr = Signal(range(n))
        diff = Signal(dw)
        m.d.comb += diff.eq(s1_data ^ s1_expect)
        m.d.sync += [
            s2_bad.eq(s1_valid & (s1_err | (s1_read & diff.any()))),
            s2_end.eq(s1_end),
            s2_xor.eq(Mux(s1_err, 0, diff)),
            s2_addr.eq(s1_addr),
        ]
        # Stage 3: counters.
        with m.If(s2_bad):
            with m.If(~self.errors.all()):
                m.d.sync += self.errors.eq(self.errors + 1)
            with m.If(~self.error):
                m.d.sync += [
                    self.error.eq(1),
                    self.error_addr.eq(s2_addr),
                    self.error_xor.eq(s2_xor),
                ]
        cycles = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(s2_end):
            m.d.sync += [
                self.passes.eq(self.passes + 1),
                self.pass_cycles.eq(cycles + 1),
                cycles.eq(0),
            ]
        return m


def gather_on_sdram(params: GatherParams, chip: SDRAMChip) -> GatherParams:
    """``params`` bound to the port of an :class:`~seedchip.rtl.sdram.SDRAMController`
    on ``chip`` (the port :class:`SDRAMSelfTest` gives the gather engine): the
    chip's word width, and the controller's default address width, one bit
    more than the chip's."""
    return params.with_memory(data_width=chip.data_width, addr_width=chip.addr_width + 1)


class SDRAMSelfTest(wiring.Component):
    """The SDRAM controller with an :class:`SDRAMBist` over the whole chip.

    What the board runs in its SDRAM clock domain, and what
    ``tests/test_sdram_bist.py`` simulates against the pin-level SDRAM model.

    Parameters (keyword-only)
    -------------------------
    chip, clk_freq, cas_latency, read_delay
        As :class:`~seedchip.rtl.sdram.SDRAMController`.
    words : int or None
        Words tested; None: the whole chip (``chip.words``).
    seed : int
        The BIST's pattern seed.
    gather : GatherParams or None
        Also run a :class:`~seedchip.boards.gather_exerciser.GatherExerciser`
        on a gather engine of these parameters, bound to the controller's
        port (:func:`gather_on_sdram`; ``ValueError`` if they are bound to
        another memory), on the same controller: a
        :class:`~seedchip.rtl.arbiter.MemArbiter` serves the BIST (port 0)
        and the gather engine (port 1) round robin.

    Ports
    -----
    pins : Out(SDRAMPinSignature(chip=chip))
        The controller's pins.
    init_done : Out(1)
        The controller's init sequence is over.
    phase, addr, passes, errors, error, error_addr, error_xor, pass_cycles
        The BIST's (see :class:`SDRAMBist`).
    refreshes : Out(32)
        AUTO REFRESH commands issued since init.
    gather_checksum, gather_bags : Out(32)
        With ``gather``: the exerciser's checksum and bag count.
    """

    def __init__(self, *, chip, clk_freq, cas_latency=None, read_delay=0, words=None, seed=1,
                 gather=None):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        if words is None:
            words = chip.words
        check_int("words", words, 2, chip.words)
        if gather is not None:
            # checked before any block is built (an unused one would warn)
            if not isinstance(gather, GatherParams):
                raise TypeError(f"gather must be a GatherParams or None, not {gather!r}")
            port = gather_on_sdram(gather, chip)
            for name in ("data_width", "addr_width"):
                if getattr(gather, name) != getattr(port, name):
                    raise ValueError(f"gather.{name} must be the SDRAM controller's "
                                     f"{getattr(port, name)}, not {getattr(gather, name)!r} "
                                     f"(bind it with gather_on_sdram)")
        self.controller = SDRAMController(chip=chip, clk_freq=clk_freq, cas_latency=cas_latency,
                                          read_delay=read_delay)
        self.bist = SDRAMBist(addr_width=self.controller.addr_width, data_width=chip.data_width,
                              words=words, seed=seed)
        self.chip = chip
        self.gather = None
        self.arbiter = None
        if gather is not None:
            from ..rtl.arbiter import MemArbiter        # noqa: PLC0415
            from .gather_exerciser import GatherExerciser  # noqa: PLC0415
            self.gather = GatherExerciser(engine=gather)
            # As many requests in flight per port as the engine keeps itself.
            self.arbiter = MemArbiter(n_ports=2, addr_width=self.controller.addr_width,
                                      data_width=chip.data_width, max_outstanding=32)
        super().__init__({
            "pins": Out(SDRAMPinSignature(chip=chip)),
            "init_done": Out(1),
            "phase": Out(1),
            "addr": Out(range(words)),
            "passes": Out(32),
            "errors": Out(32),
            "error": Out(1),
            "error_addr": Out(self.controller.addr_width),
            "error_xor": Out(chip.data_width),
            "pass_cycles": Out(32),
            "refreshes": Out(32),
            "gather_checksum": Out(32),
            "gather_bags": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = ctrl = self.controller
        m.submodules.bist = bist = self.bist
        if self.gather is None:
            wiring.connect(m, bist.port, ctrl.port)
        else:
            m.submodules.gather = gx = self.gather
            m.submodules.arbiter = arb = self.arbiter
            wiring.connect(m, bist.port, arb.ports[0])
            wiring.connect(m, gx.mem, arb.ports[1])
            wiring.connect(m, arb.mem, ctrl.port)
            m.d.comb += [self.gather_checksum.eq(gx.checksum), self.gather_bags.eq(gx.bags)]
        wiring.connect(m, wiring.flipped(self.pins), ctrl.pins)
        m.d.comb += [
            self.init_done.eq(ctrl.init_done),
            self.refreshes.eq(ctrl.refreshes),
        ]
        for name in ("phase", "addr", "passes", "errors", "error", "error_addr", "error_xor",
                     "pass_cycles"):
            m.d.comb += getattr(self, name).eq(getattr(bist, name))
        return m
