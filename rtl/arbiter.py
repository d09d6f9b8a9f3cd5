"""Round-robin arbiter: N memory ports in front of one backend.

Clients and backend speak :class:`~seedchip.rtl.memport.MemPortSignature`. The
arbiter grants one request per cycle, records the granted port in an order
FIFO, and uses it to route the backend's in-order responses back to their
ports.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import check_int
from .memport import MemPortSignature, req_layout

__all__ = ["MemOrderFIFO", "MemArbiter"]


class MemOrderFIFO(wiring.Component):
    """A small register FIFO of port ids.

    Parameters (keyword-only)
    -------------------------
    width : int
        Bits per entry.
    depth : int
        Entries (1..64).

    Ports
    -----
    w : In(stream.Signature(width))
        ``ready`` is ``level != depth`` (a full FIFO takes no write, even when
        it is read in the same cycle).
    r : Out(stream.Signature(width))
        The oldest entry, from a register (:attr:`head`; the entry select is
        done a cycle ahead, off the reader's path). Not fall-through: an entry
        is readable the cycle after it is written.
    level : Out(range(depth + 1))
        Entries held.

    The pointers carry one wrap bit over a power-of-two storage; the level is
    their difference, kept in a register of its own (and the oldest entry in
    :attr:`head`) so the reader's ``valid``/``payload`` come from flops;
    :meth:`consistent` states the invariant for k-induction. Registers rather than
    a memory: the entries are a few bits each and the formal harness reads
    them (:meth:`count`).
    """

    def __init__(self, *, width, depth):
        check_int("width", width, 1, 64)
        check_int("depth", depth, 1, 64)
        self.width = width
        self.depth = depth
        self._abits = ceil_log2(depth)
        self._storage = Array(Signal(width, name=f"entry{i}") for i in range(1 << self._abits))
        self._rd = Signal(self._abits + 1)
        self._wr = Signal(self._abits + 1)
        #: the oldest entry, registered (equal to the entry at the read
        #: pointer whenever the FIFO holds one: :meth:`head_consistent`)
        self.head = Signal(width, name="head")
        # the level, registered too (the pointers' difference is a carry chain)
        self._level = Signal(range(depth + 1), name="level_q")
        super().__init__({
            "w": In(stream.Signature(unsigned(width))),
            "r": Out(stream.Signature(unsigned(width))),
            "level": Out(range(depth + 1)),
        })

    def _index(self, ptr):
        return ptr[:self._abits] if self._abits else 0

    def count(self, value):
        """Number of held entries equal to ``value`` (a combinational value).

        For formal harnesses; not meant to be synthesised.
        """
        terms = []
        size = 1 << self._abits
        for j in range(size):
            slot = (self._rd + j)[:self._abits] if self._abits else 0
            terms.append(((j < self.level) & (self._storage[slot] == value)).as_unsigned())
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    def consistent(self):
        """The invariant of the registered :attr:`head` and level (for formal
        harnesses): the level is the pointers' difference, and the head is the
        entry at the read pointer whenever the FIFO holds one."""
        return ((self._level == (self._wr - self._rd)[:len(self._level)])
                & ((self._level == 0) | (self.head == self._storage[self._index(self._rd)])))

    def newest(self):
        """The most recently written entry (valid when ``level != 0``).

        For formal harnesses.
        """
        return self._storage[self._index(self._wr - 1)]

    def elaborate(self, platform):
        m = Module()
        level = self._level
        m.d.comb += [
            self.level.eq(level),
            self.w.ready.eq(level != self.depth),
            self.r.valid.eq(level != 0),
            self.r.payload.eq(self.head),
        ]
        push = self.w.valid & self.w.ready
        pop = self.r.valid & self.r.ready
        # level +1/-1 from the register alone; push (the arbiter's grant, late)
        # only selects, instead of entering an adder.
        with m.If(push & ~pop):
            m.d.sync += level.eq(level + 1)
        with m.Elif(pop & ~push):
            m.d.sync += level.eq(level - 1)
        with m.If(push):
            m.d.sync += [
                self._storage[self._index(self._wr)].eq(self.w.payload),
                self._wr.eq(self._wr + 1),
            ]
        with m.If(pop):
            m.d.sync += self._rd.eq(self._rd + 1)
        # head <= entry at the next read pointer, or the entry written now if
        # that is where it goes (both selects from registers; pop and push
        # only steer the last two muxes).
        rd1 = self._rd + 1
        at_rd = self._storage[self._index(self._rd)]
        at_rd1 = self._storage[self._index(rd1)]
        wr_at_rd = self._index(self._wr) == self._index(self._rd)
        wr_at_rd1 = self._index(self._wr) == self._index(rd1)
        m.d.sync += self.head.eq(
            Mux(push & Mux(pop, wr_at_rd1, wr_at_rd), self.w.payload, Mux(pop, at_rd1, at_rd)))
        return m


class MemArbiter(wiring.Component):
    """Round-robin arbiter sharing one memory backend among ``n_ports`` clients.

    Parameters (keyword-only)
    -------------------------
    n_ports : int
        Client ports, 1..16.
    addr_width, data_width : int
        As :class:`MemPortSignature` (``data_width`` a multiple of 8).
    max_outstanding : int
        1..64. Depth of the order FIFO (requests granted but not yet answered
        by the backend) and of each port's response FIFO.
    sinks : tuple of int
        Ports whose client holds ``resp.ready`` at 1 (it keeps room for every
        response it asked for, as the chip's DMA clients and every arbiter's
        ``mem`` do). Their responses pass through one register instead of a
        FIFO (the same one cycle) and they need no credits. A sink that
        drops ``resp.ready`` while its response is valid loses it.

    Ports
    -----
    ports : In(MemPortSignature(...)).array(n_ports)
        Client-facing ports; ``wiring.connect(m, arb.ports[i], client.port)``.
    mem : Out(MemPortSignature(...))
        Toward the backend, e.g. ``wiring.connect(m, arb.mem, ram.port)``.

    Arbitration
    -----------
    Among ports with a valid request and a free response credit, the first at
    or after the round-robin pointer is granted (``ports[i].req.ready``); the
    pointer then moves past it. A port that keeps requesting with a credit
    available is granted within ``n_ports`` grants. At most one grant per
    cycle, and none while the order FIFO is full.

    Responses and backpressure
    --------------------------
    ``mem.resp.ready`` is always 1: the shared response path never blocks.
    Each port has a response FIFO of ``max_outstanding`` entries and a credit
    counter of the same size (a credit is taken at grant and returned when the
    port accepts its response), so a response from the backend always finds
    room in its port's FIFO. A port that stalls its ``resp`` only runs out of
    its own credits; the other ports go on at full rate. The cost is
    ``n_ports * max_outstanding`` response words of LUT RAM.

    Latency and throughput
    ----------------------
    One request per cycle in total. A granted request is registered and
    reaches ``mem.req`` one cycle after the port's handshake (``mem.req`` is
    driven from registers only). A backend response is on the port's
    ``resp`` one cycle after ``mem.resp``. ``ports[i].req.ready`` depends
    combinationally on the ports' ``req.valid`` and on ``mem.req.ready``.

    Internal state (read by the formal harness, :mod:`seedchip.sim.formal`)
    -----------------------------------------------------------------------
    ``order`` (:class:`MemOrderFIFO`), ``resp_fifos``, ``credits``,
    ``grant``, ``mask`` (round-robin: ports at or after the pointer),
    ``staged_valid``/``staged_port`` (the request on ``mem.req``).
    """

    def __init__(self, *, n_ports, addr_width, data_width, max_outstanding=8, sinks=()):
        check_int("n_ports", n_ports, 1, 16)
        check_int("addr_width", addr_width, 1, 40)
        check_int("data_width", data_width, 8, 256)
        if data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {data_width!r}")
        check_int("max_outstanding", max_outstanding, 1, 64)
        sinks = tuple(sinks)
        for i in sinks:
            check_int("sinks", i, 0, n_ports - 1)
        self.sinks = frozenset(sinks)
        self.n_ports = n_ports
        self.addr_width = addr_width
        self.data_width = data_width
        self.max_outstanding = max_outstanding
        self.id_width = max(1, ceil_log2(n_ports))
        sig = MemPortSignature(addr_width=addr_width, data_width=data_width)
        super().__init__({
            "ports": In(sig).array(n_ports),
            "mem": Out(sig),
        })
        # Internal state, exposed for formal harnesses and debugging.
        self._order = None
        self._resp_fifos = None
        self.credits = [Signal(range(max_outstanding + 1), init=max_outstanding,
                               name=f"credit{i}") for i in range(n_ports)]
        self.grant = Signal(n_ports)        # one-hot: the port handshaking on req
        self.mask = Signal(n_ports, init=(1 << n_ports) - 1)    # ports at/after the pointer
        self.staged_valid = Signal()
        self.staged_port = Signal(self.id_width)

    # The sub-FIFOs are made on first use, so that a harness can reach their
    # state before elaboration and an arbiter that is never elaborated leaves
    # no unused elaboratables behind.
    @property
    def order(self):
        """The :class:`MemOrderFIFO` of granted port ids."""
        if self._order is None:
            self._order = MemOrderFIFO(width=self.id_width, depth=self.max_outstanding)
        return self._order

    @property
    def resp_fifos(self):
        """The per-port response :class:`SyncFIFO` s (``None`` for a sink)."""
        if self._resp_fifos is None:
            self._resp_fifos = [None if i in self.sinks else
                                SyncFIFO(width=self.data_width + 1, depth=self.max_outstanding)
                                for i in range(self.n_ports)]
        return self._resp_fifos

    # _credit_return, _arbitrate and _next_mask are separate methods so that
    # tests/test_formal.py can break each one in a subclass and check that the
    # proofs fail.
    def _credit_return(self, port, fifo):
        """A credit comes back when the port takes its response."""
        return port.resp.valid & port.resp.ready

    @staticmethod
    def _lowest(m, vec, name):
        """One-hot of the lowest set bit of ``vec`` (zero when none)."""
        # A prefix OR, not ``vec & (~vec + 1)``: that one maps to a carry
        # chain on the arbiter's critical path (credits -> grant).
        onehot = Signal(len(vec), name=name)
        below = Const(0, 1)
        bits = []
        for i in range(len(vec)):
            bits.append(vec[i] & ~below)
            below = below | vec[i]
        m.d.comb += onehot.eq(Cat(bits))
        return onehot

    def _arbitrate(self, m, requests):
        """One-hot pick among ``requests``: first at/after the pointer."""
        above = self._lowest(m, requests & self.mask, "pick_above")
        wrap = self._lowest(m, requests, "pick_wrap")
        pick = Signal(self.n_ports)
        m.d.comb += pick.eq(above | ((above == 0).replicate(self.n_ports) & wrap))
        return pick

    def _next_mask(self, grant):
        """Ports strictly after the granted one."""
        bits = [Const(0, 1)]
        for i in range(1, self.n_ports):
            bits.append(bits[-1] | grant[i - 1])
        return Cat(bits)

    def elaborate(self, platform):
        m = Module()
        n = self.n_ports
        mem = self.mem
        m.submodules.order = order = self.order
        for i, f in enumerate(self.resp_fifos):
            if f is not None:
                m.submodules[f"resp_fifo{i}"] = f

        # --- requests -------------------------------------------------------
        requests = Signal(n)
        m.d.comb += requests.eq(Cat(p.req.valid & ((c != 0) if i not in self.sinks else 1)
                                    for i, (p, c) in enumerate(zip(self.ports, self.credits))))
        pick = self._arbitrate(m, requests)

        # The staging register drives mem.req, so its valid never waits on
        # ready and its payload holds while stalled; it reloads in the cycle
        # it drains, for one request per cycle.
        staged = Signal(req_layout(self.addr_width, self.data_width))
        can_load = Signal()
        m.d.comb += [
            can_load.eq(~self.staged_valid | mem.req.ready),
            self.grant.eq(pick & (can_load & order.w.ready).replicate(n)),
            mem.req.valid.eq(self.staged_valid),
            mem.req.payload.eq(staged),
        ]
        for i, p in enumerate(self.ports):
            m.d.comb += p.req.ready.eq(self.grant[i])

        accept = self.grant.any()
        # One-hot AND-OR muxes (shallower than a binary-indexed mux), selected
        # by the pick: when a request is accepted the grant is the pick, and
        # when none is, the staging register loads don't-care data under
        # staged_valid = 0. So the register's enable is can_load (flops and
        # the backend's ready), not the grant: the grant reached every bit of
        # the staged request both as its enable and through the mux, and that
        # was the chip's critical path (the GEMM arbiter's mask -> grant ->
        # staged, 17.8 ns routed).
        width = len(staged.as_value())
        payload = 0
        port_id = 0
        for i, p in enumerate(self.ports):
            payload = payload | (p.req.payload.as_value() & pick[i].replicate(width))
            if i:
                port_id = port_id | (pick[i].replicate(self.id_width) & i)
        m.d.comb += [
            order.w.valid.eq(accept),
            order.w.payload.eq(port_id),
        ]
        with m.If(can_load):
            m.d.sync += [
                self.staged_valid.eq(accept),
                staged.eq(payload),
                self.staged_port.eq(port_id),
            ]
        with m.If(accept):
            m.d.sync += self.mask.eq(self._next_mask(self.grant))

        # --- responses ------------------------------------------------------
        dest = order.r.payload
        m.d.comb += [
            mem.resp.ready.eq(1),
            order.r.ready.eq(mem.resp.valid),
        ]
        for i, (p, f, credit) in enumerate(zip(self.ports, self.resp_fifos, self.credits)):
            # order.r.valid only guards against a backend that answers more
            # than it was asked.
            w_en = mem.resp.valid & order.r.valid & (dest == i)
            if f is None:
                # a sink: one register, the FIFO's one cycle
                r_valid = Signal(name=f"resp{i}_valid")
                r_data = Signal.like(p.resp.payload.as_value(), name=f"resp{i}_data")
                m.d.sync += r_valid.eq(w_en)
                with m.If(w_en):
                    m.d.sync += r_data.eq(mem.resp.payload)
                m.d.comb += [p.resp.valid.eq(r_valid), p.resp.payload.eq(r_data)]
                continue
            m.d.comb += [
                f.w_en.eq(w_en),
                f.w_data.eq(mem.resp.payload),
                p.resp.valid.eq(f.r_rdy),
                p.resp.payload.eq(f.r_data),
                f.r_en.eq(p.resp.ready),
            ]
            # +1/-1 from the register alone, selected by the (late) grant
            taken, back = self.grant[i], self._credit_return(p, f)
            with m.If(taken & ~back):
                m.d.sync += credit.eq(credit - 1)
            with m.Elif(back & ~taken):
                m.d.sync += credit.eq(credit + 1)
        return m
