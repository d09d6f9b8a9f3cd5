"""Command engine of the host link: one received frame in, one response out."""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..checks import check_int, check_pow2
from ..link_protocol import (CTRL_RESET, CTRL_START, MAX_DATA, MAX_REGS, REG_ADDR_BITS,
                             REG_WIDTH, RESPONSE, AddrArgs, Block, Cmd, InfoLayout,
                             LinkCounter, ReadArgs, Reg, RegReadArgs, RegWriteArgs, Status,
                             VERSION, MAX_PAYLOAD, pack_bytes)
from .link_rx import PAYLOAD_BITS, FrameDescLayout
from .link_tx import RespLayout
from .memport import MemPortSignature

__all__ = ["CommandEngine"]

N_LINK = len(LinkCounter)


class CommandEngine(wiring.Component):
    """Executes the commands of :mod:`seedchip.link_protocol`.

    Ports
    -----
    desc : In(stream.Signature(FrameDescLayout))
        Taken only while the framer is idle (``tx_busy`` low): the response
        buffer is then free to write.
    release : Out(1)
        Pulses when the frame's slot is no longer needed (its response has
        been handed to the framer).
    fb_addr : Out, fb_data : In(8)
        The frame buffer's synchronous read port.
    rb_addr, rb_data, rb_en : Out
        The response buffer's write port; the response payload is written
        there (status byte last, at offset 0) before the framer sends it, so
        the status covers everything the response carries.
    resp : Out(stream.Signature(RespLayout)), tx_busy : In(1)
        The framer.
    mem : Out(MemPortSignature(mem_addr_width, mem_data_width))
        Byte addresses and byte counts become word requests with byte masks
        (one request outstanding at a time: the line, not the memory, is the
        bottleneck). A range that leaves ``mem_bytes`` is refused whole
        (MEM_ERR, no request); an ``err`` response turns the status into
        MEM_ERR.
    regs : Out(MemPortSignature(REG_ADDR_BITS, 32))
        The chip's registers (one request outstanding); ``err`` means no
        such register. Block LINK is served here from ``counters``.
    counters : In(ArrayLayout(32, len(LinkCounter))), clear : Out(1)
        The link counters' values; ``clear`` pulses on RESET.
    cmd_error : Out(1)
        Pulses for a response to a good frame with a status other than OK.

    Throughput: WRITE commits 1 byte per 2 cycles plus a memory round trip
    per word, READ fills the response buffer as fast; both far faster than
    a UART delivers bytes at 4+ clocks per bit.
    """

    def __init__(self, *, rx_slots, mem_addr_width, mem_data_width, mem_bytes,
                 n_unit_counters=0):
        self.rx_slots = check_pow2("rx_slots", rx_slots, 1, 64)
        check_pow2("mem_data_width", mem_data_width, 8, 64)
        self.mem_data_width = mem_data_width
        self.mem_addr_width = check_int("mem_addr_width", mem_addr_width, 1, 32)
        self.word_bytes = mem_data_width // 8
        self.mem_bytes = check_int("mem_bytes", mem_bytes, 1,
                                   min(1 << 32, self.word_bytes << mem_addr_width))
        self.n_unit_counters = check_int("n_unit_counters", n_unit_counters, 0, Block.UNIT.size)
        slot_bits = exact_log2(rx_slots)
        super().__init__({
            "desc": In(stream.Signature(FrameDescLayout)),
            "release": Out(1),
            "fb_addr": Out(PAYLOAD_BITS + slot_bits),
            "fb_data": In(8),
            "rb_addr": Out(PAYLOAD_BITS),
            "rb_data": Out(8),
            "rb_en": Out(1),
            "resp": Out(stream.Signature(RespLayout)),
            "tx_busy": In(1),
            "mem": Out(MemPortSignature(addr_width=mem_addr_width, data_width=mem_data_width)),
            "regs": Out(MemPortSignature(addr_width=REG_ADDR_BITS, data_width=REG_WIDTH)),
            "counters": In(data.ArrayLayout(32, N_LINK)),
            "clear": Out(1),
            "cmd_error": Out(1),
        })

    def info_bytes(self) -> bytes:
        return pack_bytes(InfoLayout, {
            "version": VERSION, "max_payload": MAX_PAYLOAD, "max_data": MAX_DATA,
            "mem_bytes": self.mem_bytes & 0xFFFF_FFFF, "word_bytes": self.word_bytes,
            "rx_slots": self.rx_slots, "n_link_counters": N_LINK,
            "n_unit_counters": self.n_unit_counters, "reg_addr_bits": REG_ADDR_BITS,
        })

    def elaborate(self, platform):
        m = Module()
        s = self._state = _EngineState(self)
        m.d.comb += [self.fb_addr.eq(Cat(s.pidx[:PAYLOAD_BITS], s.slot)),
                     self.rb_addr.eq(s.ridx)]
        self._mem_comb(m, s)
        self._reg_comb(m, s)
        self._exec_checks(m, s)
        with m.FSM():
            self._frame_states(m, s)
            self._fetch_states(m, s)
            self._mem_states(m, s)
            self._reg_states(m, s)
        return m

    # -- frame in, dispatch, response out --------------------------------------------
    def _frame_states(self, m, s):
        desc = self.desc.payload
        with m.State("IDLE"):
            m.d.comb += self.desc.ready.eq(~self.tx_busy)
            with m.If(self.desc.valid & ~self.tx_busy):
                m.d.sync += [s.cmd.eq(desc.cmd), s.seq.eq(desc.seq), s.len.eq(desc.len),
                             s.pidx.eq(0), s.ridx.eq(1), s.status.eq(Status.OK), s.ri.eq(0)]
                m.next = "CHECK"
                with m.If(desc.status != Status.OK):
                    m.d.sync += s.status.eq(desc.status)
                    with m.If(desc.status == Status.BAD_CRC):
                        m.d.sync += s.cmd.eq(Cmd.NAK)
                    m.next = "FINISH"

        with m.State("CHECK"):
            self._check(m, s)

        with m.State("EXEC"):
            self._exec(m, s)

        with m.State("INFO"):
            info = Array(C(b, 8) for b in self.info_bytes())
            m.d.comb += [self.rb_en.eq(1), self.rb_data.eq(info[s.ridx - 1])]
            m.d.sync += s.ridx.eq(s.ridx + 1)
            with m.If(s.ridx == len(self.info_bytes())):
                m.next = "FINISH"

        with m.State("FINISH"):
            ok = s.status == Status.OK
            m.d.comb += [
                self.rb_en.eq(1), self.rb_addr.eq(0), self.rb_data.eq(s.status),
                self.resp.valid.eq(1),
                self.resp.payload.cmd.eq(s.cmd | RESPONSE),
                self.resp.payload.seq.eq(s.seq),
                self.resp.payload.len.eq(Mux(ok, s.ridx, 1)),
            ]
            with m.If(self.resp.ready):
                m.d.sync += s.slot.eq(s.slot + 1)
                m.d.comb += [self.release.eq(1),
                             self.cmd_error.eq(~ok & (s.status != Status.BAD_CRC) &
                                               (s.status != Status.BAD_LENGTH))]
                m.next = "IDLE"

    def _check(self, m, s):
        """Payload size per command; the arguments to fetch."""
        def need(cond, nargs, then="FETCH"):
            with m.If(cond):
                m.d.sync += s.nargs.eq(nargs)
                m.next = then
            with m.Else():
                m.d.sync += s.status.eq(Status.BAD_ARGS)
                m.next = "FINISH"

        with m.Switch(s.cmd):
            with m.Case(Cmd.INFO):
                need(s.len == 0, 0, "INFO")
            with m.Case(Cmd.WRITE):
                need((s.len >= 4) & (s.len - 4 <= MAX_DATA), AddrArgs.size // 8)
            with m.Case(Cmd.READ):
                need(s.len == ReadArgs.size // 8, ReadArgs.size // 8)
            with m.Case(Cmd.REG_WRITE):
                head = RegWriteArgs.size // 8
                need((s.len > head) & ((s.len - head)[:2] == 0), head)
            with m.Case(Cmd.REG_READ):
                need(s.len == RegReadArgs.size // 8, RegReadArgs.size // 8)
            with m.Case(Cmd.START):
                need(s.len == AddrArgs.size // 8, AddrArgs.size // 8)
            with m.Case(Cmd.STATUS, Cmd.COUNTERS, Cmd.RESET):
                need(s.len == 0, 0)
            with m.Default():
                m.d.sync += s.status.eq(Status.UNKNOWN_CMD)
                m.next = "FINISH"

    def _mem_spans(self, s):
        """(start byte, byte count) of a WRITE and of a READ, from the arguments."""
        write = (AddrArgs(s.args[:AddrArgs.size]).addr, s.len - AddrArgs.size // 8)
        read_args = ReadArgs(s.args[:ReadArgs.size])
        return write, (read_args.addr, read_args.n)

    def _exec_checks(self, m, s):
        """EXEC's range checks of a WRITE or READ, registered a cycle ahead:
        EXEC is only entered from FETCH, in which the arguments are already
        final (FETCH_D writes them), so the flops hold EXEC's values. The
        length subtract, the address add and the compare ahead of the FSM's
        next state and the address registers made the link's critical path."""
        for (addr, n), over, zero in zip(self._mem_spans(s), (s.w_over, s.r_over),
                                         (s.w_zero, s.r_zero)):
            m.d.sync += [over.eq(addr + n > self.mem_bytes), zero.eq(n == 0)]

    def _exec(self, m, s):
        """Arguments are in: check them and start the command's loop."""
        read_args = ReadArgs(s.args[:ReadArgs.size])
        rr_args = RegReadArgs(s.args[:RegReadArgs.size])
        rw_args = RegWriteArgs(s.args[:RegWriteArgs.size])
        lb = exact_log2(self.word_bytes)
        (w_addr, w_n), (r_addr, r_n) = self._mem_spans(s)

        def start_mem(addr, n, write):
            with m.If(s.w_over if write else s.r_over):
                m.d.sync += s.status.eq(Status.MEM_ERR)
                m.next = "FINISH"
            with m.Elif(s.w_zero if write else s.r_zero):
                m.next = "FINISH"
            with m.Else():
                m.d.sync += [s.baddr.eq(addr), s.remaining.eq(n), s.waddr.eq(addr >> lb),
                             s.mask.eq(0)]
                m.next = "W_ADDR" if write else "R_REQ"

        def start_regs(count, we):
            m.d.sync += [s.rcount.eq(count), s.we.eq(we)]
            m.next = "REG_NEXT"

        with m.Switch(s.cmd):
            with m.Case(Cmd.WRITE):
                start_mem(w_addr, w_n, True)
            with m.Case(Cmd.READ):
                with m.If(read_args.n > MAX_DATA):
                    m.d.sync += s.status.eq(Status.BAD_ARGS)
                    m.next = "FINISH"
                with m.Else():
                    start_mem(r_addr, r_n, False)
            with m.Case(Cmd.REG_WRITE):
                m.d.sync += s.reg.eq(rw_args.reg)
                start_regs((s.len - RegWriteArgs.size // 8) >> 2, 1)
            with m.Case(Cmd.REG_READ):
                m.d.sync += s.reg.eq(rr_args.reg)
                with m.If((rr_args.count == 0) | (rr_args.count > MAX_REGS)):
                    m.d.sync += s.status.eq(Status.BAD_ARGS)
                    m.next = "FINISH"
                with m.Else():
                    start_regs(rr_args.count, 0)
            with m.Case(Cmd.START):
                start_regs(2, 1)
            with m.Case(Cmd.STATUS):
                m.d.sync += s.reg.eq(Reg.STATUS)
                start_regs(1, 0)
            with m.Case(Cmd.COUNTERS):
                start_regs(N_LINK + self.n_unit_counters, 0)
            with m.Case(Cmd.RESET):
                m.d.comb += self.clear.eq(1)
                start_regs(1, 1)

    # -- argument bytes from the frame buffer ------------------------------------------
    def _fetch_states(self, m, s):
        # fb_addr follows pidx; a byte is read one cycle after pidx settles
        with m.State("FETCH"):
            with m.If(s.pidx == s.nargs):
                m.next = "EXEC"
            with m.Else():
                m.next = "FETCH_D"
        with m.State("FETCH_D"):
            m.d.sync += [s.args.word_select(s.pidx[:3], 8).eq(self.fb_data),
                         s.pidx.eq(s.pidx + 1)]
            m.next = "FETCH"

    # -- READ and WRITE ----------------------------------------------------------------
    def _mem_comb(self, m, s):
        req = self.mem.req
        m.d.comb += [req.payload.addr.eq(s.waddr), req.payload.wdata.eq(s.wdata),
                     req.payload.mask.eq(s.mask)]

    def _mem_states(self, m, s):
        wb = self.word_bytes
        lb = exact_log2(wb)
        lane = s.baddr[:lb] if lb else C(0, 1)
        req, resp = self.mem.req, self.mem.resp

        with m.State("W_ADDR"):
            m.next = "W_DATA"
        with m.State("W_DATA"):
            m.d.sync += [s.wdata.word_select(lane, 8).eq(self.fb_data),
                         s.mask.bit_select(lane, 1).eq(1),
                         s.pidx.eq(s.pidx + 1), s.baddr.eq(s.baddr + 1),
                         s.remaining.eq(s.remaining - 1)]
            with m.If((lane == wb - 1) | (s.remaining == 1)):
                m.next = "W_REQ"
            with m.Else():
                m.next = "W_ADDR"
        with m.State("W_REQ"):
            m.d.comb += [req.valid.eq(1), req.payload.we.eq(1)]
            with m.If(req.ready):
                m.next = "W_RESP"
        with m.State("W_RESP"):
            m.d.comb += resp.ready.eq(1)
            with m.If(resp.valid):
                m.d.sync += [s.waddr.eq(s.waddr + 1), s.mask.eq(0)]
                with m.If(resp.payload.err):
                    m.d.sync += s.status.eq(Status.MEM_ERR)
                m.next = "W_NEXT"
        with m.State("W_NEXT"):
            with m.If(s.remaining == 0):
                m.next = "FINISH"
            with m.Else():
                m.next = "W_ADDR"

        with m.State("R_REQ"):
            m.d.comb += req.valid.eq(1)
            with m.If(req.ready):
                m.next = "R_RESP"
        with m.State("R_RESP"):
            m.d.comb += resp.ready.eq(1)
            with m.If(resp.valid):
                m.d.sync += s.word.eq(resp.payload.rdata)
                with m.If(resp.payload.err):
                    m.d.sync += s.status.eq(Status.MEM_ERR)
                m.next = "R_BYTE"
        with m.State("R_BYTE"):
            m.d.comb += [self.rb_en.eq(1), self.rb_data.eq(s.word.word_select(lane, 8))]
            m.d.sync += [s.ridx.eq(s.ridx + 1), s.baddr.eq(s.baddr + 1),
                         s.remaining.eq(s.remaining - 1)]
            with m.If(s.remaining == 1):
                m.next = "FINISH"
            with m.Elif(lane == wb - 1):
                m.d.sync += s.waddr.eq(s.waddr + 1)
                m.next = "R_REQ"

    # -- registers: REG_WRITE, REG_READ, START, STATUS, COUNTERS, RESET ------------------
    def _reg_comb(self, m, s):
        """The register of step ``ri`` and the value a write step writes."""
        addr_args = AddrArgs(s.args[:AddrArgs.size])
        req = self.regs.req
        link_base = Block.LINK.base
        raddr, wval = s.raddr_next, s.wval
        with m.Switch(s.cmd):
            with m.Case(Cmd.COUNTERS):
                m.d.comb += raddr.eq(Mux(s.ri < N_LINK, link_base + s.ri,
                                         Block.UNIT.base + s.ri - N_LINK))
            with m.Case(Cmd.START):
                m.d.comb += [raddr.eq(Mux(s.ri == 0, Reg.PROG_ADDR, Reg.CTRL)),
                             wval.eq(Mux(s.ri == 0, addr_args.addr, CTRL_START))]
            with m.Case(Cmd.RESET):
                m.d.comb += [raddr.eq(Reg.CTRL), wval.eq(CTRL_RESET)]
            with m.Default():
                m.d.comb += [raddr.eq(s.reg + s.ri), wval.eq(s.val)]
        m.d.comb += [req.payload.addr.eq(s.raddr), req.payload.we.eq(s.we),
                     req.payload.wdata.eq(wval), req.payload.mask.eq(0xF)]

    def _reg_states(self, m, s):
        req, resp = self.regs.req, self.regs.resp
        link_base = Block.LINK.base
        raddr = s.raddr_next

        with m.State("REG_NEXT"):
            # Step ri's register and where it lives, registered here for
            # REG_ISSUE (which always follows, s.reg/s.ri/s.cmd unchanged):
            # the address adder and the range compares stay off REG_ISSUE's
            # path to the counters and the FSM (the link's critical path).
            # counter_ok only counts inside the link's block, so it compares
            # raddr itself with a constant (no subtract); the block is aligned,
            # so the counter's index is raddr's low bits
            if link_base % 16 or N_LINK > 16:
                raise RuntimeError("the link's register block must be 16-aligned, "
                                   "with at most 16 counters")
            m.d.sync += [s.bcount.eq(0), s.raddr.eq(raddr),
                         s.in_link.eq((raddr >= link_base)
                                      & (raddr < link_base + Block.LINK.size)),
                         s.counter_ok.eq(raddr < link_base + N_LINK),
                         s.counter_sel.eq(raddr[:4])]
            with m.If(s.ri == s.rcount):
                m.next = "FINISH"
            with m.Elif(s.we & (s.cmd == Cmd.REG_WRITE)):
                m.next = "V_ADDR"
            with m.Else():
                m.next = "REG_ISSUE"
        with m.State("V_ADDR"):
            m.next = "V_DATA"
        with m.State("V_DATA"):
            m.d.sync += [s.val.word_select(s.bcount, 8).eq(self.fb_data),
                         s.pidx.eq(s.pidx + 1), s.bcount.eq(s.bcount + 1)]
            m.next = "V_ADDR"
            with m.If(s.bcount == 3):
                m.next = "REG_ISSUE"
        with m.State("REG_ISSUE"):
            with m.If(s.in_link):
                with m.If(~s.we & s.counter_ok):
                    m.d.sync += s.word.eq(self.counters[s.counter_sel])
                    m.next = "REG_BYTES"
                with m.Else():
                    m.d.sync += s.status.eq(Status.REG_ERR)
                    m.next = "FINISH"
            with m.Else():
                m.d.comb += req.valid.eq(1)
                with m.If(req.ready):
                    m.next = "REG_WAIT"
        with m.State("REG_WAIT"):
            m.d.comb += resp.ready.eq(1)
            with m.If(resp.valid):
                with m.If(resp.payload.err):
                    m.d.sync += s.status.eq(Status.REG_ERR)
                    m.next = "FINISH"
                with m.Elif(s.we):
                    m.d.sync += s.ri.eq(s.ri + 1)
                    m.next = "REG_NEXT"
                with m.Else():
                    m.d.sync += s.word.eq(resp.payload.rdata)
                    m.next = "REG_BYTES"
        with m.State("REG_BYTES"):
            m.d.comb += [self.rb_en.eq(1), self.rb_data.eq(s.word.word_select(s.bcount, 8))]
            m.d.sync += [s.ridx.eq(s.ridx + 1), s.bcount.eq(s.bcount + 1)]
            with m.If(s.bcount == 3):
                m.d.sync += s.ri.eq(s.ri + 1)
                m.next = "REG_NEXT"


class _EngineState:
    """The engine's registers (one object, so the state helpers share them)."""

    def __init__(self, e: CommandEngine):
        self.slot = Signal(exact_log2(e.rx_slots))
        self.cmd = Signal(8)
        self.seq = Signal(8)
        self.len = Signal(range(MAX_PAYLOAD + 1))
        self.status = Signal(Status)
        self.pidx = Signal(PAYLOAD_BITS + 1)        # next payload byte to read
        self.ridx = Signal(PAYLOAD_BITS + 1)        # next response byte to write
        self.nargs = Signal(3)
        self.args = Signal(48)
        self.baddr = Signal(33)
        self.remaining = Signal(range(MAX_PAYLOAD + 1))
        self.waddr = Signal(e.mem_addr_width)
        self.wdata = Signal(e.mem_data_width)
        self.mask = Signal(e.word_bytes)
        self.word = Signal(max(e.mem_data_width, REG_WIDTH))
        self.reg = Signal(REG_ADDR_BITS)
        self.rcount = Signal(range(MAX_PAYLOAD + 1))
        self.ri = Signal(range(MAX_PAYLOAD + 1))
        self.we = Signal()
        self.val = Signal(REG_WIDTH)
        self.bcount = Signal(2)
        self.w_over = Signal()                      # EXEC: the WRITE passes the memory's end
        self.w_zero = Signal()                      # EXEC: the WRITE has no bytes
        self.r_over = Signal()                      # the same for a READ
        self.r_zero = Signal()
        self.raddr_next = Signal(REG_ADDR_BITS)     # step ri's register (comb)
        self.raddr = Signal(REG_ADDR_BITS)          # the same, registered in REG_NEXT
        self.in_link = Signal()                     # raddr is in the link's block
        self.counter_ok = Signal()                  # raddr is one of the link's counters
        self.counter_sel = Signal(4)                # which one
        self.wval = Signal(REG_WIDTH)
