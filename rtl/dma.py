"""Strided row DMA between the chip memory and the engines' streams.

Every operand the engines take and every result they give is a set of rows
in chip memory: row ``r`` of ``rows`` starts at byte ``base + r * stride`` and
holds ``row_bytes`` bytes. :class:`RowReader` turns such a region into a
stream of fixed-width beats (``beat_bytes`` bytes; a row starts on a beat,
its last beat is zero-padded), :class:`RowWriter` writes a stream of beats
back the same way (bytes past a row's end are not written: byte masks).

``base`` and ``stride`` are byte addresses; the low ``log2(data_width // 8)``
bits are ignored (the ISA requires every base and stride to be a multiple
of 8 bytes, which the control unit checks before it starts a DMA).
A command with ``rows`` or ``row_bytes`` 0 moves nothing and gives no beat
(the control unit refuses such shapes before they get here).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..checks import check_int, check_pow2
from .memport import MemPortSignature, resp_layout

__all__ = ["RowCmdLayout", "read_beat_layout", "write_beat_layout", "RowReader", "RowWriter"]

#: One DMA command: a region of ``rows`` rows of ``row_bytes`` bytes.
RowCmdLayout = data.StructLayout({
    "base": unsigned(32),
    "stride": unsigned(32),
    "rows": unsigned(16),
    "row_bytes": unsigned(16),
})


def read_beat_layout(beat_bytes):
    """A beat of :class:`RowReader`: ``beat_bytes`` bytes of one row (byte
    ``i`` in bits ``8i..8i+7``), whether it ends its row / the command, and
    whether one of its words came back with ``err``."""
    return data.StructLayout({"data": unsigned(8 * beat_bytes), "row_last": 1, "last": 1,
                              "err": 1})


def write_beat_layout(beat_bytes):
    """A beat for :class:`RowWriter`: ``beat_bytes`` bytes of one row."""
    return data.StructLayout({"data": unsigned(8 * beat_bytes)})


class _RowDMA(wiring.Component):
    """What both DMA directions share: the checked sizes, a command port and
    a memory port; ``ports`` adds the direction's own."""

    def __init__(self, *, addr_width, data_width, beat_bytes, depth, ports):
        check_int("addr_width", addr_width, 1, 40)
        check_pow2("data_width", data_width, 8, 64)
        check_pow2("beat_bytes", beat_bytes, 1, 64)
        if beat_bytes * 8 < data_width:
            raise ValueError(f"beat_bytes must be at least the memory word's {data_width // 8} "
                             f"bytes, not {beat_bytes!r}")
        check_int("depth", depth, 2, 256)
        self.addr_width = addr_width
        self.data_width = data_width
        self.beat_bytes = beat_bytes
        self.depth = depth
        super().__init__({
            "cmd": In(stream.Signature(RowCmdLayout)),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=data_width)),
            "busy": Out(1),
            **ports,
        })


class _RowWalker:
    """Counters that walk a command's words in order: the word of the row,
    the row, and the word address of the row's start. ``step()`` (under an
    ``m.If``) moves to the next word; ``last_word``/``last_row`` say where it
    is. Built twice in :class:`RowReader` (request side, packer side) so the
    packer needs no per-word FIFO beside the responses."""

    def __init__(self, m, name, *, wbits):
        self.m = m
        self.word = Signal(16, name=f"{name}_word")
        self.row = Signal(16, name=f"{name}_row")
        self.addr = Signal(32, name=f"{name}_addr")
        self.words_m1 = Signal(16, name=f"{name}_words_m1")
        self.rows_m1 = Signal(16, name=f"{name}_rows_m1")
        self.stride = Signal(32, name=f"{name}_stride")
        self.wbits = wbits
        self.last_word = self.word == self.words_m1
        self.last_row = self.row == self.rows_m1

    def load(self, cmd):
        wb = self.wbits
        self.m.d.sync += [
            self.word.eq(0), self.row.eq(0),
            self.addr.eq(cmd.base >> wb),
            self.stride.eq(cmd.stride >> wb),
            self.words_m1.eq(((cmd.row_bytes - 1) >> wb)),
            self.rows_m1.eq(cmd.rows - 1),
        ]

    def step(self):
        with self.m.If(self.last_word):
            self.m.d.sync += [self.word.eq(0), self.row.eq(self.row + 1),
                              self.addr.eq(self.addr + self.stride)]
        with self.m.Else():
            self.m.d.sync += self.word.eq(self.word + 1)


