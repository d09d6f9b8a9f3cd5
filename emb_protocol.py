"""Wire formats of the EmbeddingBag gather engine, defined once.

The gateware (:mod:`seedchip.rtl.gather`) decodes these layouts, the golden
model (:mod:`seedchip.sim.emb_golden`) and the testbenches import them, a host
driver packs them with ``Layout.const({...}).as_bits()`` (or
:func:`seedchip.protocol.pack`). No bit offset is written anywhere else.

Fixed layouts are module constants; the layouts whose widths follow an
engine parameter (memory address width, index width, lanes) are functions of
those parameters. See :mod:`seedchip.rtl.gather` for the semantics of every
field.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from .checks import check_int

__all__ = [
    "GatherError", "PoolMode", "BoundsMode",
    "TABLE_WIDTH", "OFFSET_WIDTH", "DIM_WIDTH", "COUNTER_WIDTH",
    "CmdLayout", "BagLayout", "desc_layout", "index_layout", "pooled_layout",
]

#: Bits of a table id on the wire (``n_tables`` is at most 256).
TABLE_WIDTH = 8
#: Bits of an offset (position in the batch's ``indices`` stream).
OFFSET_WIDTH = 32
#: Bits of a descriptor's ``dim`` field (values above ``max_dim`` are refused).
DIM_WIDTH = 16
#: Width of the status counters and of ``error_bag``/``error_index``.
COUNTER_WIDTH = 32


class GatherError(enum.Enum, shape=4):
    """Sticky error code of the gather engine (``error`` port).

    ``error_bag`` and ``error_index`` say where; the meaning of
    ``error_index`` depends on the code (in brackets).
    """
    NONE = 0
    #: a descriptor write with table >= n_tables, rows == 0, dim == 0,
    #: dim > max_dim, or base + rows * pitch > 2**addr_width [table id].
    #: The table is left invalid.
    BAD_DESC = 1
    #: a command with a reserved pooling or bounds mode, or per-sample
    #: weights with a pooling mode other than SUM [0]
    BAD_CMD = 2
    #: a bag names a table >= n_tables or one never (validly) written [table id]
    BAD_TABLE = 3
    #: offsets[0] != 0, or offsets[i+1] < offsets[i] [the offending offset]
    BAD_OFFSET = 4
    #: offsets[i+1] - offsets[i] > max_bag [the bag length]
    BAG_TOO_LONG = 5
    #: bounds mode FATAL and index >= rows [the index]
    OUT_OF_RANGE = 6
    #: the memory answered a read with ``err`` [the index of the row]
    MEM_ERROR = 7


class PoolMode(enum.Enum, shape=2):
    """Pooling of a bag's rows (``nn.EmbeddingBag``'s ``mode``). 3 is reserved."""
    SUM = 0
    MEAN = 1
    MAX = 2


class BoundsMode(enum.Enum, shape=2):
    """What an index >= the table's row count does (FBGEMM's bounds-check
    modes). 3 is reserved."""
    #: stop the batch with ``OUT_OF_RANGE``
    FATAL = 0
    #: look up row 0 instead; ``clamped`` counts it
    CLAMP = 1
    #: leave the index out of the bag (not counted for MEAN); ``skipped`` counts it
    SKIP = 2


#: One command per batch, accepted while the engine is idle and error-free.
CmdLayout = data.StructLayout({
    "mode": PoolMode,
    "bounds": BoundsMode,
    #: multiply each row by its index's ``weight`` (SUM only)
    "weighted": unsigned(1),
    #: requantize every pooled element to int8 with the table's multiplier
    #: and shift (shared :class:`~seedchip.rtl.requant.Requantizer`)
    "requant": unsigned(1),
})

#: One ``bags`` item: ``offsets[i]`` and the table of bag ``i``; the batch's
#: final item (``last`` = 1) carries ``offsets[B]`` and its ``table`` is ignored.
BagLayout = data.StructLayout({
    "table": unsigned(TABLE_WIDTH),
    "offset": unsigned(OFFSET_WIDTH),
    "last": unsigned(1),
})


def desc_layout(*, addr_width, index_width):
    """A table descriptor write: row ``r`` lives at word ``base + r * pitch``,
    ``pitch = ceil(dim / (data_width // 8))``."""
    check_int("addr_width", addr_width, 1, 40)
    check_int("index_width", index_width, 1, 32)
    return data.StructLayout({
        "table": unsigned(TABLE_WIDTH),
        "base": unsigned(addr_width),
        "rows": unsigned(index_width),
        #: bytes (int8 elements) per row, 1..max_dim
        "dim": unsigned(DIM_WIDTH),
        #: requantization multiplier (Q31) and right shift of the table
        "multiplier": signed(32),
        "shift": unsigned(5),
    })


def index_layout(*, index_width):
    """One ``indices`` item: a row number and its per-sample weight."""
    check_int("index_width", index_width, 1, 32)
    return data.StructLayout({
        "index": unsigned(index_width),
        #: used only when the command's ``weighted`` is set
        "weight": signed(8),
    })


def pooled_layout(*, lanes):
    """One ``pooled`` beat: ``lanes`` consecutive elements of a pooled bag
    (elements past ``dim`` in the final beat are 0)."""
    check_int("lanes", lanes, 1, 8)
    return data.StructLayout({
        "data": data.ArrayLayout(signed(32), lanes),
        #: final beat of a bag
        "last": unsigned(1),
        #: final beat of the batch's final bag
        "batch_last": unsigned(1),
    })
