"""The GEMM controller's tile walker: one loop over the K or N tiles."""

from amaranth.hdl import Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["TileWalker", "KN_PORTS", "kn_walkers"]


def _bits(n):
    """Address bits for ``n`` entries (at least one, so Cat() widths stay sane)."""
    return max(1, ceil_log2(n))


class TileWalker(wiring.Component):
    """Steps ``base`` by ``step`` over 0..length-1, with the index of the
    tile and a registered ``last`` flag (``base + step >= length``), so no
    adder or comparator sits on an address path.

    ``last`` is kept a tile ahead (``le2``: the next tile is the last) from a
    down-counter ``rem = length - base`` compared against a constant: as
    ``base + 2 * step >= length`` an adder and a comparator sat in series
    behind the stream handshake.

    Ports
    -----
    length : In(16)
        The registered length (``K`` or ``N`` of the command).
    first_last, first_le2 : In(1)
        Registered ``length <= step`` and ``length <= 2 * step``.
    restart : In(1)
        Back to tile 0 next cycle, from the registered length and flags.
    load, load_length : In(1), In(16)
        Back to tile 0 for a length the flags are not yet registered for
        (only at the command decode). Wins over ``restart``.
    advance : In(1)
        Next tile, wrapping to 0 after the last one. Wins over both resets.
    idx, base, last : Out
        The tile's index, its first element, and whether it is the last tile.
        All registers; every input takes effect the cycle after.
    """

    def __init__(self, *, step, idx_bits, max_length):
        for name, value in (("step", step), ("idx_bits", idx_bits), ("max_length", max_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.step = step
        self.max_length = max_length
        # base and rem only as wide as the largest accepted length
        width = max_length.bit_length()
        super().__init__({
            "length": In(16),
            "first_last": In(1),
            "first_le2": In(1),
            "restart": In(1),
            "load": In(1),
            "load_length": In(16),
            "advance": In(1),
            "idx": Out(idx_bits),
            "base": Out(width),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        step = self.step
        rem = Signal(len(self.base))
        le2 = Signal()
        with m.If(self.restart):
            m.d.sync += [self.idx.eq(0), self.base.eq(0), rem.eq(self.length),
                         self.last.eq(self.first_last), le2.eq(self.first_le2)]
        with m.If(self.load):
            m.d.sync += [self.idx.eq(0), self.base.eq(0), rem.eq(self.load_length),
                         self.last.eq(self.load_length <= step),
                         le2.eq(self.load_length <= 2 * step)]
        with m.If(self.advance):
            m.d.sync += [
                self.idx.eq(Mux(self.last, 0, self.idx + 1)),
                self.base.eq(Mux(self.last, 0, self.base + step)),
                rem.eq(Mux(self.last, self.length, rem - step)),
                self.last.eq(Mux(self.last, self.first_last, le2)),
                le2.eq(Mux(self.last, self.first_le2, rem <= 3 * step)),
            ]
        return m


#: The registered K and N of the command and their tile flags, as both K/N
#: walker pairs (loader, issuer) take them from the command decoder.
KN_PORTS = {
    "restart": In(1),
    "k": In(16), "one_kt": In(1), "two_kt": In(1),
    "n": In(16), "one_nt": In(1), "two_nt": In(1),
}


def kn_walkers(m, owner, config, prefix):
    """The K-tile and N-tile :class:`TileWalker` of ``owner`` (a component
    with the :data:`KN_PORTS`), added to ``m`` as ``<prefix>_kw`` and
    ``<prefix>_nw``, reset by ``owner.restart``; returns ``(kw, nw)``."""
    kw = TileWalker(step=config.rows, idx_bits=_bits(config.k_tiles_max), max_length=config.max_k)
    nw = TileWalker(step=config.cols, idx_bits=_bits(config.n_tiles_max), max_length=config.max_n)
    m.submodules[f"{prefix}_kw"] = kw
    m.submodules[f"{prefix}_nw"] = nw
    m.d.comb += [
        kw.length.eq(owner.k), kw.first_last.eq(owner.one_kt), kw.first_le2.eq(owner.two_kt),
        nw.length.eq(owner.n), nw.first_last.eq(owner.one_nt), nw.first_le2.eq(owner.two_nt),
        kw.restart.eq(owner.restart), nw.restart.eq(owner.restart),
    ]
    return kw, nw