class RowReader(_RowDMA):
    """Reads ``rows`` rows of ``row_bytes`` bytes at ``base + r * stride`` and
    gives them as beats of ``beat_bytes`` bytes, in order.

    Ports
    -----
    cmd : In(stream(RowCmdLayout))
        Taken while idle.
    mem : Out(MemPortSignature(addr_width, data_width))
        Reads only; at most ``depth`` responses outstanding or buffered, so a
        stalled ``beats`` never stalls the memory's response path.
    beats : Out(stream(read_beat_layout(beat_bytes)))
        ``ceil(row_bytes / beat_bytes)`` beats per row; bytes past the row's
        end are 0.
    busy : Out(1)

    Throughput: one memory word per cycle while ``beats`` is ready.
    """

    def __init__(self, *, addr_width, data_width, beat_bytes, depth=8):
        super().__init__(addr_width=addr_width, data_width=data_width, beat_bytes=beat_bytes,
                         depth=depth, ports={
                             "beats": Out(stream.Signature(read_beat_layout(beat_bytes)))})

    def elaborate(self, platform):
        m = Module()
        WB = self.data_width // 8
        wbits = exact_log2(WB)
        R = self.beat_bytes // WB          # words per beat
        D = self.depth
        cmd, req, beats = self.cmd, self.mem.req, self.beats

        m.submodules.resp = respf = SyncFIFOBuffered(width=self.data_width + 1, depth=D)
        resp_r = resp_layout(self.data_width)(respf.r_data)

        issuing = Signal()              # request side still has words to ask for
        packing = Signal()              # packer side still has words to take
        iw = _RowWalker(m, "req", wbits=wbits)
        pw = _RowWalker(m, "pack", wbits=wbits)
        keep = Signal(range(WB + 1))    # bytes of a row's last word that belong to it
        # requests issued whose response has not been popped from the FIFO
        credit = Signal(range(D + 1))
        req_go = Signal()
        pop = Signal()

        m.d.comb += [
            cmd.ready.eq(~issuing & ~packing & ~beats.valid),
            self.busy.eq(issuing | packing | beats.valid),
        ]
        with m.If(cmd.valid & cmd.ready & (cmd.payload.rows != 0) & (cmd.payload.row_bytes != 0)):
            iw.load(cmd.payload)
            pw.load(cmd.payload)
            m.d.sync += [issuing.eq(1), packing.eq(1),
                         keep.eq(((cmd.payload.row_bytes - 1) & (WB - 1)) + 1)]

        # -- requests --------------------------------------------------------------------
        m.d.comb += [
            req.valid.eq(issuing & (credit != D)),
            req.payload.addr.eq(iw.addr + iw.word),
            req.payload.we.eq(0),
            req_go.eq(req.valid & req.ready),
            # credits bound the responses: the FIFO always has room for one
            respf.w_en.eq(self.mem.resp.valid),
            respf.w_data.eq(self.mem.resp.payload),
            self.mem.resp.ready.eq(1),
        ]
        m.d.sync += credit.eq(credit + req_go - pop)
        with m.If(req_go):
            iw.step()
            with m.If(iw.last_word & iw.last_row):
                m.d.sync += issuing.eq(0)

        # -- packer: words -> beats ---------------------------------------------------------
        acc = Signal(8 * self.beat_bytes)
        acc_err = Signal()
        slot = Signal(range(R)) if R > 1 else Const(0, 1)
        ends_beat = Signal()
        word = Signal(self.data_width)
        # bytes of the last word of a row past the row's end read as 0
        byte_ok = Cat((~pw.last_word | (i < keep)) for i in range(WB))
        m.d.comb += [
            word.eq(Cat(Mux(byte_ok[i], resp_r.rdata[8 * i:8 * i + 8], 0) for i in range(WB))),
            ends_beat.eq(pw.last_word | (slot == R - 1)),
            # a word that ends a beat needs the output register free
            pop.eq(packing & respf.r_rdy & (~ends_beat | ~beats.valid | beats.ready)),
            respf.r_en.eq(pop),
        ]
        with m.If(beats.valid & beats.ready):
            m.d.sync += beats.valid.eq(0)
        # the beat as it will be emitted: the words so far, this word in its slot
        # (later slots still 0), since acc is cleared after every beat
        full = Signal(8 * self.beat_bytes)
        m.d.comb += full.eq(acc | (word << (slot * self.data_width)))
        with m.If(pop):
            pw.step()
            with m.If(ends_beat):
                m.d.sync += [
                    beats.valid.eq(1),
                    beats.payload.data.eq(full),
                    beats.payload.row_last.eq(pw.last_word),
                    beats.payload.last.eq(pw.last_word & pw.last_row),
                    beats.payload.err.eq(acc_err | resp_r.err),
                    acc.eq(0), acc_err.eq(0),
                ]
                if R > 1:
                    m.d.sync += slot.eq(0)
                with m.If(pw.last_word & pw.last_row):
                    m.d.sync += packing.eq(0)
            with m.Else():
                m.d.sync += [acc.eq(full), acc_err.eq(acc_err | resp_r.err)]
                if R > 1:
                    m.d.sync += slot.eq(slot + 1)
        return m


