"""Board exerciser of the gather engine: LFSR bags over the SDRAM, checksum out.

Until the host link exists, the board feeds :class:`~seedchip.rtl.gather.GatherEngine`
from pattern generators, as the matrix unit's :class:`~seedchip.boards.top.Exerciser`
does, so the whole engine is built, placed and timed and does real lookups on
the board's SDRAM:

* one descriptor at start: table 0 over the first ``2**rows_log2`` rows of
  ``dim`` bytes (default: the engine's ``max_dim``) from address 0 (whatever the memory holds there: on the ULX3S
  the SDRAM self test's patterns);
* then batches forever, one after another, pooling mode SUM, MEAN, MAX in
  turn, bounds mode CLAMP: ``bags_per_batch`` bags of 0..15 random indices
  each (uniform over the table; one in 32 is all ones, out of range, so the
  clamp path runs too);
* every pooled beat is folded into ``checksum``; ``bags`` counts bags out,
  ``lookups`` and ``clamped`` are the engine's counters; an engine error
  (there should be none) sets ``error_seen`` and is cleared so the engine
  keeps running.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..emb_protocol import BoundsMode, GatherError, PoolMode
from ..gather_params import GatherParams
from ..rtl.gather import GatherEngine
from ..rtl.lfsr import Lfsr
from ..rtl.memport import MemPortSignature

__all__ = ["GatherExerciser"]


class GatherExerciser(wiring.Component):
    """A :class:`GatherEngine` (of :class:`~seedchip.gather_params.GatherParams`
    ``engine``) driven by LFSRs.

    Ports
    -----
    mem : Out(MemPortSignature)
        The engine's memory port.
    checksum : Out(32)
    bags, lookups, clamped : Out(32)
    error_seen : Out(1)
    """

    def __init__(self, *, engine: GatherParams, rows_log2=16, dim=None, bags_per_batch=16):
        self._engine = probe = GatherEngine(engine)
        if dim is None:
            dim = engine.max_dim
        if not isinstance(rows_log2, int) or not 1 <= rows_log2 <= 24:
            raise ValueError(f"rows_log2 must be an integer in range 1..24, not {rows_log2!r}")
        if not isinstance(dim, int) or not 1 <= dim <= engine.max_dim:
            raise ValueError(f"dim must be an integer in range 1..{engine.max_dim}, not {dim!r}")
        if not isinstance(bags_per_batch, int) or not 1 <= bags_per_batch <= 255:
            raise ValueError(f"bags_per_batch must be an integer in range 1..255, "
                             f"not {bags_per_batch!r}")
        self._rows_log2, self._dim, self._bags = rows_log2, dim, bags_per_batch
        mem_sig = probe.signature.members["mem"].signature
        super().__init__({
            "mem": Out(MemPortSignature(addr_width=mem_sig.addr_width,
                                        data_width=mem_sig.data_width)),
            "checksum": Out(32),
            "bags": Out(32),
            "lookups": Out(32),
            "clamped": Out(32),
            "error_seen": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self._engine
        wiring.connect(m, wiring.flipped(self.mem), eng.mem)

        # -- the table ---------------------------------------------------------
        desc_done = Signal()
        m.d.comb += [
            eng.desc.valid.eq(~desc_done),
            eng.desc.payload.table.eq(0),
            eng.desc.payload.base.eq(0),
            eng.desc.payload.rows.eq(1 << self._rows_log2),
            eng.desc.payload.dim.eq(self._dim),
            eng.desc.payload.multiplier.eq(1 << 30),
            eng.desc.payload.shift.eq(0),
        ]
        with m.If(eng.desc.valid & eng.desc.ready):
            m.d.sync += desc_done.eq(1)

        # -- commands: SUM, MEAN, MAX in turn, CLAMP -----------------------------
        mode = Signal(2)
        m.d.comb += [
            eng.cmd.valid.eq(desc_done),
            eng.cmd.payload.mode.eq(mode),
            eng.cmd.payload.bounds.eq(BoundsMode.CLAMP),
            eng.cmd.payload.weighted.eq(0),
            eng.cmd.payload.requant.eq(0),
        ]
        with m.If(eng.cmd.valid & eng.cmd.ready):
            m.d.sync += mode.eq(Mux(mode == PoolMode.MAX.value, PoolMode.SUM.value, mode + 1))

        # -- bags: bags_per_batch bags of 0..15 indices, then the closing offset --
        m.submodules.lfsr_len = len_gen = Lfsr(width=4, step=4, seed=11)
        k = Signal(range(self._bags + 1))
        offset = Signal(32)
        take_bag = eng.bags.valid & eng.bags.ready
        closing = k == self._bags
        m.d.comb += [
            eng.bags.valid.eq(desc_done),
            eng.bags.payload.table.eq(0),
            eng.bags.payload.offset.eq(offset),
            eng.bags.payload.last.eq(closing),
            len_gen.en.eq(take_bag),
        ]
        with m.If(take_bag):
            with m.If(closing):
                m.d.sync += [k.eq(0), offset.eq(0)]
            with m.Else():
                m.d.sync += [k.eq(k + 1), offset.eq(offset + len_gen.value)]

        # -- indices: always valid; the engine takes what the offsets say ----------
        m.submodules.lfsr_idx = idx_gen = Lfsr(width=self._rows_log2 + 5, step=16, seed=12)
        iw = len(eng.indices.payload.index)
        rnd = idx_gen.value
        out_of_range = rnd[self._rows_log2:].all()          # 1 in 32
        m.d.comb += [
            eng.indices.valid.eq(desc_done),
            eng.indices.payload.index.eq(
                out_of_range.replicate(iw) | rnd[:self._rows_log2]),
            eng.indices.payload.weight.eq(1),
            idx_gen.en.eq(eng.indices.valid & eng.indices.ready),
        ]

        # -- results ---------------------------------------------------------------
        m.d.comb += eng.pooled.ready.eq(1)
        beat = eng.pooled.payload
        fold = Signal(32)
        acc = 0
        for lane in beat.data:
            acc = acc ^ lane[:32]
        m.d.comb += fold.eq(acc)
        with m.If(eng.pooled.valid):
            m.d.sync += self.checksum.eq(Cat(self.checksum[31], self.checksum[:31]) ^ fold ^
                                         Cat(beat.last, beat.batch_last))
            with m.If(beat.last):
                m.d.sync += self.bags.eq(self.bags + 1)
        m.d.comb += [
            self.lookups.eq(eng.lookups),
            self.clamped.eq(eng.clamped),
            eng.clear.eq((eng.error != GatherError.NONE) & ~eng.busy),
            eng.cache_clear.eq(0),
        ]
        with m.If(eng.error != GatherError.NONE):
            m.d.sync += self.error_seen.eq(1)
        return m
