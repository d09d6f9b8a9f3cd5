"""Argument checks and small integer helpers shared by the whole package.

The ground layer: :mod:`seedchip.config`, the protocol modules, ``rtl/``,
``boards/`` and ``sim/`` all import from here, and this module imports
nothing of seedchip. Every check raises ``TypeError`` for the wrong kind of
value and ``ValueError`` for one out of range, with a message that names
the parameter and the allowed range.
"""

from __future__ import annotations

__all__ = ["check_type", "check_int", "check_num", "check_pow2", "ceil_div"]


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``lo..hi``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in range {lo}..{hi}, not {value!r}")
    return value


def check_num(name: str, value, lo, hi, unit: str = ""):
    """``value`` if it is an ``int`` or ``float`` (not a ``bool``) in ``lo..hi``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in range {lo}..{hi}{unit}, not {value!r}")
    return value


def check_pow2(name: str, value, lo: int, hi: int) -> int:
    """``value`` if it is a power of two in ``lo..hi``."""
    check_int(name, value, lo, hi)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value!r}")
    return value


def ceil_div(x: int, n: int) -> int:
    """``ceil(x / n)`` for non-negative integers, exactly."""
    return -(-x // n)


def check_type(name, value, cls):
    """``value`` must be an instance of ``cls``: TypeError naming ``name``
    otherwise (``config must be a ChipConfig, not {}``)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, not {value!r}")
    return value
