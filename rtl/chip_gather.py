"""The chip's GATHER unit: one GATHER instruction from memory to memory on
the gather engine (:class:`~seedchip.rtl.gather.GatherEngine`).

The spec is :meth:`seedchip.sim.chip_golden.ChipModel._exec_gather`, error
order included (see :mod:`seedchip.isa`, "GATHER checks what depends on data
while it runs"). The unit

1. reads the ``n_tables`` descriptor records at ``desc_addr`` (one 16-byte
   beat of a :class:`~seedchip.rtl.dma.RowReader` each), checks each
   (``BAD_DESC``, then the table's output extent: ``ADDR_RANGE OUT_ADDR``)
   and writes it to the engine;
2. starts the engine's batch and turns the offsets (read as they are needed)
   into ``bags`` items, checking bag ``i`` when ``offsets[i+1]`` arrives in
   the model's order: ``BAD_OFFSET``, ``BAG_TOO_LONG``, the index array up to
   ``offsets[i+1]`` inside memory (``ADDR_RANGE IDX_ADDR``), the weights
   likewise (``W_ADDR``). The first bag that fails is not given to the
   engine: its item becomes the batch's final one (``last``, carrying
   ``offsets[i]``), so the engine runs exactly the bags before it, and the
   bag's error is reported unless the engine reports one of an earlier bag.
   ``offsets[0] != 0`` gives the engine an empty batch and ``BAD_OFFSET``;
3. feeds the engine's ``indices`` from the index (and weight) arrays, read no
   further than the offsets accepted so far allow;
4. writes every pooled bag to ``out_addr + b * out_stride + t * out_tstride``
   (int8 with REQUANT, else int32; :class:`~seedchip.rtl.chip_gather_io.PooledWriter`,
   one word per cycle, bag after bag);
5. reports the engine's error, if any (then pulses its ``clear``), else its
   own, once every write is acknowledged.

Memory ports (``mem[i]``, :data:`N_PORTS`): see :data:`PORT_NAMES`.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import isa
from ..checks import check_type
from ..emb_protocol import GatherError
from ..gather_params import GatherParams
from ..isa import ChipError, Operand, Unit
from .chip_gather_io import DATA_WIDTH, IndexFeeder, PooledWriter, WordReader
from .control import GATHER_UNIT_CMD, UnitDoneLayout, UnitPortSignature
from .control_fetch import check_mem_bytes
from .dma import RowReader
from .gather import GatherEngine
from .memport import MemPortSignature

__all__ = ["GatherFront", "N_PORTS", "PORT_NAMES", "DATA_WIDTH"]

#: What each element of ``GatherFront.mem`` is, by index.
PORT_NAMES = ("engine", "desc", "offsets", "indices", "weights", "out")
#: Memory ports of the unit.
N_PORTS = len(PORT_NAMES)
P_ENGINE, P_DESC, P_OFF, P_IDX, P_W, P_OUT = range(N_PORTS)
#: The ports whose client holds ``resp.ready`` at 1 (:attr:`GatherFront.resp_sinks`):
#: all but the engine's row reads, which its gearbox takes as it can.
RESP_SINKS = (P_DESC, P_OFF, P_IDX, P_W, P_OUT)


class GatherFront(wiring.Component):
    """The GATHER unit (module docstring).

    Parameters
    ----------
    params : GatherParams
        The engine's (``data_width`` must be 64, ``index_width`` 32;
        ``addr_width`` is the chip memory's word-address width; ``n_tables``,
        ``max_dim`` and ``max_bag`` are the chip's limits).
    mem_bytes : int
        The chip memory's size in bytes.

    Ports
    -----
    ctl : In(UnitPortSignature(GATHER_UNIT_CMD))
        ``cmd`` taken while idle; one ``done`` per command after all its
        writes were acknowledged; ``mem_stall``; ``abort`` is ignored.
    mem : Out(MemPortSignature(addr_width, 64)).array(N_PORTS)
        0 engine (table rows), 1 descriptor records (RowReader), 2 offsets,
        3 indices, 4 weights (WordReaders), 5 pooled output (PooledWriter).

    Cycles: about 9 per table for the descriptors (one engine descriptor
    write every 4 cycles, checks in 4: the table's extent takes a multiply
    and an add cycle for Fmax), then the engine's pace as long as the
    output keeps up (one memory word per cycle: int8 one word per pooled
    beat, int32 four), then the engine's drain and the last writes' latency.
    Measured with an ideal memory (every port ready, latency 1), 4 tables x
    8 samples, SUM: the engine's busy time is within 0.6 % of the bare
    engine's, so the unit's rate is the engine's minus a fixed ~36 cycles a
    command (4 tables): bags of 16 lookups, dim 8: 0.329 vs 0.336 lookups
    per cycle; dim 32: 0.240 vs 0.244; dim 64: 0.122 vs 0.123 (int8 or
    int32 alike); bags of one lookup, dim 8: 0.219 vs 0.286 (engine busy 114
    vs 112 cycles for 32 bags).
    """

    #: The ``mem`` ports whose client holds ``resp.ready`` at 1 (its own
    #: credited FIFO has room for every response it asked for): the
    #: chip's arbiter passes their responses through a register, not a
    #: FIFO (:class:`~seedchip.rtl.arbiter.MemArbiter`'s ``sinks``).
    resp_sinks = RESP_SINKS

    def __init__(self, *, params, mem_bytes):
        self.params = check_type("params", params, GatherParams)
        if params.data_width != DATA_WIDTH:
            raise ValueError(f"params.data_width must be {DATA_WIDTH} (the chip memory word), "
                             f"not {params.data_width!r}")
        if params.index_width != 32:
            raise ValueError(f"params.index_width must be 32 (the ISA's u32 indices), "
                             f"not {params.index_width!r}")
        self.addr_width = params.addr_width
        self.mem_bytes = check_mem_bytes(mem_bytes, params.addr_width, DATA_WIDTH)
        self.engine = GatherEngine(params)
        super().__init__({
            "ctl": In(UnitPortSignature(GATHER_UNIT_CMD)),
            "mem": Out(MemPortSignature(addr_width=params.addr_width,
                                        data_width=DATA_WIDTH)).array(N_PORTS),
        })

    def _desc_states(self, m, s):
        """States DESC_WAIT .. DESC_WRITE: per table, its descriptor record read,
        checked as the golden model does (BAD_DESC, then its output extent:
        ADDR_RANGE OUT_ADDR), written to the engine; on to CMD after the last."""
        p, MB = self.params, self.mem_bytes
        drd, eng, op, rec, pitch, t, tacc = s.drd, s.eng, s.op, s.rec, s.pitch, s.t, s.tacc
        out_ext0, out_ext, tab_mul, tab_ext = s.out_ext0, s.out_ext, s.tab_mul, s.tab_ext
        out_mul, es4, want_data, fault, dim_w = s.out_mul, s.es4, s.want_data, s.fault, s.dim_w
        with m.State("DESC_WAIT"):
            m.d.comb += [drd.beats.ready.eq(1), want_data.eq(~drd.beats.valid)]
            m.d.sync += out_ext0.eq(op.out_addr + out_mul)
            with m.If(drd.beats.valid):
                # table_pitch(dim) with the record: a dim above max_dim fails
                # anyway, so the pitch needs only max_dim's bits
                dim = isa.DescRecord(drd.beats.payload.data).dim
                m.d.sync += [rec.eq(drd.beats.payload.data),
                             pitch.eq(((dim[:p.max_dim.bit_length()] + 7) >> 3) << 3)]
                m.next = "DESC_CHECK"
        with m.State("DESC_CHECK"):
            # tab_ext = base + rows * pitch over three cycles (the pitch with
            # the record, then the multiply, then the add): in one, the pitch
            # adder, the DSP multiply and two carry chains made the unit's
            # critical path (68 MHz)
            m.d.sync += [tab_mul.eq(rec.rows * pitch),
                         out_ext.eq(out_ext0 + tacc + Mux(es4, rec.dim << 2, rec.dim))]
            m.next = "DESC_EXT"
        with m.State("DESC_EXT"):
            m.d.sync += tab_ext.eq(rec.base + tab_mul)
            m.next = "DESC_DECIDE"
        with m.State("DESC_DECIDE"):
            bad = ((rec.rows == 0) | (rec.dim == 0) | (rec.dim > p.max_dim)
                   | (rec.base[:3] != 0) | (tab_ext > MB))
            with m.If(bad):
                m.d.sync += fault(ChipError.GATHER_ERROR, GatherError.BAD_DESC, 0, t)
                m.next = "FLUSH"
            with m.Elif(out_ext > MB):
                m.d.sync += fault(ChipError.ADDR_RANGE, Operand.OUT_ADDR, 0, t)
                m.next = "FLUSH"
            with m.Else():
                m.d.comb += dim_w.en.eq(1)
                m.next = "DESC_WRITE"
        with m.State("DESC_WRITE"):
            m.d.comb += eng.desc.valid.eq(1)
            with m.If(eng.desc.ready):
                m.d.sync += [t.eq(t + 1), tacc.eq(tacc + op.out_tstride)]
                with m.If(t == op.n_tables - 1):
                    m.next = "CMD"
                with m.Else():
                    m.next = "DESC_WAIT"

    def _bag_step(self, m, s):
        """State RUN: the next offset becomes bag item k - 1 (with the chip's own
        checks of bag k - 1 in the golden model's order), or ends the batch there.

        Each check is one compare of ``hi`` against registers (for Fmax: an add
        or subtract then a compare, two carry chains in a row, made the unit's
        critical path, 77 MHz): ``hi - lo > max_bag`` (given ``hi >= lo``) as
        ``hi > bag_hi_max = lo + max_bag``, kept with ``lo``; ``idx_addr + 4 hi >
        MB`` as ``idx_over | (hi > idx_lim)``, ``idx_over = idx_addr > MB``,
        ``idx_lim = (MB - idx_addr) >> 2`` (floor: exact), and ``w_addr + hi >
        MB`` as ``w_over | (hi > w_lim)``, ``w_lim = MB - w_addr``, these set in
        PREP."""
        p = self.params
        owd, free, k, prev, emit, fault, op = s.owd, s.free, s.k, s.prev, s.emit, s.fault, s.op
        weighted, btab, bsmp, idx_limit, n_bags = (s.weighted, s.btab, s.bsmp, s.idx_limit,
                                                  s.n_bags)
        bag_hi_max, batch_m1 = s.bag_hi_max, s.batch_m1
        idx_over, idx_lim, w_over, w_lim = s.idx_over, s.idx_lim, s.w_over, s.w_lim
        hi, lo = s.cur, prev
        with m.If(owd.valid & free):
            with m.If(k == 0):
                with m.If(hi != 0):
                    m.d.sync += [*emit(0, 0, 1),
                                 *fault(ChipError.GATHER_ERROR, GatherError.BAD_OFFSET,
                                        0, hi)]
                    m.next = "ENGWAIT"
                with m.Else():
                    m.d.sync += [prev.eq(0), bag_hi_max.eq(p.max_bag), k.eq(1)]
            with m.Else():
                backwards, too_long = hi < lo, hi > bag_hi_max
                idx_oob, w_oob = idx_over | (hi > idx_lim), weighted & (w_over | (hi > w_lim))
                with m.If(backwards):
                    m.d.sync += fault(ChipError.GATHER_ERROR, GatherError.BAD_OFFSET,
                                      k - 1, hi)
                with m.Elif(too_long):
                    m.d.sync += fault(ChipError.GATHER_ERROR, GatherError.BAG_TOO_LONG,
                                      k - 1, (hi - lo)[:32])
                with m.Elif(idx_oob):
                    m.d.sync += fault(ChipError.ADDR_RANGE, Operand.IDX_ADDR, k - 1, hi)
                with m.Elif(w_oob):
                    m.d.sync += fault(ChipError.ADDR_RANGE, Operand.W_ADDR, k - 1, hi)
                with m.If(backwards | too_long | idx_oob | w_oob):
                    m.d.sync += emit(btab, lo, 1)
                    m.next = "ENGWAIT"
                with m.Else():
                    m.d.sync += [*emit(btab, lo, 0), prev.eq(hi), bag_hi_max.eq(hi + p.max_bag),
                                 idx_limit.eq(hi), k.eq(k + 1)]
                    with m.If(bsmp == batch_m1):
                        m.d.sync += [bsmp.eq(0), btab.eq(btab + 1)]
                    with m.Else():
                        m.d.sync += bsmp.eq(bsmp + 1)
                    with m.If(k == n_bags):
                        m.next = "FINAL"

    def elaborate(self, platform):
        m = Module()
        p, AW = self.params, self.addr_width
        m.submodules.engine = eng = self.engine
        m.submodules.desc_rd = drd = RowReader(addr_width=AW, data_width=DATA_WIDTH,
                                               beat_bytes=isa.DESC_BYTES, depth=4)
        m.submodules.off_rd = ord_ = WordReader(addr_width=AW)
        m.submodules.idx_feed = ifd = IndexFeeder(addr_width=AW)
        m.submodules.out_wr = owr = PooledWriter(addr_width=AW)
        for i, port in enumerate((eng.mem, drd.mem, ord_.mem, ifd.idx_mem, ifd.w_mem,
                                     owr.mem)):
            wiring.connect(m, port, wiring.flipped(self.mem[i]))
        m.submodules.dims = dims = memory.Memory(shape=unsigned(16), depth=p.n_tables, init=[])
        dim_w = dims.write_port()
        dim_r = dims.read_port(domain="comb")
        dim_rn = dims.read_port(domain="comb")
        m.d.comb += [dim_r.addr.eq(owr.dim_addr), owr.dim_data.eq(dim_r.data),
                     dim_rn.addr.eq(owr.dim_next_addr), owr.dim_next_data.eq(dim_rn.data)]

        cmd_in, done = self.ctl.cmd, self.ctl.done
        c = Signal(GATHER_UNIT_CMD)
        op = c.operands
        es4 = ~c.flags.requant                      # int32 output

        # the error to report (first found), and a memory error seen by a reader
        err = Signal(UnitDoneLayout)
        err_v = Signal()
        mem_err = Signal()

        def fault(error, detail, bag, index):
            return [err_v.eq(1), err.error.eq(error), err.detail.eq(detail), err.bag.eq(bag),
                    err.index.eq(index)]

        n_bags = Signal(24)                         # T * B
        out_ext0 = Signal(34)                       # out_addr + (B - 1) * out_stride
        t = Signal(8)                               # descriptor being checked / written
        tacc = Signal(24)                           # t * out_tstride
        out_mul = Signal(34)                        # (B - 1) * out_stride
        rec = Signal(isa.DescRecord)
        pitch = Signal(p.max_dim.bit_length() + 1)  # table_pitch(dim), of rec
        tab_mul = Signal(50)                        # rows * pitch
        tab_ext = Signal(50)
        out_ext = Signal(36)

        # -- offsets -> bags items -------------------------------------------------------------
        k = Signal(25)                              # offset index taken next
        prev = Signal(32)                           # offsets[k - 1]
        bag_hi_max = Signal(33)                     # prev + max_bag: where the next bag may end
        # bag checks against per-command limits (_bag_step), set in PREP
        idx_over = Signal()                         # idx_addr > MB
        idx_lim = Signal(range(self.mem_bytes // 4 + 1))  # (MB - idx_addr) >> 2 (if not over)
        w_over = Signal()                           # w_addr > MB
        w_lim = Signal(range(self.mem_bytes + 1))   # MB - w_addr (if not over)
        batch_m1 = Signal(17)                       # batch - 1
        btab = Signal(8)                            # table, sample of bag k - 1
        bsmp = Signal(16)
        bag = eng.bags
        idx_limit = Signal(32)                      # indices the engine will consume so far
        owd = ord_.words
        cur = Mux(k[0], owd.payload.data[32:], owd.payload.data[:32])
        free = ~bag.valid | bag.ready
        with m.If(bag.valid & bag.ready):
            m.d.sync += bag.valid.eq(0)

        def emit(table, offset, last):
            return [bag.valid.eq(1), bag.payload.table.eq(table), bag.payload.offset.eq(offset),
                    bag.payload.last.eq(last)]

        # -- indices (and weights) -> engine ------------------------------------------------------
        weighted = c.flags.weighted
        feeding = Signal()                          # readers running (a command's data phase)
        # offset words the reader may fetch: (n_bags + 2) >> 1, a cycle late
        # (an add ahead of the reader's compare was the unit's critical path,
        # 81.5 MHz); 0 while PREP sets n_bags, and a limit may grow late
        off_limit = Signal(24)
        m.d.comb += [
            ifd.limit.eq(idx_limit), ifd.weighted.eq(weighted),
            ord_.limit.eq(off_limit),
            ifd.run.eq(feeding), ord_.run.eq(feeding),
            ifd.idx_base.eq(op.idx_addr >> 3), ifd.w_base.eq(op.w_addr >> 3),
            ord_.base.eq(op.off_addr >> 3),
        ]
        wiring.connect(m, ifd.indices, eng.indices)
        # (the readers' and the writer's flags are fresh once feeding: started in PREP)
        with m.If(feeding & (ifd.err | ord_.err | owr.err
                             | (drd.beats.valid & drd.beats.ready & drd.beats.payload.err))):
            m.d.sync += mem_err.eq(1)

        # -- engine side ---------------------------------------------------------------------
        ed = eng.desc.payload
        m.d.comb += [
            eng.cmd.payload.mode.eq(c.flags.mode), eng.cmd.payload.bounds.eq(c.flags.bounds),
            eng.cmd.payload.weighted.eq(c.flags.weighted),
            eng.cmd.payload.requant.eq(c.flags.requant),
            ed.table.eq(t), ed.base.eq(rec.base >> 3), ed.rows.eq(rec.rows), ed.dim.eq(rec.dim),
            ed.multiplier.eq(rec.multiplier), ed.shift.eq(rec.shift),
        ]
        wiring.connect(m, eng.pooled, owr.pooled)
        m.d.comb += [
            owr.out_addr.eq(op.out_addr), owr.out_stride.eq(op.out_stride),
            owr.out_tstride.eq(op.out_tstride), owr.batch.eq(op.batch),
            owr.requant.eq(c.flags.requant),
            dim_w.addr.eq(t), dim_w.data.eq(rec.dim),
            drd.cmd.payload.base.eq(op.desc_addr), drd.cmd.payload.stride.eq(isa.DESC_BYTES),
            drd.cmd.payload.rows.eq(op.n_tables), drd.cmd.payload.row_bytes.eq(isa.DESC_BYTES),
        ]

        want_data = Signal()
        m.d.sync += off_limit.eq((n_bags + 2) >> 1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += cmd_in.ready.eq(1)
                with m.If(cmd_in.valid):
                    m.d.sync += [c.eq(cmd_in.payload), err_v.eq(0), err.eq(0), mem_err.eq(0),
                                 t.eq(0), tacc.eq(0), k.eq(0), idx_limit.eq(0),
                                 btab.eq(0), bsmp.eq(0)]
                    m.next = "PREP"
            with m.State("PREP"):
                m.d.sync += off_limit.eq(0)
                m.d.comb += [ord_.start.eq(1), ifd.start.eq(1),
                             owr.start.eq(1), drd.cmd.valid.eq(1)]
                # out_ext0's multiply here, its add in DESC_WAIT (never taken in
                # the same cycle): a multiply and two adds in one cycle were
                # below 100 MHz
                MB = self.mem_bytes
                m.d.sync += [n_bags.eq(op.n_tables * op.batch),
                             out_mul.eq((op.batch - 1) * op.out_stride),
                             idx_over.eq(op.idx_addr > MB), idx_lim.eq((MB - op.idx_addr) >> 2),
                             w_over.eq(op.w_addr > MB), w_lim.eq(MB - op.w_addr),
                             batch_m1.eq(op.batch - 1)]
                with m.If(drd.cmd.ready):
                    # the readers start (prefetching offsets) with the descriptors
                    m.d.sync += feeding.eq(1)
                    m.next = "DESC_WAIT"
            self._desc_states(m, SimpleNamespace(
                drd=drd, eng=eng, op=op, rec=rec, pitch=pitch, t=t, tacc=tacc,
                out_ext0=out_ext0, out_ext=out_ext, tab_mul=tab_mul, tab_ext=tab_ext,
                out_mul=out_mul, es4=es4, want_data=want_data, fault=fault, dim_w=dim_w))
            with m.State("CMD"):
                m.d.comb += eng.cmd.valid.eq(1)
                with m.If(eng.cmd.ready):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [owd.ready.eq(owd.valid & free & k[0]), want_data.eq(~owd.valid)]
                self._bag_step(m, SimpleNamespace(
                    owd=owd, free=free, k=k, cur=cur, prev=prev, emit=emit, fault=fault, op=op,
                    weighted=weighted, btab=btab, bsmp=bsmp, idx_limit=idx_limit,
                    n_bags=n_bags, bag_hi_max=bag_hi_max, batch_m1=batch_m1,
                    idx_over=idx_over, idx_lim=idx_lim, w_over=w_over, w_lim=w_lim))
            with m.State("FINAL"):
                with m.If(free):
                    m.d.sync += emit(0, prev, 1)
                    m.next = "ENGWAIT"
            with m.State("ENGWAIT"):
                # the final item taken, every index given, the engine drained, the writes acknowledged
                with m.If(~bag.valid & ifd.given & ~eng.busy & ~owr.busy
                          & ~eng.pooled.valid):
                    with m.If(eng.error != GatherError.NONE):
                        m.d.comb += eng.clear.eq(1)
                        with m.If(eng.error == GatherError.MEM_ERROR):
                            m.d.sync += fault(ChipError.MEM_ERROR, Unit.GATHER.value, 0, 0)
                        with m.Else():
                            m.d.sync += fault(ChipError.GATHER_ERROR, eng.error, eng.error_bag,
                                              eng.error_index)
                    m.next = "FLUSH"
            with m.State("FLUSH"):
                m.d.comb += drd.beats.ready.eq(1)
                m.d.sync += feeding.eq(0)
                with m.If(~feeding & ~ord_.busy & ~ifd.busy & ~drd.busy):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += done.valid.eq(1)
                with m.If(mem_err):
                    m.d.comb += [done.payload.error.eq(ChipError.MEM_ERROR),
                                 done.payload.detail.eq(Unit.GATHER.value)]
                with m.Elif(err_v):
                    m.d.comb += done.payload.eq(err)
                with m.If(done.ready):
                    m.next = "IDLE"

        # -- cycle counters' stall bit ------------------------------------------------------
        stall = 0
        for port in self.mem:
            stall = stall | (port.req.valid & ~port.req.ready)
        # or waiting for read data it needs: a descriptor, an offset, an index or weight
        m.d.comb += self.ctl.mem_stall.eq(stall | ifd.stall | want_data)
        return m
