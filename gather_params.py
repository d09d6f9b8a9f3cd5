"""The parameters of the EmbeddingBag gather engine, as one validated object.

:class:`GatherParams` is what :class:`~seedchip.rtl.gather.GatherEngine`
takes, what :class:`~seedchip.config.ChipConfig` holds (``config.gather``),
and what the board top, the simulations, the golden model
(:mod:`seedchip.sim.emb_golden`) and the benchmark read: each setting has one
name everywhere.

Two kinds of field: the engine's own settings, and the geometry of the memory
it reads (``data_width``, ``addr_width``). Whoever owns the memory binds the
geometry with :meth:`GatherParams.with_memory`: the board top from its SDRAM
chip, a simulation from its backend. The defaults are the engine of the board
build (``--gather``) on the ULX3S's 16-bit SDRAM.

A ground-layer module (see ``tests/test_layers.py``): it imports nothing of
``rtl/``.
"""

from __future__ import annotations

import dataclasses

from .checks import ceil_div, check_int

__all__ = ["GatherParams"]


@dataclasses.dataclass(frozen=True)
class GatherParams:
    """Gather engine parameters (frozen; every field checked on construction).

    Engine settings
    ---------------
    lanes : int
        Datapath width in int8 lanes (accumulate, drain, ``pooled`` beat),
        1..8 and a multiple of the memory word's bytes (``data_width // 8``:
        one memory word per beat).
    drain_lanes : int or None
        Lanes of the drain per cycle (the mean divider and the requantizers,
        4 DSPs a lane), a divisor of ``lanes`` from 1; ``None``: ``lanes``.
        With fewer, a finished bag's beat leaves every ``lanes //
        drain_lanes`` cycles: enough where the memory delivers fewer bytes a
        cycle than ``lanes`` (the 16-bit SDRAM: 2), or where bags are longer
        than a few rows.
    cache_rows : int
        Hot-row cache lines, 0 (no cache, no cache hardware) or a power of 2,
        2..4096. Each line holds one row of up to ``max_dim`` bytes.
    n_tables : int
        Table descriptors, 1..256.
    max_dim : int
        Largest row (bytes), 1..1024.
    max_bag : int
        Longest bag, 1..65535.
    inflight : int
        Tag FIFO depth = most reads in flight, 4..256.
    index_width : int
        Width of an index and of a descriptor's ``rows``, 1..32.

    Memory geometry (bound by the memory's owner, :meth:`with_memory`)
    -------------------------------------------------------------------
    data_width : int
        Memory word width, 8..64, a multiple of 8.
    addr_width : int
        Memory word address width, 1..40.

    Raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for
    one out of range, naming the parameter and the allowed range.
    """

    lanes: int = 8
    drain_lanes: int | None = None
    cache_rows: int = 2048
    n_tables: int = 8
    max_dim: int = 64
    max_bag: int = 32
    inflight: int = 32
    index_width: int = 32
    data_width: int = 16
    addr_width: int = 25

    def __post_init__(self):
        check_int("data_width", self.data_width, 8, 64)
        if self.data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {self.data_width!r}")
        check_int("addr_width", self.addr_width, 1, 40)
        check_int("n_tables", self.n_tables, 1, 256)
        check_int("max_dim", self.max_dim, 1, 1024)
        check_int("max_bag", self.max_bag, 1, 65535)
        check_int("inflight", self.inflight, 4, 256)
        check_int("index_width", self.index_width, 1, 32)
        check_int("lanes", self.lanes, 1, 8)
        if self.lanes % self.word_lanes:
            raise ValueError(f"lanes must be a multiple of the memory word's {self.word_lanes} "
                             f"byte(s), not {self.lanes!r}")
        if self.drain_lanes is not None:
            check_int("drain_lanes", self.drain_lanes, 1, self.lanes)
            if self.lanes % self.drain_lanes:
                raise ValueError(f"drain_lanes must divide lanes ({self.lanes}), "
                                 f"not {self.drain_lanes!r}")
        check_int("cache_rows", self.cache_rows, 0, 4096)
        if self.cache_rows == 1 or self.cache_rows & (self.cache_rows - 1):
            raise ValueError(f"cache_rows must be 0 or a power of 2 from 2, "
                             f"not {self.cache_rows!r}")

    # -- derived figures ---------------------------------------------------------
    @property
    def word_lanes(self) -> int:
        """Bytes per memory word = int8 elements per word."""
        return self.data_width // 8

    @property
    def drain_width(self) -> int:
        """Lanes the drain takes a cycle: ``drain_lanes``, or ``lanes`` when None."""
        return self.lanes if self.drain_lanes is None else self.drain_lanes

    @property
    def drain_every(self) -> int:
        """Cycles between two beats leaving the drain: ``lanes // drain_width``."""
        return self.lanes // self.drain_width

    @property
    def ratio(self) -> int:
        """Memory words per datapath beat."""
        return self.lanes // self.word_lanes

    @property
    def max_pitch(self) -> int:
        """Memory words of the largest row."""
        return ceil_div(self.max_dim, self.word_lanes)

    @property
    def max_beats(self) -> int:
        """Datapath beats of the largest row."""
        return ceil_div(self.max_dim, self.lanes)

    # -- copies ----------------------------------------------------------------
    def replace(self, **kw) -> "GatherParams":
        """A copy with ``kw`` changed (validated again)."""
        return dataclasses.replace(self, **kw)

    def with_memory(self, *, data_width: int, addr_width: int) -> "GatherParams":
        """These settings on a memory of ``data_width``-bit words and
        ``addr_width``-bit word addresses."""
        return dataclasses.replace(self, data_width=data_width, addr_width=addr_width)

    # -- (de)serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GatherParams":
        """From a dict of any subset of the fields (the others: defaults)."""
        if not isinstance(d, dict):
            raise TypeError(f"gather engine parameters must be a dict, not {d!r}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown gather engine parameters: {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(fields)}")
        return cls(**d)
