"""Host-side software of seedchip.

* :mod:`.program` — the assembler/program builder for the instruction set
  (:mod:`seedchip.isa`), memory layout helpers;
* :mod:`.link`, :mod:`.device` — the host link's driver: framing, windowed
  requests with retries, and :class:`Device` (memory, registers, programs,
  status, counters) over ``serial:PORT`` or the simulated chip (``sim``,
  :mod:`.sim`);
* :mod:`.ops` — whole operations on a device: a GEMM of any size (tiled),
  an EmbeddingBag; :class:`GoldenDevice` runs them on the golden executor.
"""

from .device import ChipTimeout, Device, ProgramError, open_device
from .link import DeviceError, LinkError
from .ops import FitError, GoldenDevice, embedding_bag, gemm
from .program import Allocator, Program, Table, desc_records, param_records, table_image, u32_array

__all__ = ["Device", "open_device", "ChipTimeout", "ProgramError", "FitError",
           "GoldenDevice", "gemm", "embedding_bag", "DeviceError", "LinkError", "Program", "Allocator",
           "Table", "desc_records", "param_records", "table_image", "u32_array"]
