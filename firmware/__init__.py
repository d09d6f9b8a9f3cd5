"""Host-side software of seedchip.

* :mod:`.program` — the assembler/program builder for the instruction set
  (:mod:`seedchip.isa`), memory layout helpers;
* :mod:`.link`, :mod:`.device` — the host link's driver: framing, windowed
  requests with retries, and :class:`Device` (memory, registers, programs,
  status, counters) over ``serial:PORT`` or the simulated chip (``sim``,
  :mod:`.sim`).
"""

from .device import Device, open_device
from .link import DeviceError, LinkError
from .program import Allocator, Program, Table, desc_records, param_records, table_image, u32_array

__all__ = ["Device", "open_device", "DeviceError", "LinkError", "Program", "Allocator",
           "Table", "desc_records", "param_records", "table_image", "u32_array"]
