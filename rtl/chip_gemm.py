"""The chip's GEMM unit: the matrix unit (:class:`~seedchip.rtl.gemm.GemmUnit`)
between strided-row DMA, executing one GEMM instruction memory to memory
exactly as :meth:`seedchip.sim.chip_golden.ChipModel._exec_gemm` does.

::

    ctl.cmd --> GemmFront -+-> RowReader A ---(LaneSplitter)--> a -+
                           +-> RowReader B ---(LaneSplitter)--> b -+-> GemmUnit -c-+-> ResultWriter
                           +-> RowReader params --> ParamLayout ---+               |      ^
                           +-> GemmUnit.cmd                               (ACC)   +-> AccJoin
                           +-> CinReader (ACC: C_in in tile order) -------------------^

Every reader and the writer has its own memory port (``mem[0..4]``: A, B,
params, C, C_in); the chip top puts them on its arbiter. The ACC path is
:mod:`seedchip.rtl.chip_gemm_acc`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import isa
from ..checks import check_int, check_type
from ..config import ChipConfig
from ..isa import ChipError, Opcode, Operand, Unit
from ..protocol import GemmError, OutLayout
from .control import GEMM_UNIT_CMD, UnitPortSignature
from .control_fetch import check_mem_bytes
from .chip_gemm_acc import AccJoin, CinReader
from .dma import RowReader, read_beat_layout
from .gemm import GemmUnit
from .memport import MemPortSignature
from .skid import SkidBuffer

__all__ = ["DATA_WIDTH", "N_PORTS", "PORT_A", "PORT_B", "PORT_PARAMS", "PORT_C", "PORT_CIN",
           "LaneSplitter", "ResultWriter", "GemmFront"]

#: The chip memory word, bits (isa.ALIGN bytes).
DATA_WIDTH = 64
_WB = DATA_WIDTH // 8
#: Memory ports of :class:`GemmFront`, in ``mem`` order.
PORT_A, PORT_B, PORT_PARAMS, PORT_C, PORT_CIN = range(5)
N_PORTS = 5


def _is_pow2(x):
    return x > 0 and not x & (x - 1)


class LaneSplitter(wiring.Component):
    """Splits the 8-byte beats of one :class:`RowReader` into parts of
    ``part_bytes`` bytes (a power of two below 8): a row of ``row_bytes``
    bytes (one or more beats, the last zero-padded) gives
    ``ceil(row_bytes / part_bytes)`` parts, low bytes first.

    Ports
    -----
    beats : In(stream(read_beat_layout(8)))
    parts : Out(stream(unsigned(8 * part_bytes)))
        Combinational from ``beats`` (no register): ``valid`` is
        ``beats.valid``; a beat is taken with its last part.
    parts_m1 : In(16)
        Parts per row minus one; hold it while a command runs.
    restart : In(1)
        Back to the first part of a row (between commands).

    Throughput: one part per cycle.
    """

    def __init__(self, *, part_bytes):
        check_int("part_bytes", part_bytes, 1, _WB - 1)
        if not _is_pow2(part_bytes):
            raise ValueError(f"part_bytes must be a power of two, not {part_bytes!r}")
        self.part_bytes = part_bytes
        super().__init__({
            "beats": In(stream.Signature(read_beat_layout(_WB))),
            "parts": Out(stream.Signature(unsigned(8 * part_bytes))),
            "parts_m1": In(16),
            "restart": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        S = _WB // self.part_bytes
        slot = Signal(range(S))
        part = Signal(16)
        row_end = part == self.parts_m1
        beat_end = row_end | (slot == S - 1)
        m.d.comb += [
            self.parts.valid.eq(self.beats.valid),
            self.parts.payload.eq(self.beats.payload.data.word_select(slot, 8 * self.part_bytes)),
            self.beats.ready.eq(self.parts.ready & beat_end),
        ]
        with m.If(self.parts.valid & self.parts.ready):
            with m.If(row_end):
                m.d.sync += [part.eq(0), slot.eq(0)]
            with m.Else():
                m.d.sync += [part.eq(part + 1), slot.eq(Mux(slot == S - 1, 0, slot + 1))]
        with m.If(self.restart):
            m.d.sync += [part.eq(0), slot.eq(0)]
        return m


class ResultWriter(wiring.Component):
    """Writes the matrix unit's results (tile order: for each N tile, for
    each row m, the tile's channels) as the rows of C: element ``(i, j)`` at
    byte ``c_addr + i * c_stride + j * esize``, ``esize`` 1 (int8) or 4
    (int32, little-endian). Elements are packed into byte-masked word writes;
    a word is written when it is full or the tile's row ends there (so a row
    of a tile may start and end anywhere inside a word: any ``cols``).

    Ports
    -----
    start : In(1)
        Load a command from ``c_addr``, ``c_stride``, ``m``, ``n``, ``int8``
        (same cycle); only while not ``busy``.
    c : In(stream(OutLayout))
        ``m * n`` elements; ``last`` is not looked at.
    mem : Out(MemPortSignature(addr_width, 64))
        Writes only, at most ``depth`` responses outstanding.
    busy : Out(1)
        A write not yet issued, or a response not yet back.
    err : Out(1)
        One pulse per write answered with ``err``.

    Throughput: one element per cycle (a write per 8 int8 / 2 int32 elements).
    """

    def __init__(self, *, addr_width, cols, depth=16):
        check_int("addr_width", addr_width, 1, 40)
        check_int("cols", cols, 1, 64)
        check_int("depth", depth, 1, 256)
        self.addr_width, self.cols, self.depth = addr_width, cols, depth
        super().__init__({
            "start": In(1),
            "c_addr": In(32), "c_stride": In(16), "m": In(16), "n": In(16), "int8": In(1),
            "c": In(stream.Signature(OutLayout)),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=DATA_WIDTH)),
            "busy": Out(1),
            "err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C, D = self.cols, self.depth
        req, resp = self.mem.req, self.mem.resp

        int8 = Signal()
        stride = Signal(16)
        m_m1 = Signal(16)
        tile_step = Signal(16)          # bytes from one N tile to the next: cols * esize
        tile_base = Signal(32)          # byte address of the tile's row 0
        row_addr = Signal(32)           # ... of the current row of the tile
        ba = Signal(32)                 # ... of the next element
        ch, ch_last = Signal(16), Signal(16)    # channel in the tile, tile width - 1
        # channels after the current tile (N - first channel of the next tile), kept
        # ahead so the next tile's width is one compare and one decrement (Fmax)
        left = Signal(17)
        row = Signal(16)
        acc_data = Signal(DATA_WIDTH)
        acc_mask = Signal(_WB)
        out_valid = Signal()
        outstanding = Signal(range(D + 1))
        # outstanding != D, a cycle early into a register (for Fmax: the compare in
        # front of req.valid, then c.ready and the element's word-end test into
        # the write register's enable, was GemmFront's critical path, 102 MHz)
        room = Signal(init=1)
        outstanding_next = Signal.like(outstanding)
        req_go = Signal()

        def width_m1(left):
            return Mux(left >= C, C - 1, left - 1)

        with m.If(self.start):
            m.d.sync += [
                int8.eq(self.int8), stride.eq(self.c_stride), m_m1.eq(self.m - 1),
                tile_step.eq(Mux(self.int8, C, 4 * C)),
                tile_base.eq(self.c_addr), row_addr.eq(self.c_addr), ba.eq(self.c_addr),
                ch.eq(0), ch_last.eq(width_m1(self.n)), left.eq(self.n - C), row.eq(0),
                acc_mask.eq(0),
            ]

        m.d.comb += [
            req.valid.eq(out_valid & room),
            req.payload.we.eq(1),
            req_go.eq(req.valid & req.ready),
            resp.ready.eq(1),
            self.err.eq(resp.valid & resp.payload.err),
            self.busy.eq(out_valid | (outstanding != 0)),
            # an element may complete a word: the write register must be free
            self.c.ready.eq(~out_valid | req_go),
        ]
        m.d.comb += outstanding_next.eq(outstanding + req_go - resp.valid)
        m.d.sync += [outstanding.eq(outstanding_next), room.eq(outstanding_next != D)]
        with m.If(req_go):
            m.d.sync += out_valid.eq(0)

        # The element's bytes at its place in the word.
        lane = ba[:3]
        elem = self.c.payload.data
        new_data = Mux(int8, elem[:8].replicate(_WB), Cat(elem, elem))
        new_mask = Mux(int8, Const(1, _WB) << lane, Const(0xF, _WB) << lane)
        merged = Signal(DATA_WIDTH)
        m.d.comb += merged.eq(Cat(Mux(new_mask[b], new_data[8 * b:8 * b + 8],
                                      acc_data[8 * b:8 * b + 8]) for b in range(_WB)))
        nxt = ba + Mux(int8, 1, 4)
        row_end = ch == ch_last
        with m.If(self.c.valid & self.c.ready):
            with m.If(row_end | (nxt[:3] == 0)):
                m.d.sync += [out_valid.eq(1), req.payload.addr.eq(ba[3:]),
                             req.payload.wdata.eq(merged),
                             req.payload.mask.eq(acc_mask | new_mask), acc_mask.eq(0)]
            with m.Else():
                m.d.sync += [acc_data.eq(merged), acc_mask.eq(acc_mask | new_mask)]
            with m.If(row_end):
                m.d.sync += ch.eq(0)
                with m.If(row == m_m1):
                    m.d.sync += [row.eq(0), left.eq(left - C), ch_last.eq(width_m1(left)),
                                 tile_base.eq(tile_base + tile_step),
                                 row_addr.eq(tile_base + tile_step),
                                 ba.eq(tile_base + tile_step)]
                with m.Else():
                    m.d.sync += [row.eq(row + 1), row_addr.eq(row_addr + stride),
                                 ba.eq(row_addr + stride)]
            with m.Else():
                m.d.sync += [ch.eq(ch + 1), ba.eq(nxt)]
        return m


class GemmFront(wiring.Component):
    """The chip's GEMM unit: executes a GEMM instruction (``ctl.cmd``,
    opcode GEMM) memory to memory through a
    :class:`~seedchip.rtl.gemm.GemmUnit`, as
    :meth:`~seedchip.sim.chip_golden.ChipModel._exec_gemm` does: A (M x K
    int8 rows at ``a_addr + i * a_stride``), B (K x N int8 rows at
    ``b_addr + r * b_stride``), N 16-byte :data:`~seedchip.isa.ParamRecord`
    at ``p_addr`` with PARAMS, C rows at ``c_addr + i * c_stride`` (int8 with
    REQUANT, else int32 little-endian).

    ACC: C_in (M x N int32 at ``c_addr``/``c_stride``) is added before the
    post-processing and C overwritten in place. The matrix unit then runs
    without REQUANT and RELU (PARAMS adds the bias: the sum wraps mod 2**32
    whatever the order); a :class:`~seedchip.rtl.chip_gemm_acc.CinReader`
    reads C_in in the results' tile order and an
    :class:`~seedchip.rtl.chip_gemm_acc.AccJoin` adds each addend and applies
    the multiplier/shift it kept per channel while the params went to the
    matrix unit, and ReLU. An element is written only after its addend was
    read, and no output overlaps an addend not yet read (see the module).

    Parameters: ``config`` (a :class:`~seedchip.config.ChipConfig`:
    ``in_width`` 8, ``rows`` and ``cols`` powers of two), ``addr_width`` (word
    address bits of the chip memory), ``mem_bytes`` (its size).

    Ports
    -----
    ctl : In(UnitPortSignature(GEMM_UNIT_CMD))
        ``cmd`` taken while idle; one ``done`` per command after its last
        write was acknowledged: NONE; MEM_ERROR (detail ``Unit.GEMM``, index
        0: a response carried ``err``; the command still runs to its end, its
        writes then undefined); GEMM_ERROR (detail: the
        :class:`~seedchip.protocol.GemmError` of a command the matrix unit
        refused, its operands, C_in included, read and dropped); ILLEGAL (detail OPCODE) for
        an opcode other than GEMM. ``mem_stall``: a memory port's request
        waits (``valid & ~ready``), or the matrix unit waits for an A, B or
        params word that has not arrived, or only write responses are still
        owed, or (ACC) a result waits for its addend. ``abort`` is not used.
    mem : Out(MemPortSignature(addr_width, 64)).array(N_PORTS)
        ``PORT_A``, ``PORT_B``, ``PORT_PARAMS`` (reads), ``PORT_C`` (writes),
        ``PORT_CIN`` (reads of C_in, ACC only).

    Timing: A and B are read concurrently at up to one word per cycle each
    (the matrix unit takes an A and a B word per cycle: ``rows`` resp.
    ``cols`` bytes), the parameters at a word per cycle beside them; the
    results are written while the next N tile computes (one element per
    cycle). Memory to memory adds to the matrix unit's own time only the
    read latency before the first words and the last writes' latency after
    the last result: 6 cycles with a one-cycle memory (command accepted to
    done, 8x8 array: 64x64x64 5324 cycles, 76.9 % MAC utilization; 128^3
    36170, 90.6 %; 256^3 273482, 95.9 %). ACC reads C_in (half a word per
    result) ahead of the results, beside the writes, and adds AccJoin's
    latency once, at the end: 20 cycles with a one-cycle memory (64^3 int8:
    5861 cycles against 5841 without ACC).
    """

    #: The ``mem`` ports whose client holds ``resp.ready`` at 1 (its own
    #: credited FIFO has room for every response it asked for): the
    #: chip's arbiter passes their responses through a register, not a
    #: FIFO (:class:`~seedchip.rtl.arbiter.MemArbiter`'s ``sinks``).
    resp_sinks = tuple(range(N_PORTS))   # the readers and the writer

    def __init__(self, *, config, addr_width, mem_bytes):
        check_type("config", config, ChipConfig)
        if config.in_width != 8:
            raise ValueError(f"config.in_width must be 8 (int8 operands in memory), "
                             f"not {config.in_width!r}")
        for name in ("rows", "cols"):
            if not _is_pow2(getattr(config, name)):
                raise ValueError(f"config.{name} must be a power of two, "
                                 f"not {getattr(config, name)!r}")
        check_int("addr_width", addr_width, 1, 40)
        self.config = config
        self.addr_width = addr_width
        self.mem_bytes = check_mem_bytes(mem_bytes, addr_width, DATA_WIDTH)
        super().__init__({
            "ctl": In(UnitPortSignature(GEMM_UNIT_CMD)),
            "mem": Out(MemPortSignature(addr_width=addr_width, data_width=DATA_WIDTH))
            .array(N_PORTS),
        })

    def _operand(self, m, name, size, depth):
        """A reader for an operand stream of ``size``-byte words; a
        :class:`LaneSplitter` after it when the word is below 8 bytes.
        Returns (reader, the word stream, the splitter or None)."""
        rd = RowReader(addr_width=self.addr_width, data_width=DATA_WIDTH,
                       beat_bytes=max(size, _WB), depth=depth)
        m.submodules[f"{name}_reader"] = rd
        if size >= _WB:
            return rd, rd.beats, None
        m.submodules[f"{name}_split"] = sp = LaneSplitter(part_bytes=size)
        wiring.connect(m, rd.beats, sp.beats)
        return rd, sp.parts, sp

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        ctl = self.ctl

        m.submodules.gemm = gemm = GemmUnit(config=cfg)
        ra, a_words, a_split = self._operand(m, "a", R, 16)
        rb, b_words, b_split = self._operand(m, "b", C, 16)
        rp = RowReader(addr_width=self.addr_width, data_width=DATA_WIDTH,
                       beat_bytes=isa.PARAM_BYTES, depth=8)
        m.submodules.p_reader = rp
        m.submodules.writer = wr = ResultWriter(addr_width=self.addr_width, cols=C)
        m.submodules.cin = cr = CinReader(addr_width=self.addr_width, cols=C)
        m.submodules.acc = aj = AccJoin(max_n=cfg.max_n, out_width=cfg.in_width)
        readers = (ra, rb, rp)
        for port, client in zip(self.mem, (ra, rb, rp, wr, cr)):
            wiring.connect(m, wiring.flipped(port), client.mem)

        # -- command ------------------------------------------------------------------
        busy = Signal()                 # a command is running
        done_valid = Signal()
        op = Signal(isa.GEMM_OPERANDS)  # the running command's operands and flags
        flags = Signal(isa.GemmFlags)
        mem_err = Signal()
        a_cv, b_cv, p_cv, g_cv = (Signal(name=f"{n}_cmd_valid") for n in "abpg")
        cmd = ctl.cmd.payload
        accept = ctl.cmd.valid & ctl.cmd.ready
        is_gemm = cmd.opcode == Opcode.GEMM
        g_op, g_fl = cmd.operands.gemm, cmd.flags

        m.d.comb += ctl.cmd.ready.eq(~busy & ~done_valid)
        with m.If(accept):
            m.d.sync += [op.eq(g_op), flags.eq(cmd.flags), mem_err.eq(0)]
            with m.If(is_gemm):
                m.d.sync += [busy.eq(1), a_cv.eq(1), b_cv.eq(1), g_cv.eq(1),
                             p_cv.eq(g_fl.params)]
        m.d.comb += [
            wr.start.eq(accept & is_gemm),
            wr.c_addr.eq(g_op.c_addr), wr.c_stride.eq(g_op.c_stride),
            wr.m.eq(g_op.m), wr.n.eq(g_op.n), wr.int8.eq(g_fl.requant & g_fl.params),
            cr.start.eq(accept & is_gemm & g_fl.acc), aj.start.eq(accept),
            cr.c_addr.eq(g_op.c_addr), cr.c_stride.eq(g_op.c_stride),
            cr.m.eq(g_op.m), cr.n.eq(g_op.n),
            aj.requant.eq(flags.requant & flags.params), aj.relu.eq(flags.relu),
        ]
        # parts per row of A and B for the splitters: ceil(K / rows), ceil(N / cols)
        for split, length, size in ((a_split, g_op.k, R), (b_split, g_op.n, C)):
            if split is not None:
                parts_m1 = Signal(16)
                with m.If(accept):
                    m.d.sync += parts_m1.eq(((length + size - 1) >> exact_log2(size)) - 1)
                m.d.comb += [split.parts_m1.eq(parts_m1), split.restart.eq(accept)]

        # -- the readers' and the matrix unit's commands ----------------------------------
        for rd, cv, base, stride, rows, row_bytes in (
                (ra, a_cv, op.a_addr, op.a_stride, op.m, op.k),
                (rb, b_cv, op.b_addr, op.b_stride, op.k, op.n),
                (rp, p_cv, op.p_addr, isa.PARAM_BYTES, op.n, isa.PARAM_BYTES)):
            # A waits for all of B (which the matrix unit buffers whole): on the
            # SDRAM, A and B read word by word in turn would keep closing each
            # other's rows (both can sit in one bank); one after the other they
            # stream page hits. Nothing is lost on a faster memory: the
            # memory port serves one word a cycle either way.
            valid = cv & ~b_cv & ~rb.busy if rd is ra else cv
            m.d.comb += [rd.cmd.valid.eq(valid), rd.cmd.payload.base.eq(base),
                         rd.cmd.payload.stride.eq(stride), rd.cmd.payload.rows.eq(rows),
                         rd.cmd.payload.row_bytes.eq(row_bytes)]
            with m.If(rd.cmd.valid & rd.cmd.ready):
                m.d.sync += cv.eq(0)
        m.d.comb += [
            gemm.cmd.valid.eq(g_cv),
            gemm.cmd.payload.m.eq(op.m), gemm.cmd.payload.k.eq(op.k),
            gemm.cmd.payload.n.eq(op.n), gemm.cmd.payload.params.eq(flags.params),
            # ACC: raw int32 (+ bias) from the matrix unit, the rest after the add
            gemm.cmd.payload.requant.eq(flags.requant & ~flags.acc),
            gemm.cmd.payload.relu.eq(flags.relu & ~flags.acc),
        ]
        with m.If(gemm.cmd.valid & gemm.cmd.ready):
            m.d.sync += g_cv.eq(0)

        # A command the matrix unit refused (its busy falls with an error) takes
        # nothing: its operands are read anyway and dropped here.
        refused = busy & ~g_cv & ~gemm.busy & (gemm.error != GemmError.NONE)

        # -- operand streams ---------------------------------------------------------------
        # A and B through a skid buffer each, for Fmax: the matrix unit's ready
        # (its command stage's phase) ran on through the reader's FIFO pop into
        # its word counters, the unit's critical path (92 MHz)
        prec = isa.ParamRecord(rp.beats.payload.data)
        skids = []
        for name, words, split, port in (("a", a_words, a_split, gemm.a),
                                         ("b", b_words, b_split, gemm.b)):
            m.submodules[f"{name}_skid"] = skid = SkidBuffer(shape=port.payload.shape())
            skids.append(skid)
            m.d.comb += [
                skid.i.valid.eq(words.valid),
                skid.i.payload.eq(words.payload.data if split is None else words.payload),
                words.ready.eq(skid.i.ready),
                port.valid.eq(skid.o.valid),
                port.payload.eq(skid.o.payload),
                skid.o.ready.eq(port.ready | refused),
            ]
        m.d.comb += [
            gemm.params.valid.eq(rp.beats.valid),
            gemm.params.payload.bias.eq(prec.bias),
            gemm.params.payload.multiplier.eq(prec.multiplier),
            gemm.params.payload.shift.eq(prec.shift),
            rp.beats.ready.eq(gemm.params.ready | refused),
            aj.p_we.eq(gemm.params.valid & gemm.params.ready),
            aj.p_scale.multiplier.eq(prec.multiplier), aj.p_scale.shift.eq(prec.shift),
        ]

        # -- results: to the writer, or through the ACC join ---------------------------------
        acc = flags.acc
        m.d.comb += [
            aj.res.valid.eq(gemm.c.valid & acc), aj.res.payload.eq(gemm.c.payload),
            aj.cin.valid.eq(cr.parts.valid & ~refused), aj.cin.payload.eq(cr.parts.payload),
            cr.parts.ready.eq(aj.cin.ready | refused),
            gemm.c.ready.eq(Mux(acc, aj.res.ready, wr.c.ready)),
            wr.c.valid.eq(Mux(acc, aj.out.valid, gemm.c.valid)),
            wr.c.payload.eq(Mux(acc, aj.out.payload, gemm.c.payload)),
            aj.out.ready.eq(wr.c.ready & acc),
        ]

        read_err = (_any(rd.beats.valid & rd.beats.ready & rd.beats.payload.err for rd in readers)
                    | cr.err)
        with m.If(read_err | wr.err):
            m.d.sync += mem_err.eq(1)

        # -- done --------------------------------------------------------------------------
        finished = (busy & ~a_cv & ~b_cv & ~p_cv & ~g_cv & ~gemm.busy & ~wr.busy
                    & ~_any(rd.busy for rd in readers) & ~_any(sk.o.valid for sk in skids)
                    & ~cr.busy & ~aj.busy)
        dn = ctl.done.payload
        with m.If(finished):
            m.d.sync += [busy.eq(0), done_valid.eq(1), dn.index.eq(0), dn.bag.eq(0)]
            with m.If(gemm.error != GemmError.NONE):
                m.d.sync += [dn.error.eq(ChipError.GEMM_ERROR), dn.detail.eq(gemm.error)]
            with m.Elif(mem_err | read_err | wr.err):
                m.d.sync += [dn.error.eq(ChipError.MEM_ERROR), dn.detail.eq(Unit.GEMM.value)]
            with m.Else():
                m.d.sync += [dn.error.eq(ChipError.NONE), dn.detail.eq(0)]
        with m.If(accept & ~is_gemm):
            m.d.sync += [done_valid.eq(1), dn.error.eq(ChipError.ILLEGAL),
                         dn.detail.eq(Operand.OPCODE.value), dn.index.eq(0), dn.bag.eq(0)]
        m.d.comb += ctl.done.valid.eq(done_valid)
        with m.If(ctl.done.valid & ctl.done.ready):
            m.d.sync += done_valid.eq(0)

        # -- mem_stall ---------------------------------------------------------------------
        starving = ((gemm.a.ready & ~gemm.a.valid) | (gemm.b.ready & ~gemm.b.valid)
                    | (gemm.params.ready & ~gemm.params.valid))
        m.d.comb += ctl.mem_stall.eq(
            busy & (_any(p.req.valid & ~p.req.ready for p in self.mem)
                    | (gemm.busy & starving) | aj.starving | (~gemm.busy & wr.busy)))
        return m


def _any(bits):
    out = Const(0, 1)
    for b in bits:
        out = out | b
    return out