class RowWriter(_RowDMA):
    """Writes a stream of beats as ``rows`` rows of ``row_bytes`` bytes at
    ``base + r * stride``: ``ceil(row_bytes / beat_bytes)`` beats per row,
    the bytes of a row's last beat past its end are dropped (byte masks).

    Ports
    -----
    cmd : In(stream(RowCmdLayout))
        Taken while idle.
    beats : In(stream(write_beat_layout(beat_bytes)))
    mem : Out(MemPortSignature(addr_width, data_width))
        Writes only; every write's response is counted, at most ``depth``
        outstanding.
    busy : Out(1)
        Until the last write's response is back (the data is in memory).
    err : Out(1)
        A write of the last command came back with ``err`` (cleared by the
        next command).

    Throughput: one memory word per cycle.
    """

    def __init__(self, *, addr_width, data_width, beat_bytes, depth=8):
        super().__init__(addr_width=addr_width, data_width=data_width, beat_bytes=beat_bytes,
                         depth=depth, ports={
                             "beats": In(stream.Signature(write_beat_layout(beat_bytes))),
                             "err": Out(1)})

    def elaborate(self, platform):
        m = Module()
        WB = self.data_width // 8
        wbits = exact_log2(WB)
        R = self.beat_bytes // WB
        D = self.depth
        cmd, req, resp, beats = self.cmd, self.mem.req, self.mem.resp, self.beats

        active = Signal()               # words of the command still to write
        ww = _RowWalker(m, "wr", wbits=wbits)
        keep = Signal(range(WB + 1))
        outstanding = Signal(range(D + 1))
        have = Signal()                 # a beat is in ``cur``
        cur = Signal(8 * self.beat_bytes)
        slot = Signal(range(R)) if R > 1 else Const(0, 1)
        req_go = Signal()
        resp_go = Signal()

        m.d.comb += [
            cmd.ready.eq(~active & ~have & (outstanding == 0)),
            self.busy.eq(active | have | (outstanding != 0)),
        ]
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += self.err.eq(0)
            with m.If((cmd.payload.rows != 0) & (cmd.payload.row_bytes != 0)):
                ww.load(cmd.payload)
                m.d.sync += [active.eq(1),
                             keep.eq(((cmd.payload.row_bytes - 1) & (WB - 1)) + 1)]

        # a beat's last word: its last slot, or the last word of the row
        beat_done = ww.last_word | (slot == R - 1)
        m.d.comb += [
            # (not in the cycle that writes the command's last word: the next
            # beat belongs to the next command)
            beats.ready.eq(active & (~have | (req_go & beat_done & ~(ww.last_word & ww.last_row)))),
            req.valid.eq(have & (outstanding != D)),
            req.payload.addr.eq(ww.addr + ww.word),
            req.payload.we.eq(1),
            req.payload.wdata.eq(cur.word_select(slot, self.data_width)
                                 if R > 1 else cur[:self.data_width]),
            req.payload.mask.eq(Mux(ww.last_word,
                                    Cat((i < keep) for i in range(WB)),
                                    (1 << WB) - 1)),
            req_go.eq(req.valid & req.ready),
            resp.ready.eq(1),
            resp_go.eq(resp.valid),
        ]
        m.d.sync += outstanding.eq(outstanding + req_go - resp_go)
        with m.If(resp_go & resp.payload.err):
            m.d.sync += self.err.eq(1)
        with m.If(req_go):
            ww.step()
            with m.If(beat_done):
                m.d.sync += have.eq(0)
            if R > 1:
                m.d.sync += slot.eq(Mux(beat_done, 0, slot + 1))
            with m.If(ww.last_word & ww.last_row):
                m.d.sync += active.eq(0)
        with m.If(beats.valid & beats.ready):
            m.d.sync += [have.eq(1), cur.eq(beats.payload.data)]
        return m
