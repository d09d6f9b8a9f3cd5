"""Wire formats of the matrix unit, defined once.

The gateware decodes these layouts, the firmware/driver packs them with
``Layout.const({...}).as_bits()`` and the testbenches import them. No bit
offset is written anywhere else.
"""

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

__all__ = ["check_requant_params", "GemmError", "GemmCmdLayout", "ParamLayout", "OutLayout",
           "a_word_layout", "b_word_layout", "pack", "unpack"]


class GemmError(enum.Enum, shape=4):
    """Sticky error code of the matrix unit (``status.error``)."""
    NONE = 0
    #: M, K or N is 0 or larger than the buffers (``max_m``/``max_k``/``max_n``).
    BAD_SHAPE = 1
    # 2 was BAD_MULTIPLIER, documented but never raised: the unit does not
    # check multipliers; the host refuses one outside 0 or [2**30, 2**31)
    # (:func:`check_requant_params`) before it reaches the wire.


#: One GEMM command. Dimensions are the real sizes (1..65535); the unit
#: rejects sizes above its buffers with ``GemmError.BAD_SHAPE``.
GemmCmdLayout = data.StructLayout({
    "m": unsigned(16),
    "k": unsigned(16),
    "n": unsigned(16),
    #: consume N entries on the ``params`` stream (bias, multiplier, shift)
    "params": unsigned(1),
    #: requantize to int8 (needs ``params``); otherwise raw int32 acc + bias
    "requant": unsigned(1),
    #: clamp negative results to zero (after requantization, or on raw output)
    "relu": unsigned(1),
})

#: Per-output-channel post-processing parameters.
ParamLayout = data.StructLayout({
    "bias": signed(32),
    "multiplier": signed(32),
    "shift": unsigned(5),
})

#: One output element. Elements leave in column-tile order: for each tile of
#: ``cols`` output channels, for each row m, the tile's channels in order.
OutLayout = data.StructLayout({
    "data": signed(32),
    "last": unsigned(1),
})


def a_word_layout(config):
    """One A word: ``rows`` consecutive K elements of one row of A."""
    return data.ArrayLayout(signed(config.in_width), config.rows)


def b_word_layout(config):
    """One B word: ``cols`` consecutive N elements of one row of B."""
    return data.ArrayLayout(signed(config.in_width), config.cols)


def pack(layout, value) -> int:
    """Pack a Python value (dict / list / int) into the integer the wire carries."""
    return layout.const(value).as_bits()


def unpack(layout, bits: int):
    """Inverse of :func:`pack`: a dict of ints for a struct, a list for an array."""
    view = layout.from_bits(bits)
    if isinstance(layout, data.ArrayLayout):
        return [_plain(view[i]) for i in range(layout.length)]
    return {name: _plain(view[name]) for name, _ in layout}


def _plain(v):
    if isinstance(v, data.Const):
        return v.as_value().value
    return v.value if hasattr(v, "value") else int(v)


def check_requant_params(multiplier, shift, *, name=None):
    """Raise ValueError unless every multiplier is 0 or a Q31 value in
    [2**30, 2**31) and every shift is in 0..31: the requantization the
    hardware is defined for (matrix unit, gather engine, interaction).
    ``name`` prefixes the message (``channel 3 multiplier must be ...``)."""
    what = f"{name} " if name else ""
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    hi = (1 << 31) - 1
    ok = (multiplier == 0) | ((multiplier >= (1 << 30)) & (multiplier <= hi))
    if not np.all(ok):
        bad = multiplier[~ok].ravel()[0]
        raise ValueError(f"{what}multiplier must be 0 or in range {1 << 30}..{hi}, not {int(bad)}")
    ok = (shift >= 0) & (shift <= 31)
    if not np.all(ok):
        raise ValueError(f"{what}shift must be in range 0..31, not {int(shift[~ok].ravel()[0])}")
