"""The chip's INTERACT unit: the DLRM dot interaction of ``n_vec`` int8
vectors per sample (every pair of the strict lower triangle), requantized to
int8. It sits in the matrix unit's slot: the chip top routes INTERACT
commands here and GEMM commands to the systolic array.

::

    mem[0] -> RowReader --beats--> vector buffer (2 banks, 2 copies: 2 reads/cycle)
                                       | word of v_i, word of v_j
                                       v
                        8 int8 MACs -> accumulate -> Requantizer -> byte FIFO
                                                                      |
    mem[1] <- RowWriter <--8-byte beats-- packer <--------------------+

A sample's vectors are loaded into one bank while the previous sample's
pairs are computed from the other. The compute side issues one word pair
per cycle while it holds a credit; a credit is a byte's place in the output
FIFO, reserved at a pair's last word and given back when the packer takes
the byte, so the Requantizer (no backpressure) never overruns the FIFO.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..checks import ceil_div, check_int, check_type
from ..isa import ALIGN, PARAM_BYTES, ChipError, InteractFlags, Limits, Unit, pairs
from .control import GEMM_UNIT_CMD, UnitPortSignature
from .control_fetch import check_mem_bytes
from .dma import RowReader, RowWriter, write_beat_layout
from .mac import Mul
from .memport import MemPortSignature
from .requant import Requantizer

__all__ = ["DATA_WIDTH", "InteractUnit", "DotAccumulator", "ByteLayout", "BytePacker"]

#: The chip memory's word: 64 bits = :data:`seedchip.isa.ALIGN` bytes.
DATA_WIDTH = 64
LANES = DATA_WIDTH // 8
#: data bits of one block RAM (ECP5 DP16KD, parity bits aside)
BRAM_BITS = 16384
#: a pair table entry (PARAMS): a 32-bit multiplier and a 5-bit shift
PAIR_BITS = 37


class DotAccumulator(wiring.Component):
    """The dot product of two int8 vectors, one 8-byte word of each per cycle.

    Ports
    -----
    valid, first, last, row_last : In(1)
        A word pair in ``a``/``b``; ``first``/``last``: the first/last word of
        its vector pair; ``row_last`` rides along to ``o_row_last``.
    a, b : In(64)
        Eight int8 lanes each (byte ``k`` in bits ``8k..8k+7``).
    o_valid, o_acc, o_row_last : Out
        ``o_acc`` (int32, wrapping) is the sum of ``a_k * b_k`` over the
        words ``first`` .. ``last``, :attr:`LATENCY` cycles after ``last``.
        No backpressure; gaps (``valid`` low) inside a pair are allowed.

    Eight :class:`~seedchip.rtl.mac.Mul` (one DSP each on ECP5), an adder
    tree of two registered levels (two sums of four products, then their
    sum), then the accumulator.
    """

    LATENCY = Mul.LATENCY + 2

    def __init__(self):
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1), "row_last": In(1),
            "a": In(DATA_WIDTH), "b": In(DATA_WIDTH),
            "o_valid": Out(1), "o_acc": Out(signed(32)), "o_row_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # the flags beside the products (Mul.LATENCY) and their sum (2)
        flags = Cat(self.valid, self.first, self.last, self.row_last)
        for stage in range(self.LATENCY):
            delayed = Signal(4, name=f"flags{stage + 1}")
            m.d.sync += delayed.eq(flags)
            flags = delayed
        valid, first, last, row_last = flags
        prods = []
        for k in range(LANES):
            mul = Mul(a_width=8, b_width=8)
            m.submodules[f"mul{k}"] = mul
            m.d.comb += [mul.a.eq(self.a[8 * k:8 * k + 8].as_signed()),
                         mul.b.eq(self.b[8 * k:8 * k + 8].as_signed())]
            prods.append(mul.p)
        # two levels for Fmax: the eight products summed in one cycle were the
        # unit's critical path (106 MHz)
        halves = [Signal(signed(18), name=f"dot_half{h}") for h in range(2)]
        m.d.sync += [halves[0].eq(sum(prods[:4])), halves[1].eq(sum(prods[4:]))]
        dot = Signal(signed(20))
        m.d.sync += dot.eq(halves[0] + halves[1])
        acc = Signal(32)
        acc_next = Signal(32)
        m.d.comb += acc_next.eq(Mux(first, 0, acc) + dot)
        with m.If(valid):
            m.d.sync += acc.eq(acc_next)
        m.d.comb += [self.o_valid.eq(valid & last), self.o_acc.eq(acc_next),
                     self.o_row_last.eq(row_last)]
        return m


#: A result byte for :class:`BytePacker`: ``last`` ends a row.
ByteLayout = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


class BytePacker(wiring.Component):
    """Packs bytes into beats of 8 bytes for a :class:`~seedchip.rtl.dma.RowWriter`:
    byte ``k`` of a row into byte ``k % 8`` of its beat; a beat ends after 8
    bytes or the row's last byte (the rest is 0; the writer masks it).

    Ports
    -----
    i : In(stream(ByteLayout))
    o : Out(stream(write_beat_layout(8)))

    One byte per cycle, at most one beat every other cycle; a beat leaves the
    cycle after its last byte.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(ByteLayout)),
            "o": Out(stream.Signature(write_beat_layout(LANES))),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        pk = Signal(DATA_WIDTH)
        n = Signal(range(LANES))
        ends = i.payload.last | (n == LANES - 1)
        beat = Signal(DATA_WIDTH)
        m.d.comb += [
            beat.eq(pk | (i.payload.data << (n * 8))),
            # a byte that ends a beat needs the output register empty (not merely
            # being taken: o.ready is the writer's combinational function of the
            # memory's ready, and through the credits it was the critical path)
            i.ready.eq(~ends | ~o.valid),
        ]
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            with m.If(ends):
                m.d.sync += [o.valid.eq(1), o.payload.data.eq(beat), pk.eq(0), n.eq(0)]
            with m.Else():
                m.d.sync += [pk.eq(beat), n.eq(n + 1)]
        return m


