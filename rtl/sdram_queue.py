"""The SDRAM controller's request queue and open-row state."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Const, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..checks import check_int
from .memport import req_layout
from .sdram_chips import SDRAMChip
from .sdram_common import or_all

__all__ = ["entry_layout", "side_layout", "SDRAMQueue"]


def entry_layout(chip):
    """What the scheduler looks at of a queued request."""
    return data.StructLayout({
        "valid": 1,
        "err": 1,
        "we": 1,
        "hit": 1,       # its row is open in its bank (follows ACT/PRE a cycle late)
        "first": 1,     # no older queued request to the same bank
        "opened": 1,    # an ACTIVATE was issued for this request
        "bank_oh": chip.banks,  # one-hot bank; 0 for err requests
        "row": chip.row_bits,
    })


def side_layout(chip):
    """What only the column command needs of a queued request."""
    return data.StructLayout({"col": chip.col_bits, "wdata": chip.data_width,
                              "mask": chip.data_width // 8})


def _needs(e):
    """The entry wants a PRE or ACT: valid, not err, first of its bank, row not
    open. A function of the stored flags rather than a flag of its own: storing
    it put the row compare and the bank order in series in front of every
    queue register (a 100 MHz critical path)."""
    return e.valid & e.bank_oh.any() & e.first & ~e.hit


class SDRAMQueue(wiring.Component):
    """Request queue of the SDRAM controller (a shift register, entry 0 =
    oldest) with the banks' open-row state.

    An input register decodes the address and takes a request whenever the
    queue is not full (ignoring this cycle's pop keeps ``req.ready`` off the
    scheduler; one bubble when the queue runs full). Only what the scheduler
    looks at shifts; column, write data and mask wait in a LUT-RAM FIFO in the
    same order.

    Parameters (keyword-only): ``chip`` (:class:`SDRAMChip`), ``depth``
    (entries, 2..8), ``addr_width`` (of ``req``; addresses beyond the chip get
    ``err``).

    Ports
    -----
    req : In(stream.Signature(req_layout(addr_width, chip.data_width)))
        Requests, latency 2 to the head when the queue is empty.
    pop : In(1)
        The head takes its column slot (READ, WRITE or err) now.
    act, pre : In(chip.banks)
        ACTIVATE / PRECHARGE to bank b now; ``row``: the row of the ACTIVATE.
    col_soon : In(chip.banks), rdwr_soon : In(1)
        From :class:`SDRAMBankTimers`, for ``head_ready``.
    credit_pop, credit_nopop : In(1)
        Response space next cycle with / without a pop now.
    head : Out(entry_layout(chip)), head_side : Out(side_layout(chip))
        The oldest request.
    head_ready : Out(1)
        Registered: the head may take its column slot now.
    need : Out(chip.banks)
        The oldest request of bank b wants a PRECHARGE or ACTIVATE.
    need_row : Out(ArrayLayout(row_bits, banks))
        Registered: the row that request wants (0 when none).
    bank_open : Out(chip.banks)
        Bank b has a row open (from the edge after its ACTIVATE).
    idle : Out(1)
        Neither the queue nor the input register holds a request.
    """

    def __init__(self, *, chip, depth, addr_width):
        if not isinstance(chip, SDRAMChip):
            raise TypeError(f"chip must be an SDRAMChip, not {chip!r}")
        check_int("depth", depth, 2, 8)
        check_int("addr_width", addr_width, chip.addr_width, 40)
        self.chip = chip
        self.depth = depth
        self.addr_width = addr_width
        nb, rb = chip.banks, chip.row_bits
        super().__init__({
            "req": In(stream.Signature(req_layout(addr_width, chip.data_width))),
            "pop": In(1),
            "act": In(nb),
            "pre": In(nb),
            "row": In(rb),
            "col_soon": In(nb),
            "rdwr_soon": In(1),
            "credit_pop": In(1),
            "credit_nopop": In(1),
            "head": Out(entry_layout(chip)),
            "head_side": Out(side_layout(chip)),
            "head_ready": Out(1),
            "need": Out(nb),
            "need_row": Out(data.ArrayLayout(rb, nb)),
            "bank_open": Out(nb),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        chip, N = self.chip, self.depth
        nb, bb, rb, cb = chip.banks, chip.bank_bits, chip.row_bits, chip.col_bits
        el, sl = entry_layout(chip), side_layout(chip)
        pop, req = self.pop, self.req
        bank_open = Signal(nb)
        open_row = [Signal(rb, name=f"open_row{b}") for b in range(nb)]
        need_row = self.need_row

        q = [Signal(el, name=f"q{i}") for i in range(N)]
        head = q[0]
        full = q[N - 1].valid
        side = m.submodules.side = SyncFIFO(width=sl.size, depth=N + 1)
        inp = Signal(el)
        ins = Signal()
        accept = Signal()
        m.d.comb += [
            self.head.eq(head),
            self.head_side.eq(side.r_data),
            self.bank_open.eq(bank_open),
            self.idle.eq(~head.valid & ~inp.valid),
            ins.eq(inp.valid & ~full),
            req.ready.eq(~inp.valid | ~full),
            accept.eq(req.valid & req.ready),
            side.w_en.eq(accept),
            side.w_data.eq(Cat(req.payload.addr[:cb], req.payload.wdata, req.payload.mask)),
            side.r_en.eq(pop),
        ]
        with m.If(ins):
            m.d.sync += inp.valid.eq(0)
        # The input register's row-hit flag is compared on the way in and then
        # kept current like a queue entry's (the last row command applied):
        # comparing at insertion put a 13-bit compare in front of the queue
        # update and cost a 100 MHz clock.
        inp_hit = Signal()              # inp.hit, the last cycle's row command applied
        m.d.sync += inp.hit.eq(inp_hit)
        with m.If(accept):
            addr = req.payload.addr
            err = Signal()
            if self.addr_width > chip.addr_width:
                m.d.comb += err.eq(addr[chip.addr_width:].any())
            bank_oh = Signal(nb)
            row = addr[cb + bb:cb + bb + rb]
            m.d.comb += bank_oh.eq(Mux(err, 0, Const(1, nb) << addr[cb:cb + bb]))
            m.d.sync += [
                inp.valid.eq(1),
                inp.err.eq(err),
                inp.we.eq(req.payload.we),
                inp.bank_oh.eq(bank_oh),
                inp.row.eq(row),
                inp.hit.eq(or_all(bank_oh[b] & bank_open[b] & (open_row[b] == row)
                                  for b in range(nb))),
            ]

        # The row command on the pins now, applied to the hit flags next edge.
        upd_act = Signal(nb)
        upd_pre = Signal(nb)
        upd_row = Signal(rb)

        def hit_of(e, name):
            hit = Signal(name=name)
            with m.If((e.bank_oh & upd_act).any()):
                m.d.comb += hit.eq(e.row == upd_row)
            with m.Elif((e.bank_oh & upd_pre).any()):
                m.d.comb += hit.eq(0)
            with m.Else():
                m.d.comb += hit.eq(e.hit)
            return hit

        # Requests that stay in the queue after this cycle, per position.
        # Every entry is worked out twice, for "no pop" (nothing leaves) and
        # for "pop" (the head leaves, so it no longer counts as an older
        # request of its bank): ``pop`` then only picks one at the end. It is
        # the latest signal of the cycle (it follows the scheduler), and
        # letting it into the bank-order logic cost a 100 MHz clock.
        hits = [hit_of(q[j], f"hit_upd{j}") for j in range(N)]

        def updated(j, head_stays, name):
            """Entry ``j`` as it stays in the queue: the row command of the
            last cycle applied, bank order recomputed."""
            e, hit = q[j], hits[j]
            older = or_all(Mux(q[k].valid, q[k].bank_oh, 0) for k in range(j)
                           if k > 0 or head_stays)
            u = Signal(el, name=name)
            m.d.comb += [
                u.eq(e),
                u.hit.eq(hit),
                u.first.eq(~(older & e.bank_oh).any()),
                u.opened.eq(e.opened | (_needs(e) & (e.bank_oh & upd_act).any())),
            ]
            return u

        upd_nopop = [updated(j, True, f"upd{j}") for j in range(N)]
        upd_pop = [None] + [updated(j, False, f"upd{j}_pop") for j in range(1, N)]

        new_hit = hit_of(inp, "inp_hit_upd")
        m.d.comb += inp_hit.eq(new_hit)

        def inserted(head_stays, name):
            older = or_all(Mux(q[k].valid, q[k].bank_oh, 0) for k in range(N)
                           if k > 0 or head_stays)
            u = Signal(el, name=name)
            m.d.comb += [
                u.eq(inp),
                u.hit.eq(new_hit),
                u.first.eq(~(older & inp.bank_oh).any()),
                u.opened.eq(0),
            ]
            return u

        new_nopop = inserted(True, "new")
        new_pop = inserted(False, "new_pop")

        # Shift on pop, insert behind the last request that stays.
        empty = Const.cast(el.const({}))
        for i in range(N):
            n_nopop = Signal(el, name=f"next{i}")
            n_pop = Signal(el, name=f"next{i}_pop")
            land_nopop = ~q[i].valid & (q[i - 1].valid if i else 1)
            land_pop = q[i].valid & (~q[i + 1].valid if i + 1 < N else 1)
            m.d.comb += [
                n_nopop.eq(Mux(ins & land_nopop, new_nopop, upd_nopop[i])),
                n_pop.eq(Mux(ins & land_pop, new_pop, upd_pop[i + 1] if i + 1 < N else empty)),
            ]
            m.d.sync += q[i].eq(Mux(pop, n_pop, n_nopop))

        # Bank state follows the row command at once. A closed bank's open_row
        # tracks need_row (the row an ACTIVATE would open, a register) and
        # freezes when the bank opens: the same value as loading it on the
        # ACTIVATE, without the scheduler's decision on the enable of 13 flops
        # per bank (that path cost a 100 MHz clock). open_row is only looked at
        # while its bank is open.
        for b in range(nb):
            with m.If(~bank_open[b]):
                m.d.sync += open_row[b].eq(need_row[b])
            with m.If(self.act[b]):
                m.d.sync += bank_open[b].eq(1)
            with m.If(self.pre[b]):
                m.d.sync += bank_open[b].eq(0)
        m.d.sync += [
            upd_act.eq(self.act),
            upd_pre.eq(self.pre),
            upd_row.eq(self.row),
        ]

        # Only the oldest request of a bank can have ``need`` set, so ORs find
        # it; need_row registers the same queue state as the scheduler's go,
        # so go and the row it opens always agree.
        for b in range(nb):
            m.d.comb += self.need[b].eq(or_all(_needs(q[i]) & q[i].bank_oh[b]
                                               for i in range(N)))
            m.d.sync += need_row[b].eq(or_all(Mux(_needs(q[i]) & q[i].bank_oh[b], q[i].row, 0)
                                              for i in range(N)))

        # head_ready, next cycle, for whichever request will be the head: its
        # bank's tRCD timer needs no "ACT now" term, because a bank being
        # activated now was closed, so no request of it has ``hit`` set yet.
        def ready_of(e, hit, rd_now, credit_next):
            bank_soon = (e.bank_oh & self.col_soon).any()
            return e.valid & credit_next & (
                e.err | (hit & bank_soon & (~e.we | (~rd_now & self.rdwr_soon))))

        head_rd = ~head.err & ~head.we
        rdy_nopop = Signal()
        rdy_pop = Signal()
        m.d.comb += [
            rdy_nopop.eq(Mux(q[0].valid, ready_of(q[0], hits[0], 0, self.credit_nopop),
                             ins & ready_of(inp, new_hit, 0, self.credit_nopop))),
            rdy_pop.eq(Mux(q[1].valid, ready_of(q[1], hits[1], head_rd, self.credit_pop),
                           ins & ready_of(inp, new_hit, head_rd, self.credit_pop))),
        ]
        m.d.sync += self.head_ready.eq(Mux(pop, rdy_pop, rdy_nopop))
        return m