class InteractUnit(wiring.Component):
    """Executes INTERACT (:class:`seedchip.isa.Interact`, the semantics of
    ``ChipModel._exec_interact``): for each sample ``b`` the vectors ``v_j``
    (``dim`` int8 at ``src + b * in_stride + j * vec_stride``, ``j < n_vec``),
    for the pairs (1,0), (2,0), (2,1), (3,0), ... the int32 dot product
    ``v_i . v_j`` requantized with ``multiplier``/``shift`` (no bias, no
    ReLU, saturated to int8), byte ``p`` of the sample's row at
    ``dst + b * out_stride + p``. With PARAMS (``flags`` bit 0) pair ``p``
    is requantized with the multiplier and shift of param record ``p`` at
    ``p_addr``: the unit first reads the ``pairs(n_vec)`` records (two
    words each) into its pair table, then runs as without.

    Parameters: ``addr_width`` and ``mem_bytes`` of the chip memory,
    ``limits`` (:class:`seedchip.isa.Limits`: ``max_vec`` and ``max_dim``
    size the vector buffer: INTERACT's vectors are pooled embeddings, at most
    the gather engine's ``max_dim`` bytes, and a vector as wide; the matrix
    unit's ``max_k`` plays no part).

    Ports
    -----
    ctl : In(UnitPortSignature(GEMM_UNIT_CMD))
        ``cmd`` taken while idle (its ``opcode`` is not looked at: the chip
        top only routes INTERACT here; ``operands.interact``). One ``done``
        per command once its last write is acknowledged: NONE, or MEM_ERROR
        (detail ``Unit.GEMM``, the slot's unit) when a read or a write came
        back with ``err``; index: the byte address of the first read word
        with ``err``, 0 for a write error (:class:`RowWriter` does not say
        which). The command still runs to its end, so it never hangs.
        ``mem_stall``: a memory request waits for ``ready``, the compute
        side waits for a sample still loading, or for output credits.
        ``abort`` is ignored.
    mem : Out(MemPortSignature(addr_width, 64)).array(N_PORTS)
        ``mem[0]``: the vector reader (reads only; with PARAMS the param
        records first); ``mem[1]``: the output writer (writes only).

    Throughput: 8 int8 MACs per cycle; a pair takes ``W = ceil(dim / 8)``
    cycles, a sample ``pairs(n_vec) * W`` cycles when loading keeps up
    (loading a sample, ``n_vec * W`` words, overlaps computing the one
    before; otherwise the load is exposed). The DLRM Kaggle case (n_vec 27,
    dim 16: 351 pairs) is 702 cycles per sample. Fixed overhead per command:
    loading the first sample (``n_vec * W`` words plus the memory's latency)
    and about 30 cycles of pipeline (buffer read, MACs, Requantizer, packer,
    writer); with a one-cycle memory, one Kaggle sample takes 792 cycles from
    ``cmd`` to ``done``, three take 2196. PARAMS adds the records' load:
    two words a pair: one Kaggle sample with PARAMS takes 1499 cycles.

    Buffer (:attr:`buf_depth` words of 64 bits, twice): two copies, one read
    port each (two words read per cycle), of two banks (load one sample while
    computing the other) of ``2**ceil_log2(max_vec)`` vectors of
    ``2**ceil_log2(ceil(max_dim / 8))`` words (at least 2), in block RAM, each
    copy sliced into :attr:`slice_bits`-wide memories that each fit one block
    RAM. For max_vec 64, max_dim 64: 2 copies x 1024 x 64 bits = 128 Kbit = 8
    ECP5 DP16KD (1024 x 16 each; half without the second bank). The pair table
    (:attr:`pair_depth` x 37 bits: a multiplier and a shift) adds 5 DP16KD
    for max_vec 64 (2048 x 9 each).

    Alone on the ECP5-85F (out of context, the board chip's limits, seed 1,
    routed): 3227 LUT/carry cells, 2750 FF, 13 DP16KD (8 + 5), 13 MULT18X18D
    (8 MACs, 4 in the Requantizer, 1 for pairs(n_vec)), 122.0 MHz; the worst
    path is a MAC's DSP product into the dot product's half-sum adder.
    """

    N_PORTS = 2
    #: reads the vector reader may have outstanding
    READ_DEPTH = 16
    #: output bytes in flight (Requantizer + FIFO): more than the pipeline's
    #: latency, so that dim <= 8 (one pair per cycle) runs at full rate
    OUT_DEPTH = 32

    #: The ``mem`` ports whose client holds ``resp.ready`` at 1 (its own
    #: credited FIFO has room for every response it asked for): the
    #: chip's arbiter passes their responses through a register, not a
    #: FIFO (:class:`~seedchip.rtl.arbiter.MemArbiter`'s ``sinks``).
    resp_sinks = (0, 1)   # its RowReader and RowWriter

    def __init__(self, *, addr_width, mem_bytes, limits):
        check_int("addr_width", addr_width, 1, 40)
        self.addr_width = addr_width
        self.mem_bytes = check_mem_bytes(mem_bytes, addr_width, DATA_WIDTH)
        self.limits = check_type("limits", limits, Limits)
        self.vec_bits = ceil_log2(limits.max_vec)
        self.word_bits = max(1, ceil_log2(ceil_div(limits.max_dim, ALIGN)))
        #: words of the vector buffer (each of its two copies)
        self.buf_depth = 2 << (self.vec_bits + self.word_bits)
        #: bits of a word in one memory: as many as fit one 16 Kbit block RAM at
        #: the buffer's depth (ECP5 DP16KD: 16384 x 1 .. 512 x 32 data bits)
        #: entries of the pair table (PARAMS): pairs(max_vec), rounded up
        self.pair_depth = 1 << ceil_log2(pairs(limits.max_vec))
        per_bram = max(1, BRAM_BITS // self.buf_depth)
        self.slice_bits = min(DATA_WIDTH, 1 << (per_bram.bit_length() - 1))
        super().__init__({
            "ctl": In(UnitPortSignature(GEMM_UNIT_CMD)),
            "mem": Out(MemPortSignature(addr_width=addr_width,
                                        data_width=DATA_WIDTH)).array(self.N_PORTS),
        })

    def _buffer(self, m):
        """The vector buffer: two copies, each sliced into ``slice_bits``-wide
        memories; ``(write ports with their slice, (read ports of copy i, of copy j))``."""
        SW = self.slice_bits
        wports = []
        rdata = []
        for copy in ("i", "j"):
            datas = []
            for k in range(DATA_WIDTH // SW):
                mem = Memory(shape=SW, depth=self.buf_depth, init=[])
                m.submodules[f"buf_{copy}{k}"] = mem
                wports.append((mem.write_port(), k))
                rp = mem.read_port()
                datas.append(rp)
            rdata.append(datas)
        return wports, tuple(rdata)

    def _pair_table_load(self, m, beat, pload, start, err, err_index):
        """PARAMS: the param records' beats (two per record) into the pair table
        while ``pload``; it ends with the last beat. ``start``: the command's
        operands (``p_addr``) when it is taken. Returns the table."""
        m.submodules.pair_table = table = Memory(shape=unsigned(PAIR_BITS), depth=self.pair_depth,
                                                 init=[])
        wp = table.write_port()
        pidx = Signal(range(self.pair_depth))
        pmul = Signal(32)
        paddr = Signal(32)              # the byte address of the beat, for MEM_ERROR
        with m.If(start.valid & start.ready):
            m.d.sync += [pidx.eq(0), paddr.eq(start.payload.operands.interact.p_addr)]
        m.d.comb += [wp.addr.eq(pidx), wp.data.eq(Cat(pmul, beat.payload.data[:5])),
                     wp.en.eq(pload & beat.valid & beat.payload.row_last)]
        with m.If(pload & beat.valid):
            with m.If(beat.payload.err & ~err):
                m.d.sync += [err.eq(1), err_index.eq(paddr)]
            with m.If(beat.payload.row_last):
                m.d.sync += [pidx.eq(pidx + 1), paddr.eq(paddr + (PARAM_BYTES - ALIGN))]
            with m.Else():
                m.d.sync += [pmul.eq(beat.payload.data[32:]), paddr.eq(paddr + ALIGN)]
            with m.If(beat.payload.last):
                m.d.sync += pload.eq(0)
        return table

    def _pair_table_read(self, m, table, dot, start):
        """The multiplier and shift of the pair whose dot product ``dot`` gives
        next, a cycle after it leaves (registered): the table is addressed with
        the next pair as one leaves, so its read data is ready for the next."""
        rp = table.read_port()
        cur = Signal(range(self.pair_depth))    # the pair dot gives next
        inc = Signal(range(self.pair_depth))    # cur + 1
        nxt = Mux(dot.o_row_last, 0, inc)
        with m.If(dot.o_valid):
            m.d.sync += [cur.eq(nxt), inc.eq(nxt + 1)]
        with m.If(start):
            m.d.sync += [cur.eq(0), inc.eq(1)]
        m.d.comb += rp.addr.eq(Mux(dot.o_valid, nxt, cur))
        pm, ps = Signal(signed(32)), Signal(5)
        m.d.sync += [pm.eq(rp.data[:32]), ps.eq(rp.data[32:])]
        return pm, ps

    def _compute(self, m, s):
        """Compute: the word pairs of (v_i, v_j) of each loaded sample, one per
        cycle while an output credit is free; the read addresses of both buffer
        copies. ``s``: busy, cp_left, full, full_clr, words_m1, n_m1, pop,
        rp_i, rp_j. Returns what the MAC stage and the stall bit need."""
        VB, WB, D = self.vec_bits, self.word_bits, self.OUT_DEPTH
        busy, cp_left, full, full_clr = s.busy, s.cp_left, s.full, s.full_clr
        words_m1, n_m1, pop = s.words_m1, s.n_m1, s.pop
        cp_bank = Signal()
        cp_active = Signal()
        ci = Signal(VB)
        cj = Signal(VB)
        cw = Signal(WB)
        inflight = Signal(range(D + 1))     # output bytes reserved, not yet packed
        issue = Signal()
        # cw == words_m1, cj == ci - 1, ci == n_m1, each decided a cycle early into a
        # register (as compares behind the counters they were the critical path)
        last_word, last_j, last_i = Signal(), Signal(), Signal()
        last_pair = last_j & last_i
        restart = [ci.eq(1), cj.eq(0), cw.eq(0), last_word.eq(words_m1 == 0), last_j.eq(1),
                   last_i.eq(n_m1 == 1)]
        # inflight != D, a cycle early into a register (as a compare in front of
        # ``issue``, which steers every counter, it was the critical path at 103 MHz)
        credit = Signal(init=1)
        inflight_next = Signal.like(inflight)
        m.d.comb += [
            issue.eq(cp_active & credit),
            inflight_next.eq(inflight + (issue & last_word) - pop),
        ]
        m.d.sync += [inflight.eq(inflight_next), credit.eq(inflight_next != D)]
        for rp in s.rp_i:
            m.d.comb += rp.addr.eq(Cat(cw, ci, cp_bank))
        for rp in s.rp_j:
            m.d.comb += rp.addr.eq(Cat(cw, cj, cp_bank))
        with m.If(busy & ~cp_active & (cp_left != 0) & full.bit_select(cp_bank, 1)):
            m.d.sync += [cp_active.eq(1), *restart]
        with m.If(issue):
            with m.If(last_word):
                m.d.sync += [cw.eq(0), last_word.eq(words_m1 == 0)]
                with m.If(last_j):
                    # the next i (>= 2) starts at j = 0, never its last j
                    m.d.sync += [cj.eq(0), ci.eq(ci + 1), last_j.eq(0),
                                 last_i.eq(ci + 1 == n_m1)]
                    with m.If(last_pair):
                        # straight on to the next sample if its bank is loaded
                        m.d.comb += full_clr.eq(Mux(cp_bank, 0b10, 0b01))
                        m.d.sync += [cp_active.eq(full.bit_select(~cp_bank, 1)), *restart,
                                     cp_bank.eq(~cp_bank), cp_left.eq(cp_left - 1)]
                with m.Else():
                    m.d.sync += [cj.eq(cj + 1), last_j.eq(cj + 2 == ci)]
            with m.Else():
                m.d.sync += [cw.eq(cw + 1), last_word.eq(cw + 1 == words_m1)]
        return SimpleNamespace(issue=issue, cw=cw, last_word=last_word, last_pair=last_pair,
                               cp_active=cp_active, credit=credit)

    def elaborate(self, platform):
        m = Module()
        VB, WB, D = self.vec_bits, self.word_bits, self.OUT_DEPTH
        m.submodules.reader = rd = RowReader(addr_width=self.addr_width, data_width=DATA_WIDTH,
                                             beat_bytes=8, depth=self.READ_DEPTH)
        m.submodules.writer = wr = RowWriter(addr_width=self.addr_width, data_width=DATA_WIDTH,
                                             beat_bytes=8)
        wiring.connect(m, rd.mem, wiring.flipped(self.mem[0]))
        wiring.connect(m, wr.mem, wiring.flipped(self.mem[1]))
        m.submodules.requant = rq = Requantizer(out_width=8)
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=9, depth=D)
        # two copies of the buffer: one read port each, both written alike; each copy
        # is sliced into memories as deep as the buffer, narrow enough for one block
        # RAM each (the 4096-deep buffer as one 64-bit memory was mapped as two
        # cascaded 2048-deep halves, and the registered half-select bit, fanning out
        # to 128 multiplexers, was the critical path at 82 MHz)
        SW = self.slice_bits
        wports, (rp_i, rp_j) = self._buffer(m)
        cmd, done = self.ctl.cmd, self.ctl.done

        # -- command ---------------------------------------------------------------------
        ops = cmd.payload.operands.interact
        busy = Signal()
        n_m1 = Signal(8)
        words_m1 = Signal(WB)
        multiplier = Signal.like(ops.multiplier)
        shift = Signal.like(ops.shift)
        params = Signal()               # PARAMS: a multiplier and shift per pair
        pload = Signal()                # the pair table is being loaded (PARAMS)
        p_addr = Signal(32)
        n_vec = Signal(8)
        dim = Signal(16)
        vec_stride = Signal(16)
        in_stride = Signal(16)
        err = Signal()                  # a read came back with err (first one: err_index)
        err_index = Signal(32)
        ld_left = Signal(16)            # samples still to load
        cp_left = Signal(16)            # samples still to compute
        ld_base = Signal(32)
        rd_pend = Signal()
        wr_pend = Signal()
        m.d.comb += [
            cmd.ready.eq(~busy),
            rd.cmd.valid.eq(rd_pend),
            wr.cmd.valid.eq(wr_pend),
            rd.cmd.payload.base.eq(Mux(pload, p_addr, ld_base)),
        ]
        with m.If(cmd.valid & cmd.ready):
            n = ops.n_vec
            fl = InteractFlags(cmd.payload.flags.as_value())
            m.d.sync += [
                busy.eq(1), err.eq(0), wr_pend.eq(1),
                n_m1.eq(n - 1), words_m1.eq((ops.dim - 1) >> 3),
                multiplier.eq(ops.multiplier), shift.eq(ops.shift), in_stride.eq(ops.in_stride),
                ld_left.eq(ops.batch), cp_left.eq(ops.batch), ld_base.eq(ops.src),
                n_vec.eq(n), dim.eq(ops.dim), vec_stride.eq(ops.vec_stride),
                params.eq(fl.params), pload.eq(fl.params), rd_pend.eq(fl.params),
                p_addr.eq(ops.p_addr),
                # PARAMS first reads the pair records: the multiplier (bytes 4..7)
                # and the shift (byte 8) of each, two beats
                rd.cmd.payload.stride.eq(PARAM_BYTES),
                rd.cmd.payload.rows.eq((n * (n - 1)) >> 1),
                rd.cmd.payload.row_bytes.eq(9),
                # one writer command for the whole batch: a row of pairs(n) bytes per sample
                wr.cmd.payload.base.eq(ops.dst), wr.cmd.payload.stride.eq(ops.out_stride),
                wr.cmd.payload.rows.eq(ops.batch),
                wr.cmd.payload.row_bytes.eq((n * (n - 1)) >> 1),
            ]
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += rd_pend.eq(0)
        with m.If(wr.cmd.valid & wr.cmd.ready):
            m.d.sync += wr_pend.eq(0)

        # -- loading: a sample's vectors into a free bank -------------------------------
        full = Signal(2)                # bank holds a loaded sample not yet computed
        full_set = Signal(2)
        full_clr = Signal(2)
        m.d.sync += full.eq((full | full_set) & ~full_clr)
        ld_bank = Signal()
        ld_active = Signal()
        ld_vec = Signal(VB + 1)
        ld_word = Signal(WB)
        with m.If(busy & ~pload & ~ld_active & (ld_left != 0) & ~full.bit_select(ld_bank, 1)):
            m.d.sync += [ld_active.eq(1), rd_pend.eq(1), ld_vec.eq(0), ld_word.eq(0),
                         rd.cmd.payload.stride.eq(vec_stride), rd.cmd.payload.rows.eq(n_vec),
                         rd.cmd.payload.row_bytes.eq(dim)]
        beat = rd.beats
        m.d.comb += beat.ready.eq(1)
        pair_w = self._pair_table_load(m, beat, pload, cmd, err, err_index)
        for wp, k in wports:
            m.d.comb += [wp.en.eq(beat.valid & ~pload),
                         wp.data.eq(beat.payload.data[k * SW:(k + 1) * SW]),
                         wp.addr.eq(Cat(ld_word, ld_vec[:VB], ld_bank))]
        # the byte address of the vector being loaded, for MEM_ERROR's index
        ld_row = Signal(32)
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += ld_row.eq(ld_base)
        with m.If(beat.valid & ~pload):
            with m.If(beat.payload.err & ~err):
                m.d.sync += [err.eq(1), err_index.eq(ld_row + (ld_word << 3))]
            with m.If(beat.payload.row_last):
                m.d.sync += [ld_word.eq(0), ld_vec.eq(ld_vec + 1),
                             ld_row.eq(ld_row + rd.cmd.payload.stride)]
            with m.Else():
                m.d.sync += ld_word.eq(ld_word + 1)
            with m.If(beat.payload.last):
                m.d.comb += full_set.eq(Mux(ld_bank, 0b10, 0b01))
                m.d.sync += [ld_active.eq(0), ld_bank.eq(~ld_bank), ld_left.eq(ld_left - 1),
                             ld_base.eq(ld_base + in_stride)]

        # -- compute: word pairs of (v_i, v_j) ------------------------------------------
        pop = Signal()                      # a byte leaves the FIFO (its credit back)
        cp = self._compute(m, SimpleNamespace(
            busy=busy, cp_left=cp_left, full=full, full_clr=full_clr, words_m1=words_m1,
            n_m1=n_m1, pop=pop, rp_i=rp_i, rp_j=rp_j))
        issue, cw, last_word, last_pair = cp.issue, cp.cw, cp.last_word, cp.last_pair
        cp_active, credit = cp.cp_active, cp.credit

        # -- 8 MACs, accumulate, requantize ---------------------------------------------
        # the read data gets a fabric register of its own, placed by the block RAMs:
        # the block RAM's clock-to-output (5.8 ns, no output register) plus the
        # route to the multipliers' input registers limited the build to 102 MHz
        m.submodules.dot = dot = DotAccumulator()
        word_i, word_j = Signal(DATA_WIDTH), Signal(DATA_WIDTH)
        m.d.sync += [word_i.eq(Cat(rp.data for rp in rp_i)),
                     word_j.eq(Cat(rp.data for rp in rp_j))]
        # the flags of the word issued, two cycles later beside its read data
        flags = Signal(4)
        m.d.sync += [flags.eq(Cat(issue, cw == 0, last_word, last_pair)),
                     Cat(dot.valid, dot.first, dot.last, dot.row_last).eq(flags)]
        # each pair's multiplier and shift (PARAMS) read from the pair table as its
        # dot product leaves the accumulator, both registered before the Requantizer
        pm, ps = self._pair_table_read(m, pair_w, dot, cmd.valid & cmd.ready)
        zv, zlast, zacc = Signal(), Signal(), Signal(signed(32))
        m.d.sync += [zv.eq(dot.o_valid), zlast.eq(dot.o_row_last), zacc.eq(dot.o_acc)]
        m.d.comb += [
            dot.a.eq(word_i), dot.b.eq(word_j),
            rq.i_valid.eq(zv),
            rq.i.acc.eq(zacc),
            rq.i.bias.eq(0),
            rq.i.multiplier.eq(Mux(params, pm, multiplier)),
            rq.i.shift.eq(Mux(params, ps, shift)),
            rq.i.requant.eq(1),
            rq.i.relu.eq(0),
            rq.i.last.eq(zlast),
            # credits: the FIFO always has room
            fifo.w_en.eq(rq.o_valid),
            fifo.w_data.eq(Cat(rq.o.data[:8], rq.o.last)),
        ]

        # -- packer: bytes -> 8-byte beats of a sample's row ----------------------------
        m.submodules.packer = packer = BytePacker()
        m.d.comb += [
            packer.i.valid.eq(fifo.r_rdy),
            packer.i.payload.eq(fifo.r_data),
            fifo.r_en.eq(packer.i.ready),
            pop.eq(packer.i.valid & packer.i.ready),
        ]
        wiring.connect(m, packer.o, wr.beats)

        # -- done --------------------------------------------------------------------------
        # the writer is busy from the cycle after it took its command until its
        # last write's response: when it is idle again, every byte is in memory
        with m.If(busy & ~wr_pend & ~wr.busy & (cp_left == 0) & ~done.valid):
            m.d.sync += [
                done.valid.eq(1),
                done.payload.error.eq(Mux(err | wr.err, ChipError.MEM_ERROR, ChipError.NONE)),
                done.payload.detail.eq(Mux(err | wr.err, Unit.GEMM.value, 0)),
                done.payload.bag.eq(0), done.payload.index.eq(Mux(err, err_index, 0)),
            ]
        with m.If(done.valid & done.ready):
            m.d.sync += [done.valid.eq(0), busy.eq(0)]

        req_wait = ((rd.mem.req.valid & ~rd.mem.req.ready) | (wr.mem.req.valid & ~wr.mem.req.ready))
        m.d.comb += self.ctl.mem_stall.eq(
            req_wait
            | (busy & ~cp_active & (cp_left != 0))                  # a sample still loading
            | (cp_active & ~credit))                                # output backed up
        return m
